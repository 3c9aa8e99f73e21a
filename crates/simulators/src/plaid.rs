//! Plaid simulator (API version 2020-09-14), built from Plaid's published
//! OpenAPI document (github.com/plaid/plaid-openapi `2020-09-14.yml`,
//! trimmed to `tests/contracts/plaid/plaid.json`; the contract test checks
//! every reply against it).
//!
//! - Every call is a `POST` with a JSON body. Auth: `client_id` and
//!   `secret` in the body, or the `PLAID-CLIENT-ID` / `PLAID-SECRET`
//!   headers; wrong ones -> 400 `INVALID_INPUT`/`INVALID_API_KEYS`.
//! - `/link/token/create` -> `link_token` (`link-sandbox-...`), expiring
//!   after 4 hours; with `access_token` it is an update-mode token (repairs
//!   a login). The user's side of Link is [`PlaidSimulator::complete_link`],
//!   which returns the `public_token` the front end would receive.
//! - `/item/public_token/exchange` -> `access_token` + `item_id`; a public
//!   token is single use and lives 30 minutes: a second exchange of it
//!   answers `INVALID_PUBLIC_TOKEN`. Fault: an exchange executed and its
//!   answer lost ([`PlaidSimulator::lose_exchange_answers`]).
//! - `/link/token/get` -> the token's Link sessions, each with its
//!   `item_add_results` (public token, accounts, institution; no item id,
//!   as Plaid's definition has none): see [`link`].
//! - `/accounts/get`, `/accounts/balance/get`: two accounts per item.
//! - `/transactions/sync`: pages through the item's change log with an
//!   opaque base64 cursor, `count` per page (default 100, at most 500),
//!   `has_more`, `added` / `modified` / `removed`.
//! - `/item/remove`: the access token stops working.
//! - Errors carry Plaid's error object (`error_type`, `error_code`,
//!   `error_message`, `display_message`, `request_id`): `ITEM_LOGIN_REQUIRED`,
//!   `INSTITUTION_DOWN`, `INSTITUTION_NOT_RESPONDING`, `PRODUCT_NOT_READY`
//!   (all HTTP 400, as Plaid documents), `RATE_LIMIT_EXCEEDED` (429),
//!   `INTERNAL_SERVER_ERROR` (`API_ERROR`, 500).
//!
//! - `/webhook_verification_key/get` and signed webhooks: see [`webhooks`];
//!   [`PlaidSimulator::send_webhook`] delivers one, any number of times.
//!
//! Faults are set through [`PlaidSimulator`]'s methods: an institution down
//! for a while, not responding for a number of calls, a sync that fails
//! after some pages, a login that needs repair, a product not ready, rate
//! limiting and latency.
//!
//! UNCONFIRMED: the exact life of a link token in update mode (we use the
//! same 4 hours), and what exchanging an update-mode public token does
//! (Plaid says it need not be exchanged; we answer like a normal exchange
//! with the item's existing access token).

mod data;
mod link;
pub mod webhooks;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

use crate::engine::Control;
use crate::util::{header_str, iso8601, json_reply, now_ms, random_id, to_bytes};
use crate::{ExecutedPayout, FaultPlan, MoneyOracle, SimStats, SimulatorHandle};
use data::Item;

const LINK_TOKEN_TTL_MS: i64 = 4 * 3_600_000;
const PUBLIC_TOKEN_TTL_MS: i64 = 30 * 60_000;
const ENDPOINTS: [&str; 7] =
    ["/link/token/create", "/link/token/get", "/item/public_token/exchange", "/accounts/get", "/accounts/balance/get", "/transactions/sync", "/item/remove"];

#[derive(Clone, Debug)]
pub struct PlaidConfig {
    pub bind: SocketAddr,
    pub client_id: String,
    pub secret: String,
    /// Transactions each new item starts with.
    pub transactions_per_item: usize,
}

impl PlaidConfig {
    /// 127.0.0.1 on an ephemeral port, sandbox-shaped credentials.
    pub fn local() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            client_id: "switchyard_client_id".into(),
            secret: "sandbox_secret_switchyard".into(),
            transactions_per_item: 23,
        }
    }
}

struct LinkToken {
    expires_at_ms: i64,
    institution_id: String,
    /// Update mode: the item whose login this token repairs.
    update_item: Option<String>,
    /// What the create asked for (`/link/token/get`'s `metadata`).
    metadata: link::LinkMetadata,
    /// Link flows finished with this token (`/link/token/get`'s `link_sessions`).
    sessions: Vec<link::Session>,
}

#[derive(Default)]
struct Faults {
    down_until: HashMap<String, Instant>,
    not_responding: HashMap<String, u32>,
    /// Sync pages still answered before one call fails with a 500.
    fail_sync_after: Option<usize>,
    rate_limited: u32,
    latency: Duration,
    /// Exchanges still executed and then answered with a cut connection.
    lose_exchange_answers: u32,
}

#[derive(Default)]
struct Inner {
    link_tokens: HashMap<String, LinkToken>,
    /// public token -> (item id, expiry)
    public_tokens: HashMap<String, (String, i64)>,
    items: HashMap<String, Item>,
    access_tokens: HashMap<String, String>,
    /// Every access token ever issued, removed items' included.
    issued: Vec<String>,
    faults: Faults,
    calls: HashMap<&'static str, u64>,
}

struct Sim {
    client_id: String,
    secret: String,
    transactions_per_item: usize,
    inner: Mutex<Inner>,
    requests: AtomicU64,
    auth_failures: AtomicU64,
    injected: AtomicU64,
    /// Webhook signing keys, the current one last.
    signing: Mutex<Vec<webhooks::SigningKey>>,
    http: reqwest::Client,
}

impl Sim {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Control for Sim {
    fn ledger(&self) -> Vec<ExecutedPayout> {
        Vec::new()
    }
    fn stats(&self) -> SimStats {
        SimStats {
            requests: self.requests.load(Ordering::Relaxed),
            auth_failures: self.auth_failures.load(Ordering::Relaxed),
            injected_faults: self.injected.load(Ordering::Relaxed),
            ..SimStats::default()
        }
    }
    /// Plaid's faults are institution- and item-shaped; see [`PlaidSimulator`].
    fn set_faults(&self, _plan: FaultPlan) {}
    fn oracle(&self) -> MoneyOracle {
        MoneyOracle::default()
    }
}

/// A running Plaid simulator and its test controls.
pub struct PlaidSimulator {
    handle: SimulatorHandle,
    sim: Arc<Sim>,
}

pub async fn spawn_plaid(cfg: PlaidConfig) -> std::io::Result<PlaidSimulator> {
    let sim = Arc::new(Sim {
        client_id: cfg.client_id,
        secret: cfg.secret,
        transactions_per_item: cfg.transactions_per_item,
        inner: Mutex::default(),
        requests: AtomicU64::new(0),
        auth_failures: AtomicU64::new(0),
        injected: AtomicU64::new(0),
        signing: Mutex::new(vec![webhooks::SigningKey::generate(now_ms() / 1000)]),
        http: reqwest::Client::new(),
    });
    let mut api = Router::new();
    for path in ENDPOINTS {
        api = api.route(path, post(move |s: State<Arc<Sim>>, h: HeaderMap, b: Bytes| call(s, h, b, path)));
    }
    const KEY_GET: &str = "/webhook_verification_key/get";
    let api = api
        .route(KEY_GET, post(move |s: State<Arc<Sim>>, h: HeaderMap, b: Bytes| call(s, h, b, KEY_GET)))
        .with_state(Arc::clone(&sim));
    let handle = crate::server::spawn(cfg.bind, api, sim.clone(), "plaid").await?;
    Ok(PlaidSimulator { handle, sim })
}

impl PlaidSimulator {
    pub fn base_url(&self) -> String {
        self.handle.base_url()
    }

    /// API calls answered, faults included (control methods not counted).
    pub fn requests(&self) -> u64 {
        self.sim.requests.load(Ordering::Relaxed)
    }

    /// Calls of one endpoint, e.g. `/transactions/sync`.
    pub fn calls(&self, path: &str) -> u64 {
        self.sim.lock().calls.get(path).copied().unwrap_or(0)
    }

    /// The user finishing Link with `link_token`: the `public_token` the
    /// front end receives (none for an unknown or expired token). In update
    /// mode it repairs the item's login.
    pub fn complete_link(&self, link_token: &str) -> Option<String> {
        let mut g = self.sim.lock();
        let (institution_id, update_item) = {
            let t = g.link_tokens.get(link_token).filter(|t| t.expires_at_ms > now_ms())?;
            (t.institution_id.clone(), t.update_item.clone())
        };
        let item_id = match update_item {
            Some(item_id) => {
                g.items.get_mut(&item_id)?.login_required = false;
                item_id
            }
            None => {
                let item_id = random_id(24).to_lowercase();
                g.items.insert(item_id.clone(), Item::generated(item_id.clone(), institution_id, self.sim.transactions_per_item));
                item_id
            }
        };
        let public = format!("public-sandbox-{}", uuid::Uuid::new_v4());
        let now = now_ms();
        link::record_session(&mut g, link_token, &public, &item_id, now);
        g.public_tokens.insert(public.clone(), (item_id, now + PUBLIC_TOKEN_TTL_MS));
        Some(public)
    }

    /// The next `n` exchanges are executed (the public token spent, the
    /// access token issued) and their answers lost: the connection is cut.
    pub fn lose_exchange_answers(&self, n: u32) {
        self.sim.lock().faults.lose_exchange_answers = n;
    }

    /// The Link sessions finished with `link_token`: (session id, the item
    /// it linked), for tests (Plaid's `/link/token/get` names no item).
    pub fn link_sessions(&self, link_token: &str) -> Vec<(String, String)> {
        let g = self.sim.lock();
        g.link_tokens.get(link_token).map(|t| t.sessions.iter().map(|s| (s.link_session_id.clone(), s.item_id.clone())).collect()).unwrap_or_default()
    }

    /// Every access token ever issued (for tests that scan for leaks).
    pub fn issued_access_tokens(&self) -> Vec<String> {
        self.sim.lock().issued.clone()
    }

    /// Transaction ids an item's history added (what a full sync must deliver).
    pub fn transaction_ids(&self, item_id: &str) -> Vec<String> {
        let g = self.sim.lock();
        let Some(item) = g.items.get(item_id) else { return Vec::new() };
        item.changes
            .iter()
            .filter_map(|c| match c {
                data::Change::Added(t) => Some(t.transaction_id.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn add_transactions(&self, item_id: &str, n: usize) {
        if let Some(item) = self.sim.lock().items.get_mut(item_id) {
            item.add_transactions(n);
        }
    }

    /// A posted version of an added transaction (`remove`: withdrawn instead).
    pub fn change_transaction(&self, item_id: &str, transaction_id: &str, remove: bool) -> bool {
        self.sim.lock().items.get_mut(item_id).is_some_and(|i| i.change_existing(transaction_id, remove))
    }

    /// The institution wants the user again (changed password, MFA).
    pub fn require_login(&self, item_id: &str) {
        if let Some(item) = self.sim.lock().items.get_mut(item_id) {
            item.login_required = true;
        }
    }

    pub fn product_not_ready(&self, item_id: &str, not_ready: bool) {
        if let Some(item) = self.sim.lock().items.get_mut(item_id) {
            item.not_ready = not_ready;
        }
    }

    /// INSTITUTION_DOWN for every data call at `institution_id` for `down`.
    pub fn institution_down(&self, institution_id: &str, down: Duration) {
        self.sim.lock().faults.down_until.insert(institution_id.to_owned(), Instant::now() + down);
    }

    /// INSTITUTION_NOT_RESPONDING for the next `calls` data calls there.
    pub fn institution_not_responding(&self, institution_id: &str, calls: u32) {
        self.sim.lock().faults.not_responding.insert(institution_id.to_owned(), calls);
    }

    /// After `pages` more successful sync pages, one sync call fails with
    /// a 500 (`API_ERROR`); the next one works again.
    pub fn fail_sync_after(&self, pages: usize) {
        self.sim.lock().faults.fail_sync_after = Some(pages);
    }

    /// The next `calls` calls answer 429 RATE_LIMIT_EXCEEDED.
    pub fn rate_limit(&self, calls: u32) {
        self.sim.lock().faults.rate_limited = calls;
    }

    /// Added to every API call.
    pub fn set_latency(&self, latency: Duration) {
        self.sim.lock().faults.latency = latency;
    }

    /// The id of the key webhooks are signed with now.
    pub fn webhook_kid(&self) -> String {
        self.sim.signing.lock().unwrap_or_else(|p| p.into_inner()).last().map(|k| k.kid.clone()).unwrap_or_default()
    }

    /// Starts signing with a new key; the old one stays served, expired
    /// from now on (`expired_at`), as Plaid rotates.
    pub fn rotate_webhook_key(&self) {
        let now_s = now_ms() / 1000;
        let mut keys = self.sim.signing.lock().unwrap_or_else(|p| p.into_inner());
        for k in keys.iter_mut() {
            k.expired_at_s.get_or_insert(now_s);
        }
        keys.push(webhooks::SigningKey::generate(now_s));
    }

    /// The `Plaid-Verification` header for `body` by the current key.
    pub fn sign_webhook(&self, body: &[u8], iat_s: i64, alg: &str) -> String {
        let keys = self.sim.signing.lock().unwrap_or_else(|p| p.into_inner());
        keys.last().map(|k| k.sign(body, iat_s, alg)).unwrap_or_default()
    }

    /// POSTs one signed delivery of `body` to `url`, `copies` times in a row
    /// (an injected duplicate), each copy re-posted on 409, 429, 5xx or no
    /// answer, up to 20 times 100 ms apart. Returns each copy's last status
    /// (0: no answer).
    pub async fn send_webhook(&self, url: &str, body: &[u8], copies: usize) -> Vec<u16> {
        let mut statuses = Vec::with_capacity(copies);
        // One signing for every copy and every re-post: the same delivery
        // arriving again. (A body Plaid signs again is a new event to the
        // ingester, which keys Plaid's id-less webhooks by the signing time.)
        let token = self.sign_webhook(body, now_ms() / 1000, "ES256");
        for _ in 0..copies {
            let mut status = 0;
            for _ in 0..20 {
                let token = token.clone();
                let sent = self.sim.http.post(url).header("content-type", "application/json").header("Plaid-Verification", token).body(body.to_vec()).send().await;
                status = sent.map_or(0, |r| r.status().as_u16());
                if !matches!(status, 0 | 409 | 429 | 500..=599) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            statuses.push(status);
        }
        statuses
    }

    pub async fn shutdown(self) {
        self.handle.shutdown().await;
    }
}

/// Plaid's error object with the HTTP status its type carries.
fn plaid_error(error_type: &str, error_code: &str, message: &str, display: Option<&str>) -> Response {
    let status = match error_type {
        "RATE_LIMIT_EXCEEDED" => StatusCode::TOO_MANY_REQUESTS,
        "API_ERROR" => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    let body = json!({
        "error_type": error_type,
        "error_code": error_code,
        "error_code_reason": null,
        "error_message": message,
        "display_message": display,
        "request_id": request_id(),
        "causes": [],
        "status": status.as_u16(),
        "documentation_url": format!("https://plaid.com/docs/errors/#{}", error_code.to_lowercase()),
        "suggested_action": null,
    });
    json_reply(status, to_bytes(&body), &[])
}

fn request_id() -> String {
    random_id(15)
}

fn ok(body: Value) -> Response {
    json_reply(StatusCode::OK, to_bytes(&body), &[])
}

fn missing(field: &str) -> Response {
    plaid_error("INVALID_REQUEST", "MISSING_FIELDS", &format!("the following required fields are missing: {field}"), None)
}

fn str_field<'a>(body: &'a Value, field: &str) -> Option<&'a str> {
    body.get(field).and_then(Value::as_str).filter(|s| !s.is_empty())
}

async fn call(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes, path: &'static str) -> Response {
    sim.requests.fetch_add(1, Ordering::Relaxed);
    let latency = {
        let mut g = sim.lock();
        *g.calls.entry(path).or_default() += 1;
        g.faults.latency
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return plaid_error("INVALID_REQUEST", "INVALID_BODY", "body could not be parsed as JSON", None);
    };
    let client_id = str_field(&body, "client_id").or_else(|| header_str(&headers, "plaid-client-id"));
    let secret = str_field(&body, "secret").or_else(|| header_str(&headers, "plaid-secret"));
    match (client_id, secret) {
        (None, _) => return missing("client_id"),
        (_, None) => return missing("secret"),
        (Some(c), Some(s)) if c != sim.client_id || s != sim.secret => {
            sim.auth_failures.fetch_add(1, Ordering::Relaxed);
            return plaid_error("INVALID_INPUT", "INVALID_API_KEYS", "invalid client_id or secret provided", None);
        }
        _ => {}
    }
    {
        let mut g = sim.lock();
        if g.faults.rate_limited > 0 {
            g.faults.rate_limited -= 1;
            sim.injected.fetch_add(1, Ordering::Relaxed);
            let code = match path {
                "/transactions/sync" => "TRANSACTIONS_SYNC_LIMIT",
                "/accounts/balance/get" => "BALANCE_LIMIT",
                _ => "RATE_LIMIT",
            };
            return plaid_error("RATE_LIMIT_EXCEEDED", code, "rate limit exceeded for this client", None);
        }
    }
    match path {
        "/link/token/create" => link_token_create(&sim, &body),
        "/link/token/get" => link::link_token_get(&sim.lock(), &body),
        "/item/public_token/exchange" => exchange(&sim, &body),
        "/item/remove" => with_item(&sim, &body, false, |g, item_id| {
            if let Some(item) = g.items.get_mut(item_id) {
                item.removed = true;
            }
            g.access_tokens.retain(|_, i| i != item_id);
            ok(json!({ "request_id": request_id() }))
        }),
        "/accounts/get" | "/accounts/balance/get" => with_item(&sim, &body, true, |g, item_id| match g.items.get(item_id) {
            Some(item) => ok(json!({
                "accounts": item.accounts.iter().map(data::account_json).collect::<Vec<_>>(),
                "item": data::item_json(item),
                "request_id": request_id(),
            })),
            None => plaid_error("INVALID_INPUT", "INVALID_ACCESS_TOKEN", "provided access token is invalid", None),
        }),
        "/transactions/sync" => sync(&sim, &body),
        "/webhook_verification_key/get" => verification_key(&sim, &body),
        _ => plaid_error("INVALID_REQUEST", "UNKNOWN_FIELDS", "no such endpoint", None),
    }
}

fn verification_key(sim: &Sim, body: &Value) -> Response {
    let Some(key_id) = str_field(body, "key_id") else { return missing("key_id") };
    let keys = sim.signing.lock().unwrap_or_else(|p| p.into_inner());
    match keys.iter().find(|k| k.kid == key_id) {
        Some(k) => ok(json!({ "key": k.jwk(), "request_id": request_id() })),
        None => plaid_error("INVALID_INPUT", "INVALID_WEBHOOK_VERIFICATION_KEY_ID", "invalid key_id provided", None),
    }
}

fn link_token_create(sim: &Sim, body: &Value) -> Response {
    for field in ["client_name", "language"] {
        if str_field(body, field).is_none() {
            return missing(field);
        }
    }
    if body.get("country_codes").and_then(Value::as_array).is_none_or(|c| c.is_empty()) {
        return missing("country_codes");
    }
    let Some(_user) = body.get("user").and_then(|u| str_field(u, "client_user_id")) else { return missing("user.client_user_id") };
    let mut g = sim.lock();
    let update_item = match str_field(body, "access_token") {
        Some(access) => match g.access_tokens.get(access) {
            Some(item) => Some(item.clone()),
            None => return plaid_error("INVALID_INPUT", "INVALID_ACCESS_TOKEN", "provided access token is invalid", None),
        },
        None => {
            if body.get("products").and_then(Value::as_array).is_none_or(|p| p.is_empty()) {
                return missing("products");
            }
            None
        }
    };
    let institution_id = match &update_item {
        Some(item) => g.items.get(item).map(|i| i.institution_id.clone()).unwrap_or_default(),
        None => str_field(body, "institution_id").unwrap_or("ins_109508").to_owned(),
    };
    let token = format!("link-sandbox-{}", uuid::Uuid::new_v4());
    let expires_at_ms = now_ms() + LINK_TOKEN_TTL_MS;
    let metadata = link::LinkMetadata::of(body, now_ms());
    g.link_tokens.insert(token.clone(), LinkToken { expires_at_ms, institution_id, update_item, metadata, sessions: Vec::new() });
    ok(json!({ "link_token": token, "expiration": iso8601(expires_at_ms), "request_id": request_id() }))
}

fn exchange(sim: &Sim, body: &Value) -> Response {
    let Some(public) = str_field(body, "public_token") else { return missing("public_token") };
    let mut g = sim.lock();
    // Single use: taken out whatever happens next.
    let Some((item_id, expires)) = g.public_tokens.remove(public) else {
        return plaid_error("INVALID_INPUT", "INVALID_PUBLIC_TOKEN", "provided public token is in an invalid format or expired", None);
    };
    if expires < now_ms() {
        return plaid_error("INVALID_INPUT", "INVALID_PUBLIC_TOKEN", "provided public token is expired", None);
    }
    let existing = g.access_tokens.iter().find(|(_, i)| **i == item_id).map(|(t, _)| t.clone());
    let access = existing.unwrap_or_else(|| {
        let token = format!("access-sandbox-{}", uuid::Uuid::new_v4());
        g.access_tokens.insert(token.clone(), item_id.clone());
        g.issued.push(token.clone());
        token
    });
    let answer = json!({ "access_token": access, "item_id": item_id, "request_id": request_id() });
    if g.faults.lose_exchange_answers > 0 {
        g.faults.lose_exchange_answers -= 1;
        sim.injected.fetch_add(1, Ordering::Relaxed);
        return link::lost(answer);
    }
    ok(answer)
}

/// Resolves `access_token` to its item and, for data calls, applies the
/// institution's and the item's state before `f` answers.
fn with_item(sim: &Sim, body: &Value, data_call: bool, f: impl FnOnce(&mut Inner, &str) -> Response) -> Response {
    let Some(access) = str_field(body, "access_token") else { return missing("access_token") };
    let mut g = sim.lock();
    let Some(item_id) = g.access_tokens.get(access).cloned() else {
        return plaid_error("INVALID_INPUT", "INVALID_ACCESS_TOKEN", "provided access token is invalid", None);
    };
    if data_call {
        if let Some(refused) = institution_fault(sim, &mut g, &item_id) {
            return refused;
        }
    }
    f(&mut g, &item_id)
}

fn institution_fault(sim: &Sim, g: &mut Inner, item_id: &str) -> Option<Response> {
    let (institution, login_required) = g.items.get(item_id).map(|i| (i.institution_id.clone(), i.login_required))?;
    if g.faults.down_until.get(&institution).is_some_and(|until| Instant::now() < *until) {
        sim.injected.fetch_add(1, Ordering::Relaxed);
        return Some(plaid_error("INSTITUTION_ERROR", "INSTITUTION_DOWN", "this institution is not currently responding to this request", Some("This financial institution is not currently responding to requests. We apologize for the inconvenience.")));
    }
    if let Some(left) = g.faults.not_responding.get_mut(&institution).filter(|n| **n > 0) {
        *left -= 1;
        sim.injected.fetch_add(1, Ordering::Relaxed);
        return Some(plaid_error("INSTITUTION_ERROR", "INSTITUTION_NOT_RESPONDING", "this institution is not currently responding to this request", Some("This financial institution is not currently responding to requests. We apologize for the inconvenience.")));
    }
    if login_required {
        return Some(plaid_error("ITEM_ERROR", "ITEM_LOGIN_REQUIRED", "the login details of this item have changed (credentials, MFA, or required user action) and a user login is required to update this information", Some("The login details of this item have changed. Please log in again.")));
    }
    None
}

fn sync(sim: &Sim, body: &Value) -> Response {
    let count = body.get("count").and_then(Value::as_u64).unwrap_or(100);
    if !(1..=500).contains(&count) {
        return plaid_error("INVALID_REQUEST", "INVALID_FIELD", "count must be between 1 and 500", None);
    }
    let cursor = body.get("cursor").and_then(Value::as_str).unwrap_or("").to_owned();
    with_item(sim, body, true, |g, item_id| {
        let Some(item) = g.items.get(item_id) else {
            return plaid_error("INVALID_INPUT", "INVALID_ACCESS_TOKEN", "provided access token is invalid", None);
        };
        if item.not_ready {
            return plaid_error("ITEM_ERROR", "PRODUCT_NOT_READY", "the requested product is not yet ready; please provide a webhook or try the request again later", None);
        }
        let Some(from) = data::decode_cursor(item_id, &cursor).filter(|p| *p <= item.changes.len()) else {
            return plaid_error("INVALID_REQUEST", "INVALID_FIELD", "cursor is not valid for this item", None);
        };
        let page = data::sync_page(item, from, count as usize, &request_id());
        match g.faults.fail_sync_after {
            Some(0) => {
                g.faults.fail_sync_after = None;
                sim.injected.fetch_add(1, Ordering::Relaxed);
                plaid_error("API_ERROR", "INTERNAL_SERVER_ERROR", "an unexpected error occurred", None)
            }
            Some(n) => {
                g.faults.fail_sync_after = Some(n - 1);
                ok(page)
            }
            None => ok(page),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::data::{decode_cursor, encode_cursor};

    #[test]
    fn a_cursor_belongs_to_its_item() {
        let c = encode_cursor("item1", 5);
        assert_eq!(decode_cursor("item1", &c), Some(5));
        assert_eq!(decode_cursor("item2", &c), None);
        assert_eq!(decode_cursor("item1", ""), Some(0));
        assert_eq!(decode_cursor("item1", "%%%"), None);
    }
}
