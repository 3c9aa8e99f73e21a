//! Configuration of the card worker (YAML), validated at start-up: the
//! check workers' shape with the card processors, an events topic and the
//! attempt lease. Unknown fields are refused and every error names the field.

use crate::config::{Environment, SecretSource, TlsConfig};
use crate::retry::RetryPolicy;
use crate::WorkerError;
use serde::Deserialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use switchyard_bus::KafkaConfig;
use switchyard_routing::{DomainMode, RoutingPolicy};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardWorkerConfig {
    /// `sandbox` refuses live-shaped processor keys, `production` test-shaped ones.
    pub environment: Environment,
    pub kafka: KafkaConfig,
    /// Confluent-compatible schema registry base URL.
    pub schema_registry_url: String,
    /// `postgres://...` in production; `sqlite:...` for the embedded default.
    pub database_url: String,
    #[serde(default)]
    pub topics: CardTopics,
    pub providers: Vec<CardProviderConfig>,
    /// Where new cards are issued (primary, secondary). Every later command
    /// goes to the processor that holds the card, whatever this says.
    pub routing: RoutingPolicy,
    /// Where `/metrics`, `/livez` and `/readyz` listen; none disables them.
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
    /// How long a delivery's attempt lease on a claim lasts without renewal;
    /// see the payout worker's `lease_ttl_ms`.
    #[serde(default = "default_lease_ttl_ms")]
    pub lease_ttl_ms: u64,
    /// The processor-callback consumer (`topics.provider_events`).
    #[serde(default)]
    pub callbacks: CallbackSettings,
    /// How often file-based credentials are read again, so a rotated one is
    /// used without a restart (secrets.rs).
    #[serde(default = "crate::config::default_secret_check_every_ms")]
    pub secret_check_every_ms: u64,
}

/// How the worker consumes processor callbacks: its own consumer group on
/// `topics.provider_events` (the command consumer's group serves one input
/// topic and its retry topic; callbacks have their own retry and DLQ).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallbackSettings {
    /// Off: callbacks are left to other consumers (the reconciler).
    pub enabled: bool,
    /// The callback consumer's group; default `<kafka.group_id>.callbacks`.
    pub group_id: Option<String>,
    /// A callback for a card token no card of ours holds yet (its ISSUE may
    /// not be stored yet) is tried again after this, doubled each round...
    pub unknown_card_retry_ms: u64,
    /// ...for this many rounds, then dead-lettered with the reason.
    pub unknown_card_rounds: u32,
}

impl Default for CallbackSettings {
    fn default() -> Self {
        Self { enabled: true, group_id: None, unknown_card_retry_ms: 2_000, unknown_card_rounds: 6 }
    }
}

fn default_max_in_flight() -> usize {
    500
}

fn default_max_retry_rounds() -> u32 {
    5
}

fn default_lease_ttl_ms() -> u64 {
    15_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CardTopics {
    pub commands: String,
    pub outcomes: String,
    /// One event per real change of a card.
    pub events: String,
    /// Processor callbacks from the webhook ingester (keyed by the processor's card token).
    pub provider_events: String,
    /// One normalized transaction per processor transaction event, for the ledger.
    pub transactions: String,
}

impl Default for CardTopics {
    fn default() -> Self {
        Self {
            commands: "cards.commands.v1".into(),
            outcomes: "cards.outcomes.v1".into(),
            events: "cards.events.v1".into(),
            provider_events: "cards.provider-events.v1".into(),
            transactions: "cards.transactions.v1".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CardProcessorKind {
    Lithic,
    Marqeta,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardProviderConfig {
    /// Catalog name, recorded with every card and published in outcomes.
    pub name: String,
    pub kind: CardProcessorKind,
    /// Marqeta's includes `/v3`.
    pub base_url: String,
    /// Lithic: the API key. Marqeta: the application token (Basic user).
    pub api_key: SecretSource,
    /// Marqeta: the access token (Basic password).
    #[serde(default)]
    pub access_token: Option<SecretSource>,
    /// Marqeta: our card product -> Marqeta `card_product_token`.
    #[serde(default)]
    pub card_products: HashMap<String, String>,
    /// Per HTTP call; a timeout after sending is an ambiguous result.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
    /// Speak HTTP/2 without negotiation on a plain-`http` base URL.
    #[serde(default)]
    pub http2_prior_knowledge: bool,
    /// How long the processor keeps our idempotency keys (Lithic: 24 h,
    /// the default; Marqeta's tokens never expire). Past it an unfinished
    /// ISSUE or REPLACE is looked up, never sent again.
    #[serde(default)]
    pub key_retention_ms: Option<u64>,
    /// Mutual TLS to this processor: client certificate, pinned CA bundle,
    /// minimum TLS version (`https` base URLs only), as for payout and
    /// check providers.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

fn default_timeout_ms() -> u64 {
    10_000
}

fn default_max_concurrency() -> usize {
    64
}

impl CardProviderConfig {
    /// Reads the TLS material too, so a bad certificate or key stops
    /// start-up naming `providers[<name>].tls.<field>`.
    pub fn transport(&self) -> Result<switchyard_adapters::http::Transport, WorkerError> {
        let transport = switchyard_adapters::http::Transport::new(Duration::from_millis(self.timeout_ms), self.max_concurrency)
            .with_http2_prior_knowledge(self.http2_prior_knowledge);
        Ok(transport.with_tls(crate::config::load_tls(&self.name, self.tls.as_ref())?))
    }
}

impl CardWorkerConfig {
    /// Reads and validates the file: a bad config never starts a worker.
    pub fn load(path: &Path) -> Result<Self, WorkerError> {
        let text = std::fs::read_to_string(path).map_err(|e| WorkerError::Config(format!("cannot read {}: {e}", path.display())))?;
        let config: Self = serde_norway::from_str(&text).map_err(|e| WorkerError::Config(format!("{}: {e}", path.display())))?;
        config.validate()?;
        Ok(config)
    }

    /// Cross-field checks serde cannot express.
    pub fn validate(&self) -> Result<(), WorkerError> {
        let bad = |m: String| Err(WorkerError::Config(m));
        if self.providers.is_empty() {
            return bad("providers: at least one provider is required".into());
        }
        for (i, p) in self.providers.iter().enumerate() {
            if p.name.trim().is_empty() {
                return bad(format!("providers[{i}].name must not be empty"));
            }
            if self.providers[..i].iter().any(|q| q.name == p.name) {
                return bad(format!("providers[{i}].name: {:?} is used twice", p.name));
            }
            if p.kind == CardProcessorKind::Marqeta && p.access_token.is_none() {
                return bad(format!("providers[{i}].access_token is required for marqeta"));
            }
            if p.kind == CardProcessorKind::Lithic && (p.access_token.is_some() || !p.card_products.is_empty()) {
                return bad(format!("providers[{i}]: access_token and card_products are marqeta settings, not lithic"));
            }
            if p.max_concurrency == 0 {
                return bad(format!("providers[{i}].max_concurrency must be at least 1"));
            }
            if p.timeout_ms == 0 {
                return bad(format!("providers[{i}].timeout_ms must be at least 1"));
            }
            if p.key_retention_ms.is_some_and(|r| r <= p.timeout_ms) {
                return bad(format!("providers[{i}].key_retention_ms must be longer than its timeout_ms"));
            }
            if !p.base_url.starts_with("http://") && !p.base_url.starts_with("https://") {
                return bad(format!("providers[{i}].base_url must be an http(s) URL"));
            }
            if let Some(tls) = &p.tls {
                tls.validate(&format!("providers[{}].tls", p.name), &p.base_url)?;
            }
        }
        self.routing.validate(self.providers.iter().map(|p| p.name.as_str())).map_err(|e| WorkerError::Config(e.to_string()))?;
        if self.routing.mode != DomainMode::On {
            return bad("routing.mode: only `on` is supported for cards".into());
        }
        if self.routing.shadow.is_some() {
            // A shadow ISSUE would issue a real second card.
            return bad("routing.shadow: cards cannot be shadowed; a shadow issuance is a second card".into());
        }
        let topics = [
            ("topics.commands", &self.topics.commands),
            ("topics.outcomes", &self.topics.outcomes),
            ("topics.events", &self.topics.events),
            ("topics.provider_events", &self.topics.provider_events),
            ("topics.transactions", &self.topics.transactions),
        ];
        for (name, topic) in topics {
            if topic.trim().is_empty() {
                return bad(format!("{name} must not be empty"));
            }
        }
        if self.callbacks.enabled && self.callbacks.unknown_card_retry_ms == 0 {
            return bad("callbacks.unknown_card_retry_ms must be at least 1".into());
        }
        if self.max_in_flight == 0 {
            return bad("max_in_flight must be at least 1".into());
        }
        // The lease is renewed every third of it while a call runs: it must
        // outlast a call by a margin or a slow call loses it to a redelivery.
        let longest_call = self.providers.iter().map(|p| p.timeout_ms).max().unwrap_or(0);
        if self.lease_ttl_ms < 3_000 || self.lease_ttl_ms < longest_call {
            return bad(format!("lease_ttl_ms must be at least 3000 and at least the longest providers[].timeout_ms ({longest_call})"));
        }
        Ok(())
    }

    /// Every certificate the processors' `tls` settings name (`switchyard certs`).
    pub fn certificates(&self) -> Result<Vec<switchyard_adapters::certs::InventoryItem>, WorkerError> {
        crate::config::inventory(self.providers.iter().map(|p| (p.name.as_str(), p.tls.as_ref())))
    }

    /// Refuses an endpoint (or key) that belongs to the other environment:
    /// Lithic's and Marqeta's keys say nothing, their hosts do (see
    /// `switchyard_adapters::environment`).
    pub fn check_key_environment(&self, provider: &CardProviderConfig, key: &switchyard_adapters::Secret) -> Result<(), WorkerError> {
        let vendor = match provider.kind {
            CardProcessorKind::Lithic => "lithic",
            CardProcessorKind::Marqeta => "marqeta",
        };
        let field = format!("providers[{}]", provider.name);
        switchyard_adapters::environment::check(self.environment.into(), vendor, &field, key.expose(), &provider.base_url).map_err(WorkerError::Config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> String {
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ops/card-worker.example.yaml")).expect("example config")
    }

    #[test]
    fn the_example_config_parses_and_validates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ops/card-worker.example.yaml");
        let config = CardWorkerConfig::load(&path).expect("example config is valid");
        assert_eq!((config.routing.primary.as_str(), config.routing.secondary.as_deref()), ("lithic", Some("marqeta")));
        assert_eq!(config.topics.events, "cards.events.v1");
        assert_eq!(config.topics.transactions, "cards.transactions.v1");
    }

    /// The docker-compose config validates, reads every secret from an
    /// environment variable, and docker-compose.yml passes that variable in.
    #[test]
    fn the_docker_compose_config_validates_and_gets_its_secrets() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ops/docker/card-worker.yaml");
        let config = CardWorkerConfig::load(&path).expect("ops/docker/card-worker.yaml is valid");
        let compose = include_str!("../../../../docker-compose.yml");
        assert_eq!(config.kafka.brokers, "kafka:9092");
        assert!(config.admin_bind.is_some_and(|a| a.ip().is_unspecified()), "admin must listen beyond the container's loopback");
        assert!(compose.contains("./ops/docker/card-worker.yaml:/etc/switchyard/card-worker.yaml:ro"));
        for p in &config.providers {
            for source in std::iter::once(&p.api_key).chain(p.access_token.as_ref()) {
                let var = source.env.as_deref().unwrap_or_else(|| panic!("{}: secrets come from env in docker", p.name));
                assert!(compose.contains(&format!("{var}: ${{{var}:-}}")), "docker-compose.yml does not pass {var}");
            }
        }
    }

    #[test]
    fn errors_name_the_field() {
        let config: CardWorkerConfig = serde_norway::from_str(&example().replace("primary: lithic", "primary: galileo")).expect("parses");
        let err = config.validate().expect_err("galileo is not configured").to_string();
        assert!(err.contains("routing.primary"), "{err}");
        let typo = example().replace("max_in_flight", "max_inflight");
        let err = serde_norway::from_str::<CardWorkerConfig>(&typo).expect_err("unknown field").to_string();
        assert!(err.contains("max_inflight"), "{err}");
        let mut config: CardWorkerConfig = serde_norway::from_str(&example()).expect("parses");
        config.providers[1].access_token = None;
        let err = config.validate().expect_err("marqeta needs its access token").to_string();
        assert!(err.contains("providers[1].access_token"), "{err}");
        config.providers[1].access_token = config.providers[0].access_token.clone().or(Some(SecretSource::inline("x")));
        config.lease_ttl_ms = 100;
        assert!(config.validate().expect_err("lease too short").to_string().contains("lease_ttl_ms"));
    }

    /// Mutual TLS to a card processor: the payout providers' `tls`, refused
    /// at start-up naming processor and field, and in the inventory.
    #[tokio::test]
    async fn card_processor_tls_is_checked_naming_the_field_and_inventoried() {
        let cert = concat!(env!("CARGO_MANIFEST_DIR"), "/../adapters/tests/data/inventory-cert.pem");
        let text = example().replace("access_token: { env: MARQETA_ACCESS_TOKEN }", "access_token: { value: marqeta-access }").replace(
            "base_url: http://127.0.0.1:12132/v3",
            "base_url: https://127.0.0.1:12132/v3\n    tls: { ca_bundle: { file: /nonexistent/marqeta-ca.pem }, min_version: 1.3 }",
        );
        let mut config: CardWorkerConfig = serde_norway::from_str(&text).expect("tls is a card provider setting");
        config.validate().expect("the shape is valid");
        let err = config.providers[1].transport().expect_err("an unreadable CA bundle stops start-up").to_string();
        assert!(err.contains("providers[marqeta].tls.ca_bundle: cannot read /nonexistent/marqeta-ca.pem"), "{err}");
        let err = match crate::card::run::start_card_worker(config.clone(), tokio_util::sync::CancellationToken::new()).await {
            Ok(_) => panic!("an unreadable CA bundle must stop the card worker"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("providers[marqeta].tls.ca_bundle"), "{err}");

        // The inventory reads certificates only: no key needed to list them.
        config.providers[0].base_url = "https://127.0.0.1:12131".into();
        config.providers[0].tls = Some(serde_norway::from_str(&format!("{{ client_cert: {{ file: {cert} }}, client_key: {{ file: /nonexistent }} }}")).expect("tls"));
        config.providers[1].tls = None;
        let items = config.certificates().expect("inventory");
        assert_eq!(items.iter().map(|i| (i.provider.as_str(), i.kind.as_str(), i.subject.as_str())).collect::<Vec<_>>(), [("lithic", "client_cert", "CN=inventory test")]);
        let metrics = crate::metrics::Metrics::new("cards");
        crate::config::export_expiry(&metrics, &items);
        let rendered = metrics.render();
        assert!(rendered.contains(r#"switchyard_certificate_expiry_seconds{provider="lithic",kind="client_cert",subject="CN=inventory test"} "#), "{rendered}");

        // TLS settings on a plain-http endpoint would do nothing: refused.
        config.providers[0].base_url = "http://127.0.0.1:12131".into();
        let err = config.validate().expect_err("tls over http").to_string();
        assert!(err.contains("providers[lithic].tls") && err.contains("https"), "{err}");
    }

    #[test]
    fn sandbox_refuses_production_endpoints() {
        let mut config: CardWorkerConfig = serde_norway::from_str(&example()).expect("parses");
        config.providers[0].base_url = "https://api.lithic.com/v1".into();
        let err = config.check_key_environment(&config.providers[0], &switchyard_adapters::Secret::new("k")).expect_err("refused");
        assert!(err.to_string().contains("base_url is a lithic live endpoint"), "{err}");
        config.providers[0].base_url = "https://sandbox.lithic.com/v1".into();
        assert!(config.check_key_environment(&config.providers[0], &switchyard_adapters::Secret::new("k")).is_ok());
    }
}
