//! Digital wallet tokens, as Marqeta's "Managing the digital wallet token
//! lifecycle" describes them: a provisioning request creates a token in
//! state `REQUESTED` with the parties' decision as its `fulfillment_status`
//! (`DECISION_GREEN`, or `DECISION_YELLOW` when the cardholder must be
//! verified further). A green token goes `ACTIVE` on its own; a yellow one
//! stays `REQUESTED` until the issuer, having verified the cardholder,
//! transitions it (`POST /digitalwallettokentransitions`, state `ACTIVE`).
//! Each transition is told by a `digitalwallettokentransitions` webhook.
//!
//! `GET /digitalwallettokens/card/{card_token}` lists a card's tokens, which
//! is how an issuer (or a test) finds the token to transition.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};

use super::wire::{check_token, ApiError};
use super::{admitted, card_of, guard, parse, reject, saved_error, Object, Sim};
use crate::engine::Saved;
use crate::util::{fingerprint, iso8601, json_reply, now_ms, to_bytes};

/// One wallet token of a card, as the simulator keeps it.
#[derive(Clone, Debug)]
pub(crate) struct WalletToken {
    token: String,
    card_token: String,
    state: String,
    fulfillment_status: String,
}

impl WalletToken {
    fn view(&self) -> Value {
        json!({
            "token": self.token, "card_token": self.card_token, "state": self.state,
            "fulfillment_status": self.fulfillment_status,
        })
    }
}

/// States the definition allows a transition to.
/// What `digital_wallet_token_transition_request.state` may ask for; a
/// token's own REQUESTED and REQUEST_DECLINED are Marqeta's to set.
const STATES: [&str; 3] = ["ACTIVE", "SUSPENDED", "TERMINATED"];
const CHANNELS: [&str; 8] = ["TOKEN_SERVICE_PROVIDER", "TOKEN_SERVICE_PROVIDER_API", "DIGITAL_WALLET", "API", "IVR", "FRAUD", "ADMIN", "SYSTEM"];

/// A provisioning request was accepted for `card_token`: the token is
/// created and its decision told; a green token's activation follows.
pub(super) fn provisioned(sim: &Sim, card_token: &str, step_up: bool) {
    let decision = if step_up { "DECISION_YELLOW" } else { "DECISION_GREEN" };
    let token = WalletToken { token: uuid::Uuid::new_v4().to_string(), card_token: card_token.to_owned(), state: "REQUESTED".into(), fulfillment_status: decision.into() };
    sim.engine.seed(format!("dwt:{}", token.token), Object::WalletToken(token.clone()));
    tell(sim, &token, "state.requested", "TOKEN_SERVICE_PROVIDER", Duration::from_millis(50));
    if !step_up {
        let active = WalletToken { state: "ACTIVE".into(), fulfillment_status: "PROVISIONED".into(), ..token };
        sim.engine.seed(format!("dwt:{}", active.token), Object::WalletToken(active.clone()));
        tell(sim, &active, "state.activated", "TOKEN_SERVICE_PROVIDER", Duration::from_millis(150));
    }
}

fn tell(sim: &Sim, token: &WalletToken, kind: &str, channel: &str, delay: Duration) {
    if let Some(h) = &sim.hooks {
        let event = json!({
            "token": uuid::Uuid::new_v4().to_string(), "type": kind, "channel": channel,
            "state": token.state, "fulfillment_status": token.fulfillment_status, "created_time": iso8601(now_ms()),
            "digital_wallet_token": { "token": token.token, "card_token": token.card_token },
        });
        h.send("digitalwallettokentransitions", event, delay);
    }
}

fn wallet_token(sim: &Sim, token: &str) -> Option<WalletToken> {
    match sim.engine.record(&format!("dwt:{token}")) {
        Some(Object::WalletToken(t)) => Some(t),
        _ => None,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TokenRef {
    token: String,
    card_token: Option<String>,
}

// Every field of the definition is accepted; not all are acted on.
#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TransitionRequest {
    token: Option<String>,
    digital_wallet_token: TokenRef,
    channel: Option<String>,
    state: String,
    reason: Option<String>,
    reason_code: Option<String>,
    override_tsp_error: Option<bool>,
    token_reference_id: Option<String>,
}

pub(super) async fn transition(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = guard(&sim, &headers, None).await {
        return r;
    }
    let req: TransitionRequest = match parse(&sim, &body).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let checked = (|| {
        check_token("digital_wallet_token.token", &req.digital_wallet_token.token)?;
        if let Some(t) = &req.token {
            check_token("token", t)?;
        }
        if !STATES.contains(&req.state.as_str()) {
            return Err(ApiError::bad(format!("state must be one of {}", STATES.join(", "))));
        }
        if req.channel.as_deref().is_some_and(|c| !CHANNELS.contains(&c)) {
            return Err(ApiError::bad(format!("channel must be one of {}", CHANNELS.join(", "))));
        }
        // The definition's reason codes are "00" to "32".
        let known_reason = |code: &str| code.len() == 2 && code.parse::<u8>().is_ok_and(|n| n <= 32);
        if req.reason_code.as_deref().is_some_and(|c| !known_reason(c)) {
            return Err(ApiError::bad("reason_code must be one of 00 to 32"));
        }
        if req.reason.as_deref().is_some_and(|r| r.chars().count() > 255) {
            return Err(ApiError::bad("reason must be at most 255 characters"));
        }
        Ok(())
    })();
    if let Err(e) = checked {
        return reject(&sim, e).await;
    }
    let transition_token = req.token.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let sim2 = Arc::clone(&sim);
    admitted(&sim, Some(format!("dwtt:{transition_token}")), fingerprint(&body[..]), move |ticket| {
        let Some(mut token) = wallet_token(&sim2, &req.digital_wallet_token.token) else {
            return saved_error(&ApiError::not_found("Digital wallet token"));
        };
        if req.digital_wallet_token.card_token.as_deref().is_some_and(|c| c != token.card_token) {
            return saved_error(&ApiError::bad("card_token does not match the digital wallet token"));
        }
        if token.state == "TERMINATED" || token.state == "REQUEST_DECLINED" {
            return saved_error(&ApiError::bad(format!("Digital wallet token is {}", token.state)));
        }
        token.state = req.state.clone();
        if token.state == "ACTIVE" {
            token.fulfillment_status = "PROVISIONED".into();
        }
        let channel = req.channel.clone().unwrap_or_else(|| "API".into());
        let kind = format!("state.{}", token.state.to_ascii_lowercase());
        let body = json!({
            "token": transition_token, "state": token.state, "fulfillment_status": token.fulfillment_status,
            "channel": channel, "type": kind, "created_time": iso8601(now_ms()),
            "digital_wallet_token": { "token": token.token, "card_token": token.card_token },
        });
        let saved = Saved { status: StatusCode::CREATED, body: to_bytes(&body) };
        ticket.commit(Some((format!("dwt:{}", token.token), Object::WalletToken(token.clone()))), None, &saved);
        tell(&sim2, &token, &kind, &channel, Duration::from_millis(50));
        saved
    })
    .await
}

pub(super) async fn list_for_card(State(sim): State<Arc<Sim>>, Path(card_token): Path<String>, headers: HeaderMap) -> Response {
    if let Err(r) = guard(&sim, &headers, None).await {
        return r;
    }
    if card_of(&sim, &card_token).is_none() {
        return reject(&sim, ApiError::not_found("Card")).await;
    }
    let mut tokens = sim.engine.records_where(|o| match o {
        Object::WalletToken(t) if t.card_token == card_token => Some(t.clone()),
        _ => None,
    });
    tokens.sort_by(|a, b| a.token.cmp(&b.token));
    let data: Vec<Value> = tokens.iter().map(WalletToken::view).collect();
    let end = data.len().saturating_sub(1);
    json_reply(StatusCode::OK, to_bytes(&json!({ "count": data.len(), "start_index": 0, "end_index": end, "is_more": false, "data": data })), &[])
}
