//! schemathesis (PyPI, pinned in tests/schemathesis/requirements.txt and
//! installed by ops/scripts/test.sh) against the live gateway: real broker,
//! real PostgreSQL, every documented operation, generated valid and invalid
//! inputs, a team key holding every scope. Any finding fails the test: a
//! 5xx, a status, content type, header or body the document does not
//! describe, invalid input accepted, a missing required header or a missing
//! key not refused.
//!
//! A second test proves the run can fail: the same run against a copy of
//! the document with one documented status taken out must report it.

use anyhow::{Context, Result};
use std::time::{Duration, Instant};
use switchyard_adapters::secret::SecretSource;
use switchyard_e2e::TestEnv;
use switchyard_gateway::config::{GatewayConfig, GatewayTopics, TeamConfig, SCOPES};
use switchyard_gateway::{start_gateway, RunningGateway};
use tokio_util::sync::CancellationToken;

const KEY: &str = "sk-test-schemathesis-6b1e";

/// The checks run on every answer (`schemathesis run --help` of the pinned
/// version lists them). Left out: `positive_data_acceptance` (a schema-valid
/// body may still break a business rule, e.g. a date of 1990-02-31, and a
/// key reused with another body is rightly 422), and the stateful checks
/// (`use_after_free`, `ensure_resource_availability`,
/// `object_level_authorization`: no delete, no links, one team).
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,\
response_schema_conformance,negative_data_rejection,missing_required_header,ignored_auth,unsupported_method";

fn config(env: &TestEnv) -> GatewayConfig {
    let mut kafka = env.kafka.clone();
    kafka.group_id = format!("{}gateway", env.prefix);
    GatewayConfig {
        bind: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        kafka,
        schema_registry_url: env.registry.base_url(),
        database_url: switchyard_localstack::database_url(),
        topics: GatewayTopics::with_prefix(&env.prefix),
        max_body_bytes: 16 * 1024,
        publish_timeout_ms: 1_500,
        lease_ms: 10_000,
        // Generated `wait` values must not hold a case for long.
        max_wait_ms: 200,
        oauth2: None,
        teams: vec![TeamConfig {
            name: "schemathesis".into(),
            api_keys: vec![SecretSource::inline(KEY)],
            scopes: SCOPES.iter().map(|s| (*s).to_owned()).collect(),
            rate_limit: None,
            oauth2_client_ids: Vec::new(),
            callback: None,
        }],
    }
}

/// The seed: `SCHEMATHESIS_SEED` to reproduce a run, else the clock.
fn seed() -> u64 {
    std::env::var("SCHEMATHESIS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| u64::try_from(switchyard_canonical::now_ms()).unwrap_or_default() % 1_000_000)
}

/// Runs schemathesis over `location` (a URL or a file) against `gateway`;
/// exit status and everything it printed.
async fn schemathesis(gateway: &RunningGateway, location: &str, seed: u64, extra: &[&str]) -> Result<(bool, String)> {
    let base = format!("http://{}", gateway.addr);
    let bin = std::env::var("SCHEMATHESIS").unwrap_or_else(|_| "schemathesis".into());
    let seed = seed.to_string();
    let authorization = format!("Authorization: Bearer {KEY}");
    let mut args = vec![
        "run", location, "--url", &base,
        "--header", &authorization,
        "--checks", CHECKS,
        "--max-examples", "12",
        "--seed", &seed,
        "--workers", "1",
        "--request-timeout", "5",
        "--no-shrink",
        "--suppress-health-check", "all",
    ];
    args.extend_from_slice(extra);
    let output = tokio::process::Command::new(&bin)
        .args(&args)
        .env("NO_COLOR", "1")
        // Its example database and reports stay out of the source tree.
        .current_dir(std::env::temp_dir())
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("running {bin}: install it with `pip install -r tests/schemathesis/requirements.txt` (ops/scripts/test.sh does)"))?;
    let printed = format!("{}\n{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    Ok((output.status.success(), printed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_documented_operation_answers_as_documented_under_generated_input() -> Result<()> {
    let env = TestEnv::new("gw-st").await?;
    let shutdown = CancellationToken::new();
    let gateway = start_gateway(config(&env), shutdown.clone()).await?;
    let seed = seed();
    println!("schemathesis seed {seed} (SCHEMATHESIS_SEED={seed} reproduces)");
    let started = Instant::now();
    let (passed, printed) = schemathesis(&gateway, &format!("http://{}/openapi.json", gateway.addr), seed, &[]).await?;
    println!("{printed}");
    let took = started.elapsed();
    println!("schemathesis took {took:?}");
    assert!(passed, "schemathesis found something (seed {seed}):\n{printed}");
    // Every documented operation was exercised.
    let document: serde_json::Value = serde_json::from_str(&switchyard_gateway::openapi::document())?;
    let operations: usize = document["paths"].as_object().context("paths")?.values().map(|p| p.as_object().map_or(0, |m| m.len())).sum();
    assert!(printed.contains(&format!("{operations} selected")) || printed.contains(&format!("{operations} total")), "{operations} operations:\n{printed}");
    assert!(took < Duration::from_secs(90), "bounded: {took:?}");
    shutdown.cancel();
    gateway.join.await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_answer_the_document_does_not_describe_is_reported() -> Result<()> {
    let env = TestEnv::new("gw-st-neg").await?;
    let shutdown = CancellationToken::new();
    let gateway = start_gateway(config(&env), shutdown.clone()).await?;
    // The document without GET /v1/kyc/checks/{id}'s 404: every generated
    // id is unknown, so the gateway answers a status the copy lacks.
    let mut document: serde_json::Value = serde_json::from_str(&switchyard_gateway::openapi::document())?;
    let responses = document["paths"]["/v1/kyc/checks/{id}"]["get"]["responses"].as_object_mut().context("responses")?;
    responses.remove("404").context("the committed document lists 404")?;
    let dir = std::env::temp_dir().join(format!("{}openapi", env.prefix));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("openapi.json");
    std::fs::write(&path, serde_json::to_vec(&document)?)?;
    let (passed, printed) = schemathesis(&gateway, &path.to_string_lossy(), seed(), &["--include-operation-id", "getKycCheck"]).await?;
    assert!(!passed, "an undocumented 404 must fail the run:\n{printed}");
    assert!(printed.contains("404") && printed.contains("Undocumented status code"), "{printed}");
    shutdown.cancel();
    gateway.join.await??;
    Ok(())
}
