//! The check handler: DESIGN.md's processing contract for the domains that
//! ask a vendor a question instead of moving money (KYC, AML screening,
//! fraud scoring). One generic handler over [`CheckDomain`] runs on the
//! shared [`ConsumerRuntime`]; a domain supplies its types and mapping.
//!
//! 1. Decode; undecodable bytes go to the DLQ. Invalid commands get a
//!    rejected outcome without a vendor call.
//! 2. Claim `(domain, idempotency_key)` with the chosen provider before any
//!    call. A completed record is answered from the store (`replayed`);
//!    another payload under the key is a collision; an unfinished record
//!    resumes at the recorded provider with the same key.
//! 3. Call the vendor. Transient failures retry in place, then through the
//!    retry topic; a definite refusal of a fresh claim may fail over to the
//!    secondary (never after the vendor created anything: ambiguous);
//!    permanent ones end in a failed outcome; manual repair dead-letters.
//! 4. Store the outcome, publish it; then the runtime stores the offset.

use crate::metrics::{Metrics, Stage};
use crate::retry::RetryPolicy;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_adapters::{AdapterError, CallContext};
use switchyard_bus::{AvroDecoder, AvroEncoder, Failure, Handler, Inbound, MessageContext, Publisher};
use switchyard_canonical::{ErrorClass, ErrorCode, Fingerprint, OutcomeError};
use switchyard_routing::{Needs, Refusal, Router};
use switchyard_store::{Claim, Completion, Record, RecordState, Store};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Check domains route on nothing but policy: no currency, rail or region.
pub(crate) const NO_NEEDS: Needs<'static> = Needs { currency: "", rail: "", region: "", tenant: None, risk_tier: None };

/// What a check domain plugs into the shared handler.
pub trait CheckDomain: Send + Sync + 'static {
    /// Store domain, metrics label and topic prefix (`kyc`, `aml`, `fraud`).
    const NAME: &'static str;
    const COMMAND_SCHEMA: &'static str;
    const OUTCOME_SCHEMA: &'static str;
    /// The vendors this domain accepts in its config.
    const VENDORS: &'static [crate::check_config::CheckVendorKind];
    type Command: DeserializeOwned + Send + Sync + 'static;
    type Outcome: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// Its HTTP client follows client certificate rotations ([`crate::secrets::OutboundKeys::with_certificate`]).
    type Provider: switchyard_adapters::tls_rotation::WithClient + Send + Sync + 'static;
    /// The adapter's answer, before it becomes an outcome.
    type Verdict: Send;

    /// `api_key` is the provider's key, already checked; other credentials
    /// (`api_secret`) are loaded through `keys` so they rotate too.
    fn build_provider(
        cfg: &crate::check_config::CheckProviderConfig,
        api_key: switchyard_adapters::secret::ApiKey,
        keys: &mut crate::secrets::OutboundKeys,
    ) -> Result<Self::Provider, crate::WorkerError>;
    fn provider_name(p: &Self::Provider) -> &str;
    fn provider_key(p: &Self::Provider, idempotency_key: &str) -> String;
    fn subject(cmd: &Self::Command) -> &str;
    fn idempotency_key(cmd: &Self::Command) -> &str;
    fn requested_at_ms(cmd: &Self::Command) -> i64;
    fn validate(cmd: &Self::Command) -> Result<(), String>;
    fn fingerprint(cmd: &Self::Command) -> Fingerprint;
    fn call(p: &Self::Provider, cmd: &Self::Command, provider_key: &str, ctx: &CallContext) -> impl Future<Output = Result<Self::Verdict, AdapterError>> + Send;
    fn outcome(cmd: &Self::Command, provider: &str, verdict: Self::Verdict, attempts: i32) -> Self::Outcome;
    /// An outcome that carries an error: refused before any call (`provider`
    /// none) or refused by the vendor for good.
    fn error_outcome(cmd: &Self::Command, provider: Option<&str>, error: OutcomeError, attempts: i32) -> Self::Outcome;
    fn mark_replayed(outcome: &mut Self::Outcome);
    /// The status label for metrics (`approved`, `clear`, ...).
    fn status(outcome: &Self::Outcome) -> &'static str;
}

/// A configured vendor and its call slots.
pub struct CheckVendor<P> {
    pub adapter: P,
    /// One permit per call in flight; bounds what a slow vendor ties up.
    pub slots: Arc<tokio::sync::Semaphore>,
}

pub struct CheckHandler<D: CheckDomain> {
    pub decoder: AvroDecoder,
    pub encoder: AvroEncoder,
    pub publisher: Publisher,
    pub store: Store,
    pub providers: HashMap<String, CheckVendor<D::Provider>>,
    /// Primary/secondary and a breaker per provider; fixed for the run.
    pub router: Arc<Router>,
    pub outcomes_topic: String,
    pub retry: RetryPolicy,
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
}

enum Execution<O> {
    Final(O),
    Later(Failure),
}

use crate::answer::{dead_letter, store_down};

impl<D: CheckDomain> Handler for CheckHandler<D> {
    async fn handle(&self, message: Arc<Inbound>) -> Result<(), Failure> {
        let command: D::Command = crate::answer::decode_command(&self.decoder, &self.metrics, &message).await?;
        let ctx = message.context();
        let span = tracing::info_span!(
            "check",
            domain = D::NAME,
            correlation_id = %ctx.correlation_id,
            subject_id = %D::subject(&command),
            idempotency_key = %D::idempotency_key(&command),
        );
        self.process(command, ctx).instrument(span).await
    }
}

impl<D: CheckDomain> CheckHandler<D> {
    async fn process(&self, command: D::Command, ctx: MessageContext) -> Result<(), Failure> {
        if let Err(reason) = D::validate(&command) {
            let error = OutcomeError { class: ErrorClass::Permanent, code: ErrorCode::InvalidRequest, message: reason };
            return self.publish(&ctx, &D::error_outcome(&command, None, error, 0), &command).await;
        }
        let key = D::idempotency_key(&command);
        let fingerprint = D::fingerprint(&command);
        let Some(provider_name) = self.router.choose_new(key, NO_NEEDS).map(str::to_owned) else {
            return Err(dead_letter("routing chose no provider"));
        };
        let Some(vendor) = self.providers.get(&provider_name) else {
            return Err(dead_letter(&format!("routing chose unconfigured provider {provider_name}")));
        };
        let claim = Claim {
            domain: D::NAME.into(),
            idempotency_key: key.to_owned(),
            fingerprint: fingerprint.0.clone(),
            subject_id: D::subject(&command).to_owned(),
            provider_key: D::provider_key(&vendor.adapter, key),
            provider: provider_name,
            correlation_id: ctx.correlation_id.0.clone(),
            // Checks move no money; the lease only fences the one failover
            // a fresh claim may make (see the payout handler for the full use).
            lease_owner: crate::attempt::owner_token(),
            lease_ttl_ms: 15_000,
        };
        let what = format!("{} command", D::NAME);
        let claimed = crate::answer::claim(&self.store, &self.metrics, claim, &what).instrument(switchyard_bus::telemetry::child_span("claim")).await?;
        let record = match claimed {
            Ok(record) => record,
            Err(collision) => return self.publish(&ctx, &D::error_outcome(&command, None, collision, 0), &command).await,
        };
        if record.state == RecordState::Completed {
            let Some(mut outcome) = record.outcome.as_deref().and_then(|o| serde_json::from_str::<D::Outcome>(o).ok()) else {
                return Err(dead_letter("completed record holds no readable outcome"));
            };
            D::mark_replayed(&mut outcome);
            self.metrics.replayed();
            return self.publish(&ctx, &outcome, &command).await;
        }
        let call_ctx = CallContext { correlation_id: ctx.correlation_id.0.clone(), traceparent: ctx.traceparent.child().to_string() };
        match self.execute(&command, &record, &call_ctx).await {
            Execution::Final((outcome, provider, provider_key, attempts)) => {
                let completion = Completion {
                    claim: Claim {
                        domain: D::NAME.into(),
                        idempotency_key: key.to_owned(),
                        fingerprint: record.fingerprint.clone(),
                        subject_id: D::subject(&command).to_owned(),
                        provider,
                        provider_key,
                        correlation_id: record.correlation_id.clone(),
                        lease_owner: String::new(),
                        lease_ttl_ms: 0,
                    },
                    outcome_json: serde_json::to_string(&outcome).map_err(|e| dead_letter(&e.to_string()))?,
                    attempts: i64::from(attempts),
                };
                let started = Instant::now();
                self.store.complete(completion).instrument(switchyard_bus::telemetry::child_span("store")).await.map_err(store_down)?;
                self.metrics.stage(Stage::Complete, started.elapsed());
                self.publish(&ctx, &outcome, &command).await
            }
            Execution::Later(failure) => Err(failure),
        }
    }

    /// Talks to the recorded vendor until there is an answer or a reason to
    /// stop; returns the outcome with the provider and key that produced it
    /// and the number of vendor calls made.
    async fn execute(&self, command: &D::Command, record: &Record, ctx: &CallContext) -> Execution<(D::Outcome, String, String, i32)> {
        let (Some(first), Some(first_key)) = (record.provider.as_deref(), record.provider_key.as_deref()) else {
            return Execution::Later(dead_letter("in-progress record without provider"));
        };
        let Some(mut vendor) = self.providers.get(first) else {
            return Execution::Later(dead_letter(&format!("record names provider {first}, which is not configured")));
        };
        let mut provider_key = first_key.to_owned();
        let mut refusals = Vec::new();
        let mut attempts = 0;
        let mut last: Option<AdapterError> = None;
        for attempt in 0..self.retry.max_attempts.max(1) {
            let name = D::provider_name(&vendor.adapter).to_owned();
            let error = if self.breaker_allows(&name) {
                attempts += 1;
                match self.call(command, vendor, &provider_key, ctx).await {
                    Ok(verdict) => return Execution::Final((D::outcome(command, &name, verdict, attempts), name, provider_key, attempts)),
                    Err(e) => e,
                }
            } else {
                AdapterError::new(ErrorClass::Transient, ErrorCode::VendorUnavailable, format!("circuit open for {name}"))
            };
            tracing::info!(provider = %name, error = %error, "vendor call failed");
            self.metrics.failure(error.class.as_str());
            match error.class {
                ErrorClass::Transient => {}
                ErrorClass::Permanent | ErrorClass::ComplianceHold => {
                    let outcome = D::error_outcome(command, Some(&name), error.to_outcome_error(), attempts);
                    return Execution::Final((outcome, name, provider_key, attempts));
                }
                ErrorClass::ManualRepair => return Execution::Later(dead_letter(&error.to_string())),
            }
            refusals.extend(crate::answer::refusal(&error));
            if let Some(moved) = self.fail_over(command, record, &name, &refusals).await {
                (vendor, provider_key) = moved;
                refusals.clear();
                last = Some(error);
                continue;
            }
            let retry_after = error.retry_after;
            let reason = error.to_string();
            last = Some(error);
            if let Err(later) = self.retry.wait_in_place(attempt, retry_after, || reason, &self.shutdown).await {
                return Execution::Later(later);
            }
        }
        let reason = last.map_or_else(|| "unknown".to_owned(), |e| e.to_string());
        let delay = Duration::from_millis(self.retry.retry_topic_delay_ms);
        Execution::Later(Failure::Retry { reason, delay })
    }

    async fn call(&self, command: &D::Command, vendor: &CheckVendor<D::Provider>, key: &str, ctx: &CallContext) -> Result<D::Verdict, AdapterError> {
        let name = D::provider_name(&vendor.adapter);
        let waited = Instant::now();
        let Ok(_slot) = vendor.slots.acquire().await else {
            return Err(AdapterError::new(ErrorClass::Transient, ErrorCode::VendorUnavailable, "vendor slots closed"));
        };
        self.metrics.stage(Stage::VendorSlotWait, waited.elapsed());
        let started = Instant::now();
        let (result, reply) = switchyard_adapters::http::observe(D::call(&vendor.adapter, command, key, ctx)).await;
        let elapsed = started.elapsed();
        let label = match &result {
            Ok(_) => "ok".to_owned(),
            Err(e) => e.http_status.map_or_else(|| e.code.as_str().to_owned(), |s| s.to_string()),
        };
        self.metrics.vendor_call(name, D::NAME, &label, elapsed);
        self.audit_call(command, name, &label, result.as_ref().err(), &reply, elapsed, ctx).await;
        // Only the vendor being unwell counts against its breaker.
        let unwell = matches!(&result, Err(e) if matches!(e.code, ErrorCode::VendorUnavailable | ErrorCode::Timeout)
            && e.http_status != Some(switchyard_adapters::poll::STILL_PROCESSING));
        if let Some(breaker) = self.router.breaker(name) {
            if let Some(state) = breaker.record(unwell) {
                tracing::warn!(provider = name, ?state, "circuit breaker changed state");
            }
            self.metrics.breaker(name, breaker.state());
        }
        result
    }

    fn breaker_allows(&self, provider: &str) -> bool {
        self.router.breaker(provider).is_none_or(|b| b.allow())
    }

    /// One audit entry per vendor call, in the payout worker's shape, so
    /// `switchyard trace` and `switchyard scorecard` see check vendors too.
    /// Queued (group commit): a failed write never fails the check.
    #[allow(clippy::too_many_arguments)]
    async fn audit_call(
        &self,
        command: &D::Command,
        provider: &str,
        label: &str,
        failed: Option<&AdapterError>,
        reply: &switchyard_adapters::http::ReplyMeta,
        elapsed: Duration,
        ctx: &CallContext,
    ) {
        let detail = serde_json::json!({
            "provider": provider,
            "operation": D::NAME,
            "result": label,
            "http_status": reply.http_status,
            "latency_ms": u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            "request_id": reply.request_id,
            "error": failed.map(|e| format!("{}/{}: {}", e.class.as_str(), e.code.as_str(), e.message)),
            "ambiguous": failed.map(|e| e.ambiguous),
        })
        .to_string();
        // The actor names the domain (`kyc-worker`, ...), as the payout and
        // card workers' entries do.
        let actor = format!("{}-worker", D::NAME);
        let entry = switchyard_store::AuditEntry {
            actor: &actor,
            action: "vendor_call",
            subject_id: D::subject(command),
            correlation_id: &ctx.correlation_id,
            detail: &detail,
        };
        self.store.audit_later(entry).await;
    }

    /// Moves a fresh claim to the secondary after definite refusals only
    /// (compare-and-set in the store, audited).
    async fn fail_over(&self, command: &D::Command, record: &Record, current: &str, refusals: &[Refusal]) -> Option<(&CheckVendor<D::Provider>, String)> {
        let target = self.router.failover_target(current, record.fresh, refusals, NO_NEEDS)?;
        let vendor = self.providers.get(target)?;
        let key = D::provider_key(&vendor.adapter, D::idempotency_key(command));
        let moved = crate::answer::ClaimMove {
            domain: D::NAME,
            actor: "check-worker",
            idempotency_key: D::idempotency_key(command),
            subject_id: D::subject(command),
            correlation_id: &record.correlation_id,
            from: current,
            to: target,
            to_key: &key,
            epoch: record.lease_epoch,
        };
        crate::answer::move_claim(&self.store, moved).await.then_some((vendor, key))
    }

    /// Publishes and waits for the broker; a broker outage is retried here so
    /// the vendor is not asked again for a publish failure.
    async fn publish(&self, ctx: &MessageContext, outcome: &D::Outcome, command: &D::Command) -> Result<(), Failure> {
        let sink = crate::answer::OutcomeSink::new(&self.publisher, &self.encoder, &self.outcomes_topic, &self.metrics, &self.shutdown);
        let answering = crate::answer::Answering {
            subject: D::subject(command),
            idempotency_key: D::idempotency_key(command),
            requested_at_ms: D::requested_at_ms(command),
            status: D::status(outcome),
        };
        sink.publish(ctx, outcome, answering).await
    }
}
