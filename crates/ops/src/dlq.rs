//! `switchyard dlq list | show | replay`.
//!
//! A DLQ record is the original command bytes with the failure in headers
//! (`dlq-reason`, `dlq-error-class`, `dlq-source-topic/-partition/-offset`,
//! `dlq-failed-at`), plus any `retry-*` / `original-*` headers it gathered on
//! the way. The consumer already reports the *original* position in
//! `dlq-source-*`, even for a message that failed on the retry topic.
//!
//! Replay, per selected record:
//! 1. the target is `dlq-source-topic`, else `original-topic`, else the DLQ
//!    name without `.dlq`; a `.retry`/`.held` name is mapped back to its
//!    command topic, so a replay always enters through the front door;
//! 2. `dlq-*`, `retry-*`, `original-*` and `held-*` headers are stripped
//!    (a replayed message must not keep its exhausted retry count); key,
//!    value, `correlation-id`, `traceparent` and `idempotency-key` are kept;
//! 3. the position is claimed in the store's replay ledger, published with
//!    the broker's ack, marked published, and an audit entry is written
//!    (actor `switchyard-dlq`). Claimed or published positions are skipped
//!    unless `force`, so running the same replay twice sends each message
//!    once; the worker's idempotency store makes even a forced repeat
//!    harmless (it answers from the stored outcome, no second vendor call).
//!
//! `dry_run` reads the ledger but writes nothing and publishes nothing; it
//! reports what a real run would do with each record.
//!
//! Depth is counted by reading the topic rather than from watermarks: DLQs
//! are small, and tansu's memory engine reports wrong watermarks.

use crate::read::{read_topic, ReadEnd, ReadOptions, TopicMessage};
use crate::OpsError;
use serde::Serialize;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use switchyard_bus::{HeaderName, KafkaConfig, Outbound, Publisher};
use switchyard_store::{AuditEntry, DlqPosition, Store};

/// The audit actor of every replay.
pub const ACTOR: &str = "switchyard-dlq";

/// Header prefixes a replay removes: failure bookkeeping of the last trip.
const STRIPPED_PREFIXES: &[&str] = &["dlq-", "retry-", "original-", "held-"];

/// A DLQ record with its failure headers decoded.
#[derive(Debug, Clone, Serialize)]
pub struct DlqMessage {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub reason: Option<String>,
    pub error_class: Option<String>,
    pub source_topic: Option<String>,
    pub source_partition: Option<i32>,
    pub source_offset: Option<i64>,
    /// When the worker gave up (Unix ms): `dlq-failed-at`, else the record time.
    pub failed_at_ms: Option<i64>,
    /// Trips through the retry topic before it was dead-lettered.
    pub retry_attempts: Option<u32>,
    pub correlation_id: Option<String>,
    pub payload_bytes: usize,
    /// `claimed` or `published` once a replay took it; `None` if never replayed.
    pub replay_state: Option<String>,
    /// Every header, values as text (lossy), in record order.
    pub headers: Vec<(String, String)>,
    #[serde(skip)]
    raw: TopicMessage,
}

impl DlqMessage {
    pub fn from_record(raw: TopicMessage) -> Self {
        let text = |name: &str| raw.header(name).map(str::to_owned);
        Self {
            topic: raw.topic.clone(),
            partition: raw.partition,
            offset: raw.offset,
            key: raw.key_text(),
            reason: text(HeaderName::DLQ_REASON),
            error_class: text(HeaderName::DLQ_ERROR_CLASS),
            source_topic: text(HeaderName::DLQ_SOURCE_TOPIC),
            source_partition: raw.header(HeaderName::DLQ_SOURCE_PARTITION).and_then(|v| v.parse().ok()),
            source_offset: raw.header(HeaderName::DLQ_SOURCE_OFFSET).and_then(|v| v.parse().ok()),
            failed_at_ms: raw.header(HeaderName::DLQ_FAILED_AT).and_then(|v| v.parse().ok()).or(raw.timestamp_ms),
            retry_attempts: raw.header(HeaderName::RETRY_ATTEMPT).and_then(|v| v.parse().ok()),
            correlation_id: text(HeaderName::CORRELATION_ID),
            payload_bytes: raw.payload.len(),
            replay_state: None,
            headers: raw.headers.iter().map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned())).collect(),
            raw,
        }
    }

    pub fn position(&self) -> DlqPosition {
        DlqPosition { topic: self.topic.clone(), partition: self.partition, offset: self.offset }
    }

    /// Where a replay sends this record, or why it cannot.
    pub fn replay_target(&self) -> Result<String, String> {
        let named = self
            .source_topic
            .clone()
            .or_else(|| self.raw.header(HeaderName::ORIGINAL_TOPIC).map(str::to_owned))
            .or_else(|| self.topic.strip_suffix(".dlq").map(str::to_owned))
            .ok_or_else(|| format!("{} has no source topic header and no .dlq suffix", self.topic))?;
        let front_door = [".retry", ".held"].iter().find_map(|s| named.strip_suffix(s)).unwrap_or(&named).to_owned();
        if front_door == self.topic || front_door.ends_with(".dlq") || front_door.is_empty() {
            return Err(format!("source topic {named:?} is a dead-letter topic"));
        }
        Ok(front_door)
    }

    /// The record a replay publishes: same key and value, failure headers removed.
    pub fn replay_record(&self) -> Result<Outbound, String> {
        let topic = self.replay_target()?;
        let headers = self
            .raw
            .headers
            .iter()
            .filter(|(k, _)| !STRIPPED_PREFIXES.iter().any(|p| k.starts_with(p)))
            .cloned()
            .collect();
        Ok(Outbound { topic, key: self.raw.key.clone(), payload: self.raw.payload.clone(), headers })
    }
}

/// Which DLQ records a command acts on. Every set field must match.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub partition: Option<i32>,
    /// Inclusive offset range on the DLQ topic.
    pub from_offset: Option<i64>,
    pub to_offset: Option<i64>,
    pub key: Option<String>,
    /// Case-insensitive substring of `dlq-reason` or equal to `dlq-error-class`.
    pub reason: Option<String>,
    /// Dead-lettered at least this long ago.
    pub older_than: Option<Duration>,
    /// Dead-lettered at most this long ago.
    pub newer_than: Option<Duration>,
    /// At most this many, oldest first.
    pub limit: Option<usize>,
}

impl Selection {
    /// True when no filter is set: replay refuses that without `--all`.
    pub fn is_everything(&self) -> bool {
        self.partition.is_none()
            && self.from_offset.is_none()
            && self.to_offset.is_none()
            && self.key.is_none()
            && self.reason.is_none()
            && self.older_than.is_none()
            && self.newer_than.is_none()
            && self.limit.is_none()
    }

    pub fn matches(&self, m: &DlqMessage, now_ms: i64) -> bool {
        let age = m.failed_at_ms.map(|t| now_ms - t);
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        self.partition.is_none_or(|p| p == m.partition)
            && self.from_offset.is_none_or(|o| m.offset >= o)
            && self.to_offset.is_none_or(|o| m.offset <= o)
            && self.key.as_ref().is_none_or(|k| *k == m.key)
            && self.reason.as_ref().is_none_or(|r| {
                let r = r.to_lowercase();
                m.reason.as_deref().is_some_and(|x| x.to_lowercase().contains(&r))
                    || m.error_class.as_deref().is_some_and(|c| c.eq_ignore_ascii_case(&r))
            })
            && self.older_than.is_none_or(|d| age.is_some_and(|a| a >= ms(d)))
            && self.newer_than.is_none_or(|d| age.is_some_and(|a| a <= ms(d)))
    }
}

/// One DLQ topic at a glance.
#[derive(Debug, Clone, Serialize)]
pub struct DlqSummary {
    pub topic: String,
    /// False when topics.yaml lists it but the broker does not have it.
    pub exists: bool,
    /// Records on the topic (counted by reading it).
    pub depth: usize,
    /// Of those, already replayed (published or claimed by a replay).
    pub replayed: usize,
    pub oldest_failed_at_ms: Option<i64>,
    pub newest_failed_at_ms: Option<i64>,
    /// The most frequent reason and how often it occurs.
    pub top_reason: Option<(String, usize)>,
    pub read_end: ReadEnd,
}

/// Reads every record of `topic`, decoded, with its replay state if a store is given.
pub async fn read(kafka: &KafkaConfig, store: Option<&Store>, topic: &str, options: ReadOptions) -> Result<(Vec<DlqMessage>, ReadEnd), OpsError> {
    let (records, end) = read_topic(kafka, topic, options, |_| true).await?;
    let mut messages: Vec<DlqMessage> = records.into_iter().map(DlqMessage::from_record).collect();
    if let Some(store) = store {
        let states: HashMap<DlqPosition, String> = store.replay_states(topic).await?.into_iter().collect();
        for m in &mut messages {
            m.replay_state = states.get(&m.position()).cloned();
        }
    }
    messages.sort_by_key(|m| (m.failed_at_ms, m.partition, m.offset));
    Ok((messages, end))
}

/// Depth, replayed count, age span and top reason of each topic.
pub async fn list(kafka: &KafkaConfig, store: Option<&Store>, topics: &[String], options: ReadOptions) -> Result<Vec<DlqSummary>, OpsError> {
    let mut out = Vec::with_capacity(topics.len());
    for topic in topics {
        let (messages, read_end) = match read(kafka, store, topic, options).await {
            Ok(found) => found,
            Err(OpsError::UnknownTopic(_)) => {
                out.push(DlqSummary {
                    topic: topic.clone(),
                    exists: false,
                    depth: 0,
                    replayed: 0,
                    oldest_failed_at_ms: None,
                    newest_failed_at_ms: None,
                    top_reason: None,
                    read_end: ReadEnd::EndOfPartitions,
                });
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut reasons: HashMap<String, usize> = HashMap::new();
        for m in &messages {
            *reasons.entry(short_reason(m.reason.as_deref().unwrap_or("(none)"))).or_default() += 1;
        }
        let top_reason = reasons.into_iter().max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)));
        out.push(DlqSummary {
            topic: topic.clone(),
            exists: true,
            depth: messages.len(),
            replayed: messages.iter().filter(|m| m.replay_state.is_some()).count(),
            oldest_failed_at_ms: messages.iter().filter_map(|m| m.failed_at_ms).min(),
            newest_failed_at_ms: messages.iter().filter_map(|m| m.failed_at_ms).max(),
            top_reason,
            read_end,
        });
    }
    Ok(out)
}

/// The selected records of `topic`, oldest failure first.
pub async fn show(kafka: &KafkaConfig, store: Option<&Store>, topic: &str, selection: &Selection, options: ReadOptions) -> Result<Vec<DlqMessage>, OpsError> {
    let (messages, _) = read(kafka, store, topic, options).await?;
    Ok(select(messages, selection))
}

fn select(messages: Vec<DlqMessage>, selection: &Selection) -> Vec<DlqMessage> {
    let now = switchyard_canonical::now_ms();
    let selected = messages.into_iter().filter(|m| selection.matches(m, now));
    match selection.limit {
        Some(n) => selected.take(n).collect(),
        None => selected.collect(),
    }
}

/// The first clause of a reason, so similar failures group together in `list`.
fn short_reason(reason: &str) -> String {
    let first = reason.split(": ").take(2).collect::<Vec<_>>().join(": ");
    first.chars().take(60).collect()
}

#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub selection: Selection,
    /// Report what would happen; publish and write nothing.
    pub dry_run: bool,
    /// Replay positions the ledger says were already replayed.
    pub force: bool,
    /// Records per second at most.
    pub rate_per_sec: f64,
    /// Who asked (operator name), recorded in the audit detail.
    pub operator: String,
}

/// What a replay did, or would do, with one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ReplayAction {
    Replayed { target: String, partition: i32, offset: i64 },
    WouldReplay { target: String },
    AlreadyReplayed { state: String },
    Unroutable { why: String },
    Failed { error: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplayItem {
    pub message: DlqMessage,
    pub action: ReplayAction,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplayReport {
    pub dry_run: bool,
    pub items: Vec<ReplayItem>,
}

impl ReplayReport {
    pub fn count(&self, pred: impl Fn(&ReplayAction) -> bool) -> usize {
        self.items.iter().filter(|i| pred(&i.action)).count()
    }

    pub fn replayed(&self) -> usize {
        self.count(|a| matches!(a, ReplayAction::Replayed { .. }))
    }

    pub fn skipped(&self) -> usize {
        self.count(|a| matches!(a, ReplayAction::AlreadyReplayed { .. }))
    }

    pub fn failed(&self) -> usize {
        self.count(|a| matches!(a, ReplayAction::Failed { .. } | ReplayAction::Unroutable { .. }))
    }
}

/// Replays the selected records of `topic` (see the module doc for the
/// rules). `progress(done, total)` is called after each record.
pub async fn replay(
    kafka: &KafkaConfig,
    publisher: &Publisher,
    store: &Store,
    topic: &str,
    options: &ReplayOptions,
    read_options: ReadOptions,
    mut progress: impl FnMut(usize, usize),
) -> Result<ReplayReport, OpsError> {
    let (messages, _) = read(kafka, Some(store), topic, read_options).await?;
    let selected = select(messages, &options.selection);
    let total = selected.len();
    let mut report = ReplayReport { dry_run: options.dry_run, items: Vec::with_capacity(total) };
    let interval = Duration::from_secs_f64(1.0 / options.rate_per_sec.max(0.001));
    let started = Instant::now();
    let mut sent: u32 = 0;
    for (i, message) in selected.into_iter().enumerate() {
        let action = match (message.replay_record(), &message.replay_state) {
            (Err(why), _) => ReplayAction::Unroutable { why },
            (Ok(_), Some(state)) if !options.force => ReplayAction::AlreadyReplayed { state: state.clone() },
            (Ok(record), _) if options.dry_run => ReplayAction::WouldReplay { target: record.topic },
            (Ok(record), _) => {
                // Pace publishes evenly at the rate limit.
                let due = started + interval * sent;
                tokio::time::sleep_until(due.into()).await;
                sent += 1;
                replay_one(publisher, store, &message, record, options).await?
            }
        };
        report.items.push(ReplayItem { message, action });
        progress(i + 1, total);
    }
    Ok(report)
}

/// Claim, publish, mark, audit. A store error is returned (the run stops, the
/// ledger says exactly how far it got); a publish error releases the claim
/// and is reported for this record only.
async fn replay_one(publisher: &Publisher, store: &Store, message: &DlqMessage, record: Outbound, options: &ReplayOptions) -> Result<ReplayAction, OpsError> {
    let position = message.position();
    if !store.claim_replay(&position, &record.topic, &message.key, &options.operator, options.force).await? {
        // Another replay took it between our read and now.
        return Ok(ReplayAction::AlreadyReplayed { state: "claimed".into() });
    }
    let (partition, offset) = match publisher.publish(&record).await {
        Ok(at) => at,
        Err(e) => {
            store.release_replay(&position).await?;
            return Ok(ReplayAction::Failed { error: e.to_string() });
        }
    };
    store.replay_published(&position, partition, offset).await?;
    let detail = serde_json::json!({
        "dlq_topic": position.topic,
        "dlq_partition": position.partition,
        "dlq_offset": position.offset,
        "target_topic": record.topic,
        "target_partition": partition,
        "target_offset": offset,
        "reason": message.reason,
        "forced": options.force && message.replay_state.is_some(),
        "operator": options.operator,
    })
    .to_string();
    let correlation_id = message.correlation_id.clone().unwrap_or_default();
    store
        .audit(AuditEntry { actor: ACTOR, action: "dlq_replay", subject_id: &message.key, correlation_id: &correlation_id, detail: &detail })
        .await?;
    Ok(ReplayAction::Replayed { target: record.topic, partition, offset })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dlq_record(headers: &[(&str, &str)]) -> DlqMessage {
        DlqMessage::from_record(TopicMessage {
            topic: "p.payouts.commands.v1.dlq".into(),
            partition: 0,
            offset: 4,
            timestamp_ms: Some(1_000),
            key: Some(b"po-1".to_vec()),
            payload: vec![0, 0, 0, 0, 1, 2],
            headers: headers.iter().map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec())).collect(),
        })
    }

    #[test]
    fn replay_strips_failure_headers_and_keeps_the_context() {
        let m = dlq_record(&[
            ("correlation-id", "corr-1"),
            ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            ("idempotency-key", "k-1"),
            ("retry-attempt", "3"),
            ("retry-not-before", "123"),
            ("original-topic", "p.payouts.commands.v1"),
            ("original-partition", "2"),
            ("dlq-reason", "retries exhausted after 3 rounds: 503"),
            ("dlq-source-topic", "p.payouts.commands.v1"),
            ("dlq-failed-at", "900"),
        ]);
        let record = m.replay_record().expect("routable");
        assert_eq!(record.topic, "p.payouts.commands.v1");
        assert_eq!(record.key.as_deref(), Some(&b"po-1"[..]));
        assert_eq!(record.payload, vec![0, 0, 0, 0, 1, 2]);
        let names: Vec<&str> = record.headers.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["correlation-id", "traceparent", "idempotency-key"]);
        assert_eq!(m.retry_attempts, Some(3));
        assert_eq!(m.failed_at_ms, Some(900));
    }

    #[test]
    fn targets_go_through_the_front_door() {
        let from_retry = dlq_record(&[("dlq-source-topic", "p.payouts.commands.v1.retry")]);
        assert_eq!(from_retry.replay_target().as_deref(), Ok("p.payouts.commands.v1"));
        let original = dlq_record(&[("original-topic", "p.payouts.commands.v1")]);
        assert_eq!(original.replay_target().as_deref(), Ok("p.payouts.commands.v1"));
        let bare = dlq_record(&[]);
        assert_eq!(bare.replay_target().as_deref(), Ok("p.payouts.commands.v1"));
        let looping = dlq_record(&[("dlq-source-topic", "p.payouts.commands.v1.dlq")]);
        assert!(looping.replay_target().is_err(), "never replays into a DLQ");
    }

    #[test]
    fn selection_filters_combine() {
        let m = dlq_record(&[("dlq-reason", "Retries exhausted: HTTP 503"), ("dlq-error-class", "manual_repair"), ("dlq-failed-at", "1000")]);
        let now = 61_000;
        assert!(Selection::default().matches(&m, now));
        assert!(Selection::default().is_everything());
        assert!(Selection { reason: Some("http 503".into()), ..Selection::default() }.matches(&m, now));
        assert!(Selection { reason: Some("MANUAL_REPAIR".into()), ..Selection::default() }.matches(&m, now));
        assert!(!Selection { reason: Some("timeout".into()), ..Selection::default() }.matches(&m, now));
        assert!(Selection { from_offset: Some(4), to_offset: Some(4), ..Selection::default() }.matches(&m, now));
        assert!(!Selection { from_offset: Some(5), ..Selection::default() }.matches(&m, now));
        assert!(!Selection { key: Some("po-2".into()), ..Selection::default() }.matches(&m, now));
        assert!(Selection { older_than: Some(Duration::from_secs(60)), ..Selection::default() }.matches(&m, now));
        assert!(!Selection { newer_than: Some(Duration::from_secs(59)), ..Selection::default() }.matches(&m, now));
    }
}
