//! The onboarding state machine, pure: `(flow, input, now) -> transition`,
//! no I/O, so every path is unit-tested (`machine/tests.rs`).
//!
//! | from | input | to | publishes |
//! |---|---|---|---|
//! | — | `START` | `KYC_PENDING` (attempt 1) | KYC command |
//! | `KYC_PENDING` | KYC approved | `AML_PENDING` | AML command |
//! | `KYC_PENDING` | KYC declined | `REJECTED` | |
//! | `KYC_PENDING` | resubmit / step-up, attempt < `max_kyc_attempts` | `AWAITING_EVIDENCE` | |
//! | `KYC_PENDING` | resubmit / step-up on the last attempt | `REJECTED` | |
//! | `KYC_PENDING` | KYC manual review | `KYC_REVIEW` | |
//! | `AWAITING_EVIDENCE` | `SUBMIT_EVIDENCE` | `KYC_PENDING` (attempt + 1) | KYC command with the new document |
//! | `AML_PENDING` | clear | `FRAUD_PENDING` | fraud command |
//! | `AML_PENDING` | potential match | `AML_REVIEW` | |
//! | `AML_PENDING` | confirmed match | `COMPLIANCE_HOLD` | |
//! | `FRAUD_PENDING` | allow | `APPROVED` | |
//! | `FRAUD_PENDING` | review | `FRAUD_REVIEW` | |
//! | `FRAUD_PENDING` | block | `FRAUD_BLOCKED` | |
//! | `*_PENDING` | rejected / failed (no decision) | `FAILED` | |
//! | `*_REVIEW` | `DECIDE` approve | the next step's `*_PENDING`, `APPROVED` after fraud | its command |
//! | `*_REVIEW` | `DECIDE` reject / hold | `REJECTED` / `COMPLIANCE_HOLD` | |
//! | `*_PENDING` | deadline, resends < `max_resends` | same state and attempt | the same command again |
//! | any waiting state | deadline otherwise | `EXPIRED` | |
//!
//! Every transition also publishes an [`OnboardingEvent`] and writes audit
//! entries (`onboarding_transition`, plus `manual_decision`,
//! `compliance_hold` and `compensate` where they apply).
//!
//! Terminal states: `APPROVED`, `REJECTED` (declined, an analyst's reject,
//! step-ups exhausted), `COMPLIANCE_HOLD`, `FRAUD_BLOCKED`, `EXPIRED` (a
//! deadline passed), `FAILED` (a check could not be run). A terminal flow
//! ignores every input.
//!
//! **Which inputs apply.** An outcome names its step and attempt through its
//! idempotency key (`<flow_id>.<step>.<attempt>`, see [`step_key`]); it applies
//! only while the flow waits for exactly that step and attempt. Anything else
//! is [`Ignored::NotAwaited`]: a late answer to an earlier attempt, a
//! reordered event, a decision for a step that is not in review. Exact
//! duplicates are caught before the machine, by the store (see `handler`).
//!
//! **Timeouts.** Every waiting state has a deadline. A worker step
//! (`*_PENDING`) that passes it has its command sent again under the *same*
//! idempotency key (the worker answers from its store, or runs it if the
//! command was lost), at most `max_resends` times; then the flow expires.
//! Waiting for a person (`AWAITING_EVIDENCE`, `*_REVIEW`) expires at once.
//!
//! **Compensation.** Core banking may act on intermediate events (e.g. open a
//! restricted customer record once KYC passed). When a later step ends the
//! flow without approval (rejected, fraud-blocked, expired, failed), the
//! terminal event lists the steps that had passed in `compensate`: core
//! banking offboards the provisional customer, and the passed KYC
//! verification is void for this application (it must not be reused for
//! another one). A `compensate` audit entry records it. A compliance hold
//! compensates nothing: it freezes the applicant as is, and compliance decides
//! what happens (offboarding could tip the applicant off).

use serde::{Deserialize, Serialize};
use switchyard_canonical::aml::{AmlAction, AmlCommand, AmlOutcome, AmlStatus, AmlSubject, SubjectKind};
use switchyard_canonical::check::FlowStep;
use switchyard_canonical::fraud::{FraudAction, FraudCommand, FraudDecision, FraudEvent, FraudOutcome, FraudStatus};
use switchyard_canonical::kyc::{KycCommand, KycOutcome, KycStatus};
use switchyard_canonical::onboarding::{Applicant, Evidence, ManualDecision, ManualVerdict, OnboardingCommand, OnboardingEvent, OnboardingState};
use switchyard_canonical::OutcomeError;

/// Bounds and deadlines of a flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// KYC attempts in all, the first included; a step-up beyond them rejects.
    pub max_kyc_attempts: i32,
    /// Times a worker step's command is sent again after its deadline.
    pub max_resends: i32,
    /// How long a worker may take to answer a step.
    pub step_timeout_ms: i64,
    /// How long the applicant has to hand in evidence after a step-up.
    pub evidence_timeout_ms: i64,
    /// How long an analyst has to decide a review.
    pub decision_timeout_ms: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_kyc_attempts: 3,
            max_resends: 2,
            step_timeout_ms: 15 * 60 * 1000,
            evidence_timeout_ms: 7 * 24 * 3600 * 1000,
            decision_timeout_ms: 5 * 24 * 3600 * 1000,
        }
    }
}

/// A flow as stored (JSON in the store's `data` column).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    pub flow_id: String,
    pub subject_id: String,
    /// From the START command's header; carried on every message of the flow.
    pub correlation_id: String,
    pub state: OnboardingState,
    /// The step the flow is on and its attempt (KYC attempts count step-ups).
    pub step: FlowStep,
    pub attempt: i32,
    /// Commands re-sent for the current attempt after its deadline.
    pub resends: i32,
    /// Steps that passed, in order; what compensation undoes.
    pub passed: Vec<FlowStep>,
    pub applicant: Applicant,
    pub deadline_at_ms: Option<i64>,
    /// Grows by one per transition; the store compares and sets it.
    pub version: i64,
}

/// What can move a flow (START is [`start`]).
#[derive(Debug, Clone)]
pub enum Input {
    Kyc(KycOutcome),
    Aml(AmlOutcome),
    Fraud(FraudOutcome),
    Evidence(Evidence),
    Decision(ManualDecision),
    /// The sweep found the flow past its deadline.
    Timeout,
}

/// A command for a domain worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StepCommand {
    Kyc(KycCommand),
    Aml(AmlCommand),
    Fraud(FraudCommand),
}

/// One line for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditNote {
    pub action: &'static str,
    /// Short JSON.
    pub detail: String,
}

#[derive(Debug, Clone)]
pub struct Transition {
    pub flow: Flow,
    pub commands: Vec<StepCommand>,
    pub event: OnboardingEvent,
    pub audit: Vec<AuditNote>,
}

/// Why an input changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// The flow is over.
    Finished,
    /// Not what the flow waits for now (another step or attempt, a late or reordered event).
    NotAwaited,
    /// A timeout for a flow whose deadline has not passed (moved meanwhile).
    NotDue,
}

impl Ignored {
    pub fn as_str(self) -> &'static str {
        match self {
            Ignored::Finished => "finished",
            Ignored::NotAwaited => "not_awaited",
            Ignored::NotDue => "not_due",
        }
    }
}

/// The idempotency key of a step's command: `<flow_id>.<step>.<attempt>`.
pub fn step_key(flow_id: &str, step: FlowStep, attempt: i32) -> String {
    format!("{flow_id}.{}.{attempt}", step_name(step))
}

/// The step and attempt a key made by [`step_key`] names, if it is one for `flow_id`.
pub fn parse_step_key(flow_id: &str, key: &str) -> Option<(FlowStep, i32)> {
    let rest = key.strip_prefix(flow_id)?.strip_prefix('.')?;
    let (step, attempt) = rest.split_once('.')?;
    let step = match step {
        "kyc" => FlowStep::Kyc,
        "aml" => FlowStep::Aml,
        "fraud" => FlowStep::Fraud,
        _ => return None,
    };
    Some((step, attempt.parse().ok()?))
}

pub fn step_name(step: FlowStep) -> &'static str {
    match step {
        FlowStep::Kyc => "kyc",
        FlowStep::Aml => "aml",
        FlowStep::Fraud => "fraud",
    }
}

/// Creates the flow from a validated START command: KYC attempt 1.
pub fn start(cmd: &OnboardingCommand, applicant: Applicant, correlation_id: &str, limits: &Limits, now: i64) -> Transition {
    let flow = Flow {
        flow_id: cmd.flow_id.clone(),
        subject_id: cmd.subject_id.clone(),
        correlation_id: correlation_id.to_owned(),
        state: OnboardingState::KycPending,
        step: FlowStep::Kyc,
        attempt: 1,
        resends: 0,
        passed: Vec::new(),
        applicant,
        deadline_at_ms: None,
        version: 0,
    };
    Change::to(OnboardingState::KycPending, FlowStep::Kyc, 1).send().finish(&flow, None, "start", limits, now)
}

/// Applies one input. `Err` says why nothing changed.
pub fn apply(flow: &Flow, input: &Input, limits: &Limits, now: i64) -> Result<Transition, Ignored> {
    use OnboardingState as S;
    if flow.state.terminal() {
        return Err(Ignored::Finished);
    }
    let (change, trigger) = match (flow.state, input) {
        (_, Input::Timeout) => {
            if flow.deadline_at_ms.is_none_or(|d| d > now) {
                return Err(Ignored::NotDue);
            }
            (on_timeout(flow, limits), "timeout".to_owned())
        }
        (S::KycPending, Input::Kyc(o)) if awaited(flow, FlowStep::Kyc, &o.flow_id, &o.idempotency_key) => {
            (on_kyc(flow, o, limits), format!("kyc:{}", o.status.as_str()))
        }
        (S::AmlPending, Input::Aml(o)) if awaited(flow, FlowStep::Aml, &o.flow_id, &o.idempotency_key) => {
            (on_aml(flow, o), format!("aml:{}", o.status.as_str()))
        }
        (S::FraudPending, Input::Fraud(o)) if awaited(flow, FlowStep::Fraud, &o.flow_id, &o.idempotency_key) => {
            let what = o.decision.map_or(o.status.as_str(), decision_name);
            (on_fraud(flow, o), format!("fraud:{what}"))
        }
        (S::AwaitingEvidence, Input::Evidence(_)) => {
            (Change::to(S::KycPending, FlowStep::Kyc, flow.attempt + 1).send(), "evidence".to_owned())
        }
        (S::KycReview | S::AmlReview | S::FraudReview, Input::Decision(d)) if d.step == flow.step => {
            (on_decision(flow, d), format!("decision:{}", verdict_name(d.verdict)))
        }
        _ => return Err(Ignored::NotAwaited),
    };
    let mut next = flow.clone();
    if let Input::Evidence(e) = input {
        next.applicant.document = e.document.clone();
        if e.selfie_ref.is_some() {
            next.applicant.selfie_ref = e.selfie_ref.clone();
        }
    }
    let mut t = change.finish(&next, Some(flow.state), &trigger, limits, now);
    if let Input::Decision(d) = input {
        let detail = serde_json::json!({"step": step_name(d.step), "verdict": verdict_name(d.verdict), "reviewer": d.reviewer, "note": d.note});
        t.audit.insert(0, AuditNote { action: "manual_decision", detail: detail.to_string() });
    }
    Ok(t)
}

/// Whether an outcome answers the step and attempt the flow waits for.
fn awaited(flow: &Flow, step: FlowStep, flow_id: &Option<String>, key: &str) -> bool {
    flow_id.as_deref() == Some(flow.flow_id.as_str()) && parse_step_key(&flow.flow_id, key) == Some((step, flow.attempt)) && flow.step == step
}

fn on_kyc(flow: &Flow, o: &KycOutcome, limits: &Limits) -> Change {
    use OnboardingState as S;
    match o.status {
        KycStatus::Approved => Change::to(S::AmlPending, FlowStep::Aml, 1).pass(FlowStep::Kyc).send(),
        KycStatus::Declined => Change::end(S::Rejected).because(format!("kyc declined: {}", reasons(&o.reasons))),
        KycStatus::Resubmit | KycStatus::StepUpRequired if flow.attempt < limits.max_kyc_attempts => {
            Change::to(S::AwaitingEvidence, FlowStep::Kyc, flow.attempt).because(reasons(&o.reasons))
        }
        KycStatus::Resubmit | KycStatus::StepUpRequired => {
            Change::end(S::Rejected).because(format!("kyc_attempts_exhausted after {} attempts", flow.attempt))
        }
        KycStatus::ManualReview => Change::to(S::KycReview, FlowStep::Kyc, flow.attempt).because(reasons(&o.reasons)),
        KycStatus::Rejected | KycStatus::Failed => Change::end(S::Failed).because(error_reason(&o.error)),
    }
}

fn on_aml(flow: &Flow, o: &AmlOutcome) -> Change {
    use OnboardingState as S;
    let lists = || o.matches.iter().map(|m| m.source.as_str()).collect::<Vec<_>>().join(",");
    match o.status {
        AmlStatus::Clear => Change::to(S::FraudPending, FlowStep::Fraud, 1).pass(FlowStep::Aml).send(),
        AmlStatus::PotentialMatch => Change::to(S::AmlReview, FlowStep::Aml, flow.attempt).because(format!("potential match on {}", lists())),
        AmlStatus::ConfirmedMatch => Change::end(S::ComplianceHold).because(format!("confirmed match on {}", lists())),
        AmlStatus::Rejected | AmlStatus::Failed => Change::end(S::Failed).because(error_reason(&o.error)),
    }
}

fn on_fraud(flow: &Flow, o: &FraudOutcome) -> Change {
    use OnboardingState as S;
    let score = o.score.map_or_else(|| "none".to_owned(), |s| format!("{s:.2}"));
    match (o.status, o.decision) {
        (FraudStatus::Scored, Some(FraudDecision::Allow)) => Change::end(S::Approved).pass(FlowStep::Fraud),
        (FraudStatus::Scored, Some(FraudDecision::Review)) => Change::to(S::FraudReview, FlowStep::Fraud, flow.attempt).because(format!("score {score}")),
        (FraudStatus::Scored, Some(FraudDecision::Block)) => Change::end(S::FraudBlocked).because(format!("score {score}")),
        (FraudStatus::Scored, None) => Change::end(S::Failed).because("fraud scored without a decision".into()),
        (FraudStatus::FeedbackAccepted | FraudStatus::Rejected | FraudStatus::Failed, _) => Change::end(S::Failed).because(error_reason(&o.error)),
    }
}

fn on_decision(flow: &Flow, d: &ManualDecision) -> Change {
    use OnboardingState as S;
    let reason = d.note.clone().unwrap_or_else(|| format!("decided by {}", d.reviewer));
    match (d.verdict, flow.step) {
        (ManualVerdict::Approve, FlowStep::Kyc) => Change::to(S::AmlPending, FlowStep::Aml, 1).pass(FlowStep::Kyc).send(),
        (ManualVerdict::Approve, FlowStep::Aml) => Change::to(S::FraudPending, FlowStep::Fraud, 1).pass(FlowStep::Aml).send(),
        (ManualVerdict::Approve, FlowStep::Fraud) => Change::end(S::Approved).pass(FlowStep::Fraud),
        (ManualVerdict::Reject, _) => Change::end(S::Rejected).because(reason),
        (ManualVerdict::Hold, _) => Change::end(S::ComplianceHold).because(reason),
    }
}

fn on_timeout(flow: &Flow, limits: &Limits) -> Change {
    use OnboardingState as S;
    let waiting_for_worker = matches!(flow.state, S::KycPending | S::AmlPending | S::FraudPending);
    if waiting_for_worker && flow.resends < limits.max_resends {
        let mut c = Change::to(flow.state, flow.step, flow.attempt).send().because(format!("no {} outcome in time; command sent again", step_name(flow.step)));
        c.resend = true;
        return c;
    }
    Change::end(S::Expired).because(format!("{} passed its deadline", flow.state.as_str()))
}

/// What a transition does, before it is stamped onto a flow.
struct Change {
    state: OnboardingState,
    /// Step and attempt after the change; `None` keeps the flow's.
    step: Option<(FlowStep, i32)>,
    /// Send the command of the (new) step and attempt.
    send: bool,
    /// A re-send of the same attempt: counts against `max_resends`.
    resend: bool,
    passed: Option<FlowStep>,
    reason: Option<String>,
}

impl Change {
    fn to(state: OnboardingState, step: FlowStep, attempt: i32) -> Self {
        Self { state, step: Some((step, attempt)), send: false, resend: false, passed: None, reason: None }
    }

    fn end(state: OnboardingState) -> Self {
        Self { state, step: None, send: false, resend: false, passed: None, reason: None }
    }

    fn send(mut self) -> Self {
        self.send = true;
        self
    }

    fn pass(mut self, step: FlowStep) -> Self {
        self.passed = Some(step);
        self
    }

    fn because(mut self, reason: String) -> Self {
        self.reason = Some(reason).filter(|r| !r.is_empty());
        self
    }

    fn finish(self, flow: &Flow, previous: Option<OnboardingState>, trigger: &str, limits: &Limits, now: i64) -> Transition {
        let mut next = flow.clone();
        next.version += 1;
        next.state = self.state;
        if let Some((step, attempt)) = self.step {
            if (step, attempt) != (flow.step, flow.attempt) {
                next.resends = 0;
            }
            (next.step, next.attempt) = (step, attempt);
        }
        if self.resend {
            next.resends += 1;
        }
        if let Some(p) = self.passed {
            next.passed.push(p);
        }
        next.deadline_at_ms = deadline(self.state, limits).map(|d| now + d);
        let compensate = if matches!(self.state, OnboardingState::Rejected | OnboardingState::FraudBlocked | OnboardingState::Expired | OnboardingState::Failed) {
            next.passed.clone()
        } else {
            Vec::new()
        };
        let commands = if self.send { vec![command_for(&next, now)] } else { Vec::new() };
        let event = OnboardingEvent {
            event_id: format!("{}:{}", next.flow_id, next.version),
            subject_id: next.subject_id.clone(),
            flow_id: next.flow_id.clone(),
            version: next.version,
            previous_state: previous,
            state: next.state,
            terminal: next.state.terminal(),
            trigger: trigger.to_owned(),
            step: next.step,
            attempt: next.attempt,
            reason: self.reason.clone(),
            compensate: compensate.clone(),
            occurred_at_ms: now,
        };
        let mut audit = vec![AuditNote {
            action: "onboarding_transition",
            detail: serde_json::json!({
                "flow_id": next.flow_id,
                "version": next.version,
                "from": previous.map(OnboardingState::as_str),
                "to": next.state.as_str(),
                "trigger": trigger,
                "step": step_name(next.step),
                "attempt": next.attempt,
                "reason": self.reason,
            })
            .to_string(),
        }];
        if next.state == OnboardingState::ComplianceHold {
            let detail = serde_json::json!({"flow_id": next.flow_id, "reason": self.reason, "trigger": trigger});
            audit.push(AuditNote { action: "compliance_hold", detail: detail.to_string() });
        }
        if !compensate.is_empty() {
            let steps: Vec<&str> = compensate.iter().map(|s| step_name(*s)).collect();
            let detail = serde_json::json!({"flow_id": next.flow_id, "undo": steps, "because": next.state.as_str()});
            audit.push(AuditNote { action: "compensate", detail: detail.to_string() });
        }
        Transition { flow: next, commands, event, audit }
    }
}

fn deadline(state: OnboardingState, limits: &Limits) -> Option<i64> {
    use OnboardingState as S;
    match state {
        S::KycPending | S::AmlPending | S::FraudPending => Some(limits.step_timeout_ms),
        S::AwaitingEvidence => Some(limits.evidence_timeout_ms),
        S::KycReview | S::AmlReview | S::FraudReview => Some(limits.decision_timeout_ms),
        S::Approved | S::Rejected | S::ComplianceHold | S::FraudBlocked | S::Expired | S::Failed => None,
    }
}

/// The command for the flow's current step and attempt. Deterministic apart
/// from the request time, which fingerprints ignore: a re-send is a duplicate.
pub fn command_for(flow: &Flow, now: i64) -> StepCommand {
    let a = &flow.applicant;
    let key = step_key(&flow.flow_id, flow.step, flow.attempt);
    let flow_id = Some(flow.flow_id.clone());
    match flow.step {
        FlowStep::Kyc => StepCommand::Kyc(KycCommand {
            subject_id: flow.subject_id.clone(),
            idempotency_key: key,
            flow_id,
            person: a.person.clone(),
            document: a.document.clone(),
            selfie_ref: a.selfie_ref.clone(),
            requested_at_ms: now,
        }),
        FlowStep::Aml => StepCommand::Aml(AmlCommand {
            subject_id: flow.subject_id.clone(),
            idempotency_key: key,
            flow_id,
            action: AmlAction::Screen,
            subject: AmlSubject {
                kind: SubjectKind::Person,
                full_name: format!("{} {}", a.person.first_name, a.person.last_name),
                first_name: Some(a.person.first_name.clone()),
                last_name: Some(a.person.last_name.clone()),
                birth_date: a.person.date_of_birth.clone(),
                country: a.nationality.clone(),
            },
            lists: Vec::new(),
            list_update: None,
            requested_at_ms: now,
        }),
        FlowStep::Fraud => StepCommand::Fraud(FraudCommand {
            subject_id: flow.subject_id.clone(),
            idempotency_key: key,
            flow_id,
            action: FraudAction::Score,
            event: FraudEvent::Onboarding,
            email: a.person.email.clone(),
            phone: a.phone.clone(),
            ip: a.ip.clone(),
            session_id: a.session_id.clone(),
            transaction: None,
            feedback: None,
            requested_at_ms: now,
        }),
    }
}

fn reasons<T: Serialize>(r: &[T]) -> String {
    r.iter()
        .filter_map(|x| serde_json::to_value(x).ok())
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect::<Vec<_>>()
        .join(",")
}

fn error_reason(e: &Option<OutcomeError>) -> String {
    e.as_ref().map_or_else(|| "no outcome error given".to_owned(), |e| format!("{}: {}", e.code.as_str(), e.message))
}

fn decision_name(d: FraudDecision) -> &'static str {
    match d {
        FraudDecision::Allow => "allow",
        FraudDecision::Review => "review",
        FraudDecision::Block => "block",
    }
}

fn verdict_name(v: ManualVerdict) -> &'static str {
    match v {
        ManualVerdict::Approve => "approve",
        ManualVerdict::Reject => "reject",
        ManualVerdict::Hold => "hold",
    }
}

#[cfg(test)]
mod tests;
