//! Onboarding: the KYC -> AML -> fraud chain for one applicant, run by the
//! onboarding orchestrator. Wire form: `schemas/onboarding/*.avsc`.
//!
//! Core banking sends an [`OnboardingCommand`] to start a flow, to hand in
//! more evidence after a KYC step-up, or to record an analyst's decision on
//! a step that waits for one (a potential AML match, a KYC manual review, a
//! fraud review). Every transition of the flow is published as an
//! [`OnboardingEvent`] carrying the state it left and the state it entered.

use crate::check::FlowStep;
use crate::kyc::{IdDocument, Person};
use serde::{Deserialize, Serialize};

/// Longest flow id: step keys (`<flow_id>.kyc.<n>`) must fit the 64
/// characters vendors accept as idempotency keys.
pub const MAX_FLOW_ID_LEN: usize = 48;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OnboardingAction {
    /// Begin a flow for an applicant (`applicant` required).
    Start,
    /// New identity evidence after a step-up or resubmit request (`evidence` required).
    SubmitEvidence,
    /// An analyst's decision on a step waiting for one (`decision` required).
    Decide,
}

/// What the orchestrator needs to run all three checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applicant {
    pub person: Person,
    pub document: IdDocument,
    pub selfie_ref: Option<String>,
    /// ISO 3166-1 alpha-2 nationality, for screening.
    pub nationality: Option<String>,
    pub phone: Option<String>,
    /// Where the application came from, for fraud scoring.
    pub ip: Option<String>,
    /// The device/session id of the bank's front-end SDK.
    pub session_id: Option<String>,
}

/// Evidence the applicant handed in after a step-up: it replaces the
/// document (and selfie, if given) for the next KYC attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub document: IdDocument,
    pub selfie_ref: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ManualVerdict {
    /// A false positive or acceptable risk: the flow continues.
    Approve,
    /// Do not onboard; completed steps are compensated.
    Reject,
    /// A true match: compliance hold, nothing moves.
    Hold,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManualDecision {
    /// The step the decision is about; a decision for another step is ignored.
    pub step: FlowStep,
    pub verdict: ManualVerdict,
    /// Who decided, for the audit log.
    pub reviewer: String,
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnboardingCommand {
    /// The applicant; Kafka key of every message of the flow.
    pub subject_id: String,
    pub idempotency_key: String,
    /// The application id core banking uses; names the flow.
    pub flow_id: String,
    pub action: OnboardingAction,
    pub applicant: Option<Applicant>,
    pub evidence: Option<Evidence>,
    pub decision: Option<ManualDecision>,
    pub requested_at_ms: i64,
}

impl OnboardingCommand {
    pub fn validate(&self) -> Result<(), String> {
        crate::check::validate_ids(&self.subject_id, &self.idempotency_key)?;
        if self.flow_id.is_empty() || self.flow_id.len() > MAX_FLOW_ID_LEN {
            return Err(format!("flow_id must have 1 to {MAX_FLOW_ID_LEN} characters"));
        }
        match self.action {
            OnboardingAction::Start => {
                let Some(a) = &self.applicant else { return Err("applicant is required for START".into()) };
                if a.person.first_name.trim().is_empty() || a.person.last_name.trim().is_empty() {
                    return Err("applicant.person needs a first and a last name".into());
                }
                if let Some(n) = &a.nationality {
                    if n.len() != 2 || !n.bytes().all(|b| b.is_ascii_uppercase()) {
                        return Err("applicant.nationality must be ISO 3166-1 alpha-2".into());
                    }
                }
                // Checked here, not only when the KYC step runs: a bad
                // document must refuse the command, not fail the flow later.
                a.document.validate("applicant.document")?;
            }
            OnboardingAction::SubmitEvidence => match &self.evidence {
                Some(e) => e.document.validate("evidence.document")?,
                None => return Err("evidence is required for SUBMIT_EVIDENCE".into()),
            },
            OnboardingAction::Decide => match &self.decision {
                Some(d) if !d.reviewer.trim().is_empty() => {}
                _ => return Err("decision with a reviewer is required for DECIDE".into()),
            },
        }
        Ok(())
    }
}

/// Where a flow is. `*_PENDING` waits for a worker's outcome, `*_REVIEW`
/// and `AWAITING_EVIDENCE` for a person; the last six are terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OnboardingState {
    KycPending,
    AwaitingEvidence,
    KycReview,
    AmlPending,
    AmlReview,
    FraudPending,
    FraudReview,
    /// Every check passed: open the account.
    Approved,
    /// A check or an analyst said no (or step-ups ran out).
    Rejected,
    /// A confirmed sanctions match or an analyst's hold: compliance decides.
    ComplianceHold,
    FraudBlocked,
    /// A step or a person did not answer within its deadline.
    Expired,
    /// A check could not be run (invalid data, vendor refused): ops look.
    Failed,
}

impl OnboardingState {
    pub const ALL: [OnboardingState; 13] = [
        OnboardingState::KycPending,
        OnboardingState::AwaitingEvidence,
        OnboardingState::KycReview,
        OnboardingState::AmlPending,
        OnboardingState::AmlReview,
        OnboardingState::FraudPending,
        OnboardingState::FraudReview,
        OnboardingState::Approved,
        OnboardingState::Rejected,
        OnboardingState::ComplianceHold,
        OnboardingState::FraudBlocked,
        OnboardingState::Expired,
        OnboardingState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OnboardingState::KycPending => "kyc_pending",
            OnboardingState::AwaitingEvidence => "awaiting_evidence",
            OnboardingState::KycReview => "kyc_review",
            OnboardingState::AmlPending => "aml_pending",
            OnboardingState::AmlReview => "aml_review",
            OnboardingState::FraudPending => "fraud_pending",
            OnboardingState::FraudReview => "fraud_review",
            OnboardingState::Approved => "approved",
            OnboardingState::Rejected => "rejected",
            OnboardingState::ComplianceHold => "compliance_hold",
            OnboardingState::FraudBlocked => "fraud_blocked",
            OnboardingState::Expired => "expired",
            OnboardingState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == s)
    }

    pub fn terminal(self) -> bool {
        match self {
            OnboardingState::KycPending
            | OnboardingState::AwaitingEvidence
            | OnboardingState::KycReview
            | OnboardingState::AmlPending
            | OnboardingState::AmlReview
            | OnboardingState::FraudPending
            | OnboardingState::FraudReview => false,
            OnboardingState::Approved
            | OnboardingState::Rejected
            | OnboardingState::ComplianceHold
            | OnboardingState::FraudBlocked
            | OnboardingState::Expired
            | OnboardingState::Failed => true,
        }
    }
}

/// One transition of a flow. `event_id` is `<flow_id>:<version>`, so a
/// consumer deduplicates a re-published event by it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnboardingEvent {
    pub event_id: String,
    pub subject_id: String,
    pub flow_id: String,
    /// Starts at 1 and grows by one per transition.
    pub version: i64,
    /// None for the transition that created the flow.
    pub previous_state: Option<OnboardingState>,
    pub state: OnboardingState,
    pub terminal: bool,
    /// What caused it, e.g. `start`, `kyc:approved`, `decision:approve`, `timeout`.
    pub trigger: String,
    /// The step the flow is on after the transition, and its attempt.
    pub step: FlowStep,
    pub attempt: i32,
    pub reason: Option<String>,
    /// Steps that had passed and must be undone because a later one failed
    /// (see the orchestrator's docs); empty otherwise.
    pub compensate: Vec<FlowStep>,
    pub occurred_at_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kyc::DocumentKind;

    fn start() -> OnboardingCommand {
        OnboardingCommand {
            subject_id: "app-1".into(),
            idempotency_key: "onb-1".into(),
            flow_id: "flow-1".into(),
            action: OnboardingAction::Start,
            applicant: Some(Applicant {
                person: Person { first_name: "Ada".into(), last_name: "Lovelace".into(), date_of_birth: None, email: None },
                document: IdDocument { kind: DocumentKind::Passport, issuing_country: "GBR".into(), front_ref: "doc://f".into(), back_ref: None },
                selfie_ref: None,
                nationality: Some("GB".into()),
                phone: None,
                ip: None,
                session_id: None,
            }),
            evidence: None,
            decision: None,
            requested_at_ms: 0,
        }
    }

    #[test]
    fn each_action_needs_its_payload() {
        assert!(start().validate().is_ok());
        let mut c = start();
        c.applicant = None;
        assert!(c.validate().is_err_and(|e| e.contains("applicant")));
        c.action = OnboardingAction::Decide;
        assert!(c.validate().is_err_and(|e| e.contains("decision")));
        let mut long = start();
        long.flow_id = "f".repeat(MAX_FLOW_ID_LEN + 1);
        assert!(long.validate().is_err_and(|e| e.contains("flow_id")));
    }

    /// Found by schemathesis through the gateway (`"IBN*"` answered 202);
    /// a command published straight on the bus must be refused the same.
    #[test]
    fn documents_are_checked_at_start_and_in_evidence() {
        let mut c = start();
        if let Some(a) = c.applicant.as_mut() {
            a.document.issuing_country = "IBN*".into();
        }
        assert!(c.validate().is_err_and(|e| e.contains("applicant.document.issuing_country")), "{:?}", c.validate());
        let document = IdDocument { kind: DocumentKind::Passport, issuing_country: "GBR".into(), front_ref: " ".into(), back_ref: None };
        let mut e = start();
        e.action = OnboardingAction::SubmitEvidence;
        e.applicant = None;
        e.evidence = Some(Evidence { document: document.clone(), selfie_ref: None });
        assert!(e.validate().is_err_and(|e| e.contains("evidence.document.front_ref")), "{:?}", e.validate());
        e.evidence = Some(Evidence { document: IdDocument { issuing_country: "IBN*".into(), front_ref: "doc://f".into(), ..document }, selfie_ref: None });
        assert!(e.validate().is_err_and(|e| e.contains("evidence.document.issuing_country")));
        if let Some(ev) = e.evidence.as_mut() {
            ev.document.issuing_country = "GBR".into();
        }
        assert_eq!(e.validate(), Ok(()));
    }

    #[test]
    fn states_round_trip_and_six_are_terminal() {
        for s in OnboardingState::ALL {
            assert_eq!(OnboardingState::parse(s.as_str()), Some(s));
        }
        assert_eq!(OnboardingState::ALL.iter().filter(|s| s.terminal()).count(), 6);
    }
}
