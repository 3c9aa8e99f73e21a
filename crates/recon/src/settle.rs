//! Settling payouts stuck in `pending_unknown`: ask the provider that holds
//! the claim, under the same idempotency key and with the command it was
//! sent, what it did. A definite answer becomes an outcome, published on the
//! outcome topic (core banking learns it the usual way) and stored as a fact.
//!
//! The adapters' status query replays the create under the same key, which
//! the vendor answers from its idempotency store; if the vendor never saw
//! the request, that replay executes it now, exactly as the worker's resume
//! rule would. It can never execute the payout a second time.

use crate::rules::SettleRequest;
use std::collections::HashMap;
use switchyard_adapters::payouts::PayoutProvider;
use switchyard_adapters::CallContext;
use switchyard_bus::{AvroEncoder, MessageContext, Outbound, Publisher};
use switchyard_canonical::{CorrelationId, PayoutCommand, PayoutOutcome, PayoutStatus};
use switchyard_store::recon::{OutcomeFact, ReconStore};

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
        let cmd: PayoutCommand = serde_json::from_str(&json).map_err(|e| format!("stored command: {e}"))?;
        let correlation = ask.correlation_id.clone().map(CorrelationId).unwrap_or_else(CorrelationId::new_random);
        let mut ctx = MessageContext::new_root();
        ctx.correlation_id = correlation;
        ctx.idempotency_key = Some(ask.idempotency_key.clone());
        let call = CallContext { correlation_id: ctx.correlation_id.0.clone(), traceparent: ctx.traceparent.child().to_string() };
        let answer = provider.status(&cmd, &provider.provider_key(&ask.idempotency_key), &call).await.map_err(|e| e.to_string())?;
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
