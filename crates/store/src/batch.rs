//! Group commit. Each worker task asks for one row; the batcher gathers what
//! is waiting into one statement, so the database sees one round trip per
//! batch instead of per message. Nothing is acknowledged before its
//! statement committed, so batching never weakens the idempotency guarantee.
//!
//! One statement also means one failure for all: a single row the database
//! refuses (a NUL byte in a text value, an oversized key) would fail every
//! innocent request that happened to share its batch. A batch refused for
//! its data is therefore split in halves until the offending requests stand
//! alone; only they get the error. A connection or pool failure is not about
//! any row, and splitting would only multiply the load on a sick database,
//! so it goes to every caller as before.

use crate::StoreError;
use futures::future::BoxFuture;
use futures::FutureExt;
use sqlx::AnyPool;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

type Reply<R> = oneshot::Sender<Result<R, Arc<sqlx::Error>>>;

/// Executes one batch, returning one result per request in order.
pub(crate) type BatchFn<Q, R> = for<'a> fn(&'a AnyPool, &'a [Q]) -> BoxFuture<'a, Result<Vec<R>, sqlx::Error>>;

pub(crate) struct Batcher<Q, R> {
    tx: mpsc::Sender<(Q, Reply<R>)>,
}

impl<Q, R> Clone for Batcher<Q, R> {
    fn clone(&self) -> Self {
        Self { tx: self.tx.clone() }
    }
}

impl<Q: Send + Sync + 'static, R: Send + 'static> Batcher<Q, R> {
    /// `run` executes one batch and returns one result per request, in order.
    /// Up to `parallel` batches run at once, each on its own connection, so a
    /// batch waiting on the database does not stall the ones behind it.
    pub(crate) fn spawn(
        pool: AnyPool,
        max_batch: usize,
        parallel: usize,
        run: BatchFn<Q, R>,
    ) -> Self {
        let (tx, mut rx) = mpsc::channel::<(Q, Reply<R>)>(max_batch * 4);
        let slots = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
        tokio::spawn(async move {
            loop {
                let Ok(slot) = slots.clone().acquire_owned().await else { return };
                let mut pending: Vec<(Q, Reply<R>)> = Vec::with_capacity(max_batch);
                if rx.recv_many(&mut pending, max_batch).await == 0 {
                    return;
                }
                let pool = pool.clone();
                tokio::spawn(async move {
                    let (requests, replies): (Vec<Q>, Vec<Reply<R>>) = pending.into_iter().unzip();
                    let results = run_isolating(&pool, &requests, run).await;
                    for (reply, result) in replies.into_iter().zip(results) {
                        let _ = reply.send(result);
                    }
                    drop(slot);
                });
            }
        });
        Self { tx }
    }

    /// Queues a request without waiting for its statement: for writes whose
    /// failure must not hold up the caller (the audit trail of vendor calls).
    /// Waits only while the queue is full, so a slow database slows callers
    /// down instead of losing entries; the batch function reports failures.
    pub(crate) async fn submit_detached(&self, request: Q) -> Result<(), StoreError> {
        let (reply, _ignored) = oneshot::channel();
        self.tx.send((request, reply)).await.map_err(|_| StoreError::Closed)
    }

    pub(crate) async fn submit(&self, request: Q) -> Result<R, StoreError> {
        self.submit_queued(request).await?.await
    }

    /// Queues a request, waiting only while the queue is full (as
    /// [`Self::submit_detached`]), and hands back its result to await
    /// later: for a caller that must not wait for the statement but does
    /// act on what it returned.
    pub(crate) async fn submit_queued(&self, request: Q) -> Result<impl std::future::Future<Output = Result<R, StoreError>> + Send + 'static, StoreError> {
        let (reply, wait) = oneshot::channel();
        self.tx.send((request, reply)).await.map_err(|_| StoreError::Closed)?;
        Ok(async move {
            match wait.await {
                Ok(Ok(r)) => Ok(r),
                Ok(Err(e)) => Err(StoreError::Database(sqlx::Error::Protocol(format!("batch failed: {e}")))),
                Err(_) => Err(StoreError::Closed),
            }
        })
    }
}

/// Runs `requests` as one batch; if the database refuses the batch for its
/// data, runs each half on its own, recursively, so that only the requests
/// it refuses on their own get the error. Returns one result per request.
///
/// Re-running a half is safe: a failed statement changed nothing, and every
/// batch function is idempotent for requests an earlier statement of the
/// same batch did apply (claims conflict and read back, completions skip
/// completed rows). A batch with k bad requests among n costs about
/// 2·k·log2(n) extra statements, paid only when something is wrong.
fn run_isolating<'a, Q: Send + Sync, R: Send + 'a>(
    pool: &'a AnyPool,
    requests: &'a [Q],
    run: BatchFn<Q, R>,
) -> BoxFuture<'a, Vec<Result<R, Arc<sqlx::Error>>>> {
    async move {
        match run(pool, requests).await {
            Ok(results) => results.into_iter().map(Ok).collect(),
            Err(e) if requests.len() > 1 && is_about_the_data(&e) => {
                tracing::warn!(error = %e, requests = requests.len(), "batch refused for its data; splitting it to find the rows");
                let (left, right) = requests.split_at(requests.len() / 2);
                let mut results = run_isolating(pool, left, run).await;
                results.extend(run_isolating(pool, right, run).await);
                results
            }
            Err(e) => {
                let e = Arc::new(e);
                requests.iter().map(|_| Err(e.clone())).collect()
            }
        }
    }
    .boxed()
}

/// Whether the database refused the statement because of the values in it,
/// so that the same statement without some rows may succeed.
pub(crate) fn is_about_the_data(e: &sqlx::Error) -> bool {
    use sqlx::error::ErrorKind;
    match e {
        // A value the driver could not even encode.
        sqlx::Error::Encode(_) => true,
        sqlx::Error::Database(db) => {
            if !matches!(db.kind(), ErrorKind::Other) {
                // Unique, foreign key, not-null and check violations.
                return true;
            }
            let Some(code) = db.code() else { return false };
            match code.len() {
                // PostgreSQL SQLSTATE: 22 data exception (NUL bytes, bad
                // encodings, values out of range), 23 integrity constraint
                // violation, 54 program limit exceeded (an index row too big).
                5 => ["22", "23", "54"].iter().any(|class| code.starts_with(class)),
                // SQLite result codes: SQLITE_TOOBIG, SQLITE_CONSTRAINT (and
                // its extended codes, which keep 19 in the low byte),
                // SQLITE_MISMATCH.
                _ => code.parse::<u32>().is_ok_and(|c| matches!(c & 0xff, 18..=20)),
            }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AuditEntry, Claim, Completion, Store};
    use std::sync::atomic::{AtomicUsize, Ordering};

    async fn postgres() -> Option<Store> {
        let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        match Store::connect(&url).await {
            Ok(pg) => Some(pg),
            Err(e) if std::env::var("CI").is_ok() => panic!("PostgreSQL required in CI: {e}"),
            Err(e) => {
                eprintln!("skipping PostgreSQL: {e}");
                None
            }
        }
    }

    fn claim(run: &str, i: usize, correlation_id: &str) -> Claim {
        Claim {
            domain: "payouts".into(),
            idempotency_key: format!("{run}-{i}"),
            fingerprint: "fp".into(),
            subject_id: format!("po-{run}-{i}"),
            provider: "stripe".into(),
            provider_key: format!("{run}-{i}"),
            correlation_id: correlation_id.into(),
            lease_owner: format!("owner-{run}-{i}"),
            lease_ttl_ms: 10_000,
        }
    }

    /// PostgreSQL text cannot hold NUL: the one claim, completion and audit
    /// entry carrying it fail, the others sharing their batch land.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_nul_in_one_request_fails_only_that_request() {
        let Some(store) = postgres().await else { return };
        let run = format!("nul-{}-{}", std::process::id(), switchyard_canonical::now_ms());
        let poisoned = 17;
        let correlation = |i: usize| if i == poisoned { "corr-\0-poison".to_owned() } else { format!("corr-{i}") };
        // Submitted together so they share batches.
        let claims = futures::future::join_all((0..64).map(|i| store.claim(claim(&run, i, &correlation(i))))).await;
        let failed: Vec<usize> = claims.iter().enumerate().filter(|(_, r)| r.is_err()).map(|(i, _)| i).collect();
        assert_eq!(failed, [poisoned], "only the claim with the NUL fails: {claims:?}");

        let completions = futures::future::join_all((0..64).map(|i| {
            let outcome_json = if i == poisoned { "{\"n\":\"\0\"}".to_owned() } else { format!("{{\"n\":{i}}}") };
            let done = Completion { claim: claim(&run, i, &correlation(i)), outcome_json, attempts: 1 };
            store.complete(done)
        }))
        .await;
        let failed: Vec<usize> = completions.iter().enumerate().filter(|(_, r)| r.is_err()).map(|(i, _)| i).collect();
        assert_eq!(failed, [poisoned], "only the completion with the NUL fails: {completions:?}");

        for i in 0..64 {
            let subject = format!("po-{run}-{i}");
            let entry = AuditEntry { actor: "t", action: "vendor_call", subject_id: &subject, correlation_id: &correlation(i), detail: "{}" };
            store.audit_later(entry).await;
        }
        store.flush_audit().await;
        for i in 0..64 {
            let written = store.audit_count(&format!("po-{run}-{i}")).await.expect("count");
            assert_eq!(written, i64::from(i != poisoned), "audit entry {i}");
        }
    }

    static CALLS: AtomicUsize = AtomicUsize::new(0);

    fn pool_down<'a>(_: &'a AnyPool, _: &'a [u32]) -> BoxFuture<'a, Result<Vec<()>, sqlx::Error>> {
        CALLS.fetch_add(1, Ordering::SeqCst);
        async { Err(sqlx::Error::PoolTimedOut) }.boxed()
    }

    /// An outage is no row's fault: one statement, every caller told.
    #[tokio::test]
    async fn a_connection_failure_is_not_split() {
        sqlx::any::install_default_drivers();
        let pool = sqlx::any::AnyPoolOptions::new().connect_lazy("sqlite::memory:").expect("lazy pool");
        let requests: Vec<u32> = (0..64).collect();
        let results = run_isolating(&pool, &requests, pool_down).await;
        assert_eq!(CALLS.load(Ordering::SeqCst), 1);
        assert_eq!(results.len(), 64);
        assert!(results.iter().all(|r| matches!(r.as_ref().map_err(|e| &**e), Err(sqlx::Error::PoolTimedOut))));
    }
}
