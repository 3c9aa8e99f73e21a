//! Sardine risk callbacks mapped to canonical facts. Sardine's payments
//! product signs with Standard Webhooks; its risk API's webhooks are
//! UNCONFIRMED, and so is this body, modelled on the customer payload:
//! `{"id","type":"customer.risk_level_changed","timestamp",
//! "data":{"sessionKey","customer":{"id"},"level","previousLevel"}}`.
//! A case decided in Sardine's dashboard (`case.decision_updated`, with
//! `data.decision`) is a decision change too.
//!
//! Subject: `customer.id`, which the adapter sets to our subject id, else the
//! `sessionKey` (our idempotency key, also `FraudOutcome.vendor_reference`).
//! Event id: the `webhook-id`, else the body's `id`. `reason` is the new
//! decision or level (`very_high`).

use crate::webhooks::{rfc3339_ms, EventFacts, Refusal, Verified};
use serde::Deserialize;
use switchyard_canonical::ProviderEventKind;

#[derive(Deserialize)]
struct Notification {
    #[serde(default)]
    id: Option<String>,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    timestamp: Option<String>,
    data: Data,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    session_key: String,
    #[serde(default)]
    customer: Option<Customer>,
    #[serde(default)]
    level: Option<String>,
    #[serde(default)]
    decision: Option<String>,
}

#[derive(Deserialize)]
struct Customer {
    #[serde(default)]
    id: Option<String>,
}

pub(crate) fn map(body: &[u8], verified: &Verified) -> Result<EventFacts, Refusal> {
    let n: Notification = serde_json::from_slice(body).map_err(|e| Refusal::MalformedPayload(e.to_string()))?;
    let d = n.data;
    if d.session_key.is_empty() {
        return Err(Refusal::MalformedPayload("empty sessionKey".into()));
    }
    let event_id = verified
        .message_id
        .clone()
        .or(n.id)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| Refusal::MalformedPayload("no event id".into()))?;
    let occurred_at_ms = match n.timestamp.as_deref() {
        Some(t) => rfc3339_ms(t).ok_or_else(|| Refusal::MalformedPayload("timestamp".into()))?,
        None => verified.signed_at_ms.unwrap_or(verified.verified_at_ms),
    };
    let kind = match n.kind.as_str() {
        "customer.risk_level_changed" | "case.decision_updated" => ProviderEventKind::FraudDecisionUpdated,
        _ => ProviderEventKind::Other,
    };
    Ok(EventFacts {
        event_id,
        subject_id: d.customer.and_then(|c| c.id).filter(|id| !id.is_empty()).unwrap_or_else(|| d.session_key.clone()),
        provider_reference: d.session_key,
        kind,
        vendor_event_type: n.kind,
        amount_minor: None,
        currency: None,
        reason: d.decision.or(d.level).filter(|r| !r.is_empty()),
        occurred_at_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_risk_level_change_is_a_decision_update_for_the_customer() {
        let body = include_bytes!("../../../tests/fixtures/webhooks/sardine-risk-level-changed.json");
        let facts = map(body, &Verified { message_id: Some("msg_sd_1".into()), ..Verified::default() }).expect("maps");
        assert_eq!(facts.kind, ProviderEventKind::FraudDecisionUpdated);
        assert_eq!(facts.reason.as_deref(), Some("very_high"));
        assert_eq!((facts.subject_id.as_str(), facts.provider_reference.as_str()), ("app-7", "flow-7.fraud.1"));
        assert_eq!(facts.event_id, "msg_sd_1");
        assert_eq!(facts.occurred_at_ms, rfc3339_ms("2026-11-25T10:20:00Z").expect("time"));
        assert_eq!(map(body, &Verified::default()).expect("maps").event_id, "2d6f1a0e-5c2b-4a7e-9a63-1f0a8b7c6d5e");
    }

    #[test]
    fn bodies_without_a_session_or_an_id_are_refused() {
        for bad in [&br#"{"type":"x","data":{"sessionKey":""}}"#[..], br#"{"type":"x","data":{"sessionKey":"k"}}"#, b"[]"] {
            assert!(matches!(map(bad, &Verified::default()), Err(Refusal::MalformedPayload(_))), "{}", String::from_utf8_lossy(bad));
        }
    }
}
