//! Steps 3 to 5 for a delivery that holds the claim's attempt lease: judge
//! the command against the card, reserve card ids, call the processor,
//! store the change, complete the claim and answer.

use super::apply::{self, disputes_of, lifecycle_of, reservation, Change};
use super::{CardHandler, CardVendor, DOMAIN};
use crate::attempt::{AttemptLease, Fenced};
use crate::metrics::Stage;
use std::time::{Duration, Instant};
use switchyard_adapters::cards::{CardAnswer, CardCall, CardRef};
use switchyard_adapters::{AdapterError, CallContext};
use switchyard_bus::{Failure, MessageContext};
use switchyard_canonical::card::{CardAction, CardCommand, CardLifecycle, CardRefusal, CardState};
use switchyard_canonical::card_outcome::{CardOutcome, CardOutcomeStatus};
use switchyard_canonical::{now_ms, ErrorClass, ErrorCode, OutcomeError};
use switchyard_routing::Refusal;
use switchyard_store::cards::{CardRow, CardWrite, Commit, Reserved};
use switchyard_store::{AuditEntry, Claim, Completion, Record};
use tracing::Instrument;

use crate::answer::dead_letter;

/// Why a delivery stops without an outcome.
pub(super) enum Stop {
    /// Retry topic, DLQ or a redelivery: the runtime's business.
    Later(Failure),
    /// Another delivery took the attempt lease: it answers for the command.
    LeaseLost,
}

impl From<switchyard_store::StoreError> for Stop {
    fn from(e: switchyard_store::StoreError) -> Self {
        Stop::Later(crate::answer::store_down(e))
    }
}

fn broken(reason: impl std::fmt::Display) -> Stop {
    Stop::Later(dead_letter(&reason.to_string()))
}

/// What the processor conversation ended with: its answer or a final
/// refusal, and the calls made.
struct Called {
    result: Result<CardAnswer, AdapterError>,
    attempts: i32,
}

impl CardHandler {
    pub(super) async fn execute(&self, ctx: &MessageContext, command: &CardCommand, record: &Record, mut lease: AttemptLease) -> Result<(), Failure> {
        let outcome = match self.run(ctx, command, record, &mut lease).await {
            Ok(outcome) => outcome,
            Err(Stop::Later(failure)) => {
                lease.release(&self.store).await;
                return Err(failure);
            }
            // The new holder answers; this delivery comes back through the
            // retry topic and then finds the outcome in the store.
            Err(Stop::LeaseLost) => {
                tracing::warn!("attempt lease lost to another delivery; calling no one");
                return Err(Failure::Retry { reason: "attempt lease taken over by another delivery".into(), delay: self.lease_ttl });
            }
        };
        self.finish(ctx, command, record, &outcome).await
    }

    /// Completes the claim with the outcome, sends the card events, answers.
    async fn finish(&self, ctx: &MessageContext, command: &CardCommand, record: &Record, outcome: &CardOutcome) -> Result<(), Failure> {
        let completion = Completion {
            claim: Claim {
                domain: DOMAIN.into(),
                idempotency_key: command.idempotency_key.clone(),
                fingerprint: record.fingerprint.clone(),
                subject_id: command.card_id.clone(),
                provider: outcome.provider.clone().or_else(|| record.provider.clone()).unwrap_or_default(),
                provider_key: record.provider_key.clone().unwrap_or_default(),
                correlation_id: record.correlation_id.clone(),
                lease_owner: String::new(),
                lease_ttl_ms: 0,
            },
            outcome_json: serde_json::to_string(outcome).map_err(|e| dead_letter(&e.to_string()))?,
            attempts: i64::from(outcome.attempts),
        };
        let started = Instant::now();
        self.store.complete(completion).instrument(switchyard_bus::telemetry::child_span("store")).await.map_err(crate::answer::store_down)?;
        self.metrics.stage(Stage::Complete, started.elapsed());
        self.flush_events(ctx, outcome).await?;
        self.publish_outcome(ctx, outcome, command.requested_at_ms).await
    }

    async fn run(&self, ctx: &MessageContext, command: &CardCommand, record: &Record, lease: &mut AttemptLease) -> Result<CardOutcome, Stop> {
        let card = self.cards.load(&command.card_id).await?;
        // The card moved under this key already: a crash came between the
        // card's write and the claim's completion. Answer, change nothing.
        if let Some(applied) = self.cards.applied(&command.card_id, &command.idempotency_key).await? {
            return serde_json::from_str(&applied.outcome).map_err(|e| broken(format!("applied card outcome is unreadable: {e}")));
        }
        let lifecycle = card.as_ref().map(lifecycle_of).transpose().map_err(broken)?;
        let resumed_issue = command.action == CardAction::Issue
            && card.as_ref().is_some_and(|c| c.issue_key == command.idempotency_key && c.processor_reference.is_none());
        if !resumed_issue {
            if let Err(refused) = CardLifecycle::admit(lifecycle.as_ref(), command.action) {
                tracing::info!(refusal = refused.code.as_str(), "command refused by the card's lifecycle");
                let mut outcome = self.refused(command, refused.code, refused.message);
                outcome.state = lifecycle.as_ref().map(|l| l.state);
                outcome.provider = card.as_ref().map(|c| c.processor.clone());
                return Ok(outcome);
            }
        }
        match (command.action, card) {
            (CardAction::Issue, card) => self.issue(ctx, command, record, lease, card).await,
            (_, Some(card)) => self.change(ctx, command, record, lease, card).await,
            (_, None) => Err(broken("the lifecycle admitted a command for a card we do not hold")),
        }
    }

    /// An ISSUE claimed while its card id was taken (so for no processor)
    /// whose card id is free again (that issuance was refused): routed now,
    /// and recorded on the claim before any call.
    async fn route_late(&self, command: &CardCommand, epoch: i64) -> Result<String, Stop> {
        let Some(target) = self.router.choose_new(&command.idempotency_key, crate::check::NO_NEEDS) else {
            return Err(broken("routing chose no card processor"));
        };
        let Some(vendor) = self.providers.get(target) else {
            return Err(broken(format!("routing chose unconfigured processor {target}")));
        };
        let key = vendor.adapter.provider_key(&command.idempotency_key);
        if self.store.reroute(DOMAIN, &command.idempotency_key, "", target, &key, epoch).await? {
            Ok(target.to_owned())
        } else {
            Err(Stop::Later(Failure::Retry { reason: "the claim changed while routing it".into(), delay: Duration::from_millis(self.retry.retry_topic_delay_ms) }))
        }
    }

    fn refused(&self, command: &CardCommand, code: CardRefusal, message: String) -> CardOutcome {
        let error = OutcomeError { class: ErrorClass::Permanent, code: ErrorCode::InvalidRequest, message };
        CardOutcome::rejected(command, Some(code), error)
    }

    async fn issue(&self, ctx: &MessageContext, command: &CardCommand, record: &Record, lease: &mut AttemptLease, card: Option<CardRow>) -> Result<CardOutcome, Stop> {
        let Some(spec) = &command.issue else { return Err(broken("ISSUE without its issue part passed validation")) };
        let first = match record.provider.clone().filter(|p| !p.is_empty()) {
            Some(first) => first,
            None => self.route_late(command, lease.epoch).await?,
        };
        let reserved = match card {
            Some(card) => card,
            None => {
                let row = reservation(&command.card_id, &first, spec.form, None, &command.idempotency_key, now_ms()).map_err(broken)?;
                match self.cards.reserve(&row).await? {
                    Reserved::Created => row,
                    Reserved::Exists(c) if c.issue_key == command.idempotency_key && c.processor_reference.is_none() => c,
                    Reserved::Exists(_) => {
                        return Ok(self.refused(command, CardRefusal::CardExists, "the card id was issued by another command meanwhile".into()));
                    }
                }
            }
        };
        let call = CardCall::Issue { card_id: &command.card_id, spec };
        let (called, processor) = self.converse(ctx, command, record, lease, &call, &first, true).await?;
        match called.result {
            Ok(answer) => {
                let mut reserved = reserved;
                // After a failover the card lives at the secondary.
                reserved.processor = processor;
                let change = apply::success(command, &reserved, None, answer, called.attempts, &ctx.correlation_id.0, now_ms()).map_err(broken)?;
                self.commit(ctx, command, change).await
            }
            Err(error) => {
                // A definite refusal: the card id is free for a corrected ISSUE.
                self.cards.release(&command.card_id, &command.idempotency_key).await?;
                Ok(self.failed(command, &processor, None, &error, called.attempts))
            }
        }
    }

    async fn change(&self, ctx: &MessageContext, command: &CardCommand, record: &Record, lease: &mut AttemptLease, card: CardRow) -> Result<CardOutcome, Stop> {
        let Some(reference) = card.processor_reference.clone() else {
            // ORDERED: its ISSUE has not finished (in flight or unresolved).
            return Err(Stop::Later(Failure::Retry { reason: "the card is still being issued".into(), delay: Duration::from_millis(self.retry.retry_topic_delay_ms) }));
        };
        let lifecycle = lifecycle_of(&card).map_err(broken)?;
        let card_ref = CardRef { card_id: &command.card_id, processor_reference: &reference };
        let mut replacement = None;
        let dispute_reference;
        let call = match command.action {
            CardAction::Activate => CardCall::Activate { card: card_ref },
            CardAction::Suspend => CardCall::Suspend { card: card_ref },
            CardAction::Reinstate => CardCall::Reinstate { card: card_ref },
            CardAction::Terminate => CardCall::Terminate { card: card_ref },
            CardAction::SetPin => {
                let Some(pin) = &command.pin else { return Err(broken("SET_PIN without its pin part passed validation")) };
                CardCall::SetPin { card: card_ref, pin }
            }
            CardAction::ProvisionToken => {
                let Some(spec) = &command.provision else { return Err(broken("PROVISION_TOKEN without its provision part passed validation")) };
                CardCall::ProvisionToken { card: card_ref, spec }
            }
            CardAction::OpenDispute => {
                let Some(spec) = &command.dispute else { return Err(broken("OPEN_DISPUTE without its dispute part passed validation")) };
                CardCall::OpenDispute { card: card_ref, spec }
            }
            CardAction::SubmitDisputeEvidence => {
                let Some(spec) = &command.evidence else { return Err(broken("evidence missing after validation")) };
                let known = disputes_of(&card).map_err(broken)?.into_iter().find(|d| d.dispute_id == spec.dispute_id);
                let Some(known) = known else {
                    let error = OutcomeError { class: ErrorClass::Permanent, code: ErrorCode::InvalidRequest, message: format!("no dispute {} on this card", spec.dispute_id) };
                    let mut outcome = CardOutcome::rejected(command, None, error);
                    outcome.state = Some(lifecycle.state);
                    outcome.provider = Some(card.processor.clone());
                    return Ok(outcome);
                };
                dispute_reference = known.reference;
                CardCall::SubmitDisputeEvidence { card: card_ref, dispute_reference: &dispute_reference, spec }
            }
            CardAction::Replace => {
                let Some(spec) = &command.replace else { return Err(broken("REPLACE without its replace part passed validation")) };
                let row = reservation(&spec.new_card_id, &card.processor, lifecycle.form, Some(card.card_id.clone()), &command.idempotency_key, now_ms())
                    .map_err(broken)?;
                replacement = Some(match self.cards.reserve(&row).await? {
                    Reserved::Created => row,
                    Reserved::Exists(c) if c.issue_key == command.idempotency_key && c.processor_reference.is_none() => c,
                    Reserved::Exists(_) => {
                        let mut outcome = self.refused(command, CardRefusal::CardExists, format!("the new card id {} already exists", spec.new_card_id));
                        outcome.state = Some(lifecycle.state);
                        outcome.provider = Some(card.processor.clone());
                        return Ok(outcome);
                    }
                });
                CardCall::Replace { card: card_ref, new_card_id: &spec.new_card_id, reason: spec.reason, shipping: spec.shipping.as_ref() }
            }
            CardAction::Issue => return Err(broken("ISSUE routed as a change")),
        };
        // The card's processor, never another: no failover after issuance.
        let (called, processor) = self.converse(ctx, command, record, lease, &call, &card.processor, false).await?;
        match called.result {
            Ok(answer) => {
                let change = apply::success(command, &card, replacement.as_ref(), answer, called.attempts, &ctx.correlation_id.0, now_ms()).map_err(broken)?;
                self.commit(ctx, command, change).await
            }
            Err(error) => {
                if let Some(spec) = &command.replace {
                    self.cards.release(&spec.new_card_id, &command.idempotency_key).await?;
                }
                Ok(self.failed(command, &processor, Some((&card, lifecycle.state)), &error, called.attempts))
            }
        }
    }

    fn failed(&self, command: &CardCommand, processor: &str, card: Option<(&CardRow, CardState)>, error: &AdapterError, attempts: i32) -> CardOutcome {
        let mut outcome = CardOutcome::new(command, CardOutcomeStatus::Failed);
        outcome.provider = Some(processor.to_owned());
        if let Some((row, state)) = card {
            outcome.state = Some(state);
            outcome.processor_reference = row.processor_reference.clone();
            outcome.last_four = row.last_four.clone();
        }
        outcome.error = Some(error.to_outcome_error());
        outcome.attempts = attempts;
        outcome
    }

    /// Stores the change: the card rows compared and set, the key applied,
    /// the events queued, in one transaction.
    async fn commit(&self, ctx: &MessageContext, command: &CardCommand, change: Change) -> Result<CardOutcome, Stop> {
        let outcome_json = serde_json::to_string(&change.outcome).map_err(broken)?;
        let detail = serde_json::json!({
            "action": command.action.as_str(),
            "processor": change.outcome.provider,
            "state": change.outcome.state.map(CardState::as_str),
            "events": change.events.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(),
        })
        .to_string();
        let write = CardWrite {
            card_id: &command.card_id,
            idempotency_key: &command.idempotency_key,
            outcome: &outcome_json,
            rows: change.rows.iter().map(|(row, read_at)| (row, Some(*read_at))).collect(),
            events: change.events.clone(),
            audit: vec![("card_changed", detail)],
            correlation_id: &ctx.correlation_id.0,
        };
        match self.cards.commit(&write).await? {
            Commit::Applied => Ok(change.outcome),
            Commit::Duplicate => match self.cards.applied(&command.card_id, &command.idempotency_key).await? {
                Some(applied) => serde_json::from_str(&applied.outcome).map_err(|e| broken(format!("applied card outcome is unreadable: {e}"))),
                None => Err(broken("card change reported applied but not found")),
            },
            Commit::Conflict => {
                tracing::warn!("the card changed while its processor was called; trying again from the new version");
                Err(Stop::Later(Failure::Retry { reason: "card changed concurrently".into(), delay: Duration::from_millis(self.retry.retry_topic_delay_ms) }))
            }
        }
    }

    /// Talks to the processor until it answers or refuses for good, fenced
    /// on the lease. Moves a fresh ISSUE to the secondary only after
    /// definite refusals (`failover`); anything ambiguous stays put.
    #[allow(clippy::too_many_arguments)]
    async fn converse(
        &self,
        ctx: &MessageContext,
        command: &CardCommand,
        record: &Record,
        lease: &mut AttemptLease,
        call: &CardCall<'_>,
        first: &str,
        failover: bool,
    ) -> Result<(Called, String), Stop> {
        let Some(mut vendor) = self.providers.get(first) else {
            return Err(broken(format!("card is held by processor {first:?}, which is not configured")));
        };
        // Deterministic per processor: a resumed claim sends the same key.
        let mut provider_key = vendor.adapter.provider_key(&command.idempotency_key);
        let call_ctx = CallContext { correlation_id: ctx.correlation_id.0.clone(), traceparent: ctx.traceparent.child().to_string() };
        if !record.fresh && super::lookup::creates(call) && vendor.may_have_forgotten(record.key_since_ms) {
            let found = self.look_up(command, vendor, record, lease, call, &call_ctx).await?;
            return Ok((Called { result: Ok(found), attempts: 1 }, first.to_owned()));
        }
        let mut refusals: Vec<Refusal> = Vec::new();
        let mut ambiguous = false;
        // A claim an earlier delivery left unfinished may have reached the
        // processor (it may have ended pending_unknown): asked about first.
        let mut ask_first = !record.fresh;
        let mut attempts = 0;
        let mut last: Option<AdapterError> = None;
        for attempt in 0..self.retry.max_attempts.max(1) {
            let name = vendor.adapter.name().to_owned();
            // A command the processor may have acted on is settled there,
            // whatever its breaker says: asked by the same key or token
            // first, then sent again under that key, never elsewhere.
            let error = if ambiguous || self.router.breaker(&name).is_none_or(|b| b.allow()) {
                attempts += 1;
                lease.fence(&self.store).await.map_err(fenced)?;
                let ask = std::mem::take(&mut ask_first) || ambiguous;
                let sent = async {
                    if ask {
                        if let Some(done) = self.settle(command, vendor, call, &provider_key, &call_ctx).await? {
                            return Ok(done);
                        }
                    }
                    self.call(command, vendor, call, &provider_key, &call_ctx).await
                };
                match lease.guard(&self.store, sent).await {
                    Ok(Ok(answer)) => return Ok((Called { result: Ok(answer), attempts }, name)),
                    Ok(Err(e)) => e,
                    Err(f) => return Err(fenced(f)),
                }
            } else {
                AdapterError::new(ErrorClass::Transient, ErrorCode::VendorUnavailable, format!("circuit open for {name}"))
            };
            // Class, code and status only: processor messages may name tokens.
            tracing::info!(provider = %name, class = error.class.as_str(), code = error.code.as_str(), http_status = ?error.http_status, ambiguous = error.ambiguous, "processor call failed");
            self.metrics.failure(error.class.as_str());
            match error.class {
                ErrorClass::Transient => {}
                ErrorClass::Permanent | ErrorClass::ComplianceHold => return Ok((Called { result: Err(error), attempts }, name)),
                ErrorClass::ManualRepair => return Err(Stop::Later(dead_letter(&error.to_string()))),
            }
            ambiguous |= error.ambiguous;
            if failover {
                refusals.extend(crate::answer::refusal(&error));
                if let Some(moved) = self.fail_over(command, record, &name, &refusals, lease.epoch).await {
                    (vendor, provider_key) = moved;
                    refusals.clear();
                    last = Some(error);
                    continue;
                }
            }
            let retry_after = error.retry_after;
            let reason = format!("{} {}", error.class.as_str(), error.code.as_str());
            last = Some(error);
            self.retry.wait_in_place(attempt, retry_after, || reason, &self.shutdown).await.map_err(Stop::Later)?;
        }
        let reason = last.map_or_else(|| "unknown".to_owned(), |e| format!("{} {} (http {:?})", e.class.as_str(), e.code.as_str(), e.http_status));
        if ambiguous {
            return Err(self.pending_unknown(command, vendor, attempts, reason, &call_ctx.correlation_id).await);
        }
        Err(Stop::Later(Failure::Retry { reason, delay: Duration::from_millis(self.retry.retry_topic_delay_ms) }))
    }

    /// One processor call: a slot, timing, metrics, its breaker and an
    /// audit entry (no tokens in it).
    async fn call(&self, command: &CardCommand, vendor: &CardVendor, call: &CardCall<'_>, provider_key: &str, ctx: &CallContext) -> Result<CardAnswer, AdapterError> {
        let name = vendor.adapter.name();
        let waited = Instant::now();
        let Ok(_slot) = vendor.slots.acquire().await else {
            return Err(AdapterError::new(ErrorClass::Transient, ErrorCode::VendorUnavailable, "processor slots closed"));
        };
        self.metrics.stage(Stage::VendorSlotWait, waited.elapsed());
        let started = Instant::now();
        let (result, reply) = switchyard_adapters::http::observe(vendor.adapter.call(call, provider_key, ctx)).await;
        let elapsed = started.elapsed();
        let label = match &result {
            Ok(_) => "ok".to_owned(),
            Err(e) => e.http_status.map_or_else(|| e.code.as_str().to_owned(), |s| s.to_string()),
        };
        self.metrics.vendor_call(name, command.action.as_str(), &label, elapsed);
        let unwell = matches!(&result, Err(e) if e.counts_against_vendor());
        if let Some(breaker) = self.router.breaker(name) {
            if let Some(state) = breaker.record(unwell) {
                tracing::warn!(provider = name, ?state, "circuit breaker changed state");
            }
            self.metrics.breaker(name, breaker.state());
        }
        let detail = serde_json::json!({
            "provider": name,
            "operation": command.action.as_str(),
            "result": label,
            "http_status": reply.http_status,
            "latency_ms": u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            "request_id": reply.request_id,
            "error": result.as_ref().err().map(|e| format!("{}/{}", e.class.as_str(), e.code.as_str())),
        })
        .to_string();
        let entry = AuditEntry { actor: "card-worker", action: "vendor_call", subject_id: &command.card_id, correlation_id: &ctx.correlation_id, detail: &detail };
        self.store.audit_later(entry).await;
        result
    }

    /// Moves a fresh ISSUE claim to the failover target if the rule allows
    /// and the store agrees (compare-and-set on provider and lease epoch).
    async fn fail_over(&self, command: &CardCommand, record: &Record, current: &str, refusals: &[Refusal], epoch: i64) -> Option<(&CardVendor, String)> {
        let target = self.router.failover_target(current, record.fresh, refusals, crate::check::NO_NEEDS)?;
        let vendor = self.providers.get(target)?;
        let key = vendor.adapter.provider_key(&command.idempotency_key);
        let moved = crate::answer::ClaimMove {
            domain: DOMAIN,
            actor: "card-worker",
            idempotency_key: &command.idempotency_key,
            subject_id: &command.card_id,
            correlation_id: &record.correlation_id,
            from: current,
            to: target,
            to_key: &key,
            epoch,
        };
        crate::answer::move_claim(&self.store, moved).await.then_some((vendor, key))
    }
}

pub(super) fn fenced(f: Fenced) -> Stop {
    match f {
        Fenced::Lost => Stop::LeaseLost,
        Fenced::StoreDown(e) => Stop::Later(Failure::Retry { reason: format!("attempt lease not confirmed, store unavailable: {e}"), delay: Duration::from_secs(1) }),
    }
}
