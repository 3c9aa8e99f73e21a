//! The card handler: DESIGN.md's processing contract for cards, on the
//! shared consumer runtime.
//!
//! 1. Decode; undecodable bytes go to the DLQ. A command invalid in itself
//!    gets a REJECTED outcome without a processor call.
//! 2. Route and claim `(cards, idempotency_key)` before any call: a new ISSUE
//!    goes where the routing policy says; every other command goes to the
//!    processor that holds the card (recorded in the card store), never
//!    elsewhere. A completed claim is answered from the store (`replayed`);
//!    another payload under the key is a collision. Another delivery's
//!    unfinished claim is taken over through its attempt lease
//!    ([`crate::attempt`]) and resumed at its recorded processor and key.
//! 3. Judge the command against the card ([`CardLifecycle::admit`]): an
//!    illegal one is REJECTED with its refusal code, and no processor hears
//!    of it. An ISSUE (and a REPLACE, for its new card id) reserves the card
//!    id first, so one card id is issued at most once across processors.
//! 4. Call the processor with the pass-through key, fenced on the lease.
//!    Transient failures retry in place, then through the retry topic; only
//!    a definite refusal of a fresh ISSUE claim fails over to the secondary;
//!    an ambiguous result (timeout, 5xx after sending, 409 in flight) stays
//!    at its processor under the same key, is asked about there before it
//!    is sent again, and ends `pending_unknown` when no answer comes
//!    ([`unresolved`]).
//! 5. Map the answer, compare-and-set the card with the command's key and
//!    its events in one transaction ([`switchyard_store::cards`]), complete
//!    the claim, publish the card events and one outcome; then the runtime
//!    commits the offset.
//!
//! A second consumer ([`callback`], its own group on
//! `cards.provider-events.v1`) applies processor callbacks to the same card
//! rows under the same compare-and-set, and publishes through the same
//! outbox: one event per real state change, whoever saw it first. Its
//! transaction callbacks become one `CardTransaction` each on
//! `cards.transactions.v1` ([`transaction`]), through their own outbox.
//!
//! Nothing here logs a PAN (we never hold one), a PIN block or a processor
//! token: log lines carry our card id, the key and error classes only.

mod apply;
pub mod callback;
pub mod config;
mod execute;
mod lookup;
pub mod publish;
pub mod run;
mod transaction;
mod unresolved;

use crate::attempt::{self, AttemptLease, TakeOver};
use crate::check::NO_NEEDS;
use crate::metrics::Metrics;
use crate::retry::RetryPolicy;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use switchyard_adapters::cards::CardProcessor;
use switchyard_bus::{AvroDecoder, AvroEncoder, Failure, Handler, Inbound, MessageContext, Publisher};
use switchyard_canonical::card::{CardAction, CardCommand};
use switchyard_canonical::card_outcome::CardOutcome;
use switchyard_canonical::{ErrorClass, ErrorCode, OutcomeError};
use switchyard_routing::Router;
use switchyard_store::card_transactions::CardTransactions;
use switchyard_store::cards::{CardRow, CardStore};
use switchyard_store::{Claim, Record, RecordState, Store};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::answer::{dead_letter, store_down};

/// The store domain, metrics label and topic prefix.
pub const DOMAIN: &str = "cards";
pub const CARD_COMMAND_SCHEMA: &str = include_str!("../../../../schemas/cards/CardCommand.v1.avsc");
pub const CARD_OUTCOME_SCHEMA: &str = include_str!("../../../../schemas/cards/CardOutcome.v1.avsc");
pub const CARD_EVENT_SCHEMA: &str = include_str!("../../../../schemas/cards/CardEvent.v1.avsc");
pub const CARD_TRANSACTION_SCHEMA: &str = include_str!("../../../../schemas/cards/CardTransaction.v1.avsc");

/// A configured processor and its call slots.
pub struct CardVendor {
    pub adapter: CardProcessor,
    /// One permit per call in flight; bounds what a slow processor ties up.
    pub slots: Arc<tokio::sync::Semaphore>,
    /// How long the processor remembers our key; `None`: for good.
    pub key_retention: Option<Duration>,
    pub call_timeout: Duration,
}

impl CardVendor {
    /// Whether a key assigned at `since_ms` may be forgotten by the time a
    /// request sent now arrives: the payout rule (a tenth of the retention
    /// for clocks, at least a call timeout for a late send).
    pub fn may_have_forgotten(&self, since_ms: i64) -> bool {
        let Some(retention) = self.key_retention else { return false };
        let margin = (retention / 10).max(self.call_timeout + Duration::from_secs(1));
        let usable = retention.saturating_sub(margin);
        u128::try_from(switchyard_canonical::now_ms() - since_ms).unwrap_or(0) >= usable.as_millis()
    }
}

pub struct CardHandler {
    pub decoder: AvroDecoder,
    pub encoder: AvroEncoder,
    pub event_encoder: AvroEncoder,
    pub transaction_encoder: AvroEncoder,
    pub publisher: Publisher,
    pub store: Store,
    pub cards: CardStore,
    /// The transaction outbox (`cards.transactions.v1`), fed by callbacks.
    pub transactions: CardTransactions,
    pub providers: HashMap<String, CardVendor>,
    /// Where new cards go: primary/secondary and a breaker per processor.
    pub router: Arc<Router>,
    pub outcomes_topic: String,
    pub events_topic: String,
    pub transactions_topic: String,
    pub retry: RetryPolicy,
    pub lease_ttl: Duration,
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
    /// Shared with the callback consumer: one flusher per card at a time.
    pub flush_locks: publish::FlushLocks,
}

impl Handler for CardHandler {
    async fn handle(&self, message: Arc<Inbound>) -> Result<(), Failure> {
        let command: CardCommand = crate::answer::decode_command(&self.decoder, &self.metrics, &message).await?;
        let ctx = message.context();
        let span = tracing::info_span!(
            "card",
            correlation_id = %ctx.correlation_id,
            card_id = %command.card_id,
            idempotency_key = %command.idempotency_key,
            action = command.action.as_str(),
        );
        self.process(command, ctx).instrument(span).await
    }
}

impl CardHandler {
    async fn process(&self, command: CardCommand, ctx: MessageContext) -> Result<(), Failure> {
        if let Err(reason) = command.validate() {
            let error = OutcomeError { class: ErrorClass::Permanent, code: ErrorCode::InvalidRequest, message: reason };
            return self.publish_outcome(&ctx, &CardOutcome::rejected(&command, None, error), command.requested_at_ms).await;
        }
        let card = self.cards.load(&command.card_id).await.map_err(store_down)?;
        let provider = self.route(&command, card.as_ref())?;
        let provider_key = self.providers.get(&provider).map(|v| v.adapter.provider_key(&command.idempotency_key)).unwrap_or_default();
        let claim = Claim {
            domain: DOMAIN.into(),
            idempotency_key: command.idempotency_key.clone(),
            fingerprint: command.fingerprint().0,
            subject_id: command.card_id.clone(),
            provider,
            provider_key,
            correlation_id: ctx.correlation_id.0.clone(),
            lease_owner: attempt::owner_token(),
            lease_ttl_ms: i64::try_from(self.lease_ttl.as_millis()).unwrap_or(i64::MAX),
        };
        let claimed = crate::answer::claim(&self.store, &self.metrics, claim, "card command").instrument(switchyard_bus::telemetry::child_span("claim")).await?;
        let record = match claimed {
            Ok(record) => record,
            Err(collision) => return self.publish_outcome(&ctx, &CardOutcome::rejected(&command, None, collision), command.requested_at_ms).await,
        };
        if record.state == RecordState::Completed {
            return self.replay(&ctx, &command, &record).await;
        }
        let (record, lease) = if record.fresh {
            let lease = AttemptLease::created(DOMAIN, &record, self.lease_ttl);
            (record, lease)
        } else {
            // Another delivery claimed it first; it may be calling right now.
            match attempt::take_over(&self.store, DOMAIN, &command.idempotency_key, self.lease_ttl, self.lease_ttl * 2, &self.shutdown).await? {
                TakeOver::Held(record, lease) => (record, lease),
                TakeOver::Finished(record) => return self.replay(&ctx, &command, &record).await,
            }
        };
        self.execute(&ctx, &command, &record, lease).await
    }

    /// The processor for a command: a card we hold goes to its processor
    /// (an ISSUE resumed after a crash included); a new ISSUE goes where the
    /// policy says; anything else for an unknown card names none (it is
    /// refused once the lease is held, without a call).
    fn route(&self, command: &CardCommand, card: Option<&CardRow>) -> Result<String, Failure> {
        if let Some(card) = card {
            if command.action != CardAction::Issue || card.issue_key == command.idempotency_key {
                return Ok(card.processor.clone());
            }
            // An ISSUE for a card id someone else issued: refused by the
            // lifecycle once claimed; no processor is involved.
            return Ok(String::new());
        }
        if command.action != CardAction::Issue {
            return Ok(String::new());
        }
        let Some(name) = self.router.choose_new(&command.idempotency_key, NO_NEEDS) else {
            return Err(dead_letter("routing chose no card processor"));
        };
        if !self.providers.contains_key(name) {
            return Err(dead_letter(&format!("routing chose unconfigured processor {name}")));
        }
        Ok(name.to_owned())
    }

    /// Answers a duplicate from its completed claim, without a processor
    /// call; first sends any event a crash left unsent.
    async fn replay(&self, ctx: &MessageContext, command: &CardCommand, record: &Record) -> Result<(), Failure> {
        let Some(mut outcome) = record.outcome.as_deref().and_then(|o| serde_json::from_str::<CardOutcome>(o).ok()) else {
            return Err(dead_letter("completed record holds no readable card outcome"));
        };
        self.flush_events(ctx, &outcome).await?;
        outcome.replayed = true;
        self.metrics.replayed();
        tracing::debug!(status = outcome.status.as_str(), "duplicate answered from the store");
        self.publish_outcome(ctx, &outcome, command.requested_at_ms).await
    }
}
