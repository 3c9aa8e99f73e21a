//! The store's memory of handled retry records, as the consumer runtime's
//! [`RoundLedger`].

use switchyard_bus::{LedgerFuture, RoundLedger, RoundPosition};
use switchyard_store::retry_rounds::RetryRounds;

pub struct StoreRounds(pub RetryRounds);

impl RoundLedger for StoreRounds {
    fn handled(&self, p: &RoundPosition) -> LedgerFuture<'_, bool> {
        let p = p.clone();
        Box::pin(async move { self.0.handled(&p.topic, p.partition, p.offset, p.not_before_ms).await.map_err(|e| e.to_string()) })
    }

    fn record(&self, p: &RoundPosition) -> LedgerFuture<'_, ()> {
        let p = p.clone();
        Box::pin(async move { self.0.record(&p.topic, p.partition, p.offset, p.not_before_ms).await.map_err(|e| e.to_string()) })
    }
}
