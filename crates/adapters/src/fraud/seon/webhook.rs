//! SEON transaction callbacks mapped to canonical facts, signed with
//! `Digest: SHA-256=...` (see `webhooks::digest_body`). UNCONFIRMED body,
//! modelled on the fraud API's answer: `{"event":"transaction:status_update",
//! "timestamp","data":{"id","transaction_id","user_id","state",
//! "previous_state"}}` with `state` APPROVE | REVIEW | DECLINE, set when an
//! analyst decides a transaction that scored REVIEW.
//!
//! Subject: `user_id`, which the adapter sets to our subject id, else our
//! `transaction_id`. `provider_reference` is SEON's id, which
//! `FraudOutcome.vendor_reference` carries too. Event id: SEON documents
//! none in the body (a `Request-Id` header is UNCONFIRMED), so it is derived
//! from the transaction, state and time. `reason` is the new state.

use crate::webhooks::{derived_event_id, rfc3339_ms, EventFacts, Refusal, Verified};
use serde::Deserialize;
use switchyard_canonical::ProviderEventKind;

#[derive(Deserialize)]
struct Notification {
    event: String,
    #[serde(default)]
    timestamp: Option<String>,
    data: Data,
}

#[derive(Deserialize)]
struct Data {
    id: String,
    #[serde(default)]
    transaction_id: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    state: Option<String>,
}

pub(crate) fn map(body: &[u8], verified: &Verified) -> Result<EventFacts, Refusal> {
    let n: Notification = serde_json::from_slice(body).map_err(|e| Refusal::MalformedPayload(e.to_string()))?;
    let d = n.data;
    if d.id.is_empty() || n.event.is_empty() {
        return Err(Refusal::MalformedPayload("empty id or event".into()));
    }
    let occurred_at_ms = match n.timestamp.as_deref() {
        Some(t) => rfc3339_ms(t).ok_or_else(|| Refusal::MalformedPayload("timestamp".into()))?,
        None => verified.verified_at_ms,
    };
    let kind = match n.event.as_str() {
        "transaction:status_update" => ProviderEventKind::FraudDecisionUpdated,
        _ => ProviderEventKind::Other,
    };
    let state = d.state.filter(|s| !s.is_empty());
    let event_id = derived_event_id(&["seon", &n.event, &d.id, state.as_deref().unwrap_or(""), n.timestamp.as_deref().unwrap_or("")]);
    let subject_id = d.user_id.filter(|u| !u.is_empty()).or(d.transaction_id.filter(|t| !t.is_empty())).unwrap_or_else(|| d.id.clone());
    Ok(EventFacts {
        event_id,
        subject_id,
        provider_reference: d.id,
        kind,
        vendor_event_type: n.event,
        amount_minor: None,
        currency: None,
        reason: state,
        occurred_at_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_update_is_a_decision_update_for_the_user_with_a_stable_derived_id() {
        let body = include_bytes!("../../../tests/fixtures/webhooks/seon-status-update.json");
        let facts = map(body, &Verified::default()).expect("maps");
        assert_eq!(facts.kind, ProviderEventKind::FraudDecisionUpdated);
        assert_eq!(facts.reason.as_deref(), Some("DECLINE"));
        assert_eq!((facts.subject_id.as_str(), facts.provider_reference.as_str()), ("app-7", "8d0f0a7e2c"));
        assert_eq!(facts.occurred_at_ms, rfc3339_ms("2026-11-25T10:25:00Z").expect("time"));
        assert_eq!(map(body, &Verified::default()).expect("maps").event_id, facts.event_id);
        let approved = String::from_utf8_lossy(body).replace("\"DECLINE\"", "\"APPROVE\"");
        assert_ne!(map(approved.as_bytes(), &Verified::default()).expect("maps").event_id, facts.event_id);
    }

    #[test]
    fn bodies_without_an_id_are_refused() {
        for bad in [&br#"{"event":"transaction:status_update","data":{"id":""}}"#[..], br#"{"event":"x"}"#] {
            assert!(matches!(map(bad, &Verified::default()), Err(Refusal::MalformedPayload(_))));
        }
    }
}
