//! Onboarding flows in `switchyard trace`: reader schemas for onboarding
//! transitions and KYC / AML / fraud outcomes, and one line in words for
//! each. Transitions arrive twice — the orchestrator's audit row and the
//! event on `onboarding.events.v1` — and read the same either way, so a
//! trace without a registry (audit only) says what one with it says.

use serde::Serialize;
use std::sync::Arc;
use switchyard_bus::{AvroDecoder, BusError, RegistryClient};
use switchyard_canonical::aml::{AmlOutcome, AmlStatus};
use switchyard_canonical::check::FlowStep;
use switchyard_canonical::fraud::{FraudDecision, FraudOutcome, FraudStatus};
use switchyard_canonical::kyc::{KycOutcome, KycStatus};
use switchyard_canonical::onboarding::{OnboardingEvent, OnboardingState};
use switchyard_canonical::OutcomeError;

const ONBOARDING_EVENT_SCHEMA: &str = include_str!("../../../schemas/onboarding/OnboardingEvent.v1.avsc");
const KYC_OUTCOME_SCHEMA: &str = include_str!("../../../schemas/kyc/KycOutcome.v1.avsc");
const AML_OUTCOME_SCHEMA: &str = include_str!("../../../schemas/aml/AmlOutcome.v1.avsc");
const FRAUD_OUTCOME_SCHEMA: &str = include_str!("../../../schemas/fraud/FraudOutcome.v1.avsc");

/// `what`, status, detail, failed: the parts of a trace line a decoder fills.
pub(crate) type Line = (&'static str, Option<String>, String, bool);

pub(crate) struct OnboardingDecoders {
    event: AvroDecoder,
    kyc: AvroDecoder,
    aml: AvroDecoder,
    fraud: AvroDecoder,
}

impl OnboardingDecoders {
    pub(crate) fn new(registry: Arc<RegistryClient>) -> Result<Self, BusError> {
        Ok(Self {
            event: AvroDecoder::new(registry.clone(), ONBOARDING_EVENT_SCHEMA)?,
            kyc: AvroDecoder::new(registry.clone(), KYC_OUTCOME_SCHEMA)?,
            aml: AvroDecoder::new(registry.clone(), AML_OUTCOME_SCHEMA)?,
            fraud: AvroDecoder::new(registry, FRAUD_OUTCOME_SCHEMA)?,
        })
    }

    /// A check outcome of `step`; undecodable bytes say so instead of failing the trace.
    pub(crate) async fn outcome(&self, step: FlowStep, at: &str, payload: &[u8]) -> Line {
        let decoded = match step {
            FlowStep::Kyc => self.kyc.decode::<KycOutcome>(payload).await.map(|o| kyc_line(at, &o)),
            FlowStep::Aml => self.aml.decode::<AmlOutcome>(payload).await.map(|o| aml_line(at, &o)),
            FlowStep::Fraud => self.fraud.decode::<FraudOutcome>(payload).await.map(|o| fraud_line(at, &o)),
        };
        decoded.unwrap_or_else(|e| ("outcome", None, format!("{at}: not decodable: {e}"), false))
    }

    /// A transition and its event id (`<flow_id>:<version>`), which names the
    /// audit row of the same transition.
    pub(crate) async fn transition(&self, at: &str, payload: &[u8]) -> (Line, Option<String>) {
        match self.event.decode::<OnboardingEvent>(payload).await {
            Ok(e) => (event_line(at, &e), Some(e.event_id)),
            Err(e) => (("transition", None, format!("{at}: not decodable: {e}"), false), None),
        }
    }
}

/// The check domain whose outcomes a topic carries, from its name.
pub(crate) fn check_step_of(topic: &str) -> Option<FlowStep> {
    [("kyc.outcomes.", FlowStep::Kyc), ("aml.outcomes.", FlowStep::Aml), ("fraud.outcomes.", FlowStep::Fraud)]
        .into_iter()
        .find(|(name, _)| topic.contains(name))
        .map(|(_, step)| step)
}

/// A serde enum's wire name in lower case (`DOCUMENT_FORGED` -> `document_forged`).
fn name<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_lowercase)).unwrap_or_else(|| "?".into())
}

/// ` via <provider>, vendor ref <ref>`, then the error, then a replay note.
fn tail(provider: Option<&str>, reference: Option<&str>, error: Option<&OutcomeError>, replayed: bool) -> String {
    let mut s = format!(" via {}", provider.unwrap_or("-"));
    if let Some(r) = reference {
        s.push_str(&format!(", vendor ref {r}"));
    }
    if let Some(e) = error {
        s.push_str(&format!(", {}/{}: {}", e.class.as_str(), e.code.as_str(), e.message));
    }
    if replayed {
        s.push_str(" (answered from the store)");
    }
    s
}

fn kyc_line(at: &str, o: &KycOutcome) -> Line {
    let mut detail = format!("{at} kyc {}", o.status.as_str());
    if !o.reasons.is_empty() {
        detail.push_str(&format!(" ({})", o.reasons.iter().map(name).collect::<Vec<_>>().join(", ")));
    }
    detail.push_str(&tail(o.provider.as_deref(), o.provider_reference.as_deref(), o.error.as_ref(), o.replayed));
    // A resubmit, step-up or review keeps the flow going; these end it.
    let failed = matches!(o.status, KycStatus::Declined | KycStatus::Rejected | KycStatus::Failed);
    ("outcome", Some(o.status.as_str().to_uppercase()), detail, failed)
}

fn aml_line(at: &str, o: &AmlOutcome) -> Line {
    let mut detail = format!("{at} aml {} {}", name(&o.action), o.status.as_str());
    if !o.matches.is_empty() {
        let hits: Vec<String> =
            o.matches.iter().map(|m| format!("{} {:?} on {} ({:.2})", name(&m.list), m.matched_name, m.source, m.score)).collect();
        detail.push_str(&format!(": {}", hits.join("; ")));
    }
    detail.push_str(&tail(o.provider.as_deref(), o.provider_reference.as_deref(), o.error.as_ref(), o.replayed));
    let failed = matches!(o.status, AmlStatus::ConfirmedMatch | AmlStatus::Rejected | AmlStatus::Failed);
    ("outcome", Some(o.status.as_str().to_uppercase()), detail, failed)
}

fn fraud_line(at: &str, o: &FraudOutcome) -> Line {
    let mut detail = format!("{at} fraud {} {}", name(&o.action), o.status.as_str());
    if let Some(d) = o.decision {
        detail.push_str(&format!(": {}", name(&d)));
    }
    if let Some(score) = o.score {
        detail.push_str(&format!(", score {score:.2}"));
    }
    if !o.reasons.is_empty() {
        detail.push_str(&format!(" ({})", o.reasons.iter().map(name).collect::<Vec<_>>().join(", ")));
    }
    detail.push_str(&tail(o.provider.as_deref(), o.provider_reference.as_deref(), o.error.as_ref(), o.replayed));
    // A scored outcome's decision is what the flow acts on.
    let status = match (o.status, o.decision) {
        (FraudStatus::Scored, Some(d)) => name(&d).to_uppercase(),
        (s, _) => s.as_str().to_uppercase(),
    };
    let failed = o.decision == Some(FraudDecision::Block) || matches!(o.status, FraudStatus::Rejected | FraudStatus::Failed);
    ("outcome", Some(status), detail, failed)
}

/// A transition from its parts, as the event and the audit row carry them.
struct Transition<'a> {
    flow_id: &'a str,
    version: String,
    from: Option<&'a str>,
    to: &'a str,
    trigger: &'a str,
    reason: Option<&'a str>,
}

impl Transition<'_> {
    fn line(&self, at: Option<&str>) -> Line {
        let mut detail = at.map(|a| format!("{a} ")).unwrap_or_default();
        detail.push_str(&format!("{} -> {} on {} (flow {} v{})", self.from.unwrap_or("new"), self.to, self.trigger, self.flow_id, self.version));
        if let Some(r) = self.reason {
            detail.push_str(&format!(": {r}"));
        }
        ("transition", Some(self.to.to_uppercase()), detail, blocks(self.to))
    }
}

/// Terminal states other than approved: the flow stopped on a failing or
/// blocking step (a compliance hold waits for a person, nothing moves).
fn blocks(state: &str) -> bool {
    OnboardingState::parse(state).is_some_and(|s| s.terminal() && s != OnboardingState::Approved)
}

fn event_line(at: &str, e: &OnboardingEvent) -> Line {
    let t = Transition {
        flow_id: &e.flow_id,
        version: e.version.to_string(),
        from: e.previous_state.map(OnboardingState::as_str),
        to: e.state.as_str(),
        trigger: &e.trigger,
        reason: e.reason.as_deref(),
    };
    let (what, status, mut detail, failed) = t.line(Some(at));
    if !e.compensate.is_empty() {
        detail.push_str(&format!("; undo {}", e.compensate.iter().map(name).collect::<Vec<_>>().join(", ")));
    }
    (what, status, detail, failed)
}

/// The orchestrator's audit rows in words; `None` for other actions.
/// Returns `what` too: `onboarding_transition` reads as `transition`, like its event.
pub(crate) fn audit_line(action: &str, detail: &serde_json::Value) -> Option<Line> {
    let text = |k: &str| detail.get(k).and_then(serde_json::Value::as_str);
    let flow = text("flow_id").unwrap_or("?");
    match action {
        "onboarding_transition" => Some(
            Transition {
                flow_id: flow,
                version: detail.get("version").map_or_else(|| "?".into(), ToString::to_string),
                from: text("from"),
                to: text("to")?,
                trigger: text("trigger").unwrap_or("?"),
                reason: text("reason"),
            }
            .line(None),
        ),
        "manual_decision" => {
            let verdict = text("verdict").unwrap_or("?");
            let mut line = format!("{} decided {} {verdict}", text("reviewer").unwrap_or("?"), text("step").unwrap_or("?"));
            if let Some(note) = text("note") {
                line.push_str(&format!(": {note}"));
            }
            Some(("manual_decision", Some(verdict.to_owned()), line, false))
        }
        "compliance_hold" => {
            let line = format!("flow {flow} held for compliance on {}: {}", text("trigger").unwrap_or("?"), text("reason").unwrap_or("-"));
            Some(("compliance_hold", None, line, true))
        }
        "compensate" => {
            let undo: Vec<&str> = detail.get("undo").and_then(serde_json::Value::as_array).into_iter().flatten().filter_map(serde_json::Value::as_str).collect();
            let line = format!("flow {flow} undoes {} because {}", undo.join(", "), text("because").unwrap_or("?"));
            Some(("compensate", None, line, false))
        }
        _ => None,
    }
}

/// The event id an `onboarding_transition` audit row stands for.
pub(crate) fn audit_event_id(action: &str, detail: &serde_json::Value) -> Option<String> {
    (action == "onboarding_transition").then(|| Some(format!("{}:{}", detail.get("flow_id")?.as_str()?, detail.get("version")?.as_i64()?))).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_canonical::fraud::{FraudAction, FraudReason};

    fn fraud_block() -> FraudOutcome {
        FraudOutcome {
            subject_id: "app-1".into(),
            idempotency_key: "k".into(),
            flow_id: Some("flow-1".into()),
            step: FlowStep::Fraud,
            action: FraudAction::Score,
            status: FraudStatus::Scored,
            terminal: true,
            decision: Some(FraudDecision::Block),
            score: Some(0.97),
            reasons: vec![FraudReason::DisposableEmail],
            provider: Some("seon".into()),
            provider_reference: Some("seon-tx-1".into()),
            error: None,
            attempts: 1,
            replayed: false,
            completed_at_ms: 0,
        }
    }

    #[test]
    fn a_fraud_block_reads_as_a_failed_outcome() {
        let (what, status, detail, failed) = fraud_line("[0]@4", &fraud_block());
        assert_eq!((what, status.as_deref(), failed), ("outcome", Some("BLOCK"), true));
        assert_eq!(detail, "[0]@4 fraud score scored: block, score 0.97 (disposable_email) via seon, vendor ref seon-tx-1");
        let allow = FraudOutcome { decision: Some(FraudDecision::Allow), ..fraud_block() };
        assert!(!fraud_line("[0]@5", &allow).3, "an allow does not fail the step");
    }

    #[test]
    fn a_blocking_transition_reads_the_same_from_the_event_and_the_audit_row() {
        let event = OnboardingEvent {
            event_id: "flow-1:4".into(),
            subject_id: "app-1".into(),
            flow_id: "flow-1".into(),
            version: 4,
            previous_state: Some(OnboardingState::FraudPending),
            state: OnboardingState::FraudBlocked,
            terminal: true,
            trigger: "fraud:block".into(),
            step: FlowStep::Fraud,
            attempt: 1,
            reason: Some("fraud_block".into()),
            compensate: vec![FlowStep::Kyc, FlowStep::Aml],
            occurred_at_ms: 0,
        };
        let (what, status, detail, failed) = event_line("[2]@9", &event);
        assert_eq!((what, status.as_deref(), failed), ("transition", Some("FRAUD_BLOCKED"), true));
        assert_eq!(detail, "[2]@9 fraud_pending -> fraud_blocked on fraud:block (flow flow-1 v4): fraud_block; undo kyc, aml");
        let row = serde_json::json!({"flow_id": "flow-1", "version": 4, "from": "fraud_pending", "to": "fraud_blocked", "trigger": "fraud:block", "step": "fraud", "attempt": 1, "reason": "fraud_block"});
        let audit = audit_line("onboarding_transition", &row).expect("described");
        assert_eq!(audit.2, "fraud_pending -> fraud_blocked on fraud:block (flow flow-1 v4): fraud_block");
        assert!(audit.3);
        assert_eq!(audit_event_id("onboarding_transition", &row).as_deref(), Some(event.event_id.as_str()));
        let approved = serde_json::json!({"flow_id": "flow-1", "version": 4, "from": "fraud_pending", "to": "approved", "trigger": "fraud:allow"});
        assert!(!audit_line("onboarding_transition", &approved).expect("described").3, "approval is no failure");
    }

    #[test]
    fn outcome_topics_name_their_step() {
        assert_eq!(check_step_of("t-1.fraud.outcomes.v1"), Some(FlowStep::Fraud));
        assert_eq!(check_step_of("kyc.outcomes.v1"), Some(FlowStep::Kyc));
        assert_eq!(check_step_of("payouts.outcomes.v1"), None);
    }
}
