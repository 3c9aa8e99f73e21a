//! The ingester's configuration file. Unknown fields and bad keys stop
//! start-up with a message naming the field.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use switchyard_adapters::secret::SecretSource;
use switchyard_bus::KafkaConfig;

use crate::IngesterError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngesterConfig {
    /// Where vendors POST (`/webhooks/{provider}`); `/metrics` and `/health` too.
    pub bind: SocketAddr,
    pub kafka: KafkaConfig,
    pub schema_registry_url: String,
    pub database_url: String,
    /// Topic per domain; a domain not listed uses `<domain>.provider-events.v1`.
    #[serde(default)]
    pub topics: BTreeMap<String, String>,
    /// Larger bodies are refused with 413 before any parsing.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// How long one delivery may take to publish before a retry may take over.
    #[serde(default = "default_lease_ms")]
    pub lease_ms: u64,
    /// Longest wait for the broker's acknowledgement; then 503, and the vendor retries.
    #[serde(default = "default_publish_timeout_ms")]
    pub publish_timeout_ms: u64,
    /// Proxies (CIDRs or addresses) in front of the ingester whose
    /// `X-Forwarded-For` is believed; from anyone else it is ignored.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    pub providers: BTreeMap<String, ProviderConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Whose scheme and payload: `stripe`, `adyen`, `wise`, `lithic`,
    /// `marqeta`, `onfido`, `sumsub`, `complyadvantage`, `sardine`, `seon`,
    /// `plaid` (which needs `key_endpoint`), `truelayer` (which needs `jwks_urls`).
    /// Defaults to the provider's name.
    #[serde(default)]
    pub vendor: Option<String>,
    /// `payouts`, `cards`, `kyc`, `aml`, `fraud`, `openbanking`: picks the provider-events topic.
    pub domain: String,
    /// Events whose vendor type starts with a prefix go to another domain's
    /// topic: a vendor that calls one webhook URL for several products
    /// (TrueLayer sends `payout_*` and `payment_*` to the same URI) is one
    /// provider here, `event_domains: {payout_: payouts}` beside
    /// `domain: openbanking`. The longest matching prefix wins.
    #[serde(default)]
    pub event_domains: BTreeMap<String, String>,
    /// Signing secrets (HMAC schemes: `whsec_<base64>` for Standard Webhooks,
    /// hex for Adyen, the secret as given for Stripe, Onfido, Sumsub, SEON),
    /// public keys (Wise, PEM), or Plaid's API secret for its key endpoint. Several
    /// during a rotation; each may end at `not_after`. None for TrueLayer,
    /// whose keys all come from its JWKS.
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
    /// Accepted clock distance of a signed delivery timestamp, in seconds.
    #[serde(default = "default_tolerance_s")]
    pub tolerance_s: i64,
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
    /// The vendor's published webhook source ranges (CIDRs or addresses);
    /// a callback from elsewhere is refused with 403 before verification.
    /// Empty: any source (the signature still decides).
    #[serde(default)]
    pub allow_from: Vec<String>,
    /// How keys read from files are re-read and rotated without a restart.
    #[serde(default)]
    pub rotation: RotationConfig,
    /// Vendors that sign with keys fetched from their own endpoint (Plaid):
    /// where to ask. `keys` then holds the API secret the endpoint wants.
    #[serde(default)]
    pub key_endpoint: Option<KeyEndpointConfig>,
    /// TrueLayer: the JWKS URLs a webhook's `jku` may name, exactly as
    /// written; any other is refused unfetched. The environment's own:
    /// `https://webhooks.truelayer.com/.well-known/jwks` (production) or
    /// `https://webhooks.truelayer-sandbox.com/.well-known/jwks` (sandbox).
    #[serde(default)]
    pub jwks_urls: Vec<String>,
}

/// A vendor's verification-key endpoint (Plaid `/webhook_verification_key/get`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEndpointConfig {
    /// The vendor's API base URL (`https://production.plaid.com`).
    pub base_url: String,
    /// The API client id sent with the secret from `keys`.
    pub client_id: String,
}

/// Keys from `file` are re-read every `check_every_ms` (a Kubernetes or
/// Vault agent rewrite, including the `..data` symlink swap, is seen within
/// it). A changed key verifies at once; the key it replaced keeps
/// verifying for `overlap_s`, for deliveries the vendor signed before it
/// switched, then is refused.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RotationConfig {
    pub check_every_ms: u64,
    pub overlap_s: u64,
}

impl Default for RotationConfig {
    fn default() -> Self {
        // An hour covers vendors' retry of deliveries signed with the old secret.
        Self { check_every_ms: 5_000, overlap_s: 3_600 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    #[serde(default)]
    pub env: Option<String>,
    #[serde(default)]
    pub file: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
    /// RFC 3339; after it, this key no longer verifies (end of a rotation overlap).
    #[serde(default)]
    pub not_after: Option<String>,
}

impl KeyConfig {
    /// A key written in the config itself (tests, the demo).
    pub fn inline(value: &str) -> Self {
        Self { env: None, file: None, value: Some(value.to_owned()), not_after: None }
    }

    pub fn source(&self) -> SecretSource {
        SecretSource { env: self.env.clone(), file: self.file.clone(), value: self.value.clone() }
    }
}

impl ProviderConfig {
    /// A provider whose vendor is its name, with default tolerance and no rate limit.
    pub fn new(domain: &str, keys: Vec<KeyConfig>) -> Self {
        Self {
            vendor: None,
            domain: domain.to_owned(),
            keys,
            tolerance_s: default_tolerance_s(),
            rate_limit: None,
            allow_from: Vec::new(),
            rotation: RotationConfig::default(),
            key_endpoint: None,
            jwks_urls: Vec::new(),
            event_domains: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub per_second: f64,
    pub burst: u32,
}

fn default_max_body_bytes() -> usize {
    256 * 1024
}
fn default_lease_ms() -> u64 {
    30_000
}
fn default_publish_timeout_ms() -> u64 {
    10_000
}
fn default_tolerance_s() -> i64 {
    300
}

impl IngesterConfig {
    pub fn load(path: &Path) -> Result<Self, IngesterError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| IngesterError::Config(format!("cannot read {}: {e}", path.display())))?;
        serde_norway::from_str(&text).map_err(|e| IngesterError::Config(format!("{}: {e}", path.display())))
    }

    /// Every webhook verification key configured as PEM (a certificate or
    /// a bare public key), for the inventory and
    /// `switchyard_certificate_expiry_seconds`. HMAC secrets are read to
    /// tell, never kept or shown.
    pub fn certificates(&self) -> Result<Vec<switchyard_adapters::certs::InventoryItem>, IngesterError> {
        let mut items = Vec::new();
        for (name, provider) in &self.providers {
            for (i, key) in provider.keys.iter().enumerate() {
                let field = format!("providers.{name}.keys[{i}]");
                let value = key.source().load(&field).map_err(|e| IngesterError::Config(e.0))?;
                if value.expose().contains("-----BEGIN ") {
                    let found = switchyard_adapters::certs::inventory(name, "webhook_key", &field, value.expose());
                    items.extend(found.map_err(|e| IngesterError::Config(e.0))?);
                }
            }
            // Fetched keys are listed by the running ingester (the vendor's
            // endpoint answers one kid at a time and has no list; only the
            // ingester knows which kids are in use): here, where they come from.
            if let Some(endpoint) = &provider.key_endpoint {
                items.push(switchyard_adapters::certs::InventoryItem {
                    provider: name.clone(),
                    kind: "jwks_endpoint".to_owned(),
                    subject: format!("{}/webhook_verification_key/get", endpoint.base_url.trim_end_matches('/')),
                    issuer: "keys fetched per kid: switchyard_webhooks_verification_key_info".to_owned(),
                    not_after: None,
                });
            }
            for url in &provider.jwks_urls {
                items.push(switchyard_adapters::certs::InventoryItem {
                    provider: name.clone(),
                    kind: "jwks_endpoint".to_owned(),
                    subject: url.clone(),
                    issuer: "keys fetched per kid: switchyard_webhooks_verification_key_info".to_owned(),
                    not_after: None,
                });
            }
        }
        Ok(items)
    }

    pub fn topic_for(&self, domain: &str) -> String {
        self.topics.get(domain).cloned().unwrap_or_else(|| format!("{domain}.provider-events.v1"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_parses_and_names_unknown_fields() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ops/webhook-ingester.example.yaml");
        let config = IngesterConfig::load(&path).expect("example parses");
        assert_eq!(config.topic_for("cards"), "cards.provider-events.v1");
        assert_eq!(config.providers.len(), 11);
        assert_eq!(config.providers["truelayer"].jwks_urls, ["https://webhooks.truelayer-sandbox.com/.well-known/jwks"]);
        assert_eq!(config.providers["truelayer"].event_domains.get("payout_").map(String::as_str), Some("payouts"), "TrueLayer's payouts share its one URI");
        assert_eq!(config.topic_for("kyc"), "kyc.provider-events.v1");
        let compose = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ops/docker/webhook-ingester.yaml");
        let compose = IngesterConfig::load(&compose).expect("the docker-compose config parses");
        // Every vendor with callbacks (all of the example's but wise, lithic and marqeta,
        // which have no sandbox account in the compose stack) is taken, in its
        // domain, with a secret docker-compose.yml passes into the container.
        let compose_file = include_str!("../../../docker-compose.yml");
        for (name, domain) in [("stripe", "payouts"), ("adyen", "payouts"), ("onfido", "kyc"), ("sumsub", "kyc"), ("complyadvantage", "aml"), ("sardine", "fraud"), ("seon", "fraud")] {
            let p = compose.providers.get(name).unwrap_or_else(|| panic!("ops/docker/webhook-ingester.yaml lacks {name}"));
            assert_eq!(p.domain, domain, "{name}");
            assert_eq!(p.domain, config.providers[name].domain, "{name}: same domain as the example");
            for key in &p.keys {
                let var = key.env.as_deref().unwrap_or_else(|| panic!("{name}: secrets come from env in docker"));
                assert!(compose_file.contains(&format!("{var}: ${{{var}:-}}")), "docker-compose.yml does not pass {var}");
            }
        }
        let plaid = serde_norway::from_str::<IngesterConfig>(
            "bind: 127.0.0.1:1\nkafka: {brokers: b, group_id: g}\nschema_registry_url: u\ndatabase_url: d\nproviders: {plaid: {domain: openbanking, keys: [{value: s}], key_endpoint: {base_url: 'https://production.plaid.com/', client_id: c}}}\n",
        )
        .expect("a Plaid provider parses");
        let items = plaid.certificates().expect("inventory");
        assert_eq!(items.len(), 1, "the key endpoint, not the API secret");
        assert_eq!((items[0].kind.as_str(), items[0].subject.as_str()), ("jwks_endpoint", "https://production.plaid.com/webhook_verification_key/get"));
        let err = serde_norway::from_str::<IngesterConfig>(
            "bind: 127.0.0.1:1\nkafka: {brokers: b, group_id: g}\nschema_registry_url: u\ndatabase_url: d\nproviders: {stripe: {domain: payouts, keys: [], secret: x}}\n",
        )
        .expect_err("unknown field");
        assert!(err.to_string().contains("secret"), "{err}");
    }
}
