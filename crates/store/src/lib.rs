//! Durable state of switchyard: idempotency records (which also record the
//! vendor attempt before the call) and the append-only audit log.
//!
//! PostgreSQL in production; SQLite as the embedded default so the quick
//! start needs no database server. Both speak through sqlx's `Any` driver with
//! one portable SQL dialect (`$N` placeholders, `ON CONFLICT`).
//!
//! # Layout
//! - [`records`]: the idempotency record, its states and the claim rule.
//! - [`lease`]: the attempt lease that fences vendor calls and reroutes.
//! - [`batch`]: group commit: concurrent requests share one statement.
//! - [`schema`]: DDL, applied at connect.
//! - [`recon`]: the reconciler's facts, due subjects and discrepancies (own pool and DDL).
//! - [`audit`]: group-committed audit entries and the trail `switchyard trace` reads.
//! - [`webhooks`]: webhook dedup by (provider, event id), with a publish lease.
//! - [`onboarding`]: onboarding flows, applied inputs and their outbox (own DDL).
//! - [`pii`]: subjects' wrapped data keys for personal data at rest, and erasure (own DDL).
//! - [`pii_erase`]: erasure of an applicant, a payout's beneficiary or a cardholder across the tables.
//! - [`cards`]: cards (versioned, compare-and-set), the commands applied to them and their event outbox (own DDL).
//! - [`card_transactions`]: card transaction events, recorded once and queued for `cards.transactions.v1` (own DDL).
//! - [`openbanking`]: open banking consents, their sealed tokens and sync cursors (own DDL).
//! - [`positions`]: where each consumed and published message is, as audit rows, for `switchyard trace`.
//! - [`replays`]: which DLQ positions `switchyard dlq replay` already sent back.
//! - [`gateway`]: the HTTP gateway's idempotent requests and resource projection (own DDL).
//! - [`gateway_callbacks`]: who created each gateway resource, and the outbox of its teams' signed callbacks (own DDL).

pub mod audit;
mod card_disputes;
pub mod card_transactions;
pub mod card_turns;
pub mod cards;
pub mod gateway;
mod gateway_batches;
pub mod gateway_callbacks;
mod batch;
mod bulk;
pub mod lease;
pub mod onboarding;
pub mod pii;
pub mod pii_erase;
pub mod positions;
pub mod openbanking;
pub mod openbanking_callbacks;
pub mod openbanking_payments;
pub mod records;
pub mod retry_rounds;
pub mod recon;
pub mod replays;
mod schema;
pub mod webhooks;

pub use audit::AuditRecord;
pub use lease::Acquired;
pub use records::{Claim, Completion, Record, RecordState};
pub use replays::DlqPosition;

use batch::Batcher;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database URL {0:?} is neither postgres:// nor sqlite:")]
    UnsupportedUrl(String),
    #[error("store is shutting down")]
    Closed,
}

/// Claims and completions wait at most this many in one statement.
const MAX_BATCH: usize = 256;
/// Batches of one kind in flight at once on PostgreSQL. One: the next batch
/// gathers everything that queued meanwhile, so under load batches grow
/// instead of multiplying. Against three, the benchmark measured 15-20 %
/// less server CPU per payout and 7-15 % more payouts/s; claims,
/// completions and audit entries still have a statement in flight each.
const PARALLEL_BATCHES: usize = 1;

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    claims: Batcher<Claim, Record>,
    completions: Batcher<Completion, ()>,
    /// Audit entries of the hot path (vendor calls, routing), group-committed.
    audits: Batcher<AuditRecord, ()>,
}

impl Store {
    /// Connects and applies the schema. `postgres://...` or `sqlite:path` /
    /// `sqlite::memory:`.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let is_sqlite = url.starts_with("sqlite:");
        if !is_sqlite && !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
            return Err(StoreError::UnsupportedUrl(url.to_owned()));
        }
        if !is_sqlite {
            // The pool retries a refused connection until its acquire
            // timeout and then says only "pool timed out": one direct
            // attempt first fails fast and says where and why.
            const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
            use sqlx::Connection as _;
            // host:port only: the URL may carry a password.
            let target = url
                .parse::<sqlx::postgres::PgConnectOptions>()
                .map(|o| format!("{}:{}", o.get_host(), o.get_port()))
                .unwrap_or_else(|_| "the configured host".to_owned());
            let unreachable = |kind, why: String| {
                StoreError::Database(sqlx::Error::Io(std::io::Error::new(kind, format!("PostgreSQL at {target}: {why}"))))
            };
            match tokio::time::timeout(CONNECT_TIMEOUT, sqlx::AnyConnection::connect(url)).await {
                Ok(Ok(probe)) => {
                    let _ = probe.close().await;
                }
                Ok(Err(sqlx::Error::Io(e))) => return Err(unreachable(e.kind(), e.to_string())),
                Ok(Err(e)) => return Err(unreachable(std::io::ErrorKind::Other, e.to_string())),
                Err(_) => return Err(unreachable(std::io::ErrorKind::TimedOut, format!("no answer within {CONNECT_TIMEOUT:?}"))),
            }
        }
        // SQLite allows one writer; one connection also keeps `:memory:` a single database.
        let max = if is_sqlite { 1 } else { 8 };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(10))
            // No ping before each batch: it cost a round trip per statement.
            // A connection that died since its last use fails its batch,
            // which callers retry like any other store error; the pool then
            // replaces it.
            .test_before_acquire(false)
            .connect(url)
            .await?;
        schema::apply(&pool, is_sqlite).await?;
        let parallel = if is_sqlite { 1 } else { PARALLEL_BATCHES };
        let claims = Batcher::spawn(pool.clone(), MAX_BATCH, parallel, records::claim_batch);
        let completions = Batcher::spawn(pool.clone(), MAX_BATCH, parallel, records::complete_batch);
        // One audit batch at a time: claims and completions keep their
        // connections, and a large multi-row insert keeps up with both.
        let audits = Batcher::spawn(pool.clone(), audit::MAX_AUDIT_BATCH, 1, audit::audit_batch);
        Ok(Self { pool, claims, completions, audits })
    }

    /// Records the intent to call `claim.provider` before the call, or returns
    /// the record that already exists for this key (see [`records`]).
    pub async fn claim(&self, claim: Claim) -> Result<Record, StoreError> {
        self.claims.submit(claim).await
    }

    /// Stores the final outcome of a claimed key.
    pub async fn complete(&self, completion: Completion) -> Result<(), StoreError> {
        self.completions.submit(completion).await
    }

    pub async fn record(&self, domain: &str, idempotency_key: &str) -> Result<Option<Record>, StoreError> {
        let row: Option<AnyRow> = sqlx::query(&format!(
            "SELECT {} FROM idempotency_records WHERE domain = $1 AND idempotency_key = $2",
            records::COLUMNS
        ))
        .bind(domain)
        .bind(idempotency_key)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| records::from_row(&r)).transpose()
    }

    /// Appends to the audit log: who did what to which subject, and why.
    pub async fn audit(&self, entry: AuditEntry<'_>) -> Result<(), StoreError> {
        use records::{Bind, Sql};
        let mut q = Sql::new("INSERT INTO audit_log (at_ms, actor, action, subject_id, correlation_id, detail) VALUES ");
        q.tuple([
            Bind::Int(switchyard_canonical::now_ms()),
            Bind::Text(Some(entry.actor)),
            Bind::Text(Some(entry.action)),
            Bind::Text(Some(entry.subject_id)),
            Bind::Text(Some(entry.correlation_id)),
            Bind::Text(Some(entry.detail)),
        ]);
        q.query().execute(&self.pool).await?;
        Ok(())
    }

    pub async fn audit_count(&self, subject_id: &str) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM audit_log WHERE subject_id = $1")
            .bind(subject_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>("n")?)
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// PostgreSQL's statistics for the idempotency table: live rows, dead
    /// row versions and whether autovacuum runs. A benchmark reports them:
    /// every completion leaves a dead version, and an unvacuumed table makes
    /// each write cost the server more. `None` on SQLite.
    pub async fn records_health(&self) -> Result<Option<RecordsHealth>, StoreError> {
        if bulk::Dialect::of(&self.pool) == bulk::Dialect::Sqlite {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT n_live_tup AS live, n_dead_tup AS dead, current_setting('autovacuum') AS autovacuum \
             FROM pg_stat_user_tables WHERE relname = 'idempotency_records'",
        )
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(RecordsHealth {
            live: row.try_get("live")?,
            dead: row.try_get("dead")?,
            autovacuum: row.try_get::<String, _>("autovacuum")? == "on",
        }))
    }
}

impl Store {
    /// Vacuums the tables every payout writes (PostgreSQL only), as the
    /// server's autovacuum would: for benchmarks on a server that runs
    /// without it, where dead row versions pile up and each write costs more
    /// by the minute.
    pub async fn vacuum_hot_tables(&self) -> Result<(), StoreError> {
        if bulk::Dialect::of(&self.pool) == bulk::Dialect::Sqlite {
            return Ok(());
        }
        for table in ["idempotency_records", "audit_log"] {
            sqlx::query(&format!("VACUUM (ANALYZE) {table}")).execute(&self.pool).await?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordsHealth {
    pub live: i64,
    pub dead: i64,
    pub autovacuum: bool,
}

/// One line of the append-only audit log.
#[derive(Debug, Clone, Copy)]
pub struct AuditEntry<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub subject_id: &'a str,
    pub correlation_id: &'a str,
    /// Short JSON; never secrets or full vendor payloads.
    pub detail: &'a str,
}

/// SQLite in memory and, where one listens, the PostgreSQL of `DATABASE_URL`:
/// every store test runs on both dialects (PostgreSQL is required in CI).
#[cfg(test)]
pub(crate) async fn test_stores() -> Vec<Store> {
    let mut stores = vec![Store::connect("sqlite::memory:").await.expect("sqlite")];
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    match Store::connect(&url).await {
        Ok(pg) => stores.push(pg),
        Err(e) if std::env::var("CI").is_ok() => panic!("PostgreSQL required in CI: {e}"),
        Err(e) => eprintln!("skipping PostgreSQL: {e}"),
    }
    stores
}
