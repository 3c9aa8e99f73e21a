//! Reading a topic from its beginning to its end, without a consumer group.
//!
//! Partitions are assigned by hand (no group join, nothing committed), so an
//! operator's read never moves a worker's offsets. "The end" is decided by
//! three signals, because the local broker (tansu's memory engine) reports
//! watermarks that can be wrong:
//! - every partition reported end-of-partition and then nothing more arrived
//!   for a short settle time (an early EOF from a wrong watermark is followed
//!   by more records, which reset the wait);
//! - or no record and no EOF arrived for `idle` (a broker that never sends EOF);
//! - or the overall `deadline` passed, reported as [`ReadEnd::Deadline`].

use crate::OpsError;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::{Duration, Instant};
use switchyard_bus::KafkaConfig;

/// One record as read, detached from the consumer.
#[derive(Debug, Clone, Serialize)]
pub struct TopicMessage {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The broker's record timestamp (create time), when it has one.
    pub timestamp_ms: Option<i64>,
    #[serde(skip)]
    pub key: Option<Vec<u8>>,
    #[serde(skip)]
    pub payload: Vec<u8>,
    #[serde(skip)]
    pub headers: Vec<(String, Vec<u8>)>,
}

impl TopicMessage {
    pub fn key_text(&self) -> String {
        self.key.as_deref().map(String::from_utf8_lossy).unwrap_or_default().into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        switchyard_bus::headers::header_text(&self.headers, name)
    }

    /// When the record was produced: switchyard's `produced-at` header, else
    /// the broker timestamp.
    pub fn produced_at_ms(&self) -> Option<i64> {
        self.header(switchyard_bus::HeaderName::PRODUCED_AT).and_then(|v| v.parse().ok()).or(self.timestamp_ms)
    }
}

/// How long a read may take.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    /// Stop when nothing arrived for this long.
    pub idle: Duration,
    /// After every partition reported its end, wait this long for stragglers.
    pub settle: Duration,
    /// Stop regardless after this long.
    pub deadline: Duration,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self { idle: Duration::from_secs(3), settle: Duration::from_millis(300), deadline: Duration::from_secs(120) }
    }
}

/// Why a read stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadEnd {
    EndOfPartitions,
    Idle,
    Deadline,
}

/// What the broker's metadata and watermarks say about topics before
/// anything is read.
#[derive(Debug, Default)]
pub struct TopicSizes {
    /// Every partition's low watermark equals its high one: nothing to read.
    pub empty: HashSet<String>,
    /// The broker does not have the topic.
    pub missing: HashSet<String>,
}

/// Looks up `topics` on one client, all at once: a read of an empty topic
/// still costs a consumer, its metadata and the settle time after the
/// end-of-partition, which over the ~40 topics a trace lists was most of
/// its time. A topic whose watermarks cannot be read counts as not empty.
pub async fn topic_sizes(kafka: &KafkaConfig, topics: Vec<String>) -> Result<TopicSizes, OpsError> {
    let kafka = kafka.clone();
    tokio::task::spawn_blocking(move || topic_sizes_blocking(&kafka, &topics))
        .await
        .map_err(|e| OpsError::Usage(format!("watermark task failed: {e}")))?
}

fn topic_sizes_blocking(kafka: &KafkaConfig, topics: &[String]) -> Result<TopicSizes, OpsError> {
    const TIMEOUT: Duration = Duration::from_secs(10);
    let mut config = kafka.consumer_config();
    config.set("group.id", format!("switchyard-ops-{}", uuid::Uuid::new_v4().simple())).set("enable.auto.commit", "false");
    let consumer: BaseConsumer = config.create()?;
    let consumer = &consumer;
    // One request per topic and partition, each a round trip: in parallel.
    let answers: Vec<(String, Option<bool>)> = std::thread::scope(|scope| {
        let asks: Vec<_> = topics
            .iter()
            .map(|topic| {
                scope.spawn(move || {
                    let Ok(metadata) = consumer.fetch_metadata(Some(topic), TIMEOUT) else { return (topic.clone(), Some(false)) };
                    let partitions = partition_ids(&metadata, topic);
                    if partitions.is_empty() {
                        return (topic.clone(), None);
                    }
                    let empty = partitions
                        .iter()
                        .all(|p| consumer.fetch_watermarks(topic, *p, TIMEOUT).is_ok_and(|(low, high)| low >= high));
                    (topic.clone(), Some(empty))
                })
            })
            .collect();
        asks.into_iter().filter_map(|ask| ask.join().ok()).collect()
    });
    let mut sizes = TopicSizes::default();
    for (topic, answer) in answers {
        match answer {
            None => {
                sizes.missing.insert(topic);
            }
            Some(true) => {
                sizes.empty.insert(topic);
            }
            Some(false) => {}
        }
    }
    Ok(sizes)
}

/// Reads `topic` from the beginning; keeps the records `keep` accepts.
pub async fn read_topic(
    kafka: &KafkaConfig,
    topic: &str,
    options: ReadOptions,
    keep: impl Fn(&TopicMessage) -> bool + Send + 'static,
) -> Result<(Vec<TopicMessage>, ReadEnd), OpsError> {
    let kafka = kafka.clone();
    let topic = topic.to_owned();
    // librdkafka's poll blocks; keep it off the async workers.
    tokio::task::spawn_blocking(move || read_blocking(&kafka, &topic, options, keep))
        .await
        .map_err(|e| OpsError::Usage(format!("reader task failed: {e}")))?
}

fn read_blocking(
    kafka: &KafkaConfig,
    topic: &str,
    options: ReadOptions,
    keep: impl Fn(&TopicMessage) -> bool,
) -> Result<(Vec<TopicMessage>, ReadEnd), OpsError> {
    let mut config = kafka.consumer_config();
    // A throwaway group id: librdkafka wants one, nothing is committed under it.
    config
        .set("group.id", format!("switchyard-ops-{}", uuid::Uuid::new_v4().simple()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true");
    let consumer: BaseConsumer = config.create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions = partition_ids(&metadata, topic);
    if partitions.is_empty() {
        return Err(OpsError::UnknownTopic(topic.to_owned()));
    }
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;

    let started = Instant::now();
    let mut last_event = Instant::now();
    let mut at_end: HashSet<i32> = HashSet::new();
    let mut out = Vec::new();
    loop {
        if started.elapsed() >= options.deadline {
            return Ok((out, ReadEnd::Deadline));
        }
        let all_ended = at_end.len() == partitions.len();
        if all_ended && last_event.elapsed() >= options.settle {
            return Ok((out, ReadEnd::EndOfPartitions));
        }
        if last_event.elapsed() >= options.idle {
            return Ok((out, ReadEnd::Idle));
        }
        match consumer.poll(Duration::from_millis(50)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
                last_event = Instant::now();
            }
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(m)) => {
                at_end.remove(&m.partition());
                last_event = Instant::now();
                let record = detach(topic, &m);
                if keep(&record) {
                    out.push(record);
                }
            }
        }
    }
}

/// Reads the records at `positions` (partition, offset) of `topic`, in
/// offset order per partition. A position with no record (deleted by
/// retention, or never written) is skipped after `missing_after` without
/// anything arriving for it. Records between wanted ones are read through
/// when they are few, and skipped by a seek otherwise.
pub async fn read_positions(
    kafka: &KafkaConfig,
    topic: &str,
    positions: BTreeSet<(i32, i64)>,
    missing_after: Duration,
) -> Result<Vec<TopicMessage>, OpsError> {
    let kafka = kafka.clone();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || read_positions_blocking(&kafka, &topic, positions, missing_after))
        .await
        .map_err(|e| OpsError::Usage(format!("reader task failed: {e}")))?
}

/// Reading through this many records is cheaper than a seek (a new fetch).
const READ_THROUGH: i64 = 500;

fn read_positions_blocking(
    kafka: &KafkaConfig,
    topic: &str,
    positions: BTreeSet<(i32, i64)>,
    missing_after: Duration,
) -> Result<Vec<TopicMessage>, OpsError> {
    let mut config = kafka.consumer_config();
    // No end-of-partition events: the local broker's watermarks can be
    // wrong, so absence is decided by time, not by an early EOF.
    config
        .set("group.id", format!("switchyard-ops-{}", uuid::Uuid::new_v4().simple()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    let consumer: BaseConsumer = config.create()?;
    let mut by_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for (partition, offset) in positions {
        by_partition.entry(partition).or_default().push(offset);
    }
    let mut out = Vec::new();
    for (partition, offsets) in by_partition {
        let mut pending = offsets.into_iter().peekable();
        while let Some(&start) = pending.peek() {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(topic, partition, Offset::Offset(start))?;
            consumer.assign(&tpl)?;
            let mut waiting_since = Instant::now();
            loop {
                if pending.peek().is_none() {
                    break;
                }
                if waiting_since.elapsed() >= missing_after {
                    pending.next();
                    break;
                }
                match consumer.poll(Duration::from_millis(50)) {
                    None => {}
                    Some(Err(e)) => return Err(e.into()),
                    Some(Ok(m)) if m.partition() != partition => {}
                    Some(Ok(m)) => {
                        let offset = m.offset();
                        // Wanted offsets below what arrived do not exist.
                        while pending.next_if(|&w| w < offset).is_some() {}
                        if pending.next_if_eq(&offset).is_some() {
                            out.push(detach(topic, &m));
                            waiting_since = Instant::now();
                        }
                        match pending.peek() {
                            Some(&next) if next - offset > READ_THROUGH => break,
                            Some(_) => {}
                            None => break,
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

fn detach(topic: &str, m: &rdkafka::message::BorrowedMessage<'_>) -> TopicMessage {
    let headers = m
        .headers()
        .map(|h| h.iter().map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec).unwrap_or_default())).collect())
        .unwrap_or_default();
    TopicMessage {
        topic: topic.to_owned(),
        partition: m.partition(),
        offset: m.offset(),
        timestamp_ms: m.timestamp().to_millis(),
        key: m.key().map(<[u8]>::to_vec),
        payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        headers,
    }
}

/// The partitions the broker reports for `topic` (none when it reports the
/// topic with an error, or not at all).
fn partition_ids(metadata: &rdkafka::metadata::Metadata, topic: &str) -> Vec<i32> {
    metadata.topics().iter().filter(|t| t.name() == topic && t.error().is_none()).flat_map(|t| t.partitions().iter().map(|p| p.id())).collect()
}
