//! Whose turn it is to publish a card's events, across worker instances.
//!
//! A card's events wait in the outbox (`card_events`) until a flusher sends
//! them in order and marks them sent. Two flushers of one card reading the
//! same unsent rows would each send them: within a process a mutex per card
//! prevents that, but after a rebalance the command consumer of one
//! instance and the callback consumer of another can flush the same card at
//! once. So a flusher first takes the card's turn here: a row per card with
//! an owner and an expiry, taken by one conditional upsert (free, expired,
//! or already ours), released when the flush ends. A flusher that dies
//! holding it delays the card's events by the turn's time to live, no more.

use crate::{Store, StoreError};
use sqlx::AnyPool;

const DDL: &str = "CREATE TABLE IF NOT EXISTS card_flush_turns (
    card_id TEXT NOT NULL PRIMARY KEY,
    owner TEXT NOT NULL,
    until_ms BIGINT NOT NULL
)";

#[derive(Debug, Clone)]
pub struct FlushTurns {
    pool: AnyPool,
}

impl FlushTurns {
    pub async fn open(store: &Store) -> Result<Self, StoreError> {
        let pool = store.pool().clone();
        crate::schema::create_all(&pool, &[DDL]).await?;
        Ok(Self { pool })
    }

    /// Takes `card_id`'s turn for `owner` until `now_ms + ttl_ms` if it is
    /// free, expired or already `owner`'s; whether it did.
    pub async fn try_take(&self, card_id: &str, owner: &str, now_ms: i64, ttl_ms: i64) -> Result<bool, StoreError> {
        let taken = sqlx::query(
            "INSERT INTO card_flush_turns (card_id, owner, until_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (card_id) DO UPDATE SET owner = excluded.owner, until_ms = excluded.until_ms \
             WHERE card_flush_turns.until_ms <= $4 OR card_flush_turns.owner = excluded.owner",
        )
        .bind(card_id)
        .bind(owner)
        .bind(now_ms.saturating_add(ttl_ms))
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(taken.rows_affected() == 1)
    }

    /// Gives the turn back, if `owner` still holds it.
    pub async fn release(&self, card_id: &str, owner: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE card_flush_turns SET until_ms = 0 WHERE card_id = $1 AND owner = $2")
            .bind(card_id)
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_owner_at_a_time_until_it_releases_or_its_turn_expires() {
        for store in crate::test_stores().await {
            let turns = FlushTurns::open(&store).await.expect("ddl");
            let card = format!("card-turn-{}-{}", std::process::id(), switchyard_canonical::now_ms());
            let now = 1_000_000;
            assert!(turns.try_take(&card, "a", now, 500).await.expect("take"), "free: a takes it");
            assert!(!turns.try_take(&card, "b", now + 10, 500).await.expect("take"), "a holds it");
            assert!(turns.try_take(&card, "a", now + 20, 500).await.expect("take"), "a again: renewed");
            turns.release(&card, "b").await.expect("release");
            assert!(!turns.try_take(&card, "b", now + 30, 500).await.expect("take"), "b cannot release a's turn");
            turns.release(&card, "a").await.expect("release");
            assert!(turns.try_take(&card, "b", now + 40, 500).await.expect("take"), "released: b takes it");
            assert!(!turns.try_take(&card, "a", now + 539, 500).await.expect("take"), "b's turn runs to now + 540");
            assert!(turns.try_take(&card, "a", now + 540, 500).await.expect("take"), "expired: a takes it over");
        }
    }
}
