//! Personal data at rest: each subject's wrapped data key, and erasure.
//!
//! - `pii_subject_keys`: one row per data subject (an applicant's customer
//!   id): their data key, wrapped under a key-encryption key the store never
//!   sees (see `switchyard_adapters::envelope`). Rows holding that subject's
//!   personal data (onboarding flows, their outbox) are sealed under it.
//! - [`PiiKeys::erase`] crypto-shreds a subject: it deletes the wrapped key,
//!   so every sealed copy (this table's backups, replicas, dumps) is
//!   unreadable; it also blanks the rows it knows hold that subject's data,
//!   which covers rows written while encryption was off. The audit log is
//!   left as it is (its entries hold ids, states and reasons, no personal
//!   data) and gains a `pii_erased` entry attesting what was done.

use crate::{Store, StoreError};
use sqlx::{AnyPool, Row};

const DDL: &[&str] = &["CREATE TABLE IF NOT EXISTS pii_subject_keys (
        subject_id TEXT NOT NULL PRIMARY KEY,
        wrapped_key TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL
    )"];

/// What an erased flow row's `data` holds instead of the sealed flow.
pub const ERASED: &str = "erased";

/// What [`PiiKeys::erase`] did; also the detail of its audit entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Erasure {
    /// Whether the subject had a data key (now destroyed).
    pub key_destroyed: bool,
    /// Onboarding flows whose data was blanked and which were ended.
    pub flows: u64,
    /// Outbox messages of those flows whose payload was blanked.
    pub outbox_messages: u64,
    pub at_ms: i64,
}

#[derive(Clone)]
pub struct PiiKeys {
    pool: AnyPool,
}

impl PiiKeys {
    /// Creates the table (and the onboarding tables erasure touches) if needed.
    pub async fn open(store: &Store) -> Result<Self, StoreError> {
        let pool = store.pool().clone();
        crate::schema::create_all(&pool, DDL).await?;
        crate::schema::create_all(&pool, crate::onboarding::DDL).await?;
        Ok(Self { pool })
    }

    /// The subject's wrapped data key, if it has one.
    pub async fn wrapped(&self, subject_id: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT wrapped_key FROM pii_subject_keys WHERE subject_id = $1")
            .bind(subject_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("wrapped_key")).transpose()?)
    }

    /// Stores `wrapped` unless the subject already has a key; returns the
    /// subject's key either way, so two writers racing agree on one key.
    pub async fn wrapped_or_insert(&self, subject_id: &str, wrapped: &str) -> Result<String, StoreError> {
        sqlx::query("INSERT INTO pii_subject_keys (subject_id, wrapped_key, created_at_ms) VALUES ($1, $2, $3) ON CONFLICT (subject_id) DO NOTHING")
            .bind(subject_id)
            .bind(wrapped)
            .bind(switchyard_canonical::now_ms())
            .execute(&self.pool)
            .await?;
        self.wrapped(subject_id).await?.ok_or_else(|| StoreError::Database(sqlx::Error::RowNotFound))
    }

    /// Up to `limit` subjects after `after` (in id order) with their
    /// wrapped keys: a rewrap pages through the table with this.
    pub async fn page(&self, after: &str, limit: i64) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query("SELECT subject_id, wrapped_key FROM pii_subject_keys WHERE subject_id > $1 ORDER BY subject_id LIMIT $2")
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok((r.try_get("subject_id")?, r.try_get("wrapped_key")?))).collect()
    }

    /// Replaces the subject's wrapped key with `new` if it is still `old`;
    /// false when it changed meanwhile (erased, or rewrapped by another run).
    pub async fn replace_wrapped(&self, subject_id: &str, old: &str, new: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE pii_subject_keys SET wrapped_key = $1 WHERE subject_id = $2 AND wrapped_key = $3")
            .bind(new)
            .bind(subject_id)
            .bind(old)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Erases a subject's personal data in one transaction: destroys the
    /// data key, blanks and ends their onboarding flows, blanks those flows'
    /// outbox payloads (unsent ones are marked sent: there is nothing left
    /// to send), and writes a `pii_erased` audit entry by `actor`.
    pub async fn erase(&self, subject_id: &str, actor: &str) -> Result<Erasure, StoreError> {
        let now = switchyard_canonical::now_ms();
        let mut tx = self.pool.begin().await?;
        let key_destroyed = sqlx::query("DELETE FROM pii_subject_keys WHERE subject_id = $1")
            .bind(subject_id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            > 0;
        let outbox_messages = sqlx::query(
            "UPDATE onboarding_outbox SET payload = $1, sent_at_ms = COALESCE(sent_at_ms, $2) \
             WHERE flow_id IN (SELECT flow_id FROM onboarding_flows WHERE subject_id = $3) AND payload <> $1",
        )
        .bind("")
        .bind(now)
        .bind(subject_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let flows = sqlx::query(
            "UPDATE onboarding_flows SET data = $1, terminal = 1, deadline_at_ms = NULL, updated_at_ms = $2 \
             WHERE subject_id = $3 AND data <> $1",
        )
        .bind(ERASED)
        .bind(now)
        .bind(subject_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let erasure = Erasure { key_destroyed, flows, outbox_messages, at_ms: now };
        let detail = serde_json::to_string(&erasure).unwrap_or_default();
        sqlx::query("INSERT INTO audit_log (at_ms, actor, action, subject_id, correlation_id, detail) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(now)
            .bind(actor)
            .bind("pii_erased")
            .bind(subject_id)
            .bind("")
            .bind(detail)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(erasure)
    }
}
