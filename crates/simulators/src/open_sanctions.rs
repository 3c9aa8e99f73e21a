//! OpenSanctions match API simulator (yente): `POST /match/{dataset}`.
//!
//! - Auth: `Authorization: ApiKey <key>`; otherwise 401 `{detail}`.
//! - Body `{queries: {<id>: {schema: Person|Organization|..., properties:
//!   {name[], firstName[], lastName[], birthDate[], nationality[]}}}}`;
//!   query `threshold` (default 0.7). A query without a name -> 400; a
//!   birth date before 1900 -> 422 with FastAPI's `{detail: [{loc, msg,
//!   type}]}` (UNCONFIRMED that yente refuses it).
//!   Unknown dataset -> 404.
//! - Reply `{responses: {<id>: {status: 200, results: [{id, caption,
//!   schema, properties{topics[], ...}, datasets[], score, match,
//!   explanations{<feature>: {detail, score, query, candidate}}}],
//!   total{value}, query}}, limit}`; `match` is `score >= threshold`.
//! - Stateless, like the real API: the same body always gets the same
//!   answer; there is no idempotency key. Faults apply as for every sim.
//!
//! Magic names: `checks::aml_magic` (`Cleared` is unknown here: no hit).
//!
//! UNCONFIRMED: the feature names in `explanations` (modelled on
//! `logic-v1`: `name_literal_match`, `dob_year_match`, ...), 429/5xx bodies.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use serde_json::{json, Map, Value};

use crate::checks::aml_magic::{entity_id, listing, Listing};
use crate::engine::{Admit, Engine};
use crate::faults::Fault;
use crate::util::{header_str, json_reply, pause, to_bytes};
use crate::{FaultPlan, SimulatorHandle};

#[derive(Clone, Debug)]
pub struct OpenSanctionsConfig {
    pub bind: SocketAddr,
    pub api_key: String,
    pub faults: FaultPlan,
}

impl OpenSanctionsConfig {
    /// 127.0.0.1 on an ephemeral port, key `os_test_switchyard`.
    pub fn local() -> Self {
        Self { bind: SocketAddr::from(([127, 0, 0, 1], 0)), api_key: "os_test_switchyard".to_owned(), faults: FaultPlan::default() }
    }
}

struct Sim {
    engine: Arc<Engine<()>>,
    api_key: String,
}

const DATASETS: [&str; 3] = ["default", "sanctions", "peps"];

pub async fn spawn_open_sanctions(cfg: OpenSanctionsConfig) -> std::io::Result<SimulatorHandle> {
    let engine = Engine::new(cfg.faults);
    let sim = Arc::new(Sim { engine: Arc::clone(&engine), api_key: cfg.api_key });
    let api = Router::new().route("/match/{dataset}", post(match_entities)).with_state(sim);
    crate::server::spawn(cfg.bind, api, engine, "opensanctions").await
}

fn detail(status: StatusCode, message: &str) -> Response {
    json_reply(status, to_bytes(&json!({ "detail": message })), &[])
}

fn fault_reply(fault: Fault) -> Response {
    match fault {
        Fault::ServerError { unavailable: true } => detail(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable"),
        Fault::ServerError { unavailable: false } => detail(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"),
        Fault::RateLimited { secs } => {
            let mut r = detail(StatusCode::TOO_MANY_REQUESTS, "Rate limit exceeded");
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
            r
        }
    }
}

fn first(props: &Value, key: &str) -> Option<String> {
    props.get(key).and_then(Value::as_array).and_then(|a| a.first()).and_then(Value::as_str).map(str::to_owned)
}

/// Candidate entities for one query, scored like yente would.
fn results(query: &Value, threshold: f64) -> Option<Vec<Value>> {
    let props = query.get("properties")?;
    let name = first(props, "name").or_else(|| {
        let (f, l) = (first(props, "firstName").unwrap_or_default(), first(props, "lastName")?);
        Some(format!("{f} {l}").trim().to_owned())
    })?;
    let dob_given = first(props, "birthDate").is_some();
    let entity = |score: f64, topics: &[&str], datasets: &[&str], features: Value| {
        // yente's `explanations`: each feature's score with what it compared.
        let explanations: Map<String, Value> = features
            .as_object()
            .into_iter()
            .flatten()
            .map(|(f, s)| (f.clone(), json!({ "detail": null, "score": s, "query": null, "candidate": null })))
            .collect();
        json!({
            "id": entity_id("NK-", &name), "caption": name, "schema": "Person",
            "properties": { "name": [name], "topics": topics, "birthDate": ["1961-03-04"] },
            "datasets": datasets, "referents": [], "target": true,
            "score": score, "match": score >= threshold, "explanations": explanations,
        })
    };
    let found = match listing(&name) {
        Listing::None | Listing::Cleared => vec![],
        Listing::Sanctioned => {
            let dob = if dob_given { 1.0 } else { 0.0 };
            vec![entity(1.0, &["sanction", "role.pep"], &["us_ofac_sdn"], json!({ "name_literal_match": 1.0, "dob_year_match": dob }))]
        }
        Listing::Similar => vec![entity(0.82, &["sanction"], &["gb_hmt_sanctions"], json!({ "name_fuzzy_match": 0.82, "dob_year_match": 0.0 }))],
        Listing::Pep => vec![entity(0.9, &["role.pep"], &["everypolitician"], json!({ "name_literal_match": 0.9, "dob_year_match": 0.0 }))],
    };
    Some(found)
}

async fn match_entities(
    State(sim): State<Arc<Sim>>,
    Path(dataset): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if header_str(&headers, "authorization").and_then(|v| v.strip_prefix("ApiKey ")) != Some(sim.api_key.as_str()) {
        pause(sim.engine.reject(true)).await;
        return detail(StatusCode::UNAUTHORIZED, "Invalid API key");
    }
    if !DATASETS.contains(&dataset.as_str()) {
        pause(sim.engine.reject(false)).await;
        return detail(StatusCode::NOT_FOUND, &format!("No such dataset: {dataset}"));
    }
    let threshold = q.get("threshold").and_then(|t| t.parse::<f64>().ok()).unwrap_or(0.7);
    let Some(queries) = serde_json::from_slice::<Value>(&body).ok().and_then(|v| v.get("queries").and_then(Value::as_object).cloned()) else {
        pause(sim.engine.reject(false)).await;
        return detail(StatusCode::BAD_REQUEST, "Body must have a queries object");
    };
    let mut responses = Map::new();
    for (id, query) in &queries {
        let Some(found) = results(query, threshold) else {
            pause(sim.engine.reject(false)).await;
            return detail(StatusCode::BAD_REQUEST, &format!("Query {id} has no name"));
        };
        let year = query.pointer("/properties/birthDate/0").and_then(Value::as_str).and_then(|d| d.get(0..4)).and_then(|y| y.parse::<i32>().ok());
        if year.is_some_and(|y| y < 1900) {
            pause(sim.engine.reject(false)).await;
            // FastAPI's validation error shape (`HTTPValidationError`).
            let body = json!({ "detail": [{
                "loc": ["body", "queries", id, "properties", "birthDate", 0],
                "msg": "birthDate out of range", "type": "value_error",
            }] });
            return json_reply(StatusCode::UNPROCESSABLE_ENTITY, to_bytes(&body), &[]);
        }
        responses.insert(id.clone(), json!({ "status": 200, "results": found, "total": { "value": found.len(), "relation": "eq" }, "query": query }));
    }
    match sim.engine.admit(None, 0) {
        Admit::Fault { latency, fault } => {
            pause(latency).await;
            fault_reply(fault)
        }
        Admit::Proceed { latency, hang, ticket } => {
            pause(latency).await;
            drop(ticket);
            if let Some(h) = hang {
                pause(h).await;
            }
            json_reply(StatusCode::OK, to_bytes(&json!({ "responses": responses, "limit": 5 })), &[])
        }
        Admit::Replay { latency, .. } | Admit::Mismatch { latency } | Admit::InFlight { latency } => {
            pause(latency).await;
            json_reply(StatusCode::OK, to_bytes(&json!({ "responses": responses, "limit": 5 })), &[])
        }
    }
}
