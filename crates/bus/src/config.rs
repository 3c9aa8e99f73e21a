//! Broker settings. Defaults are chosen for correctness (idempotent producer,
//! acks=all, offsets stored only by the runtime) and for tansu's measured
//! group-join latency (short session timeout).

use rdkafka::ClientConfig;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port` list; use 127.0.0.1 rather than localhost, which librdkafka
    /// may resolve to ::1.
    pub brokers: String,
    /// Consumer group; every instance of one worker shares it.
    pub group_id: String,
    /// Session timeout; a killed member's partitions move after this long.
    #[serde(default = "default_session_timeout_ms")]
    pub session_timeout_ms: u32,
    /// Static group membership (KIP-345, librdkafka `group.instance.id`):
    /// a stable name per process, e.g. the pod name of a StatefulSet. On
    /// Apache Kafka a member restarted under the same name gets its
    /// partitions back without a rebalance, as long as it returns within
    /// `session_timeout_ms`. Unique per process in a group; when unset,
    /// `SWITCHYARD_GROUP_INSTANCE_ID` is used, if set and not empty.
    #[serde(default)]
    pub group_instance_id: Option<String>,
    /// Raw librdkafka properties applied last, for anything not modelled here.
    #[serde(default)]
    pub extra: BTreeMap<String, String>,
}

/// Sets `group_instance_id` per process without a config file per process.
pub const GROUP_INSTANCE_ID_ENV: &str = "SWITCHYARD_GROUP_INSTANCE_ID";

fn default_session_timeout_ms() -> u32 {
    6000
}

impl KafkaConfig {
    pub fn new(brokers: impl Into<String>, group_id: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            group_id: group_id.into(),
            session_timeout_ms: default_session_timeout_ms(),
            group_instance_id: None,
            extra: BTreeMap::new(),
        }
    }

    pub fn consumer_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("group.id", &self.group_id)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "500")
            // The runtime stores an offset only once everything before it is done.
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", self.session_timeout_ms.to_string())
            .set("heartbeat.interval.ms", (self.session_timeout_ms / 12).max(100).to_string());
        if let Some(id) = self.instance_id() {
            c.set("group.instance.id", id);
        }
        self.apply_extra(&mut c);
        c
    }

    /// The configured static member name, else the environment's.
    fn instance_id(&self) -> Option<String> {
        let from_env = || std::env::var(GROUP_INSTANCE_ID_ENV).ok();
        self.group_instance_id.clone().or_else(from_env).filter(|id| !id.trim().is_empty())
    }

    pub fn producer_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "2")
            // The Java client's partitioner (murmur2 of the key): a key we
            // republish (held-topic relay, DLQ replay, outcomes) lands on the
            // partition core banking's Java producer chose for it, so per-key
            // order holds across producers. librdkafka's default
            // (consistent_random, CRC32) would scatter them.
            .set("partitioner", "murmur2_random")
            // Bounded so a broker outage surfaces as an error the caller can
            // retry, instead of a publish that never returns.
            .set("message.timeout.ms", "15000");
        self.apply_extra(&mut c);
        c
    }

    pub fn admin_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        c
    }

    fn apply_extra(&self, c: &mut ClientConfig) {
        for (k, v) in &self.extra {
            c.set(k, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance_id(config: &ClientConfig) -> Option<&str> {
        config.get("group.instance.id")
    }

    #[test]
    fn group_instance_id_is_set_only_on_consumers_and_only_when_named() {
        let mut kafka = KafkaConfig::new("127.0.0.1:9092", "g");
        kafka.group_instance_id = Some("payout-worker-0".into());
        assert_eq!(instance_id(&kafka.consumer_config()), Some("payout-worker-0"));
        assert_eq!(instance_id(&kafka.producer_config()), None, "producers have no group");
        kafka.group_instance_id = Some(" ".into());
        assert_eq!(instance_id(&kafka.consumer_config()), None, "blank means unset");
        let parsed: KafkaConfig = serde_norway::from_str("brokers: b\ngroup_id: g\ngroup_instance_id: pod-1\n").expect("parses");
        assert_eq!(parsed.group_instance_id.as_deref(), Some("pod-1"));
    }
}
