//! Configuration of a check worker (KYC, AML screening, fraud scoring):
//! the payout worker's shape, with the vendors of the check domains.
//! Unknown fields are refused and every error names the field at fault.

use crate::config::{Environment, SecretSource, TlsConfig};
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
pub struct CheckWorkerConfig {
    /// `sandbox` refuses live-shaped vendor keys, `production` test-shaped ones.
    pub environment: Environment,
    pub kafka: KafkaConfig,
    /// Confluent-compatible schema registry base URL.
    pub schema_registry_url: String,
    /// `postgres://...` in production; `sqlite:...` for the embedded default.
    pub database_url: String,
    /// Defaults to `<domain>.commands.v1` and `<domain>.outcomes.v1`.
    #[serde(default)]
    pub topics: Option<CheckTopics>,
    pub providers: Vec<CheckProviderConfig>,
    /// Primary and secondary; `mode: off` is not supported for checks yet.
    pub routing: RoutingPolicy,
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
    /// How often file-based credentials are read again, so a rotated one is
    /// used without a restart (secrets.rs).
    #[serde(default = "crate::config::default_secret_check_every_ms")]
    pub secret_check_every_ms: u64,
}

fn default_max_in_flight() -> usize {
    500
}

fn default_max_retry_rounds() -> u32 {
    5
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckTopics {
    pub commands: String,
    pub outcomes: String,
}

/// Every check vendor switchyard speaks; each domain accepts its own.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CheckVendorKind {
    Onfido,
    Sumsub,
    ComplyAdvantage,
    OpenSanctions,
    Sardine,
    Seon,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckProviderConfig {
    /// Catalog name, recorded with every attempt and published in outcomes.
    pub name: String,
    pub kind: CheckVendorKind,
    pub base_url: String,
    /// Onfido API token, Sumsub app token.
    pub api_key: SecretSource,
    /// Sumsub: the secret key that signs requests. Sardine: the client secret
    /// (`api_key` is then the client id).
    #[serde(default)]
    pub api_secret: Option<SecretSource>,
    /// Sumsub: the verification level applicants are created at.
    #[serde(default)]
    pub level_name: Option<String>,
    /// OpenSanctions: the dataset to match against (`default`, `sanctions`, ...).
    #[serde(default)]
    pub dataset: Option<String>,
    /// Per HTTP call.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
    /// Speak HTTP/2 without negotiation on a plain-`http` base URL (the
    /// simulators, an egress proxy); over `https` it is negotiated anyway.
    #[serde(default)]
    pub http2_prior_knowledge: bool,
    /// How often an asynchronous vendor result is polled.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// How long one delivery waits for it before retrying later.
    #[serde(default = "default_poll_budget_ms")]
    pub poll_budget_ms: u64,
    /// Mutual TLS to this vendor: client certificate, pinned CA bundle,
    /// minimum TLS version (`https` base URLs only).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

fn default_timeout_ms() -> u64 {
    10_000
}

fn default_max_concurrency() -> usize {
    64
}

fn default_poll_interval_ms() -> u64 {
    500
}

fn default_poll_budget_ms() -> u64 {
    20_000
}

impl CheckProviderConfig {
    /// Reads the TLS material too, so a bad certificate or key stops
    /// start-up naming `providers[<name>].tls.<field>`.
    pub fn transport(&self) -> Result<switchyard_adapters::http::Transport, WorkerError> {
        let transport = switchyard_adapters::http::Transport::new(Duration::from_millis(self.timeout_ms), self.max_concurrency)
            .with_http2_prior_knowledge(self.http2_prior_knowledge);
        Ok(transport.with_tls(crate::config::load_tls(&self.name, self.tls.as_ref())?))
    }

    pub fn polling(&self) -> switchyard_adapters::kyc::Polling {
        switchyard_adapters::kyc::Polling {
            interval: Duration::from_millis(self.poll_interval_ms),
            budget: Duration::from_millis(self.poll_budget_ms),
        }
    }
}

impl CheckWorkerConfig {
    pub fn load(path: &Path) -> Result<Self, WorkerError> {
        let text = std::fs::read_to_string(path).map_err(|e| WorkerError::Config(format!("cannot read {}: {e}", path.display())))?;
        serde_norway::from_str(&text).map_err(|e| WorkerError::Config(format!("{}: {e}", path.display())))
    }

    pub fn topics_for(&self, domain: &str) -> CheckTopics {
        self.topics.clone().unwrap_or_else(|| CheckTopics {
            commands: format!("{domain}.commands.v1"),
            outcomes: format!("{domain}.outcomes.v1"),
        })
    }

    /// Every certificate the providers' `tls` settings name (`switchyard certs`).
    pub fn certificates(&self) -> Result<Vec<switchyard_adapters::certs::InventoryItem>, WorkerError> {
        crate::config::inventory(self.providers.iter().map(|p| (p.name.as_str(), p.tls.as_ref())))
    }

    /// Cross-field checks; `kinds` are the vendors the domain accepts.
    pub fn validate(&self, domain: &str, kinds: &[CheckVendorKind]) -> Result<(), WorkerError> {
        let bad = |m: String| Err(WorkerError::Config(m));
        if self.providers.is_empty() {
            return bad("providers: at least one provider is required".into());
        }
        for (i, p) in self.providers.iter().enumerate() {
            if self.providers[..i].iter().any(|q| q.name == p.name) {
                return bad(format!("providers[{i}].name: {:?} is used twice", p.name));
            }
            if !kinds.contains(&p.kind) {
                return bad(format!("providers[{i}].kind: {:?} is not a {domain} vendor", p.kind));
            }
            if p.kind == CheckVendorKind::Sumsub && (p.api_secret.is_none() || p.level_name.is_none()) {
                return bad(format!("providers[{i}]: sumsub needs api_secret and level_name"));
            }
            if p.kind == CheckVendorKind::Sardine && p.api_secret.is_none() {
                return bad(format!("providers[{i}].api_secret: sardine needs its client secret"));
            }
            if p.max_concurrency == 0 {
                return bad(format!("providers[{i}].max_concurrency must be at least 1"));
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
            return bad(format!("routing.mode: only `on` is supported for {domain}"));
        }
        if self.routing.shadow.is_some() || self.routing.rollout.is_some() {
            return bad(format!("routing: shadow and rollout are not supported for {domain} yet"));
        }
        if self.max_in_flight == 0 {
            return bad("max_in_flight must be at least 1".into());
        }
        Ok(())
    }

    /// Refuses a key or endpoint that belongs to the other environment
    /// (see `switchyard_adapters::environment` for what each vendor reveals:
    /// Onfido `api_live`/`api_sandbox`, Sumsub `prd:`/`sbx:`, Sardine's hosts).
    pub fn check_key_environment(&self, provider: &CheckProviderConfig, key: &switchyard_adapters::Secret) -> Result<(), WorkerError> {
        let vendor = match provider.kind {
            CheckVendorKind::Onfido => "onfido",
            CheckVendorKind::Sumsub => "sumsub",
            CheckVendorKind::ComplyAdvantage => "complyadvantage",
            CheckVendorKind::OpenSanctions => "opensanctions",
            CheckVendorKind::Sardine => "sardine",
            CheckVendorKind::Seon => "seon",
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
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ops/kyc-worker.example.yaml");
        let config = CheckWorkerConfig::load(&path).expect("example config parses");
        config.validate("kyc", &[CheckVendorKind::Onfido, CheckVendorKind::Sumsub]).expect("and validates");
        assert_eq!(config.topics_for("kyc").commands, "kyc.commands.v1");
        let err = config.validate("aml", &[]).expect_err("not aml vendors").to_string();
        assert!(err.contains("providers[0].kind"), "{err}");
    }

    #[test]
    fn the_aml_example_config_parses_and_validates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ops/aml-worker.example.yaml");
        let config = CheckWorkerConfig::load(&path).expect("example config parses");
        config.validate("aml", &[CheckVendorKind::ComplyAdvantage, CheckVendorKind::OpenSanctions]).expect("and validates");
        assert_eq!(config.providers[1].dataset.as_deref(), Some("default"));
    }

    /// The docker-compose configs: each validates for its own domain, reads
    /// every secret from an environment variable, and that variable is passed
    /// into the container by docker-compose.yml (a missing one would stop the
    /// worker at start-up with "api_key is empty").
    #[test]
    fn the_docker_compose_configs_parse_validate_and_get_their_secrets() {
        use crate::check::CheckDomain;
        let compose = include_str!("../../../docker-compose.yml");
        let configs = [
            (include_str!("../../../ops/docker/kyc-worker.yaml"), crate::kyc::Kyc::NAME, crate::kyc::Kyc::VENDORS),
            (include_str!("../../../ops/docker/aml-worker.yaml"), crate::aml::Aml::NAME, crate::aml::Aml::VENDORS),
            (include_str!("../../../ops/docker/fraud-worker.yaml"), crate::fraud::Fraud::NAME, crate::fraud::Fraud::VENDORS),
        ];
        for (text, domain, vendors) in configs {
            let config: CheckWorkerConfig = serde_norway::from_str(text).unwrap_or_else(|e| panic!("ops/docker/{domain}-worker.yaml: {e}"));
            config.validate(domain, vendors).unwrap_or_else(|e| panic!("ops/docker/{domain}-worker.yaml: {e}"));
            assert_eq!(config.environment, Environment::Sandbox, "{domain}");
            assert_eq!(config.kafka.brokers, "kafka:9092", "{domain}");
            assert!(config.admin_bind.is_some_and(|a| a.ip().is_unspecified()), "{domain}: admin must listen beyond the container's loopback");
            for p in &config.providers {
                for source in std::iter::once(&p.api_key).chain(p.api_secret.as_ref()) {
                    let var = source.env.as_deref().unwrap_or_else(|| panic!("{domain} {}: secrets come from env in docker", p.name));
                    assert!(compose.contains(&format!("{var}: ${{{var}:-}}")), "docker-compose.yml does not pass {var}");
                }
            }
        }
    }

    #[test]
    fn the_fraud_example_config_parses_and_validates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ops/fraud-worker.example.yaml");
        let mut config = CheckWorkerConfig::load(&path).expect("example config parses");
        config.validate("fraud", &[CheckVendorKind::Sardine, CheckVendorKind::Seon]).expect("and validates");
        config.providers[0].api_secret = None;
        let err = config.validate("fraud", &[CheckVendorKind::Sardine, CheckVendorKind::Seon]).expect_err("secret needed").to_string();
        assert!(err.contains("providers[0].api_secret"), "{err}");
    }
}
