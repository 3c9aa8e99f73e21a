//! Key-ordered parallel consumption: the worker's engine.
//!
//! Many keys of one partition are processed concurrently while messages that
//! share a key run one at a time, in partition order (the pattern of
//! Confluent's parallel consumer). An offset is stored for commit only when
//! every message before it on its partition has finished (see [`crate::offsets`]);
//! auto-commit then writes stored offsets periodically and on revocation.
//!
//! A handler answers `Ok` (done), [`Failure::Retry`] (the message moves to the
//! retry topic with a not-before time, so the partition is not blocked) or
//! [`Failure::DeadLetter`] (the original bytes go to the DLQ with the reason
//! in headers). A panicking handler dead-letters its message instead of
//! crash-looping the worker. A message counts as finished only once its
//! outcome, retry or DLQ record was acknowledged by the broker.

mod flow;
mod landing;
mod retry_gate;
mod rounds;

pub use landing::retry_round_delay;
pub use rounds::{LedgerFuture, RoundLedger, RoundPosition};
use crate::headers::{from_kafka_headers, header_text, HeaderName, MessageContext};
use crate::offsets::{Arrival, OffsetBook};
use crate::publisher::Publisher;
use retry_gate::RetryGate;
use crate::{BusError, KafkaConfig};
use futures::FutureExt;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_canonical::{now_ms, ErrorClass};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// One consumed message, detached from the consumer.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Inbound {
    pub fn context(&self) -> MessageContext {
        MessageContext::from_headers(&self.headers)
    }

    /// How many times this message already went through the retry topic.
    pub fn retry_attempt(&self) -> u32 {
        header_text(&self.headers, HeaderName::RETRY_ATTEMPT).and_then(|s| s.parse().ok()).unwrap_or(0)
    }

    pub fn key_text(&self) -> String {
        self.key.as_deref().map(String::from_utf8_lossy).unwrap_or_default().into_owned()
    }
}

/// Why a handler did not finish a message.
#[derive(Debug, Clone)]
pub enum Failure {
    /// Try again later: the message goes to the retry topic, due after `delay`.
    Retry { reason: String, delay: Duration },
    /// Never retry automatically: original bytes to the DLQ.
    DeadLetter { class: ErrorClass, reason: String },
    /// Not now, by policy: original bytes to the held topic, from which they
    /// are released when the policy allows (see [`crate::relay`]).
    Park { reason: String },
}

pub trait Handler: Send + Sync + 'static {
    fn handle(&self, message: Arc<Inbound>) -> impl Future<Output = Result<(), Failure>> + Send;
}

/// The topics one runtime reads and writes besides what the handler publishes.
#[derive(Debug, Clone)]
pub struct RuntimeTopics {
    pub input: String,
    /// Consumed alongside the input; `None` retries in place instead.
    pub retry: Option<String>,
    pub dlq: String,
    /// Where parked messages wait; without one, parking dead-letters.
    pub held: Option<String>,
}

impl RuntimeTopics {
    /// `<input>`, `<input>.retry`, `<input>.dlq`, the convention of topics.yaml.
    pub fn conventional(input: &str) -> Self {
        Self {
            input: input.to_owned(),
            retry: Some(format!("{input}.retry")),
            dlq: format!("{input}.dlq"),
            held: Some(format!("{input}.held")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    /// Messages received but not finished, across all keys; bounds memory.
    pub max_in_flight: usize,
    /// Trips through the retry topic before a message is dead-lettered.
    pub max_retry_rounds: u32,
    /// How long in-flight work may take to finish at shutdown before it is
    /// abandoned (and redelivered to the next owner).
    pub drain_timeout: Duration,
    /// The longest a message waits on the retry topic in one round. Each
    /// round doubles the handler's delay up to this, so an outage of a
    /// minute or two is ridden out instead of dead-lettering everything.
    pub max_retry_delay: Duration,
    /// Offsets of one partition held back from the commit (unfinished, or
    /// finished behind an unfinished head) before that partition is paused.
    /// `max_in_flight` bounds unfinished work; this bounds what one stuck
    /// message makes the consumer remember.
    pub max_uncommitted_per_partition: usize,
    /// How long one handler call may take before its message takes the
    /// retry path (and, after the rounds, the DLQ): a hung dependency costs
    /// one message, not a partition.
    pub handler_deadline: Duration,
    /// Deprecated topics whose traffic is counted; by default those of the
    /// `topics.yaml` this binary was built with.
    pub deprecations: BTreeMap<String, crate::deprecation::Deprecation>,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        Self {
            max_in_flight: 2000,
            max_retry_rounds: 5,
            drain_timeout: Duration::from_secs(20),
            max_retry_delay: Duration::from_secs(300),
            max_uncommitted_per_partition: 10_000,
            handler_deadline: Duration::from_secs(120),
            deprecations: crate::deprecation::deployed(),
        }
    }
}


/// How often a waiting retry checks that its partition is still owned.
const REVOCATION_CHECK_MS: u64 = 250;

/// Counters a worker exports as metrics.
#[derive(Debug, Default)]
pub struct RuntimeStats {
    /// `max_in_flight` as configured, exported so an alert compares the
    /// worker against its own limit.
    pub max_in_flight: AtomicU64,
    pub received: AtomicU64,
    pub finished: AtomicU64,
    pub retried: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub panics: AtomicU64,
    /// Handler calls cut off at `handler_deadline`.
    pub deadline_exceeded: AtomicU64,
    /// The largest uncommitted window of any partition, refreshed each second.
    pub max_uncommitted: AtomicU64,
    /// Age of the oldest message holding a commit back, in milliseconds.
    pub oldest_head_ms: AtomicU64,
    /// Partitions paused because their window is full.
    pub paused_partitions: AtomicU64,
    /// Partitions this member owns (input and retry topic): the group works
    /// only while the members' counts add up to the topics' partitions.
    pub assigned_partitions: AtomicU64,
    /// Messages given up because a rebalance took their partition while
    /// they waited out a retry delay or failed: the new owner handles them.
    pub abandoned_on_revoke: AtomicU64,
    /// Offsets received out of sequence within one assignment (skipped or
    /// rewound); our topics are neither compacted nor transactional, so
    /// anything but zero points at the broker or the client.
    pub irregular_arrivals: AtomicU64,
    /// Messages still arriving on deprecated topics.
    pub deprecated: crate::deprecation::DeprecatedTraffic,
    /// Retry records re-read after a rebalance and finished without being
    /// handled again, because the [`RoundLedger`] knew them.
    pub rounds_skipped: AtomicU64,
}

impl RuntimeStats {
    pub fn in_flight(&self) -> u64 {
        self.received.load(Ordering::Relaxed).saturating_sub(self.finished.load(Ordering::Relaxed))
    }
}

/// Drops the offsets of revoked partitions so late completions cannot move them.
struct RebalanceContext {
    book: Arc<Mutex<OffsetBook>>,
    stats: Arc<RuntimeStats>,
    paused: Arc<Mutex<HashSet<(String, i32)>>>,
}

impl ClientContext for RebalanceContext {}

impl ConsumerContext for RebalanceContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let mut book = lock(&self.book);
            let mut paused = lock(&self.paused);
            for e in tpl.elements() {
                tracing::info!(topic = e.topic(), partition = e.partition(), "partition revoked");
                book.revoke(e.topic(), e.partition());
                // Forgotten here; `post_rebalance` resumes the partition
                // should it come back.
                paused.remove(&(e.topic().to_owned(), e.partition()));
            }
            // The eager assignor revokes everything before assigning anew.
            self.stats.assigned_partitions.store(0, Ordering::Relaxed);
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            tracing::info!(partitions = tpl.count(), "partitions assigned");
            // librdkafka keeps an application pause across a rebalance: a
            // partition paused for a full window and assigned back to this
            // member would never be read again, since its pause was
            // forgotten on revoke.
            if let Err(e) = consumer.resume(tpl) {
                tracing::warn!(error = %e, "assigned partitions could not be resumed");
            }
            self.stats.assigned_partitions.store(tpl.count() as u64, Ordering::Relaxed);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Lane {
    Key(Vec<u8>),
    /// Unkeyed messages promise no order; each gets a lane of its own.
    Unkeyed(String, i32, i64),
}

struct Work {
    message: Arc<Inbound>,
    epoch: u64,
    lane: Lane,
    /// A retry's due time (ms since the epoch), behind its partition's gate.
    not_before: Option<i64>,
}

struct Done {
    topic: String,
    partition: i32,
    offset: i64,
    epoch: u64,
    lane: Lane,
    /// False when shutdown interrupted the work: the offset stays uncommitted.
    finished: bool,
}

pub struct ConsumerRuntime<H> {
    consumer: StreamConsumer<RebalanceContext>,
    book: Arc<Mutex<OffsetBook>>,
    shared: Arc<Shared<H>>,
    /// Partitions paused for a full window; resumed at half of it.
    paused: Arc<Mutex<HashSet<(String, i32)>>>,
    /// Retry partitions read in offset order.
    gate: Mutex<RetryGate>,
}

struct Shared<H> {
    handler: Arc<H>,
    /// Which partitions (and assignment epochs) this member still owns.
    book: Arc<Mutex<OffsetBook>>,
    publisher: Publisher,
    topics: RuntimeTopics,
    settings: RuntimeSettings,
    stats: Arc<RuntimeStats>,
    shutdown: CancellationToken,
    rounds: Option<Arc<dyn RoundLedger>>,
    positions: Option<Arc<dyn crate::PositionSink>>,
}

impl<H: Handler> ConsumerRuntime<H> {
    pub fn new(
        kafka: &KafkaConfig,
        publisher: Publisher,
        topics: RuntimeTopics,
        settings: RuntimeSettings,
        handler: Arc<H>,
        shutdown: CancellationToken,
    ) -> Result<Self, BusError> {
        let book = Arc::new(Mutex::new(OffsetBook::default()));
        let mut subscription = vec![topics.input.as_str()];
        if let Some(retry) = &topics.retry {
            subscription.push(retry.as_str());
        }
        let deprecated = crate::deprecation::DeprecatedTraffic::watching(&settings.deprecations, &subscription);
        let stats = Arc::new(RuntimeStats { deprecated, max_in_flight: AtomicU64::new(settings.max_in_flight as u64), ..RuntimeStats::default() });
        let paused = Arc::new(Mutex::new(HashSet::new()));
        let gate = RetryGate::default();
        let context = RebalanceContext { book: book.clone(), stats: stats.clone(), paused: paused.clone() };
        let consumer: StreamConsumer<RebalanceContext> = kafka.consumer_config().create_with_context(context)?;
        consumer.subscribe(&subscription)?;
        let shared = Arc::new(Shared {
            handler,
            book: book.clone(),
            publisher,
            topics,
            settings,
            stats,
            shutdown,
            rounds: None,
            positions: None,
        });
        Ok(Self { consumer, book, shared, paused, gate: Mutex::new(gate) })
    }

    /// Remembers handled retry records in `ledger`, so a re-read one is not
    /// handled (and sent round) again. Call before [`Self::run`].
    pub fn with_round_ledger(mut self, ledger: Arc<dyn RoundLedger>) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.rounds = Some(ledger);
        }
        self
    }

    /// Tells `sink` where every consumed message was. Call before [`Self::run`].
    pub fn with_positions(mut self, sink: Arc<dyn crate::PositionSink>) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.positions = Some(sink);
        }
        self
    }

    pub fn stats(&self) -> Arc<RuntimeStats> {
        self.shared.stats.clone()
    }

    /// Consumes until the shutdown token fires, then drains and commits.
    pub async fn run(self) -> Result<(), BusError> {
        let mut lanes: HashMap<Lane, VecDeque<Work>> = HashMap::new();
        let mut tasks: JoinSet<Done> = JoinSet::new();
        let mut outstanding = 0usize;
        let max = self.shared.settings.max_in_flight.max(1);
        let shutdown = self.shared.shutdown.clone();
        // Each wake-up handles everything that is ready, not one event: under
        // load this task competes with thousands of handler tasks for a turn.
        const BURST: usize = 512;
        let mut gauges = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = gauges.tick() => self.refresh_gauges(),
                Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                    self.on_joined(joined, &mut lanes, &mut tasks, &mut outstanding);
                    for _ in 0..BURST {
                        let Some(joined) = tasks.try_join_next() else { break };
                        self.on_joined(joined, &mut lanes, &mut tasks, &mut outstanding);
                    }
                }
                received = self.consumer.recv(), if outstanding < max => {
                    self.on_received(received, &mut lanes, &mut tasks, &mut outstanding).await;
                    for _ in 0..BURST {
                        if outstanding >= max {
                            break;
                        }
                        let Some(received) = self.consumer.recv().now_or_never() else { break };
                        self.on_received(received, &mut lanes, &mut tasks, &mut outstanding).await;
                    }
                }
            }
        }
        self.drain(tasks).await;
        Ok(())
    }

    fn on_joined(
        &self,
        joined: Result<Done, tokio::task::JoinError>,
        lanes: &mut HashMap<Lane, VecDeque<Work>>,
        tasks: &mut JoinSet<Done>,
        outstanding: &mut usize,
    ) {
        // Handler panics are caught inside the task, so a join error means
        // the task was aborted; its message is redelivered to the next owner.
        let Ok(done) = joined else { return };
        *outstanding -= 1;
        self.complete(&done);
        self.resume_if_drained(&done.topic, done.partition);
        self.start_next_in_lane(done.lane, lanes, tasks, outstanding);
    }

    fn refresh_gauges(&self) {
        let (window, head_age) = lock(&self.book).worst();
        let stats = &self.shared.stats;
        stats.max_uncommitted.store(window as u64, Ordering::Relaxed);
        stats.oldest_head_ms.store(u64::try_from(head_age.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
        stats.paused_partitions.store(lock(&self.paused).len() as u64, Ordering::Relaxed);
    }

    async fn on_received(
        &self,
        received: Result<rdkafka::message::BorrowedMessage<'_>, rdkafka::error::KafkaError>,
        lanes: &mut HashMap<Lane, VecDeque<Work>>,
        tasks: &mut JoinSet<Done>,
        outstanding: &mut usize,
    ) {
        let message = match received {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "consumer error");
                tokio::time::sleep(Duration::from_millis(100)).await;
                return;
            }
        };
        let inbound = Inbound {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
            headers: from_kafka_headers(message.headers()),
        };
        drop(message);
        self.shared.stats.received.fetch_add(1, Ordering::Relaxed);
        self.shared.stats.deprecated.count(&inbound.topic);
        let (epoch, arrival) = lock(&self.book).begin(&inbound.topic, inbound.partition, inbound.offset);
        self.note_arrival(&inbound, epoch, arrival);
        let not_before = self.admit_retry(&inbound, epoch);
        self.pause_if_full(&inbound.topic, inbound.partition);
        let lane = match &inbound.key {
            Some(k) => Lane::Key(k.clone()),
            None => Lane::Unkeyed(inbound.topic.clone(), inbound.partition, inbound.offset),
        };
        *outstanding += 1;
        let work = Work { message: Arc::new(inbound), epoch, lane: lane.clone(), not_before };
        match lanes.get_mut(&lane) {
            Some(queue) => queue.push_back(work),
            None => {
                lanes.insert(lane, VecDeque::new());
                tasks.spawn(self.shared.clone().process(work));
            }
        }
    }

    /// Where each assignment starts reading, and any break in the offsets
    /// after that: the commit passes over offsets never received, so a skip
    /// is where a message could be lost without any handler seeing it.
    fn note_arrival(&self, inbound: &Inbound, epoch: u64, arrival: Arrival) {
        let (topic, partition, offset) = (&inbound.topic, inbound.partition, inbound.offset);
        match arrival {
            Arrival::Contiguous => tracing::debug!(topic, partition, offset, epoch, "received"),
            Arrival::FirstOfAssignment => tracing::info!(topic, partition, offset, epoch, "assignment starts reading"),
            Arrival::Skipped { after } | Arrival::Rewound { after } => {
                self.shared.stats.irregular_arrivals.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(topic, partition, offset, after, epoch, ?arrival, "offsets not contiguous");
            }
        }
    }

    fn complete(&self, done: &Done) {
        self.shared.stats.finished.fetch_add(1, Ordering::Relaxed);
        if !done.finished {
            tracing::debug!(topic = %done.topic, partition = done.partition, offset = done.offset, epoch = done.epoch, "given up");
            return;
        }
        let advanced = lock(&self.book).finish(&done.topic, done.partition, done.offset, done.epoch);
        tracing::debug!(topic = %done.topic, partition = done.partition, offset = done.offset, epoch = done.epoch, ?advanced, "finished");
        if let Some(next) = advanced {
            let mut tpl = TopicPartitionList::new();
            if tpl.add_partition_offset(&done.topic, done.partition, Offset::Offset(next)).is_ok() {
                // Fails only for a partition revoked a moment ago; its next
                // owner resumes from the last commit and the store dedups.
                if let Err(e) = self.consumer.store_offsets(&tpl) {
                    tracing::debug!(error = %e, topic = %done.topic, partition = done.partition, "offset not stored");
                }
            }
        }
    }

    fn start_next_in_lane(
        &self,
        lane: Lane,
        lanes: &mut HashMap<Lane, VecDeque<Work>>,
        tasks: &mut JoinSet<Done>,
        outstanding: &mut usize,
    ) {
        let Some(queue) = lanes.get_mut(&lane) else { return };
        while let Some(next) = queue.pop_front() {
            let current = lock(&self.book).is_current(&next.message.topic, next.message.partition, next.epoch);
            if current {
                tasks.spawn(self.shared.clone().process(next));
                return;
            }
            // Revoked while queued: its new owner will process it.
            *outstanding -= 1;
            self.shared.stats.finished.fetch_add(1, Ordering::Relaxed);
        }
        lanes.remove(&lane);
    }

    async fn drain(&self, mut tasks: JoinSet<Done>) {
        let deadline = tokio::time::sleep(self.shared.settings.drain_timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => {
                    tracing::warn!(abandoned = tasks.len(), "drain timeout; unfinished messages will be redelivered");
                    tasks.abort_all();
                    break;
                }
                joined = tasks.join_next() => match joined {
                    Some(Ok(done)) => self.complete(&done),
                    Some(Err(_)) => {}
                    None => break,
                }
            }
        }
        let positions = lock(&self.book).committable();
        let mut tpl = TopicPartitionList::new();
        for (topic, partition, offset) in positions {
            let _ = tpl.add_partition_offset(&topic, partition, Offset::Offset(offset));
        }
        if tpl.count() > 0 {
            if let Err(e) = self.consumer.commit(&tpl, CommitMode::Sync) {
                tracing::warn!(error = %e, "final commit failed; the next owner re-reads from the last commit");
            }
        }
    }
}

impl<H: Handler> Shared<H> {
    async fn process(self: Arc<Self>, work: Work) -> Done {
        let message = work.message.clone();
        if let Some(sink) = &self.positions {
            let m = &message;
            sink.record(crate::MessagePosition::new(crate::Direction::Consumed, &m.topic, m.partition, m.offset, m.key.as_deref(), &m.headers)).await;
        }
        let finished = self.run_handler(&message, work.epoch, work.not_before).await;
        Done {
            topic: message.topic.clone(),
            partition: message.partition,
            offset: message.offset,
            epoch: work.epoch,
            lane: work.lane,
            finished,
        }
    }

    /// Whether the message's partition is still ours, in the assignment it
    /// was read in. Once it is not, the new owner re-reads the message from
    /// the last commit (this offset never was), so anything this copy did
    /// besides finishing (a retry round, a dead letter) would be done twice.
    fn owns(&self, message: &Inbound, epoch: u64) -> bool {
        lock(&self.book).is_current(&message.topic, message.partition, epoch)
    }

    /// Returns whether the message reached a final place (done, retry, DLQ);
    /// false when shutdown or a rebalance took it away first.
    async fn run_handler_once(&self, message: &Arc<Inbound>, epoch: u64, not_before: Option<i64>) -> bool {
        if let Some(not_before) = not_before {
            // Waits in steps, so a revoked partition's waiting retries are
            // dropped within one step instead of handled at their due time
            // by a member that no longer owns them.
            loop {
                let wait = not_before - now_ms();
                if wait <= 0 {
                    break;
                }
                if !self.owns(message, epoch) {
                    self.stats.abandoned_on_revoke.fetch_add(1, Ordering::Relaxed);
                    return false;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis((wait as u64).min(REVOCATION_CHECK_MS))) => {}
                    _ = self.shutdown.cancelled() => return false,
                }
            }
            if !self.owns(message, epoch) {
                self.stats.abandoned_on_revoke.fetch_add(1, Ordering::Relaxed);
                return false;
            }
        }
        // Span::none() unless trace export is on (crate::telemetry).
        let span = crate::telemetry::consume_span(&message.topic, message.partition, message.offset, header_text(&message.headers, HeaderName::TRACEPARENT));
        loop {
            let call = tracing::Instrument::instrument(AssertUnwindSafe(self.handler.handle(message.clone())).catch_unwind(), span.clone());
            let Ok(outcome) = tokio::time::timeout(self.settings.handler_deadline, call).await else {
                self.stats.deadline_exceeded.fetch_add(1, Ordering::Relaxed);
                let reason = format!("handler took longer than its {:?} deadline", self.settings.handler_deadline);
                tracing::warn!(key = %message.key_text(), offset = message.offset, "{reason}");
                let failure = Failure::Retry { reason, delay: Duration::from_secs(1) };
                match self.settle_failure(message, failure).await {
                    Some(done) => return done,
                    None => continue,
                }
            };
            let failure = match outcome {
                Ok(Ok(())) => return true,
                Ok(Err(failure)) => failure,
                Err(panic) => {
                    self.stats.panics.fetch_add(1, Ordering::Relaxed);
                    let text = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    Failure::DeadLetter { class: ErrorClass::ManualRepair, reason: format!("handler panicked: {text}") }
                }
            };
            if !self.owns(message, epoch) {
                // The new owner handles it again from the last commit; a
                // retry round or dead letter from here would be a second copy.
                self.stats.abandoned_on_revoke.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            match self.settle_failure(message, failure).await {
                Some(done) => return done,
                None => continue,
            }
        }
    }
}

