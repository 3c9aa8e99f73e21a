//! TrueLayer Payouts wire types and their mapping to canonical terms.

use crate::payouts::VendorPayout;
use crate::AdapterError;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use switchyard_canonical::{ErrorClass, ErrorCode, OutcomeError, PayoutCommand, PayoutStatus};

/// `POST /v3/payouts` to an external account (an "open-loop" payout).
/// Field order is fixed by the struct, so a replay under the same key sends
/// the same bytes (TrueLayer compares payloads: another one is a 422).
#[derive(Debug, Serialize)]
pub(super) struct CreatePayout<'a> {
    merchant_account_id: &'a str,
    amount_in_minor: i64,
    currency: &'a str,
    beneficiary: Beneficiary<'a>,
    metadata: Metadata<'a>,
}

#[derive(Debug, Serialize)]
struct Beneficiary<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    account_holder_name: &'a str,
    account_identifier: AccountIdentifier<'a>,
    reference: &'a str,
}

#[derive(Debug, Serialize)]
struct AccountIdentifier<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    iban: &'a str,
}

/// Our payout id travels in `metadata`, which TrueLayer keeps with the
/// payout and echoes in its webhooks: the only field of ours it returns.
#[derive(Debug, Serialize)]
struct Metadata<'a> {
    switchyard_payout_id: &'a str,
}

impl<'a> CreatePayout<'a> {
    /// The request, or a permanent `invalid_beneficiary` when the command
    /// cannot name a complete beneficiary. Nothing is guessed or filled in:
    /// a payout to a half-known account must never leave.
    pub(super) fn new(cmd: &'a PayoutCommand, merchant_account_id: &'a str) -> Result<Self, AdapterError> {
        let refuse = |what: &str| {
            Err(AdapterError::new(ErrorClass::Permanent, ErrorCode::InvalidBeneficiary, format!("payout {}: {what}; not sent to TrueLayer", cmd.payout_id)))
        };
        let name = cmd.beneficiary.name.trim();
        if name.is_empty() {
            return refuse("the beneficiary has no account holder name");
        }
        if !iban_valid(&cmd.beneficiary.iban) {
            return refuse("the beneficiary's IBAN is missing or fails its check digits");
        }
        if !matches!(cmd.currency.as_str(), "GBP" | "EUR") {
            return refuse("TrueLayer pays out GBP and EUR only");
        }
        // TrueLayer requires a reference; an empty one falls back to our
        // payout id, which the beneficiary's bank can at least quote back.
        let reference = if cmd.reference.trim().is_empty() { cmd.payout_id.as_str() } else { cmd.reference.as_str() };
        Ok(Self {
            merchant_account_id,
            amount_in_minor: cmd.amount_minor,
            currency: &cmd.currency,
            beneficiary: Beneficiary {
                kind: "external_account",
                account_holder_name: name,
                account_identifier: AccountIdentifier { kind: "iban", iban: &cmd.beneficiary.iban },
                reference,
            },
            metadata: Metadata { switchyard_payout_id: &cmd.payout_id },
        })
    }
}

/// ISO 13616: shape and mod-97 check digits.
fn iban_valid(s: &str) -> bool {
    let b = s.as_bytes();
    let shaped = (15..=34).contains(&b.len())
        && b[..2].iter().all(u8::is_ascii_uppercase)
        && b[2..4].iter().all(u8::is_ascii_digit)
        && b[4..].iter().all(u8::is_ascii_alphanumeric);
    if !shaped {
        return false;
    }
    let mut rem: u32 = 0;
    for c in s.bytes().skip(4).chain(s.bytes().take(4)) {
        let v = if c.is_ascii_digit() { u32::from(c - b'0') } else { u32::from(c.to_ascii_uppercase() - b'A') + 10 };
        rem = if v >= 10 { (rem * 100 + v) % 97 } else { (rem * 10 + v) % 97 };
    }
    rem == 1
}

/// The create's reply: TrueLayer answers with the payout id only.
#[derive(Debug, Deserialize)]
pub(super) struct Created {
    pub(super) id: String,
}

/// `GET /v3/payouts/{id}`.
#[derive(Debug, Deserialize)]
pub(super) struct Payout {
    id: String,
    status: String,
    #[serde(default)]
    failure_reason: Option<String>,
}

impl From<Payout> for VendorPayout {
    fn from(p: Payout) -> Self {
        let status = match p.status.as_str() {
            // "Deducted from your merchant account"; crediting is the
            // beneficiary bank's (a return shows up as `failed` later).
            "executed" => PayoutStatus::Paid,
            "failed" => PayoutStatus::Failed,
            // pending, authorized, and anything newer: accepted, not final.
            _ => PayoutStatus::Submitted,
        };
        let error = (status == PayoutStatus::Failed).then(|| OutcomeError {
            class: ErrorClass::Permanent,
            code: reason_code(p.failure_reason.as_deref()),
            message: format!("payout failed{}", p.failure_reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()),
        });
        Self { status, vendor_reference: p.id, error }
    }
}

/// TrueLayer's documented `failure_reason`s ("Payout and refund statuses").
fn reason_code(reason: Option<&str>) -> ErrorCode {
    match reason {
        Some("insufficient_funds") => ErrorCode::InsufficientFunds,
        Some("invalid_iban" | "invalid_scan") => ErrorCode::InvalidBeneficiary,
        Some("returned") => ErrorCode::BeneficiaryAccountClosed,
        _ => ErrorCode::Unknown,
    }
}

/// An RFC 7807 problem document.
#[derive(Debug, Deserialize)]
pub(super) struct Problem {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    detail: String,
    #[serde(default)]
    trace_id: Option<String>,
}

/// 409: a request under the key is in flight (transient, ambiguous); 422
/// with the key-reuse type: this request was refused and the key belongs
/// to another payload (permanent, not ambiguous: whatever the first did is
/// the first one's); other 4xx: permanent; 5xx and timeouts as
/// [`AdapterError::from_status`] (503 a refusal, the rest ambiguous).
pub(super) fn map_problem(status: u16, retry_after: Option<Duration>, body: Option<Problem>) -> AdapterError {
    let (kind, detail) = body
        .as_ref()
        .map(|p| (p.kind.rsplit('#').next().unwrap_or("").to_owned(), format!("{} {}{}", p.title, p.detail, p.trace_id.as_deref().map(|t| format!(" (trace {t})")).unwrap_or_default())))
        .unwrap_or_default();
    let detail = format!("truelayer: {}", detail.trim());
    let mut err = match status {
        409 => return AdapterError::in_flight(status, retry_after, &detail),
        422 if kind.contains("idempotency") => AdapterError::new(ErrorClass::Permanent, ErrorCode::IdempotencyCollision, format!("HTTP 422: {detail}")),
        400 | 422 if detail.contains("beneficiary") => AdapterError::new(ErrorClass::Permanent, ErrorCode::InvalidBeneficiary, format!("HTTP {status}: {detail}")),
        _ => return AdapterError::from_status(status, retry_after, &detail),
    };
    err.http_status = Some(status);
    err
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_canonical::{Beneficiary, PayoutRail};

    fn cmd() -> PayoutCommand {
        PayoutCommand {
            payout_id: "po-1".into(),
            idempotency_key: "k-1".into(),
            amount_minor: 1250,
            currency: "EUR".into(),
            beneficiary: Beneficiary { name: "Ada Lovelace".into(), iban: "DE89370400440532013000".into(), country: "DE".into() },
            rail: PayoutRail::Standard,
            reference: "invoice 42".into(),
            requested_at_ms: 1,
            tenant_id: None,
            risk_tier: None,
        }
    }

    fn problem(json: &str) -> Option<Problem> {
        Some(serde_json::from_str(json).expect("fixture"))
    }

    #[test]
    fn the_payout_id_travels_in_metadata_and_the_beneficiary_is_complete() {
        let body = serde_json::to_value(CreatePayout::new(&cmd(), "ma-1").expect("valid")).expect("json");
        assert_eq!(body["metadata"][crate::webhooks::truelayer::PAYOUT_ID_METADATA], "po-1", "the key the webhook mapping reads");
        assert_eq!(body["beneficiary"]["account_identifier"]["iban"], "DE89370400440532013000");
        assert_eq!(body["beneficiary"]["type"], "external_account");
    }

    #[test]
    fn an_incomplete_beneficiary_is_refused_before_any_call() {
        let edits: [fn(&mut PayoutCommand); 2] = [|c| c.beneficiary.name = "  ".into(), |c| c.beneficiary.iban = "DE89370400440532013001".into()];
        for edit in edits {
            let mut c = cmd();
            edit(&mut c);
            let err = CreatePayout::new(&c, "ma-1").expect_err("refused");
            assert_eq!((err.class, err.code, err.ambiguous), (ErrorClass::Permanent, ErrorCode::InvalidBeneficiary, false));
        }
    }

    #[test]
    fn problems_map_to_the_taxonomy() {
        let busy = map_problem(409, None, problem(r#"{"type":"https://docs.truelayer.com/docs/error-types#idempotency-key-concurrency-conflict","title":"Conflict"}"#));
        assert!(busy.ambiguous && busy.class == ErrorClass::Transient && !busy.is_definite_refusal());
        let reuse = map_problem(422, None, problem(r#"{"type":"https://docs.truelayer.com/docs/error-types#idempotency-key-reuse","title":"Reuse"}"#));
        assert_eq!((reuse.class, reuse.code, reuse.ambiguous), (ErrorClass::Permanent, ErrorCode::IdempotencyCollision, false));
        let invalid = map_problem(400, None, problem(r#"{"type":"x#invalid-parameters","title":"Invalid","detail":"beneficiary.reference is required"}"#));
        assert_eq!((invalid.class, invalid.code, invalid.ambiguous), (ErrorClass::Permanent, ErrorCode::InvalidBeneficiary, false));
        assert!(map_problem(500, None, None).ambiguous);
        assert!(map_problem(503, None, None).is_definite_refusal());
    }

    #[test]
    fn failed_payouts_are_permanent_failures_with_their_reason() {
        let p: Payout = serde_json::from_str(r#"{"id":"p1","status":"failed","failure_reason":"insufficient_funds"}"#).expect("fixture");
        let v = VendorPayout::from(p);
        assert_eq!(v.status, PayoutStatus::Failed);
        assert_eq!(v.error.map(|e| (e.class, e.code)), Some((ErrorClass::Permanent, ErrorCode::InsufficientFunds)));
        let p: Payout = serde_json::from_str(r#"{"id":"p1","status":"executed"}"#).expect("fixture");
        assert_eq!(VendorPayout::from(p).status, PayoutStatus::Paid);
    }
}
