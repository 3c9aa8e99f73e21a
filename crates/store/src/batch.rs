//! Group commit. Each worker task asks for one row; the batcher gathers what
//! is waiting into one statement, so the database sees one round trip per
//! batch instead of per message. Nothing is acknowledged before its
//! statement committed, so batching never weakens the idempotency guarantee.

use crate::StoreError;
use futures::future::BoxFuture;
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

impl<Q: Send + 'static, R: Send + 'static> Batcher<Q, R> {
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
                    match run(&pool, &requests).await {
                        Ok(results) => {
                            for (reply, result) in replies.into_iter().zip(results) {
                                let _ = reply.send(Ok(result));
                            }
                        }
                        Err(e) => {
                            let e = Arc::new(e);
                            for reply in replies {
                                let _ = reply.send(Err(e.clone()));
                            }
                        }
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
        let (reply, wait) = oneshot::channel();
        self.tx.send((request, reply)).await.map_err(|_| StoreError::Closed)?;
        match wait.await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(StoreError::Database(sqlx::Error::Protocol(format!("batch failed: {e}")))),
            Err(_) => Err(StoreError::Closed),
        }
    }
}
