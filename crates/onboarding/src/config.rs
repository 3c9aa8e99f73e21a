//! The orchestrator's YAML config. Unknown fields are refused and every
//! error names the field at fault.

use crate::machine::Limits;
use crate::OrchestratorError;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::Path;
use switchyard_bus::KafkaConfig;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrchestratorConfig {
    /// `group_id` is a base: each input topic is read by its own consumer
    /// group `<group_id>.<input>` (commands, kyc, aml, fraud).
    pub kafka: KafkaConfig,
    /// Confluent-compatible schema registry base URL.
    pub schema_registry_url: String,
    /// `postgres://...` in production; `sqlite:...` for the embedded default.
    pub database_url: String,
    #[serde(default)]
    pub topics: OnboardingTopics,
    #[serde(default)]
    pub limits: Limits,
    /// How often the sweep looks for flows past their deadline and unsent outbox rows.
    #[serde(default = "default_sweep_interval_ms")]
    pub sweep_interval_ms: u64,
    /// Outbox rows older than this are re-sent by the sweep (their writer
    /// probably stopped between commit and publish).
    #[serde(default = "default_outbox_grace_ms")]
    pub outbox_grace_ms: i64,
    /// Applied inputs and sent outbox rows of flows finished longer ago than
    /// this are deleted by the sweep (finished flows ignore every input anyway).
    #[serde(default = "default_retention_ms")]
    pub retention_ms: i64,
    /// Where `/metrics` and `/health` listen; none disables them.
    #[serde(default)]
    pub admin_bind: Option<SocketAddr>,
    /// Messages in flight per input topic.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Trips through an input's retry topic before the message is
    /// dead-lettered (the workers' budget).
    #[serde(default = "default_max_retry_rounds")]
    pub max_retry_rounds: u32,
    /// The first round's wait on the retry topic; each round doubles it, so
    /// the default rounds ride out a store or broker outage of a few minutes.
    #[serde(default = "default_retry_topic_delay_ms")]
    pub retry_topic_delay_ms: u64,
    /// Key-encryption keys for applicants' personal data at rest, the
    /// wrapping key first. Empty: flows are stored in clear (logged as a
    /// warning at start-up).
    #[serde(default)]
    pub pii_keys: Vec<crate::pii::PiiKeyConfig>,
}

fn default_max_retry_rounds() -> u32 {
    5
}

fn default_retry_topic_delay_ms() -> u64 {
    5000
}

fn default_sweep_interval_ms() -> u64 {
    1000
}

fn default_outbox_grace_ms() -> i64 {
    5000
}

fn default_retention_ms() -> i64 {
    30 * 24 * 3600 * 1000
}

fn default_max_in_flight() -> usize {
    200
}

/// Every topic the orchestrator reads or writes; defaults are topics.yaml's names.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct OnboardingTopics {
    pub commands: String,
    pub events: String,
    /// Undecodable inputs and commands that cannot apply.
    pub dlq: String,
    pub kyc_commands: String,
    pub kyc_outcomes: String,
    pub aml_commands: String,
    pub aml_outcomes: String,
    pub fraud_commands: String,
    pub fraud_outcomes: String,
    /// One retry topic per input: each input has its own consumer group,
    /// and a shared retry topic would be read by all of them.
    pub commands_retry: String,
    pub kyc_outcomes_retry: String,
    pub aml_outcomes_retry: String,
    pub fraud_outcomes_retry: String,
}

impl Default for OnboardingTopics {
    fn default() -> Self {
        Self::with_prefix("")
    }
}

impl OnboardingTopics {
    /// topics.yaml's names behind a prefix (the local stack's isolation).
    pub fn with_prefix(prefix: &str) -> Self {
        let t = |name: &str| format!("{prefix}{name}");
        Self {
            commands: t("onboarding.commands.v1"),
            events: t("onboarding.events.v1"),
            dlq: t("onboarding.commands.v1.dlq"),
            kyc_commands: t("kyc.commands.v1"),
            kyc_outcomes: t("kyc.outcomes.v1"),
            aml_commands: t("aml.commands.v1"),
            aml_outcomes: t("aml.outcomes.v1"),
            fraud_commands: t("fraud.commands.v1"),
            fraud_outcomes: t("fraud.outcomes.v1"),
            // The outcome topics have other consumers, so their retry topics
            // are the orchestrator's own, not `<input>.retry`.
            commands_retry: t("onboarding.commands.v1.retry"),
            kyc_outcomes_retry: t("onboarding.kyc-outcomes.v1.retry"),
            aml_outcomes_retry: t("onboarding.aml-outcomes.v1.retry"),
            fraud_outcomes_retry: t("onboarding.fraud-outcomes.v1.retry"),
        }
    }

    /// Each input topic with its retry topic, named as the metrics name them.
    pub fn inputs(&self) -> [(&'static str, &str, &str); 4] {
        [
            ("commands", &self.commands, &self.commands_retry),
            ("kyc", &self.kyc_outcomes, &self.kyc_outcomes_retry),
            ("aml", &self.aml_outcomes, &self.aml_outcomes_retry),
            ("fraud", &self.fraud_outcomes, &self.fraud_outcomes_retry),
        ]
    }

    /// The input a message was first read from: a retry topic stands for its input.
    pub fn input_of<'a>(&'a self, topic: &'a str) -> &'a str {
        self.inputs().into_iter().find(|(_, _, retry)| *retry == topic).map_or(topic, |(_, input, _)| input)
    }
}

impl OrchestratorConfig {
    pub fn load(path: &Path) -> Result<Self, OrchestratorError> {
        let text = std::fs::read_to_string(path).map_err(|e| OrchestratorError::Config(format!("{}: {e}", path.display())))?;
        let config: Self = serde_norway::from_str(&text).map_err(|e| OrchestratorError::Config(format!("{}: {e}", path.display())))?;
        config.validate()?;
        Ok(config)
    }

    /// Cross-field checks serde cannot express.
    pub fn validate(&self) -> Result<(), OrchestratorError> {
        let bad = |field: &str, why: &str| Err(OrchestratorError::Config(format!("{field}: {why}")));
        let l = &self.limits;
        if l.max_kyc_attempts < 1 {
            return bad("limits.max_kyc_attempts", "must be at least 1");
        }
        if l.max_resends < 0 {
            return bad("limits.max_resends", "must not be negative");
        }
        for (field, v) in [
            ("limits.step_timeout_ms", l.step_timeout_ms),
            ("limits.evidence_timeout_ms", l.evidence_timeout_ms),
            ("limits.decision_timeout_ms", l.decision_timeout_ms),
            ("outbox_grace_ms", self.outbox_grace_ms),
            ("retention_ms", self.retention_ms),
        ] {
            if v <= 0 {
                return bad(field, "must be positive");
            }
        }
        if self.sweep_interval_ms == 0 {
            return bad("sweep_interval_ms", "must be positive");
        }
        if self.max_in_flight == 0 {
            return bad("max_in_flight", "must be positive");
        }
        if self.retry_topic_delay_ms == 0 {
            return bad("retry_topic_delay_ms", "must be positive");
        }
        if self.kafka.group_id.is_empty() {
            return bad("kafka.group_id", "must not be empty");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_parses_and_validates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ops/onboarding-orchestrator.example.yaml");
        let config = OrchestratorConfig::load(&path).expect("example config");
        assert_eq!(config.topics, OnboardingTopics::default());
        assert_eq!(config.limits.max_kyc_attempts, 3);
    }

    #[test]
    fn the_docker_compose_config_parses_and_validates() {
        let text = include_str!("../../../ops/docker/onboarding-orchestrator.yaml");
        let config: OrchestratorConfig = serde_norway::from_str(text).expect("ops/docker/onboarding-orchestrator.yaml parses");
        config.validate().expect("and validates");
        assert_eq!(config.kafka.brokers, "kafka:9092");
        // Topics must match what the workers in the same stack read and write.
        assert_eq!(config.topics, OnboardingTopics::default());
        let admin = config.admin_bind.expect("admin_bind: the healthcheck and Prometheus need it");
        assert!(admin.ip().is_unspecified(), "admin must listen beyond the container's loopback");
        assert!(include_str!("../../../docker-compose.yml").contains(&format!("{0}:{0}", admin.port())), "port published by docker-compose.yml");
    }

    #[test]
    fn each_input_has_its_own_retry_topic_declared_in_topics_yaml() {
        let t = OnboardingTopics::with_prefix("p.");
        let yaml = include_str!("../../../topics.yaml");
        let mut retries: Vec<&str> = t.inputs().iter().map(|(_, _, retry)| *retry).collect();
        for (_, input, retry) in t.inputs() {
            assert_eq!(t.input_of(retry), input, "a retried message is handled as its input's");
            assert_eq!(t.input_of(input), input);
            let name = retry.trim_start_matches("p.");
            assert!(yaml.contains(&format!("- name: {name}\n")), "{name} is declared in topics.yaml");
        }
        retries.dedup();
        assert_eq!(retries.len(), 4, "one consumer group per input: a shared retry topic would be read by each");
    }

    #[test]
    fn errors_name_the_field() {
        let text = "kafka: {brokers: x, group_id: g}\nschema_registry_url: u\ndatabase_url: d\nlimits: {max_kyc_attempts: 0}\n";
        let config: OrchestratorConfig = serde_norway::from_str(text).expect("parses");
        assert!(config.validate().is_err_and(|e| e.to_string().contains("limits.max_kyc_attempts")));
        let unknown = "kafka: {brokers: x, group_id: g}\nschema_registry_url: u\ndatabase_url: d\nlimit: {}\n";
        assert!(serde_norway::from_str::<OrchestratorConfig>(unknown).is_err_and(|e| e.to_string().contains("limit")));
    }
}
