//! Fraud scoring: a synchronous score and decision for an event
//! (onboarding, login, payment, payout), and asynchronous feedback
//! (chargeback, confirmed fraud, legitimate) sent back to the vendor so its
//! models learn. Wire form: `schemas/fraud/*.avsc`.

use crate::check::FlowStep;
use crate::{Fingerprint, OutcomeError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FraudAction {
    Score,
    Feedback,
}

/// What is being scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FraudEvent {
    Onboarding,
    Login,
    Payment,
    Payout,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FraudTransaction {
    /// Our id; feedback names it later.
    pub transaction_id: String,
    pub amount_minor: i64,
    /// ISO 4217.
    pub currency: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FeedbackKind {
    Chargeback,
    ConfirmedFraud,
    /// A reviewed or blocked event turned out to be genuine.
    Legitimate,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FraudFeedback {
    pub kind: FeedbackKind,
    /// The scored transaction (or the subject's session for onboarding).
    pub transaction_id: String,
    pub reason: Option<String>,
    pub occurred_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FraudCommand {
    /// The customer; Kafka key.
    pub subject_id: String,
    pub idempotency_key: String,
    pub flow_id: Option<String>,
    pub action: FraudAction,
    pub event: FraudEvent,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub ip: Option<String>,
    /// The device/session id from the bank's front-end SDK.
    pub session_id: Option<String>,
    /// Required for payment and payout events.
    pub transaction: Option<FraudTransaction>,
    /// Required for `FEEDBACK`.
    pub feedback: Option<FraudFeedback>,
    pub requested_at_ms: i64,
}

impl FraudCommand {
    pub fn fingerprint(&self) -> Fingerprint {
        let opt = |o: &Option<String>| o.clone().unwrap_or_default();
        let tx = self.transaction.as_ref().map(|t| format!("{}|{}|{}", t.transaction_id, t.amount_minor, t.currency)).unwrap_or_default();
        let fb = self
            .feedback
            .as_ref()
            .map(|f| format!("{:?}|{}|{}|{}", f.kind, f.transaction_id, f.reason.clone().unwrap_or_default(), f.occurred_at_ms))
            .unwrap_or_default();
        Fingerprint::of_fields(&[
            self.subject_id.as_bytes(),
            opt(&self.flow_id).as_bytes(),
            format!("{:?}|{:?}", self.action, self.event).as_bytes(),
            opt(&self.email).as_bytes(),
            opt(&self.phone).as_bytes(),
            opt(&self.ip).as_bytes(),
            opt(&self.session_id).as_bytes(),
            tx.as_bytes(),
            fb.as_bytes(),
        ])
    }

    pub fn validate(&self) -> Result<(), String> {
        crate::check::validate_ids(&self.subject_id, &self.idempotency_key)?;
        match self.action {
            FraudAction::Score => {
                if matches!(self.event, FraudEvent::Payment | FraudEvent::Payout) && self.transaction.is_none() {
                    return Err("transaction is required to score a payment or payout".into());
                }
                if let Some(t) = &self.transaction {
                    crate::Money::new(t.amount_minor, &t.currency).map_err(|e| format!("transaction: {e}"))?;
                    if t.transaction_id.is_empty() {
                        return Err("transaction.transaction_id must not be empty".into());
                    }
                }
            }
            FraudAction::Feedback => match &self.feedback {
                Some(f) if !f.transaction_id.is_empty() => {}
                _ => return Err("feedback with a transaction_id is required for FEEDBACK".into()),
            },
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FraudDecision {
    Allow,
    /// Hold for an analyst.
    Review,
    Block,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FraudStatus {
    /// A score and decision came back.
    Scored,
    /// The vendor took the feedback.
    FeedbackAccepted,
    /// Refused before any vendor call.
    Rejected,
    /// The vendor refused the request (e.g. feedback for an unknown transaction).
    Failed,
}

impl FraudStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FraudStatus::Scored => "scored",
            FraudStatus::FeedbackAccepted => "feedback_accepted",
            FraudStatus::Rejected => "rejected",
            FraudStatus::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FraudReason {
    DisposableEmail,
    RiskyEmail,
    RiskyPhone,
    ProxyOrVpn,
    RiskyDevice,
    Velocity,
    UnusualAmount,
    Blocklisted,
    KnownFraud,
    Other,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FraudOutcome {
    pub subject_id: String,
    pub idempotency_key: String,
    pub flow_id: Option<String>,
    /// Always `FRAUD`.
    pub step: FlowStep,
    pub action: FraudAction,
    pub status: FraudStatus,
    /// False only for a `REVIEW` decision, which waits for an analyst.
    pub terminal: bool,
    pub decision: Option<FraudDecision>,
    /// 0..=1 (vendors' 0-100 scales are normalized); higher is riskier.
    pub score: Option<f64>,
    pub reasons: Vec<FraudReason>,
    pub provider: Option<String>,
    pub provider_reference: Option<String>,
    pub error: Option<OutcomeError>,
    pub attempts: i32,
    pub replayed: bool,
    pub completed_at_ms: i64,
}

impl FraudOutcome {
    pub fn new(cmd: &FraudCommand, status: FraudStatus, decision: Option<FraudDecision>) -> Self {
        Self {
            subject_id: cmd.subject_id.clone(),
            idempotency_key: cmd.idempotency_key.clone(),
            flow_id: cmd.flow_id.clone(),
            step: FlowStep::Fraud,
            action: cmd.action,
            status,
            terminal: decision != Some(FraudDecision::Review),
            decision,
            score: None,
            reasons: Vec::new(),
            provider: None,
            provider_reference: None,
            error: None,
            attempts: 0,
            replayed: false,
            completed_at_ms: crate::now_ms(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score() -> FraudCommand {
        FraudCommand {
            subject_id: "c-1".into(),
            idempotency_key: "f-1".into(),
            flow_id: None,
            action: FraudAction::Score,
            event: FraudEvent::Payment,
            email: Some("ada@example.com".into()),
            phone: None,
            ip: None,
            session_id: None,
            transaction: Some(FraudTransaction { transaction_id: "tx-1".into(), amount_minor: 100, currency: "EUR".into() }),
            feedback: None,
            requested_at_ms: 0,
        }
    }

    #[test]
    fn payments_need_a_transaction_and_feedback_needs_its_target() {
        assert!(score().validate().is_ok());
        let mut c = score();
        c.transaction = None;
        assert!(c.validate().is_err_and(|e| e.contains("transaction")));
        let mut f = score();
        f.action = FraudAction::Feedback;
        assert!(f.validate().is_err_and(|e| e.contains("feedback")));
    }

    #[test]
    fn only_review_waits() {
        assert!(!FraudOutcome::new(&score(), FraudStatus::Scored, Some(FraudDecision::Review)).terminal);
        assert!(FraudOutcome::new(&score(), FraudStatus::Scored, Some(FraudDecision::Block)).terminal);
    }
}
