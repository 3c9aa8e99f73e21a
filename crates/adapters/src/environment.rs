//! Which environment a vendor credential or endpoint belongs to, as far as
//! the vendor's own conventions reveal it, so a sandbox deployment refuses
//! production keys and endpoints and a production deployment refuses test
//! ones, at start-up, naming the field.
//!
//! What each vendor reveals (from its public docs):
//! - Stripe: secret and restricted keys `sk_live_`/`rk_live_` vs
//!   `sk_test_`/`rk_test_`; one host for both.
//! - Adyen: keys say nothing; live endpoints are
//!   `<prefix>-…-live.adyenpayments.com` (and `*-live.adyen.com`), test
//!   endpoints `*-test.adyen.com`.
//! - Wise: `api.sandbox.transferwise.tech` vs `api.wise.com`/`api.transferwise.com`.
//! - Lithic: `sandbox.lithic.com` vs `api.lithic.com`.
//! - Marqeta: `sandbox-api.marqeta.com` vs a customer-specific production
//!   host (any other `*.marqeta.com`).
//! - Onfido: API tokens `api_live…` vs `api_sandbox…`.
//! - Sumsub: app tokens `prd:` vs `sbx:`.
//! - Sardine: `api.sandbox.sardine.ai` vs `api.sardine.ai`.
//! - ComplyAdvantage, OpenSanctions, SEON: neither keys nor hosts tell
//!   (UNCONFIRMED for ComplyAdvantage's newer Mesh API); only the "no
//!   shared secret" rule applies to them.
//!
//! A loopback or private endpoint (a simulator, a proxy in the cluster) says
//! nothing either way: production deployments reach vendors through egress
//! proxies as often as directly.

/// The environment a credential or endpoint belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VendorEnvironment {
    Live,
    Test,
}

impl VendorEnvironment {
    fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Test => "test",
        }
    }
}

/// What a key's shape says, for `vendor` (the config's `kind`).
pub fn of_key(vendor: &str, key: &str) -> Option<VendorEnvironment> {
    let key = key.trim();
    let starts = |prefixes: &[&str]| prefixes.iter().any(|p| key.starts_with(p));
    match vendor {
        "stripe" if starts(&["sk_live_", "rk_live_", "pk_live_"]) => Some(VendorEnvironment::Live),
        "stripe" if starts(&["sk_test_", "rk_test_", "pk_test_"]) => Some(VendorEnvironment::Test),
        "onfido" if starts(&["api_live"]) => Some(VendorEnvironment::Live),
        "onfido" if starts(&["api_sandbox"]) => Some(VendorEnvironment::Test),
        "sumsub" if starts(&["prd:"]) => Some(VendorEnvironment::Live),
        "sumsub" if starts(&["sbx:"]) => Some(VendorEnvironment::Test),
        _ => None,
    }
}

/// What an endpoint's host says, for `vendor`.
pub fn of_url(vendor: &str, base_url: &str) -> Option<VendorEnvironment> {
    let host = host_of(base_url)?;
    let ends = |suffix: &str| host == suffix.trim_start_matches('.') || host.ends_with(suffix);
    match vendor {
        "adyen" if ends("-live.adyenpayments.com") || ends("-live.adyen.com") => Some(VendorEnvironment::Live),
        "adyen" if ends("-test.adyen.com") || ends("-test.adyenpayments.com") => Some(VendorEnvironment::Test),
        "wise" if ends("api.sandbox.transferwise.tech") => Some(VendorEnvironment::Test),
        "wise" if ends("api.wise.com") || ends("api.transferwise.com") => Some(VendorEnvironment::Live),
        "lithic" if ends("sandbox.lithic.com") => Some(VendorEnvironment::Test),
        "lithic" if ends("api.lithic.com") => Some(VendorEnvironment::Live),
        "marqeta" if ends("sandbox-api.marqeta.com") => Some(VendorEnvironment::Test),
        "marqeta" if ends(".marqeta.com") => Some(VendorEnvironment::Live),
        "sardine" if ends("api.sandbox.sardine.ai") => Some(VendorEnvironment::Test),
        "sardine" if ends("api.sardine.ai") => Some(VendorEnvironment::Live),
        // Every sandbox host (api, auth, payment page) is under truelayer-sandbox.com.
        "truelayer" if ends(".truelayer-sandbox.com") => Some(VendorEnvironment::Test),
        "truelayer" if ends(".truelayer.com") => Some(VendorEnvironment::Live),
        _ => None,
    }
}

fn host_of(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = host.split(':').next()?.trim_end_matches('.').to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

/// Refuses a key or endpoint that belongs to the other environment than the
/// deployment's. `field` names the provider's config entry
/// (`providers[stripe]`); the message never contains the key.
pub fn check(deployment: VendorEnvironment, vendor: &str, field: &str, key: &str, base_url: &str) -> Result<(), String> {
    let deployment_name = match deployment {
        VendorEnvironment::Live => "a production",
        VendorEnvironment::Test => "a sandbox",
    };
    if let Some(found) = of_key(vendor, key).filter(|e| *e != deployment) {
        return Err(format!("{field}.api_key is a {vendor} {} key; {deployment_name} deployment refuses it", found.as_str()));
    }
    if let Some(found) = of_url(vendor, base_url).filter(|e| *e != deployment) {
        return Err(format!("{field}.base_url is a {vendor} {} endpoint; {deployment_name} deployment refuses it", found.as_str()));
    }
    Ok(())
}

/// Refuses an endpoint (`field` names it) whose host belongs to the other
/// environment than the deployment's, as [`of_url`] reads it.
pub fn check_endpoint(deployment: VendorEnvironment, vendor: &str, field: &str, url: &str) -> Result<(), String> {
    let word = |e: VendorEnvironment| match e {
        VendorEnvironment::Live => "production",
        VendorEnvironment::Test => "sandbox",
    };
    match of_url(vendor, url) {
        Some(found) if found != deployment => Err(format!("{field} is a {vendor} {} host, refused in {}", word(found), word(deployment))),
        _ => Ok(()),
    }
}

/// Refuses one secret value configured for two providers ("no god key"):
/// each adapter gets its own credential, so revoking one revokes one. Keeps
/// only a digest of each secret, never the value.
#[derive(Default)]
pub struct DistinctSecrets {
    seen: std::collections::HashMap<[u8; 32], String>,
}

impl DistinctSecrets {
    /// Records `value` under `field`; an error names both fields when
    /// another field already holds the same secret.
    pub fn add(&mut self, field: String, value: &str) -> Result<(), String> {
        use sha2::{Digest, Sha256};
        let digest: [u8; 32] = Sha256::digest(value.trim().as_bytes()).into();
        if let Some(first) = self.seen.get(&digest) {
            return Err(format!("{first} and {field} are the same secret; each provider needs its own credential"));
        }
        self.seen.insert(digest, field);
        Ok(())
    }
}

/// [`DistinctSecrets`] over `(field, value)` pairs.
pub fn check_distinct<'a>(secrets: impl IntoIterator<Item = (String, &'a str)>) -> Result<(), String> {
    let mut distinct = DistinctSecrets::default();
    secrets.into_iter().try_for_each(|(field, value)| distinct.add(field, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use VendorEnvironment::{Live, Test};

    #[test]
    fn keys_and_hosts_say_their_environment_where_the_vendor_makes_them() {
        assert_eq!(of_key("stripe", "rk_live_abc"), Some(Live), "restricted keys too");
        assert_eq!(of_key("stripe", "sk_test_abc"), Some(Test));
        assert_eq!(of_key("onfido", "api_live.abc"), Some(Live));
        assert_eq!(of_key("sumsub", "sbx:abc"), Some(Test));
        assert_eq!(of_key("seon", "anything"), None);
        assert_eq!(of_key("adyen", "AQE...live"), None, "Adyen keys say nothing");
        assert_eq!(of_url("adyen", "https://1797a841fbb37ca7-AdyenDemo-checkout-live.adyenpayments.com/checkout"), Some(Live));
        assert_eq!(of_url("adyen", "https://checkout-test.adyen.com/v71"), Some(Test));
        assert_eq!(of_url("lithic", "https://sandbox.lithic.com/v1"), Some(Test));
        assert_eq!(of_url("lithic", "https://api.lithic.com"), Some(Live));
        assert_eq!(of_url("marqeta", "https://sandbox-api.marqeta.com/v3"), Some(Test));
        assert_eq!(of_url("marqeta", "https://acme-api.marqeta.com/v3"), Some(Live));
        assert_eq!(of_url("wise", "https://api.sandbox.transferwise.tech"), Some(Test));
        assert_eq!(of_url("sardine", "https://api.sardine.ai/v1"), Some(Live));
        assert_eq!(of_url("lithic", "http://127.0.0.1:12119"), None, "a simulator says nothing");
        assert_eq!(of_url("lithic", "https://evil.example/api.lithic.com"), None, "the path is not the host");
        assert_eq!(of_url("lithic", "https://user@sandbox.lithic.com:443/"), Some(Test));
        assert_eq!(of_url("truelayer", "https://auth.truelayer-sandbox.com"), Some(Test));
        assert_eq!(of_url("truelayer", "https://api.truelayer.com/v3"), Some(Live));
        assert_eq!(of_url("truelayer", "https://nottruelayer.com"), None);
    }

    #[test]
    fn a_deployment_refuses_the_other_environment_naming_the_field_never_the_key() {
        let err = check(Test, "stripe", "providers[stripe]", "rk_live_secret123", "http://127.0.0.1:1").expect_err("refused");
        assert!(err.contains("providers[stripe].api_key") && !err.contains("secret123"), "{err}");
        let err = check(Live, "adyen", "providers[adyen]", "k", "https://checkout-test.adyen.com").expect_err("refused");
        assert!(err.contains("providers[adyen].base_url"), "{err}");
        assert!(check(Live, "adyen", "providers[adyen]", "k", "https://x-checkout-live.adyenpayments.com").is_ok());
        assert!(check(Test, "seon", "providers[seon]", "whatever", "https://api.seon.io").is_ok());
    }

    #[test]
    fn one_secret_for_two_providers_is_refused() {
        let err = check_distinct([("providers[a].api_key".to_owned(), "hunter2"), ("providers[b].api_key".to_owned(), " hunter2 ")]).expect_err("god key");
        assert!(err.contains("providers[a].api_key") && err.contains("providers[b].api_key") && !err.contains("hunter2"), "{err}");
        assert!(check_distinct([("a".to_owned(), "x"), ("b".to_owned(), "y")]).is_ok());
    }
}
