//! `switchyard schemas check|release`: the compatibility gate on our own
//! schemas.
//!
//! `schemas/released.lock.json` holds every released version of every
//! topic's value schema (subject `<topic>-value`, as in the registry), oldest
//! first, in the registry's canonical text. `check` holds each schema that
//! topics.yaml names to its topic's compatibility level against those
//! versions, with the same check the registry stand-in applies on register,
//! so a change that would be refused in production fails here first, naming
//! the topic, the field and the rule it breaks. `release` records the current
//! schemas as new versions once they pass.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use switchyard_bus::topics::{compatibility_levels, TopicsFile};
use switchyard_schema_registry::{canonical, Level, Rule, Schema, Violation};

#[derive(clap::Args)]
pub(crate) struct SchemasArgs {
    #[command(subcommand)]
    action: Action,
    /// The topics file; the schema paths it names are relative to its directory.
    #[arg(long, global = true, default_value = "topics.yaml")]
    topics: PathBuf,
    /// The released versions; defaults to schemas/released.lock.json beside the topics file.
    #[arg(long, global = true)]
    lock: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Fail if any schema breaks its topic's compatibility level against a
    /// released version.
    Check,
    /// Check, then record every schema that differs from its latest released
    /// version as a new released version (for maintainers, when a change ships).
    Release,
}

/// Released versions per subject. The comment travels with the file because
/// JSON has no comments and people will open it.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Lock {
    #[serde(default)]
    comment: String,
    subjects: BTreeMap<String, Vec<Released>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Released {
    version: u32,
    schema: String,
}

const COMMENT: &str = "Released value schemas per subject (<topic>-value), oldest first, in the \
    schema registry's canonical text. `switchyard schemas check` (run by the test suite) holds \
    schemas/ to each topic's compatibility level in topics.yaml against these versions; \
    `switchyard schemas release` appends the current schemas when they ship. Never edit or \
    remove a released version: producers and consumers in the field still use it.";

/// One topic's value schema as it stands in the working tree.
struct Current {
    topic: String,
    subject: String,
    /// As written in topics.yaml, for messages.
    path: String,
    level: Level,
    schema: Schema,
}

pub(crate) fn run(args: SchemasArgs) -> Result<()> {
    let lock_path = args.lock.clone().unwrap_or_else(|| root_of(&args.topics).join("schemas/released.lock.json"));
    let lock = read_lock(&lock_path)?;
    let current = load_current(&args.topics)?;
    let report = check(&current, &lock)?;
    for note in &report.notes {
        println!("note: {note}");
    }
    if !report.failures.is_empty() {
        for failure in &report.failures {
            eprintln!("{failure}");
        }
        bail!("schemas check: {} incompatible change(s), listed above", report.failures.len());
    }
    match args.action {
        Action::Check => {
            println!("schemas check: {} topic(s) compatible with {} released version(s)", current.len(), report.compared);
            Ok(())
        }
        Action::Release => {
            let mut lock = lock;
            let released = release(&current, &mut lock)?;
            if released.is_empty() {
                println!("schemas release: nothing changed since the latest released versions");
                return Ok(());
            }
            write_lock(&lock_path, &lock)?;
            for (subject, version) in released {
                println!("released {subject} version {version}");
            }
            Ok(())
        }
    }
}

fn root_of(topics: &Path) -> PathBuf {
    match topics.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn read_lock(path: &Path) -> Result<Lock> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        // A repository that has released nothing yet: `release` creates it.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Lock::default()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let lock: Lock = serde_json::from_str(&text).with_context(|| format!("{} is not a valid lock file", path.display()))?;
    for (subject, versions) in &lock.subjects {
        // Numbers are written out so a deleted or reordered version is caught
        // here rather than silently renumbering the history.
        for (index, released) in versions.iter().enumerate() {
            if released.version as usize != index + 1 {
                bail!(
                    "{}: {subject} lists version {} in position {}; released versions are numbered 1, 2, ... and never removed",
                    path.display(),
                    released.version,
                    index + 1
                );
            }
        }
    }
    Ok(lock)
}

fn write_lock(path: &Path, lock: &Lock) -> Result<()> {
    let mut text = serde_json::to_string_pretty(lock).context("serialising the lock file")?;
    text.push('\n');
    // Written aside and renamed, so an interrupted release leaves the old file whole.
    let tmp = path.with_extension("json.tmp");
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
}

fn load_current(topics_path: &Path) -> Result<Vec<Current>> {
    let text = std::fs::read_to_string(topics_path).with_context(|| format!("reading {}", topics_path.display()))?;
    let file = TopicsFile::parse(&text).with_context(|| format!("{}", topics_path.display()))?;
    let levels = compatibility_levels(&text).with_context(|| format!("{}", topics_path.display()))?;
    let root = root_of(topics_path);
    let mut out = Vec::new();
    for t in &file.topics {
        let Some(path) = &t.value_schema else { continue };
        let schema_text = std::fs::read_to_string(root.join(path)).with_context(|| format!("{}: reading its value schema {path}", t.name))?;
        let schema = Schema::parse_str(&schema_text).with_context(|| format!("{}: {path} is not a valid Avro schema", t.name))?;
        let declared = levels.get(&t.name).copied().unwrap_or_default();
        let level = Level::parse(declared.as_str()).with_context(|| format!("{}: unknown level {}", t.name, declared.as_str()))?;
        out.push(Current { topic: t.name.clone(), subject: format!("{}-value", t.name), path: path.clone(), level, schema });
    }
    Ok(out)
}

#[derive(Debug, Default)]
struct Report {
    failures: Vec<String>,
    notes: Vec<String>,
    /// How many released versions the schemas were compared with.
    compared: usize,
}

fn check(current: &[Current], lock: &Lock) -> Result<Report> {
    let mut report = Report::default();
    for c in current {
        let released = match lock.subjects.get(&c.subject) {
            Some(versions) if !versions.is_empty() => versions,
            _ => {
                report.notes.push(format!(
                    "{} has no released version yet; nothing holds {} until `switchyard schemas release` records it",
                    c.subject, c.path
                ));
                continue;
            }
        };
        let parsed = released
            .iter()
            .map(|r| {
                Schema::parse_str(&r.schema).map(|s| (r.version, s)).with_context(|| format!("{} version {} in the lock file is not a valid Avro schema", c.subject, r.version))
            })
            .collect::<Result<Vec<_>>>()?;
        let history: Vec<(u32, &Schema)> = parsed.iter().map(|(v, s)| (*v, s)).collect();
        report.compared += history.len();
        report.failures.extend(c.level.check(&c.schema, &history).iter().map(|v| describe(c, v)));
    }
    Ok(report)
}

/// e.g. "payouts.commands.v1 (FULL_TRANSITIVE): schemas/payouts/PayoutCommand.v1.avsc
/// cannot read data written with released version 1: field `foo`: has no default
/// in the new schema and is missing from data written with version 1 (BACKWARD broken)".
fn describe(c: &Current, v: &Violation) -> String {
    let (reader, writer) = match v.rule {
        Rule::Backward => (c.path.clone(), format!("released version {}", v.version)),
        Rule::Forward => (format!("released version {}", v.version), c.path.clone()),
    };
    format!(
        "{} ({}): {reader} cannot read data written with {writer}: {} ({} broken)",
        c.topic,
        c.level.as_str(),
        v.detail(),
        v.rule.as_str()
    )
}

/// Appends each schema that differs from its subject's latest released
/// version; returns the subjects and versions added.
fn release(current: &[Current], lock: &mut Lock) -> Result<Vec<(String, u32)>> {
    lock.comment = COMMENT.to_owned();
    let mut added = Vec::new();
    for c in current {
        let text = canonical(&c.schema).with_context(|| format!("{}: canonical form of {}", c.topic, c.path))?;
        let versions = lock.subjects.entry(c.subject.clone()).or_default();
        // Compared in today's canonical form, so a change in how apache-avro
        // serialises an unchanged schema does not release a new version.
        let latest = versions
            .last()
            .map(|r| Schema::parse_str(&r.schema).ok().and_then(|s| canonical(&s).ok()).unwrap_or_else(|| r.schema.clone()));
        if latest.as_deref() == Some(text.as_str()) {
            continue;
        }
        let version = u32::try_from(versions.len() + 1).context("version number overflow")?;
        versions.push(Released { version, schema: text });
        added.push((c.subject.clone(), version));
    }
    Ok(added)
}
