//! Scheduled refreshes: a small command publisher inside the worker. Every
//! tick it puts newly refreshable consents (active or expiring) on the
//! schedule, then claims the periods that are due and publishes one REFRESH
//! (`trigger: SCHEDULED`) per claimed period onto the commands topic, where
//! the ordinary handler runs it under the full processing contract.
//!
//! Several worker instances run this loop at once. A period is claimed by a
//! compare-and-set on the schedule row's `period_seq` in the store, so only
//! one instance publishes it; its idempotency key (`<consent>:scheduled:<n>`)
//! names the period, so a command the producer sends twice still refreshes
//! once. The claim comes before the publish: a crash between them skips
//! that one period (the next is claimed a period later), never doubles it.
//!
//! Jitter spreads consents over the period so they do not all hit the
//! aggregator (and its rate limits) at the same instant: each consent's
//! offset comes from a hash of its id and period, stable across instances.

use super::config::ScheduledRefreshConfig;
use super::DOMAIN;
use std::time::Duration;
use switchyard_bus::{AvroEncoder, MessageContext, Outbound, Publisher};
use switchyard_canonical::now_ms;
use switchyard_canonical::openbanking::{OpenBankingAction, OpenBankingCommand, RefreshSpec, RefreshTrigger};
use switchyard_store::openbanking::{ConsentStore, DueRefresh};
use tokio_util::sync::CancellationToken;

pub struct RefreshScheduler {
    pub config: ScheduledRefreshConfig,
    pub consents: ConsentStore,
    pub publisher: Publisher,
    /// Encodes commands for `topics.commands`.
    pub encoder: AvroEncoder,
    pub commands_topic: String,
    pub shutdown: CancellationToken,
}

/// `0..jitter_ms`, stable for a consent and period on every instance.
fn jitter(config: &ScheduledRefreshConfig, consent_id: &str, period: i64) -> i64 {
    let spread = i64::from(switchyard_routing::bucket(&format!("{consent_id}:{period}")));
    i64::try_from(config.jitter_ms).unwrap_or(i64::MAX).saturating_mul(spread) / 10_000
}

/// The idempotency key of a consent's scheduled refresh for `period`.
pub fn scheduled_key(consent_id: &str, period: i64) -> String {
    format!("{consent_id}:scheduled:{period}")
}

impl RefreshScheduler {
    pub async fn run(self) {
        let tick = Duration::from_millis(self.config.tick_ms);
        loop {
            if let Err(e) = self.tick().await {
                tracing::warn!(error = %e, "scheduled refresh tick failed; trying again next tick");
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(tick) => {}
            }
        }
    }

    /// One pass: schedule new consents, claim and publish what is due.
    /// Returns how many refreshes this instance published.
    pub async fn tick(&self) -> Result<usize, switchyard_store::StoreError> {
        let period = i64::try_from(self.config.period_ms).unwrap_or(i64::MAX);
        let now = now_ms();
        self.consents.schedule_new(|id| now.saturating_add(period).saturating_add(jitter(&self.config, id, 0))).await?;
        let mut published = 0;
        for due in self.consents.due_refreshes(now, i64::from(self.config.batch)).await? {
            let next = now.saturating_add(period).saturating_add(jitter(&self.config, &due.consent_id, due.period_seq + 1));
            if !self.consents.claim_refresh(&due, next).await? {
                continue;
            }
            if self.publish(&due).await {
                published += 1;
            } else {
                // Not sent: due again next tick, as the next period.
                self.consents.refresh_due_again(&due, now).await?;
            }
        }
        Ok(published)
    }

    async fn publish(&self, due: &DueRefresh) -> bool {
        let key = scheduled_key(&due.consent_id, due.period_seq);
        let command = OpenBankingCommand {
            consent_id: due.consent_id.clone(),
            idempotency_key: key.clone(),
            action: OpenBankingAction::Refresh,
            consent: None,
            completion: None,
            refresh: Some(RefreshSpec { datasets: Vec::new(), trigger: RefreshTrigger::Scheduled }),
            payment: None,
            reason: None,
            tenant_id: None,
            requested_at_ms: now_ms(),
        };
        let payload = match self.encoder.encode(&command) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "a scheduled refresh does not fit the command schema");
                return false;
            }
        };
        let mut ctx = MessageContext::new_root();
        ctx.idempotency_key = Some(key);
        let record = Outbound {
            topic: self.commands_topic.clone(),
            key: Some(due.consent_id.as_bytes().to_vec()),
            payload,
            headers: ctx.outbound_headers(Some(self.encoder.schema_id())),
        };
        let sent = switchyard_bus::publish_until_acked(&self.publisher, &record, &self.shutdown).await;
        if sent {
            tracing::debug!(domain = DOMAIN, consent_id = %due.consent_id, period = due.period_seq, "scheduled refresh published");
        }
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_inside_its_bound_and_spreads_consents() {
        let config = ScheduledRefreshConfig { period_ms: 60_000, jitter_ms: 10_000, tick_ms: 1_000, batch: 100 };
        let offsets: Vec<i64> = (0..200).map(|i| jitter(&config, &format!("con-{i}"), 3)).collect();
        assert!(offsets.iter().all(|o| (0..10_000).contains(o)));
        let distinct: std::collections::BTreeSet<_> = offsets.iter().map(|o| o / 1_000).collect();
        assert!(distinct.len() >= 8, "spread over the jitter window: {distinct:?}");
        assert_eq!(jitter(&config, "con-1", 3), jitter(&config, "con-1", 3), "the same on every instance");
    }
}
