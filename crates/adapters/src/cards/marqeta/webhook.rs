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
//! `transactions` items are Marqeta's `transaction_model`: `token` (this
//! transaction record's own, our event id), `type` (`authorization`,
//! `authorization.clearing`, `authorization.reversal`, `refund`, ...),
//! `state` (PENDING, CLEARED, COMPLETION, DECLINED, ERROR), `amount` (a
//! decimal in major units, read as written and shifted by the currency's
//! ISO 4217 exponent, never through f64), `currency_code`, `card_token`,
//! `preceding_related_transaction_token` (the authorization a clearing or
//! reversal follows: our transaction reference) and `response.code`.
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
use switchyard_canonical::card_transaction::{CardDeclineCode, CardTransactionKind};
use switchyard_canonical::ProviderEventKind;

#[derive(Deserialize)]
struct Batch {
    #[serde(default)]
    cardtransitions: Vec<CardTransition>,
    #[serde(default)]
    digitalwallettokentransitions: Vec<TokenTransition>,
    #[serde(default)]
    chargebacktransitions: Vec<ChargebackTransition>,
    #[serde(default)]
    transactions: Vec<Transaction>,
}

#[derive(Deserialize)]
struct Transaction {
    token: String,
    #[serde(rename = "type")]
    kind: String,
    state: String,
    /// Major units as Marqeta wrote them (`12.34`).
    amount: Box<serde_json::value::RawValue>,
    #[serde(default)]
    currency_code: Option<String>,
    #[serde(default)]
    card_token: Option<String>,
    #[serde(default)]
    preceding_related_transaction_token: Option<String>,
    #[serde(default)]
    created_time: Option<String>,
    #[serde(default)]
    user_transaction_time: Option<String>,
    #[serde(default)]
    response: Option<TransactionResponse>,
}

#[derive(Deserialize)]
struct TransactionResponse {
    code: String,
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
    state: Option<String>,
    #[serde(default)]
    fulfillment_status: Option<String>,
}

#[derive(Deserialize)]
struct WalletToken {
    #[serde(default)]
    token: Option<String>,
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
pub fn map_batch(body: &[u8], verified: &Verified) -> Result<Vec<EventFacts>, Refusal> {
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
            // DECISION_YELLOW: the wallet asks the cardholder to step up;
            // the wallet token's id ties that to its later activation.
            reason: Some(token_reason(e.fulfillment_status.as_deref(), e.state.as_deref(), e.digital_wallet_token.token.as_deref())),
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
    for t in batch.transactions {
        out.push(transaction_facts(t, verified)?);
    }
    if out.len() > 10 {
        return Err(Refusal::MalformedPayload(format!("{} events; Marqeta sends at most 10", out.len())));
    }
    Ok(out)
}

/// One `transactions` item as facts (see `crate::cards::transaction`). A
/// transaction without a card (a GPA load) keeps its own token as subject;
/// the card worker answers it `NotACard`.
fn transaction_facts(t: Transaction, verified: &Verified) -> Result<EventFacts, Refusal> {
    let currency = t.currency_code.as_deref().unwrap_or_default().to_ascii_uppercase();
    // A magnitude: the type gives the direction (see Lithic's mapping).
    let written = t.amount.get().trim();
    let amount_minor = switchyard_canonical::money::decimal_to_minor(written.strip_prefix('-').unwrap_or(written), &currency)
        .map_err(|e| Refusal::MalformedPayload(format!("transaction {}: {e}", t.token)))?;
    switchyard_canonical::Currency::parse(&currency).map_err(|e| Refusal::MalformedPayload(e.to_string()))?;
    let time = t.created_time.as_deref().or(t.user_transaction_time.as_deref());
    let occurred_at_ms = match time {
        Some(s) => rfc3339_ms(s).ok_or_else(|| Refusal::MalformedPayload("created_time".into()))?,
        None => verified.signed_at_ms.unwrap_or(verified.verified_at_ms),
    };
    let card_token = t.card_token.clone().filter(|c| !c.is_empty()).unwrap_or_else(|| t.token.clone());
    let reference = t.preceding_related_transaction_token.clone().filter(|p| !p.is_empty()).unwrap_or_else(|| t.token.clone());
    let result = format!("{}:{}", t.state, t.response.map(|r| r.code).unwrap_or_default());
    let mut facts = crate::cards::transaction::facts(crate::cards::transaction::Written {
        event_token: t.token.clone(),
        card_token: &card_token,
        vendor_event_type: format!("transaction.{}", t.kind),
        transaction_reference: &reference,
        result: &result,
        amount_minor,
        currency,
        occurred_at_ms,
    });
    if t.card_token.as_deref().is_none_or(str::is_empty) {
        facts.reason = Some(format!("{} nocard", facts.reason.unwrap_or_default()));
    }
    Ok(facts)
}

/// Marqeta's transaction type, in our words; `None`: not booked as a card
/// transaction here (GPA, fees, direct deposit, chargebacks, PIN changes).
fn transaction_kind(kind: &str) -> Option<CardTransactionKind> {
    use CardTransactionKind as K;
    Some(match kind {
        "authorization" | "authorization.atm.withdrawal" | "authorization.cashback" | "authorization.quasi.cash" | "pindebit.authorization" => K::Authorization,
        "authorization.advice" | "authorization.incremental" => K::AuthorizationAdjustment,
        "authorization.reversal" | "authorization.reversal.issuerexpiration" | "pindebit.authorization.reversal" => K::AuthorizationReversal,
        "authorization.clearing"
        | "authorization.clearing.atm.withdrawal"
        | "authorization.clearing.cashback"
        | "authorization.clearing.quasi.cash"
        | "pindebit.authorization.clearing"
        // Single-message PIN debit: authorized and settled in one step.
        | "pindebit"
        | "pindebit.atm.withdrawal"
        | "pindebit.cashback" => K::Clearing,
        "refund" | "refund.authorization.clearing" => K::Return,
        _ => return None,
    })
}

/// A transaction's `state:response.code` in our words. DECLINED and ERROR
/// are declines; the code says why, by Marqeta's transaction response
/// codes (0000 approved, 1001 expired, 1003 suspended, 1004/1005 stolen or
/// lost, 1016 not sufficient funds, 1806 not active, 1809 incorrect PIN,
/// 1810 invalid amount, 1811/1812 system errors). Codes we do not list
/// (fraud and velocity rules among them: not confirmed against Marqeta's
/// published table) are OTHER.
pub(crate) fn judge(result: &str) -> (bool, Option<CardDeclineCode>) {
    use CardDeclineCode as D;
    let (state, code) = result.split_once(':').unwrap_or((result, ""));
    if !matches!(state, "DECLINED" | "ERROR") {
        return (true, None);
    }
    let code = match code {
        "1016" => D::InsufficientFunds,
        "1001" => D::CardExpired,
        "1003" | "1806" => D::CardInactive,
        "1004" | "1005" => D::CardLostOrStolen,
        "1809" => D::IncorrectPin,
        "1011" | "1012" | "1015" | "1017" | "1018" | "1021" | "1802" | "1803" | "1804" | "1810" => D::InvalidTransaction,
        "1811" | "1812" => D::SystemError,
        _ if state == "ERROR" => D::SystemError,
        _ => D::Other,
    };
    (false, Some(code))
}

/// A Marqeta card transition, as the ingester published it, in our
/// lifecycle's words, by its `type`: `fulfillment.issued` and `.ordered`
/// ISSUED (ordered for printing is still issued to us), `.shipped`
/// SHIPPED, `.delivered` PENDING_ACTIVATION (as the adapter reads an
/// UNACTIVATED card's fulfillment status), `state.activated` and
/// `.reinstated` ACTIVE, `.suspended` SUSPENDED, `.terminated` TERMINATED.
/// A returned shipment (`fulfillment.rejected`) is
/// [`CardCallback::ShippingReturned`](crate::cards::CardCallback::ShippingReturned);
/// wallet-token transitions are about the card but not modelled; a
/// chargeback transition is a [`CardCallback::Dispute`](crate::cards::CardCallback::Dispute)
/// about the chargeback token. A card transaction of a type we book is a
/// [`CardCallback::Transaction`](crate::cards::CardCallback::Transaction),
/// its `state:response.code` judged by [`judge`].
pub fn callback(event: &switchyard_canonical::ProviderEvent) -> crate::cards::CardCallback {
    use crate::cards::CardCallback as C;
    use switchyard_canonical::card::CardState;
    if let Some(kind) = event.vendor_event_type.strip_prefix("transaction.") {
        if event.reason.as_deref().is_some_and(|r| r.ends_with(" nocard")) {
            return C::NotACard;
        }
        return transaction_kind(kind).and_then(|k| crate::cards::transaction::read(event, k, judge)).map_or(C::NotModeled, C::Transaction);
    }
    match event.vendor_event_type.as_str() {
        "fulfillment.issued" | "fulfillment.ordered" => C::State(CardState::Issued),
        "fulfillment.shipped" => C::State(CardState::Shipped),
        "fulfillment.delivered" => C::State(CardState::PendingActivation),
        "state.activated" | "state.reinstated" => C::State(CardState::Active),
        "state.suspended" => C::State(CardState::Suspended),
        "state.terminated" => C::State(CardState::Terminated),
        // The shipment came back (fulfillment status REJECTED).
        "fulfillment.rejected" => C::ShippingReturned,
        // A chargeback transition names its chargeback, not the card; its
        // `state` (in `reason`) through the adapter's chargeback state map.
        // A wallet token's transition: its `fulfillment_status` (in
        // `reason`) carries the decision on a provisioning request, by
        // Marqeta's names, and its `state` ACTIVE the token's activation
        // (the card worker tells it only after a step-up: an approved token
        // was told with its decision). DECISION_RED and REJECTED are not
        // published: no canonical event says "declined".
        t if t.starts_with("digitalwallettoken.") => token_word(event.reason.as_deref().unwrap_or_default()),
        t if t.starts_with("chargeback.") => match event.reason.as_deref().map(super::transformers::dispute_state) {
            Some(Ok(state)) if !event.provider_reference.is_empty() => {
                C::Dispute(crate::cards::DisputeFacts { dispute_reference: event.provider_reference.clone(), state })
            }
            _ => C::NotACard,
        },
        _ => C::NotModeled,
    }
}

/// A wallet token transition in `reason`: its fulfillment status first (as
/// callbacks stored before carried it alone), then its state and token.
fn token_reason(fulfillment_status: Option<&str>, state: Option<&str>, wallet_token: Option<&str>) -> String {
    let mut reason = fulfillment_status.unwrap_or("-").to_owned();
    for (key, value) in [("state", state), ("token", wallet_token)] {
        if let Some(v) = value.filter(|v| !v.is_empty() && !v.contains(' ')) {
            reason.push_str(&format!(" {key}={v}"));
        }
    }
    reason
}

fn token_word(reason: &str) -> crate::cards::CardCallback {
    use crate::cards::{CardCallback as C, TokenDecision as D, TokenFacts};
    let mut words = reason.split(' ');
    let fulfillment = words.next().unwrap_or_default();
    let (mut state, mut wallet_token) = (None, None);
    for word in words {
        match word.split_once('=') {
            Some(("state", v)) => state = Some(v),
            Some(("token", v)) => wallet_token = Some(v.to_owned()),
            _ => {}
        }
    }
    let decision = match (fulfillment, state) {
        ("DECISION_YELLOW", _) => D::StepUpRequired,
        ("DECISION_GREEN", _) => D::Provisioned,
        (_, Some("ACTIVE")) => D::Activated,
        _ => return C::NotModeled,
    };
    C::Token(TokenFacts { decision, wallet_token })
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_canonical::ProviderEvent;

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
            ("fulfillment.rejected", C::ShippingReturned),
            ("digitalwallettoken.state.active", C::NotModeled),
            ("chargeback.case_won", C::NotACard),
        ];
        for (t, want) in cases {
            assert_eq!(callback(&event(t)), want, "{t}");
        }
        use crate::cards::{TokenDecision as T, TokenFacts};
        let decided = |status: &str| callback(&ProviderEvent { reason: Some(status.into()), ..event("digitalwallettoken.state.requested") });
        let token = |decision, wallet_token: Option<&str>| C::Token(TokenFacts { decision, wallet_token: wallet_token.map(str::to_owned) });
        // Callbacks stored before the state and token were carried.
        assert_eq!(decided("DECISION_YELLOW"), token(T::StepUpRequired, None));
        assert_eq!(decided("DECISION_GREEN"), token(T::Provisioned, None));
        for told_otherwise in ["DECISION_RED", "REJECTED", "PROVISIONED", "DECISION_RED state=REQUEST_DECLINED token=w-1"] {
            assert_eq!(decided(told_otherwise), C::NotModeled, "{told_otherwise}");
        }
        assert_eq!(decided("DECISION_YELLOW state=REQUESTED token=w-1"), token(T::StepUpRequired, Some("w-1")));
        assert_eq!(decided("PROVISIONED state=ACTIVE token=w-1"), token(T::Activated, Some("w-1")));
        assert_eq!(decided(&token_reason(None, Some("ACTIVE"), Some("w-2"))), token(T::Activated, Some("w-2")));
        assert_eq!(token_reason(Some("PROVISIONED"), Some("ACTIVE"), Some("has space")), "PROVISIONED state=ACTIVE");
        use switchyard_canonical::card_dispute::DisputeState as D;
        let transitions = [
            ("REPRESENTMENT", D::Representment),
            ("PREARBITRATION", D::PreArbitration),
            ("ARBITRATION", D::Arbitration),
            ("CASE_WON", D::Won),
            ("WRITTEN_OFF_ISSUER", D::Won),
            ("CASE_LOST", D::Lost),
            ("NETWORK_REJECTED", D::Lost),
            ("WITHDRAWN", D::Withdrawn),
        ];
        for (state, want) in transitions {
            let mut e = event(&format!("chargeback.{}", state.to_ascii_lowercase()));
            (e.provider_reference, e.reason) = ("cb-1".into(), Some(state.into()));
            assert_eq!(callback(&e), C::Dispute(crate::cards::DisputeFacts { dispute_reference: "cb-1".into(), state: want }), "{state}");
        }
    }

    fn transaction(token: &str, kind: &str, state: &str, amount: &str, currency: &str, code: &str, preceding: Option<&str>) -> String {
        let preceding = preceding.map(|p| format!(r#","preceding_related_transaction_token":"{p}""#)).unwrap_or_default();
        format!(
            r#"{{"token":"{token}","type":"{kind}","state":"{state}","amount":{amount},"currency_code":"{currency}","card_token":"c-1",
            "acting_user_token":"u-1","user_token":"u-1","created_time":"2026-11-25T10:00:00Z","response":{{"code":"{code}","memo":"m"}}{preceding}}}"#
        )
    }

    fn transactions(items: &[String]) -> Vec<ProviderEvent> {
        let body = format!(r#"{{"transactions":[{}]}}"#, items.join(","));
        map_batch(body.as_bytes(), &Verified::default()).expect("maps").into_iter().map(|f| f.into_event("marqeta", "cards", 1, String::new())).collect()
    }

    #[test]
    fn transactions_map_exact_minor_units_by_the_currency_exponent() {
        use crate::cards::{CardCallback as C, TransactionFacts};
        use switchyard_canonical::card_transaction::{CardDeclineCode as D, CardTransactionKind as K};
        let events = transactions(&[
            transaction("t-auth", "authorization", "PENDING", "10.29", "USD", "0000", None),
            transaction("t-clear", "authorization.clearing", "COMPLETION", "10.29", "USD", "0000", Some("t-auth")),
            transaction("t-jpy", "authorization", "PENDING", "1500", "JPY", "0000", None),
            transaction("t-bhd", "refund", "COMPLETION", "12.345", "BHD", "0000", None),
            transaction("t-nsf", "authorization", "DECLINED", "99.99", "EUR", "1016", None),
            transaction("t-rev", "authorization.reversal", "COMPLETION", "10.29", "USD", "0000", Some("t-auth")),
        ]);
        let facts: Vec<TransactionFacts> = events
            .iter()
            .map(|e| match callback(e) {
                C::Transaction(t) => t,
                other => panic!("{}: {other:?}", e.event_id),
            })
            .collect();
        let got = |i: usize| (facts[i].kind, facts[i].transaction_reference.as_str(), facts[i].amount_minor, facts[i].currency.as_str(), facts[i].approved, facts[i].decline_code);
        assert_eq!(got(0), (K::Authorization, "t-auth", 1029, "USD", true, None), "10.29 * 100.0 is 1028.999... as a float");
        assert_eq!(got(1), (K::Clearing, "t-auth", 1029, "USD", true, None), "a clearing joins its authorization");
        assert_eq!(got(2), (K::Authorization, "t-jpy", 1500, "JPY", true, None), "zero-decimal");
        assert_eq!(got(3), (K::Return, "t-bhd", 12345, "BHD", true, None), "three-decimal");
        assert_eq!(got(4), (K::Authorization, "t-nsf", 9999, "EUR", false, Some(D::InsufficientFunds)));
        assert_eq!(got(5), (K::AuthorizationReversal, "t-auth", 1029, "USD", true, None));
        assert_eq!(events[0].event_id, "t-auth");
        assert_eq!((events[0].subject_id.as_str(), events[0].provider_reference.as_str()), ("c-1", "c-1"));
        let body = format!(r#"{{"transactions":[{}]}}"#, transaction("t-x", "authorization", "PENDING", "1.005", "USD", "0000", None));
        assert!(map_batch(body.as_bytes(), &Verified::default()).is_err(), "finer than a cent is refused, not rounded");
        let gpa = transactions(&[transaction("t-gpa", "gpa.credit", "COMPLETION", "5", "USD", "0000", None)]);
        assert_eq!(callback(&gpa[0]), C::NotModeled);
    }

    #[test]
    fn marqeta_response_codes_map_to_our_decline_codes() {
        use switchyard_canonical::card_transaction::CardDeclineCode as D;
        let cases = [
            ("PENDING:0000", None),
            ("COMPLETION:0000", None),
            ("DECLINED:1016", Some(D::InsufficientFunds)),
            ("DECLINED:1806", Some(D::CardInactive)),
            ("DECLINED:1003", Some(D::CardInactive)),
            ("DECLINED:1001", Some(D::CardExpired)),
            ("DECLINED:1005", Some(D::CardLostOrStolen)),
            ("DECLINED:1809", Some(D::IncorrectPin)),
            ("DECLINED:9999", Some(D::Other)),
            ("ERROR:", Some(D::SystemError)),
        ];
        for (result, want) in cases {
            assert_eq!(judge(result), (want.is_none(), want), "{result}");
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
