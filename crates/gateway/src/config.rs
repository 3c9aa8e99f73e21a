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
    /// OAuth2 client credentials beside API keys: JWT access tokens from
    /// this issuer, mapped to teams by `teams[].oauth2_client_ids`. Without
    /// it a bearer token is only ever an API key.
    #[serde(default)]
    pub oauth2: Option<OAuth2Config>,
}

/// The authorization server whose access tokens (RFC 9068 JWTs) the
/// gateway accepts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Config {
    /// The token's `iss`, compared exactly (no trailing-slash leniency).
    pub issuer: String,
    /// What the token's `aud` must contain: this API's identifier at the
    /// issuer, so a token minted for another API is refused.
    pub audience: String,
    /// The issuer's JSON Web Key Set; https, except on a loopback host.
    pub jwks_url: String,
    /// Accepted `alg` values (RS256, RS384, RS512, PS256, PS384, PS512,
    /// ES256, ES384, EdDSA). `none` and the HMAC family are refused here:
    /// a public key set cannot hold a shared secret.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    #[serde(default = "default_leeway_s")]
    pub leeway_s: u64,
    /// How often the key set is fetched again, so a key the issuer
    /// withdrew stops being accepted. A token naming an unknown `kid` also
    /// triggers a fetch, at most one per 10 s.
    #[serde(default = "default_jwks_refresh_s")]
    pub jwks_refresh_s: u64,
}

fn default_algorithms() -> Vec<String> {
    vec!["RS256".to_owned(), "ES256".to_owned()]
}
fn default_leeway_s() -> u64 {
    30
}
fn default_jwks_refresh_s() -> u64 {
    300
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
    /// one, move the callers, remove the old. May be empty for a team that
    /// calls with OAuth2 access tokens only.
    #[serde(default)]
    pub api_keys: Vec<SecretSource>,
    /// The OAuth2 clients acting as this team: a token's `client_id` claim
    /// (RFC 9068), else `azp`, else `sub`. Needs the `oauth2` section.
    #[serde(default)]
    pub oauth2_client_ids: Vec<String>,
    /// `<domain>:<action>`, e.g. `payouts:write` (POST) and `payouts:read` (GET).
    pub scopes: Vec<String>,
    /// Token bucket: sustained requests per second and the burst above it.
    /// Without it the team is not limited.
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
    /// Where the team is told, by a signed request, that a resource it
    /// created reached a terminal state. Without it the team polls.
    #[serde(default)]
    pub callback: Option<CallbackConfig>,
}

/// A team's callback endpoint: Standard Webhooks deliveries (the scheme we
/// verify from vendors), retried with backoff until a 2xx.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallbackConfig {
    /// http(s) URL each delivery is POSTed to.
    pub url: String,
    /// The signing secret, `whsec_<base64>` (the team verifies with it),
    /// through the secret provider; checked at start-up.
    pub secret: SecretSource,
    /// Attempts before a delivery is given up (marked failed and audited).
    #[serde(default = "default_callback_attempts")]
    pub max_attempts: u32,
    /// Wait after the first failed attempt; it doubles (with jitter) up to
    /// `max_backoff_ms`.
    #[serde(default = "default_callback_min_backoff_ms")]
    pub min_backoff_ms: u64,
    #[serde(default = "default_callback_max_backoff_ms")]
    pub max_backoff_ms: u64,
    /// Longest wait for the receiver's answer; then the attempt failed.
    #[serde(default = "default_callback_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_callback_attempts() -> u32 {
    8
}
fn default_callback_min_backoff_ms() -> u64 {
    1_000
}
fn default_callback_max_backoff_ms() -> u64 {
    10 * 60 * 1_000
}
fn default_callback_timeout_ms() -> u64 {
    10_000
}

impl CallbackConfig {
    /// Field rules; the secret is checked when loaded (`callbacks::Receivers::load`).
    fn validate(&self, field: &str) -> Result<(), GatewayError> {
        let url = self.url.parse::<reqwest::Url>().map_err(|e| GatewayError::Config(format!("{field}.url: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(GatewayError::Config(format!("{field}.url must be an http(s) URL with a host")));
        }
        if self.max_attempts == 0 || self.max_attempts > 100 {
            return Err(GatewayError::Config(format!("{field}.max_attempts must be between 1 and 100")));
        }
        if self.min_backoff_ms == 0 || self.min_backoff_ms > self.max_backoff_ms {
            return Err(GatewayError::Config(format!("{field}: min_backoff_ms must be positive and at most max_backoff_ms")));
        }
        if self.timeout_ms == 0 || self.timeout_ms > 60_000 {
            return Err(GatewayError::Config(format!("{field}.timeout_ms must be between 1 and 60000")));
        }
        Ok(())
    }
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
    /// `cards.events.v1`: changes the processor made on its own move card
    /// views too. Defaults to the released name (configs written before it).
    #[serde(default = "default_card_events")]
    pub card_events: String,
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
            card_events: name("cards.events.v1"),
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
    pub fn projected(&self) -> [&str; 9] {
        [
            &self.payout_outcomes,
            &self.kyc_outcomes,
            &self.aml_outcomes,
            &self.fraud_outcomes,
            &self.onboarding_events,
            &self.card_outcomes,
            &self.card_events,
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

fn default_card_events() -> String {
    "cards.events.v1".into()
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
        let mut clients = std::collections::HashSet::new();
        for (i, team) in self.teams.iter().enumerate() {
            if team.name.is_empty() || !names.insert(team.name.as_str()) {
                return Err(GatewayError::Config(format!("teams[{i}].name must be set and unique")));
            }
            if team.api_keys.is_empty() && team.oauth2_client_ids.is_empty() {
                return Err(GatewayError::Config(format!("teams[{i}].api_keys: team {} has no key and no oauth2_client_ids", team.name)));
            }
            for (c, client) in team.oauth2_client_ids.iter().enumerate() {
                if self.oauth2.is_none() {
                    return Err(GatewayError::Config(format!("teams[{i}].oauth2_client_ids: set the oauth2 section to accept access tokens")));
                }
                // One client acting as two teams would make the caller ambiguous.
                if client.is_empty() || !clients.insert(client.as_str()) {
                    return Err(GatewayError::Config(format!("teams[{i}].oauth2_client_ids[{c}] must be non-empty and in one team only")));
                }
            }
            for scope in &team.scopes {
                if !SCOPES.contains(&scope.as_str()) {
                    return Err(GatewayError::Config(format!("teams[{i}].scopes: {scope} is not <domain>:<action>, one of {}", SCOPES.join(", "))));
                }
            }
            if let Some(callback) = &team.callback {
                callback.validate(&format!("teams[{i}].callback"))?;
            }
            if let Some(limit) = team.rate_limit {
                if limit.per_second == 0 || limit.burst == 0 {
                    return Err(GatewayError::Config(format!("teams[{i}].rate_limit: per_second and burst must be positive")));
                }
            }
        }
        if let Some(oauth2) = &self.oauth2 {
            crate::oauth2::check_config(oauth2).map_err(GatewayError::Config)?;
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

    /// The example's commented `oauth2` section, uncommented.
    fn with_oauth2() -> String {
        let text = example().replace("#oauth2:", "oauth2:").replace("\n#  ", "\n  ").replace("#oauth2_client_ids", "oauth2_client_ids");
        assert!(text.contains("\noauth2:\n  issuer: ") && text.contains("    oauth2_client_ids: ["), "the example shows the oauth2 section commented");
        text
    }

    #[test]
    fn the_oauth2_example_parses_and_a_malformed_section_stops_start_up_naming_the_field() {
        let config = GatewayConfig::parse(&with_oauth2()).expect("example with oauth2 parses");
        let oauth2 = config.oauth2.as_ref().expect("oauth2");
        assert_eq!((oauth2.algorithms.len(), oauth2.leeway_s, oauth2.jwks_refresh_s), (2, 30, 300));
        assert_eq!(config.teams[0].oauth2_client_ids, ["payments-app-prod"]);
        let err = GatewayConfig::parse(&with_oauth2().replace("jwks_url: https://", "jwks_url: http://")).expect_err("clear-text JWKS");
        assert!(err.to_string().contains("oauth2.jwks_url"), "{err}");
        let err = GatewayConfig::parse(&with_oauth2().replace("[RS256, ES256]", "[RS256, none]")).expect_err("none");
        assert!(err.to_string().contains("oauth2.algorithms: none is not accepted"), "{err}");
        let err = GatewayConfig::parse(&with_oauth2().replace("  jwks_refresh_s: 300", "  jwks_url_typo: 3")).expect_err("unknown field");
        assert!(err.to_string().contains("jwks_url_typo"), "{err}");
        let err = GatewayConfig::parse(&example().replace("#oauth2_client_ids", "oauth2_client_ids")).expect_err("client ids without an issuer");
        assert!(err.to_string().contains("teams[0].oauth2_client_ids: set the oauth2 section"), "{err}");
        let twice = with_oauth2().replace("    scopes: [payouts:read, onboarding:read, onboarding:decide]", "    scopes: [payouts:read]\n    oauth2_client_ids: [payments-app-prod]");
        let err = GatewayConfig::parse(&twice).expect_err("one client, two teams");
        assert!(err.to_string().contains("teams[1].oauth2_client_ids[0] must be non-empty and in one team only"), "{err}");
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
