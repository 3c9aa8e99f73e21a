//! The record headers of each topic, for the AsyncAPI document: the names
//! come from `switchyard_bus::HeaderName`, which headers go on which topic
//! and what they hold from what crates/bus writes (failure routing in
//! `consumer/landing.rs`, the held relay, `MessageContext`).

use serde_json::{json, Map, Value};
use switchyard_bus::topics::TopicSpec;
use switchyard_bus::HeaderName as H;
use switchyard_canonical::ErrorClass;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Main,
    Retry,
    Held,
    Dlq,
}

impl Kind {
    /// Failure routing topics are named after their source plus a suffix.
    pub(super) fn of(topic: &str) -> Self {
        match topic.rsplit('.').next() {
            Some("retry") => Self::Retry,
            Some("held") => Self::Held,
            Some("dlq") => Self::Dlq,
            // A consumer's own DLQ beside the domain's (`<topic>.gateway-dlq`).
            Some(last) if last.ends_with("-dlq") => Self::Dlq,
            _ => Self::Main,
        }
    }
}

/// Header value patterns: decimal numbers, and what `check_stored_headers`
/// and `TraceParent::parse` accept.
const DECIMAL: &str = "^[0-9]+$";
const PRINTABLE_128: &str = "^[ -~]{1,128}$";
const TRACEPARENT: &str = "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$";

/// (name, pattern, description) per group of headers, as crates/bus writes them.
type Group = &'static [(&'static str, Option<&'static str>, &'static str)];
const CONTEXT: Group = &[
    (H::CORRELATION_ID, Some(PRINTABLE_128), "Carried from the command to its outcome and every vendor call (X-Correlation-Id). Printable ASCII, at most 128 bytes; generated when absent."),
    (H::TRACEPARENT, Some(TRACEPARENT), "W3C trace context; each hop is a child span and it is sent to vendors. A new root when absent or malformed."),
    (H::PRODUCED_AT, Some(DECIMAL), "When switchyard produced the message, Unix ms."),
    (H::SCHEMA_ID, Some(DECIMAL), "The value's registry id, as in bytes 1-4 of the value; set by switchyard's producers."),
];
const IDEMPOTENCY: Group = &[(H::IDEMPOTENCY_KEY, None, "The command's idempotency key, copied onto every message it causes; the value's field is authoritative. UTF-8 without NUL, at most 128 bytes.")];
const PROVIDER: Group = &[(H::PROVIDER, None, "The partner that sent the event."), (H::PROVIDER_EVENT_ID, None, "The event's id at that partner.")];
// Set on the first trip through a retry or held topic and kept after, so a
// dead letter names the position an operator replays from; a message
// released from a held topic brings them back to its source topic.
const ORIGIN: Group = &[
    (H::ORIGINAL_TOPIC, None, "Topic the message was first consumed from."),
    (H::ORIGINAL_PARTITION, Some(DECIMAL), "Its partition there."),
    (H::ORIGINAL_OFFSET, Some(DECIMAL), "Its offset there."),
];
const RETRY: Group = &[
    (H::RETRY_ATTEMPT, Some(DECIMAL), "Retry round, from 1."),
    (H::RETRY_NOT_BEFORE, Some(DECIMAL), "Unix ms before which it is not handled again; the wait does not block its partition."),
    (H::RETRY_REASON, None, "Why the previous attempt failed; at most 1024 bytes."),
];
const HELD: Group = &[(H::HELD_REASON, None, "Why it was parked (its domain is switched off); dropped when it is released to the source topic.")];
const DLQ: Group = &[
    (H::DLQ_REASON, None, "Why it was dead-lettered; at most 1024 bytes."),
    (H::DLQ_ERROR_CLASS, None, "The failure's class in the error taxonomy."),
    (H::DLQ_SOURCE_TOPIC, None, "Where it failed: its original topic when it went through a retry or held topic, else the topic it was consumed from."),
    (H::DLQ_SOURCE_PARTITION, Some(DECIMAL), "Partition in the source topic."),
    (H::DLQ_SOURCE_OFFSET, Some(DECIMAL), "Offset in the source topic; `switchyard dlq replay` starts from here."),
    (H::DLQ_FAILED_AT, Some(DECIMAL), "When it was dead-lettered, Unix ms."),
];

/// The record headers of one topic as a JSON Schema object, with the name of
/// its component (the same for every topic with the same set).
/// `has_held`: the topic, or the source of a retry or DLQ topic, has a held
/// topic.
pub(super) fn headers(t: &TopicSpec, kind: Kind, has_held: bool) -> (String, Value) {
    let command = t.name.contains("commands") || t.name.contains("outcomes");
    let provider = t.name.contains(".provider-events.");
    let (kind_name, origin_required) = match kind {
        Kind::Main => ("", false),
        Kind::Retry => ("Retry", true),
        Kind::Held => ("Held", true),
        Kind::Dlq => ("DeadLetter", false),
    };
    let name = format!(
        "{}{}{kind_name}{}Headers",
        if provider { "ProviderEvent" } else { "" },
        if command { "Command" } else { "" },
        if has_held && matches!(kind, Kind::Main | Kind::Dlq) { "Releasable" } else { "" }
    );
    // (group, present on this topic, always set there)
    let groups = [
        (CONTEXT, true, false),
        (IDEMPOTENCY, command, false),
        (PROVIDER, provider, false),
        (ORIGIN, kind != Kind::Main || has_held, origin_required),
        (RETRY, matches!(kind, Kind::Retry | Kind::Dlq), kind == Kind::Retry),
        (HELD, kind == Kind::Held || (kind == Kind::Dlq && has_held), kind == Kind::Held),
        (DLQ, kind == Kind::Dlq, true),
    ];
    let (mut props, mut required) = (Map::new(), Vec::new());
    for (group, _, always) in groups.into_iter().filter(|(_, present, _)| *present) {
        for (header, pattern, description) in group {
            let mut schema = json!({"type": "string", "description": description});
            if let Some(pattern) = pattern {
                schema["pattern"] = json!(pattern);
            }
            if *header == H::DLQ_ERROR_CLASS {
                schema["enum"] = json!(error_classes());
            }
            props.insert((*header).to_owned(), schema);
            if always {
                required.push(*header);
            }
        }
    }
    let mut schema = json!({"type": "object", "description": "Kafka record headers, UTF-8 text values; others are allowed and carried on.", "properties": props});
    if !required.is_empty() {
        schema["required"] = json!(required);
    }
    (name, schema)
}

fn error_classes() -> Vec<&'static str> {
    let all = [ErrorClass::Transient, ErrorClass::Permanent, ErrorClass::ManualRepair, ErrorClass::ComplianceHold];
    // Exhaustive on purpose: a new class fails to compile here instead of
    // missing from the documented enum.
    all.iter()
        .map(|c| match c {
            ErrorClass::Transient | ErrorClass::Permanent | ErrorClass::ManualRepair | ErrorClass::ComplianceHold => c.as_str(),
        })
        .collect()
}
