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
//! `reason`; for `dispute.updated` the dispute's `status`, with its
//! `resolution_reason` after a colon when it has one
//! (`CASE_CLOSED:WITHDRAWN`), and the dispute token as the reference.
//!
//! `card_transaction.updated` carries the whole `card_transaction` (token,
//! card_token, status, result, `events[]`), and Lithic sends it again as
//! the transaction moves on, each time with every event so far. It maps to
//! one fact per element of `events` ([`map_all`]), under the transaction
//! event's own `token`, so the ingester's dedup and the card worker's see
//! an authorization once however many later deliveries repeat it. Amounts
//! are the event's `amounts.cardholder` (integer minor units and currency;
//! the deprecated `amount` with the transaction's cardholder currency when
//! absent). See `crate::cards::transaction` for how the facts ride.

use crate::webhooks::{rfc3339_ms, EventFacts, Refusal, Verified};
use serde::Deserialize;
use switchyard_canonical::card_transaction::{CardDeclineCode, CardTransactionKind};
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
    /// `dispute-v1`'s `resolution_reason`: what a `CASE_CLOSED` ended as.
    #[serde(default)]
    resolution_reason: Option<String>,
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

/// `card_transaction` as the webhook body carries it (fields switchyard reads).
#[derive(Deserialize)]
struct Transaction {
    token: String,
    card_token: String,
    #[serde(default)]
    events: Vec<TransactionEvent>,
    #[serde(default)]
    amounts: Option<Amounts>,
}

#[derive(Deserialize)]
struct TransactionEvent {
    token: String,
    #[serde(rename = "type")]
    kind: String,
    created: String,
    result: String,
    /// Deprecated, settlement currency; read only without `amounts`.
    #[serde(default)]
    amount: Option<i64>,
    #[serde(default)]
    amounts: Option<Amounts>,
}

#[derive(Deserialize)]
struct Amounts {
    cardholder: Amount,
}

#[derive(Deserialize)]
struct Amount {
    amount: i64,
    currency: String,
}

pub(crate) const TRANSACTION_UPDATED: &str = "card_transaction.updated";

/// Every event a delivery carries: one per transaction event for
/// `card_transaction.updated`, else the one card or dispute event.
pub(crate) fn map_all(body: &[u8], verified: &Verified) -> Result<Vec<EventFacts>, Refusal> {
    #[derive(Deserialize)]
    struct Head {
        event_type: String,
    }
    let head: Head = serde_json::from_slice(body).map_err(|e| Refusal::MalformedPayload(e.to_string()))?;
    if head.event_type != TRANSACTION_UPDATED {
        return map(body, verified).map(|f| vec![f]);
    }
    let t: Transaction = serde_json::from_slice(body).map_err(|e| Refusal::MalformedPayload(e.to_string()))?;
    if t.card_token.is_empty() || t.token.is_empty() {
        return Err(Refusal::MalformedPayload("card transaction without its token or card_token".into()));
    }
    let mut out = Vec::with_capacity(t.events.len());
    for e in &t.events {
        let (amount, currency) = match (&e.amounts, e.amount, &t.amounts) {
            (Some(a), _, _) => (a.cardholder.amount, a.cardholder.currency.clone()),
            (None, Some(amount), Some(t)) => (amount, t.cardholder.currency.clone()),
            _ => return Err(Refusal::MalformedPayload(format!("transaction event {} has no amount", e.token))),
        };
        let currency = currency.to_ascii_uppercase();
        // A magnitude: the event type (and `effective_polarity`) gives the
        // direction, so a signed amount is not refused (a 400 would have
        // Lithic retry the whole transaction for days).
        let amount = amount.checked_abs();
        let (false, Some(amount), Ok(_)) = (e.token.is_empty(), amount, switchyard_canonical::Currency::parse(&currency)) else {
            return Err(Refusal::MalformedPayload("transaction event token, amount or currency".into()));
        };
        out.push(crate::cards::transaction::facts(crate::cards::transaction::Written {
            event_token: e.token.clone(),
            card_token: &t.card_token,
            vendor_event_type: format!("{TRANSACTION_UPDATED}:{}", e.kind),
            transaction_reference: &t.token,
            result: &e.result,
            amount_minor: amount,
            currency,
            occurred_at_ms: rfc3339_ms(&e.created).ok_or_else(|| Refusal::MalformedPayload("event created".into()))?,
        }));
    }
    Ok(out)
}

/// Lithic's transaction event type, in our words; `None`: not a money
/// movement we book (a balance inquiry) or not modelled yet (corrections,
/// credit authorizations).
fn transaction_kind(event_type: &str) -> Option<CardTransactionKind> {
    use CardTransactionKind as K;
    Some(match event_type {
        "AUTHORIZATION" => K::Authorization,
        "AUTHORIZATION_ADVICE" => K::AuthorizationAdjustment,
        "AUTHORIZATION_REVERSAL" | "AUTHORIZATION_EXPIRY" => K::AuthorizationReversal,
        // Single-message: authorized and settled in one step.
        "CLEARING" | "FINANCIAL_AUTHORIZATION" => K::Clearing,
        "RETURN" | "FINANCIAL_CREDIT_AUTHORIZATION" => K::Return,
        "RETURN_REVERSAL" => K::ReturnReversal,
        _ => return None,
    })
}

/// Lithic's `decline_result` (on the event), in our words.
pub(crate) fn judge(result: &str) -> (bool, Option<CardDeclineCode>) {
    use CardDeclineCode as D;
    let code = match result {
        "APPROVED" => return (true, None),
        "INSUFFICIENT_FUNDS" | "INSUFFICIENT_FUNDS_PRELOAD" => D::InsufficientFunds,
        "CARD_CLOSED" | "CARD_PAUSED" | "ACCOUNT_PAUSED" | "INACTIVE_ACCOUNT" | "ACCOUNT_STATE_TRANSACTION_FAIL" => D::CardInactive,
        "SUSPECTED_FRAUD" | "FRAUD_ADVICE" => D::SuspectedFraud,
        "INCORRECT_PIN" => D::IncorrectPin,
        "USER_TRANSACTION_LIMIT" | "SINGLE_USE_RECHARGED" => D::LimitExceeded,
        "MERCHANT_BLACKLIST" | "UNAUTHORIZED_MERCHANT" => D::MerchantBlocked,
        "INVALID_CARD_DETAILS" | "INVALID_TRANSACTION" | "ORIGINAL_NOT_FOUND" | "PREVIOUSLY_COMPLETED" => D::InvalidTransaction,
        "BANK_CONNECTION_ERROR" | "BANK_NOT_VERIFIED" | "SWITCH_INOPERATIVE_ADVICE" | "UNKNOWN_HOST_TIMEOUT" | "IGNORED_TTL_EXPIRY" => D::SystemError,
        _ => D::Other,
    };
    (false, Some(code))
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
        // `status` alone does not say how a closed case ended: the
        // resolution rides along as `<status>:<resolution_reason>`.
        None if dispute => {
            let status = match (&e.status, &e.resolution_reason) {
                (Some(s), Some(r)) => Some(format!("{s}:{r}")),
                (s, _) => s.clone(),
            };
            (e.token.clone().unwrap_or_default(), None, status)
        }
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
/// renewals are not modelled; `dispute.updated` is a
/// [`CardCallback::Dispute`](crate::cards::CardCallback::Dispute) about the
/// dispute token. A
/// transaction event is a [`CardCallback::Transaction`](crate::cards::CardCallback::Transaction)
/// when its type is one we book, with the event's `result` judged by [`judge`].
pub(crate) fn callback(event: &switchyard_canonical::ProviderEvent) -> crate::cards::CardCallback {
    use crate::cards::CardCallback as C;
    use switchyard_canonical::card::CardState;
    if let Some(event_type) = event.vendor_event_type.strip_prefix(TRANSACTION_UPDATED).and_then(|t| t.strip_prefix(':')) {
        return transaction_kind(event_type)
            .and_then(|kind| crate::cards::transaction::read(event, kind, judge))
            .map_or(C::NotModeled, C::Transaction);
    }
    match event.vendor_event_type.as_str() {
        "card.created" => C::State(CardState::Issued),
        "card.shipped" => C::State(CardState::Shipped),
        "card.activated" => C::State(CardState::Active),
        "card.closed" => C::State(CardState::Terminated),
        "card.updated" => match event.reason.as_deref().and_then(super::transformers::card_state) {
            Some(state) => C::State(state),
            None => C::NotModeled,
        },
        "dispute.updated" => dispute(event),
        t if t.starts_with("dispute") => C::NotACard,
        _ => C::NotModeled,
    }
}

/// `dispute.updated`: the status (and for `CASE_CLOSED` the resolution
/// reason) in `reason` as [`map`] wrote it, through the same status map as
/// the adapter's answers. An unreadable status is acknowledged as not
/// about a card rather than guessed.
fn dispute(event: &switchyard_canonical::ProviderEvent) -> crate::cards::CardCallback {
    use crate::cards::{CardCallback as C, DisputeFacts};
    let Some(reason) = event.reason.as_deref() else { return C::NotACard };
    let (status, resolution) = match reason.split_once(':') {
        Some((s, r)) => (s, Some(r)),
        None => (reason, None),
    };
    match super::transformers::dispute_state(status, resolution) {
        Some(state) if !event.provider_reference.is_empty() => C::Dispute(DisputeFacts { dispute_reference: event.provider_reference.clone(), state }),
        _ => C::NotACard,
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
        assert_eq!(callback(&event(br#"{"event_type":"dispute.updated","token":"d","status":"WON"}"#)), C::NotACard, "not a Lithic status");
        let disputed = |body: &[u8]| match callback(&event(body)) {
            C::Dispute(f) => Some((f.dispute_reference, f.state)),
            _ => None,
        };
        use switchyard_canonical::card_dispute::DisputeState as D;
        let cases: [(&[u8], D); 8] = [
            (br#"{"event_type":"dispute.updated","token":"d","status":"NEW","resolution_reason":null}"#, D::Opened),
            (br#"{"event_type":"dispute.updated","token":"d","status":"PENDING_CUSTOMER"}"#, D::Opened),
            (br#"{"event_type":"dispute.updated","token":"d","status":"SUBMITTED"}"#, D::Submitted),
            (br#"{"event_type":"dispute.updated","token":"d","status":"REPRESENTMENT"}"#, D::Representment),
            (br#"{"event_type":"dispute.updated","token":"d","status":"PREARBITRATION"}"#, D::PreArbitration),
            (br#"{"event_type":"dispute.updated","token":"d","status":"CASE_WON","resolution_reason":"WON_ARBITRATION"}"#, D::Won),
            (br#"{"event_type":"dispute.updated","token":"d","status":"CASE_CLOSED","resolution_reason":"WITHDRAWN"}"#, D::Withdrawn),
            (br#"{"event_type":"dispute.updated","token":"d","status":"CASE_CLOSED","resolution_reason":"CASE_LOST"}"#, D::Lost),
        ];
        for (body, want) in cases {
            assert_eq!(disputed(body), Some(("d".to_owned(), want)), "{}", String::from_utf8_lossy(body));
        }
        let refunded = br#"{"event_type":"dispute.updated","token":"d","status":"CASE_CLOSED","resolution_reason":"REFUNDED"}"#;
        assert_eq!(disputed(refunded), Some(("d".to_owned(), D::Won)), "the merchant refunded: the cardholder keeps the money");
    }

    /// A `card_transaction.updated` body as Lithic's `card_transaction`
    /// schema declares it (trimmed to what switchyard reads, plus `status`).
    fn transaction(events: &str) -> Vec<u8> {
        format!(
            r#"{{"event_type":"card_transaction.updated","token":"txn-1","card_token":"card-tok","status":"SETTLED","result":"APPROVED",
            "amounts":{{"cardholder":{{"amount":1250,"conversion_rate":"1.0","currency":"USD"}},"hold":{{"amount":0,"currency":"USD"}},"merchant":{{"amount":1250,"currency":"USD"}},"settlement":{{"amount":1250,"currency":"USD"}}}},
            "events":[{events}]}}"#
        )
        .into_bytes()
    }

    fn event(token: &str, kind: &str, result: &str, amount: i64, currency: &str) -> String {
        format!(
            r#"{{"token":"{token}","type":"{kind}","result":"{result}","created":"2026-11-25T10:00:00Z","amount":{amount},"effective_polarity":"DEBIT",
            "amounts":{{"cardholder":{{"amount":{amount},"conversion_rate":"1.0","currency":"{currency}"}},"merchant":{{"amount":{amount},"currency":"{currency}"}},"settlement":null}},
            "detailed_results":[],"rule_results":[],"network_info":null}}"#
        )
    }

    fn published(f: EventFacts) -> switchyard_canonical::ProviderEvent {
        f.into_event("lithic", "cards", 1, String::new())
    }

    #[test]
    fn a_card_transaction_maps_one_fact_per_event_under_the_event_token() {
        use crate::cards::{CardCallback as C, TransactionFacts};
        use switchyard_canonical::card_transaction::{CardDeclineCode as D, CardTransactionKind as K};
        let v = Verified { message_id: Some("msg_9".into()), signed_at_ms: Some(1), verified_at_ms: 1 };
        let body = transaction(&[event("ev-a", "AUTHORIZATION", "APPROVED", 1250, "USD"), event("ev-c", "CLEARING", "APPROVED", 1250, "USD")].join(","));
        let facts = map_all(&body, &v).expect("maps");
        assert_eq!(facts.iter().map(|f| f.event_id.as_str()).collect::<Vec<_>>(), ["ev-a", "ev-c"], "the event tokens, not the webhook id");
        assert!(facts.iter().all(|f| f.subject_id == "card-tok" && f.provider_reference == "card-tok"));
        assert_eq!(facts[0].occurred_at_ms, 1_795_600_800_000, "the event's own created");
        let want = |token: &str, kind| TransactionFacts {
            event_token: token.into(),
            transaction_reference: "txn-1".into(),
            kind,
            amount_minor: 1250,
            currency: "USD".into(),
            approved: true,
            decline_code: None,
        };
        assert_eq!(callback(&published(facts[0].clone())), C::Transaction(want("ev-a", K::Authorization)));
        assert_eq!(callback(&published(facts[1].clone())), C::Transaction(want("ev-c", K::Clearing)));
        // A later delivery repeating an event digests the same for it.
        let again = map_all(&transaction(&event("ev-a", "AUTHORIZATION", "APPROVED", 1250, "USD")), &v).expect("maps");
        let vendor = crate::webhooks::WebhookVendor::Lithic;
        assert_eq!(vendor.digest(&body, &facts[0]), vendor.digest(b"another body", &again[0]));
        assert!(crate::webhooks::WebhookVendor::Lithic.map(&body, &v).is_err(), "two events need map_all");

        let declined = map_all(&transaction(&event("ev-d", "AUTHORIZATION", "INSUFFICIENT_FUNDS", 999, "JPY")), &v).expect("maps");
        let C::Transaction(t) = callback(&published(declined[0].clone())) else { panic!("a transaction") };
        assert_eq!((t.approved, t.decline_code, t.amount_minor, t.currency.as_str()), (false, Some(D::InsufficientFunds), 999, "JPY"), "Lithic's amounts are minor units already");
        let reversal = map_all(&transaction(&event("ev-r", "AUTHORIZATION_EXPIRY", "APPROVED", 5, "USD")), &v).expect("maps");
        assert!(matches!(callback(&published(reversal[0].clone())), C::Transaction(TransactionFacts { kind: K::AuthorizationReversal, .. })));
        let inquiry = map_all(&transaction(&event("ev-b", "BALANCE_INQUIRY", "APPROVED", 0, "USD")), &v).expect("maps");
        assert_eq!(callback(&published(inquiry[0].clone())), C::NotModeled, "no money moves");
        assert!(map_all(&transaction(&event("ev-x", "CLEARING", "APPROVED", 5, "usd1")), &v).is_err(), "a currency that is no ISO code");
        let signed = map_all(&transaction(&event("ev-s", "AUTHORIZATION_REVERSAL", "APPROVED", -700, "USD")), &v).expect("maps");
        assert_eq!(signed[0].amount_minor, Some(700), "a magnitude; the type gives the direction");
    }

    #[test]
    fn lithic_results_map_to_our_decline_codes() {
        use switchyard_canonical::card_transaction::CardDeclineCode as D;
        let cases = [
            ("APPROVED", None),
            ("INSUFFICIENT_FUNDS", Some(D::InsufficientFunds)),
            ("CARD_PAUSED", Some(D::CardInactive)),
            ("CARD_CLOSED", Some(D::CardInactive)),
            ("SUSPECTED_FRAUD", Some(D::SuspectedFraud)),
            ("INCORRECT_PIN", Some(D::IncorrectPin)),
            ("USER_TRANSACTION_LIMIT", Some(D::LimitExceeded)),
            ("UNAUTHORIZED_MERCHANT", Some(D::MerchantBlocked)),
            ("UNKNOWN_HOST_TIMEOUT", Some(D::SystemError)),
            ("SOMETHING_NEW", Some(D::Other)),
        ];
        for (result, want) in cases {
            assert_eq!(judge(result), (want.is_none(), want), "{result}");
        }
    }
}
