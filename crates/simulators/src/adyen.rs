//! Adyen Transfers (BTL v4) simulator: `POST /btl/v4/transfers`,
//! `GET /btl/v4/transfers` (see `list`), `GET /btl/v4/transfers/{id}`.
//!
//! - Auth: `X-API-Key`; missing or wrong -> 401 problem JSON (`00_401`).
//! - Body: JSON `amount {currency (uppercase), value}`, `balanceAccountId`
//!   (must equal the configured one, else 422 `30_011`), `category` (`bank`),
//!   `counterparty.bankAccount {accountHolder.fullName,
//!   accountIdentification {type: "iban", iban}}` (required: the spec
//!   requires `counterparty`, `BankAccountV3` requires `accountHolder` and
//!   `accountIdentification`, `fullName` is required for category bank),
//!   `priority` (regular|instant|fast|wire|crossBorder|internal; the spec
//!   requires it for category bank), `reference` (<= 80; generated if
//!   absent), `referenceForBeneficiary`, `description` (<= 140). Invalid
//!   fields -> 422 `30_002` with every offending field in
//!   `invalidFields [{name, value, message}]`; malformed JSON -> 400 `00_400`.
//! - Beneficiary: the IBAN and `fullName` of the counterparty, recorded on
//!   every ledger/oracle entry; oracle `payout_id` = the `reference` exactly
//!   as sent (`None` if the request had none, even though Adyen generates one).
//! - Errors: problem JSON `{type, title, status, detail, errorCode,
//!   invalidFields?, requestId}`.
//! - Reply: 200 with the transfer resource; `status` `authorised` (reason
//!   `approved`) until `settle_after`, then `booked`.
//! - Idempotency (`Idempotency-Key`, <= 64 chars, echoed back on replies):
//!   the first reply is replayed byte for byte; a different body with the
//!   same key -> 422 `704`; the same key while the first is in flight ->
//!   409 `704` with `Transient-Error: true`. Keys are forgotten
//!   `key_retention` after commit (default 31 days: Adyen documents keys as
//!   "valid for a minimum period of 31 days after first submission (but may
//!   be retained for longer)"), so a later retry executes again.
//!
//! Magic values: `40402` -> `refused`, reason `notEnoughBalance`, nothing
//! executed (no ledger entry; the refused transfer is still retrievable and
//! replayable); `40422` -> executed, `authorised`, then `returned` with
//! reason `counterpartyAccountClosed` after `settle_after`.
//!
//! Confirmed against Adyen/adyen-openapi `TransferService-v4.json`: the
//! request and resource field names, which are required, the list query
//! parameters and the `{data, _links}` list shape; the 64-character key
//! limit and 31-day minimum key validity against Adyen's idempotency page.
//!
//! UNCONFIRMED: every `errorCode` value above except the shape; the
//! idempotency-mismatch and in-flight statuses (Adyen documents replays
//! only); 200 vs 202 on create; a refusal answered as a 200 resource with
//! `status: refused` rather than a 422; `Transient-Error` on 409;
//! 429/500/503 bodies (`00_429`, `00_500`, `00_503`).

mod list;
mod wire;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod transfer_tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use crate::engine::{Admit, Engine, Saved, Ticket};
use crate::faults::Fault;
use crate::util::{header_str, iso8601, now_ms, pause, random_id, to_bytes};
use crate::webhook::{Scheme, Webhooks};
use crate::{ExecutedPayout, FaultPlan, MoneyOracle, SimulatorHandle, WebhookTarget};
use wire::{Problem, Transfer};

/// Configuration of an Adyen Transfers simulator.
#[derive(Clone, Debug)]
pub struct AdyenConfig {
    /// Listen address; port 0 picks an ephemeral port.
    pub bind: SocketAddr,
    /// The only `X-API-Key` accepted.
    pub api_key: String,
    /// The only source balance account; others are refused with 422.
    pub balance_account_id: String,
    /// Faults from the start; change later with `set_faults` or `PUT /_sim/faults`.
    pub faults: FaultPlan,
    /// Time from `authorised` to `booked` (or `returned`).
    pub settle_after: Duration,
    /// Where to POST `balancePlatform.transfer.created` / `.updated`;
    /// `secret` is the hex HMAC key.
    pub webhook: Option<WebhookTarget>,
    /// How long an idempotency key answers replays; after that the same
    /// key executes again, as at Adyen.
    pub key_retention: Duration,
    /// Receives every transfer executed; share one clone between simulators
    /// to count a payout id's movements across vendors.
    pub oracle: MoneyOracle,
}

/// Adyen documents keys as valid for "a minimum period of 31 days".
pub const ADYEN_KEY_RETENTION: Duration = Duration::from_secs(31 * 24 * 60 * 60);

impl AdyenConfig {
    /// 127.0.0.1 on an ephemeral port, key `adyen_test_switchyard`, balance
    /// account `BA00000000000000000000001`, no faults, settling after 2 s,
    /// keys kept 31 days, a fresh oracle.
    pub fn local() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            api_key: "adyen_test_switchyard".to_owned(),
            balance_account_id: "BA00000000000000000000001".to_owned(),
            faults: FaultPlan::default(),
            settle_after: Duration::from_secs(2),
            webhook: None,
            key_retention: ADYEN_KEY_RETENTION,
            oracle: MoneyOracle::new(),
        }
    }
}

struct Sim {
    engine: Arc<Engine<Transfer>>,
    api_key: String,
    balance_account_id: String,
    settle_after: Duration,
    webhooks: Option<Webhooks>,
}

/// Starts an Adyen Transfers simulator.
pub async fn spawn_adyen(cfg: AdyenConfig) -> std::io::Result<SimulatorHandle> {
    let engine = Engine::with_retention(cfg.faults, cfg.key_retention, cfg.oracle);
    let sim = Arc::new(Sim {
        engine: Arc::clone(&engine),
        api_key: cfg.api_key,
        balance_account_id: cfg.balance_account_id,
        settle_after: cfg.settle_after,
        webhooks: cfg.webhook.map(|t| Webhooks::new(t, Scheme::Adyen)),
    });
    let api = Router::new()
        .route("/btl/v4/transfers", post(create).get(list::list))
        .route("/btl/v4/transfers/{id}", get(retrieve))
        .with_state(sim);
    crate::server::spawn(cfg.bind, api, engine, "adyen").await
}

/// Every Adyen API reply carries a `pspReference` header identifying the
/// request, which clients log and quote to Adyen support; the worker's audit
/// trail records it as the vendor's request id.
fn json_reply(status: StatusCode, body: Bytes, extra: &[(HeaderName, HeaderValue)]) -> Response {
    let mut reply = crate::util::json_reply(status, body, extra);
    if let Ok(id) = HeaderValue::from_str(&random_id(16)) {
        reply.headers_mut().insert(HeaderName::from_static("pspreference"), id);
    }
    reply
}

fn problem(p: &Problem, extra: &[(HeaderName, HeaderValue)]) -> Response {
    json_reply(p.status, p.body(), extra)
}

fn authorized(sim: &Sim, headers: &HeaderMap) -> bool {
    header_str(headers, "x-api-key") == Some(sim.api_key.as_str())
}

async fn unauthorized(sim: &Sim) -> Response {
    pause(sim.engine.reject(true)).await;
    let p = Problem::new(
        StatusCode::UNAUTHORIZED,
        "security/unauthorized",
        "Unauthorized",
        "00_401",
        "Not authorized to access this service.",
    );
    problem(&p, &[])
}

async fn rejected(sim: &Sim, p: &Problem) -> Response {
    pause(sim.engine.reject(false)).await;
    problem(p, &[])
}

fn fault_reply(fault: Fault) -> Response {
    match fault {
        Fault::ServerError { unavailable: false } => problem(
            &Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "general/internal", "Internal Server Error", "00_500", "An internal error occurred."),
            &[],
        ),
        Fault::ServerError { unavailable: true } => problem(
            &Problem::new(StatusCode::SERVICE_UNAVAILABLE, "general/unavailable", "Service Unavailable", "00_503", "Service temporarily unavailable."),
            &[],
        ),
        Fault::RateLimited { secs } => problem(
            &Problem::new(StatusCode::TOO_MANY_REQUESTS, "general/rate-limited", "Too Many Requests", "00_429", "Rate limit exceeded."),
            &[(header::RETRY_AFTER, HeaderValue::from(secs))],
        ),
    }
}

async fn create(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&sim, &headers) {
        return unauthorized(&sim).await;
    }
    let key = header_str(&headers, "idempotency-key");
    if key.is_some_and(|k| k.is_empty() || k.len() > 64) {
        let p = Problem::new(StatusCode::BAD_REQUEST, "general/bad-request", "Bad request", "00_400", "Idempotency-Key must be 1 to 64 characters.");
        return rejected(&sim, &p).await;
    }
    let Ok(json) = serde_json::from_slice::<Value>(&body) else {
        let p = Problem::new(StatusCode::BAD_REQUEST, "general/bad-request", "Bad request", "00_400", "The request body is not valid JSON.");
        return rejected(&sim, &p).await;
    };
    let req = match wire::parse(&json) {
        Ok(r) => r,
        Err(p) => return rejected(&sim, &p).await,
    };
    if req.balance_account_id != sim.balance_account_id {
        let p = Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "Invalid balance account",
            "30_011",
            format!("Balance account {} not found.", req.balance_account_id),
        );
        return rejected(&sim, &p).await;
    }
    let echo: Vec<(HeaderName, HeaderValue)> = key
        .and_then(|k| HeaderValue::from_str(k).ok())
        .map(|v| (HeaderName::from_static("idempotency-key"), v))
        .into_iter()
        .collect();
    match sim.engine.admit(key, crate::checks::canonical_hash(&json)) {
        Admit::Fault { latency, fault } => {
            pause(latency).await;
            fault_reply(fault)
        }
        Admit::Replay { latency, reply } => {
            pause(latency).await;
            json_reply(reply.status, reply.body, &echo)
        }
        Admit::Mismatch { latency } => {
            pause(latency).await;
            let p = Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "general/idempotency",
                "Idempotency key conflict",
                "704",
                "The idempotency key was already used with a different request.",
            );
            problem(&p, &echo)
        }
        Admit::InFlight { latency } => {
            pause(latency).await;
            let p = Problem::new(
                StatusCode::CONFLICT,
                "general/idempotency",
                "Request in progress",
                "704",
                "Request already processed or in progress.",
            );
            let mut extra = echo;
            extra.push((HeaderName::from_static("transient-error"), HeaderValue::from_static("true")));
            problem(&p, &extra)
        }
        Admit::Proceed { latency, hang, ticket } => {
            let Some(saved) = crate::util::accept(latency, hang, || execute(&sim, req, ticket)).await else {
                return problem(&Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "general/internal", "Not executed", "00_500", "not executed"), &echo);
            };
            json_reply(saved.status, saved.body, &echo)
        }
    }
}

/// Books (or refuses) the transfer and commits it under the key.
fn execute(sim: &Sim, req: wire::TransferReq, ticket: Ticket<Transfer>) -> Saved {
    let created_ms = now_ms();
    let refused = req.value == wire::MAGIC_NOT_ENOUGH_BALANCE;
    let id = random_id(16);
    let transfer = Transfer {
        reference: req.reference.clone().unwrap_or_else(|| id.clone()),
        id,
        req: Arc::new(req),
        refused,
        created_ms,
        created_at: Instant::now(),
    };
    let now = wire::stage(&transfer, Duration::ZERO, sim.settle_after);
    let value = transfer.render(now);
    let saved = Saved { status: StatusCode::OK, body: to_bytes(&value) };
    let executed = (!refused).then(|| ExecutedPayout {
        vendor: "adyen".to_owned(),
        payout_id: transfer.req.reference.clone(),
        beneficiary_iban: Some(transfer.req.beneficiary_iban.clone()),
        beneficiary_name: Some(transfer.req.beneficiary_name.clone()),
        vendor_id: transfer.id.clone(),
        idempotency_key: ticket.key().to_owned(),
        amount_minor: transfer.req.value,
        currency: transfer.req.currency.clone(),
        reference: transfer.reference.clone(),
        executed_at_ms: created_ms,
    });
    if let Some(w) = &sim.webhooks {
        w.send(event("balancePlatform.transfer.created", value), Duration::ZERO);
        if !refused {
            let end = transfer.render(wire::stage(&transfer, sim.settle_after, sim.settle_after));
            w.send(event("balancePlatform.transfer.updated", end), sim.settle_after);
        }
    }
    ticket.commit(Some((transfer.id.clone(), transfer)), executed, &saved);
    saved
}

fn event(kind: &str, mut data: Value) -> Value {
    data["balancePlatform"] = Value::from(wire::BALANCE_PLATFORM);
    json!({ "data": data, "environment": "test", "timestamp": iso8601(now_ms()), "type": kind })
}

async fn retrieve(State(sim): State<Arc<Sim>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if !authorized(&sim, &headers) {
        return unauthorized(&sim).await;
    }
    let read = sim.engine.read(&id);
    pause(read.latency).await;
    match read.outcome {
        Err(fault) => fault_reply(fault),
        Ok(None) => problem(
            &Problem::new(StatusCode::NOT_FOUND, "general/entity-not-found", "Not found", "30_404", format!("Transfer {id} not found.")),
            &[],
        ),
        Ok(Some(t)) => {
            let at = wire::stage(&t, t.created_at.elapsed(), sim.settle_after);
            json_reply(StatusCode::OK, to_bytes(&t.render(at)), &[])
        }
    }
}
