//! Compatibility levels and the check that enforces them.

use apache_avro::error::CompatibilityError;
use apache_avro::schema::{RecordSchema, SchemaKind};
use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::Schema;
use serde::{Deserialize, Serialize};

/// A subject's compatibility level, with Confluent's names and meanings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Level {
    None,
    #[default]
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
}

/// Which reading a change broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// The new schema cannot read data written with an earlier version.
    Backward,
    /// An earlier version cannot read data written with the new schema.
    Forward,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Backward => "BACKWARD",
            Self::Forward => "FORWARD",
        }
    }
}

/// One broken rule against one earlier version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The earlier version's number.
    pub version: u32,
    pub rule: Rule,
    /// Dotted path of the record field at fault, when the check names one.
    pub field: Option<String>,
    /// Why, in the words of apache-avro's compatibility error (shortened).
    pub reason: String,
}

impl Violation {
    /// e.g. "field `amount.currency`: written as String, read as Int".
    pub fn detail(&self) -> String {
        match &self.field {
            Some(field) => format!("field `{field}`: {}", self.reason),
            None => self.reason.clone(),
        }
    }

    fn new(version: u32, rule: Rule, reader: &Schema, error: &CompatibilityError) -> Self {
        let mut path = Vec::new();
        let mut error = error;
        // A type mismatch deep in nested records arrives wrapped once per level.
        while let CompatibilityError::FieldTypeMismatch(name, inner) = error {
            path.push(name.as_str());
            error = inner;
        }
        let reason = match error {
            CompatibilityError::MissingDefaultValue(name) => {
                path.push(name.as_str());
                match rule {
                    Rule::Backward => format!(
                        "has no default in the new schema and is missing from data written \
                         with version {version}"
                    ),
                    Rule::Forward => format!(
                        "has no default in version {version} and is missing from data written \
                         with the new schema"
                    ),
                }
            }
            CompatibilityError::WrongType {
                writer_schema_type,
                reader_schema_type,
            } => format!(
                "written as {}, read as {}",
                kind_of(writer_schema_type),
                kind_of(reader_schema_type)
            ),
            CompatibilityError::TypeExpected {
                schema_type,
                expected_type,
            } if schema_type == "readers_schema" && !expected_type.is_empty() => {
                // apache-avro lists the writer's type first, then what may
                // read it; the reader's own type is looked up by the path.
                let written = format!("{:?}", expected_type[0]);
                match field_schema(reader, &path) {
                    Some(read) => {
                        format!("written as {written}, read as {:?}", SchemaKind::from(read))
                    }
                    None => {
                        let names: Vec<String> = expected_type[1..]
                            .iter()
                            .map(|k| format!("{k:?}"))
                            .collect();
                        format!(
                            "written as {written}, which can only be read as {}",
                            names.join(" or ")
                        )
                    }
                }
            }
            other => other
                .to_string()
                .trim_start_matches("Incompatible schemata! ")
                .trim_start_matches("Incompatible schema types! ")
                .to_owned(),
        };
        Self {
            version,
            rule,
            field: (!path.is_empty()).then(|| path.join(".")),
            reason,
        }
    }
}

/// The schema of the field at `path` (record fields by name, through unions
/// holding a record), or `None` where it goes through a by-name reference.
fn field_schema<'a>(root: &'a Schema, path: &[&str]) -> Option<&'a Schema> {
    fn record(schema: &Schema) -> Option<&RecordSchema> {
        match schema {
            Schema::Record(r) => Some(r),
            Schema::Union(u) => u.variants().iter().find_map(record),
            _ => None,
        }
    }
    path.iter().try_fold(root, |schema, name| {
        record(schema)?
            .fields
            .iter()
            .find(|f| f.name == *name)
            .map(|f| &f.schema)
    })
}

/// apache-avro puts a whole `{:#?}` dump of the schema in `WrongType`; its
/// first word is the kind (`String`, `Record`, ...), which is what a reader
/// of the message needs.
fn kind_of(debug: &str) -> &str {
    let end = debug
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(debug.len());
    &debug[..end]
}

impl Level {
    /// Confluent upper-cases the requested level before matching it.
    pub fn parse(raw: &str) -> Option<Self> {
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

    pub fn as_str(self) -> &'static str {
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
    /// version numbers): every version when transitive, else the latest.
    /// Returns the violations, newest version first as Confluent reports
    /// them; empty means compatible.
    pub fn check(self, candidate: &Schema, existing: &[(u32, &Schema)]) -> Vec<Violation> {
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
        let mut violations = Vec::new();
        for &(version, old) in against.iter().rev() {
            if backward {
                if let Err(e) = SchemaCompatibility::can_read(old, candidate) {
                    violations.push(Violation::new(version, Rule::Backward, candidate, &e));
                }
            }
            if forward {
                if let Err(e) = SchemaCompatibility::can_read(candidate, old) {
                    violations.push(Violation::new(version, Rule::Forward, old, &e));
                }
            }
        }
        violations
    }

    /// One violation as the registry reports it (Confluent's verbose shape).
    pub(crate) fn message(self, v: &Violation) -> String {
        let what = match v.rule {
            Rule::Backward => format!(
                "The new schema cannot read data written with version {}",
                v.version
            ),
            Rule::Forward => format!(
                "Version {} cannot read data written with the new schema",
                v.version
            ),
        };
        format!(
            "{{errorType:'{}', description:'{what}: {}', compatibility:'{}'}}",
            v.rule.as_str(),
            v.detail(),
            self.as_str()
        )
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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
