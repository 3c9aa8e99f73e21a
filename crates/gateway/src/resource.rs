//! The shape every domain's routes share, drawn out of the payout routes
//! once a third domain needed it:
//!
//! - POST: correlation -> body -> `Idempotency-Key` -> the domain's
//!   [`Prepared`] command (validated, encoded, its request digest) -> claim
//!   the key -> publish and wait for the broker's acknowledgement -> store
//!   the resource's first state and the answer -> 202 with `Location`. Only
//!   an acknowledged command is answered 202; a failed publish releases the
//!   claim and answers 503, and the caller's retry (same key, same derived
//!   id, same command) is handled as new.
//! - GET: the projected state with `ETag`, `If-None-Match` and `?wait=`.
//!
//! A domain only says how its body becomes a command and how its outcome
//! becomes a view; the idempotency table, the publish contract and the
//! problems are the same for all.

use crate::auth::Team;
use crate::problem::Problem;
use crate::Gateway;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::Query;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};
use switchyard_bus::{AvroEncoder, MessageContext, Outbound};
use switchyard_canonical::{CorrelationId, Fingerprint, TraceParent};
use switchyard_store::gateway::{CreatedView, RequestClaim, RequestVerdict};

pub(crate) const IDEMPOTENCY_KEY: &str = "idempotency-key";
pub(crate) const CORRELATION_ID: &str = "x-correlation-id";
const REPLAYED: &str = "idempotent-replayed";

/// A request turned into its command, ready to claim and publish.
pub(crate) struct Prepared {
    /// The claim's namespace: the domain whose command topic it goes to, so
    /// the gateway's claim and the consumer's meet on the same key.
    pub(crate) domain: &'static str,
    pub(crate) resource_id: String,
    /// The resource's URL, answered in `Location`.
    pub(crate) location: String,
    /// What makes two requests "the same" (see [`digest`]).
    pub(crate) digest: String,
    /// Topic, Kafka key and payload; `submit` adds the headers.
    pub(crate) record: Outbound,
    /// The payload's schema id, named in the headers.
    pub(crate) schema_id: u32,
    pub(crate) answer: Answer,
}

/// What a 202 answers.
pub(crate) enum Answer {
    /// A new resource: its first state (`accepted`), stored for `GET` until
    /// the projection writes a later one. It fills an empty row only: a
    /// core system's command under the same key may have been answered
    /// before this request came, with an outcome older than it.
    Created { status: &'static str, body: String },
    /// A new resource kept apart from the claim's domain (an open banking
    /// payment: its key shares the consents' namespace, as on the bus).
    CreatedIn { domain: &'static str, status: &'static str, body: String },
    /// An action on an existing resource: its state as read before.
    Current { body: String },
}

/// The caller and every field of the request, in a fixed order (JSON key
/// order and whitespace do not matter); `scope` tells apart requests on
/// different resources (a decision's application id). The team is in it:
/// another team reusing a key is a collision (422), never a replay of this
/// team's answer.
pub(crate) fn digest<T: Serialize>(team: &str, scope: &str, request: &T) -> String {
    let canonical = serde_json::to_vec(request).unwrap_or_default();
    Fingerprint::of_fields(&[team.as_bytes(), scope.as_bytes(), &canonical]).0
}

/// The body as `T`, or a problem naming what is wrong in our words.
pub(crate) fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    serde_json::from_slice(body).map_err(|e| Problem::invalid(format!("body: {e}")))
}

/// A command in its topic's Avro encoding.
pub(crate) fn encode<T: Serialize>(encoder: &AvroEncoder, command: &T, what: &str) -> Result<Vec<u8>, Problem> {
    encoder.encode(command).map_err(|e| {
        tracing::error!(error = %e, "{what} command does not encode");
        Problem::invalid(format!("the {what} cannot be expressed as a command"))
    })
}

pub(crate) async fn not_found() -> Response {
    Problem::not_found("route").into_response()
}

/// The caller's correlation id, or a new one; a value we could not pass on
/// (not printable ASCII, too long) is refused rather than replaced, so the
/// caller's own logs keep matching ours.
fn correlation(headers: &HeaderMap) -> Result<MessageContext, Problem> {
    let mut context = MessageContext::new_root();
    if let Some(value) = headers.get(CORRELATION_ID) {
        let Some(text) = valid_correlation(value) else {
            return Err(Problem::invalid("X-Correlation-Id must be 1 to 128 printable ASCII characters"));
        };
        context.correlation_id = CorrelationId(text.to_owned());
    }
    // A malformed traceparent starts a new trace, as W3C Trace Context says.
    if let Some(parent) = headers.get("traceparent").and_then(|v| v.to_str().ok()).and_then(TraceParent::parse) {
        context.traceparent = parent;
    }
    Ok(context)
}

/// A correlation id we can pass on as it came: 1 to 128 printable ASCII.
pub(crate) fn valid_correlation(value: &HeaderValue) -> Option<&str> {
    let ok = value.len() <= 128 && !value.is_empty() && value.as_bytes().iter().all(|b| (b' '..=b'~').contains(b));
    value.to_str().ok().filter(|_| ok)
}

fn with_correlation(mut response: Response, context: &MessageContext) -> Response {
    if let Ok(value) = HeaderValue::from_str(&context.correlation_id.0) {
        response.headers_mut().insert(HeaderName::from_static(CORRELATION_ID), value);
    }
    response
}

/// Every POST by `team`: `prepare` turns the key and body into the domain's command.
pub(crate) async fn submit<F, Fut>(app: &Gateway, team: &Team, headers: &HeaderMap, body: Result<Bytes, BytesRejection>, prepare: F) -> Response
where
    F: FnOnce(String, Bytes) -> Fut,
    Fut: Future<Output = Result<Prepared, Problem>>,
{
    let context = match correlation(headers) {
        Ok(c) => c,
        Err(problem) => return problem.into_response(),
    };
    let response = match accept(app, team, headers, body, context.clone(), prepare).await {
        Ok(response) | Err(response) => response,
    };
    with_correlation(response, &context)
}

async fn accept<F, Fut>(app: &Gateway, team: &Team, headers: &HeaderMap, body: Result<Bytes, BytesRejection>, mut context: MessageContext, prepare: F) -> Result<Response, Response>
where
    F: FnOnce(String, Bytes) -> Fut,
    Fut: Future<Output = Result<Prepared, Problem>>,
{
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => Problem::too_large(app.config.max_body_bytes).into_response(),
        _ => Problem::invalid("the request body could not be read").into_response(),
    })?;
    let key = headers
        .get(IDEMPOTENCY_KEY)
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty() && k.len() <= 128)
        .ok_or_else(|| Problem::key_required().into_response())?
        .to_owned();
    let Prepared { domain, resource_id, location, digest, mut record, schema_id, answer } =
        prepare(key.clone(), body).await.map_err(IntoResponse::into_response)?;
    let claim = RequestClaim { domain, idempotency_key: &key, request_digest: &digest, resource_id: &resource_id, lease_ms: app.config.lease_ms as i64 };
    let verdict = app.store.claim(&claim).await.map_err(|e| {
        tracing::warn!(error = %e, "idempotency claim failed");
        Problem::store_unavailable().into_response()
    })?;
    match verdict {
        RequestVerdict::Claimed => {}
        RequestVerdict::Replay { status, body } => return Ok(replay(status, body, &location)),
        RequestVerdict::Mismatch => return Err(Problem::key_reused().into_response()),
        RequestVerdict::InFlight => return Err(Problem::in_flight().into_response()),
    }
    // The creator of a new resource, for its callback: stored before the
    // publish, so no outcome can be projected before its owner is known.
    let created_in = match &answer {
        Answer::Created { .. } => Some(domain),
        Answer::CreatedIn { domain, .. } => Some(*domain),
        Answer::Current { .. } => None,
    };
    if let Some(created_in) = created_in.filter(|_| app.callbacks.enabled_for(&team.name)) {
        if let Err(e) = app.callbacks.record_owner(created_in, &resource_id, &team.name).await {
            tracing::warn!(error = %e, domain = created_in, resource_id = %resource_id, "resource owner not recorded");
            release(app, domain, &key).await;
            return Err(Problem::store_unavailable().into_response());
        }
    }

    context.idempotency_key = Some(key.clone());
    record.headers = context.outbound_headers(Some(schema_id));
    let publisher = app.publisher();
    let acked = match tokio::time::timeout(app.publish_timeout, publisher.publish(&record)).await {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, domain, resource_id = %resource_id, correlation_id = %context.correlation_id, "command not acknowledged");
            app.renew_publisher(&publisher);
            false
        }
        Err(_) => {
            tracing::warn!(domain, resource_id = %resource_id, correlation_id = %context.correlation_id, "no acknowledgement in time");
            false
        }
    };
    if !acked {
        release(app, domain, &key).await;
        return Err(Problem::bus_unavailable().into_response());
    }

    // Both writes may fail without changing the answer: the command is on
    // the bus. A lost resource row is filled by the projection; a lost
    // answer lets a retry, after the lease, publish the same command again,
    // which the consumer's claim answers without a second vendor call.
    let (body, created) = match answer {
        Answer::Created { status, body } => (body, Some((domain, status))),
        Answer::CreatedIn { domain: in_domain, status, body } => (body, Some((in_domain, status))),
        Answer::Current { body } => (body, None),
    };
    let created = created.map(|(in_domain, status)| CreatedView { domain: in_domain, resource_id: &resource_id, status });
    if let Err(e) = app.store.answer(domain, &key, 202, &body, created).await {
        tracing::warn!(error = %e, domain, resource_id = %resource_id, "answer not stored for replay");
    }
    tracing::info!(domain, resource_id = %resource_id, correlation_id = %context.correlation_id, "command accepted");
    Ok(located(StatusCode::ACCEPTED, body, &location))
}

async fn release(app: &Gateway, domain: &str, key: &str) {
    if let Err(e) = app.store.release(domain, key).await {
        // The lease runs out instead; until then a retry is told 409.
        tracing::warn!(error = %e, "claim not released");
    }
}

fn located(status: StatusCode, body: String, location: &str) -> Response {
    let mut response = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

fn replay(status: u16, body: String, location: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = located(status, body, location);
    response.headers_mut().insert(HeaderName::from_static(REPLAYED), HeaderValue::from_static("true"));
    response
}

/// `10s`, `500ms` or plain seconds.
fn parse_wait(text: &str) -> Option<Duration> {
    if let Some(ms) = text.strip_suffix("ms") {
        return ms.parse().ok().map(Duration::from_millis);
    }
    text.strip_suffix('s').unwrap_or(text).parse().ok().map(Duration::from_secs)
}

fn etag_of(body: &str) -> String {
    format!("\"{}\"", &Fingerprint::of_fields(&[body.as_bytes()]).0[..20])
}

/// True when the caller's `If-None-Match` lists `etag` (or is `*`).
fn matches(if_none_match: Option<&str>, etag: &str) -> bool {
    if_none_match.is_some_and(|v| v.split(',').map(str::trim).any(|t| t == "*" || t == etag || t.strip_prefix("W/") == Some(etag)))
}

pub(crate) type QueryMap = Result<Query<HashMap<String, String>>, QueryRejection>;

/// Every GET of one resource: its current state with `ETag`; `?wait=`
/// holds the call until it changes (or, without `If-None-Match`, until its
/// first outcome). `noun` names it in a 404.
pub(crate) async fn current(app: &Gateway, domain: &str, noun: &str, id: &str, query: QueryMap, headers: &HeaderMap) -> Response {
    let Ok(Query(query)) = query else { return Problem::invalid("the query string could not be read").into_response() };
    let wait = match query.get("wait").map(|w| parse_wait(w)) {
        None => Duration::ZERO,
        Some(Some(wait)) => wait.min(Duration::from_millis(app.config.max_wait_ms)),
        Some(None) => return Problem::invalid("wait must be a duration such as 10s or 500ms").into_response(),
    };
    let if_none_match = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok());
    let deadline = Instant::now() + wait;
    loop {
        // Registered before the read, so a write between the read and the
        // wait still wakes us.
        let notified = app.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let state = match app.store.resource(domain, id).await {
            Ok(Some(state)) => state,
            Ok(None) => return Problem::not_found(noun).into_response(),
            Err(e) => {
                tracing::warn!(error = %e, domain, "state not read");
                return Problem::store_unavailable().into_response();
            }
        };
        let etag = etag_of(&state.body);
        let unchanged = match if_none_match {
            Some(_) => matches(if_none_match, &etag),
            // Without a version to compare, a wait is for the first outcome.
            None => state.status == ACCEPTED,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if !unchanged || left.is_zero() {
            return view_response(&state.body, &etag, matches(if_none_match, &etag));
        }
        // Another instance may have projected the change: look again
        // at least every 200 ms.
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep(left.min(Duration::from_millis(200))) => {}
        }
    }
}

/// The status of a resource whose command is on the bus and which has no
/// outcome yet, in every domain.
pub(crate) const ACCEPTED: &str = "accepted";

fn view_response(body: &str, etag: &str, not_modified: bool) -> Response {
    let etag = HeaderValue::from_str(etag).unwrap_or(HeaderValue::from_static("\"\""));
    if not_modified {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    (StatusCode::OK, [(header::ETAG, etag), (header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body.to_owned()).into_response()
}

/// Every list: resources of `domain` in one of `statuses`, oldest change first.
pub(crate) async fn list(app: &Gateway, domain: &str, statuses: &[&str], query: QueryMap) -> Response {
    let Ok(Query(query)) = query else { return Problem::invalid("the query string could not be read").into_response() };
    let Some(status) = query.get("status").filter(|s| statuses.contains(&s.as_str())) else {
        return Problem::invalid(format!("status is required, one of {}", statuses.join(", "))).into_response();
    };
    let limit = match query.get("limit").map(|l| l.parse::<i64>()) {
        None => 100,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        Some(_) => return Problem::invalid("limit must be between 1 and 1000").into_response(),
    };
    match app.store.resources_in(domain, status, limit).await {
        Ok(states) => {
            let items: Vec<serde_json::Value> = states.iter().filter_map(|s| serde_json::from_str(&s.body).ok()).collect();
            (StatusCode::OK, axum::Json(serde_json::json!({ "items": items }))).into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, domain, "list not read");
            Problem::store_unavailable().into_response()
        }
    }
}

/// A resource id derived from the idempotency key: `<prefix>_` and 24 hex
/// digits. A retried request (even one answered 503 whose command may yet
/// have landed) publishes the very command of the first try, so the
/// consumer's claim sees an honest duplicate, never a collision.
pub(crate) fn derived_id(prefix: &str, domain: &str, idempotency_key: &str) -> String {
    let digest = Fingerprint::of_fields(&[domain.as_bytes(), idempotency_key.as_bytes()]);
    format!("{prefix}_{}", &digest.0[..24])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_parse_and_etags_match_lists_and_weak_forms() {
        assert_eq!(parse_wait("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_wait("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_wait("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_wait("soon"), None);
        let etag = etag_of("{}");
        assert!(matches(Some(&etag), &etag));
        assert!(matches(Some(&format!("\"x\", W/{etag}")), &etag));
        assert!(matches(Some("*"), &etag));
        assert!(!matches(Some("\"other\""), &etag));
        assert!(!matches(None, &etag));
        assert_ne!(etag_of("{}"), etag_of("{ }"));
    }

    #[test]
    fn a_request_digest_covers_the_team_the_resource_and_every_field() {
        let body = serde_json::json!({"a": 1});
        assert_eq!(digest("t", "", &body), digest("t", "", &serde_json::json!({"a": 1})));
        assert_ne!(digest("t", "", &body), digest("u", "", &body));
        assert_ne!(digest("t", "x", &body), digest("t", "y", &body));
        assert_ne!(digest("t", "", &body), digest("t", "", &serde_json::json!({"a": 2})));
        assert_eq!(derived_id("kyc", "kyc", "k"), derived_id("kyc", "kyc", "k"));
        assert_ne!(derived_id("kyc", "kyc", "k"), derived_id("kyc", "aml", "k"));
    }
}
