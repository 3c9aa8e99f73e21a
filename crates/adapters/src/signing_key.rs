//! A request-signing private key together with the id its public half is
//! registered under (TrueLayer's `kid` for `Tl-Signature`), rotated as one.
//!
//! TrueLayer gives every public key uploaded in its console a `kid` of its
//! own and keeps several live at once, so a rotation is: upload the new
//! public key, deploy the new private key *with its new kid*, delete the old
//! key in the console once every replica signs with the new one (that is the
//! overlap window; it is the vendor's, as for API keys). So the kid is read
//! from a file beside the key when the key rotates: a kid written in the
//! config cannot follow a new key, and such a change is refused.
//!
//! [`RotatingSigningKey`] takes a new pair only when the new key signs a
//! test message and the same pair was read on two checks in a row: a writer
//! between the two files (a Vault agent renders them one by one) is never
//! taken half-way. A refused pair leaves the current one signing; the
//! refusal names the field, never the key.

use crate::secret::{Rotation, Secret, SecretError, SecretSource};
use std::sync::{Arc, Mutex, RwLock};

/// A private key (PEM) and the id of its public half.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPair {
    pub kid: String,
    pub private_pem: Secret,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair").field("kid", &self.kid).field("private_pem", &self.private_pem).finish()
    }
}

/// The pair an adapter signs with, read per request: fixed for the
/// process's life unless a [`RotatingSigningKey`] replaces it.
#[derive(Clone, Debug)]
pub struct SigningKey(Arc<RwLock<KeyPair>>);

impl SigningKey {
    pub fn new(kid: impl Into<String>, private_pem: Secret) -> Self {
        Self(Arc::new(RwLock::new(KeyPair { kid: kid.into(), private_pem })))
    }

    /// The pair for this request.
    pub fn current(&self) -> KeyPair {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn replace(&self, pair: KeyPair) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = pair;
    }
}

/// Whether `pair` makes a TrueLayer `Tl-Signature` (an EC private key in
/// PEM that `truelayer-signing` accepts: ES512 over P-521); the message
/// never quotes the key.
pub fn truelayer_usable(pair: &KeyPair) -> Result<(), String> {
    if pair.kid.trim().is_empty() {
        return Err("the key id is empty".into());
    }
    truelayer_signing::sign_with_pem(&pair.kid, pair.private_pem.expose().as_bytes())
        .method(truelayer_signing::Method::Post)
        .path("/signing-key-check")
        .header("Idempotency-Key", b"signing-key-check")
        .body(b"{}")
        .build_signer()
        .sign()
        .map(|_| ())
        .map_err(|_| "not a usable EC P-521 private key (PEM)".into())
}

/// Key and kid from their sources (files a Kubernetes secret volume or a
/// Vault agent rewrites), re-read on request of the worker's refresher.
pub struct RotatingSigningKey {
    /// `providers[<name>].truelayer.signing_key`: errors and audit entries.
    field: String,
    kid: SecretSource,
    key: SecretSource,
    usable: fn(&KeyPair) -> Result<(), String>,
    live: SigningKey,
    state: Mutex<Settling>,
}

/// Rotations so far, and a changed pair read once, waiting for the next
/// check to read it again.
#[derive(Default)]
struct Settling {
    generation: u64,
    pending: Option<KeyPair>,
}

impl std::fmt::Debug for RotatingSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotatingSigningKey").field("field", &self.field).finish()
    }
}

impl RotatingSigningKey {
    /// Reads and checks the pair now: a failure stops start-up.
    pub fn load(field: &str, kid: SecretSource, key: SecretSource, usable: fn(&KeyPair) -> Result<(), String>) -> Result<Self, SecretError> {
        let pair = read(field, &kid, &key)?;
        usable(&pair).map_err(|e| SecretError(format!("{field}: {e}")))?;
        Ok(Self { field: field.to_owned(), kid, key, usable, live: SigningKey(Arc::new(RwLock::new(pair))), state: Mutex::default() })
    }

    pub fn field(&self) -> &str {
        &self.field
    }

    /// The key adapters sign with: it follows every rotation.
    pub fn key(&self) -> SigningKey {
        self.live.clone()
    }

    /// Whether the pair can change (key or kid comes from a file).
    pub fn reloads(&self) -> bool {
        self.key.file.is_some() || self.kid.file.is_some()
    }

    /// Reads both sources again. Unchanged: nothing. Changed: checked (a
    /// new key needs its kid from a file; the key must sign), then held
    /// until the next check reads the same pair, then swapped in and used
    /// from the next request. A refusal is an error naming the field, and
    /// the current pair stays.
    pub fn refresh(&self, now_ms: i64) -> Result<Option<Rotation>, SecretError> {
        if !self.reloads() {
            return Ok(None);
        }
        let fresh = read(&self.field, &self.kid, &self.key)?;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.live.current();
        if fresh == current {
            state.pending = None;
            return Ok(None);
        }
        let refuse = |why: String| Err(SecretError(format!("{}: new value not usable: {why}", self.field)));
        if fresh.private_pem != current.private_pem && self.kid.file.is_none() {
            state.pending = None;
            return refuse(format!("the key changed but {}_id is written in the config; TrueLayer knows each uploaded public key by its own kid, so read the kid from a file beside the key ({{ file: ... }}) to rotate them together", self.field));
        }
        if let Err(e) = (self.usable)(&fresh) {
            state.pending = None;
            return refuse(e);
        }
        if state.pending.as_ref() != Some(&fresh) {
            // Seen once: a writer may be between the two files.
            state.pending = Some(fresh);
            return Ok(None);
        }
        if fresh.kid == current.kid {
            tracing::warn!(field = %self.field, "the signing key changed under the same kid; TrueLayer refuses it unless that kid's public key was replaced");
        }
        self.live.replace(fresh);
        state.pending = None;
        state.generation += 1;
        let rotation = Rotation { field: self.field.clone(), generation: state.generation, at_ms: now_ms, previous_until_ms: now_ms };
        tracing::info!(field = %rotation.field, generation = rotation.generation, "signing key rotated; the next request is signed with the new key");
        Ok(Some(rotation))
    }
}

/// The kid is read on both sides of the key: one that changed meanwhile (a
/// writer between the two files) is an error for this round, never a pair
/// mixed from two generations.
fn read(field: &str, kid: &SecretSource, key: &SecretSource) -> Result<KeyPair, SecretError> {
    let id_field = format!("{}_id", field);
    let before = kid.load(&id_field)?;
    let private_pem = key.load(field)?;
    let after = kid.load(&id_field)?;
    if before != after {
        return Err(SecretError(format!("{id_field} changed while {field} was read; read again at the next check")));
    }
    Ok(KeyPair { kid: after.expose().to_owned(), private_pem })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ec_pem() -> String {
        let key = openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::SECP521R1).and_then(|g| openssl::ec::EcKey::generate(&g)).expect("P-521");
        String::from_utf8(key.private_key_to_pem().expect("pem")).expect("utf-8")
    }

    #[test]
    fn a_new_pair_that_signs_and_holds_for_two_checks_rotates_and_anything_else_keeps_the_current_one() {
        let dir = std::env::temp_dir().join(format!("switchyard-signing-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let (kid_path, key_path) = (dir.join("kid"), dir.join("key"));
        let (first, second, third) = (ec_pem(), ec_pem(), ec_pem());
        std::fs::write(&kid_path, "kid-1").expect("write");
        std::fs::write(&key_path, &first).expect("write");
        let source = |p: &std::path::Path| SecretSource { file: Some(p.display().to_string()), ..SecretSource::default() };
        let field = "providers[tl].truelayer.signing_key";
        let rotating = RotatingSigningKey::load(field, source(&kid_path), source(&key_path), truelayer_usable).expect("load");
        let key = rotating.key();
        assert_eq!(rotating.refresh(1).expect("same"), None);

        // A key that does not sign: refused naming the field, never quoting the key.
        std::fs::write(&kid_path, "kid-2").expect("write");
        std::fs::write(&key_path, "-----BEGIN EC PRIVATE KEY-----\nbm90IGEga2V5\n-----END EC PRIVATE KEY-----").expect("write");
        let err = rotating.refresh(2).expect_err("a key that does not sign").to_string();
        assert!(err.starts_with(field) && err.contains("not a usable EC P-521 private key") && !err.contains("bm90"), "{err}");
        assert_eq!((key.current().kid.as_str(), key.current().private_pem.expose()), ("kid-1", first.trim()));

        // A good pair is taken on the second check that reads it.
        std::fs::write(&key_path, &second).expect("write");
        assert_eq!(rotating.refresh(3).expect("seen once"), None);
        assert_eq!(key.current().kid, "kid-1", "not yet");
        let r = rotating.refresh(4).expect("read").expect("rotated");
        assert_eq!((r.field.as_str(), r.generation), (field, 1));
        assert_eq!((key.current().kid.as_str(), key.current().private_pem.expose()), ("kid-2", second.trim()));
        assert!(!format!("{r:?} {:?} {rotating:?}", key.current()).contains("PRIVATE KEY"));

        // A writer between the two files: the half-written pair is never taken.
        std::fs::write(&kid_path, "kid-3").expect("write");
        assert_eq!(rotating.refresh(5).expect("seen once"), None);
        std::fs::write(&key_path, &third).expect("write");
        assert_eq!(rotating.refresh(6).expect("changed again"), None);
        assert_eq!(key.current().kid, "kid-2");
        assert_eq!(rotating.refresh(7).expect("read").expect("rotated").generation, 2);
        assert_eq!((key.current().kid.as_str(), key.current().private_pem.expose()), ("kid-3", third.trim()));

        // A kid written in the config cannot follow a new key.
        let inline = RotatingSigningKey::load(field, SecretSource::inline("kid-3"), source(&key_path), truelayer_usable).expect("load");
        std::fs::write(&key_path, &first).expect("write");
        let err = inline.refresh(8).expect_err("a new key under a config kid").to_string();
        assert!(err.contains("signing_key_id is written in the config"), "{err}");
        assert_eq!(inline.key().current().private_pem.expose(), third.trim());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
