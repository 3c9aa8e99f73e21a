//! Message positions for `switchyard trace`: where each consumed or
//! published message is (topic, partition, offset), by its key and
//! correlation id, so a trace reads a handful of records instead of whole
//! topics.
//!
//! Positions are audit entries (actions `message_consumed` and
//! `message_published`, the position as the detail): they need exactly what
//! the audit log already has, a group-committed append with indexes by
//! subject and correlation id. `indexed_topics` says since when a topic's
//! positions are recorded; the trace reads only positions on those topics
//! and still reads the others in full.

use crate::{AuditEntry, AuditRecord, Store, StoreError};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use std::collections::HashSet;

pub const CONSUMED: &str = "message_consumed";
pub const PUBLISHED: &str = "message_published";

/// A record's place on the bus.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Position {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl Position {
    /// The position an audit row records, if it is a position row.
    pub fn of(row: &AuditRecord) -> Option<Self> {
        if row.action != CONSUMED && row.action != PUBLISHED {
            return None;
        }
        serde_json::from_str(&row.detail).ok()
    }
}

/// Is this audit row a position rather than something that happened?
pub fn is_position(row: &AuditRecord) -> bool {
    row.action == CONSUMED || row.action == PUBLISHED
}

impl Store {
    /// Queues a position for the next audit group commit (see
    /// [`Store::audit_later`]: never fails the caller).
    pub async fn position_later(&self, action: &'static str, position: &Position, key: &str, correlation_id: &str) {
        let Ok(detail) = serde_json::to_string(position) else { return };
        self.audit_later(AuditEntry { actor: "bus", action, subject_id: key, correlation_id, detail: &detail }).await;
    }

    /// Notes that positions on `topic` are recorded from now on (the first
    /// time wins: records before it were not).
    pub async fn mark_topic_indexed(&self, topic: &str) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO indexed_topics (topic, since_ms) VALUES ($1, $2) ON CONFLICT (topic) DO NOTHING")
            .bind(topic)
            .bind(switchyard_canonical::now_ms())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Topics whose positions are recorded.
    pub async fn indexed_topics(&self) -> Result<HashSet<String>, StoreError> {
        let rows = sqlx::query("SELECT topic FROM indexed_topics").fetch_all(&self.pool).await?;
        rows.iter().map(|r| r.try_get::<String, _>("topic")).collect::<Result<_, _>>().map_err(StoreError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_flows_positions_are_found_by_key_and_by_correlation_id() {
        for store in crate::test_stores().await {
            let run = switchyard_canonical::now_ms();
            let (topic, key, corr) = (format!("t-{run}"), format!("po-{run}"), format!("corr-{run}"));
            let command = Position { topic: topic.clone(), partition: 1, offset: 41 };
            let outcome = Position { topic: format!("{topic}.out"), partition: 0, offset: 7 };
            store.position_later(CONSUMED, &command, &key, &corr).await;
            store.position_later(PUBLISHED, &outcome, "", &corr).await;
            store.audit_later(AuditEntry { actor: "t", action: "vendor_call", subject_id: &key, correlation_id: &corr, detail: "{}" }).await;
            store.flush_audit().await;
            let rows = store.audit_trail(&[&corr]).await.expect("trail");
            let found: Vec<Position> = rows.iter().filter_map(Position::of).collect();
            assert_eq!(found, [command.clone(), outcome]);
            assert_eq!(rows.iter().filter(|r| !is_position(r)).count(), 1);
            let by_key: Vec<Position> = store.audit_trail(&[&key]).await.expect("trail").iter().filter_map(Position::of).collect();
            assert_eq!(by_key, [command]);

            store.mark_topic_indexed(&topic).await.expect("mark");
            store.mark_topic_indexed(&topic).await.expect("marking again is harmless");
            assert!(store.indexed_topics().await.expect("read").contains(&topic));
        }
    }
}
