//! Sumsub simulator: applicants, document uploads, review request and an
//! asynchronous review result.
//!
//! - Auth: `X-App-Token` plus `X-App-Access-Ts` (Unix seconds, +/- 60 s)
//!   and `X-App-Access-Sig` = hex HMAC-SHA256(secret key, ts + METHOD +
//!   path?query + body); otherwise 401 `{description, code, correlationId}`.
//! - `POST /resources/applicants?levelName=<level>` (JSON `externalUserId`,
//!   `fixedInfo{firstName, lastName, dob, country}`, `email`) -> 200
//!   applicant with `review.reviewStatus` `init`; an email without `@` -> 400.
//! - `GET /resources/applicants/{id}/one` and
//!   `GET /resources/applicants/-;externalUserId=<id>/one`.
//! - `POST /resources/applicants/{id}/info/idDoc` (multipart `metadata` JSON
//!   `{idDocType, idDocSubType, country}` + `content`) -> 200.
//! - `POST /resources/applicants/{id}/status/pending` -> `{"ok":1}`; the
//!   review is `pending` for `review_after`, then `completed` with
//!   `reviewResult {reviewAnswer GREEN|RED, reviewRejectType FINAL|RETRY,
//!   rejectLabels, moderationComment, clientComment}`, or `onHold`.
//! - Idempotency: `externalUserId` is the natural key. The same body again
//!   replays the first reply (UNCONFIRMED: Sumsub may answer 409 here too);
//!   another body -> 409 "already exists" naming the applicant. Uploads are
//!   not idempotent (as at Sumsub). Each review request is a ledger entry.
//!
//! Magic inputs: `checks::kyc_magic`; an ID card without a back side ends
//! RED/RETRY `BACK_SIDE_MISSING`.
//!
//! Callbacks: with a `webhook` target, a review request posts
//! `applicantPending` at once and `applicantReviewed` (or `applicantOnHold`)
//! when the review finishes, signed with `X-Payload-Digest` (HMAC-SHA256).
//!
//! UNCONFIRMED: the 409 body's `errorName`, 429/5xx bodies, `onHold` as the
//! manual-review state reached without a webhook, `ADDITIONAL_DOCUMENT_REQUIRED`
//! as the step-up label.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::checks::kyc_magic::{scenario, Scenario};
use crate::checks::{canonical_hash, multipart};
use crate::engine::{Admit, Engine, Saved, Ticket};
use crate::faults::Fault;
use crate::util::{header_str, iso8601, json_reply, now_ms, pause, random_id, to_bytes};
use crate::webhook::{Scheme, Webhooks};
use crate::{ExecutedPayout, FaultPlan, SimulatorHandle, WebhookTarget};

#[derive(Clone, Debug)]
pub struct SumsubConfig {
    pub bind: SocketAddr,
    pub app_token: String,
    pub secret_key: String,
    pub faults: FaultPlan,
    /// Time from `pending` to the review result.
    pub review_after: Duration,
    /// Where applicant callbacks go, signed with the target's secret.
    pub webhook: Option<WebhookTarget>,
}

impl SumsubConfig {
    /// 127.0.0.1 on an ephemeral port, token `sbx:switchyard`, secret
    /// `sumsub-secret`, reviews finishing after 300 ms.
    pub fn local() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            app_token: "sbx:switchyard".to_owned(),
            secret_key: "sumsub-secret".to_owned(),
            faults: FaultPlan::default(),
            review_after: Duration::from_millis(300),
            webhook: None,
        }
    }
}

struct Applicant {
    external_user_id: String,
    last_name: String,
    created_ms: i64,
    info: Value,
    /// (idDocType, idDocSubType, content)
    docs: Vec<(String, Option<String>, Vec<u8>)>,
    review: Option<(Instant, Scenario)>,
}

struct Sim {
    engine: Arc<Engine<()>>,
    token: String,
    secret: String,
    review_after: Duration,
    webhooks: Option<Webhooks>,
    applicants: Mutex<HashMap<String, Applicant>>,
}

impl Sim {
    fn applicants(&self) -> std::sync::MutexGuard<'_, HashMap<String, Applicant>> {
        self.applicants.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub async fn spawn_sumsub(cfg: SumsubConfig) -> std::io::Result<SimulatorHandle> {
    let engine = Engine::new(cfg.faults);
    let sim = Arc::new(Sim {
        engine: Arc::clone(&engine),
        token: cfg.app_token,
        secret: cfg.secret_key,
        review_after: cfg.review_after,
        webhooks: cfg.webhook.map(|t| Webhooks::new(t, Scheme::Sumsub)),
        applicants: Mutex::default(),
    });
    let api = Router::new()
        .route("/resources/applicants", post(create_applicant))
        .route("/resources/applicants/{id}/one", get(retrieve))
        .route("/resources/applicants/{id}/info/idDoc", post(upload))
        .route("/resources/applicants/{id}/status/pending", post(request_review))
        .with_state(sim);
    crate::server::spawn(cfg.bind, api, engine, "sumsub").await
}

fn error(status: StatusCode, description: &str, error_name: Option<&str>) -> Response {
    let mut body = json!({ "description": description, "code": status.as_u16(), "correlationId": random_id(24).to_ascii_lowercase() });
    if let Some(n) = error_name {
        body["errorName"] = Value::from(n);
    }
    json_reply(status, to_bytes(&body), &[])
}

fn fault_reply(fault: Fault) -> Response {
    match fault {
        Fault::ServerError { unavailable: true } => error(StatusCode::SERVICE_UNAVAILABLE, "Service unavailable", None),
        Fault::ServerError { unavailable: false } => error(StatusCode::INTERNAL_SERVER_ERROR, "Internal error", None),
        Fault::RateLimited { secs } => {
            let mut r = error(StatusCode::TOO_MANY_REQUESTS, "Too many requests", None);
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
            r
        }
    }
}

/// Checks token, timestamp window and signature over the exact request.
fn authorized(sim: &Sim, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> bool {
    let (Some(token), Some(ts), Some(sig)) =
        (header_str(headers, "x-app-token"), header_str(headers, "x-app-access-ts"), header_str(headers, "x-app-access-sig"))
    else {
        return false;
    };
    let Ok(ts_num) = ts.parse::<i64>() else { return false };
    if token != sim.token || (now_ms() / 1000 - ts_num).abs() > 60 {
        return false;
    }
    let Ok(expected) = hex::decode(sig) else { return false };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(sim.secret.as_bytes()) else { return false };
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    mac.update(ts.as_bytes());
    mac.update(method.as_str().as_bytes());
    mac.update(path.as_bytes());
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

async fn unauthorized(sim: &Sim) -> Response {
    pause(sim.engine.reject(true)).await;
    error(StatusCode::UNAUTHORIZED, "Request signature mismatch", Some("app-token-signature-mismatch"))
}

/// Rolls faults for a request that is not keyed: a ticket to commit, or the
/// fault reply.
async fn admit_unkeyed(sim: &Sim) -> Result<Option<Ticket<()>>, Response> {
    match sim.engine.admit(None, 0) {
        Admit::Fault { latency, fault } => {
            pause(latency).await;
            Err(fault_reply(fault))
        }
        Admit::Proceed { latency, ticket, .. } => {
            pause(latency).await;
            Ok(Some(ticket))
        }
        // Without a key the engine never replays or conflicts.
        Admit::Replay { latency, .. } | Admit::Mismatch { latency } | Admit::InFlight { latency } => {
            pause(latency).await;
            Ok(None)
        }
    }
}

fn render(id: &str, a: &Applicant, review_after: Duration) -> Value {
    let review = match a.review {
        None => json!({ "reviewStatus": "init" }),
        Some((at, _)) if at.elapsed() < review_after => json!({ "reviewStatus": "pending" }),
        Some((_, s)) => review_result(s),
    };
    json!({
        "id": id, "createdAt": iso8601(a.created_ms), "externalUserId": a.external_user_id,
        "info": a.info, "type": "individual", "review": review,
        "requiredIdDocs": { "docSets": [ { "idDocSetType": "IDENTITY" }, { "idDocSetType": "SELFIE" } ] },
    })
}

/// A Sumsub applicant webhook body; `review` holds `reviewStatus` and, when
/// finished, `reviewResult`.
fn callback(id: &str, a: &Applicant, kind: &str, review: Value, at_ms: i64) -> Value {
    let created = format!("{}.{:03}", iso8601(at_ms).trim_end_matches('Z').replacen('T', " ", 1), at_ms.rem_euclid(1000));
    let mut body = json!({
        "applicantId": id, "inspectionId": format!("{id}-insp"), "correlationId": random_id(24).to_ascii_lowercase(),
        "externalUserId": a.external_user_id, "levelName": "basic-kyc-level", "type": kind,
        "createdAtMs": created, "sandboxMode": true,
    });
    body["reviewStatus"] = review["reviewStatus"].clone();
    if let Some(r) = review.get("reviewResult") {
        body["reviewResult"] = r.clone();
    }
    body
}

fn review_result(s: Scenario) -> Value {
    let red = |kind: &str, labels: &[&str], comment: &str| {
        json!({ "reviewStatus": "completed", "reviewResult": {
            "reviewAnswer": "RED", "reviewRejectType": kind, "rejectLabels": labels,
            "moderationComment": comment, "clientComment": "simulated reviewer note (internal)" } })
    };
    match s {
        Scenario::Clear => json!({ "reviewStatus": "completed", "reviewResult": { "reviewAnswer": "GREEN" } }),
        Scenario::Forged => red("FINAL", &["FORGERY"], "We could not verify your document."),
        Scenario::Blurry => red("RETRY", &["UNSATISFACTORY_PHOTOS"], "The photo of your document is not readable. Please upload a clearer one."),
        Scenario::Expired => red("RETRY", &["EXPIRATION_DATE"], "Your document has expired."),
        Scenario::StepUp => red("RETRY", &["ADDITIONAL_DOCUMENT_REQUIRED"], "Please upload an additional document."),
        Scenario::FaceMismatch => red("RETRY", &["BAD_FACE_MATCHING"], "Your selfie does not match your document."),
        Scenario::MissingBack => red("RETRY", &["BACK_SIDE_MISSING"], "Please upload the back side of your document."),
        Scenario::Review => json!({ "reviewStatus": "onHold" }),
    }
}

async fn create_applicant(State(sim): State<Arc<Sim>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&sim, &method, &uri, &headers, &body) {
        return unauthorized(&sim).await;
    }
    let Ok(json) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "Malformed JSON", None);
    };
    let Some(external) = json.get("externalUserId").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned) else {
        pause(sim.engine.reject(false)).await;
        return error(StatusCode::BAD_REQUEST, "externalUserId is required", None);
    };
    if json.get("email").and_then(Value::as_str).is_some_and(|e| !e.contains('@')) {
        pause(sim.engine.reject(false)).await;
        return error(StatusCode::BAD_REQUEST, "Invalid email", Some("invalid-field"));
    }
    let last_name = json.pointer("/fixedInfo/lastName").and_then(Value::as_str).unwrap_or_default().to_owned();
    match sim.engine.admit(Some(&external), canonical_hash(&json)) {
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
            let existing = sim.applicants().iter().find(|(_, a)| a.external_user_id == external).map(|(id, _)| id.clone()).unwrap_or_default();
            error(StatusCode::CONFLICT, &format!("Applicant with external user id '{external}' already exists: {existing}"), Some("duplicate"))
        }
        Admit::Proceed { latency, hang, ticket } => {
            pause(latency).await;
            let id = random_id(24).to_ascii_lowercase();
            let applicant = Applicant {
                external_user_id: external,
                last_name,
                created_ms: now_ms(),
                info: json.get("fixedInfo").cloned().unwrap_or(Value::Null),
                docs: Vec::new(),
                review: None,
            };
            let saved = Saved { status: StatusCode::OK, body: to_bytes(&render(&id, &applicant, sim.review_after)) };
            sim.applicants().insert(id, applicant);
            ticket.commit(None, None, &saved);
            if let Some(h) = hang {
                pause(h).await;
            }
            json_reply(saved.status, saved.body, &[])
        }
    }
}

/// `{id}` or `-;externalUserId=<external>`.
fn resolve(apps: &HashMap<String, Applicant>, id: &str) -> Option<String> {
    match id.strip_prefix("-;externalUserId=") {
        Some(ext) => apps.iter().find(|(_, a)| a.external_user_id == ext).map(|(k, _)| k.clone()),
        None => apps.contains_key(id).then(|| id.to_owned()),
    }
}

async fn retrieve(State(sim): State<Arc<Sim>>, Path(id): Path<String>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    if !authorized(&sim, &method, &uri, &headers, b"") {
        return unauthorized(&sim).await;
    }
    let read = sim.engine.read(&id);
    pause(read.latency).await;
    if let Err(fault) = read.outcome {
        return fault_reply(fault);
    }
    let apps = sim.applicants();
    match resolve(&apps, &id).and_then(|k| apps.get(&k).map(|a| render(&k, a, sim.review_after))) {
        Some(v) => json_reply(StatusCode::OK, to_bytes(&v), &[]),
        None => error(StatusCode::NOT_FOUND, "Applicant not found", Some("not-found")),
    }
}

async fn upload(State(sim): State<Arc<Sim>>, Path(id): Path<String>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&sim, &method, &uri, &headers, &body) {
        return unauthorized(&sim).await;
    }
    let Some(parts) = header_str(&headers, "content-type").and_then(|ct| multipart::parse(ct, &body)) else {
        return error(StatusCode::BAD_REQUEST, "Expected multipart/form-data with metadata and content", None);
    };
    let meta: Value = parts.get("metadata").and_then(|m| serde_json::from_slice(m).ok()).unwrap_or(Value::Null);
    let (Some(kind), Some(content)) = (meta.get("idDocType").and_then(Value::as_str), parts.get("content")) else {
        pause(sim.engine.reject(false)).await;
        return error(StatusCode::BAD_REQUEST, "metadata.idDocType and content are required", None);
    };
    if let Err(r) = admit_unkeyed(&sim).await {
        return r;
    }
    let sub = meta.get("idDocSubType").and_then(Value::as_str).map(str::to_owned);
    let mut apps = sim.applicants();
    let Some(a) = apps.get_mut(&id) else {
        return error(StatusCode::NOT_FOUND, "Applicant not found", Some("not-found"));
    };
    a.docs.push((kind.to_owned(), sub.clone(), content.clone()));
    json_reply(StatusCode::OK, to_bytes(&json!({ "idDocType": kind, "idDocSubType": sub, "country": meta.get("country") })), &[])
}

async fn request_review(State(sim): State<Arc<Sim>>, Path(id): Path<String>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&sim, &method, &uri, &headers, &body) {
        return unauthorized(&sim).await;
    }
    let ticket = match admit_unkeyed(&sim).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let saved = Saved { status: StatusCode::OK, body: to_bytes(&json!({ "ok": 1 })) };
    let mut apps = sim.applicants();
    let Some(a) = apps.get_mut(&id) else {
        return error(StatusCode::NOT_FOUND, "Applicant not found", Some("not-found"));
    };
    if a.review.is_none() {
        let is_selfie = |d: &(String, Option<String>, Vec<u8>)| d.0 == "SELFIE";
        let documents: Vec<Vec<u8>> = a.docs.iter().filter(|d| !is_selfie(d)).map(|d| d.2.clone()).collect();
        let selfie = a.docs.iter().find(|d| is_selfie(d)).map(|d| d.2.as_slice());
        let fronts = a.docs.iter().filter(|d| d.1.as_deref() == Some("FRONT_SIDE")).count();
        let backs = a.docs.iter().filter(|d| d.1.as_deref() == Some("BACK_SIDE")).count();
        let chosen = scenario(&a.last_name, &documents, selfie, fronts > backs);
        a.review = Some((Instant::now(), chosen));
        if let Some(w) = &sim.webhooks {
            let now = now_ms();
            w.send(callback(&id, a, "applicantPending", json!({ "reviewStatus": "pending" }), now), Duration::ZERO);
            let result = review_result(chosen);
            let kind = if result["reviewStatus"] == "onHold" { "applicantOnHold" } else { "applicantReviewed" };
            let done = now + sim.review_after.as_millis() as i64;
            w.send(callback(&id, a, kind, result, done), sim.review_after);
        }
        // A review is what Sumsub bills; the ledger counts them.
        let entry = ExecutedPayout {
            vendor: "sumsub".to_owned(),
            vendor_id: id.clone(),
            idempotency_key: a.external_user_id.clone(),
            amount_minor: 0,
            currency: String::new(),
            reference: a.external_user_id.clone(),
            executed_at_ms: now_ms(),
            ..ExecutedPayout::default()
        };
        drop(apps);
        if let Some(t) = ticket {
            t.commit(None, Some(entry), &saved);
        }
    }
    json_reply(saved.status, saved.body, &[])
}
