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

use std::collections::HashMap;
use std::sync::Arc;
use switchyard_adapters::envelope::{DataKey, Envelope};
use switchyard_adapters::openbanking::vault::VaultError;
use switchyard_adapters::secret::SecretSource;
use switchyard_store::pii::PiiKeys;
use switchyard_store::{AuditEntry, Store, StoreError};

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

/// What `switchyard pii rewrap` did; also its audit entry's detail (counts
/// and the key id, never a key).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Rewrap {
    /// The key-encryption key every data key is now wrapped under.
    pub key_id: String,
    pub subjects: u64,
    pub rewrapped: u64,
    /// Already under `key_id`.
    pub already: u64,
    /// Erased or rewrapped by someone else between the read and the write.
    pub changed_meanwhile: u64,
    /// Wrapped under a key not listed in `pii_keys`: left as they are.
    pub not_opened: u64,
}

/// Subjects read per round trip during a rewrap.
const REWRAP_PAGE: i64 = 500;

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

    /// Wraps every subject's data key under the first of `pii_keys` (the
    /// data keys themselves, and so every sealed row, stay as they are),
    /// so an older key-encryption key can then be removed from the list.
    /// Safe to run beside the orchestrator and to run again: each write is
    /// a compare-and-set on the old wrapping. Writes a `pii_rewrapped`
    /// audit entry by `actor`.
    pub async fn rewrap_all(&self, store: &Store, actor: &str) -> Result<Rewrap, PiiError> {
        let envelope = self.envelope.as_ref().ok_or(PiiError::NoKey)?;
        let mut done = Rewrap { key_id: envelope.wrapping_key_id().to_owned(), ..Rewrap::default() };
        let mut after = String::new();
        loop {
            let page = self.keys.page(&after, REWRAP_PAGE).await?;
            let Some((last, _)) = page.last() else { break };
            after = last.clone();
            for (subject, wrapped) in &page {
                done.subjects += 1;
                match envelope.rewrap(subject, wrapped) {
                    Ok(None) => done.already += 1,
                    Ok(Some(new)) if self.keys.replace_wrapped(subject, wrapped, &new).await? => done.rewrapped += 1,
                    Ok(Some(_)) => done.changed_meanwhile += 1,
                    Err(e) => {
                        tracing::warn!(subject = %subject, error = %e, "data key not rewrapped: its key-encryption key is not in pii_keys");
                        done.not_opened += 1;
                    }
                }
            }
        }
        let detail = serde_json::to_string(&done).unwrap_or_default();
        store.audit(AuditEntry { actor, action: "pii_rewrapped", subject_id: "pii_keys", correlation_id: "", detail: &detail }).await?;
        Ok(done)
    }

    /// Seals `plain` of `subject` for the row `context`; in clear when encryption is off.
    pub async fn seal(&self, subject: &str, context: &str, plain: &str) -> Result<String, PiiError> {
        let Some(envelope) = &self.envelope else {
            return Ok(plain.to_owned());
        };
        let key = self.data_key(envelope, subject).await?;
        Ok(format!("{PREFIX}{}", key.seal(context, plain)?))
    }

    /// Seals each `(subject, context, plain)` like [`Pii::seal`], with a
    /// few store round trips for the whole batch instead of one or two per
    /// value: the reconciler seals thousands of payout commands at once.
    pub async fn seal_many(&self, items: &[(String, String, String)]) -> Result<Vec<String>, PiiError> {
        let Some(envelope) = &self.envelope else {
            return Ok(items.iter().map(|(_, _, plain)| plain.clone()).collect());
        };
        let mut subjects: Vec<&str> = items.iter().map(|(s, _, _)| s.as_str()).collect();
        subjects.sort_unstable();
        subjects.dedup();
        let mut wrapped = self.keys.wrapped_many(&subjects).await?;
        let mut fresh: HashMap<&str, (DataKey, String)> = HashMap::new();
        for s in subjects.iter().copied().filter(|s| !wrapped.contains_key(*s)) {
            fresh.insert(s, envelope.new_data_key(s)?);
        }
        if !fresh.is_empty() {
            let new: Vec<(String, String)> = fresh.iter().map(|(s, (_, w))| ((*s).to_owned(), w.clone())).collect();
            self.keys.insert_many(&new).await?;
            // Read back: where another writer won, its key is the subject's.
            let created: Vec<&str> = fresh.keys().copied().collect();
            wrapped.extend(self.keys.wrapped_many(&created).await?);
        }
        let mut keys: HashMap<&str, DataKey> = HashMap::with_capacity(subjects.len());
        for s in subjects {
            let stored = wrapped.get(s).ok_or(PiiError::Erased)?;
            let key = match fresh.remove(s) {
                Some((key, ours)) if &ours == stored => key,
                _ => envelope.unwrap(s, stored)?,
            };
            keys.insert(s, key);
        }
        items
            .iter()
            .map(|(s, context, plain)| {
                let key = keys.get(s.as_str()).ok_or(PiiError::Erased)?;
                Ok(format!("{PREFIX}{}", key.seal(context, plain)?))
            })
            .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(list: &[(&str, &str)]) -> Vec<PiiKeyConfig> {
        list.iter().map(|(id, key)| PiiKeyConfig { id: (*id).into(), key: SecretSource::inline(key) }).collect()
    }

    const OLD: &str = "b2xkLWtleS1lbmNyeXB0aW9uLWtleS0zMi1ieXRlcyE=";
    const NEW: &str = "bmV3LWtleS1lbmNyeXB0aW9uLWtleS0zMi1ieXRlcyE=";

    #[tokio::test]
    async fn seal_many_keeps_one_key_per_subject_and_opens_like_seal() {
        let store = Store::connect("sqlite::memory:").await.expect("sqlite");
        let pii = Pii::from_config(&store, &keys(&[("k1", OLD)])).await.expect("pii");
        let earlier = pii.seal("payout:a", "c0", "earlier").await.expect("seal");
        let item = |s: &str, c: &str, p: &str| (s.to_owned(), c.to_owned(), p.to_owned());
        let items = vec![item("payout:a", "c1", "Ada"), item("payout:b", "c2", "Bob"), item("payout:a", "c3", "Ada again")];
        let sealed = pii.seal_many(&items).await.expect("seal many");
        for ((subject, context, plain), value) in items.iter().zip(&sealed) {
            assert!(value.starts_with(PREFIX) && !value.contains(plain.as_str()), "{value}");
            assert_eq!(&pii.open(subject, context, value).await.expect("opens"), plain);
        }
        assert_eq!(pii.open("payout:a", "c0", &earlier).await.expect("the existing key was kept"), "earlier");
        assert_eq!(PiiKeys::open(&store).await.expect("keys").page("", 10).await.expect("page").len(), 2, "one key per subject");
        assert!(pii.open("payout:b", "c1", &sealed[1]).await.is_err(), "bound to its context");
    }

    #[tokio::test]
    async fn rewrap_moves_every_data_key_to_the_new_key_and_the_old_key_can_go() {
        let store = Store::connect("sqlite::memory:").await.expect("sqlite");
        let old = Pii::from_config(&store, &keys(&[("k1", OLD)])).await.expect("pii");
        let mut sealed = Vec::new();
        for i in 0..3 {
            let subject = format!("cust-{i}");
            let value = old.seal(&subject, "flow-1", &format!("Ada {i}")).await.expect("seal");
            sealed.push((subject, value));
        }
        let rotating = Pii::from_config(&store, &keys(&[("k2", NEW), ("k1", OLD)])).await.expect("pii");
        let done = rotating.rewrap_all(&store, "ticket-42").await.expect("rewrap");
        assert_eq!((done.key_id.as_str(), done.subjects, done.rewrapped, done.already, done.not_opened), ("k2", 3, 3, 0, 0), "{done:?}");
        let new_only = Pii::from_config(&store, &keys(&[("k2", NEW)])).await.expect("pii");
        for (i, (subject, value)) in sealed.iter().enumerate() {
            assert_eq!(new_only.open(subject, "flow-1", value).await.expect("opens without k1"), format!("Ada {i}"));
        }
        let again = rotating.rewrap_all(&store, "ticket-42").await.expect("rewrap");
        assert_eq!((again.rewrapped, again.already), (0, 3), "a second run changes nothing");
        let trail = store.audit_trail(&["pii_keys"]).await.expect("audit");
        let entries: Vec<_> = trail.iter().filter(|e| e.action == "pii_rewrapped").collect();
        assert_eq!(entries.len(), 2, "{trail:?}");
        assert_eq!(entries[0].actor, "ticket-42");
        assert!(entries[0].detail.contains("\"rewrapped\":3") && !entries[0].detail.contains(NEW) && !entries[0].detail.contains(OLD), "{}", entries[0].detail);
    }
}
