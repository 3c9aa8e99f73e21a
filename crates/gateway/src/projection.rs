//! The projection: payout outcomes in, each payout's current state out, in
//! the store `GET /v1/payouts/{id}` reads. Runs on the shared consumer
//! runtime, so per-key order holds and an offset is committed only once
//! the state is written.

use crate::payouts::{describes_another_command, PayoutView, DOMAIN};
use std::sync::Arc;
use std::time::Duration;
use switchyard_bus::{AvroDecoder, Failure, Handler, Inbound};
use switchyard_canonical::PayoutOutcome;
use switchyard_store::gateway::GatewayStore;

pub(crate) struct PayoutProjection {
    pub(crate) decoder: AvroDecoder,
    pub(crate) store: GatewayStore,
    pub(crate) changed: Arc<tokio::sync::Notify>,
}

impl Handler for PayoutProjection {
    async fn handle(&self, message: Arc<Inbound>) -> Result<(), Failure> {
        let Some(payload) = message.payload.as_deref() else { return Ok(()) };
        let outcome: PayoutOutcome = match self.decoder.decode(payload).await {
            Ok(outcome) => outcome,
            Err(e) if e.is_transient() => return Err(Failure::Retry { reason: e.to_string(), delay: Duration::from_secs(1) }),
            Err(e) => {
                // The worker's answer is on the bus for its owners (core
                // banking, the reconciler); the gateway only loses its view.
                tracing::warn!(topic = %message.topic, partition = message.partition, offset = message.offset, error = %e, "undecodable outcome not projected");
                return Ok(());
            }
        };
        if describes_another_command(&outcome) {
            return Ok(());
        }
        let view = PayoutView::of_outcome(&outcome);
        let body = serde_json::to_string(&view).map_err(|e| Failure::Retry { reason: e.to_string(), delay: Duration::from_secs(1) })?;
        self.store
            .upsert_resource(DOMAIN, &view.id, &view.status, &body, outcome.completed_at_ms)
            .await
            .map_err(|e| Failure::Retry { reason: format!("store: {e}"), delay: Duration::from_millis(500) })?;
        self.changed.notify_waiters();
        Ok(())
    }
}
