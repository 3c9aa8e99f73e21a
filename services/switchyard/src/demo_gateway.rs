//! The HTTP part of `switchyard up`: the gateway on 127.0.0.1:8090 (the
//! example config's port; any free one if it is taken), one payout and one
//! onboarding application made over HTTP, each printed as the `curl` line a
//! reader can paste while the stack runs (`up --keep-running`), and followed
//! with `?wait=` to where the workers took it.

use anyhow::{bail, Context, Result};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use switchyard_bus::KafkaConfig;
use switchyard_gateway::config::{GatewayConfig, GatewayTopics, TeamConfig};
use switchyard_gateway::{start_gateway, RunningGateway};
use switchyard_localstack::LocalStack;
use tokio_util::sync::CancellationToken;

/// A demo-only key, printed on purpose: it opens nothing but this laptop's stack.
const DEMO_KEY: &str = "sk-demo-gateway-laptop-only";
const TEAM: &str = "
- name: demo-app
  api_keys: [{value: sk-demo-gateway-laptop-only}]
  scopes: [payouts:write, payouts:read, onboarding:write, onboarding:read]
";

pub(crate) struct GatewayDemo {
    running: RunningGateway,
}

impl GatewayDemo {
    pub(crate) async fn join(self) -> Result<()> {
        self.running.join.await??;
        Ok(())
    }
}

fn config(root: &Path, stack: &LocalStack, database_url: &str) -> Result<GatewayConfig> {
    // The example's settings, pointed at this stack, with one demo team.
    let mut config = GatewayConfig::load(&root.join("ops/gateway.example.yaml"))?;
    let preferred = SocketAddr::from(([127, 0, 0, 1], 8090));
    config.bind = if std::net::TcpListener::bind(preferred).is_ok() { preferred } else { SocketAddr::from(([127, 0, 0, 1], 0)) };
    config.kafka = KafkaConfig::new(stack.kafka.brokers.clone(), format!("{}gateway", stack.prefix));
    config.schema_registry_url = stack.registry.base_url();
    config.database_url = database_url.to_owned();
    config.topics = GatewayTopics::with_prefix(&stack.prefix);
    config.teams = serde_norway::from_str::<Vec<TeamConfig>>(TEAM).context("the demo team")?;
    Ok(config)
}

/// The line a reader pastes to make the same call.
fn curl_post(base: &str, path: &str, key: &str, body: &Value) -> String {
    format!("curl -si {base}{path} -H 'Authorization: Bearer {DEMO_KEY}' -H 'Idempotency-Key: {key}' -H 'Content-Type: application/json' -d '{body}'")
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn post(&self, path: &str, key: &str, body: &Value) -> Result<String> {
        let r = self.http.post(format!("{}{path}", self.base)).bearer_auth(DEMO_KEY).header("Idempotency-Key", key).json(body).send().await?;
        let status = r.status();
        let location = r.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let answer = r.text().await?;
        if status != StatusCode::ACCEPTED {
            bail!("POST {path}: {status} {answer}");
        }
        location.context("202 without a Location")
    }

    /// The resource once `done` says so, asking with `?wait=` (long polling).
    async fn until(&self, location: &str, done: impl Fn(&Value) -> bool) -> Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut etag: Option<String> = None;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            let mut request = self.http.get(format!("{}{location}?wait=5s", self.base)).bearer_auth(DEMO_KEY);
            if let Some(e) = &etag {
                request = request.header("If-None-Match", e);
            }
            let r = request.send().await?;
            if r.status() == StatusCode::OK {
                etag = r.headers().get("etag").and_then(|v| v.to_str().ok()).map(str::to_owned);
                last = r.json().await?;
                if done(&last) {
                    return Ok(last);
                }
            }
        }
        bail!("{location} did not get there within 60 s; last seen {last}")
    }
}

pub(crate) async fn show(root: &Path, stack: &LocalStack, database_url: &str, run: &str, shutdown: CancellationToken) -> Result<GatewayDemo> {
    let running = start_gateway(config(root, stack, database_url)?, shutdown).await?;
    let base = format!("http://{}", running.addr);
    println!("\nHTTP gateway {base}  (OpenAPI {base}/openapi.json; team demo-app, key {DEMO_KEY})");
    let client = Client { http: reqwest::Client::new(), base: base.clone() };

    let payout_key = format!("http-payout-{run}");
    let payout = json!({
        "amount_minor": 4_200, "currency": "EUR", "rail": "standard", "reference": format!("http {run}"),
        "beneficiary": {"name": "Ada Lovelace", "iban": "DE89370400440532013000", "country": "DE"},
    });
    println!("  {}", curl_post(&base, "/v1/payouts", &payout_key, &payout));
    let location = client.post("/v1/payouts", &payout_key, &payout).await?;
    println!("  -> 202 Accepted, Location: {location}");
    let view = client.until(&location, |v| v["status"].as_str().is_some_and(|s| s != "accepted")).await?;
    println!("  curl -s '{base}{location}?wait=10s' -H 'Authorization: Bearer {DEMO_KEY}'");
    println!("  -> status {} via {}", view["status"].as_str().unwrap_or("?"), view["provider"].as_str().unwrap_or("-"));

    let application_key = format!("http-onboarding-{run}");
    let application = json!({
        "subject_id": format!("app-{run}-http"),
        "applicant": {
            "person": {"first_name": "Ada", "last_name": "Lovelace", "date_of_birth": "1990-12-10", "email": "ada@example.com"},
            "document": {"kind": "passport", "issuing_country": "GBR", "front_ref": format!("doc://{run}/front")},
            "selfie_ref": format!("doc://{run}/selfie"), "nationality": "GB", "phone": "+447700900123", "ip": "192.0.2.10",
        },
    });
    println!("  {}", curl_post(&base, "/v1/onboarding/applications", &application_key, &application));
    let location = client.post("/v1/onboarding/applications", &application_key, &application).await?;
    println!("  -> 202 Accepted, Location: {location}");
    let view = client.until(&location, |v| v["terminal"].as_bool() == Some(true)).await?;
    println!("  curl -s '{base}{location}?wait=10s' -H 'Authorization: Bearer {DEMO_KEY}'");
    println!("  -> status {} (version {})", view["status"].as_str().unwrap_or("?"), view["version"]);
    Ok(GatewayDemo { running })
}
