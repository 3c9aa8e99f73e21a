//! asyncapi.yaml, the bus contract for consuming teams: current with
//! topics.yaml and schemas/ (`switchyard asyncapi --check`), and valid by the
//! AsyncAPI project's own parser (ops/asyncapi/validate.mjs), which must also
//! reject broken documents, or passing it would prove nothing.

mod common;

use common::{repo, Scratch};
use std::path::Path;
use std::process::Command;

/// `switchyard asyncapi <args>`: success, stdout, stderr.
fn switchyard(args: &[&str], topics: &Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("asyncapi")
        .args(args)
        .arg("--topics")
        .arg(topics)
        .output()
        .expect("switchyard runs");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `node ops/asyncapi/validate.mjs <doc>`: success, stdout, stderr. Fails the
/// test, never skips it, when the validator is not installed: a contract
/// check that silently does not run is worse than none.
fn validate(doc: &Path) -> (bool, String, String) {
    let dir = repo().join("ops/asyncapi");
    assert!(
        dir.join("node_modules/@asyncapi/parser").is_dir() && dir.join("node_modules/@asyncapi/avro-schema-parser").is_dir(),
        "the AsyncAPI validator is not installed: run `npm ci --prefix ops/asyncapi` (ops/scripts/test.sh does)"
    );
    let out = Command::new("node")
        .arg(dir.join("validate.mjs"))
        .arg(doc)
        .output()
        .unwrap_or_else(|e| panic!("running node (Node.js 18 or later is needed for ops/asyncapi/validate.mjs): {e}"));
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn committed() -> String {
    std::fs::read_to_string(repo().join("asyncapi.yaml")).expect("asyncapi.yaml at the repository root")
}

#[test]
fn the_committed_asyncapi_yaml_is_current() {
    let topics = repo().join("topics.yaml");
    let (ok, _, stderr) = switchyard(&["--check"], &topics);
    assert!(ok, "{stderr}");
    // Deterministic: two runs print the same bytes, the committed ones.
    let (_, first, _) = switchyard(&["--out", "-"], &topics);
    let (_, second, _) = switchyard(&["--out", "-"], &topics);
    assert!(first == second && first == committed(), "generation is not deterministic");
}

#[test]
fn a_schema_or_topic_change_makes_it_stale_until_regenerated() {
    let repo = Scratch::repository_copy("asyncapi", &["topics.yaml", "asyncapi.yaml"]);
    let schema = repo.path("schemas/payouts/PayoutCommand.v1.avsc");
    let text = std::fs::read_to_string(&schema).expect("schema");
    let edited = text.replacen("Move money to a beneficiary.", "Move money to a beneficiary, once.", 1);
    assert_ne!(text, edited, "the schema's doc changed under the test");
    std::fs::write(&schema, edited).expect("write");

    let (ok, _, stderr) = switchyard(&["--check"], &repo.path("topics.yaml"));
    assert!(!ok);
    assert!(stderr.contains("asyncapi.yaml is stale (first difference at line ") && stderr.contains("run `switchyard asyncapi`"), "{stderr}");

    let (ok, _, stderr) = switchyard(&[], &repo.path("topics.yaml"));
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = switchyard(&["--check"], &repo.path("topics.yaml"));
    assert!(ok, "regenerated, current again: {stderr}");
    let regenerated = std::fs::read_to_string(repo.path("asyncapi.yaml")).expect("regenerated");
    assert!(regenerated.contains("Move money to a beneficiary, once."));

    // topics.yaml is an input as much as the schemas.
    let topics = std::fs::read_to_string(repo.path("topics.yaml")).expect("topics");
    std::fs::write(repo.path("topics.yaml"), topics.replacen("partitions: 6", "partitions: 12", 1)).expect("write");
    let (ok, _, stderr) = switchyard(&["--check"], &repo.path("topics.yaml"));
    assert!(!ok && stderr.contains("is stale"), "{stderr}");

    std::fs::remove_file(repo.path("asyncapi.yaml")).expect("remove");
    let (ok, _, stderr) = switchyard(&["--check"], &repo.path("topics.yaml"));
    assert!(!ok && stderr.contains("asyncapi.yaml is missing: run `switchyard asyncapi`"), "{stderr}");
}

#[test]
fn the_asyncapi_project_parser_accepts_asyncapi_yaml() {
    let (ok, stdout, stderr) = validate(&repo().join("asyncapi.yaml"));
    assert!(ok, "asyncapi.yaml is not valid AsyncAPI:\n{stderr}");
    assert!(stdout.contains("valid AsyncAPI 3.0.0") && stdout.contains("@asyncapi/avro-schema-parser"), "{stdout}");
}

#[test]
fn the_validator_rejects_a_broken_avro_payload_and_a_broken_document() {
    let scratch = Scratch::new("asyncapi");
    // An Avro field of an unknown type. The spec's JSON Schema cannot see
    // this (a bare name may refer to a named type); only the Avro parser can.
    let mut lines: Vec<String> = committed().lines().map(str::to_owned).collect();
    let at = lines
        .windows(2)
        .position(|w| w[0].trim_end().ends_with("- name: amount_minor") && w[1].trim() == "type: long")
        .expect("an amount_minor field of type long in asyncapi.yaml");
    lines[at + 1] = lines[at + 1].replace("type: long", "type: integr");
    let broken_avro = scratch.path("broken-avro.yaml");
    std::fs::write(&broken_avro, lines.join("\n") + "\n").expect("write");
    let (ok, _, stderr) = validate(&broken_avro);
    assert!(!ok, "an unknown Avro type passed the validator");
    assert!(stderr.contains("undefined type name") && stderr.contains("[avro-schema]"), "{stderr}");

    // An AsyncAPI 2 verb in an AsyncAPI 3 operation.
    let broken_spec = scratch.path("broken-spec.yaml");
    std::fs::write(&broken_spec, committed().replacen("action: send", "action: publish", 1)).expect("write");
    let (ok, _, stderr) = validate(&broken_spec);
    assert!(!ok, "an invalid operation passed the validator");
    assert!(stderr.contains("\"action\" property must be equal to one of the allowed values"), "{stderr}");
}
