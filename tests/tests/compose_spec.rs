//! docker-compose.yml against the Compose Specification's published JSON
//! schema (pinned in `tests/contracts/compose/`): no Docker engine runs on
//! the machines that test this project, so a misspelt key, a wrong type or
//! a field the specification does not have would otherwise first show up
//! on an operator's machine.

use anyhow::{ensure, Context, Result};
use std::path::Path;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn compose_file() -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(root().join("docker-compose.yml"))?;
    let mut yaml: serde_norway::Value = serde_norway::from_str(&text).context("docker-compose.yml is YAML")?;
    // `<<: *switchyard-image` merges, as Compose does before validating.
    yaml.apply_merge().context("merge keys")?;
    Ok(serde_json::to_value(yaml)?)
}

fn validator() -> Result<jsonschema::Validator> {
    let text = std::fs::read_to_string(root().join("tests/contracts/compose/compose-spec.json"))?;
    let schema: serde_json::Value = serde_json::from_str(&text)?;
    jsonschema::validator_for(&schema).map_err(|e| anyhow::anyhow!("the Compose schema does not compile: {e}"))
}

#[test]
fn docker_compose_yml_follows_the_compose_specification() -> Result<()> {
    let compose = compose_file()?;
    let validator = validator()?;
    let errors: Vec<String> = validator.iter_errors(&compose).map(|e| format!("{}: {e}", e.instance_path())).collect();
    ensure!(errors.is_empty(), "docker-compose.yml breaks the Compose Specification:\n  {}", errors.join("\n  "));
    ensure!(compose["services"].as_object().is_some_and(|s| s.len() > 5), "the services were read");
    Ok(())
}

#[test]
fn the_schema_refuses_what_compose_would_refuse() -> Result<()> {
    let validator = validator()?;
    let mut misspelt = compose_file()?;
    misspelt["services"]["payout-worker"]["restart_policy"] = serde_json::json!("unless-stopped");
    ensure!(!validator.is_valid(&misspelt), "an unknown service key is refused");
    let mut wrong_type = compose_file()?;
    wrong_type["services"]["payout-worker"]["ports"] = serde_json::json!("9464:9464");
    ensure!(!validator.is_valid(&wrong_type), "ports must be a list");
    Ok(())
}

/// Every switchyard service sends its spans to the Jaeger the file runs:
/// the endpoint's host is a service of this file that listens for OTLP/HTTP.
#[test]
fn every_service_exports_traces_to_the_composed_jaeger() -> Result<()> {
    let compose = compose_file()?;
    let services = compose["services"].as_object().context("services")?;
    let jaeger = services.get("jaeger").context("a jaeger service")?;
    let ports: Vec<&str> = jaeger["ports"].as_array().context("jaeger ports")?.iter().filter_map(|p| p.as_str()).collect();
    for port in ["4317:4317", "4318:4318", "16686:16686"] {
        ensure!(ports.contains(&port), "jaeger publishes {port}: {ports:?}");
    }
    let mut exporting = 0;
    for (name, service) in services {
        // The services built from this repository log with RUST_LOG; those are ours.
        if service["environment"].get("RUST_LOG").is_none() {
            continue;
        }
        let endpoint = service["environment"]["SWITCHYARD_OTLP_ENDPOINT"].as_str().with_context(|| format!("{name} sets no SWITCHYARD_OTLP_ENDPOINT"))?;
        ensure!(endpoint.ends_with("http://jaeger:4318}"), "{name} exports to {endpoint}, not the composed jaeger's OTLP/HTTP port");
        exporting += 1;
    }
    ensure!(exporting >= 8, "every worker, the ingester, the reconciler and the orchestrator export ({exporting})");
    Ok(())
}

/// Compose creates topics from topics.yaml only (auto-create is off), so
/// every topic the compose gateway uses must be declared there: the command
/// topics it publishes to, the topics it projects, and each projection's DLQ.
#[test]
fn every_topic_the_compose_gateway_uses_is_in_topics_yaml() -> Result<()> {
    use switchyard_gateway::config::{projection_dlq, GatewayTopics};
    let text = std::fs::read_to_string(root().join("ops/docker/gateway.yaml"))?;
    let yaml: serde_norway::Value = serde_norway::from_str(&text).context("ops/docker/gateway.yaml is YAML")?;
    let topics: GatewayTopics = serde_norway::from_value(yaml["topics"].clone()).context("its topics section")?;
    let declared: std::collections::BTreeSet<String> =
        switchyard_bus::topics::TopicsFile::load(&root().join("topics.yaml"))?.topics.into_iter().map(|t| t.name).collect();
    let mut used: Vec<String> = topics.commands().into_iter().chain(topics.projected()).map(str::to_owned).collect();
    used.extend(topics.projected().into_iter().map(projection_dlq));
    let missing: Vec<&String> = used.iter().filter(|t| !declared.contains(*t)).collect();
    ensure!(missing.is_empty(), "the compose gateway uses topics that topics.yaml does not declare, so compose never creates them: {missing:?}");
    Ok(())
}
