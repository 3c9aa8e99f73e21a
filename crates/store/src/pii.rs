//! Personal data at rest: each subject's wrapped data key, and erasure.
//!
//! - `pii_subject_keys`: one row per data subject (an applicant's customer
//!   id, `payout:<payout id>` for a payout's beneficiary): their data key,
//!   wrapped under a key-encryption key the store never sees (see
//!   `switchyard_adapters::envelope`). Rows holding that subject's personal
//!   data (onboarding flows, their outbox, the payout commands the
//!   reconciler keeps) are sealed under it.
//! - [`PiiKeys::erase`] and [`PiiKeys::erase_subject`] (in `pii_erase.rs`)
//!   crypto-shred a subject: they delete the wrapped key, so every sealed
//!   copy (this table's backups, replicas, dumps) is unreadable; they also
//!   blank the rows known to hold that subject's data, which covers rows
//!   written while encryption was off, and replace vendor texts about them
//!   in the audit log and stored outcomes. The audit trail's facts (ids,
//!   states, amounts, timings) stay, and it gains a `pii_erased` entry
//!   attesting what was done.

use crate::records::{Bind, Sql};
use crate::{Store, StoreError};
use sqlx::{AnyPool, Row};
use std::collections::HashMap;

/// Subjects per statement when keys are read or written in bulk (3 binds a
/// row, far below either backend's limit).
const KEY_CHUNK: usize = 1000;

const DDL: &[&str] = &["CREATE TABLE IF NOT EXISTS pii_subject_keys (
        subject_id TEXT NOT NULL PRIMARY KEY,
        wrapped_key TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL
    )"];

/// What an erased flow row's `data` holds instead of the sealed flow.
pub const ERASED: &str = "erased";

/// What an erasure did; also the detail of its `pii_erased` audit entry
/// (kinds, counts and table names: no personal value).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Erasure {
    /// `applicant`, `payout` or `card`.
    pub kind: &'static str,
    /// Whether the subject had a data key (now destroyed).
    pub key_destroyed: bool,
    /// Onboarding flows whose data was blanked and which were ended.
    pub flows: u64,
    /// Outbox messages of those flows whose payload was blanked.
    pub outbox_messages: u64,
    /// Payout commands kept for reconciliation whose personal part was dropped.
    pub commands: u64,
    /// Stored outcomes whose error message (vendor text) was replaced.
    pub outcome_texts: u64,
    /// The subject's audit entries whose free texts were replaced.
    pub audit_texts: u64,
    /// Gateway views (an applicant's AML screenings) whose matched names were replaced.
    pub gateway_views: u64,
    /// Where erasure looked (the tables of this database it reached).
    pub tables: Vec<&'static str>,
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

    /// The wrapped keys of those of `subjects` that have one, a round trip
    /// per thousand: the reconciler seals a batch of payouts at once.
    pub async fn wrapped_many(&self, subjects: &[&str]) -> Result<HashMap<String, String>, StoreError> {
        let mut found = HashMap::with_capacity(subjects.len());
        for chunk in subjects.chunks(KEY_CHUNK) {
            let mut q = Sql::new("SELECT subject_id, wrapped_key FROM pii_subject_keys WHERE subject_id IN ");
            q.tuple(chunk.iter().map(|s| Bind::Text(Some(s))));
            for r in q.query().persistent(false).fetch_all(&self.pool).await? {
                found.insert(r.try_get("subject_id")?, r.try_get("wrapped_key")?);
            }
        }
        Ok(found)
    }

    /// Stores each `(subject, wrapped key)` unless the subject has a key
    /// already (a racing writer's stays; read the winners back with
    /// [`PiiKeys::wrapped_many`]).
    pub async fn insert_many(&self, keys: &[(String, String)]) -> Result<(), StoreError> {
        let now = switchyard_canonical::now_ms();
        for chunk in keys.chunks(KEY_CHUNK) {
            let mut q = Sql::new("INSERT INTO pii_subject_keys (subject_id, wrapped_key, created_at_ms) VALUES ");
            for (i, (subject, wrapped)) in chunk.iter().enumerate() {
                if i > 0 {
                    q.push(", ");
                }
                q.tuple([Bind::Text(Some(subject)), Bind::Text(Some(wrapped)), Bind::Int(now)]);
            }
            q.push(" ON CONFLICT (subject_id) DO NOTHING");
            q.query().persistent(false).execute(&self.pool).await?;
        }
        Ok(())
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Erases an applicant's personal data in one transaction: destroys the
    /// data key, blanks and ends their onboarding flows, blanks those flows'
    /// outbox payloads, redacts vendor texts about them, and writes a
    /// `pii_erased` audit entry by `actor` (see [`crate::pii_erase`]).
    pub async fn erase(&self, subject_id: &str, actor: &str) -> Result<Erasure, StoreError> {
        self.erase_subject(&crate::pii_erase::Subject::Applicant(subject_id.to_owned()), actor).await
    }
}

/// Blanks and ends an applicant's onboarding flows and blanks their outbox
/// payloads (unsent ones are marked sent: there is nothing left to send);
/// returns (flows, outbox messages).
pub(crate) async fn blank_flows(tx: &mut sqlx::Transaction<'_, sqlx::Any>, subject_id: &str, now: i64) -> Result<(u64, u64), StoreError> {
    let outbox_messages = sqlx::query(
        "UPDATE onboarding_outbox SET payload = $1, sent_at_ms = COALESCE(sent_at_ms, $2) \
         WHERE flow_id IN (SELECT flow_id FROM onboarding_flows WHERE subject_id = $3) AND payload <> $1",
    )
    .bind("")
    .bind(now)
    .bind(subject_id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    let flows = sqlx::query(
        "UPDATE onboarding_flows SET data = $1, terminal = 1, deadline_at_ms = NULL, updated_at_ms = $2 \
         WHERE subject_id = $3 AND data <> $1",
    )
    .bind(ERASED)
    .bind(now)
    .bind(subject_id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok((flows, outbox_messages))
}
