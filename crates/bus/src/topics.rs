//! `topics.yaml`: the inventory of every topic, and its creation on a broker.

use crate::{BusError, KafkaConfig};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicsFile {
    /// Replication of every topic that does not set its own.
    #[serde(default)]
    pub defaults: TopicDefaults,
    pub topics: Vec<TopicSpec>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicDefaults {
    pub replication_factor: Option<i32>,
    pub min_insync_replicas: Option<i32>,
    /// Schema compatibility of every topic that does not set its own;
    /// BACKWARD (Confluent's default) when unset.
    #[serde(default)]
    pub compatibility: Option<Compatibility>,
}

/// How a topic's value schema may evolve, with Confluent's level names and
/// meanings (`switchyard schemas check` and the registry stand-in enforce it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Compatibility {
    #[default]
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
    None,
}

impl Compatibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Backward => "BACKWARD",
            Self::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Self::Forward => "FORWARD",
            Self::ForwardTransitive => "FORWARD_TRANSITIVE",
            Self::Full => "FULL",
            Self::FullTransitive => "FULL_TRANSITIVE",
            Self::None => "NONE",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(from = "RawTopicSpec")]
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
    /// Overrides `defaults.replication_factor`; 1 when neither is set.
    #[serde(default)]
    pub replication_factor: Option<i32>,
    /// Overrides `defaults.min_insync_replicas`; the broker's default when
    /// neither is set. With `acks=all` (our producers) a write succeeds only
    /// once this many replicas have it.
    #[serde(default)]
    pub min_insync_replicas: Option<i32>,
}

/// A topic as written in the file. Its `compatibility` is read by
/// [`compatibility_levels`] instead of being kept on [`TopicSpec`], so code
/// that builds `TopicSpec` literals (bench topics) need not name it; it is
/// declared here so unknown fields are still refused and misspelt levels
/// fail at load.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopicSpec {
    name: String,
    partitions: i32,
    retention_ms: Option<i64>,
    key: String,
    value_schema: Option<String>,
    producer: String,
    consumer: String,
    #[serde(default)]
    replication_factor: Option<i32>,
    #[serde(default)]
    min_insync_replicas: Option<i32>,
    #[serde(default, rename = "compatibility")]
    _compatibility: Option<Compatibility>,
    /// Read by [`crate::deprecation::deprecations`]; declared so a bad
    /// sunset fails at load.
    #[serde(default, rename = "deprecated")]
    _deprecated: Option<crate::deprecation::Deprecation>,
}

impl From<RawTopicSpec> for TopicSpec {
    fn from(raw: RawTopicSpec) -> Self {
        Self {
            name: raw.name,
            partitions: raw.partitions,
            retention_ms: raw.retention_ms,
            key: raw.key,
            value_schema: raw.value_schema,
            producer: raw.producer,
            consumer: raw.consumer,
            replication_factor: raw.replication_factor,
            min_insync_replicas: raw.min_insync_replicas,
        }
    }
}

/// Every topic's schema compatibility level by name: its own
/// `compatibility`, else `defaults.compatibility`, else BACKWARD. The file is
/// validated as [`TopicsFile::parse`] does first.
pub fn compatibility_levels(text: &str) -> Result<BTreeMap<String, Compatibility>, BusError> {
    #[derive(Deserialize)]
    struct Levels {
        #[serde(default)]
        defaults: TopicDefaults,
        topics: Vec<Level>,
    }
    #[derive(Deserialize)]
    struct Level {
        name: String,
        #[serde(default)]
        compatibility: Option<Compatibility>,
    }
    TopicsFile::parse(text)?;
    let levels: Levels = serde_norway::from_str(text)
        .map_err(|e| BusError::TopicsFile { path: "<text>".into(), message: e.to_string() })?;
    let default = levels.defaults.compatibility.unwrap_or_default();
    Ok(levels.topics.into_iter().map(|t| (t.name, t.compatibility.unwrap_or(default))).collect())
}

/// Each registered subject (`<topic>-value`, TopicNameStrategy) of the
/// topics with an Avro value, with its topic's compatibility level, for a
/// registry's `PUT /config/{subject}`. Retry and held topics carry their
/// source's bytes under the source's subject, so they add none.
pub fn subject_levels(text: &str, prefix: &str) -> Result<Vec<(String, Compatibility)>, BusError> {
    let file = TopicsFile::parse(text)?;
    let levels = compatibility_levels(text)?;
    Ok(file
        .topics
        .iter()
        .filter(|t| t.value_schema.is_some() && !t.name.ends_with(".retry") && !t.name.ends_with(".held"))
        .map(|t| (format!("{prefix}{}-value", t.name), levels.get(&t.name).copied().unwrap_or_default()))
        .collect())
}

/// How one topic is replicated, defaults applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replication {
    pub factor: i32,
    pub min_insync: Option<i32>,
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
        file.validate().map_err(|message| BusError::TopicsFile { path: "<text>".into(), message })?;
        Ok(file)
    }

    /// Every error names the topic (or `defaults`) and the field at fault.
    fn validate(&self) -> Result<(), String> {
        let d = &self.defaults;
        for (field, v) in [("replication_factor", d.replication_factor), ("min_insync_replicas", d.min_insync_replicas)] {
            if v.is_some_and(|v| v < 1) {
                return Err(format!("defaults.{field} must be at least 1"));
            }
        }
        if let (Some(rf), Some(min)) = (d.replication_factor, d.min_insync_replicas) {
            if min > rf {
                return Err(format!("defaults.min_insync_replicas ({min}) exceeds defaults.replication_factor ({rf})"));
            }
        }
        for t in &self.topics {
            if t.partitions < 1 {
                return Err(format!("topics[{}].partitions must be at least 1", t.name));
            }
            for (field, v) in [("replication_factor", t.replication_factor), ("min_insync_replicas", t.min_insync_replicas)] {
                if v.is_some_and(|v| v < 1) {
                    return Err(format!("topics[{}].{field} must be at least 1", t.name));
                }
            }
            let r = self.replication_of(t);
            if let Some(min) = r.min_insync.filter(|&min| min > r.factor) {
                return Err(format!(
                    "topics[{}].min_insync_replicas ({min}) exceeds its replication_factor ({}); with acks=all no write could succeed",
                    t.name, r.factor
                ));
            }
        }
        Ok(())
    }

    /// A topic's replication with the file's defaults applied.
    pub fn replication_of(&self, t: &TopicSpec) -> Replication {
        Replication {
            factor: t.replication_factor.or(self.defaults.replication_factor).unwrap_or(1),
            min_insync: t.min_insync_replicas.or(self.defaults.min_insync_replicas),
        }
    }

    /// The same topics replicated at most `max` times, `min_insync_replicas`
    /// lowered to match. topics.yaml describes production (3 replicas, 2 in
    /// sync); a stack with fewer brokers (a single tansu, docker-compose's
    /// single Kafka) cannot create those topics, so its tooling caps them
    /// explicitly: the local stack at one, the CLI with
    /// `switchyard topics create --max-replication-factor`.
    /// Production passes no cap, so a cluster short of brokers fails
    /// loudly instead of creating under-replicated topics.
    pub fn capped_replication(&self, max: i32) -> Self {
        let max = max.max(1);
        let mut copy = self.clone();
        for t in &mut copy.topics {
            let r = self.replication_of(t);
            let factor = r.factor.min(max);
            t.replication_factor = Some(factor);
            t.min_insync_replicas = r.min_insync.map(|m| m.min(factor));
        }
        copy
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

    /// Creates every topic; existing topics are left as they are (their
    /// replication included: changing it is a reassignment, not a create).
    pub async fn create_all(&self, kafka: &KafkaConfig) -> Result<(), BusError> {
        let admin: AdminClient<DefaultClientContext> = kafka.admin_config().create()?;
        let settings: Vec<(Replication, String, Option<String>)> = self
            .topics
            .iter()
            .map(|t| {
                let r = self.replication_of(t);
                (r, t.retention_ms.unwrap_or(-1).to_string(), r.min_insync.map(|m| m.to_string()))
            })
            .collect();
        let new_topics: Vec<NewTopic<'_>> = self
            .topics
            .iter()
            .zip(&settings)
            .map(|(t, (r, retention, min_insync))| {
                let topic = NewTopic::new(&t.name, t.partitions, TopicReplication::Fixed(r.factor)).set("retention.ms", retention);
                match min_insync {
                    Some(m) => topic.set("min.insync.replicas", m),
                    None => topic,
                }
            })
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

    const TWO: &str = "topics:\n  - { name: a, partitions: 1, key: k, value_schema: null, producer: p, consumer: c }\n  - { name: b, partitions: 1, key: k, value_schema: null, producer: p, consumer: c, replication_factor: 5, min_insync_replicas: 3 }\n";

    fn replications(file: &TopicsFile) -> Vec<Replication> {
        file.topics.iter().map(|t| file.replication_of(t)).collect()
    }

    #[test]
    fn replication_settings_parse_with_file_defaults() {
        let text = format!("defaults: {{ replication_factor: 3, min_insync_replicas: 2 }}\n{TWO}");
        let file = TopicsFile::parse(&text).expect("parses");
        assert_eq!(
            replications(&file),
            [Replication { factor: 3, min_insync: Some(2) }, Replication { factor: 5, min_insync: Some(3) }],
            "a topic's own setting wins over the defaults"
        );
        // Without defaults: one replica, the broker's min.insync.replicas.
        let bare = TopicsFile::parse(TWO).expect("parses");
        assert_eq!(replications(&bare)[0], Replication { factor: 1, min_insync: None });
    }

    #[test]
    fn the_repository_topics_file_asks_for_three_replicas_two_in_sync() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../topics.yaml");
        let file = TopicsFile::load(&path).expect("topics.yaml parses");
        for t in &file.topics {
            assert_eq!(file.replication_of(t), Replication { factor: 3, min_insync: Some(2) }, "{}", t.name);
        }
    }

    #[test]
    fn min_insync_above_the_replication_factor_is_refused_naming_topic_and_field() {
        let topic_level = "topics:\n  - { name: payouts.x, partitions: 1, key: k, value_schema: null, producer: p, consumer: c, replication_factor: 2, min_insync_replicas: 3 }\n";
        let err = TopicsFile::parse(topic_level).expect_err("min_insync > rf").to_string();
        assert!(err.contains("topics[payouts.x].min_insync_replicas") && err.contains("replication_factor (2)"), "{err}");
        // A topic lowering its factor under the file's min_insync is caught too.
        let mixed = "defaults: { replication_factor: 3, min_insync_replicas: 2 }\ntopics:\n  - { name: solo, partitions: 1, key: k, value_schema: null, producer: p, consumer: c, replication_factor: 1 }\n";
        let err = TopicsFile::parse(mixed).expect_err("inherited min_insync > rf").to_string();
        assert!(err.contains("topics[solo].min_insync_replicas (2)"), "{err}");
        let defaults = format!("defaults: {{ replication_factor: 1, min_insync_replicas: 2 }}\n{TWO}");
        let err = TopicsFile::parse(&defaults).expect_err("defaults min_insync > rf").to_string();
        assert!(err.contains("defaults.min_insync_replicas (2) exceeds defaults.replication_factor (1)"), "{err}");
        let zero = TWO.replace("replication_factor: 5", "replication_factor: 0");
        let err = TopicsFile::parse(&zero).expect_err("zero replicas").to_string();
        assert!(err.contains("topics[b].replication_factor must be at least 1"), "{err}");
        let unknown = format!("defaults: {{ replicas: 3 }}\n{TWO}");
        let err = TopicsFile::parse(&unknown).expect_err("unknown default").to_string();
        assert!(err.contains("replicas"), "{err}");
    }

    #[test]
    fn capping_fits_a_small_cluster_and_keeps_min_insync_reachable() {
        let text = format!("defaults: {{ replication_factor: 3, min_insync_replicas: 2 }}\n{TWO}");
        let file = TopicsFile::parse(&text).expect("parses");
        let single = file.capped_replication(1);
        assert_eq!(replications(&single), [Replication { factor: 1, min_insync: Some(1) }; 2]);
        let three = file.capped_replication(3);
        assert_eq!(replications(&three), [Replication { factor: 3, min_insync: Some(2) }, Replication { factor: 3, min_insync: Some(3) }]);
        assert_eq!(replications(&file.capped_replication(9)), replications(&file), "a cap above every factor changes nothing");
    }

    #[test]
    fn compatibility_levels_apply_the_file_default() {
        let text = TWO.replace("consumer: c }\n  - {", "consumer: c, compatibility: FULL_TRANSITIVE }\n  - {");
        let levels = compatibility_levels(&text).expect("parses");
        assert_eq!(levels["a"], Compatibility::FullTransitive);
        assert_eq!(levels["b"], Compatibility::Backward, "Confluent's default when the file sets none");
        let forward = compatibility_levels(&format!("defaults: {{ compatibility: FORWARD }}\n{text}")).expect("parses");
        assert_eq!((forward["a"], forward["b"]), (Compatibility::FullTransitive, Compatibility::Forward));
        let err = compatibility_levels(&text.replace("FULL_TRANSITIVE", "SIDEWAYS")).expect_err("unknown level").to_string();
        assert!(err.contains("SIDEWAYS") && err.contains("FULL_TRANSITIVE"), "{err}");
    }

    #[test]
    fn the_repository_topics_file_states_full_transitive_for_commands_and_outcomes() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../topics.yaml");
        let text = std::fs::read_to_string(path).expect("topics.yaml");
        let levels = compatibility_levels(&text).expect("topics.yaml parses");
        let file = TopicsFile::parse(&text).expect("topics.yaml parses");
        // Other teams produce our commands and consume our outcomes.
        for t in file.topics.iter().filter(|t| t.value_schema.is_some()) {
            if t.name.contains(".commands.") || t.name.contains(".outcomes.") {
                assert_eq!(levels[&t.name], Compatibility::FullTransitive, "{}", t.name);
            }
        }
    }

    #[test]
    fn unknown_fields_are_refused_with_their_name() {
        let err = TopicsFile::parse("topics:\n  - name: a\n    partitions: 1\n    key: k\n    value_schema: null\n    producer: p\n    consumer: c\n    colour: red\n")
            .expect_err("unknown field");
        assert!(err.to_string().contains("colour"), "{err}");
    }
}
