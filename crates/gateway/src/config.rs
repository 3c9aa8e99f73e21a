//! The gateway's configuration file. Unknown fields stop start-up with a
//! message naming the field.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::Path;
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
}

/// Topic names; test stacks prefix them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayTopics {
    /// Where `POST /v1/payouts` publishes (`payouts.commands.v1`).
    pub payout_commands: String,
    /// What the projection reads for `GET /v1/payouts/{id}` (`payouts.outcomes.v1`).
    pub payout_outcomes: String,
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
        let err = GatewayConfig::parse(&format!("{}\nmax_body: 3\n", example())).expect_err("unknown field");
        assert!(err.to_string().contains("max_body"), "{err}");
    }

    #[test]
    fn a_lease_shorter_than_a_publish_is_refused() {
        let text = example().replace("lease_ms: 30000", "lease_ms: 6000");
        assert!(text.contains("lease_ms: 6000"), "the example sets lease_ms");
        let err = GatewayConfig::parse(&text).expect_err("short lease");
        assert!(err.to_string().contains("lease_ms (6000) must be at least"), "{err}");
    }
}
