//! Stripe Payouts simulator: `POST /v1/payouts`, `GET /v1/payouts`,
//! `GET /v1/payouts/{id}`, and Connect's
//! `POST /v1/accounts/{account}/external_accounts` (see `accounts`).
//!
//! - Auth: the secret key as HTTP Basic username (empty password) or
//!   `Authorization: Bearer sk_...`; otherwise 401 `invalid_request_error`
//!   with the key masked. `PUT /_sim/api_key` with
//!   `{"api_key": "sk_test_...", "previous_valid_ms": 0}` rolls the key as
//!   the Dashboard's *Roll key* does: the new key works at once, the old one
//!   until its chosen expiry (0: now) and then gets 401.
//! - Body: `application/x-www-form-urlencoded`: `amount` (positive integer,
//!   minor units), `currency` (ISO, stored lowercase), `method`
//!   (`standard`|`instant`), `description`, `statement_descriptor` (<= 22),
//!   `destination`, `source_type`, `metadata[key]`. Unknown parameters are
//!   refused with `param` set, as Stripe does.
//! - `Stripe-Account: acct_...` makes the request on behalf of that
//!   connected account; without it, the platform account
//!   ([`PLATFORM_ACCOUNT_ID`]) pays. Payouts, lists and retrievals only see
//!   the account's own objects.
//! - Beneficiary: `destination` must be a bank account attached to the
//!   paying account (else 400 `resource_missing`, `param: destination`) in
//!   the payout's currency. Without `destination`, Stripe pays the account's
//!   default external account for the currency: for the platform, its own
//!   bank account ([`PLATFORM_IBAN`], [`PLATFORM_ACCOUNT_HOLDER`]). The
//!   simulator records whichever account it paid as the beneficiary and
//!   renders its id as the payout's `destination`; it never pays the
//!   beneficiary our command had in mind unless the request named it. These
//!   refusals are validation: not saved under the key.
//! - Errors: `{"error":{"type","code"?,"doc_url"?,"message","param"?}}`.
//! - Idempotency (`Idempotency-Key`, <= 255 chars): the first executed reply
//!   (status + body) is replayed with `Idempotent-Replayed: true`; other
//!   parameters -> 400 `idempotency_error`; the same key while the first
//!   request is in flight -> 409 `idempotency_error`. Validation failures,
//!   401s and injected 5xx/429 happen before execution and are not saved.
//!   Keys are forgotten `key_retention` after commit (default 24 h: Stripe
//!   documents removal "after they're at least 24 hours old" and that a
//!   reused key then makes a new request), so a later retry executes again.
//! - Status: `pending` for the first half of `settle_after`, then
//!   `in_transit`, then `paid`, computed on read.
//! - Ledger `reference`: `metadata[reference]`, else `description`, else the
//!   id. Oracle `payout_id`: `metadata[switchyard_payout_id]`, as sent.
//!
//! Magic amounts: `40402` -> 400 `invalid_request_error` / `balance_insufficient`
//! (nothing executed, but the reply is saved under the key); `40422` ->
//! executed, then `failed` with `failure_code = account_closed` instead of `paid`.
//!
//! Confirmed against stripe/openapi (as generated into stripe-python) and the
//! fixtures: payout create/list parameters, the payout, bank account and
//! list object fields, the external-account create fields.
//!
//! UNCONFIRMED: the 409 in-flight body (Stripe documents the status, not the
//! message); 429 uses `invalid_request_error` + `code: rate_limit`; injected
//! 500/503 use `api_error`; the default `source_type` `card`; `arrival_date`
//! = created + `settle_after`; the wording of the destination refusals;
//! whether keys are scoped per connected account (here the account is part
//! of the request fingerprint, so reusing a key for another account is a 400
//! `idempotency_error`, as is reusing it on another endpoint).

mod accounts;
#[cfg(test)]
mod connect_tests;
mod list;
mod wire;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use base64::Engine as _;
use serde_json::json;

pub use accounts::{PLATFORM_ACCOUNT_HOLDER, PLATFORM_ACCOUNT_ID, PLATFORM_BANK_ACCOUNT_ID, PLATFORM_IBAN};

use crate::engine::{Admit, Engine, Saved, Ticket};
use crate::faults::Fault;
use crate::util::{fingerprint, header_str, json_reply, now_ms, pause, random_id, to_bytes};
use crate::webhook::{Scheme, Webhooks};
use crate::{ExecutedPayout, FaultPlan, MoneyOracle, SimulatorHandle, WebhookTarget};
use accounts::BankAccount;
use wire::{ApiError, Object, Payout, Stage};

/// Configuration of a Stripe simulator.
#[derive(Clone, Debug)]
pub struct StripeConfig {
    /// Listen address; port 0 picks an ephemeral port.
    pub bind: SocketAddr,
    /// The only secret key accepted, e.g. `sk_test_switchyard`.
    pub api_key: String,
    /// Faults from the start; change later with `set_faults` or `PUT /_sim/faults`.
    pub faults: FaultPlan,
    /// Time from creation to `paid` (or `failed`).
    pub settle_after: Duration,
    /// Where to POST `payout.created` and `payout.paid`/`payout.failed`.
    pub webhook: Option<WebhookTarget>,
    /// How long an idempotency key answers replays; after that the same
    /// key executes again, as at Stripe.
    pub key_retention: Duration,
    /// Receives every payout executed; share one clone between simulators
    /// to count a payout id's movements across vendors.
    pub oracle: MoneyOracle,
}

/// Stripe documents idempotency keys as pruned once "at least 24 hours old".
pub const STRIPE_KEY_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

impl StripeConfig {
    /// 127.0.0.1 on an ephemeral port, key `sk_test_switchyard`, no faults,
    /// settling after 2 s, no webhooks, keys kept 24 h, a fresh oracle.
    pub fn local() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            api_key: "sk_test_switchyard".to_owned(),
            faults: FaultPlan::default(),
            settle_after: Duration::from_secs(2),
            webhook: None,
            key_retention: STRIPE_KEY_RETENTION,
            oracle: MoneyOracle::new(),
        }
    }
}

struct Sim {
    engine: Arc<Engine<Object>>,
    keys: std::sync::RwLock<ApiKeys>,
    settle_after: Duration,
    webhooks: Option<Webhooks>,
    /// Creation order of payouts and bank accounts.
    seq: AtomicU64,
    /// What a platform payout without `destination` pays.
    platform_bank: Arc<BankAccount>,
}

/// The accepted secret keys: the current one and, after a roll, the
/// previous one until its expiry.
struct ApiKeys {
    current: String,
    previous: Option<(String, Instant)>,
}

impl ApiKeys {
    fn accepts(&self, key: &str) -> bool {
        key == self.current || self.previous.as_ref().is_some_and(|(old, until)| key == old && Instant::now() < *until)
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RollKey {
    api_key: String,
    #[serde(default)]
    previous_valid_ms: u64,
}

/// `PUT /_sim/api_key`: the vendor-side half of a key rotation.
async fn roll_key(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let Ok(roll) = serde_json::from_slice::<RollKey>(&body) else {
        return reply(StatusCode::BAD_REQUEST, Bytes::from_static(b"{}"), &[]);
    };
    if roll.api_key.is_empty() {
        return reply(StatusCode::BAD_REQUEST, Bytes::from_static(b"{}"), &[]);
    }
    let mut keys = sim.keys.write().unwrap_or_else(|e| e.into_inner());
    let old = std::mem::replace(&mut keys.current, roll.api_key);
    keys.previous = Some((old, Instant::now() + Duration::from_millis(roll.previous_valid_ms)));
    reply(StatusCode::OK, Bytes::from_static(b"{}"), &[])
}

impl Sim {
    fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// Starts a Stripe Payouts simulator.
pub async fn spawn_stripe(cfg: StripeConfig) -> std::io::Result<SimulatorHandle> {
    let engine = Engine::with_retention(cfg.faults, cfg.key_retention, cfg.oracle);
    let platform_bank = Arc::new(BankAccount::platform());
    engine.seed(PLATFORM_BANK_ACCOUNT_ID.to_owned(), Object::BankAccount(Arc::clone(&platform_bank)));
    let sim = Arc::new(Sim {
        engine: Arc::clone(&engine),
        keys: std::sync::RwLock::new(ApiKeys { current: cfg.api_key, previous: None }),
        settle_after: cfg.settle_after,
        webhooks: cfg.webhook.map(|t| Webhooks::new(t, Scheme::Stripe)),
        seq: AtomicU64::new(0),
        platform_bank,
    });
    let api = Router::new()
        .route("/v1/payouts", post(create).get(list::list))
        .route("/v1/payouts/{id}", get(retrieve))
        .route("/v1/accounts/{account}/external_accounts", post(accounts::create))
        .route("/_sim/api_key", axum::routing::put(roll_key))
        .with_state(sim);
    crate::server::spawn(cfg.bind, api, engine, "stripe").await
}

fn reply(status: StatusCode, body: Bytes, extra: &[(HeaderName, HeaderValue)]) -> Response {
    let req = HeaderValue::from_str(&format!("req_{}", random_id(14))).unwrap_or(HeaderValue::from_static("req_sim"));
    let mut all = Vec::with_capacity(extra.len() + 1);
    all.push((HeaderName::from_static("request-id"), req));
    all.extend_from_slice(extra);
    json_reply(status, body, &all)
}

fn error(e: &ApiError) -> Response {
    reply(e.status, e.body(), &[])
}

/// Returns the presented key when it is not the configured one.
fn check_auth(sim: &Sim, headers: &HeaderMap) -> Result<(), Option<String>> {
    let presented = header_str(headers, "authorization").and_then(|v| {
        if let Some(token) = v.strip_prefix("Bearer ") {
            return Some(token.trim().to_owned());
        }
        let raw = base64::engine::general_purpose::STANDARD.decode(v.strip_prefix("Basic ")?.trim()).ok()?;
        let user_pass = String::from_utf8(raw).ok()?;
        Some(user_pass.split(':').next().unwrap_or_default().to_owned())
    });
    match presented {
        Some(k) if sim.keys.read().unwrap_or_else(|e| e.into_inner()).accepts(&k) => Ok(()),
        other => Err(other.filter(|k| !k.is_empty())),
    }
}

/// `sk_test_****abcd`: never echo a full key, even a wrong one.
fn masked(key: &str) -> String {
    let prefix = ["sk_test_", "sk_live_", "rk_test_", "rk_live_"].into_iter().find(|p| key.starts_with(p)).unwrap_or("");
    let tail: String = if key.len() >= prefix.len() + 8 { key[key.len() - 4..].to_owned() } else { String::new() };
    format!("{prefix}****{tail}")
}

async fn unauthorized(sim: &Sim, presented: Option<String>) -> Response {
    pause(sim.engine.reject(true)).await;
    let message = match presented {
        Some(k) => format!("Invalid API Key provided: {}", masked(&k)),
        None => "You did not provide an API key. You need to provide your API key in the Authorization header, \
                 using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY')."
            .to_owned(),
    };
    let e = ApiError { status: StatusCode::UNAUTHORIZED, kind: "invalid_request_error", code: None, message, param: None };
    error(&e)
}

fn fault_reply(fault: Fault) -> Response {
    match fault {
        Fault::ServerError { unavailable } => {
            let (status, message) = if unavailable {
                (StatusCode::SERVICE_UNAVAILABLE, "Stripe is temporarily unavailable. Please retry.")
            } else {
                (StatusCode::INTERNAL_SERVER_ERROR, "An unknown error occurred. Please retry.")
            };
            error(&ApiError { status, kind: "api_error", code: None, message: message.to_owned(), param: None })
        }
        Fault::RateLimited { secs } => {
            let e = ApiError {
                status: StatusCode::TOO_MANY_REQUESTS,
                kind: "invalid_request_error",
                code: Some("rate_limit"),
                message: "Too many requests hit the API too quickly. We recommend an exponential backoff of your requests."
                    .to_owned(),
                param: None,
            };
            reply(e.status, e.body(), &[(header::RETRY_AFTER, HeaderValue::from(secs))])
        }
    }
}

/// The `Idempotency-Key` header, if any, checked for Stripe's length limit.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let key = header_str(headers, "idempotency-key");
    if key.is_some_and(|k| k.len() > 255 || k.is_empty()) {
        return Err(ApiError::invalid("Idempotency-Key", "Idempotency-Key must be 1 to 255 characters long."));
    }
    Ok(key)
}

/// The account a request acts for: `Stripe-Account`, else the platform.
fn connected_account(headers: &HeaderMap) -> Result<String, ApiError> {
    match header_str(headers, "stripe-account") {
        None => Ok(PLATFORM_ACCOUNT_ID.to_owned()),
        Some(id) => accounts::check_account(id).map(|()| id.to_owned()),
    }
}

/// Runs a mutating request through the key: replays, conflicts and faults
/// are answered here; `run` executes and commits through the ticket.
async fn idempotent(sim: &Sim, key: Option<&str>, fp: u64, run: impl FnOnce(Ticket<Object>) -> Saved) -> Response {
    let echo: Vec<(HeaderName, HeaderValue)> = key
        .and_then(|k| HeaderValue::from_str(k).ok())
        .map(|v| (HeaderName::from_static("idempotency-key"), v))
        .into_iter()
        .collect();
    match sim.engine.admit(key, fp) {
        Admit::Fault { latency, fault } => {
            pause(latency).await;
            fault_reply(fault)
        }
        Admit::Replay { latency, reply: saved } => {
            pause(latency).await;
            let mut extra = echo;
            extra.push((HeaderName::from_static("idempotent-replayed"), HeaderValue::from_static("true")));
            reply(saved.status, saved.body, &extra)
        }
        Admit::Mismatch { latency } => {
            pause(latency).await;
            let k = key.unwrap_or_default();
            error(&ApiError {
                status: StatusCode::BAD_REQUEST,
                kind: "idempotency_error",
                code: None,
                message: format!(
                    "Keys for idempotent requests can only be used with the same parameters they were first used with. \
                     Try using a key other than '{k}' if you meant to execute a different request."
                ),
                param: None,
            })
        }
        Admit::InFlight { latency } => {
            pause(latency).await;
            error(&ApiError {
                status: StatusCode::CONFLICT,
                kind: "idempotency_error",
                code: None,
                message: "There is currently another in-progress request using this Idempotency-Key. \
                          Please try again later."
                    .to_owned(),
                param: None,
            })
        }
        Admit::Proceed { latency, hang, ticket } => {
            // A hang is a slow vendor: the payout is already executed.
            let Some(saved) = crate::util::accept(latency, hang, move || run(ticket)).await else { return error(&ApiError::invalid("request", "not executed")) };
            reply(saved.status, saved.body, &echo)
        }
    }
}

async fn create(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(presented) = check_auth(&sim, &headers) {
        return unauthorized(&sim, presented).await;
    }
    let checked = idempotency_key(&headers).and_then(|key| {
        let (params, canonical) = wire::parse(&body)?;
        let account = connected_account(&headers)?;
        let payee = accounts::payee(&sim, &account, params.destination.as_deref(), &params.currency)?;
        Ok((key, params, canonical, account, payee))
    });
    let (key, params, canonical, account, payee) = match checked {
        Ok(v) => v,
        Err(e) => {
            pause(sim.engine.reject(false)).await;
            return error(&e);
        }
    };
    let fp = fingerprint(&("POST /v1/payouts", &account, &canonical));
    idempotent(&sim, key, fp, |ticket| execute(&sim, params, account, &payee, ticket)).await
}

/// Executes (or declines) a payout and commits the outcome under the key.
fn execute(sim: &Sim, params: wire::Params, account: String, payee: &BankAccount, ticket: Ticket<Object>) -> Saved {
    if params.amount == wire::MAGIC_INSUFFICIENT {
        let e = ApiError {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            code: Some("balance_insufficient"),
            message: "You have insufficient funds in your Stripe account for this transfer.".to_owned(),
            param: None,
        };
        let saved = Saved { status: e.status, body: e.body() };
        ticket.commit(None, None, &saved);
        return saved;
    }
    let created_ms = now_ms();
    let payout = Payout {
        id: format!("po_1{}", random_id(23)),
        account,
        destination: payee.id.clone(),
        seq: sim.next_seq(),
        params: Arc::new(params),
        created_ms,
        created_at: Instant::now(),
        balance_transaction: format!("txn_1{}", random_id(23)),
    };
    let p = &payout.params;
    let reference = p
        .metadata
        .iter()
        .find(|(k, _)| k == "reference")
        .map(|(_, v)| v.clone())
        .or_else(|| p.description.clone())
        .unwrap_or_else(|| payout.id.clone());
    let executed = ExecutedPayout {
        vendor: "stripe".to_owned(),
        payout_id: p.payout_id(),
        beneficiary_iban: Some(payee.account_number.clone()),
        beneficiary_name: payee.holder_name.clone(),
        vendor_id: payout.id.clone(),
        idempotency_key: ticket.key().to_owned(),
        amount_minor: p.amount,
        currency: p.currency.to_ascii_uppercase(),
        reference,
        executed_at_ms: created_ms,
    };
    let value = payout.render(Stage::Pending, sim.settle_after);
    let saved = Saved { status: StatusCode::OK, body: to_bytes(&value) };
    if let Some(w) = &sim.webhooks {
        let key = ticket.key().to_owned();
        let on_behalf = (payout.account != PLATFORM_ACCOUNT_ID).then_some(payout.account.as_str());
        let created = serde_json::to_value(&value).unwrap_or_default();
        w.send(event("payout.created", created, &key, on_behalf, now_ms()), Duration::ZERO);
        let end = Stage::at(p.amount, sim.settle_after, sim.settle_after);
        let kind = if end == Stage::Failed { "payout.failed" } else { "payout.paid" };
        let rendered = serde_json::to_value(payout.render(end, sim.settle_after)).unwrap_or_default();
        // The event is stamped when the payout settles, as Stripe does.
        let settled_at = now_ms() + sim.settle_after.as_millis() as i64;
        w.send(event(kind, rendered, &key, on_behalf, settled_at), sim.settle_after);
    }
    ticket.commit(Some((payout.id.clone(), Object::Payout(payout))), Some(executed), &saved);
    saved
}

/// A Stripe event; Connect events name the connected `account` they are for.
fn event(kind: &str, object: serde_json::Value, idempotency_key: &str, account: Option<&str>, at_ms: i64) -> serde_json::Value {
    let mut e = json!({
        "id": format!("evt_1{}", random_id(23)),
        "object": "event",
        "api_version": "2024-06-20",
        "created": at_ms / 1000,
        "data": { "object": object },
        "livemode": false,
        "pending_webhooks": 1,
        "request": { "id": null, "idempotency_key": (!idempotency_key.is_empty()).then_some(idempotency_key) },
        "type": kind,
    });
    if let Some(a) = account {
        e["account"] = serde_json::Value::from(a);
    }
    e
}

async fn retrieve(State(sim): State<Arc<Sim>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Err(presented) = check_auth(&sim, &headers) {
        return unauthorized(&sim, presented).await;
    }
    let account = match connected_account(&headers) {
        Ok(a) => a,
        Err(e) => {
            pause(sim.engine.reject(false)).await;
            return error(&e);
        }
    };
    let read = sim.engine.read(&id);
    pause(read.latency).await;
    match read.outcome {
        Err(fault) => fault_reply(fault),
        // Another account's payout is as invisible as a missing one.
        Ok(None | Some(Object::BankAccount(_))) => error(&ApiError {
            status: StatusCode::NOT_FOUND,
            kind: "invalid_request_error",
            code: Some("resource_missing"),
            message: format!("No such payout: '{id}'"),
            param: Some("id".to_owned()),
        }),
        Ok(Some(Object::Payout(p))) if p.account != account => error(&ApiError {
            status: StatusCode::NOT_FOUND,
            kind: "invalid_request_error",
            code: Some("resource_missing"),
            message: format!("No such payout: '{id}'"),
            param: Some("id".to_owned()),
        }),
        Ok(Some(Object::Payout(p))) => {
            let stage = Stage::at(p.params.amount, p.created_at.elapsed(), sim.settle_after);
            reply(StatusCode::OK, to_bytes(&p.render(stage, sim.settle_after)), &[])
        }
    }
}
