//! Card commands a processor may have carried out without saying so: a
//! timeout, a connection reset after the request went out, a 5xx that may
//! have executed, a 409 while our first request is still running. DESIGN's
//! rule for money holds for cards: such a command is neither a refusal nor
//! a reason to fail over (the shared [`crate::answer::refusal`] rule pins
//! it to its processor); it is asked about at that processor under the same
//! key or token ([`switchyard_adapters::cards::CardProcessor::settle`]),
//! and sent again only under that key.
//!
//! A command still unconfirmed when a delivery's attempts run out is
//! `pending_unknown`, as a payout would be: its claim stays unfinished, an
//! ISSUE keeps its card id reserved (no other command can issue it, and no
//! later command for the card runs before it resolves), the audit log says
//! so, and the retry topic brings it back; the next round asks the
//! processor first. No outcome is published for it on `cards.outcomes.v1`:
//! the released CardOutcomeStatus has no such symbol and Avro readers of
//! that version cannot read a new one (FULL_TRANSITIVE), and every symbol
//! it has would tell core banking something untrue. Core banking hears the
//! outcome once the processor has answered; after the retry rounds the
//! command is dead-lettered for a person with the reason.

use super::execute::Stop;
use super::{CardHandler, CardVendor};
use crate::metrics::Stage;
use std::time::{Duration, Instant};
use switchyard_adapters::cards::{CardAnswer, CardCall};
use switchyard_adapters::{AdapterError, CallContext};
use switchyard_bus::Failure;
use switchyard_canonical::card::CardCommand;
use switchyard_canonical::{ErrorClass, ErrorCode};
use switchyard_store::AuditEntry;

impl CardHandler {
    /// Asks `vendor` whether `call` was done, under the same key, creating
    /// nothing. Timed, audited and counted like a call; it is one.
    pub(super) async fn settle(&self, command: &CardCommand, vendor: &CardVendor, call: &CardCall<'_>, provider_key: &str, ctx: &CallContext) -> Result<Option<CardAnswer>, AdapterError> {
        let name = vendor.adapter.name();
        let waited = Instant::now();
        let Ok(_slot) = vendor.slots.acquire().await else {
            return Err(AdapterError::new(ErrorClass::Transient, ErrorCode::VendorUnavailable, "processor slots closed"));
        };
        self.metrics.stage(Stage::VendorSlotWait, waited.elapsed());
        let started = Instant::now();
        let (result, reply) = switchyard_adapters::http::observe(vendor.adapter.settle(call, provider_key, ctx)).await;
        let elapsed = started.elapsed();
        let label = match &result {
            Ok(Some(_)) => "done".to_owned(),
            Ok(None) => "not_done".to_owned(),
            Err(e) => e.http_status.map_or_else(|| e.code.as_str().to_owned(), |s| s.to_string()),
        };
        self.metrics.vendor_call(name, "settle", &label, elapsed);
        let detail = serde_json::json!({
            "provider": name,
            "operation": "settle",
            "action": command.action.as_str(),
            "result": label,
            "http_status": reply.http_status,
            "latency_ms": u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            "request_id": reply.request_id,
        })
        .to_string();
        let entry = AuditEntry { actor: "card-worker", action: "vendor_call", subject_id: &command.card_id, correlation_id: &ctx.correlation_id, detail: &detail };
        self.store.audit_later(entry).await;
        result
    }

    /// This delivery could not learn what the processor did: the command is
    /// `pending_unknown` until a later round (or a person) settles it there.
    pub(super) async fn pending_unknown(&self, command: &CardCommand, vendor: &CardVendor, attempts: i32, reason: String, correlation_id: &str) -> Stop {
        let name = vendor.adapter.name();
        tracing::warn!(provider = name, attempts, %reason, "processor did not confirm the card command: pending_unknown, asked again at the same processor under the same key");
        let detail = serde_json::json!({ "provider": name, "action": command.action.as_str(), "attempts": attempts, "reason": reason }).to_string();
        let entry = AuditEntry { actor: "card-worker", action: "pending_unknown", subject_id: &command.card_id, correlation_id, detail: &detail };
        self.store.audit_later(entry).await;
        Stop::Later(Failure::Retry { reason: format!("pending_unknown at {name}: {reason}"), delay: Duration::from_millis(self.retry.retry_topic_delay_ms) })
    }
}
