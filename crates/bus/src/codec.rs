//! Avro values of serde types, framed the Confluent way. The encoder writes
//! with our registered schema; the decoder reads any registered writer schema
//! into our reader schema through Avro schema resolution, so producers may
//! evolve compatibly without breaking consumers.

use crate::registry::{LookupError, RegistryClient};
use crate::wire::{self, FrameError};
use crate::BusError;
use apache_avro::Schema;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;

/// Encodes values with one schema registered under one subject.
#[derive(Debug, Clone)]
pub struct AvroEncoder {
    schema: Arc<Schema>,
    schema_id: u32,
}

impl AvroEncoder {
    /// Registers `schema_json` under `<topic>-value` and encodes with it.
    pub async fn register(registry: &RegistryClient, topic: &str, schema_json: &str) -> Result<Self, BusError> {
        let schema = Schema::parse_str(schema_json).map_err(|e| BusError::Avro(format!("schema for {topic}: {e}")))?;
        let schema_id = registry.register(&format!("{topic}-value"), schema_json).await?;
        Ok(Self { schema: Arc::new(schema), schema_id })
    }

    pub fn schema_id(&self) -> u32 {
        self.schema_id
    }

    pub fn encode<T: Serialize>(&self, value: &T) -> Result<Vec<u8>, BusError> {
        let value = apache_avro::to_value(value).map_err(|e| BusError::Avro(e.to_string()))?;
        // Serde output is loosely typed (strings for enums, tagged options);
        // resolving against the schema makes it exact before encoding.
        let value = value.resolve(&self.schema).map_err(|e| BusError::Avro(e.to_string()))?;
        let datum = apache_avro::to_avro_datum(&self.schema, value).map_err(|e| BusError::Avro(e.to_string()))?;
        Ok(wire::frame(self.schema_id, &datum))
    }
}

/// Why bytes could not be decoded. Everything but `RegistryUnavailable` is a
/// property of the message and sends it to the DLQ.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("unknown schema id {0}")]
    UnknownSchemaId(u32),
    #[error("avro datum does not match writer schema {schema_id}: {message}")]
    BadDatum { schema_id: u32, message: String },
    #[error("schema registry unavailable: {0}")]
    RegistryUnavailable(String),
}

impl DecodeError {
    /// True when retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, DecodeError::RegistryUnavailable(_))
    }
}

#[derive(Debug, Clone)]
pub struct AvroDecoder {
    registry: Arc<RegistryClient>,
    reader: Arc<Schema>,
}

impl AvroDecoder {
    pub fn new(registry: Arc<RegistryClient>, reader_schema_json: &str) -> Result<Self, BusError> {
        let reader = Schema::parse_str(reader_schema_json).map_err(|e| BusError::Avro(format!("reader schema: {e}")))?;
        Ok(Self { registry, reader: Arc::new(reader) })
    }

    pub async fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, DecodeError> {
        let (schema_id, mut datum) = wire::unframe(bytes)?;
        let writer = self.registry.schema_by_id(schema_id).await.map_err(|e| match e {
            LookupError::UnknownId(id) => DecodeError::UnknownSchemaId(id),
            LookupError::Unavailable(e) => DecodeError::RegistryUnavailable(e.to_string()),
        })?;
        let bad = |message: String| DecodeError::BadDatum { schema_id, message };
        let value = apache_avro::from_avro_datum(&writer, &mut datum, Some(&self.reader)).map_err(|e| bad(e.to_string()))?;
        if !datum.is_empty() {
            return Err(bad(format!("{} trailing bytes after the datum", datum.len())));
        }
        apache_avro::from_value(&value).map_err(|e| bad(e.to_string()))
    }
}
