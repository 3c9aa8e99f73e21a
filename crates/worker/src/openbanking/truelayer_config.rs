//! The TrueLayer part of a provider entry and the payment polling settings
//! (kept apart from [`super::config`], which the Plaid side also edits).
//!
//! A `kind: truelayer` provider uses the entry's `base_url` as the API host
//! (`https://api.truelayer-sandbox.com`), `client_id` and `secret` (the
//! client secret) for the auth server's client-credentials token, and this
//! section for the rest. The signing key is the EC P-521 private key whose
//! public half is uploaded to TrueLayer's console under `signing_key_id`;
//! from files, both rotate together without a restart
//! ([`crate::secrets::OutboundKeys::signing_key`]).

use super::config::{ObProviderKind, OpenBankingWorkerConfig};
use crate::config::SecretSource;
use crate::WorkerError;
use switchyard_adapters::environment;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrueLayerSection {
    /// `https://auth.truelayer-sandbox.com` / `https://auth.truelayer.com`.
    pub auth_url: String,
    /// The hosted payment page: `https://payment.truelayer-sandbox.com`.
    pub hpp_url: String,
    /// The `kid` TrueLayer shows for the uploaded public key: inline, or a
    /// source (`{ file: ... }`) beside the key's, to rotate with it.
    pub signing_key_id: crate::secrets::KeyIdSource,
    /// The EC P-521 private key (PEM) that signs every POST (`Tl-Signature`).
    pub signing_key: SecretSource,
    /// Where the payment page and the auth dialog send the user back
    /// (allow-listed in TrueLayer's console).
    pub redirect_uri: String,
    /// Our `beneficiary_ref` -> TrueLayer merchant account id.
    pub merchant_accounts: BTreeMap<String, String>,
    /// How long the payment hand-off (its resource token) is good for.
    #[serde(default = "default_resource_token_ttl_ms")]
    pub resource_token_ttl_ms: u64,
    /// How long an auth link is offered for.
    #[serde(default = "default_auth_link_ttl_ms")]
    pub auth_link_ttl_ms: u64,
    /// How long a data connection lasts from its code exchange: TrueLayer's
    /// Data API v1 connection "remains active until 90 days have passed
    /// since the connection was created" (docs: Create a connection). It
    /// is the consent's end, so CONSENT_EXPIRING and EXPIRED come from our
    /// deadlines as Plaid's do, and a refresh after it calls no one.
    #[serde(default = "default_consent_ttl_ms")]
    pub consent_ttl_ms: u64,
}

fn default_resource_token_ttl_ms() -> u64 {
    15 * 60_000
}
fn default_auth_link_ttl_ms() -> u64 {
    60 * 60_000
}
fn default_consent_ttl_ms() -> u64 {
    90 * 24 * 3_600_000
}

/// How open payments are polled for their status.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct PaymentPollingConfig {
    /// Time between two status queries of a payment whose status just moved.
    pub interval_ms: u64,
    /// Payments asked about per round at most.
    pub batch: u32,
    /// A status that has not moved for a while is asked about less often:
    /// the wait grows to a tenth of the time since it last moved, up to this.
    pub max_interval_ms: u64,
    /// A payment whose status has not moved for this long is no longer
    /// polled (an error log, an audit row `payment_polling_given_up`, a
    /// `manual_repair` failure and its alert): someone must look at it at
    /// the provider. A webhook that moves it resumes polling.
    pub give_up_after_ms: u64,
}

impl Default for PaymentPollingConfig {
    /// Statuses move in seconds to days; every 10 s is well inside what a
    /// product shows a paying user, and far below TrueLayer's rate limits.
    /// An hour at most between two queries of a quiet payment; two weeks
    /// without a move is past any settlement TrueLayer describes.
    fn default() -> Self {
        Self { interval_ms: 10_000, batch: 200, max_interval_ms: 3_600_000, give_up_after_ms: 14 * 24 * 3_600_000 }
    }
}

/// Cross-field checks of the TrueLayer entries; errors name the field.
pub(super) fn validate(config: &OpenBankingWorkerConfig) -> Result<(), WorkerError> {
    let bad = |m: String| Err(WorkerError::Config(m));
    for (i, p) in config.providers.iter().enumerate() {
        match (p.kind, &p.truelayer) {
            (ObProviderKind::TrueLayer, None) => return bad(format!("providers[{i}].truelayer is required for kind truelayer")),
            (ObProviderKind::Plaid, Some(_)) => return bad(format!("providers[{i}].truelayer is only for kind truelayer")),
            (ObProviderKind::Plaid, None) => {}
            (ObProviderKind::TrueLayer, Some(t)) => {
                for (field, url) in [("auth_url", &t.auth_url), ("hpp_url", &t.hpp_url), ("redirect_uri", &t.redirect_uri)] {
                    if !url.starts_with("http://") && !url.starts_with("https://") {
                        return bad(format!("providers[{i}].truelayer.{field} must be an http(s) URL"));
                    }
                }
                if t.signing_key_id.is_blank() {
                    return bad(format!("providers[{i}].truelayer.signing_key_id must not be empty"));
                }
                if t.merchant_accounts.is_empty() || t.merchant_accounts.values().any(|v| v.trim().is_empty()) {
                    return bad(format!("providers[{i}].truelayer.merchant_accounts must name at least one merchant account, none empty"));
                }
                if t.resource_token_ttl_ms == 0 || t.auth_link_ttl_ms == 0 || t.consent_ttl_ms == 0 {
                    return bad(format!("providers[{i}].truelayer.resource_token_ttl_ms, auth_link_ttl_ms and consent_ttl_ms must be at least 1"));
                }
                for (field, url) in [("base_url", &p.base_url), ("truelayer.auth_url", &t.auth_url), ("truelayer.hpp_url", &t.hpp_url)] {
                    environment::check_endpoint(config.environment.into(), "truelayer", &format!("providers[{i}].{field}"), url).map_err(WorkerError::Config)?;
                }
            }
        }
    }
    let p = &config.payment_polling;
    if p.interval_ms < 100 || p.batch == 0 {
        return bad("payment_polling: interval_ms must be at least 100 and batch at least 1".into());
    }
    if p.max_interval_ms < p.interval_ms || p.give_up_after_ms < p.interval_ms {
        return bad("payment_polling: max_interval_ms and give_up_after_ms must be at least interval_ms".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> OpenBankingWorkerConfig {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ops/openbanking-worker.example.yaml");
        let text = std::fs::read_to_string(path).expect("example");
        serde_norway::from_str(&text).expect("parses")
    }

    fn truelayer() -> TrueLayerSection {
        TrueLayerSection {
            auth_url: "https://auth.truelayer-sandbox.com".into(),
            hpp_url: "https://payment.truelayer-sandbox.com".into(),
            signing_key_id: "kid".into(),
            signing_key: SecretSource::inline("pem"),
            redirect_uri: "https://app.example.com/paid".into(),
            merchant_accounts: BTreeMap::from([("main-gbp".to_owned(), "ma-1".to_owned())]),
            resource_token_ttl_ms: 1,
            auth_link_ttl_ms: 1,
            consent_ttl_ms: 1,
        }
    }

    #[test]
    fn truelayer_entries_are_checked_and_errors_name_the_field() {
        let mut c = config();
        let i = c.providers.iter().position(|p| p.kind == ObProviderKind::TrueLayer).expect("the example has a TrueLayer entry");
        validate(&c).expect("the example is valid");
        assert_eq!(c.payment_polling, PaymentPollingConfig::default());
        c.providers[i].truelayer = None;
        let err = validate(&c).expect_err("no section");
        assert!(err.to_string().contains(&format!("providers[{i}].truelayer")), "{err}");
        c.providers[i].truelayer = Some(TrueLayerSection { hpp_url: "https://payment.truelayer.com".into(), ..truelayer() });
        assert!(validate(&c).expect_err("production host").to_string().contains(&format!("providers[{i}].truelayer.hpp_url")));
        c.providers[i].truelayer = Some(TrueLayerSection { merchant_accounts: BTreeMap::new(), ..truelayer() });
        assert!(validate(&c).expect_err("no accounts").to_string().contains("merchant_accounts"));
        c.providers[i].truelayer = Some(truelayer());
        c.providers[0].truelayer = Some(truelayer());
        assert!(validate(&c).expect_err("section on plaid").to_string().contains("providers[0].truelayer"));
    }
}
