//! `topics.yaml`: the inventory of every topic, and its creation on a broker.

use crate::{BusError, KafkaConfig};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicsFile {
    pub topics: Vec<TopicSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub retention_ms: Option<i64>,
    /// Which field of the value is the key; documentation for producers.
    pub key: String,
    /// Path of the value's Avro schema, or null for raw bytes (DLQ).
    pub value_schema: Option<String>,
    pub producer: String,
    pub consumer: String,
}

impl TopicsFile {
    pub fn load(path: &Path) -> Result<Self, BusError> {
        let err = |message: String| BusError::TopicsFile { path: path.display().to_string(), message };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        Self::parse(&text).map_err(|e| match e {
            BusError::TopicsFile { message, .. } => err(message),
            other => other,
        })
    }

    pub fn parse(text: &str) -> Result<Self, BusError> {
        let file: TopicsFile = serde_norway::from_str(text)
            .map_err(|e| BusError::TopicsFile { path: "<text>".into(), message: e.to_string() })?;
        for t in &file.topics {
            if t.partitions < 1 {
                return Err(BusError::TopicsFile {
                    path: "<text>".into(),
                    message: format!("topics[{}].partitions must be at least 1", t.name),
                });
            }
        }
        Ok(file)
    }

    /// The same topics under a name prefix, so tests can run side by side on
    /// one broker without sharing data.
    pub fn with_prefix(&self, prefix: &str) -> Self {
        let mut copy = self.clone();
        for t in &mut copy.topics {
            t.name = format!("{prefix}{}", t.name);
        }
        copy
    }

    /// Creates every topic; existing topics are left as they are.
    pub async fn create_all(&self, kafka: &KafkaConfig) -> Result<(), BusError> {
        let admin: AdminClient<DefaultClientContext> = kafka.admin_config().create()?;
        let retention: Vec<String> = self.topics.iter().map(|t| t.retention_ms.unwrap_or(-1).to_string()).collect();
        let new_topics: Vec<NewTopic<'_>> = self
            .topics
            .iter()
            .zip(&retention)
            .map(|(t, r)| NewTopic::new(&t.name, t.partitions, TopicReplication::Fixed(1)).set("retention.ms", r))
            .collect();
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        for result in admin.create_topics(&new_topics, &opts).await? {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(BusError::Config(format!("creating topic {name}: {code}")));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_topics_file_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../topics.yaml");
        let file = TopicsFile::load(&path).expect("topics.yaml parses");
        assert!(file.topics.iter().any(|t| t.name == "payouts.commands.v1"));
        for t in file.topics.iter().filter_map(|t| t.value_schema.as_ref()) {
            let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(t);
            assert!(schema.exists(), "{t} named in topics.yaml exists");
        }
    }

    #[test]
    fn unknown_fields_are_refused_with_their_name() {
        let err = TopicsFile::parse("topics:\n  - name: a\n    partitions: 1\n    key: k\n    value_schema: null\n    producer: p\n    consumer: c\n    colour: red\n")
            .expect_err("unknown field");
        assert!(err.to_string().contains("colour"), "{err}");
    }
}
