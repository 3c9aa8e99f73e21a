//! Where routing is decided: which provider gets a command.
//!
//! This first cut knows a primary and an optional secondary per domain and
//! the rule that matters most: a provider is chosen once per idempotency key
//! and recorded before the call; a redelivery goes to the recorded provider,
//! never to a fresh choice. Percentage and shadow rollouts and circuit
//! breakers extend [`RoutingPolicy`] (issue 5).

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RoutingPolicy {
    /// Catalog name of the provider that takes new commands.
    pub primary: String,
    /// Takes new commands only when the primary definitely refused them.
    #[serde(default)]
    pub secondary: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RoutingError {
    #[error("routing.{field} names provider {name:?}, which is not configured (known: {known})")]
    UnknownProvider { field: &'static str, name: String, known: String },
}

impl RoutingPolicy {
    /// Checks every name against the configured providers.
    pub fn validate<'a>(&self, known: impl IntoIterator<Item = &'a str> + Clone) -> Result<(), RoutingError> {
        let check = |field: &'static str, name: &str| {
            if known.clone().into_iter().any(|k| k == name) {
                Ok(())
            } else {
                Err(RoutingError::UnknownProvider {
                    field,
                    name: name.to_owned(),
                    known: known.clone().into_iter().collect::<Vec<_>>().join(", "),
                })
            }
        };
        check("primary", &self.primary)?;
        if let Some(s) = &self.secondary {
            check("secondary", s)?;
        }
        Ok(())
    }

    /// The provider for a command seen for the first time.
    pub fn choose_new(&self) -> &str {
        &self.primary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_are_reported_with_the_field() {
        let p = RoutingPolicy { primary: "stripe".into(), secondary: Some("wise".into()) };
        let err = p.validate(["stripe", "adyen"]).expect_err("wise is unknown");
        assert!(err.to_string().contains("routing.secondary"));
        assert!(RoutingPolicy { primary: "adyen".into(), secondary: None }.validate(["adyen"]).is_ok());
    }
}
