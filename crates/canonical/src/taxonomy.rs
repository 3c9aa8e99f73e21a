//! The error taxonomy. Every vendor failure is mapped, inside its adapter, to
//! one class that decides what the runtime does next, and to one code in our
//! own vocabulary that product teams can reason about.

use serde::{Deserialize, Serialize};

/// What the runtime does with a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Worth retrying with the same idempotency key: backoff, then the retry topic.
    Transient,
    /// Final: retrying cannot succeed. The outcome is a failure.
    Permanent,
    /// A person must look: the message goes to the DLQ.
    ManualRepair,
    /// Held for compliance: no retry, no failure, nothing moves until released.
    ComplianceHold,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Permanent => "permanent",
            ErrorClass::ManualRepair => "manual_repair",
            ErrorClass::ComplianceHold => "compliance_hold",
        }
    }
}

/// Our own error vocabulary; vendor codes never leave an adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InsufficientFunds,
    InvalidBeneficiary,
    BeneficiaryAccountClosed,
    InvalidRequest,
    IdempotencyCollision,
    VendorUnavailable,
    RateLimited,
    Timeout,
    AuthenticationFailed,
    UndecodableMessage,
    Unknown,
    /// The domain is switched off by policy; the command waits to be released.
    DomainOff,
    /// AML screening confirmed a sanctions/PEP/adverse-media match: the
    /// subject is held for compliance (class `compliance_hold`).
    SanctionsMatch,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InsufficientFunds => "insufficient_funds",
            ErrorCode::InvalidBeneficiary => "invalid_beneficiary",
            ErrorCode::BeneficiaryAccountClosed => "beneficiary_account_closed",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::IdempotencyCollision => "idempotency_collision",
            ErrorCode::VendorUnavailable => "vendor_unavailable",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Timeout => "timeout",
            ErrorCode::AuthenticationFailed => "authentication_failed",
            ErrorCode::UndecodableMessage => "undecodable_message",
            ErrorCode::Unknown => "unknown",
            ErrorCode::DomainOff => "domain_off",
            ErrorCode::SanctionsMatch => "sanctions_match",
        }
    }
}

/// The error carried by a failed or held outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeError {
    pub class: ErrorClass,
    pub code: ErrorCode,
    /// Human-readable, free of secrets and of personal data.
    pub message: String,
}
