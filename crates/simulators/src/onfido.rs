//! Onfido API v3.6 simulator: applicants, documents, live photos, checks and
//! reports, with asynchronous check completion.
//!
//! - Auth: `Authorization: Token token=<api token>`; otherwise 401
//!   `{"error":{"type":"authorization_error","message":...}}`.
//!   `PUT /_sim/api_token` with `{"api_token": "api_sandbox..."}` replaces
//!   the accepted token at once (a new token issued and the old one revoked
//!   in the dashboard): from then on the old one gets 401.
//! - `POST /v3.6/applicants` (JSON `first_name`, `last_name`, `dob`,
//!   `email`) -> 201 applicant; missing names or an email without `@` ->
//!   422 `validation_error` with `fields`.
//! - `POST /v3.6/documents` (multipart `applicant_id`, `type`, `side`,
//!   `issuing_country`, `file`) and `POST /v3.6/live_photos` (multipart
//!   `applicant_id`, `file`) -> 201 resource; unknown applicant -> 422.
//! - `POST /v3.6/checks` (JSON `applicant_id`, `report_names`,
//!   `document_ids`) -> 201 check `in_progress`; after `settle_after` it is
//!   `complete` (result `clear`/`consider`) or, for step-up,
//!   `awaiting_applicant`. `GET /v3.6/checks/{id}`,
//!   `GET /v3.6/reports?check_id=` -> `{reports:[{name, status, result,
//!   sub_result, breakdown}]}`.
//! - Every created check is a ledger entry (`vendor_id` = check id,
//!   `reference` = applicant id, amount 0): a billable check, so tests can
//!   prove a redelivery did not run a second one.
//!
//! Magic inputs: see `checks::kyc_magic` (last name `Forged`, `Expired`,
//! `Review`, `StepUp`; a `blurry` document file; a `mismatch` selfie).
//!
//! Callbacks: with a `webhook` target, each new check that completes posts
//! one `check.completed` (`X-SHA2-Signature`) when it settles; a check left
//! `awaiting_applicant` posts none.
//!
//! UNCONFIRMED: that Onfido honours `Idempotency-Key` at all (here: on every
//! POST, first reply replayed, other body -> 409 `idempotency_error`, in
//! flight -> 409); `awaiting_applicant` as the step-up signal; the breakdown
//! names used for image quality (`image_integrity`) and forgery
//! (`visual_authenticity`) match Onfido's report docs but their nesting is
//! simplified to one level; 429/5xx bodies.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::Router;
use serde_json::{json, Value};

use crate::checks::kyc_magic::{scenario, Scenario};
use crate::checks::{canonical_hash, multipart, uuid};
use crate::engine::{Admit, Engine, Saved};
use crate::faults::Fault;
use crate::util::{header_str, iso8601, json_reply, now_ms, pause, to_bytes};
use crate::webhook::{Scheme, Webhooks};
use crate::{ExecutedPayout, FaultPlan, SimulatorHandle, WebhookTarget};

#[derive(Clone, Debug)]
pub struct OnfidoConfig {
    pub bind: SocketAddr,
    /// The only API token accepted.
    pub api_token: String,
    pub faults: FaultPlan,
    /// Time from `in_progress` to the check's final status.
    pub settle_after: Duration,
    /// Where `check.completed` callbacks go, signed with the target's token.
    pub webhook: Option<WebhookTarget>,
}

impl OnfidoConfig {
    /// 127.0.0.1 on an ephemeral port, token `api_sandbox.switchyard`,
    /// checks settling after 300 ms.
    pub fn local() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            api_token: "api_sandbox.switchyard".to_owned(),
            faults: FaultPlan::default(),
            settle_after: Duration::from_millis(300),
            webhook: None,
        }
    }
}

struct Applicant {
    last_name: String,
    documents: Vec<Vec<u8>>,
    selfie: Option<Vec<u8>>,
}

struct Check {
    applicant_id: String,
    scenario: Scenario,
    /// `(id, name)` of each report, ids assigned at creation as Onfido does.
    reports: Vec<(String, &'static str)>,
    created_ms: i64,
    created_at: Instant,
}

#[derive(Default)]
struct State_ {
    applicants: HashMap<String, Applicant>,
    /// document id -> (applicant id, side, type)
    documents: HashMap<String, (String, String, String)>,
    checks: HashMap<String, Check>,
}

struct Sim {
    engine: Arc<Engine<()>>,
    token: std::sync::RwLock<String>,
    settle_after: Duration,
    webhooks: Option<Webhooks>,
    state: Mutex<State_>,
}

impl Sim {
    fn state(&self) -> std::sync::MutexGuard<'_, State_> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub async fn spawn_onfido(cfg: OnfidoConfig) -> std::io::Result<SimulatorHandle> {
    let engine = Engine::new(cfg.faults);
    let sim = Arc::new(Sim {
        engine: Arc::clone(&engine),
        token: std::sync::RwLock::new(cfg.api_token),
        settle_after: cfg.settle_after,
        webhooks: cfg.webhook.map(|t| Webhooks::new(t, Scheme::Onfido)),
        state: Mutex::default(),
    });
    let api = Router::new()
        .route("/v3.6/applicants", post(create_applicant))
        .route("/v3.6/documents", post(upload_document))
        .route("/v3.6/live_photos", post(upload_live_photo))
        .route("/v3.6/checks", post(create_check))
        .route("/v3.6/checks/{id}", get(retrieve_check))
        .route("/v3.6/reports", get(list_reports))
        .route("/_sim/api_token", put(roll_token))
        .with_state(sim);
    crate::server::spawn(cfg.bind, api, engine, "onfido").await
}

fn error(status: StatusCode, kind: &str, message: &str, fields: Option<Value>) -> Response {
    let mut body = json!({ "error": { "type": kind, "message": message } });
    if let Some(f) = fields {
        body["error"]["fields"] = f;
    }
    json_reply(status, to_bytes(&body), &[])
}

fn fault_reply(fault: Fault) -> Response {
    match fault {
        Fault::ServerError { unavailable: true } => error(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable", "Service unavailable", None),
        Fault::ServerError { unavailable: false } => error(StatusCode::INTERNAL_SERVER_ERROR, "internal_server_error", "Internal server error", None),
        Fault::RateLimited { secs } => {
            let mut r = error(StatusCode::TOO_MANY_REQUESTS, "rate_limit", "Rate limit exceeded", None);
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
            r
        }
    }
}

fn authorized(sim: &Sim, headers: &HeaderMap) -> bool {
    let token = sim.token.read().unwrap_or_else(|e| e.into_inner());
    header_str(headers, "authorization").and_then(|v| v.strip_prefix("Token token=")) == Some(token.as_str())
}

/// `PUT /_sim/api_token`: the vendor-side half of a token rotation.
async fn roll_token(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let token = serde_json::from_slice::<Value>(&body).ok().and_then(|v| v.get("api_token")?.as_str().map(str::to_owned));
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return error(StatusCode::BAD_REQUEST, "validation_error", "api_token is required", None);
    };
    *sim.token.write().unwrap_or_else(|e| e.into_inner()) = token;
    json_reply(StatusCode::OK, to_bytes(&json!({})), &[])
}

async fn unauthorized(sim: &Sim) -> Response {
    pause(sim.engine.reject(true)).await;
    error(StatusCode::UNAUTHORIZED, "authorization_error", "Please provide a valid API token", None)
}

async fn invalid(sim: &Sim, message: &str, fields: Value) -> Response {
    pause(sim.engine.reject(false)).await;
    error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error", message, Some(fields))
}

/// Runs a POST under the engine's idempotency and fault rules; `make`
/// executes it and returns the reply to save (and replay).
async fn idempotent(sim: &Sim, headers: &HeaderMap, fp: u64, make: impl FnOnce() -> (Saved, Option<ExecutedPayout>)) -> Response {
    let key = header_str(headers, "idempotency-key");
    match sim.engine.admit(key, fp) {
        Admit::Fault { latency, fault } => {
            pause(latency).await;
            fault_reply(fault)
        }
        Admit::Replay { latency, reply } => {
            pause(latency).await;
            json_reply(reply.status, reply.body, &[])
        }
        Admit::Mismatch { latency } => {
            pause(latency).await;
            error(StatusCode::CONFLICT, "idempotency_error", "Idempotency-Key was already used with a different request", None)
        }
        Admit::InFlight { latency } => {
            pause(latency).await;
            error(StatusCode::CONFLICT, "idempotency_error", "A request with this Idempotency-Key is in progress", None)
        }
        Admit::Proceed { latency, hang, ticket } => {
            pause(latency).await;
            let (saved, executed) = make();
            let executed = executed.map(|mut e| {
                e.idempotency_key = ticket.key().to_owned();
                e
            });
            ticket.commit(None, executed, &saved);
            if let Some(h) = hang {
                pause(h).await;
            }
            json_reply(saved.status, saved.body, &[])
        }
    }
}

async fn create_applicant(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&sim, &headers) {
        return unauthorized(&sim).await;
    }
    let Ok(json) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "bad_request", "Malformed JSON", None);
    };
    let name = |f: &str| json.get(f).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
    let (Some(first), Some(last)) = (name("first_name"), name("last_name")) else {
        return invalid(&sim, "There was a validation error on this request", json!({ "first_name": ["can't be blank"], "last_name": ["can't be blank"] })).await;
    };
    if json.get("email").and_then(Value::as_str).is_some_and(|e| !e.contains('@')) {
        return invalid(&sim, "There was a validation error on this request", json!({ "email": ["is invalid"] })).await;
    }
    let sim2 = Arc::clone(&sim);
    idempotent(&sim, &headers, canonical_hash(&json), move || {
        let id = uuid();
        sim2.state().applicants.insert(id.clone(), Applicant { last_name: last.clone(), documents: Vec::new(), selfie: None });
        let mut body = json!({
            "id": id, "created_at": iso8601(now_ms()), "first_name": first, "last_name": last,
            "href": format!("/v3.6/applicants/{id}"),
        });
        // Onfido's schema types these as strings: absent, not null.
        for field in ["dob", "email"] {
            if let Some(v) = json.get(field).filter(|v| v.is_string()) {
                body[field] = v.clone();
            }
        }
        (Saved { status: StatusCode::CREATED, body: to_bytes(&body) }, None)
    })
    .await
}

fn text(parts: &HashMap<String, Vec<u8>>, name: &str) -> Option<String> {
    parts.get(name).map(|v| String::from_utf8_lossy(v).into_owned())
}

async fn upload_document(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    upload(sim, headers, body, true).await
}

async fn upload_live_photo(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    upload(sim, headers, body, false).await
}

const DOCUMENT_TYPES: [&str; 4] = ["passport", "national_identity_card", "driving_licence", "residence_permit"];

async fn upload(sim: Arc<Sim>, headers: HeaderMap, body: Bytes, document: bool) -> Response {
    if !authorized(&sim, &headers) {
        return unauthorized(&sim).await;
    }
    let Some(parts) = header_str(&headers, "content-type").and_then(|ct| multipart::parse(ct, &body)) else {
        return error(StatusCode::BAD_REQUEST, "bad_request", "Expected a multipart/form-data body", None);
    };
    let applicant_id = text(&parts, "applicant_id").unwrap_or_default();
    if !sim.state().applicants.contains_key(&applicant_id) {
        return invalid(&sim, "There was a validation error on this request", json!({ "applicant_id": ["not found"] })).await;
    }
    let Some(file) = parts.get("file").cloned() else {
        return invalid(&sim, "There was a validation error on this request", json!({ "file": ["can't be blank"] })).await;
    };
    let kind = text(&parts, "type").unwrap_or_default();
    let side = text(&parts, "side").unwrap_or_else(|| "front".into());
    if document && !DOCUMENT_TYPES.contains(&kind.as_str()) {
        return invalid(&sim, "There was a validation error on this request", json!({ "type": ["is not included in the list"] })).await;
    }
    // The multipart boundary differs per request; hash the parts instead.
    let mut sorted: Vec<_> = parts.iter().collect();
    sorted.sort();
    let fp = crate::util::fingerprint(&sorted);
    let sim2 = Arc::clone(&sim);
    idempotent(&sim, &headers, fp, move || {
        let id = uuid();
        let mut st = sim2.state();
        if document {
            st.documents.insert(id.clone(), (applicant_id.clone(), side.clone(), kind.clone()));
        }
        if let Some(a) = st.applicants.get_mut(&applicant_id) {
            if document {
                a.documents.push(file.clone());
            } else {
                a.selfie = Some(file.clone());
            }
        }
        let body = if document {
            let mut d = json!({ "id": id, "applicant_id": applicant_id, "type": kind, "side": side,
                    "file_name": format!("{side}.jpg"), "file_type": "jpg", "created_at": iso8601(now_ms()),
                    "href": format!("/v3.6/documents/{id}") });
            if let Some(country) = text(&parts, "issuing_country") {
                d["issuing_country"] = Value::from(country);
            }
            d
        } else {
            json!({ "id": id, "file_name": "selfie.jpg", "file_type": "jpg", "created_at": iso8601(now_ms()),
                    "href": format!("/v3.6/live_photos/{id}") })
        };
        (Saved { status: StatusCode::CREATED, body: to_bytes(&body) }, None)
    })
    .await
}

async fn create_check(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&sim, &headers) {
        return unauthorized(&sim).await;
    }
    let Ok(json) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "bad_request", "Malformed JSON", None);
    };
    let applicant_id = json.get("applicant_id").and_then(Value::as_str).unwrap_or_default().to_owned();
    let reports: Vec<String> =
        json.get("report_names").and_then(Value::as_array).map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()).unwrap_or_default();
    if reports.is_empty() || !sim.state().applicants.contains_key(&applicant_id) {
        return invalid(&sim, "There was a validation error on this request", json!({ "applicant_id": ["must exist"], "report_names": ["can't be blank"] })).await;
    }
    let sim2 = Arc::clone(&sim);
    idempotent(&sim, &headers, canonical_hash(&json), move || {
        let id = uuid();
        let created_ms = now_ms();
        let mut st = sim2.state();
        let chosen = st
            .applicants
            .get(&applicant_id)
            .map(|a| scenario(&a.last_name, &a.documents, a.selfie.as_deref(), false))
            .unwrap_or(Scenario::Clear);
        let with_face = reports.iter().any(|r| r.starts_with("facial_similarity"));
        let mut report_ids = vec![(uuid(), "document")];
        if with_face {
            report_ids.push((uuid(), "facial_similarity_photo"));
        }
        let check =
            Check { applicant_id: applicant_id.clone(), scenario: chosen, reports: report_ids, created_ms, created_at: Instant::now() };
        let body = render_check(&id, &check, Duration::ZERO, sim2.settle_after);
        if let Some(w) = &sim2.webhooks {
            // Onfido's callback says the check finished, not how.
            if check_state(&check, sim2.settle_after, sim2.settle_after).0 == "complete" {
                let settled = iso8601(created_ms + sim2.settle_after.as_millis() as i64);
                w.send(
                    json!({ "payload": { "resource_type": "check", "action": "check.completed", "object": {
                        "id": id, "status": "complete", "completed_at_iso8601": settled,
                        "href": format!("/v3.6/checks/{id}") } } }),
                    sim2.settle_after,
                );
            }
        }
        st.checks.insert(id.clone(), check);
        let executed = ExecutedPayout {
            vendor: "onfido".to_owned(),
            vendor_id: id,
            idempotency_key: String::new(),
            amount_minor: 0,
            currency: String::new(),
            reference: applicant_id,
            executed_at_ms: created_ms,
            ..ExecutedPayout::default()
        };
        (Saved { status: StatusCode::CREATED, body: to_bytes(&body) }, Some(executed))
    })
    .await
}

/// `(status, result)` of a check at an age.
fn check_state(c: &Check, elapsed: Duration, settle: Duration) -> (&'static str, Option<&'static str>) {
    if elapsed < settle {
        return ("in_progress", None);
    }
    match c.scenario {
        Scenario::Clear | Scenario::MissingBack => ("complete", Some("clear")),
        Scenario::StepUp => ("awaiting_applicant", None),
        _ => ("complete", Some("consider")),
    }
}

fn render_check(id: &str, c: &Check, elapsed: Duration, settle: Duration) -> Value {
    let (status, result) = check_state(c, elapsed, settle);
    let report_ids: Vec<&str> = c.reports.iter().map(|(r, _)| r.as_str()).collect();
    let mut check = json!({
        "id": id, "created_at": iso8601(c.created_ms), "status": status,
        "applicant_id": c.applicant_id, "report_ids": report_ids, "href": format!("/v3.6/checks/{id}"),
    });
    // Onfido's schema has `result` clear|consider, not null: absent until known.
    if let Some(r) = result {
        check["result"] = Value::from(r);
    }
    check
}

/// The reports of a finished check, shaped by its scenario.
fn render_reports(id: &str, c: &Check) -> Value {
    let consider = json!({ "result": "consider" });
    let clear = json!({ "result": "clear" });
    let (result, sub_result, breakdown) = match c.scenario {
        Scenario::Forged => ("consider", "rejected", json!({ "visual_authenticity": consider, "image_integrity": clear })),
        Scenario::Blurry => ("consider", "rejected", json!({ "image_integrity": consider })),
        Scenario::Expired => ("consider", "caution", json!({ "data_validation": consider, "image_integrity": clear })),
        Scenario::Review => ("consider", "suspected", json!({ "visual_authenticity": consider, "image_integrity": clear })),
        Scenario::Clear | Scenario::StepUp | Scenario::FaceMismatch | Scenario::MissingBack => {
            ("clear", "clear", json!({ "image_integrity": clear, "visual_authenticity": clear }))
        }
    };
    let face = if c.scenario == Scenario::FaceMismatch { "consider" } else { "clear" };
    let reports: Vec<Value> = c
        .reports
        .iter()
        .map(|(report_id, name)| match *name {
            "document" => json!({
                "id": report_id, "check_id": id, "name": name, "status": "complete",
                "result": result, "sub_result": sub_result, "breakdown": breakdown,
            }),
            // A face report has no `sub_result` (absent: the schema has no null).
            _ => json!({
                "id": report_id, "check_id": id, "name": name, "status": "complete",
                "result": face, "breakdown": { "face_comparison": { "result": face }, "image_integrity": clear },
            }),
        })
        .collect();
    json!({ "reports": reports })
}

async fn retrieve_check(State(sim): State<Arc<Sim>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if !authorized(&sim, &headers) {
        return unauthorized(&sim).await;
    }
    let read = sim.engine.read(&id);
    pause(read.latency).await;
    if let Err(fault) = read.outcome {
        return fault_reply(fault);
    }
    let st = sim.state();
    match st.checks.get(&id) {
        Some(c) => json_reply(StatusCode::OK, to_bytes(&render_check(&id, c, c.created_at.elapsed(), sim.settle_after)), &[]),
        None => error(StatusCode::NOT_FOUND, "resource_not_found", "The resource could not be found", None),
    }
}

async fn list_reports(State(sim): State<Arc<Sim>>, Query(q): Query<HashMap<String, String>>, headers: HeaderMap) -> Response {
    if !authorized(&sim, &headers) {
        return unauthorized(&sim).await;
    }
    let id = q.get("check_id").cloned().unwrap_or_default();
    let read = sim.engine.read(&id);
    pause(read.latency).await;
    if let Err(fault) = read.outcome {
        return fault_reply(fault);
    }
    let st = sim.state();
    match st.checks.get(&id) {
        Some(c) if c.created_at.elapsed() >= sim.settle_after => json_reply(StatusCode::OK, to_bytes(&render_reports(&id, c)), &[]),
        Some(c) => {
            let pending: Vec<Value> =
                c.reports.iter().map(|(r, name)| json!({ "id": r, "check_id": id, "name": name, "status": "awaiting_data" })).collect();
            json_reply(StatusCode::OK, to_bytes(&json!({ "reports": pending })), &[])
        }
        None => error(StatusCode::NOT_FOUND, "resource_not_found", "The resource could not be found", None),
    }
}
