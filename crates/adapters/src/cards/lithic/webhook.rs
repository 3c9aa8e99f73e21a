//! Lithic card events mapped to canonical facts. Body shape
//! `{"event_type":"card.created","token":"<event token>","created":"<rfc3339>",
//! "payload":{"token":"<card token>","memo":"<our card id>","state":"OPEN"}}`:
//! UNCONFIRMED beyond `event_type` and the card token; our card id travels in
//! the card's `memo`, which the (future) card adapter sets.
//!
//! The event id is the Standard Webhooks `webhook-id`, which stays the same
//! across Lithic's retries, falling back to the body's event token.

use crate::webhooks::{rfc3339_ms, EventFacts, Refusal, Verified};
use serde::Deserialize;
use switchyard_canonical::ProviderEventKind;

#[derive(Deserialize)]
struct Event {
    event_type: String,
    #[serde(default)]
    token: Option<String>,
    created: String,
    payload: Card,
}

#[derive(Deserialize)]
struct Card {
    token: String,
    #[serde(default)]
    memo: Option<String>,
}

pub(crate) fn map(body: &[u8], verified: &Verified) -> Result<EventFacts, Refusal> {
    let e: Event = serde_json::from_slice(body).map_err(|e| Refusal::MalformedPayload(e.to_string()))?;
    let event_id = verified
        .message_id
        .clone()
        .or(e.token)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| Refusal::MalformedPayload("no event id".into()))?;
    let occurred_at_ms = rfc3339_ms(&e.created).ok_or_else(|| Refusal::MalformedPayload("created".into()))?;
    let kind = match e.event_type.as_str() {
        "card.created" => ProviderEventKind::CardIssued,
        "card.shipped" => ProviderEventKind::CardShipped,
        "card.activated" => ProviderEventKind::CardActivated,
        "card.closed" => ProviderEventKind::CardClosed,
        _ => ProviderEventKind::Other,
    };
    Ok(EventFacts {
        event_id,
        subject_id: e.payload.memo.filter(|m| !m.is_empty()).unwrap_or_else(|| e.payload.token.clone()),
        provider_reference: e.payload.token,
        kind,
        vendor_event_type: e.event_type,
        amount_minor: None,
        currency: None,
        reason: None,
        occurred_at_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_created_is_card_issued_under_the_webhook_id() {
        let body = br#"{"event_type":"card.created","token":"ev-1","created":"2026-11-25T10:00:00Z","payload":{"token":"card-tok","memo":"card-7"}}"#;
        let facts = map(body, &Verified { message_id: Some("msg_1".into()), ..Verified::default() }).expect("maps");
        assert_eq!(facts.kind, ProviderEventKind::CardIssued);
        assert_eq!(facts.event_id, "msg_1");
        assert_eq!(facts.subject_id, "card-7");
        assert_eq!(map(body, &Verified::default()).expect("maps").event_id, "ev-1");
    }
}
