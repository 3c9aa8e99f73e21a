//! Payments initiated through open banking: the worker's record of each
//! payment (`ob_payments`), one row per our payment id.
//!
//! - `create_key`: the INITIATE_PAYMENT idempotency key the payment was
//!   created under (the provider's idempotency key too). A redelivery under
//!   that key finds the row and calls no one; another key for the same
//!   payment id is refused by the worker.
//! - `progress`: the canonical `PaymentProgress` as JSON; `status` beside it
//!   for queries; `terminal` once SETTLED or FAILED (polling stops).
//! - `seq`: the number of status events the payment has published, the
//!   tail of their event ids. `pending_events`: events stored with the
//!   change that made them and cleared once the broker acknowledged them,
//!   so a crash between the two republishes the same events under the same
//!   ids and never loses one.
//! - `version`: every change compares and sets it, so of two instances
//!   that polled the same status one stores it and the other drops its copy.

use crate::{Store, StoreError};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

const DDL: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS ob_payments (
        payment_id TEXT NOT NULL PRIMARY KEY,
        consent_id TEXT NOT NULL,
        provider TEXT NOT NULL,
        provider_payment_id TEXT NOT NULL,
        create_key TEXT NOT NULL,
        amount_minor BIGINT NOT NULL,
        currency TEXT NOT NULL,
        status TEXT NOT NULL,
        progress TEXT NOT NULL,
        terminal BIGINT NOT NULL,
        seq BIGINT NOT NULL,
        pending_events TEXT,
        created_answer TEXT NOT NULL,
        correlation_id TEXT NOT NULL,
        version BIGINT NOT NULL,
        next_poll_at_ms BIGINT NOT NULL,
        created_at_ms BIGINT NOT NULL,
        updated_at_ms BIGINT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS ob_payments_due ON ob_payments (terminal, next_poll_at_ms)",
    // Provider webhooks name a payment by the provider's id.
    "CREATE INDEX IF NOT EXISTS ob_payments_by_provider_id ON ob_payments (provider, provider_payment_id)",
];

/// A payment as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRow {
    pub payment_id: String,
    pub consent_id: String,
    pub provider: String,
    pub provider_payment_id: String,
    pub create_key: String,
    pub amount_minor: i64,
    pub currency: String,
    pub status: String,
    /// The canonical `PaymentProgress` as JSON.
    pub progress: String,
    pub terminal: bool,
    pub seq: i64,
    /// Events stored, not yet acknowledged by the broker (JSON array).
    pub pending_events: Option<String>,
    /// The INITIATE_PAYMENT's answer (JSON), repeated to a redelivery.
    pub created_answer: String,
    /// The INITIATE_PAYMENT's correlation id: every status event carries it,
    /// so a trace follows the payment for days.
    pub correlation_id: String,
    pub version: i64,
    pub next_poll_at_ms: i64,
}

const COLUMNS: &str = "payment_id, consent_id, provider, provider_payment_id, create_key, amount_minor, currency, status, progress, \
    terminal, seq, pending_events, created_answer, correlation_id, version, next_poll_at_ms";

fn row(r: &AnyRow) -> Result<PaymentRow, sqlx::Error> {
    Ok(PaymentRow {
        payment_id: r.try_get("payment_id")?,
        consent_id: r.try_get("consent_id")?,
        provider: r.try_get("provider")?,
        provider_payment_id: r.try_get("provider_payment_id")?,
        create_key: r.try_get("create_key")?,
        amount_minor: r.try_get("amount_minor")?,
        currency: r.try_get("currency")?,
        status: r.try_get("status")?,
        progress: r.try_get("progress")?,
        terminal: r.try_get::<i64, _>("terminal")? != 0,
        seq: r.try_get("seq")?,
        pending_events: r.try_get("pending_events")?,
        created_answer: r.try_get("created_answer")?,
        correlation_id: r.try_get("correlation_id")?,
        version: r.try_get("version")?,
        next_poll_at_ms: r.try_get("next_poll_at_ms")?,
    })
}

#[derive(Clone)]
pub struct PaymentStore {
    pool: AnyPool,
}

impl PaymentStore {
    /// Creates the table if needed.
    pub async fn open(store: &Store) -> Result<Self, StoreError> {
        let pool = store.pool().clone();
        crate::schema::create_all(&pool, DDL).await?;
        Ok(Self { pool })
    }

    pub async fn load(&self, payment_id: &str) -> Result<Option<PaymentRow>, StoreError> {
        let r = sqlx::query(&format!("SELECT {COLUMNS} FROM ob_payments WHERE payment_id = $1")).bind(payment_id).fetch_optional(&self.pool).await?;
        Ok(r.as_ref().map(row).transpose()?)
    }

    /// The payment `provider` knows as `provider_payment_id` (a webhook's subject).
    pub async fn find_by_provider_id(&self, provider: &str, provider_payment_id: &str) -> Result<Option<PaymentRow>, StoreError> {
        let r = sqlx::query(&format!("SELECT {COLUMNS} FROM ob_payments WHERE provider = $1 AND provider_payment_id = $2"))
            .bind(provider)
            .bind(provider_payment_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(r.as_ref().map(row).transpose()?)
    }

    /// Records a payment just created; false when the payment id exists already.
    pub async fn insert(&self, p: &PaymentRow) -> Result<bool, StoreError> {
        let now = switchyard_canonical::now_ms();
        let q = format!(
            "INSERT INTO ob_payments ({COLUMNS}, created_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $17) ON CONFLICT (payment_id) DO NOTHING"
        );
        let done = sqlx::query(&q)
            .bind(&p.payment_id)
            .bind(&p.consent_id)
            .bind(&p.provider)
            .bind(&p.provider_payment_id)
            .bind(&p.create_key)
            .bind(p.amount_minor)
            .bind(&p.currency)
            .bind(&p.status)
            .bind(&p.progress)
            .bind(i64::from(p.terminal))
            .bind(p.seq)
            .bind(p.pending_events.clone())
            .bind(&p.created_answer)
            .bind(&p.correlation_id)
            .bind(p.version)
            .bind(p.next_poll_at_ms)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Writes a change (status, progress, seq, pending events, next poll),
    /// comparing and setting `version`. False: another instance changed it.
    pub async fn update(&self, p: &PaymentRow, expected_version: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE ob_payments SET status = $2, progress = $3, terminal = $4, seq = $5, pending_events = $6, version = $7, \
             next_poll_at_ms = $8, updated_at_ms = $9 WHERE payment_id = $1 AND version = $10",
        )
        .bind(&p.payment_id)
        .bind(&p.status)
        .bind(&p.progress)
        .bind(i64::from(p.terminal))
        .bind(p.seq)
        .bind(p.pending_events.clone())
        .bind(p.version)
        .bind(p.next_poll_at_ms)
        .bind(switchyard_canonical::now_ms())
        .bind(expected_version)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Payments due (`next_poll_at_ms` passed) that are still open or whose
    /// events wait to be published, longest due first. Every row handled is
    /// moved on (polled, flushed or postponed), so none holds up the rest.
    pub async fn due(&self, now_ms: i64, limit: i64) -> Result<Vec<PaymentRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM ob_payments WHERE next_poll_at_ms <= $1 AND (terminal = 0 OR pending_events IS NOT NULL) \
             ORDER BY next_poll_at_ms LIMIT $2"
        ))
        .bind(now_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(row).collect::<Result<_, _>>()?)
    }
}
