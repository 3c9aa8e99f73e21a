//! A card command whose key the processor may have forgotten: look, never
//! create.
//!
//! Lithic keeps idempotency keys for 24 hours. Past that, an ISSUE sent
//! again under the old key is a second card for one card id, so an
//! unfinished claim that old is resumed by looking the card up by the
//! reference we sent (Lithic: the card's `memo`, our card id). Found: that
//! card is the answer. Not found, or a command that creates something that
//! cannot be looked up (a dispute, evidence, a wallet token, a replacement):
//! a person decides, with what they need in the dead letter. Commands that
//! only set a state (activate, suspend, reinstate, terminate, PIN) are sent
//! again: doing them twice changes nothing.

use super::execute::Stop;
use super::{CardHandler, CardVendor};
use crate::attempt::AttemptLease;
use std::time::{Duration, Instant};
use switchyard_adapters::cards::{CardAnswer, CardCall};
use switchyard_adapters::CallContext;
use switchyard_bus::Failure;
use switchyard_canonical::card::CardCommand;
use switchyard_canonical::{now_ms, ErrorClass};
use switchyard_store::{AuditEntry, Record};

use crate::answer::dead_letter;

/// Whether sending `call` twice under two keys could create two things.
pub(super) fn creates(call: &CardCall<'_>) -> bool {
    match call {
        CardCall::Issue { .. }
        | CardCall::Replace { .. }
        | CardCall::ProvisionToken { .. }
        | CardCall::OpenDispute { .. }
        | CardCall::SubmitDisputeEvidence { .. } => true,
        CardCall::Activate { .. } | CardCall::SetPin { .. } | CardCall::Suspend { .. } | CardCall::Reinstate { .. } | CardCall::Terminate { .. } => false,
    }
}

impl CardHandler {
    /// Resumes a claim whose key `vendor` may have forgotten, without
    /// creating anything. `Ok` carries the card found for an ISSUE.
    pub(super) async fn look_up(
        &self,
        command: &CardCommand,
        vendor: &CardVendor,
        record: &Record,
        lease: &mut AttemptLease,
        call: &CardCall<'_>,
        ctx: &CallContext,
    ) -> Result<CardAnswer, Stop> {
        let name = vendor.adapter.name();
        let age = Duration::from_millis(u64::try_from(now_ms() - record.key_since_ms).unwrap_or(0));
        let retention = vendor.key_retention.unwrap_or_default();
        let CardCall::Issue { card_id, .. } = call else {
            return Err(Stop::Later(dead_letter(&format!(
                "{name} keeps idempotency keys for {retention:?}; this {action} was claimed {age:?} ago and never finished. \
                 Not sent again: under a forgotten key it could be done twice. Check at {name} whether it was done \
                 (card {card}), then answer or re-send it with a new idempotency key",
                action = command.action.as_str(),
                card = command.card_id,
            ))));
        };
        lease.fence(&self.store).await.map_err(super::execute::fenced)?;
        let started = Instant::now();
        let (result, reply) = switchyard_adapters::http::observe(vendor.adapter.find_card(card_id, ctx)).await;
        let elapsed = started.elapsed();
        let label = match &result {
            Ok(Some(_)) => "found".to_owned(),
            Ok(None) => "not_found".to_owned(),
            Err(e) => e.http_status.map_or_else(|| e.code.as_str().to_owned(), |s| s.to_string()),
        };
        self.metrics.vendor_call(name, "find", &label, elapsed);
        let detail = serde_json::json!({
            "provider": name,
            "operation": "find",
            "result": label,
            "http_status": reply.http_status,
            "latency_ms": u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            "request_id": reply.request_id,
        })
        .to_string();
        let entry = AuditEntry { actor: "card-worker", action: "vendor_call", subject_id: &command.card_id, correlation_id: &ctx.correlation_id, detail: &detail };
        self.store.audit_later(entry).await;
        match result {
            Ok(Some(found)) => Ok(found),
            Ok(None) => Err(Stop::Later(dead_letter(&format!(
                "{name} keeps idempotency keys for {retention:?}; card {card_id} was claimed {age:?} ago and {name} holds no card \
                 for it. Not issued again: a create now could issue a second card if {name} is still catching up. Confirm with \
                 {name}, then re-send the ISSUE under a new card id"
            )))),
            Err(e) if e.class == ErrorClass::ManualRepair => Err(Stop::Later(dead_letter(&e.to_string()))),
            Err(e) => Err(Stop::Later(Failure::Retry {
                reason: format!("looking card {card_id} up at {name} failed: {} {}", e.class.as_str(), e.code.as_str()),
                delay: Duration::from_millis(self.retry.retry_topic_delay_ms),
            })),
        }
    }
}
