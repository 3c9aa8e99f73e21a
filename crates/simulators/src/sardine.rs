//! Sardine risk API simulator: `POST /v1/customers` (score) and
//! `POST /v1/feedbacks`.
//!
//! - Auth: HTTP Basic `clientId:clientSecret`; otherwise 401 `{message}`.
//! - Score body: `sessionKey`, `flow`, `customer {id, emailAddress, phone}`,
//!   `transaction {id, amount, currencyCode, actionType}`, `checkpoints`;
//!   missing `sessionKey` or `customer.id` -> 400.
//! - Reply: `{sessionKey, level, status: "Success", customer {score, level,
//!   signals[{key, value}]}, checkpoints}`; `level` low | medium | high |
//!   very_high is the decision field.
//! - Feedback body: `sessionKey`, `customer {id}`, `transaction {id}`,
//!   `feedback {type, status, reason, timeMillis}`; a customer never scored
//!   -> 400. Reply `{status: "Success"}`.
//! - Every score is a ledger entry.
//!
//! Magic inputs: `checks::fraud_magic`.
//!
//! UNCONFIRMED: the feedback endpoint and body (not publicly documented),
//! deduplication by `sessionKey` (same body replayed, other body -> 409),
//! signal keys, error bodies.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::checks::canonical_hash;
use crate::checks::fraud_magic::{assess, Risk, Signal};
use crate::engine::{Admit, Engine, Saved};
use crate::faults::Fault;
use crate::util::{header_str, json_reply, now_ms, pause, to_bytes};
use crate::{ExecutedPayout, FaultPlan, SimulatorHandle};

#[derive(Clone, Debug)]
pub struct SardineConfig {
    pub bind: SocketAddr,
    pub client_id: String,
    pub client_secret: String,
    pub faults: FaultPlan,
}

impl SardineConfig {
    /// 127.0.0.1 on an ephemeral port, `sardine_test_client:sardine-secret`.
    pub fn local() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            client_id: "sardine_test_client".to_owned(),
            client_secret: "sardine-secret".to_owned(),
            faults: FaultPlan::default(),
        }
    }
}

struct Sim {
    engine: Arc<Engine<()>>,
    basic: String,
    customers: Mutex<HashSet<String>>,
}

pub async fn spawn_sardine(cfg: SardineConfig) -> std::io::Result<SimulatorHandle> {
    let engine = Engine::new(cfg.faults);
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", cfg.client_id, cfg.client_secret));
    let sim = Arc::new(Sim { engine: Arc::clone(&engine), basic, customers: Mutex::default() });
    let api = Router::new().route("/v1/customers", post(score)).route("/v1/feedbacks", post(feedback)).with_state(sim);
    crate::server::spawn(cfg.bind, api, engine, "sardine").await
}

fn message(status: StatusCode, text: &str) -> Response {
    json_reply(status, to_bytes(&json!({ "message": text })), &[])
}

fn fault_reply(fault: Fault) -> Response {
    match fault {
        Fault::ServerError { unavailable: true } => message(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable"),
        Fault::ServerError { unavailable: false } => message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"),
        Fault::RateLimited { secs } => {
            let mut r = message(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
            r
        }
    }
}

async fn authorized(sim: &Sim, headers: &HeaderMap) -> Result<(), Response> {
    if header_str(headers, "authorization").and_then(|v| v.strip_prefix("Basic ")) == Some(sim.basic.as_str()) {
        return Ok(());
    }
    pause(sim.engine.reject(true)).await;
    Err(message(StatusCode::UNAUTHORIZED, "Unauthorized"))
}

fn signal_key(s: Signal) -> (&'static str, &'static str) {
    match s {
        Signal::Blocklisted => ("isBlocklisted", "true"),
        Signal::DisposableEmail => ("isDisposableEmail", "true"),
        Signal::Proxy => ("proxyLevel", "high"),
        Signal::Amount => ("amountLevel", "high"),
    }
}

async fn score(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = authorized(&sim, &headers).await {
        return r;
    }
    let Ok(json) = serde_json::from_slice::<Value>(&body) else {
        return message(StatusCode::BAD_REQUEST, "Invalid JSON");
    };
    let session = json.get("sessionKey").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
    let customer = json.pointer("/customer/id").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
    let (Some(session), Some(customer)) = (session, customer) else {
        pause(sim.engine.reject(false)).await;
        return message(StatusCode::BAD_REQUEST, "sessionKey and customer.id are required");
    };
    match sim.engine.admit(Some(&session), canonical_hash(&json)) {
        Admit::Fault { latency, fault } => {
            pause(latency).await;
            fault_reply(fault)
        }
        Admit::Replay { latency, reply } => {
            pause(latency).await;
            json_reply(reply.status, reply.body, &[])
        }
        Admit::Mismatch { latency } | Admit::InFlight { latency } => {
            pause(latency).await;
            message(StatusCode::CONFLICT, "sessionKey was already used with a different payload")
        }
        Admit::Proceed { latency, hang, ticket } => {
            pause(latency).await;
            let email = json.pointer("/customer/emailAddress").and_then(Value::as_str);
            let amount = json.pointer("/transaction/amount").and_then(Value::as_f64);
            let ip = json.pointer("/customer/ipAddress").and_then(Value::as_str).or_else(|| json.get("ipAddress").and_then(Value::as_str));
            let (risk, signals) = assess(email, ip, amount);
            let (level, score) = match risk {
                Risk::Allow => ("low", 12),
                Risk::Review => ("high", 78),
                Risk::Block => ("very_high", 97),
            };
            let signals: Vec<Value> = signals.into_iter().map(signal_key).map(|(k, v)| json!({ "key": k, "value": v })).collect();
            let reply = json!({
                "sessionKey": session, "level": level, "status": "Success",
                "customer": { "score": score, "level": level, "signals": signals },
                "checkpoints": { "customer": { "customerPurchaseLevel": { "value": level } } },
            });
            let saved = Saved { status: StatusCode::OK, body: to_bytes(&reply) };
            sim.customers.lock().unwrap_or_else(|p| p.into_inner()).insert(customer.clone());
            let executed = ExecutedPayout {
                vendor: "sardine".to_owned(),
                vendor_id: session.clone(),
                idempotency_key: ticket.key().to_owned(),
                amount_minor: 0,
                currency: String::new(),
                reference: customer,
                executed_at_ms: now_ms(),
                ..ExecutedPayout::default()
            };
            ticket.commit(None, Some(executed), &saved);
            if let Some(h) = hang {
                pause(h).await;
            }
            json_reply(saved.status, saved.body, &[])
        }
    }
}

async fn feedback(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = authorized(&sim, &headers).await {
        return r;
    }
    let Ok(json) = serde_json::from_slice::<Value>(&body) else {
        return message(StatusCode::BAD_REQUEST, "Invalid JSON");
    };
    let customer = json.pointer("/customer/id").and_then(Value::as_str).unwrap_or_default();
    let known = sim.customers.lock().unwrap_or_else(|p| p.into_inner()).contains(customer);
    if !known || json.pointer("/feedback/type").is_none() {
        pause(sim.engine.reject(false)).await;
        return message(StatusCode::BAD_REQUEST, "feedback needs a scored customer and feedback.type");
    }
    match sim.engine.admit(None, 0) {
        Admit::Fault { latency, fault } => {
            pause(latency).await;
            fault_reply(fault)
        }
        Admit::Proceed { latency, ticket, .. } => {
            pause(latency).await;
            drop(ticket);
            json_reply(StatusCode::OK, to_bytes(&json!({ "status": "Success" })), &[])
        }
        Admit::Replay { latency, .. } | Admit::Mismatch { latency } | Admit::InFlight { latency } => {
            pause(latency).await;
            json_reply(StatusCode::OK, to_bytes(&json!({ "status": "Success" })), &[])
        }
    }
}
