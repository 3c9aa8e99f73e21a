//! `switchyard schemas check|release`: the repository's schemas pass their
//! compatibility gate, and deliberately breaking changes fail it naming the
//! topic, the field and the rule.

mod common;

use common::{repo, Scratch};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};

const COMMAND_SCHEMA: &str = "schemas/payouts/PayoutCommand.v1.avsc";

fn switchyard(topics: &Path, action: &str) -> (bool, String, String) {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["schemas", action, "--topics"])
        .arg(topics)
        .output()
        .expect("switchyard runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

impl Scratch {
    fn topics(&self) -> PathBuf {
        self.0.join("topics.yaml")
    }

    fn write(&self, path: &str, text: &str) {
        let path = self.0.join(path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("schema dir");
        }
        std::fs::write(path, text).expect("write");
    }

    /// Applies `edit` to the `fields` array of a schema file.
    fn edit_fields(&self, path: &str, edit: impl FnOnce(&mut Vec<Value>)) {
        let text = std::fs::read_to_string(self.0.join(path)).expect("schema");
        let mut schema: Value = serde_json::from_str(&text).expect("schema is JSON");
        let fields = schema["fields"].as_array_mut().expect("a record");
        edit(fields);
        self.write(path, &serde_json::to_string_pretty(&schema).expect("json"));
    }
}

fn field(fields: &mut [Value], name: &str) -> usize {
    fields.iter().position(|f| f["name"] == name).expect("field exists")
}

#[test]
fn the_repository_schemas_pass_the_compatibility_gate() {
    let (ok, stdout, stderr) = switchyard(&repo().join("topics.yaml"), "check");
    assert!(ok, "switchyard schemas check failed:\n{stderr}");
    // Every topic's schema is released, so every one of them is held.
    assert!(!stdout.contains("no released version"), "run `switchyard schemas release`:\n{stdout}");
}

#[test]
fn a_new_field_without_a_default_breaks_backward() {
    let repo = Scratch::repository_copy("schemas", &["topics.yaml"]);
    repo.edit_fields(COMMAND_SCHEMA, |f| f.push(json!({"name": "purpose", "type": "string"})));
    let (ok, _, stderr) = switchyard(&repo.topics(), "check");
    assert!(!ok);
    let expected = "payouts.commands.v1 (FULL_TRANSITIVE): schemas/payouts/PayoutCommand.v1.avsc cannot read data written with released version 1: field `purpose`: has no default in the new schema and is missing from data written with version 1 (BACKWARD broken)";
    assert!(stderr.lines().any(|l| l == expected), "{stderr}");
    // The retry and held topics carry the same bytes and are held the same way.
    assert!(stderr.contains("payouts.commands.v1.retry (FULL_TRANSITIVE)"), "{stderr}");
}

#[test]
fn a_removed_field_without_a_default_breaks_forward() {
    let repo = Scratch::repository_copy("schemas", &["topics.yaml"]);
    repo.edit_fields(COMMAND_SCHEMA, |f| {
        let i = field(f, "reference");
        f.remove(i);
    });
    let (ok, _, stderr) = switchyard(&repo.topics(), "check");
    assert!(!ok);
    let expected = "payouts.commands.v1 (FULL_TRANSITIVE): released version 1 cannot read data written with schemas/payouts/PayoutCommand.v1.avsc: field `reference`: has no default in version 1 and is missing from data written with the new schema (FORWARD broken)";
    assert!(stderr.lines().any(|l| l == expected), "{stderr}");
    assert!(!stderr.contains("BACKWARD broken"), "dropping a field leaves old data readable: {stderr}");
}

#[test]
fn a_type_change_breaks_both_ways_naming_the_nested_field() {
    let repo = Scratch::repository_copy("schemas", &["topics.yaml"]);
    repo.edit_fields(COMMAND_SCHEMA, |f| {
        let i = field(f, "amount_minor");
        f[i]["type"] = json!("string");
    });
    let (ok, _, stderr) = switchyard(&repo.topics(), "check");
    assert!(!ok);
    let line = |rule: &str| {
        stderr
            .lines()
            .find(|l| l.starts_with("payouts.commands.v1 (FULL_TRANSITIVE)") && l.ends_with(&format!("({rule} broken)")))
            .map(str::to_owned)
    };
    let backward = line("BACKWARD").unwrap_or_else(|| panic!("no BACKWARD line: {stderr}"));
    assert!(backward.contains("field `amount_minor`: written as Long, read as String"), "{backward}");
    let forward = line("FORWARD").unwrap_or_else(|| panic!("no FORWARD line: {stderr}"));
    assert!(forward.contains("field `amount_minor`: written as String, read as Long"), "{forward}");

    // A field of a nested record is named by its path.
    let repo = Scratch::repository_copy("schemas", &["topics.yaml"]);
    repo.edit_fields(COMMAND_SCHEMA, |f| {
        let i = field(f, "beneficiary");
        f[i]["type"]["fields"][1]["type"] = json!("int");
    });
    let (ok, _, stderr) = switchyard(&repo.topics(), "check");
    assert!(!ok);
    assert!(stderr.contains("field `beneficiary.iban`: written as String, read as Int (BACKWARD broken)"), "{stderr}");
}

#[test]
fn an_optional_field_with_a_default_passes_full_and_is_released() {
    let repo = Scratch::repository_copy("schemas", &["topics.yaml"]);
    repo.edit_fields(COMMAND_SCHEMA, |f| f.push(json!({"name": "purpose", "type": ["null", "string"], "default": null})));
    let (ok, _, stderr) = switchyard(&repo.topics(), "check");
    assert!(ok, "{stderr}");
    let released: Value = serde_json::from_str(&std::fs::read_to_string(repo.path("schemas/released.lock.json")).expect("lock")).expect("json");
    let next = released["subjects"]["payouts.commands.v1-value"].as_array().expect("released versions").len() + 1;
    let (ok, stdout, stderr) = switchyard(&repo.topics(), "release");
    assert!(ok, "{stderr}");
    assert!(stdout.contains(&format!("released payouts.commands.v1-value version {next}")), "{stdout}");
    assert!(!stdout.contains("payouts.outcomes.v1-value"), "unchanged schemas are not released again: {stdout}");
    let (_, stdout, _) = switchyard(&repo.topics(), "release");
    assert!(stdout.contains("nothing changed"), "{stdout}");

    // With it released, making the field required breaks version 1 (no
    // value to read) and the new version (null no longer readable) alike.
    repo.edit_fields(COMMAND_SCHEMA, |f| {
        let i = field(f, "purpose");
        f[i] = json!({"name": "purpose", "type": "string"});
    });
    let (ok, _, stderr) = switchyard(&repo.topics(), "check");
    assert!(!ok);
    assert!(stderr.contains("written with released version 1: field `purpose`"), "{stderr}");
    assert!(stderr.contains(&format!("written with released version {next}: field `purpose`")), "{stderr}");
    let (ok, _, _) = switchyard(&repo.topics(), "release");
    assert!(!ok, "an incompatible schema is never released");
}

/// One topic at `level`, released as `{a: int}` then `{}`, now `{a: string, default ""}`:
/// compatible with the latest version, not with the first.
fn transitive_case(level: &str) -> (bool, String) {
    let repo = Scratch::new("schemas");
    let topics = format!(
        "topics:\n  - {{ name: t.v1, partitions: 1, key: k, value_schema: schemas/R.avsc, producer: p, consumer: c, compatibility: {level} }}\n"
    );
    repo.write("topics.yaml", &topics);
    repo.write("schemas/R.avsc", r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}"#);
    assert!(switchyard(&repo.topics(), "release").0);
    repo.write("schemas/R.avsc", r#"{"type":"record","name":"R","fields":[]}"#);
    let (ok, _, stderr) = switchyard(&repo.topics(), "release");
    assert!(ok, "{stderr}");
    repo.write("schemas/R.avsc", r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string","default":""}]}"#);
    let (ok, _, stderr) = switchyard(&repo.topics(), "check");
    (ok, stderr)
}

#[test]
fn transitive_levels_check_every_released_version_others_only_the_latest() {
    assert!(transitive_case("BACKWARD").0);
    let (ok, stderr) = transitive_case("BACKWARD_TRANSITIVE");
    assert!(!ok);
    assert!(
        stderr.contains("t.v1 (BACKWARD_TRANSITIVE): schemas/R.avsc cannot read data written with released version 1: field `a`: written as Int, read as String (BACKWARD broken)"),
        "{stderr}"
    );
    assert!(transitive_case("NONE").0);
}

#[test]
fn a_tampered_lock_file_is_refused() {
    let repo = Scratch::repository_copy("schemas", &["topics.yaml"]);
    let path = repo.0.join("schemas/released.lock.json");
    let text = std::fs::read_to_string(&path).expect("lock");
    std::fs::write(&path, text.replacen("\"version\": 1", "\"version\": 2", 1)).expect("write");
    let (ok, _, stderr) = switchyard(&repo.topics(), "check");
    assert!(!ok);
    assert!(stderr.contains("lists version 2 in position 1"), "{stderr}");
}
