//! The gateway's callbacks to consuming teams, end to end: a payout POSTed
//! over HTTP, its outcomes published on the bus as the worker would, and a
//! receiver in the test that checks every delivery with the official
//! Standard Webhooks library (`standardwebhooks`), not with our code.
//!
//! Team names carry the stack's prefix: the outbox is shared by every
//! gateway on the test database, and a gateway claims only deliveries of
//! the teams it has a callback for.

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_adapters::secret::SecretSource;
use switchyard_bus::{AvroEncoder, Outbound, Publisher};
use switchyard_canonical::{PayoutOutcome, PayoutStatus};
use switchyard_e2e::TestEnv;
use switchyard_gateway::callbacks::delivery_id;
use switchyard_gateway::config::{CallbackConfig, GatewayConfig, GatewayTopics, TeamConfig};
use switchyard_gateway::payouts::payout_id;
use switchyard_gateway::{start_gateway, RunningGateway};
use switchyard_store::gateway_callbacks::CallbackStore;
use tokio_util::sync::CancellationToken;

const APP_KEY: &str = "sk-test-callbacks-app-41d0";
const QUIET_KEY: &str = "sk-test-callbacks-quiet-8e2c";

fn secret() -> String {
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(b"switchyard gateway callbacks test key"))
}

/// One delivery as the receiver saw it.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    /// What `standardwebhooks::Webhook::verify` said.
    verified: Result<(), String>,
    body: Value,
    at: Instant,
}

/// A team's endpoint: answers from `answers` first (then 200), records everything.
#[derive(Clone, Default)]
struct Receiver {
    answers: Arc<Mutex<VecDeque<u16>>>,
    received: Arc<Mutex<Vec<Received>>>,
    /// How long each answer takes.
    delay: Duration,
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let verified = standardwebhooks::Webhook::new(&secret()).and_then(|w| w.verify(&body, &headers)).map_err(|e| e.to_string());
    let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    receiver.received.lock().expect("lock").push(Received { id, verified, body, at: Instant::now() });
    let answer = receiver.answers.lock().expect("lock").pop_front().unwrap_or(200);
    tokio::time::sleep(receiver.delay).await;
    StatusCode::from_u16(answer).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl Receiver {
    async fn spawn(answers: &[u16]) -> Result<(Self, String)> {
        Self::spawn_slow(answers, Duration::ZERO).await
    }

    async fn spawn_slow(answers: &[u16], delay: Duration) -> Result<(Self, String)> {
        let receiver = Self { answers: Arc::new(Mutex::new(answers.iter().copied().collect())), delay, ..Self::default() };
        let app = axum::Router::new().route("/hooks", axum::routing::post(receive)).with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hooks", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok((receiver, url))
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }

    /// Waits until `n` deliveries came, or 30 s.
    async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.received().len() < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.received()
    }
}

fn callback(url: &str, max_attempts: u32) -> CallbackConfig {
    CallbackConfig { url: url.to_owned(), secret: SecretSource::inline(&secret()), max_attempts, min_backoff_ms: 100, max_backoff_ms: 400, timeout_ms: 2_000 }
}

fn team(name: String, key: &str, callback: Option<CallbackConfig>) -> TeamConfig {
    TeamConfig {
        name,
        api_keys: vec![SecretSource::inline(key)],
        oauth2_client_ids: Vec::new(),
        scopes: vec!["payouts:write".into(), "payouts:read".into()],
        rate_limit: None,
        callback,
    }
}

fn gateway_config(env: &TestEnv, teams: Vec<TeamConfig>) -> GatewayConfig {
    let mut kafka = env.kafka.clone();
    kafka.group_id = format!("{}gateway", env.prefix);
    GatewayConfig {
        bind: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        kafka,
        schema_registry_url: env.registry.base_url(),
        database_url: switchyard_localstack::database_url(),
        topics: GatewayTopics::with_prefix(&env.prefix),
        max_body_bytes: 16 * 1024,
        publish_timeout_ms: 5_000,
        lease_ms: 10_000,
        max_wait_ms: 10_000,
        teams,
        oauth2: None,
    }
}

/// POSTs a payout as the holder of `key`; its id.
async fn post_payout(gateway: &RunningGateway, key: &str, idempotency_key: &str) -> Result<String> {
    let body = json!({
        "amount_minor": 4200, "currency": "EUR", "reference": "invoice 7",
        "beneficiary": {"name": "Ada Lovelace", "iban": "DE89370400440532013000", "country": "DE"},
    });
    let response = reqwest::Client::new()
        .post(format!("http://{}/v1/payouts", gateway.addr))
        .bearer_auth(key)
        .header("Idempotency-Key", idempotency_key)
        .json(&body)
        .send()
        .await?;
    anyhow::ensure!(response.status() == reqwest::StatusCode::ACCEPTED, "POST answered {}", response.status());
    Ok(payout_id(idempotency_key))
}

async fn get_payout(gateway: &RunningGateway, key: &str, id: &str) -> Result<Value> {
    let response = reqwest::Client::new().get(format!("http://{}/v1/payouts/{id}", gateway.addr)).bearer_auth(key).send().await?;
    Ok(response.json().await?)
}

/// Publishes payout outcomes as the worker does.
struct Outcomes {
    publisher: Publisher,
    encoder: AvroEncoder,
    topic: String,
}

impl Outcomes {
    async fn new(env: &TestEnv) -> Result<Self> {
        let topic = env.topic("payouts.outcomes.v1");
        let encoder = AvroEncoder::register(&env.registry_client, &topic, switchyard_gateway::PAYOUT_OUTCOME_SCHEMA).await?;
        Ok(Self { publisher: Publisher::new(&env.kafka)?, encoder, topic })
    }

    async fn publish(&self, id: &str, idempotency_key: &str, status: PayoutStatus, completed_at_ms: i64) -> Result<()> {
        let outcome = PayoutOutcome {
            payout_id: id.to_owned(),
            idempotency_key: idempotency_key.to_owned(),
            status,
            amount_minor: 4200,
            currency: "EUR".into(),
            provider: Some("stripe".into()),
            provider_reference: Some(format!("po_sim_{id}")),
            error: None,
            attempts: 1,
            replayed: false,
            completed_at_ms,
        };
        let record = Outbound { topic: self.topic.clone(), key: Some(id.as_bytes().to_vec()), payload: self.encoder.encode(&outcome)?, headers: Vec::new() };
        self.publisher.publish(&record).await?;
        Ok(())
    }
}

/// Waits until the payout's view shows `status`.
async fn projected(gateway: &RunningGateway, key: &str, id: &str, status: &str) -> Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let view = get_payout(gateway, key, id).await?;
        if view["status"] == status || Instant::now() > deadline {
            return Ok(view);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paid_payout_is_called_back_once_signed_and_a_replayed_outcome_or_a_quiet_team_adds_nothing() -> Result<()> {
    let env = TestEnv::new("gw-callbacks").await?;
    let (receiver, url) = Receiver::spawn(&[]).await?;
    let (app, quiet) = (format!("{}app", env.prefix), format!("{}quiet", env.prefix));
    let config = gateway_config(&env, vec![team(app.clone(), APP_KEY, Some(callback(&url, 5))), team(quiet.clone(), QUIET_KEY, None)]);
    let shutdown = CancellationToken::new();
    let gateway = start_gateway(config, shutdown.clone()).await?;
    let outcomes = Outcomes::new(&env).await?;
    let (key, quiet_key) = (format!("{}pay-1", env.prefix), format!("{}pay-2", env.prefix));
    let id = post_payout(&gateway, APP_KEY, &key).await?;
    let quiet_id = post_payout(&gateway, QUIET_KEY, &quiet_key).await?;

    let now = switchyard_canonical::now_ms();
    outcomes.publish(&id, &key, PayoutStatus::Submitted, now).await?;
    let paid_at = Instant::now();
    outcomes.publish(&id, &key, PayoutStatus::Paid, now + 1).await?;
    outcomes.publish(&quiet_id, &quiet_key, PayoutStatus::Paid, now + 1).await?;
    let view = projected(&gateway, APP_KEY, &id, "paid").await?;
    assert_eq!(view["status"], "paid", "{view}");
    assert_eq!(projected(&gateway, QUIET_KEY, &quiet_id, "paid").await?["status"], "paid");

    let received = receiver.wait_for(1).await;
    assert_eq!(received.len(), 1, "{received:?}");
    let delivery = &received[0];
    eprintln!("paid outcome published -> callback received: {:?}", delivery.at.duration_since(paid_at));
    assert_eq!(delivery.verified, Ok(()), "the official verifier accepts the signature");
    assert_eq!(delivery.id, delivery_id("payouts", &id, "paid"));
    assert_eq!(delivery.body["type"], "payout.paid", "{}", delivery.body);
    assert_eq!(delivery.body["data"], view, "the body is the view GET answers");
    assert!(delivery.body["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')), "{}", delivery.body);

    // The outcome again (a redelivery, or a replay from the DLQ), and
    // an older non-terminal one: nothing new.
    outcomes.publish(&id, &key, PayoutStatus::Paid, now + 1).await?;
    outcomes.publish(&id, &key, PayoutStatus::Submitted, now).await?;
    // Projected after them on the same partition (same key): once this is
    // visible, the replays were handled.
    outcomes.publish(&id, &key, PayoutStatus::Paid, now + 2).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while get_payout(&gateway, APP_KEY, &id).await?["updated_at_ms"] != json!(now + 2) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(receiver.received().len(), 1, "one delivery per terminal state: {:?}", receiver.received());
    let store = CallbackStore::open(&switchyard_store::Store::connect(&switchyard_localstack::database_url()).await?).await?;
    let queued = store.of_resource("payouts", &id).await?;
    assert_eq!((queued.len(), queued[0].state.as_str(), queued[0].attempts), (1, "delivered", 1), "{queued:?}");
    assert!(store.of_resource("payouts", &quiet_id).await?.is_empty(), "a team without a callback gets none");
    let metrics = reqwest::get(format!("http://{}/metrics", gateway.addr)).await?.text().await?;
    assert!(metrics.contains(&format!("switchyard_gateway_callbacks_total{{team=\"{app}\",outcome=\"delivered\"}} 1")), "{metrics}");
    assert!(!metrics.contains(&secret()[6..]), "no secret on /metrics");
    shutdown.cancel();
    gateway.join.await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_receiver_is_retried_under_one_webhook_id_and_given_up_after_the_last_attempt() -> Result<()> {
    let env = TestEnv::new("gw-callback-retry").await?;
    let (flaky, flaky_url) = Receiver::spawn(&[500, 500]).await?;
    let (down, down_url) = Receiver::spawn(&[503, 503, 503, 503]).await?;
    let (app, gone) = (format!("{}app", env.prefix), format!("{}gone", env.prefix));
    let config = gateway_config(&env, vec![team(app.clone(), APP_KEY, Some(callback(&flaky_url, 5))), team(gone.clone(), QUIET_KEY, Some(callback(&down_url, 3)))]);
    let shutdown = CancellationToken::new();
    let gateway = start_gateway(config, shutdown.clone()).await?;
    let outcomes = Outcomes::new(&env).await?;
    let (key, gone_key) = (format!("{}pay-1", env.prefix), format!("{}pay-2", env.prefix));
    let id = post_payout(&gateway, APP_KEY, &key).await?;
    let gone_id = post_payout(&gateway, QUIET_KEY, &gone_key).await?;
    let now = switchyard_canonical::now_ms();
    outcomes.publish(&id, &key, PayoutStatus::Paid, now).await?;
    outcomes.publish(&gone_id, &gone_key, PayoutStatus::Failed, now).await?;

    let received = flaky.wait_for(3).await;
    assert_eq!(received.len(), 3, "500, 500, then 200: {received:?}");
    let expected = delivery_id("payouts", &id, "paid");
    assert!(received.iter().all(|r| r.id == expected && r.verified == Ok(())), "one webhook-id, every attempt signed: {received:?}");
    assert!(received.iter().all(|r| r.body == received[0].body), "the same body on every attempt");

    let store = CallbackStore::open(&switchyard_store::Store::connect(&switchyard_localstack::database_url()).await?).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let (delivered, given_up) = loop {
        let (delivered, given_up) = (store.of_resource("payouts", &id).await?, store.of_resource("payouts", &gone_id).await?);
        let settled = |c: &[switchyard_store::gateway_callbacks::Callback]| c.first().is_some_and(|c| c.state != "pending");
        if (settled(&delivered) && settled(&given_up)) || Instant::now() > deadline {
            break (delivered, given_up);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!((delivered[0].state.as_str(), delivered[0].attempts), ("delivered", 3), "{delivered:?}");
    assert_eq!((given_up[0].state.as_str(), given_up[0].attempts, given_up[0].last_error.as_deref()), ("failed", 3, Some("status 503")), "{given_up:?}");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(down.received().len(), 3, "max_attempts 3, then no more");
    let audit = switchyard_store::Store::connect(&switchyard_localstack::database_url()).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let trail = loop {
        let trail = audit.audit_trail(&[given_up[0].delivery_id.as_str()]).await?;
        if !trail.is_empty() || Instant::now() > deadline {
            break trail;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let failed = trail.iter().find(|r| r.action == "gateway_callback_failed").context("the give-up is audited")?;
    assert!(failed.detail.contains("status 503") && !failed.detail.contains(&secret()), "{}", failed.detail);
    shutdown.cancel();
    gateway.join.await??;
    Ok(())
}

/// Two gateway instances share the projection's group and the outbox: each
/// terminal state is delivered once, whichever instance projected it and
/// however their polls interleave (a slow receiver keeps deliveries in
/// flight across several polls of the other instance).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_gateway_instances_deliver_each_callback_once() -> Result<()> {
    let env = TestEnv::new("gw-callback-pair").await?;
    let (receiver, url) = Receiver::spawn_slow(&[], Duration::from_millis(600)).await?;
    let app = format!("{}app", env.prefix);
    let config = || gateway_config(&env, vec![team(app.clone(), APP_KEY, Some(callback(&url, 5)))]);
    let shutdown = CancellationToken::new();
    let (first, second) = (start_gateway(config(), shutdown.clone()).await?, start_gateway(config(), shutdown.clone()).await?);
    let outcomes = Outcomes::new(&env).await?;
    let now = switchyard_canonical::now_ms();
    let mut ids = Vec::new();
    for n in 0..12 {
        let key = format!("{}pay-{n}", env.prefix);
        let id = post_payout(if n % 2 == 0 { &first } else { &second }, APP_KEY, &key).await?;
        outcomes.publish(&id, &key, PayoutStatus::Paid, now).await?;
        ids.push(id);
    }
    let received = receiver.wait_for(ids.len()).await;
    // Time for a second copy of any of them to arrive.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let received = receiver.received().len().max(received.len());
    let mut seen: Vec<String> = receiver.received().into_iter().map(|r| r.id).collect();
    seen.sort();
    seen.dedup();
    assert_eq!((received, seen.len()), (ids.len(), ids.len()), "each payout called back once by one of the two instances");
    shutdown.cancel();
    first.join.await??;
    second.join.await??;
    Ok(())
}
