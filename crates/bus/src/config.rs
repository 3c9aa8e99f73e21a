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
    /// Raw librdkafka properties applied last, for anything not modelled here.
    #[serde(default)]
    pub extra: BTreeMap<String, String>,
}

fn default_session_timeout_ms() -> u32 {
    6000
}

impl KafkaConfig {
    pub fn new(brokers: impl Into<String>, group_id: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            group_id: group_id.into(),
            session_timeout_ms: default_session_timeout_ms(),
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
        self.apply_extra(&mut c);
        c
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
