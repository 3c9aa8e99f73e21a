//! What the card handler puts on the bus: one outcome per delivered command
//! and the card events a change left in the store's outbox.

use super::CardHandler;
use std::time::Duration;
use switchyard_bus::{Failure, MessageContext, Outbound};
use switchyard_canonical::card_event::CardEvent;
use switchyard_canonical::card_outcome::CardOutcome;
use switchyard_store::card_turns::FlushTurns;

/// How long a flusher may hold a card's publishing turn without renewing
/// it (it renews before each record): a flusher that dies holding it delays
/// the card's events by this much.
const TURN_TTL_MS: i64 = 30_000;

/// Per-card turns at publishing. Within this process, a fixed set of
/// mutexes picked by a hash of the card id (no map to grow or clean up);
/// across worker instances (the command consumer of one and the callback
/// consumer of another, after a rebalance), the card's turn in the store
/// ([`FlushTurns`]). A repeat can then only come from a crash between a
/// publish and its mark, under the same id.
pub struct FlushLocks {
    local: Vec<tokio::sync::Mutex<()>>,
    turns: FlushTurns,
    /// This process, as the turns' owner.
    owner: String,
}

/// A card's publishing turn, held until [`Turn::release`].
pub(super) struct Turn<'a> {
    _local: tokio::sync::MutexGuard<'a, ()>,
    locks: &'a FlushLocks,
    card_id: String,
}

impl FlushLocks {
    pub fn new(turns: FlushTurns) -> Self {
        Self { local: (0..256).map(|_| tokio::sync::Mutex::new(())).collect(), turns, owner: crate::attempt::owner_token() }
    }

    /// Waits for `card_id`'s turn, here and across instances.
    pub(super) async fn take(&self, card_id: &str, shutdown: &tokio_util::sync::CancellationToken) -> Result<Turn<'_>, Failure> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        card_id.hash(&mut h);
        let local = self.local[(h.finish() % self.local.len() as u64) as usize].lock().await;
        loop {
            let now = switchyard_canonical::now_ms();
            if self.turns.try_take(card_id, &self.owner, now, TURN_TTL_MS).await.map_err(crate::answer::store_down)? {
                return Ok(Turn { _local: local, locks: self, card_id: card_id.to_owned() });
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                _ = shutdown.cancelled() => return Err(Failure::Retry { reason: "worker stopping while waiting for a card's publishing turn".into(), delay: Duration::ZERO }),
            }
        }
    }
}

impl Turn<'_> {
    /// Extends the turn before the next record; false once another
    /// instance took it over (this one was too slow), which then sends
    /// what is left.
    pub(super) async fn renew(&self) -> Result<bool, Failure> {
        let now = switchyard_canonical::now_ms();
        self.locks.turns.try_take(&self.card_id, &self.locks.owner, now, TURN_TTL_MS).await.map_err(crate::answer::store_down)
    }

    pub(super) async fn release(self) {
        if let Err(e) = self.locks.turns.release(&self.card_id, &self.locks.owner).await {
            // Expires on its own within TURN_TTL_MS.
            tracing::warn!(error = %e, "card publishing turn not released");
        }
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
    /// command and callback consumers of every instance flush; one card's
    /// flushes take turns ([`FlushLocks`]: in this process and in the
    /// store), so an event is not sent twice by two flushers that read the
    /// same unsent rows, nor after a later one.
    pub async fn flush_card(&self, ctx: &MessageContext, card_id: &str) -> Result<(), Failure> {
        let turn = self.flush_locks.take(card_id, &self.shutdown).await?;
        let flushed = self.flush_card_in_turn(ctx, card_id, &turn).await;
        turn.release().await;
        flushed
    }

    async fn flush_card_in_turn(&self, ctx: &MessageContext, card_id: &str, turn: &Turn<'_>) -> Result<(), Failure> {
        let unsent = self.cards.unsent_events(card_id).await.map_err(crate::answer::store_down)?;
        for row in unsent {
            if !turn.renew().await? {
                tracing::warn!("card publishing turn taken over by another instance; it sends the rest");
                return Ok(());
            }
            let event: CardEvent = serde_json::from_str(&row.payload)
                .map_err(|e| crate::answer::dead_letter(&format!("stored card event {} is unreadable: {e}", row.event_id)))?;
            self.publish_event(ctx, &event).await?;
            if let Err(e) = self.cards.mark_sent(&row.event_id).await {
                // Sent but not marked: it goes out again, same event_id.
                tracing::warn!(error = %e, event_id = %row.event_id, "card event not marked sent");
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
