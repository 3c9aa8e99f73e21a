//! The payout worker's configuration file (YAML), validated at start-up.
//! Unknown fields are refused and every error names the field at fault, so a
//! typo stops the worker instead of silently meaning a default.

use crate::retry::RetryPolicy;
use crate::WorkerError;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::Path;
pub use switchyard_adapters::secret::SecretSource;
use switchyard_adapters::certs::InventoryItem;
use switchyard_adapters::http::Transport;
pub use switchyard_adapters::tls::TlsConfig;
use switchyard_adapters::Secret;
use switchyard_bus::KafkaConfig;
use switchyard_routing::RoutingPolicy;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayoutWorkerConfig {
    /// `sandbox` refuses live vendor keys and `production` refuses test keys.
    pub environment: Environment,
    pub kafka: KafkaConfig,
    /// Confluent-compatible schema registry base URL.
    pub schema_registry_url: String,
    /// `postgres://...` in production; `sqlite:...` for the embedded default.
    pub database_url: String,
    #[serde(default)]
    pub topics: PayoutTopics,
    pub providers: Vec<ProviderConfig>,
    pub routing: RoutingPolicy,
    /// The partner catalog (`ops/partners.yaml`): rate limits and capabilities.
    /// When set, every provider must be listed in it.
    #[serde(default)]
    pub catalog_file: Option<std::path::PathBuf>,
    /// Where `/metrics` and `/health` listen; none disables them.
    #[serde(default)]
    pub admin_bind: Option<SocketAddr>,
    /// Messages in flight across all keys.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Trips through the retry topic before the DLQ.
    #[serde(default = "default_max_retry_rounds")]
    pub max_retry_rounds: u32,
    #[serde(default)]
    pub retry: RetryPolicy,
    /// How long a delivery's attempt lease on a claim lasts without renewal
    /// (renewed every third of it while a call runs). A delivery that finds
    /// another's live lease waits for it; a killed worker's lease is taken
    /// over after this. Members' clocks must agree to well within a third.
    #[serde(default = "default_lease_ttl_ms")]
    pub lease_ttl_ms: u64,
    /// How often file-based `api_key`s are read again, so a rotated key is
    /// used without a restart (secrets.rs).
    #[serde(default = "default_secret_check_every_ms")]
    pub secret_check_every_ms: u64,
}

pub(crate) fn default_secret_check_every_ms() -> u64 {
    5_000
}

fn default_lease_ttl_ms() -> u64 {
    15_000
}

fn default_max_in_flight() -> usize {
    2000
}

fn default_max_retry_rounds() -> u32 {
    5
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Environment {
    Sandbox,
    Production,
}

impl From<Environment> for switchyard_adapters::environment::VendorEnvironment {
    fn from(e: Environment) -> Self {
        match e {
            Environment::Sandbox => Self::Test,
            Environment::Production => Self::Live,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PayoutTopics {
    pub commands: String,
    pub outcomes: String,
    /// Circuit breaker state changes of this worker's providers.
    pub circuit_events: String,
}

impl Default for PayoutTopics {
    fn default() -> Self {
        Self {
            commands: "payouts.commands.v1".into(),
            outcomes: "payouts.outcomes.v1".into(),
            circuit_events: "routing.circuit-events.v1".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    Stripe,
    Adyen,
    /// TrueLayer Payouts; needs the `truelayer` section.
    #[serde(rename = "truelayer")]
    TrueLayer,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Catalog name, recorded with every attempt and published in outcomes.
    pub name: String,
    pub kind: ProviderKind,
    pub base_url: String,
    pub api_key: SecretSource,
    /// Adyen only: the balance account payouts are drawn from.
    #[serde(default)]
    pub balance_account_id: Option<String>,
    /// Stripe only: the connected account (`acct_...`) that pays out; each
    /// beneficiary is registered on it as a bank account.
    #[serde(default)]
    pub connected_account: Option<String>,
    /// How long the vendor keeps idempotency keys, overriding the partner
    /// catalog's `idempotency_key_retention` (default 24 h).
    #[serde(default)]
    pub key_retention_ms: Option<u64>,
    /// Per-call timeout; a timeout after sending is an ambiguous result.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Calls in flight to this vendor at once; also the HTTP connections kept
    /// open. Bounds what a slow vendor can tie up.
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
    /// Speak HTTP/2 without negotiation on a plain-`http` base URL (the
    /// simulators, an egress proxy); over `https` it is negotiated anyway.
    #[serde(default)]
    pub http2_prior_knowledge: bool,
    /// A vendor sandbox used only for shadow comparisons; it may never take
    /// live traffic (a shadow call of a payout must not move money).
    #[serde(default)]
    pub sandbox_only: bool,
    /// Mutual TLS to this vendor: client certificate, pinned CA bundle,
    /// minimum TLS version (`https` base URLs only).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// TrueLayer only: auth host, client id, signing key, merchant account
    /// (see [`crate::payout::truelayer_config`]).
    #[serde(default)]
    pub truelayer: Option<crate::payout::truelayer_config::TrueLayerPayoutSection>,
}

fn default_timeout_ms() -> u64 {
    5000
}

fn default_max_concurrency() -> usize {
    256
}

impl ProviderConfig {
    /// Reads the TLS material too, so a bad certificate or key stops
    /// start-up naming `providers[<name>].tls.<field>`.
    pub fn transport(&self) -> Result<Transport, WorkerError> {
        let transport = Transport::new(std::time::Duration::from_millis(self.timeout_ms), self.max_concurrency)
            .with_http2_prior_knowledge(self.http2_prior_knowledge);
        Ok(transport.with_tls(load_tls(&self.name, self.tls.as_ref())?))
    }
}

/// The certificates of the providers' TLS settings, for the inventory and
/// `switchyard_certificate_expiry_seconds`.
pub(crate) fn inventory<'a>(providers: impl IntoIterator<Item = (&'a str, Option<&'a TlsConfig>)>) -> Result<Vec<InventoryItem>, WorkerError> {
    let mut items = Vec::new();
    for (name, tls) in providers {
        if let Some(tls) = tls {
            items.extend(tls.inventory(name)?);
        }
    }
    Ok(items)
}

/// Feeds `switchyard_certificate_expiry_seconds` (bare public keys do not expire).
pub(crate) fn export_expiry(metrics: &crate::metrics::Metrics, items: &[InventoryItem]) {
    metrics.certificates.set(items.iter().filter_map(|i| Some((i.provider.clone(), i.kind.clone(), i.subject.clone(), i.not_after?))));
}

/// The provider's TLS settings, read and checked; `None` when it has none.
pub(crate) fn load_tls(provider: &str, tls: Option<&TlsConfig>) -> Result<Option<switchyard_adapters::tls::ClientTls>, WorkerError> {
    Ok(match tls {
        Some(tls) => Some(tls.load(&format!("providers[{provider}].tls"))?),
        None => None,
    })
}

impl PayoutWorkerConfig {
    pub fn load(path: &Path) -> Result<Self, WorkerError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| WorkerError::Config(format!("cannot read {}: {e}", path.display())))?;
        let config: Self =
            serde_norway::from_str(&text).map_err(|e| WorkerError::Config(format!("{}: {e}", path.display())))?;
        config.validate()?;
        Ok(config)
    }

    /// Cross-field checks serde cannot express.
    pub fn validate(&self) -> Result<(), WorkerError> {
        if self.providers.is_empty() {
            return Err(WorkerError::Config("providers: at least one provider is required".into()));
        }
        for (i, p) in self.providers.iter().enumerate() {
            if self.providers[..i].iter().any(|q| q.name == p.name) {
                return Err(WorkerError::Config(format!("providers[{i}].name: {:?} is used twice", p.name)));
            }
            if p.kind == ProviderKind::Stripe && !p.connected_account.as_deref().is_some_and(|a| a.starts_with("acct_")) {
                return Err(WorkerError::Config(format!("providers[{i}].connected_account (acct_...) is required for stripe")));
            }
            if p.kind == ProviderKind::Adyen && p.balance_account_id.is_none() {
                return Err(WorkerError::Config(format!("providers[{i}].balance_account_id is required for adyen")));
            }
            crate::payout::truelayer_config::validate(self, i, p)?;
            if p.max_concurrency == 0 {
                return Err(WorkerError::Config(format!("providers[{i}].max_concurrency must be at least 1")));
            }
            if !p.base_url.starts_with("http://") && !p.base_url.starts_with("https://") {
                return Err(WorkerError::Config(format!("providers[{i}].base_url must be an http(s) URL")));
            }
            if let Some(tls) = &p.tls {
                tls.validate(&format!("providers[{}].tls", p.name), &p.base_url)?;
            }
        }
        self.routing
            .validate(self.providers.iter().map(|p| p.name.as_str()))
            .map_err(|e| WorkerError::Config(e.to_string()))?;
        let sandbox_only = |name: &str| self.providers.iter().any(|p| p.name == name && p.sandbox_only);
        let live = [Some(&self.routing.primary), self.routing.secondary.as_ref(), self.routing.rollout.as_ref().map(|r| &r.candidate)];
        if let Some(name) = live.into_iter().flatten().find(|n| sandbox_only(n)) {
            return Err(WorkerError::Config(format!("routing: {name:?} is sandbox_only and cannot take live payouts")));
        }
        if let Some(shadow) = &self.routing.shadow {
            if !sandbox_only(shadow) {
                return Err(WorkerError::Config(format!(
                    "routing.shadow: {shadow:?} must be a provider with sandbox_only: true; payouts are shadowed only against a vendor sandbox"
                )));
            }
        }
        if self.max_in_flight == 0 {
            return Err(WorkerError::Config("max_in_flight must be at least 1".into()));
        }
        Ok(())
    }

    /// Every certificate the providers' `tls` settings name (`switchyard certs`).
    pub fn certificates(&self) -> Result<Vec<InventoryItem>, WorkerError> {
        inventory(self.providers.iter().map(|p| (p.name.as_str(), p.tls.as_ref())))
    }

    /// Refuses a key or endpoint that belongs to the other environment
    /// (see `switchyard_adapters::environment` for what each vendor reveals).
    pub fn check_key_environment(&self, provider: &ProviderConfig, key: &Secret) -> Result<(), WorkerError> {
        let vendor = match provider.kind {
            ProviderKind::Stripe => "stripe",
            ProviderKind::Adyen => "adyen",
            ProviderKind::TrueLayer => "truelayer",
        };
        let field = format!("providers[{}]", provider.name);
        switchyard_adapters::environment::check(self.environment.into(), vendor, &field, key.expose(), &provider.base_url).map_err(WorkerError::Config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_parses_and_validates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ops/payout-worker.example.yaml");
        let config = PayoutWorkerConfig::load(&path).expect("example config is valid");
        assert_eq!(config.routing.primary, "stripe");
    }

    #[test]
    fn the_docker_compose_config_parses_and_validates() {
        let text = include_str!("../../../ops/docker/payout-worker.yaml");
        let config: PayoutWorkerConfig = serde_norway::from_str(text).expect("ops/docker/payout-worker.yaml parses");
        config.validate().expect("and validates");
        assert_eq!(config.environment, Environment::Sandbox);
    }

    #[test]
    fn errors_name_the_field() {
        let text = include_str!("../../../ops/payout-worker.example.yaml").replace("primary: stripe", "primary: wise");
        let config: PayoutWorkerConfig = serde_norway::from_str(&text).expect("parses");
        let err = config.validate().expect_err("wise is not configured").to_string();
        assert!(err.contains("routing.primary"), "{err}");
        let typo = include_str!("../../../ops/payout-worker.example.yaml").replace("max_in_flight", "max_inflight");
        let err = serde_norway::from_str::<PayoutWorkerConfig>(&typo).expect_err("unknown field").to_string();
        assert!(err.contains("max_inflight"), "{err}");
    }

    #[test]
    fn sandbox_refuses_live_keys() {
        let text = include_str!("../../../ops/payout-worker.example.yaml");
        let config: PayoutWorkerConfig = serde_norway::from_str(text).expect("parses");
        let err = config.check_key_environment(&config.providers[0], &Secret::new("sk_live_x")).expect_err("refused");
        assert!(err.to_string().contains("live key"));
    }

    #[tokio::test]
    async fn one_key_for_two_providers_stops_start_up_naming_both() {
        let text = include_str!("../../../ops/payout-worker.example.yaml").replace("api_key: { env: ADYEN_API_KEY }", "api_key: { value: sk_test_switchyard }");
        let mut config: PayoutWorkerConfig = serde_norway::from_str(&text).expect("parses");
        config.catalog_file = None;
        let shutdown = tokio_util::sync::CancellationToken::new();
        let err = match crate::run::start_payout_worker(config, shutdown).await {
            Ok(_) => panic!("a shared key must stop start-up"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("providers[0].api_key (stripe)") && err.contains("providers[1].api_key (adyen)"), "{err}");
        assert!(!err.contains("sk_test_switchyard"), "the key is never printed: {err}");
    }

    #[tokio::test]
    async fn unusable_tls_material_stops_start_up_naming_provider_and_field() {
        let text = include_str!("../../../ops/payout-worker.example.yaml")
            .replace("api_key: { env: ADYEN_API_KEY }", "api_key: { value: adyen_test_key }")
            .replace("base_url: http://127.0.0.1:12112", "base_url: https://127.0.0.1:12112\n    tls: { ca_bundle: { file: /nonexistent/adyen-ca.pem }, min_version: 1.3 }");
        let mut config: PayoutWorkerConfig = serde_norway::from_str(&text).expect("parses");
        config.catalog_file = None;
        config.validate().expect("the shape is valid");
        let err = match crate::run::start_payout_worker(config.clone(), tokio_util::sync::CancellationToken::new()).await {
            Ok(_) => panic!("an unreadable CA bundle must stop start-up"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("providers[adyen].tls.ca_bundle: cannot read /nonexistent/adyen-ca.pem"), "{err}");

        // The inventory reads certificates only: no key needed to list them.
        let cert = concat!(env!("CARGO_MANIFEST_DIR"), "/../adapters/tests/data/inventory-cert.pem");
        config.providers[1].tls = Some(serde_norway::from_str(&format!("{{ client_cert: {{ file: {cert} }}, client_key: {{ file: /nonexistent }} }}")).expect("tls"));
        let items = config.certificates().expect("inventory");
        let metrics = crate::metrics::Metrics::new("payouts");
        export_expiry(&metrics, &items);
        let text = metrics.render();
        assert!(text.contains(r#"switchyard_certificate_expiry_seconds{provider="adyen",kind="client_cert",subject="CN=inventory test"} "#), "{text}");

        // TLS settings on a plain-http endpoint would do nothing: refused.
        config.providers[1].base_url = "http://127.0.0.1:12112".into();
        let err = config.validate().expect_err("tls over http").to_string();
        assert!(err.contains("providers[adyen].tls") && err.contains("https"), "{err}");
    }
}
