//! Outbound HTTP shared by every adapter.
//!
//! The failover rule starts here: an error is *ambiguous* when the vendor may
//! have acted on the request (a timeout after the request was sent, a 5xx
//! other than 503, and every "another request with this key is in flight"
//! answer: 409, 425, Adyen's 704). Ambiguous results are resolved with the
//! same idempotency key at the same vendor, never by trying another vendor.
//! Only [`AdapterError::is_definite_refusal`] may ever move a payout.

use std::time::Duration;
use switchyard_canonical::{ErrorClass, ErrorCode, OutcomeError};

/// Tracing context propagated on every vendor call.
#[derive(Debug, Clone)]
pub struct CallContext {
    pub correlation_id: String,
    pub traceparent: String,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{class:?}/{code:?}{}: {message}", if *.ambiguous { " (ambiguous)" } else { "" })]
pub struct AdapterError {
    pub class: ErrorClass,
    pub code: ErrorCode,
    pub message: String,
    /// The vendor may have executed the request.
    pub ambiguous: bool,
    /// The vendor asked us to wait this long (429/503 `Retry-After`).
    pub retry_after: Option<Duration>,
    pub http_status: Option<u16>,
}

impl AdapterError {
    pub fn new(class: ErrorClass, code: ErrorCode, message: impl Into<String>) -> Self {
        Self { class, code, message: message.into(), ambiguous: false, retry_after: None, http_status: None }
    }

    /// The vendor certainly did not take the request: no connection, or 503
    /// before acceptance. Nothing else may fail a payout over to another
    /// vendor; in particular never a 409/425 "request in progress", which
    /// means the first request under this key is executing right now.
    pub fn is_definite_refusal(&self) -> bool {
        if self.ambiguous || self.class != ErrorClass::Transient {
            return false;
        }
        match self.http_status {
            Some(status) => status == 503,
            None => self.code == ErrorCode::VendorUnavailable,
        }
    }

    /// Whether this failure says the vendor is unwell (feeds its breaker). A
    /// conflict on our own key in flight is our concurrency, not its health.
    pub fn counts_against_vendor(&self) -> bool {
        matches!(self.code, ErrorCode::VendorUnavailable | ErrorCode::Timeout) && !matches!(self.http_status, Some(409 | 425))
    }

    /// Another request under the same idempotency key is executing at the
    /// vendor: ambiguous by definition (it may complete), transient, and no
    /// reason to distrust the vendor.
    pub fn in_flight(status: u16, retry_after: Option<Duration>, detail: &str) -> Self {
        let mut err = Self::new(ErrorClass::Transient, ErrorCode::VendorUnavailable, format!("HTTP {status}: request with this key in progress: {detail}"));
        err.ambiguous = true;
        // The first request is still executing: asking again at once only
        // meets it again. Wait at least a second unless the vendor says.
        err.retry_after = Some(retry_after.unwrap_or(Duration::from_secs(1)));
        err.http_status = Some(status);
        err
    }

    pub fn to_outcome_error(&self) -> OutcomeError {
        OutcomeError { class: self.class, code: self.code, message: self.message.clone() }
    }

    /// Classifies a transport failure of `reqwest`.
    pub fn from_transport(e: &reqwest::Error) -> Self {
        if e.is_builder() {
            // The request could not even be assembled (a header value with a
            // line break, a body that does not serialize): nothing was sent,
            // so nothing can have executed, and the vendor's health is not
            // in question. Retrying builds the same request again.
            return Self::new(ErrorClass::Permanent, ErrorCode::InvalidRequest, format!("request could not be built, not sent: {e}"));
        }
        if e.is_timeout() {
            // The request may have reached the vendor and been executed.
            let mut err = Self::new(ErrorClass::Transient, ErrorCode::Timeout, "vendor call timed out");
            err.ambiguous = true;
            err
        } else if e.is_connect() {
            Self::new(ErrorClass::Transient, ErrorCode::VendorUnavailable, "connection to vendor failed")
        } else if e.is_decode() {
            let mut err = Self::new(ErrorClass::Transient, ErrorCode::Unknown, "vendor reply could not be read");
            err.ambiguous = true;
            err
        } else {
            // Reset mid-flight and the like: the body may have been sent.
            let mut err = Self::new(ErrorClass::Transient, ErrorCode::VendorUnavailable, format!("vendor call failed: {e}"));
            err.ambiguous = true;
            err
        }
    }

    /// Classifies an HTTP status that the vendor-specific mapping did not handle.
    pub fn from_status(status: u16, retry_after: Option<Duration>, detail: &str) -> Self {
        let (class, code, ambiguous) = match status {
            401 | 403 => (ErrorClass::ManualRepair, ErrorCode::AuthenticationFailed, false),
            408 => (ErrorClass::Transient, ErrorCode::Timeout, true),
            // 409: a concurrent request with this key is executing (Stripe,
            // Adyen); 425: too early, the first is not finished. Either may
            // complete: ambiguous, never a refusal.
            409 | 425 => return Self::in_flight(status, retry_after, detail),
            429 => (ErrorClass::Transient, ErrorCode::RateLimited, false),
            // 503 is the vendor saying it did not take the request.
            503 => (ErrorClass::Transient, ErrorCode::VendorUnavailable, false),
            500..=599 => (ErrorClass::Transient, ErrorCode::VendorUnavailable, true),
            400..=499 => (ErrorClass::Permanent, ErrorCode::InvalidRequest, false),
            _ => (ErrorClass::Transient, ErrorCode::Unknown, true),
        };
        let mut err = Self::new(class, code, format!("HTTP {status}: {detail}"));
        err.ambiguous = ambiguous;
        err.retry_after = retry_after;
        err.http_status = Some(status);
        err
    }
}

/// Parses `Retry-After` in its delta-seconds form (HTTP-date is ignored:
/// payout vendors send seconds).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// How an adapter talks to its vendor's host.
#[derive(Debug, Clone)]
pub struct Transport {
    /// The whole call, connect to last byte; past it the call is ambiguous.
    pub timeout: Duration,
    /// Idle HTTP/1 connections kept per vendor host, matching the worker's
    /// concurrency limit so steady load reuses connections.
    pub max_connections: usize,
    /// Speak HTTP/2 from the first byte on plain-`http` endpoints (the
    /// simulators, an in-cluster egress proxy). Over `https` HTTP/2 is offered
    /// through ALPN whatever this says, and the vendor picks.
    pub http2_prior_knowledge: bool,
    /// Client certificate, pinned CA bundle and TLS floor for this vendor.
    pub tls: Option<std::sync::Arc<crate::tls::ClientTls>>,
}

impl Transport {
    pub fn new(timeout: Duration, max_connections: usize) -> Self {
        Self { timeout, max_connections, http2_prior_knowledge: false, tls: None }
    }

    pub fn with_http2_prior_knowledge(self, on: bool) -> Self {
        Self { http2_prior_knowledge: on, ..self }
    }

    pub fn with_tls(self, tls: Option<crate::tls::ClientTls>) -> Self {
        Self { tls: tls.map(std::sync::Arc::new), ..self }
    }
}

pub fn client(transport: Transport) -> Result<reqwest::Client, AdapterError> {
    let mut builder = reqwest::Client::builder()
        .timeout(transport.timeout)
        .connect_timeout(Duration::from_secs(2))
        .pool_max_idle_per_host(transport.max_connections)
        // A vendor API never redirects a payout call; following one would
        // resend credentials and body to a place nobody configured.
        .redirect(reqwest::redirect::Policy::none());
    if transport.http2_prior_knowledge {
        // One multiplexed connection instead of one per call in flight: far
        // fewer syscalls and wake-ups per call at high concurrency.
        builder = builder.http2_prior_knowledge();
    }
    if let Some(tls) = &transport.tls {
        builder = tls.apply(builder);
    }
    builder
        .build()
        .map_err(|e| AdapterError::new(ErrorClass::ManualRepair, ErrorCode::Unknown, format!("http client: {e}")))
}

/// What the vendor's reply said about itself: its HTTP status and the id the
/// vendor gave the request (Stripe `Request-Id`, Adyen `pspReference`), which
/// support tickets and the audit trail quote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplyMeta {
    pub http_status: Option<u16>,
    pub request_id: Option<String>,
}

tokio::task_local! {
    static REPLY_META: std::cell::RefCell<ReplyMeta>;
}

/// Runs `call` and returns, with its result, the metadata of the last vendor
/// reply it received (none after a transport failure). A task-local keeps
/// every vendor module's signature unchanged: the shared send path records
/// what it saw, and only callers that ask pay for it.
pub async fn observe<F: std::future::Future>(call: F) -> (F::Output, ReplyMeta) {
    REPLY_META
        .scope(std::cell::RefCell::new(ReplyMeta::default()), async move {
            let out = call.await;
            let meta = REPLY_META.with(|m| m.borrow().clone());
            (out, meta)
        })
        .await
}

/// Request-id headers in the order vendors use them.
const REQUEST_ID_HEADERS: &[&str] = &["request-id", "pspreference", "x-request-id"];

fn note_reply(status: u16, headers: &reqwest::header::HeaderMap) {
    // Outside `observe` there is nobody to tell; that is not an error.
    let _ = REPLY_META.try_with(|m| {
        let request_id = REQUEST_ID_HEADERS
            .iter()
            .find_map(|h| headers.get(*h)?.to_str().ok())
            .map(|v| v.chars().take(128).collect());
        *m.borrow_mut() = ReplyMeta { http_status: Some(status), request_id };
    });
}

/// Sends a request and reads a JSON reply: `T` on 2xx, otherwise the
/// vendor's error body `E` (if it parses) handed to the vendor's mapping.
/// A 2xx body that cannot be read is ambiguous: the vendor did act.
pub async fn send_json<T, E>(
    req: reqwest::RequestBuilder,
    map_error: impl FnOnce(u16, Option<Duration>, Option<E>) -> AdapterError,
) -> Result<T, AdapterError>
where
    T: serde::de::DeserializeOwned,
    E: serde::de::DeserializeOwned,
{
    let reply = send_traced(req).await.map_err(|e| AdapterError::from_transport(&e))?;
    let status = reply.status().as_u16();
    let wait = retry_after(reply.headers());
    note_reply(status, reply.headers());
    let body = reply.bytes().await.map_err(|e| AdapterError::from_transport(&e))?;
    if (200..300).contains(&status) {
        return serde_json::from_slice(&body).map_err(|e| {
            let mut err = AdapterError::from_status(502, None, &format!("unreadable {status} reply: {e}"));
            err.ambiguous = true;
            err
        });
    }
    Err(map_error(status, wait, serde_json::from_slice(&body).ok()))
}

/// [`send_json`] for a request whose success has no body (Marqeta's
/// `PUT /pins` answers 204): traced and observed the same way.
pub async fn send_empty<E>(req: reqwest::RequestBuilder, map_error: impl FnOnce(u16, Option<Duration>, Option<E>) -> AdapterError) -> Result<(), AdapterError>
where
    E: serde::de::DeserializeOwned,
{
    let reply = send_traced(req).await.map_err(|e| AdapterError::from_transport(&e))?;
    let status = reply.status().as_u16();
    let wait = retry_after(reply.headers());
    note_reply(status, reply.headers());
    if (200..300).contains(&status) {
        return Ok(());
    }
    let body = reply.bytes().await.map_err(|e| AdapterError::from_transport(&e))?;
    Err(map_error(status, wait, serde_json::from_slice(&body).ok()))
}

/// Sends `req`; when the caller's span is exported (trace export on, see
/// `switchyard_bus::telemetry`), inside a `vendor_call` client span whose id
/// replaces the `traceparent` [`traced`] set, so the vendor's side of the
/// call joins the same trace. Off, this is `req.send()` after one lookup.
async fn send_traced(req: reqwest::RequestBuilder) -> Result<reqwest::Response, reqwest::Error> {
    use opentelemetry::trace::TraceContextExt;
    use tracing::Instrument;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    if !tracing::Span::current().context().span().span_context().is_valid() {
        return req.send().await;
    }
    let (client, request) = req.build_split();
    let mut request = request?;
    let span = tracing::info_span!(
        "vendor_call",
        otel.kind = "client",
        http.request.method = %request.method(),
        server.address = request.url().host_str().unwrap_or_default(),
        http.response.status_code = tracing::field::Empty,
    );
    let context = span.context();
    let otel = context.span();
    let sc = otel.span_context();
    let traceparent = format!("00-{}-{}-{:02x}", sc.trace_id(), sc.span_id(), sc.trace_flags().to_u8());
    if let Ok(value) = reqwest::header::HeaderValue::from_str(&traceparent) {
        request.headers_mut().insert("traceparent", value);
    }
    let reply = client.execute(request).instrument(span.clone()).await;
    if let Ok(reply) = &reply {
        span.record("http.response.status_code", reply.status().as_u16());
    }
    reply
}

/// Adds the tracing headers every outbound call carries.
pub fn traced(req: reqwest::RequestBuilder, ctx: &CallContext) -> reqwest::RequestBuilder {
    req.header("traceparent", &ctx.traceparent).header("X-Correlation-Id", &ctx.correlation_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn observe_reports_the_last_reply_and_nothing_outside() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("pspreference", reqwest::header::HeaderValue::from_static("ABC123"));
        note_reply(503, &headers); // no observer: ignored
        let ((), meta) = observe(async {
            note_reply(200, &reqwest::header::HeaderMap::new());
            note_reply(503, &headers);
        })
        .await;
        assert_eq!(meta, ReplyMeta { http_status: Some(503), request_id: Some("ABC123".into()) });
    }

    /// A key with a line break cannot become a header: reqwest refuses to
    /// build the request, which therefore never left the process.
    #[tokio::test]
    async fn a_request_that_could_not_be_built_is_a_definite_invalid_request() {
        let client = client(Transport::new(Duration::from_secs(1), 1)).expect("client");
        for key in ["key\r", "key\nX-Evil: 1", "key\x0b", "key\0"] {
            // Port 9 (discard): were the request ever sent, it would fail differently.
            let req = client.post("http://127.0.0.1:9/v1/payouts").header("Idempotency-Key", key).json(&serde_json::json!({}));
            let err = send_json::<serde_json::Value, serde_json::Value>(req, |_, _, _| unreachable!("no reply expected"))
                .await
                .expect_err("the request cannot be built");
            assert_eq!((err.class, err.code, err.ambiguous), (ErrorClass::Permanent, ErrorCode::InvalidRequest, false), "{key:?}: {err}");
            assert!(!err.counts_against_vendor(), "our own bad request says nothing about the vendor: {err}");
            assert!(!err.is_definite_refusal(), "nothing to fail over: no vendor would take it either: {err}");
        }
    }

    #[test]
    fn only_definite_refusals_are_unambiguous() {
        assert!(!AdapterError::from_status(503, None, "").ambiguous);
        assert!(!AdapterError::from_status(429, None, "").ambiguous);
        assert!(AdapterError::from_status(500, None, "").ambiguous);
        assert!(AdapterError::from_status(504, None, "").ambiguous);
        assert_eq!(AdapterError::from_status(401, None, "").class, ErrorClass::ManualRepair);
        assert_eq!(AdapterError::from_status(422, None, "").class, ErrorClass::Permanent);
    }

    #[test]
    fn no_in_flight_answer_is_ever_a_definite_refusal() {
        for status in [409, 425] {
            let e = AdapterError::from_status(status, Some(Duration::from_secs(1)), "another request in progress");
            assert!(e.ambiguous && !e.is_definite_refusal() && !e.counts_against_vendor(), "{status}: {e:?}");
        }
        for status in 100..600 {
            let e = AdapterError::from_status(status, None, "");
            assert_eq!(e.is_definite_refusal(), status == 503, "{status}");
        }
        assert!(AdapterError::new(ErrorClass::Transient, ErrorCode::VendorUnavailable, "connection refused").is_definite_refusal());
    }
}
