//! Publishing what transitions wrote to the store's outbox: the next step's
//! command to that domain's commands topic, the onboarding event to
//! `onboarding.events.v1`, each with the flow's correlation id.
//!
//! A message is marked sent only after the broker acknowledged it. It may be
//! published twice (a crash before the mark, the sweep racing a slow
//! handler); receivers deduplicate: a worker by the command's idempotency
//! key, an event consumer by `event_id`.

use crate::config::OnboardingTopics;
use crate::machine::{Flow, StepCommand, Transition};
use crate::metrics::Metrics;
use crate::pii::{Pii, PiiError};
use serde::Serialize;
use std::sync::Arc;
use switchyard_bus::{AvroEncoder, BusError, MessageContext, Outbound, Publisher, RegistryClient};
use switchyard_canonical::aml::AmlCommand;
use switchyard_canonical::fraud::FraudCommand;
use switchyard_canonical::kyc::KycCommand;
use switchyard_canonical::onboarding::OnboardingEvent;
use switchyard_canonical::{CorrelationId, TraceParent};
use switchyard_store::onboarding::{OnboardingStore, OutboxMessage};

pub const KYC_COMMAND_SCHEMA: &str = include_str!("../../../schemas/kyc/KycCommand.v1.avsc");
pub const AML_COMMAND_SCHEMA: &str = include_str!("../../../schemas/aml/AmlCommand.v1.avsc");
pub const FRAUD_COMMAND_SCHEMA: &str = include_str!("../../../schemas/fraud/FraudCommand.v1.avsc");
pub const ONBOARDING_EVENT_SCHEMA: &str = include_str!("../../../schemas/onboarding/OnboardingEvent.v1.avsc");

/// Outbox kinds: which topic and schema a row goes to.
const KYC: &str = "kyc";
const AML: &str = "aml";
const FRAUD: &str = "fraud";
const EVENT: &str = "event";

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox row {flow_id}/{seq}: {message}")]
    BadRow { flow_id: String, seq: i64, message: String },
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Store(#[from] switchyard_store::StoreError),
}

impl OutboxError {
    /// Whether sending again can never succeed: a row this version cannot
    /// read, or a value its schema refuses. A broker or store failure may pass.
    pub fn is_permanent(&self) -> bool {
        match self {
            OutboxError::BadRow { .. } => true,
            OutboxError::Bus(e) => matches!(e, BusError::Avro(_) | BusError::Config(_) | BusError::TopicsFile { .. }),
            OutboxError::Store(_) => false,
        }
    }
}

pub struct Outbox {
    pub store: OnboardingStore,
    /// Seals what the outbox and flow rows hold of the applicant.
    pub pii: Pii,
    publisher: Publisher,
    topics: OnboardingTopics,
    kyc: AvroEncoder,
    aml: AvroEncoder,
    fraud: AvroEncoder,
    event: AvroEncoder,
    metrics: Arc<Metrics>,
}

/// The outbox rows of a transition, in publishing order: the command first,
/// so an event consumer never sees a step announced that was not requested.
pub fn rows_of(t: &Transition) -> Result<Vec<(&'static str, String)>, serde_json::Error> {
    let mut rows = Vec::with_capacity(t.commands.len() + 1);
    for c in &t.commands {
        rows.push(match c {
            StepCommand::Kyc(c) => (KYC, serde_json::to_string(c)?),
            StepCommand::Aml(c) => (AML, serde_json::to_string(c)?),
            StepCommand::Fraud(c) => (FRAUD, serde_json::to_string(c)?),
        });
    }
    rows.push((EVENT, serde_json::to_string(&t.event)?));
    Ok(rows)
}

impl Outbox {
    pub async fn new(
        store: OnboardingStore,
        pii: Pii,
        publisher: Publisher,
        registry: &RegistryClient,
        topics: OnboardingTopics,
        metrics: Arc<Metrics>,
    ) -> Result<Self, BusError> {
        Ok(Self {
            store,
            pii,
            publisher,
            kyc: AvroEncoder::register(registry, &topics.kyc_commands, KYC_COMMAND_SCHEMA).await?,
            aml: AvroEncoder::register(registry, &topics.aml_commands, AML_COMMAND_SCHEMA).await?,
            fraud: AvroEncoder::register(registry, &topics.fraud_commands, FRAUD_COMMAND_SCHEMA).await?,
            event: AvroEncoder::register(registry, &topics.events, ONBOARDING_EVENT_SCHEMA).await?,
            topics,
            metrics,
        })
    }

    /// Publishes every unsent message of a flow, in order, marking each sent.
    pub async fn flush(&self, flow: &Flow) -> Result<usize, OutboxError> {
        let pending = self.store.unsent_of(&flow.flow_id).await?;
        self.send(&pending).await
    }

    /// Publishes `messages` in the order given; stops at the first failure
    /// so a flow's messages never overtake each other.
    pub async fn send(&self, messages: &[OutboxMessage]) -> Result<usize, OutboxError> {
        for m in messages {
            // Outbox rows are keyed by the flow's subject (see the store's commit).
            let payload = self.pii.open(&m.message_key, &m.flow_id, &m.payload).await.map_err(|e| match e {
                PiiError::Store(e) => OutboxError::Store(e),
                other => OutboxError::BadRow { flow_id: m.flow_id.clone(), seq: m.seq, message: other.to_string() },
            })?;
            let record = self.record(m, &payload)?;
            self.publisher.publish(&record).await?;
            self.store.mark_sent(&m.flow_id, m.seq).await?;
            self.metrics.published(&m.kind);
        }
        Ok(messages.len())
    }

    fn record(&self, m: &OutboxMessage, payload: &str) -> Result<Outbound, OutboxError> {
        let bad = |message: String| OutboxError::BadRow { flow_id: m.flow_id.clone(), seq: m.seq, message };
        let (topic, encoder, key, payload) = match m.kind.as_str() {
            KYC => {
                let c: KycCommand = serde_json::from_str(payload).map_err(|e| bad(e.to_string()))?;
                (&self.topics.kyc_commands, &self.kyc, c.idempotency_key.clone(), encode(&self.kyc, &c)?)
            }
            AML => {
                let c: AmlCommand = serde_json::from_str(payload).map_err(|e| bad(e.to_string()))?;
                (&self.topics.aml_commands, &self.aml, c.idempotency_key.clone(), encode(&self.aml, &c)?)
            }
            FRAUD => {
                let c: FraudCommand = serde_json::from_str(payload).map_err(|e| bad(e.to_string()))?;
                (&self.topics.fraud_commands, &self.fraud, c.idempotency_key.clone(), encode(&self.fraud, &c)?)
            }
            EVENT => {
                let e: OnboardingEvent = serde_json::from_str(payload).map_err(|e| bad(e.to_string()))?;
                (&self.topics.events, &self.event, e.event_id.clone(), encode(&self.event, &e)?)
            }
            other => return Err(bad(format!("unknown kind {other}"))),
        };
        // The idempotency-key header: a command's step key, an event's id.
        let ctx = MessageContext {
            correlation_id: CorrelationId(m.correlation_id.clone()),
            traceparent: TraceParent::new_root(),
            idempotency_key: Some(key),
        };
        Ok(Outbound {
            topic: topic.clone(),
            key: Some(m.message_key.as_bytes().to_vec()),
            payload,
            headers: ctx.outbound_headers(Some(encoder.schema_id())),
        })
    }
}

fn encode<T: Serialize>(encoder: &AvroEncoder, value: &T) -> Result<Vec<u8>, BusError> {
    encoder.encode(value)
}
