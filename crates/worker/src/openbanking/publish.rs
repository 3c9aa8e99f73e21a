//! What the open banking handler puts on the bus: one outcome per delivered
//! command, one event per consent change, one data delta per page. Each
//! waits for the broker's acknowledgement (an outage is waited out, so no
//! provider is asked again for a publish failure); headers carry the
//! correlation id and trace, never a token.

use super::OpenBankingHandler;
use crate::answer::{Answering, OutcomeSink};
use std::time::Duration;
use switchyard_bus::{AvroEncoder, Failure, MessageContext, Outbound};
use switchyard_canonical::openbanking_data::OpenBankingDataDelta;
use switchyard_canonical::openbanking_event::OpenBankingEvent;
use switchyard_canonical::openbanking_outcome::OpenBankingOutcome;

impl OpenBankingHandler {
    pub(super) async fn publish_outcome(&self, ctx: &MessageContext, outcome: &OpenBankingOutcome, requested_at_ms: i64) -> Result<(), Failure> {
        let sink = OutcomeSink::new(&self.publisher, &self.outcome_encoder, &self.topics.outcomes, &self.metrics, &self.shutdown);
        let answering = Answering {
            subject: &outcome.consent_id,
            idempotency_key: &outcome.idempotency_key,
            requested_at_ms,
            status: outcome.kind.as_str(),
        };
        sink.publish(ctx, outcome, answering).await
    }

    pub(super) async fn publish_event(&self, ctx: &MessageContext, event: &OpenBankingEvent) -> Result<(), Failure> {
        self.publish_record(ctx, &self.event_encoder, &self.topics.events, &event.consent_id, event).await
    }

    pub(super) async fn publish_data(&self, ctx: &MessageContext, delta: &OpenBankingDataDelta) -> Result<(), Failure> {
        self.publish_record(ctx, &self.data_encoder, &self.topics.data, &delta.consent_id, delta).await
    }

    async fn publish_record<T: serde::Serialize>(&self, ctx: &MessageContext, encoder: &AvroEncoder, topic: &str, key: &str, value: &T) -> Result<(), Failure> {
        let payload = encoder.encode(value).map_err(|e| crate::answer::dead_letter(&format!("record does not fit its schema: {e}")))?;
        let record = Outbound { topic: topic.to_owned(), key: Some(key.as_bytes().to_vec()), payload, headers: ctx.outbound_headers(Some(encoder.schema_id())) };
        if !switchyard_bus::publish_until_acked(&self.publisher, &record, &self.shutdown).await {
            return Err(Failure::Retry { reason: "worker stopping before a record was published".into(), delay: Duration::ZERO });
        }
        Ok(())
    }
}
