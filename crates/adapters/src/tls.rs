//! Mutual TLS to a partner: the client certificate and key a vendor issued
//! us, the CA bundle its server certificate must chain to, and the lowest
//! TLS version we accept, per provider.
//!
//! Certificates and keys come through [`SecretSource`] like every other
//! credential (Kubernetes and Vault agents mount them as files), so a key is
//! never inline in a config that gets copied around. Everything is read and
//! checked at start-up: a missing file, a key that does not belong to the
//! certificate or a bundle without a certificate stops the process with a
//! message naming the provider and field, instead of a handshake failure on
//! the first payout.

use crate::secret::SecretSource;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use std::fmt;

/// `providers[].tls` in a worker config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain presented to the vendor, leaf first.
    #[serde(default)]
    pub client_cert: Option<SecretSource>,
    /// PEM private key of `client_cert` (PKCS#8, PKCS#1 or SEC1).
    #[serde(default)]
    pub client_key: Option<SecretSource>,
    /// PEM CA certificates the vendor's server certificate must chain to.
    /// When set these are the only roots trusted for this vendor (pinned),
    /// unless `public_roots` adds the public ones back.
    #[serde(default)]
    pub ca_bundle: Option<SecretSource>,
    /// Also trust the public web roots next to `ca_bundle`.
    #[serde(default)]
    pub public_roots: bool,
    /// `"1.2"` or `"1.3"`; the TLS library's own floor (1.2) when unset.
    #[serde(default)]
    pub min_version: Option<MinTlsVersion>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinTlsVersion {
    Tls12,
    Tls13,
}

impl<'de> Deserialize<'de> for MinTlsVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // YAML reads an unquoted `1.2` as a number: accept both spellings.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(f64),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Text(s) => s,
            Raw::Number(n) => format!("{n:.1}"),
        };
        match text.trim().trim_start_matches("TLS").trim_start_matches("tls").trim() {
            "1.2" => Ok(Self::Tls12),
            "1.3" => Ok(Self::Tls13),
            other => Err(serde::de::Error::custom(format!("min_version: {other:?} is not one of \"1.2\", \"1.3\""))),
        }
    }
}

/// A TLS setting that cannot be used; the message names the field and never
/// contains key material.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(pub String);

impl From<crate::secret::SecretError> for TlsError {
    fn from(e: crate::secret::SecretError) -> Self {
        Self(e.0)
    }
}

/// The loaded, checked TLS material of one provider, ready for its client.
#[derive(Clone)]
pub struct ClientTls {
    identity: Option<reqwest::Identity>,
    roots: Vec<reqwest::Certificate>,
    public_roots: bool,
    min_version: Option<MinTlsVersion>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("client_identity", &self.identity.as_ref().map(|_| "****"))
            .field("roots", &self.roots.len())
            .field("public_roots", &self.public_roots)
            .field("min_version", &self.min_version)
            .finish()
    }
}

impl TlsConfig {
    /// Checks what can be checked without reading files; `field` is the
    /// provider's entry (`providers[stripe].tls`).
    pub fn validate(&self, field: &str, base_url: &str) -> Result<(), TlsError> {
        match (&self.client_cert, &self.client_key) {
            (Some(_), None) => return Err(TlsError(format!("{field}.client_key is required with client_cert"))),
            (None, Some(_)) => return Err(TlsError(format!("{field}.client_cert is required with client_key"))),
            _ => {}
        }
        if self.public_roots && self.ca_bundle.is_none() {
            return Err(TlsError(format!("{field}.public_roots needs a ca_bundle to add them to")));
        }
        // TLS settings on a plain-http endpoint would silently do nothing.
        if !base_url.starts_with("https://") {
            return Err(TlsError(format!("{field} is set but base_url is not https://")));
        }
        Ok(())
    }

    /// Reads and checks the certificates and key.
    pub fn load(&self, field: &str) -> Result<ClientTls, TlsError> {
        let identity = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => {
                let cert_field = format!("{field}.client_cert");
                let key_field = format!("{field}.client_key");
                let chain_pem = cert.load(&cert_field)?.expose().to_owned();
                let chain = certificates(&chain_pem, &cert_field)?;
                refuse_expired(&chain_pem, &cert_field)?;
                let key_secret = key.load(&key_field)?;
                check_key_matches(&chain, key_secret.expose(), field)?;
                // reqwest wants chain and key in one PEM buffer.
                let combined = format!("{}\n{}\n", chain_pem.trim(), key_secret.expose().trim());
                // reqwest's message could quote what it failed to parse: say
                // only which field is at fault.
                let identity = reqwest::Identity::from_pem(combined.as_bytes())
                    .map_err(|_| TlsError(format!("{cert_field}/{key_field} cannot be used as a client identity")))?;
                Some(identity)
            }
            (None, None) => None,
            _ => return Err(TlsError(format!("{field}: client_cert and client_key go together"))),
        };
        let roots = match &self.ca_bundle {
            Some(source) => {
                let ca_field = format!("{field}.ca_bundle");
                let pem = source.load(&ca_field)?.expose().to_owned();
                let roots = certificates(&pem, &ca_field)?
                    .iter()
                    .map(|der| reqwest::Certificate::from_der(der.as_ref()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| TlsError(format!("{ca_field}: {e}")))?;
                roots
            }
            None => Vec::new(),
        };
        Ok(ClientTls { identity, roots, public_roots: self.public_roots, min_version: self.min_version })
    }

    /// The certificates of `client_cert` and `ca_bundle` for the inventory;
    /// reads neither the key nor anything else.
    pub fn inventory(&self, provider: &str) -> Result<Vec<crate::certs::InventoryItem>, TlsError> {
        let mut items = Vec::new();
        for (kind, source) in [("client_cert", &self.client_cert), ("ca_bundle", &self.ca_bundle)] {
            if let Some(source) = source {
                let field = format!("providers[{provider}].tls.{kind}");
                let pem = source.load(&field)?;
                items.extend(crate::certs::inventory(provider, kind, &field, pem.expose()).map_err(|e| TlsError(e.0))?);
            }
        }
        Ok(items)
    }
}

/// An expired client certificate is refused at the handshake by every
/// vendor: say so at start-up instead, with the date.
fn refuse_expired(chain_pem: &str, field: &str) -> Result<(), TlsError> {
    let leaf = crate::certs::inventory("", "", field, chain_pem).map_err(|e| TlsError(e.0))?.into_iter().next();
    match leaf.and_then(|l| Some((l.not_after?, l.subject))) {
        Some((not_after, subject)) if not_after <= crate::certs::now() => {
            let at = time::OffsetDateTime::from_unix_timestamp(not_after)
                .ok()
                .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
                .unwrap_or_else(|| not_after.to_string());
            Err(TlsError(format!("{field}: certificate {subject} expired at {at}")))
        }
        _ => Ok(()),
    }
}

fn certificates(pem: &str, field: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError(format!("{field}: not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError(format!("{field}: no PEM certificate in it")));
    }
    Ok(certs)
}

/// A key that is not the certificate's would only show as a handshake
/// failure at the vendor, on live traffic; compare public keys up front.
fn check_key_matches(chain: &[CertificateDer<'static>], key_pem: &str, field: &str) -> Result<(), TlsError> {
    let key_field = format!("{field}.client_key");
    // The parser's error is not quoted: it could echo a line of the key.
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|_| TlsError(format!("{key_field}: no PEM private key in it")))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|_| TlsError(format!("{key_field}: not a supported private key (RSA, ECDSA P-256/P-384, Ed25519)")))?;
    rustls::sign::CertifiedKey::new(chain.to_vec(), signing)
        .keys_match()
        .map_err(|_| TlsError(format!("{key_field} does not belong to the first certificate of {field}.client_cert")))
}

impl ClientTls {
    /// Applies this provider's TLS settings to its client.
    pub fn apply(&self, mut builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        if let Some(identity) = &self.identity {
            builder = builder.identity(identity.clone());
        }
        for root in &self.roots {
            builder = builder.add_root_certificate(root.clone());
        }
        if !self.roots.is_empty() && !self.public_roots {
            // Pinned: a certificate from any public CA is not the vendor.
            builder = builder.tls_built_in_root_certs(false);
        }
        if let Some(v) = self.min_version {
            builder = builder.min_tls_version(match v {
                MinTlsVersion::Tls12 => reqwest::tls::Version::TLS_1_2,
                MinTlsVersion::Tls13 => reqwest::tls::Version::TLS_1_3,
            });
        }
        builder
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_version_reads_numbers_and_strings() {
        let v: MinTlsVersion = serde_json::from_str("1.3").expect("number");
        assert_eq!(v, MinTlsVersion::Tls13);
        let v: MinTlsVersion = serde_json::from_str("\"TLS1.2\"").expect("string");
        assert_eq!(v, MinTlsVersion::Tls12);
        let err = serde_json::from_str::<MinTlsVersion>("\"1.1\"").expect_err("too old").to_string();
        assert!(err.contains("min_version"), "{err}");
    }

    #[test]
    fn a_half_configured_identity_or_plain_http_is_refused_naming_the_field() {
        let cfg = TlsConfig { client_cert: Some(SecretSource::inline("x")), ..TlsConfig::default() };
        let err = cfg.validate("providers[stripe].tls", "https://api.stripe.com").expect_err("no key").to_string();
        assert_eq!(err, "providers[stripe].tls.client_key is required with client_cert");
        let cfg = TlsConfig { min_version: Some(MinTlsVersion::Tls13), ..TlsConfig::default() };
        let err = cfg.validate("providers[stripe].tls", "http://127.0.0.1:1").expect_err("plain http").to_string();
        assert!(err.contains("providers[stripe].tls") && err.contains("https"), "{err}");
        cfg.validate("providers[stripe].tls", "https://api.stripe.com").expect("fine");
    }

    #[test]
    fn a_file_without_a_certificate_is_refused_naming_the_field() {
        let cfg = TlsConfig { ca_bundle: Some(SecretSource::inline("not a pem")), ..TlsConfig::default() };
        let err = cfg.load("providers[adyen].tls").expect_err("no cert").to_string();
        assert!(err.starts_with("providers[adyen].tls.ca_bundle"), "{err}");
    }
}
