//! Trace spans for a message's hops on the bus (consume, publish), exported
//! over OTLP when a service turned export on (`switchyard_service`'s
//! `otlp_endpoint`).
//!
//! Off by default, and then nearly free: [`exporting`] is one relaxed atomic
//! load, and every helper here returns [`Span::none`] or `None` without
//! building a span, so log lines and the hot path are as before.
//!
//! When on, a consumed message's span is parented on its `traceparent`
//! header, and a published message's `traceparent` names the publish span,
//! so a flow across workers is one trace in any OTLP backend.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::Context;
use std::sync::atomic::{AtomicBool, Ordering};
use switchyard_canonical::TraceParent;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Set once at start-up by the service that installed the OTLP layer.
pub fn set_exporting(on: bool) {
    EXPORTING.store(on, Ordering::Relaxed);
}

/// Whether spans are built at all.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// The remote parent a `traceparent` header names, if it parses.
pub fn remote_context(traceparent: &str) -> Option<Context> {
    let tp = TraceParent::parse(traceparent)?;
    let trace_id = TraceId::from_hex(&tp.trace_id).ok()?;
    let span_id = SpanId::from_hex(&tp.parent_id).ok()?;
    let flags = if tp.sampled { TraceFlags::SAMPLED } else { TraceFlags::default() };
    let remote = SpanContext::new(trace_id, span_id, flags, true, TraceState::default());
    Some(Context::new().with_remote_span_context(remote))
}

/// The `traceparent` naming `span`, when it is an exported span.
pub fn traceparent_of(span: &Span) -> Option<String> {
    if !exporting() || span.is_none() {
        return None;
    }
    let context = span.context();
    let otel = context.span();
    let sc = otel.span_context();
    sc.is_valid().then(|| format!("00-{}-{}-{:02x}", sc.trace_id(), sc.span_id(), sc.trace_flags().to_u8()))
}

/// Whether the current span is an exported one, i.e. the hop has a trace.
fn current_is_traced() -> bool {
    Span::current().context().span().span_context().is_valid()
}

/// A span for one step of a traced hop (`decode`, `claim`, `store`): a
/// child of the current span, or [`Span::none`] outside a traced hop.
/// Names are a closed set, so the span's static metadata can be shared.
pub fn child_span(name: &'static str) -> Span {
    if !exporting() || !current_is_traced() {
        return Span::none();
    }
    match name {
        "decode" => tracing::info_span!("decode"),
        "claim" => tracing::info_span!("claim"),
        "store" => tracing::info_span!("store"),
        _ => tracing::info_span!("step", step = name),
    }
}

/// The span of one consumed message, parented on its `traceparent`
/// (a fresh trace when it has none). [`Span::none`] when not exporting.
pub fn consume_span(topic: &str, partition: i32, offset: i64, traceparent: Option<&str>) -> Span {
    if !exporting() {
        return Span::none();
    }
    let span = tracing::info_span!("consume", otel.kind = "consumer", messaging.destination = %topic, partition, offset);
    if let Some(parent) = traceparent.and_then(remote_context) {
        let _ = span.set_parent(parent);
    }
    span
}

/// The span of one publish: a child of the current span, or, for a record
/// published outside any traced hop (a core system's command, a test
/// producer), of the record's own `traceparent`.
pub(crate) fn publish_span(topic: &str, traceparent: Option<&str>) -> Span {
    if !exporting() {
        return Span::none();
    }
    let traced = current_is_traced();
    let span = tracing::info_span!("publish", otel.kind = "producer", messaging.destination = %topic);
    if !traced {
        if let Some(parent) = traceparent.and_then(remote_context) {
            let _ = span.set_parent(parent);
        }
    }
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_builds_nothing() {
        set_exporting(false);
        assert!(consume_span("t", 0, 1, Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")).is_none());
        assert!(publish_span("t", None).is_none());
        assert_eq!(traceparent_of(&Span::current()), None);
    }

    #[test]
    fn remote_context_keeps_the_ids() {
        let cx = remote_context("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").expect("parses");
        let span = cx.span();
        let sc = span.span_context();
        assert_eq!(sc.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert!(sc.is_remote() && sc.is_sampled());
        assert!(remote_context("junk").is_none());
    }
}
