//! A simulated TrueLayer payment: what `POST /v3/payments` created, and
//! where its status stands at any instant.
//!
//! A payment waits in `authorization_required` until the user acts
//! ([`super::TrueLayerSimulator::authorize`], or `POST
//! .../authorization-flow`); from then on its [`Scenario`] moves it one
//! status every `step`, so the status at a GET depends only on the time
//! elapsed, as at the real provider.

use serde_json::{json, Value};
use std::time::{Duration, Instant};

use crate::util::iso8601;

/// How a payment's life goes once the user starts authorizing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// authorizing -> authorized -> executed -> settled.
    Settles,
    /// authorizing -> failed (`failure_stage` authorizing,
    /// `failure_reason` authorization_failed): the user declined at the bank.
    FailsAtAuthorization,
    /// authorizing -> authorized -> executed -> failed (`failure_stage`
    /// executed): the bank returned the payment after executing it.
    ReturnedAfterExecution,
}

/// One payment as the "bank" holds it.
pub(crate) struct Payment {
    pub(crate) id: String,
    pub(crate) amount_in_minor: i64,
    pub(crate) currency: String,
    pub(crate) user_id: String,
    /// The request's `payment_method`, echoed on GET as TrueLayer does.
    pub(crate) payment_method: Value,
    pub(crate) metadata: Value,
    pub(crate) created_at_ms: i64,
    pub(crate) scenario: Scenario,
    /// When the user started authorizing (none: still waiting for them).
    pub(crate) started: Option<(Instant, i64)>,
    pub(crate) step: Duration,
}

impl Payment {
    /// `(status, stamp_ms)` steps after the start, in order.
    pub(crate) fn timeline(&self) -> &'static [&'static str] {
        match self.scenario {
            Scenario::Settles => &["authorizing", "authorized", "executed", "settled"],
            Scenario::FailsAtAuthorization => &["authorizing", "failed"],
            Scenario::ReturnedAfterExecution => &["authorizing", "authorized", "executed", "failed"],
        }
    }

    /// The status now and how many steps in (for the timestamps).
    fn at(&self, now: Instant) -> (&'static str, usize, i64) {
        let Some((started, started_ms)) = self.started else { return ("authorization_required", 0, self.created_at_ms) };
        let step_ms = self.step.as_millis().max(1);
        let steps = (now.saturating_duration_since(started).as_millis() / step_ms) as usize;
        let line = self.timeline();
        let i = steps.min(line.len() - 1);
        (line[i], i, started_ms)
    }

    pub(crate) fn status(&self, now: Instant) -> &'static str {
        self.at(now).0
    }

    /// The GET /v3/payments/{id} body: the fields of the status it is in.
    pub(crate) fn to_json(&self, now: Instant) -> Value {
        let (status, i, started_ms) = self.at(now);
        let step_ms = i64::try_from(self.step.as_millis()).unwrap_or(i64::MAX);
        let stamp = |k: usize| iso8601(started_ms + step_ms * k as i64);
        let mut body = json!({
            "id": self.id,
            "amount_in_minor": self.amount_in_minor,
            "currency": self.currency,
            "user": {"id": self.user_id},
            "payment_method": self.payment_method,
            "created_at": iso8601(self.created_at_ms),
            "status": status,
        });
        if !self.metadata.is_null() {
            body["metadata"] = self.metadata.clone();
        }
        let executed_step = self.timeline().iter().position(|s| *s == "executed");
        match status {
            "authorizing" => {
                body["authorization_flow"] =
                    json!({"actions": {"next": {"type": "redirect", "uri": format!("https://mock-bank.example/authorize/{}", self.id)}}});
            }
            "executed" => body["executed_at"] = json!(stamp(i)),
            "settled" => {
                body["executed_at"] = json!(stamp(i - 1));
                body["settled_at"] = json!(stamp(i));
                body["payment_source"] = json!({"id": format!("ps-{}", self.id), "account_holder_name": "Sandbox Payer"});
            }
            "failed" => {
                body["failed_at"] = json!(stamp(i));
                let (stage, reason) = match self.scenario {
                    Scenario::FailsAtAuthorization => ("authorizing", "authorization_failed"),
                    // UNCONFIRMED: the failure_reason TrueLayer gives a bank
                    // return; the stage is what the status machine relies on.
                    _ => ("executed", "provider_rejected"),
                };
                body["failure_stage"] = json!(stage);
                body["failure_reason"] = json!(reason);
                if let Some(e) = executed_step.filter(|e| *e < i) {
                    body["executed_at"] = json!(stamp(e));
                }
            }
            _ => {}
        }
        body
    }
}
