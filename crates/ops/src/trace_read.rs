//! Which records a trace reads. A topic whose message positions the store
//! records (see `switchyard_store::positions`) is read only at the flow's
//! positions: a few fetches however long the topic. Any other topic is read
//! in full and filtered by key and correlation id, as before positions
//! existed; `--scan` reads every topic that way (for records older than the
//! topic's indexing, or a store that lost positions). A topic whose
//! watermarks say it is empty is not read at all.

use crate::read::{read_positions, read_topic, topic_sizes, ReadOptions, TopicMessage, TopicSizes};
use crate::trace::TopicKind;
use crate::OpsError;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use switchyard_bus::{HeaderName, KafkaConfig};
use switchyard_store::positions::Position;
use switchyard_store::AuditRecord;

/// How long a recorded position may stay silent before it counts as gone
/// (deleted by retention).
const MISSING_AFTER: Duration = Duration::from_secs(2);

pub(crate) struct Found {
    pub messages: Vec<TopicMessage>,
    /// Listed topics the broker does not have.
    pub missing_topics: Vec<String>,
    /// Topics read from their beginning (no recorded positions).
    pub scanned_topics: Vec<String>,
    /// Topics not read because their watermarks say they hold nothing.
    pub empty_topics: Vec<String>,
}

/// Reads the flow's records from `topics`: at `trail`'s positions on the
/// `indexed` topics, in full elsewhere.
pub(crate) async fn read_flow(
    kafka: &KafkaConfig,
    topics: &[String],
    options: ReadOptions,
    ids: &BTreeSet<String>,
    indexed: &HashSet<String>,
    trail: &[AuditRecord],
) -> Result<Found, OpsError> {
    let wanted = positions_by_topic(trail.iter().filter_map(Position::of), indexed);
    let shared_ids = Arc::new(ids.clone());
    let mut reads = tokio::task::JoinSet::new();
    let mut scanned_topics = Vec::new();
    let listed: Vec<String> = topics.iter().filter(|t| TopicKind::of(t).is_some()).cloned().collect();
    // Only topics that would be read in full are worth asking about.
    let to_scan: Vec<String> = listed.iter().filter(|t| !indexed.contains(*t)).cloned().collect();
    let sizes = if to_scan.is_empty() { TopicSizes::default() } else { topic_sizes(kafka, to_scan).await? };
    let mut missing_topics: Vec<String> = sizes.missing.iter().cloned().collect();
    let mut empty_topics: Vec<String> = sizes.empty.iter().cloned().collect();
    for topic in listed {
        if sizes.missing.contains(&topic) || sizes.empty.contains(&topic) {
            continue;
        }
        let kafka = kafka.clone();
        if indexed.contains(&topic) {
            let Some(positions) = wanted.get(&topic).cloned() else { continue };
            reads.spawn(async move { (topic.clone(), read_positions(&kafka, &topic, positions, MISSING_AFTER).await) });
        } else {
            scanned_topics.push(topic.clone());
            let ids = shared_ids.clone();
            reads.spawn(async move {
                let keep = move |m: &TopicMessage| {
                    ids.contains(&m.key_text()) || m.header(HeaderName::CORRELATION_ID).is_some_and(|c| ids.contains(c))
                };
                (topic.clone(), read_topic(&kafka, &topic, options, keep).await.map(|(found, _)| found))
            });
        }
    }
    let mut messages = Vec::new();
    while let Some(joined) = reads.join_next().await {
        let (topic, result) = joined.map_err(|e| OpsError::Usage(format!("topic reader failed: {e}")))?;
        match result {
            Ok(found) => messages.extend(found),
            Err(OpsError::UnknownTopic(_)) => missing_topics.push(topic),
            Err(e) => return Err(e),
        }
    }
    missing_topics.sort();
    scanned_topics.sort();
    empty_topics.sort();
    Ok(Found { messages, missing_topics, scanned_topics, empty_topics })
}

/// The records at positions of `audit` not read yet: the positions that
/// only the ids learnt from the first read's messages lead to.
pub(crate) async fn read_positions_not_read(
    kafka: &KafkaConfig,
    topics: &[String],
    indexed: &HashSet<String>,
    audit: &[AuditRecord],
    read: &[TopicMessage],
) -> Result<Vec<TopicMessage>, OpsError> {
    let seen: HashSet<(&str, i32, i64)> = read.iter().map(|m| (m.topic.as_str(), m.partition, m.offset)).collect();
    let listed: HashSet<&String> = topics.iter().filter(|t| TopicKind::of(t).is_some()).collect();
    let fresh = audit
        .iter()
        .filter_map(Position::of)
        .filter(|p| listed.contains(&p.topic) && !seen.contains(&(p.topic.as_str(), p.partition, p.offset)));
    let mut out = Vec::new();
    for (topic, positions) in positions_by_topic(fresh, indexed) {
        out.extend(read_positions(kafka, &topic, positions, MISSING_AFTER).await?);
    }
    Ok(out)
}

fn positions_by_topic(positions: impl Iterator<Item = Position>, indexed: &HashSet<String>) -> HashMap<String, BTreeSet<(i32, i64)>> {
    let mut by_topic: HashMap<String, BTreeSet<(i32, i64)>> = HashMap::new();
    for p in positions.filter(|p| indexed.contains(&p.topic)) {
        by_topic.entry(p.topic).or_default().insert((p.partition, p.offset));
    }
    by_topic
}
