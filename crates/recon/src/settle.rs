//! Settling payouts stuck in `pending_unknown`: look the payout up at the
//! provider that holds the claim, by the reference it was sent with. A
//! definite answer becomes an outcome, published on the outcome topic (core
//! banking learns it the usual way), stored as a fact, and written to the
//! worker's idempotency record, so a command re-sent later is answered from
//! it instead of executing again.
//!
//! The settler never sends a create, not even a replay under the same key:
//! days after the claim the vendor may have forgotten the key, and a replay
//! would then pay a second time. A payout the vendor does not show stays
//! stuck (and is reported) until it does, or a person decides.

use crate::rules::SettleRequest;
use std::collections::HashMap;
use switchyard_adapters::payouts::PayoutProvider;
use switchyard_adapters::CallContext;
use switchyard_bus::{AvroEncoder, MessageContext, Outbound, Publisher};
use switchyard_canonical::{CorrelationId, PayoutOutcome, PayoutStatus};
use switchyard_store::recon::{OutcomeFact, ReconStore};
use switchyard_store::{Claim, Completion, Store};

/// Where settled outcomes are published (`payouts.outcomes.v1`).
#[derive(Clone)]
pub struct OutcomeSink {
    pub publisher: Publisher,
    pub encoder: AvroEncoder,
    pub topic: String,
}

pub struct Settler {
    pub providers: HashMap<String, PayoutProvider>,
    pub store: ReconStore,
    pub outcomes: Option<OutcomeSink>,
    /// The payout worker's store: a settled payout completes its record.
    pub records: Option<Store>,
    /// Vendor calls in flight at once.
    pub concurrency: usize,
}

impl Settler {
    /// Asks about each request; returns the ones a vendor settled, by the
    /// caller's index. Failures are logged and asked again later.
    pub async fn settle_all(&self, asks: Vec<(usize, SettleRequest)>) -> Vec<(usize, OutcomeFact)> {
        let mut settled = Vec::new();
        for chunk in asks.chunks(self.concurrency.max(1)) {
            let answers = futures::future::join_all(chunk.iter().map(|(i, ask)| async move {
                match self.settle(ask).await {
                    Ok(fact) => fact.map(|f| (*i, f)),
                    Err(reason) => {
                        tracing::warn!(subject = %ask.subject_id, provider = %ask.provider, %reason, "could not settle pending_unknown payout");
                        None
                    }
                }
            }))
            .await;
            settled.extend(answers.into_iter().flatten());
        }
        settled
    }

    async fn settle(&self, ask: &SettleRequest) -> Result<Option<OutcomeFact>, String> {
        let Some(provider) = self.providers.get(&ask.provider) else {
            return Err(format!("no adapter configured for {}", ask.provider));
        };
        let json = self
            .store
            .command(&ask.subject_id, &ask.idempotency_key)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the command was not seen on the command topic")?;
        // The beneficiary's data is sealed (or erased): the vendor is asked by
        // payout id, and the record completed with the fingerprint as sent.
        let crate::commands::KeptCommand { command: cmd, fingerprint, .. } = crate::commands::kept(&json)?;
        let correlation = ask.correlation_id.clone().map(CorrelationId).unwrap_or_else(CorrelationId::new_random);
        let mut ctx = MessageContext::new_root();
        ctx.correlation_id = correlation;
        ctx.idempotency_key = Some(ask.idempotency_key.clone());
        let call = CallContext { correlation_id: ctx.correlation_id.0.clone(), traceparent: ctx.traceparent.child().to_string() };
        let record = match &self.records {
            Some(records) => records.record("payouts", &ask.idempotency_key).await.map_err(|e| e.to_string())?,
            None => None,
        };
        // Since when the vendor may hold it: the claim's key, else the command.
        let since_ms = record.as_ref().map_or(cmd.requested_at_ms, |r| r.key_since_ms.min(cmd.requested_at_ms));
        let Some(answer) = provider.find(&cmd, since_ms, &call).await.map_err(|e| e.to_string())? else {
            tracing::info!(subject = %ask.subject_id, provider = %ask.provider, "pending_unknown payout not found at the vendor yet");
            return Ok(None);
        };
        let status = match answer.status {
            PayoutStatus::Paid | PayoutStatus::Failed | PayoutStatus::Submitted => answer.status,
            // The vendor still cannot tell: stay stuck, ask again later.
            PayoutStatus::PendingUnknown | PayoutStatus::Rejected | PayoutStatus::Held => return Ok(None),
        };
        let outcome = PayoutOutcome {
            payout_id: ask.subject_id.clone(),
            idempotency_key: ask.idempotency_key.clone(),
            status,
            amount_minor: ask.amount_minor,
            currency: ask.currency.clone(),
            provider: Some(ask.provider.clone()),
            provider_reference: Some(answer.vendor_reference),
            error: answer.error,
            attempts: 1,
            replayed: false,
            completed_at_ms: switchyard_canonical::now_ms(),
        };
        if let Some(records) = &self.records {
            let completion = Completion {
                claim: Claim {
                    domain: "payouts".into(),
                    idempotency_key: ask.idempotency_key.clone(),
                    fingerprint,
                    subject_id: ask.subject_id.clone(),
                    provider: ask.provider.clone(),
                    provider_key: provider.provider_key(&ask.idempotency_key),
                    correlation_id: ctx.correlation_id.0.clone(),
                    lease_owner: String::new(),
                    lease_ttl_ms: 0,
                },
                outcome_json: serde_json::to_string(&outcome).map_err(|e| e.to_string())?,
                attempts: 1,
            };
            records.complete(completion).await.map_err(|e| format!("worker record not completed: {e}"))?;
        }
        if let Some(sink) = &self.outcomes {
            let mut headers = ctx.outbound_headers(Some(sink.encoder.schema_id()));
            headers.push(("settled-by".to_owned(), b"reconciler".to_vec()));
            let record = Outbound {
                topic: sink.topic.clone(),
                key: Some(outcome.payout_id.clone().into_bytes()),
                payload: sink.encoder.encode(&outcome).map_err(|e| e.to_string())?,
                headers,
            };
            sink.publisher.publish(&record).await.map_err(|e| e.to_string())?;
        }
        tracing::info!(subject = %ask.subject_id, provider = %ask.provider, status = status.as_str(), correlation_id = %ctx.correlation_id.0, "pending_unknown payout settled");
        Ok(Some(crate::ingest::outcome_fact(outcome, Some(ctx.correlation_id.0))))
    }
}
