//! Adyen Transfers wire types and their mapping to canonical terms.

use crate::payouts::VendorPayout;
use crate::AdapterError;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use switchyard_canonical::{ErrorClass, ErrorCode, OutcomeError, PayoutCommand, PayoutRail, PayoutStatus};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct AdyenTransferRequest<'a> {
    amount: Amount,
    balance_account_id: &'a str,
    category: &'static str,
    counterparty: Counterparty<'a>,
    priority: &'static str,
    reference: &'a str,
    reference_for_beneficiary: String,
    description: &'a str,
}

#[derive(Debug, Serialize, Deserialize)]
struct Amount {
    currency: String,
    value: i64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Counterparty<'a> {
    bank_account: BankAccount<'a>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct BankAccount<'a> {
    account_holder: AccountHolder<'a>,
    account_identification: AccountIdentification<'a>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct AccountHolder<'a> {
    full_name: &'a str,
}

#[derive(Debug, Serialize)]
struct AccountIdentification<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    iban: &'a str,
}

impl<'a> AdyenTransferRequest<'a> {
    pub(super) fn new(cmd: &'a PayoutCommand, balance_account_id: &'a str) -> Self {
        let priority = match cmd.rail {
            PayoutRail::Standard => "regular",
            PayoutRail::Instant => "instant",
        };
        Self {
            amount: Amount { currency: cmd.currency.clone(), value: cmd.amount_minor },
            balance_account_id,
            category: "bank",
            counterparty: Counterparty {
                bank_account: BankAccount {
                    account_holder: AccountHolder { full_name: &cmd.beneficiary.name },
                    account_identification: AccountIdentification { kind: "iban", iban: &cmd.beneficiary.iban },
                },
            },
            priority,
            reference: &cmd.payout_id,
            // Adyen limits what the beneficiary sees to 80 characters.
            reference_for_beneficiary: cmd.reference.chars().take(80).collect(),
            description: &cmd.reference,
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct AdyenTransfer {
    id: String,
    status: String,
    reason: Option<String>,
}

impl From<AdyenTransfer> for VendorPayout {
    fn from(t: AdyenTransfer) -> Self {
        let status = match t.status.as_str() {
            "booked" | "credited" => PayoutStatus::Paid,
            "refused" | "failed" | "returned" | "cancelled" | "error" => PayoutStatus::Failed,
            // received, authorised, pending...: accepted, not final.
            _ => PayoutStatus::Submitted,
        };
        let error = (status == PayoutStatus::Failed).then(|| OutcomeError {
            class: ErrorClass::Permanent,
            code: reason_code(t.reason.as_deref()),
            message: format!("transfer {}{}", t.status, t.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()),
        });
        Self { status, vendor_reference: t.id, error }
    }
}

fn reason_code(reason: Option<&str>) -> ErrorCode {
    match reason {
        Some("notEnoughBalance") => ErrorCode::InsufficientFunds,
        Some("counterpartyAccountClosed" | "counterpartyAccountBlocked" | "accountClosed") => ErrorCode::BeneficiaryAccountClosed,
        Some("counterpartyAccountNotFound" | "counterpartyBankUnavailable" | "invalidCounterparty") => ErrorCode::InvalidBeneficiary,
        _ => ErrorCode::Unknown,
    }
}

/// Adyen's problem-details error body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct AdyenProblem {
    title: Option<String>,
    detail: Option<String>,
    error_code: Option<String>,
}

pub(super) fn map_error(status: u16, retry_after: Option<Duration>, body: Option<AdyenProblem>) -> AdapterError {
    let message = body
        .as_ref()
        .map(|p| {
            format!(
                "{}{}{}",
                p.error_code.as_deref().map(|c| format!("[{c}] ")).unwrap_or_default(),
                p.title.as_deref().unwrap_or(""),
                p.detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default()
            )
        })
        .unwrap_or_default();
    // Adyen reports an idempotency-key reuse with other content as error code 704.
    let idempotency_mismatch = body.as_ref().is_some_and(|p| p.error_code.as_deref() == Some("704"));
    let mut err = if idempotency_mismatch && status != 409 {
        AdapterError::new(ErrorClass::ManualRepair, ErrorCode::IdempotencyCollision, format!("adyen: {message}"))
    } else if status == 422 {
        AdapterError::new(ErrorClass::Permanent, ErrorCode::InvalidRequest, format!("adyen: {message}"))
    } else {
        AdapterError::from_status(status, retry_after, &message)
    };
    err.http_status = Some(status);
    err.retry_after = retry_after;
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_for_balance_maps_to_insufficient_funds() {
        let t: AdyenTransfer = serde_json::from_str(r#"{"id":"T1","status":"refused","reason":"notEnoughBalance"}"#).expect("fixture");
        let v = VendorPayout::from(t);
        assert_eq!(v.status, PayoutStatus::Failed);
        assert_eq!(v.error.map(|e| e.code), Some(ErrorCode::InsufficientFunds));
    }

    #[test]
    fn problem_bodies_map_to_the_taxonomy() {
        let p: AdyenProblem = serde_json::from_str(r#"{"type":"x","title":"Invalid","status":422,"detail":"bad iban","errorCode":"30_112"}"#)
            .expect("fixture");
        let e = map_error(422, None, Some(p));
        assert_eq!(e.class, ErrorClass::Permanent);
        assert!(e.message.contains("30_112"));
        assert!(!map_error(503, None, None).ambiguous);
    }
}
