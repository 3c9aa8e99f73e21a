//! The `truelayer` section of a payout provider entry (`kind: truelayer`),
//! kept here so [`crate::config`] only gains the field.
//!
//! The entry's `base_url` is TrueLayer's API host
//! (`https://api.truelayer-sandbox.com`) and its `api_key` the client
//! secret (rotated like every other key, see [`crate::secrets`]); this
//! section holds the rest. The signing key is the EC P-521 private key
//! whose public half is uploaded in TrueLayer's console under
//! `signing_key_id`. Both are read per create: from files (`{ file: ... }`
//! for both) they rotate together without a restart, see
//! [`crate::secrets::OutboundKeys::signing_key`].

use crate::config::{PayoutWorkerConfig, ProviderConfig, ProviderKind, SecretSource};
use crate::WorkerError;
use serde::Deserialize;
use switchyard_adapters::environment;
use switchyard_adapters::http::Transport;
use switchyard_adapters::payouts::truelayer::{TrueLayerPayoutAdapter, TrueLayerPayoutSettings};
use switchyard_adapters::secret::ApiKey;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrueLayerPayoutSection {
    /// `https://auth.truelayer-sandbox.com` / `https://auth.truelayer.com`.
    pub auth_url: String,
    pub client_id: String,
    /// The `kid` TrueLayer shows for the uploaded public key: inline, or a
    /// source (`{ file: ... }`) beside the key's, to rotate with it.
    pub signing_key_id: crate::secrets::KeyIdSource,
    /// The EC P-521 private key (PEM) that signs every create (`Tl-Signature`).
    pub signing_key: SecretSource,
    /// The merchant account payouts are drawn from.
    pub merchant_account_id: String,
}

/// Cross-field checks of one provider entry; errors name the field.
pub(crate) fn validate(config: &PayoutWorkerConfig, i: usize, p: &ProviderConfig) -> Result<(), WorkerError> {
    let bad = |m: String| Err(WorkerError::Config(m));
    let t = match (p.kind, &p.truelayer) {
        (ProviderKind::TrueLayer, Some(t)) => t,
        (ProviderKind::TrueLayer, None) => return bad(format!("providers[{i}].truelayer is required for kind truelayer")),
        (_, Some(_)) => return bad(format!("providers[{i}].truelayer is only for kind truelayer")),
        (_, None) => return Ok(()),
    };
    if !t.auth_url.starts_with("http://") && !t.auth_url.starts_with("https://") {
        return bad(format!("providers[{i}].truelayer.auth_url must be an http(s) URL"));
    }
    if t.signing_key_id.is_blank() {
        return bad(format!("providers[{i}].truelayer.signing_key_id must not be empty"));
    }
    for (field, value) in [("client_id", &t.client_id), ("merchant_account_id", &t.merchant_account_id)] {
        if value.trim().is_empty() {
            return bad(format!("providers[{i}].truelayer.{field} must not be empty"));
        }
    }
    for (field, url) in [("base_url", &p.base_url), ("truelayer.auth_url", &t.auth_url)] {
        environment::check_endpoint(config.environment.into(), "truelayer", &format!("providers[{i}].{field}"), url).map_err(WorkerError::Config)?;
    }
    Ok(())
}

/// The adapter of a validated `kind: truelayer` entry, its signing key read
/// once (for one-shot users such as the reconciler).
pub fn adapter(p: &ProviderConfig, client_secret: ApiKey, transport: Transport) -> Result<TrueLayerPayoutAdapter, WorkerError> {
    rotating_adapter(p, client_secret, transport, &mut crate::secrets::OutboundKeys::default())
}

/// [`adapter`], its signing key and kid re-read from their files by `keys`
/// and rotating as a pair without a restart.
pub fn rotating_adapter(p: &ProviderConfig, client_secret: ApiKey, transport: Transport, keys: &mut crate::secrets::OutboundKeys) -> Result<TrueLayerPayoutAdapter, WorkerError> {
    let Some(t) = &p.truelayer else {
        return Err(WorkerError::Config(format!("providers[{}].truelayer is required for kind truelayer", p.name)));
    };
    let field = format!("providers[{}].truelayer.signing_key", p.name);
    let signing_key = keys.signing_key(&p.name, &field, &t.signing_key_id, &t.signing_key, switchyard_adapters::signing_key::truelayer_usable)?;
    let settings = TrueLayerPayoutSettings {
        api_url: p.base_url.clone(),
        auth_url: t.auth_url.clone(),
        client_id: t.client_id.clone(),
        signing_key,
        merchant_account_id: t.merchant_account_id.clone(),
    };
    TrueLayerPayoutAdapter::new(&p.name, settings, client_secret, transport).map_err(|e| WorkerError::Config(format!("providers[{}]: {e}", p.name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example's commented `truelayer` provider, uncommented.
    fn example_with_truelayer() -> PayoutWorkerConfig {
        let text = include_str!("../../../../ops/payout-worker.example.yaml");
        let mut lines = Vec::new();
        let mut inside = false;
        for line in text.lines() {
            inside = (inside || line == "  # - name: truelayer") && line.starts_with("  #");
            lines.push(if inside { line.replacen("  # ", "  ", 1) } else { line.to_owned() });
        }
        serde_norway::from_str(&lines.join("\n")).expect("the example with its truelayer block parses")
    }

    #[test]
    fn the_commented_example_block_is_a_valid_provider_and_a_missing_section_is_named() {
        let mut config = example_with_truelayer();
        let i = config.providers.iter().position(|p| p.kind == ProviderKind::TrueLayer).expect("a truelayer entry");
        config.validate().expect("valid");
        config.providers[i].truelayer = None;
        let err = config.validate().expect_err("section required").to_string();
        assert!(err.contains(&format!("providers[{i}].truelayer is required")), "{err}");
        let mut config = example_with_truelayer();
        config.providers[i].base_url = "https://api.truelayer.com".into();
        let err = config.validate().expect_err("production host in sandbox").to_string();
        assert!(err.contains("production host"), "{err}");
    }

    #[test]
    fn the_kid_is_written_in_the_config_or_read_from_a_file_beside_the_key() {
        let section = |kid: &str| -> TrueLayerPayoutSection {
            let text = format!("{{ auth_url: https://auth.truelayer-sandbox.com, client_id: c, signing_key_id: {kid}, signing_key: {{ file: /k }}, merchant_account_id: m }}");
            serde_norway::from_str(&text).expect("parses")
        };
        assert!(matches!(section("kid-1").signing_key_id, crate::secrets::KeyIdSource::Value(v) if v == "kid-1"));
        assert!(matches!(section("{ file: /run/secrets/tl/kid }").signing_key_id, crate::secrets::KeyIdSource::Source(s) if s.file.as_deref() == Some("/run/secrets/tl/kid")));
        let mut config = example_with_truelayer();
        let i = config.providers.iter().position(|p| p.kind == ProviderKind::TrueLayer).expect("a truelayer entry");
        config.providers[i].truelayer = Some(section("' '"));
        let err = config.validate().expect_err("blank kid").to_string();
        assert!(err.contains(&format!("providers[{i}].truelayer.signing_key_id must not be empty")), "{err}");
    }
}
