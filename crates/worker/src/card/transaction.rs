//! Transaction callbacks: one [`CardTransaction`] per processor transaction
//! event on `cards.transactions.v1`, exactly once.
//!
//! 1. The card is found by (processor, card token) like any callback; an
//!    unknown token takes the same retry-then-DLQ path.
//! 2. The transaction is recorded under `<processor>:<event token>` with its
//!    audit entry in one store transaction
//!    ([`CardTransactions::record`](switchyard_store::card_transactions::CardTransactions::record)):
//!    the insert is the "applied" mark, so a callback delivered twice, or
//!    repeated in a later delivery (Lithic resends every event of a
//!    transaction), or arriving late or out of order, queues nothing new.
//! 3. The card's unsent transactions are published, each marked sent once
//!    the broker has it; then the runtime commits the offset. A crash
//!    between 2 and 3 leaves the row unsent, and the redelivered callback
//!    (now a duplicate) still flushes it, under the same id.
//!
//! Order is the processor's order as delivered: a clearing that arrives
//! before its authorization is booked first. The ledger joins them by
//! `transaction_reference`; nothing is held back waiting for another event.

use super::callback::CallbackHandler;
use super::CardHandler;
use std::time::Duration;
use switchyard_adapters::cards::TransactionFacts;
use switchyard_bus::{Failure, MessageContext, Outbound};
use switchyard_canonical::card_transaction::CardTransaction;
use switchyard_canonical::ProviderEvent;
use switchyard_store::card_transactions::{CardTransactionRow, Recorded};
use tracing::Instrument;

use crate::answer::{dead_letter, store_down};

impl CallbackHandler {
    pub(super) async fn transaction(&self, event: &ProviderEvent, ctx: &MessageContext, facts: TransactionFacts) -> Result<(), Failure> {
        let card = self.find(event).instrument(switchyard_bus::telemetry::child_span("claim")).await?;
        let transaction = CardTransaction {
            transaction_event_id: CardTransaction::event_id(&event.provider, &facts.event_token),
            card_id: card.card_id.clone(),
            processor: event.provider.clone(),
            processor_reference: event.provider_reference.clone(),
            transaction_reference: facts.transaction_reference,
            kind: facts.kind,
            amount_minor: facts.amount_minor,
            currency: facts.currency,
            approved: facts.approved,
            decline_code: facts.decline_code,
            occurred_at_ms: event.occurred_at_ms,
            published_at_ms: 0,
        };
        let payload = serde_json::to_string(&transaction).map_err(|e| dead_letter(&format!("card transaction {}: {e}", transaction.transaction_event_id)))?;
        let row = CardTransactionRow {
            transaction_event_id: transaction.transaction_event_id.clone(),
            card_id: card.card_id.clone(),
            payload,
            correlation_id: ctx.correlation_id.0.clone(),
        };
        // The processor's own result code stays here, for support; the
        // published transaction carries only ours.
        let detail = serde_json::json!({
            "provider": event.provider,
            "provider_event_id": event.event_id,
            "vendor_event_type": event.vendor_event_type,
            "kind": transaction.kind.as_str(),
            "approved": transaction.approved,
            "decline_code": transaction.decline_code.map(|d| d.as_str()),
            "processor_result": event.reason,
        })
        .to_string();
        let result = match self.card.transactions.record(&row, &detail).instrument(switchyard_bus::telemetry::child_span("store")).await.map_err(store_down)? {
            Recorded::New => "transaction",
            Recorded::Duplicate => "duplicate",
        };
        self.card.metrics.callback(&event.provider, result);
        tracing::debug!(card_id = %card.card_id, result, kind = transaction.kind.as_str(), "transaction callback recorded");
        // This one, and any a crash left unsent.
        self.card.flush_transactions(ctx, &card.card_id).await
    }
}

impl CardHandler {
    /// Sends one card's unsent transactions in the order they were
    /// recorded, marking each sent once the broker has it; in the card's
    /// publishing turn, so two flushers do not send one row twice.
    pub(super) async fn flush_transactions(&self, ctx: &MessageContext, card_id: &str) -> Result<(), Failure> {
        let turn = self.flush_locks.take(card_id, &self.shutdown).await?;
        let flushed = self.flush_transactions_in_turn(ctx, card_id, &turn).await;
        turn.release().await;
        flushed
    }

    async fn flush_transactions_in_turn(&self, ctx: &MessageContext, card_id: &str, turn: &super::publish::Turn<'_>) -> Result<(), Failure> {
        for row in self.transactions.unsent(card_id).await.map_err(store_down)? {
            if !turn.renew().await? {
                tracing::warn!("card publishing turn taken over by another instance; it sends the rest");
                return Ok(());
            }
            let mut transaction: CardTransaction = serde_json::from_str(&row.payload)
                .map_err(|e| dead_letter(&format!("stored card transaction {} is unreadable: {e}", row.transaction_event_id)))?;
            transaction.published_at_ms = switchyard_canonical::now_ms();
            let payload = self.transaction_encoder.encode(&transaction).map_err(|e| Failure::DeadLetter {
                class: switchyard_canonical::ErrorClass::ManualRepair,
                reason: format!("card transaction does not fit its schema: {e}"),
            })?;
            let record = Outbound {
                topic: self.transactions_topic.clone(),
                key: Some(transaction.card_id.as_bytes().to_vec()),
                payload,
                headers: ctx.outbound_headers(Some(self.transaction_encoder.schema_id())),
            };
            if !switchyard_bus::publish_until_acked(&self.publisher, &record, &self.shutdown).await {
                return Err(Failure::Retry { reason: "worker stopping before a card transaction was published".into(), delay: Duration::ZERO });
            }
            if let Err(e) = self.transactions.mark_sent(&row.transaction_event_id).await {
                // Sent but not marked: it goes out again, same id.
                tracing::warn!(error = %e, transaction_event_id = %row.transaction_event_id, "card transaction not marked sent");
            }
        }
        Ok(())
    }
}
