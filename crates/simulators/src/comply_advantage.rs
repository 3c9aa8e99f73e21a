//! ComplyAdvantage simulator (legacy REST): `POST /searches`, answered
//! synchronously with the search, its `match_status` and `hits`.
//!
//! - Auth: `Authorization: Token <api key>`; otherwise 401
//!   `{code: 401, message, status: "failure"}`.
//! - Body: `search_term` (string or `{first_name, last_name}`), `client_ref`,
//!   `fuzziness`, `filters {types, birth_year, country_codes, entity_type}`,
//!   `tags`. No search term, or a birth year before 1900 -> 400 with `errors`.
//! - Reply: `{code: 200, status: "success", content: {data: {id, ref,
//!   match_status, risk_level, total_hits, hits[{doc{id, name, types,
//!   sources}, match_types, score, is_whitelisted}], ...}}}`.
//! - Every search is a ledger entry (a billable search).
//!
//! Magic names: `checks::aml_magic`.
//!
//! UNCONFIRMED: deduplication by `client_ref` (here: same body -> the same
//! search replayed, other body -> 409); `true_positive` straight from a
//! search (here: the entity was adjudicated before, as on a re-screen of a
//! known hit); the 401/409/429/5xx bodies; `score` scale.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

use crate::checks::aml_magic::{entity_id, listing, Listing};
use crate::checks::canonical_hash;
use crate::engine::{Admit, Engine, Saved};
use crate::faults::Fault;
use crate::util::{header_str, iso8601, json_reply, now_ms, pause, to_bytes};
use crate::{ExecutedPayout, FaultPlan, SimulatorHandle};

#[derive(Clone, Debug)]
pub struct ComplyAdvantageConfig {
    pub bind: SocketAddr,
    pub api_key: String,
    pub faults: FaultPlan,
}

impl ComplyAdvantageConfig {
    /// 127.0.0.1 on an ephemeral port, key `ca_test_switchyard`.
    pub fn local() -> Self {
        Self { bind: SocketAddr::from(([127, 0, 0, 1], 0)), api_key: "ca_test_switchyard".to_owned(), faults: FaultPlan::default() }
    }
}

struct Sim {
    engine: Arc<Engine<()>>,
    api_key: String,
    next_id: AtomicU64,
}

pub async fn spawn_comply_advantage(cfg: ComplyAdvantageConfig) -> std::io::Result<SimulatorHandle> {
    let engine = Engine::new(cfg.faults);
    let sim = Arc::new(Sim { engine: Arc::clone(&engine), api_key: cfg.api_key, next_id: AtomicU64::new(1000) });
    let api = Router::new().route("/searches", post(search)).with_state(sim);
    crate::server::spawn(cfg.bind, api, engine, "complyadvantage").await
}

fn failure(status: StatusCode, message: &str, errors: Option<Value>) -> Response {
    let mut body = json!({ "code": status.as_u16(), "message": message, "status": "failure" });
    if let Some(e) = errors {
        body["errors"] = e;
    }
    json_reply(status, to_bytes(&body), &[])
}

fn fault_reply(fault: Fault) -> Response {
    match fault {
        Fault::ServerError { unavailable: true } => failure(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable", None),
        Fault::ServerError { unavailable: false } => failure(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error", None),
        Fault::RateLimited { secs } => {
            let mut r = failure(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests", None);
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
            r
        }
    }
}

fn term_name(term: &Value) -> Option<String> {
    match term {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Object(o) => {
            let last = o.get("last_name").and_then(Value::as_str).filter(|s| !s.is_empty())?;
            let first = o.get("first_name").and_then(Value::as_str).unwrap_or("");
            Some(format!("{first} {last}").trim().to_owned())
        }
        _ => None,
    }
}

fn hits(name: &str, birth_year: Option<i64>) -> (Vec<Value>, &'static str) {
    let hit = |types: &[&str], sources: &[&str], match_types: Vec<&str>, whitelisted: bool| {
        json!({
            "doc": { "id": entity_id("CA", name), "name": name, "entity_type": "person", "types": types, "sources": sources,
                     "fields": [{ "name": "Date of Birth", "value": "1961" }] },
            "match_types": match_types, "score": 1.7, "is_whitelisted": whitelisted,
        })
    };
    match listing(name) {
        Listing::None => (vec![], "no_match"),
        Listing::Sanctioned => {
            let mut types = vec!["name_exact"];
            if birth_year.is_some() {
                types.push("year_of_birth");
            }
            (vec![hit(&["sanction", "pep"], &["ofac-sdn-list"], types, false)], "true_positive")
        }
        Listing::Similar => (vec![hit(&["sanction"], &["hm-treasury-list"], vec!["name_fuzzy"], false)], "potential_match"),
        Listing::Pep => (vec![hit(&["pep", "pep-class-1"], &["complyadvantage-pep"], vec!["name_exact"], false)], "potential_match"),
        Listing::Cleared => (vec![hit(&["sanction"], &["eu-sanctions"], vec!["name_fuzzy"], true)], "false_positive"),
    }
}

async fn search(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    if header_str(&headers, "authorization").and_then(|v| v.strip_prefix("Token ")) != Some(sim.api_key.as_str()) {
        pause(sim.engine.reject(true)).await;
        return failure(StatusCode::UNAUTHORIZED, "Unauthorized", None);
    }
    let Ok(json) = serde_json::from_slice::<Value>(&body) else {
        pause(sim.engine.reject(false)).await;
        return failure(StatusCode::BAD_REQUEST, "Invalid JSON", None);
    };
    let Some(name) = json.get("search_term").and_then(term_name) else {
        pause(sim.engine.reject(false)).await;
        return failure(StatusCode::BAD_REQUEST, "Invalid request", Some(json!({ "search_term": "A search term is required" })));
    };
    if json.pointer("/filters/birth_year").and_then(Value::as_i64).is_some_and(|y| y < 1900) {
        pause(sim.engine.reject(false)).await;
        return failure(StatusCode::BAD_REQUEST, "Invalid request", Some(json!({ "filters.birth_year": "Must be 1900 or later" })));
    }
    let client_ref = json.get("client_ref").and_then(Value::as_str).map(str::to_owned);
    match sim.engine.admit(client_ref.as_deref(), canonical_hash(&json)) {
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
            failure(StatusCode::CONFLICT, "client_ref was already used for a different search", None)
        }
        Admit::Proceed { latency, hang, ticket } => {
            pause(latency).await;
            let id = sim.next_id.fetch_add(1, Ordering::Relaxed);
            let birth_year = json.pointer("/filters/birth_year").and_then(Value::as_i64);
            let (hits, match_status) = hits(&name, birth_year);
            let risk = match match_status {
                "no_match" | "false_positive" => "low",
                _ => "high",
            };
            let now = iso8601(now_ms());
            let data = json!({
                "id": id, "ref": format!("{}-{id}", now_ms()), "searcher_id": 1, "assignee_id": 1,
                "filters": json.get("filters"), "match_status": match_status, "risk_level": risk,
                "search_term": name, "submitted_term": json.get("search_term"), "client_ref": client_ref,
                "total_hits": hits.len(), "total_matches": hits.len(), "updated_at": now, "created_at": now,
                "tags": json.get("tags"), "limit": 100, "offset": 0, "share_url": null, "hits": hits,
            });
            let saved = Saved { status: StatusCode::OK, body: to_bytes(&json!({ "code": 200, "status": "success", "content": { "data": data } })) };
            let executed = ExecutedPayout {
                vendor: "comply_advantage".to_owned(),
                vendor_id: id.to_string(),
                idempotency_key: ticket.key().to_owned(),
                amount_minor: 0,
                currency: String::new(),
                reference: name,
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
