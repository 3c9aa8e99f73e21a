//! Builds each configured provider's verifier from its keys. Every error
//! names the field (`providers.stripe.keys[1]`).

use crate::config::{IngesterConfig, ProviderConfig, RotationConfig};
use crate::rotation::{ProviderKey, SchemeCell};
use crate::IngesterError;
use std::collections::HashMap;
use std::sync::Arc;
use switchyard_adapters::webhooks::{self, RsaPublicKey, Scheme, Timed, WebhookVendor};
use switchyard_routing::ratelimit::TokenBucket;

/// One `/webhooks/{name}` endpoint.
pub struct Provider {
    pub name: String,
    pub domain: String,
    pub topic: String,
    /// `(vendor event type prefix, domain, topic)`, longest prefix first.
    pub routes: Vec<(String, String, String)>,
    pub vendor: WebhookVendor,
    /// Rebuilt when a key read from a file changes (see [`crate::rotation`]).
    pub scheme: SchemeCell,
    pub keys: Vec<ProviderKey>,
    pub rotation: RotationConfig,
    /// The provider's config, which the scheme is rebuilt from.
    config: ProviderConfig,
    pub limiter: Option<TokenBucket>,
    /// Source ranges allowed to deliver; empty: any.
    pub allow_from: Vec<ipnet::IpNet>,
}

impl Provider {
    /// The domain and topic of an event of this vendor type.
    pub fn route(&self, vendor_event_type: &str) -> (&str, &str) {
        self.routes
            .iter()
            .find(|(prefix, _, _)| vendor_event_type.starts_with(prefix.as_str()))
            .map_or((self.domain.as_str(), self.topic.as_str()), |(_, domain, topic)| (domain.as_str(), topic.as_str()))
    }

    /// Every topic this provider publishes to.
    pub fn topics(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.topic.as_str()).chain(self.routes.iter().map(|(_, _, topic)| topic.as_str()))
    }
}

pub fn build(config: &IngesterConfig) -> Result<HashMap<String, Arc<Provider>>, IngesterError> {
    let mut out = HashMap::new();
    for (name, p) in &config.providers {
        let field = format!("providers.{name}");
        let vendor_name = p.vendor.as_deref().unwrap_or(name);
        let vendor = WebhookVendor::parse(vendor_name).ok_or_else(|| {
            IngesterError::Config(format!("{field}.vendor: {vendor_name:?} is not one of {}", WebhookVendor::NAMES.join(", ")))
        })?;
        // TrueLayer's keys all come from its JWKS; every other vendor needs one.
        if p.keys.is_empty() && vendor != WebhookVendor::TrueLayer {
            return Err(IngesterError::Config(format!("{field}.keys: at least one key is needed")));
        }
        if p.domain.is_empty() {
            return Err(IngesterError::Config(format!("{field}.domain is empty")));
        }
        if vendor == WebhookVendor::Plaid && p.key_endpoint.is_none() {
            return Err(IngesterError::Config(format!("{field}.key_endpoint: Plaid's keys come from /webhook_verification_key/get; give base_url and client_id")));
        }
        if vendor == WebhookVendor::TrueLayer && !p.keys.is_empty() {
            return Err(IngesterError::Config(format!("{field}.keys: TrueLayer's keys come from its JWKS (jwks_urls); give none")));
        }
        let keys = load_keys(p, &field)?;
        let scheme = scheme(vendor, p, &crate::rotation::values(&keys)).map_err(|e| match (vendor, e) {
            (WebhookVendor::TrueLayer, IngesterError::Config(m)) => IngesterError::Config(format!("{field}.jwks_urls: {m}")),
            (_, e) => e,
        })?;
        let mut routes = Vec::new();
        for (prefix, domain) in &p.event_domains {
            if prefix.is_empty() || domain.is_empty() {
                return Err(IngesterError::Config(format!("{field}.event_domains: {prefix:?}: {domain:?}: neither the prefix nor the domain may be empty")));
            }
            routes.push((prefix.clone(), domain.clone(), config.topic_for(domain)));
        }
        routes.sort_by_key(|(prefix, _, _)| std::cmp::Reverse(prefix.len()));
        let limiter = p.rate_limit.map(|r| TokenBucket::new(r.per_second, r.burst));
        let allow_from = crate::source::parse_networks(&p.allow_from, &format!("{field}.allow_from"))?;
        let provider = Provider {
            name: name.clone(),
            domain: p.domain.clone(),
            topic: config.topic_for(&p.domain),
            routes,
            vendor,
            scheme: SchemeCell::new(scheme),
            keys,
            rotation: p.rotation,
            config: p.clone(),
            limiter,
            allow_from,
        };
        out.insert(name.clone(), Arc::new(provider));
    }
    Ok(out)
}

fn load_keys(p: &ProviderConfig, field: &str) -> Result<Vec<ProviderKey>, IngesterError> {
    let overlap = std::time::Duration::from_secs(p.rotation.overlap_s);
    let mut keys = Vec::new();
    for (i, key) in p.keys.iter().enumerate() {
        let at = format!("{field}.keys[{i}]");
        let secret = switchyard_adapters::secret::RotatingSecret::load(key.source(), &at, overlap).map_err(|e| IngesterError::Config(e.0))?;
        let not_after_ms = match &key.not_after {
            Some(text) => Some(
                webhooks::rfc3339_ms(text)
                    .ok_or_else(|| IngesterError::Config(format!("{at}.not_after: {text:?} is not RFC 3339")))?,
            ),
            None => None,
        };
        keys.push(ProviderKey { secret, not_after_ms });
    }
    Ok(keys)
}

/// Whether `value` would work as one of the provider's keys.
pub(crate) fn check_value(p: &Provider, field: &str, value: &switchyard_adapters::Secret) -> Result<(), IngesterError> {
    scheme(p.vendor, &p.config, &[(field.to_owned(), value.clone(), None)]).map(|_| ())
}

/// The provider's verifier from the values its keys hold now.
pub(crate) fn rebuild(p: &Provider) -> Result<Scheme, IngesterError> {
    scheme(p.vendor, &p.config, &crate::rotation::values(&p.keys))
}

fn scheme(vendor: WebhookVendor, p: &ProviderConfig, raw: &[(String, switchyard_adapters::Secret, Option<i64>)]) -> Result<Scheme, IngesterError> {
    let decode = |f: &dyn Fn(&str) -> Result<Vec<u8>, String>| -> Result<Vec<Timed<Vec<u8>>>, IngesterError> {
        raw.iter()
            .map(|(at, s, not_after_ms)| {
                let key = f(s.expose()).map_err(|e| IngesterError::Config(format!("{at}: {e}")))?;
                Ok(Timed { key, not_after_ms: *not_after_ms })
            })
            .collect()
    };
    Ok(match vendor {
        WebhookVendor::Stripe => Scheme::StripeSignature {
            secrets: raw.iter().map(|(_, s, n)| Timed { key: s.clone(), not_after_ms: *n }).collect(),
            tolerance_s: p.tolerance_s,
        },
        // ComplyAdvantage (Mesh API) and Sardine sign like Lithic.
        WebhookVendor::Lithic | WebhookVendor::ComplyAdvantage | WebhookVendor::Sardine => {
            Scheme::StandardWebhooks { keys: decode(&webhooks::standard_webhooks_key)?, tolerance_s: p.tolerance_s }
        }
        WebhookVendor::Onfido => Scheme::OnfidoSha2 { keys: decode(&webhooks::plain_secret_key)? },
        WebhookVendor::Sumsub => Scheme::SumsubDigest { keys: decode(&webhooks::plain_secret_key)? },
        WebhookVendor::Seon => Scheme::SeonDigest { keys: decode(&webhooks::plain_secret_key)? },
        WebhookVendor::Adyen => Scheme::AdyenHmac { keys: decode(&webhooks::adyen_hmac_key)? },
        WebhookVendor::Marqeta => Scheme::MarqetaBasic {
            credentials: raw
                .iter()
                .map(|(at, s, n)| {
                    let key = webhooks::basic_credentials(s.expose()).map_err(|e| IngesterError::Config(format!("{at}: {e}")))?;
                    Ok(Timed { key, not_after_ms: *n })
                })
                .collect::<Result<_, IngesterError>>()?,
        },
        WebhookVendor::Plaid => {
            let endpoint = p.key_endpoint.as_ref().ok_or_else(|| {
                IngesterError::Config("key_endpoint: Plaid's keys come from /webhook_verification_key/get; give base_url and client_id".to_owned())
            })?;
            // The newest value: during a secret rotation the new one fetches.
            let (_, secret, _) = raw.last().ok_or_else(|| IngesterError::Config("keys: Plaid's API secret is needed".to_owned()))?;
            Scheme::PlaidJwt { keys: std::sync::Arc::new(webhooks::plaid::PlaidKeys::new(&endpoint.base_url, &endpoint.client_id, secret.clone())) }
        }
        WebhookVendor::TrueLayer => Scheme::TrueLayerJws {
            keys: std::sync::Arc::new(webhooks::truelayer::TrueLayerKeys::new(p.jwks_urls.clone(), p.tolerance_s).map_err(IngesterError::Config)?),
        },
        WebhookVendor::Wise => Scheme::WiseRsa {
            keys: raw
                .iter()
                .map(|(at, s, n)| {
                    let key = RsaPublicKey::from_pem(s.expose()).map_err(|e| IngesterError::Config(format!("{at}: {e}")))?;
                    Ok(Timed { key, not_after_ms: *n })
                })
                .collect::<Result<_, IngesterError>>()?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{KeyConfig, ProviderConfig};

    fn config(vendor: &str, key: &str, not_after: Option<&str>) -> IngesterConfig {
        let text = "bind: 127.0.0.1:1\nkafka: {brokers: b, group_id: g}\nschema_registry_url: u\ndatabase_url: d\nproviders: {}\n";
        let mut c: IngesterConfig = serde_norway::from_str(text).expect("base");
        let key = KeyConfig { env: None, file: None, value: Some(key.into()), not_after: not_after.map(str::to_owned) };
        c.providers.insert(vendor.into(), ProviderConfig { vendor: None, domain: "payouts".into(), keys: vec![key], tolerance_s: 300, rate_limit: None, allow_from: Vec::new(), rotation: Default::default(), key_endpoint: None, jwks_urls: Vec::new(), event_domains: Default::default() });
        c
    }

    fn error(c: &IngesterConfig) -> String {
        match build(c) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn events_route_to_the_longest_matching_prefix_else_to_the_providers_domain() {
        let mut c = config("stripe", "whsec_x", None);
        let p = c.providers.get_mut("stripe").expect("provider");
        p.event_domains.insert("payout_".into(), "cards".into());
        p.event_domains.insert("payout_fail".into(), "kyc".into());
        let built = build(&c).expect("builds");
        let stripe = &built["stripe"];
        assert_eq!(stripe.route("payout_executed"), ("cards", "cards.provider-events.v1"));
        assert_eq!(stripe.route("payout_failed"), ("kyc", "kyc.provider-events.v1"));
        assert_eq!(stripe.route("payment_executed"), ("payouts", "payouts.provider-events.v1"));
        assert_eq!(stripe.topics().count(), 3);
        c.providers.get_mut("stripe").expect("provider").event_domains.insert("x_".into(), String::new());
        assert!(error(&c).contains("providers.stripe.event_domains"), "{}", error(&c));
    }

    #[test]
    fn bad_keys_stop_start_up_naming_the_field() {
        assert!(error(&config("adyen", "not hex", None)).contains("providers.adyen.keys[0]"));
        assert!(error(&config("lithic", "whsec_***", None)).contains("providers.lithic.keys[0]"));
        assert!(error(&config("wise", "no pem here", None)).contains("providers.wise.keys[0]"));
        assert!(error(&config("stripe", "whsec_x", Some("tomorrow"))).contains("providers.stripe.keys[0].not_after"));
        assert!(error(&config("paypal", "x", None)).contains("providers.paypal.vendor"));
        assert!(error(&config("paypal", "x", None)).contains("complyadvantage"), "the message lists the check vendors");
        for vendor in ["onfido", "sumsub", "seon"] {
            assert!(error(&config(vendor, "  ", None)).contains(&format!("providers.{vendor}.keys[0]")), "{vendor}: an empty secret");
            assert!(build(&config(vendor, "a-plain-secret", None)).is_ok(), "{vendor}");
        }
        for vendor in ["complyadvantage", "sardine"] {
            assert!(error(&config(vendor, "plain", None)).contains(&format!("providers.{vendor}.keys[0]")), "{vendor}: whsec_ needed");
            assert!(build(&config(vendor, "whsec_c3dpdGNoeWFyZA==", None)).is_ok(), "{vendor}");
        }
        assert!(build(&config("stripe", "whsec_x", Some("2026-12-01T00:00:00Z"))).is_ok());
        assert!(error(&config("marqeta", "no-colon", None)).contains("providers.marqeta.keys[0]: expected username:password"));
        assert!(build(&config("marqeta", "switchyard:s3cret", None)).is_ok());
        assert!(error(&config("plaid", "secret", None)).contains("providers.plaid.key_endpoint"), "Plaid without its key endpoint");
        assert!(error(&config("truelayer", "secret", None)).contains("providers.truelayer.keys"), "TrueLayer's keys come from its JWKS");
        let mut tl = config("truelayer", "x", None);
        let p = tl.providers.get_mut("truelayer").expect("provider");
        p.keys.clear();
        assert!(error(&tl).contains("providers.truelayer.jwks_urls"), "TrueLayer without its JWKS URL");
        tl.providers.get_mut("truelayer").expect("provider").jwks_urls = vec!["http://webhooks.truelayer.com/.well-known/jwks".into()];
        assert!(error(&tl).contains("providers.truelayer.jwks_urls"), "plain http to a non-loopback host");
        tl.providers.get_mut("truelayer").expect("provider").jwks_urls = vec![webhooks::truelayer::SANDBOX_JWKS.into()];
        assert!(build(&tl).is_ok());
    }
}
