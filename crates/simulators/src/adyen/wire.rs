//! Adyen wire types: the transfer request, the transfer resource, problem JSON.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::util::{iso8601, random_id, to_bytes};

/// Value refused with reason `notEnoughBalance`, nothing executed.
pub(crate) const MAGIC_NOT_ENOUGH_BALANCE: i64 = 40402;
/// Value that executes, then ends `returned` (`counterpartyAccountClosed`).
pub(crate) const MAGIC_RETURNED: i64 = 40422;

const PRIORITIES: [&str; 6] = ["regular", "instant", "fast", "wire", "crossBorder", "internal"];

/// A problem-JSON error reply.
#[derive(Debug)]
pub(crate) struct Problem {
    pub(crate) status: StatusCode,
    pub(crate) kind: &'static str,
    pub(crate) title: &'static str,
    pub(crate) detail: String,
    pub(crate) error_code: &'static str,
    pub(crate) invalid_fields: Vec<Value>,
}

impl Problem {
    pub(crate) fn new(status: StatusCode, kind: &'static str, title: &'static str, code: &'static str, detail: impl Into<String>) -> Self {
        Self { status, kind, title, detail: detail.into(), error_code: code, invalid_fields: Vec::new() }
    }

    pub(crate) fn body(&self) -> Bytes {
        let mut v = json!({
            "type": format!("https://docs.adyen.com/errors/{}", self.kind),
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
            "errorCode": self.error_code,
            "requestId": random_id(16),
        });
        if !self.invalid_fields.is_empty() {
            v["invalidFields"] = Value::Array(self.invalid_fields.clone());
        }
        to_bytes(&v)
    }
}

/// A validated `POST /btl/v4/transfers` body.
#[derive(Debug)]
pub(crate) struct TransferReq {
    pub(crate) value: i64,
    pub(crate) currency: String,
    pub(crate) balance_account_id: String,
    pub(crate) priority: String,
    pub(crate) reference: Option<String>,
    pub(crate) reference_for_beneficiary: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) counterparty: Value,
    /// `counterparty.bankAccount.accountIdentification.iban`: who gets paid.
    pub(crate) beneficiary_iban: String,
    /// `counterparty.bankAccount.accountHolder.fullName`.
    pub(crate) beneficiary_name: String,
}

fn invalid(name: &str, value: &Value, message: &str) -> Value {
    let value = match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    json!({ "name": name, "value": value, "message": message })
}

fn opt_str(v: &Value, name: &str, max: usize, bad: &mut Vec<Value>) -> Option<String> {
    match v.get(name) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.chars().count() <= max => Some(s.clone()),
        Some(other) => {
            bad.push(invalid(name, other, &format!("Must be a string of at most {max} characters")));
            None
        }
    }
}

/// Validates the JSON body, collecting every invalid field like Adyen does.
pub(crate) fn parse(v: &Value) -> Result<TransferReq, Problem> {
    let mut bad = Vec::new();
    let null = Value::Null;
    let at = |p: &str| v.pointer(p).unwrap_or(&null);
    let value = match at("/amount/value").as_i64() {
        Some(n) if n > 0 => n,
        _ => {
            bad.push(invalid("amount.value", at("/amount/value"), "Must be a positive integer in minor units"));
            0
        }
    };
    let currency = match at("/amount/currency").as_str() {
        Some(c) if c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()) => c.to_owned(),
        _ => {
            bad.push(invalid("amount.currency", at("/amount/currency"), "Must be an uppercase ISO 4217 code"));
            String::new()
        }
    };
    let balance_account_id = match at("/balanceAccountId").as_str() {
        Some(s) if !s.is_empty() => s.to_owned(),
        _ => {
            bad.push(invalid("balanceAccountId", at("/balanceAccountId"), "Required"));
            String::new()
        }
    };
    if at("/category").as_str() != Some("bank") {
        bad.push(invalid("category", at("/category"), "Only 'bank' is supported by this simulator"));
    }
    let (beneficiary_iban, beneficiary_name) = counterparty(at("/counterparty"), &mut bad);
    // The spec: "Required for transfers with `category` **bank**".
    let priority = match at("/priority") {
        Value::String(p) if PRIORITIES.contains(&p.as_str()) => p.clone(),
        Value::Null => {
            bad.push(invalid("priority", &Value::Null, "Required for category bank"));
            String::new()
        }
        other => {
            bad.push(invalid("priority", other, "Unsupported priority"));
            String::new()
        }
    };
    let reference = opt_str(v, "reference", 80, &mut bad);
    let reference_for_beneficiary = opt_str(v, "referenceForBeneficiary", 80, &mut bad);
    let description = opt_str(v, "description", 140, &mut bad);
    if !bad.is_empty() {
        let mut p = Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "Invalid transfer information provided",
            "30_002",
            "Request validation failed",
        );
        p.invalid_fields = bad;
        return Err(p);
    }
    let counterparty = at("/counterparty").clone();
    Ok(TransferReq {
        value,
        currency,
        balance_account_id,
        priority,
        reference,
        reference_for_beneficiary,
        description,
        counterparty,
        beneficiary_iban,
        beneficiary_name,
    })
}

/// Validates `counterparty` as the spec's `CounterpartyInfoV3` with a
/// `BankAccountV3` (required: `accountHolder`, `accountIdentification`;
/// `fullName` required for category bank; IBAN identification requires
/// `type` and `iban`). Returns the IBAN and holder name that will be paid.
/// The other counterparty kinds (balance account, card, transfer
/// instrument) and identification types exist at Adyen but not here.
fn counterparty(cp: &Value, bad: &mut Vec<Value>) -> (String, String) {
    let null = Value::Null;
    let at = |p: &str| cp.pointer(p).unwrap_or(&null);
    if !cp.is_object() {
        bad.push(invalid("counterparty", cp, "Required"));
        return (String::new(), String::new());
    }
    if at("/bankAccount").is_null() {
        let other = ["balanceAccountId", "transferInstrumentId", "card"].into_iter().any(|k| cp.get(k).is_some());
        let message = if other {
            "Only counterparty.bankAccount is supported by this simulator"
        } else {
            "A bank account, a balance account, a card, or a transfer instrument is required"
        };
        bad.push(invalid("counterparty.bankAccount", &null, message));
        return (String::new(), String::new());
    }
    let mut name = String::new();
    match at("/bankAccount/accountHolder") {
        Value::Object(_) => match at("/bankAccount/accountHolder/fullName") {
            Value::String(s) if !s.trim().is_empty() => name = s.clone(),
            other => bad.push(invalid("counterparty.bankAccount.accountHolder.fullName", other, "Required for category bank")),
        },
        other => bad.push(invalid("counterparty.bankAccount.accountHolder", other, "Required")),
    }
    let mut iban = String::new();
    match at("/bankAccount/accountIdentification") {
        Value::Object(_) => {
            if at("/bankAccount/accountIdentification/type").as_str() != Some("iban") {
                let t = at("/bankAccount/accountIdentification/type");
                bad.push(invalid("counterparty.bankAccount.accountIdentification.type", t, "Only 'iban' is supported by this simulator"));
            }
            match at("/bankAccount/accountIdentification/iban") {
                // Shape only: the mod-97 check is left to the adapter.
                Value::String(s) if crate::bank::iban_shape(s) => iban = s.clone(),
                Value::Null => bad.push(invalid("counterparty.bankAccount.accountIdentification.iban", &null, "Required")),
                other => bad.push(invalid("counterparty.bankAccount.accountIdentification.iban", other, "Invalid IBAN")),
            }
        }
        other => bad.push(invalid("counterparty.bankAccount.accountIdentification", other, "Required")),
    }
    (iban, name)
}

/// A stored transfer; status derives from elapsed time on each read.
#[derive(Clone, Debug)]
pub(crate) struct Transfer {
    pub(crate) id: String,
    pub(crate) req: std::sync::Arc<TransferReq>,
    pub(crate) reference: String,
    pub(crate) refused: bool,
    pub(crate) created_ms: i64,
    pub(crate) created_at: Instant,
}

/// `(status, reason)` of a transfer at an age.
pub(crate) fn stage(t: &Transfer, elapsed: Duration, settle: Duration) -> (&'static str, &'static str) {
    if t.refused {
        ("refused", "notEnoughBalance")
    } else if elapsed < settle {
        ("authorised", "approved")
    } else if t.req.value == MAGIC_RETURNED {
        ("returned", "counterpartyAccountClosed")
    } else {
        ("booked", "approved")
    }
}

/// The simulator's balance platform, as webhooks and list filters name it.
pub(crate) const BALANCE_PLATFORM: &str = "SWITCHYARD_SIM";
/// The one account holder owning the simulator's balance account.
pub(crate) const ACCOUNT_HOLDER_ID: &str = "AH00000000000000000000001";

impl Transfer {
    pub(crate) fn render(&self, (status, reason): (&str, &str)) -> Value {
        let r = &*self.req;
        json!({
            "id": self.id,
            "accountHolder": { "id": ACCOUNT_HOLDER_ID },
            "amount": { "currency": r.currency, "value": r.value },
            // v4's `Transfer` names the account only as `balanceAccount`
            // (no `balanceAccountId`, no `balancePlatform`: additionalProperties
            // false); webhooks add `balancePlatform`, which their schema has.
            "balanceAccount": { "id": r.balance_account_id },
            "category": "bank",
            "categoryData": { "type": "bank", "priority": r.priority },
            "counterparty": r.counterparty,
            "createdAt": iso8601(self.created_ms),
            // Deprecated in v4 in favour of `createdAt`, still returned.
            "creationDate": iso8601(self.created_ms),
            "description": r.description,
            "direction": "outgoing",
            "reason": reason,
            "reference": self.reference,
            "referenceForBeneficiary": r.reference_for_beneficiary,
            "status": status,
            "type": "bankTransfer",
        })
    }
}
