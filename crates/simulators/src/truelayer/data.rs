//! TrueLayer's Data API v1 and the user's OAuth grant, as docs.truelayer.com
//! publishes them ("Data API basics", "Account data requests", "Data API
//! errors", the authentication server's OpenAPI):
//!
//! - `POST /connect/token` `grant_type=authorization_code` (a code from
//!   [`TrueLayerSimulator::grant_code`], single use) -> `{access_token,
//!   expires_in, token_type, refresh_token, scope}`; `grant_type=refresh_token`
//!   -> a new access token *and a new refresh token*: the old refresh token
//!   and every older access token of the grant are refused from then on
//!   (rotation). A grant the user revoked at the bank or whose consent
//!   expired (90 days in real life, [`TrueLayerSimulator::expire_consents`]
//!   here) -> 400 `{"error": "invalid_grant"}`.
//! - `GET /data/v1/accounts`, `/data/v1/accounts/{id}/balance`,
//!   `/data/v1/accounts/{id}/transactions?from=&to=` -> `{"results": [...],
//!   "status": "Succeeded"}`; errors `{"error", "error_description",
//!   "error_details"}`: 401 `unauthorized` (access token unknown, expired or
//!   superseded), 403 `access_denied` (consent revoked or expired), 404
//!   `account_not_found`, 503 `provider_error` while the bank is down
//!   ([`TrueLayerSimulator::set_bank_down`]).
//! - `DELETE /api/delete` (Bearer access token): the connection is deleted.
//!
//! The "bank" holds one set of accounts shared by every grant; the oracle
//! is [`TrueLayerSimulator::data_transaction_ids`]. Every user token ever
//! issued is kept for scans ([`TrueLayerSimulator::user_tokens_issued`]).
//!
//! UNCONFIRMED: that a rotated refresh token is refused at once (TrueLayer's
//! support notes say only the last access token is valid); the 501/503
//! codes for a bank that is down (we answer 503 `provider_error`).

use super::{count, Sim, TrueLayerSimulator};
use crate::util::{header_str, iso8601, json_reply, now_ms, random_id, to_bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{delete, get};
use axum::Router;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Default)]
pub(super) struct DataState {
    grants: HashMap<String, Grant>,
    /// Live refresh token -> grant id.
    refresh: HashMap<String, String>,
    /// Live access token -> (grant id, expiry).
    access: HashMap<String, (String, Instant)>,
    issued: Vec<String>,
    accounts: Vec<SimAccount>,
    /// The bank answers 503 to data calls.
    down: bool,
    /// The bank goes down after this many more successful data calls.
    down_after: Option<u32>,
    /// Life of a user access token (default: the config's token_ttl).
    token_ttl: Option<Duration>,
}

#[derive(Default)]
struct Grant {
    /// Revoked at the bank, or deleted through `/api/delete`.
    revoked: bool,
    expired: bool,
}

struct SimAccount {
    id: String,
    name: String,
    number: String,
    balance_minor: i64,
    transactions: Vec<SimTransaction>,
}

struct SimTransaction {
    id: String,
    date: String,
    amount_minor: i64,
    description: String,
}

pub(super) fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/data/v1/accounts", get(accounts))
        .route("/data/v1/accounts/{id}/balance", get(balance))
        .route("/data/v1/accounts/{id}/transactions", get(transactions))
        .route("/api/delete", delete(delete_connection))
}

fn oauth_error(error: &str) -> Response {
    json_reply(StatusCode::BAD_REQUEST, to_bytes(&json!({"error": error, "error_description": error})), &[])
}

fn data_error(status: StatusCode, error: &str, description: &str) -> Response {
    json_reply(status, to_bytes(&json!({"error": error, "error_description": description, "error_details": {}})), &[])
}

fn succeeded(results: Vec<Value>) -> Response {
    json_reply(StatusCode::OK, to_bytes(&json!({"results": results, "status": "Succeeded"})), &[])
}

/// `grant_type=authorization_code | refresh_token`, client already checked.
pub(super) fn user_token(sim: &Sim, form: &HashMap<String, String>) -> Response {
    let grant_type = form.get("grant_type").map(String::as_str).unwrap_or("");
    count(sim, &format!("POST /connect/token {grant_type}"));
    let mut g = sim.lock();
    let grant_id = if grant_type == "authorization_code" {
        let code = form.get("code").cloned().unwrap_or_default();
        if !g.codes.remove(&code) {
            return oauth_error("invalid_grant");
        }
        let id = random_id(16);
        g.data.grants.insert(id.clone(), Grant::default());
        id
    } else {
        let presented = form.get("refresh_token").cloned().unwrap_or_default();
        let Some(id) = g.data.refresh.get(&presented).cloned() else { return oauth_error("invalid_grant") };
        if g.data.grants.get(&id).is_none_or(|gr| gr.revoked || gr.expired) {
            return oauth_error("invalid_grant");
        }
        // Rotation: the presented refresh token and the grant's older
        // access tokens die with this answer.
        g.data.refresh.remove(&presented);
        g.data.access.retain(|_, (grant, _)| *grant != id);
        id
    };
    let ttl = g.data.token_ttl.unwrap_or(sim.cfg.token_ttl);
    let access = format!("tl-sim-{}", random_id(40));
    let refresh = format!("tl-sim-refresh-{}", random_id(40));
    g.data.access.insert(access.clone(), (grant_id.clone(), Instant::now() + ttl));
    g.data.refresh.insert(refresh.clone(), grant_id);
    g.data.issued.extend([access.clone(), refresh.clone()]);
    drop(g);
    let body = json!({
        "access_token": access,
        "expires_in": ttl.as_secs().max(1),
        "token_type": "Bearer",
        "refresh_token": refresh,
        "scope": "info accounts balance transactions offline_access",
    });
    json_reply(StatusCode::OK, to_bytes(&body), &[])
}

/// The grant behind the bearer token, or the refusal TrueLayer sends.
fn authorized(sim: &Sim, headers: &HeaderMap, data_call: bool) -> Result<String, Box<Response>> {
    let bearer = header_str(headers, "authorization").and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
    let mut g = sim.lock();
    let refused = |g: std::sync::MutexGuard<'_, super::Inner>, why: &str| {
        drop(g);
        sim.auth_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        count(sim, "401 user token");
        Err(Box::new(data_error(StatusCode::UNAUTHORIZED, "unauthorized", why)))
    };
    let Some((grant, until)) = g.data.access.get(bearer).cloned() else {
        return refused(g, "The access token is invalid or superseded.");
    };
    if until <= Instant::now() {
        return refused(g, "The access token has expired.");
    }
    if g.data.grants.get(&grant).is_none_or(|gr| gr.revoked || gr.expired) {
        return Err(Box::new(data_error(StatusCode::FORBIDDEN, "access_denied", "Access to the account is no longer valid.")));
    }
    if data_call {
        if let Some(n) = g.data.down_after.as_mut() {
            if *n == 0 {
                g.data.down = true;
                g.data.down_after = None;
            } else {
                *n -= 1;
            }
        }
        if g.data.down {
            return Err(Box::new(data_error(StatusCode::SERVICE_UNAVAILABLE, "provider_error", "The provider is currently unavailable.")));
        }
    }
    Ok(grant)
}

fn account_json(a: &SimAccount) -> Value {
    json!({
        "update_timestamp": iso8601(now_ms()),
        "account_id": a.id,
        "account_type": "TRANSACTION",
        "display_name": a.name,
        "currency": "GBP",
        "account_number": {"iban": format!("GB33MOCK00000{}", a.number), "number": a.number, "sort_code": "00-00-00", "swift_bic": "MOCKGB21"},
        "provider": {"provider_id": "ob-mock", "display_name": "Mock Bank"},
    })
}

async fn accounts(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Response {
    count(&sim, "GET /data/v1/accounts");
    if let Err(r) = authorized(&sim, &headers, true) {
        return *r;
    }
    let results = sim.lock().data.accounts.iter().map(account_json).collect();
    succeeded(results)
}

async fn balance(State(sim): State<Arc<Sim>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    count(&sim, "GET /data/v1/accounts/{id}/balance");
    if let Err(r) = authorized(&sim, &headers, true) {
        return *r;
    }
    let g = sim.lock();
    let Some(a) = g.data.accounts.iter().find(|a| a.id == id) else {
        return data_error(StatusCode::NOT_FOUND, "account_not_found", "The requested account cannot be found.");
    };
    let amount = a.balance_minor as f64 / 100.0;
    succeeded(vec![json!({"currency": "GBP", "available": amount, "current": amount, "overdraft": 0, "update_timestamp": iso8601(now_ms())})])
}

async fn transactions(State(sim): State<Arc<Sim>>, Path(id): Path<String>, Query(q): Query<HashMap<String, String>>, headers: HeaderMap) -> Response {
    count(&sim, "GET /data/v1/accounts/{id}/transactions");
    if let Err(r) = authorized(&sim, &headers, true) {
        return *r;
    }
    let day = |k: &str| q.get(k).and_then(|v| v.get(..10)).map(str::to_owned);
    let (Some(from), Some(to)) = (day("from"), day("to")) else {
        return data_error(StatusCode::BAD_REQUEST, "validation_error", "from and to are required.");
    };
    if from > to {
        return data_error(StatusCode::BAD_REQUEST, "invalid_date_range", "Invalid date range provided.");
    }
    let g = sim.lock();
    let Some(a) = g.data.accounts.iter().find(|a| a.id == id) else {
        return data_error(StatusCode::NOT_FOUND, "account_not_found", "The requested account cannot be found.");
    };
    // Newest first, as banks list them.
    let results = a
        .transactions
        .iter()
        .rev()
        .filter(|t| t.date >= from && t.date <= to)
        .map(|t| {
            json!({
                "transaction_id": t.id,
                "timestamp": format!("{}T00:00:00+00:00", t.date),
                "description": t.description,
                "amount": t.amount_minor as f64 / 100.0,
                "currency": "GBP",
                "transaction_type": if t.amount_minor < 0 { "DEBIT" } else { "CREDIT" },
                "transaction_category": if t.amount_minor < 0 { "PURCHASE" } else { "CREDIT" },
                "transaction_classification": [],
                "merchant_name": if t.amount_minor < 0 { Some("Corner Shop") } else { None },
                "meta": {"provider_transaction_category": "DEB"},
            })
        })
        .collect();
    succeeded(results)
}

async fn delete_connection(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Response {
    count(&sim, "DELETE /api/delete");
    let grant = match authorized(&sim, &headers, false) {
        Ok(grant) => grant,
        Err(r) => return *r,
    };
    let mut g = sim.lock();
    if let Some(gr) = g.data.grants.get_mut(&grant) {
        gr.revoked = true;
    }
    g.data.refresh.retain(|_, id| *id != grant);
    g.data.access.retain(|_, (id, _)| *id != grant);
    drop(g);
    json_reply(StatusCode::OK, to_bytes(&json!({})), &[])
}

impl TrueLayerSimulator {
    /// A current account at the bank; its id.
    pub fn add_account(&self, name: &str) -> String {
        let id = random_id(32).to_lowercase();
        let number: String = random_id(8).bytes().map(|b| char::from(b'0' + b % 10)).collect();
        self.sim.lock().data.accounts.push(SimAccount { id: id.clone(), name: name.into(), number, balance_minor: 150_000, transactions: Vec::new() });
        id
    }

    /// `n` transactions booked `days_ago` days back on `account`; their ids.
    pub fn add_transactions(&self, account: &str, n: usize, days_ago: i64) -> Vec<String> {
        let date = iso8601(now_ms() - days_ago * 86_400_000)[..10].to_owned();
        let mut g = self.sim.lock();
        let Some(a) = g.data.accounts.iter_mut().find(|a| a.id == account) else { return Vec::new() };
        (0..n)
            .map(|i| {
                let id = random_id(32).to_lowercase();
                let amount_minor = if i % 3 == 2 { 25_000 } else { -(1_234 + i as i64 * 7) };
                a.balance_minor += amount_minor;
                a.transactions.push(SimTransaction { id: id.clone(), date: date.clone(), amount_minor, description: format!("CARD PAYMENT {i}") });
                id
            })
            .collect()
    }

    /// The oracle: every transaction id the bank holds.
    pub fn data_transaction_ids(&self) -> Vec<String> {
        self.sim.lock().data.accounts.iter().flat_map(|a| a.transactions.iter().map(|t| t.id.clone())).collect()
    }

    /// Life of user access tokens issued from now on.
    pub fn set_user_token_ttl(&self, ttl: Duration) {
        self.sim.lock().data.token_ttl = Some(ttl);
    }

    /// Every user access token issued so far lapses now (401 from then on).
    pub fn expire_user_tokens(&self) {
        let now = Instant::now();
        for (_, until) in self.sim.lock().data.access.values_mut() {
            *until = now;
        }
    }

    /// The user revokes every grant at the bank.
    pub fn revoke_at_bank(&self) {
        for g in self.sim.lock().data.grants.values_mut() {
            g.revoked = true;
        }
    }

    /// Every grant's consent ends now (the 90 days passed).
    pub fn expire_consents(&self) {
        for g in self.sim.lock().data.grants.values_mut() {
            g.expired = true;
        }
    }

    /// The bank behind the Data API is down (503) or back.
    pub fn set_bank_down(&self, down: bool) {
        let mut g = self.sim.lock();
        g.data.down = down;
        g.data.down_after = None;
    }

    /// The bank goes down after `n` more successful data calls.
    pub fn bank_down_after(&self, n: u32) {
        self.sim.lock().data.down_after = Some(n);
    }

    /// Every user access and refresh token issued so far.
    pub fn user_tokens_issued(&self) -> Vec<String> {
        self.sim.lock().data.issued.clone()
    }

    /// Calls to the Data API and the auth server's user grants, all routes.
    pub fn user_calls(&self) -> u64 {
        let g = self.sim.lock();
        g.calls.iter().filter(|(k, _)| k.contains("/data/v1") || k.contains("/api/delete") || k.contains("authorization_code") || k.contains("refresh_token")).map(|(_, v)| v).sum()
    }
}
