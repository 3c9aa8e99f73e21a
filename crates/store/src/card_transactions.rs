//! Card transactions: the card worker's outbox for `cards.transactions.v1`,
//! with its own DDL.
//!
//! - `card_transactions`: one row per processor transaction event, keyed by
//!   its `transaction_event_id` (`<processor>:<event token>`). Inserting the
//!   row *is* recording the event as applied: a redelivered, repeated or
//!   late callback for the same event conflicts on the key and queues
//!   nothing ([`CardTransactions::record`]). The row holds the canonical
//!   transaction as JSON and is marked sent once the broker acknowledged
//!   it; a crash in between leaves it unsent, and the next flush of the
//!   card (any later callback, or the redelivery of this one) sends it
//!   again under the same id.
//!
//! A transaction changes no card state, so it takes no compare-and-set on
//! the card row: two transaction events of one card never conflict.

use crate::records::{Bind, Sql};
use crate::{Store, StoreError};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

const DDL: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS card_transactions (
        transaction_event_id TEXT NOT NULL PRIMARY KEY,
        card_id TEXT NOT NULL,
        payload TEXT NOT NULL,
        correlation_id TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL,
        sent_at_ms BIGINT
    )",
    "CREATE INDEX IF NOT EXISTS card_transactions_unsent ON card_transactions (card_id, sent_at_ms)",
];

/// A transaction to publish, as queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardTransactionRow {
    /// `<processor>:<event token>`: the consumers' dedup key.
    pub transaction_event_id: String,
    pub card_id: String,
    /// The canonical transaction as JSON; encoded to Avro when published.
    pub payload: String,
    pub correlation_id: String,
}

/// What [`CardTransactions::record`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// First sight of this event: queued for publishing.
    New,
    /// The event was recorded before: nothing new to publish.
    Duplicate,
}

/// The `card_transactions` table on the shared pool.
#[derive(Clone)]
pub struct CardTransactions {
    pool: AnyPool,
}

impl CardTransactions {
    /// Creates the table if needed.
    pub async fn open(store: &Store) -> Result<Self, StoreError> {
        let pool = store.pool().clone();
        crate::schema::create_all(&pool, DDL).await?;
        Ok(Self { pool })
    }

    /// Records a transaction event as applied and queues it, with its audit
    /// entry (actor `card-worker`, action `card_transaction`), in one
    /// transaction; a second record of the same id writes nothing.
    pub async fn record(&self, row: &CardTransactionRow, audit_detail: &str) -> Result<Recorded, StoreError> {
        let now = switchyard_canonical::now_ms();
        let mut tx = self.pool.begin().await?;
        let mut q = Sql::new("INSERT INTO card_transactions (transaction_event_id, card_id, payload, correlation_id, created_at_ms) VALUES ");
        q.tuple([
            Bind::Text(Some(&row.transaction_event_id)),
            Bind::Text(Some(&row.card_id)),
            Bind::Text(Some(&row.payload)),
            Bind::Text(Some(&row.correlation_id)),
            Bind::Int(now),
        ]);
        q.push(" ON CONFLICT (transaction_event_id) DO NOTHING");
        if q.query().execute(&mut *tx).await?.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(Recorded::Duplicate);
        }
        let mut audit = Sql::new("INSERT INTO audit_log (at_ms, actor, action, subject_id, correlation_id, detail) VALUES ");
        audit.tuple([
            Bind::Int(now),
            Bind::Text(Some("card-worker")),
            Bind::Text(Some("card_transaction")),
            Bind::Text(Some(&row.card_id)),
            Bind::Text(Some(&row.correlation_id)),
            Bind::Text(Some(audit_detail)),
        ]);
        audit.query().execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(Recorded::New)
    }

    /// Unsent transactions of one card, in the order they were recorded.
    pub async fn unsent(&self, card_id: &str) -> Result<Vec<CardTransactionRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT transaction_event_id, card_id, payload, correlation_id FROM card_transactions \
             WHERE card_id = $1 AND sent_at_ms IS NULL ORDER BY created_at_ms, transaction_event_id",
        )
        .bind(card_id)
        .fetch_all(&self.pool)
        .await?;
        let row = |r: &AnyRow| -> Result<CardTransactionRow, sqlx::Error> {
            Ok(CardTransactionRow {
                transaction_event_id: r.try_get("transaction_event_id")?,
                card_id: r.try_get("card_id")?,
                payload: r.try_get("payload")?,
                correlation_id: r.try_get("correlation_id")?,
            })
        };
        Ok(rows.iter().map(row).collect::<Result<_, _>>()?)
    }

    pub async fn mark_sent(&self, transaction_event_id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE card_transactions SET sent_at_ms = $1 WHERE transaction_event_id = $2 AND sent_at_ms IS NULL")
            .bind(switchyard_canonical::now_ms())
            .bind(transaction_event_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_transaction_event_is_queued_once_and_stays_unsent_until_marked() {
        for store in crate::test_stores().await {
            let txns = CardTransactions::open(&store).await.expect("ddl");
            let card = format!("card-{}-{}", std::process::id(), switchyard_canonical::now_ms());
            let row = |id: &str| CardTransactionRow {
                transaction_event_id: format!("lithic:{card}:{id}"),
                card_id: card.clone(),
                payload: "{}".into(),
                correlation_id: "c".into(),
            };
            assert_eq!(txns.record(&row("auth"), "{}").await.expect("record"), Recorded::New);
            assert_eq!(txns.record(&row("auth"), "{}").await.expect("record"), Recorded::Duplicate, "a redelivery queues nothing");
            assert_eq!(txns.record(&row("clear"), "{}").await.expect("record"), Recorded::New);
            let unsent = txns.unsent(&card).await.expect("unsent");
            assert_eq!(unsent.len(), 2);
            txns.mark_sent(&unsent[0].transaction_event_id).await.expect("sent");
            assert_eq!(txns.unsent(&card).await.expect("unsent").len(), 1, "the other stays queued");
            assert_eq!(txns.record(&row("auth"), "{}").await.expect("record"), Recorded::Duplicate, "sent or not, never queued again");
        }
    }
}
