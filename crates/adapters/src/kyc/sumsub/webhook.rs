//! Sumsub applicant webhooks mapped to canonical facts. Body (Sumsub's
//! webhook docs): `{"type":"applicantReviewed","applicantId","externalUserId",
//! "reviewStatus","reviewResult":{"reviewAnswer":"GREEN"|"RED",
//! "reviewRejectType":"FINAL"|"RETRY"},"createdAtMs":"2026-11-25 10:15:00.321"}`,
//! signed with `X-Payload-Digest`.
//!
//! Subject: `externalUserId`, which the Sumsub adapter sets to the KYC
//! command's idempotency key (`<flow>.kyc.<attempt>` from the orchestrator),
//! not to the applicant's `subject_id`: Sumsub echoes `externalUserId` but
//! not `sourceKey`, where the adapter puts the subject. `provider_reference`
//! is the applicant id, which `KycOutcome.vendor_reference` carries too.
//!
//! Event id: Sumsub sends none (`correlationId` names a request, not an
//! event), so it is derived from applicant, type, status, answer and
//! `createdAtMs`, which Sumsub's resends keep (UNCONFIRMED).
//! `reason` is the answer, with the reject type on RED (`RED:RETRY`).

use crate::webhooks::{derived_event_id, rfc3339_ms, EventFacts, Refusal};
use serde::Deserialize;
use switchyard_canonical::ProviderEventKind;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Notification {
    #[serde(rename = "type")]
    kind: String,
    applicant_id: String,
    #[serde(default)]
    external_user_id: Option<String>,
    #[serde(default)]
    review_status: Option<String>,
    #[serde(default)]
    review_result: Option<ReviewResult>,
    /// Usually `"2026-11-25 10:15:00.321"` (UTC); a number of ms is accepted too.
    #[serde(default)]
    created_at_ms: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewResult {
    #[serde(default)]
    review_answer: Option<String>,
    #[serde(default)]
    review_reject_type: Option<String>,
}

fn created_at(value: &serde_json::Value) -> Option<(String, i64)> {
    match value {
        serde_json::Value::Number(n) => n.as_i64().map(|ms| (ms.to_string(), ms)),
        serde_json::Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok().map(|ms| (s.clone(), ms)),
        serde_json::Value::String(s) => rfc3339_ms(s).map(|ms| (s.clone(), ms)),
        _ => None,
    }
}

pub(crate) fn map(body: &[u8]) -> Result<EventFacts, Refusal> {
    let n: Notification = serde_json::from_slice(body).map_err(|e| Refusal::MalformedPayload(e.to_string()))?;
    if n.applicant_id.is_empty() || n.kind.is_empty() {
        return Err(Refusal::MalformedPayload("empty applicantId or type".into()));
    }
    let (created_text, occurred_at_ms) =
        n.created_at_ms.as_ref().and_then(created_at).ok_or_else(|| Refusal::MalformedPayload("createdAtMs".into()))?;
    let kind = match n.kind.as_str() {
        "applicantReviewed" => ProviderEventKind::KycCheckCompleted,
        "applicantPending" | "applicantOnHold" | "applicantPrechecked" | "applicantAwaitingUser" => ProviderEventKind::KycReviewPending,
        _ => ProviderEventKind::Other,
    };
    let answer = n.review_result.as_ref().and_then(|r| r.review_answer.clone()).filter(|a| !a.is_empty());
    let reject = n.review_result.as_ref().and_then(|r| r.review_reject_type.clone()).filter(|t| !t.is_empty());
    let reason = match (&answer, reject) {
        (Some(a), Some(t)) if a == "RED" => Some(format!("{a}:{t}")),
        (Some(a), _) => Some(a.clone()),
        (None, _) => n.review_status.clone(),
    };
    let status = n.review_status.clone().unwrap_or_default();
    let event_id = derived_event_id(&["sumsub", &n.applicant_id, &n.kind, &status, answer.as_deref().unwrap_or(""), &created_text]);
    Ok(EventFacts {
        event_id,
        subject_id: n.external_user_id.filter(|e| !e.is_empty()).unwrap_or_else(|| n.applicant_id.clone()),
        provider_reference: n.applicant_id,
        kind,
        vendor_event_type: n.kind,
        amount_minor: None,
        currency: None,
        reason,
        occurred_at_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_red_retry_review_is_completed_with_the_answer_and_keyed_by_external_user_id() {
        let body = include_bytes!("../../../tests/fixtures/webhooks/sumsub-applicant-reviewed-red.json");
        let facts = map(body).expect("maps");
        assert_eq!(facts.kind, ProviderEventKind::KycCheckCompleted);
        assert_eq!(facts.reason.as_deref(), Some("RED:RETRY"));
        assert_eq!(facts.subject_id, "flow-7.kyc.1");
        assert_eq!(facts.provider_reference, "5cb56e8e0a975a35f333cb83");
        assert_eq!(facts.occurred_at_ms, rfc3339_ms("2026-11-25T10:15:00.321Z").expect("time"));
        assert_eq!(map(body).expect("maps").event_id, facts.event_id, "a resend keeps its id");
        let green = String::from_utf8_lossy(body).replace("\"RED\"", "\"GREEN\"");
        let green = map(green.as_bytes()).expect("maps");
        assert_eq!(green.reason.as_deref(), Some("GREEN"));
        assert_ne!(green.event_id, facts.event_id, "another answer is another event");
    }

    #[test]
    fn pending_carries_the_status_numeric_times_are_accepted_and_a_missing_time_is_refused() {
        let pending = br#"{"type":"applicantPending","applicantId":"a1","reviewStatus":"pending","createdAtMs":1764065700000}"#;
        let facts = map(pending).expect("maps");
        assert_eq!((facts.kind, facts.reason.as_deref(), facts.occurred_at_ms), (ProviderEventKind::KycReviewPending, Some("pending"), 1_764_065_700_000));
        assert_eq!(facts.subject_id, "a1", "no externalUserId: the applicant id");
        for bad in [&b"{}"[..], br#"{"type":"applicantReviewed","applicantId":"a1"}"#, br#"{"type":"applicantReviewed","applicantId":"","createdAtMs":"1"}"#] {
            assert!(matches!(map(bad), Err(Refusal::MalformedPayload(_))), "{}", String::from_utf8_lossy(bad));
        }
    }
}
