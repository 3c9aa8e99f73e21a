//! Looks on the bus for an event whose publication has an unknown result.
//!
//! librdkafka reports a batch that was sent but not acknowledged within
//! `message.timeout.ms` as timed out, although the broker may have written it
//! (librdkafka calls it "possibly persisted"); a claimer may also have died,
//! or its mark been lost, after the broker's acknowledgement. Publishing such
//! an event again would put it on the bus twice, releasing it without looking
//! would lose nothing but duplicate it, and acknowledging it without looking
//! could lose it. So before an event of unknown fate is published again, the
//! topic is read from the time of its first attempt for a record carrying its
//! provider and event id: the way the workers query a vendor's status with
//! the same idempotency key after an ambiguous call.
//!
//! A record still held by a broker when this looks (a produce request queued
//! there for longer than the claim's lease) can land after it; then the event
//! is on the bus twice, with the same `provider-event-id` header and key, and
//! consumers drop the second copy by that header (see the README).

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use switchyard_bus::{HeaderName, KafkaConfig};

/// How long one look may take; the claim's lease must cover it and a publish.
pub(crate) const VERIFY_BUDGET: Duration = Duration::from_secs(3);
/// Records are stamped by producers and brokers whose clocks may differ.
const CLOCK_SKEW_MS: i64 = 2_000;

#[derive(Debug, thiserror::Error)]
pub(crate) enum VerifyError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("topic {0} has no partitions")]
    NoPartitions(String),
    #[error("the end of {0} was not reached within the verification budget")]
    TimedOut(String),
    #[error("verification task failed: {0}")]
    Task(String),
}

/// What to look for.
#[derive(Debug, Clone)]
pub(crate) struct Lookup {
    pub topic: String,
    pub provider: String,
    pub event_id: String,
    /// When the first attempt to publish it began.
    pub since_ms: i64,
}

/// True if a record of the event is on the topic.
pub(crate) async fn on_bus(kafka: &KafkaConfig, lookup: Lookup) -> Result<bool, VerifyError> {
    let kafka = kafka.clone();
    tokio::task::spawn_blocking(move || scan(&kafka, &lookup, VERIFY_BUDGET))
        .await
        .map_err(|e| VerifyError::Task(e.to_string()))?
}

fn scan(kafka: &KafkaConfig, lookup: &Lookup, budget: Duration) -> Result<bool, VerifyError> {
    let started = Instant::now();
    let started_ms = switchyard_canonical::now_ms();
    let mut config = kafka.consumer_config();
    // Partitions are assigned, never subscribed: this reader joins no group
    // and commits nothing. End of partition is how it knows it saw all.
    config
        .set("group.id", format!("{}.webhook-verify", kafka.group_id))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("fetch.wait.max.ms", "100");
    let consumer: BaseConsumer = config.create()?;
    let metadata = consumer.fetch_metadata(Some(lookup.topic.as_str()), budget)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == lookup.topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(VerifyError::NoPartitions(lookup.topic.clone()));
    }
    let mut from = TopicPartitionList::new();
    for p in &partitions {
        from.add_partition_offset(&lookup.topic, *p, Offset::Offset(lookup.since_ms - CLOCK_SKEW_MS))?;
    }
    let left = budget.saturating_sub(started.elapsed());
    let mut start = consumer.offsets_for_times(from, left).unwrap_or_else(|e| {
        // Reading more than needed is only slower.
        tracing::warn!(error = %e, "offsets by time unavailable; reading the topic from its beginning");
        let mut all = TopicPartitionList::new();
        for p in &partitions {
            let _ = all.add_partition_offset(&lookup.topic, *p, Offset::Beginning);
        }
        all
    });
    for p in &partitions {
        // An answer we cannot use: read the partition from its beginning,
        // which is slower, never wrong. `End` means no record is stamped at
        // or after the first attempt.
        let bad = match start.find_partition(&lookup.topic, *p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o < 0,
            Some(Offset::End) => false,
            _ => true,
        };
        if bad {
            start.set_partition_offset(&lookup.topic, *p, Offset::Beginning)?;
        }
    }
    // A partition is read to its end, which librdkafka reports as
    // end-of-partition. Not from a high mark asked for up front: tansu's can
    // lag its log (a run stopped before the record and published it again).
    let mut done: HashSet<i32> = HashSet::new();
    consumer.assign(&start)?;
    while done.len() < partitions.len() {
        if started.elapsed() >= budget {
            return Err(VerifyError::TimedOut(lookup.topic.clone()));
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                done.insert(p);
            }
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(m)) => {
                if is_the_event(&m, lookup) {
                    return Ok(true);
                }
                // Stamped after this look began: whatever follows on this
                // partition came later still.
                if m.timestamp().to_millis().is_some_and(|t| t > started_ms + CLOCK_SKEW_MS) {
                    done.insert(m.partition());
                }
            }
        }
    }
    Ok(false)
}

fn is_the_event(m: &rdkafka::message::BorrowedMessage<'_>, lookup: &Lookup) -> bool {
    let Some(headers) = m.headers() else { return false };
    let (mut provider, mut event_id) = (false, false);
    for h in headers.iter() {
        if h.key == HeaderName::PROVIDER_EVENT_ID {
            event_id = h.value == Some(lookup.event_id.as_bytes());
        } else if h.key == HeaderName::PROVIDER {
            provider = h.value == Some(lookup.provider.as_bytes());
        }
    }
    provider && event_id
}
