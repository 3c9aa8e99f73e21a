//! Marqeta Core API (v3) simulator for card issuing, from Marqeta's
//! published OpenAPI (swagger 2.0) document "Marqeta Core API" 3.0.0
//! (`https://sandbox-api.marqeta.com/v3/swagger.json`, as archived on
//! 2024-01-19 in CapitalOnTap/marqeta-swagger-json
//! `original-archive/swagger.2024.01.19.json`). Served under `/v3`, the
//! definition's `basePath`: the adapter's base URL is `http://host:port/v3`.
//!
//! - Auth: HTTP Basic, application token as user, access token as password;
//!   otherwise 401 `{"error_code":"401001",...}` (code UNCONFIRMED).
//! - `POST /cards` (`card_request`: `token` <= 36, `user_token`,
//!   `card_product_token` required, `fulfillment.shipping.recipient_address`,
//!   `metadata`, `reissue_pan_from_card_token` keeps the PAN,
//!   `new_pan_from_card_token` gets a new one; unknown fields are refused).
//!   201 `card_response`, state `UNACTIVATED` (or `ACTIVE` with
//!   `activation_actions.activate_upon_issue`). The client-chosen `token` is
//!   the idempotency mechanism: a token already used answers 409
//!   `{"error_code":"409001","error_message":"Token already associated with a
//!   different payload"}`. The definition documents 409 for a *different*
//!   payload; what an identical one gets is not documented, so the simulator
//!   answers 409 for every reuse (also while the first is in flight) and a
//!   client must GET the card, which works whichever Marqeta does.
//! - A card is physical when its request has `fulfillment.shipping` (at
//!   Marqeta the card product decides). `fulfillment_status`: virtual cards
//!   `ISSUED`; physical `ISSUED` -> `ORDERED` (half of `ship_after`) ->
//!   `SHIPPED` (`ship_after`) -> `DELIVERED` (twice it), computed on read.
//! - `GET /cards/{token}`: the card; 404 for an unknown token. `pan` is masked
//!   (`411111______1234`) unless `show_pan=true`; the simulator counts such
//!   requests ([`PanReveals`]) so tests prove nobody asked.
//! - `POST /cardtransitions` (`card_token`, `channel`
//!   API|IVR|FRAUD|ADMIN|SYSTEM, `state` ACTIVE|SUSPENDED|TERMINATED,
//!   `reason_code` 00..32, optional `token`): 201 `card_transition_response`
//!   with `type` `state.activated|suspended|reinstated|terminated`. Allowed:
//!   UNACTIVATED/SUSPENDED -> ACTIVE, UNACTIVATED/ACTIVE -> SUSPENDED, any
//!   non-terminated -> TERMINATED; anything else (incl. the same state) is
//!   400 `400011` "Invalid card state transition" (code and wording
//!   UNCONFIRMED). Activating a card reissued from another terminates the
//!   old one.
//! - `POST /pins/controltoken` (`card_token`, `controltoken_type` SET_PIN)
//!   -> 201 `{control_token}`; `PUT /pins` (`control_token`, `pin`) -> 204.
//!   A control token works once (again: 400, UNCONFIRMED). `pin` is accepted
//!   as 4-12 digits or an encrypted block (16+ hex digits, UNCONFIRMED: the
//!   definition types it as a plain string); 1234/0000/1111 -> 412 weak PIN.
//! - `POST /digitalwalletprovisionrequests/applepay` | `androidpay`: the
//!   opaque payloads; 404 for an unknown card.
//! - `POST /chargebacks` (`transaction_token`, `amount` in major units,
//!   `channel`, `reason_description`, optional `token` idempotent like cards)
//!   -> 201 `chargeback_response` state `INITIATED`; `GET /chargebacks/{token}`;
//!   `POST /chargebacks/transitions` (`chargeback_token`, `state`). Marqeta's
//!   newer disputes ("cases") API is not in this definition; not simulated.
//! - Errors `{"error_code":"<6 digits>","error_message"}`; the individual
//!   codes are UNCONFIRMED (the definition lists statuses only). Faults
//!   (500/503/429/latency/hang) come from the [`FaultPlan`].
//! - Webhooks ([`MarqetaWebhook`], see `hooks`): `cardtransitions` events
//!   `fulfillment.issued|ordered|shipped|delivered|rejected` and
//!   `state.activated|suspended|reinstated|terminated`,
//!   `digitalwallettokentransitions`, `chargebacktransitions`; batches of up
//!   to 10, Basic auth, optional `X-Marqeta-Signature`, retried on non-200;
//!   optionally duplicated and jittered (twice, late, out of order).
//!
//! Magic inputs:
//! - `user_token` starting with `declined` -> 400 `400200` "User is not
//!   active" (issuance declined; nothing created, the token stays free).
//! - a shipping `address1` containing `RETURN TO SENDER` -> the card ships,
//!   then comes back: `fulfillment.rejected` (status `REJECTED`) instead of
//!   `DELIVERED`.
//! - an Apple Pay `nonce` or Google Pay `device_id` starting with `stepup`
//!   -> the provisioning succeeds but the wallet token's decision is
//!   `DECISION_YELLOW` (step-up), told by a `digitalwallettokentransitions`
//!   event (green path otherwise). The synchronous response carries no
//!   decision, as at Marqeta. A yellow token stays `REQUESTED` until
//!   `POST /digitalwallettokentransitions` makes it `ACTIVE` (the issuer's
//!   step-up done); a green one goes `ACTIVE` by itself (`wallet`).
//!
//! Every created card is recorded in the [`CardOracle`] with our card id
//! taken from `metadata.switchyard_card_id` (else the token).

mod extra;
mod hooks;
#[cfg(test)]
mod tests;
mod wallet;
mod wire;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::Router;
use base64::Engine as _;

pub use hooks::{signature, MarqetaWebhook, MAX_BATCH};

use crate::engine::{Admit, Engine, Saved, Ticket};
use crate::faults::Fault;
use crate::util::{fingerprint, header_str, json_reply, now_ms, pause, to_bytes};
use crate::{CardOracle, FaultPlan, IssuedCard, SimulatorHandle};
use wire::{ApiError, Card};

/// The metadata key the adapter puts our card id under.
pub const CARD_ID_METADATA: &str = "switchyard_card_id";

/// Counts requests that asked Marqeta for a PAN or CVV (`show_pan`,
/// `show_cvv_number`); clones share the count.
#[derive(Clone, Debug, Default)]
pub struct PanReveals(Arc<AtomicU64>);

impl PanReveals {
    pub fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Clone, Debug)]
pub struct MarqetaConfig {
    pub bind: SocketAddr,
    /// Basic auth user.
    pub application_token: String,
    /// Basic auth password.
    pub access_token: String,
    pub faults: FaultPlan,
    /// Physical cards: ORDERED after half of it, SHIPPED after it.
    pub ship_after: Duration,
    pub webhook: Option<MarqetaWebhook>,
    pub oracle: CardOracle,
    pub pan_reveals: PanReveals,
}

impl MarqetaConfig {
    /// 127.0.0.1 on an ephemeral port, `app_token_switchyard` /
    /// `access_token_switchyard`, no faults, shipping after 2 s, no webhooks.
    pub fn local() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            application_token: "app_token_switchyard".to_owned(),
            access_token: "access_token_switchyard".to_owned(),
            faults: FaultPlan::default(),
            ship_after: Duration::from_secs(2),
            webhook: None,
            oracle: CardOracle::new(),
            pan_reveals: PanReveals::default(),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) enum Object {
    Card(Box<Card>),
    ControlToken { card_token: String, used: bool },
    Chargeback(serde_json::Value),
    WalletToken(wallet::WalletToken),
}

pub(crate) struct Sim {
    pub(crate) engine: Arc<Engine<Object>>,
    auth: String,
    pub(crate) ship_after: Duration,
    pub(crate) hooks: Option<hooks::Hooks>,
    oracle: CardOracle,
    pan_reveals: PanReveals,
}

/// Starts a Marqeta Core API simulator.
pub async fn spawn_marqeta(cfg: MarqetaConfig) -> std::io::Result<SimulatorHandle> {
    let engine = Engine::new(cfg.faults);
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", cfg.application_token, cfg.access_token));
    let sim = Arc::new(Sim {
        engine: Arc::clone(&engine),
        auth,
        ship_after: cfg.ship_after,
        hooks: cfg.webhook.map(hooks::Hooks::start),
        oracle: cfg.oracle,
        pan_reveals: cfg.pan_reveals,
    });
    let api = Router::new()
        .route("/v3/cards", post(create_card))
        .route("/v3/cards/{token}", get(get_card))
        .route("/v3/cardtransitions", post(transition))
        .route("/v3/pins/controltoken", post(extra::control_token))
        .route("/v3/pins", put(extra::set_pin))
        .route("/v3/digitalwalletprovisionrequests/{wallet}", post(extra::provision))
        .route("/v3/digitalwallettokentransitions", post(wallet::transition))
        .route("/v3/digitalwallettokens/card/{card_token}", get(wallet::list_for_card))
        .route("/v3/chargebacks", post(extra::create_chargeback))
        .route("/v3/chargebacks/transitions", post(extra::chargeback_transition))
        .route("/v3/chargebacks/{token}", get(extra::get_chargeback))
        .with_state(sim);
    crate::server::spawn(cfg.bind, api, engine, "marqeta").await
}

pub(crate) fn error(e: &ApiError) -> Response {
    json_reply(e.status, e.body(), &[])
}

pub(crate) fn fault_reply(fault: Fault) -> Response {
    match fault {
        Fault::ServerError { unavailable: true } => error(&ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "503001", "Service unavailable")),
        Fault::ServerError { unavailable: false } => error(&ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "500001", "Internal server error")),
        Fault::RateLimited { secs } => {
            let e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "429001", "Too many requests");
            let retry = axum::http::HeaderValue::from(secs);
            json_reply(e.status, e.body(), &[(axum::http::header::RETRY_AFTER, retry)])
        }
    }
}

/// Basic auth check, and a count of PAN/CVV reveals asked for.
pub(crate) async fn guard(sim: &Sim, headers: &HeaderMap, query: Option<&Query<Vec<(String, String)>>>) -> Result<(), Response> {
    if let Some(q) = query {
        if q.0.iter().any(|(k, v)| (k == "show_pan" || k == "show_cvv_number") && v == "true") {
            sim.pan_reveals.0.fetch_add(1, Ordering::Relaxed);
        }
    }
    let ok = header_str(headers, "authorization").and_then(|v| v.strip_prefix("Basic ")).is_some_and(|v| v.trim() == sim.auth);
    if ok {
        return Ok(());
    }
    pause(sim.engine.reject(true)).await;
    Err(error(&ApiError::new(StatusCode::UNAUTHORIZED, "401001", "Unauthorized: invalid application token or access token")))
}

/// A JSON body, or a 400 answered after the configured latency.
pub(crate) async fn parse<T: serde::de::DeserializeOwned>(sim: &Sim, body: &Bytes) -> Result<T, Response> {
    match serde_json::from_slice(body) {
        Ok(v) => Ok(v),
        Err(e) => Err(reject(sim, ApiError::bad(format!("Malformed request body: {e}"))).await),
    }
}

pub(crate) async fn reject(sim: &Sim, e: ApiError) -> Response {
    pause(sim.engine.reject(false)).await;
    error(&e)
}

/// Admits a request under an optional client token: any reuse is a 409.
pub(crate) async fn admitted(sim: &Sim, key: Option<String>, fp: u64, run: impl FnOnce(Ticket<Object>) -> Saved) -> Response {
    match sim.engine.admit(key.as_deref(), fp) {
        Admit::Fault { latency, fault } => {
            pause(latency).await;
            fault_reply(fault)
        }
        Admit::Replay { latency, .. } | Admit::Mismatch { latency } | Admit::InFlight { latency } => {
            pause(latency).await;
            error(&ApiError::new(StatusCode::CONFLICT, "409001", "Token already associated with a different payload"))
        }
        Admit::Proceed { latency, hang, ticket } => {
            let Some(saved) = crate::util::accept(latency, hang, move || run(ticket)).await else { return error(&ApiError::bad("not executed")) };
            json_reply(saved.status, saved.body, &[])
        }
    }
}

pub(crate) fn saved_error(e: &ApiError) -> Saved {
    Saved { status: e.status, body: e.body() }
}

pub(crate) fn card_of(sim: &Sim, token: &str) -> Option<Card> {
    match sim.engine.record(&format!("card:{token}")) {
        Some(Object::Card(c)) => Some(*c),
        _ => None,
    }
}

fn random_digits(n: usize) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..n).map(|_| char::from(b'0' + rng.random_range(0..10u8))).collect()
}

async fn create_card(State(sim): State<Arc<Sim>>, query: Query<Vec<(String, String)>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = guard(&sim, &headers, Some(&query)).await {
        return r;
    }
    let show_pan = query.0.iter().any(|(k, v)| k == "show_pan" && v == "true");
    let req: wire::CardRequest = match parse(&sim, &body).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    if let Err(e) = validate_card(&sim, &req) {
        return reject(&sim, e).await;
    }
    let token = req.token.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let key = format!("card:{token}");
    let fp = fingerprint(&body[..]);
    let sim2 = Arc::clone(&sim);
    admitted(&sim, Some(key), fp, move |ticket| issue(&sim2, req, token, show_pan, ticket)).await
}

fn validate_card(sim: &Sim, req: &wire::CardRequest) -> Result<(), ApiError> {
    let user = req.user_token.as_deref().ok_or_else(|| ApiError::bad("user_token is required"))?;
    let product = req.card_product_token.as_deref().ok_or_else(|| ApiError::bad("card_product_token is required"))?;
    wire::check_token("user_token", user)?;
    wire::check_token("card_product_token", product)?;
    if let Some(t) = &req.token {
        wire::check_token("token", t)?;
    }
    for source in [&req.reissue_pan_from_card_token, &req.new_pan_from_card_token].into_iter().flatten() {
        if card_of(sim, source).is_none() {
            return Err(ApiError::not_found("Card"));
        }
    }
    if let Some(shipping) = req.fulfillment.as_ref().and_then(|f| f.shipping.as_ref()) {
        let ok = shipping.recipient_address.as_ref().is_some_and(|a| a.address1.is_some() && a.city.is_some() && a.country.is_some());
        if !ok {
            return Err(ApiError::bad("fulfillment.shipping.recipient_address needs address1, city and country"));
        }
    }
    Ok(())
}

fn issue(sim: &Sim, req: wire::CardRequest, token: String, show_pan: bool, ticket: Ticket<Object>) -> Saved {
    let user_token = req.user_token.clone().unwrap_or_default();
    if user_token.starts_with("declined") {
        // Declined: nothing created; dropping the ticket frees the token.
        return saved_error(&ApiError::new(StatusCode::BAD_REQUEST, "400200", "User is not active"));
    }
    let reissued_from = req.reissue_pan_from_card_token.as_deref().and_then(|t| card_of(sim, t));
    let pan = match &reissued_from {
        Some(old) => old.pan.clone(),
        None => format!("411111{}", random_digits(10)),
    };
    let now = now_ms();
    let shipping = req.fulfillment.as_ref().and_then(|f| f.shipping.as_ref());
    let address = shipping.and_then(|s| s.recipient_address.clone());
    let activate = req.activation_actions.as_ref().and_then(|a| a.get("activate_upon_issue")).and_then(serde_json::Value::as_bool) == Some(true);
    let card = Card {
        token: token.clone(),
        user_token,
        card_product_token: req.card_product_token.clone().unwrap_or_default(),
        state: if activate { "ACTIVE" } else { "UNACTIVATED" },
        state_reason: "New card".to_owned(),
        last_four: pan[pan.len() - 4..].to_owned(),
        pan,
        pin_is_set: false,
        physical: shipping.is_some(),
        returned: address.as_ref().and_then(|a| a.address1.as_deref()).is_some_and(|l| l.to_ascii_uppercase().contains("RETURN TO SENDER")),
        metadata: req.metadata.clone(),
        shipping: address,
        reissue_pan_from_card_token: req.reissue_pan_from_card_token.clone(),
        created_ms: now,
        modified_ms: now,
        created_at: Instant::now(),
    };
    let saved = Saved { status: StatusCode::CREATED, body: to_bytes(&card.render(sim.ship_after, show_pan)) };
    let card_id = card.metadata.as_ref().and_then(|m| m.get(CARD_ID_METADATA)).and_then(|v| v.as_str()).map(str::to_owned);
    sim.oracle.record(IssuedCard {
        processor: "marqeta".to_owned(),
        card_id: card_id.or_else(|| Some(token.clone())),
        token: token.clone(),
        idempotency_key: Some(token.clone()),
        form: if card.physical { "PHYSICAL" } else { "VIRTUAL" }.to_owned(),
        last_four: card.last_four.clone(),
    });
    fulfillment_events(sim, &card);
    if activate {
        card_event(sim, &card, "API", "state.activated", Duration::ZERO);
    }
    ticket.commit(Some((format!("card:{token}"), Object::Card(Box::new(card)))), None, &saved);
    saved
}

/// `fulfillment.*` events along the card's shipping timeline.
fn fulfillment_events(sim: &Sim, card: &Card) {
    card_event(sim, card, "SYSTEM", "fulfillment.issued", Duration::ZERO);
    if card.physical {
        card_event(sim, card, "SYSTEM", "fulfillment.ordered", sim.ship_after / 2);
        card_event(sim, card, "SYSTEM", "fulfillment.shipped", sim.ship_after);
        let last = if card.returned { "fulfillment.rejected" } else { "fulfillment.delivered" };
        card_event(sim, card, "SYSTEM", last, sim.ship_after * 2);
    }
}

pub(crate) fn card_event(sim: &Sim, card: &Card, channel: &str, kind: &str, delay: Duration) {
    let Some(h) = &sim.hooks else { return };
    let status = wire::fulfillment_at(card.physical, card.returned, card.created_at.elapsed() + delay, sim.ship_after);
    let at = now_ms() + delay.as_millis() as i64;
    let body = wire::transition_body(&uuid::Uuid::new_v4().to_string(), card, channel, kind, None, status, at);
    h.send("cardtransitions", body, delay);
}

async fn get_card(State(sim): State<Arc<Sim>>, Path(token): Path<String>, query: Query<Vec<(String, String)>>, headers: HeaderMap) -> Response {
    if let Err(r) = guard(&sim, &headers, Some(&query)).await {
        return r;
    }
    let show_pan = query.0.iter().any(|(k, v)| k == "show_pan" && v == "true");
    let read = sim.engine.read(&format!("card:{token}"));
    pause(read.latency).await;
    match read.outcome {
        Err(fault) => fault_reply(fault),
        Ok(Some(Object::Card(card))) => json_reply(StatusCode::OK, to_bytes(&card.render(sim.ship_after, show_pan)), &[]),
        Ok(_) => error(&ApiError::not_found("Card")),
    }
}

async fn transition(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = guard(&sim, &headers, None).await {
        return r;
    }
    let req: wire::TransitionRequest = match parse(&sim, &body).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let checked = (|| {
        wire::check_token("card_token", &req.card_token)?;
        if let Some(t) = &req.token {
            wire::check_token("token", t)?;
        }
        if !wire::CHANNELS.contains(&req.channel.as_str()) {
            return Err(ApiError::bad(format!("channel must be one of {:?}", wire::CHANNELS)));
        }
        if !wire::STATES.contains(&req.state.as_str()) {
            return Err(ApiError::bad(format!("state must be one of {:?}", wire::STATES)));
        }
        if req.reason_code.as_deref().is_some_and(|c| c.len() != 2 || c > "32" || !c.bytes().all(|b| b.is_ascii_digit())) {
            return Err(ApiError::bad("reason_code must be 00 to 32"));
        }
        Ok(())
    })();
    if let Err(e) = checked {
        return reject(&sim, e).await;
    }
    let key = req.token.as_ref().map(|t| format!("cardtransition:{t}"));
    let fp = fingerprint(&body[..]);
    let sim2 = Arc::clone(&sim);
    admitted(&sim, key, fp, move |ticket| apply_transition(&sim2, req, ticket)).await
}

fn apply_transition(sim: &Sim, req: wire::TransitionRequest, ticket: Ticket<Object>) -> Saved {
    let Some(mut card) = card_of(sim, &req.card_token) else { return saved_error(&ApiError::not_found("Card")) };
    if !wire::transition_allowed(card.state, &req.state) {
        let e = ApiError::new(
            StatusCode::BAD_REQUEST,
            "400011",
            format!("Invalid card state transition: {} to {}", card.state, req.state),
        );
        return saved_error(&e);
    }
    let from = card.state;
    card.state = wire::STATES.into_iter().find(|s| *s == req.state).unwrap_or("ACTIVE");
    card.state_reason = req.reason.clone().unwrap_or_default();
    card.modified_ms = now_ms();
    let kind = wire::transition_type(from, card.state);
    let token = req.token.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let status = card.fulfillment_status(sim.ship_after);
    let body = wire::transition_body(&token, &card, &req.channel, kind, req.reason_code.as_deref(), status, card.modified_ms);
    if let Some(h) = &sim.hooks {
        h.send("cardtransitions", body.clone(), Duration::ZERO);
    }
    // Activating a reissued card retires the card it was reissued from.
    if kind == "state.activated" {
        if let Some(mut old) = card.reissue_pan_from_card_token.as_deref().and_then(|t| card_of(sim, t)).filter(|o| o.state != "TERMINATED") {
            old.state = "TERMINATED";
            old.state_reason = "Reissued card activated".to_owned();
            old.modified_ms = card.modified_ms;
            card_event(sim, &old, "SYSTEM", "state.terminated", Duration::ZERO);
            sim.engine.seed(format!("card:{}", old.token), Object::Card(Box::new(old)));
        }
    }
    let saved = Saved { status: StatusCode::CREATED, body: to_bytes(&body) };
    ticket.commit(Some((format!("card:{}", card.token), Object::Card(Box::new(card)))), None, &saved);
    saved
}
