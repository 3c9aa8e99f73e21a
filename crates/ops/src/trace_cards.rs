//! Cards in `switchyard trace`: card outcomes, events and transactions in words. A
//! card's topics are keyed by our card id, so `switchyard trace <card id>`
//! finds its commands, retries, dead letters, outcomes and events; processor
//! callbacks (keyed by the processor's token) join through their
//! correlation id or the audit rows of the same card.

use crate::trace_onboarding::Line;
use std::sync::Arc;
use switchyard_bus::{AvroDecoder, BusError, RegistryClient};
use switchyard_canonical::card_event::CardEvent;
use switchyard_canonical::card_outcome::{CardOutcome, CardOutcomeStatus};
use switchyard_canonical::card_transaction::CardTransaction;

const CARD_OUTCOME_SCHEMA: &str = include_str!("../../../schemas/cards/CardOutcome.v1.avsc");
const CARD_EVENT_SCHEMA: &str = include_str!("../../../schemas/cards/CardEvent.v1.avsc");
const CARD_TRANSACTION_SCHEMA: &str = include_str!("../../../schemas/cards/CardTransaction.v1.avsc");

pub(crate) struct CardDecoders {
    outcome: AvroDecoder,
    event: AvroDecoder,
    transaction: AvroDecoder,
}

impl CardDecoders {
    pub(crate) fn new(registry: Arc<RegistryClient>) -> Result<Self, BusError> {
        Ok(Self {
            outcome: AvroDecoder::new(registry.clone(), CARD_OUTCOME_SCHEMA)?,
            event: AvroDecoder::new(registry.clone(), CARD_EVENT_SCHEMA)?,
            transaction: AvroDecoder::new(registry, CARD_TRANSACTION_SCHEMA)?,
        })
    }

    pub(crate) async fn outcome(&self, at: &str, payload: &[u8]) -> Line {
        match self.outcome.decode::<CardOutcome>(payload).await {
            Ok(o) => outcome_line(at, &o),
            Err(e) => ("outcome", None, format!("{at}: not decodable: {e}"), false),
        }
    }

    pub(crate) async fn event(&self, at: &str, payload: &[u8]) -> Line {
        match self.event.decode::<CardEvent>(payload).await {
            Ok(e) => event_line(at, &e),
            Err(e) => ("card_event", None, format!("{at}: not decodable: {e}"), false),
        }
    }

    pub(crate) async fn transaction(&self, at: &str, payload: &[u8]) -> Line {
        match self.transaction.decode::<CardTransaction>(payload).await {
            Ok(t) => transaction_line(at, &t),
            Err(e) => ("card_transaction", None, format!("{at}: not decodable: {e}"), false),
        }
    }
}

pub(crate) fn is_card_outcome(topic: &str) -> bool {
    topic.contains("cards.outcomes.")
}

fn outcome_line(at: &str, o: &CardOutcome) -> Line {
    let failed = matches!(o.status, CardOutcomeStatus::Failed | CardOutcomeStatus::Rejected);
    let mut line = format!("{at} {} via {}", o.action.as_str(), o.provider.as_deref().unwrap_or("-"));
    if let Some(state) = o.state {
        line.push_str(&format!(", card {}", state.as_str()));
    }
    if let Some(last_four) = &o.last_four {
        line.push_str(&format!(" (..{last_four})"));
    }
    if let Some(r) = o.refusal {
        line.push_str(&format!(", refused: {}", r.as_str()));
    }
    if let Some(e) = &o.error {
        line.push_str(&format!(", {}/{}: {}", e.class.as_str(), e.code.as_str(), e.message));
    }
    if o.replayed {
        line.push_str(" (answered from the store)");
    }
    ("outcome", Some(o.status.as_str().to_uppercase()), line, failed)
}

fn transaction_line(at: &str, t: &CardTransaction) -> Line {
    let mut line = format!("{at} {} minor units {} at {}, transaction {}", t.amount_minor, t.currency, t.processor, t.transaction_reference);
    if let Some(code) = t.decline_code {
        line.push_str(&format!(", declined: {}", code.as_str()));
    }
    ("card_transaction", Some(t.kind.as_str().to_owned()), line, !t.approved)
}

fn event_line(at: &str, e: &CardEvent) -> Line {
    let mut line = format!("{at} {} -> {} at {}", e.from_state.as_deref().unwrap_or("-"), e.to_state.as_deref().unwrap_or("-"), e.processor);
    if let Some(linked) = &e.linked_card_id {
        line.push_str(&format!(", linked card {linked}"));
    }
    if e.notify_cardholder {
        line.push_str(", cardholder notified");
    }
    ("card_event", Some(e.kind.as_str().to_owned()), line, false)
}
