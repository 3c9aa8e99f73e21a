//! Provider tokens at rest: AES-256-GCM (ring) under keys from config, so
//! the store, its backups and anyone reading the table see only sealed
//! text. Each sealed value is bound to its consent (the consent id is the
//! associated data): a token copied onto another consent's row does not
//! open. The key id travels in front (`<key id>:<base64 nonce|ciphertext>`),
//! so keys can be rotated: seal with the first, open with any listed.

use crate::Secret;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VaultError {
    #[error("token key {0:?}: must be 32 bytes, base64 encoded")]
    BadKey(String),
    #[error("no token key configured")]
    NoKey,
    #[error("sealed token names key {0:?}, which is not configured")]
    UnknownKey(String),
    /// Tampered, another consent's, or under another key with the same id.
    #[error("sealed token does not open")]
    DoesNotOpen,
    #[error("no randomness for a nonce")]
    Random,
}

pub struct TokenVault {
    /// The first seals; all open.
    keys: Vec<(String, LessSafeKey)>,
    random: SystemRandom,
}

impl std::fmt::Debug for TokenVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVault").field("key_ids", &self.keys.iter().map(|(id, _)| id).collect::<Vec<_>>()).finish()
    }
}

impl TokenVault {
    /// `keys`: (key id, base64 of 32 random bytes), the sealing key first.
    pub fn new(keys: &[(String, Secret)]) -> Result<Self, VaultError> {
        if keys.is_empty() {
            return Err(VaultError::NoKey);
        }
        let mut out = Vec::with_capacity(keys.len());
        for (id, key) in keys {
            if id.is_empty() || id.contains(':') {
                return Err(VaultError::BadKey(id.clone()));
            }
            let raw = base64::engine::general_purpose::STANDARD.decode(key.expose().trim()).map_err(|_| VaultError::BadKey(id.clone()))?;
            let unbound = UnboundKey::new(&AES_256_GCM, &raw).map_err(|_| VaultError::BadKey(id.clone()))?;
            out.push((id.clone(), LessSafeKey::new(unbound)));
        }
        Ok(Self { keys: out, random: SystemRandom::new() })
    }

    pub fn seal(&self, consent_id: &str, token: &Secret) -> Result<String, VaultError> {
        let (id, key) = self.keys.first().ok_or(VaultError::NoKey)?;
        let mut nonce = [0u8; NONCE_LEN];
        self.random.fill(&mut nonce).map_err(|_| VaultError::Random)?;
        let mut data = token.expose().as_bytes().to_vec();
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(consent_id.as_bytes()), &mut data)
            .map_err(|_| VaultError::Random)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(format!("{id}:{}", base64::engine::general_purpose::STANDARD.encode(out)))
    }

    pub fn open(&self, consent_id: &str, sealed: &str) -> Result<Secret, VaultError> {
        let (id, body) = sealed.split_once(':').ok_or(VaultError::DoesNotOpen)?;
        let (_, key) = self.keys.iter().find(|(k, _)| k == id).ok_or_else(|| VaultError::UnknownKey(id.to_owned()))?;
        let raw = base64::engine::general_purpose::STANDARD.decode(body).map_err(|_| VaultError::DoesNotOpen)?;
        if raw.len() < NONCE_LEN {
            return Err(VaultError::DoesNotOpen);
        }
        let (nonce, rest) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| VaultError::DoesNotOpen)?;
        let mut data = rest.to_vec();
        let plain = key.open_in_place(nonce, Aad::from(consent_id.as_bytes()), &mut data).map_err(|_| VaultError::DoesNotOpen)?;
        let text = String::from_utf8(plain.to_vec()).map_err(|_| VaultError::DoesNotOpen)?;
        Ok(Secret::new(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> Secret {
        Secret::new(base64::engine::general_purpose::STANDARD.encode([byte; 32]))
    }

    #[test]
    fn a_sealed_token_opens_for_its_consent_only_and_never_shows_the_token() {
        let vault = TokenVault::new(&[("k1".into(), key(1))]).expect("vault");
        let token = Secret::new("access-sandbox-123");
        let sealed = vault.seal("consent-a", &token).expect("seal");
        assert!(sealed.starts_with("k1:") && !sealed.contains("access-sandbox"), "{sealed}");
        assert_ne!(sealed, vault.seal("consent-a", &token).expect("seal"), "a fresh nonce each time");
        assert_eq!(vault.open("consent-a", &sealed).expect("open").expose(), "access-sandbox-123");
        assert_eq!(vault.open("consent-b", &sealed).expect_err("bound to its consent"), VaultError::DoesNotOpen);
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(vault.open("consent-a", &tampered).is_err());
    }

    #[test]
    fn rotation_seals_with_the_first_key_and_opens_with_any() {
        let old = TokenVault::new(&[("k1".into(), key(1))]).expect("vault");
        let sealed_old = old.seal("c", &Secret::new("t")).expect("seal");
        let rotated = TokenVault::new(&[("k2".into(), key(2)), ("k1".into(), key(1))]).expect("vault");
        assert_eq!(rotated.open("c", &sealed_old).expect("old key still opens").expose(), "t");
        assert!(rotated.seal("c", &Secret::new("t")).expect("seal").starts_with("k2:"));
        let only_new = TokenVault::new(&[("k2".into(), key(2))]).expect("vault");
        assert_eq!(only_new.open("c", &sealed_old).expect_err("retired key"), VaultError::UnknownKey("k1".into()));
        assert!(matches!(TokenVault::new(&[("k".into(), Secret::new("c2hvcnQ="))]), Err(VaultError::BadKey(_))));
    }
}
