//! Provisioning and disputes: `POST /v1/cards/{token}/provision`,
//! `POST /v1/disputes`, `GET /v1/disputes/{token}`,
//! `POST /v1/disputes/{token}/evidences` (see the parent module's doc), and
//! the test control `POST /_sim/disputes/{token}` that moves a dispute on.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::wire::{self, ApiError, Dispute, Object};
use super::{error, fault_reply, gate, idempotent, not_found, refuse, saved_error, Sim, MAGIC_STEP_UP};
use crate::engine::Saved;
use crate::util::{fingerprint, json_reply, now_ms, pause, to_bytes};

pub(super) async fn provision(State(sim): State<Arc<Sim>>, Path(token): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let key = match gate(&sim, &headers).await {
        Ok(k) => k,
        Err(r) => return r,
    };
    const FIELDS: &[&str] = &["certificate", "client_wallet_account_id", "client_device_id", "digital_wallet", "nonce", "nonce_signature"];
    let checked = wire::object(&body, FIELDS).and_then(|map| {
        let wallet = wire::one_of(&map, "digital_wallet", &["APPLE_PAY", "GOOGLE_PAY", "SAMSUNG_PAY"])?
            .ok_or_else(|| ApiError::bad("digital_wallet is required"))?
            .to_owned();
        let step_up = ["client_device_id", "client_wallet_account_id", "nonce"]
            .iter()
            .any(|f| wire::string(&map, f).ok().flatten().is_some_and(|v| v.starts_with(MAGIC_STEP_UP)));
        Ok((wallet, step_up, Value::Object(map).to_string()))
    });
    let (wallet, step_up, canonical) = match checked {
        Ok(v) => v,
        Err(e) => return refuse(&sim, e).await,
    };
    let Some(card) = sim.card(&token) else { return refuse(&sim, not_found("Card")).await };
    let fp = fingerprint(&("POST /v1/cards/provision", &token, &canonical));
    idempotent(&sim, key, fp, move |ticket| {
        let saved = if card.state != "OPEN" {
            saved_error(&ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "Card must be OPEN to be provisioned."))
        } else {
            let payload = match (wallet.as_str(), step_up) {
                ("APPLE_PAY", false) => json!({"activationData": b64(&format!("act-{token}")), "encryptedData": b64("sim-encrypted"), "ephemeralPublicKey": b64("sim-epk")}),
                ("APPLE_PAY", true) => json!({"encryptedData": b64("sim-encrypted"), "ephemeralPublicKey": b64("sim-epk")}),
                (_, false) => Value::from(b64(&format!("opc-{token}"))),
                (_, true) => Value::from(""),
            };
            Saved { status: StatusCode::OK, body: to_bytes(&json!({ "provisioning_payload": payload })) }
        };
        ticket.commit(None, None, &saved);
        saved
    })
    .await
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

pub(super) async fn create_dispute(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    let key = match gate(&sim, &headers).await {
        Ok(k) => k,
        Err(r) => return r,
    };
    let checked = wire::object(&body, &["amount", "customer_filed_date", "customer_note", "reason", "transaction_token"]).and_then(|map| {
        let amount = map.get("amount").and_then(Value::as_i64).ok_or_else(|| ApiError::bad("amount is required (integer)"))?;
        let reason = wire::one_of(&map, "reason", wire::DISPUTE_REASONS)?.ok_or_else(|| ApiError::bad("reason is required"))?.to_owned();
        let tx = wire::string(&map, "transaction_token")?.ok_or_else(|| ApiError::bad("transaction_token is required"))?.to_owned();
        if !wire::is_uuid(&tx) {
            return Err(ApiError::bad("transaction_token must be a UUID"));
        }
        let note = wire::string(&map, "customer_note")?.map(str::to_owned);
        Ok((amount, reason, tx, note, Value::Object(map).to_string()))
    });
    let (amount, reason, transaction_token, customer_note, canonical) = match checked {
        Ok(v) => v,
        Err(e) => return refuse(&sim, e).await,
    };
    let fp = fingerprint(&("POST /v1/disputes", &canonical));
    let s = Arc::clone(&sim);
    idempotent(&sim, key, fp, move |ticket| {
        let d = Dispute { token: uuid::Uuid::new_v4().to_string(), transaction_token, amount, reason, status: "NEW".into(), customer_note, created_ms: now_ms(), resolution_reason: None };
        let saved = Saved { status: StatusCode::CREATED, body: to_bytes(&d.render()) };
        let submitted = Dispute { status: "SUBMITTED".into(), ..d.clone() };
        ticket.commit(Some((d.token.clone(), Object::Dispute(Arc::new(d)))), None, &saved);
        let s2 = Arc::clone(&s);
        tokio::spawn(async move {
            tokio::time::sleep(s2.ship_after).await;
            let mut body = submitted.render();
            body["event_type"] = Value::from("dispute.updated");
            s2.engine.seed(submitted.token.clone(), Object::Dispute(Arc::new(submitted)));
            s2.emit(vec![body]);
        });
        saved
    })
    .await
}

pub(super) async fn get_dispute(State(sim): State<Arc<Sim>>, Path(token): Path<String>, headers: HeaderMap) -> Response {
    if let Err(r) = gate(&sim, &headers).await {
        return r;
    }
    let read = sim.engine.read(&token);
    pause(read.latency).await;
    match read.outcome {
        Err(f) => fault_reply(f),
        Ok(Some(Object::Dispute(d))) => json_reply(StatusCode::OK, to_bytes(&d.render()), &[]),
        Ok(_) => error(&not_found("Dispute")),
    }
}

pub(super) async fn evidence(State(sim): State<Arc<Sim>>, Path(token): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let key = match gate(&sim, &headers).await {
        Ok(k) => k,
        Err(r) => return r,
    };
    let checked = wire::object(&body, &["filename"]).and_then(|map| Ok((wire::string(&map, "filename")?.map(str::to_owned), Value::Object(map).to_string())));
    let (filename, canonical) = match checked {
        Ok(v) => v,
        Err(e) => return refuse(&sim, e).await,
    };
    if !matches!(sim.engine.record(&token), Some(Object::Dispute(_))) {
        return refuse(&sim, not_found("Dispute")).await;
    }
    let fp = fingerprint(&("POST /v1/disputes/evidences", &token, &canonical));
    idempotent(&sim, key, fp, move |ticket| {
        let ev = uuid::Uuid::new_v4().to_string();
        let mut v = json!({"token": ev, "dispute_token": token, "created": crate::util::iso8601(now_ms()), "upload_status": "PENDING",
                           "upload_url": format!("https://lithic-disputes-sandbox.s3.amazonaws.com/{token}/{ev}")});
        if let Some(f) = filename {
            v["filename"] = Value::from(f);
        }
        let saved = Saved { status: StatusCode::CREATED, body: to_bytes(&v) };
        ticket.commit(None, None, &saved);
        saved
    })
    .await
}


/// Test control, never faulted: moves a dispute to Lithic's `status` (and
/// `resolution_reason`, both by Lithic's published enums) as Lithic's
/// dispute handling and the network would, and calls back
/// `dispute.updated` with the dispute. Lithic's API has no such endpoint;
/// only Lithic moves a dispute past SUBMITTED.
pub(super) async fn move_dispute(State(sim): State<Arc<Sim>>, Path(token): Path<String>, body: Bytes) -> Response {
    let checked = wire::object(&body, &["status", "resolution_reason"]).and_then(|map| {
        let status = wire::one_of(&map, "status", wire::DISPUTE_STATUSES)?.ok_or_else(|| ApiError::bad("status is required"))?.to_owned();
        let resolution_reason = wire::one_of(&map, "resolution_reason", wire::RESOLUTION_REASONS)?.map(str::to_owned);
        Ok((status, resolution_reason))
    });
    let (status, resolution_reason) = match checked {
        Ok(v) => v,
        Err(e) => return error(&e),
    };
    let Some(Object::Dispute(current)) = sim.engine.record(&token) else { return error(&not_found("Dispute")) };
    let moved = Dispute { status, resolution_reason, ..(*current).clone() };
    let mut event = moved.render();
    let reply = to_bytes(&event);
    sim.engine.seed(token, Object::Dispute(Arc::new(moved)));
    event["event_type"] = Value::from("dispute.updated");
    sim.emit(vec![event]);
    json_reply(StatusCode::OK, reply, &[])
}
