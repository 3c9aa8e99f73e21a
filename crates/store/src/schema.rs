//! DDL in the subset PostgreSQL and SQLite share.

use sqlx::AnyPool;
use std::time::Duration;

const STATEMENTS: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS idempotency_records (
        domain TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        subject_id TEXT NOT NULL,
        state TEXT NOT NULL,
        provider TEXT,
        provider_key TEXT,
        outcome TEXT,
        attempts BIGINT NOT NULL,
        correlation_id TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL,
        updated_at_ms BIGINT NOT NULL,
        PRIMARY KEY (domain, idempotency_key)
    )",
    "CREATE TABLE IF NOT EXISTS audit_log (
        at_ms BIGINT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        subject_id TEXT NOT NULL,
        correlation_id TEXT NOT NULL,
        detail TEXT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS audit_log_subject ON audit_log (subject_id, at_ms)",
    // `switchyard trace <correlation-id>` looks entries up by correlation id.
    "CREATE INDEX IF NOT EXISTS audit_log_correlation ON audit_log (correlation_id)",
    // `switchyard scorecard` reads one action (vendor_call) over a window;
    // without this it scans every entry of every action since the start.
    "CREATE INDEX IF NOT EXISTS audit_log_action ON audit_log (action, at_ms)",
    // Since when each topic's message positions are recorded (positions.rs).
    "CREATE TABLE IF NOT EXISTS indexed_topics (
        topic TEXT PRIMARY KEY,
        since_ms BIGINT NOT NULL
    )",
    // One row per DLQ position sent back by `switchyard dlq replay`.
    "CREATE TABLE IF NOT EXISTS dlq_replays (
        dlq_topic TEXT NOT NULL,
        dlq_partition BIGINT NOT NULL,
        dlq_offset BIGINT NOT NULL,
        target_topic TEXT NOT NULL,
        message_key TEXT NOT NULL,
        state TEXT NOT NULL,
        actor TEXT NOT NULL,
        replayed_at_ms BIGINT NOT NULL,
        replays BIGINT NOT NULL,
        target_partition BIGINT,
        target_offset BIGINT,
        PRIMARY KEY (dlq_topic, dlq_partition, dlq_offset)
    )",
];

/// Columns added after a table's first release: `(table, column, type)`.
/// Applied to databases created by an older version, in order.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    // The attempt lease and the key's age (see records.rs and lease.rs).
    ("idempotency_records", "lease_owner", "TEXT"),
    ("idempotency_records", "lease_epoch", "BIGINT NOT NULL DEFAULT 0"),
    ("idempotency_records", "lease_until_ms", "BIGINT NOT NULL DEFAULT 0"),
    ("idempotency_records", "key_since_ms", "BIGINT"),
];

async fn add_columns(pool: &AnyPool, is_sqlite: bool) -> Result<(), sqlx::Error> {
    for (table, column, kind) in ADDED_COLUMNS {
        if is_sqlite {
            // SQLite has no ADD COLUMN IF NOT EXISTS: ask the catalog first.
            let present: Option<(i64,)> = sqlx::query_as(&format!("SELECT 1 FROM pragma_table_info('{table}') WHERE name = '{column}'"))
                .fetch_optional(pool)
                .await?;
            if present.is_none() {
                sqlx::query(&format!("ALTER TABLE {table} ADD COLUMN {column} {kind}")).execute(pool).await?;
            }
        } else {
            sqlx::query(&format!("ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {kind}")).execute(pool).await?;
        }
    }
    Ok(())
}

/// Runs `CREATE ... IF NOT EXISTS` statements. Concurrent first starts race
/// on PostgreSQL's catalog even with IF NOT EXISTS; a second try sees the
/// winner's table, so each statement is tried up to six times.
pub(crate) async fn create_all(pool: &AnyPool, statements: &[&str]) -> Result<(), sqlx::Error> {
    for statement in statements {
        let mut tries = 0;
        loop {
            match sqlx::query(statement).execute(pool).await {
                Ok(_) => break,
                Err(e) if tries < 5 => {
                    tries += 1;
                    tracing::debug!(error = %e, "schema statement raced; retrying");
                    tokio::time::sleep(Duration::from_millis(50 * tries)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

pub(crate) async fn apply(pool: &AnyPool, is_sqlite: bool) -> Result<(), sqlx::Error> {
    if is_sqlite {
        sqlx::query("PRAGMA journal_mode = WAL").execute(pool).await?;
        sqlx::query("PRAGMA synchronous = NORMAL").execute(pool).await?;
    }
    create_all(pool, STATEMENTS).await?;
    let mut tries = 0;
    while let Err(e) = add_columns(pool, is_sqlite).await {
        // Concurrent first starts race here too; a second try sees the column.
        tries += 1;
        if tries > 5 {
            return Err(e);
        }
        tokio::time::sleep(Duration::from_millis(50 * tries)).await;
    }
    Ok(())
}
