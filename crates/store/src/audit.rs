//! The audit log beyond single inserts: group-committed entries for the hot
//! path (one per vendor call, the first also carrying the routing decision)
//! and the read `switchyard
//! trace` uses.
//!
//! Entries from [`Store::audit_later`] are stamped when they are queued, so
//! the log orders events as they happened, not as batches committed.
//!
//! Capacity: one batch in flight at a time commits about 45,000 entries/s
//! to the local PostgreSQL in a debug build (`audit_throughput` below), about
//! 45,000 payouts/s at one entry each:
//! above what the worker reaches, so the queue does not become its limit.

use crate::bulk::{self, Column, Dialect, Kind};
use crate::records::{Bind, Sql};
use crate::{AuditEntry, Store, StoreError};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use sqlx::{AnyPool, Row};

/// Audit entries wait at most this many in one statement (6 binds each, far
/// below PostgreSQL's 65,535 bind limit).
pub(crate) const MAX_AUDIT_BATCH: usize = 512;

const AUDIT_COLUMNS: &[Column] = &[
    ("at_ms", Kind::Int),
    ("actor", Kind::Text),
    ("action", Kind::Text),
    ("subject_id", Kind::Text),
    ("correlation_id", Kind::Text),
    ("detail", Kind::Text),
];

/// An owned audit entry, queued for the next batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub subject_id: String,
    pub correlation_id: String,
    pub detail: String,
}

impl AuditRecord {
    fn from_entry(entry: AuditEntry<'_>) -> Self {
        Self {
            at_ms: switchyard_canonical::now_ms(),
            actor: entry.actor.to_owned(),
            action: entry.action.to_owned(),
            subject_id: entry.subject_id.to_owned(),
            correlation_id: entry.correlation_id.to_owned(),
            detail: entry.detail.to_owned(),
        }
    }
}

/// A flush marker: queued like an entry, never written.
fn is_marker(r: &AuditRecord) -> bool {
    r.actor.is_empty()
}

pub(crate) fn audit_batch<'a>(pool: &'a AnyPool, rows: &'a [AuditRecord]) -> BoxFuture<'a, Result<Vec<()>, sqlx::Error>> {
    async move {
        let entries: Vec<&AuditRecord> = rows.iter().filter(|r| !is_marker(r)).collect();
        if entries.is_empty() {
            return Ok(vec![(); rows.len()]);
        }
        let values = entries.iter().map(|r| {
            vec![
                Bind::Int(r.at_ms),
                Bind::Text(Some(&r.actor)),
                Bind::Text(Some(&r.action)),
                Bind::Text(Some(&r.subject_id)),
                Bind::Text(Some(&r.correlation_id)),
                Bind::Text(Some(&r.detail)),
            ]
        });
        let (insert, prepared) = bulk::insert(Dialect::of(pool), "audit_log", AUDIT_COLUMNS, values, "");
        if let Err(e) = insert.query().persistent(prepared).execute(pool).await {
            // Nobody waits for these rows; say loudly that they are missing,
            // unless the batcher is about to split the batch and retry its
            // halves (see `batch::run_isolating`): then only the final
            // failures are losses.
            if rows.len() == 1 || !crate::batch::is_about_the_data(&e) {
                tracing::error!(error = %e, entries = entries.len(), "audit entries not written");
            }
            return Err(e);
        }
        Ok(vec![(); rows.len()])
    }
    .boxed()
}

impl Store {
    /// Queues an audit entry for the next group commit and returns without
    /// waiting for it, so the caller (a payout in flight) never fails or
    /// slows down for its audit trail unless the queue is full. Failed
    /// batches are logged at error level.
    pub async fn audit_later(&self, entry: AuditEntry<'_>) {
        if let Err(e) = self.audits.submit_detached(AuditRecord::from_entry(entry)).await {
            tracing::warn!(error = %e, action = entry.action, "audit entry dropped");
        }
    }

    /// Waits until every entry queued before this call was written (or its
    /// failure logged). Batches run one at a time, so a marker queued now
    /// completes after all of them. A worker calls this after draining, so
    /// a clean shutdown loses no audit entries.
    pub async fn flush_audit(&self) {
        let marker = AuditRecord {
            at_ms: 0,
            actor: String::new(),
            action: String::new(),
            subject_id: String::new(),
            correlation_id: String::new(),
            detail: String::new(),
        };
        if let Err(e) = self.audits.submit(marker).await {
            tracing::warn!(error = %e, "audit queue not flushed");
        }
    }

    /// Every audit entry about any of `ids`, as a subject or a correlation
    /// id, oldest first.
    pub async fn audit_trail(&self, ids: &[&str]) -> Result<Vec<AuditRecord>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut q = Sql::new("SELECT at_ms, actor, action, subject_id, correlation_id, detail FROM audit_log WHERE subject_id IN ");
        q.tuple(ids.iter().map(|id| Bind::Text(Some(id))));
        q.push(" OR correlation_id IN ");
        q.tuple(ids.iter().map(|id| Bind::Text(Some(id))));
        q.push(" ORDER BY at_ms");
        let rows = q.query().persistent(false).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(AuditRecord {
                    at_ms: r.try_get("at_ms")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    subject_id: r.try_get("subject_id")?,
                    correlation_id: r.try_get("correlation_id")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Every entry with `action` at or after `since_ms`, oldest first, as a
    /// stream: a month of vendor calls (`switchyard scorecard`) is millions
    /// of rows, folded as they arrive instead of held at once.
    pub fn audit_since<'a>(&'a self, action: &'a str, since_ms: i64) -> BoxStream<'a, Result<AuditRecord, StoreError>> {
        sqlx::query("SELECT at_ms, actor, action, subject_id, correlation_id, detail FROM audit_log WHERE action = $1 AND at_ms >= $2 ORDER BY at_ms")
            .bind(action)
            .bind(since_ms)
            .fetch(&self.pool)
            .map(|row| {
                let r = row?;
                Ok(AuditRecord {
                    at_ms: r.try_get("at_ms")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    subject_id: r.try_get("subject_id")?,
                    correlation_id: r.try_get("correlation_id")?,
                    detail: r.try_get("detail")?,
                })
            })
            .map(|r: Result<AuditRecord, sqlx::Error>| r.map_err(StoreError::from))
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn queued_entries_are_readable_by_subject_and_correlation() {
        let store = Store::connect("sqlite::memory:").await.expect("sqlite");
        for action in ["route", "vendor_call"] {
            let entry = AuditEntry { actor: "t", action, subject_id: "po-1", correlation_id: "corr-1", detail: "{}" };
            store.audit_later(entry).await;
        }
        let other = AuditEntry { actor: "t", action: "x", subject_id: "po-2", correlation_id: "corr-2", detail: "{}" };
        store.audit_later(other).await;
        store.flush_audit().await;
        let by_subject = store.audit_trail(&["po-1"]).await.expect("read");
        assert_eq!(by_subject.iter().map(|r| r.action.as_str()).collect::<Vec<_>>(), ["route", "vendor_call"]);
        assert_eq!(store.audit_trail(&["corr-2"]).await.expect("read").len(), 1);
        assert_eq!(store.audit_trail(&[]).await.expect("read"), Vec::new());
    }

    #[tokio::test]
    async fn entries_since_a_time_are_streamed_by_action_oldest_first() {
        let store = Store::connect("sqlite::memory:").await.expect("sqlite");
        for (at_ms, action) in [(300, "vendor_call"), (100, "vendor_call"), (200, "route"), (50, "vendor_call")] {
            let rows = [AuditRecord { at_ms, actor: "t".into(), action: action.into(), subject_id: "s".into(), correlation_id: "c".into(), detail: "{}".into() }];
            audit_batch(&store.pool, &rows).await.expect("insert");
        }
        let got: Vec<i64> = store.audit_since("vendor_call", 100).map(|r| r.expect("row").at_ms).collect().await;
        assert_eq!(got, [100, 300]);
    }

    /// The scorecard reads a month of one action out of every action ever
    /// logged: it must be an index range, not a scan of the whole log.
    #[tokio::test]
    async fn entries_of_one_action_since_a_time_are_read_through_an_index() {
        let store = Store::connect("sqlite::memory:").await.expect("sqlite");
        let plan = explain(&store).await;
        assert!(plan.iter().any(|step| step.contains("INDEX audit_log_action")), "{plan:?}");
        assert!(!plan.iter().any(|step| step.contains("TEMP B-TREE")), "sorted by the index, not afterwards: {plan:?}");
    }

    async fn explain(store: &Store) -> Vec<String> {
        use sqlx::Row;
        let rows = sqlx::query("EXPLAIN QUERY PLAN SELECT at_ms FROM audit_log WHERE action = 'vendor_call' AND at_ms >= 100 ORDER BY at_ms")
            .fetch_all(&store.pool)
            .await
            .expect("explain");
        rows.iter().map(|r| r.try_get::<String, _>("detail").unwrap_or_default()).collect()
    }
}

#[cfg(test)]
mod throughput {
    use super::*;

    /// `cargo test -p switchyard-store audit_throughput -- --ignored --nocapture`
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    #[ignore = "measurement, not a check"]
    async fn audit_throughput() {
        let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let store = Store::connect(&url).await.expect("pg");
        let subject = format!("bench-{}", switchyard_canonical::now_ms());
        let n = 50_000;
        let started = std::time::Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for t in 0..100 {
            let (store, subject) = (store.clone(), subject.clone());
            tasks.spawn(async move {
                for i in 0..n / 100 {
                    let detail = format!("{{\"provider\":\"stripe\",\"operation\":\"create\",\"result\":\"ok\",\"http_status\":200,\"latency_ms\":3,\"request_id\":\"req_{t}_{i}\"}}");
                    let entry = AuditEntry { actor: "payout-worker", action: "vendor_call", subject_id: &subject, correlation_id: "corr", detail: &detail };
                    store.audit_later(entry).await;
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        let queued = started.elapsed();
        store.flush_audit().await;
        assert_eq!(store.audit_count(&subject).await.expect("count"), n as i64);
        let total = started.elapsed();
        eprintln!("{n} audit entries: queued in {queued:?}, committed in {total:?} = {:.0}/s", n as f64 / total.as_secs_f64());
    }
}
