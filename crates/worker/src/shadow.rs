//! Shadow mode: every payout the live provider answered is also sent to a
//! candidate adapter pointed at that vendor's sandbox, and the normalized
//! outcomes are compared. Nothing is ever done with the candidate's answer
//! but counting: the agreement rate is the change-failure signal for an
//! adapter before it takes live traffic.

use crate::metrics::Metrics;
use std::sync::Arc;
use switchyard_adapters::payouts::{PayoutProvider, VendorPayout};
use switchyard_adapters::{AdapterError, CallContext};
use switchyard_canonical::{PayoutCommand, PayoutOutcome, PayoutStatus};
use tokio::sync::Semaphore;

#[derive(Clone)]
pub struct ShadowCaller {
    pub adapter: PayoutProvider,
    /// Shadow calls in flight; when full, comparisons are skipped rather
    /// than slowing live traffic.
    pub slots: Arc<Semaphore>,
    pub metrics: Arc<Metrics>,
}

/// What a comparison looks at: accepted or not, and why not.
fn verdict(status: PayoutStatus, code: Option<&str>) -> (bool, Option<String>) {
    match status {
        PayoutStatus::Submitted | PayoutStatus::Paid => (true, None),
        PayoutStatus::Failed | PayoutStatus::Rejected | PayoutStatus::PendingUnknown | PayoutStatus::Held => {
            (false, code.map(str::to_owned))
        }
    }
}

impl ShadowCaller {
    pub fn compare(&self, command: &PayoutCommand, live: &PayoutOutcome, ctx: &CallContext) {
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            self.metrics.shadow(self.adapter.name(), "skipped");
            return;
        };
        let live = verdict(live.status, live.error.as_ref().map(|e| e.code.as_str()));
        let (caller, command, ctx) = (self.clone(), command.clone(), ctx.clone());
        tokio::spawn(async move {
            let key = caller.adapter.provider_key(&command.idempotency_key);
            let answer: Result<VendorPayout, AdapterError> = caller.adapter.create(&command, &key, &ctx).await;
            let result = match answer {
                Ok(v) if verdict(v.status, v.error.as_ref().map(|e| e.code.as_str())) == live => "agree",
                Err(e) if e.class == switchyard_canonical::ErrorClass::Permanent && verdict(PayoutStatus::Failed, Some(e.code.as_str())) == live => "agree",
                Ok(_) | Err(AdapterError { class: switchyard_canonical::ErrorClass::Permanent, .. }) => "disagree",
                Err(_) => "error",
            };
            caller.metrics.shadow(caller.adapter.name(), result);
            drop(slot);
        });
    }
}
