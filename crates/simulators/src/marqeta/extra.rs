//! PINs, digital wallet provisioning and chargebacks.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};

use super::wire::{check_token, ApiError};
use super::{admitted, card_of, error, fault_reply, guard, parse, reject, saved_error, Object, Sim};
use crate::engine::{Saved, Ticket};
use crate::util::{fingerprint, iso8601, json_reply, now_ms, pause, random_id, to_bytes};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ControlTokenRequest {
    card_token: String,
    controltoken_type: Option<String>,
}

pub(super) async fn control_token(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = guard(&sim, &headers, None).await {
        return r;
    }
    let req: ControlTokenRequest = match parse(&sim, &body).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    if req.controltoken_type.as_deref().is_some_and(|t| t != "SET_PIN" && t != "SHOW_PIN") {
        return reject(&sim, ApiError::bad("controltoken_type must be SET_PIN or SHOW_PIN")).await;
    }
    let sim2 = Arc::clone(&sim);
    admitted(&sim, None, fingerprint(&body[..]), move |ticket| {
        if card_of(&sim2, &req.card_token).is_none() {
            return saved_error(&ApiError::not_found("Card"));
        }
        let token = uuid::Uuid::new_v4().to_string();
        let saved = Saved { status: StatusCode::CREATED, body: to_bytes(&json!({ "control_token": token })) };
        ticket.commit(Some((format!("ct:{token}"), Object::ControlToken { card_token: req.card_token, used: false })), None, &saved);
        saved
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PinRequest {
    control_token: String,
    pin: String,
}

const WEAK_PINS: [&str; 3] = ["1234", "0000", "1111"];

pub(super) async fn set_pin(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = guard(&sim, &headers, None).await {
        return r;
    }
    let req: PinRequest = match parse(&sim, &body).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let clear = (4..=12).contains(&req.pin.len()) && req.pin.bytes().all(|b| b.is_ascii_digit());
    let block = req.pin.len() >= 16 && req.pin.bytes().all(|b| b.is_ascii_hexdigit());
    if !clear && !block {
        return reject(&sim, ApiError::bad("pin must be 4 to 12 digits or an encrypted PIN block")).await;
    }
    let sim2 = Arc::clone(&sim);
    admitted(&sim, None, fingerprint(&body[..]), move |ticket| {
        let key = format!("ct:{}", req.control_token);
        let card_token = match sim2.engine.record(&key) {
            Some(Object::ControlToken { card_token, used: false }) => card_token,
            Some(Object::ControlToken { used: true, .. }) => return saved_error(&ApiError::bad("Control token has already been used")),
            _ => return saved_error(&ApiError::bad("Invalid control token")),
        };
        if WEAK_PINS.contains(&req.pin.as_str()) {
            return saved_error(&ApiError::new(StatusCode::PRECONDITION_FAILED, "412001", "Weak PIN"));
        }
        let Some(mut card) = card_of(&sim2, &card_token) else { return saved_error(&ApiError::not_found("Card")) };
        card.pin_is_set = true;
        card.modified_ms = now_ms();
        sim2.engine.seed(key, Object::ControlToken { card_token, used: true });
        let saved = Saved { status: StatusCode::NO_CONTENT, body: Bytes::new() };
        ticket.commit(Some((format!("card:{}", card.token), Object::Card(Box::new(card)))), None, &saved);
        saved
    })
    .await
}

pub(super) async fn provision(State(sim): State<Arc<Sim>>, Path(wallet): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = guard(&sim, &headers, None).await {
        return r;
    }
    let req: Value = match parse(&sim, &body).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let s = |k: &str| req.get(k).and_then(Value::as_str).map(str::to_owned);
    let required: &[&str] = match wallet.as_str() {
        "applepay" => &["card_token", "device_type", "provisioning_app_version", "nonce", "nonce_signature"],
        "androidpay" => &["card_token", "device_type", "provisioning_app_version", "device_id", "wallet_account_id"],
        _ => return reject(&sim, ApiError::not_found("Wallet")).await,
    };
    if let Some(missing) = required.iter().find(|k| s(k).is_none()) {
        return reject(&sim, ApiError::bad(format!("{missing} is required"))).await;
    }
    if wallet == "applepay" && req.get("certificates").and_then(Value::as_array).is_none_or(Vec::is_empty) {
        return reject(&sim, ApiError::bad("certificates is required")).await;
    }
    let card_token = s("card_token").unwrap_or_default();
    let step_up = s("nonce").or_else(|| s("device_id")).is_some_and(|v| v.starts_with("stepup"));
    let sim2 = Arc::clone(&sim);
    admitted(&sim, None, fingerprint(&body[..]), move |_ticket: Ticket<Object>| {
        let Some(card) = card_of(&sim2, &card_token) else { return saved_error(&ApiError::not_found("Card")) };
        if card.state == "TERMINATED" {
            return saved_error(&ApiError::bad("Card is terminated"));
        }
        let now = iso8601(now_ms());
        let body = if wallet == "applepay" {
            json!({
                "created_time": now, "last_modified_time": now, "card_token": card.token,
                "encrypted_pass_data": random_id(64), "activation_data": random_id(32), "ephemeral_public_key": random_id(44),
            })
        } else {
            json!({
                "created_time": now, "last_modified_time": now, "card_token": card.token,
                "push_tokenize_request_data": {
                    "display_name": "Visa Card", "last_digits": card.last_four, "network": "Visa",
                    "token_service_provider": "TOKEN_PROVIDER_VTS", "opaque_payment_card": random_id(64),
                },
            })
        };
        super::wallet::provisioned(&sim2, &card.token, step_up);
        Saved { status: StatusCode::CREATED, body: to_bytes(&body) }
    })
    .await
}

// Every field of the definition is accepted; not all are acted on.
#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ChargebackRequest {
    token: Option<String>,
    transaction_token: String,
    amount: f64,
    channel: String,
    reason_description: Option<String>,
    reason_code: Option<String>,
    memo: Option<String>,
    credit_user: Option<bool>,
    status: Option<String>,
    regulation_type: Option<String>,
    pre_initiated: Option<bool>,
}

pub(super) async fn create_chargeback(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = guard(&sim, &headers, None).await {
        return r;
    }
    let req: ChargebackRequest = match parse(&sim, &body).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let checked = (|| {
        check_token("transaction_token", &req.transaction_token)?;
        if let Some(t) = &req.token {
            check_token("token", t)?;
        }
        if req.amount.is_nan() || req.amount <= 0.0 {
            return Err(ApiError::bad("amount must be positive"));
        }
        if !["GATEWAY", "GATEWAY_AUTOMATED", "ISSUER", "ISSUER_AUTOMATED"].contains(&req.channel.as_str()) {
            return Err(ApiError::bad("invalid channel"));
        }
        if req.reason_description.is_none() && req.reason_code.is_none() {
            return Err(ApiError::bad("Either 'reason_description' or 'reason_code' is required"));
        }
        Ok(())
    })();
    if let Err(e) = checked {
        return reject(&sim, e).await;
    }
    let token = req.token.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let key = format!("cb:{token}");
    admitted(&sim, Some(key.clone()), fingerprint(&body[..]), move |ticket| {
        let now = iso8601(now_ms());
        let cb = json!({
            "token": token, "transaction_token": req.transaction_token, "amount": req.amount,
            "reason_description": req.reason_description, "reason_code": req.reason_code, "memo": req.memo,
            "state": "INITIATED", "channel": req.channel, "network": "VISA", "network_case_id": random_id(12),
            "credit_user": req.credit_user.unwrap_or(false), "created_time": now, "last_modified_time": now,
        });
        let cb = without_nulls(cb);
        let saved = Saved { status: StatusCode::CREATED, body: to_bytes(&cb) };
        ticket.commit(Some((key, Object::Chargeback(cb))), None, &saved);
        saved
    })
    .await
}

pub(super) async fn get_chargeback(State(sim): State<Arc<Sim>>, Path(token): Path<String>, headers: HeaderMap) -> Response {
    if let Err(r) = guard(&sim, &headers, None).await {
        return r;
    }
    let read = sim.engine.read(&format!("cb:{token}"));
    pause(read.latency).await;
    match read.outcome {
        Err(fault) => fault_reply(fault),
        Ok(Some(Object::Chargeback(cb))) => json_reply(StatusCode::OK, to_bytes(&cb), &[]),
        Ok(_) => error(&ApiError::not_found("Chargeback")),
    }
}

// Every field of the definition is accepted; not all are acted on.
#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ChargebackTransitionRequest {
    token: Option<String>,
    chargeback_token: String,
    state: String,
    reason: Option<String>,
    amount: Option<f64>,
    regulation_type: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

pub(super) async fn chargeback_transition(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = guard(&sim, &headers, None).await {
        return r;
    }
    let req: ChargebackTransitionRequest = match parse(&sim, &body).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    const STATES: [&str; 8] = ["REPRESENTMENT", "PREARBITRATION", "PREARB_RESPONDED", "ARBITRATION", "CASE_WON", "CASE_LOST", "WRITTEN_OFF_ISSUER", "WRITTEN_OFF_PROGRAM"];
    if !STATES.contains(&req.state.as_str()) {
        return reject(&sim, ApiError::bad(format!("state must be one of {STATES:?}"))).await;
    }
    let key = req.token.as_ref().map(|t| format!("cbt:{t}"));
    let sim2 = Arc::clone(&sim);
    admitted(&sim, key, fingerprint(&body[..]), move |ticket| {
        let cb_key = format!("cb:{}", req.chargeback_token);
        let Some(Object::Chargeback(mut cb)) = sim2.engine.record(&cb_key) else { return saved_error(&ApiError::not_found("Chargeback")) };
        let previous = cb["state"].as_str().unwrap_or("INITIATED").to_owned();
        if ["CASE_WON", "CASE_LOST", "WITHDRAWN", "WRITTEN_OFF_ISSUER", "WRITTEN_OFF_PROGRAM", "NETWORK_REJECTED"].contains(&previous.as_str()) {
            return saved_error(&ApiError::bad(format!("Invalid chargeback transition from {previous}")));
        }
        let now = iso8601(now_ms());
        cb["state"] = Value::from(req.state.clone());
        cb["last_modified_time"] = Value::from(now.clone());
        let t = json!({
            "token": req.token.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()), "state": req.state, "previous_state": previous,
            "channel": cb["channel"], "chargeback_token": req.chargeback_token, "reason": req.reason,
            "transaction_token": cb["transaction_token"], "created_time": now, "last_modified_time": now,
            "type": req.state.to_ascii_lowercase().replace('_', "."), "amount": req.amount.or(cb["amount"].as_f64()),
        });
        let t = without_nulls(t);
        if let Some(h) = &sim2.hooks {
            h.send("chargebacktransitions", t.clone(), Duration::ZERO);
        }
        let saved = Saved { status: StatusCode::CREATED, body: to_bytes(&t) };
        ticket.commit(Some((cb_key, Object::Chargeback(cb))), None, &saved);
        saved
    })
    .await
}

/// Marqeta leaves absent optional fields out rather than sending null.
fn without_nulls(mut v: Value) -> Value {
    if let Value::Object(m) = &mut v {
        m.retain(|_, field| !field.is_null());
    }
    v
}
