//! Which retry records were handled to a final place (see the consumer
//! runtime's `RoundLedger`): one row per record, by topic, partition, offset
//! and the record's due time.

use crate::{Store, StoreError};
use sqlx::AnyPool;

const DDL: &str = "CREATE TABLE IF NOT EXISTS retry_rounds (
    topic TEXT NOT NULL,
    topic_partition INTEGER NOT NULL,
    record_offset BIGINT NOT NULL,
    not_before_ms BIGINT NOT NULL,
    handled_at_ms BIGINT NOT NULL,
    PRIMARY KEY (topic, topic_partition, record_offset, not_before_ms)
)";

#[derive(Debug, Clone)]
pub struct RetryRounds {
    pool: AnyPool,
}

impl RetryRounds {
    pub async fn open(store: &Store) -> Result<Self, StoreError> {
        let pool = store.pool().clone();
        crate::schema::create_all(&pool, &[DDL]).await?;
        Ok(Self { pool })
    }

    pub async fn handled(&self, topic: &str, partition: i32, offset: i64, not_before_ms: i64) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT 1 FROM retry_rounds WHERE topic = $1 AND topic_partition = $2 AND record_offset = $3 AND not_before_ms = $4",
        )
        .bind(topic)
        .bind(partition)
        .bind(offset)
        .bind(not_before_ms)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    pub async fn record(&self, topic: &str, partition: i32, offset: i64, not_before_ms: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO retry_rounds (topic, topic_partition, record_offset, not_before_ms, handled_at_ms) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (topic, topic_partition, record_offset, not_before_ms) DO NOTHING",
        )
        .bind(topic)
        .bind(partition)
        .bind(offset)
        .bind(not_before_ms)
        .bind(switchyard_canonical::now_ms())
        .execute(&self.pool)
        .await?;
        // Now and then, forget rounds older than any retry topic keeps them:
        // a record re-read after that would only be handled once more.
        let now = switchyard_canonical::now_ms();
        if now % 1024 == 0 {
            sqlx::query("DELETE FROM retry_rounds WHERE handled_at_ms < $1").bind(now - KEEP_MS).execute(&self.pool).await?;
        }
        Ok(())
    }
}

/// How long a handled round is remembered: longer than retry topics keep
/// records (a week in topics.yaml).
const KEEP_MS: i64 = 14 * 24 * 3600 * 1000;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_record_is_known_once_recorded_and_only_with_its_due_time() {
        for store in crate::test_stores().await {
            let rounds = RetryRounds::open(&store).await.expect("ddl");
            let topic = format!("t-{}-{}.retry", std::process::id(), switchyard_canonical::now_ms());
            assert!(!rounds.handled(&topic, 2, 40, 1_000).await.expect("read"));
            rounds.record(&topic, 2, 40, 1_000).await.expect("record");
            rounds.record(&topic, 2, 40, 1_000).await.expect("a second record is harmless");
            assert!(rounds.handled(&topic, 2, 40, 1_000).await.expect("read"));
            assert!(!rounds.handled(&topic, 2, 40, 2_000).await.expect("read"), "the same offset of a topic created again");
            assert!(!rounds.handled(&topic, 3, 40, 1_000).await.expect("read"));
        }
    }
}
