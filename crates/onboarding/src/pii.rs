//! The applicant's personal data at rest: flow rows and outbox payloads are
//! sealed under the applicant's own data key (envelope encryption, see
//! `switchyard_adapters::envelope`), so the store, its backups and a
//! `pg_dump` hold no name, address, document number or phone in clear, and
//! `switchyard pii erase` can crypto-shred one applicant.
//!
//! A sealed value is `pii1:<key id>:<base64>`; its associated data is the
//! flow id, so a value copied onto another flow does not open. A value
//! without the prefix is plain JSON (written before encryption was
//! configured) and is read as it is.

use std::sync::Arc;
use switchyard_adapters::envelope::{DataKey, Envelope};
use switchyard_adapters::openbanking::vault::VaultError;
use switchyard_adapters::secret::SecretSource;
use switchyard_store::pii::PiiKeys;
use switchyard_store::{Store, StoreError};

const PREFIX: &str = "pii1:";

/// A key-encryption key in the orchestrator's config: `pii_keys`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PiiKeyConfig {
    /// Written in front of every wrapped data key; name a new key to rotate
    /// (the first listed wraps, every listed one unwraps).
    pub id: String,
    /// Base64 of 32 random bytes (`openssl rand -base64 32`).
    pub key: SecretSource,
}

#[derive(Debug, thiserror::Error)]
pub enum PiiError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("personal data key: {0}")]
    Vault(#[from] VaultError),
    /// The subject's data key was destroyed by `switchyard pii erase`.
    #[error("the subject's personal data was erased")]
    Erased,
    #[error("personal data is sealed but no pii_keys are configured")]
    NoKey,
    #[error("pii_keys: {0}")]
    Config(String),
}

impl PiiError {
    /// Whether trying again may succeed (the store was unreachable).
    pub fn may_pass(&self) -> bool {
        matches!(self, PiiError::Store(_))
    }
}

/// Seals and opens one deployment's personal data.
#[derive(Clone)]
pub struct Pii {
    keys: PiiKeys,
    /// None: encryption is off (no `pii_keys`), values are written in clear.
    envelope: Option<Arc<Envelope>>,
}

impl Pii {
    /// Loads `pii_keys` (none: encryption off, which start-up logs loudly).
    pub async fn from_config(store: &Store, config: &[PiiKeyConfig]) -> Result<Self, PiiError> {
        let keys = PiiKeys::open(store).await?;
        if config.is_empty() {
            tracing::warn!("no pii_keys configured: applicants' personal data is stored unencrypted");
            return Ok(Self { keys, envelope: None });
        }
        let mut loaded = Vec::with_capacity(config.len());
        for (i, k) in config.iter().enumerate() {
            let secret = k.key.load(&format!("pii_keys[{i}].key")).map_err(|e| PiiError::Config(e.to_string()))?;
            loaded.push((k.id.clone(), secret));
        }
        let envelope = Envelope::new(&loaded).map_err(|e| PiiError::Config(e.to_string()))?;
        Ok(Self { keys, envelope: Some(Arc::new(envelope)) })
    }

    pub fn encrypts(&self) -> bool {
        self.envelope.is_some()
    }

    /// Seals `plain` of `subject` for the row `context`; in clear when encryption is off.
    pub async fn seal(&self, subject: &str, context: &str, plain: &str) -> Result<String, PiiError> {
        let Some(envelope) = &self.envelope else {
            return Ok(plain.to_owned());
        };
        let key = self.data_key(envelope, subject).await?;
        Ok(format!("{PREFIX}{}", key.seal(context, plain)?))
    }

    /// Opens what [`Pii::seal`] stored (or a value stored in clear).
    pub async fn open(&self, subject: &str, context: &str, stored: &str) -> Result<String, PiiError> {
        let Some(sealed) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_owned());
        };
        let envelope = self.envelope.as_ref().ok_or(PiiError::NoKey)?;
        let wrapped = self.keys.wrapped(subject).await?.ok_or(PiiError::Erased)?;
        Ok(envelope.unwrap(subject, &wrapped)?.open(context, sealed)?)
    }

    async fn data_key(&self, envelope: &Envelope, subject: &str) -> Result<DataKey, PiiError> {
        if let Some(wrapped) = self.keys.wrapped(subject).await? {
            return Ok(envelope.unwrap(subject, &wrapped)?);
        }
        let (fresh, wrapped) = envelope.new_data_key(subject)?;
        let stored = self.keys.wrapped_or_insert(subject, &wrapped).await?;
        if stored == wrapped {
            Ok(fresh)
        } else {
            // Another writer created the subject's key first: use theirs.
            Ok(envelope.unwrap(subject, &stored)?)
        }
    }
}
