//! Configuration of the open banking worker (YAML), validated at start-up:
//! the card worker's shape with the aggregators, the data topic and the
//! keys that seal provider tokens at rest. Unknown fields are refused and
//! every error names the field.

use crate::config::{Environment, SecretSource};
use crate::retry::RetryPolicy;
use crate::WorkerError;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use switchyard_bus::KafkaConfig;
use switchyard_routing::{DomainMode, RoutingPolicy};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenBankingWorkerConfig {
    /// `sandbox` refuses production aggregator hosts, `production` sandbox ones.
    pub environment: Environment,
    pub kafka: KafkaConfig,
    pub schema_registry_url: String,
    /// `postgres://...` in production; `sqlite:...` for the embedded default.
    pub database_url: String,
    #[serde(default)]
    pub topics: OpenBankingTopics,
    pub providers: Vec<ObProviderConfig>,
    /// Where new consents go; every later command of a consent goes to the
    /// provider that holds it.
    pub routing: RoutingPolicy,
    /// Keys sealing provider tokens at rest (AES-256-GCM, 32 bytes base64):
    /// the first seals, all open, so a key is rotated by putting a new one
    /// first and dropping the old one once no row uses it.
    pub token_keys: Vec<TokenKeyConfig>,
    #[serde(default)]
    pub admin_bind: Option<SocketAddr>,
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    #[serde(default = "default_max_retry_rounds")]
    pub max_retry_rounds: u32,
    #[serde(default)]
    pub retry: RetryPolicy,
    /// See the payout worker's `lease_ttl_ms`; a refresh of many pages renews it.
    #[serde(default = "default_lease_ttl_ms")]
    pub lease_ttl_ms: u64,
    /// The breaker per (provider, institution): while open, commands for
    /// that institution are answered INSTITUTION_UNAVAILABLE without a call.
    #[serde(default = "default_institution_breaker")]
    pub institution_breaker: switchyard_routing::BreakerConfig,
    /// Refreshes per active consent on a schedule; absent: only on demand
    /// and on provider updates.
    #[serde(default)]
    pub scheduled_refresh: Option<ScheduledRefreshConfig>,
    /// How open payments are polled for their status.
    #[serde(default)]
    pub payment_polling: super::truelayer_config::PaymentPollingConfig,
    /// Provider callbacks (Plaid webhooks through the ingester) acting on consents.
    #[serde(default)]
    pub callbacks: ObCallbackSettings,
    /// How often file-based credentials are read again, so a rotated one is
    /// used without a restart (secrets.rs).
    #[serde(default = "crate::config::default_secret_check_every_ms")]
    pub secret_check_every_ms: u64,
}

/// How the worker consumes provider callbacks: its own consumer group on
/// `topics.provider_events` (a runtime reads one input topic and its retry
/// topic; callbacks have their own retry and DLQ), as the card worker does.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ObCallbackSettings {
    /// Off: the callbacks are left to other consumers.
    pub enabled: bool,
    /// The callback consumer's group; default `<kafka.group_id>.callbacks`.
    pub group_id: Option<String>,
    /// A callback for an item no consent holds yet (its COMPLETE_CONSENT
    /// may not be stored yet) is tried again after this, doubled each round.
    pub unknown_consent_retry_ms: u64,
    /// Rounds through the retry topic before such a callback is dead-lettered.
    pub unknown_consent_rounds: u32,
    /// A callback claimed by a delivery that has not sent its event or
    /// REFRESH after this long is sent by the next delivery (the first
    /// one died); longer than a publish ever takes.
    pub resend_after_ms: u64,
}

impl Default for ObCallbackSettings {
    fn default() -> Self {
        Self { enabled: true, group_id: None, unknown_consent_retry_ms: 1_000, unknown_consent_rounds: 5, resend_after_ms: 30_000 }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ScheduledRefreshConfig {
    /// Time between two refreshes of one consent.
    pub period_ms: u64,
    /// Each refresh lands up to this much later, spread by consent.
    #[serde(default)]
    pub jitter_ms: u64,
    /// How often each instance looks for due refreshes.
    #[serde(default = "default_tick_ms")]
    pub tick_ms: u64,
    /// Due refreshes claimed per tick at most.
    #[serde(default = "default_batch")]
    pub batch: u32,
}

fn default_tick_ms() -> u64 {
    5_000
}
fn default_batch() -> u32 {
    500
}

fn default_institution_breaker() -> switchyard_routing::BreakerConfig {
    // Banks go dark for minutes to hours: a longer window and cool-down than
    // the per-provider default, and a few calls suffice to judge one bank.
    switchyard_routing::BreakerConfig { window_ms: 60_000, min_calls: 5, failure_ratio: 0.5, open_ms: 30_000 }
}

fn default_max_in_flight() -> usize {
    200
}

fn default_max_retry_rounds() -> u32 {
    5
}

fn default_lease_ttl_ms() -> u64 {
    30_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenBankingTopics {
    pub commands: String,
    pub outcomes: String,
    pub events: String,
    /// Data deltas, one record per page.
    pub data: String,
    /// Provider callbacks from the webhook ingester (keyed by Plaid's item id).
    pub provider_events: String,
}

impl Default for OpenBankingTopics {
    fn default() -> Self {
        Self {
            commands: "openbanking.commands.v1".into(),
            outcomes: "openbanking.outcomes.v1".into(),
            events: "openbanking.events.v1".into(),
            data: "openbanking.data.v1".into(),
            provider_events: "openbanking.provider-events.v1".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ObProviderKind {
    Plaid,
    #[serde(rename = "truelayer")]
    TrueLayer,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObProviderConfig {
    pub name: String,
    pub kind: ObProviderKind,
    /// `https://sandbox.plaid.com`, `https://production.plaid.com`.
    pub base_url: String,
    pub client_id: String,
    pub secret: SecretSource,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
    /// Transactions per `/transactions/sync` page (Plaid: 1-500).
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// The name Link shows the user.
    #[serde(default = "default_client_name")]
    pub client_name: String,
    /// What INSTITUTION_UNAVAILABLE tells the product to wait (Plaid names no figure).
    #[serde(default = "default_institution_retry_after_ms")]
    pub institution_retry_after_ms: u64,
    /// What a PRODUCT_NOT_READY gap tells the product to wait.
    #[serde(default = "default_not_ready_retry_after_ms")]
    pub not_ready_retry_after_ms: u64,
    /// `kind: truelayer` only: its auth server, payment page, signing key
    /// and merchant accounts ([`super::truelayer_config`]).
    #[serde(default)]
    pub truelayer: Option<super::truelayer_config::TrueLayerSection>,
    /// Mutual TLS to the provider, as for payout providers; its files are
    /// re-read and rotate without a restart ([`crate::secrets`]).
    #[serde(default)]
    pub tls: Option<switchyard_adapters::tls::TlsConfig>,
}

fn default_timeout_ms() -> u64 {
    15_000
}
fn default_max_concurrency() -> usize {
    32
}
fn default_page_size() -> u32 {
    100
}
fn default_client_name() -> String {
    "switchyard".into()
}
fn default_institution_retry_after_ms() -> u64 {
    60_000
}
fn default_not_ready_retry_after_ms() -> u64 {
    30_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenKeyConfig {
    /// Written in front of every sealed token; no `:`.
    pub id: String,
    pub key: SecretSource,
}

impl ObProviderConfig {
    pub fn transport(&self) -> switchyard_adapters::http::Transport {
        switchyard_adapters::http::Transport::new(Duration::from_millis(self.timeout_ms), self.max_concurrency)
    }
}

impl OpenBankingWorkerConfig {
    pub fn load(path: &Path) -> Result<Self, WorkerError> {
        let text = std::fs::read_to_string(path).map_err(|e| WorkerError::Config(format!("cannot read {}: {e}", path.display())))?;
        let config: Self = serde_norway::from_str(&text).map_err(|e| WorkerError::Config(format!("{}: {e}", path.display())))?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), WorkerError> {
        let bad = |m: String| Err(WorkerError::Config(m));
        if self.providers.is_empty() {
            return bad("providers: at least one provider is required".into());
        }
        for (i, p) in self.providers.iter().enumerate() {
            if p.name.trim().is_empty() || self.providers[..i].iter().any(|q| q.name == p.name) {
                return bad(format!("providers[{i}].name must be set and unique"));
            }
            if p.client_id.trim().is_empty() {
                return bad(format!("providers[{i}].client_id must not be empty"));
            }
            if !(1..=500).contains(&p.page_size) {
                return bad(format!("providers[{i}].page_size must be between 1 and 500"));
            }
            if p.timeout_ms == 0 || p.max_concurrency == 0 {
                return bad(format!("providers[{i}].timeout_ms and max_concurrency must be at least 1"));
            }
            if !p.base_url.starts_with("http://") && !p.base_url.starts_with("https://") {
                return bad(format!("providers[{i}].base_url must be an http(s) URL"));
            }
            // Plaid tells its environments apart by host only.
            let (wrong, env) = match self.environment {
                Environment::Sandbox => ("production.plaid.com", "sandbox"),
                Environment::Production => ("sandbox.plaid.com", "production"),
            };
            if p.base_url.contains(wrong) {
                return bad(format!("providers[{i}].base_url is {wrong}, refused in {env}"));
            }
            if let Some(tls) = &p.tls {
                tls.validate(&format!("providers[{}].tls", p.name), &p.base_url)?;
            }
        }
        if self.token_keys.is_empty() {
            return bad("token_keys: at least one key is required to seal provider tokens".into());
        }
        for (i, k) in self.token_keys.iter().enumerate() {
            if k.id.is_empty() || k.id.contains(':') || self.token_keys[..i].iter().any(|q| q.id == k.id) {
                return bad(format!("token_keys[{i}].id must be set, unique and without ':'"));
            }
        }
        self.routing.validate(self.providers.iter().map(|p| p.name.as_str())).map_err(|e| WorkerError::Config(e.to_string()))?;
        if self.routing.mode != DomainMode::On || self.routing.shadow.is_some() {
            // A shadow consent would ask the user twice.
            return bad("routing: only mode `on` without shadow is supported for open banking".into());
        }
        for (name, topic) in [("commands", &self.topics.commands), ("outcomes", &self.topics.outcomes), ("events", &self.topics.events), ("data", &self.topics.data)] {
            if topic.trim().is_empty() {
                return bad(format!("topics.{name} must not be empty"));
            }
        }
        if self.max_in_flight == 0 {
            return bad("max_in_flight must be at least 1".into());
        }
        super::truelayer_config::validate(self)?;
        let c = &self.callbacks;
        if c.enabled && (self.topics.provider_events.trim().is_empty() || c.unknown_consent_retry_ms == 0 || c.resend_after_ms == 0) {
            return bad("callbacks: topics.provider_events must be set and unknown_consent_retry_ms, resend_after_ms at least 1".into());
        }
        let b = &self.institution_breaker;
        if b.min_calls == 0 || !(b.failure_ratio > 0.0 && b.failure_ratio <= 1.0) || b.window_ms == 0 || b.open_ms == 0 {
            return bad("institution_breaker: min_calls, window_ms and open_ms must be at least 1 and failure_ratio in (0, 1]".into());
        }
        if let Some(s) = &self.scheduled_refresh {
            if s.period_ms < 1_000 || s.tick_ms == 0 || s.batch == 0 || s.jitter_ms >= s.period_ms {
                return bad("scheduled_refresh: period_ms must be at least 1000, tick_ms and batch at least 1, jitter_ms below period_ms".into());
            }
        }
        let longest_call = self.providers.iter().map(|p| p.timeout_ms).max().unwrap_or(0);
        if self.lease_ttl_ms < 3_000 || self.lease_ttl_ms < longest_call {
            return bad(format!("lease_ttl_ms must be at least 3000 and at least the longest providers[].timeout_ms ({longest_call})"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ops/openbanking-worker.example.yaml")
    }

    #[test]
    fn the_example_config_parses_and_validates() {
        let config = OpenBankingWorkerConfig::load(&path()).expect("example config is valid");
        assert_eq!(config.routing.primary, "plaid");
        assert_eq!(config.topics.data, "openbanking.data.v1");
        assert_eq!(config.token_keys.len(), 1);
        assert_eq!(config.institution_breaker.min_calls, 5);
        assert_eq!(config.scheduled_refresh.as_ref().map(|s| s.period_ms), Some(21_600_000));
    }

    #[test]
    fn the_compose_config_parses_and_validates() {
        let compose = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ops/docker/openbanking-worker.yaml");
        let config = OpenBankingWorkerConfig::load(&compose).expect("ops/docker/openbanking-worker.yaml is valid");
        assert!(config.callbacks.enabled);
        assert_eq!(config.topics.provider_events, "openbanking.provider-events.v1");
        assert_eq!(config.admin_bind.map(|a| a.port()), Some(9471));
        let example = OpenBankingWorkerConfig::load(&path()).expect("example");
        assert_eq!((example.callbacks.unknown_consent_rounds, example.callbacks.resend_after_ms), (5, 30_000));
    }

    #[test]
    fn errors_name_the_field() {
        let text = std::fs::read_to_string(path()).expect("example");
        let mut config: OpenBankingWorkerConfig = serde_norway::from_str(&text).expect("parses");
        config.token_keys.clear();
        assert!(config.validate().expect_err("no keys").to_string().contains("token_keys"));
        let mut config: OpenBankingWorkerConfig = serde_norway::from_str(&text).expect("parses");
        config.providers[0].base_url = "https://production.plaid.com".into();
        assert!(config.validate().expect_err("production host in sandbox").to_string().contains("providers[0].base_url"));
        let typo = text.replace("page_size", "pagesize");
        assert!(serde_norway::from_str::<OpenBankingWorkerConfig>(&typo).expect_err("unknown field").to_string().contains("pagesize"));
    }
}
