//! Moves messages from one topic back to another while a condition holds:
//! the release of commands parked while their domain was off. At least once:
//! an offset is stored only after the copy was acknowledged, and processing
//! downstream is idempotent, so a copy made twice does no harm.

use crate::headers::{from_kafka_headers, HeaderName};
use crate::publisher::{Outbound, Publisher};
use crate::{BusError, KafkaConfig};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Message;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Relays `from` -> `to` in consumer group `group` whenever `enabled()` is
/// true, until shutdown. Headers added by the parking are dropped.
pub async fn relay_while(
    kafka: &KafkaConfig,
    from: &str,
    to: &str,
    group: &str,
    publisher: Publisher,
    enabled: impl Fn() -> bool,
    shutdown: CancellationToken,
) -> Result<(), BusError> {
    let mut config = kafka.consumer_config();
    config.set("group.id", group);
    let consumer: StreamConsumer = config.create()?;
    consumer.subscribe(&[from])?;
    loop {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        if !enabled() {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                _ = shutdown.cancelled() => return Ok(()),
            }
        }
        let message = tokio::select! {
            m = consumer.recv() => m,
            _ = shutdown.cancelled() => return Ok(()),
        };
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "relay consumer error");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let headers = from_kafka_headers(message.headers())
            .into_iter()
            .filter(|(k, _)| k != HeaderName::HELD_REASON)
            .collect();
        let record = Outbound {
            topic: to.to_owned(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            headers,
        };
        if !crate::publisher::publish_until_acked(&publisher, &record, &shutdown).await {
            return Ok(());
        }
        if let Err(e) = consumer.store_offset_from_message(&message) {
            tracing::debug!(error = %e, "relay offset not stored");
        }
    }
}
