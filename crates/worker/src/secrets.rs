//! Outbound credentials rotated without a restart, one implementation for
//! every worker that calls vendors (payout, check, card, open banking).
//!
//! A worker loads each provider's credentials through [`OutboundKeys`]:
//! one from a `file` (a Kubernetes secret volume, a Vault agent template)
//! is held as a [`RotatingSecret`] the adapter reads on every request
//! ([`ApiKey::Rotating`]), and [`OutboundKeys::spawn`] reads each file again
//! every `secret_check_every_ms`. A changed value is used from the next
//! request on, with no overlap on our side: we only present keys, and
//! whether the old one still works meanwhile is the vendor's setting
//! (Stripe's roll expiry, Adyen's second key), see
//! `ops/runbooks/secret-rotation.md`. A new value is first checked like the
//! start-up one (a live-shaped key in a sandbox deployment, or a value
//! another provider's key already holds, is refused and the current one
//! stays). Each rotation is logged with the field, never the value, and
//! audited as `secret_rotated`.
//!
//! Client certificates ([`OutboundKeys::certificate`]) are re-read the same
//! way: a changed certificate and key that pass the start-up checks give a
//! new HTTP client, swapped in for new calls ([`RotatingTls`]); every
//! worker wires them through [`OutboundKeys::with_certificate`], whatever
//! the vendor. A request-signing key ([`OutboundKeys::signing_key`],
//! TrueLayer's `Tl-Signature` key) rotates with its key id as one pair
//! ([`RotatingSigningKey`]), after the new key signed a test message.
//!
//! [`ApiKey::Rotating`]: switchyard_adapters::secret::ApiKey

use crate::WorkerError;
use std::sync::Arc;
use std::time::Duration;
use switchyard_adapters::environment::DistinctSecrets;
use switchyard_adapters::http::Transport;
use switchyard_adapters::secret::{ApiKey, RotatingSecret, Rotation, Secret, SecretSource};
use switchyard_adapters::signing_key::{KeyPair, RotatingSigningKey, SigningKey};
use switchyard_adapters::tls::TlsConfig;
use switchyard_adapters::tls_rotation::{LiveClient, RotatingTls, WithClient};
use switchyard_store::{AuditEntry, Store};
use tokio_util::sync::CancellationToken;

/// A check a value must pass, at start-up and before it replaces the current one.
pub type Usable = Box<dyn Fn(&Secret) -> Result<(), WorkerError> + Send + Sync>;

/// One outbound credential and whose it is.
pub struct OutboundKey {
    /// The provider's name: the audit entry's subject.
    pub provider: String,
    pub secret: Arc<RotatingSecret>,
    pub usable: Usable,
    /// A provider's main key: no two may hold the same value.
    distinct: bool,
}

/// Every outbound credential of one worker, loaded at start-up.
#[derive(Default)]
pub struct OutboundKeys {
    keys: Vec<OutboundKey>,
    distinct: DistinctSecrets,
    /// Client certificates, by provider.
    certificates: Vec<(String, Arc<RotatingTls>)>,
    /// Request-signing keys with their key ids, by provider.
    signing_keys: Vec<(String, Arc<RotatingSigningKey>)>,
    after_certificate: Option<Box<dyn Fn() + Send + Sync>>,
}

impl OutboundKeys {
    /// A provider's main key (`field` names it in errors and audit
    /// entries): `usable` is checked now, a failure stopping start-up, and
    /// on every new value; no other main key may share its value ("no god key").
    pub fn key(&mut self, provider: &str, field: &str, source: &SecretSource, usable: Usable) -> Result<ApiKey, WorkerError> {
        let secret = Arc::new(RotatingSecret::load(source.clone(), field, Duration::ZERO)?);
        let value = secret.current();
        usable(&value)?;
        self.distinct.add(format!("{field} ({provider})"), value.expose()).map_err(WorkerError::Config)?;
        self.keys.push(OutboundKey { provider: provider.to_owned(), secret: secret.clone(), usable, distinct: true });
        Ok(ApiKey::Rotating(secret))
    }

    /// A credential that goes with a key (a signing secret, a client
    /// secret, an access token): re-read the same way, with no shape to check.
    pub fn companion(&mut self, provider: &str, field: &str, source: &SecretSource) -> Result<ApiKey, WorkerError> {
        let secret = Arc::new(RotatingSecret::load(source.clone(), field, Duration::ZERO)?);
        self.keys.push(OutboundKey { provider: provider.to_owned(), secret: secret.clone(), usable: Box::new(|_| Ok(())), distinct: false });
        Ok(ApiKey::Rotating(secret))
    }

    /// A provider's client certificate (`field`: `providers[<name>].tls`),
    /// checked now like at any start-up; the client returned follows every
    /// rotation of its files.
    pub fn certificate(&mut self, provider: &str, field: &str, tls: &TlsConfig, transport: Transport) -> Result<LiveClient, WorkerError> {
        let rotating = Arc::new(RotatingTls::load(field, tls, transport)?);
        let client = rotating.client();
        self.certificates.push((provider.to_owned(), rotating));
        Ok(client)
    }

    /// `adapter` sending with a client that follows the rotations of the
    /// provider's `tls` files; without `tls`, `adapter` as it is. One call
    /// per provider in every worker, whatever the vendor (each domain's
    /// provider enum is [`WithClient`]).
    pub fn with_certificate<A: WithClient>(&mut self, provider: &str, tls: Option<&TlsConfig>, transport: Transport, adapter: A) -> Result<A, WorkerError> {
        match tls {
            Some(tls) => Ok(adapter.with_client(self.certificate(provider, &format!("providers[{provider}].tls"), tls, transport)?)),
            None => Ok(adapter),
        }
    }

    /// A request-signing key and its key id (`field`:
    /// `providers[<i>].truelayer.signing_key`), checked now with `usable`
    /// like at any start-up; the key returned follows every rotation of
    /// the pair.
    pub fn signing_key(
        &mut self,
        provider: &str,
        field: &str,
        kid: &KeyIdSource,
        key: &SecretSource,
        usable: fn(&KeyPair) -> Result<(), String>,
    ) -> Result<SigningKey, WorkerError> {
        let rotating = Arc::new(RotatingSigningKey::load(field, kid.source(), key.clone(), usable)?);
        let signing = rotating.key();
        self.signing_keys.push((provider.to_owned(), rotating));
        Ok(signing)
    }

    /// Runs after each certificate rotation (to export the new expiry).
    pub fn after_certificate_rotation(&mut self, f: impl Fn() + Send + Sync + 'static) {
        self.after_certificate = Some(Box::new(f));
    }

    /// Re-reads every file-based credential until `shutdown`; nothing runs
    /// when none is.
    pub fn spawn(self, store: Store, actor: &'static str, every: Duration, shutdown: CancellationToken) {
        if !self.keys.iter().any(|k| k.secret.reloads())
            && !self.certificates.iter().any(|(_, c)| c.reloads())
            && !self.signing_keys.iter().any(|(_, k)| k.reloads())
        {
            return;
        }
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every.max(Duration::from_millis(50)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {
                        check(&self.keys, &store, actor).await;
                        self.check_certificates(&store, actor).await;
                        self.check_signing_keys(&store, actor).await;
                    }
                }
            }
        });
    }

    async fn check_certificates(&self, store: &Store, actor: &str) {
        let now = switchyard_canonical::now_ms();
        for (provider, tls) in self.certificates.iter().filter(|(_, c)| c.reloads()) {
            match tls.refresh(now) {
                Ok(Some(rotation)) => {
                    audit(store, actor, provider, &rotation).await;
                    if let Some(after) = &self.after_certificate {
                        after();
                    }
                }
                Ok(None) => {}
                // A certificate whose new key is not there yet, an expired
                // one, a file half-written: the current client stays.
                Err(e) => tracing::warn!(provider = %provider, error = %e, "client certificate not re-read; the current one stays"),
            }
        }
    }
}

impl OutboundKeys {
    async fn check_signing_keys(&self, store: &Store, actor: &str) {
        let now = switchyard_canonical::now_ms();
        for (provider, key) in self.signing_keys.iter().filter(|(_, k)| k.reloads()) {
            match key.refresh(now) {
                Ok(Some(rotation)) => audit(store, actor, provider, &rotation).await,
                Ok(None) => {}
                // Only one of key and kid rewritten yet, a key that does not
                // sign, a file half-written: the current pair keeps signing.
                Err(e) => tracing::warn!(provider = %provider, error = %e, "signing key not re-read; the current one stays"),
            }
        }
    }
}

/// Where a signing key's id comes from: written in the config (`kid-1`),
/// or a source like the key's (`{ file: ... }`) so that both rotate
/// together from one secret volume.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(untagged)]
pub enum KeyIdSource {
    Value(String),
    Source(SecretSource),
}

impl KeyIdSource {
    /// An inline id that is blank (a source is checked when read).
    pub fn is_blank(&self) -> bool {
        matches!(self, Self::Value(v) if v.trim().is_empty())
    }

    fn source(&self) -> SecretSource {
        match self {
            Self::Value(v) => SecretSource::inline(v),
            Self::Source(s) => s.clone(),
        }
    }
}

impl From<&str> for KeyIdSource {
    fn from(v: &str) -> Self {
        Self::Value(v.to_owned())
    }
}

/// The refusal's own words: a config error without the `config:` prefix.
fn reason(e: WorkerError) -> String {
    match e {
        WorkerError::Config(m) => m,
        other => other.to_string(),
    }
}

/// Whether `value` would make `key` share its value with another main key.
fn shared_with<'a>(keys: &'a [OutboundKey], key: &OutboundKey, value: &Secret) -> Option<&'a OutboundKey> {
    if !key.distinct {
        return None;
    }
    keys.iter().find(|other| other.distinct && !Arc::ptr_eq(&other.secret, &key.secret) && other.secret.current() == *value)
}

async fn check(keys: &[OutboundKey], store: &Store, actor: &str) {
    let now = switchyard_canonical::now_ms();
    for key in keys.iter().filter(|k| k.secret.reloads()) {
        let usable = |value: &Secret| {
            (key.usable)(value).map_err(reason)?;
            match shared_with(keys, key, value) {
                Some(other) => Err(format!("the same secret as {} ({}); each provider needs its own credential", other.secret.field(), other.provider)),
                None => Ok(()),
            }
        };
        match key.secret.refresh_checked(now, usable) {
            Ok(Some(rotation)) => audit(store, actor, &key.provider, &rotation).await,
            Ok(None) => {}
            // A writer half-way through, the file gone, or a value refused:
            // the current key stays and is used until the file is fixed.
            Err(e) => {
                tracing::warn!(provider = %key.provider, error = %e, "outbound key not re-read; the current key stays")
            }
        }
    }
}

async fn audit(store: &Store, actor: &str, provider: &str, r: &Rotation) {
    let detail = serde_json::json!({ "field": r.field, "generation": r.generation }).to_string();
    let entry = AuditEntry {
        actor,
        action: "secret_rotated",
        subject_id: provider,
        correlation_id: "",
        detail: &detail,
    };
    if let Err(e) = store.audit(entry).await {
        tracing::warn!(error = %e, provider, "audit entry for a key rotation not written");
    }
}
