//! Stripe wire types: form parameters, the payout object, error bodies.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::StatusCode;
use serde_json::{json, Map, Value};

use crate::util::to_bytes;

/// Amount that is declined with `balance_insufficient`, nothing executed.
pub(crate) const MAGIC_INSUFFICIENT: i64 = 40402;
/// Amount that executes but ends `failed` with `account_closed`.
pub(crate) const MAGIC_ACCOUNT_CLOSED: i64 = 40422;

/// An error reply in Stripe's `{"error":{...}}` envelope.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) kind: &'static str,
    pub(crate) code: Option<&'static str>,
    pub(crate) message: String,
    pub(crate) param: Option<String>,
}

impl ApiError {
    /// Stripe's wording for an absent required parameter.
    pub(crate) fn missing(param: &str) -> Self {
        Self::invalid(param, format!("Missing required param: {param}."))
    }

    /// 400 `resource_missing`, e.g. an unknown `destination`.
    pub(crate) fn no_such(param: &str, what: &str, id: &str) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            code: Some("resource_missing"),
            message: format!("No such {what}: '{id}'"),
            param: Some(param.to_owned()),
        }
    }

    pub(crate) fn invalid(param: &str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            code: None,
            message: message.into(),
            param: Some(param.to_owned()),
        }
    }

    pub(crate) fn body(&self) -> Bytes {
        let mut e = Map::new();
        e.insert("type".into(), Value::from(self.kind));
        e.insert("message".into(), Value::from(self.message.as_str()));
        if let Some(c) = self.code {
            e.insert("code".into(), Value::from(c));
            e.insert("doc_url".into(), Value::from(format!("https://stripe.com/docs/error-codes/{}", c.replace('_', "-"))));
        }
        if let Some(p) = &self.param {
            e.insert("param".into(), Value::from(p.as_str()));
        }
        to_bytes(&json!({ "error": e }))
    }
}

/// Validated `POST /v1/payouts` parameters.
#[derive(Debug)]
pub(crate) struct Params {
    pub(crate) amount: i64,
    pub(crate) currency: String,
    pub(crate) method: &'static str,
    pub(crate) description: Option<String>,
    pub(crate) statement_descriptor: Option<String>,
    pub(crate) destination: Option<String>,
    pub(crate) source_type: Option<String>,
    pub(crate) metadata: Vec<(String, String)>,
}

/// Takes a `metadata[key]` pair into `into`. `Ok(false)`: not metadata.
pub(crate) fn take_metadata(k: &str, v: &str, into: &mut Vec<(String, String)>) -> Result<bool, ApiError> {
    match k.strip_prefix("metadata[").and_then(|r| r.strip_suffix(']')) {
        Some(mk) if !mk.is_empty() && mk.chars().count() <= 40 && v.chars().count() <= 500 => {
            into.retain(|(x, _)| x != mk);
            into.push((mk.to_owned(), v.to_owned()));
            if into.len() > 50 {
                return Err(ApiError::invalid("metadata", "Metadata can have at most 50 keys."));
            }
            Ok(true)
        }
        Some(_) => Err(ApiError::invalid(k, "Metadata keys must be 1-40 characters and values at most 500 characters.")),
        None => Ok(false),
    }
}

/// Parses the form body. Returns the params and the sorted pairs, which are
/// the canonical form hashed for idempotency (field order must not matter).
pub(crate) fn parse(body: &[u8]) -> Result<(Params, Vec<(String, String)>), ApiError> {
    // Straight from the form parser: going through serde cost a few percent
    // of the whole payout benchmark. Invalid percent-escapes and UTF-8 decode
    // lossily, as serde_urlencoded (built on the same parser) did.
    let mut pairs: Vec<(String, String)> =
        form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let mut p = Params {
        amount: 0,
        currency: String::new(),
        method: "standard",
        description: None,
        statement_descriptor: None,
        destination: None,
        source_type: None,
        metadata: Vec::new(),
    };
    let (mut amount, mut currency) = (None, None);
    for (k, v) in &pairs {
        match k.as_str() {
            "amount" => amount = Some(v.as_str()),
            "currency" => currency = Some(v.as_str()),
            "method" => {
                p.method = match v.as_str() {
                    "standard" => "standard",
                    "instant" => "instant",
                    _ => return Err(ApiError::invalid("method", format!("Invalid method: must be one of standard, instant (got '{v}')."))),
                }
            }
            "description" => p.description = Some(v.clone()),
            "statement_descriptor" => {
                if v.chars().count() > 22 {
                    return Err(ApiError::invalid("statement_descriptor", "The statement descriptor must be at most 22 characters."));
                }
                p.statement_descriptor = Some(v.clone());
            }
            "destination" => p.destination = Some(v.clone()),
            "source_type" => match v.as_str() {
                "bank_account" | "card" | "fpx" => p.source_type = Some(v.clone()),
                _ => return Err(ApiError::invalid("source_type", format!("Invalid source_type: {v}"))),
            },
            _ => {
                if !take_metadata(k, v, &mut p.metadata)? {
                    return Err(ApiError::invalid(k, format!("Received unknown parameter: {k}")));
                }
            }
        }
    }
    let amount = amount.ok_or_else(|| ApiError::missing("amount"))?;
    p.amount = match amount.parse::<i64>() {
        Ok(n) if n > 0 => n,
        _ => return Err(ApiError::invalid("amount", "Invalid positive integer")),
    };
    let currency = currency.ok_or_else(|| ApiError::missing("currency"))?;
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(ApiError::invalid("currency", format!("Invalid currency: {currency}.")));
    }
    p.currency = currency.to_ascii_lowercase();
    pairs.sort_unstable();
    Ok((p, pairs))
}

impl Params {
    /// Our payout id as the adapter sent it, for the money oracle.
    pub(crate) fn payout_id(&self) -> Option<String> {
        self.metadata.iter().find(|(k, _)| k == "switchyard_payout_id").map(|(_, v)| v.clone())
    }
}

/// What the Stripe simulator stores by id: payouts and bank accounts share
/// one id space, as Stripe's objects do.
#[derive(Clone, Debug)]
pub(crate) enum Object {
    Payout(Payout),
    BankAccount(std::sync::Arc<super::accounts::BankAccount>),
}

/// A stored payout; its status is derived from elapsed time on each read.
#[derive(Clone, Debug)]
pub(crate) struct Payout {
    pub(crate) id: String,
    /// The account whose balance paid it (`Stripe-Account`, or the platform).
    pub(crate) account: String,
    /// The bank account actually paid: `destination`, or the default.
    pub(crate) destination: String,
    /// Creation order, to list newest first when `created` seconds tie.
    pub(crate) seq: u64,
    pub(crate) params: std::sync::Arc<Params>,
    pub(crate) created_ms: i64,
    pub(crate) created_at: Instant,
    pub(crate) balance_transaction: String,
}

/// Where a payout stands at a point in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    Pending,
    InTransit,
    Paid,
    Failed,
}

impl Stage {
    pub(crate) fn at(amount: i64, elapsed: Duration, settle: Duration) -> Self {
        if elapsed >= settle {
            if amount == MAGIC_ACCOUNT_CLOSED {
                Stage::Failed
            } else {
                Stage::Paid
            }
        } else if elapsed >= settle / 2 {
            Stage::InTransit
        } else {
            Stage::Pending
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Stage::Pending => "pending",
            Stage::InTransit => "in_transit",
            Stage::Paid => "paid",
            Stage::Failed => "failed",
        }
    }
}

/// The payout object as Stripe renders it. A typed view serializes straight
/// to bytes; building a `serde_json::Value` tree per reply cost the
/// benchmark more than the worker's own logic did.
#[derive(serde::Serialize)]
pub(crate) struct PayoutView<'a> {
    id: &'a str,
    object: &'static str,
    amount: i64,
    application_fee: Option<()>,
    application_fee_amount: Option<()>,
    arrival_date: i64,
    automatic: bool,
    balance_transaction: &'a str,
    created: i64,
    currency: &'a str,
    description: Option<&'a str>,
    destination: &'a str,
    failure_balance_transaction: Option<()>,
    failure_code: Option<&'static str>,
    failure_message: Option<&'static str>,
    livemode: bool,
    metadata: Metadata<'a>,
    method: &'static str,
    original_payout: Option<()>,
    reconciliation_status: &'static str,
    reversed_by: Option<()>,
    source_type: &'a str,
    statement_descriptor: Option<&'a str>,
    status: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
}

/// Metadata pairs rendered as a JSON object in insertion order.
pub(crate) struct Metadata<'a>(&'a [(String, String)]);

impl serde::Serialize for Metadata<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl Payout {
    /// `arrival_date`: creation plus `settle_after`, rounded up to a second.
    pub(crate) fn arrival_date(&self, settle: Duration) -> i64 {
        self.created_ms / 1000 + i64::try_from(settle.as_secs()).unwrap_or(0) + i64::from(settle.subsec_nanos() > 0)
    }

    pub(crate) fn render(&self, stage: Stage, settle: Duration) -> PayoutView<'_> {
        let p = &*self.params;
        let created = self.created_ms / 1000;
        let arrival = self.arrival_date(settle);
        let (failure_code, failure_message) = match stage {
            Stage::Failed => (Some("account_closed"), Some("The bank account has been closed.")),
            Stage::Pending | Stage::InTransit | Stage::Paid => (None, None),
        };
        PayoutView {
            id: &self.id,
            object: "payout",
            amount: p.amount,
            application_fee: None,
            application_fee_amount: None,
            arrival_date: arrival,
            automatic: false,
            balance_transaction: &self.balance_transaction,
            created,
            currency: &p.currency,
            description: p.description.as_deref(),
            destination: &self.destination,
            failure_balance_transaction: None,
            failure_code,
            failure_message,
            livemode: false,
            metadata: Metadata(&p.metadata),
            method: p.method,
            original_payout: None,
            reconciliation_status: "not_applicable",
            reversed_by: None,
            source_type: p.source_type.as_deref().unwrap_or("card"),
            statement_descriptor: p.statement_descriptor.as_deref(),
            status: stage.as_str(),
            kind: "bank_account",
        }
    }
}
