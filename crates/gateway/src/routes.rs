//! The HTTP handlers.
//!
//! POST: key -> body -> command -> claim the key -> publish and wait for the
//! acknowledgement -> record the resource and the answer -> 202. Only an
//! acknowledged command is answered 202; a failed publish releases the
//! claim and answers 503, and the caller's retry (same key, same derived
//! payout id, same command) is handled as new.

use crate::auth::Team;
use crate::payouts::{PayoutList, PayoutRequest, PayoutView, DOMAIN, LISTABLE_STATUSES};
use crate::problem::Problem;
use crate::Gateway;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::Extension;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_bus::{MessageContext, Outbound};
use switchyard_canonical::{CorrelationId, Fingerprint, TraceParent};
use switchyard_store::gateway::{RequestClaim, RequestVerdict};

pub(crate) const IDEMPOTENCY_KEY: &str = "idempotency-key";
pub(crate) const CORRELATION_ID: &str = "x-correlation-id";
const REPLAYED: &str = "idempotent-replayed";

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

fn location(id: &str) -> String {
    format!("/v1/payouts/{id}")
}

/// Request a payout. Answered 202 once the command is on the bus; follow
/// `Location` for its state.
#[utoipa::path(
    post, path = "/v1/payouts", tag = "payouts", operation_id = "createPayout",
    security(("api_key" = ["payouts:write"])),
    request_body = PayoutRequest,
    params(
        ("Idempotency-Key" = String, Header, description = "Required. The same key and body replays the first answer; another body is 422."),
        ("X-Correlation-Id" = Option<String>, Header, description = "1 to 128 printable ASCII; echoed, and carried on the command."),
    ),
    responses(
        (status = 202, description = "Accepted: the command is on the bus", body = PayoutView,
            headers(("Location" = String, description = "The payout's URL"))),
        (status = 400, description = "Invalid request or Idempotency-Key missing", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The team lacks payouts:write", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The same request is in flight", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The key was used for another request", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited; see Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Not accepted (bus or store unavailable); retry with the same key", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn post_payout(
    State(app): State<Arc<Gateway>>,
    Extension(team): Extension<Arc<Team>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let context = match correlation(&headers) {
        Ok(c) => c,
        Err(problem) => return problem.into_response(),
    };
    let response = match accept_payout(&app, &team, &headers, body, context.clone()).await {
        Ok(response) | Err(response) => response,
    };
    with_correlation(response, &context)
}

async fn accept_payout(app: &Gateway, team: &Team, headers: &HeaderMap, body: Result<Bytes, BytesRejection>, mut context: MessageContext) -> Result<Response, Response> {
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
    let request: PayoutRequest =
        serde_json::from_slice(&body).map_err(|e| Problem::invalid(format!("body: {e}")).into_response())?;
    let command = request.to_command(&key).map_err(|e| Problem::invalid(e).into_response())?;
    // The team is part of the request: another team reusing the key is a
    // collision (422), never a replay of this team's answer.
    let digest = request.digest(&team.name);
    let claim = RequestClaim {
        domain: DOMAIN,
        idempotency_key: &key,
        request_digest: &digest,
        resource_id: &command.payout_id,
        lease_ms: app.config.lease_ms as i64,
    };
    let verdict = app.store.claim(&claim).await.map_err(|e| {
        tracing::warn!(error = %e, "idempotency claim failed");
        Problem::store_unavailable().into_response()
    })?;
    match verdict {
        RequestVerdict::Claimed => {}
        RequestVerdict::Replay { status, body } => return Ok(replay(status, body, &command.payout_id)),
        RequestVerdict::Mismatch => return Err(Problem::key_reused().into_response()),
        RequestVerdict::InFlight => return Err(Problem::in_flight().into_response()),
    }

    context.idempotency_key = Some(key.clone());
    let payload = match app.payout_encoder.encode(&command) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "payout command does not encode");
            release(app, &key).await;
            return Err(Problem::invalid("the payout cannot be expressed as a command").into_response());
        }
    };
    let record = Outbound {
        topic: app.config.topics.payout_commands.clone(),
        key: Some(command.payout_id.clone().into_bytes()),
        payload,
        headers: context.outbound_headers(Some(app.payout_encoder.schema_id())),
    };
    let publisher = app.publisher();
    let acked = match tokio::time::timeout(app.publish_timeout, publisher.publish(&record)).await {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, payout_id = %command.payout_id, correlation_id = %context.correlation_id, "command not acknowledged");
            app.renew_publisher(&publisher);
            false
        }
        Err(_) => {
            tracing::warn!(payout_id = %command.payout_id, correlation_id = %context.correlation_id, "no acknowledgement in time");
            false
        }
    };
    if !acked {
        release(app, &key).await;
        return Err(Problem::bus_unavailable().into_response());
    }

    let view = PayoutView::accepted(&command);
    let body = serde_json::to_string(&view).unwrap_or_default();
    // Both writes may fail without changing the answer: the command is on
    // the bus. A lost resource row is filled by the projection; a lost
    // answer lets a retry, after the lease, publish the same command again,
    // which the worker's claim answers without a second vendor call.
    if let Err(e) = app.store.upsert_resource(DOMAIN, &view.id, &view.status, &body, command.requested_at_ms).await {
        tracing::warn!(error = %e, payout_id = %view.id, "accepted state not stored");
    }
    if let Err(e) = app.store.complete(DOMAIN, &key, 202, &body).await {
        tracing::warn!(error = %e, payout_id = %view.id, "answer not stored for replay");
    }
    tracing::info!(payout_id = %view.id, correlation_id = %context.correlation_id, "payout accepted");
    Ok(accepted(StatusCode::ACCEPTED, body, &view.id))
}

async fn release(app: &Gateway, key: &str) {
    if let Err(e) = app.store.release(DOMAIN, key).await {
        // The lease runs out instead; until then a retry is told 409.
        tracing::warn!(error = %e, "claim not released");
    }
}

fn accepted(status: StatusCode, body: String, id: &str) -> Response {
    let mut response = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    if let Ok(value) = HeaderValue::from_str(&location(id)) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

fn replay(status: u16, body: String, id: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = accepted(status, body, id);
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

/// A payout's current state, with `ETag`; `?wait=` holds the call until it
/// changes (or, without `If-None-Match`, until its first outcome).
#[utoipa::path(
    get, path = "/v1/payouts/{id}", tag = "payouts", operation_id = "getPayout",
    security(("api_key" = ["payouts:read"])),
    params(
        ("id" = String, Path, description = "The id from the 202's body or Location"),
        ("wait" = Option<String>, Query, description = "Long poll: `10s`, `500ms` or seconds, capped by the gateway"),
        ("If-None-Match" = Option<String>, Header, description = "An ETag from an earlier answer"),
    ),
    responses(
        (status = 200, description = "The payout", body = PayoutView, headers(("ETag" = String))),
        (status = 304, description = "Unchanged since If-None-Match"),
        (status = 400, description = "Invalid wait", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The team lacks payouts:read", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such payout", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited; see Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "State unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get_payout(
    State(app): State<Arc<Gateway>>,
    Path(id): Path<String>,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
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
        let state = match app.store.resource(DOMAIN, &id).await {
            Ok(Some(state)) => state,
            Ok(None) => return Problem::not_found("payout").into_response(),
            Err(e) => {
                tracing::warn!(error = %e, "payout state not read");
                return Problem::store_unavailable().into_response();
            }
        };
        let etag = etag_of(&state.body);
        let unchanged = match if_none_match {
            Some(_) => matches(if_none_match, &etag),
            // Without a version to compare, a wait is for the first outcome.
            None => state.status == "accepted",
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

fn view_response(body: &str, etag: &str, not_modified: bool) -> Response {
    let etag = HeaderValue::from_str(etag).unwrap_or(HeaderValue::from_static("\"\""));
    if not_modified {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    (StatusCode::OK, [(header::ETAG, etag), (header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body.to_owned()).into_response()
}

/// Payouts in one status, oldest change first (ops lists such as
/// `status=pending_unknown`).
#[utoipa::path(
    get, path = "/v1/payouts", tag = "payouts", operation_id = "listPayouts",
    security(("api_key" = ["payouts:read"])),
    params(
        ("status" = String, Query, description = "One of accepted, submitted, paid, failed, rejected, pending_unknown, held"),
        ("limit" = Option<i64>, Query, description = "1 to 1000, default 100"),
    ),
    responses(
        (status = 200, description = "The payouts", body = PayoutList),
        (status = 400, description = "Missing or unknown status, or limit out of range", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The team lacks payouts:read", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited; see Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "State unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list_payouts(
    State(app): State<Arc<Gateway>>,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else { return Problem::invalid("the query string could not be read").into_response() };
    let Some(status) = query.get("status").filter(|s| LISTABLE_STATUSES.contains(&s.as_str())) else {
        return Problem::invalid(format!("status is required, one of {}", LISTABLE_STATUSES.join(", "))).into_response();
    };
    let limit = match query.get("limit").map(|l| l.parse::<i64>()) {
        None => 100,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        Some(_) => return Problem::invalid("limit must be between 1 and 1000").into_response(),
    };
    match app.store.resources_in(DOMAIN, status, limit).await {
        Ok(states) => {
            let items: Vec<serde_json::Value> = states.iter().filter_map(|s| serde_json::from_str(&s.body).ok()).collect();
            (StatusCode::OK, axum::Json(serde_json::json!({ "items": items }))).into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "payout list not read");
            Problem::store_unavailable().into_response()
        }
    }
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
}
