//! How a processor's transaction event rides in a canonical `ProviderEvent`
//! from the ingester to the card worker, without changing that schema:
//!
//! - `event_id`: the processor's token of the transaction event;
//! - `subject_id` and `provider_reference`: the card token (the key, so one
//!   card's transaction events stay in order on one partition);
//! - `vendor_event_type`: the processor's type of the event, prefixed per
//!   processor (`card_transaction.updated:CLEARING`,
//!   `transaction.authorization.clearing`);
//! - `amount_minor`, `currency`: already minor units and ISO 4217;
//! - `reason`: `txn=<transaction token> result=<processor's result code>`.
//!
//! Both ends live in each processor's `webhook` module, which writes the
//! facts ([`facts`]) and reads them back ([`read`]); only the result code's
//! meaning differs per processor.

use super::TransactionFacts;
use crate::webhooks::EventFacts;
use switchyard_canonical::card_transaction::{CardDeclineCode, CardTransactionKind};
use switchyard_canonical::{ProviderEvent, ProviderEventKind};

/// One transaction event as ingester facts.
pub(crate) struct Written<'a> {
    pub event_token: String,
    pub card_token: &'a str,
    pub vendor_event_type: String,
    pub transaction_reference: &'a str,
    pub result: &'a str,
    pub amount_minor: i64,
    pub currency: String,
    pub occurred_at_ms: i64,
}

pub(crate) fn facts(w: Written<'_>) -> EventFacts {
    EventFacts {
        event_id: w.event_token,
        subject_id: w.card_token.to_owned(),
        provider_reference: w.card_token.to_owned(),
        // No provider-event kind of its own: the card worker reads the
        // vendor type; adding a symbol would change the ProviderEvent schema.
        kind: ProviderEventKind::Other,
        vendor_event_type: w.vendor_event_type,
        amount_minor: Some(w.amount_minor),
        currency: Some(w.currency),
        reason: Some(format!("txn={} result={}", w.transaction_reference, w.result)),
        occurred_at_ms: w.occurred_at_ms,
    }
}

/// The transaction token and the processor's result code from `reason`.
fn reason_parts(reason: &str) -> Option<(&str, &str)> {
    let mut txn = None;
    let mut result = None;
    for part in reason.split(' ') {
        match part.split_once('=') {
            Some(("txn", v)) if !v.is_empty() => txn = Some(v),
            Some(("result", v)) => result = Some(v),
            _ => {}
        }
    }
    Some((txn?, result?))
}

/// Reads back what [`facts`] wrote. `judge` turns the processor's result
/// code into (approved, our decline code). `None`: the event lacks what a
/// transaction needs (it was not written by [`facts`]).
pub(crate) fn read(
    event: &ProviderEvent,
    kind: CardTransactionKind,
    judge: impl Fn(&str) -> (bool, Option<CardDeclineCode>),
) -> Option<TransactionFacts> {
    let (txn, result) = reason_parts(event.reason.as_deref()?)?;
    let amount_minor = event.amount_minor.filter(|a| *a >= 0)?;
    let currency = event.currency.clone().filter(|c| c.len() == 3)?;
    let (approved, decline_code) = judge(result);
    Some(TransactionFacts {
        event_token: event.event_id.clone(),
        transaction_reference: txn.to_owned(),
        kind,
        amount_minor,
        currency,
        approved,
        decline_code: if approved { None } else { decline_code.or(Some(CardDeclineCode::Other)) },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_carries_the_transaction_and_the_result() {
        assert_eq!(reason_parts("txn=t-1 result=APPROVED"), Some(("t-1", "APPROVED")));
        assert_eq!(reason_parts("txn=t-1 result=DECLINED:1016"), Some(("t-1", "DECLINED:1016")));
        assert_eq!(reason_parts("result=APPROVED"), None);
        assert_eq!(reason_parts("OPEN"), None);
    }
}
