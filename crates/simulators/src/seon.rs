//! SEON fraud API simulator: `POST /SeonRestService/fraud-api/v2/` (score)
//! and `PUT /SeonRestService/fraud-api/label/v1/{transaction_id}` (label).
//!
//! - Auth: `X-API-KEY`; otherwise 401 with the SEON envelope
//!   `{success: false, error: {code, message}, data: null}`.
//! - Score body: `action_type`, `user_id`, `transaction_id`, `email`,
//!   `phone_number`, `ip`, `session_id`, `transaction_amount`,
//!   `transaction_currency`. Reply `{success: true, error: {}, data: {id,
//!   state APPROVE|REVIEW|DECLINE, fraud_score 0-100, applied_rules[{id,
//!   name, operation, score}], version, calculation_time}}`.
//! - Idempotency: `transaction_id` is the natural key: the same body is
//!   answered with the same reply, another body under it -> 400.
//! - Label body `{label}`; unknown transaction -> 404. Each score is a
//!   ledger entry.
//!
//! Magic inputs: `checks::fraud_magic`.
//!
//! UNCONFIRMED: error codes (`1001`, `1008`, `3001`) and their HTTP
//! statuses, the label endpoint's single-transaction form and body, label
//! names other than `fraud_detection_chargeback_fraud`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{post, put};
use axum::Router;
use serde_json::{json, Value};

use crate::checks::canonical_hash;
use crate::checks::fraud_magic::{assess, Risk, Signal};
use crate::engine::{Admit, Engine, Saved};
use crate::faults::Fault;
use crate::util::{header_str, json_reply, now_ms, pause, random_id, to_bytes};
use crate::{ExecutedPayout, FaultPlan, SimulatorHandle};

#[derive(Clone, Debug)]
pub struct SeonConfig {
    pub bind: SocketAddr,
    pub api_key: String,
    pub faults: FaultPlan,
}

impl SeonConfig {
    /// 127.0.0.1 on an ephemeral port, key `seon_test_switchyard`.
    pub fn local() -> Self {
        Self { bind: SocketAddr::from(([127, 0, 0, 1], 0)), api_key: "seon_test_switchyard".to_owned(), faults: FaultPlan::default() }
    }
}

struct Sim {
    engine: Arc<Engine<()>>,
    api_key: String,
    transactions: Mutex<HashSet<String>>,
}

pub async fn spawn_seon(cfg: SeonConfig) -> std::io::Result<SimulatorHandle> {
    let engine = Engine::new(cfg.faults);
    let sim = Arc::new(Sim { engine: Arc::clone(&engine), api_key: cfg.api_key, transactions: Mutex::default() });
    let api = Router::new()
        .route("/SeonRestService/fraud-api/v2/", post(score))
        .route("/SeonRestService/fraud-api/label/v1/{transaction_id}", put(label))
        .with_state(sim);
    crate::server::spawn(cfg.bind, api, engine, "seon").await
}

fn envelope_error(status: StatusCode, code: &str, text: &str) -> Response {
    json_reply(status, to_bytes(&json!({ "success": false, "error": { "code": code, "message": text }, "data": null })), &[])
}

fn fault_reply(fault: Fault) -> Response {
    match fault {
        Fault::ServerError { unavailable: true } => envelope_error(StatusCode::SERVICE_UNAVAILABLE, "5003", "Service unavailable"),
        Fault::ServerError { unavailable: false } => envelope_error(StatusCode::INTERNAL_SERVER_ERROR, "5000", "Internal error"),
        Fault::RateLimited { secs } => {
            let mut r = envelope_error(StatusCode::TOO_MANY_REQUESTS, "4029", "Rate limit exceeded");
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
            r
        }
    }
}

async fn authorized(sim: &Sim, headers: &HeaderMap) -> Result<(), Response> {
    if header_str(headers, "x-api-key") == Some(sim.api_key.as_str()) {
        return Ok(());
    }
    pause(sim.engine.reject(true)).await;
    Err(envelope_error(StatusCode::UNAUTHORIZED, "1001", "Invalid license key"))
}

fn rule(s: Signal) -> Value {
    let (id, name, score) = match s {
        Signal::Blocklisted => ("E115", "Email address is on the blacklist", 100.0),
        Signal::DisposableEmail => ("E102", "Disposable email domain", 20.0),
        Signal::Proxy => ("I113", "IP address is a public proxy or VPN", 25.0),
        Signal::Amount => ("C110", "Transaction amount above customer average", 15.0),
    };
    json!({ "id": id, "name": name, "operation": "+", "score": score })
}

async fn score(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = authorized(&sim, &headers).await {
        return r;
    }
    let Ok(json) = serde_json::from_slice::<Value>(&body) else {
        pause(sim.engine.reject(false)).await;
        return envelope_error(StatusCode::BAD_REQUEST, "1000", "Malformed JSON");
    };
    let tx = json.get("transaction_id").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
    if json.get("action_type").and_then(Value::as_str).is_none() {
        pause(sim.engine.reject(false)).await;
        return envelope_error(StatusCode::BAD_REQUEST, "1002", "action_type is required");
    }
    match sim.engine.admit(tx.as_deref(), canonical_hash(&json)) {
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
            envelope_error(StatusCode::BAD_REQUEST, "1008", "transaction_id was already used with different data")
        }
        Admit::Proceed { latency, hang, ticket } => {
            pause(latency).await;
            let (risk, signals) = assess(
                json.get("email").and_then(Value::as_str),
                json.get("ip").and_then(Value::as_str),
                json.get("transaction_amount").and_then(Value::as_f64),
            );
            let rules: Vec<Value> = signals.into_iter().map(rule).collect();
            let (state, fraud_score) = match risk {
                Risk::Allow => ("APPROVE", 8.5),
                Risk::Review => ("REVIEW", 62.0),
                Risk::Block => ("DECLINE", 100.0),
            };
            let id = random_id(12).to_ascii_lowercase();
            let reply = json!({ "success": true, "error": {}, "data": {
                "id": id, "state": state, "fraud_score": fraud_score, "blackbox_score": fraud_score / 2.0,
                "applied_rules": rules, "version": "v2", "calculation_time": 41, "seon_id": 4242,
            }});
            let saved = Saved { status: StatusCode::OK, body: to_bytes(&reply) };
            let tx_id = tx.clone().unwrap_or_else(|| id.clone());
            sim.transactions.lock().unwrap_or_else(|p| p.into_inner()).insert(tx_id.clone());
            let executed = ExecutedPayout {
                vendor: "seon".to_owned(),
                vendor_id: id,
                idempotency_key: ticket.key().to_owned(),
                amount_minor: 0,
                currency: String::new(),
                reference: tx_id,
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

async fn label(State(sim): State<Arc<Sim>>, Path(transaction_id): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = authorized(&sim, &headers).await {
        return r;
    }
    let has_label = serde_json::from_slice::<Value>(&body).ok().and_then(|v| v.get("label").and_then(Value::as_str).map(str::to_owned)).is_some();
    if !has_label {
        pause(sim.engine.reject(false)).await;
        return envelope_error(StatusCode::BAD_REQUEST, "1002", "label is required");
    }
    if !sim.transactions.lock().unwrap_or_else(|p| p.into_inner()).contains(&transaction_id) {
        pause(sim.engine.reject(false)).await;
        return envelope_error(StatusCode::NOT_FOUND, "3001", "Transaction not found");
    }
    match sim.engine.admit(None, 0) {
        Admit::Fault { latency, fault } => {
            pause(latency).await;
            fault_reply(fault)
        }
        Admit::Proceed { latency, ticket, .. } => {
            pause(latency).await;
            drop(ticket);
            json_reply(StatusCode::OK, to_bytes(&json!({ "success": true, "error": {}, "data": {} })), &[])
        }
        Admit::Replay { latency, .. } | Admit::Mismatch { latency } | Admit::InFlight { latency } => {
            pause(latency).await;
            json_reply(StatusCode::OK, to_bytes(&json!({ "success": true, "error": {}, "data": {} })), &[])
        }
    }
}
