//! Stripe wire types and their mapping to canonical terms.

use crate::payouts::VendorPayout;
use crate::AdapterError;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use switchyard_canonical::{ErrorClass, ErrorCode, OutcomeError, PayoutCommand, PayoutRail, PayoutStatus};

#[derive(Debug, Serialize)]
pub(super) struct StripePayoutRequest {
    amount: i64,
    currency: String,
    method: &'static str,
    description: String,
    statement_descriptor: String,
    #[serde(rename = "metadata[switchyard_payout_id]")]
    payout_id: String,
    #[serde(rename = "metadata[beneficiary_name]")]
    beneficiary_name: String,
}

impl From<&PayoutCommand> for StripePayoutRequest {
    fn from(cmd: &PayoutCommand) -> Self {
        let method = match cmd.rail {
            PayoutRail::Standard => "standard",
            PayoutRail::Instant => "instant",
        };
        Self {
            amount: cmd.amount_minor,
            currency: cmd.currency.to_ascii_lowercase(),
            method,
            description: cmd.reference.clone(),
            statement_descriptor: statement_descriptor(&cmd.reference),
            payout_id: cmd.payout_id.clone(),
            beneficiary_name: cmd.beneficiary.name.clone(),
        }
    }
}

impl StripePayoutRequest {
    pub(super) fn into_form(self) -> Result<String, AdapterError> {
        serde_urlencoded::to_string(&self)
            .map_err(|e| AdapterError::new(ErrorClass::Permanent, ErrorCode::InvalidRequest, format!("form encoding: {e}")))
    }
}

/// Stripe allows 22 characters and no `<>\'"*`.
fn statement_descriptor(reference: &str) -> String {
    let cut: String = reference.chars().filter(|c| !"<>\\'\"*".contains(*c)).take(22).collect();
    cut.trim_end().to_owned()
}

#[derive(Debug, Deserialize)]
pub(super) struct StripePayout {
    id: String,
    status: String,
    failure_code: Option<String>,
    failure_message: Option<String>,
}

impl From<StripePayout> for VendorPayout {
    fn from(p: StripePayout) -> Self {
        let status = match p.status.as_str() {
            "paid" => PayoutStatus::Paid,
            "failed" | "canceled" => PayoutStatus::Failed,
            // pending, in_transit, and anything newer: accepted, not final.
            _ => PayoutStatus::Submitted,
        };
        let error = (status == PayoutStatus::Failed).then(|| OutcomeError {
            class: ErrorClass::Permanent,
            code: failure_code(p.failure_code.as_deref()),
            message: p.failure_message.unwrap_or_else(|| format!("payout {}", p.status)),
        });
        Self { status, vendor_reference: p.id, error }
    }
}

fn failure_code(code: Option<&str>) -> ErrorCode {
    match code {
        Some("account_closed") => ErrorCode::BeneficiaryAccountClosed,
        Some("insufficient_funds") => ErrorCode::InsufficientFunds,
        Some("no_account" | "invalid_account_number" | "account_frozen" | "bank_account_restricted") => {
            ErrorCode::InvalidBeneficiary
        }
        _ => ErrorCode::Unknown,
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct StripeErrorBody {
    error: StripeError,
}

#[derive(Debug, Deserialize)]
struct StripeError {
    #[serde(rename = "type")]
    kind: Option<String>,
    code: Option<String>,
    message: Option<String>,
}

pub(super) fn map_error(status: u16, retry_after: Option<Duration>, body: Option<StripeErrorBody>) -> AdapterError {
    let (kind, code, message) = match &body {
        Some(b) => (b.error.kind.as_deref(), b.error.code.as_deref(), b.error.message.clone().unwrap_or_default()),
        None => (None, None, String::new()),
    };
    let known = match (status, kind, code) {
        (400, _, Some("balance_insufficient")) => {
            Some(AdapterError::new(ErrorClass::Permanent, ErrorCode::InsufficientFunds, message.clone()))
        }
        // Our keys are derived from a payload fingerprint we already checked,
        // so Stripe seeing other parameters under one key means our mapping
        // changed between attempts: a person must look.
        (400, Some("idempotency_error"), _) => Some(AdapterError::new(
            ErrorClass::ManualRepair,
            ErrorCode::IdempotencyCollision,
            format!("stripe idempotency_error: {message}"),
        )),
        // A concurrent request with the same key is still running at Stripe.
        (409, _, _) => Some(AdapterError::new(ErrorClass::Transient, ErrorCode::VendorUnavailable, message.clone())),
        _ => None,
    };
    let mut err = known.unwrap_or_else(|| AdapterError::from_status(status, retry_after, &message));
    err.http_status = Some(status);
    err.retry_after = retry_after;
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_vendor_failures_to_our_vocabulary() {
        let p = StripePayout { id: "po_1".into(), status: "failed".into(), failure_code: Some("account_closed".into()), failure_message: None };
        let v = VendorPayout::from(p);
        assert_eq!(v.status, PayoutStatus::Failed);
        assert_eq!(v.error.map(|e| e.code), Some(ErrorCode::BeneficiaryAccountClosed));
        let body: StripeErrorBody =
            serde_json::from_str(r#"{"error":{"type":"invalid_request_error","code":"balance_insufficient","message":"x"}}"#)
                .expect("fixture parses");
        let e = map_error(400, None, Some(body));
        assert_eq!((e.class, e.code, e.ambiguous), (ErrorClass::Permanent, ErrorCode::InsufficientFunds, false));
        assert!(map_error(500, None, None).ambiguous);
    }

    #[test]
    fn form_uses_lowercase_currency_and_bracketed_metadata() {
        let cmd = PayoutCommand {
            payout_id: "p1".into(),
            idempotency_key: "k".into(),
            amount_minor: 1000,
            currency: "EUR".into(),
            beneficiary: switchyard_canonical::Beneficiary { name: "A B".into(), iban: "DE89370400440532013000".into(), country: "DE".into() },
            rail: PayoutRail::Instant,
            reference: "a very long reference text here".into(),
            requested_at_ms: 0,
        };
        let form = StripePayoutRequest::from(&cmd).into_form().expect("encodes");
        assert!(form.contains("currency=eur"));
        assert!(form.contains("method=instant"));
        assert!(form.contains("metadata%5Bswitchyard_payout_id%5D=p1"));
        assert!(form.contains("statement_descriptor=a+very+long+reference&"));
    }
}
