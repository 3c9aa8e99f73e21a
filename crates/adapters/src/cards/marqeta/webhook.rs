//! Marqeta webhooks mapped to canonical facts, one per event of a batch.
//!
//! A delivery is one JSON object with an array per event category
//! (`cardtransitions`, `digitalwallettokentransitions`,
//! `chargebacktransitions`, `transactions`, ...), at most ten events in all.
//! Card transition events carry `type` (`state.activated`,
//! `fulfillment.shipped`, ...), `token` (the event's own, stable across
//! Marqeta's retries: our event id), `card_token` and `created_time`. Our
//! card id is the card's `metadata.switchyard_card_id`, which transition
//! events do not carry: the subject is the card token, and the worker joins
//! it to our card id through its store.
//!
//! Authenticity: Marqeta presents HTTP Basic credentials on every delivery
//! and, when configured, `X-Marqeta-Signature` (hex HMAC-SHA256 of the raw
//! body; UNCONFIRMED, the docs also mention SHA-1): [`verify`]. The
//! ingester checks the Basic credentials (`Scheme::MarqetaBasic`) and
//! publishes every event of the batch (`WebhookVendor::map_all`).

use crate::webhooks::{rfc3339_ms, EventFacts, Refusal, Verified};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use switchyard_canonical::ProviderEventKind;

#[derive(Deserialize)]
struct Batch {
    #[serde(default)]
    cardtransitions: Vec<CardTransition>,
    #[serde(default)]
    digitalwallettokentransitions: Vec<TokenTransition>,
    #[serde(default)]
    chargebacktransitions: Vec<ChargebackTransition>,
}

#[derive(Deserialize)]
struct CardTransition {
    token: String,
    card_token: String,
    #[serde(rename = "type")]
    kind: String,
    created_time: String,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    fulfillment_status: Option<String>,
}

#[derive(Deserialize)]
struct TokenTransition {
    token: String,
    digital_wallet_token: WalletToken,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    created_time: String,
    #[serde(default)]
    fulfillment_status: Option<String>,
}

#[derive(Deserialize)]
struct WalletToken {
    #[serde(default)]
    card_token: Option<String>,
}

#[derive(Deserialize)]
struct ChargebackTransition {
    token: String,
    chargeback_token: String,
    state: String,
    created_time: String,
}

/// Checks the Basic credentials and, with a secret, the signature, in
/// constant time.
pub fn verify(authorization: Option<&str>, signature: Option<&str>, username: &str, password: &str, secret: Option<&str>, body: &[u8]) -> Result<(), Refusal> {
    let presented = authorization.ok_or(Refusal::MissingHeader("Authorization"))?;
    let encoded = presented.strip_prefix("Basic ").ok_or(Refusal::MalformedHeader("Authorization"))?;
    let expected = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    if !bool::from(encoded.trim().as_bytes().ct_eq(expected.as_bytes())) {
        return Err(Refusal::BadSignature);
    }
    let Some(secret) = secret else { return Ok(()) };
    let sig = signature.ok_or(Refusal::MissingHeader("X-Marqeta-Signature"))?;
    let sig = hex::decode(sig.trim()).map_err(|_| Refusal::MalformedHeader("X-Marqeta-Signature"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).map_err(|_| Refusal::BadSignature)?;
    mac.update(body);
    mac.verify_slice(&sig).map_err(|_| Refusal::BadSignature)
}

/// Every event of one delivery, in the order Marqeta listed them.
pub fn map_batch(body: &[u8], _verified: &Verified) -> Result<Vec<EventFacts>, Refusal> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| Refusal::MalformedPayload(e.to_string()))?;
    if !value.is_object() {
        return Err(Refusal::MalformedPayload("a Marqeta delivery is a JSON object".into()));
    }
    let batch: Batch = serde_json::from_value(value).map_err(|e| Refusal::MalformedPayload(e.to_string()))?;
    let at = |s: &str| rfc3339_ms(s).ok_or_else(|| Refusal::MalformedPayload("created_time".into()));
    let mut out = Vec::new();
    for e in batch.cardtransitions {
        let kind = match e.kind.as_str() {
            "fulfillment.issued" => ProviderEventKind::CardIssued,
            "fulfillment.shipped" => ProviderEventKind::CardShipped,
            "state.activated" | "state.reinstated" => ProviderEventKind::CardActivated,
            "state.terminated" => ProviderEventKind::CardClosed,
            // suspended, ordered, delivered, rejected (returned): no
            // canonical provider-event kind yet; the type says which.
            _ => ProviderEventKind::Other,
        };
        out.push(EventFacts {
            occurred_at_ms: at(&e.created_time)?,
            event_id: e.token,
            subject_id: e.card_token.clone(),
            provider_reference: e.card_token,
            kind,
            reason: e.state.map(|s| format!("{s}/{}", e.fulfillment_status.unwrap_or_default())),
            vendor_event_type: e.kind,
            amount_minor: None,
            currency: None,
        });
    }
    for e in batch.digitalwallettokentransitions {
        let card_token = e.digital_wallet_token.card_token.unwrap_or_default();
        out.push(EventFacts {
            occurred_at_ms: at(&e.created_time)?,
            event_id: e.token,
            subject_id: card_token.clone(),
            provider_reference: card_token,
            kind: ProviderEventKind::Other,
            // DECISION_YELLOW: the wallet asks the cardholder to step up.
            reason: e.fulfillment_status,
            vendor_event_type: format!("digitalwallettoken.{}", e.kind.unwrap_or_default()),
            amount_minor: None,
            currency: None,
        });
    }
    for e in batch.chargebacktransitions {
        out.push(EventFacts {
            occurred_at_ms: at(&e.created_time)?,
            event_id: e.token,
            subject_id: e.chargeback_token.clone(),
            provider_reference: e.chargeback_token,
            kind: ProviderEventKind::Other,
            reason: Some(e.state.clone()),
            vendor_event_type: format!("chargeback.{}", e.state.to_ascii_lowercase()),
            amount_minor: None,
            currency: None,
        });
    }
    if out.len() > 10 {
        return Err(Refusal::MalformedPayload(format!("{} events; Marqeta sends at most 10", out.len())));
    }
    Ok(out)
}

/// A Marqeta card transition, as the ingester published it, in our
/// lifecycle's words, by its `type`: `fulfillment.issued` and `.ordered`
/// ISSUED (ordered for printing is still issued to us), `.shipped`
/// SHIPPED, `.delivered` PENDING_ACTIVATION (as the adapter reads an
/// UNACTIVATED card's fulfillment status), `state.activated` and
/// `.reinstated` ACTIVE, `.suspended` SUSPENDED, `.terminated` TERMINATED.
/// A returned shipment (`fulfillment.rejected`) and wallet-token
/// transitions are about the card but not modelled; chargebacks are not
/// about a card token.
pub fn callback(event: &switchyard_canonical::ProviderEvent) -> crate::cards::CardCallback {
    use crate::cards::CardCallback as C;
    use switchyard_canonical::card::CardState;
    match event.vendor_event_type.as_str() {
        "fulfillment.issued" | "fulfillment.ordered" => C::State(CardState::Issued),
        "fulfillment.shipped" => C::State(CardState::Shipped),
        "fulfillment.delivered" => C::State(CardState::PendingActivation),
        "state.activated" | "state.reinstated" => C::State(CardState::Active),
        "state.suspended" => C::State(CardState::Suspended),
        "state.terminated" => C::State(CardState::Terminated),
        t if t.starts_with("chargeback.") => C::NotACard,
        _ => C::NotModeled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marqeta_batch_maps_one_fact_per_event() {
        let body = br#"{"cardtransitions":[
            {"token":"ev-1","card_token":"c-1","type":"fulfillment.issued","created_time":"2026-11-25T10:00:00Z","state":"UNACTIVATED","fulfillment_status":"ISSUED"},
            {"token":"ev-2","card_token":"c-1","type":"state.activated","created_time":"2026-11-25T10:01:00Z","state":"ACTIVE"}],
            "chargebacktransitions":[{"token":"cbt-1","chargeback_token":"cb-1","state":"CASE_WON","created_time":"2026-11-25T10:02:00Z"}]}"#;
        let facts = map_batch(body, &Verified::default()).expect("maps");
        assert_eq!(facts.len(), 3);
        assert_eq!((facts[0].kind, facts[0].event_id.as_str()), (ProviderEventKind::CardIssued, "ev-1"));
        assert_eq!(facts[1].kind, ProviderEventKind::CardActivated);
        assert_eq!(facts[2].subject_id, "cb-1");
        assert!(map_batch(b"[]", &Verified::default()).is_err());
    }

    #[test]
    fn card_transitions_map_to_our_card_states() {
        use crate::cards::CardCallback as C;
        use switchyard_canonical::card::CardState;
        let event = |t: &str| switchyard_canonical::ProviderEvent {
            event_id: "e".into(),
            provider: "marqeta".into(),
            domain: "cards".into(),
            subject_id: "c-1".into(),
            provider_reference: "c-1".into(),
            kind: ProviderEventKind::Other,
            vendor_event_type: t.into(),
            amount_minor: None,
            currency: None,
            reason: None,
            occurred_at_ms: 0,
            received_at_ms: 0,
            payload_sha256: String::new(),
        };
        let cases = [
            ("fulfillment.issued", C::State(CardState::Issued)),
            ("fulfillment.shipped", C::State(CardState::Shipped)),
            ("fulfillment.delivered", C::State(CardState::PendingActivation)),
            ("state.activated", C::State(CardState::Active)),
            ("state.suspended", C::State(CardState::Suspended)),
            ("state.reinstated", C::State(CardState::Active)),
            ("state.terminated", C::State(CardState::Terminated)),
            ("fulfillment.rejected", C::NotModeled),
            ("digitalwallettoken.state.active", C::NotModeled),
            ("chargeback.case_won", C::NotACard),
        ];
        for (t, want) in cases {
            assert_eq!(callback(&event(t)), want, "{t}");
        }
    }

    #[test]
    fn marqeta_basic_auth_and_signature_are_checked() {
        let auth = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("u:p"));
        let body = b"{}";
        let mut mac = Hmac::<Sha256>::new_from_slice(b"k").expect("key");
        mac.update(body);
        let sig = hex::encode(mac.finalize().into_bytes());
        assert!(verify(Some(&auth), None, "u", "p", None, body).is_ok());
        assert!(verify(Some(&auth), Some(&sig), "u", "p", Some("k"), body).is_ok());
        assert_eq!(verify(Some(&auth), Some(&sig), "u", "p", Some("k"), b"{ }"), Err(Refusal::BadSignature));
        assert_eq!(verify(Some(&auth), None, "u", "x", None, body), Err(Refusal::BadSignature));
        assert_eq!(verify(None, None, "u", "p", None, body), Err(Refusal::MissingHeader("Authorization")));
    }
}
