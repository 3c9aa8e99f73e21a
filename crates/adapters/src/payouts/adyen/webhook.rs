//! Adyen Balance Platform transfer webhooks
//! (`balancePlatform.transfer.created|updated`) mapped to canonical facts.
//! Our payout id is the transfer `reference`, which the adapter sets.
//!
//! These webhooks carry no event id. Each update of a transfer has a
//! `sequenceNumber` (UNCONFIRMED that it is always present; when absent the
//! status stands in), so `<transfer id>:<sequence>` identifies one state
//! change across Adyen's retries.

use crate::webhooks::{rfc3339_ms, EventFacts, Refusal};
use serde::Deserialize;
use switchyard_canonical::ProviderEventKind;

#[derive(Deserialize)]
struct Notification {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    timestamp: Option<String>,
    data: Transfer,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Transfer {
    id: String,
    #[serde(default)]
    reference: Option<String>,
    status: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    amount: Option<Amount>,
    #[serde(default)]
    sequence_number: Option<i64>,
    #[serde(default)]
    creation_date: Option<String>,
}

#[derive(Deserialize)]
struct Amount {
    currency: String,
    value: i64,
}

pub(crate) fn map(body: &[u8]) -> Result<EventFacts, Refusal> {
    let n: Notification = serde_json::from_slice(body).map_err(|e| Refusal::MalformedPayload(e.to_string()))?;
    let t = n.data;
    if t.id.is_empty() {
        return Err(Refusal::MalformedPayload("empty transfer id".into()));
    }
    let kind = match t.status.as_str() {
        "received" => ProviderEventKind::PayoutCreated,
        "authorised" | "pendingApproval" => ProviderEventKind::PayoutProcessing,
        "booked" => ProviderEventKind::PayoutPaid,
        "failed" | "refused" | "error" => ProviderEventKind::PayoutFailed,
        "cancelled" => ProviderEventKind::PayoutCanceled,
        "returned" => ProviderEventKind::PayoutReturned,
        _ => ProviderEventKind::Other,
    };
    let step = t.sequence_number.map_or_else(|| t.status.clone(), |s| s.to_string());
    let occurred_at_ms = n
        .timestamp
        .as_deref()
        .and_then(rfc3339_ms)
        .or_else(|| t.creation_date.as_deref().and_then(rfc3339_ms))
        .ok_or_else(|| Refusal::MalformedPayload("no timestamp".into()))?;
    let (amount_minor, currency) = t.amount.map_or((None, None), |a| (Some(a.value), Some(a.currency.to_ascii_uppercase())));
    Ok(EventFacts {
        event_id: format!("{}:{step}", t.id),
        subject_id: t.reference.clone().filter(|r| !r.is_empty()).unwrap_or_else(|| t.id.clone()),
        provider_reference: t.id,
        kind,
        vendor_event_type: n.kind,
        amount_minor,
        currency,
        reason: t.reason,
        occurred_at_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_a_booked_transfer_and_keys_the_event_by_sequence() {
        let body = include_bytes!("../../../tests/fixtures/webhooks/adyen-transfer-booked.json");
        let facts = map(body).expect("maps");
        assert_eq!(facts.kind, ProviderEventKind::PayoutPaid);
        assert_eq!(facts.subject_id, "po-42");
        assert_eq!(facts.event_id, "1W1UG35U8A9J5ZLG:3");
        assert_eq!(facts.amount_minor, Some(1250));
    }

    #[test]
    fn malformed_bodies_are_refused() {
        for body in [&b"{}"[..], br#"{"type":"x","data":{"id":"","status":"booked"}}"#, br#"{"type":"x","data":{"id":"a","status":"booked"}}"#] {
            assert!(matches!(map(body), Err(Refusal::MalformedPayload(_))), "{}", String::from_utf8_lossy(body));
        }
    }
}
