//! INITIATE_PAYMENT and the statuses that follow it for days.
//!
//! **Creation** (under the command's claim and attempt lease, like every
//! provider call): the payment id is looked up first. Recorded under this
//! command's idempotency key: a redelivery after the create was stored,
//! answered from the record without a call. Recorded under another key:
//! refused (one payment id, one payment). Otherwise the provider creates it
//! under *our* idempotency key, so a redelivery that finds no record (a
//! crash between the provider's answer and our insert) gets the same
//! payment back from the provider instead of a second one. The answer is
//! AUTH_REQUIRED with the hand-off (TrueLayer's hosted payment page) and
//! the payment at AUTHORIZATION_REQUIRED.
//!
//! **Statuses** are polled: no command carries them (a REFRESH of a
//! payment-only consent is refused for want of data sets, and a repeated
//! INITIATE_PAYMENT is answered from its claim), so a loop in the worker,
//! like the refresh scheduler, asks the provider for every open payment
//! whose poll is due. Each answer goes through the canonical
//! [`PaymentProgress`]: only a status it *enters* becomes an event
//! (PAYMENT_UPDATED on `openbanking.events.v1`), a repeated or late one
//! changes nothing, a skipped one is filled in. The events are stored with
//! the change (compare-and-set on the row's version: of two instances that
//! polled the same answer one stores it) and cleared once the broker
//! acknowledged them, so a crash in between republishes them under the same
//! event ids (`<consent>:<payment>:<n>`), never loses one and never mints a
//! second id for a status. TrueLayer's payment webhooks feed the same
//! [`OpenBankingHandler::apply_payment_status`] (`payment_callbacks.rs`), so
//! polling is the fallback.

use super::consent::Held;
use super::{broken, OpenBankingHandler, Stop, Turn};
use std::time::Duration;
use switchyard_adapters::openbanking::truelayer::{TrueLayerAdapter, TrueLayerSettings};
use switchyard_adapters::openbanking::{PaymentRequest, PaymentState};
use switchyard_adapters::CallContext;
use switchyard_bus::MessageContext;
use switchyard_canonical::openbanking_event::OpenBankingEvent;
use switchyard_canonical::openbanking_outcome::{Handoff, HandoffKind, OpenBankingKind, OpenBankingOutcome, OpenBankingRefusal, PaymentResult};
use switchyard_canonical::openbanking_payment::{PaymentObserved, PaymentProgress, PaymentStatus};
use switchyard_canonical::{now_ms, CorrelationId, ErrorClass, ErrorCode, OutcomeError, TraceParent};
use switchyard_store::openbanking_payments::PaymentRow;

/// How long the poller leaves a row's stored events to the delivery that
/// stored them and is publishing them.
const PUBLISHING_GRACE_MS: i64 = 5_000;

/// How often an open payment is asked about, and how many per tick.
#[derive(Debug, Clone, Copy)]
pub struct PaymentPolling {
    pub interval: Duration,
    pub batch: i64,
    pub max_interval: Duration,
    pub give_up_after: Duration,
}

impl From<&super::truelayer_config::PaymentPollingConfig> for PaymentPolling {
    fn from(c: &super::truelayer_config::PaymentPollingConfig) -> Self {
        Self {
            interval: Duration::from_millis(c.interval_ms),
            batch: i64::from(c.batch),
            max_interval: Duration::from_millis(c.max_interval_ms),
            give_up_after: Duration::from_millis(c.give_up_after_ms),
        }
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl PaymentPolling {
    /// When to ask next about a payment whose status last moved at
    /// `changed_at_ms` (the provider's clock; one ahead of ours counts as
    /// just now): a tenth of the quiet time, between `interval` and
    /// `max_interval`, so a payment waiting days for settlement costs a
    /// query an hour, not one every ten seconds.
    pub fn next_poll_at(&self, now_ms: i64, changed_at_ms: i64) -> i64 {
        let quiet = now_ms.saturating_sub(changed_at_ms).max(0);
        let wait = (quiet / 10).clamp(ms(self.interval), ms(self.max_interval).max(ms(self.interval)));
        now_ms.saturating_add(wait)
    }

    /// Whether a payment quiet since `changed_at_ms` is past polling.
    pub fn given_up(&self, now_ms: i64, changed_at_ms: i64) -> bool {
        now_ms.saturating_sub(changed_at_ms) >= ms(self.give_up_after)
    }
}

/// `next_poll_at_ms` of a payment no longer polled: never due.
const NEVER: i64 = i64::MAX;

/// The TrueLayer adapter of `providers[i]` (validated: its section is there).
pub(super) fn truelayer_adapter(
    i: usize,
    p: &super::config::ObProviderConfig,
    client_secret: switchyard_adapters::secret::ApiKey,
    keys: &mut crate::secrets::OutboundKeys,
) -> Result<TrueLayerAdapter, crate::WorkerError> {
    let Some(t) = p.truelayer.as_ref() else { return Err(crate::WorkerError::Config(format!("providers[{i}].truelayer is required for kind truelayer"))) };
    let settings = TrueLayerSettings {
        name: p.name.clone(),
        auth_url: t.auth_url.clone(),
        api_url: p.base_url.clone(),
        hpp_url: t.hpp_url.clone(),
        client_id: p.client_id.clone(),
        client_secret,
        // Read per request; the pair rotates from its files (crate::secrets).
        signing_key: keys.signing_key(
            &p.name,
            &format!("providers[{i}].truelayer.signing_key"),
            &t.signing_key_id,
            &t.signing_key,
            switchyard_adapters::signing_key::truelayer_usable,
        )?,
        redirect_uri: t.redirect_uri.clone(),
        merchant_accounts: t.merchant_accounts.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        resource_token_ttl: Duration::from_millis(t.resource_token_ttl_ms),
        auth_link_ttl: Duration::from_millis(t.auth_link_ttl_ms),
        consent_ttl: Duration::from_millis(t.consent_ttl_ms),
    };
    TrueLayerAdapter::new(settings, p.transport()).map_err(|e| crate::WorkerError::Config(format!("providers[{i}].truelayer.signing_key: {}", e.message)))
}

impl OpenBankingHandler {
    pub(super) async fn initiate_payment(&self, turn: &mut Turn<'_>, held: Held) -> Result<OpenBankingOutcome, Stop> {
        let command = turn.command;
        let Some(spec) = command.payment.as_ref() else { return Err(broken("INITIATE_PAYMENT without its payment passed validation")) };
        if let Some(row) = self.payments.load(&spec.payment_id).await? {
            if row.create_key != command.idempotency_key {
                let error = OutcomeError {
                    class: ErrorClass::Permanent,
                    code: ErrorCode::InvalidRequest,
                    message: format!("payment {} was initiated by another command", spec.payment_id),
                };
                return Ok(OpenBankingOutcome::rejected(command, Some(OpenBankingRefusal::IllegalTransition), error, now_ms()));
            }
            // Created and recorded by an earlier delivery of this command.
            let answer =
                serde_json::from_str::<OpenBankingOutcome>(&row.created_answer).map_err(|e| broken(format!("stored payment answer is unreadable: {e}")))?;
            self.flush_payment_events(turn.ctx, row).await?;
            return Ok(answer);
        }
        let provider = held.row.provider.clone();
        let request = PaymentRequest {
            payment_id: &spec.payment_id,
            idempotency_key: &command.idempotency_key,
            amount_minor: spec.amount_minor,
            currency: &spec.currency,
            beneficiary_ref: &spec.beneficiary_ref,
            reference: &spec.reference,
            payer_ref: &command.consent_id,
        };
        let created = self.call(turn, &provider, "create_payment", |p, ctx| {
            let request = request.clone();
            async move { p.create_payment(&ctx, &request).await }
        });
        let created = match created.await? {
            Ok(created) => created,
            Err(failure) => return self.failed(turn, Some(held), failure).await,
        };
        let progress = PaymentProgress::created(created.status, created.at_ms);
        let kind = if created.status == PaymentStatus::AuthorizationRequired { OpenBankingKind::AuthRequired } else { OpenBankingKind::PaymentUpdated };
        let mut outcome = self.outcome(turn, kind, Some(&held));
        outcome.handoff = created.handoff.map(|h| Handoff { kind: HandoffKind::AuthorizationUrl, value: h.value, expires_at_ms: h.expires_at_ms });
        outcome.payment = Some(PaymentResult {
            payment_id: spec.payment_id.clone(),
            status: created.status,
            amount_minor: spec.amount_minor,
            currency: spec.currency.clone(),
            provider_reference: Some(created.provider_payment_id.clone()),
            failure: created.failure,
        });
        let mut row = PaymentRow {
            payment_id: spec.payment_id.clone(),
            consent_id: command.consent_id.clone(),
            provider,
            provider_payment_id: created.provider_payment_id,
            create_key: command.idempotency_key.clone(),
            amount_minor: spec.amount_minor,
            currency: spec.currency.clone(),
            status: created.status.as_str().to_owned(),
            progress: serde_json::to_string(&progress).map_err(broken)?,
            terminal: created.status.terminal(),
            seq: 0,
            pending_events: None,
            created_answer: serde_json::to_string(&outcome).map_err(broken)?,
            correlation_id: turn.ctx.correlation_id.0.clone(),
            version: 1,
            next_poll_at_ms: self.publishing_poll_at(),
        };
        let events = vec![payment_event(&mut row, None, created.status, &progress, created.failure, created.at_ms)];
        row.pending_events = Some(serde_json::to_string(&events).map_err(broken)?);
        if !self.payments.insert(&row).await? {
            return Err(Stop::Later(switchyard_bus::Failure::Retry {
                reason: "the payment was recorded by another delivery".into(),
                delay: Duration::from_millis(self.retry.retry_topic_delay_ms),
            }));
        }
        self.flush_payment_events(turn.ctx, row).await?;
        Ok(outcome)
    }

    fn poll_interval_ms(&self) -> i64 {
        ms(self.payment_polling.interval)
    }

    /// The next poll of a row just stored with events to publish: not
    /// before [`PUBLISHING_GRACE_MS`], so the poller does not publish them
    /// beside the delivery doing so (seen with 100 ms polling: a second
    /// AUTHORIZATION_REQUIRED); a writer that died is flushed after it.
    fn publishing_poll_at(&self) -> i64 {
        now_ms().saturating_add(self.poll_interval_ms().max(PUBLISHING_GRACE_MS))
    }

    /// Publishes the row's stored events, then clears them (compare-and-set:
    /// whoever changed the row since also holds and publishes them).
    async fn flush_payment_events(&self, ctx: &MessageContext, mut row: PaymentRow) -> Result<(), Stop> {
        let Some(pending) = row.pending_events.take() else { return Ok(()) };
        let events: Vec<OpenBankingEvent> = serde_json::from_str(&pending).map_err(|e| broken(format!("stored payment events are unreadable: {e}")))?;
        for event in &events {
            self.publish_event(ctx, event).await.map_err(Stop::Later)?;
        }
        let expected = row.version;
        row.version += 1;
        row.next_poll_at_ms = now_ms().saturating_add(self.poll_interval_ms());
        self.payments.update(&row, expected).await?;
        Ok(())
    }

    /// Applies a provider's word on a payment: through the payment machine,
    /// each status it enters becomes one stored, then published, event.
    /// False: the row moved since it was read (the poller leaves it to the
    /// other writer; a webhook reads the row again and retries).
    pub(crate) async fn apply_payment_status(&self, mut row: PaymentRow, state: &PaymentState) -> Result<bool, Stop> {
        let mut progress: PaymentProgress = serde_json::from_str(&row.progress).map_err(|e| broken(format!("stored payment progress is unreadable: {e}")))?;
        let from = progress.status;
        let expected = row.version;
        row.version += 1;
        match progress.observe(state.status, state.at_ms) {
            PaymentObserved::Entered(statuses) => {
                let mut prev = Some(from);
                let events: Vec<OpenBankingEvent> = statuses
                    .iter()
                    .map(|to| {
                        let failure = (*to == PaymentStatus::Failed).then_some(state.failure).flatten();
                        let event = payment_event(&mut row, prev, *to, &progress, failure, state.at_ms);
                        prev = Some(*to);
                        event
                    })
                    .collect();
                tracing::info!(payment_id = %row.payment_id, from = from.as_str(), to = progress.status.as_str(), failure = state.failure_code.as_deref().unwrap_or(""), "payment status entered");
                row.status = progress.status.as_str().to_owned();
                row.terminal = progress.status.terminal();
                row.progress = serde_json::to_string(&progress).map_err(broken)?;
                row.pending_events = Some(serde_json::to_string(&events).map_err(broken)?);
                row.next_poll_at_ms = self.publishing_poll_at();
            }
            PaymentObserved::Unchanged => row.next_poll_at_ms = self.payment_polling.next_poll_at(now_ms(), progress.changed_at_ms),
            PaymentObserved::Contradiction { from, to } => {
                row.next_poll_at_ms = self.payment_polling.next_poll_at(now_ms(), progress.changed_at_ms);
                // Money moved after we said it failed, or a settled payment
                // failing: no event; ops and the reconciler must look.
                tracing::error!(payment_id = %row.payment_id, from = from.as_str(), to = to.as_str(), "provider contradicts the payment's recorded status; nothing published");
                self.metrics.vendor_call(&row.provider, "payment_contradiction", "contradiction", Duration::ZERO);
            }
        }
        if !self.payments.update(&row, expected).await? {
            // Another instance stored this (or a later) answer and publishes it.
            return Ok(false);
        }
        let mut ctx = MessageContext::new_root();
        if !row.correlation_id.is_empty() {
            ctx.correlation_id = CorrelationId(row.correlation_id.clone());
        }
        self.flush_payment_events(&ctx, row).await?;
        Ok(true)
    }

    /// One round over the payments whose poll is due.
    async fn poll_due_payments(&self) -> Result<usize, Stop> {
        let due = self.payments.due(now_ms(), self.payment_polling.batch).await?;
        let n = due.len();
        for row in due {
            let Some(vendor) = self.providers.get(&row.provider) else {
                // Another deployment's provider (a shared database): asked
                // about again later, so it never holds up the others.
                tracing::debug!(payment_id = %row.payment_id, provider = %row.provider, "the payment's provider is not configured here; not polled");
                self.postpone(&row).await?;
                continue;
            };
            if row.pending_events.is_some() {
                // Events stored by a round or delivery that stopped before
                // publishing them: published first (same ids), polled next round.
                let mut ctx = MessageContext::new_root();
                ctx.correlation_id = CorrelationId(row.correlation_id.clone());
                self.flush_payment_events(&ctx, row).await?;
                continue;
            }
            if self.give_up_if_quiet(&row).await? {
                continue;
            }
            let ctx = CallContext { correlation_id: row.correlation_id.clone(), traceparent: TraceParent::new_root().to_string() };
            let started = std::time::Instant::now();
            let state = {
                let Ok(_slot) = vendor.slots.acquire().await else { return Ok(n) };
                vendor.adapter.payment_status(&ctx, &row.provider_payment_id).await
            };
            match state {
                Ok(state) => {
                    self.metrics.vendor_call(&row.provider, "payment_status", "ok", started.elapsed());
                    self.apply_payment_status(row, &state).await?;
                }
                Err(e) => {
                    // Asked again at the next due time; the status waits at the provider.
                    self.metrics.vendor_call(&row.provider, "payment_status", "failed", started.elapsed());
                    tracing::info!(payment_id = %row.payment_id, error = %e, "payment status not read; asked again later");
                    self.postpone(&row).await?;
                }
            }
        }
        Ok(n)
    }

    /// The payment is asked about again one interval from now.
    async fn postpone(&self, row: &PaymentRow) -> Result<(), Stop> {
        let mut later = row.clone();
        later.version += 1;
        later.next_poll_at_ms = now_ms().saturating_add(self.poll_interval_ms());
        self.payments.update(&later, row.version).await?;
        Ok(())
    }

    /// Stops polling a payment whose status has not moved for
    /// `give_up_after`: nothing is published (we do not know how it ends),
    /// ops are told (error log, audit row, a manual-repair failure), and a
    /// webhook that moves it later is applied and resumes polling.
    async fn give_up_if_quiet(&self, row: &PaymentRow) -> Result<bool, Stop> {
        let progress: PaymentProgress = serde_json::from_str(&row.progress).map_err(|e| broken(format!("stored payment progress is unreadable: {e}")))?;
        let now = now_ms();
        if !self.payment_polling.given_up(now, progress.changed_at_ms) {
            return Ok(false);
        }
        let mut parked = row.clone();
        parked.version += 1;
        parked.next_poll_at_ms = NEVER;
        if !self.payments.update(&parked, row.version).await? {
            // Another instance moved it first; its answer stands.
            return Ok(true);
        }
        let quiet_s = now.saturating_sub(progress.changed_at_ms) / 1000;
        tracing::error!(payment_id = %row.payment_id, provider = %row.provider, status = %row.status, quiet_s, "payment status has not moved for too long; no longer polled, look at it at the provider");
        // A person must look: counted as manual repair, which
        // SwitchyardOpenBankingManualRepair watches (not as a vendor call:
        // the vendor's error ratio is not ours to raise).
        self.metrics.failure(ErrorClass::ManualRepair.as_str());
        let detail = serde_json::json!({
            "payment_id": row.payment_id,
            "provider": row.provider,
            "provider_payment_id": row.provider_payment_id,
            "status": row.status,
            "quiet_s": quiet_s,
        })
        .to_string();
        let entry = switchyard_store::AuditEntry {
            actor: "openbanking-worker",
            action: "payment_polling_given_up",
            subject_id: &row.consent_id,
            correlation_id: &row.correlation_id,
            detail: &detail,
        };
        self.store.audit_later(entry).await;
        Ok(true)
    }

    /// Polls open payments until shutdown (several instances may run it:
    /// the row's compare-and-set keeps each status to one event).
    pub async fn poll_payments(self: std::sync::Arc<Self>) {
        loop {
            match self.poll_due_payments().await {
                Ok(_) => {}
                Err(Stop::Later(f)) => tracing::warn!(failure = ?f, "payment polling round stopped; trying again next tick"),
                Err(Stop::LeaseLost) => {}
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.payment_polling.interval / 2) => {}
            }
        }
    }
}

/// The PAYMENT_UPDATED event of entering `to`, numbered by the row's `seq`.
fn payment_event(
    row: &mut PaymentRow,
    from: Option<PaymentStatus>,
    to: PaymentStatus,
    progress: &PaymentProgress,
    failure: Option<switchyard_canonical::openbanking_outcome::PaymentFailureReason>,
    at_ms: i64,
) -> OpenBankingEvent {
    row.seq += 1;
    OpenBankingEvent {
        event_id: format!("{}:{}:{}", row.consent_id, row.payment_id, row.seq),
        consent_id: row.consent_id.clone(),
        kind: OpenBankingKind::PaymentUpdated,
        provider: row.provider.clone(),
        from_consent_state: None,
        to_consent_state: None,
        consent_expires_at_ms: None,
        payment_id: Some(row.payment_id.clone()),
        from_payment_status: from,
        to_payment_status: Some(to),
        payment_failure: failure,
        returned_after_execution: to == PaymentStatus::Failed && progress.executed,
        amount_minor: Some(row.amount_minor),
        currency: Some(row.currency.clone()),
        occurred_at_ms: at_ms.max(0),
        published_at_ms: now_ms(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quiet_payment_waits_a_tenth_of_its_quiet_time_within_bounds_then_is_given_up() {
        let hour = 3_600_000;
        let polling = PaymentPolling {
            interval: Duration::from_secs(10),
            batch: 1,
            max_interval: Duration::from_millis(hour as u64),
            give_up_after: Duration::from_millis(14 * 24 * hour as u64),
        };
        let now = 100 * 24 * hour;
        // (quiet for, expected wait), written from the rule, not the code.
        for (quiet, wait) in [(0, 10_000), (50_000, 10_000), (600_000, 60_000), (5 * hour, hour / 2), (3 * 24 * hour, hour)] {
            assert_eq!(polling.next_poll_at(now, now - quiet) - now, wait, "quiet {quiet} ms");
        }
        assert_eq!(polling.next_poll_at(now, now + 60_000) - now, 10_000, "a provider clock ahead of ours is just now");
        assert!(!polling.given_up(now, now - 14 * 24 * hour + 1));
        assert!(polling.given_up(now, now - 14 * 24 * hour));
    }
}
