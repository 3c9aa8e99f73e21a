//! Onfido webhooks mapped to canonical facts. Body
//! `{"payload":{"resource_type","action","object":{"id","status",
//! "completed_at_iso8601","href"}}}` (Onfido's webhook docs), signed with
//! `X-SHA2-Signature`.
//!
//! The callback says that something finished, not how: `object.status` is
//! `complete` for a check, and the result (`clear`/`consider`) is read from
//! the check itself, as the KYC worker does. For a workflow run the status is
//! the outcome (`approved`, `declined`, `review`, ...). Either goes to
//! `reason`.
//!
//! Subject: the adapter gives Onfido nothing of ours to echo, so the subject
//! is the object id, the check id that `KycOutcome.vendor_reference` carries
//! too. Event id: Onfido sends none, so it is derived from the action, the
//! object and its completion time (UNCONFIRMED that a re-sent callback keeps
//! `completed_at_iso8601`; Onfido documents no delivery id).

use crate::webhooks::{derived_event_id, rfc3339_ms, EventFacts, Refusal, Verified};
use serde::Deserialize;
use switchyard_canonical::ProviderEventKind;

#[derive(Deserialize)]
struct Notification {
    payload: Payload,
}

#[derive(Deserialize)]
struct Payload {
    resource_type: String,
    action: String,
    object: Object,
}

#[derive(Deserialize)]
struct Object {
    id: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    completed_at_iso8601: Option<String>,
}

pub(crate) fn map(body: &[u8], verified: &Verified) -> Result<EventFacts, Refusal> {
    let n: Notification = serde_json::from_slice(body).map_err(|e| Refusal::MalformedPayload(e.to_string()))?;
    let p = n.payload;
    let object = p.object;
    if object.id.is_empty() || p.action.is_empty() {
        return Err(Refusal::MalformedPayload("empty object id or action".into()));
    }
    let completed_at = match object.completed_at_iso8601.as_deref() {
        Some(text) => Some(rfc3339_ms(text).ok_or_else(|| Refusal::MalformedPayload("completed_at_iso8601".into()))?),
        None => None,
    };
    let kind = match p.action.as_str() {
        "check.completed" | "workflow_run.completed" => ProviderEventKind::KycCheckCompleted,
        "check.started" | "check.reopened" | "check.form_completed" => ProviderEventKind::KycReviewPending,
        _ => ProviderEventKind::Other,
    };
    let status = object.status.clone().unwrap_or_default();
    let when = object.completed_at_iso8601.clone().unwrap_or_default();
    Ok(EventFacts {
        event_id: derived_event_id(&["onfido", &p.resource_type, &p.action, &object.id, &status, &when]),
        subject_id: object.id.clone(),
        provider_reference: object.id,
        kind,
        vendor_event_type: p.action,
        amount_minor: None,
        currency: None,
        reason: object.status.filter(|s| !s.is_empty()),
        occurred_at_ms: completed_at.unwrap_or(verified.verified_at_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_completed_check_is_kyc_check_completed_keyed_by_the_check_with_its_status() {
        let body = include_bytes!("../../../tests/fixtures/webhooks/onfido-check-completed.json");
        let facts = map(body, &Verified::default()).expect("maps");
        assert_eq!(facts.kind, ProviderEventKind::KycCheckCompleted);
        assert_eq!(facts.subject_id, "b3ae5a36-ef4f-4c3a-8d5e-6f7b0b8ed1e2");
        assert_eq!(facts.provider_reference, facts.subject_id);
        assert_eq!(facts.reason.as_deref(), Some("complete"));
        assert_eq!(facts.occurred_at_ms, rfc3339_ms("2026-11-25T10:15:00Z").expect("time"));
        assert!(facts.event_id.starts_with("sha256:"));
        // The same callback re-sent keeps its id; another action on the check does not.
        assert_eq!(map(body, &Verified::default()).expect("maps").event_id, facts.event_id);
        let started = String::from_utf8_lossy(body).replace("check.completed", "check.started");
        let started = map(started.as_bytes(), &Verified::default()).expect("maps");
        assert_eq!(started.kind, ProviderEventKind::KycReviewPending);
        assert_ne!(started.event_id, facts.event_id);
    }

    #[test]
    fn a_callback_without_a_time_uses_the_verification_time_and_garbage_is_refused() {
        let body = br#"{"payload":{"resource_type":"workflow_run","action":"workflow_run.completed","object":{"id":"wr-1","status":"declined"}}}"#;
        let facts = map(body, &Verified { verified_at_ms: 42, ..Verified::default() }).expect("maps");
        assert_eq!((facts.kind, facts.reason.as_deref(), facts.occurred_at_ms), (ProviderEventKind::KycCheckCompleted, Some("declined"), 42));
        for bad in [&b"{}"[..], br#"{"payload":{"resource_type":"check","action":"check.completed","object":{"id":""}}}"#,
            br#"{"payload":{"resource_type":"check","action":"check.completed","object":{"id":"c","completed_at_iso8601":"yesterday"}}}"#] {
            assert!(matches!(map(bad, &Verified::default()), Err(Refusal::MalformedPayload(_))), "{}", String::from_utf8_lossy(bad));
        }
    }
}
