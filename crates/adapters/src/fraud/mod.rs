//! Fraud adapters. [`FraudProvider`] is the closed set of fraud vendors;
//! both score synchronously and take feedback on a separate endpoint.

pub mod sardine;
pub mod seon;

use crate::{AdapterError, CallContext};
use switchyard_canonical::fraud::{FraudAction, FraudCommand, FraudDecision, FraudReason, FraudStatus};

/// The vendor's answer, already in canonical terms.
#[derive(Debug, Clone, PartialEq)]
pub struct FraudVerdict {
    /// Scored or feedback accepted.
    pub status: FraudStatus,
    pub decision: Option<FraudDecision>,
    /// 0..=1.
    pub score: Option<f64>,
    pub reasons: Vec<FraudReason>,
    /// The vendor's id for the scoring (Sardine session, SEON transaction id).
    pub vendor_reference: String,
}

impl FraudVerdict {
    pub(crate) fn feedback_accepted(vendor_reference: String) -> Self {
        Self { status: FraudStatus::FeedbackAccepted, decision: None, score: None, reasons: Vec::new(), vendor_reference }
    }
}

#[derive(Debug, Clone)]
pub enum FraudProvider {
    Sardine(sardine::SardineAdapter),
    Seon(seon::SeonAdapter),
}

impl FraudProvider {
    pub fn name(&self) -> &str {
        match self {
            FraudProvider::Sardine(a) => a.name(),
            FraudProvider::Seon(a) => a.name(),
        }
    }

    /// Sardine takes our key as the `sessionKey` of a score; SEON keys on
    /// `transaction_id`, which the adapter derives from the command.
    pub fn provider_key(&self, idempotency_key: &str) -> String {
        match self {
            FraudProvider::Sardine(_) | FraudProvider::Seon(_) => idempotency_key.to_owned(),
        }
    }

    pub async fn call(&self, cmd: &FraudCommand, provider_key: &str, ctx: &CallContext) -> Result<FraudVerdict, AdapterError> {
        match (self, cmd.action) {
            (FraudProvider::Sardine(a), FraudAction::Score) => a.score(cmd, provider_key, ctx).await,
            (FraudProvider::Sardine(a), FraudAction::Feedback) => a.feedback(cmd, provider_key, ctx).await,
            (FraudProvider::Seon(a), FraudAction::Score) => a.score(cmd, ctx).await,
            (FraudProvider::Seon(a), FraudAction::Feedback) => a.feedback(cmd, ctx).await,
        }
    }
}

/// A feedback command's payload; validation guarantees it is there.
pub(crate) fn feedback_of(cmd: &FraudCommand) -> Result<&switchyard_canonical::fraud::FraudFeedback, AdapterError> {
    cmd.feedback.as_ref().ok_or_else(|| {
        AdapterError::new(switchyard_canonical::ErrorClass::Permanent, switchyard_canonical::ErrorCode::InvalidRequest, "feedback missing")
    })
}

/// Minor units to the decimal amount fraud vendors take. ISO 4217 exponents
/// for the currencies that are not two-decimal; everything else has two.
pub(crate) fn major_units(amount_minor: i64, currency: &str) -> f64 {
    let exponent = match currency {
        "JPY" | "KRW" | "ISK" | "CLP" | "VND" | "XAF" | "XOF" | "UGX" | "PYG" => 0,
        "BHD" | "KWD" | "OMR" | "JOD" | "TND" | "LYD" | "IQD" => 3,
        _ => 2,
    };
    amount_minor as f64 / 10f64.powi(exponent)
}
