//! Consumes outcomes, provider events, card transactions, card events and
//! ledger postings into the store.
//!
//! Messages are taken in batches (up to `max_batch`, or whatever arrived
//! within `linger`), decoded into facts, stored and judged in one
//! transaction ([`Engine::ingest`]); only then are their offsets stored for commit. The batch is handled in order,
//! so every offset of it is finished when it is stored: at-least-once, and a
//! re-delivered fact is a no-op in the store.

use crate::ReconError;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use switchyard_bus::{AvroDecoder, Direction, KafkaConfig, MessagePosition, PositionSink, RegistryClient};
use switchyard_canonical::card_event::CardEvent;
use switchyard_canonical::card_transaction::CardTransaction;
use switchyard_canonical::{LedgerPosting, PayoutCommand, PayoutOutcome, ProviderEvent};
use crate::card_rules;
use crate::engine::Engine;
use crate::flows::FlowLatency;
use switchyard_canonical::onboarding::OnboardingEvent;
use switchyard_store::recon::{CardFact, CardFactKind, CardPostingFact, EventFact, FactBatch, OutcomeFact, PostingFact};
use tokio_util::sync::CancellationToken;

pub const PAYOUT_OUTCOME_SCHEMA: &str = include_str!("../../../schemas/payouts/PayoutOutcome.v1.avsc");
pub const PROVIDER_EVENT_SCHEMA: &str = include_str!("../../../schemas/events/ProviderEvent.v1.avsc");
pub const LEDGER_POSTING_SCHEMA: &str = include_str!("../../../schemas/ledger/LedgerPosting.v1.avsc");
pub const PAYOUT_COMMAND_SCHEMA: &str = include_str!("../../../schemas/payouts/PayoutCommand.v1.avsc");
pub const DISCREPANCY_SCHEMA: &str = include_str!("../../../schemas/recon/Discrepancy.v1.avsc");
pub const CARD_TRANSACTION_SCHEMA: &str = include_str!("../../../schemas/cards/CardTransaction.v1.avsc");
pub const CARD_EVENT_SCHEMA: &str = include_str!("../../../schemas/cards/CardEvent.v1.avsc");
pub const ONBOARDING_EVENT_SCHEMA: &str = include_str!("../../../schemas/onboarding/OnboardingEvent.v1.avsc");

/// The topics the reconciler reads and writes.
#[derive(Debug, Clone)]
pub struct ReconTopics {
    pub outcomes: String,
    pub provider_events: String,
    pub postings: String,
    pub discrepancies: String,
    /// Payout commands, kept only to ask vendors about stuck payouts.
    pub commands: Option<String>,
    /// Card transactions and card events, judged against card postings;
    /// none leaves card postings without facts (reported as unexpected).
    pub card_transactions: Option<String>,
    pub card_events: Option<String>,
    /// Onboarding transitions, read only for flow latency ([`crate::flows`]).
    pub onboarding_events: Option<String>,
}

impl ReconTopics {
    /// The names of topics.yaml behind `prefix` (empty in production).
    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            outcomes: format!("{prefix}payouts.outcomes.v1"),
            provider_events: format!("{prefix}payouts.provider-events.v1"),
            postings: format!("{prefix}ledger.postings.v1"),
            discrepancies: format!("{prefix}recon.discrepancies.v1"),
            commands: Some(format!("{prefix}payouts.commands.v1")),
            card_transactions: Some(format!("{prefix}cards.transactions.v1")),
            card_events: Some(format!("{prefix}cards.events.v1")),
            onboarding_events: Some(format!("{prefix}onboarding.events.v1")),
        }
    }
}

/// Only facts stamped within this range are kept (the one-shot job).
#[derive(Debug, Clone, Copy)]
pub struct TimeRange {
    pub from_ms: i64,
    pub to_ms: i64,
}

/// Counters for the report and metrics.
#[derive(Debug)]
pub struct IngestStats {
    pub messages: AtomicU64,
    pub facts: AtomicU64,
    /// Bytes that are not a record of the topic's schema: logged and skipped,
    /// since a reconciler that stops on them would hide every other drift.
    pub undecodable: AtomicU64,
    pub out_of_range: AtomicU64,
    pub batches: AtomicU64,
    /// Subjects judged as their facts were stored, and what changed.
    pub evaluated: AtomicU64,
    pub opened: AtomicU64,
    pub resolved: AtomicU64,
    /// Stuck payouts a vendor settled.
    pub settled: AtomicU64,
    /// Provider events that arrived after a later stage (ignored, recorded).
    pub out_of_order: AtomicU64,
    /// Messages arrived within the last second: the consumer may be catching
    /// up on some topic, and a missing fact may just not be read yet, so
    /// absences wait (see the evaluation loop in [`crate::run`]).
    pub backlogged: AtomicBool,
    /// Wall-clock ms of the last stored batch; the one-shot job stops once idle.
    pub last_batch_at_ms: AtomicU64,
}

impl Default for IngestStats {
    fn default() -> Self {
        Self {
            messages: AtomicU64::new(0),
            facts: AtomicU64::new(0),
            undecodable: AtomicU64::new(0),
            out_of_range: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            evaluated: AtomicU64::new(0),
            opened: AtomicU64::new(0),
            resolved: AtomicU64::new(0),
            settled: AtomicU64::new(0),
            out_of_order: AtomicU64::new(0),
            // Until the first poll says otherwise, assume a backlog.
            backlogged: AtomicBool::new(true),
            last_batch_at_ms: AtomicU64::new(0),
        }
    }
}

pub struct Ingestor {
    consumer: StreamConsumer,
    topics: ReconTopics,
    outcomes: AvroDecoder,
    events: AvroDecoder,
    postings: AvroDecoder,
    commands: AvroDecoder,
    card_transactions: AvroDecoder,
    card_events: AvroDecoder,
    onboarding_events: AvroDecoder,
    engine: Arc<Engine>,
    pub max_batch: usize,
    pub linger: Duration,
    pub range: Option<TimeRange>,
    pub stats: Arc<IngestStats>,
    /// End-to-end flow latency, fed from the commands and events read here.
    pub flows: Arc<FlowLatency>,
    /// Where each consumed message is, for `switchyard trace` (ledger
    /// postings have no other recorder: core banking publishes them). None
    /// in the one-shot job, which re-reads what the service already recorded.
    pub positions: Option<Arc<dyn PositionSink>>,
    /// Seals the beneficiary's data of the payout commands kept; by default
    /// (no `pii_keys`) that data is not kept at all.
    pub sealer: crate::commands::CommandSealer,
}

impl Ingestor {
    pub fn new(kafka: &KafkaConfig, registry: Arc<RegistryClient>, topics: ReconTopics, engine: Arc<Engine>) -> Result<Self, ReconError> {
        let consumer: StreamConsumer = kafka.consumer_config().set("fetch.min.bytes", "1").create()?;
        let mut names = vec![topics.outcomes.as_str(), topics.provider_events.as_str(), topics.postings.as_str()];
        names.extend(topics.commands.as_deref());
        names.extend(topics.card_transactions.as_deref());
        names.extend(topics.card_events.as_deref());
        names.extend(topics.onboarding_events.as_deref());
        consumer.subscribe(&names)?;
        Ok(Self {
            consumer,
            outcomes: AvroDecoder::new(registry.clone(), PAYOUT_OUTCOME_SCHEMA)?,
            events: AvroDecoder::new(registry.clone(), PROVIDER_EVENT_SCHEMA)?,
            postings: AvroDecoder::new(registry.clone(), LEDGER_POSTING_SCHEMA)?,
            commands: AvroDecoder::new(registry.clone(), PAYOUT_COMMAND_SCHEMA)?,
            card_transactions: AvroDecoder::new(registry.clone(), CARD_TRANSACTION_SCHEMA)?,
            card_events: AvroDecoder::new(registry.clone(), CARD_EVENT_SCHEMA)?,
            onboarding_events: AvroDecoder::new(registry, ONBOARDING_EVENT_SCHEMA)?,
            topics,
            engine,
            max_batch: 5000,
            linger: Duration::from_millis(50),
            range: None,
            stats: Arc::default(),
            flows: Arc::default(),
            positions: None,
            sealer: crate::commands::CommandSealer::default(),
        })
    }

    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ReconError> {
        loop {
            let first = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                m = tokio::time::timeout(Duration::from_secs(1), self.consumer.recv()) => match m {
                    Ok(m) => m,
                    Err(_) => {
                        // Nothing to read: caught up on every topic.
                        self.stats.backlogged.store(false, Ordering::Relaxed);
                        continue;
                    }
                },
            };
            let first = match first {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "consume failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let mut messages = vec![first];
            let deadline = tokio::time::Instant::now() + self.linger;
            while messages.len() < self.max_batch {
                match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                    Ok(Ok(m)) => messages.push(m),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "consume failed mid-batch");
                        break;
                    }
                    Err(_) => break,
                }
            }
            let (mut batch, commands) = self.decode(&messages).await;
            // The store must take the batch before its offsets move; a
            // database outage pauses consumption instead of losing facts.
            let mut wait = Duration::from_millis(100);
            loop {
                let as_of = self.range.map_or_else(switchyard_canonical::now_ms, |r| r.to_ms.min(switchyard_canonical::now_ms()));
                match self.store_batch(&mut batch, &commands, as_of).await {
                    Ok(pass) => {
                        self.stats.evaluated.fetch_add(pass.evaluated, Ordering::Relaxed);
                        self.stats.opened.fetch_add(pass.opened, Ordering::Relaxed);
                        self.stats.out_of_order.fetch_add(pass.out_of_order, Ordering::Relaxed);
                        self.stats.resolved.fetch_add(pass.resolved, Ordering::Relaxed);
                        break;
                    }
                    Err(e) if !shutdown.is_cancelled() => {
                        tracing::warn!(error = %e, "storing facts failed; retrying");
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(5));
                    }
                    Err(e) => return Err(e),
                }
            }
            // The flow ends this batch left waiting, stored before its
            // offsets move, so a restart still joins them (flows.rs).
            let mut wait = Duration::from_millis(100);
            while let Err(e) = self.flows.persist(&self.engine.store).await {
                if shutdown.is_cancelled() {
                    return Err(e.into());
                }
                tracing::warn!(error = %e, "storing flow ends failed; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            let mut last: HashMap<(&str, i32), i64> = HashMap::new();
            for m in &messages {
                let slot = last.entry((m.topic(), m.partition())).or_insert(m.offset());
                *slot = (*slot).max(m.offset());
            }
            for ((topic, partition), offset) in last {
                self.consumer.store_offset(topic, partition, offset)?;
            }
            if let Some(sink) = &self.positions {
                for m in &messages {
                    sink.record(position(m)).await;
                }
            }
            self.stats.messages.fetch_add(messages.len() as u64, Ordering::Relaxed);
            self.stats.facts.fetch_add(batch.len() as u64, Ordering::Relaxed);
            self.stats.batches.fetch_add(1, Ordering::Relaxed);
            // Only a second of silence says every topic is read up to now: a
            // short batch may come from one topic while another lags.
            self.stats.backlogged.store(true, Ordering::Relaxed);
            self.stats.last_batch_at_ms.store(switchyard_canonical::now_ms() as u64, Ordering::Relaxed);
        }
    }

    /// Seals the batch's payout commands (once, however often the store
    /// is retried) and stores and judges the batch.
    async fn store_batch(&self, batch: &mut FactBatch, commands: &[PayoutCommand], as_of: i64) -> Result<crate::engine::PassStats, ReconError> {
        if batch.commands.is_empty() && !commands.is_empty() {
            batch.commands = self.sealer.records(commands).await?;
        }
        self.engine.ingest(batch, as_of).await
    }

    /// The batch's facts, and the payout commands to keep (sealed before storing).
    async fn decode(&self, messages: &[BorrowedMessage<'_>]) -> (FactBatch, Vec<PayoutCommand>) {
        let mut batch = FactBatch::default();
        let mut commands = Vec::new();
        for m in messages {
            let Some(payload) = m.payload() else {
                self.skip(m, "no payload");
                continue;
            };
            let topic = m.topic();
            if topic == self.topics.outcomes {
                match self.outcomes.decode::<PayoutOutcome>(payload).await {
                    Ok(o) => {
                        let fact = outcome_fact(o, header(m, switchyard_bus::HeaderName::CORRELATION_ID));
                        if self.in_range(fact.completed_at_ms) {
                            batch.outcomes.push(fact);
                        }
                    }
                    Err(e) => self.skip(m, &e.to_string()),
                }
            } else if topic == self.topics.provider_events {
                match self.events.decode::<ProviderEvent>(payload).await {
                    Ok(e) if self.in_range(e.received_at_ms) => {
                        self.flows.provider_event(&e);
                        batch.events.push(event_fact(e));
                    }
                    Ok(_) => {}
                    Err(e) => self.skip(m, &e.to_string()),
                }
            } else if topic == self.topics.postings {
                match self.postings.decode::<LedgerPosting>(payload).await {
                    Ok(p) if self.in_range(p.posted_at_ms) => match card_posting_fact(&p) {
                        Some(card) => batch.card_postings.push(card),
                        None => batch.postings.push(posting_fact(p)),
                    },
                    Ok(_) => {}
                    Err(e) => self.skip(m, &e.to_string()),
                }
            } else if self.topics.card_transactions.as_deref() == Some(topic) {
                match self.card_transactions.decode::<CardTransaction>(payload).await {
                    Ok(t) if self.in_range(t.published_at_ms) => batch.cards.push(card_transaction_fact(t)),
                    Ok(_) => {}
                    Err(e) => self.skip(m, &e.to_string()),
                }
            } else if self.topics.card_events.as_deref() == Some(topic) {
                match self.card_events.decode::<CardEvent>(payload).await {
                    Ok(e) if self.in_range(e.published_at_ms) => batch.cards.push(card_event_fact(e)),
                    Ok(_) => {}
                    Err(e) => self.skip(m, &e.to_string()),
                }
            } else if self.topics.commands.as_deref() == Some(topic) {
                // A command that does not decode is the worker's DLQ's business, not drift.
                if let Ok(c) = self.commands.decode::<PayoutCommand>(payload).await {
                    self.flows.command(&c);
                    commands.push(c);
                }
            } else if self.topics.onboarding_events.as_deref() == Some(topic) {
                // Read for flow latency only; the orchestrator's own consumers judge these.
                if let Ok(e) = self.onboarding_events.decode::<OnboardingEvent>(payload).await {
                    self.flows.onboarding(&e);
                }
            }
        }
        (batch, commands)
    }

    fn in_range(&self, at_ms: i64) -> bool {
        let inside = self.range.is_none_or(|r| (r.from_ms..=r.to_ms).contains(&at_ms));
        if !inside {
            self.stats.out_of_range.fetch_add(1, Ordering::Relaxed);
        }
        inside
    }

    fn skip(&self, m: &BorrowedMessage<'_>, reason: &str) {
        self.stats.undecodable.fetch_add(1, Ordering::Relaxed);
        tracing::error!(topic = m.topic(), partition = m.partition(), offset = m.offset(), reason, "undecodable message skipped");
    }
}

fn header(m: &BorrowedMessage<'_>, name: &str) -> Option<String> {
    let headers = m.headers()?;
    headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::to_owned)
}

/// Where `m` is, and the ids a trace looks it up by.
fn position(m: &BorrowedMessage<'_>) -> MessagePosition {
    MessagePosition {
        direction: Direction::Consumed,
        topic: m.topic().to_owned(),
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(String::from_utf8_lossy).unwrap_or_default().into_owned(),
        correlation_id: header(m, switchyard_bus::HeaderName::CORRELATION_ID).unwrap_or_default(),
    }
}

pub fn outcome_fact(o: PayoutOutcome, correlation_id: Option<String>) -> OutcomeFact {
    OutcomeFact {
        subject_id: o.payout_id,
        idempotency_key: o.idempotency_key,
        status: o.status,
        provider: o.provider,
        provider_reference: o.provider_reference,
        amount_minor: o.amount_minor,
        currency: o.currency,
        correlation_id,
        completed_at_ms: o.completed_at_ms,
    }
}

pub fn posting_fact(p: LedgerPosting) -> PostingFact {
    PostingFact {
        posting_id: p.posting_id,
        subject_id: p.payout_id,
        idempotency_key: p.idempotency_key,
        correlation_id: p.correlation_id,
        kind: p.kind,
        amount_minor: p.amount_minor,
        currency: p.currency,
        posted_at_ms: p.posted_at_ms,
    }
}

pub fn event_fact(e: ProviderEvent) -> EventFact {
    EventFact {
        provider: e.provider,
        event_id: e.event_id,
        subject_id: e.subject_id,
        provider_reference: e.provider_reference,
        kind: e.kind,
        amount_minor: e.amount_minor,
        currency: e.currency,
        occurred_at_ms: e.occurred_at_ms,
        received_at_ms: e.received_at_ms,
    }
}

/// A ledger posting that names a card, filed under what it books; `None`
/// for a payout posting.
pub fn card_posting_fact(p: &LedgerPosting) -> Option<CardPostingFact> {
    let (subject_id, card_id) = card_rules::posting_subject(p)?;
    Some(CardPostingFact {
        posting_id: p.posting_id.clone(),
        subject_id,
        card_id,
        fee: p.card_fee.clone(),
        kind: p.kind,
        amount_minor: p.amount_minor,
        currency: p.currency.clone(),
        posted_at_ms: p.posted_at_ms,
    })
}

pub fn card_transaction_fact(t: CardTransaction) -> CardFact {
    CardFact {
        subject_id: card_rules::transaction_subject(&t.card_id, &t.transaction_event_id),
        fact_id: t.transaction_event_id,
        card_id: t.card_id,
        processor: t.processor,
        kind: CardFactKind::Transaction(t.kind),
        approved: t.approved,
        amount_minor: Some(t.amount_minor),
        currency: Some(t.currency),
        occurred_at_ms: t.occurred_at_ms,
        published_at_ms: t.published_at_ms,
    }
}

pub fn card_event_fact(e: CardEvent) -> CardFact {
    CardFact {
        subject_id: card_rules::event_subject(&e.card_id, &e.event_id),
        fact_id: e.event_id,
        card_id: e.card_id,
        processor: e.processor,
        kind: CardFactKind::Event(e.kind),
        approved: true,
        amount_minor: e.amount_minor,
        currency: e.currency,
        occurred_at_ms: e.occurred_at_ms,
        published_at_ms: e.published_at_ms,
    }
}
