//! The periodic sweep: flows past their deadline get a timeout, and outbox
//! rows nobody published (their writer stopped between commit and publish)
//! are sent.
//!
//! The deadline lives in the store, so a timeout survives restarts. Several
//! orchestrator instances may sweep at once: each timeout is a transition
//! from the version it read, applied once (`timeout:<version>`) and
//! compared-and-set, so only one instance moves a flow and the others see a
//! conflict and skip it.

use crate::handler::{commit_transition, parse};
use crate::machine::{self, Input, Limits};
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use std::sync::Arc;
use std::time::Duration;
use switchyard_canonical::now_ms;
use switchyard_store::onboarding::Commit;
use tokio_util::sync::CancellationToken;

/// Flows handled per pass; the next pass takes the rest.
const BATCH: i64 = 200;

pub struct Sweep {
    pub outbox: Arc<Outbox>,
    pub limits: Limits,
    pub metrics: Arc<Metrics>,
    pub interval: Duration,
    pub outbox_grace_ms: i64,
    pub retention_ms: i64,
}

/// How often finished flows' bookkeeping is pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

impl Sweep {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pruned: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.pass().await {
                tracing::warn!(error = %e, "sweep pass failed; next pass retries");
            }
            if pruned.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
                pruned = Some(tokio::time::Instant::now());
                match self.outbox.store.forget_finished(now_ms() - self.retention_ms).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(rows = n, "pruned bookkeeping of long-finished flows"),
                    Err(e) => tracing::warn!(error = %e, "pruning finished flows failed; next time"),
                }
            }
        }
    }

    /// One pass; returns how many flows timed out.
    pub async fn pass(&self) -> Result<usize, String> {
        let now = now_ms();
        let mut moved = 0;
        for row in self.outbox.store.due(now, BATCH).await.map_err(|e| e.to_string())? {
            let flow = match parse(&self.outbox.pii, &row).await {
                Ok(f) => f,
                Err(e) => {
                    tracing::error!(flow_id = %row.flow_id, ?e, "flow unreadable; not timed out");
                    continue;
                }
            };
            let t = match machine::apply(&flow, &Input::Timeout, &self.limits, now) {
                Ok(t) => t,
                Err(why) => {
                    self.metrics.ignored(why.as_str());
                    continue;
                }
            };
            let key = format!("timeout:{}", flow.version);
            match commit_transition(&self.outbox, &t, Some(flow.version), &key).await.map_err(|e| e.to_string())? {
                Commit::Applied => {
                    moved += 1;
                    self.metrics.transition(t.flow.state.as_str());
                    tracing::info!(flow_id = %flow.flow_id, from = flow.state.as_str(), to = t.flow.state.as_str(), "timeout");
                    if let Err(e) = self.outbox.flush(&t.flow).await {
                        tracing::warn!(flow_id = %flow.flow_id, error = %e, "publish after timeout failed; next pass re-sends");
                    }
                }
                // Another instance, or an outcome arriving just now, moved it first.
                Commit::Duplicate | Commit::Conflict => self.metrics.conflict(),
            }
        }
        let stale = self.outbox.store.unsent_before(now - self.outbox_grace_ms, BATCH * 2).await.map_err(|e| e.to_string())?;
        if !stale.is_empty() {
            tracing::info!(messages = stale.len(), "re-sending outbox rows left unsent");
            // Per flow, in order; a failure stops only that flow's rows.
            let mut start = 0;
            while start < stale.len() {
                let flow_id = &stale[start].flow_id;
                let end = stale[start..].iter().position(|m| &m.flow_id != flow_id).map_or(stale.len(), |n| start + n);
                if let Err(e) = self.outbox.send(&stale[start..end]).await {
                    tracing::warn!(%flow_id, error = %e, "outbox re-send failed");
                }
                start = end;
            }
        }
        Ok(moved)
    }
}
