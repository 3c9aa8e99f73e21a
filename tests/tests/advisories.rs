//! The build fails on a dependency with a known vulnerability: `Cargo.lock`
//! is audited against the RustSec advisory database (the `rustsec` crate,
//! cargo-audit's engine) from a local copy, so the check needs no network.
//!
//! The database: `$SWITCHYARD_ADVISORY_DB`, else `../shared/advisory-db`
//! beside the checkout (this workplace keeps a snapshot there). Without one
//! the audit is skipped with a notice, unless `CI` or
//! `SWITCHYARD_REQUIRE_ADVISORY_DB` is set: then a missing database fails.
//! An advisory can be accepted only in `ops/advisories-accepted.txt`, one
//! `RUSTSEC-YYYY-NNNN  reason` per line, and the reason is printed on every
//! run.

use anyhow::{bail, Context, Result};
use rustsec::report::{Report, Settings};
use rustsec::{Database, Lockfile};
use std::collections::BTreeMap;
use std::path::PathBuf;
use switchyard_localstack::repo_root;

fn required() -> bool {
    ["CI", "SWITCHYARD_REQUIRE_ADVISORY_DB"].iter().any(|v| std::env::var(v).is_ok_and(|s| !s.is_empty() && s != "0" && s != "false"))
}

fn database() -> Result<Option<Database>> {
    let path = match std::env::var_os("SWITCHYARD_ADVISORY_DB") {
        Some(p) => PathBuf::from(p),
        None => repo_root().join("../shared/advisory-db"),
    };
    if !path.join("crates").is_dir() {
        if required() {
            bail!("no RustSec advisory database at {} (set SWITCHYARD_ADVISORY_DB)", path.display());
        }
        eprintln!("SKIPPED: no RustSec advisory database at {}", path.display());
        return Ok(None);
    }
    let snapshot = std::fs::read_to_string(path.join("SNAPSHOT")).unwrap_or_default();
    eprintln!("advisory database: {} {}", path.display(), snapshot.trim());
    Ok(Some(Database::open(&path).with_context(|| format!("opening {}", path.display()))?))
}

fn accepted() -> Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(repo_root().join("ops/advisories-accepted.txt")).unwrap_or_default();
    let mut out = BTreeMap::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (id, reason) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        if reason.trim().is_empty() {
            bail!("ops/advisories-accepted.txt: {id} has no reason");
        }
        out.insert(id.to_owned(), reason.trim().to_owned());
    }
    Ok(out)
}

/// Vulnerabilities as `id crate version: title`, and warnings (unmaintained,
/// unsound, yanked) likewise.
fn audit(db: &Database, lockfile: &Lockfile) -> (Vec<(String, String)>, Vec<String>) {
    let settings = Settings {
        informational_warnings: vec![rustsec::advisory::Informational::Unmaintained, rustsec::advisory::Informational::Unsound],
        ..Settings::default()
    };
    let report = Report::generate(db, lockfile, &settings);
    let vulnerabilities = report
        .vulnerabilities
        .list
        .iter()
        .map(|v| (v.advisory.id.to_string(), format!("{} {} {}: {}", v.advisory.id, v.package.name, v.package.version, v.advisory.title)))
        .collect();
    let warnings = report
        .warnings
        .values()
        .flatten()
        .map(|w| {
            let id = w.advisory.as_ref().map(|a| a.id.to_string()).unwrap_or_default();
            format!("{:?} {id} {} {}", w.kind, w.package.name, w.package.version)
        })
        .collect();
    (vulnerabilities, warnings)
}

#[test]
fn no_dependency_has_a_known_vulnerability() -> Result<()> {
    let Some(db) = database()? else { return Ok(()) };
    let lockfile = Lockfile::load(repo_root().join("Cargo.lock")).context("reading Cargo.lock")?;
    let accepted = accepted()?;
    let (vulnerabilities, warnings) = audit(&db, &lockfile);
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    let mut open = Vec::new();
    for (id, line) in vulnerabilities {
        match accepted.get(&id) {
            Some(reason) => eprintln!("accepted: {line} ({reason})"),
            None => open.push(line),
        }
    }
    assert!(open.is_empty(), "{} known-vulnerable dependencies in Cargo.lock:\n{}", open.len(), open.join("\n"));
    Ok(())
}

/// The audit is able to fail: a lock file pinning a version the database
/// lists as vulnerable is reported.
#[test]
fn a_known_vulnerable_version_is_reported() -> Result<()> {
    let Some(db) = database()? else { return Ok(()) };
    // RUSTSEC-2021-0078: hyper < 0.14.10 lenient HTTP/1 parsing.
    let lock = "version = 3\n\n[[package]]\nname = \"hyper\"\nversion = \"0.14.9\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n";
    let lockfile: Lockfile = lock.parse().context("parsing the synthetic lock file")?;
    let (vulnerabilities, _) = audit(&db, &lockfile);
    assert!(vulnerabilities.iter().any(|(id, _)| id == "RUSTSEC-2021-0078"), "hyper 0.14.9 not reported: {vulnerabilities:?}");
    Ok(())
}
