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
    pub(crate) fn spawn(
        pool: AnyPool,
        max_batch: usize,
        run: for<'a> fn(&'a AnyPool, &'a [Q]) -> BoxFuture<'a, Result<Vec<R>, sqlx::Error>>,
    ) -> Self {
        let (tx, mut rx) = mpsc::channel::<(Q, Reply<R>)>(max_batch * 4);
        tokio::spawn(async move {
            let mut requests = Vec::with_capacity(max_batch);
            let mut replies = Vec::with_capacity(max_batch);
            loop {
                let mut pending: Vec<(Q, Reply<R>)> = Vec::with_capacity(max_batch);
                if rx.recv_many(&mut pending, max_batch).await == 0 {
                    return;
                }
                requests.clear();
                replies.clear();
                for (q, r) in pending {
                    requests.push(q);
                    replies.push(r);
                }
                match run(&pool, &requests).await {
                    Ok(results) => {
                        for (reply, result) in replies.drain(..).zip(results) {
                            let _ = reply.send(Ok(result));
                        }
                    }
                    Err(e) => {
                        let e = Arc::new(e);
                        for reply in replies.drain(..) {
                            let _ = reply.send(Err(e.clone()));
                        }
                    }
                }
            }
        });
        Self { tx }
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
