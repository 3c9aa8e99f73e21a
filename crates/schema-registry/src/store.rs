//! Registry state: global schema ids, per-subject version lists, compatibility config.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use apache_avro::Schema;

use crate::error::ApiError;
use crate::level::Level;
use crate::persist::{corrupt, Journal, Record};
use crate::RegistryError;

/// A parsed, validated Avro schema with its identity key.
pub(crate) struct Parsed {
    text: String,
    schema: Schema,
    /// Normalised JSON of the parsed schema. Two submissions are "the same
    /// schema" when their keys match. Unlike the Parsing Canonical Form this
    /// keeps defaults, docs, aliases and logical types, because two schemas
    /// that differ only in a default decode data differently and Confluent
    /// gives them different ids.
    key: String,
}

impl Parsed {
    pub(crate) fn new(text: String) -> Result<Self, ApiError> {
        let schema = Schema::parse_str(&text).map_err(ApiError::invalid_schema)?;
        let key = canonical(&schema).map_err(ApiError::invalid_schema)?;
        Ok(Self { text, schema, key })
    }
}

/// The text by which the registry tells schemas apart (see [`Parsed`]'s key);
/// also how `schemas/released.lock.json` records released versions, so a
/// released version and a registered one are the same thing.
pub fn canonical(schema: &Schema) -> Result<String, serde_json::Error> {
    serde_json::to_string(schema)
}

pub(crate) enum VersionRef {
    Latest,
    Number(u32),
}

impl VersionRef {
    /// Confluent accepts "latest" (any case), -1 as an alias for it, or 1..=i32::MAX.
    pub(crate) fn parse(raw: &str) -> Result<Self, ApiError> {
        let trimmed = raw.trim();
        if trimmed.eq_ignore_ascii_case("latest") || trimmed == "-1" {
            return Ok(Self::Latest);
        }
        match trimmed.parse::<i32>() {
            Ok(n) if n >= 1 => Ok(Self::Number(n.unsigned_abs())),
            _ => Err(ApiError::invalid_version(raw)),
        }
    }
}

pub(crate) struct VersionInfo {
    pub(crate) subject: String,
    pub(crate) version: u32,
    pub(crate) id: u32,
    pub(crate) schema: String,
}

struct Entry {
    text: String,
    schema: Schema,
    key: String,
}

#[derive(Default)]
struct State {
    /// Index + 1 is the global id.
    schemas: Vec<Entry>,
    by_key: HashMap<String, u32>,
    /// Index + 1 is the version; value is the global id.
    subjects: BTreeMap<String, Vec<u32>>,
    global: Level,
    subject_levels: HashMap<String, Level>,
    journal: Option<Journal>,
}

pub(crate) struct Store {
    state: RwLock<State>,
}

impl Store {
    pub(crate) fn open(data_file: Option<&Path>) -> Result<Self, RegistryError> {
        let mut state = State::default();
        if let Some(path) = data_file {
            let (journal, records) = Journal::open(path)?;
            for (line, record) in records {
                state
                    .apply(record)
                    .map_err(|reason| corrupt(path, line, reason))?;
            }
            state.journal = Some(journal);
        }
        Ok(Self {
            state: RwLock::new(state),
        })
    }

    // A panic elsewhere must not take the whole registry down with it; state is
    // only mutated after every check has passed, so it is consistent anyway.
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn register(&self, subject: &str, parsed: Parsed) -> Result<u32, ApiError> {
        let mut state = self.write();
        let versions = state
            .subjects
            .get(subject)
            .map(Vec::as_slice)
            .unwrap_or_default();
        if let Some(&id) = versions
            .iter()
            .find(|&&id| state.entry(id).key == parsed.key)
        {
            return Ok(id);
        }
        let level = state.level_for(subject);
        let details: Vec<String> = level
            .check(&parsed.schema, &state.history(versions))
            .iter()
            .map(|v| level.message(v))
            .collect();
        if !details.is_empty() {
            return Err(ApiError::incompatible(subject, &details));
        }
        let version = next_number(versions.len())?;
        let mut records = Vec::with_capacity(2);
        let id = match state.by_key.get(&parsed.key) {
            Some(&id) => id,
            None => {
                let id = next_number(state.schemas.len())?;
                records.push(Record::Schema {
                    id,
                    schema: parsed.text.clone(),
                });
                id
            }
        };
        records.push(Record::Version {
            subject: subject.to_owned(),
            version,
            id,
        });
        state.persist(&records)?;
        if id as usize > state.schemas.len() {
            state.insert_schema(parsed);
        }
        state
            .subjects
            .entry(subject.to_owned())
            .or_default()
            .push(id);
        Ok(id)
    }

    pub(crate) fn schema_by_id(&self, id: u32) -> Result<String, ApiError> {
        let state = self.read();
        state
            .get(id)
            .map(|e| e.text.clone())
            .ok_or_else(|| ApiError::schema_not_found(Some(id)))
    }

    pub(crate) fn usages(&self, id: u32) -> Result<Vec<(String, u32)>, ApiError> {
        let state = self.read();
        state
            .get(id)
            .ok_or_else(|| ApiError::schema_not_found(Some(id)))?;
        let mut out = Vec::new();
        for (subject, ids) in &state.subjects {
            for (index, _) in ids.iter().enumerate().filter(|(_, &v)| v == id) {
                out.push((subject.clone(), index_to_version(index)));
            }
        }
        Ok(out)
    }

    pub(crate) fn subjects(&self) -> Vec<String> {
        self.read().subjects.keys().cloned().collect()
    }

    pub(crate) fn versions(&self, subject: &str) -> Result<Vec<u32>, ApiError> {
        let state = self.read();
        let ids = state.subject(subject)?;
        Ok((0..ids.len()).map(index_to_version).collect())
    }

    pub(crate) fn version(
        &self,
        subject: &str,
        which: &VersionRef,
    ) -> Result<VersionInfo, ApiError> {
        let state = self.read();
        let ids = state.subject(subject)?;
        let (version, id) = match *which {
            VersionRef::Latest => match ids.last() {
                Some(&id) => (index_to_version(ids.len() - 1), id),
                None => return Err(ApiError::subject_not_found(subject)),
            },
            VersionRef::Number(n) => match ids.get(n as usize - 1) {
                Some(&id) => (n, id),
                None => return Err(ApiError::version_not_found(n)),
            },
        };
        Ok(state.info(subject, version, id))
    }

    pub(crate) fn lookup(&self, subject: &str, parsed: &Parsed) -> Result<VersionInfo, ApiError> {
        let state = self.read();
        let ids = state.subject(subject)?;
        let index = ids
            .iter()
            .position(|&id| state.entry(id).key == parsed.key)
            .ok_or_else(|| ApiError::schema_not_found(None))?;
        Ok(state.info(subject, index_to_version(index), ids[index]))
    }

    /// `None` checks against every version the subject's level demands.
    /// Returns the violations; empty means compatible.
    pub(crate) fn check(
        &self,
        subject: &str,
        which: Option<&VersionRef>,
        parsed: &Parsed,
    ) -> Result<Vec<String>, ApiError> {
        let state = self.read();
        let ids = state
            .subjects
            .get(subject)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut history = state.history(ids);
        match which {
            None => {}
            Some(VersionRef::Latest) => {
                history = history.split_off(history.len().saturating_sub(1));
            }
            Some(&VersionRef::Number(n)) => {
                // Confluent: 40401 for an unknown subject, 40402 for an unknown version.
                state.subject(subject)?;
                history.retain(|(v, _)| *v == n);
                if history.is_empty() {
                    return Err(ApiError::version_not_found(n));
                }
            }
        }
        let level = state.level_for(subject);
        let violations = level.check(&parsed.schema, &history);
        Ok(violations.iter().map(|v| level.message(v)).collect())
    }

    pub(crate) fn global_level(&self) -> Level {
        self.read().global
    }

    pub(crate) fn subject_level(&self, subject: &str) -> Option<Level> {
        self.read().subject_levels.get(subject).copied()
    }

    pub(crate) fn set_level(&self, subject: Option<&str>, level: Level) -> Result<(), ApiError> {
        let mut state = self.write();
        let record = Record::Config {
            subject: subject.map(str::to_owned),
            compatibility: level,
        };
        state.persist(std::slice::from_ref(&record))?;
        state.apply(record).map_err(ApiError::store)
    }
}

impl State {
    fn get(&self, id: u32) -> Option<&Entry> {
        self.schemas.get((id as usize).checked_sub(1)?)
    }

    /// Only for ids taken from `subjects`, which always reference stored schemas.
    fn entry(&self, id: u32) -> &Entry {
        &self.schemas[id as usize - 1]
    }

    fn subject(&self, subject: &str) -> Result<&[u32], ApiError> {
        match self.subjects.get(subject) {
            Some(ids) if !ids.is_empty() => Ok(ids),
            _ => Err(ApiError::subject_not_found(subject)),
        }
    }

    fn history(&self, ids: &[u32]) -> Vec<(u32, &Schema)> {
        ids.iter()
            .enumerate()
            .map(|(i, &id)| (index_to_version(i), &self.entry(id).schema))
            .collect()
    }

    fn level_for(&self, subject: &str) -> Level {
        self.subject_levels
            .get(subject)
            .copied()
            .unwrap_or(self.global)
    }

    fn info(&self, subject: &str, version: u32, id: u32) -> VersionInfo {
        VersionInfo {
            subject: subject.to_owned(),
            version,
            id,
            schema: self.entry(id).text.clone(),
        }
    }

    fn insert_schema(&mut self, parsed: Parsed) {
        let id = index_to_version(self.schemas.len());
        self.by_key.insert(parsed.key.clone(), id);
        self.schemas.push(Entry {
            text: parsed.text,
            schema: parsed.schema,
            key: parsed.key,
        });
    }

    fn persist(&mut self, records: &[Record]) -> Result<(), ApiError> {
        match &mut self.journal {
            Some(journal) => journal.append(records).map_err(ApiError::store),
            None => Ok(()),
        }
    }

    /// Replays one journal record (also used for live config changes).
    fn apply(&mut self, record: Record) -> Result<(), String> {
        match record {
            Record::Schema { id, schema } => {
                let expected = index_to_version(self.schemas.len());
                if id != expected {
                    return Err(format!(
                        "schema id {id} out of sequence, expected {expected}"
                    ));
                }
                let parsed = Parsed::new(schema).map_err(|e| e.message)?;
                if self.by_key.contains_key(&parsed.key) {
                    return Err(format!("schema id {id} duplicates an earlier schema"));
                }
                self.insert_schema(parsed);
            }
            Record::Version {
                subject,
                version,
                id,
            } => {
                if self.get(id).is_none() {
                    return Err(format!("version references unknown schema id {id}"));
                }
                let ids = self.subjects.entry(subject).or_default();
                let expected = index_to_version(ids.len());
                if version != expected {
                    return Err(format!(
                        "version {version} out of sequence, expected {expected}"
                    ));
                }
                ids.push(id);
            }
            Record::Config {
                subject: None,
                compatibility,
            } => self.global = compatibility,
            Record::Config {
                subject: Some(subject),
                compatibility,
            } => {
                self.subject_levels.insert(subject, compatibility);
            }
        }
        Ok(())
    }
}

fn index_to_version(index: usize) -> u32 {
    u32::try_from(index + 1).unwrap_or(u32::MAX)
}

/// Confluent ids and versions are Java ints.
fn next_number(len: usize) -> Result<u32, ApiError> {
    i32::try_from(len + 1)
        .map(i32::unsigned_abs)
        .map_err(|_| ApiError::store("id space exhausted"))
}
