//! The simulator's payment and payout webhooks: on each status change a
//! signed `payment_<status>` (or `payout_executed` / `payout_failed`) webhook to the URL a test configured
//! ([`super::TrueLayerSimulator::send_webhooks`]), as TrueLayer sends them
//! (docs.truelayer.com "Payment webhooks": `type`, `event_version`,
//! `event_id` (a UUID), `payment_id`, `payment_method`, `metadata`,
//! `<verb>_at`; `payment_failed` adds `failure_stage` and `failure_reason`).
//! TrueLayer sends none for `authorizing`, so neither does this.
//!
//! Signed by [`TrueLayerWebhooks`] (TrueLayer's own signing crate), whose
//! JWKS the simulator serves at `base_url + JWKS_PATH`, the `jku` it signs with.
//!
//! Faults ([`WebhookDelivery`]): each webhook sent `copies` times, and
//! [`WebhookOrder::ReversedAtTheEnd`] holds a payment's webhooks until it
//! ends, then sends them newest first, `copies` rounds, so every earlier
//! status arrives late and after the terminal one.

use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::payments::{Payment, Scenario};
use super::Sim;
use crate::truelayer_webhooks::TrueLayerWebhooks;
use crate::util::iso8601;

/// How the simulator delivers its payment webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookDelivery {
    /// Each webhook (or, reversed, each round of a payment's webhooks) this many times.
    pub copies: usize,
    pub order: WebhookOrder,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookOrder {
    /// Sent as each status is reached.
    AsTheyHappen,
    /// Held until the payment ends, then sent newest first.
    ReversedAtTheEnd,
}

impl Default for WebhookDelivery {
    fn default() -> Self {
        Self { copies: 1, order: WebhookOrder::AsTheyHappen }
    }
}

/// What the sender has done, per payment.
#[derive(Default)]
pub(super) struct HookState {
    /// Timeline steps already turned into webhooks, per TrueLayer payment id.
    noticed: HashMap<String, usize>,
    /// Bodies held for a reversed delivery.
    held: HashMap<String, Vec<Vec<u8>>>,
    /// `(type, HTTP status)` of every delivery, in order.
    pub(super) sent: Vec<(String, u16)>,
    /// The signer, made once the simulator knows its own address (the `jku`).
    pub(super) signer: Option<Arc<TrueLayerWebhooks>>,
    /// The sender task, stopped with the simulator.
    pub(super) task: Option<tokio::task::AbortHandle>,
}

/// `GET /.well-known/jwks`: the signer's public keys, as TrueLayer serves its own.
pub(super) async fn jwks(State(sim): State<Arc<Sim>>) -> Response {
    let Some(signer) = sim.lock().hooks.signer.clone() else { return StatusCode::NOT_FOUND.into_response() };
    ([(header::CONTENT_TYPE, "application/json")], signer.jwks()).into_response()
}

/// The webhook of entering timeline step `k` (none for `authorizing`).
fn body(p: &Payment, k: usize, started_ms: i64) -> Option<Value> {
    let status = *p.timeline().get(k)?;
    if status == "authorizing" {
        return None;
    }
    let step_ms = i64::try_from(p.step.as_millis()).unwrap_or(i64::MAX);
    let at = iso8601(started_ms + step_ms * k as i64);
    let mut b = json!({
        "type": format!("payment_{status}"),
        "event_version": 1,
        "event_id": uuid::Uuid::new_v4().to_string(),
        "payment_id": p.id,
        "payment_method": p.payment_method,
    });
    b[format!("{status}_at")] = json!(at);
    if !p.metadata.is_null() {
        b["metadata"] = p.metadata.clone();
    }
    if status == "failed" {
        let (stage, reason) = match p.scenario {
            Scenario::FailsAtAuthorization => ("authorizing", "authorization_failed"),
            _ => ("executed", "provider_rejected"),
        };
        b["failure_stage"] = json!(stage);
        b["failure_reason"] = json!(reason);
    }
    Some(b)
}

/// The bodies due now, in the order they are to be sent.
fn due(sim: &Sim, delivery: WebhookDelivery) -> Vec<Vec<u8>> {
    let mut g = sim.lock();
    let inner = &mut *g;
    let now = Instant::now();
    let mut out = Vec::new();
    // Payouts' webhooks as they happen (their delivery order is not a
    // fault this simulator plays).
    for b in inner.payouts.due_webhooks(now) {
        out.extend(std::iter::repeat_n(b.to_string().into_bytes(), delivery.copies.max(1)));
    }
    for (id, p) in &inner.payments {
        let Some((started, started_ms)) = p.started else { continue };
        let line = p.timeline();
        let step_ms = p.step.as_millis().max(1);
        let reached = ((now.saturating_duration_since(started).as_millis() / step_ms) as usize).min(line.len() - 1);
        let noticed = inner.hooks.noticed.entry(id.clone()).or_insert(0);
        if *noticed > reached {
            continue;
        }
        let fresh: Vec<Vec<u8>> = (*noticed..=reached).filter_map(|k| body(p, k, started_ms)).map(|b| b.to_string().into_bytes()).collect();
        *noticed = reached + 1;
        match delivery.order {
            WebhookOrder::AsTheyHappen => {
                for b in fresh {
                    out.extend(std::iter::repeat_n(b, delivery.copies.max(1)));
                }
            }
            WebhookOrder::ReversedAtTheEnd => {
                let held = inner.hooks.held.entry(id.clone()).or_default();
                held.extend(fresh);
                if reached == line.len() - 1 {
                    let mut round = std::mem::take(held);
                    round.reverse();
                    for _ in 0..delivery.copies.max(1) {
                        out.extend(round.iter().cloned());
                    }
                }
            }
        }
    }
    out
}

/// Sends the payment webhooks until the simulator is dropped.
pub(super) async fn run(sim: Weak<Sim>, hooks: Arc<TrueLayerWebhooks>, url: String, delivery: WebhookDelivery) {
    loop {
        let Some(strong) = sim.upgrade() else { return };
        let bodies = due(&strong, delivery);
        drop(strong);
        for b in bodies {
            let kind = serde_json::from_slice::<Value>(&b).ok().and_then(|v| v["type"].as_str().map(str::to_owned)).unwrap_or_default();
            // TrueLayer retries failed deliveries; so does the sender.
            let status = hooks.send(&url, &b, 1, 50).await.first().copied().unwrap_or(0);
            let Some(strong) = sim.upgrade() else { return };
            strong.lock().hooks.sent.push((kind, status));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
