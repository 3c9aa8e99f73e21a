//! The store's record of message positions, as the bus's [`PositionSink`]:
//! what makes `switchyard trace` read a flow's records instead of whole
//! topics. Here, not in the worker, so the webhook ingester and the
//! reconciler record positions too (the store and the bus know nothing of
//! each other; this crate already depends on the bus).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use switchyard_bus::{Direction, MessagePosition, PositionFuture, PositionSink};
use switchyard_store::positions::{Position, CONSUMED, PUBLISHED};
use switchyard_store::Store;

pub struct StorePositions {
    store: Store,
    /// Topics this process already marked as indexed.
    marked: Arc<Mutex<HashSet<String>>>,
}

impl StorePositions {
    pub fn new(store: Store) -> Self {
        Self { store, marked: Arc::new(Mutex::new(HashSet::new())) }
    }
}

impl PositionSink for StorePositions {
    fn record(&self, at: MessagePosition) -> PositionFuture<'_> {
        Box::pin(async move {
            // Once per topic and process; afterwards a lookup, no allocation.
            let first = {
                let mut marked = self.marked.lock().unwrap_or_else(|e| e.into_inner());
                !marked.contains(&at.topic) && marked.insert(at.topic.clone())
            };
            if first {
                // Not awaited: the publish that brought us here must not
                // wait on the store. On SQLite a writer holding the database
                // until that very publish is acknowledged (the reconciler's
                // ingest transaction) stalled it for the whole busy timeout,
                // then the mark failed. Positions recorded a moment before
                // the mark are read like any other.
                let (store, marked, topic) = (self.store.clone(), self.marked.clone(), at.topic.clone());
                tokio::spawn(async move {
                    if let Err(e) = store.mark_topic_indexed(&topic).await {
                        tracing::warn!(%topic, error = %e, "topic not marked as indexed; traces read it in full");
                        marked.lock().unwrap_or_else(|e| e.into_inner()).remove(&topic);
                    }
                });
            }
            let action = match at.direction {
                Direction::Consumed => CONSUMED,
                Direction::Published => PUBLISHED,
            };
            let position = Position { topic: at.topic, partition: at.partition, offset: at.offset };
            self.store.position_later(action, &position, &at.key, &at.correlation_id).await;
        })
    }
}
