//! Sardine wire types and their mapping to canonical terms.

use crate::fraud::FraudVerdict;
use crate::AdapterError;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use switchyard_canonical::fraud::{FeedbackKind, FraudCommand, FraudDecision, FraudEvent, FraudFeedback, FraudReason, FraudStatus};
use switchyard_canonical::{ErrorClass, ErrorCode};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ScoreRequest {
    session_key: String,
    flow: &'static str,
    customer: Customer,
    #[serde(skip_serializing_if = "Option::is_none")]
    transaction: Option<Transaction>,
    checkpoints: Vec<&'static str>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Customer {
    id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    email_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    phone: Option<String>,
    /// UNCONFIRMED: Sardine normally learns the IP from its device SDK session.
    #[serde(skip_serializing_if = "Option::is_none")]
    ip_address: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Transaction {
    id: String,
    /// Major units, as Sardine takes them.
    amount: f64,
    currency_code: String,
    action_type: &'static str,
}

impl ScoreRequest {
    pub(super) fn new(cmd: &FraudCommand, key: &str) -> Self {
        let (flow, checkpoints, action) = match cmd.event {
            FraudEvent::Onboarding => ("onboarding", vec!["customer"], "onboarding"),
            FraudEvent::Login => ("login", vec!["login"], "login"),
            FraudEvent::Payment => ("payment", vec!["customer", "payment"], "buy"),
            FraudEvent::Payout => ("withdrawal", vec!["customer", "payment"], "withdraw"),
        };
        let transaction = cmd.transaction.as_ref().map(|t| {
            Transaction {
                id: t.transaction_id.clone(),
                amount: crate::fraud::major_units(t.amount_minor, &t.currency),
                currency_code: t.currency.clone(),
                action_type: action,
            }
        });
        Self {
            session_key: cmd.session_id.clone().unwrap_or_else(|| key.to_owned()),
            flow,
            customer: Customer { id: cmd.subject_id.clone(), email_address: cmd.email.clone(), phone: cmd.phone.clone(), ip_address: cmd.ip.clone() },
            transaction,
            checkpoints,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct FeedbackRequest {
    session_key: String,
    customer: FeedbackCustomer,
    transaction: FeedbackTransaction,
    feedback: FeedbackBody,
}

#[derive(Debug, Serialize)]
struct FeedbackCustomer {
    id: String,
}

#[derive(Debug, Serialize)]
struct FeedbackTransaction {
    id: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct FeedbackBody {
    #[serde(rename = "type")]
    kind: &'static str,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    time_millis: i64,
}

impl FeedbackRequest {
    pub(super) fn new(cmd: &FraudCommand, f: &FraudFeedback, key: &str) -> Self {
        let (kind, status) = match f.kind {
            FeedbackKind::Chargeback => ("chargeback", "fraud"),
            FeedbackKind::ConfirmedFraud => ("fraud", "fraud"),
            FeedbackKind::Legitimate => ("fraud", "not_fraud"),
        };
        Self {
            session_key: key.to_owned(),
            customer: FeedbackCustomer { id: cmd.subject_id.clone() },
            transaction: FeedbackTransaction { id: f.transaction_id.clone() },
            feedback: FeedbackBody { kind, status, reason: f.reason.clone(), time_millis: f.occurred_at_ms },
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct SardineReply {
    level: String,
    #[serde(default)]
    customer: Option<ReplyCustomer>,
}

#[derive(Debug, Deserialize)]
struct ReplyCustomer {
    score: Option<f64>,
    #[serde(default)]
    signals: Vec<Signal>,
}

#[derive(Debug, Deserialize)]
struct Signal {
    key: String,
    value: String,
}

fn reason(s: &Signal) -> Option<FraudReason> {
    let risky = matches!(s.value.as_str(), "high" | "very_high" | "true");
    if !risky {
        return None;
    }
    Some(match s.key.as_str() {
        "emailDomainLevel" | "emailLevel" => FraudReason::RiskyEmail,
        "isDisposableEmail" => FraudReason::DisposableEmail,
        "phoneLevel" => FraudReason::RiskyPhone,
        "proxyLevel" | "vpnLevel" | "isProxy" => FraudReason::ProxyOrVpn,
        "deviceRiskLevel" | "emulator" => FraudReason::RiskyDevice,
        "velocityLevel" => FraudReason::Velocity,
        "amountLevel" => FraudReason::UnusualAmount,
        "blocklisted" | "isBlocklisted" => FraudReason::Blocklisted,
        "knownFraud" => FraudReason::KnownFraud,
        _ => FraudReason::Other,
    })
}

pub(super) fn verdict(r: SardineReply, key: &str) -> Result<FraudVerdict, AdapterError> {
    let decision = match r.level.as_str() {
        "low" | "medium" => FraudDecision::Allow,
        "high" => FraudDecision::Review,
        "very_high" => FraudDecision::Block,
        other => return Err(AdapterError::new(ErrorClass::ManualRepair, ErrorCode::Unknown, format!("sardine: unknown level {other}"))),
    };
    let (score, mut reasons) = match &r.customer {
        Some(c) => (c.score.map(|s| (s / 100.0).clamp(0.0, 1.0)), c.signals.iter().filter_map(reason).collect::<Vec<_>>()),
        None => (None, Vec::new()),
    };
    reasons.dedup();
    Ok(FraudVerdict { status: FraudStatus::Scored, decision: Some(decision), score, reasons, vendor_reference: key.to_owned() })
}

#[derive(Debug, Deserialize)]
pub(super) struct SardineError {
    message: Option<String>,
}

pub(super) fn map_error(status: u16, retry_after: Option<Duration>, body: Option<SardineError>) -> AdapterError {
    let message = body.and_then(|b| b.message).unwrap_or_default();
    let mut err = match status {
        400 | 422 => AdapterError::new(ErrorClass::Permanent, ErrorCode::InvalidRequest, format!("sardine: {message}")),
        409 => AdapterError::new(ErrorClass::ManualRepair, ErrorCode::IdempotencyCollision, format!("sardine: {message}")),
        _ => AdapterError::from_status(status, retry_after, &format!("sardine: {message}")),
    };
    err.http_status = Some(status);
    err.retry_after = retry_after;
    err
}
