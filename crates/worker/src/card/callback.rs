//! Processor callbacks moving the card store: the card worker's second
//! consumer, on `cards.provider-events.v1` (canonical [`ProviderEvent`]s the
//! webhook ingester published, keyed by the processor's card token).
//!
//! 1. Decode; undecodable bytes go to the callback DLQ.
//! 2. The processor (the event's `provider`, a catalog name) must be one
//!    this worker configures; its adapter says what the callback means for
//!    a card ([`CardProcessor::callback`]: vendor event types are mapped
//!    there, nowhere else). Kinds the lifecycle does not model (wallet
//!    tokens, returned shipments) and events about no card (chargebacks,
//!    disputes) are acknowledged and counted, never dead-lettered.
//! 3. Find our card by (processor, token). None yet: the ISSUE that got the
//!    token may not be stored yet, so the callback is retried through the
//!    retry topic for a bounded number of rounds, then dead-lettered with
//!    the reason.
//! 4. [`CardLifecycle::observe`](switchyard_canonical::card::CardLifecycle::observe)
//!    under compare-and-set, with the processor's event id recorded as
//!    applied in the same transaction: a redelivered callback changes
//!    nothing; a callback for a state the card already holds (the worker's
//!    own outcome told it, or the processor said it twice), a late one, or
//!    a stale one changes nothing and publishes nothing; one that skips
//!    ahead fills in the states it skipped.
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
use switchyard_adapters::cards::CardCallback;
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
        let to = match vendor.adapter.callback(event) {
            CardCallback::State(to) => to,
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
        let mut card = self.find(event).await?;
        for _ in 0..CAS_ATTEMPTS {
            match self.commit(event, ctx, &card, to).await? {
                Some(result) => {
                    metrics.callback(&event.provider, result);
                    tracing::debug!(card_id = %card.card_id, result, to = to.as_str(), "callback applied");
                    // Publishes this callback's events, and any a crash left unsent.
                    return self.card.flush_card(ctx, &card.card_id).await;
                }
                None => card = self.find(event).await?,
            }
        }
        Err(Failure::Retry { reason: format!("card {} kept changing while callback {} was applied", card.card_id, event.event_id), delay: Duration::from_secs(1) })
    }

    /// Our card the callback is about; retried while no card holds the token.
    pub(super) async fn find(&self, event: &ProviderEvent) -> Result<CardRow, Failure> {
        match self.card.cards.find_by_reference(&event.provider, &event.provider_reference).await.map_err(store_down)? {
            ByReference::One(card) => Ok(card),
            ByReference::None => {
                self.card.metrics.callback(&event.provider, "unknown_card");
                Err(Failure::Retry {
                    reason: format!(
                        "no card of ours holds the {} card token of callback {} ({}); its issuance may not be stored yet",
                        event.provider, event.event_id, event.vendor_event_type
                    ),
                    delay: self.unknown_card_retry,
                })
            }
            ByReference::Ambiguous => Err(dead_letter(&format!(
                "two cards of ours hold the {} card token of callback {}: the card store needs repair",
                event.provider, event.event_id
            ))),
        }
    }

    /// One compare-and-set attempt: `Some(result)` once the callback is
    /// recorded (now or before), `None` when the card moved since it was read.
    async fn commit(&self, event: &ProviderEvent, ctx: &MessageContext, card: &CardRow, to: CardState) -> Result<Option<&'static str>, Failure> {
        let broken = |e: String| dead_letter(&format!("callback {} on card {}: {e}", event.event_id, card.card_id));
        let before = lifecycle_of(card).map_err(broken)?.state;
        let change = apply::callback(card, to, event.occurred_at_ms, &ctx.correlation_id.0).map_err(broken)?;
        let detail = serde_json::json!({
            "provider": event.provider,
            "provider_event_id": event.event_id,
            "vendor_event_type": event.vendor_event_type,
            "observed": to.as_str(),
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
        match self.card.cards.commit_callback(&write).await.map_err(store_down)? {
            Commit::Applied => Ok(Some(change.result.as_str())),
            Commit::Duplicate => Ok(Some("duplicate")),
            Commit::Conflict => Ok(None),
        }
    }
}
