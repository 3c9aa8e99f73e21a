//! Lithic card-issuing simulator, from Lithic's OpenAPI document
//! (github.com/lithic-com/lithic-openapi `lithic-openapi.yml` @ `225e0708`,
//! 2026-08-20; trimmed in `tests/contracts/lithic/cards.json`).
//!
//! - Auth: `Authorization: <api key>` (bare, no scheme); otherwise 401.
//! - `POST /v1/cards` {type, memo, product_id, card_program_token,
//!   shipping_address (required for PHYSICAL), state OPEN|PAUSED, pin,
//!   replacement_for, replacement_substatus, ...}: a card with a UUID
//!   `token`, `last_four`, `state` = the requested one (default OPEN) for
//!   virtual cards, `PENDING_FULFILLMENT` for physical ones. Each card is
//!   recorded in the [`CardOracle`] with our card id = its `memo`.
//! - `GET /v1/cards/{token}`, `GET /v1/cards?memo=&page_size=&starting_after=`.
//! - `PATCH /v1/cards/{token}` {state OPEN|PAUSED|CLOSED, substatus, comment,
//!   pin (base64 encrypted PIN block), memo}: a CLOSED card refuses every
//!   change (400); OPEN from PENDING_* is activation.
//! - `POST /v1/cards/{token}/reissue` (PHYSICAL only, same token, new
//!   plastic: back to PENDING_FULFILLMENT and shipped again).
//! - `POST /v1/cards/{token}/provision` {digital_wallet APPLE_PAY|GOOGLE_PAY|
//!   SAMSUNG_PAY, certificate, nonce, nonce_signature, client_device_id,
//!   client_wallet_account_id}: `provisioning_payload`, an object for Apple
//!   Pay, a string for the others; only for OPEN cards (else 422).
//! - `POST /v1/disputes` {amount, reason, transaction_token, customer_note}
//!   -> 201 `dispute-v1` status NEW, then SUBMITTED after `ship_after`;
//!   `GET /v1/disputes/{token}`; `POST /v1/disputes/{token}/evidences`
//!   {filename} -> 201 `dispute-evidence` PENDING with an `upload_url`.
//! - Test control `POST /_sim/disputes/{token}` {status, resolution_reason}
//!   (Lithic's enums) moves a dispute on and calls back `dispute.updated`.
//! - Shipping: a PHYSICAL card moves PENDING_FULFILLMENT -> PENDING_ACTIVATION
//!   `ship_after` after creation, announced by `card.shipped`.
//! - Errors: `{"debugging_request_id": uuid, "message"}`.
//! - Idempotency (`Idempotency-Key`, a UUID, else 400): the first executed
//!   reply is replayed; the same key with another body (or route) -> 422;
//!   while the first request is in flight -> 409. Kept `key_retention`
//!   (default 24 h, VENDORS.md), then executed again. Lithic documents the
//!   header on `POST /v1/cards` only; the simulator honours it on every
//!   mutating route (UNCONFIRMED).
//! - Faults from the [`FaultPlan`]: 500/503 and 429 (`Retry-After`) before
//!   execution, hang after accept.
//! - Webhooks (Standard Webhooks, `whsec_` secret): `card.created`,
//!   `card.shipped`, `card.updated` (state changes, with `previous_fields`),
//!   `card.reissued`, `dispute.updated`; bodies are the flat shapes of the
//!   document's `webhooks` section. [`LithicConfig::callback_faults`]
//!   duplicates (`duplicate_ratio`, same `webhook-id`), delays
//!   (`max_delay_ms`) and reorders them (`reorder_ratio`: `card.created`
//!   held back until after `card.shipped`); deliveries are retried on non-2xx.
//!
//! Magic inputs: `product_id` or `memo` containing `DECLINE_ISSUANCE` -> 422
//! "card program declined issuance" (saved under the key, nothing created);
//! `product_id` `SHIPPING_RETURNED` -> shipped, then `ship_after` later
//! CLOSED with substatus UNDELIVERABLE (`card.updated`); provisioning with a
//! `client_device_id`, `client_wallet_account_id` or `nonce` starting with
//! `STEP_UP` -> an Apple Pay payload without `activationData` (Google Pay:
//! an empty payload), i.e. the wallet must step the cardholder up.
//!
//! UNCONFIRMED: the 401/409/422 messages and statuses of idempotency
//! conflicts (VENDORS.md: "mismatch -> error"); refusal of unknown
//! parameters; the provisioning payload contents (opaque test strings);
//! dispute status progression; `upload_url` host.

mod extra;
mod wire;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::callbacks::{Callback, CallbackFaults, Signer, WebhookEmitter};
use crate::engine::{Admit, Engine, Saved, Ticket};
use crate::faults::Fault;
use crate::util::{fingerprint, header_str, json_reply, now_ms, pause, to_bytes};
use crate::{CardOracle, FaultPlan, IssuedCard, MoneyOracle, SimulatorHandle, WebhookTarget};
use wire::{ApiError, Card, Object};

pub use wire::{MAGIC_DECLINE, MAGIC_RETURNED, MAGIC_STEP_UP};

/// Configuration of a Lithic simulator.
#[derive(Clone, Debug)]
pub struct LithicConfig {
    pub bind: SocketAddr,
    /// The only API key accepted, sent bare in `Authorization`.
    pub api_key: String,
    pub faults: FaultPlan,
    /// Time from creation to shipment (PHYSICAL) and to a dispute's submission.
    pub ship_after: Duration,
    /// Where to POST Standard Webhooks events; `secret` is `whsec_<base64>`.
    pub webhook: Option<WebhookTarget>,
    /// Duplicates, delays and reorders of webhook deliveries.
    pub callback_faults: CallbackFaults,
    /// How long an `Idempotency-Key` answers replays.
    pub key_retention: Duration,
    /// Receives every card created; share it with the other card simulators.
    pub oracle: CardOracle,
    /// Answer with `pan` and `cvv` like a PCI-compliant program does (off:
    /// Lithic returns them to PCI programs only). For tests proving the
    /// adapter never reads them.
    pub pci_program: bool,
}

/// VENDORS.md: Lithic keeps idempotency keys 24 h.
pub const LITHIC_KEY_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

impl LithicConfig {
    /// 127.0.0.1 on an ephemeral port, key `lithic_sk_test_switchyard`, no
    /// faults, shipping after 2 s, no webhooks, keys kept 24 h.
    pub fn local() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            api_key: "lithic_sk_test_switchyard".to_owned(),
            faults: FaultPlan::default(),
            ship_after: Duration::from_secs(2),
            webhook: None,
            callback_faults: CallbackFaults::default(),
            key_retention: LITHIC_KEY_RETENTION,
            oracle: CardOracle::new(),
            pci_program: false,
        }
    }
}

struct Hooks {
    emitter: WebhookEmitter,
    faults: CallbackFaults,
    rng: Mutex<rand::rngs::StdRng>,
}

struct Sim {
    engine: Arc<Engine<Object>>,
    api_key: String,
    ship_after: Duration,
    hooks: Option<Hooks>,
    oracle: CardOracle,
    pci: bool,
    seq: AtomicU64,
}

/// Starts a Lithic simulator.
pub async fn spawn_lithic(cfg: LithicConfig) -> std::io::Result<SimulatorHandle> {
    let engine = Engine::with_retention(cfg.faults, cfg.key_retention, MoneyOracle::new());
    let hooks = cfg.webhook.map(|t| Hooks {
        emitter: WebhookEmitter::new(t.url, Signer::StandardWebhooks { secret: t.secret }),
        rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(cfg.callback_faults.seed)),
        faults: cfg.callback_faults,
    });
    let sim = Arc::new(Sim {
        engine: Arc::clone(&engine),
        api_key: cfg.api_key,
        ship_after: cfg.ship_after,
        hooks,
        oracle: cfg.oracle,
        pci: cfg.pci_program,
        seq: AtomicU64::new(0),
    });
    let api = Router::new()
        .route("/v1/cards", post(create_card).get(list_cards))
        .route("/v1/cards/{token}", get(get_card).patch(patch_card))
        .route("/v1/cards/{token}/reissue", post(reissue))
        .route("/v1/cards/{token}/provision", post(extra::provision))
        .route("/v1/disputes", post(extra::create_dispute))
        .route("/v1/disputes/{token}", get(extra::get_dispute))
        .route("/v1/disputes/{token}/evidences", post(extra::evidence))
        .route("/_sim/disputes/{token}", post(extra::move_dispute))
        .with_state(sim);
    crate::server::spawn(cfg.bind, api, engine, "lithic").await
}

fn error(e: &ApiError) -> Response {
    json_reply(e.status, e.body(), &[])
}

fn saved_error(e: &ApiError) -> Saved {
    Saved { status: e.status, body: e.body() }
}

fn fault_reply(fault: Fault) -> Response {
    match fault {
        Fault::ServerError { unavailable: true } => error(&ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "Service temporarily unavailable.")),
        Fault::ServerError { unavailable: false } => error(&ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error.")),
        Fault::RateLimited { secs } => {
            let e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "Rate limited, too many requests per second.");
            json_reply(e.status, e.body(), &[(header::RETRY_AFTER, HeaderValue::from(secs))])
        }
    }
}

/// Auth and the key's shape, before anything is admitted.
async fn gate<'h>(sim: &Sim, headers: &'h HeaderMap) -> Result<Option<&'h str>, Response> {
    if header_str(headers, "authorization") != Some(sim.api_key.as_str()) {
        pause(sim.engine.reject(true)).await;
        return Err(error(&ApiError::new(StatusCode::UNAUTHORIZED, "Please provide API key in Authorization header.")));
    }
    let key = header_str(headers, "idempotency-key");
    if key.is_some_and(|k| !wire::is_uuid(k)) {
        pause(sim.engine.reject(false)).await;
        return Err(error(&ApiError::bad("Idempotency-Key must be a UUID.")));
    }
    Ok(key)
}

async fn refuse(sim: &Sim, e: ApiError) -> Response {
    pause(sim.engine.reject(false)).await;
    error(&e)
}

/// Runs a mutating request through the key: replays, conflicts and faults
/// are answered here; `run` executes and commits through the ticket.
async fn idempotent(sim: &Sim, key: Option<&str>, fp: u64, run: impl FnOnce(Ticket<Object>) -> Saved) -> Response {
    match sim.engine.admit(key, fp) {
        Admit::Fault { latency, fault } => {
            pause(latency).await;
            fault_reply(fault)
        }
        Admit::Replay { latency, reply } => {
            pause(latency).await;
            json_reply(reply.status, reply.body, &[(HeaderName::from_static("idempotent-replayed"), HeaderValue::from_static("true"))])
        }
        Admit::Mismatch { latency } => {
            pause(latency).await;
            error(&ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "Idempotency-Key was already used with a different request."))
        }
        Admit::InFlight { latency } => {
            pause(latency).await;
            error(&ApiError::new(StatusCode::CONFLICT, "A request with this Idempotency-Key is currently in progress."))
        }
        Admit::Proceed { latency, hang, ticket } => {
            let Some(saved) = crate::util::accept(latency, hang, move || run(ticket)).await else { return error(&ApiError::bad("not executed")) };
            json_reply(saved.status, saved.body, &[])
        }
    }
}

async fn create_card(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    let key = match gate(&sim, &headers).await {
        Ok(k) => k,
        Err(r) => return r,
    };
    const FIELDS: &[&str] = &[
        "account_token", "card_program_token", "bulk_order_token", "carrier", "digital_card_art_token", "exp_month", "exp_year",
        "memo", "pin", "product_id", "replacement_for", "replacement_substatus", "replacement_comment",
        "replacement_account_token", "shipping_address", "shipping_method", "spend_limit", "spend_limit_duration", "state", "type",
    ];
    let checked = wire::object(&body, FIELDS).and_then(|map| {
        let kind = wire::one_of(&map, "type", wire::CARD_TYPES)?.ok_or_else(|| ApiError::bad("type is required"))?.to_owned();
        let state = wire::one_of(&map, "state", &["OPEN", "PAUSED"])?.unwrap_or("OPEN").to_owned();
        wire::one_of(&map, "replacement_substatus", wire::SUBSTATUSES)?;
        if kind == "PHYSICAL" {
            wire::check_shipping(&map)?;
        }
        if wire::string(&map, "pin")?.is_some_and(|p| !wire::is_base64(p)) {
            return Err(ApiError::bad("pin must be a base64 encrypted PIN block"));
        }
        let replacement_for = wire::string(&map, "replacement_for")?.map(str::to_owned);
        if let Some(old) = &replacement_for {
            if !matches!(sim.engine.record(old), Some(Object::Card(_))) {
                return Err(ApiError::bad("replacement_for: card not found"));
            }
        }
        let memo = wire::string(&map, "memo")?.map(str::to_owned);
        let product_id = wire::string(&map, "product_id")?.map(str::to_owned);
        let pin = map.contains_key("pin");
        Ok((kind, state, memo, product_id, replacement_for, pin, Value::Object(map).to_string()))
    });
    let (kind, state, memo, product_id, replacement_for, pin_set, canonical) = match checked {
        Ok(v) => v,
        Err(e) => return refuse(&sim, e).await,
    };
    let fp = fingerprint(&("POST /v1/cards", &canonical));
    let s = Arc::clone(&sim);
    idempotent(&sim, key, fp, move |ticket| {
        let declined = [memo.as_deref(), product_id.as_deref()].into_iter().flatten().any(|v| v.contains(MAGIC_DECLINE));
        if declined {
            let saved = saved_error(&ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "Card program declined issuance of this card."));
            ticket.commit(None, None, &saved);
            return saved;
        }
        let seq = s.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let pan = wire::pan(seq);
        let created_ms = now_ms();
        let card = Card {
            token: uuid::Uuid::new_v4().to_string(),
            state: if kind == "PHYSICAL" { "PENDING_FULFILLMENT".to_owned() } else { state },
            substatus: None,
            memo,
            product_id,
            replacement_for,
            last_four: pan[12..].to_owned(),
            pan,
            exp_month: "12".to_owned(),
            exp_year: crate::util::iso8601(created_ms)[..4].parse::<u32>().map(|y| (y + 5).to_string()).unwrap_or_else(|_| "2031".into()),
            pin_set,
            created_ms,
            seq,
            kind,
        };
        let saved = Saved { status: StatusCode::OK, body: to_bytes(&card.render(s.pci)) };
        s.oracle.record(IssuedCard {
            processor: "lithic".to_owned(),
            card_id: card.memo.clone().filter(|m| !m.is_empty()),
            token: card.token.clone(),
            idempotency_key: Some(ticket.key().to_owned()).filter(|k| !k.is_empty()),
            form: card.kind.clone(),
            last_four: card.last_four.clone(),
        });
        let card = Arc::new(card);
        ticket.commit(Some((card.token.clone(), Object::Card(Arc::clone(&card)))), None, &saved);
        s.emit(vec![json!({"event_type": "card.created", "card_token": card.token, "replacement_for": card.replacement_for})]);
        if card.kind == "PHYSICAL" {
            schedule_shipping(&s, &card.token);
        }
        saved
    })
    .await
}

/// Ships a physical card after `ship_after` (and returns it for the magic product).
fn schedule_shipping(sim: &Arc<Sim>, token: &str) {
    let (sim, token) = (Arc::clone(sim), token.to_owned());
    tokio::spawn(async move {
        tokio::time::sleep(sim.ship_after).await;
        let Some(card) = sim.card(&token) else { return };
        if card.state != "PENDING_FULFILLMENT" {
            return;
        }
        sim.store(Card { state: "PENDING_ACTIVATION".into(), ..(*card).clone() });
        sim.emit(vec![json!({"event_type": "card.shipped", "card_token": token, "bulk_order_token": null,
                             "shipping_method": "USPS with tracking", "tracking_number": format!("1Z{}", crate::util::random_id(16))})]);
        if card.product_id.as_deref() != Some(MAGIC_RETURNED) {
            return;
        }
        tokio::time::sleep(sim.ship_after).await;
        let Some(now) = sim.card(&token) else { return };
        if now.state == "CLOSED" {
            return;
        }
        sim.store(Card { state: "CLOSED".into(), substatus: Some("UNDELIVERABLE".into()), ..(*now).clone() });
        sim.emit(vec![json!({"event_type": "card.updated", "card_token": token, "state": "CLOSED",
                             "previous_fields": {"state": now.state}})]);
    });
}

impl Sim {
    fn card(&self, token: &str) -> Option<Arc<Card>> {
        match self.engine.record(token) {
            Some(Object::Card(c)) => Some(c),
            _ => None,
        }
    }

    fn store(&self, card: Card) {
        self.engine.seed(card.token.clone(), Object::Card(Arc::new(card)));
    }

    /// Sends `events` as Standard Webhooks, with the configured faults:
    /// `duplicate_ratio` sends an event twice (same `webhook-id`),
    /// `max_delay_ms` delays each by up to that, and `reorder_ratio` holds a
    /// `*.created` event back by twice `ship_after`, so the card's later
    /// events (`card.shipped`, `card.updated`) overtake it.
    fn emit(&self, events: Vec<Value>) {
        let Some(h) = &self.hooks else { return };
        let mut plan: Vec<(u64, Callback)> = Vec::new();
        {
            let mut rng = h.rng.lock().unwrap_or_else(|p| p.into_inner());
            for (i, e) in events.into_iter().enumerate() {
                let mut delay = i as u64 * 10 + if h.faults.max_delay_ms > 0 { rng.random_range(0..=h.faults.max_delay_ms) } else { 0 };
                let created = e["event_type"].as_str().is_some_and(|t| t.ends_with(".created"));
                if created && h.faults.reorder_ratio > 0.0 && rng.random_bool(h.faults.reorder_ratio.clamp(0.0, 1.0)) {
                    delay += u64::try_from(self.ship_after.as_millis()).unwrap_or(u64::MAX / 4) * 2 + 100;
                }
                let cb = Callback { id: format!("msg_{}", uuid::Uuid::new_v4().simple()), body: serde_json::to_vec(&e).unwrap_or_default() };
                if h.faults.duplicate_ratio > 0.0 && rng.random_bool(h.faults.duplicate_ratio.clamp(0.0, 1.0)) {
                    plan.push((delay + 50, cb.clone()));
                }
                plan.push((delay, cb));
            }
        }
        for (delay, cb) in plan {
            let emitter = h.emitter.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                emitter.deliver(&cb).await;
            });
        }
    }

    /// Emits a card.updated when the state changed.
    fn state_changed(&self, before: &Card, after: &Card) {
        if before.state != after.state {
            self.emit(vec![json!({"event_type": "card.updated", "card_token": after.token, "state": after.state,
                                  "previous_fields": {"state": before.state}})]);
        }
    }
}

#[derive(serde::Deserialize)]
struct ListQuery {
    memo: Option<String>,
    page_size: Option<usize>,
    starting_after: Option<String>,
}

async fn list_cards(State(sim): State<Arc<Sim>>, headers: HeaderMap, Query(q): Query<ListQuery>) -> Response {
    if let Err(r) = gate(&sim, &headers).await {
        return r;
    }
    let read = sim.engine.scan(|o| match o {
        Object::Card(c) if q.memo.as_ref().is_none_or(|m| c.memo.as_ref() == Some(m)) => Some(Arc::clone(c)),
        _ => None,
    });
    pause(read.latency).await;
    let mut cards = match read.outcome {
        Ok(c) => c,
        Err(f) => return fault_reply(f),
    };
    cards.sort_by_key(|c| std::cmp::Reverse(c.seq));
    if let Some(after) = &q.starting_after {
        if let Some(i) = cards.iter().position(|c| &c.token == after) {
            cards.drain(..=i);
        }
    }
    let size = q.page_size.unwrap_or(50).clamp(1, 100);
    let has_more = cards.len() > size;
    let data: Vec<Value> = cards.iter().take(size).map(|c| c.render(false)).collect();
    json_reply(StatusCode::OK, to_bytes(&json!({"data": data, "has_more": has_more})), &[])
}

fn not_found(what: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("{what} not found."))
}

async fn get_card(State(sim): State<Arc<Sim>>, Path(token): Path<String>, headers: HeaderMap) -> Response {
    if let Err(r) = gate(&sim, &headers).await {
        return r;
    }
    let read = sim.engine.read(&token);
    pause(read.latency).await;
    match read.outcome {
        Err(f) => fault_reply(f),
        Ok(Some(Object::Card(c))) => json_reply(StatusCode::OK, to_bytes(&c.render(sim.pci)), &[]),
        Ok(_) => error(&not_found("Card")),
    }
}

async fn patch_card(State(sim): State<Arc<Sim>>, Path(token): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let key = match gate(&sim, &headers).await {
        Ok(k) => k,
        Err(r) => return r,
    };
    const FIELDS: &[&str] = &[
        "digital_card_art_token", "memo", "network_program_token", "pin", "pin_status", "spend_limit", "spend_limit_duration",
        "state", "substatus", "comment",
    ];
    let checked = wire::object(&body, FIELDS).and_then(|map| {
        let state = wire::one_of(&map, "state", &["CLOSED", "OPEN", "PAUSED"])?.map(str::to_owned);
        let substatus = wire::one_of(&map, "substatus", wire::SUBSTATUSES)?.map(str::to_owned);
        let pin = wire::string(&map, "pin")?;
        if pin.is_some_and(|p| !wire::is_base64(p)) {
            return Err(ApiError::bad("pin must be a base64 encrypted PIN block"));
        }
        let memo = wire::string(&map, "memo")?.map(str::to_owned);
        Ok((state, substatus, pin.is_some(), memo, Value::Object(map).to_string()))
    });
    let (state, substatus, pin, memo, canonical) = match checked {
        Ok(v) => v,
        Err(e) => return refuse(&sim, e).await,
    };
    if sim.card(&token).is_none() {
        return refuse(&sim, not_found("Card")).await;
    }
    let fp = fingerprint(&("PATCH /v1/cards", &token, &canonical));
    let s = Arc::clone(&sim);
    idempotent(&sim, key, fp, move |ticket| {
        let Some(before) = s.card(&token) else { return saved_error(&not_found("Card")) };
        if before.state == "CLOSED" {
            let saved = saved_error(&ApiError::bad("Card is closed and cannot be updated."));
            ticket.commit(None, None, &saved);
            return saved;
        }
        let mut after = (*before).clone();
        if let Some(st) = state {
            after.state = st;
            after.substatus = substatus;
        }
        after.pin_set |= pin;
        if let Some(m) = memo {
            after.memo = Some(m);
        }
        let saved = Saved { status: StatusCode::OK, body: to_bytes(&after.render(s.pci)) };
        s.state_changed(&before, &after);
        ticket.commit(Some((token.clone(), Object::Card(Arc::new(after)))), None, &saved);
        saved
    })
    .await
}

async fn reissue(State(sim): State<Arc<Sim>>, Path(token): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let key = match gate(&sim, &headers).await {
        Ok(k) => k,
        Err(r) => return r,
    };
    let checked = wire::object(&body, &["carrier", "product_id", "shipping_address", "shipping_method"]).and_then(|map| {
        if map.contains_key("shipping_address") {
            wire::check_shipping(&map)?;
        }
        Ok(Value::Object(map).to_string())
    });
    let canonical = match checked {
        Ok(c) => c,
        Err(e) => return refuse(&sim, e).await,
    };
    let Some(card) = sim.card(&token) else { return refuse(&sim, not_found("Card")).await };
    if card.kind != "PHYSICAL" || card.state == "CLOSED" {
        return refuse(&sim, ApiError::bad("Only open PHYSICAL cards can be reissued.")).await;
    }
    let fp = fingerprint(&("POST /v1/cards/reissue", &token, &canonical));
    let s = Arc::clone(&sim);
    idempotent(&sim, key, fp, move |ticket| {
        let after = Card { state: "PENDING_FULFILLMENT".into(), ..(*card).clone() };
        let saved = Saved { status: StatusCode::OK, body: to_bytes(&after.render(s.pci)) };
        ticket.commit(Some((token.clone(), Object::Card(Arc::new(after)))), None, &saved);
        s.emit(vec![json!({"event_type": "card.reissued", "card_token": token})]);
        schedule_shipping(&s, &token);
        saved
    })
    .await
}

#[cfg(test)]
mod tests;
