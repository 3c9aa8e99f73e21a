//! The HTTP gateway end to end: real broker, real PostgreSQL, the payout
//! worker in-process over the Stripe simulator, the gateway on an
//! ephemeral port, called over HTTP.

use anyhow::{Context, Result};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use switchyard_bus::AvroDecoder;
use switchyard_canonical::PayoutCommand;
use switchyard_e2e::TestEnv;
use switchyard_adapters::secret::SecretSource;
use switchyard_gateway::config::{GatewayConfig, GatewayTopics, RateLimitConfig, TeamConfig};
use switchyard_gateway::payouts::{payout_id, PayoutRequest};
use switchyard_gateway::{start_gateway, RunningGateway};
use switchyard_simulators::stripe;
use switchyard_store::gateway::{GatewayStore, RequestClaim};
use tokio_util::sync::CancellationToken;

fn gateway_config(env: &TestEnv, brokers: Option<&str>) -> GatewayConfig {
    let mut kafka = env.kafka.clone();
    kafka.group_id = format!("{}gateway", env.prefix);
    if let Some(brokers) = brokers {
        kafka.brokers = brokers.to_owned();
    }
    GatewayConfig {
        bind: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        kafka,
        schema_registry_url: env.registry.base_url(),
        database_url: switchyard_localstack::database_url(),
        topics: GatewayTopics::with_prefix(&env.prefix),
        max_body_bytes: 16 * 1024,
        // Short only where the broker is meant to be unreachable: on a loaded
        // machine a fresh producer's first send can take seconds to get its
        // producer id, and 1.5 s then answered a healthy POST 503.
        publish_timeout_ms: if brokers.is_some() { 1_500 } else { 5_000 },
        lease_ms: 10_000,
        max_wait_ms: 10_000,
        oauth2: None,
        teams: vec![
            team(PAYMENTS, PAYMENTS_KEY, &["payouts:write", "payouts:read"]),
            team("portal", PORTAL_KEY, &["payouts:write"]),
            team("ops", OPS_KEY, &["payouts:read"]),
            TeamConfig { rate_limit: Some(RateLimitConfig { per_second: 1, burst: 2 }), ..team("batch", BATCH_KEY, &["payouts:read"]) },
        ],
    }
}

const PAYMENTS: &str = "payments";
const PAYMENTS_KEY: &str = "sk-test-payments-0f3a";
const PORTAL_KEY: &str = "sk-test-portal-77c1";
const OPS_KEY: &str = "sk-test-ops-19be";
/// A team limited to 1 request/s with a burst of 2.
const BATCH_KEY: &str = "sk-test-batch-5d20";

fn team(name: &str, key: &str, scopes: &[&str]) -> TeamConfig {
    TeamConfig {
        name: name.into(),
        api_keys: vec![SecretSource::inline(key)],
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        rate_limit: None,
        oauth2_client_ids: Vec::new(),
        callback: None,
    }
}

fn body(amount_minor: i64) -> Value {
    json!({
        "amount_minor": amount_minor,
        "currency": "EUR",
        "beneficiary": {"name": "Ada Lovelace", "iban": "DE89370400440532013000", "country": "DE"},
        "rail": "instant",
        "reference": "invoice 42",
    })
}

struct Client {
    http: reqwest::Client,
    base: String,
    /// Sent as `Authorization: Bearer`, when set.
    key: Option<&'static str>,
}

impl Client {
    fn new(gateway: &RunningGateway) -> Self {
        Self::as_key(gateway, Some(PAYMENTS_KEY))
    }

    fn as_key(gateway: &RunningGateway, key: Option<&'static str>) -> Self {
        Self { http: reqwest::Client::new(), base: format!("http://{}", gateway.addr), key }
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self.key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    async fn post(&self, key: Option<&str>, body: &Value, extra: &[(&'static str, &str)]) -> Result<(StatusCode, HeaderMap, Value)> {
        let mut request = self.authorized(self.http.post(format!("{}/v1/payouts", self.base))).json(body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        let response = request.send().await?;
        let (status, headers) = (response.status(), response.headers().clone());
        Ok((status, headers, response.json().await?))
    }

    async fn get(&self, path: &str, if_none_match: Option<&HeaderValue>) -> Result<(StatusCode, HeaderMap, String)> {
        let mut request = self.authorized(self.http.get(format!("{}{path}", self.base)));
        if let Some(etag) = if_none_match {
            request = request.header("If-None-Match", etag);
        }
        let response = request.send().await?;
        let (status, headers) = (response.status(), response.headers().clone());
        Ok((status, headers, response.text().await?))
    }
}

fn assert_problem(status: StatusCode, headers: &HeaderMap, problem: &Value, want_status: u16, code: &str, class: &str) {
    assert_eq!(status.as_u16(), want_status, "{problem}");
    assert_eq!(headers.get("content-type").and_then(|v| v.to_str().ok()), Some("application/problem+json"));
    assert_eq!(problem["status"], want_status, "{problem}");
    assert_eq!(problem["code"], code, "{problem}");
    assert_eq!(problem["class"], class, "{problem}");
    assert_eq!(problem["type"], format!("urn:switchyard:problem:{code}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_payout_posted_over_http_is_published_once_executed_once_and_served_with_etag_and_long_polling() -> Result<()> {
    let env = TestEnv::new("gw-payout").await?;
    let sim = stripe::spawn_stripe(stripe::StripeConfig::local()).await?;
    let shutdown = CancellationToken::new();
    let worker = switchyard_worker::start_payout_worker(env.worker_config(&sim.base_url(), None, "stripe"), shutdown.clone()).await?;
    let gateway = start_gateway(gateway_config(&env, None), shutdown.clone()).await?;
    let client = Client::new(&gateway);
    let key = format!("{}key-1", env.prefix);

    let (status, headers, problem) = client.post(None, &body(1250), &[]).await?;
    assert_problem(status, &headers, &problem, 400, "idempotency_key_required", "permanent");
    let (status, headers, problem) = client.post(Some(&key), &json!({"amount_minor": 1}), &[]).await?;
    assert_problem(status, &headers, &problem, 400, "invalid_request", "permanent");

    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let extra = [("X-Correlation-Id", "corr-gw-1"), ("traceparent", traceparent)];
    let (status, headers, accepted) = client.post(Some(&key), &body(1250), &extra).await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let id = payout_id(&key);
    let location = format!("/v1/payouts/{id}");
    assert_eq!(headers.get("location").and_then(|v| v.to_str().ok()), Some(location.as_str()));
    assert_eq!(headers.get("x-correlation-id").and_then(|v| v.to_str().ok()), Some("corr-gw-1"));
    assert_eq!((accepted["id"].as_str(), accepted["status"].as_str()), (Some(id.as_str()), Some("accepted")));

    // The same request again: the first answer, replayed, nothing published.
    let (status, headers, replayed) = client.post(Some(&key), &body(1250), &[]).await?;
    assert_eq!((status, &replayed), (StatusCode::ACCEPTED, &accepted));
    assert_eq!(headers.get("idempotent-replayed").and_then(|v| v.to_str().ok()), Some("true"));
    assert_eq!(headers.get("location").and_then(|v| v.to_str().ok()), Some(location.as_str()));
    // The same key for another request.
    let (status, headers, problem) = client.post(Some(&key), &body(1251), &[]).await?;
    assert_problem(status, &headers, &problem, 422, "idempotency_collision", "permanent");

    // Long polling without a version waits for the first outcome.
    let (status, headers, view) = client.get(&format!("{location}?wait=10s"), None).await?;
    assert_eq!(status, StatusCode::OK, "{view}");
    let view: Value = serde_json::from_str(&view)?;
    assert_eq!(view["status"], "submitted", "{view}");
    assert_eq!((view["amount_minor"].as_i64(), view["provider"].as_str()), (Some(1250), Some("stripe")));
    let etag = headers.get("etag").context("etag")?.clone();
    let (status, _, _) = client.get(&location, Some(&etag)).await?;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    // With a version that is still current the wait is held, and bounded.
    let started = Instant::now();
    let (status, _, _) = client.get(&format!("{location}?wait=1s"), Some(&etag)).await?;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert!(started.elapsed() >= Duration::from_millis(900) && started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    let (status, _, listed) = client.get("/v1/payouts?status=submitted", None).await?;
    assert_eq!(status, StatusCode::OK);
    assert!(listed.contains(&id), "{listed}");
    let (status, headers, problem) = client.get("/v1/payouts/po_unknown", None).await?;
    assert_problem(status, &headers, &serde_json::from_str(&problem)?, 404, "not_found", "permanent");

    // On the bus: one command, in the canonical encoding the worker reads,
    // carrying the caller's key, correlation id and trace.
    let reader = switchyard_e2e::TopicReader::new(&env.kafka, &env.topic("payouts.commands.v1"))?;
    let records = reader.read_up_to(10, Duration::from_secs(3)).await?;
    assert_eq!(records.len(), 1, "the replayed request published nothing");
    let decoder = AvroDecoder::new(env.registry_client.clone(), switchyard_gateway::PAYOUT_COMMAND_SCHEMA)?;
    let command: PayoutCommand = decoder.decode(&records[0].payload).await?;
    assert_eq!((command.payout_id.as_str(), command.idempotency_key.as_str(), command.amount_minor), (id.as_str(), key.as_str(), 1250));
    assert_eq!(records[0].key, id.as_bytes());
    assert_eq!(records[0].headers.get("idempotency-key"), Some(&key));
    assert_eq!(records[0].headers.get("correlation-id").map(String::as_str), Some("corr-gw-1"));
    let sent_trace = records[0].headers.get("traceparent").context("traceparent")?;
    assert!(sent_trace.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "{sent_trace}");
    assert_eq!(sim.ledger().len(), 1, "executed once");
    shutdown.cancel();
    worker.join.await??;
    gateway.join.await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_still_in_flight_is_answered_409_and_publishes_nothing() -> Result<()> {
    let env = TestEnv::new("gw-inflight").await?;
    let shutdown = CancellationToken::new();
    let gateway = start_gateway(gateway_config(&env, None), shutdown.clone()).await?;
    let client = Client::new(&gateway);
    let key = format!("{}key-1", env.prefix);
    // The first copy of the request holds the claim, as if still publishing.
    let store = switchyard_store::Store::connect(&switchyard_localstack::database_url()).await?;
    let requests = GatewayStore::open(&store).await?;
    let request: PayoutRequest = serde_json::from_value(body(700))?;
    let digest = request.digest(PAYMENTS);
    let claim = RequestClaim { domain: "payouts", idempotency_key: &key, request_digest: &digest, resource_id: &payout_id(&key), lease_ms: 60_000 };
    requests.claim(&claim).await?;

    let (status, headers, problem) = client.post(Some(&key), &body(700), &[]).await?;
    assert_problem(status, &headers, &problem, 409, "request_in_flight", "transient");
    assert_eq!(headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    let (status, headers, problem) = client.post(Some(&key), &body(701), &[]).await?;
    assert_problem(status, &headers, &problem, 422, "idempotency_collision", "permanent");
    let reader = switchyard_e2e::TopicReader::new(&env.kafka, &env.topic("payouts.commands.v1"))?;
    assert!(reader.read_up_to(1, Duration::from_secs(2)).await?.is_empty(), "nothing published");
    shutdown.cancel();
    gateway.join.await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_broker_a_post_is_answered_503_and_its_retry_is_accepted_once_the_broker_is_back() -> Result<()> {
    let env = TestEnv::new("gw-outage").await?;
    let shutdown = CancellationToken::new();
    // Nothing listens on port 9: every produce fails within the publish timeout.
    let down = start_gateway(gateway_config(&env, Some("127.0.0.1:9")), shutdown.clone()).await?;
    let key = format!("{}key-1", env.prefix);
    let started = Instant::now();
    let (status, headers, problem) = Client::new(&down).post(Some(&key), &body(900), &[]).await?;
    assert_problem(status, &headers, &problem, 503, "bus_unavailable", "transient");
    assert!(started.elapsed() < Duration::from_secs(6), "bounded by the publish timeout: {:?}", started.elapsed());
    let up = start_gateway(gateway_config(&env, None), shutdown.clone()).await?;
    let (status, headers, accepted) = Client::new(&up).post(Some(&key), &body(900), &[]).await?;
    assert_eq!(status, StatusCode::ACCEPTED, "the refused request left no claim behind: {accepted}");
    assert!(headers.get("idempotent-replayed").is_none());
    let reader = switchyard_e2e::TopicReader::new(&env.kafka, &env.topic("payouts.commands.v1"))?;
    assert_eq!(reader.read_up_to(10, Duration::from_secs(3)).await?.len(), 1, "only the acknowledged command is on the bus");
    shutdown.cancel();
    down.join.await??;
    up.join.await??;
    Ok(())
}

/// The producer is warmed (metadata of every command topic fetched through
/// it) before the listener is bound: a gateway back from `start_gateway`
/// is ready at once. Without a broker it still serves (POSTs answer 503),
/// and `/readyz` says the producer is not ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_producer_is_warmed_before_serving_and_readyz_says_so_until_it_is() -> Result<()> {
    let env = TestEnv::new("gw-warm").await?;
    let shutdown = CancellationToken::new();
    let up = start_gateway(gateway_config(&env, None), shutdown.clone()).await?;
    let ready = up.health.readiness().await;
    assert_eq!(ready.check("producer"), Some(&Ok(())), "warmed before start_gateway returned: {:?}", ready.checks);
    let down = start_gateway(gateway_config(&env, Some("127.0.0.1:9")), shutdown.clone()).await?;
    let ready = down.health.readiness().await;
    assert!(matches!(ready.check("producer"), Some(Err(_))) && !ready.is_ready(), "{:?}", ready.checks);
    let readyz = reqwest::get(format!("http://{}/readyz", down.addr)).await?;
    assert_eq!(readyz.status(), StatusCode::SERVICE_UNAVAILABLE, "served, and not ready");
    shutdown.cancel();
    up.join.await??;
    down.join.await??;
    Ok(())
}

/// The audit entries of one correlation id, once the gateway's group
/// commit has written them.
async fn audited(store: &switchyard_store::Store, correlation_id: &str, want: usize) -> Result<Vec<switchyard_store::audit::AuditRecord>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows: Vec<_> = store.audit_trail(&[correlation_id]).await?.into_iter().filter(|r| r.action == "gateway_call").collect();
        if rows.len() >= want || Instant::now() > deadline {
            return Ok(rows);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn teams_are_authenticated_scoped_kept_apart_and_every_call_is_audited() -> Result<()> {
    let env = TestEnv::new("gw-auth").await?;
    let shutdown = CancellationToken::new();
    let gateway = start_gateway(gateway_config(&env, None), shutdown.clone()).await?;
    let store = switchyard_store::Store::connect(&switchyard_localstack::database_url()).await?;
    let key = format!("{}key-1", env.prefix);
    let corr = |n: &str| format!("{}corr-{n}", env.prefix);

    // The API description is public, and the one committed.
    let served = reqwest::get(format!("http://{}/openapi.json", gateway.addr)).await?;
    assert_eq!(served.status(), StatusCode::OK);
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../services/gateway/openapi.json"))?;
    assert_eq!(served.text().await?, committed, "GET /openapi.json serves the committed document");

    // No key, a forged key, a key with the wrong scheme: 401, no detail on which.
    for (client, label) in [
        (Client::as_key(&gateway, None), "none"),
        (Client::as_key(&gateway, Some("sk-test-payments-0f3b")), "forged"),
    ] {
        let (status, headers, problem) = client.post(Some(&key), &body(100), &[("X-Correlation-Id", &corr(label))]).await?;
        assert_problem(status, &headers, &problem, 401, "unauthenticated", "permanent");
        assert!(headers.get("www-authenticate").is_some_and(|v| v.to_str().is_ok_and(|v| v.starts_with("Bearer"))));
        let (status, _, _) = client.get("/v1/payouts?status=paid", None).await?;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let basic = reqwest::Client::new()
        .get(format!("http://{}/v1/payouts?status=paid", gateway.addr))
        .header("Authorization", format!("Basic {PAYMENTS_KEY}"))
        .send()
        .await?;
    assert_eq!(basic.status(), StatusCode::UNAUTHORIZED, "only Bearer carries a key");

    // A team that may only read: 403 on POST, 200 on GET.
    let ops = Client::as_key(&gateway, Some(OPS_KEY));
    let (status, headers, problem) = ops.post(Some(&key), &body(100), &[("X-Correlation-Id", &corr("ops"))]).await?;
    assert_problem(status, &headers, &problem, 403, "forbidden", "permanent");
    assert!(problem["detail"].as_str().is_some_and(|d| d.contains("payouts:write")), "{problem}");
    assert_eq!(ops.get("/v1/payouts?status=paid", None).await?.0, StatusCode::OK);
    // A team that may only write: 403 on GET.
    let portal = Client::as_key(&gateway, Some(PORTAL_KEY));
    assert_eq!(portal.get("/v1/payouts?status=paid", None).await?.0, StatusCode::FORBIDDEN);

    // One key, two teams, the same body: the second is a collision, not a
    // replay of the first team's answer.
    let (status, _, accepted) = Client::new(&gateway).post(Some(&key), &body(100), &[("X-Correlation-Id", &corr("payments"))]).await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let (status, headers, problem) = portal.post(Some(&key), &body(100), &[]).await?;
    assert_problem(status, &headers, &problem, 422, "idempotency_collision", "permanent");

    // Audited: the team (or `unauthenticated`), the correlation id, method
    // and status; never the key or the body.
    for (label, actor, status) in [("none", "unauthenticated", 401), ("forged", "unauthenticated", 401), ("ops", "ops", 403), ("payments", PAYMENTS, 202)] {
        let rows = audited(&store, &corr(label), 1).await?;
        assert_eq!(rows.len(), 1, "{label}: {rows:?}");
        assert_eq!((rows[0].actor.as_str(), rows[0].subject_id.as_str()), (actor, "/v1/payouts"), "{label}");
        let detail: Value = serde_json::from_str(&rows[0].detail)?;
        assert_eq!((detail["method"].as_str(), detail["status"].as_u64()), (Some("POST"), Some(status)), "{label}");
        for secret in [PAYMENTS_KEY, OPS_KEY, "sk-test-payments-0f3b", "Ada Lovelace", "DE89370400440532013000", key.as_str()] {
            assert!(!rows[0].detail.contains(secret) && !rows[0].subject_id.contains(secret), "{label}: {rows:?}");
        }
    }
    shutdown.cancel();
    gateway.join.await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_team_over_its_rate_is_answered_429_with_retry_after_and_other_teams_are_not() -> Result<()> {
    let env = TestEnv::new("gw-limit").await?;
    let shutdown = CancellationToken::new();
    let gateway = start_gateway(gateway_config(&env, None), shutdown.clone()).await?;
    let (batch, ops) = (Client::as_key(&gateway, Some(BATCH_KEY)), Client::as_key(&gateway, Some(OPS_KEY)));
    let list = "/v1/payouts?status=paid";
    let started = Instant::now();
    assert_eq!(batch.get(list, None).await?.0, StatusCode::OK);
    assert_eq!(batch.get(list, None).await?.0, StatusCode::OK, "the burst");
    let (status, headers, problem) = batch.get(list, None).await?;
    assert_problem(status, &headers, &serde_json::from_str(&problem)?, 429, "rate_limited", "transient");
    assert_eq!(headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    assert!(started.elapsed() < Duration::from_millis(500), "three calls within the refill: {:?}", started.elapsed());
    for _ in 0..5 {
        assert_eq!(ops.get(list, None).await?.0, StatusCode::OK, "another team's bucket is its own");
    }
    // Retry-After is honest: after it, a token is back.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(batch.get(list, None).await?.0, StatusCode::OK);
    shutdown.cancel();
    gateway.join.await??;
    Ok(())
}
