//! Applies one inbound message to its flow.
//!
//! Inputs: `onboarding.commands.v1` (START, SUBMIT_EVIDENCE, DECIDE) and the
//! KYC, AML and fraud outcome topics. Each input has a key unique within
//! its flow: `cmd:<idempotency key>` for commands, `<step>.<attempt>` for
//! outcomes (from the step key the orchestrator gave the command).
//!
//! 1. Decode. Undecodable bytes go to the DLQ; an outcome that names no
//!    flow of ours (checks run without the orchestrator) is skipped.
//! 2. Load the flow. An input already applied is a duplicate: counted, and
//!    the flow's unsent outbox is published (the earlier delivery may have
//!    died between commit and publish).
//! 3. Run the state machine. An input it ignores (late, reordered, for a
//!    finished flow) is counted and changes nothing.
//! 4. Commit in one transaction: applied input, flow compared-and-set on its
//!    version, outbox rows, audit entries. A lost compare-and-set (another
//!    input or the timeout sweep moved the flow) reloads and starts over.
//! 5. Publish the outbox; then the runtime stores the offset.

use crate::machine::{self, Flow, Input, Limits, Transition};
use crate::metrics::Metrics;
use crate::outbox::{rows_of, Outbox, OutboxError};
use crate::pii::{Pii, PiiError};
use std::sync::Arc;
use std::time::Duration;
use switchyard_bus::{AvroDecoder, Failure, Handler, Inbound};
use switchyard_canonical::aml::AmlOutcome;
use switchyard_canonical::fraud::FraudOutcome;
use switchyard_canonical::kyc::KycOutcome;
use switchyard_canonical::onboarding::{OnboardingAction, OnboardingCommand};
use switchyard_canonical::{now_ms, ErrorClass};
use switchyard_store::onboarding::{Commit, FlowRow, FlowWrite};
use tracing::Instrument;

pub const ONBOARDING_COMMAND_SCHEMA: &str = include_str!("../../../schemas/onboarding/OnboardingCommand.v1.avsc");
pub const KYC_OUTCOME_SCHEMA: &str = include_str!("../../../schemas/kyc/KycOutcome.v1.avsc");
pub const AML_OUTCOME_SCHEMA: &str = include_str!("../../../schemas/aml/AmlOutcome.v1.avsc");
pub const FRAUD_OUTCOME_SCHEMA: &str = include_str!("../../../schemas/fraud/FraudOutcome.v1.avsc");

/// Compare-and-set losses in a row before the message is retried later.
const MAX_CONFLICTS: usize = 8;

/// One decoder per input topic, by reader schema.
pub struct Decoders {
    pub commands: AvroDecoder,
    pub kyc: AvroDecoder,
    pub aml: AvroDecoder,
    pub fraud: AvroDecoder,
}

pub struct OnboardingHandler {
    pub decoders: Decoders,
    pub outbox: Arc<Outbox>,
    pub topics: crate::config::OnboardingTopics,
    pub limits: Limits,
    pub metrics: Arc<Metrics>,
    /// The first retry round's wait (the runtime doubles it each round).
    pub retry_delay: Duration,
}

fn dead_letter(class: ErrorClass, reason: impl Into<String>) -> Failure {
    Failure::DeadLetter { class, reason: reason.into() }
}

/// A failure that may pass; `handle` sets the configured delay.
fn later(reason: impl std::fmt::Display) -> Failure {
    Failure::Retry { reason: reason.to_string(), delay: Duration::ZERO }
}

/// Sending the outbox again cannot fix a row this version cannot read or a
/// value its schema refuses: those go to the DLQ instead of retry rounds.
fn outbox_failure(e: OutboxError) -> Failure {
    if e.is_permanent() {
        dead_letter(ErrorClass::ManualRepair, format!("outbox cannot be published: {e}"))
    } else {
        later(e)
    }
}

async fn decode<T: serde::de::DeserializeOwned>(decoder: &AvroDecoder, payload: &[u8]) -> Result<T, Failure> {
    match decoder.decode(payload).await {
        Ok(v) => Ok(v),
        Err(e) if e.is_transient() => Err(later(e)),
        Err(e) => Err(dead_letter(ErrorClass::ManualRepair, format!("undecodable: {e}"))),
    }
}

impl Handler for OnboardingHandler {
    async fn handle(&self, message: Arc<Inbound>) -> Result<(), Failure> {
        self.apply(&message).await.map_err(|failure| match failure {
            Failure::Retry { reason, .. } => Failure::Retry { reason, delay: self.retry_delay },
            other => other,
        })
    }
}

impl OnboardingHandler {
    async fn apply(&self, message: &Inbound) -> Result<(), Failure> {
        let Some(payload) = message.payload.as_deref() else {
            return Err(dead_letter(ErrorClass::ManualRepair, "message has no value"));
        };
        let correlation_id = message.context().correlation_id.0;
        let t = &self.topics;
        // A retried message arrives on its input's retry topic.
        let topic = t.input_of(message.topic.as_str());
        let (flow_id, input_key, input) = if topic == t.commands {
            let cmd: OnboardingCommand = decode(&self.decoders.commands, payload).await?;
            let span = tracing::info_span!("onboarding_command", flow_id = %cmd.flow_id, action = ?cmd.action, %correlation_id);
            return self.on_command(cmd, &correlation_id).instrument(span).await;
        } else if topic == t.kyc_outcomes {
            let o: KycOutcome = decode(&self.decoders.kyc, payload).await?;
            (o.flow_id.clone(), o.idempotency_key.clone(), Input::Kyc(o))
        } else if topic == t.aml_outcomes {
            let o: AmlOutcome = decode(&self.decoders.aml, payload).await?;
            (o.flow_id.clone(), o.idempotency_key.clone(), Input::Aml(o))
        } else if topic == t.fraud_outcomes {
            let o: FraudOutcome = decode(&self.decoders.fraud, payload).await?;
            (o.flow_id.clone(), o.idempotency_key.clone(), Input::Fraud(o))
        } else {
            return Err(dead_letter(ErrorClass::ManualRepair, format!("not an orchestrator input: {topic}")));
        };
        // Outcomes of checks run without the orchestrator share these topics.
        let Some(flow_id) = flow_id else {
            self.metrics.ignored("not_ours");
            return Ok(());
        };
        let Some((step, attempt)) = machine::parse_step_key(&flow_id, &input_key) else {
            self.metrics.ignored("not_ours");
            return Ok(());
        };
        let key = format!("{}.{attempt}", machine::step_name(step));
        let span = tracing::info_span!("onboarding_outcome", %flow_id, input = %key, %correlation_id);
        self.advance(&flow_id, &key, &input, message.key.as_deref()).instrument(span).await
    }

    async fn on_command(&self, cmd: OnboardingCommand, correlation_id: &str) -> Result<(), Failure> {
        if let Err(reason) = cmd.validate() {
            return Err(dead_letter(ErrorClass::Permanent, format!("invalid onboarding command: {reason}")));
        }
        let key = format!("cmd:{}", cmd.idempotency_key);
        let input = match cmd.action {
            OnboardingAction::Start => return self.start(&cmd, &key, correlation_id).await,
            OnboardingAction::SubmitEvidence => cmd.evidence.clone().map(Input::Evidence),
            OnboardingAction::Decide => cmd.decision.clone().map(Input::Decision),
        };
        let Some(input) = input else {
            return Err(dead_letter(ErrorClass::Permanent, "validated command lost its payload"));
        };
        let found = self.outbox.store.load(&cmd.flow_id).await.map_err(later)?;
        match found {
            None => Err(dead_letter(ErrorClass::ManualRepair, format!("no onboarding flow {}", cmd.flow_id))),
            Some(row) if row.subject_id != cmd.subject_id => {
                Err(dead_letter(ErrorClass::ManualRepair, format!("flow {} belongs to another subject", cmd.flow_id)))
            }
            Some(_) => self.advance(&cmd.flow_id, &key, &input, Some(cmd.subject_id.as_bytes())).await,
        }
    }

    async fn start(&self, cmd: &OnboardingCommand, key: &str, correlation_id: &str) -> Result<(), Failure> {
        let Some(applicant) = cmd.applicant.clone() else {
            return Err(dead_letter(ErrorClass::Permanent, "START without applicant"));
        };
        if let Some(existing) = self.outbox.store.load(&cmd.flow_id).await.map_err(later)? {
            if existing.subject_id != cmd.subject_id {
                return Err(dead_letter(ErrorClass::ManualRepair, format!("flow {} already runs for another subject", cmd.flow_id)));
            }
            // The same START re-sent is a duplicate; a START under a new key
            // for a running flow (a core system retrying with a fresh key)
            // must not restart it either, but is worth telling apart.
            let same = self.outbox.store.was_applied(&cmd.flow_id, key).await.map_err(later)?;
            self.metrics.ignored(if same { "duplicate" } else { "already_started" });
            return self.flush(&existing).await;
        }
        let t = machine::start(cmd, applicant, correlation_id, &self.limits, now_ms());
        match self.commit(&t, None, key).await? {
            Commit::Applied => {
                self.metrics.transition(t.flow.state.as_str());
                tracing::info!(state = t.flow.state.as_str(), "onboarding started");
                self.publish(&t.flow).await
            }
            // A concurrent START of the same flow won.
            Commit::Duplicate | Commit::Conflict => {
                self.metrics.ignored("duplicate");
                Ok(())
            }
        }
    }

    /// Loads, decides and commits until the input applied or was ignored.
    async fn advance(&self, flow_id: &str, key: &str, input: &Input, subject: Option<&[u8]>) -> Result<(), Failure> {
        for _ in 0..MAX_CONFLICTS {
            let Some(row) = self.outbox.store.load(flow_id).await.map_err(later)? else {
                // Another orchestrator's flow id space, or a flow id reused by core banking.
                self.metrics.ignored("unknown_flow");
                return Ok(());
            };
            if subject.is_some_and(|s| s != row.subject_id.as_bytes()) {
                self.metrics.ignored("subject_mismatch");
                return Ok(());
            }
            if self.outbox.store.was_applied(flow_id, key).await.map_err(later)? {
                self.metrics.ignored("duplicate");
                tracing::info!("duplicate input; flow unchanged");
                return self.flush(&row).await;
            }
            let flow = parse(&self.outbox.pii, &row).await?;
            let t = match machine::apply(&flow, input, &self.limits, now_ms()) {
                Ok(t) => t,
                Err(why) => {
                    self.metrics.ignored(why.as_str());
                    tracing::info!(state = flow.state.as_str(), reason = why.as_str(), "input ignored");
                    return Ok(());
                }
            };
            match self.commit(&t, Some(flow.version), key).await? {
                Commit::Applied => {
                    self.metrics.transition(t.flow.state.as_str());
                    tracing::info!(from = flow.state.as_str(), to = t.flow.state.as_str(), trigger = %t.event.trigger, "transition");
                    return self.publish(&t.flow).await;
                }
                Commit::Duplicate => {
                    self.metrics.ignored("duplicate");
                    return self.flush(&row).await;
                }
                Commit::Conflict => self.metrics.conflict(),
            }
        }
        Err(later("flow kept changing under this input"))
    }

    async fn commit(&self, t: &Transition, expected: Option<i64>, key: &str) -> Result<Commit, Failure> {
        // The input key is recorded in the same transaction as the flow row:
        // onboarding's claim and store are one write, traced as `store`.
        let committed = commit_transition(&self.outbox, t, expected, key).instrument(switchyard_bus::telemetry::child_span("store")).await;
        committed.map_err(|e| match e {
            CommitError::Json(e) => dead_letter(ErrorClass::ManualRepair, format!("flow does not serialize: {e}")),
            CommitError::Store(e) => later(e),
            CommitError::Pii(e) if e.may_pass() => later(e),
            CommitError::Pii(e) => dead_letter(ErrorClass::ManualRepair, format!("flow cannot be sealed: {e}")),
        })
    }

    async fn flush(&self, row: &FlowRow) -> Result<(), Failure> {
        let flow = parse(&self.outbox.pii, row).await?;
        self.publish(&flow).await
    }

    async fn publish(&self, flow: &Flow) -> Result<(), Failure> {
        // Committed already: a failure that may pass is retried, and the
        // redelivery (a duplicate by then) publishes what is still unsent.
        self.outbox.flush(flow).await.map(|_| ()).map_err(outbox_failure)
    }
}

/// The store's view of a flow.
pub fn row_of(flow: &Flow) -> Result<FlowRow, serde_json::Error> {
    Ok(FlowRow {
        flow_id: flow.flow_id.clone(),
        subject_id: flow.subject_id.clone(),
        correlation_id: flow.correlation_id.clone(),
        state: flow.state.as_str().to_owned(),
        terminal: flow.state.terminal(),
        version: flow.version,
        deadline_at_ms: flow.deadline_at_ms,
        data: serde_json::to_string(flow)?,
    })
}

/// The flow a row holds, opened if sealed. A flow whose applicant was
/// erased (or sealed under a key no longer configured) cannot move: manual repair.
pub async fn parse(pii: &Pii, row: &FlowRow) -> Result<Flow, Failure> {
    let data = match pii.open(&row.subject_id, &row.flow_id, &row.data).await {
        Ok(data) => data,
        Err(e) if e.may_pass() => return Err(later(e)),
        Err(e) => return Err(dead_letter(ErrorClass::ManualRepair, format!("flow {} cannot be opened: {e}", row.flow_id))),
    };
    serde_json::from_str(&data).map_err(|e| dead_letter(ErrorClass::ManualRepair, format!("flow {} unreadable in the store: {e}", row.flow_id)))
}

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("flow does not serialize: {0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Store(#[from] switchyard_store::StoreError),
    #[error(transparent)]
    Pii(#[from] PiiError),
}

/// Writes a transition with its outbox and audit entries (shared with the sweep).
pub async fn commit_transition(outbox: &Outbox, t: &Transition, expected: Option<i64>, key: &str) -> Result<Commit, CommitError> {
    let mut row = row_of(&t.flow)?;
    // Commands carry the applicant, and the flow row keeps them: both sealed.
    let (subject, flow_id) = (&t.flow.subject_id, &t.flow.flow_id);
    row.data = outbox.pii.seal(subject, flow_id, &row.data).await?;
    let mut messages = Vec::new();
    for (kind, payload) in rows_of(t)? {
        messages.push((kind, outbox.pii.seal(subject, flow_id, &payload).await?));
    }
    let write = FlowWrite {
        row: &row,
        expected_version: expected,
        input_key: key,
        outbox: messages,
        audit: t.audit.iter().map(|a| (a.action, a.detail.clone())).collect(),
    };
    Ok(outbox.store.commit(&write).await?)
}
