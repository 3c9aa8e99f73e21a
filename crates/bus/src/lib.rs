//! The Kafka runtime every switchyard worker shares.
//!
//! # Layout
//! - [`config`]: typed broker settings and the rdkafka client configs built from them.
//! - [`wire`]: the Confluent wire format (magic byte, schema id, Avro datum).
//! - [`registry`]: a Confluent Schema Registry REST client with an id cache.
//! - [`codec`]: Avro encode/decode of serde types through the registry.
//! - [`headers`]: the header contract (correlation id, traceparent, idempotency key, ...).
//! - [`topics`]: `topics.yaml` and topic creation.
//! - [`deprecation`]: deprecated topics, their sunsets and the traffic still on them.
//! - [`publisher`]: an idempotent producer whose `publish` returns only once the broker acknowledged.
//! - [`positions`]: where each consumed and published message is, for `switchyard trace`.
//! - [`telemetry`]: consume and publish spans, exported over OTLP when turned on.
//! - [`offsets`]: per-partition tracking of finished offsets; only the contiguous prefix is committed.
//! - [`consumer`]: key-ordered parallel processing, retry topic and DLQ routing.
//! - [`relay`]: moves parked messages back to their topic while a condition holds.

pub mod codec;
pub mod config;
pub mod consumer;
pub mod deprecation;
pub mod headers;
pub mod offsets;
pub mod positions;
pub mod telemetry;
pub mod publisher;
pub mod registry;
pub mod relay;
pub mod topics;
pub mod wire;

pub use codec::{AvroDecoder, AvroEncoder, DecodeError};
pub use config::KafkaConfig;
pub use consumer::{ConsumerRuntime, Failure, Handler, Inbound, LedgerFuture, RoundLedger, RoundPosition, RuntimeSettings, RuntimeTopics};
pub use headers::{HeaderName, MessageContext};
pub use positions::{Direction, MessagePosition, PositionFuture, PositionSink};
pub use publisher::{publish_until_acked, Outbound, Publisher};
pub use registry::RegistryClient;

/// Errors of the bus runtime.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("schema registry at {url}: {message}")]
    Registry { url: String, message: String },
    #[error("avro: {0}")]
    Avro(String),
    #[error("topics file {path}: {message}")]
    TopicsFile { path: String, message: String },
    #[error("configuration: {0}")]
    Config(String),
}
