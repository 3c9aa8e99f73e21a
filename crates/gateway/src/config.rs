//! The gateway's configuration file. Unknown fields stop start-up with a
//! message naming the field.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::Path;
use switchyard_adapters::secret::SecretSource;
use switchyard_bus::KafkaConfig;

use crate::GatewayError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Where product teams call `/v1/...`; `/metrics`, `/livez` and `/readyz` too.
    pub bind: SocketAddr,
    /// Producer settings, and the consumer group of the projection (every
    /// gateway instance shares it: each projects some partitions into the
    /// shared store).
    pub kafka: KafkaConfig,
    pub schema_registry_url: String,
    pub database_url: String,
    pub topics: GatewayTopics,
    /// Larger request bodies are refused with 413 before any parsing.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Longest wait for the broker's acknowledgement of a command; then 503
    /// (the command was not accepted; the caller retries with the same key).
    #[serde(default = "default_publish_timeout_ms")]
    pub publish_timeout_ms: u64,
    /// How long a request may take to publish and answer before a copy
    /// with the same key may take its claim over; longer than a publish.
    #[serde(default = "default_lease_ms")]
    pub lease_ms: u64,
    /// The longest `?wait=` a GET may hold a connection; longer asks are cut to it.
    #[serde(default = "default_max_wait_ms")]
    pub max_wait_ms: u64,
    /// The consuming teams: who may call, with which keys, for what. A call
    /// without a key of one of them is answered 401.
    #[serde(default)]
    pub teams: Vec<TeamConfig>,
}

/// One consuming team (a mobile back end, a case-management tool, ...).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamConfig {
    /// Shown in the audit log and used in the idempotency digest, so a key
    /// reused by another team is a collision, never a replay of the first
    /// team's answer.
    pub name: String,
    /// Its API keys, each through the secret provider (env or file in
    /// production). Several at once so a key can be rotated: add the new
    /// one, move the callers, remove the old.
    pub api_keys: Vec<SecretSource>,
    /// `<domain>:<action>`, e.g. `payouts:write` (POST) and `payouts:read` (GET).
    pub scopes: Vec<String>,
    /// Token bucket: sustained requests per second and the burst above it.
    /// Without it the team is not limited.
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
}

/// A team's token bucket.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Tokens added per second: the sustained rate.
    pub per_second: u32,
    /// Bucket size: how many requests may arrive at once after a quiet spell.
    pub burst: u32,
}

/// Every scope a team may hold: `<domain>:<action>`, `write` for a POST
/// that creates or changes a resource, `read` for GET, and `decide` for an
/// analyst's decision on an onboarding application (a privilege apart from
/// starting one).
pub const SCOPES: &[&str] = &[
    "payouts:read",
    "payouts:write",
    "kyc:read",
    "kyc:write",
    "aml:read",
    "aml:write",
    "fraud:read",
    "fraud:write",
    "onboarding:read",
    "onboarding:write",
    "onboarding:decide",
    "cards:read",
    "cards:write",
    "openbanking:read",
    "openbanking:write",
];

/// Topic names; test stacks prefix them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayTopics {
    /// Where `POST /v1/payouts` publishes (`payouts.commands.v1`).
    pub payout_commands: String,
    /// What the projection reads for `GET /v1/payouts/{id}` (`payouts.outcomes.v1`).
    pub payout_outcomes: String,
    /// `kyc.commands.v1` and `kyc.outcomes.v1`.
    pub kyc_commands: String,
    pub kyc_outcomes: String,
    /// `aml.commands.v1` and `aml.outcomes.v1`.
    pub aml_commands: String,
    pub aml_outcomes: String,
    /// `fraud.commands.v1` and `fraud.outcomes.v1`.
    pub fraud_commands: String,
    pub fraud_outcomes: String,
    /// `onboarding.commands.v1`, and `onboarding.events.v1`: the
    /// orchestrator's transitions, which are the applications' states.
    pub onboarding_commands: String,
    pub onboarding_events: String,
    /// `cards.commands.v1` and `cards.outcomes.v1`.
    pub card_commands: String,
    pub card_outcomes: String,
    /// `openbanking.commands.v1`, `openbanking.outcomes.v1`, and
    /// `openbanking.events.v1` (payments move after their command's answer).
    pub openbanking_commands: String,
    pub openbanking_outcomes: String,
    pub openbanking_events: String,
}

impl GatewayTopics {
    /// The released topic names behind `prefix` (empty in production).
    pub fn with_prefix(prefix: &str) -> Self {
        let name = |topic: &str| format!("{prefix}{topic}");
        Self {
            payout_commands: name("payouts.commands.v1"),
            payout_outcomes: name("payouts.outcomes.v1"),
            kyc_commands: name("kyc.commands.v1"),
            kyc_outcomes: name("kyc.outcomes.v1"),
            aml_commands: name("aml.commands.v1"),
            aml_outcomes: name("aml.outcomes.v1"),
            fraud_commands: name("fraud.commands.v1"),
            fraud_outcomes: name("fraud.outcomes.v1"),
            onboarding_commands: name("onboarding.commands.v1"),
            onboarding_events: name("onboarding.events.v1"),
            card_commands: name("cards.commands.v1"),
            card_outcomes: name("cards.outcomes.v1"),
            openbanking_commands: name("openbanking.commands.v1"),
            openbanking_outcomes: name("openbanking.outcomes.v1"),
            openbanking_events: name("openbanking.events.v1"),
        }
    }

    /// The topics the gateway publishes commands to.
    pub fn commands(&self) -> [&str; 7] {
        [&self.payout_commands, &self.kyc_commands, &self.aml_commands, &self.fraud_commands, &self.onboarding_commands, &self.card_commands, &self.openbanking_commands]
    }

    /// The topics the gateway projects (`Sources::project` in lib.rs), each
    /// dead-lettering to its [`projection_dlq`].
    pub fn projected(&self) -> [&str; 8] {
        [
            &self.payout_outcomes,
            &self.kyc_outcomes,
            &self.aml_outcomes,
            &self.fraud_outcomes,
            &self.onboarding_events,
            &self.card_outcomes,
            &self.openbanking_outcomes,
            &self.openbanking_events,
        ]
    }
}

/// The DLQ of the projection of `topic`: the gateway's own, since the
/// source topics have other consumers with DLQs of their own. topics.yaml
/// declares each, so a stack that creates topics only from it has them.
pub fn projection_dlq(topic: &str) -> String {
    format!("{topic}.gateway-dlq")
}

fn default_max_body_bytes() -> usize {
    64 * 1024
}
fn default_publish_timeout_ms() -> u64 {
    5_000
}
fn default_lease_ms() -> u64 {
    30_000
}
fn default_max_wait_ms() -> u64 {
    30_000
}

impl GatewayConfig {
    pub fn load(path: &Path) -> Result<Self, GatewayError> {
        let text = std::fs::read_to_string(path).map_err(|e| GatewayError::Config(format!("{}: {e}", path.display())))?;
        Self::parse(&text).map_err(|e| GatewayError::Config(format!("{}: {e}", path.display())))
    }

    pub fn parse(text: &str) -> Result<Self, GatewayError> {
        let config: Self = serde_norway::from_str(text).map_err(|e| GatewayError::Config(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Cross-field rules, checked at start-up.
    pub fn validate(&self) -> Result<(), GatewayError> {
        if self.lease_ms < self.publish_timeout_ms + 5_000 {
            return Err(GatewayError::Config(format!(
                "lease_ms ({}) must be at least publish_timeout_ms + 5000 ms, so no copy takes over a request whose publish may still land",
                self.lease_ms
            )));
        }
        let mut names = std::collections::HashSet::new();
        for (i, team) in self.teams.iter().enumerate() {
            if team.name.is_empty() || !names.insert(team.name.as_str()) {
                return Err(GatewayError::Config(format!("teams[{i}].name must be set and unique")));
            }
            if team.api_keys.is_empty() {
                return Err(GatewayError::Config(format!("teams[{i}].api_keys: team {} has no key", team.name)));
            }
            for scope in &team.scopes {
                if !SCOPES.contains(&scope.as_str()) {
                    return Err(GatewayError::Config(format!("teams[{i}].scopes: {scope} is not <domain>:<action>, one of {}", SCOPES.join(", "))));
                }
            }
            if let Some(limit) = team.rate_limit {
                if limit.per_second == 0 || limit.burst == 0 {
                    return Err(GatewayError::Config(format!("teams[{i}].rate_limit: per_second and burst must be positive")));
                }
            }
        }
        if self.max_wait_ms > 60_000 {
            return Err(GatewayError::Config(format!("max_wait_ms ({}) must be at most 60000", self.max_wait_ms)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ops/gateway.example.yaml");
        std::fs::read_to_string(path).expect("example config")
    }

    #[test]
    fn the_example_parses_and_unknown_fields_are_named() {
        let config = GatewayConfig::parse(&example()).expect("example parses");
        assert_eq!(config.topics.payout_commands, "payouts.commands.v1");
        let released = GatewayTopics::with_prefix("");
        assert_eq!((config.topics.onboarding_events.as_str(), config.topics.kyc_outcomes.as_str()), (released.onboarding_events.as_str(), released.kyc_outcomes.as_str()));
        let err = GatewayConfig::parse(&format!("{}\nmax_body: 3\n", example())).expect_err("unknown field");
        assert!(err.to_string().contains("max_body"), "{err}");
    }

    #[test]
    fn the_compose_config_parses_uses_the_released_topics_and_its_port_is_published() {
        let config = GatewayConfig::parse(include_str!("../../../ops/docker/gateway.yaml")).expect("ops/docker/gateway.yaml parses");
        assert_eq!(config.kafka.brokers, "kafka:9092");
        let released = GatewayTopics::with_prefix("");
        assert_eq!(
            (&config.topics.payout_commands, &config.topics.kyc_commands, &config.topics.aml_outcomes, &config.topics.fraud_outcomes, &config.topics.onboarding_events),
            (&released.payout_commands, &released.kyc_commands, &released.aml_outcomes, &released.fraud_outcomes, &released.onboarding_events)
        );
        assert!(config.bind.ip().is_unspecified(), "the gateway must listen beyond the container's loopback");
        let compose = include_str!("../../../docker-compose.yml");
        assert!(compose.contains(&format!("\"{0}:{0}\"", config.bind.port())) && compose.contains("/etc/switchyard/gateway.yaml"), "published by docker-compose.yml");
    }

    #[test]
    fn a_lease_shorter_than_a_publish_is_refused() {
        let text = example().replace("lease_ms: 30000", "lease_ms: 6000");
        assert!(text.contains("lease_ms: 6000"), "the example sets lease_ms");
        let err = GatewayConfig::parse(&text).expect_err("short lease");
        assert!(err.to_string().contains("lease_ms (6000) must be at least"), "{err}");
    }

    #[test]
    fn teams_parse_and_unknown_scopes_are_refused() {
        let config = GatewayConfig::parse(&example()).expect("example parses");
        assert!(!config.teams.is_empty(), "the example shows a team");
        assert!(config.teams.iter().all(|t| t.scopes.iter().all(|s| SCOPES.contains(&s.as_str()))));
        let text = example().replace("payouts:read", "payouts:admin");
        assert!(text.contains("payouts:admin"), "the example grants payouts:read");
        let err = GatewayConfig::parse(&text).expect_err("unknown action");
        assert!(err.to_string().contains("payouts:admin is not <domain>:<action>"), "{err}");
        let text = example().replace("payouts:read", "payouts:decide");
        let err = GatewayConfig::parse(&text).expect_err("decide is onboarding's only");
        assert!(err.to_string().contains("payouts:decide is not"), "{err}");
    }
}
