//! SEON wire types and their mapping to canonical terms. Every reply has
//! the envelope `{success, error: {code, message}, data}`.

use crate::fraud::FraudVerdict;
use crate::AdapterError;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use switchyard_canonical::fraud::{FeedbackKind, FraudCommand, FraudDecision, FraudEvent, FraudReason, FraudStatus};
use switchyard_canonical::{ErrorClass, ErrorCode};

#[derive(Debug, Serialize)]
pub(super) struct ScoreRequest {
    action_type: &'static str,
    user_id: String,
    transaction_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    phone_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    transaction_amount: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    transaction_currency: Option<String>,
}

impl ScoreRequest {
    pub(super) fn new(cmd: &FraudCommand) -> Self {
        let action_type = match cmd.event {
            FraudEvent::Onboarding => "account_register",
            FraudEvent::Login => "account_login",
            FraudEvent::Payment => "purchase",
            FraudEvent::Payout => "withdrawal",
        };
        let t = cmd.transaction.as_ref();
        let amount = t.map(|t| crate::fraud::major_units(t.amount_minor, &t.currency));
        Self {
            action_type,
            user_id: cmd.subject_id.clone(),
            transaction_id: t.map_or_else(|| cmd.idempotency_key.clone(), |t| t.transaction_id.clone()),
            email: cmd.email.clone(),
            phone_number: cmd.phone.clone(),
            ip: cmd.ip.clone(),
            session_id: cmd.session_id.clone(),
            transaction_amount: amount,
            transaction_currency: t.map(|t| t.currency.clone()),
        }
    }
}

pub(super) fn label(kind: FeedbackKind) -> &'static str {
    match kind {
        FeedbackKind::Chargeback => "fraud_detection_chargeback_fraud",
        FeedbackKind::ConfirmedFraud => "fraud_detection_confirmed_fraud",
        FeedbackKind::Legitimate => "approved_genuine",
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct SeonReply {
    success: bool,
    #[serde(default)]
    error: Option<SeonError>,
    #[serde(default)]
    data: Option<SeonData>,
}

#[derive(Debug, Deserialize)]
struct SeonError {
    code: Option<String>,
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SeonData {
    id: Option<String>,
    state: Option<String>,
    fraud_score: Option<f64>,
    #[serde(default)]
    applied_rules: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
struct Rule {
    name: String,
    #[serde(default)]
    score: f64,
}

fn reason(rule: &Rule) -> FraudReason {
    let n = rule.name.to_ascii_lowercase();
    if n.contains("disposable") {
        FraudReason::DisposableEmail
    } else if n.contains("proxy") || n.contains("vpn") || n.contains("tor ") {
        FraudReason::ProxyOrVpn
    } else if n.contains("blacklist") || n.contains("blocklist") {
        FraudReason::Blocklisted
    } else if n.contains("fraud") {
        FraudReason::KnownFraud
    } else if n.contains("velocity") || n.contains("transactions in") {
        FraudReason::Velocity
    } else if n.contains("amount") {
        FraudReason::UnusualAmount
    } else if n.contains("email") {
        FraudReason::RiskyEmail
    } else if n.contains("phone") {
        FraudReason::RiskyPhone
    } else if n.contains("device") || n.contains("emulator") {
        FraudReason::RiskyDevice
    } else {
        FraudReason::Other
    }
}

fn refused(reply: &SeonReply) -> AdapterError {
    let (code, message) = reply.error.as_ref().map(|e| (e.code.clone().unwrap_or_default(), e.message.clone().unwrap_or_default())).unwrap_or_default();
    AdapterError::new(ErrorClass::Permanent, ErrorCode::InvalidRequest, format!("seon {code}: {message}"))
}

pub(super) fn verdict(reply: SeonReply) -> Result<FraudVerdict, AdapterError> {
    if !reply.success {
        return Err(refused(&reply));
    }
    let Some(data) = reply.data else {
        return Err(AdapterError::new(ErrorClass::Transient, ErrorCode::Unknown, "seon: success without data"));
    };
    let decision = match data.state.as_deref() {
        Some("APPROVE") => FraudDecision::Allow,
        Some("REVIEW") => FraudDecision::Review,
        Some("DECLINE") => FraudDecision::Block,
        other => return Err(AdapterError::new(ErrorClass::ManualRepair, ErrorCode::Unknown, format!("seon: unknown state {other:?}"))),
    };
    // Only rules that added risk explain a decision.
    let mut reasons: Vec<FraudReason> = data.applied_rules.iter().filter(|r| r.score > 0.0).map(reason).collect();
    reasons.sort_by_key(|r| *r as u8);
    reasons.dedup();
    Ok(FraudVerdict {
        status: FraudStatus::Scored,
        decision: Some(decision),
        score: data.fraud_score.map(|s| (s / 100.0).clamp(0.0, 1.0)),
        reasons,
        vendor_reference: data.id.unwrap_or_default(),
    })
}

pub(super) fn accepted(reply: SeonReply, transaction_id: &str) -> Result<FraudVerdict, AdapterError> {
    if !reply.success {
        return Err(refused(&reply));
    }
    Ok(FraudVerdict::feedback_accepted(transaction_id.to_owned()))
}

/// SEON answers errors with the same envelope; unknown transactions and
/// invalid input are the caller's problem, not the vendor's health.
pub(super) fn map_error(status: u16, retry_after: Option<Duration>, body: Option<SeonReply>) -> AdapterError {
    let mut err = match (status, &body) {
        (400 | 404 | 422, Some(b)) => refused(b),
        (400 | 404 | 422, None) => AdapterError::new(ErrorClass::Permanent, ErrorCode::InvalidRequest, format!("seon: HTTP {status}")),
        _ => {
            let message = body.as_ref().and_then(|b| b.error.as_ref()).and_then(|e| e.message.clone()).unwrap_or_default();
            AdapterError::from_status(status, retry_after, &format!("seon: {message}"))
        }
    };
    err.http_status = Some(status);
    err.retry_after = retry_after;
    err
}
