//! Envelope encryption for personal data at rest.
//!
//! Each data subject (an applicant, a cardholder) gets a random 32-byte data
//! key; the data key is stored only *wrapped* under a key-encryption key
//! from the secret provider (config `pii_keys`), and the subject's personal
//! data is sealed under the data key. Destroying the wrapped data key
//! crypto-shreds every copy of that subject's data, backups included, while
//! everything else stays readable.
//!
//! Both layers are [`TokenVault`] (AES-256-GCM via ring, key id in front),
//! so key rotation works the same way as for open banking tokens: the first
//! key-encryption key wraps, any listed one unwraps.

use crate::openbanking::vault::{TokenVault, VaultError};
use crate::Secret;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};

/// The key id of a data key inside its own vault; the data key is per
/// subject, so the id carries no information and never rotates.
const DATA_KEY_ID: &str = "dk";

/// Wraps and unwraps subjects' data keys.
#[derive(Debug)]
pub struct Envelope {
    kek: TokenVault,
    random: SystemRandom,
    /// The id of the key that wraps (the first listed).
    wrapping_id: String,
}

/// One subject's data key, unwrapped: seals and opens that subject's data.
#[derive(Debug)]
pub struct DataKey(TokenVault);

impl Envelope {
    /// `keys`: (key id, base64 of 32 random bytes), the wrapping key first.
    pub fn new(keys: &[(String, Secret)]) -> Result<Self, VaultError> {
        let wrapping_id = keys.first().map(|(id, _)| id.clone()).unwrap_or_default();
        Ok(Self { kek: TokenVault::new(keys)?, random: SystemRandom::new(), wrapping_id })
    }

    /// The id of the key-encryption key new data keys are wrapped under.
    pub fn wrapping_key_id(&self) -> &str {
        &self.wrapping_id
    }

    /// `wrapped` wrapped again under the wrapping key, the data key inside
    /// unchanged (so the subject's sealed data needs no rewrite); None when
    /// it already is. Fails if the key that wrapped it is not listed.
    pub fn rewrap(&self, subject: &str, wrapped: &str) -> Result<Option<String>, VaultError> {
        if wrapped.split_once(':').is_some_and(|(id, _)| id == self.wrapping_id) {
            return Ok(None);
        }
        let encoded = self.kek.open(subject, wrapped)?;
        Ok(Some(self.kek.seal(subject, &encoded)?))
    }

    /// A fresh data key for `subject` and its wrapped form (to store).
    pub fn new_data_key(&self, subject: &str) -> Result<(DataKey, String), VaultError> {
        let mut raw = [0u8; 32];
        self.random.fill(&mut raw).map_err(|_| VaultError::Random)?;
        let encoded = Secret::new(base64::engine::general_purpose::STANDARD.encode(raw));
        // Bound to the subject: a wrapped key copied onto another subject's row does not open.
        let wrapped = self.kek.seal(subject, &encoded)?;
        Ok((DataKey(TokenVault::new(&[(DATA_KEY_ID.to_owned(), encoded)])?), wrapped))
    }

    pub fn unwrap(&self, subject: &str, wrapped: &str) -> Result<DataKey, VaultError> {
        let encoded = self.kek.open(subject, wrapped)?;
        Ok(DataKey(TokenVault::new(&[(DATA_KEY_ID.to_owned(), encoded)])?))
    }
}

impl DataKey {
    /// Seals `plain`; `context` (e.g. the row's id) must be given again to open.
    pub fn seal(&self, context: &str, plain: &str) -> Result<String, VaultError> {
        self.0.seal(context, &Secret::new(plain))
    }

    pub fn open(&self, context: &str, sealed: &str) -> Result<String, VaultError> {
        Ok(self.0.open(context, sealed)?.expose().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> Secret {
        Secret::new(base64::engine::general_purpose::STANDARD.encode([byte; 32]))
    }

    #[test]
    fn data_sealed_under_a_wrapped_key_opens_only_with_that_key_and_subject() {
        let env = Envelope::new(&[("k1".into(), key(7))]).expect("envelope");
        let (dk, wrapped) = env.new_data_key("cust-1").expect("data key");
        let sealed = dk.seal("flow-1", "Ada Lovelace, 12 St James's Square").expect("seal");
        assert!(!sealed.contains("Lovelace"));
        let again = env.unwrap("cust-1", &wrapped).expect("unwrap");
        assert_eq!(again.open("flow-1", &sealed).expect("open"), "Ada Lovelace, 12 St James's Square");
        assert!(again.open("flow-2", &sealed).is_err(), "bound to its row");
        assert!(env.unwrap("cust-2", &wrapped).is_err(), "bound to its subject");
        let (other, _) = env.new_data_key("cust-1").expect("data key");
        assert!(other.open("flow-1", &sealed).is_err(), "another data key does not open it");
    }

    #[test]
    fn a_rewrapped_data_key_opens_the_same_data_under_the_new_key_only() {
        let old = Envelope::new(&[("k1".into(), key(7))]).expect("envelope");
        let (dk, wrapped) = old.new_data_key("cust-1").expect("data key");
        let sealed = dk.seal("flow-1", "Ada").expect("seal");
        let both = Envelope::new(&[("k2".into(), key(9)), ("k1".into(), key(7))]).expect("envelope");
        let rewrapped = both.rewrap("cust-1", &wrapped).expect("rewrap").expect("was under k1");
        assert!(rewrapped.starts_with("k2:"), "{rewrapped}");
        assert_eq!(both.rewrap("cust-1", &rewrapped).expect("rewrap"), None, "already under k2");
        let new_only = Envelope::new(&[("k2".into(), key(9))]).expect("envelope");
        assert_eq!(new_only.unwrap("cust-1", &rewrapped).expect("unwrap").open("flow-1", &sealed).expect("open"), "Ada");
        assert!(new_only.unwrap("cust-1", &wrapped).is_err(), "the old wrapping needs the old key");
        assert!(new_only.rewrap("cust-1", &wrapped).is_err(), "a key not listed cannot be rewrapped");
    }
}
