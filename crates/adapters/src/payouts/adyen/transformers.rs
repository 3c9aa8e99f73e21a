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
    #[serde(default)]
    amount: Option<Amount>,
    #[serde(default)]
    reference: Option<String>,
}

/// `GET /transfers`: `{data: [...], _links: {...}}`.
#[derive(Debug, Deserialize)]
pub(super) struct AdyenTransferList {
    #[serde(default)]
    data: Vec<AdyenTransfer>,
}

impl AdyenTransferList {
    /// The transfer carrying the command's reference, if it also carries the
    /// command's money; a reference with other money needs a person.
    pub(super) fn into_match(self, cmd: &PayoutCommand) -> Result<Option<AdyenTransfer>, AdapterError> {
        let Some(found) = self.data.into_iter().find(|t| t.reference.as_deref() == Some(cmd.payout_id.as_str())) else {
            return Ok(None);
        };
        let same = found.amount.as_ref().is_some_and(|a| a.value == cmd.amount_minor && a.currency.eq_ignore_ascii_case(&cmd.currency));
        if !same {
            return Err(AdapterError::new(
                ErrorClass::ManualRepair,
                ErrorCode::Unknown,
                format!("adyen transfer {} for {} carries other money than the command", found.id, cmd.payout_id),
            ));
        }
        Ok(Some(found))
    }
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
    // Adyen's 704 is "request already processed or in progress", on 409 or
    // 422 (docs: API idempotency, error handling). It does not say which:
    // the first request may be executing. Ambiguous, resolved under the same
    // key at Adyen; never a refusal, never a reason to try another vendor.
    let in_progress = body.as_ref().is_some_and(|p| p.error_code.as_deref() == Some("704"));
    let mut err = if in_progress || status == 409 {
        AdapterError::in_flight(status, retry_after, &format!("adyen: {message}"))
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

    #[test]
    fn request_in_progress_is_never_a_refusal() {
        for status in [409, 422] {
            let p: AdyenProblem = serde_json::from_str(
                r#"{"type":"x","title":"Conflict","status":409,"detail":"request already processed or in progress","errorCode":"704"}"#,
            )
            .expect("fixture");
            let e = map_error(status, None, Some(p));
            assert!(e.ambiguous && !e.is_definite_refusal(), "{status}: {e:?}");
        }
        assert!(!map_error(409, None, None).is_definite_refusal());
    }
}
