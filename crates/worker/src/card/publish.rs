//! What the card handler puts on the bus: one outcome per delivered command
//! and the card events a change left in the store's outbox.

use super::CardHandler;
use std::time::Duration;
use switchyard_bus::{Failure, MessageContext, Outbound};
use switchyard_canonical::card_event::CardEvent;
use switchyard_canonical::card_outcome::CardOutcome;

/// Per-card turns at publishing, within this process: a fixed set of
/// mutexes picked by a hash of the card id (no map to grow or clean up).
/// Across worker instances two flushers of one card can still overlap
/// after a rebalance; consumers deduplicate by `event_id`.
pub struct FlushLocks(Vec<tokio::sync::Mutex<()>>);

impl Default for FlushLocks {
    fn default() -> Self {
        Self((0..256).map(|_| tokio::sync::Mutex::new(())).collect())
    }
}

impl FlushLocks {
    pub(super) async fn lock(&self, card_id: &str) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        card_id.hash(&mut h);
        self.0[(h.finish() % self.0.len() as u64) as usize].lock().await
    }
}

impl CardHandler {
    /// Publishes the outcome and waits for the broker; a broker outage is
    /// waited out there, so no processor is asked again for it.
    pub(super) async fn publish_outcome(&self, ctx: &MessageContext, outcome: &CardOutcome, requested_at_ms: i64) -> Result<(), Failure> {
        let sink = crate::answer::OutcomeSink::new(&self.publisher, &self.encoder, &self.outcomes_topic, &self.metrics, &self.shutdown);
        let answering = crate::answer::Answering {
            subject: &outcome.card_id,
            idempotency_key: &outcome.idempotency_key,
            requested_at_ms,
            status: outcome.status.as_str(),
        };
        sink.publish(ctx, outcome, answering).await?;
        tracing::debug!(status = outcome.status.as_str(), replayed = outcome.replayed, "outcome published");
        Ok(())
    }

    /// Sends every unsent event of the cards an outcome is about (the card
    /// and, for a REPLACE, its replacement), in the order of their changes,
    /// marking each sent once the broker has it. Events a crash left unsent
    /// go out with the next command's answer; a repeat after a crash between
    /// publish and mark carries the same `event_id`.
    pub(super) async fn flush_events(&self, ctx: &MessageContext, outcome: &CardOutcome) -> Result<(), Failure> {
        let cards = std::iter::once(outcome.card_id.as_str()).chain(outcome.replacement.as_ref().map(|r| r.card_id.as_str()));
        for card_id in cards {
            self.flush_card(ctx, card_id).await?;
        }
        Ok(())
    }

    /// Sends one card's unsent events in the order of its changes. The
    /// command and callback consumers both flush; one card's flushes take
    /// turns ([`FlushLocks`]), so an event is not sent twice by two
    /// flushers that read the same unsent rows, nor after a later one.
    pub(super) async fn flush_card(&self, ctx: &MessageContext, card_id: &str) -> Result<(), Failure> {
        let _turn = self.flush_locks.lock(card_id).await;
        {
            let unsent = self.cards.unsent_events(card_id).await.map_err(crate::answer::store_down)?;
            for row in unsent {
                let event: CardEvent = serde_json::from_str(&row.payload)
                    .map_err(|e| crate::answer::dead_letter(&format!("stored card event {} is unreadable: {e}", row.event_id)))?;
                self.publish_event(ctx, &event).await?;
                if let Err(e) = self.cards.mark_sent(&row.event_id).await {
                    // Sent but not marked: it goes out again, same event_id.
                    tracing::warn!(error = %e, event_id = %row.event_id, "card event not marked sent");
                }
            }
        }
        Ok(())
    }

    async fn publish_event(&self, ctx: &MessageContext, event: &CardEvent) -> Result<(), Failure> {
        let mut event = event.clone();
        event.published_at_ms = switchyard_canonical::now_ms();
        let payload = self.event_encoder.encode(&event).map_err(|e| Failure::DeadLetter {
            class: switchyard_canonical::ErrorClass::ManualRepair,
            reason: format!("card event does not fit its schema: {e}"),
        })?;
        let record = Outbound {
            topic: self.events_topic.clone(),
            key: Some(event.card_id.as_bytes().to_vec()),
            payload,
            headers: ctx.outbound_headers(Some(self.event_encoder.schema_id())),
        };
        if !switchyard_bus::publish_until_acked(&self.publisher, &record, &self.shutdown).await {
            return Err(Failure::Retry { reason: "worker stopping before a card event was published".into(), delay: Duration::ZERO });
        }
        tracing::debug!(event_id = %event.event_id, kind = event.kind.as_str(), "card event published");
        Ok(())
    }
}
