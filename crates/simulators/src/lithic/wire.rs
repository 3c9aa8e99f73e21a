//! Lithic objects as the simulator keeps them, their JSON renderings (shapes
//! from Lithic's OpenAPI document, `pci_card_response`, `dispute-v1`,
//! `dispute-evidence`, `error`) and request validation.

use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::{json, Map, Value};

use crate::util::{iso8601, to_bytes};

/// Magic `product_id` / `memo` substring: issuance declined (422, saved under the key).
pub const MAGIC_DECLINE: &str = "DECLINE_ISSUANCE";
/// Magic `product_id`: the physical card ships, then comes back undeliverable.
pub const MAGIC_RETURNED: &str = "SHIPPING_RETURNED";
/// Magic prefix of `client_device_id` / `client_wallet_account_id` / `nonce`:
/// provisioning answers without `activationData` (the wallet must step up).
pub const MAGIC_STEP_UP: &str = "STEP_UP";

#[derive(Clone, Debug)]
pub(crate) enum Object {
    Card(Arc<Card>),
    Dispute(Arc<Dispute>),
}

#[derive(Clone, Debug)]
pub(crate) struct Card {
    pub(crate) token: String,
    pub(crate) kind: String,
    pub(crate) state: String,
    pub(crate) substatus: Option<String>,
    pub(crate) memo: Option<String>,
    pub(crate) product_id: Option<String>,
    pub(crate) replacement_for: Option<String>,
    pub(crate) last_four: String,
    /// Never rendered unless the simulator is configured as a PCI program.
    pub(crate) pan: String,
    pub(crate) exp_month: String,
    pub(crate) exp_year: String,
    pub(crate) pin_set: bool,
    pub(crate) created_ms: i64,
    /// Creation order, for listings.
    pub(crate) seq: u64,
}

impl Card {
    pub(crate) fn render(&self, with_pan: bool) -> Value {
        let mut v = json!({
            "token": self.token,
            "account_token": "00000000-0000-0000-0000-00000000a001",
            "card_program_token": "00000000-0000-0000-1000-000000000000",
            "created": iso8601(self.created_ms),
            "funding": null,
            "last_four": self.last_four,
            "exp_month": self.exp_month,
            "exp_year": self.exp_year,
            "hostname": "",
            "memo": self.memo.clone().unwrap_or_default(),
            "pin_status": if self.pin_set { "OK" } else { "NOT_SET" },
            "pending_commands": [],
            "auth_rule_tokens": [],
            "product_id": self.product_id,
            "replacement_for": self.replacement_for,
            "spend_limit": 0,
            "spend_limit_duration": "TRANSACTION",
            "state": self.state,
            "type": self.kind,
        });
        // The document types `substatus` as string-or-null but leaves null
        // out of its enum: absent rather than null.
        if let Some(sub) = &self.substatus {
            v["substatus"] = Value::from(sub.clone());
        }
        if with_pan {
            v["pan"] = Value::from(self.pan.clone());
            v["cvv"] = Value::from("123");
        }
        v
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Dispute {
    pub(crate) token: String,
    pub(crate) transaction_token: String,
    pub(crate) amount: i64,
    pub(crate) reason: String,
    pub(crate) status: String,
    pub(crate) customer_note: Option<String>,
    pub(crate) created_ms: i64,
    /// Set with CASE_CLOSED (and CASE_WON) through the test control route.
    pub(crate) resolution_reason: Option<String>,
}

impl Dispute {
    pub(crate) fn render(&self) -> Value {
        json!({
            "token": self.token,
            "transaction_token": self.transaction_token,
            "amount": self.amount,
            "reason": self.reason,
            "status": self.status,
            "created": iso8601(self.created_ms),
            "customer_filed_date": iso8601(self.created_ms),
            "customer_note": self.customer_note,
            "arbitration_date": null, "network_claim_ids": null, "network_filed_date": null,
            "network_reason_code": null, "prearbitration_date": null, "primary_claim_id": null,
            "representment_date": null, "resolution_date": null, "resolution_note": null,
            "resolution_reason": self.resolution_reason,
        })
    }
}

/// Lithic's error body: `{"debugging_request_id","message"}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }

    pub(crate) fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn body(&self) -> axum::body::Bytes {
        to_bytes(&json!({ "debugging_request_id": uuid::Uuid::new_v4().to_string(), "message": self.message }))
    }
}

pub(crate) const CARD_TYPES: &[&str] = &["MERCHANT_LOCKED", "PHYSICAL", "SINGLE_USE", "VIRTUAL", "UNLOCKED", "DIGITAL_WALLET"];
pub(crate) const DISPUTE_REASONS: &[&str] = &[
    "ATM_CASH_MISDISPENSE", "CANCELLED", "DUPLICATED", "FRAUD_CARD_NOT_PRESENT", "FRAUD_CARD_PRESENT", "FRAUD_OTHER",
    "GOODS_SERVICES_NOT_AS_DESCRIBED", "GOODS_SERVICES_NOT_RECEIVED", "INCORRECT_AMOUNT", "MISSING_AUTH", "OTHER",
    "PROCESSING_ERROR", "RECURRING_TRANSACTION_NOT_CANCELLED", "REFUND_NOT_PROCESSED",
];
/// Lithic's `dispute-v1.status` and `.resolution_reason` (pinned OpenAPI,
/// `tests/contracts/lithic/cards.json`).
pub(crate) const DISPUTE_STATUSES: &[&str] =
    &["ARBITRATION", "CASE_CLOSED", "CASE_WON", "NEW", "PENDING_CUSTOMER", "PREARBITRATION", "REPRESENTMENT", "SUBMITTED"];
pub(crate) const RESOLUTION_REASONS: &[&str] = &[
    "CASE_LOST", "NETWORK_REJECTED", "NO_DISPUTE_RIGHTS_3DS", "NO_DISPUTE_RIGHTS_BELOW_THRESHOLD", "NO_DISPUTE_RIGHTS_CONTACTLESS",
    "NO_DISPUTE_RIGHTS_HYBRID", "NO_DISPUTE_RIGHTS_MAX_CHARGEBACKS", "NO_DISPUTE_RIGHTS_OTHER", "PAST_FILING_DATE", "PREARBITRATION_REJECTED",
    "PROCESSOR_REJECTED_OTHER", "REFUNDED", "REFUNDED_AFTER_CHARGEBACK", "WITHDRAWN", "WON_ARBITRATION", "WON_FIRST_CHARGEBACK", "WON_PREARBITRATION",
];
pub(crate) const SUBSTATUSES: &[&str] = &[
    "LOST", "COMPROMISED", "DAMAGED", "END_USER_REQUEST", "ISSUER_REQUEST", "NOT_ACTIVE", "SUSPICIOUS_ACTIVITY",
    "INTERNAL_REVIEW", "EXPIRED", "UNDELIVERABLE", "OTHER",
];

/// A JSON object body, with only the `allowed` fields (Lithic refuses unknown
/// parameters: UNCONFIRMED, the document does not say `additionalProperties`).
pub(crate) fn object(body: &[u8], allowed: &[&str]) -> Result<Map<String, Value>, ApiError> {
    let v: Value = if body.is_empty() { json!({}) } else { serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("Invalid JSON body: {e}")))? };
    let Value::Object(map) = v else { return Err(ApiError::bad("The request body must be a JSON object.")) };
    if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::bad(format!("Unrecognized parameter: {unknown}")));
    }
    Ok(map)
}

pub(crate) fn string<'a>(map: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, ApiError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::bad(format!("{field} must be a string"))),
    }
}

pub(crate) fn one_of<'a>(map: &'a Map<String, Value>, field: &str, allowed: &[&str]) -> Result<Option<&'a str>, ApiError> {
    match string(map, field)? {
        Some(v) if !allowed.contains(&v) => Err(ApiError::bad(format!("{field} must be one of {}", allowed.join(", ")))),
        other => Ok(other),
    }
}

pub(crate) fn is_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok() && s.len() == 36
}

/// `shipping_address` per the document: required fields and lengths, ISO
/// alpha-3 country.
pub(crate) fn check_shipping(map: &Map<String, Value>) -> Result<(), ApiError> {
    let Some(addr) = map.get("shipping_address") else { return Err(ApiError::bad("shipping_address is required for PHYSICAL cards")) };
    let Value::Object(addr) = addr else { return Err(ApiError::bad("shipping_address must be an object")) };
    let limits: &[(&str, usize, usize, bool)] = &[
        ("address1", 1, 40, true), ("address2", 1, 40, false), ("city", 1, 30, true), ("country", 3, 3, true),
        ("email", 5, 50, false), ("first_name", 1, 24, true), ("last_name", 1, 24, true), ("line2_text", 0, 26, false),
        ("phone_number", 8, 16, false), ("postal_code", 1, 12, true), ("state", 0, 24, true),
    ];
    if let Some(unknown) = addr.keys().find(|k| !limits.iter().any(|(n, ..)| n == k)) {
        return Err(ApiError::bad(format!("Unrecognized parameter: shipping_address.{unknown}")));
    }
    for (name, min, max, required) in limits {
        match addr.get(*name) {
            None if *required => return Err(ApiError::bad(format!("shipping_address.{name} is required"))),
            None => {}
            Some(Value::String(s)) if (*min..=*max).contains(&s.chars().count()) => {}
            Some(_) => return Err(ApiError::bad(format!("shipping_address.{name} must be a string of {min} to {max} characters"))),
        }
    }
    Ok(())
}

/// Standard base64, as Lithic's encrypted PIN block is sent.
pub(crate) fn is_base64(s: &str) -> bool {
    use base64::Engine as _;
    !s.is_empty() && base64::engine::general_purpose::STANDARD.decode(s).is_ok()
}

/// A Luhn-valid 16-digit test PAN (never leaves the simulator unless PCI).
pub(crate) fn pan(seq: u64) -> String {
    let body = format!("4111{:011}", seq % 100_000_000_000);
    let digits: Vec<u32> = body.chars().filter_map(|c| c.to_digit(10)).collect();
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| if i % 2 == 0 { let x = d * 2; if x > 9 { x - 9 } else { x } } else { *d })
        .sum();
    format!("{body}{}", (10 - sum % 10) % 10)
}
