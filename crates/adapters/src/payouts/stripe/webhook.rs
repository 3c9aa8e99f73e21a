//! Stripe event objects (`{"id":"evt_...","type":"payout.paid","created":..,
//! "data":{"object":{payout}}}`) mapped to canonical facts. Our payout id
//! comes back in `metadata[switchyard_payout_id]`, which the adapter sets.
//!
//! A `payout.failed` after `payout.paid` is how Stripe reports a bank return
//! (a payout can fail days after it was paid); folding keeps it visible as a
//! contradiction for the reconciler.

use crate::webhooks::{EventFacts, Refusal};
use serde::Deserialize;
use switchyard_canonical::ProviderEventKind;

#[derive(Deserialize)]
struct Event {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    created: i64,
    data: Data,
}

#[derive(Deserialize)]
struct Data {
    object: Payout,
}

#[derive(Deserialize)]
struct Payout {
    id: String,
    #[serde(default)]
    amount: Option<i64>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    failure_code: Option<String>,
    #[serde(default)]
    metadata: std::collections::HashMap<String, String>,
}

pub(crate) fn map(body: &[u8]) -> Result<EventFacts, Refusal> {
    let event: Event = serde_json::from_slice(body).map_err(|e| Refusal::MalformedPayload(e.to_string()))?;
    if event.id.is_empty() || event.data.object.id.is_empty() {
        return Err(Refusal::MalformedPayload("empty event or object id".into()));
    }
    let payout = event.data.object;
    let kind = match event.kind.as_str() {
        "payout.created" => ProviderEventKind::PayoutCreated,
        "payout.paid" => ProviderEventKind::PayoutPaid,
        "payout.failed" => ProviderEventKind::PayoutFailed,
        "payout.canceled" => ProviderEventKind::PayoutCanceled,
        "payout.updated" => match payout.status.as_deref() {
            Some("in_transit") => ProviderEventKind::PayoutProcessing,
            _ => ProviderEventKind::Other,
        },
        _ => ProviderEventKind::Other,
    };
    let subject_id = payout.metadata.get("switchyard_payout_id").cloned().unwrap_or_else(|| payout.id.clone());
    Ok(EventFacts {
        event_id: event.id,
        subject_id,
        provider_reference: payout.id,
        kind,
        vendor_event_type: event.kind,
        amount_minor: payout.amount,
        currency: payout.currency.map(|c| c.to_ascii_uppercase()),
        reason: payout.failure_code,
        occurred_at_ms: event.created.saturating_mul(1000),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_a_paid_event_and_finds_our_payout_id() {
        let body = include_bytes!("../../../tests/fixtures/webhooks/stripe-payout-paid.json");
        let facts = map(body).expect("maps");
        assert_eq!(facts.kind, ProviderEventKind::PayoutPaid);
        assert_eq!(facts.subject_id, "po-42");
        assert_eq!(facts.provider_reference, "po_1OaFakeFixture0001");
        assert_eq!(facts.currency.as_deref(), Some("EUR"));
        assert_eq!(facts.amount_minor, Some(1250));
        assert_eq!(facts.occurred_at_ms, 1_764_000_000_000);
    }

    #[test]
    fn malformed_bodies_are_refused_not_panicked_on() {
        for body in [&b""[..], b"{}", b"[]", br#"{"id":"evt","type":"payout.paid","created":"x","data":{}}"#, b"\xff"] {
            assert!(matches!(map(body), Err(Refusal::MalformedPayload(_))));
        }
    }
}
