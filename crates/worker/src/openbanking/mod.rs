//! The open banking handler: DESIGN.md's processing contract for consents,
//! on the shared consumer runtime (the same claim, lease, retry and DLQ
//! machinery as payouts and cards; nothing here loops over the bus).
//!
//! 1. Decode; undecodable bytes go to the DLQ. A command invalid in itself
//!    gets a REJECTED outcome without a provider call.
//! 2. Claim `(openbanking, idempotency_key)` before any call: a new consent
//!    is routed by policy; every later command goes to the provider that
//!    holds the consent. A completed claim is answered from the store
//!    (`replayed`); another payload under the key is a collision.
//! 3. Judge the command against the stored consent
//!    ([`switchyard_canonical::openbanking_consent::decide`]): refused, or
//!    answered without the provider (a refresh of a revoked consent calls
//!    no one), or one provider conversation.
//! 4. Call the provider fenced on the attempt lease, transient failures
//!    retried in place, then through the retry topic.
//! 5. Map to our vocabulary, store the consent (its token sealed by the
//!    vault), publish its event, complete the claim, publish the outcome.
//!    A refresh publishes each data page and only then stores the page's
//!    cursor ([`refresh`]), so a redelivery resumes after the last
//!    published page.
//!
//! Tokens: the provider's access token exists in clear only in memory,
//! between the vault and the adapter. Outcomes, events, data, headers,
//! log lines and the DLQ carry the consent id and the provider's item id,
//! never a token; COMPLETE_CONSENT's public token is single use and is
//! never echoed.

pub mod config;
mod consent;
pub mod health;
pub mod payment;
pub mod truelayer_config;
pub mod schedule;
pub mod callbacks;
pub mod payment_callbacks;
mod publish;
mod refresh;
mod renew;
mod repair;
pub mod run;

use crate::attempt::{self, AttemptLease, Fenced, TakeOver};
use crate::metrics::Metrics;
use crate::retry::RetryPolicy;
use config::OpenBankingTopics;
use health::InstitutionResult;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_adapters::openbanking::vault::TokenVault;
use switchyard_adapters::openbanking::{ObFailure, OpenBankingProvider};
use switchyard_adapters::CallContext;
use switchyard_bus::{AvroDecoder, AvroEncoder, Failure, Handler, Inbound, MessageContext, Publisher};
use switchyard_canonical::openbanking::{OpenBankingAction, OpenBankingCommand};
use switchyard_canonical::openbanking_consent::ConsentTimings;
use switchyard_canonical::openbanking_outcome::OpenBankingOutcome;
use switchyard_canonical::{ErrorClass, ErrorCode, OutcomeError};
use switchyard_routing::{Needs, Router};
use switchyard_store::openbanking::{ConsentRow, ConsentStore};
use switchyard_store::{Claim, Record, RecordState, Store};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::answer::{dead_letter, store_down};

/// The store domain, metrics label and topic prefix.
pub const DOMAIN: &str = "openbanking";
pub const OB_COMMAND_SCHEMA: &str = include_str!("../../../../schemas/openbanking/OpenBankingCommand.v1.avsc");
pub const OB_OUTCOME_SCHEMA: &str = include_str!("../../../../schemas/openbanking/OpenBankingOutcome.v1.avsc");
pub const OB_EVENT_SCHEMA: &str = include_str!("../../../../schemas/openbanking/OpenBankingEvent.v1.avsc");
pub const OB_DATA_SCHEMA: &str = include_str!("../../../../schemas/openbanking/OpenBankingData.v1.avsc");

/// A configured aggregator and its call slots.
pub struct ObVendor {
    pub adapter: OpenBankingProvider,
    pub slots: Arc<tokio::sync::Semaphore>,
}

pub struct OpenBankingHandler {
    pub decoder: AvroDecoder,
    pub outcome_encoder: AvroEncoder,
    pub event_encoder: AvroEncoder,
    pub data_encoder: AvroEncoder,
    pub publisher: Publisher,
    pub store: Store,
    pub consents: ConsentStore,
    pub vault: TokenVault,
    pub providers: HashMap<String, ObVendor>,
    pub router: Arc<Router>,
    pub topics: OpenBankingTopics,
    pub retry: RetryPolicy,
    pub lease_ttl: Duration,
    pub timings: ConsentTimings,
    /// Breakers per institution, consulted before every provider call.
    pub health: Arc<health::InstitutionHealth>,
    /// Payments initiated and their statuses ([`payment`]).
    pub payments: switchyard_store::openbanking_payments::PaymentStore,
    pub payment_polling: payment::PaymentPolling,
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
}

/// Why a delivery stops without an outcome.
pub(crate) enum Stop {
    /// Retry topic, DLQ or a redelivery: the runtime's business.
    Later(Failure),
    /// Another delivery took the attempt lease: it answers for the command.
    LeaseLost,
}

impl From<switchyard_store::StoreError> for Stop {
    fn from(e: switchyard_store::StoreError) -> Self {
        Stop::Later(store_down(e))
    }
}

pub(crate) fn broken(reason: impl std::fmt::Display) -> Stop {
    Stop::Later(dead_letter(&reason.to_string()))
}

/// What one command's delivery knows while it runs.
pub(crate) struct Turn<'a> {
    pub ctx: &'a MessageContext,
    pub command: &'a OpenBankingCommand,
    pub lease: AttemptLease,
    pub attempts: i32,
    /// The consent's institution (stored, or the CREATE_CONSENT's): whose breaker guards the calls.
    pub institution: Option<String>,
}

impl Handler for OpenBankingHandler {
    async fn handle(&self, message: Arc<Inbound>) -> Result<(), Failure> {
        let command: OpenBankingCommand = crate::answer::decode_command(&self.decoder, &self.metrics, &message).await?;
        let ctx = message.context();
        let span = tracing::info_span!(
            "openbanking",
            correlation_id = %ctx.correlation_id,
            consent_id = %command.consent_id,
            idempotency_key = %command.idempotency_key,
            action = command.action.as_str(),
        );
        self.process(command, ctx).instrument(span).await
    }
}

impl OpenBankingHandler {
    async fn process(&self, command: OpenBankingCommand, ctx: MessageContext) -> Result<(), Failure> {
        if let Err(reason) = command.validate() {
            let error = OutcomeError { class: ErrorClass::Permanent, code: ErrorCode::InvalidRequest, message: reason };
            let outcome = OpenBankingOutcome::rejected(&command, None, error, switchyard_canonical::now_ms());
            return self.publish_outcome(&ctx, &outcome, command.requested_at_ms).await;
        }
        let row = self.consents.load(&command.consent_id).await.map_err(store_down)?;
        let provider = self.route(&command, row.as_ref())?;
        let claim = Claim {
            domain: DOMAIN.into(),
            idempotency_key: command.idempotency_key.clone(),
            fingerprint: command.fingerprint().0,
            subject_id: command.consent_id.clone(),
            provider,
            // Plaid takes no idempotency key; the consent id names the work.
            provider_key: command.consent_id.clone(),
            correlation_id: ctx.correlation_id.0.clone(),
            lease_owner: attempt::owner_token(),
            lease_ttl_ms: i64::try_from(self.lease_ttl.as_millis()).unwrap_or(i64::MAX),
        };
        let record = match crate::answer::claim(&self.store, &self.metrics, claim, "open banking command").await? {
            Ok(record) => record,
            Err(collision) => {
                let outcome = OpenBankingOutcome::rejected(&command, None, collision, switchyard_canonical::now_ms());
                return self.publish_outcome(&ctx, &outcome, command.requested_at_ms).await;
            }
        };
        if record.state == RecordState::Completed {
            return self.replay(&ctx, &command, &record).await;
        }
        let (record, lease) = if record.fresh {
            let lease = AttemptLease::created(DOMAIN, &record, self.lease_ttl);
            (record, lease)
        } else {
            match attempt::take_over(&self.store, DOMAIN, &command.idempotency_key, self.lease_ttl, self.lease_ttl * 2, &self.shutdown).await? {
                TakeOver::Held(record, lease) => (record, lease),
                TakeOver::Finished(record) => return self.replay(&ctx, &command, &record).await,
            }
        };
        let institution = row.as_ref().and_then(|r| r.institution_id.clone()).or_else(|| command.consent.as_ref().and_then(|c| c.institution_id.clone()));
        let mut turn = Turn { ctx: &ctx, command: &command, lease, attempts: 0, institution };
        let outcome = match self.run(&mut turn).await {
            Ok(outcome) => outcome,
            Err(Stop::Later(failure)) => {
                turn.lease.release(&self.store).await;
                return Err(failure);
            }
            Err(Stop::LeaseLost) => {
                tracing::warn!("attempt lease lost to another delivery; calling no one");
                return Err(Failure::Retry { reason: "attempt lease taken over by another delivery".into(), delay: self.lease_ttl });
            }
        };
        self.finish(&ctx, &command, &record, &outcome).await?;
        // A parked consent is answered (the product acts on it) and its
        // command goes to the DLQ for ops, the claim completed so nothing
        // calls the provider again ([`repair`]).
        match repair::parked(&outcome) {
            Some(reason) => Err(dead_letter(reason)),
            None => Ok(()),
        }
    }

    /// The provider of a command: the consent's, or the policy's for a new one.
    fn route(&self, command: &OpenBankingCommand, row: Option<&ConsentRow>) -> Result<String, Failure> {
        if let Some(row) = row {
            return Ok(row.provider.clone());
        }
        if command.action != OpenBankingAction::CreateConsent {
            // Refused once claimed: we hold no such consent.
            return Ok(String::new());
        }
        let region = command.consent.as_ref().map(|c| c.country.as_str()).unwrap_or("");
        let needs = Needs { currency: "", rail: "", region, tenant: command.tenant_id.as_deref(), risk_tier: None };
        let Some(name) = self.router.choose_new(&command.idempotency_key, needs) else {
            return Err(dead_letter("routing chose no open banking provider"));
        };
        if !self.providers.contains_key(name) {
            return Err(dead_letter(&format!("routing chose unconfigured provider {name}")));
        }
        Ok(name.to_owned())
    }

    /// Answers a duplicate from its completed claim, without a provider call.
    async fn replay(&self, ctx: &MessageContext, command: &OpenBankingCommand, record: &Record) -> Result<(), Failure> {
        let Some(mut outcome) = record.outcome.as_deref().and_then(|o| serde_json::from_str::<OpenBankingOutcome>(o).ok()) else {
            return Err(dead_letter("completed record holds no readable open banking outcome"));
        };
        outcome.replayed = true;
        self.metrics.replayed();
        self.publish_outcome(ctx, &outcome, command.requested_at_ms).await
    }

    /// Completes the claim with the outcome, then answers.
    async fn finish(&self, ctx: &MessageContext, command: &OpenBankingCommand, record: &Record, outcome: &OpenBankingOutcome) -> Result<(), Failure> {
        let completion = switchyard_store::Completion {
            claim: Claim {
                domain: DOMAIN.into(),
                idempotency_key: command.idempotency_key.clone(),
                fingerprint: record.fingerprint.clone(),
                subject_id: command.consent_id.clone(),
                provider: outcome.provider.clone().or_else(|| record.provider.clone()).unwrap_or_default(),
                provider_key: record.provider_key.clone().unwrap_or_default(),
                correlation_id: record.correlation_id.clone(),
                lease_owner: String::new(),
                lease_ttl_ms: 0,
            },
            outcome_json: serde_json::to_string(outcome).map_err(|e| dead_letter(&e.to_string()))?,
            attempts: i64::from(outcome.attempts),
        };
        self.store.complete(completion).await.map_err(store_down)?;
        self.publish_outcome(ctx, outcome, command.requested_at_ms).await
    }

    /// One provider call, fenced on the lease and kept alive by it, with
    /// transient failures retried in place; past the in-place budget the
    /// command goes to the retry topic (a redelivery resumes where the
    /// stored consent says). Anything else is returned for mapping.
    pub(crate) async fn call<'s, T, F, Fut>(&'s self, turn: &mut Turn<'_>, provider: &str, operation: &str, f: F) -> Result<Result<T, ObFailure>, Stop>
    where
        F: Fn(&'s OpenBankingProvider, CallContext) -> Fut,
        Fut: std::future::Future<Output = Result<T, ObFailure>>,
    {
        let Some(vendor) = self.providers.get(provider) else {
            return Err(broken(format!("the consent's provider {provider:?} is not configured")));
        };
        let institution = turn.institution.clone().filter(|_| health::guarded(operation));
        let reaches = health::reaches_institution(operation);
        let mut attempt = 0u32;
        loop {
            match turn.lease.fence(&self.store).await {
                Ok(()) => {}
                Err(Fenced::Lost) => return Err(Stop::LeaseLost),
                Err(Fenced::StoreDown(e)) => return Err(Stop::from(e)),
            }
            if let Some(ins) = institution.as_deref() {
                if let Err(retry_after) = self.health.admit(provider, ins, reaches) {
                    tracing::info!(operation, institution = ins, "institution breaker open: answered without a provider call");
                    self.metrics.vendor_call(provider, operation, "institution_open", Duration::ZERO);
                    return Ok(Err(ObFailure::InstitutionUnavailable { code: "INSTITUTION_DEGRADED".into(), retry_after }));
                }
            }
            // A call admitted past the breaker that ends without an answer
            // (lease lost, worker stopping) must still release a probe.
            let abandoned = || {
                if let Some(ins) = institution.as_deref().filter(|_| reaches) {
                    self.health.abandoned(provider, ins);
                }
            };
            let call_ctx = CallContext { correlation_id: turn.ctx.correlation_id.0.clone(), traceparent: turn.ctx.traceparent.child().to_string() };
            let started = Instant::now();
            let result = {
                let Ok(_slot) = vendor.slots.acquire().await else {
                    abandoned();
                    return Err(Stop::Later(Failure::Retry { reason: "worker stopping".into(), delay: Duration::ZERO }));
                };
                match turn.lease.guard(&self.store, f(&vendor.adapter, call_ctx)).await {
                    Ok(result) => result,
                    Err(_) => {
                        abandoned();
                        return Err(Stop::LeaseLost);
                    }
                }
            };
            turn.attempts += 1;
            if let Some(ins) = institution.as_deref().filter(|_| reaches) {
                let judged = match &result {
                    Ok(_) => InstitutionResult::Ok,
                    Err(ObFailure::InstitutionUnavailable { .. }) => InstitutionResult::Error,
                    Err(ObFailure::Call(e)) if e.code == ErrorCode::Timeout => InstitutionResult::Timeout,
                    Err(_) => InstitutionResult::Other,
                };
                self.health.record(provider, ins, judged);
            }
            let label = match &result {
                Ok(_) => "ok",
                Err(ObFailure::Call(e)) => e.class.as_str(),
                Err(_) => "mapped",
            };
            self.metrics.vendor_call(provider, operation, label, started.elapsed());
            self.audit_call(turn, provider, operation, label, &result, started.elapsed()).await;
            match result {
                Err(ObFailure::Call(e)) if e.class == ErrorClass::Transient => {
                    tracing::info!(operation, error = %e, attempt, "transient provider failure");
                    if attempt + 1 >= self.retry.max_attempts {
                        let delay = e.retry_after.unwrap_or(Duration::from_millis(self.retry.retry_topic_delay_ms));
                        return Err(Stop::Later(Failure::Retry { reason: format!("{operation}: {e}"), delay }));
                    }
                    let reason = || format!("{operation}: {e}");
                    self.retry.wait_in_place(attempt, e.retry_after, reason, &self.shutdown).await.map_err(Stop::Later)?;
                    attempt += 1;
                }
                other => return Ok(other),
            }
        }
    }

    /// One audit entry per provider call, in the payout worker's shape, so
    /// `switchyard trace` shows a consent's calls beside its records.
    /// Queued (group commit): a failed write never fails the command. The
    /// error is our classification and the adapter's message, as an outcome
    /// carries it: never a token.
    async fn audit_call<T>(&self, turn: &Turn<'_>, provider: &str, operation: &str, label: &str, result: &Result<T, ObFailure>, elapsed: Duration) {
        let error = match result {
            Ok(_) => None,
            Err(ObFailure::Call(e)) => Some(format!("{}/{}: {}", e.class.as_str(), e.code.as_str(), e.message)),
            Err(mapped) => Some(mapped.to_string()),
        };
        let detail = serde_json::json!({
            "provider": provider,
            "operation": operation,
            "result": label,
            "latency_ms": u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            "error": error,
        })
        .to_string();
        let entry = switchyard_store::AuditEntry {
            actor: "openbanking-worker",
            action: "vendor_call",
            subject_id: &turn.command.consent_id,
            correlation_id: &turn.ctx.correlation_id.0,
            detail: &detail,
        };
        self.store.audit_later(entry).await;
    }
}
