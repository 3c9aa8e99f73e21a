//! TrueLayer's payment webhooks acting on payments: the callbacks
//! consumer's second kind of callback, beside Plaid's consent ones.
//!
//! The ingester publishes `payment_authorized` / `executed` / `settled` /
//! `failed` as provider events keyed by TrueLayer's payment id, our
//! `PaymentStatus` word in `reason` (`FAILED:<failure_reason>`; see
//! `switchyard_adapters::webhooks::truelayer::map`). Each one:
//!
//! 1. claimed before (`ob_callbacks`, per provider event id): acknowledged,
//!    nothing applied again;
//! 2. the payment found by (provider, TrueLayer payment id); none yet (the
//!    INITIATE_PAYMENT's insert may still be on its way): retried through
//!    the callback retry topic, as an unknown Plaid item is;
//! 3. the status goes through the polling path,
//!    `OpenBankingHandler::apply_payment_status`: the payment machine
//!    fills skipped statuses in and ignores late and repeated ones, the row
//!    is compared and set, and the events are stored, published and
//!    cleared. So an out-of-order webhook publishes nothing twice, and a
//!    webhook and a poll reporting the same status publish it once.
//!    - `FAILED`: the webhook's `failure_stage` does not reach us (the
//!      provider event keeps only the reason), and the stage decides
//!      whether the money had left (a return). The payment is read from
//!      TrueLayer once, and its answer applied, after the stage it failed
//!      at: a return arriving before its `payment_executed` webhook enters
//!      EXECUTED first, so the ledger sees what it must reverse.
//! 4. then claimed (no payload: the events were published in step 3). A
//!    crash between 3 and 4 makes the redelivery apply it again, which the
//!    payment machine answers with "unchanged": nothing published.

use super::callbacks::CallbackHandler;
use super::Stop;
use std::time::Duration;
use switchyard_adapters::openbanking::PaymentState;
use switchyard_adapters::CallContext;
use switchyard_bus::{Failure, MessageContext};
use switchyard_canonical::openbanking_outcome::PaymentFailureReason;
use switchyard_canonical::openbanking_payment::{PaymentObserved, PaymentProgress, PaymentStatus};
use switchyard_canonical::{ProviderEvent, TraceParent};
use switchyard_store::openbanking_callbacks::{CallbackClaim, Commit};
use switchyard_store::openbanking_payments::PaymentRow;
use switchyard_store::AuditEntry;

use crate::answer::{dead_letter, store_down};

/// Compare-and-set attempts against a concurrent poll or webhook.
const CAS_ATTEMPTS: usize = 8;

/// The payment status a provider event reports, if it is a payment webhook.
pub fn payment_word(event: &ProviderEvent) -> Option<PaymentStatus> {
    if !event.vendor_event_type.starts_with("payment_") {
        return None;
    }
    let word = event.reason.as_deref()?.split(':').next()?;
    PaymentStatus::parse(word).filter(|s| matches!(s, PaymentStatus::Authorized | PaymentStatus::Executed | PaymentStatus::Settled | PaymentStatus::Failed))
}

fn failure(stop: Stop) -> Failure {
    match stop {
        Stop::Later(f) => f,
        Stop::LeaseLost => Failure::Retry { reason: "payment status lease lost".into(), delay: Duration::from_secs(1) },
    }
}

impl CallbackHandler {
    pub(super) async fn apply_payment(&self, event: &ProviderEvent, ctx: &MessageContext, status: PaymentStatus) -> Result<(), Failure> {
        let metrics = &self.ob.metrics;
        if self.callbacks.applied(&event.provider, &event.event_id).await.map_err(store_down)?.is_some() {
            metrics.callback(&event.provider, "duplicate");
            tracing::debug!("payment callback applied before: changes nothing");
            return Ok(());
        }
        let Some(row) = self.ob.payments.find_by_provider_id(&event.provider, &event.provider_reference).await.map_err(store_down)? else {
            metrics.callback(&event.provider, "unknown_payment");
            return Err(Failure::Retry {
                reason: format!(
                    "no payment of ours is {} payment {} of callback {}; its INITIATE_PAYMENT may not be stored yet",
                    event.provider, event.provider_reference, event.event_id
                ),
                delay: self.unknown_consent_retry,
            });
        };
        let states = self.states(event, &row, status).await?;
        let mut result = "unchanged";
        for state in &states {
            if self.apply_state(&row.payment_id, state).await? {
                result = "entered";
            }
        }
        let claim = CallbackClaim { provider: &event.provider, event_id: &event.event_id, consent_id: &row.consent_id, result, payload: None, change: None };
        match self.callbacks.commit(&claim).await.map_err(store_down)? {
            Commit::Applied => {
                metrics.callback(&event.provider, result);
                tracing::info!(payment_id = %row.payment_id, consent_id = %row.consent_id, status = status.as_str(), result, "payment callback applied");
                self.audit_payment(event, ctx, &row, status, result).await;
            }
            // Another delivery applied it meanwhile: the payment machine kept it to one event.
            Commit::Duplicate | Commit::Conflict => metrics.callback(&event.provider, "duplicate"),
        }
        Ok(())
    }

    /// The statuses to apply, in order. A failure is read from the provider
    /// (for its stage); a return enters EXECUTED before FAILED.
    async fn states(&self, event: &ProviderEvent, row: &PaymentRow, status: PaymentStatus) -> Result<Vec<PaymentState>, Failure> {
        if status != PaymentStatus::Failed {
            return Ok(vec![PaymentState { status, at_ms: event.occurred_at_ms, failure: None, failure_code: None }]);
        }
        let Some(vendor) = self.ob.providers.get(&row.provider) else {
            return Err(dead_letter(&format!("payment {} of provider {:?}, which this worker does not configure", row.payment_id, row.provider)));
        };
        let call = CallContext { correlation_id: row.correlation_id.clone(), traceparent: TraceParent::new_root().to_string() };
        let started = std::time::Instant::now();
        let read = {
            let Ok(_slot) = vendor.slots.acquire().await else {
                return Err(Failure::Retry { reason: "worker stopping".into(), delay: Duration::ZERO });
            };
            vendor.adapter.payment_status(&call, &row.provider_payment_id).await
        };
        let state = match read {
            Ok(state) => {
                self.ob.metrics.vendor_call(&row.provider, "payment_status", "ok", started.elapsed());
                state
            }
            Err(e) => {
                self.ob.metrics.vendor_call(&row.provider, "payment_status", "failed", started.elapsed());
                return Err(Failure::Retry {
                    reason: format!("payment {} failed; its failure not read from the provider: {e}", row.payment_id),
                    delay: self.unknown_consent_retry,
                });
            }
        };
        // The stage it failed at was reached (TrueLayer sends no webhook
        // for `authorizing`, and a return's `payment_executed` may come
        // later): entered first, so the path is the one polling would see.
        let stage = state.failure_code.as_deref().and_then(|c| c.split('/').next()).map(str::to_ascii_uppercase).and_then(|s| PaymentStatus::parse(&s));
        let reached = if state.failure == Some(PaymentFailureReason::Returned) {
            Some(PaymentStatus::Executed)
        } else {
            stage.filter(|s| !matches!(s, PaymentStatus::Failed | PaymentStatus::Settled))
        };
        match reached {
            Some(s) if state.status == PaymentStatus::Failed => {
                Ok(vec![PaymentState { status: s, at_ms: state.at_ms, failure: None, failure_code: None }, state])
            }
            _ => Ok(vec![state]),
        }
    }

    /// Applies one status through the polling path; true when it entered
    /// something. A status the payment machine would not enter is not
    /// written at all (a write would move the row under a delivery that is
    /// publishing its events). Events another delivery stored and is still
    /// publishing: looked at again shortly.
    async fn apply_state(&self, payment_id: &str, state: &PaymentState) -> Result<bool, Failure> {
        for _ in 0..CAS_ATTEMPTS {
            let Some(row) = self.ob.payments.load(payment_id).await.map_err(store_down)? else {
                return Err(dead_letter(&format!("payment {payment_id} vanished from the store")));
            };
            let mut progress: PaymentProgress =
                serde_json::from_str(&row.progress).map_err(|e| dead_letter(&format!("stored payment progress is unreadable: {e}")))?;
            if !matches!(progress.observe(state.status, state.at_ms), PaymentObserved::Entered(_)) {
                return Ok(false);
            }
            if row.pending_events.is_some() {
                return Err(Failure::Retry { reason: format!("payment {payment_id} has events being published"), delay: Duration::from_millis(500) });
            }
            if self.ob.apply_payment_status(row, state).await.map_err(failure)? {
                return Ok(true);
            }
        }
        Err(Failure::Retry { reason: format!("payment {payment_id} kept changing while its callback was applied"), delay: Duration::from_secs(1) })
    }

    async fn audit_payment(&self, event: &ProviderEvent, ctx: &MessageContext, row: &PaymentRow, status: PaymentStatus, result: &str) {
        let detail = serde_json::json!({
            "provider": event.provider,
            "provider_event_id": event.event_id,
            "vendor_event_type": event.vendor_event_type,
            "payment_id": row.payment_id,
            "word": status.as_str(),
            "from": row.status,
            "result": result,
        })
        .to_string();
        let entry = AuditEntry {
            actor: "openbanking-worker",
            action: "openbanking_callback",
            subject_id: &row.consent_id,
            correlation_id: &ctx.correlation_id.0,
            detail: &detail,
        };
        self.ob.store.audit_later(entry).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_canonical::ProviderEventKind;

    fn event(vendor_event_type: &str, reason: &str) -> ProviderEvent {
        ProviderEvent {
            event_id: "e1".into(),
            provider: "truelayer".into(),
            domain: "openbanking".into(),
            subject_id: "p1".into(),
            provider_reference: "p1".into(),
            kind: ProviderEventKind::Other,
            vendor_event_type: vendor_event_type.into(),
            amount_minor: None,
            currency: None,
            reason: Some(reason.into()),
            occurred_at_ms: 1,
            received_at_ms: 2,
            payload_sha256: String::new(),
        }
    }

    #[test]
    fn truelayers_payment_webhooks_map_to_statuses_and_nothing_else_does() {
        for (t, reason, status) in [
            ("payment_authorized", "AUTHORIZED", PaymentStatus::Authorized),
            ("payment_executed", "EXECUTED", PaymentStatus::Executed),
            ("payment_settled", "SETTLED", PaymentStatus::Settled),
            ("payment_failed", "FAILED:provider_rejected", PaymentStatus::Failed),
            ("payment_failed", "FAILED", PaymentStatus::Failed),
        ] {
            assert_eq!(payment_word(&event(t, reason)), Some(status), "{t}");
        }
        for (t, reason) in [
            ("payment_creditable", "CREDITABLE"),
            ("payment_settlement_stalled", "SETTLEMENT_STALLED"),
            ("TRANSACTIONS:SYNC_UPDATES_AVAILABLE", "REFRESH_AVAILABLE"),
            ("payout_executed", "EXECUTED"),
            ("payment_authorized", "AUTHORIZATION_REQUIRED"),
        ] {
            assert_eq!(payment_word(&event(t, reason)), None, "{t} {reason}");
        }
    }
}
