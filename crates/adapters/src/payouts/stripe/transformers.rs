//! Stripe wire types and their mapping to canonical terms.

use crate::payouts::VendorPayout;
use crate::AdapterError;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use switchyard_canonical::{ErrorClass, ErrorCode, OutcomeError, PayoutCommand, PayoutRail, PayoutStatus};

#[derive(Debug, Serialize)]
pub(super) struct StripePayoutRequest<'a> {
    amount: i64,
    currency: String,
    /// The beneficiary's bank account on the connected account: without it
    /// Stripe pays the account's default bank account instead.
    destination: &'a str,
    method: &'static str,
    description: &'a str,
    statement_descriptor: String,
    #[serde(rename = "metadata[switchyard_payout_id]")]
    payout_id: &'a str,
    #[serde(rename = "metadata[beneficiary_name]")]
    beneficiary_name: &'a str,
}

impl<'a> StripePayoutRequest<'a> {
    pub(super) fn new(cmd: &'a PayoutCommand, destination: &'a str) -> Self {
        let method = match cmd.rail {
            PayoutRail::Standard => "standard",
            PayoutRail::Instant => "instant",
        };
        Self {
            amount: cmd.amount_minor,
            currency: cmd.currency.to_ascii_lowercase(),
            destination,
            method,
            description: &cmd.reference,
            statement_descriptor: statement_descriptor(&cmd.reference),
            payout_id: &cmd.payout_id,
            beneficiary_name: &cmd.beneficiary.name,
        }
    }

    pub(super) fn into_form(self) -> Result<String, AdapterError> {
        serde_urlencoded::to_string(&self)
            .map_err(|e| AdapterError::new(ErrorClass::Permanent, ErrorCode::InvalidRequest, format!("form encoding: {e}")))
    }
}

/// `POST /v1/accounts/{acct}/external_accounts`: the beneficiary as a bank
/// account. For IBAN countries Stripe takes the IBAN as `account_number`.
#[derive(Debug, Serialize)]
pub(super) struct BankAccountRequest<'a> {
    #[serde(rename = "external_account[object]")]
    object: &'static str,
    #[serde(rename = "external_account[country]")]
    country: String,
    #[serde(rename = "external_account[currency]")]
    currency: String,
    #[serde(rename = "external_account[account_number]")]
    account_number: String,
    #[serde(rename = "external_account[account_holder_name]")]
    account_holder_name: &'a str,
}

impl<'a> BankAccountRequest<'a> {
    /// Refuses, before any call, a beneficiary Stripe could not be told
    /// about: no IBAN-shaped account number, or an IBAN of another country.
    pub(super) fn new(cmd: &'a PayoutCommand) -> Result<Self, AdapterError> {
        let iban: String = cmd.beneficiary.iban.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_uppercase();
        let country = cmd.beneficiary.country.to_ascii_uppercase();
        let refuse = |why: String| Err(AdapterError::new(ErrorClass::Permanent, ErrorCode::InvalidBeneficiary, why));
        if iban.len() < 15 || iban.len() > 34 || !iban.chars().all(|c| c.is_ascii_alphanumeric()) {
            return refuse("stripe: the beneficiary's IBAN is not an IBAN".into());
        }
        if !iban.starts_with(&country) {
            return refuse(format!("stripe: IBAN of {} for a beneficiary in {country}", &iban[..2]));
        }
        Ok(Self {
            object: "bank_account",
            country,
            currency: cmd.currency.to_ascii_lowercase(),
            account_number: iban,
            account_holder_name: &cmd.beneficiary.name,
        })
    }

    /// Identifies the registration: the same account details on the same
    /// connected account always map to the same key and cache entry.
    pub(super) fn fingerprint(&self, connected_account: &str) -> String {
        let digest = ring::digest::digest(
            &ring::digest::SHA256,
            [connected_account, &self.country, &self.currency, &self.account_number, self.account_holder_name].join("\u{1f}").as_bytes(),
        );
        hex::encode(&digest.as_ref()[..16])
    }

    pub(super) fn into_form(self) -> Result<String, AdapterError> {
        serde_urlencoded::to_string(&self)
            .map_err(|e| AdapterError::new(ErrorClass::Permanent, ErrorCode::InvalidRequest, format!("form encoding: {e}")))
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct StripeBankAccount {
    pub(super) id: String,
}

/// A bank account Stripe will not register is a beneficiary we cannot pay.
pub(super) fn map_beneficiary_error(status: u16, retry_after: Option<Duration>, body: Option<StripeErrorBody>) -> AdapterError {
    if status == 400 && body.as_ref().is_some_and(|b| b.error.kind.as_deref() == Some("invalid_request_error")) {
        let message = body.and_then(|b| b.error.message).unwrap_or_default();
        return AdapterError::new(ErrorClass::Permanent, ErrorCode::InvalidBeneficiary, format!("stripe refused the beneficiary: {message}"));
    }
    map_error(status, retry_after, body)
}

#[derive(Debug, Deserialize)]
pub(super) struct StripePayoutList {
    pub(super) data: Vec<StripePayout>,
    pub(super) has_more: bool,
}

/// Stripe allows 22 characters and no `<>\'"*`.
fn statement_descriptor(reference: &str) -> String {
    let cut: String = reference.chars().filter(|c| !"<>\\'\"*".contains(*c)).take(22).collect();
    cut.trim_end().to_owned()
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct StripePayout {
    id: String,
    status: String,
    failure_code: Option<String>,
    failure_message: Option<String>,
    #[serde(default)]
    amount: Option<i64>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    metadata: std::collections::HashMap<String, String>,
}

impl StripePayout {
    pub(super) fn id(&self) -> &str {
        &self.id
    }

    pub(super) fn is_for(&self, payout_id: &str) -> bool {
        self.metadata.get("switchyard_payout_id").is_some_and(|p| p == payout_id)
    }

    /// A payout found by our reference must also carry the command's money;
    /// anything else needs a person, not a guess.
    pub(super) fn check_matches(&self, cmd: &PayoutCommand) -> Result<VendorPayout, AdapterError> {
        let same_currency = self.currency.as_deref().is_some_and(|c| c.eq_ignore_ascii_case(&cmd.currency));
        if self.amount != Some(cmd.amount_minor) || !same_currency {
            return Err(AdapterError::new(
                ErrorClass::ManualRepair,
                ErrorCode::Unknown,
                format!("stripe payout {} for {} carries {:?} {:?}, the command {} {}", self.id, cmd.payout_id, self.amount, self.currency, cmd.amount_minor, cmd.currency),
            ));
        }
        Ok(VendorPayout::from(self.clone()))
    }
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
        // A concurrent request with the same key is still running at Stripe
        // and may yet pay: ambiguous, resolved at Stripe under the same key.
        (409, _, _) => Some(AdapterError::in_flight(status, retry_after, &message)),
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
        let p: StripePayout =
            serde_json::from_str(r#"{"id":"po_1","status":"failed","failure_code":"account_closed","failure_message":null}"#).expect("fixture");
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
    fn a_key_in_flight_is_never_a_refusal() {
        let body: StripeErrorBody = serde_json::from_str(
            r#"{"error":{"type":"idempotency_error","code":"idempotency_key_in_use","message":"There is currently another in-progress request using this Idempotent Key"}}"#,
        )
        .expect("fixture parses");
        let e = map_error(409, None, Some(body));
        assert!(e.ambiguous && !e.is_definite_refusal(), "{e:?}");
        assert!(!map_error(409, None, None).is_definite_refusal());
        assert!(map_error(503, None, None).is_definite_refusal());
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
            tenant_id: None,
            risk_tier: None,
        };
        let form = StripePayoutRequest::new(&cmd, "ba_123").into_form().expect("encodes");
        assert!(form.contains("currency=eur"));
        assert!(form.contains("destination=ba_123"), "the beneficiary is addressed, never the default account");
        let account = BankAccountRequest::new(&cmd).expect("addressable").into_form().expect("encodes");
        assert!(account.contains("external_account%5Baccount_number%5D=DE89370400440532013000"), "{account}");
        assert!(account.contains("external_account%5Baccount_holder_name%5D=A+B"), "{account}");
        let elsewhere = PayoutCommand { beneficiary: switchyard_canonical::Beneficiary { country: "FR".into(), ..cmd.beneficiary.clone() }, ..cmd.clone() };
        let refused = BankAccountRequest::new(&elsewhere).expect_err("a DE IBAN for a FR beneficiary");
        assert_eq!((refused.class, refused.code), (ErrorClass::Permanent, ErrorCode::InvalidBeneficiary));
        assert!(form.contains("method=instant"));
        assert!(form.contains("metadata%5Bswitchyard_payout_id%5D=p1"));
        assert!(form.contains("statement_descriptor=a+very+long+reference&"));
    }
}
