//! The gateway's open banking routes end to end: real broker, real
//! PostgreSQL, the open banking worker in-process over the Plaid
//! simulator, the gateway on an ephemeral port, called over HTTP.
//!
//! - a consent created over HTTP shows the AUTH_REQUIRED hand-off (the
//!   Link token the user is sent through), is completed with the public
//!   token the simulator's Link hands back, refreshed and revoked, each
//!   state served by GET with long polling; no view carries the provider's
//!   item id or the public token;
//! - the HTTP CREATE_CONSENT redelivered on the bus meets the HTTP key in
//!   the worker's claim: one Link token created at Plaid, counted by the
//!   simulator;
//! - a team without `openbanking:write` gets 403; a completion of an
//!   unknown consent 404.

#[path = "openbanking/support.rs"]
#[allow(dead_code)]
mod support;

use anyhow::{Context, Result};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;
use support::{Stack, INSTITUTION};
use switchyard_adapters::secret::SecretSource;
use switchyard_bus::{Outbound, Publisher};
use switchyard_canonical::openbanking_outcome::OpenBankingOutcome;
use switchyard_e2e::{TestEnv, TopicReader};
use switchyard_gateway::config::{GatewayConfig, GatewayTopics, TeamConfig};
use switchyard_gateway::openbanking::consent_id;
use switchyard_gateway::start_gateway;

const KEY: &str = "sk-test-ob-91d2";
const READ_ONLY_KEY: &str = "sk-test-ob-ro-33a0";

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
        teams: vec![team("money-app", KEY, &["openbanking:write", "openbanking:read"]), team("viewer", READ_ONLY_KEY, &["openbanking:read"])],
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
async fn a_consent_created_over_http_shows_its_hand_off_and_is_completed_refreshed_and_revoked() -> Result<()> {
    let stack = Stack::start("gw-ob").await?;
    let gateway = start_gateway(gateway_config(&stack.env), stack.shutdown.clone()).await?;
    let client = Client { http: reqwest::Client::new(), base: format!("http://{}", gateway.addr) };
    let run = stack.env.prefix.clone();
    let body = json!({
        "scopes": ["accounts", "balances", "transactions"],
        "customer_ref": format!("{run}cust-1"),
        "country": "US",
        "institution_id": INSTITUTION,
        "redirect_uri": "https://app.example.com/linked",
    });

    let (status, _, problem) = client.post(READ_ONLY_KEY, "/v1/openbanking/consents", &format!("{run}ob-ro"), &body).await?;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")), "{problem}");
    let key = format!("{run}consent-1");
    let id = consent_id(&key);
    let (status, location, accepted) = client.post(KEY, "/v1/openbanking/consents", &key, &body).await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let location = location.context("location")?;
    assert_eq!(location, format!("/v1/openbanking/consents/{id}"));
    assert_eq!((accepted["status"].as_str(), accepted["institution_id"].as_str()), (Some("accepted"), Some(INSTITUTION)), "{accepted}");

    // The hand-off: a Link token, which the simulator's Link accepts.
    let (view, etag) = client.next(&location, None).await?;
    assert_eq!((view["status"].as_str(), view["answer"].as_str(), view["provider"].as_str()), (Some("awaiting_user"), Some("auth_required"), Some("plaid")), "{view}");
    assert_eq!(view["handoff"]["kind"].as_str(), Some("link_token"), "{view}");
    let link_token = view["handoff"]["value"].as_str().context("the hand-off's value")?;
    let public_token = stack.plaid.complete_link(link_token).context("the simulator's Link accepts the hand-off")?;

    let (status, _, problem) = client.post(KEY, &format!("/v1/openbanking/consents/{run}ghost/completion"), &format!("{run}ghost-1"), &json!({"public_token": public_token})).await?;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")), "{problem}");
    let (status, _, current) = client.post(KEY, &format!("{location}/completion"), &format!("{run}consent-1-complete"), &json!({"public_token": public_token})).await?;
    assert_eq!((status, current["status"].as_str()), (StatusCode::ACCEPTED, Some("awaiting_user")), "answered with the consent as it was: {current}");
    let (view, etag) = client.next(&location, Some(&etag)).await?;
    assert_eq!((view["status"].as_str(), view["answer"].as_str()), (Some("active"), Some("consent_active")), "{view}");
    assert!(view.get("handoff").is_none(), "no hand-off once granted: {view}");
    assert!(!view.to_string().contains(&public_token), "{view}");

    // Every outcome so far: none of the provider's ids reach a view.
    let mut answered: Vec<OpenBankingOutcome> = Vec::new();
    for (outcome, _) in stack.outcomes.collect::<OpenBankingOutcome>(2, Duration::from_secs(30)).await? {
        answered.push(outcome);
    }
    let item = answered.iter().find_map(|o| o.provider_reference.clone()).context("the Plaid item id")?;
    assert!(!view.to_string().contains(&item), "the provider's item id is not in the view: {view}");

    let (status, _, _) = client.post(KEY, &format!("{location}/refresh"), &format!("{run}consent-1-refresh"), &json!({})).await?;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (view, etag) = client.next(&location, Some(&etag)).await?;
    assert_eq!((view["status"].as_str(), view["answer"].as_str()), (Some("active"), Some("data_refreshed")), "{view}");
    assert!(view["data_pages"].as_i64().is_some_and(|n| n > 0), "{view}");

    // The HTTP CREATE_CONSENT redelivered on the bus: answered from the
    // worker's claim, one Link token made at Plaid.
    let creates = stack.plaid.calls("/link/token/create");
    assert_eq!(creates, 1, "one hand-off made");
    let reader = TopicReader::new(&stack.env.kafka, &stack.env.topic("openbanking.commands.v1"))?;
    let records = reader.read_up_to(10, Duration::from_secs(3)).await?;
    let record = records.iter().find(|r| r.headers.get("idempotency-key") == Some(&key)).context("the HTTP command")?;
    let headers = record.headers.iter().map(|(k, v)| (k.clone(), v.clone().into_bytes())).collect();
    Publisher::new(&stack.env.kafka)?
        .publish(&Outbound { topic: stack.env.topic("openbanking.commands.v1"), key: Some(record.key.clone()), payload: record.payload.clone(), headers })
        .await?;
    let (refreshed, _) = stack.outcomes.collect::<OpenBankingOutcome>(1, Duration::from_secs(30)).await?.remove(0);
    assert_eq!(refreshed.idempotency_key, format!("{run}consent-1-refresh"));
    let replay = stack.answer_to(&key).await?;
    assert!(replay.replayed, "the redelivery is answered from the store: {replay:?}");
    assert_eq!(stack.plaid.calls("/link/token/create"), 1, "one vendor execution for the HTTP request and its bus redelivery");

    let (status, _, _) = client.post(KEY, &format!("{location}/revocation"), &format!("{run}consent-1-revoke"), &json!({"reason": "customer asked"})).await?;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (view, _) = client.next(&location, Some(&etag)).await?;
    assert_eq!((view["status"].as_str(), view["answer"].as_str()), (Some("revoked"), Some("revoked")), "{view}");

    let listed = client.http.get(format!("{}/v1/openbanking/consents?status=revoked", client.base)).bearer_auth(READ_ONLY_KEY).send().await?;
    assert_eq!(listed.status(), StatusCode::OK);
    let listed: Value = listed.json().await?;
    assert!(listed["items"].as_array().is_some_and(|items| items.iter().any(|c| c["id"] == id.as_str())), "{listed}");

    let shutdown = stack.shutdown.clone();
    stack.stop().await?;
    shutdown.cancel();
    gateway.join.await??;
    Ok(())
}
