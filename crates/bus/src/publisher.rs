//! The producing side: an idempotent producer (acks=all) whose `publish`
//! resolves only when the broker acknowledged the record, so callers can
//! order "publish, then commit" safely.

use crate::headers::{header_text, set_header, to_owned_headers, HeaderName};
use crate::positions::{Direction, MessagePosition, PositionSink};
use crate::{BusError, KafkaConfig};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A record to publish.
#[derive(Debug, Clone)]
pub struct Outbound {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

#[derive(Clone)]
pub struct Publisher {
    producer: FutureProducer,
    positions: Option<Arc<dyn PositionSink>>,
}

impl Publisher {
    pub fn new(kafka: &KafkaConfig) -> Result<Self, BusError> {
        Ok(Self { producer: kafka.producer_config().create()?, positions: None })
    }

    /// Tells `sink` where every acknowledged record landed.
    pub fn with_positions(mut self, sink: Arc<dyn PositionSink>) -> Self {
        self.positions = Some(sink);
        self
    }

    /// Publishes and waits for the broker's acknowledgement; returns the
    /// partition and offset the record landed at.
    pub async fn publish(&self, record: &Outbound) -> Result<(i32, i64), BusError> {
        // With trace export on, the record's traceparent names the publish
        // span, so the consumer's span hangs under it; off, both are no-ops.
        let span = crate::telemetry::publish_span(&record.topic, header_text(&record.headers, HeaderName::TRACEPARENT));
        let traced_headers = crate::telemetry::traceparent_of(&span).map(|tp| {
            let mut headers = record.headers.clone();
            set_header(&mut headers, HeaderName::TRACEPARENT, tp);
            headers
        });
        let headers = traced_headers.as_ref().unwrap_or(&record.headers);
        let mut fr = FutureRecord::to(&record.topic).payload(&record.payload).headers(to_owned_headers(headers));
        if let Some(key) = &record.key {
            fr = fr.key(key);
        }
        let sent = tracing::Instrument::instrument(self.producer.send(fr, Timeout::Never), span).await;
        let delivery = sent.map_err(|(e, _)| BusError::Kafka(e))?;
        if let Some(sink) = &self.positions {
            let at = MessagePosition::new(Direction::Published, &record.topic, delivery.partition, delivery.offset, record.key.as_deref(), &record.headers);
            sink.record(at).await;
        }
        Ok((delivery.partition, delivery.offset))
    }

    /// A fatal producer error (the idempotent producer lost its sequence,
    /// e.g. after the broker forgot its state): this producer will never
    /// deliver again and must be replaced.
    pub fn fatal_error(&self) -> Option<String> {
        self.producer.client().fatal_error().map(|(code, reason)| format!("{code:?}: {reason}"))
    }

    /// Connects to the cluster and learns the leaders of `topics` before
    /// the first record needs them: a fresh idempotent producer otherwise
    /// spends its first sends on metadata and on acquiring its producer id,
    /// which a service answering within a deadline (the gateway) cannot
    /// afford under load. Fails when the broker did not answer in `timeout`.
    pub async fn warm_up(&self, topics: &[&str], timeout: Duration) -> Result<(), BusError> {
        let producer = self.producer.clone();
        let topics: Vec<String> = topics.iter().map(|t| (*t).to_owned()).collect();
        let fetched = tokio::task::spawn_blocking(move || -> Result<(), BusError> {
            for topic in &topics {
                producer.client().fetch_metadata(Some(topic), timeout)?;
            }
            Ok(())
        })
        .await;
        fetched.map_err(|e| BusError::Config(format!("warm-up task: {e}")))?
    }

    /// Waits for everything queued to be delivered.
    pub fn flush(&self, timeout: Duration) -> Result<(), BusError> {
        self.producer.flush(timeout)?;
        Ok(())
    }
}

/// Publishes until the broker acknowledges, backing off from 100 ms to 5 s
/// between tries; false only if `shutdown` fired first. The one publish loop
/// of the runtime: outcomes, retry/held/DLQ copies and the held relay all
/// must land before an offset may move, and a broker outage must neither
/// fail the message nor hammer the broker.
pub async fn publish_until_acked(publisher: &Publisher, record: &Outbound, shutdown: &CancellationToken) -> bool {
    use backon::{ExponentialBuilder, Retryable};
    let policy = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times();
    let attempt = || publisher.publish(record);
    let acked = attempt
        .retry(policy)
        .sleep(tokio::time::sleep)
        .notify(|e, wait| tracing::warn!(error = %e, topic = %record.topic, ?wait, "publish failed; retrying"));
    tokio::select! {
        acked = acked => acked.is_ok(),
        _ = shutdown.cancelled() => false,
    }
}
