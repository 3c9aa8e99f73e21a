//! A credential wrapper whose `Debug` and `Display` never show the value, and
//! where a credential comes from (environment, file, or inline for simulators),
//! and [`RotatingSecret`]: a file-based one re-read while the process runs.

use serde::Deserialize;
use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The only way to read the value: at the point of use.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(****)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

/// Where a credential comes from: exactly one of `env`, `file` or `value`.
/// Values written inline are meant for local simulators only.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    /// Name of an environment variable holding the secret.
    #[serde(default)]
    pub env: Option<String>,
    /// Path of a file holding the secret (surrounding whitespace ignored).
    #[serde(default)]
    pub file: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretSource")
            .field("env", &self.env)
            .field("file", &self.file)
            .field("value", &self.value.as_ref().map(|_| "****"))
            .finish()
    }
}

impl SecretSource {
    pub fn inline(value: &str) -> Self {
        Self { value: Some(value.to_owned()), ..Self::default() }
    }

    pub fn load(&self, field: &str) -> Result<Secret, SecretError> {
        let value = match (&self.env, &self.file, &self.value) {
            (Some(name), None, None) => std::env::var(name)
                .map_err(|_| SecretError(format!("{field}: environment variable {name} is not set")))?,
            (None, Some(path), None) => std::fs::read_to_string(path)
                .map_err(|e| SecretError(format!("{field}: cannot read {path}: {e}")))?
                .trim()
                .to_owned(),
            (None, None, Some(v)) => v.clone(),
            _ => return Err(SecretError(format!("{field}: set exactly one of env, file, value"))),
        };
        if value.is_empty() {
            return Err(SecretError(format!("{field} is empty")));
        }
        Ok(Secret::new(value))
    }
}

/// A secret that may change while the process runs: a file that a
/// Kubernetes secret volume or a Vault agent rewrites (Kubernetes swaps the
/// `..data` symlink, so the path is read again, never watched by inode).
/// When the value changes, the old one stays valid for `overlap` beside the
/// new one, so senders that still sign or call with it are not refused
/// during the switch. Secrets from env or inline never change.
pub struct RotatingSecret {
    field: String,
    source: SecretSource,
    overlap: std::time::Duration,
    state: std::sync::RwLock<Rotated>,
}

/// The values valid now: the current one and, during an overlap, the one before.
#[derive(Clone, Debug)]
pub struct Rotated {
    pub current: Secret,
    /// The replaced value and until when (Unix ms) it is still valid.
    pub previous: Option<(Secret, i64)>,
    /// Rotations seen since start-up.
    pub generation: u64,
}

/// What one rotation did; never holds a value, so it can be logged and audited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rotation {
    pub field: String,
    pub generation: u64,
    pub at_ms: i64,
    /// The old value is refused after this (Unix ms).
    pub previous_until_ms: i64,
}

impl std::fmt::Debug for RotatingSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotatingSecret").field("field", &self.field).field("source", &self.source).finish()
    }
}

impl RotatingSecret {
    /// Loads the value now; `field` names it in errors, logs and audit entries.
    pub fn load(source: SecretSource, field: &str, overlap: std::time::Duration) -> Result<Self, SecretError> {
        let current = source.load(field)?;
        Ok(Self { field: field.to_owned(), source, overlap, state: std::sync::RwLock::new(Rotated { current, previous: None, generation: 0 }) })
    }

    pub fn field(&self) -> &str {
        &self.field
    }

    /// Whether the value can change (it comes from a file).
    pub fn reloads(&self) -> bool {
        self.source.file.is_some()
    }

    pub fn snapshot(&self) -> Rotated {
        self.state.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The current value alone (what an outbound call presents).
    pub fn current(&self) -> Secret {
        self.state.read().unwrap_or_else(|e| e.into_inner()).current.clone()
    }

    /// Reads the source again. A changed value becomes current and the old
    /// one valid until `now_ms + overlap`; an unreadable or empty file (a
    /// writer half-way through) keeps the values as they are and says why.
    pub fn refresh(&self, now_ms: i64) -> Result<Option<Rotation>, SecretError> {
        self.refresh_checked(now_ms, |_| Ok(()))
    }

    /// [`RotatingSecret::refresh`], taking a changed value only if `usable`
    /// accepts it (e.g. the signature scheme can decode it): a bad value
    /// never displaces a good one, and fixing the file rotates normally.
    pub fn refresh_checked(&self, now_ms: i64, usable: impl FnOnce(&Secret) -> Result<(), String>) -> Result<Option<Rotation>, SecretError> {
        if !self.reloads() {
            return Ok(None);
        }
        let fresh = self.source.load(&self.field)?;
        if fresh != self.snapshot().current {
            usable(&fresh).map_err(|e| SecretError(format!("{}: new value not usable: {e}", self.field)))?;
        }
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if fresh == state.current {
            return Ok(None);
        }
        let until = now_ms + i64::try_from(self.overlap.as_millis()).unwrap_or(i64::MAX / 2);
        let old = std::mem::replace(&mut state.current, fresh);
        state.previous = Some((old, until));
        state.generation += 1;
        let rotation = Rotation { field: self.field.clone(), generation: state.generation, at_ms: now_ms, previous_until_ms: until };
        tracing::info!(field = %rotation.field, generation = rotation.generation, previous_until_ms = until, "secret rotated; the previous value stays valid until the overlap ends");
        Ok(Some(rotation))
    }
}

/// An outbound credential as an adapter holds it: fixed for the process's
/// life, or a [`RotatingSecret`] whose file a refresher re-reads, so the
/// next request presents the new value without a restart. Outbound keys
/// need no overlap: a vendor that keeps two keys live (Stripe's roll with
/// an expiry, Adyen's second key) accepts either, and one that does not
/// accepts only the new one, so presenting the newest is right for both.
#[derive(Clone)]
pub enum ApiKey {
    Fixed(Secret),
    Rotating(std::sync::Arc<RotatingSecret>),
}

impl ApiKey {
    /// The value to present on this request.
    pub fn current(&self) -> Secret {
        match self {
            Self::Fixed(s) => s.clone(),
            Self::Rotating(r) => r.current(),
        }
    }
}

impl From<Secret> for ApiKey {
    fn from(s: Secret) -> Self {
        Self::Fixed(s)
    }
}

impl From<std::sync::Arc<RotatingSecret>> for ApiKey {
    fn from(r: std::sync::Arc<RotatingSecret>) -> Self {
        Self::Rotating(r)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fixed(_) => f.write_str("ApiKey(****)"),
            Self::Rotating(r) => write!(f, "ApiKey(rotating {}, ****)", r.field()),
        }
    }
}

/// A credential that could not be loaded; the message names the config field.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SecretError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewritten_file_rotates_with_an_overlap_and_a_half_written_one_changes_nothing() {
        let dir = std::env::temp_dir().join(format!("switchyard-rotate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("key");
        std::fs::write(&path, "first\n").expect("write");
        let source = SecretSource { file: Some(path.display().to_string()), ..SecretSource::default() };
        let s = RotatingSecret::load(source, "providers.x.keys[0]", std::time::Duration::from_secs(60)).expect("load");
        assert_eq!(s.refresh(1_000).expect("same"), None);
        std::fs::write(&path, "second").expect("write");
        let r = s.refresh(1_000).expect("read").expect("rotated");
        assert_eq!((r.generation, r.previous_until_ms), (1, 61_000));
        let now = s.snapshot();
        assert_eq!(now.current.expose(), "second");
        assert_eq!(now.previous.as_ref().map(|(p, until)| (p.expose(), *until)), Some(("first", 61_000)));
        assert!(!format!("{r:?} {s:?}").contains("first") && !format!("{r:?}").contains("second"));
        std::fs::write(&path, "").expect("write");
        assert!(s.refresh(2_000).is_err(), "an empty file is an error, not a rotation");
        assert_eq!(s.snapshot().current.expose(), "second");
        std::fs::write(&path, "third").expect("write");
        assert!(s.refresh_checked(2_000, |_| Err("not hex".into())).is_err(), "an unusable value is refused");
        assert_eq!(s.snapshot().current.expose(), "second");
        let _ = std::fs::remove_dir_all(&dir);
        let inline = RotatingSecret::load(SecretSource::inline("v"), "f", std::time::Duration::ZERO).expect("load");
        assert!(!inline.reloads() && inline.refresh(0).expect("no-op").is_none());
    }

    #[test]
    fn an_outbound_key_presents_the_rotated_value_at_once() {
        let dir = std::env::temp_dir().join(format!("switchyard-apikey-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("key");
        std::fs::write(&path, "sk_test_old").expect("write");
        let source = SecretSource { file: Some(path.display().to_string()), ..SecretSource::default() };
        let rotating = std::sync::Arc::new(RotatingSecret::load(source, "providers[stripe].api_key", std::time::Duration::ZERO).expect("load"));
        let key = ApiKey::from(rotating.clone());
        assert_eq!(key.current().expose(), "sk_test_old");
        std::fs::write(&path, "sk_test_new").expect("write");
        rotating.refresh(1_000).expect("read").expect("rotated");
        assert_eq!(key.current().expose(), "sk_test_new", "the next request presents the new key");
        assert!(!format!("{key:?}").contains("sk_test"), "{key:?}");
        assert_eq!(ApiKey::from(Secret::new("v")).current().expose(), "v");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn never_prints_the_value() {
        let s = super::Secret::new("sk_live_abc");
        assert!(!format!("{s:?} {s}").contains("abc"));
    }
}
