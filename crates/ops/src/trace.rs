//! `switchyard trace <correlation-id | subject id>`: one flow's timeline.
//!
//! Sources, merged and ordered by time:
//! - the audit log, by subject or correlation id: routing decisions, every
//!   outbound vendor call (provider, operation, HTTP status or transport
//!   error, latency, the vendor's request id), failovers, DLQ replays;
//! - the topics of `topics.yaml` that carry subjects, matched by key or
//!   `correlation-id` header: commands, retry and held trips, dead letters,
//!   outcomes, and — when those topics exist — provider events, ledger
//!   postings and reconciliation discrepancies. Topics are classified by
//!   name ([`TopicKind::of`]); a listed topic missing on the broker is
//!   skipped, so new domains and topics join the trace without code here.
//!
//! The id is looked up as both a subject and a correlation id; the audit
//! rows found add their subject and correlation ids, so a trace by payout id
//! also finds messages that only carry the correlation id, and the reverse.
//! Topics are read in full (there is no index by key on Kafka): fine for a
//! local stack and for incident work on recent data; `since` narrows what is
//! shown, not what is read.

use crate::read::{read_topic, ReadOptions, TopicMessage};
use crate::OpsError;
use serde::Serialize;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use switchyard_bus::{AvroDecoder, BusError, HeaderName, KafkaConfig, RegistryClient};
use switchyard_canonical::{Discrepancy, LedgerPosting, PayoutOutcome, PayoutStatus, ProviderEvent};
use switchyard_store::{AuditRecord, Store};

/// Reader schemas, compiled in like the worker's, so the trace reads what
/// any compatible writer produced.
const PAYOUT_OUTCOME_SCHEMA: &str = include_str!("../../../schemas/payouts/PayoutOutcome.v1.avsc");
const PROVIDER_EVENT_SCHEMA: &str = include_str!("../../../schemas/events/ProviderEvent.v1.avsc");
const LEDGER_POSTING_SCHEMA: &str = include_str!("../../../schemas/ledger/LedgerPosting.v1.avsc");
const DISCREPANCY_SCHEMA: &str = include_str!("../../../schemas/recon/Discrepancy.v1.avsc");

/// Decoders for the values a trace can explain; without them a line says
/// only where the record is.
pub struct Decoders {
    payout_outcome: AvroDecoder,
    provider_event: AvroDecoder,
    ledger_posting: AvroDecoder,
    discrepancy: AvroDecoder,
}

impl Decoders {
    pub fn new(registry: Arc<RegistryClient>) -> Result<Self, BusError> {
        Ok(Self {
            payout_outcome: AvroDecoder::new(registry.clone(), PAYOUT_OUTCOME_SCHEMA)?,
            provider_event: AvroDecoder::new(registry.clone(), PROVIDER_EVENT_SCHEMA)?,
            ledger_posting: AvroDecoder::new(registry.clone(), LEDGER_POSTING_SCHEMA)?,
            discrepancy: AvroDecoder::new(registry, DISCREPANCY_SCHEMA)?,
        })
    }
}

/// What a topic carries, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TopicKind {
    Command,
    Retry,
    Held,
    DeadLetter,
    Outcome,
    ProviderEvent,
    Posting,
    Discrepancy,
}

impl TopicKind {
    /// `None` for topics not keyed by a subject (e.g. circuit events).
    pub fn of(name: &str) -> Option<Self> {
        if name.ends_with(".dlq") {
            Some(Self::DeadLetter)
        } else if name.ends_with(".retry") {
            Some(Self::Retry)
        } else if name.ends_with(".held") {
            Some(Self::Held)
        } else if name.contains(".commands.") {
            Some(Self::Command)
        } else if name.contains(".outcomes.") {
            Some(Self::Outcome)
        } else if name.contains(".provider-events.") {
            Some(Self::ProviderEvent)
        } else if name.contains("ledger.postings.") {
            Some(Self::Posting)
        } else if name.contains("discrepancies.") {
            Some(Self::Discrepancy)
        } else {
            None
        }
    }
}

/// One line of the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct TraceEvent {
    pub at_ms: Option<i64>,
    /// `audit` or the topic it was read from.
    pub source: String,
    /// `command`, `route`, `vendor_call`, `outcome`, `dead_letter`, ...
    pub what: String,
    /// A short status: HTTP status, outcome status, `ok`.
    pub status: Option<String>,
    pub detail: String,
    /// Something went wrong here (a failed call, a dead letter, a failed outcome).
    pub failed: bool,
    pub subject_id: Option<String>,
    pub correlation_id: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Trace {
    pub id: String,
    pub subject_ids: Vec<String>,
    pub correlation_ids: Vec<String>,
    /// Topics listed but not found on the broker (skipped).
    pub missing_topics: Vec<String>,
    pub events: Vec<TraceEvent>,
}

pub struct TraceRequest<'a> {
    pub id: &'a str,
    /// Candidate topics; those [`TopicKind::of`] does not classify are ignored.
    pub topics: Vec<String>,
    pub read: ReadOptions,
    /// Decodes outcomes, provider events, postings and discrepancies when given.
    pub decoders: Option<&'a Decoders>,
    /// Only events newer than this are shown.
    pub since: Option<Duration>,
}

pub async fn trace(kafka: &KafkaConfig, store: &Store, request: TraceRequest<'_>) -> Result<Trace, OpsError> {
    let first = store.audit_trail(&[request.id]).await?;
    let mut ids: BTreeSet<String> = BTreeSet::from([request.id.to_owned()]);
    for row in &first {
        ids.extend([row.subject_id.clone(), row.correlation_id.clone()].into_iter().filter(|s| !s.is_empty()));
        // Provider events may be keyed by the vendor's id when the vendor
        // does not echo ours; vendor calls recorded it.
        if let Some(reference) = serde_json::from_str::<serde_json::Value>(&row.detail)
            .ok()
            .and_then(|d| d.get("vendor_reference")?.as_str().map(str::to_owned))
        {
            ids.insert(reference);
        }
    }

    // Read every classified topic at once; each read is its own blocking task.
    let shared_ids = Arc::new(ids.clone());
    let mut reads = tokio::task::JoinSet::new();
    for topic in request.topics.iter().filter(|t| TopicKind::of(t).is_some()) {
        let (kafka, topic, ids, options) = (kafka.clone(), topic.clone(), shared_ids.clone(), request.read);
        reads.spawn(async move {
            let keep = move |m: &TopicMessage| {
                ids.contains(&m.key_text()) || m.header(HeaderName::CORRELATION_ID).is_some_and(|c| ids.contains(c))
            };
            (topic.clone(), read_topic(&kafka, &topic, options, keep).await)
        });
    }
    let mut messages = Vec::new();
    let mut missing_topics = Vec::new();
    while let Some(joined) = reads.join_next().await {
        let (topic, result) = joined.map_err(|e| OpsError::Usage(format!("topic reader failed: {e}")))?;
        match result {
            Ok((found, _)) => messages.extend(found),
            Err(OpsError::UnknownTopic(_)) => missing_topics.push(topic),
            Err(e) => return Err(e),
        }
    }
    missing_topics.sort();

    // Messages may name further ids (the correlation id of a command found
    // by key); one more audit read picks up what belongs to those.
    for m in &messages {
        ids.insert(m.key_text());
        if let Some(c) = m.header(HeaderName::CORRELATION_ID) {
            ids.insert(c.to_owned());
        }
    }
    ids.retain(|s| !s.is_empty());
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let audit = store.audit_trail(&id_refs).await?;

    let mut events: Vec<TraceEvent> = audit.iter().map(audit_event).collect();
    for m in &messages {
        events.push(message_event(m, request.decoders).await);
    }
    if let Some(since) = request.since {
        let cutoff = switchyard_canonical::now_ms() - i64::try_from(since.as_millis()).unwrap_or(i64::MAX);
        events.retain(|e| e.at_ms.is_none_or(|t| t >= cutoff));
    }
    // Events of one millisecond keep the order of the flow.
    events.sort_by_key(|e| (e.at_ms.unwrap_or(i64::MIN), flow_rank(&e.what)));

    let subject_ids: BTreeSet<String> = audit.iter().map(|r| r.subject_id.clone()).chain(messages.iter().map(TopicMessage::key_text)).filter(|s| !s.is_empty()).collect();
    let correlation_ids: BTreeSet<String> = audit
        .iter()
        .map(|r| r.correlation_id.clone())
        .chain(messages.iter().filter_map(|m| m.header(HeaderName::CORRELATION_ID).map(str::to_owned)))
        .filter(|s| !s.is_empty())
        .collect();
    Ok(Trace {
        id: request.id.to_owned(),
        subject_ids: subject_ids.into_iter().collect(),
        correlation_ids: correlation_ids.into_iter().collect(),
        missing_topics,
        events,
    })
}

fn flow_rank(what: &str) -> u8 {
    match what {
        "command" => 0,
        "route" => 1,
        "failover" => 2,
        "vendor_call" => 3,
        "retry" | "held" => 4,
        "dead_letter" => 6,
        "dlq_replay" => 7,
        "outcome" => 8,
        "provider_event" => 9,
        "ledger_posting" => 10,
        "discrepancy" => 11,
        _ => 5,
    }
}

fn audit_event(row: &AuditRecord) -> TraceEvent {
    let detail: serde_json::Value = serde_json::from_str(&row.detail).unwrap_or(serde_json::Value::Null);
    let text = |k: &str| detail.get(k).and_then(|v| v.as_str().map(str::to_owned).or_else(|| (!v.is_null()).then(|| v.to_string())));
    let (status, line, failed) = match row.action.as_str() {
        "vendor_call" => {
            let result = text("result").unwrap_or_default();
            let status = text("http_status").unwrap_or_else(|| result.clone());
            let mut line = format!(
                "{} {} -> {} in {} ms",
                text("provider").unwrap_or_default(),
                text("operation").unwrap_or_default(),
                if result == "ok" { format!("HTTP {status}") } else { text("http_status").map_or(result.clone(), |s| format!("HTTP {s}")) },
                text("latency_ms").unwrap_or_default(),
            );
            if let Some(id) = text("request_id") {
                line.push_str(&format!(", vendor request {id}"));
            }
            if let Some(e) = text("error") {
                line.push_str(&format!(": {e}"));
            }
            (Some(status), line, result != "ok")
        }
        "route" => {
            let provider = text("provider").unwrap_or_default();
            let verb = if detail.get("resumed").and_then(serde_json::Value::as_bool) == Some(true) { "resumed at" } else { "routed to" };
            (Some(provider.clone()), format!("{verb} {provider}"), false)
        }
        "failover" => (None, format!("failover {} -> {}", text("from").unwrap_or_default(), text("to").unwrap_or_default()), false),
        "dlq_replay" => (
            None,
            format!(
                "replayed {}[{}]@{} to {}[{}]@{}",
                text("dlq_topic").unwrap_or_default(),
                text("dlq_partition").unwrap_or_default(),
                text("dlq_offset").unwrap_or_default(),
                text("target_topic").unwrap_or_default(),
                text("target_partition").unwrap_or_default(),
                text("target_offset").unwrap_or_default(),
            ),
            false,
        ),
        _ => (None, row.detail.clone(), false),
    };
    TraceEvent {
        at_ms: Some(row.at_ms),
        source: format!("audit ({})", row.actor),
        what: row.action.clone(),
        status,
        detail: line,
        failed,
        subject_id: Some(row.subject_id.clone()).filter(|s| !s.is_empty()),
        correlation_id: Some(row.correlation_id.clone()).filter(|s| !s.is_empty()),
    }
}

async fn message_event(m: &TopicMessage, decoders: Option<&Decoders>) -> TraceEvent {
    let kind = TopicKind::of(&m.topic);
    let at = format!("[{}]@{}", m.partition, m.offset);
    let header = |name: &str| m.header(name).unwrap_or("?").to_owned();
    let (what, status, detail, failed) = match kind {
        Some(TopicKind::Command) => ("command", None, format!("received {at}"), false),
        Some(TopicKind::Retry) => (
            "retry",
            m.header(HeaderName::RETRY_ATTEMPT).map(|a| format!("attempt {a}")),
            format!("{at}: {}", header(HeaderName::RETRY_REASON)),
            true,
        ),
        Some(TopicKind::Held) => ("held", None, format!("{at}: {}", header(HeaderName::HELD_REASON)), false),
        Some(TopicKind::DeadLetter) => (
            "dead_letter",
            m.header(HeaderName::DLQ_ERROR_CLASS).map(str::to_owned),
            format!("{at}: {}", header(HeaderName::DLQ_REASON)),
            true,
        ),
        // Only payout outcomes have a decoder here; other domains' outcomes
        // are shown by position.
        Some(TopicKind::Outcome) => match decoders.filter(|_| m.topic.contains("payouts.outcomes.")) {
            Some(d) => match d.payout_outcome.decode::<PayoutOutcome>(&m.payload).await {
                Ok(o) => {
                    let failed = matches!(o.status, PayoutStatus::Failed | PayoutStatus::Rejected | PayoutStatus::PendingUnknown);
                    let mut line = format!("{at} via {}", o.provider.as_deref().unwrap_or("-"));
                    if let Some(r) = &o.provider_reference {
                        line.push_str(&format!(", vendor ref {r}"));
                    }
                    if let Some(e) = &o.error {
                        line.push_str(&format!(", {}/{}: {}", e.class.as_str(), e.code.as_str(), e.message));
                    }
                    if o.replayed {
                        line.push_str(" (answered from the store)");
                    }
                    ("outcome", Some(o.status.as_str().to_uppercase()), line, failed)
                }
                Err(e) => ("outcome", None, format!("{at}: not decodable: {e}"), false),
            },
            None => ("outcome", None, format!("published {at}"), false),
        },
        Some(TopicKind::ProviderEvent) => match decoders {
            Some(d) => match d.provider_event.decode::<ProviderEvent>(&m.payload).await {
                Ok(e) => (
                    "provider_event",
                    Some(e.kind.as_str().to_owned()),
                    format!("{at} {} {} ({}), vendor ref {}", e.provider, e.vendor_event_type, e.event_id, e.provider_reference),
                    false,
                ),
                Err(e) => ("provider_event", None, format!("{at}: not decodable: {e}"), false),
            },
            None => ("provider_event", None, format!("{at} on {}", m.topic), false),
        },
        Some(TopicKind::Posting) => match decoders {
            Some(d) => match d.ledger_posting.decode::<LedgerPosting>(&m.payload).await {
                Ok(p) => (
                    "ledger_posting",
                    Some(p.kind.as_str().to_owned()),
                    format!("{at} {} {} minor units ({})", p.currency, p.amount_minor, p.posting_id),
                    false,
                ),
                Err(e) => ("ledger_posting", None, format!("{at}: not decodable: {e}"), false),
            },
            None => ("ledger_posting", None, format!("{at} on {}", m.topic), false),
        },
        Some(TopicKind::Discrepancy) => match decoders {
            Some(d) => match d.discrepancy.decode::<Discrepancy>(&m.payload).await {
                Ok(x) => (
                    "discrepancy",
                    Some(x.status.as_str().to_owned()),
                    format!("{at} {}: expected {}, actual {}", x.class.as_str(), x.expected, x.actual),
                    x.status == switchyard_canonical::DiscrepancyStatus::Open,
                ),
                Err(e) => ("discrepancy", None, format!("{at}: not decodable: {e}"), true),
            },
            None => ("discrepancy", None, format!("{at} on {}", m.topic), true),
        },
        None => ("message", None, format!("{at} on {}", m.topic), false),
    };
    TraceEvent {
        at_ms: m.produced_at_ms(),
        source: m.topic.clone(),
        what: what.to_owned(),
        status,
        detail,
        failed,
        subject_id: Some(m.key_text()).filter(|s| !s.is_empty()),
        correlation_id: m.header(HeaderName::CORRELATION_ID).map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_classified_by_name() {
        assert_eq!(TopicKind::of("x.payouts.commands.v1"), Some(TopicKind::Command));
        assert_eq!(TopicKind::of("payouts.commands.v1.retry"), Some(TopicKind::Retry));
        assert_eq!(TopicKind::of("payouts.commands.v1.dlq"), Some(TopicKind::DeadLetter));
        assert_eq!(TopicKind::of("payouts.outcomes.v1"), Some(TopicKind::Outcome));
        assert_eq!(TopicKind::of("payouts.provider-events.v1"), Some(TopicKind::ProviderEvent));
        assert_eq!(TopicKind::of("recon.discrepancies.v1"), Some(TopicKind::Discrepancy));
        assert_eq!(TopicKind::of("routing.circuit-events.v1"), None);
    }

    #[test]
    fn a_failed_vendor_call_reads_as_one_line() {
        let row = AuditRecord {
            at_ms: 5,
            actor: "payout-worker".into(),
            action: "vendor_call".into(),
            subject_id: "po-1".into(),
            correlation_id: "corr-1".into(),
            detail: r#"{"provider":"stripe","operation":"create","result":"failed","http_status":400,"latency_ms":12,"request_id":"req_1","error":"balance_insufficient"}"#.into(),
        };
        let e = audit_event(&row);
        assert!(e.failed);
        assert_eq!(e.status.as_deref(), Some("400"));
        assert_eq!(e.detail, "stripe create -> HTTP 400 in 12 ms, vendor request req_1: balance_insufficient");
    }
}
