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

/// Parses the form body. Returns the params and the sorted pairs, which are
/// the canonical form hashed for idempotency (field order must not matter).
pub(crate) fn parse(body: &[u8]) -> Result<(Params, Vec<(String, String)>), ApiError> {
    let mut pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
        .map_err(|_| ApiError::invalid("body", "Invalid request: the body must be application/x-www-form-urlencoded."))?;
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
            _ => match k.strip_prefix("metadata[").and_then(|r| r.strip_suffix(']')) {
                Some(mk) if !mk.is_empty() && mk.chars().count() <= 40 && v.chars().count() <= 500 => {
                    p.metadata.retain(|(x, _)| x != mk);
                    p.metadata.push((mk.to_owned(), v.clone()));
                }
                Some(_) => return Err(ApiError::invalid(k, "Metadata keys must be 1-40 characters and values at most 500 characters.")),
                None => return Err(ApiError::invalid(k, format!("Received unknown parameter: {k}"))),
            },
        }
    }
    if p.metadata.len() > 50 {
        return Err(ApiError::invalid("metadata", "Metadata can have at most 50 keys."));
    }
    let amount = amount.ok_or_else(|| ApiError::invalid("amount", "Missing required param: amount."))?;
    p.amount = match amount.parse::<i64>() {
        Ok(n) if n > 0 => n,
        _ => return Err(ApiError::invalid("amount", "Invalid positive integer")),
    };
    let currency = currency.ok_or_else(|| ApiError::invalid("currency", "Missing required param: currency."))?;
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(ApiError::invalid("currency", format!("Invalid currency: {currency}.")));
    }
    p.currency = currency.to_ascii_lowercase();
    pairs.sort_unstable();
    Ok((p, pairs))
}

/// A stored payout; its status is derived from elapsed time on each read.
#[derive(Clone, Debug)]
pub(crate) struct Payout {
    pub(crate) id: String,
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

impl Payout {
    pub(crate) fn render(&self, stage: Stage, settle: Duration) -> Value {
        let p = &*self.params;
        let created = self.created_ms / 1000;
        let arrival = created + i64::try_from(settle.as_secs()).unwrap_or(0) + i64::from(settle.subsec_nanos() > 0);
        let (failure_code, failure_message) = match stage {
            Stage::Failed => (
                Value::from("account_closed"),
                Value::from("The bank account has been closed."),
            ),
            Stage::Pending | Stage::InTransit | Stage::Paid => (Value::Null, Value::Null),
        };
        let metadata: Map<String, Value> = p.metadata.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect();
        json!({
            "id": self.id,
            "object": "payout",
            "amount": p.amount,
            "application_fee": null,
            "application_fee_amount": null,
            "arrival_date": arrival,
            "automatic": false,
            "balance_transaction": self.balance_transaction,
            "created": created,
            "currency": p.currency,
            "description": p.description,
            "destination": p.destination.as_deref().unwrap_or("ba_sim_default"),
            "failure_balance_transaction": null,
            "failure_code": failure_code,
            "failure_message": failure_message,
            "livemode": false,
            "metadata": metadata,
            "method": p.method,
            "original_payout": null,
            "reconciliation_status": "not_applicable",
            "reversed_by": null,
            "source_type": p.source_type.as_deref().unwrap_or("card"),
            "statement_descriptor": p.statement_descriptor,
            "status": stage.as_str(),
            "type": "bank_account",
        })
    }
}
