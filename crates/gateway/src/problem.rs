//! Errors in one shape: RFC 9457 problem details (`application/problem+json`)
//! carrying our error taxonomy's class and one of our codes. Nothing a
//! vendor wrote ever reaches a problem: details are composed here.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use switchyard_canonical::{ErrorClass, ErrorCode};

pub const PROBLEM_JSON: &str = "application/problem+json";

/// Our codes for what goes wrong at the gateway, beside the canonical
/// [`ErrorCode`]s the workers use. A closed set: the OpenAPI document lists
/// it, and clients may match on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayCode {
    /// A canonical code (`invalid_request`, `idempotency_collision`, ...).
    Canonical(ErrorCode),
    IdempotencyKeyRequired,
    RequestInFlight,
    NotFound,
    PayloadTooLarge,
    BusUnavailable,
    StoreUnavailable,
    Unauthenticated,
    Forbidden,
    RateLimited,
}

impl GatewayCode {
    pub fn as_str(self) -> &'static str {
        match self {
            GatewayCode::Canonical(code) => code.as_str(),
            GatewayCode::IdempotencyKeyRequired => "idempotency_key_required",
            GatewayCode::RequestInFlight => "request_in_flight",
            GatewayCode::NotFound => "not_found",
            GatewayCode::PayloadTooLarge => "payload_too_large",
            GatewayCode::BusUnavailable => "bus_unavailable",
            GatewayCode::StoreUnavailable => "store_unavailable",
            GatewayCode::Unauthenticated => "unauthenticated",
            GatewayCode::Forbidden => "forbidden",
            GatewayCode::RateLimited => "rate_limited",
        }
    }
}

/// An RFC 9457 problem with our extension members `code` and `class`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Problem {
    /// `urn:switchyard:problem:<code>`: stable, one per code.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: &'static str,
    pub status: u16,
    /// What was wrong with this request, in our words.
    pub detail: String,
    pub code: &'static str,
    /// `transient` (retry, with the same idempotency key), `permanent`
    /// (do not retry unchanged), `manual_repair`, `compliance_hold`.
    pub class: &'static str,
    /// Seconds to wait before retrying, where the status has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl Problem {
    pub fn new(status: StatusCode, code: GatewayCode, class: ErrorClass, title: &'static str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("urn:switchyard:problem:{}", code.as_str()),
            title,
            status: status.as_u16(),
            detail: detail.into(),
            code: code.as_str(),
            class: class.as_str(),
            retry_after: None,
        }
    }

    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, GatewayCode::Canonical(ErrorCode::InvalidRequest), ErrorClass::Permanent, "Invalid request", detail)
    }

    pub fn key_required() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            GatewayCode::IdempotencyKeyRequired,
            ErrorClass::Permanent,
            "Idempotency-Key required",
            "every POST needs an Idempotency-Key header: printable ASCII, at most 128 characters",
        )
    }

    pub fn key_reused() -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            GatewayCode::Canonical(ErrorCode::IdempotencyCollision),
            ErrorClass::Permanent,
            "Idempotency-Key reused",
            "this Idempotency-Key was used for a different request; use a new key for a new request",
        )
    }

    pub fn in_flight() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            GatewayCode::RequestInFlight,
            ErrorClass::Transient,
            "Request in flight",
            "a request with this Idempotency-Key is still being processed; retry it shortly",
        )
        .retry_after(1)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, GatewayCode::NotFound, ErrorClass::Permanent, "Not found", format!("no {what} with this id"))
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            GatewayCode::PayloadTooLarge,
            ErrorClass::Permanent,
            "Payload too large",
            format!("request bodies are limited to {limit} bytes"),
        )
    }

    /// The broker did not acknowledge the command: it was not accepted.
    pub fn bus_unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            GatewayCode::BusUnavailable,
            ErrorClass::Transient,
            "Not accepted",
            "the command could not be queued; retry with the same Idempotency-Key",
        )
        .retry_after(1)
    }

    pub fn store_unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            GatewayCode::StoreUnavailable,
            ErrorClass::Transient,
            "Temporarily unavailable",
            "state could not be read or written; retry with the same Idempotency-Key",
        )
        .retry_after(1)
    }

    /// No key, or one no team holds. Says nothing about which.
    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            GatewayCode::Unauthenticated,
            ErrorClass::Permanent,
            "Unauthenticated",
            "call with Authorization: Bearer <your team's API key>",
        )
    }

    /// An OAuth2 access token that does not verify (signature, expiry,
    /// issuer, audience) or names no team's client. Says nothing about which.
    pub fn invalid_token() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            GatewayCode::Unauthenticated,
            ErrorClass::Permanent,
            "Unauthenticated",
            "the access token is not valid for this API: get a new one from the issuer",
        )
    }

    pub fn forbidden(scope: &str) -> Self {
        Self::new(StatusCode::FORBIDDEN, GatewayCode::Forbidden, ErrorClass::Permanent, "Forbidden", format!("this call needs the scope {scope}"))
    }

    pub fn rate_limited(seconds: u64) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            GatewayCode::RateLimited,
            ErrorClass::Transient,
            "Too many requests",
            "your team's request rate is above its limit; retry after Retry-After seconds",
        )
        .retry_after(seconds)
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_string(&self).unwrap_or_else(|_| "{}".to_owned());
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            // RFC 9110: a 401 names the scheme to use.
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"switchyard\""));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_problem_is_problem_json_with_our_code_class_and_retry_after() {
        let response = Problem::in_flight().into_response();
        assert_eq!(response.status(), StatusCode::CONFLICT);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let body = axum::body::to_bytes(response.into_body(), 4096).await.expect("body");
        let json: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(json["type"], "urn:switchyard:problem:request_in_flight");
        assert_eq!(json["status"], 409);
        assert_eq!(json["class"], "transient");
        assert_eq!(json["code"], "request_in_flight");
        let reused = Problem::key_reused();
        assert_eq!((reused.status, reused.code, reused.class), (422, "idempotency_collision", "permanent"));
    }
}

/// The problems every POST may answer besides its route's own (403 names
/// the route's scope, 404 its resource): one list, so that the routes'
/// documents cannot drift apart. Documentation only: handlers answer
/// [`Problem`]s.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub(crate) enum PostProblems {
    #[response(status = 400, description = "Invalid request or Idempotency-Key missing", content_type = "application/problem+json")]
    Invalid(Problem),
    #[response(status = 401, description = "No valid API key", content_type = "application/problem+json")]
    Unauthenticated(Problem),
    #[response(status = 409, description = "The same request is in flight", content_type = "application/problem+json")]
    InFlight(Problem),
    #[response(status = 413, description = "Body too large", content_type = "application/problem+json")]
    TooLarge(Problem),
    #[response(status = 422, description = "The key was used for another request", content_type = "application/problem+json")]
    KeyReused(Problem),
    #[response(status = 429, description = "Rate limited; see Retry-After", content_type = "application/problem+json")]
    RateLimited(Problem),
    #[response(status = 503, description = "Not accepted (bus or store unavailable); retry with the same key", content_type = "application/problem+json")]
    NotAccepted(Problem),
}

/// The problems every `GET` may answer besides its route's own, as
/// [`PostProblems`] for POSTs.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub(crate) enum GetProblems {
    #[response(status = 401, description = "No valid API key", content_type = "application/problem+json")]
    Unauthenticated(Problem),
    #[response(status = 429, description = "Rate limited; see Retry-After", content_type = "application/problem+json")]
    RateLimited(Problem),
    #[response(status = 503, description = "State unavailable", content_type = "application/problem+json")]
    Unavailable(Problem),
}
