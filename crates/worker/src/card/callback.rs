//! Processor callbacks moving the card store: the card worker's second
//! consumer, on `cards.provider-events.v1` (canonical [`ProviderEvent`]s the
//! webhook ingester published, keyed by the processor's card token).
//!
//! 1. Decode; undecodable bytes go to the callback DLQ.
//! 2. The processor (the event's `provider`, a catalog name) must be one
//!    this worker configures; its adapter says what the callback means for
//!    a card ([`CardProcessor::callback`]: vendor event types are mapped
//!    there, nowhere else). Kinds the lifecycle does not model (wallet
//!    tokens) and events about no card are acknowledged and counted, never
//!    dead-lettered. A returned shipment is published once per card
//!    ([`apply::shipping_returned`]).
//! 3. Find our card by (processor, token); a dispute (chargeback) callback
//!    names the processor's dispute token instead, and the card is the one
//!    whose OPEN_DISPUTE got that token. None yet: the ISSUE (or
//!    OPEN_DISPUTE) that got the token may not be stored yet, so the
//!    callback is retried through the retry topic for a bounded number of
//!    rounds, then dead-lettered with the reason.
//! 4. [`CardLifecycle::observe`](switchyard_canonical::card::CardLifecycle::observe)
//!    under compare-and-set, with the processor's event id recorded as
//!    applied in the same transaction: a redelivered callback changes
//!    nothing; a callback for a state the card already holds (the worker's
//!    own outcome told it, or the processor said it twice), a late one, or
//!    a stale one changes nothing and publishes nothing; one that skips
//!    ahead fills in the states it skipped. A dispute callback goes through
//!    the dispute machine the same way ([`apply::dispute_callback`]): one
//!    DISPUTE_UPDATED per stage entered, the provisional credit settled
//!    once, never backwards.
//! 5. Publish the card's unsent events (the same outbox and per-card turn
//!    as the command consumer), then the runtime commits the offset.
//!
//! A transaction callback (an authorization, clearing, reversal, return)
//! changes no card state: after step 3 it is recorded once by its event id
//! and published on `cards.transactions.v1` ([`super::transaction`]).
//!
//! Log lines carry our card id, the processor's event id and type, never
//! the processor's card token.

use super::apply::{self, lifecycle_of, CallbackResult};
use super::CardHandler;
use std::sync::Arc;
use std::time::Duration;
use switchyard_adapters::cards::{CardCallback, DisputeFacts, TokenDecision, TokenFacts};
use switchyard_bus::{AvroDecoder, Failure, Handler, Inbound, MessageContext};
use switchyard_canonical::card::CardState;
use switchyard_canonical::ProviderEvent;
use switchyard_store::cards::{ByReference, CallbackWrite, CardRow, Commit};
use tracing::Instrument;

use crate::answer::{dead_letter, store_down};

pub const PROVIDER_EVENT_SCHEMA: &str = include_str!("../../../../schemas/events/ProviderEvent.v1.avsc");

/// Compare-and-set attempts against concurrent writers of one card before
/// the callback takes the retry path.
const CAS_ATTEMPTS: usize = 8;

pub struct CallbackHandler {
    pub card: Arc<CardHandler>,
    pub decoder: AvroDecoder,
    /// First wait before a callback for an unknown card token is tried again.
    pub unknown_card_retry: Duration,
}

impl Handler for CallbackHandler {
    async fn handle(&self, message: Arc<Inbound>) -> Result<(), Failure> {
        let event: ProviderEvent = crate::answer::decode_command(&self.decoder, &self.card.metrics, &message).await?;
        let ctx = message.context();
        let span = tracing::info_span!(
            "card_callback",
            correlation_id = %ctx.correlation_id,
            provider = %event.provider,
            provider_event_id = %event.event_id,
            vendor_event_type = %event.vendor_event_type,
            round = message.retry_attempt(),
        );
        self.apply(&event, &ctx).instrument(span).await
    }
}

impl CallbackHandler {
    async fn apply(&self, event: &ProviderEvent, ctx: &MessageContext) -> Result<(), Failure> {
        let metrics = &self.card.metrics;
        let Some(vendor) = self.card.providers.get(&event.provider) else {
            metrics.callback(&event.provider, "unknown_provider");
            return Err(dead_letter(&format!(
                "callback {} from provider {:?}, which this card worker does not configure",
                event.event_id, event.provider
            )));
        };
        let word = match vendor.adapter.callback(event) {
            CardCallback::State(to) => Word::State(to),
            CardCallback::Dispute(facts) => Word::Dispute(facts),
            CardCallback::ShippingReturned => Word::ShippingReturned,
            CardCallback::Token(facts) => Word::Token(facts),
            CardCallback::Transaction(facts) => return self.transaction(event, ctx, facts).await,
            CardCallback::NotModeled => {
                metrics.callback(&event.provider, "not_modeled");
                tracing::debug!("callback about a card, of a kind the lifecycle does not model: acknowledged");
                return Ok(());
            }
            CardCallback::NotACard => {
                metrics.callback(&event.provider, "not_a_card");
                tracing::debug!("callback about no card: acknowledged");
                return Ok(());
            }
        };
        // `claim`: the card read by its processor token, whose version the
        // compare-and-set write below holds to; `store`: that write, which
        // records the event id (the callback's dedup) with the card.
        let mut card = self.find_for(event, &word).instrument(switchyard_bus::telemetry::child_span("claim")).await?;
        for _ in 0..CAS_ATTEMPTS {
            match self.commit(event, ctx, &card, &word).await? {
                Some(result) => {
                    metrics.callback(&event.provider, result);
                    tracing::debug!(card_id = %card.card_id, result, to = word.observed(), "callback applied");
                    // Publishes this callback's events, and any a crash left unsent.
                    return self.card.flush_card(ctx, &card.card_id).await;
                }
                None => card = self.find_for(event, &word).instrument(switchyard_bus::telemetry::child_span("claim")).await?,
            }
        }
        Err(Failure::Retry { reason: format!("card {} kept changing while callback {} was applied", card.card_id, event.event_id), delay: Duration::from_secs(1) })
    }

    async fn find_for(&self, event: &ProviderEvent, word: &Word) -> Result<CardRow, Failure> {
        match word {
            Word::State(_) | Word::ShippingReturned | Word::Token(_) => self.find(event).await,
            Word::Dispute(facts) => self.find_dispute(event, facts).await,
        }
    }

    /// The card holding the dispute; retried while none does (its
    /// OPEN_DISPUTE outcome may not be stored yet), then dead-lettered
    /// like an unknown card token: a dispute opened at the processor
    /// without us is for a person.
    async fn find_dispute(&self, event: &ProviderEvent, facts: &DisputeFacts) -> Result<CardRow, Failure> {
        let found = self.card.cards.find_by_dispute(&event.provider, &facts.dispute_reference).await.map_err(store_down)?;
        self.one_card(event, found, "unknown_dispute", "dispute token")
    }

    /// Our card the callback is about; retried while no card holds the token.
    pub(super) async fn find(&self, event: &ProviderEvent) -> Result<CardRow, Failure> {
        let found = self.card.cards.find_by_reference(&event.provider, &event.provider_reference).await.map_err(store_down)?;
        self.one_card(event, found, "unknown_card", "card token")
    }

    fn one_card(&self, event: &ProviderEvent, found: ByReference, unknown: &str, what: &str) -> Result<CardRow, Failure> {
        match found {
            ByReference::One(card) => Ok(card),
            ByReference::None => {
                self.card.metrics.callback(&event.provider, unknown);
                Err(Failure::Retry {
                    reason: format!(
                        "no card of ours holds the {} {what} of callback {} ({}); the command that got it may not be stored yet",
                        event.provider, event.event_id, event.vendor_event_type
                    ),
                    delay: self.unknown_card_retry,
                })
            }
            ByReference::Ambiguous => Err(dead_letter(&format!(
                "two cards of ours hold the {} {what} of callback {}: the card store needs repair",
                event.provider, event.event_id
            ))),
        }
    }

    /// One compare-and-set attempt: `Some(result)` once the callback is
    /// recorded (now or before), `None` when the card moved since it was read.
    async fn commit(&self, event: &ProviderEvent, ctx: &MessageContext, card: &CardRow, word: &Word) -> Result<Option<&'static str>, Failure> {
        let broken = |e: String| dead_letter(&format!("callback {} on card {}: {e}", event.event_id, card.card_id));
        let before = lifecycle_of(card).map_err(broken)?.state;
        let change = match word {
            Word::State(to) => apply::callback(card, *to, event.occurred_at_ms, &ctx.correlation_id.0),
            Word::Dispute(facts) => apply::dispute_callback(card, facts, event.occurred_at_ms, &ctx.correlation_id.0),
            Word::ShippingReturned => apply::shipping_returned(card, event.occurred_at_ms, &ctx.correlation_id.0),
            Word::Token(facts) => apply::token_decision(card, facts, event.occurred_at_ms, &ctx.correlation_id.0),
        }
        .map_err(broken)?;
        let detail = serde_json::json!({
            "provider": event.provider,
            "provider_event_id": event.event_id,
            "vendor_event_type": event.vendor_event_type,
            "observed": word.observed(),
            "dispute": matches!(word, Word::Dispute(_)),
            "from": before.as_str(),
            "result": change.result.as_str(),
            "events": change.events.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(),
        })
        .to_string();
        let action = if change.result == CallbackResult::Contradiction { "card_callback_contradiction" } else { "card_callback" };
        let write = CallbackWrite {
            provider: &event.provider,
            event_id: &event.event_id,
            row: &change.row,
            read_version: change.read_version,
            result: change.result.as_str(),
            events: change.events.clone(),
            audit: vec![(action, detail)],
            correlation_id: &ctx.correlation_id.0,
        };
        match self.card.cards.commit_callback(&write).instrument(switchyard_bus::telemetry::child_span("store")).await.map_err(store_down)? {
            Commit::Applied => Ok(Some(change.result.as_str())),
            Commit::Duplicate => Ok(Some("duplicate")),
            Commit::Conflict => Ok(None),
        }
    }
}

/// What a callback says: a card state, a returned shipment, a dispute's
/// stage, or the decision on a wallet token.
enum Word {
    State(CardState),
    ShippingReturned,
    Dispute(DisputeFacts),
    Token(TokenFacts),
}

impl Word {
    fn observed(&self) -> &'static str {
        match self {
            Word::State(to) => to.as_str(),
            Word::ShippingReturned => "SHIPPING_RETURNED",
            Word::Dispute(facts) => facts.state.as_str(),
            Word::Token(TokenFacts { decision: TokenDecision::Provisioned, .. }) => "TOKEN_PROVISIONED",
            Word::Token(TokenFacts { decision: TokenDecision::StepUpRequired, .. }) => "TOKEN_STEP_UP_REQUIRED",
            Word::Token(TokenFacts { decision: TokenDecision::Activated, .. }) => "TOKEN_ACTIVATED",
        }
    }
}
