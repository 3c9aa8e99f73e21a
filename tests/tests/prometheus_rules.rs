//! The alert rules as Prometheus itself reads them: `promtool check rules` on
//! every rule file under ops/prometheus, `promtool check config` on
//! ops/prometheus/prometheus.yml, and the `promtool test rules` unit tests in
//! ops/prometheus/tests/ (crafted series on which each alert fires, and
//! healthy-but-close ones on which it stays quiet).
//!
//! promtool comes with Debian's `prometheus` package (ops/scripts/test.sh
//! installs it). Without it these tests print a notice and pass, unless `CI`
//! or `SWITCHYARD_REQUIRE_PROMTOOL` is set: then a missing promtool fails.
//!
//! The other tests need no promtool: every alert links a runbook that exists
//! and names it, and has a promtool case where it fires and one where it
//! stays quiet.
//!
//! The Grafana dashboards too: every panel's query parses (promtool, as a
//! recording rule, Grafana's variables given values) and every metric it
//! names is one a worker, the ingester or the reconciler exports; and a
//! metric name two of them export means the same in both.

use anyhow::{bail, ensure, Context, Result};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use switchyard_localstack::repo_root;

const PROMETHEUS_DIR: &str = "ops/prometheus";
const CONFIG: &str = "ops/prometheus/prometheus.yml";
const UNIT_TESTS_DIR: &str = "ops/prometheus/tests";

/// An environment variable that is set to something other than "", "0" or "false".
fn flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"))
}

/// The promtool to run, or `None` (after a notice) when it is not installed
/// and nothing requires it. Fails when it is missing and required.
fn promtool(test: &str) -> Result<Option<PathBuf>> {
    let program = std::env::var_os("PROMTOOL").map_or_else(|| PathBuf::from("promtool"), PathBuf::from);
    match Command::new(&program).arg("--version").output() {
        Ok(out) if out.status.success() => Ok(Some(program)),
        found => {
            let why = match found {
                Ok(out) => format!("`{} --version` exited with {}", program.display(), out.status),
                Err(e) => format!("{}: {e}", program.display()),
            };
            if flag("CI") || flag("SWITCHYARD_REQUIRE_PROMTOOL") {
                bail!(
                    "promtool is required (CI or SWITCHYARD_REQUIRE_PROMTOOL is set) but cannot be run: {why}. \
                     Install it with `apt-get install --no-install-recommends prometheus` (ops/scripts/test.sh does)."
                );
            }
            eprintln!(
                "SKIPPED {test}: promtool is not installed ({why}). `apt-get install --no-install-recommends prometheus` \
                 provides it; set SWITCHYARD_REQUIRE_PROMTOOL=1 to make its absence a failure."
            );
            Ok(None)
        }
    }
}

/// Runs promtool from the repository root; fails with its whole output.
fn run(promtool: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(promtool)
        .args(args)
        .current_dir(repo_root())
        .output()
        .with_context(|| format!("running {} {}", promtool.display(), args.join(" ")))?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    ensure!(out.status.success(), "`promtool {}` failed ({}):\n{text}", args.join(" "), out.status);
    Ok(text)
}

/// `.yml` / `.yaml` files directly in `dir` (relative to the repository
/// root), as relative paths, sorted.
fn yaml_files(dir: &str) -> Result<Vec<String>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(repo_root().join(dir)).with_context(|| format!("listing {dir}"))? {
        let path = entry?.path();
        let is_yaml = path.extension().is_some_and(|e| e == "yml" || e == "yaml");
        if is_yaml && path.is_file() {
            let name = path.file_name().and_then(|n| n.to_str()).context("a UTF-8 file name")?;
            files.push(format!("{dir}/{name}"));
        }
    }
    files.sort();
    Ok(files)
}

fn read_yaml<T: serde::de::DeserializeOwned>(relative: &str) -> Result<T> {
    let text = std::fs::read_to_string(repo_root().join(relative)).with_context(|| format!("reading {relative}"))?;
    serde_norway::from_str(&text).with_context(|| format!("parsing {relative}"))
}

#[derive(Deserialize)]
struct RuleFile {
    groups: Vec<RuleGroup>,
}

#[derive(Deserialize)]
struct RuleGroup {
    name: String,
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
struct Rule {
    alert: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// Every rule file under ops/prometheus: the YAML files with a top-level
/// `groups` (prometheus.yml and the unit tests have none).
fn rule_files() -> Result<Vec<String>> {
    let mut files = Vec::new();
    for file in yaml_files(PROMETHEUS_DIR)? {
        let doc: serde_norway::Value = read_yaml(&file)?;
        if doc.get("groups").is_some() {
            files.push(file);
        }
    }
    ensure!(files.iter().any(|f| f.ends_with("/alerts.yml")), "no rule files found in {PROMETHEUS_DIR}: {files:?}");
    Ok(files)
}

/// Every alerting rule: (rule file, group, rule).
fn alerts() -> Result<Vec<(String, String, Rule)>> {
    let mut alerts = Vec::new();
    for file in rule_files()? {
        let parsed: RuleFile = read_yaml(&file)?;
        for group in parsed.groups {
            for rule in group.rules {
                if rule.alert.is_some() {
                    alerts.push((file.clone(), group.name.clone(), rule));
                }
            }
        }
    }
    ensure!(!alerts.is_empty(), "no alerting rules found");
    Ok(alerts)
}

#[test]
fn promtool_checks_every_rule_file() -> Result<()> {
    let Some(promtool) = promtool("promtool_checks_every_rule_file")? else { return Ok(()) };
    let files = rule_files()?;
    let mut args = vec!["check", "rules"];
    args.extend(files.iter().map(String::as_str));
    let out = run(&promtool, &args)?;
    eprintln!("{out}");
    Ok(())
}

#[test]
fn promtool_checks_the_prometheus_config() -> Result<()> {
    let Some(promtool) = promtool("promtool_checks_the_prometheus_config")? else { return Ok(()) };
    // The file as committed: its syntax and every field (the rule files it
    // names are container paths, see below).
    run(&promtool, &["check", "config", "--syntax-only", CONFIG])?;

    // In full, rule files included, with each rule file where the container
    // finds it: docker-compose.yml mounts ops/prometheus/*.yml under
    // /etc/prometheus. A copy with the host paths goes to a temporary
    // directory; nothing in it needs the network.
    let mut config: serde_norway::Value = read_yaml(CONFIG)?;
    let mounts = compose_mounts()?;
    let root = repo_root();
    if let Some(files) = config.get_mut("rule_files").and_then(serde_norway::Value::as_sequence_mut) {
        for file in files.iter_mut() {
            let path = file.as_str().context("rule_files entries are strings")?.to_owned();
            let host = if Path::new(&path).is_absolute() {
                let mounted = mounts.iter().find_map(|(container, host)| (*container == path).then(|| host.clone()));
                mounted.with_context(|| format!("{CONFIG} loads rule file {path}, which docker-compose.yml does not mount"))?
            } else {
                root.canonicalize()?.join(PROMETHEUS_DIR).join(&path)
            };
            ensure!(host.exists(), "{CONFIG} loads {path}, which is {} on this host and does not exist", host.display());
            *file = serde_norway::Value::String(host.to_string_lossy().into_owned());
        }
    }
    let dir = std::env::temp_dir().join(format!("switchyard-promtool-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let copy = dir.join("prometheus.yml");
    std::fs::write(&copy, serde_norway::to_string(&config)?)?;
    let result = run(&promtool, &["check", "config", copy.to_str().context("a UTF-8 temporary path")?]);
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("{}", result?);
    Ok(())
}

/// The prometheus service's bind mounts in docker-compose.yml: (path in the
/// container, path on this host).
fn compose_mounts() -> Result<Vec<(String, PathBuf)>> {
    let compose: serde_norway::Value = read_yaml("docker-compose.yml")?;
    let volumes = compose
        .get("services")
        .and_then(|s| s.get("prometheus"))
        .and_then(|p| p.get("volumes"))
        .and_then(serde_norway::Value::as_sequence)
        .context("docker-compose.yml has services.prometheus.volumes")?;
    let root = repo_root().canonicalize()?;
    let mut mounts = Vec::new();
    for volume in volumes {
        // Short syntax: ./host:/container[:ro]; named volumes have no "./".
        let Some(spec) = volume.as_str() else { continue };
        let mut parts = spec.split(':');
        let (Some(host), Some(container)) = (parts.next(), parts.next()) else { continue };
        if host.starts_with("./") || host.starts_with("../") {
            mounts.push((container.to_owned(), root.join(host.trim_start_matches("./"))));
        }
    }
    Ok(mounts)
}

#[test]
fn promtool_unit_tests_pass() -> Result<()> {
    let Some(promtool) = promtool("promtool_unit_tests_pass")? else { return Ok(()) };
    let files = yaml_files(UNIT_TESTS_DIR)?;
    ensure!(!files.is_empty(), "no promtool unit tests in {UNIT_TESTS_DIR}");
    // One file per run: promtool writes a file's name to stdout and its
    // failures to stderr, so each failure is reported with its file.
    let mut failures = Vec::new();
    for file in &files {
        match run(&promtool, &["test", "rules", file]) {
            Ok(out) => eprint!("{out}"),
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    ensure!(failures.is_empty(), "{} of {} promtool unit test files failed:\n\n{}", failures.len(), files.len(), failures.join("\n"));
    Ok(())
}

#[test]
fn every_alert_has_a_severity_and_a_runbook_that_names_it() -> Result<()> {
    let root = repo_root();
    let mut problems = Vec::new();
    for (file, group, rule) in alerts()? {
        let name = rule.alert.as_deref().unwrap_or_default();
        let at = format!("{name} ({file}, group {group})");
        match rule.labels.get("severity").map(String::as_str) {
            Some("page" | "ticket") => {}
            other => problems.push(format!("{at}: severity label is {other:?}, expected page or ticket")),
        }
        let Some(url) = rule.annotations.get("runbook_url") else {
            problems.push(format!("{at}: no runbook_url annotation"));
            continue;
        };
        // Runbooks are linked by their path in the repository (an anchor allowed).
        let path = url.split('#').next().unwrap_or_default();
        if !path.starts_with("ops/runbooks/") {
            problems.push(format!("{at}: runbook_url {url} is not a file under ops/runbooks/"));
            continue;
        }
        match std::fs::read_to_string(root.join(path)) {
            Ok(text) if text.contains(name) => {}
            Ok(_) => problems.push(format!("{at}: runbook {path} does not mention the alert by name")),
            Err(e) => problems.push(format!("{at}: runbook {path}: {e}")),
        }
        for key in ["summary", "description"] {
            if rule.annotations.get(key).is_none_or(|v| v.trim().is_empty()) {
                problems.push(format!("{at}: no {key} annotation"));
            }
        }
    }
    ensure!(problems.is_empty(), "alert rules without a usable runbook link:\n  {}", problems.join("\n  "));
    Ok(())
}

#[derive(Deserialize)]
struct UnitTestFile {
    #[serde(default)]
    tests: Vec<UnitTest>,
}

#[derive(Deserialize)]
struct UnitTest {
    #[serde(default)]
    alert_rule_test: Vec<AlertCase>,
}

#[derive(Deserialize)]
struct AlertCase {
    alertname: String,
    #[serde(default)]
    exp_alerts: Vec<serde_norway::Value>,
}

#[test]
fn every_alert_has_a_promtool_case_where_it_fires_and_one_where_it_stays_quiet() -> Result<()> {
    // alert name -> (cases expecting it to fire, cases expecting silence)
    let mut cases: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for file in yaml_files(UNIT_TESTS_DIR)? {
        let parsed: UnitTestFile = read_yaml(&file)?;
        for case in parsed.tests.iter().flat_map(|t| &t.alert_rule_test) {
            let counts = cases.entry(case.alertname.clone()).or_default();
            if case.exp_alerts.is_empty() {
                counts.1 += 1;
            } else {
                counts.0 += 1;
            }
        }
    }
    let defined: BTreeSet<String> = alerts()?.into_iter().filter_map(|(_, _, rule)| rule.alert).collect();
    let mut problems = Vec::new();
    for name in &defined {
        let (fires, quiet) = cases.get(name).copied().unwrap_or_default();
        if fires == 0 {
            problems.push(format!("{name}: no promtool case in {UNIT_TESTS_DIR} where it fires"));
        }
        if quiet == 0 {
            problems.push(format!("{name}: no promtool case in {UNIT_TESTS_DIR} where it stays quiet"));
        }
    }
    // A case naming an alert that does not exist passes vacuously when it
    // expects silence: a renamed alert would lose its tests unnoticed.
    for name in cases.keys().filter(|n| !defined.contains(*n)) {
        problems.push(format!("{name}: tested in {UNIT_TESTS_DIR} but no rule file defines it"));
    }
    ensure!(problems.is_empty(), "alerts without promtool unit tests:\n  {}", problems.join("\n  "));
    Ok(())
}

/// `(where, query)` of every target of every Grafana dashboard, with
/// Grafana's variables given values Prometheus accepts.
fn dashboard_queries() -> Result<Vec<(String, String)>> {
    let dir = repo_root().join("ops/grafana/dashboards");
    let mut queries = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
        let file = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        for panel in dashboard["panels"].as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let Some(expr) = target["expr"].as_str() else { continue };
                let expr = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m").replace("$__range", "1h");
                // Template variables (`=~"$domain"`) match anything.
                let expr = expr.split('$').enumerate().map(|(i, part)| if i == 0 { part.to_owned() } else { format!(".*{}", part.trim_start_matches(|c: char| c.is_ascii_alphanumeric() || c == '_')) }).collect::<String>();
                queries.push((format!("{file}: {}", panel["title"].as_str().unwrap_or("?")), expr));
            }
        }
    }
    ensure!(!queries.is_empty(), "no dashboard queries found in {}", dir.display());
    Ok(queries)
}

#[test]
fn every_dashboard_query_parses_with_promtool() -> Result<()> {
    let Some(promtool) = promtool("every_dashboard_query_parses_with_promtool")? else { return Ok(()) };
    let mut rules = String::from("groups:\n  - name: grafana-dashboard-queries\n    rules:\n");
    for (i, (_, expr)) in dashboard_queries()?.iter().enumerate() {
        rules.push_str(&format!("      - record: dashboard:query_{i}\n        expr: {}\n", serde_json::to_string(expr)?));
    }
    let file = std::env::temp_dir().join(format!("switchyard-dashboard-queries-{}.yml", std::process::id()));
    std::fs::write(&file, rules)?;
    let checked = run(&promtool, &["check", "rules", file.to_str().context("a UTF-8 temp path")?]);
    let _ = std::fs::remove_file(&file);
    checked.map(|_| ())
}

/// What each service exports, as `(service, text format)`: the families a
/// worker registers (help and type lines render even before the first
/// sample), the ingester's, and the reconciler's end-to-end flows.
fn exported_by_service() -> Vec<(&'static str, String)> {
    let mut flows = String::new();
    switchyard_recon::flows::FlowLatency::default().render(&mut flows);
    vec![
        ("worker", switchyard_worker::metrics::Metrics::new("payouts").render()),
        ("ingester", switchyard_ingester::metrics::Metrics::default().render()),
        ("reconciler", flows),
    ]
}

/// A family two services both export is summed across them by every rule
/// and panel that does not name the service, so it must mean one thing:
/// the same type and help. The reconciler's end-to-end flow histogram once
/// shared the workers' `switchyard_flow_duration_seconds` (other buckets,
/// seconds to days): the workers' 5 s alert paged on webhook confirmations.
#[test]
fn a_metric_family_two_services_export_means_the_same_in_both() -> Result<()> {
    // family -> (service, "# TYPE ..." and "# HELP ..." lines)
    let mut seen: BTreeMap<String, (&str, String, String)> = BTreeMap::new();
    let mut clashes = Vec::new();
    for (service, text) in exported_by_service() {
        let help: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.strip_prefix("# HELP ")?.split_once(' ')).collect();
        for (family, kind) in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.split_once(' ')) {
            let described = help.get(family).copied().unwrap_or_default().to_owned();
            match seen.get(family) {
                Some((first, k, h)) if (k.as_str(), h.as_str()) != (kind, described.as_str()) => {
                    clashes.push(format!("{family}: {first} exports a {k} ({h:?}), {service} a {kind} ({described:?})"));
                }
                Some(_) => {}
                None => {
                    seen.insert(family.to_owned(), (service, kind.to_owned(), described));
                }
            }
        }
    }
    ensure!(seen.contains_key("switchyard_flow_end_to_end_seconds"), "the reconciler's flow histogram is not rendered: {:?}", seen.keys());
    ensure!(clashes.is_empty(), "one metric name, two meanings:\n  {}", clashes.join("\n  "));
    Ok(())
}

#[test]
fn every_metric_a_dashboard_names_is_exported() -> Result<()> {
    let exported = exported_by_service().into_iter().map(|(_, text)| text).collect::<Vec<_>>().join("\n");
    let mut missing = BTreeSet::new();
    for (at, expr) in dashboard_queries()? {
        let names = expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("switchyard_"));
        for name in names {
            let family = ["_bucket", "_count", "_sum", "_total"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
            if !exported.contains(&format!("# TYPE {family} ")) && !exported.contains(&format!("# TYPE {name} ")) {
                missing.insert(format!("{name} ({at})"));
            }
        }
    }
    ensure!(missing.is_empty(), "dashboard queries name metrics no service exports:\n  {}", missing.into_iter().collect::<Vec<_>>().join("\n  "));
    Ok(())
}
