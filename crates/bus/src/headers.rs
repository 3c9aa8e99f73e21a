//! The header contract. Every message carries `correlation-id`, `traceparent`
//! (W3C), `produced-at` and `schema-id`; commands also carry `idempotency-key`.
//! Failure routing adds the `dlq-*` and `retry-*` headers.

use rdkafka::message::{Header, Headers, OwnedHeaders};
use switchyard_canonical::{CorrelationId, TraceParent};

/// Header names, in one place so producers in any language can follow them.
pub struct HeaderName;

impl HeaderName {
    pub const CORRELATION_ID: &'static str = "correlation-id";
    pub const TRACEPARENT: &'static str = "traceparent";
    pub const IDEMPOTENCY_KEY: &'static str = "idempotency-key";
    pub const PRODUCED_AT: &'static str = "produced-at";
    pub const SCHEMA_ID: &'static str = "schema-id";
    pub const DLQ_REASON: &'static str = "dlq-reason";
    pub const DLQ_ERROR_CLASS: &'static str = "dlq-error-class";
    pub const DLQ_SOURCE_TOPIC: &'static str = "dlq-source-topic";
    pub const DLQ_SOURCE_PARTITION: &'static str = "dlq-source-partition";
    pub const DLQ_SOURCE_OFFSET: &'static str = "dlq-source-offset";
    pub const DLQ_FAILED_AT: &'static str = "dlq-failed-at";
    pub const RETRY_ATTEMPT: &'static str = "retry-attempt";
    pub const RETRY_NOT_BEFORE: &'static str = "retry-not-before";
    pub const RETRY_REASON: &'static str = "retry-reason";
    pub const ORIGINAL_TOPIC: &'static str = "original-topic";
    pub const HELD_REASON: &'static str = "held-reason";
    pub const ORIGINAL_PARTITION: &'static str = "original-partition";
    pub const ORIGINAL_OFFSET: &'static str = "original-offset";
    /// Provider events: which partner sent it, and its event id there.
    pub const PROVIDER: &'static str = "provider";
    pub const PROVIDER_EVENT_ID: &'static str = "provider-event-id";
}

/// Tracing context carried from a command to every hop it causes.
#[derive(Debug, Clone)]
pub struct MessageContext {
    pub correlation_id: CorrelationId,
    pub traceparent: TraceParent,
    pub idempotency_key: Option<String>,
}

impl MessageContext {
    pub fn new_root() -> Self {
        Self { correlation_id: CorrelationId::new_random(), traceparent: TraceParent::new_root(), idempotency_key: None }
    }

    /// Reads the context from message headers; a missing or malformed value is
    /// replaced by a fresh one rather than failing the message.
    pub fn from_headers(headers: &[(String, Vec<u8>)]) -> Self {
        let text = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| std::str::from_utf8(v).ok())
                .map(str::to_owned)
        };
        let correlation_id = text(HeaderName::CORRELATION_ID)
            .filter(|s| !s.is_empty() && correlation_id_problem(s.as_bytes()).is_none())
            .map(CorrelationId)
            .unwrap_or_else(CorrelationId::new_random);
        let traceparent = text(HeaderName::TRACEPARENT)
            .and_then(|s| TraceParent::parse(&s))
            .unwrap_or_else(TraceParent::new_root);
        Self { correlation_id, traceparent, idempotency_key: text(HeaderName::IDEMPOTENCY_KEY) }
    }

    /// Headers for a message this hop produces: same correlation id, a child span.
    pub fn outbound_headers(&self, schema_id: Option<u32>) -> Vec<(String, Vec<u8>)> {
        let mut out = vec![
            (HeaderName::CORRELATION_ID.to_owned(), self.correlation_id.0.clone().into_bytes()),
            (HeaderName::TRACEPARENT.to_owned(), self.traceparent.child().to_string().into_bytes()),
            (HeaderName::PRODUCED_AT.to_owned(), switchyard_canonical::now_ms().to_string().into_bytes()),
        ];
        if let Some(key) = &self.idempotency_key {
            out.push((HeaderName::IDEMPOTENCY_KEY.to_owned(), key.clone().into_bytes()));
        }
        if let Some(id) = schema_id {
            out.push((HeaderName::SCHEMA_ID.to_owned(), id.to_string().into_bytes()));
        }
        out
    }
}

/// The longest correlation id or idempotency key header we keep.
pub const MAX_STORED_HEADER_LEN: usize = 128;

/// A header value a worker would store (audit log, idempotency record) or
/// send on to a vendor, but cannot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("header {name} {problem}")]
pub struct BadHeader {
    pub name: &'static str,
    pub problem: &'static str,
}

/// Checks the headers a worker keeps before it claims anything: the
/// `correlation-id` (stored with every record and audit entry, and sent to
/// vendors as an HTTP header) and the `idempotency-key` (copied onto every
/// message the command causes). PostgreSQL text cannot hold NUL or invalid
/// UTF-8; such a value, accepted, would fail the group commit it joins.
/// [`MessageContext::from_headers`] quietly replaces a bad correlation id;
/// a worker that must not lose the caller's id dead-letters the message
/// with this error instead. Absent headers are fine.
pub fn check_stored_headers(headers: &[(String, Vec<u8>)]) -> Result<(), BadHeader> {
    let value = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_slice());
    if let Some(problem) = value(HeaderName::CORRELATION_ID).and_then(correlation_id_problem) {
        return Err(BadHeader { name: HeaderName::CORRELATION_ID, problem });
    }
    if let Some(problem) = value(HeaderName::IDEMPOTENCY_KEY).and_then(storable_text_problem) {
        return Err(BadHeader { name: HeaderName::IDEMPOTENCY_KEY, problem });
    }
    Ok(())
}

/// What keeps `value` out of a PostgreSQL text column, if anything.
fn storable_text_problem(value: &[u8]) -> Option<&'static str> {
    if value.len() > MAX_STORED_HEADER_LEN {
        return Some("is longer than 128 bytes");
    }
    let Ok(text) = std::str::from_utf8(value) else { return Some("is not valid UTF-8") };
    text.contains('\0').then_some("contains a NUL character")
}

/// A correlation id must also fit into the `X-Correlation-Id` header of
/// every vendor call: printable ASCII only.
fn correlation_id_problem(value: &[u8]) -> Option<&'static str> {
    storable_text_problem(value).or_else(|| {
        (!value.iter().all(|b| (b' '..=b'~').contains(b)))
            .then_some("contains characters other than printable ASCII (control characters, line breaks, non-ASCII)")
    })
}

pub fn header_text<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).and_then(|(_, v)| std::str::from_utf8(v).ok())
}

/// Replaces or appends a header.
pub fn set_header(headers: &mut Vec<(String, Vec<u8>)>, name: &str, value: impl Into<Vec<u8>>) {
    headers.retain(|(k, _)| k != name);
    headers.push((name.to_owned(), value.into()));
}

pub(crate) fn to_owned_headers(headers: &[(String, Vec<u8>)]) -> OwnedHeaders {
    headers.iter().fold(OwnedHeaders::new_with_capacity(headers.len()), |acc, (k, v)| {
        acc.insert(Header { key: k, value: Some(v) })
    })
}

pub(crate) fn from_kafka_headers<H: Headers>(headers: Option<&H>) -> Vec<(String, Vec<u8>)> {
    let Some(headers) = headers else { return Vec::new() };
    headers
        .iter()
        .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec).unwrap_or_default()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_incoming_correlation_and_trace() {
        let incoming = vec![
            ("correlation-id".to_owned(), b"corr-1".to_vec()),
            ("traceparent".to_owned(), b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_vec()),
        ];
        let ctx = MessageContext::from_headers(&incoming);
        assert_eq!(ctx.correlation_id.0, "corr-1");
        let out = ctx.outbound_headers(Some(7));
        assert_eq!(header_text(&out, "correlation-id"), Some("corr-1"));
        let tp = header_text(&out, "traceparent").expect("traceparent");
        assert!(tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert_eq!(header_text(&out, "schema-id"), Some("7"));
    }

    #[test]
    fn values_the_store_cannot_hold_are_named() {
        let with = |name: &str, value: &[u8]| vec![(name.to_owned(), value.to_vec())];
        assert_eq!(check_stored_headers(&[]), Ok(()));
        assert_eq!(check_stored_headers(&with("correlation-id", b"corr-1")), Ok(()));
        assert_eq!(check_stored_headers(&with("idempotency-key", "schlüssel".as_bytes())), Ok(()));
        for bad in [&b"corr-\0-1"[..], b"corr\r\n1", b"\xff\xfe", "corré".as_bytes(), &[b'c'; 129]] {
            let err = check_stored_headers(&with("correlation-id", bad)).expect_err("bad correlation id");
            assert_eq!(err.name, "correlation-id", "{bad:?}");
            let ctx = MessageContext::from_headers(&with("correlation-id", bad));
            assert_eq!(ctx.correlation_id.0.len(), 32, "replaced by a fresh id: {bad:?}");
        }
        for bad in [&b"key-\0"[..], b"\xc3\x28", &[b'k'; 129]] {
            let err = check_stored_headers(&with("idempotency-key", bad)).expect_err("bad key");
            assert_eq!(err.name, "idempotency-key", "{bad:?}");
        }
        let err = check_stored_headers(&with("correlation-id", b"a\0")).expect_err("NUL");
        assert_eq!(err.to_string(), "header correlation-id contains a NUL character");
    }

    #[test]
    fn invents_context_for_bare_messages() {
        let ctx = MessageContext::from_headers(&[("traceparent".to_owned(), b"junk".to_vec())]);
        assert_eq!(ctx.correlation_id.0.len(), 32);
    }
}
