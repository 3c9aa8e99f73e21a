//! What every domain's handler shares around its vendor calls: the one rule
//! for which failures may move a command, the fenced and audited move, and
//! the outcome record on the bus, published until the broker acknowledges
//! it, timed and counted.

use crate::metrics::{Metrics, Stage};
use serde::Serialize;
use std::time::{Duration, Instant};
use switchyard_adapters::AdapterError;
use switchyard_bus::{AvroEncoder, Failure, HeaderName, MessageContext, Outbound, Publisher};
use switchyard_routing::Refusal;
use tokio_util::sync::CancellationToken;

/// Where and how a handler publishes its outcomes.
pub struct OutcomeSink<'a> {
    pub publisher: &'a Publisher,
    pub encoder: &'a AvroEncoder,
    pub topic: &'a str,
    pub metrics: &'a Metrics,
    pub shutdown: &'a CancellationToken,
}

/// The command an outcome answers, as far as publishing cares.
pub struct Answering<'a> {
    /// The record key: the subject (payout id, customer id, ...).
    pub subject: &'a str,
    pub idempotency_key: &'a str,
    pub requested_at_ms: i64,
    /// The outcome's status, for `commands_processed`.
    pub status: &'a str,
}

impl<'a> OutcomeSink<'a> {
    pub fn new(publisher: &'a Publisher, encoder: &'a AvroEncoder, topic: &'a str, metrics: &'a Metrics, shutdown: &'a CancellationToken) -> Self {
        Self { publisher, encoder, topic, metrics, shutdown }
    }

    /// Encodes and publishes `outcome`, waiting for the broker: a broker
    /// outage is waited out here, so the vendor is never asked again for a
    /// publish failure. Only shutdown gives up (the message is redelivered).
    pub async fn publish<T: Serialize>(&self, ctx: &MessageContext, outcome: &T, answering: Answering<'_>) -> Result<(), Failure> {
        let payload = self.encoder.encode(outcome).map_err(|e| Failure::DeadLetter {
            class: switchyard_canonical::ErrorClass::ManualRepair,
            reason: format!("outcome does not fit its schema: {e}"),
        })?;
        let mut record = Outbound {
            topic: self.topic.to_owned(),
            key: Some(answering.subject.as_bytes().to_vec()),
            payload,
            headers: ctx.outbound_headers(Some(self.encoder.schema_id())),
        };
        // Consumers deduplicate by idempotency key: every outcome carries it.
        if ctx.idempotency_key.is_none() {
            record.headers.push((HeaderName::IDEMPOTENCY_KEY.into(), answering.idempotency_key.as_bytes().to_vec()));
        }
        let started = Instant::now();
        if !switchyard_bus::publish_until_acked(self.publisher, &record, self.shutdown).await {
            return Err(Failure::Retry { reason: "worker stopping before outcome was published".into(), delay: Duration::ZERO });
        }
        self.metrics.stage(Stage::Publish, started.elapsed());
        let flow = u64::try_from(switchyard_canonical::now_ms() - answering.requested_at_ms).ok().map(Duration::from_millis);
        self.metrics.processed(answering.status, flow);
        Ok(())
    }
}

/// Step 1 of the contract for every domain: headers the store can hold,
/// a value, bytes that decode against the registry. A registry outage is
/// retried; anything else that cannot be read goes to the DLQ with the
/// reason, before any claim (a NUL in a stored header would fail the group
/// commit of every command batched with it).
pub async fn decode_command<T: serde::de::DeserializeOwned>(
    decoder: &switchyard_bus::AvroDecoder,
    metrics: &Metrics,
    message: &switchyard_bus::Inbound,
) -> Result<T, Failure> {
    let unreadable = |reason: String| {
        metrics.failure(switchyard_canonical::ErrorClass::ManualRepair.as_str());
        dead_letter(&reason)
    };
    if let Err(bad) = switchyard_bus::headers::check_stored_headers(&message.headers) {
        return Err(unreadable(bad.to_string()));
    }
    let Some(payload) = message.payload.as_deref() else {
        return Err(unreadable("message has no value".into()));
    };
    match decoder.decode(payload).await {
        Ok(command) => Ok(command),
        Err(e) if e.is_transient() => Err(Failure::Retry { reason: e.to_string(), delay: Duration::from_secs(2) }),
        Err(e) => Err(unreadable(format!("undecodable command: {e}"))),
    }
}

/// A message that needs a person: its original bytes go to the DLQ.
pub fn dead_letter(reason: &str) -> Failure {
    Failure::DeadLetter { class: switchyard_canonical::ErrorClass::ManualRepair, reason: reason.to_owned() }
}

/// The store is unreachable: try the message again shortly.
pub fn store_down(e: switchyard_store::StoreError) -> Failure {
    Failure::Retry { reason: format!("store unavailable: {e}"), delay: Duration::from_secs(1) }
}

/// Claims the command's key before any vendor call (timed). `Err` inside:
/// the key is already claimed for another payload, an idempotency
/// collision (counted), to be answered with this error and no vendor call.
pub async fn claim(
    store: &switchyard_store::Store,
    metrics: &Metrics,
    claim: switchyard_store::Claim,
    what: &str,
) -> Result<Result<switchyard_store::Record, switchyard_canonical::OutcomeError>, Failure> {
    let fingerprint = claim.fingerprint.clone();
    let started = Instant::now();
    let record = store.claim(claim).await.map_err(store_down)?;
    metrics.stage(Stage::Claim, started.elapsed());
    if record.fingerprint == fingerprint {
        return Ok(Ok(record));
    }
    metrics.collision();
    tracing::warn!("idempotency key reused with a different payload");
    Ok(Err(switchyard_canonical::OutcomeError {
        class: switchyard_canonical::ErrorClass::Permanent,
        code: switchyard_canonical::ErrorCode::IdempotencyCollision,
        message: format!("idempotency key already used for a different {what}"),
    }))
}

/// A failover the router allowed: the claim moves from `from` to `to`.
pub struct ClaimMove<'a> {
    pub domain: &'a str,
    pub actor: &'a str,
    pub idempotency_key: &'a str,
    pub subject_id: &'a str,
    pub correlation_id: &'a str,
    pub from: &'a str,
    pub to: &'a str,
    pub to_key: &'a str,
    /// The lease epoch this delivery holds: the move is fenced on it.
    pub epoch: i64,
}

/// Moves the claim (compare-and-set on provider and lease epoch) and audits
/// it; false if another delivery moved, finished or took it meanwhile.
pub async fn move_claim(store: &switchyard_store::Store, m: ClaimMove<'_>) -> bool {
    match store.reroute(m.domain, m.idempotency_key, m.from, m.to, m.to_key, m.epoch).await {
        Ok(true) => {
            tracing::warn!(from = m.from, to = m.to, "failing over after a definite refusal");
            let detail = serde_json::json!({ "from": m.from, "to": m.to }).to_string();
            let entry = switchyard_store::AuditEntry {
                actor: m.actor,
                action: "failover",
                subject_id: m.subject_id,
                correlation_id: m.correlation_id,
                detail: &detail,
            };
            if let Err(e) = store.audit(entry).await {
                tracing::warn!(error = %e, "audit entry for failover not written");
            }
            true
        }
        Ok(false) => false,
        Err(e) => {
            tracing::warn!(error = %e, "failover not recorded; staying with {}", m.from);
            false
        }
    }
}

/// What a failed vendor call says about moving the command elsewhere. Only a
/// definite non-acceptance counts for failover; anything the vendor may have
/// acted on pins the command to it; the rest (429, a decline) says nothing.
pub fn refusal(error: &AdapterError) -> Option<Refusal> {
    if error.ambiguous {
        Some(Refusal::Ambiguous)
    } else if error.is_definite_refusal() {
        Some(Refusal::Definite)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_canonical::{ErrorClass, ErrorCode};

    #[test]
    fn only_a_definite_non_acceptance_may_move_a_command() {
        let status = |s| refusal(&AdapterError::from_status(s, None, ""));
        assert_eq!(status(503), Some(Refusal::Definite));
        assert_eq!(status(409), Some(Refusal::Ambiguous));
        assert_eq!(status(425), Some(Refusal::Ambiguous));
        assert_eq!(status(500), Some(Refusal::Ambiguous));
        assert_eq!(status(429), None, "throttling is no refusal: the check worker used to fail over on it");
        let refused = AdapterError::new(ErrorClass::Transient, ErrorCode::VendorUnavailable, "connection refused");
        assert_eq!(refusal(&refused), Some(Refusal::Definite));
    }
}
