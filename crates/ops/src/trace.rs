//! `switchyard trace <correlation-id | subject id>`: one flow's timeline.
//!
//! Sources, merged and ordered by time:
//! - the audit log, by subject or correlation id: routing decisions, every
//!   outbound vendor call (provider, operation, HTTP status or transport
//!   error, latency, the vendor's request id), failovers, DLQ replays;
//! - the topics of `topics.yaml` that carry subjects, matched by key or
//!   `correlation-id` header: commands, retry and held trips, dead letters,
//!   outcomes, and — when those topics exist — provider events, ledger
//!   postings and reconciliation discrepancies; for onboarding, the KYC,
//!   AML and fraud outcomes and each flow transition on
//!   `onboarding.events.v1` ([`crate::trace_onboarding`]); for open banking,
//!   outcomes, consent and payment events and data pages
//!   ([`crate::trace_openbanking`]). Topics are classified by
//!   name ([`TopicKind::of`]); a listed topic missing on the broker is
//!   skipped, so new domains and topics join the trace without code here.
//!
//! The id is looked up as both a subject and a correlation id; the audit
//! rows found add their subject and correlation ids, so a trace by payout id
//! also finds messages that only carry the correlation id, and the reverse.
//! An onboarding flow id is neither: the orchestrator's flow row names the
//! applicant and the flow's correlation id, so the trace of a flow is the
//! trace of its applicant. Nor is an open-banking payment id: its row names
//! the consent (which keys every record of the payment) and the correlation
//! id its status events carry, so the trace of a payment is its consent's.
//! Topics are read in full (there is no index by key on Kafka): fine for a
//! local stack and for incident work on recent data; `since` narrows what is
//! shown, not what is read.

use crate::read::{ReadOptions, TopicMessage};
use crate::trace_read;
use crate::trace_cards::{self as cards, CardDecoders};
use crate::trace_onboarding::{self as onboarding, OnboardingDecoders};
use crate::trace_openbanking::{self as openbanking, OpenBankingDecoders};
use crate::OpsError;
use serde::Serialize;
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;
use switchyard_bus::{AvroDecoder, BusError, HeaderName, KafkaConfig, RegistryClient};
use switchyard_canonical::{Discrepancy, LedgerPosting, PayoutOutcome, PayoutStatus, ProviderEvent};
use switchyard_store::onboarding::OnboardingStore;
use switchyard_store::openbanking_payments::PaymentStore;
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
    onboarding: OnboardingDecoders,
    cards: CardDecoders,
    openbanking: OpenBankingDecoders,
}

impl Decoders {
    pub fn new(registry: Arc<RegistryClient>) -> Result<Self, BusError> {
        Ok(Self {
            payout_outcome: AvroDecoder::new(registry.clone(), PAYOUT_OUTCOME_SCHEMA)?,
            provider_event: AvroDecoder::new(registry.clone(), PROVIDER_EVENT_SCHEMA)?,
            ledger_posting: AvroDecoder::new(registry.clone(), LEDGER_POSTING_SCHEMA)?,
            discrepancy: AvroDecoder::new(registry.clone(), DISCREPANCY_SCHEMA)?,
            onboarding: OnboardingDecoders::new(registry.clone())?,
            openbanking: OpenBankingDecoders::new(registry.clone())?,
            cards: CardDecoders::new(registry)?,
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
    /// Onboarding flow transitions.
    FlowEvent,
    /// One change of a card (`cards.events.v1`).
    CardEvent,
    /// One processor transaction event of a card (`cards.transactions.v1`).
    CardTransaction,
    /// A consent's change or a payment's status (`openbanking.events.v1`).
    OpenBankingEvent,
    /// One page of a consent's account data (`openbanking.data.v1`).
    OpenBankingData,
}

impl TopicKind {
    /// `None` for topics not keyed by a subject (e.g. circuit events).
    pub fn of(name: &str) -> Option<Self> {
        // `-dlq`: a consumer's own DLQ beside the domain's (the gateway's
        // projections write `<topic>.gateway-dlq`).
        if name.ends_with(".dlq") || name.ends_with("-dlq") {
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
        } else if name.contains("onboarding.events.") {
            Some(Self::FlowEvent)
        } else if name.contains("cards.events.") {
            Some(Self::CardEvent)
        } else if name.contains("cards.transactions.") {
            Some(Self::CardTransaction)
        } else if name.contains("openbanking.events.") {
            Some(Self::OpenBankingEvent)
        } else if name.contains("openbanking.data.") {
            Some(Self::OpenBankingData)
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
    /// Topics read from their beginning because the store has no positions
    /// for them; the others were read only where the flow's records are.
    pub scanned_topics: Vec<String>,
    /// Topics not read at all: their watermarks said they were empty.
    pub empty_topics: Vec<String>,
    pub events: Vec<TraceEvent>,
}

pub struct TraceRequest<'a> {
    pub id: &'a str,
    /// Candidate topics; those [`TopicKind::of`] does not classify are ignored.
    pub topics: Vec<String>,
    pub read: ReadOptions,
    /// Decodes outcomes, provider events, postings, discrepancies and
    /// onboarding transitions when given.
    pub decoders: Option<&'a Decoders>,
    /// Only events newer than this are shown.
    pub since: Option<Duration>,
    /// Read every topic in full even where positions are recorded.
    pub scan_all: bool,
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
    if let Some(flow) = flow_row(store, request.id).await? {
        ids.extend([flow.subject_id, flow.correlation_id]);
    }
    ids.extend(payment_ids(store, request.id).await?);

    // Read every classified topic at once; each read is its own blocking task.
    let indexed = if request.scan_all { HashSet::new() } else { store.indexed_topics().await? };
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let trail = store.audit_trail(&id_refs).await?;
    let found = trace_read::read_flow(kafka, &request.topics, request.read, &ids, &indexed, &trail).await?;
    let (mut messages, missing_topics, scanned_topics, empty_topics) = (found.messages, found.missing_topics, found.scanned_topics, found.empty_topics);

    // Messages may name further ids (the correlation id of a command found
    // by key); one more audit read picks up what belongs to those.
    for m in &messages {
        ids.insert(m.key_text());
        if let Some(c) = m.header(HeaderName::CORRELATION_ID) {
            ids.insert(c.to_owned());
        }
        // Open-banking provider events are keyed by the provider's ids (a
        // Plaid item, a TrueLayer payment), which the outcomes name.
        if let Some(d) = request.decoders.filter(|_| openbanking::is_openbanking_outcome(&m.topic)) {
            ids.extend(d.openbanking.provider_references(&m.payload).await);
        }
    }
    ids.retain(|s| !s.is_empty());
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let audit = store.audit_trail(&id_refs).await?;
    messages.extend(trace_read::read_positions_not_read(kafka, &request.topics, &indexed, &audit, &messages).await?);
    // Positions say where records are, not what happened: the records tell that.
    let audit: Vec<AuditRecord> = audit.into_iter().filter(|r| !switchyard_store::positions::is_position(r)).collect();

    let mut from_topics = Vec::new();
    let mut transitions_on_topic = HashSet::new();
    for m in &messages {
        let (event, transition) = message_event(m, request.decoders).await;
        if let Some(id) = transition {
            // The orchestrator's outbox publishes at least once: a transition
            // sent again (same event id) is still one step of the flow.
            if !transitions_on_topic.insert(id) {
                continue;
            }
        }
        from_topics.push(event);
    }
    // A transition read from its topic replaces the audit row of the same
    // transition; a row whose event never made it to the topic stays.
    let mut events: Vec<TraceEvent> = audit.iter().filter(|r| !transition_on_topic(r, &transitions_on_topic)).flat_map(audit_events).collect();
    events.extend(from_topics);
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
        scanned_topics,
        empty_topics,
        events,
    })
}

/// The onboarding flow `id` names, if it is a flow id. A database without
/// the orchestrator's tables, or a user that may not create them, has no
/// flows to find; the trace then goes on by subject and correlation id.
async fn flow_row(store: &Store, id: &str) -> Result<Option<switchyard_store::onboarding::FlowRow>, OpsError> {
    let Ok(flows) = OnboardingStore::open(store, "switchyard-trace").await else {
        return Ok(None);
    };
    Ok(flows.load(id).await?)
}

/// The ids an open-banking payment id leads to: its consent, which keys
/// every record of the payment, the correlation id of its INITIATE_PAYMENT,
/// which its status events carry, and the provider's payment id, which keys
/// the provider's events. None when `id` is no payment (or the database has
/// no payments table, as for flows).
async fn payment_ids(store: &Store, id: &str) -> Result<Vec<String>, OpsError> {
    let Ok(payments) = PaymentStore::open(store).await else {
        return Ok(Vec::new());
    };
    Ok(match payments.load(id).await? {
        Some(p) => [p.consent_id, p.correlation_id, p.provider_payment_id].into_iter().filter(|s| !s.is_empty()).collect(),
        None => Vec::new(),
    })
}

fn transition_on_topic(row: &AuditRecord, on_topic: &HashSet<String>) -> bool {
    let detail = serde_json::from_str(&row.detail).unwrap_or(serde_json::Value::Null);
    onboarding::audit_event_id(&row.action, &detail).is_some_and(|id| on_topic.contains(&id))
}

fn flow_rank(what: &str) -> u8 {
    match what {
        "command" => 0,
        "route" => 1,
        "failover" => 2,
        "vendor_call" => 3,
        "retry" | "held" => 4,
        "dead_letter" => 6,
        // Published before the outcome of the command that caused them.
        "dlq_replay" | "openbanking_data" | "openbanking_event" => 7,
        "outcome" => 8,
        "provider_event" | "transition" => 9,
        "compliance_hold" | "compensate" => 10,
        "ledger_posting" => 10,
        "discrepancy" => 11,
        _ => 5,
    }
}

/// A row's events: a vendor call that carries its delivery's routing
/// decision reads as the decision, then the call.
fn audit_events(row: &AuditRecord) -> Vec<TraceEvent> {
    let route = (row.action == "vendor_call")
        .then(|| serde_json::from_str::<serde_json::Value>(&row.detail).ok())
        .flatten()
        .and_then(|d| d.get("route").filter(|r| r.is_object()).map(ToString::to_string));
    match route {
        Some(decision) => {
            let as_route = AuditRecord { action: "route".into(), detail: decision, ..row.clone() };
            vec![audit_event(&as_route), audit_event(row)]
        }
        None => vec![audit_event(row)],
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
                // Calls through an SDK-like client record no HTTP status (open banking).
                text("http_status").map_or(result.clone(), |s| format!("HTTP {s}")),
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
        action => match onboarding::audit_line(action, &detail) {
            Some((what, status, line, failed)) => return audit_row_event(row, what, status, line, failed),
            None => (None, row.detail.clone(), false),
        },
    };
    audit_row_event(row, &row.action, status, line, failed)
}

fn audit_row_event(row: &AuditRecord, what: &str, status: Option<String>, line: String, failed: bool) -> TraceEvent {
    TraceEvent {
        at_ms: Some(row.at_ms),
        source: format!("audit ({})", row.actor),
        what: what.to_owned(),
        status,
        detail: line,
        failed,
        subject_id: Some(row.subject_id.clone()).filter(|s| !s.is_empty()),
        correlation_id: Some(row.correlation_id.clone()).filter(|s| !s.is_empty()),
    }
}

/// The trace line of a message, and the event id when it is an onboarding transition.
async fn message_event(m: &TopicMessage, decoders: Option<&Decoders>) -> (TraceEvent, Option<String>) {
    let kind = TopicKind::of(&m.topic);
    let mut transition = None;
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
        // Payout, check and card outcomes are decoded; other domains' outcomes are
        // shown by position.
        Some(TopicKind::Outcome) => match (decoders, onboarding::check_step_of(&m.topic)) {
            (Some(d), Some(step)) => d.onboarding.outcome(step, &at, &m.payload).await,
            (Some(d), None) if cards::is_card_outcome(&m.topic) => d.cards.outcome(&at, &m.payload).await,
            (Some(d), None) if openbanking::is_openbanking_outcome(&m.topic) => d.openbanking.outcome(&at, &m.payload).await,
            _ => payout_outcome(m, &at, decoders).await,
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
        Some(TopicKind::FlowEvent) => match decoders {
            Some(d) => {
                let (line, event_id) = d.onboarding.transition(&at, &m.payload).await;
                transition = event_id;
                line
            }
            None => ("transition", None, format!("{at} on {}", m.topic), false),
        },
        Some(TopicKind::CardEvent) => match decoders {
            Some(d) => d.cards.event(&at, &m.payload).await,
            None => ("card_event", None, format!("{at} on {}", m.topic), false),
        },
        Some(TopicKind::CardTransaction) => match decoders {
            Some(d) => d.cards.transaction(&at, &m.payload).await,
            None => ("card_transaction", None, format!("{at} on {}", m.topic), false),
        },
        Some(TopicKind::OpenBankingEvent) => match decoders {
            Some(d) => d.openbanking.event(&at, &m.payload).await,
            None => ("openbanking_event", None, format!("{at} on {}", m.topic), false),
        },
        Some(TopicKind::OpenBankingData) => match decoders {
            Some(d) => d.openbanking.data(&at, &m.payload).await,
            None => ("openbanking_data", None, format!("{at} on {}", m.topic), false),
        },
        None => ("message", None, format!("{at} on {}", m.topic), false),
    };
    let event = TraceEvent {
        at_ms: m.produced_at_ms(),
        source: m.topic.clone(),
        what: what.to_owned(),
        status,
        detail,
        failed,
        subject_id: Some(m.key_text()).filter(|s| !s.is_empty()),
        correlation_id: m.header(HeaderName::CORRELATION_ID).map(str::to_owned),
    };
    (event, transition)
}

/// Payout outcomes by topic name; other domains' outcomes by position.
async fn payout_outcome(m: &TopicMessage, at: &str, decoders: Option<&Decoders>) -> onboarding::Line {
    match decoders.filter(|_| m.topic.contains("payouts.outcomes.")) {
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
        assert_eq!(TopicKind::of("onboarding.events.v1"), Some(TopicKind::FlowEvent));
        assert_eq!(TopicKind::of("kyc.outcomes.v1"), Some(TopicKind::Outcome));
        assert_eq!(TopicKind::of("cards.outcomes.v1"), Some(TopicKind::Outcome));
        assert_eq!(TopicKind::of("cards.events.v1"), Some(TopicKind::CardEvent));
        assert_eq!(TopicKind::of("cards.transactions.v1"), Some(TopicKind::CardTransaction));
        assert_eq!(TopicKind::of("openbanking.events.v1"), Some(TopicKind::OpenBankingEvent));
        assert_eq!(TopicKind::of("openbanking.data.v1"), Some(TopicKind::OpenBankingData));
        assert_eq!(TopicKind::of("openbanking.outcomes.v1"), Some(TopicKind::Outcome));
        assert_eq!(TopicKind::of("openbanking.provider-events.v1"), Some(TopicKind::ProviderEvent));
        assert_eq!(TopicKind::of("payouts.outcomes.v1.gateway-dlq"), Some(TopicKind::DeadLetter));
        assert_eq!(TopicKind::of("onboarding.events.v1.gateway-dlq"), Some(TopicKind::DeadLetter));
        assert_eq!(TopicKind::of("routing.circuit-events.v1"), None);
    }

    fn vendor_call_row(detail: &str) -> AuditRecord {
        AuditRecord {
            at_ms: 5,
            actor: "payout-worker".into(),
            action: "vendor_call".into(),
            subject_id: "po-1".into(),
            correlation_id: "corr-1".into(),
            detail: detail.into(),
        }
    }

    #[test]
    fn a_failed_vendor_call_reads_as_one_line() {
        let row = vendor_call_row(
            r#"{"provider":"stripe","operation":"create","result":"failed","http_status":400,"latency_ms":12,"request_id":"req_1","error":"balance_insufficient"}"#,
        );
        let e = audit_event(&row);
        assert!(e.failed);
        assert_eq!(audit_events(&row).len(), 1, "no routing decision on this row");
        assert_eq!(e.status.as_deref(), Some("400"));
        assert_eq!(e.detail, "stripe create -> HTTP 400 in 12 ms, vendor request req_1: balance_insufficient");
    }

    #[test]
    fn a_vendor_call_carrying_the_routing_decision_reads_as_route_then_call() {
        let row = vendor_call_row(
            r#"{"provider":"adyen","operation":"create","result":"ok","http_status":200,"latency_ms":3,"route":{"provider":"adyen","resumed":true}}"#,
        );
        let events = audit_events(&row);
        assert_eq!(events.iter().map(|e| e.what.as_str()).collect::<Vec<_>>(), ["route", "vendor_call"]);
        assert_eq!(events[0].detail, "resumed at adyen");
        assert_eq!(events[1].detail, "adyen create -> HTTP 200 in 3 ms");
    }
}
