//! Compatibility levels and the check that enforces them.

use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::Schema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum Level {
    None,
    #[default]
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
}

impl Level {
    /// Confluent upper-cases the requested level before matching it.
    pub(crate) fn parse(raw: &str) -> Option<Self> {
        let level = match raw.trim().to_ascii_uppercase().as_str() {
            "NONE" => Self::None,
            "BACKWARD" => Self::Backward,
            "BACKWARD_TRANSITIVE" => Self::BackwardTransitive,
            "FORWARD" => Self::Forward,
            "FORWARD_TRANSITIVE" => Self::ForwardTransitive,
            "FULL" => Self::Full,
            "FULL_TRANSITIVE" => Self::FullTransitive,
            _ => return None,
        };
        Some(level)
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Backward => "BACKWARD",
            Self::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Self::Forward => "FORWARD",
            Self::ForwardTransitive => "FORWARD_TRANSITIVE",
            Self::Full => "FULL",
            Self::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    fn transitive(self) -> bool {
        matches!(
            self,
            Self::BackwardTransitive | Self::ForwardTransitive | Self::FullTransitive
        )
    }

    /// Checks `candidate` against `existing` (oldest first, paired with their
    /// version numbers). Returns one message per violation; empty means compatible.
    pub(crate) fn check(self, candidate: &Schema, existing: &[(u32, &Schema)]) -> Vec<String> {
        let against: &[(u32, &Schema)] = if self.transitive() {
            existing
        } else {
            match existing.split_last() {
                Some((last, _)) => std::slice::from_ref(last),
                None => &[],
            }
        };
        let (backward, forward) = match self {
            Self::None => (false, false),
            Self::Backward | Self::BackwardTransitive => (true, false),
            Self::Forward | Self::ForwardTransitive => (false, true),
            Self::Full | Self::FullTransitive => (true, true),
        };
        let mut messages = Vec::new();
        // Newest first, matching the order in which Confluent reports violations.
        for (version, old) in against.iter().rev() {
            if backward {
                if let Err(e) = SchemaCompatibility::can_read(old, candidate) {
                    messages.push(format!(
                        "{{errorType:'BACKWARD', description:'The new schema cannot read data \
                         written with version {version}: {e}', compatibility:'{}'}}",
                        self.as_str()
                    ));
                }
            }
            if forward {
                if let Err(e) = SchemaCompatibility::can_read(candidate, old) {
                    messages.push(format!(
                        "{{errorType:'FORWARD', description:'Version {version} cannot read data \
                         written with the new schema: {e}', compatibility:'{}'}}",
                        self.as_str()
                    ));
                }
            }
        }
        messages
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Schema {
        Schema::parse_str(text).expect("valid test schema")
    }

    #[test]
    fn reused_named_types_are_resolved() {
        // The second use of Money is a by-name reference inside the schema.
        let old = parse(
            r#"{"type":"record","name":"Order","fields":[
                {"name":"price","type":{"type":"record","name":"Money","fields":[{"name":"cents","type":"long"}]}},
                {"name":"tax","type":"Money"}]}"#,
        );
        let new = parse(
            r#"{"type":"record","name":"Order","fields":[
                {"name":"price","type":{"type":"record","name":"Money","fields":[{"name":"cents","type":"long"}]}},
                {"name":"tax","type":"Money"},
                {"name":"note","type":["null","string"],"default":null}]}"#,
        );
        assert!(Level::FullTransitive.check(&new, &[(1, &old)]).is_empty());
        let retyped = parse(
            r#"{"type":"record","name":"Order","fields":[
                {"name":"price","type":{"type":"record","name":"Money","fields":[{"name":"cents","type":"string"}]}},
                {"name":"tax","type":"Money"}]}"#,
        );
        assert_eq!(Level::Backward.check(&retyped, &[(1, &old)]).len(), 1);
    }

    #[test]
    fn transitive_checks_every_version() {
        let v1 = parse(r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}"#);
        let v2 = parse(r#"{"type":"record","name":"R","fields":[]}"#);
        // Re-adding "a" without a default cannot read v2 data, but is fine for v1 alone.
        let v3 = parse(r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}"#);
        assert_eq!(Level::Backward.check(&v3, &[(1, &v1), (2, &v2)]).len(), 1);
        let v3b = parse(
            r#"{"type":"record","name":"R","fields":[{"name":"a","type":"long","default":0}]}"#,
        );
        assert!(Level::Backward
            .check(&v3b, &[(1, &v1), (2, &v2)])
            .is_empty());
        let v3c = parse(
            r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string","default":""}]}"#,
        );
        assert!(Level::Backward
            .check(&v3c, &[(1, &v1), (2, &v2)])
            .is_empty());
        assert_eq!(
            Level::BackwardTransitive
                .check(&v3c, &[(1, &v1), (2, &v2)])
                .len(),
            1
        );
        assert!(Level::None.check(&v3, &[(1, &v1), (2, &v2)]).is_empty());
    }
}
