//! The gateway's card routes end to end: real broker, real PostgreSQL, the
//! card worker in-process over the Lithic and Marqeta simulators (one card
//! oracle), the gateway on an ephemeral port, called over HTTP.
//!
//! - a card issued over HTTP, activated, refused an illegal move, listed;
//!   its view never carries the processor's token for the card;
//! - the same ISSUE sent by a core system on the bus under the HTTP key,
//!   before the HTTP POST, and redelivered after: the worker's claim meets
//!   all three, and the simulators' card oracle counts exactly one card for
//!   the card id (an oracle independent of the worker's own records);
//! - a team without `cards:write` gets 403; a transition of an unknown card 404.

use anyhow::{Context, Result};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;
use switchyard_adapters::secret::SecretSource;
use switchyard_bus::{Outbound, Publisher};
use switchyard_canonical::card::{CardAction, CardForm, IssueSpec};
use switchyard_canonical::card_outcome::CardOutcome;
use switchyard_e2e::cards::{command, config, Processors};
use switchyard_e2e::checks::{CommandProducer, OutcomeReader};
use switchyard_e2e::{TestEnv, TopicReader};
use switchyard_gateway::cards::card_id;
use switchyard_gateway::config::{GatewayConfig, GatewayTopics, TeamConfig};
use switchyard_gateway::start_gateway;
use switchyard_simulators::FaultPlan;
use switchyard_worker::card::run::start_card_worker;
use switchyard_worker::card::{CARD_COMMAND_SCHEMA, CARD_OUTCOME_SCHEMA};
use tokio_util::sync::CancellationToken;

const KEY: &str = "sk-test-cards-5e21";
const READ_ONLY_KEY: &str = "sk-test-cards-ro-0c7d";

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
        teams: vec![team("cards-app", KEY, &["cards:write", "cards:read"]), team("viewer", READ_ONLY_KEY, &["cards:read"])],
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn post(&self, key: &str, path: &str, idempotency_key: &str, body: &Value) -> Result<(StatusCode, reqwest::header::HeaderMap, Value)> {
        let response =
            self.http.post(format!("{}{path}", self.base)).bearer_auth(key).header("Idempotency-Key", idempotency_key).json(body).send().await?;
        let (status, headers) = (response.status(), response.headers().clone());
        Ok((status, headers, response.json().await?))
    }

    /// Long-polls `path` until `done` holds; the view and its ETag. A
    /// command's change may reach the view in two steps (the processor's
    /// card event, then the command's outcome), so a test waits for the
    /// state it expects rather than for the next version.
    async fn until(&self, path: &str, done: impl Fn(&Value) -> bool) -> Result<(Value, String)> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut etag: Option<String> = None;
        loop {
            let (view, tag) = self.next(path, etag.as_deref()).await?;
            if done(&view) {
                return Ok((view, tag));
            }
            anyhow::ensure!(std::time::Instant::now() < deadline, "{path} never got there; last {view}");
            etag = Some(tag);
        }
    }

    /// Long-polls `path` until it differs from `etag` (or, without one,
    /// until its first outcome); the view and its ETag.
    async fn next(&self, path: &str, etag: Option<&str>) -> Result<(Value, String)> {
        let mut request = self.http.get(format!("{}{path}?wait=20s", self.base)).bearer_auth(KEY);
        if let Some(etag) = etag {
            request = request.header("If-None-Match", etag);
        }
        let response = request.send().await?;
        anyhow::ensure!(response.status() == StatusCode::OK, "GET {path}: {}", response.status());
        let etag = response.headers().get("etag").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        Ok((response.json().await?, etag))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_card_issued_over_http_is_issued_once_moves_through_its_lifecycle_and_never_shows_its_token() -> Result<()> {
    let env = TestEnv::new("gw-cards").await?;
    let processors = Processors::start(FaultPlan::default()).await?;
    let shutdown = CancellationToken::new();
    let worker = start_card_worker(config(&env, &processors, "lithic", 2_000), shutdown.clone()).await?;
    let gateway = start_gateway(gateway_config(&env), shutdown.clone()).await?;
    let client = Client { http: reqwest::Client::new(), base: format!("http://{}", gateway.addr) };
    let outcomes = OutcomeReader::new(&env, "cards", CARD_OUTCOME_SCHEMA)?;
    let run = &env.prefix;
    let body = json!({"form": "virtual", "product": "debit-classic", "cardholder_ref": format!("{run}cust-1")});

    // A core system sends the very ISSUE the HTTP request stands for (same
    // key, same card id, same terms) on the bus first.
    let key = format!("{run}card-1");
    let id = card_id(&key);
    let mut from_core = command(&id, &key, CardAction::Issue);
    from_core.issue = Some(IssueSpec { form: CardForm::Virtual, product: "debit-classic".into(), cardholder_ref: format!("{run}cust-1"), shipping: None });
    CommandProducer::new(&env, "cards", CARD_COMMAND_SCHEMA).await?.send(&id, &key, &from_core).await?;
    let (first, _) = outcomes.collect::<CardOutcome>(1, Duration::from_secs(30)).await?.remove(0);
    assert_eq!((first.idempotency_key.as_str(), first.replayed), (key.as_str(), false), "{first:?}");

    let (status, headers, problem) = client.post(READ_ONLY_KEY, "/v1/cards", &format!("{run}card-ro"), &body).await?;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")), "{problem}");
    assert!(headers.get("location").is_none());

    let (status, headers, accepted) = client.post(KEY, "/v1/cards", &key, &body).await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let location = headers.get("location").and_then(|v| v.to_str().ok()).context("location")?.to_owned();
    assert_eq!(location, format!("/v1/cards/{id}"));
    assert_eq!((accepted["id"].as_str(), accepted["status"].as_str()), (Some(id.as_str()), Some("accepted")), "{accepted}");

    // The HTTP command meets the bus command's claim: answered from the
    // store, the same success, no processor call.
    let (answer, _) = outcomes.collect::<CardOutcome>(1, Duration::from_secs(30)).await?.remove(0);
    assert_eq!((answer.idempotency_key.as_str(), answer.replayed), (key.as_str(), true), "{answer:?}");
    let token = first.processor_reference.clone().context("the processor's token for the card")?;
    let (view, _) = client.until(&location, |v| v["last_command"]["status"] == "succeeded").await?;
    assert_eq!((view["status"].as_str(), view["provider"].as_str(), view["terminal"].as_bool()), (Some("issued"), Some("lithic"), Some(false)), "{view}");
    assert_eq!((view["last_command"]["action"].as_str(), view["last_command"]["status"].as_str()), (Some("issue"), Some("succeeded")), "{view}");
    assert_eq!(view["last_four"].as_str(), first.last_four.as_deref(), "{view}");
    assert!(!view.to_string().contains(&token), "the processor's token is never in a view: {view}");

    // Activate; then REINSTATE, which an active card does not allow:
    // refused before any processor call, the card unchanged.
    let (status, _, current) = client.post(KEY, &format!("{location}/transitions"), &format!("{run}card-1-activate"), &json!({"action": "activate"})).await?;
    assert_eq!((status, current["status"].as_str()), (StatusCode::ACCEPTED, Some("issued")), "answered with the card as it was: {current}");
    let (view, _) = client.until(&location, |v| v["last_command"]["action"] == "activate").await?;
    assert_eq!((view["status"].as_str(), view["last_command"]["status"].as_str()), (Some("active"), Some("succeeded")), "{view}");
    let calls = processors.lithic.stats().requests;
    let (status, _, _) = client.post(KEY, &format!("{location}/transitions"), &format!("{run}card-1-reinstate"), &json!({"action": "reinstate"})).await?;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (view, _) = client.until(&location, |v| v["last_command"]["action"] == "reinstate").await?;
    assert_eq!(
        (view["status"].as_str(), view["last_command"]["action"].as_str(), view["last_command"]["status"].as_str(), view["last_command"]["refusal"].as_str()),
        (Some("active"), Some("reinstate"), Some("rejected"), Some("illegal_transition")),
        "{view}"
    );
    assert_eq!(processors.lithic.stats().requests, calls, "no processor call for a refused move");

    let listed = client.http.get(format!("{}/v1/cards?status=active", client.base)).bearer_auth(READ_ONLY_KEY).send().await?;
    assert_eq!(listed.status(), StatusCode::OK);
    let listed: Value = listed.json().await?;
    assert!(listed["items"].as_array().is_some_and(|items| items.iter().any(|c| c["id"] == id.as_str())), "{listed}");
    let (status, _, problem) = client.post(KEY, &format!("/v1/cards/{run}ghost/transitions"), &format!("{run}ghost-1"), &json!({"action": "activate"})).await?;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")), "{problem}");

    // The HTTP command redelivered on the bus, and the HTTP request retried.
    let reader = TopicReader::new(&env.kafka, &env.topic("cards.commands.v1"))?;
    let records = reader.read_up_to(10, Duration::from_secs(3)).await?;
    // The core system's command came first, the gateway's second.
    let record = records.iter().filter(|r| r.headers.get("idempotency-key") == Some(&key)).nth(1).context("the HTTP command")?;
    let headers = record.headers.iter().map(|(k, v)| (k.clone(), v.clone().into_bytes())).collect();
    Publisher::new(&env.kafka)?
        .publish(&Outbound { topic: env.topic("cards.commands.v1"), key: Some(record.key.clone()), payload: record.payload.clone(), headers })
        .await?;
    let (status, headers, replayed) = client.post(KEY, "/v1/cards", &key, &body).await?;
    assert_eq!((status, headers.get("idempotent-replayed").and_then(|v| v.to_str().ok())), (StatusCode::ACCEPTED, Some("true")), "{replayed}");
    let later = outcomes.collect::<CardOutcome>(3, Duration::from_secs(30)).await?;
    let redelivered: Vec<&CardOutcome> = later.iter().map(|(o, _)| o).filter(|o| o.idempotency_key == key).collect();
    assert!(redelivered.len() == 1 && redelivered[0].replayed, "the redelivery is answered from the store: {later:?}");
    processors.assert_issued_once(std::slice::from_ref(&id));

    // The processor closes the card on its own (Lithic's `card.closed`, as
    // the ingester publishes it): no command, no outcome of ours, one
    // CARD_TERMINATED on cards.events.v1, and the view follows it.
    let (before, _) = client.next(&location, None).await?;
    assert_eq!(before["status"].as_str(), Some("active"), "{before}");
    closed_by_the_processor(&env, &token).await?;
    let (view, _) = client.until(&location, |v| v["status"] != "active").await?;
    assert_eq!((view["status"].as_str(), view["terminal"].as_bool()), (Some("terminated"), Some(true)), "{view}");
    assert_eq!(view["last_command"], before["last_command"], "the last command is still the outcomes': {view}");
    assert!(!view.to_string().contains(&token), "{view}");

    shutdown.cancel();
    gateway.join.await??;
    worker.join.await??;
    Ok(())
}

/// Lithic's `card.closed` for the card behind `token`, on the card
/// provider-event topic as the webhook ingester publishes it.
async fn closed_by_the_processor(env: &TestEnv, token: &str) -> Result<()> {
    use switchyard_canonical::{ProviderEvent, ProviderEventKind};
    let topic = env.topic("cards.provider-events.v1");
    let encoder = switchyard_bus::AvroEncoder::register(&env.registry_client, &topic, switchyard_ingester::PROVIDER_EVENT_SCHEMA).await?;
    let now = switchyard_canonical::now_ms();
    let event = ProviderEvent {
        event_id: format!("{}evt-closed", env.prefix),
        provider: "lithic".into(),
        domain: "cards".into(),
        subject_id: token.into(),
        provider_reference: token.into(),
        kind: ProviderEventKind::CardClosed,
        vendor_event_type: "card.closed".into(),
        amount_minor: None,
        currency: None,
        reason: None,
        occurred_at_ms: now,
        received_at_ms: now,
        payload_sha256: String::new(),
    };
    let record = Outbound { topic, key: Some(token.as_bytes().to_vec()), payload: encoder.encode(&event)?, headers: Vec::new() };
    Publisher::new(&env.kafka)?.publish(&record).await?;
    Ok(())
}
