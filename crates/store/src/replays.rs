//! The DLQ replay ledger: which dead-lettered positions were already sent
//! back to their topic, so `switchyard dlq replay` run twice sends each
//! message once.
//!
//! A position is *claimed* before it is published and marked *published*
//! after the broker acknowledged; a failed publish releases the claim. Two
//! replays running at once therefore cannot both send a message. A crash
//! between claim and publish leaves the claim behind (state `claimed`): the
//! message is skipped until an operator replays it with `--force`, which is
//! harmless because the worker answers a repeated command from its
//! idempotency store.

use crate::records::{Bind, Sql};
use crate::{Store, StoreError};
use sqlx::Row;

/// A DLQ message's own position: what identifies one replay.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DlqPosition {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl Store {
    /// Claims `position` for a replay to `target`. False if it was already
    /// claimed or replayed, unless `force`, which takes it over.
    pub async fn claim_replay(&self, position: &DlqPosition, target: &str, key: &str, actor: &str, force: bool) -> Result<bool, StoreError> {
        let mut q = Sql::new(
            "INSERT INTO dlq_replays (dlq_topic, dlq_partition, dlq_offset, target_topic, message_key, state, actor, replayed_at_ms, replays) VALUES ",
        );
        q.tuple([
            Bind::Text(Some(&position.topic)),
            Bind::Int(i64::from(position.partition)),
            Bind::Int(position.offset),
            Bind::Text(Some(target)),
            Bind::Text(Some(key)),
            Bind::Text(Some("claimed")),
            Bind::Text(Some(actor)),
            Bind::Int(switchyard_canonical::now_ms()),
            Bind::Int(1),
        ]);
        if force {
            q.push(
                " ON CONFLICT (dlq_topic, dlq_partition, dlq_offset) DO UPDATE SET state = excluded.state, \
                 actor = excluded.actor, replayed_at_ms = excluded.replayed_at_ms, replays = dlq_replays.replays + 1",
            );
        } else {
            q.push(" ON CONFLICT (dlq_topic, dlq_partition, dlq_offset) DO NOTHING");
        }
        let done = q.query().persistent(false).execute(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks a claimed position as published at `(partition, offset)` of its target.
    pub async fn replay_published(&self, position: &DlqPosition, partition: i32, offset: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE dlq_replays SET state = 'published', target_partition = $1, target_offset = $2 \
             WHERE dlq_topic = $3 AND dlq_partition = $4 AND dlq_offset = $5",
        )
        .bind(i64::from(partition))
        .bind(offset)
        .bind(&position.topic)
        .bind(i64::from(position.partition))
        .bind(position.offset)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Releases a claim whose publish failed, so the next run tries again.
    /// A forced re-replay of an already published position goes back to
    /// `published`, since the earlier publish did happen.
    pub async fn release_replay(&self, position: &DlqPosition) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM dlq_replays WHERE dlq_topic = $1 AND dlq_partition = $2 AND dlq_offset = $3 \
             AND state = 'claimed' AND target_offset IS NULL",
        )
        .bind(&position.topic)
        .bind(i64::from(position.partition))
        .bind(position.offset)
        .execute(&self.pool)
        .await?;
        sqlx::query(
            "UPDATE dlq_replays SET state = 'published' WHERE dlq_topic = $1 AND dlq_partition = $2 \
             AND dlq_offset = $3 AND state = 'claimed'",
        )
        .bind(&position.topic)
        .bind(i64::from(position.partition))
        .bind(position.offset)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The replay state of every recorded position of `topic`
    /// (`claimed` or `published`), for `dlq show` and `dlq list`.
    pub async fn replay_states(&self, topic: &str) -> Result<Vec<(DlqPosition, String)>, StoreError> {
        let rows = sqlx::query("SELECT dlq_partition, dlq_offset, state FROM dlq_replays WHERE dlq_topic = $1")
            .bind(topic)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let partition: i64 = r.try_get("dlq_partition")?;
                let position = DlqPosition {
                    topic: topic.to_owned(),
                    partition: i32::try_from(partition).unwrap_or(i32::MAX),
                    offset: r.try_get("dlq_offset")?,
                };
                Ok((position, r.try_get::<String, _>("state")?))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn stores() -> Vec<Store> {
        crate::test_stores().await
    }

    #[tokio::test]
    async fn a_position_is_replayed_once_unless_forced() {
        for store in stores().await {
            let topic = format!("t-{}-{}.dlq", std::process::id(), switchyard_canonical::now_ms());
            let pos = DlqPosition { topic: topic.clone(), partition: 0, offset: 7 };
            assert!(store.claim_replay(&pos, "t", "k", "ops", false).await.expect("claim"));
            assert!(!store.claim_replay(&pos, "t", "k", "ops", false).await.expect("claim"), "second claim refused");
            store.replay_published(&pos, 2, 41).await.expect("mark");
            assert!(!store.claim_replay(&pos, "t", "k", "ops", false).await.expect("claim"), "published stays replayed");
            assert!(store.claim_replay(&pos, "t", "k", "ops", true).await.expect("force"));
            // A failed forced publish keeps the record of the earlier one.
            store.release_replay(&pos).await.expect("release");
            assert_eq!(store.replay_states(&topic).await.expect("states"), vec![(pos.clone(), "published".to_owned())]);

            let other = DlqPosition { topic: topic.clone(), partition: 0, offset: 8 };
            assert!(store.claim_replay(&other, "t", "k", "ops", false).await.expect("claim"));
            store.release_replay(&other).await.expect("release");
            assert!(store.claim_replay(&other, "t", "k", "ops", false).await.expect("claim"), "a released claim can be retried");
        }
    }
}
