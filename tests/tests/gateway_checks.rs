//! The gateway's check routes end to end: real broker, real PostgreSQL, the
//! kyc, aml and fraud workers in-process over the Onfido, OpenSanctions and
//! Sardine simulators, the gateway on an ephemeral port, called over HTTP.
//! A POST is published, executed by the worker, projected and served by
//! GET with long polling; the same command redelivered on the bus meets the
//! HTTP request's key in the worker's claim: one vendor execution.

use anyhow::{Context, Result};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;
use switchyard_adapters::secret::SecretSource;
use switchyard_bus::{Outbound, Publisher};
use switchyard_e2e::checks::{check_config, provider};
use switchyard_e2e::{TestEnv, TopicReader};
use switchyard_gateway::config::{GatewayConfig, GatewayTopics, TeamConfig};
use switchyard_gateway::{aml, fraud, kyc, start_gateway};
use switchyard_simulators::{onfido, open_sanctions, sardine};
use switchyard_worker::check_config::CheckVendorKind;
use switchyard_worker::check_run::start_check_worker;
use tokio_util::sync::CancellationToken;

const KEY: &str = "sk-test-checks-2c90";
const READ_ONLY_KEY: &str = "sk-test-checks-ro-81f4";

fn gateway_config(env: &TestEnv) -> GatewayConfig {
    let mut kafka = env.kafka.clone();
    kafka.group_id = format!("{}gateway", env.prefix);
    let team = |name: &str, key: &str, scopes: &[&str]| TeamConfig {
        name: name.into(),
        api_keys: vec![SecretSource::inline(key)],
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        rate_limit: None,
        oauth2_client_ids: Vec::new(),
        callback: None,
    };
    GatewayConfig {
        bind: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        kafka,
        schema_registry_url: env.registry.base_url(),
        database_url: switchyard_localstack::database_url(),
        topics: GatewayTopics::with_prefix(&env.prefix),
        max_body_bytes: 16 * 1024,
        publish_timeout_ms: 5_000,
        lease_ms: 10_000,
        max_wait_ms: 20_000,
        oauth2: None,
        teams: vec![
            team("risk", KEY, &["kyc:write", "kyc:read", "aml:write", "aml:read", "fraud:write", "fraud:read"]),
            team("viewer", READ_ONLY_KEY, &["kyc:read"]),
        ],
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn post(&self, key: &str, path: &str, idempotency_key: &str, body: &Value) -> Result<(StatusCode, Option<String>, Value)> {
        let response =
            self.http.post(format!("{}{path}", self.base)).bearer_auth(key).header("Idempotency-Key", idempotency_key).json(body).send().await?;
        let status = response.status();
        let location = response.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_owned);
        Ok((status, location, response.json().await?))
    }

    /// Long-polls `location` until its first outcome.
    async fn outcome(&self, location: &str) -> Result<Value> {
        let response = self.http.get(format!("{}{location}?wait=20s", self.base)).bearer_auth(KEY).send().await?;
        anyhow::ensure!(response.status() == StatusCode::OK, "GET {location}: {}", response.status());
        Ok(response.json().await?)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kyc_aml_and_fraud_posted_over_http_run_through_their_workers_and_are_served_once_done() -> Result<()> {
    let env = TestEnv::new("gw-checks").await?;
    let shutdown = CancellationToken::new();
    let onfido_sim = onfido::spawn_onfido(onfido::OnfidoConfig::local()).await?;
    let sanctions_sim = open_sanctions::spawn_open_sanctions(open_sanctions::OpenSanctionsConfig::local()).await?;
    let sardine_sim = sardine::spawn_sardine(sardine::SardineConfig::local()).await?;
    let kyc_worker = start_check_worker::<switchyard_worker::kyc::Kyc>(
        check_config(&env, "kyc", vec![provider("onfido", CheckVendorKind::Onfido, &onfido_sim.base_url(), "api_sandbox.switchyard")], "onfido"),
        shutdown.clone(),
    )
    .await?;
    let aml_worker = start_check_worker::<switchyard_worker::aml::Aml>(
        check_config(&env, "aml", vec![provider("opensanctions", CheckVendorKind::OpenSanctions, &sanctions_sim.base_url(), "os_test_switchyard")], "opensanctions"),
        shutdown.clone(),
    )
    .await?;
    let mut sardine_vendor = provider("sardine", CheckVendorKind::Sardine, &sardine_sim.base_url(), "sardine_test_client");
    sardine_vendor.api_secret = Some(switchyard_worker::config::SecretSource::inline("sardine-secret"));
    let fraud_worker = start_check_worker::<switchyard_worker::fraud::Fraud>(check_config(&env, "fraud", vec![sardine_vendor], "sardine"), shutdown.clone()).await?;
    let gateway = start_gateway(gateway_config(&env), shutdown.clone()).await?;
    let client = Client { http: reqwest::Client::new(), base: format!("http://{}", gateway.addr) };
    let run = &env.prefix;

    // KYC.
    let kyc_key = format!("{run}kyc-1");
    let check = json!({
        "subject_id": format!("{run}app-1"),
        "person": {"first_name": "Ada", "last_name": "Lovelace", "date_of_birth": "1990-12-10"},
        "document": {"kind": "passport", "issuing_country": "GBR", "front_ref": "doc://1/front"},
        "selfie_ref": "doc://1/selfie",
    });
    let (status, location, accepted) = client.post(KEY, "/v1/kyc/checks", &kyc_key, &check).await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let id = kyc::check_id(&kyc_key);
    assert_eq!(location.as_deref(), Some(format!("/v1/kyc/checks/{id}").as_str()));
    assert_eq!((accepted["id"].as_str(), accepted["status"].as_str()), (Some(id.as_str()), Some("accepted")));
    let (status, _, problem) = client.post(READ_ONLY_KEY, "/v1/kyc/checks", &format!("{run}kyc-2"), &check).await?;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")), "{problem}");
    let (status, _, problem) = client.post(KEY, "/v1/kyc/checks", &kyc_key, &json!({"subject_id": "other"})).await?;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")), "{problem}");

    // AML and fraud.
    let aml_key = format!("{run}aml-1");
    let screening = json!({"subject_id": format!("{run}app-1"), "subject": {"kind": "person", "full_name": "Ada Lovelace", "country": "GB"}});
    let (status, aml_location, body) = client.post(KEY, "/v1/aml/screenings", &aml_key, &screening).await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(aml_location.as_deref(), Some(format!("/v1/aml/screenings/{}", aml::screening_id(&aml_key)).as_str()));
    let fraud_key = format!("{run}fraud-1");
    let score = json!({"subject_id": format!("{run}cust-1"), "event": "login", "email": "ada@example.com", "ip": "81.2.69.160"});
    let (status, fraud_location, body) = client.post(KEY, "/v1/fraud/scores", &fraud_key, &score).await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(fraud_location.as_deref(), Some(format!("/v1/fraud/scores/{}", fraud::score_id(&fraud_key)).as_str()));

    let view = client.outcome(&location.context("location")?).await?;
    assert_eq!((view["status"].as_str(), view["terminal"].as_bool(), view["provider"].as_str()), (Some("approved"), Some(true), Some("onfido")), "{view}");
    let view = client.outcome(&aml_location.context("location")?).await?;
    assert_eq!((view["status"].as_str(), view["terminal"].as_bool()), (Some("clear"), Some(true)), "{view}");
    let view = client.outcome(&fraud_location.context("location")?).await?;
    assert_eq!(view["status"].as_str(), Some("scored"), "{view}");
    assert!(["allow", "review", "block"].contains(&view["decision"].as_str().unwrap_or_default()), "{view}");

    // The KYC command redelivered on the bus (a core system's retry of the
    // very record): the worker's claim on the HTTP key answers it from the
    // store, and the vendor ran one check.
    let reader = TopicReader::new(&env.kafka, &env.topic("kyc.commands.v1"))?;
    let records = reader.read_up_to(10, Duration::from_secs(3)).await?;
    assert_eq!(records.len(), 1, "one command for the one accepted check");
    assert_eq!(records[0].headers.get("idempotency-key"), Some(&kyc_key));
    let headers = records[0].headers.iter().map(|(k, v)| (k.clone(), v.clone().into_bytes())).collect();
    let redelivery = Outbound { topic: env.topic("kyc.commands.v1"), key: Some(records[0].key.clone()), payload: records[0].payload.clone(), headers };
    Publisher::new(&env.kafka)?.publish(&redelivery).await?;
    let outcomes = TopicReader::new(&env.kafka, &env.topic("kyc.outcomes.v1"))?;
    let answered = outcomes.read_up_to(2, Duration::from_secs(20)).await?;
    assert_eq!(answered.len(), 2, "the redelivery is answered too");
    assert_eq!(onfido_sim.ledger().len(), 1, "one vendor execution for the HTTP request and its bus redelivery");

    shutdown.cancel();
    gateway.join.await??;
    kyc_worker.join.await??;
    aml_worker.join.await??;
    fraud_worker.join.await??;
    Ok(())
}
