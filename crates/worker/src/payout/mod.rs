//! The payout handler: DESIGN.md's processing contract, step by step.
//!
//! 1. Decode the Avro command; bytes that cannot be decoded go to the DLQ.
//! 2. Claim `(payouts, idempotency_key)` in the store, recording the provider
//!    and the vendor-side key *before* any call. A completed record is
//!    answered from the store; another payload under the same key is a
//!    collision; an unfinished record resumes at the recorded provider once
//!    this delivery holds its attempt lease ([`crate::attempt`]).
//! 3. Call the vendor with the same key every time, each call fenced on the
//!    lease. An ambiguous result is resolved by a status query under that
//!    key, never by a second payout; only a definite refusal of a claim this
//!    delivery created may fail over. Past the vendor's key retention no
//!    create is sent again: the payout is looked up by its reference, or
//!    parked for manual repair.
//! 4. Map the result to an outcome, store it, publish it; only then does the
//!    runtime store the offset.

mod lookup;
pub mod truelayer_config;

use crate::attempt::{self, AttemptLease, Fenced, TakeOver};
use crate::metrics::{Metrics, Stage};
use crate::retry::RetryPolicy;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_adapters::payouts::{PayoutProvider, VendorPayout};
use switchyard_adapters::{AdapterError, CallContext};
use switchyard_bus::{AvroDecoder, AvroEncoder, Failure, Handler, Inbound, MessageContext, Publisher};
use switchyard_canonical::{
    now_ms, ErrorClass, ErrorCode, OutcomeError, PayoutCommand, PayoutOutcome, PayoutRail, PayoutStatus,
};
use switchyard_routing::{DomainMode, Needs, Refusal};
use switchyard_store::{AuditEntry, Claim, Completion, Record, RecordState, Store};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub const DOMAIN: &str = "payouts";

/// A configured vendor and its call slots.
pub struct Vendor {
    pub adapter: PayoutProvider,
    /// One permit per call in flight; see `ProviderConfig::max_concurrency`.
    pub slots: Arc<tokio::sync::Semaphore>,
    /// The catalog's rate limit for this partner, if it has one.
    pub limiter: Option<Arc<crate::ratelimit::TokenBucket>>,
    /// How long the vendor remembers our idempotency keys.
    pub key_retention: Duration,
    /// The adapter's whole-call timeout: a call that passed the retention
    /// check may send its money request up to this much later (Stripe first
    /// registers the beneficiary).
    pub call_timeout: Duration,
}

/// The key may be forgotten by the time a request would reach the vendor:
/// nothing may be sent under it any more, only looked up.
struct KeyForgotten;

impl Vendor {
    /// Whether a key assigned at `since_ms` may have been forgotten by the
    /// time a request sent now reaches the vendor. The margin covers a call
    /// that sends its money request late (up to the call timeout) and a
    /// tenth of the retention for clocks; checked right before every call.
    fn may_have_forgotten(&self, since_ms: i64) -> bool {
        let margin = (self.key_retention / 10).max(self.call_timeout + Duration::from_secs(1));
        let usable = self.key_retention.saturating_sub(margin);
        u128::try_from(now_ms() - since_ms).unwrap_or(0) >= usable.as_millis()
    }
}

pub struct PayoutHandler {
    pub decoder: AvroDecoder,
    pub encoder: AvroEncoder,
    pub publisher: Publisher,
    pub store: Store,
    pub providers: HashMap<String, Vendor>,
    pub router: Arc<crate::policy::LiveRouter>,
    pub circuit_events: CircuitEvents,
    /// Compares a sandbox candidate's answers with live ones, if configured.
    pub shadow: Option<crate::shadow::ShadowCaller>,
    pub outcomes_topic: String,
    pub retry: RetryPolicy,
    /// The attempt lease's length (see [`crate::attempt`]).
    pub lease_ttl: Duration,
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
}

/// Where breaker state changes are announced.
pub struct CircuitEvents {
    pub encoder: AvroEncoder,
    pub topic: String,
}

/// Which provider a delivery went to, and whether an earlier delivery chose it.
#[derive(Debug, Clone, Copy, serde::Serialize)]
struct Route<'a> {
    provider: &'a str,
    resumed: bool,
}

/// The audit detail of one vendor call, as `switchyard trace` reads it.
#[derive(serde::Serialize)]
struct VendorCallDetail<'a> {
    provider: &'a str,
    operation: &'a str,
    result: &'static str,
    http_status: Option<u16>,
    latency_ms: u64,
    request_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vendor_reference: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vendor_status: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ambiguous: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    route: Option<Route<'a>>,
}

/// What the vendor conversation ended with.
enum Execution {
    /// A definite answer: stored as final.
    Final(PayoutOutcome),
    /// The vendor may have executed it and would not say: published as
    /// `pending_unknown`, left unfinished in the store so a redelivery or the
    /// reconciler resolves it under the same key.
    Unresolved(PayoutOutcome),
    Later(Failure),
    /// Another delivery took the attempt lease: it answers for the payout.
    LeaseLost,
}

impl Handler for PayoutHandler {
    async fn handle(&self, message: Arc<Inbound>) -> Result<(), Failure> {
        let command: PayoutCommand = crate::answer::decode_command(&self.decoder, &self.metrics, &message).await?;
        let ctx = message.context();
        let span = tracing::info_span!(
            "payout",
            correlation_id = %ctx.correlation_id,
            payout_id = %command.payout_id,
            idempotency_key = %command.idempotency_key,
        );
        self.process(command, ctx).instrument(span).await
    }
}

use crate::answer::{dead_letter, store_down};

impl PayoutHandler {
    async fn process(&self, command: PayoutCommand, ctx: MessageContext) -> Result<(), Failure> {
        if let Err(reason) = command.validate() {
            let error = OutcomeError { class: ErrorClass::Permanent, code: ErrorCode::InvalidRequest, message: reason };
            return self.publish(&ctx, &PayoutOutcome::rejected(&command, error), &command).await;
        }
        if self.router.get().policy().mode == DomainMode::Off {
            // A payout that already finished is answered as always; anything
            // else is parked unclaimed and runs from scratch when released.
            let existing = self.store.record(DOMAIN, &command.idempotency_key).await.map_err(|e| Failure::Retry {
                reason: format!("store unavailable: {e}"),
                delay: Duration::from_secs(1),
            })?;
            let finished = existing.filter(|r| r.fingerprint == command.fingerprint().0).as_ref().and_then(stored_outcome);
            if let Some(outcome) = finished {
                return self.replay(&ctx, outcome, &command).await;
            }
            let mut held = PayoutOutcome::rejected(&command, OutcomeError {
                class: ErrorClass::Transient,
                code: ErrorCode::DomainOff,
                message: "payouts are switched off; the command is parked and runs when they are back on".into(),
            });
            held.status = PayoutStatus::Held;
            self.publish(&ctx, &held, &command).await?;
            return Err(Failure::Park { reason: "domain off by routing policy".into() });
        }
        let fingerprint = command.fingerprint();
        let rail = rail_name(command.rail);
        let needs = Needs { currency: &command.currency, rail, region: &command.beneficiary.country, tenant: command.tenant_id.as_deref(), risk_tier: command.risk_tier.as_deref() };
        let routed = self.router.get().choose_new(&command.idempotency_key, needs).map(str::to_owned);
        let provider_name = match routed {
            Some(name) => name,
            // Today's policy routes it nowhere, but an earlier delivery may
            // have claimed it (and a vendor paid): that claim decides.
            None => match self.store.record(DOMAIN, &command.idempotency_key).await.map_err(store_down)? {
                Some(existing) => existing.provider.unwrap_or_default(),
                None => {
                    let error = OutcomeError {
                        class: ErrorClass::Permanent,
                        code: ErrorCode::InvalidRequest,
                        message: format!("no configured partner pays out {} on the {rail} rail", command.currency),
                    };
                    return self.publish(&ctx, &PayoutOutcome::rejected(&command, error), &command).await;
                }
            },
        };
        let provider_key = self.providers.get(&provider_name).map(|p| p.adapter.provider_key(&command.idempotency_key));
        let Some(provider_key) = provider_key else {
            return Err(dead_letter(&format!("routing chose unconfigured provider {provider_name}")));
        };
        let claim = Claim {
            domain: DOMAIN.into(),
            idempotency_key: command.idempotency_key.clone(),
            fingerprint: fingerprint.0.clone(),
            subject_id: command.payout_id.clone(),
            provider: provider_name,
            provider_key,
            correlation_id: ctx.correlation_id.0.clone(),
            lease_owner: attempt::owner_token(),
            lease_ttl_ms: i64::try_from(self.lease_ttl.as_millis()).unwrap_or(i64::MAX),
        };
        let claimed = crate::answer::claim(&self.store, &self.metrics, claim, "payout").instrument(switchyard_bus::telemetry::child_span("claim")).await?;
        let record = match claimed {
            Ok(record) => record,
            Err(collision) => return self.publish(&ctx, &PayoutOutcome::rejected(&command, collision), &command).await,
        };
        if record.state == RecordState::Completed {
            return self.replay_record(&ctx, &record, &command).await;
        }
        let (record, lease) = if record.fresh {
            let lease = AttemptLease::created(DOMAIN, &record, self.lease_ttl);
            (record, lease)
        } else {
            // Another delivery claimed it first; it may be calling right now.
            let patience = self.lease_ttl * 2;
            match attempt::take_over(&self.store, DOMAIN, &command.idempotency_key, self.lease_ttl, patience, &self.shutdown).await? {
                TakeOver::Held(record, lease) => (record, lease),
                TakeOver::Finished(record) => return self.replay_record(&ctx, &record, &command).await,
            }
        };
        self.execute_and_answer(&ctx, &command, &record, lease).await
    }

    async fn replay_record(&self, ctx: &MessageContext, record: &Record, command: &PayoutCommand) -> Result<(), Failure> {
        let Some(outcome) = stored_outcome(record) else {
            return Err(dead_letter("completed record holds no readable outcome"));
        };
        self.replay(ctx, outcome, command).await
    }

    /// Answers a duplicate from the store, without a vendor call.
    async fn replay(&self, ctx: &MessageContext, mut outcome: PayoutOutcome, command: &PayoutCommand) -> Result<(), Failure> {
        outcome.replayed = true;
        self.metrics.replayed();
        self.publish(ctx, &outcome, command).await
    }

    async fn execute_and_answer(&self, ctx: &MessageContext, command: &PayoutCommand, record: &Record, mut lease: AttemptLease) -> Result<(), Failure> {
        // The recorded provider and key win over today's routing: this may be
        // a redelivery after a crash, and the vendor must see the same key.
        let (Some(provider_name), Some(provider_key)) = (record.provider.as_deref(), record.provider_key.as_deref()) else {
            return Err(dead_letter("in-progress record without provider"));
        };
        let call_ctx = CallContext {
            correlation_id: ctx.correlation_id.0.clone(),
            traceparent: ctx.traceparent.child().to_string(),
        };
        // A record left in progress by an earlier delivery may already have
        // reached the vendor; calling again under the same key is safe because
        // both vendors answer a repeated key with the stored result.
        // The routing decision as the claim recorded it: chosen now (fresh) or
        // inherited from an earlier delivery (resumed). It rides on the first
        // vendor call's audit row, one row per payout instead of two.
        let mut route = Some(Route { provider: provider_name, resumed: !record.fresh });
        let execution = self.execute(command, record, &call_ctx, &mut route, &mut lease).await;
        if let Some(route) = route {
            // No vendor call this delivery (breaker open, retried later).
            // The same shape the vendor-call row carries under `route`.
            let detail = serde_json::to_string(&route).unwrap_or_default();
            let entry = AuditEntry {
                actor: "payout-worker",
                action: "route",
                subject_id: &command.payout_id,
                correlation_id: &ctx.correlation_id.0,
                detail: &detail,
            };
            self.store.audit_later(entry).await;
        }
        match execution {
            Execution::Final(outcome) => {
                if let Some(shadow) = &self.shadow {
                    shadow.compare(command, &outcome, &call_ctx);
                }
                let completion = Completion {
                    claim: Claim {
                        domain: DOMAIN.into(),
                        idempotency_key: command.idempotency_key.clone(),
                        fingerprint: record.fingerprint.clone(),
                        subject_id: command.payout_id.clone(),
                        provider: outcome.provider.clone().unwrap_or_else(|| provider_name.to_owned()),
                        provider_key: provider_key.to_owned(),
                        correlation_id: record.correlation_id.clone(),
                        lease_owner: String::new(),
                        lease_ttl_ms: 0,
                    },
                    outcome_json: serde_json::to_string(&outcome).map_err(|e| dead_letter(&e.to_string()))?,
                    attempts: i64::from(outcome.attempts),
                };
                let started = Instant::now();
                self.store.complete(completion).instrument(switchyard_bus::telemetry::child_span("store")).await.map_err(store_down)?;
                self.metrics.stage(Stage::Complete, started.elapsed());
                self.publish(ctx, &outcome, command).await
            }
            Execution::Unresolved(outcome) => {
                lease.release(&self.store).await;
                self.publish(ctx, &outcome, command).await
            }
            Execution::Later(failure) => {
                lease.release(&self.store).await;
                Err(failure)
            }
            // The new holder answers; this delivery comes back through the
            // retry topic and then finds its outcome in the store.
            Execution::LeaseLost => {
                tracing::warn!("attempt lease lost to another delivery; calling no one");
                Err(Failure::Retry { reason: "attempt lease taken over by another delivery".into(), delay: self.lease_ttl })
            }
        }
    }

    /// Talks to the vendor until there is an answer or a reason to stop.
    /// Moves to the secondary only as [`Router::failover_target`] allows.
    async fn execute<'r>(
        &self,
        command: &PayoutCommand,
        record: &Record,
        ctx: &CallContext,
        route: &mut Option<Route<'r>>,
        lease: &mut AttemptLease,
    ) -> Execution {
        let (Some(first_name), Some(first_key)) = (record.provider.as_deref(), record.provider_key.as_deref()) else {
            return Execution::Later(dead_letter("in-progress record without provider"));
        };
        let Some(mut vendor) = self.providers.get(first_name) else {
            return Execution::Later(dead_letter(&format!("record names provider {first_name}, which is not configured")));
        };
        let mut provider_key = first_key.to_owned();
        let mut key_since = record.key_since_ms;
        if !record.fresh && vendor.may_have_forgotten(key_since) {
            return self.look_up(command, vendor, key_since, &provider_key, ctx, route, lease).await;
        }
        let mut refusals: Vec<Refusal> = Vec::new();
        let mut ambiguous = false;
        let mut attempts = 0;
        let mut last_error: Option<AdapterError> = None;
        for attempt in 0..self.retry.max_attempts.max(1) {
            let provider = &vendor.adapter;
            let error = if self.breaker_allows(provider.name()) || ambiguous {
                // An ambiguous payout is resolved at its vendor whatever the
                // breaker says: nobody else may execute it.
                attempts += 1;
                if let Err(fenced) = lease.fence(&self.store).await {
                    return fenced_out(fenced);
                }
                let call = self.call(command, vendor, &provider_key, key_since, ctx, ambiguous, route.take());
                match lease.guard(&self.store, call).await {
                    Ok(Ok(Ok(done))) => return Execution::Final(self.outcome(command, provider, done, attempts)),
                    Ok(Ok(Err(e))) => e,
                    Ok(Err(KeyForgotten)) => return self.look_up(command, vendor, key_since, &provider_key, ctx, route, lease).await,
                    Err(fenced) => return fenced_out(fenced),
                }
            } else {
                AdapterError::new(ErrorClass::Transient, ErrorCode::VendorUnavailable, format!("circuit open for {}", provider.name()))
            };
            tracing::info!(provider = provider.name(), error = %error, "vendor call failed");
            self.metrics.failure(error.class.as_str());
            match error.class {
                ErrorClass::Transient => {}
                ErrorClass::Permanent => {
                    return Execution::Final(self.failed(command, provider, PayoutStatus::Failed, &error, attempts));
                }
                ErrorClass::ComplianceHold => {
                    return Execution::Final(self.failed(command, provider, PayoutStatus::Held, &error, attempts));
                }
                ErrorClass::ManualRepair => return Execution::Later(dead_letter(&error.to_string())),
            }
            ambiguous |= error.ambiguous;
            // Only a definite non-acceptance may move a payout; a 409 "key in
            // flight" is the first request still executing (ambiguous).
            refusals.extend(crate::answer::refusal(&error));
            if let Some(moved) = self.fail_over(command, record, provider.name(), &refusals, lease.epoch).await {
                (vendor, provider_key) = moved;
                key_since = now_ms();
                refusals.clear();
                last_error = Some(error);
                continue;
            }
            let retry_after = error.retry_after;
            last_error = Some(error);
            if let Err(later) = self.retry.wait_in_place(attempt, retry_after, || describe(&last_error), &self.shutdown).await {
                return Execution::Later(later);
            }
        }
        if ambiguous {
            let error = AdapterError::new(
                ErrorClass::Transient,
                ErrorCode::Timeout,
                format!("vendor did not confirm the payout: {}", describe(&last_error)),
            );
            return Execution::Unresolved(self.failed(command, &vendor.adapter, PayoutStatus::PendingUnknown, &error, attempts));
        }
        let delay = Duration::from_millis(self.retry.retry_topic_delay_ms);
        Execution::Later(Failure::Retry { reason: describe(&last_error), delay })
    }

    /// One vendor call (a status query once the payout is ambiguous), timed
    /// and fed to the provider's breaker.
    #[allow(clippy::too_many_arguments)]
    async fn call(
        &self,
        command: &PayoutCommand,
        vendor: &Vendor,
        provider_key: &str,
        key_since_ms: i64,
        ctx: &CallContext,
        ambiguous: bool,
        route: Option<Route<'_>>,
    ) -> Result<Result<VendorPayout, AdapterError>, KeyForgotten> {
        let provider = &vendor.adapter;
        let operation = if ambiguous { "status" } else { "create" };
        let waited = Instant::now();
        let Ok(_slot) = vendor.slots.acquire().await else {
            return Ok(Err(AdapterError::new(ErrorClass::Transient, ErrorCode::VendorUnavailable, "vendor slots closed")));
        };
        if let Some(limiter) = &vendor.limiter {
            limiter.acquire().await;
        }
        self.metrics.stage(Stage::VendorSlotWait, waited.elapsed());
        // Waiting for a slot can take long enough for the vendor to forget
        // the key: past that point a create (or a replayed one) pays again.
        if vendor.may_have_forgotten(key_since_ms) {
            return Err(KeyForgotten);
        }
        let started = Instant::now();
        let (result, reply) = switchyard_adapters::http::observe(async {
            if ambiguous {
                provider.status(command, provider_key, ctx).await
            } else {
                provider.create(command, provider_key, ctx).await
            }
        })
        .await;
        let elapsed = started.elapsed();
        let label = match &result {
            Ok(_) => "ok".to_owned(),
            Err(e) => e.http_status.map_or_else(|| e.code.as_str().to_owned(), |s| s.to_string()),
        };
        self.metrics.vendor_call(provider.name(), operation, &label, elapsed);
        self.audit_call(command, provider.name(), operation, &result, &reply, elapsed, ctx, route).await;
        // Only the vendor being unwell counts against it; a decline is health.
        let vendor_failed = matches!(&result, Err(e) if e.counts_against_vendor());
        if let Some(breaker) = self.router.get().breaker(provider.name()) {
            if let Some(state) = breaker.record(vendor_failed) {
                tracing::warn!(provider = provider.name(), ?state, "circuit breaker changed state");
                self.announce(provider.name(), state);
            }
            self.metrics.breaker(provider.name(), breaker.state());
        }
        Ok(result)
    }

    /// One audit entry per vendor call, for `switchyard trace`: group
    /// committed, and a failed write never fails the payout. The first call
    /// of a delivery also carries its routing decision (`route`).
    #[allow(clippy::too_many_arguments)]
    async fn audit_call(
        &self,
        command: &PayoutCommand,
        provider: &str,
        operation: &str,
        result: &Result<VendorPayout, AdapterError>,
        reply: &switchyard_adapters::http::ReplyMeta,
        elapsed: Duration,
        ctx: &CallContext,
        route: Option<Route<'_>>,
    ) {
        let (done, failed) = match result {
            Ok(done) => (Some(done), None),
            Err(e) => (None, Some(e)),
        };
        let detail = VendorCallDetail {
            provider,
            operation,
            result: if done.is_some() { "ok" } else { "failed" },
            http_status: reply.http_status,
            latency_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            request_id: reply.request_id.as_deref(),
            vendor_reference: done.map(|d| d.vendor_reference.as_str()),
            vendor_status: done.map(|d| d.status.as_str()),
            error: failed.map(|e| format!("{}/{}: {}", e.class.as_str(), e.code.as_str(), e.message)),
            ambiguous: failed.map(|e| e.ambiguous),
            route,
        };
        // A struct, not a `json!` map: this runs once per payout.
        let detail = serde_json::to_string(&detail).unwrap_or_default();
        let entry = AuditEntry {
            actor: "payout-worker",
            action: "vendor_call",
            subject_id: &command.payout_id,
            correlation_id: &ctx.correlation_id,
            detail: &detail,
        };
        self.store.audit_later(entry).await;
    }

    /// Publishes a breaker change in the background: announcing it must not
    /// hold up the payout that tripped it.
    fn announce(&self, provider: &str, state: switchyard_routing::BreakerState) {
        use switchyard_canonical::routing::{CircuitState, CircuitStateChanged};
        let event = CircuitStateChanged {
            domain: DOMAIN.into(),
            provider: provider.to_owned(),
            state: match state {
                switchyard_routing::BreakerState::Closed => CircuitState::Closed,
                switchyard_routing::BreakerState::Open => CircuitState::Open,
                switchyard_routing::BreakerState::HalfOpen => CircuitState::HalfOpen,
            },
            changed_at_ms: now_ms(),
        };
        let payload = match self.circuit_events.encoder.encode(&event) {
            Ok(p) => p,
            Err(e) => return tracing::error!(error = %e, "circuit event does not fit its schema"),
        };
        let record = switchyard_bus::Outbound {
            topic: self.circuit_events.topic.clone(),
            key: Some(provider.as_bytes().to_vec()),
            payload,
            headers: MessageContext::new_root().outbound_headers(Some(self.circuit_events.encoder.schema_id())),
        };
        let publisher = self.publisher.clone();
        tokio::spawn(async move {
            if let Err(e) = publisher.publish(&record).await {
                tracing::warn!(error = %e, "circuit event not published");
            }
        });
    }

    fn breaker_allows(&self, provider: &str) -> bool {
        self.router.get().breaker(provider).is_none_or(|b| {
            let allowed = b.allow();
            self.metrics.breaker(provider, b.state());
            allowed
        })
    }

    /// Moves the claim to the failover target if the rule allows and the
    /// store agrees (compare-and-set on the recorded provider).
    async fn fail_over(&self, command: &PayoutCommand, record: &Record, current: &str, refusals: &[Refusal], epoch: i64) -> Option<(&Vendor, String)> {
        let needs = Needs {
            currency: &command.currency,
            rail: rail_name(command.rail),
            region: &command.beneficiary.country,
            tenant: command.tenant_id.as_deref(),
            risk_tier: command.risk_tier.as_deref(),
        };
        let router = self.router.get();
        let target = router.failover_target(current, record.fresh, refusals, needs)?;
        let vendor = self.providers.get(target)?;
        let key = vendor.adapter.provider_key(&command.idempotency_key);
        let moved = crate::answer::ClaimMove {
            domain: DOMAIN,
            actor: "payout-worker",
            idempotency_key: &command.idempotency_key,
            subject_id: &command.payout_id,
            correlation_id: &record.correlation_id,
            from: current,
            to: target,
            to_key: &key,
            epoch,
        };
        crate::answer::move_claim(&self.store, moved).await.then_some((vendor, key))
    }

    fn outcome(&self, command: &PayoutCommand, provider: &PayoutProvider, vendor: VendorPayout, attempts: i32) -> PayoutOutcome {
        PayoutOutcome {
            payout_id: command.payout_id.clone(),
            idempotency_key: command.idempotency_key.clone(),
            status: vendor.status,
            amount_minor: command.amount_minor,
            currency: command.currency.clone(),
            provider: Some(provider.name().to_owned()),
            provider_reference: Some(vendor.vendor_reference),
            error: vendor.error,
            attempts,
            replayed: false,
            completed_at_ms: now_ms(),
        }
    }

    fn failed(&self, command: &PayoutCommand, provider: &PayoutProvider, status: PayoutStatus, error: &AdapterError, attempts: i32) -> PayoutOutcome {
        PayoutOutcome {
            payout_id: command.payout_id.clone(),
            idempotency_key: command.idempotency_key.clone(),
            status,
            amount_minor: command.amount_minor,
            currency: command.currency.clone(),
            provider: Some(provider.name().to_owned()),
            provider_reference: None,
            error: Some(error.to_outcome_error()),
            attempts,
            replayed: false,
            completed_at_ms: now_ms(),
        }
    }

    /// Publishes the outcome and waits for the broker; a broker outage is
    /// retried here so the command is not re-executed for a publish failure.
    async fn publish(&self, ctx: &MessageContext, outcome: &PayoutOutcome, command: &PayoutCommand) -> Result<(), Failure> {
        let sink = crate::answer::OutcomeSink::new(&self.publisher, &self.encoder, &self.outcomes_topic, &self.metrics, &self.shutdown);
        let answering = crate::answer::Answering {
            subject: &command.payout_id,
            idempotency_key: &command.idempotency_key,
            requested_at_ms: command.requested_at_ms,
            status: outcome.status.as_str(),
        };
        sink.publish(ctx, outcome, answering).await?;
        tracing::debug!(status = outcome.status.as_str(), replayed = outcome.replayed, "outcome published");
        Ok(())
    }
}

/// The outcome a completed record holds.
fn stored_outcome(record: &Record) -> Option<PayoutOutcome> {
    if record.state != RecordState::Completed {
        return None;
    }
    record.outcome.as_deref().and_then(|o| serde_json::from_str(o).ok())
}

fn rail_name(rail: PayoutRail) -> &'static str {
    match rail {
        PayoutRail::Standard => "standard",
        PayoutRail::Instant => "instant",
    }
}

fn fenced_out(fenced: Fenced) -> Execution {
    match fenced {
        Fenced::Lost => Execution::LeaseLost,
        Fenced::StoreDown(e) => Execution::Later(Failure::Retry {
            reason: format!("attempt lease not confirmed, store unavailable: {e}"),
            delay: Duration::from_secs(1),
        }),
    }
}

fn describe(error: &Option<AdapterError>) -> String {
    error.as_ref().map_or_else(|| "unknown".to_owned(), ToString::to_string)
}
