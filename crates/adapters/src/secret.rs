//! A credential wrapper whose `Debug` and `Display` never show the value, and
//! where a credential comes from (environment, file, or inline for simulators).

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

/// A credential that could not be loaded; the message names the config field.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SecretError(pub String);

#[cfg(test)]
mod tests {
    #[test]
    fn never_prints_the_value() {
        let s = super::Secret::new("sk_live_abc");
        assert!(!format!("{s:?} {s}").contains("abc"));
    }
}
