//! Lithic card events mapped to canonical facts.
//!
//! Lithic's OpenAPI document (`webhooks` section) declares flat bodies:
//! `{"event_type":"card.created","card_token":"<uuid>","replacement_for":null}`,
//! `card.shipped` {card_token, shipping_method, tracking_number, ...},
//! `card.updated` {card_token, state, previous_fields}, `card.reissued`,
//! `card.renewed`, and `dispute.updated` (the whole `dispute-v1`: token,
//! status, ...). They carry no time and no `memo`: the time is the signed
//! `webhook-timestamp`, and the subject is the card token, which the card
//! worker maps back to our card id. The older wrapped shape
//! `{"event_type","token","created","payload":{"token","memo"}}` (what
//! switchyard assumed before the document was pinned) is still accepted; its
//! `memo` is our card id.
//!
//! The event id is the Standard Webhooks `webhook-id`, stable across
//! Lithic's retries, falling back to the body's event token. For
//! `card.updated` the new state (`OPEN`, `PAUSED`, `CLOSED`, ...) is in
//! `reason`; for `dispute.updated` the dispute's status.

use crate::webhooks::{rfc3339_ms, EventFacts, Refusal, Verified};
use serde::Deserialize;
use switchyard_canonical::ProviderEventKind;

#[derive(Deserialize)]
struct Event {
    event_type: String,
    /// Event token (wrapped shape) or the dispute token (`dispute.updated`).
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    card_token: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    payload: Option<Card>,
}

#[derive(Deserialize)]
struct Card {
    token: String,
    #[serde(default)]
    memo: Option<String>,
    #[serde(default)]
    state: Option<String>,
}

pub(crate) fn map(body: &[u8], verified: &Verified) -> Result<EventFacts, Refusal> {
    let e: Event = serde_json::from_slice(body).map_err(|e| Refusal::MalformedPayload(e.to_string()))?;
    let wrapped = e.payload.is_some();
    let event_id = verified
        .message_id
        .clone()
        .or(if wrapped { e.token.clone() } else { None })
        .filter(|id| !id.is_empty())
        .ok_or_else(|| Refusal::MalformedPayload("no event id".into()))?;
    let occurred_at_ms = match &e.created {
        Some(c) => rfc3339_ms(c).ok_or_else(|| Refusal::MalformedPayload("created".into()))?,
        None => verified.signed_at_ms.unwrap_or(verified.verified_at_ms),
    };
    let dispute = e.event_type.starts_with("dispute");
    let (reference, memo, state) = match e.payload {
        Some(card) => (card.token, card.memo, card.state.or(e.state)),
        None if dispute => (e.token.clone().unwrap_or_default(), None, e.status.clone()),
        None => (e.card_token.clone().unwrap_or_default(), None, e.state.clone()),
    };
    if reference.is_empty() {
        return Err(Refusal::MalformedPayload("no card_token".into()));
    }
    let kind = match (e.event_type.as_str(), state.as_deref()) {
        ("card.created", _) => ProviderEventKind::CardIssued,
        ("card.shipped", _) => ProviderEventKind::CardShipped,
        ("card.activated", _) | ("card.updated", Some("OPEN")) => ProviderEventKind::CardActivated,
        ("card.closed", _) | ("card.updated", Some("CLOSED")) => ProviderEventKind::CardClosed,
        _ => ProviderEventKind::Other,
    };
    let reason = if e.event_type == "card.updated" || dispute { state } else { None };
    Ok(EventFacts {
        event_id,
        subject_id: memo.filter(|m| !m.is_empty()).unwrap_or_else(|| reference.clone()),
        provider_reference: reference,
        kind,
        vendor_event_type: e.event_type,
        amount_minor: None,
        currency: None,
        reason,
        occurred_at_ms,
    })
}

/// A Lithic card event, as the ingester published it, in our lifecycle's
/// words: `card.created` ISSUED (PENDING_FULFILLMENT for a physical card;
/// a later state fills in from its own event), `card.shipped` SHIPPED,
/// `card.updated` the new `state` (in `reason`) through the adapter's
/// state map, and the older `card.activated` / `card.closed`. Reissues and
/// renewals are not modelled; disputes are not about a card token.
pub(crate) fn callback(event: &switchyard_canonical::ProviderEvent) -> crate::cards::CardCallback {
    use crate::cards::CardCallback as C;
    use switchyard_canonical::card::CardState;
    match event.vendor_event_type.as_str() {
        "card.created" => C::State(CardState::Issued),
        "card.shipped" => C::State(CardState::Shipped),
        "card.activated" => C::State(CardState::Active),
        "card.closed" => C::State(CardState::Terminated),
        "card.updated" => match event.reason.as_deref().and_then(super::transformers::card_state) {
            Some(state) => C::State(state),
            None => C::NotModeled,
        },
        t if t.starts_with("dispute") => C::NotACard,
        _ => C::NotModeled,
    }
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

    #[test]
    fn published_flat_bodies_map_with_the_signed_time() {
        let v = Verified { message_id: Some("msg_2".into()), signed_at_ms: Some(1_700_000_000_000), verified_at_ms: 1 };
        let created = map(br#"{"event_type":"card.created","card_token":"tok-1","replacement_for":null}"#, &v).expect("maps");
        assert_eq!((created.kind, created.subject_id.as_str(), created.occurred_at_ms), (ProviderEventKind::CardIssued, "tok-1", 1_700_000_000_000));
        let paused = map(br#"{"event_type":"card.updated","card_token":"tok-1","state":"PAUSED","previous_fields":{"state":"OPEN"}}"#, &v).expect("maps");
        assert_eq!((paused.kind, paused.reason.as_deref()), (ProviderEventKind::Other, Some("PAUSED")));
        let closed = map(br#"{"event_type":"card.updated","card_token":"tok-1","state":"CLOSED","previous_fields":{}}"#, &v).expect("maps");
        assert_eq!(closed.kind, ProviderEventKind::CardClosed);
        let dispute = map(br#"{"event_type":"dispute.updated","token":"d-1","status":"SUBMITTED","amount":100}"#, &v).expect("maps");
        assert_eq!((dispute.provider_reference.as_str(), dispute.reason.as_deref()), ("d-1", Some("SUBMITTED")));
        assert!(map(br#"{"event_type":"card.created"}"#, &v).is_err(), "no card token");
    }

    #[test]
    fn callbacks_map_to_our_card_states() {
        use crate::cards::CardCallback as C;
        use switchyard_canonical::card::CardState;
        let v = Verified { message_id: Some("msg_3".into()), signed_at_ms: Some(1), verified_at_ms: 1 };
        let event = |body: &[u8]| {
            let f = map(body, &v).expect("maps");
            switchyard_canonical::ProviderEvent {
                event_id: f.event_id,
                provider: "lithic".into(),
                domain: "cards".into(),
                subject_id: f.subject_id,
                provider_reference: f.provider_reference,
                kind: f.kind,
                vendor_event_type: f.vendor_event_type,
                amount_minor: None,
                currency: None,
                reason: f.reason,
                occurred_at_ms: f.occurred_at_ms,
                received_at_ms: 1,
                payload_sha256: String::new(),
            }
        };
        assert_eq!(callback(&event(br#"{"event_type":"card.created","card_token":"t"}"#)), C::State(CardState::Issued));
        assert_eq!(callback(&event(br#"{"event_type":"card.shipped","card_token":"t"}"#)), C::State(CardState::Shipped));
        assert_eq!(callback(&event(br#"{"event_type":"card.updated","card_token":"t","state":"PAUSED"}"#)), C::State(CardState::Suspended));
        assert_eq!(callback(&event(br#"{"event_type":"card.updated","card_token":"t","state":"OPEN"}"#)), C::State(CardState::Active));
        assert_eq!(callback(&event(br#"{"event_type":"card.renewed","card_token":"t"}"#)), C::NotModeled);
        assert_eq!(callback(&event(br#"{"event_type":"dispute.updated","token":"d","status":"WON"}"#)), C::NotACard);
    }
}
