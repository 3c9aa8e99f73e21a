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

use crate::headers::{from_kafka_headers, header_text, set_header, HeaderName, MessageContext};
use crate::offsets::OffsetBook;
use crate::publisher::{Outbound, Publisher};
use crate::{BusError, KafkaConfig};
use futures::FutureExt;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::{HashMap, VecDeque};
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
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        Self { max_in_flight: 2000, max_retry_rounds: 5, drain_timeout: Duration::from_secs(20), max_retry_delay: Duration::from_secs(300) }
    }
}

/// The wait before retry round `attempt` (1-based): the handler's delay,
/// doubled each round, at most `max`.
pub fn retry_round_delay(asked: Duration, attempt: u32, max: Duration) -> Duration {
    asked.saturating_mul(1u32 << attempt.saturating_sub(1).min(16)).min(max)
}

/// Counters a worker exports as metrics.
#[derive(Debug, Default)]
pub struct RuntimeStats {
    pub received: AtomicU64,
    pub finished: AtomicU64,
    pub retried: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub panics: AtomicU64,
}

impl RuntimeStats {
    pub fn in_flight(&self) -> u64 {
        self.received.load(Ordering::Relaxed).saturating_sub(self.finished.load(Ordering::Relaxed))
    }
}

/// Drops the offsets of revoked partitions so late completions cannot move them.
struct RebalanceContext {
    book: Arc<Mutex<OffsetBook>>,
}

impl ClientContext for RebalanceContext {}

impl ConsumerContext for RebalanceContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let mut book = lock(&self.book);
            for e in tpl.elements() {
                tracing::info!(topic = e.topic(), partition = e.partition(), "partition revoked");
                book.revoke(e.topic(), e.partition());
            }
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
}

struct Shared<H> {
    handler: Arc<H>,
    publisher: Publisher,
    topics: RuntimeTopics,
    settings: RuntimeSettings,
    stats: Arc<RuntimeStats>,
    shutdown: CancellationToken,
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
        let consumer: StreamConsumer<RebalanceContext> =
            kafka.consumer_config().create_with_context(RebalanceContext { book: book.clone() })?;
        let mut subscription = vec![topics.input.as_str()];
        if let Some(retry) = &topics.retry {
            subscription.push(retry.as_str());
        }
        consumer.subscribe(&subscription)?;
        let shared = Arc::new(Shared {
            handler,
            publisher,
            topics,
            settings,
            stats: Arc::new(RuntimeStats::default()),
            shutdown,
        });
        Ok(Self { consumer, book, shared })
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
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
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
        self.start_next_in_lane(done.lane, lanes, tasks, outstanding);
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
        let epoch = lock(&self.book).begin(&inbound.topic, inbound.partition, inbound.offset);
        let lane = match &inbound.key {
            Some(k) => Lane::Key(k.clone()),
            None => Lane::Unkeyed(inbound.topic.clone(), inbound.partition, inbound.offset),
        };
        *outstanding += 1;
        let work = Work { message: Arc::new(inbound), epoch, lane: lane.clone() };
        match lanes.get_mut(&lane) {
            Some(queue) => queue.push_back(work),
            None => {
                lanes.insert(lane, VecDeque::new());
                tasks.spawn(self.shared.clone().process(work));
            }
        }
    }

    fn complete(&self, done: &Done) {
        self.shared.stats.finished.fetch_add(1, Ordering::Relaxed);
        if !done.finished {
            return;
        }
        let advanced = lock(&self.book).finish(&done.topic, done.partition, done.offset, done.epoch);
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
        let finished = self.run_handler(&message).await;
        Done {
            topic: message.topic.clone(),
            partition: message.partition,
            offset: message.offset,
            epoch: work.epoch,
            lane: work.lane,
            finished,
        }
    }

    /// Returns whether the message reached a final place (done, retry, DLQ).
    async fn run_handler(&self, message: &Arc<Inbound>) -> bool {
        if let Some(not_before) = header_text(&message.headers, HeaderName::RETRY_NOT_BEFORE).and_then(|s| s.parse::<i64>().ok()) {
            let wait = not_before - now_ms();
            if wait > 0 {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
                    _ = self.shutdown.cancelled() => return false,
                }
            }
        }
        loop {
            let outcome = AssertUnwindSafe(self.handler.handle(message.clone())).catch_unwind().await;
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
            match failure {
                Failure::DeadLetter { class, reason } => return self.dead_letter(message, class, &reason).await,
                Failure::Park { reason } => match &self.topics.held {
                    Some(held) => {
                        let mut headers = with_origin(message);
                        set_header(&mut headers, HeaderName::HELD_REASON, truncate(&reason));
                        return self.publish_until_acked(message, held, headers).await;
                    }
                    None => return self.dead_letter(message, ErrorClass::ManualRepair, &reason).await,
                },
                Failure::Retry { reason, delay } => match &self.topics.retry {
                    Some(retry_topic) => {
                        let attempt = message.retry_attempt() + 1;
                        if attempt > self.settings.max_retry_rounds {
                            let reason = format!("retries exhausted after {} rounds: {reason}", attempt - 1);
                            return self.dead_letter(message, ErrorClass::ManualRepair, &reason).await;
                        }
                        let delay = retry_round_delay(delay, attempt, self.settings.max_retry_delay);
                        return self.to_retry_topic(message, retry_topic, attempt, &reason, delay).await;
                    }
                    None => {
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => continue,
                            _ = self.shutdown.cancelled() => return false,
                        }
                    }
                },
            }
        }
    }

    async fn to_retry_topic(&self, message: &Inbound, topic: &str, attempt: u32, reason: &str, delay: Duration) -> bool {
        let mut headers = with_origin(message);
        set_header(&mut headers, HeaderName::RETRY_ATTEMPT, attempt.to_string());
        set_header(&mut headers, HeaderName::RETRY_NOT_BEFORE, (now_ms() + delay.as_millis() as i64).to_string());
        set_header(&mut headers, HeaderName::RETRY_REASON, truncate(reason));
        tracing::info!(key = %message.key_text(), attempt, reason, "to retry topic");
        let ok = self.publish_until_acked(message, topic, headers).await;
        if ok {
            self.stats.retried.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    async fn dead_letter(&self, message: &Inbound, class: ErrorClass, reason: &str) -> bool {
        let mut headers = message.headers.clone();
        // A message that went through the retry topic is reported at its
        // original position, which is what an operator replays from.
        let original = |name: &str, own: String| header_text(&message.headers, name).map_or(own, str::to_owned);
        let source = original(HeaderName::ORIGINAL_TOPIC, message.topic.clone());
        let partition = original(HeaderName::ORIGINAL_PARTITION, message.partition.to_string());
        let offset = original(HeaderName::ORIGINAL_OFFSET, message.offset.to_string());
        set_header(&mut headers, HeaderName::DLQ_REASON, truncate(reason));
        set_header(&mut headers, HeaderName::DLQ_ERROR_CLASS, class.as_str());
        set_header(&mut headers, HeaderName::DLQ_SOURCE_TOPIC, source);
        set_header(&mut headers, HeaderName::DLQ_SOURCE_PARTITION, partition);
        set_header(&mut headers, HeaderName::DLQ_SOURCE_OFFSET, offset);
        set_header(&mut headers, HeaderName::DLQ_FAILED_AT, now_ms().to_string());
        tracing::warn!(key = %message.key_text(), topic = %message.topic, offset = message.offset, reason, "dead-lettered");
        let ok = self.publish_until_acked(message, &self.topics.dlq, headers).await;
        if ok {
            self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// The original bytes must land somewhere before the offset may move, so
    /// a broker hiccup is retried until it succeeds or the worker stops.
    async fn publish_until_acked(&self, message: &Inbound, topic: &str, headers: Vec<(String, Vec<u8>)>) -> bool {
        let record = Outbound {
            topic: topic.to_owned(),
            key: message.key.clone(),
            payload: message.payload.clone().unwrap_or_default(),
            headers,
        };
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.publisher.publish(&record).await {
                Ok(_) => return true,
                Err(e) => tracing::warn!(error = %e, topic, "publish failed; retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.shutdown.cancelled() => return false,
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}

/// The message's headers plus where it was first consumed: the first trip
/// through the retry or held topic records it, later trips keep it, so the
/// DLQ can report the position an operator replays from.
fn with_origin(message: &Inbound) -> Vec<(String, Vec<u8>)> {
    let mut headers = message.headers.clone();
    if header_text(&message.headers, HeaderName::ORIGINAL_TOPIC).is_none() {
        set_header(&mut headers, HeaderName::ORIGINAL_TOPIC, message.topic.clone());
        set_header(&mut headers, HeaderName::ORIGINAL_PARTITION, message.partition.to_string());
        set_header(&mut headers, HeaderName::ORIGINAL_OFFSET, message.offset.to_string());
    }
    headers
}

fn truncate(reason: &str) -> String {
    const MAX: usize = 1024;
    if reason.len() <= MAX {
        return reason.to_owned();
    }
    let mut end = MAX;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_rounds_back_off_and_stay_capped() {
        let max = Duration::from_secs(300);
        let rounds: Vec<u64> = (1..=5).map(|a| retry_round_delay(Duration::from_secs(5), a, max).as_secs()).collect();
        assert_eq!(rounds, [5, 10, 20, 40, 80], "five rounds ride out a 30-second outage with room to spare");
        assert_eq!(retry_round_delay(Duration::from_secs(3600), 1, max), max, "no vendor or handler parks a message longer");
        assert_eq!(retry_round_delay(Duration::from_secs(5), 40, max), max);
    }
}
