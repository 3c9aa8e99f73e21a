//! Onboarding over HTTP end to end: real broker, real PostgreSQL, the kyc,
//! aml and fraud workers over the Onfido, ComplyAdvantage and SEON
//! simulators, the onboarding orchestrator and the gateway, all
//! in-process. An application whose AML screening finds a potential match
//! waits in `aml_review`; an analyst's decision posted over HTTP (with
//! `onboarding:decide`, which starting an application does not grant)
//! approves it.

use anyhow::{Context, Result};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use switchyard_adapters::secret::SecretSource;
use switchyard_e2e::checks::{check_config, provider};
use switchyard_e2e::TestEnv;
use switchyard_gateway::config::{GatewayConfig, GatewayTopics, TeamConfig};
use switchyard_gateway::onboarding::application_id;
use switchyard_gateway::start_gateway;
use switchyard_localstack::database_url;
use switchyard_onboarding::config::OnboardingTopics;
use switchyard_onboarding::machine::Limits;
use switchyard_onboarding::{start_orchestrator, OrchestratorConfig};
use switchyard_simulators::{comply_advantage, onfido, seon};
use switchyard_worker::aml::Aml;
use switchyard_worker::check_config::CheckVendorKind;
use switchyard_worker::check_run::start_check_worker;
use switchyard_worker::fraud::Fraud;
use switchyard_worker::kyc::Kyc;
use tokio_util::sync::CancellationToken;

const APP_KEY: &str = "sk-test-onboarding-app-5e11";
const ANALYST_KEY: &str = "sk-test-onboarding-analyst-a0c4";

fn orchestrator_config(env: &TestEnv) -> OrchestratorConfig {
    let mut kafka = env.kafka.clone();
    kafka.group_id = format!("{}onboarding-orchestrator", env.prefix);
    OrchestratorConfig {
        kafka,
        schema_registry_url: env.registry.base_url(),
        database_url: database_url(),
        topics: OnboardingTopics::with_prefix(&env.prefix),
        limits: Limits { max_kyc_attempts: 3, max_resends: 1, step_timeout_ms: 60_000, evidence_timeout_ms: 60_000, decision_timeout_ms: 60_000 },
        sweep_interval_ms: 200,
        outbox_grace_ms: 3_000,
        retention_ms: 24 * 3600 * 1000,
        admin_bind: None,
        max_in_flight: 100,
        max_retry_rounds: 5,
        retry_topic_delay_ms: 500,
        pii_keys: vec![switchyard_onboarding::pii::PiiKeyConfig {
            id: "e2e".into(),
            key: SecretSource::inline("c3dpdGNoeWFyZC1lMmUtcGlpLWtleS0zMi1ieXRlcyE="),
        }],
    }
}

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
        database_url: database_url(),
        topics: GatewayTopics::with_prefix(&env.prefix),
        max_body_bytes: 16 * 1024,
        publish_timeout_ms: 5_000,
        lease_ms: 10_000,
        max_wait_ms: 10_000,
        oauth2: None,
        teams: vec![
            team("mobile", APP_KEY, &["onboarding:write", "onboarding:read"]),
            team("compliance", ANALYST_KEY, &["onboarding:read", "onboarding:decide"]),
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

    /// Long-polls `location` with its ETag until `status` (or a terminal other).
    async fn until(&self, location: &str, status: &str, timeout: Duration) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        let mut etag: Option<String> = None;
        loop {
            let mut request = self.http.get(format!("{}{location}?wait=5s", self.base)).bearer_auth(APP_KEY);
            if let Some(etag) = &etag {
                request = request.header("If-None-Match", etag);
            }
            let response = request.send().await?;
            if response.status() == StatusCode::OK {
                etag = response.headers().get("etag").and_then(|v| v.to_str().ok()).map(str::to_owned);
                let view: Value = response.json().await?;
                if view["status"] == status || view["terminal"] == true {
                    return Ok(view);
                }
            } else {
                anyhow::ensure!(response.status() == StatusCode::NOT_MODIFIED, "GET {location}: {}", response.status());
            }
            anyhow::ensure!(Instant::now() < deadline, "{location} did not reach {status} within {timeout:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_application_started_over_http_waits_for_an_analyst_and_is_approved_by_a_decision_over_http() -> Result<()> {
    let env = TestEnv::new("gw-onb").await?;
    let shutdown = CancellationToken::new();
    let onfido_sim = onfido::spawn_onfido(onfido::OnfidoConfig::local()).await?;
    let ca_sim = comply_advantage::spawn_comply_advantage(comply_advantage::ComplyAdvantageConfig::local()).await?;
    let seon_sim = seon::spawn_seon(seon::SeonConfig::local()).await?;
    let workers = vec![
        start_check_worker::<Kyc>(
            check_config(&env, "kyc", vec![provider("onfido", CheckVendorKind::Onfido, &onfido_sim.base_url(), "api_sandbox.switchyard")], "onfido"),
            shutdown.clone(),
        )
        .await?,
        start_check_worker::<Aml>(
            check_config(&env, "aml", vec![provider("complyadvantage", CheckVendorKind::ComplyAdvantage, &ca_sim.base_url(), "ca_test_switchyard")], "complyadvantage"),
            shutdown.clone(),
        )
        .await?,
        start_check_worker::<Fraud>(
            check_config(&env, "fraud", vec![provider("seon", CheckVendorKind::Seon, &seon_sim.base_url(), "seon_test_switchyard")], "seon"),
            shutdown.clone(),
        )
        .await?,
    ];
    let orchestrator = start_orchestrator(orchestrator_config(&env), shutdown.clone()).await?;
    let gateway = start_gateway(gateway_config(&env), shutdown.clone()).await?;
    let client = Client { http: reqwest::Client::new(), base: format!("http://{}", gateway.addr) };

    // "Ivan Similar" is a potential AML match at the simulator: the flow
    // passes KYC and waits for an analyst in aml_review.
    let key = format!("{}start", env.prefix);
    let application = json!({
        "subject_id": format!("{}app-1", env.prefix),
        "applicant": {
            "person": {"first_name": "Ivan", "last_name": "Similar", "date_of_birth": "1985-01-01", "email": "v@example.com"},
            "document": {"kind": "passport", "issuing_country": "GBR", "front_ref": "doc://v/front"},
            "selfie_ref": "doc://selfie", "nationality": "GB", "phone": "+447700900123", "ip": "192.0.2.10",
        },
    });
    let (status, location, accepted) = client.post(APP_KEY, "/v1/onboarding/applications", &key, &application).await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let id = application_id(&key);
    let location = location.context("location")?;
    assert_eq!(location, format!("/v1/onboarding/applications/{id}"));
    assert_eq!((accepted["status"].as_str(), accepted["version"].as_i64()), (Some("accepted"), Some(0)));
    let view = client.until(&location, "aml_review", Duration::from_secs(60)).await?;
    assert_eq!((view["status"].as_str(), view["step"].as_str()), (Some("aml_review"), Some("aml")), "{view}");

    // Deciding is a scope of its own, and needs an existing application.
    let decision = json!({"step": "aml", "verdict": "approve", "reviewer": "analyst-7", "note": "a namesake"});
    let decisions = format!("{location}/decisions");
    let (status, _, problem) = client.post(APP_KEY, &decisions, &format!("{}decide-app", env.prefix), &decision).await?;
    assert_eq!((status, problem["detail"].as_str()), (StatusCode::FORBIDDEN, Some("this call needs the scope onboarding:decide")), "{problem}");
    let (status, _, problem) = client.post(ANALYST_KEY, "/v1/onboarding/applications/onb_unknown/decisions", &format!("{}decide-x", env.prefix), &decision).await?;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")), "{problem}");
    let decide_key = format!("{}decide", env.prefix);
    let (status, decided_location, answer) = client.post(ANALYST_KEY, &decisions, &decide_key, &decision).await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!((decided_location.as_deref(), answer["id"].as_str()), (Some(location.as_str()), Some(id.as_str())));
    // The same decision again: replayed. The key for another decision: 422.
    let (status, _, replayed) = client.post(ANALYST_KEY, &decisions, &decide_key, &decision).await?;
    assert_eq!((status, &replayed), (StatusCode::ACCEPTED, &answer));
    let reject = json!({"step": "aml", "verdict": "reject", "reviewer": "analyst-7"});
    let (status, _, problem) = client.post(ANALYST_KEY, &decisions, &decide_key, &reject).await?;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("idempotency_collision")), "{problem}");

    let view = client.until(&location, "approved", Duration::from_secs(60)).await?;
    assert_eq!((view["status"].as_str(), view["terminal"].as_bool()), (Some("approved"), Some(true)), "{view}");
    assert!(view["version"].as_i64().is_some_and(|v| v >= 4), "{view}");
    let listed = client.http.get(format!("{}/v1/onboarding/applications?status=approved", client.base)).bearer_auth(ANALYST_KEY).send().await?.text().await?;
    assert!(listed.contains(&id), "{listed}");

    shutdown.cancel();
    gateway.join.await??;
    orchestrator.join.await??;
    for worker in workers {
        worker.join.await??;
    }
    for sim in [onfido_sim, ca_sim, seon_sim] {
        sim.shutdown().await;
    }
    Ok(())
}
