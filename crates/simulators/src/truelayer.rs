//! TrueLayer simulator: the auth server's client-credentials token and
//! Payments v3, as TrueLayer publishes them (docs.truelayer.com, the
//! `truelayer-rust` SDK's models, `../shared/VENDORS.md`).
//!
//! - `POST /connect/token` (form: `grant_type=client_credentials`,
//!   `client_id`, `client_secret`, `scope`) -> `{access_token, expires_in,
//!   token_type: "Bearer", scope}`. Wrong credentials -> 400
//!   `{"error": "invalid_client"}` (OAuth 2.0). Tokens expire after
//!   `token_ttl`; [`TrueLayerSimulator::expire_tokens`] ends them all now.
//!   `grant_type=authorization_code` and `refresh_token`: the user's
//!   grant for the Data API ([`data`]).
//! - `POST /v3/payments`, `POST /v3/payments/{id}/authorization-flow`:
//!   `Authorization: Bearer`, an `Idempotency-Key` and a `Tl-Signature`
//!   are required. The signature is verified with TrueLayer's own
//!   implementation (the `truelayer-signing` crate) against the public key
//!   the client registered ([`TrueLayerSimulator::register_signing_key`],
//!   what a merchant uploads in TrueLayer's console), and must cover the
//!   `Idempotency-Key` header. The create answers 201 `{id, user: {id},
//!   resource_token, status: "authorization_required"}`.
//! - Idempotency per key: the same key with the same body replays the first
//!   reply; with another body -> 422; while the first request under the key
//!   is still being processed -> 409. Keys are forgotten after
//!   `idempotency_ttl` (TrueLayer does not document its retention:
//!   UNCONFIRMED), after which the same request creates a second payment.
//! - `GET /v3/payments/{id}` -> the payment in its current status
//!   (`authorizing` with its `authorization_flow`, `executed_at`,
//!   `settled_at`, `failed_at` + `failure_stage` + `failure_reason`).
//! - `POST /v3/payouts`, `GET /v3/payouts/{id}`: payouts out of a funded
//!   merchant account, same auth, signing and idempotency (see [`payouts`]).
//! - Errors are RFC 7807 problem documents (`type`, `title`, `status`,
//!   `trace_id`, `detail`, `errors`), `application/problem+json`.
//!
//! The money oracle: [`TrueLayerSimulator::payments_created`] counts the
//! payments the "bank" created per our payment id (the create's
//! `metadata.switchyard_payment_id`), replays not counted.
//!
//! UNCONFIRMED: the exact `type` URLs of TrueLayer's problem documents (we
//! use `https://docs.truelayer.com/docs/error-types#<name>`), the status a
//! POST with a bad signature gets (401 here), and the `failure_reason` of a
//! bank return (see [`payments`]).

mod hooks;
mod payments;
mod data;
mod payouts;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use crate::engine::Control;
use crate::util::{header_str, json_reply, now_ms, random_id, to_bytes};
use crate::{ExecutedPayout, FaultPlan, MoneyOracle, SimStats, SimulatorHandle};
use payments::Payment;
pub use hooks::{WebhookDelivery, WebhookOrder};
pub use payments::Scenario;
pub use payouts::PayoutScenario;

#[derive(Clone, Debug)]
pub struct TrueLayerConfig {
    pub bind: SocketAddr,
    pub client_id: String,
    pub client_secret: String,
    /// Life of a client-credentials access token (TrueLayer: 3600 s).
    pub token_ttl: Duration,
    /// How long an idempotency key is remembered.
    pub idempotency_ttl: Duration,
    /// Time between two statuses once the user authorizes.
    pub step: Duration,
}

impl TrueLayerConfig {
    /// 127.0.0.1 on an ephemeral port, sandbox-shaped credentials, fast statuses.
    pub fn local() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            client_id: "sandbox-switchyard-0a1b2c".into(),
            client_secret: "sandbox-secret-switchyard".into(),
            token_ttl: Duration::from_secs(3600),
            idempotency_ttl: Duration::from_secs(6 * 3600),
            step: Duration::from_millis(300),
        }
    }
}

/// A key's first request: in flight, or answered.
struct KeyRecord {
    body: Bytes,
    at: Instant,
    reply: Option<(StatusCode, Bytes)>,
}

#[derive(Default)]
struct Inner {
    /// The client secret after a roll (`roll_client_secret`); the
    /// configured one until then.
    rolled_client_secret: Option<String>,
    /// access token -> expiry
    tokens: HashMap<String, Instant>,
    /// kid -> public key PEM
    keys: HashMap<String, Vec<u8>>,
    idempotency: HashMap<String, KeyRecord>,
    payments: HashMap<String, Payment>,
    /// our payment id -> payments created for it
    created: HashMap<String, usize>,
    /// Authorization codes the auth dialog handed out, not yet exchanged.
    codes: std::collections::HashSet<String>,
    scenario: Option<Scenario>,
    /// Added to each create while its key is held in flight.
    create_latency: Duration,
    /// The next creates answer 500 after creating (an ambiguous reply).
    fail_after_create: u32,
    calls: HashMap<String, u64>,
    /// Payment webhooks: the signer, what was sent (see [`hooks`]).
    hooks: hooks::HookState,
    /// The Data API's grants, accounts and faults (see [`data`]).
    data: data::DataState,
    /// Payouts out of merchant accounts (see [`payouts`]).
    payouts: payouts::PayoutBook,
}

struct Sim {
    cfg: TrueLayerConfig,
    inner: Mutex<Inner>,
    requests: AtomicU64,
    auth_failures: AtomicU64,
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
        SimStats { requests: self.requests.load(Ordering::Relaxed), auth_failures: self.auth_failures.load(Ordering::Relaxed), ..SimStats::default() }
    }
    /// TrueLayer's faults are payment-shaped; see [`TrueLayerSimulator`].
    fn set_faults(&self, _plan: FaultPlan) {}
    fn oracle(&self) -> MoneyOracle {
        MoneyOracle::default()
    }
}

/// A running TrueLayer simulator and its test controls.
pub struct TrueLayerSimulator {
    handle: SimulatorHandle,
    sim: Arc<Sim>,
}

pub async fn spawn_truelayer(cfg: TrueLayerConfig) -> std::io::Result<TrueLayerSimulator> {
    let sim = Arc::new(Sim { cfg, inner: Mutex::default(), requests: AtomicU64::new(0), auth_failures: AtomicU64::new(0) });
    let api = Router::new()
        .route("/connect/token", post(token))
        .route("/v3/payments", post(create_payment))
        .route("/v3/payments/{id}", get(get_payment))
        .route("/v3/payments/{id}/authorization-flow", post(authorization_flow))
        .route("/v3/payouts", post(payouts::create_payout))
        .route("/v3/payouts/{id}", get(payouts::get_payout))
        // The webhook signer's JWKS, served here as TrueLayer serves its
        // own: the signer is made below, once the address (its `jku`) is known.
        .route(crate::truelayer_webhooks::JWKS_PATH, get(hooks::jwks))
        .merge(data::routes())
        .with_state(Arc::clone(&sim));
    let handle = crate::server::spawn(sim.cfg.bind, api, sim.clone(), "truelayer").await?;
    let jku = format!("{}{}", handle.base_url(), crate::truelayer_webhooks::JWKS_PATH);
    let signer = crate::truelayer_webhooks::TrueLayerWebhooks::new(&jku).map_err(std::io::Error::other)?;
    sim.lock().hooks.signer = Some(Arc::new(signer));
    Ok(TrueLayerSimulator { handle, sim })
}

/// A fresh ES512 (P-521) key pair as PEM: `(private PKCS#8-or-SEC1, public
/// SPKI)`, what a merchant generates and uploads to TrueLayer's console.
pub fn generate_signing_key() -> (String, String) {
    let pair = openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::SECP521R1)
        .and_then(|g| openssl::ec::EcKey::generate(&g))
        .and_then(|k| Ok((k.private_key_to_pem()?, k.public_key_to_pem()?)));
    match pair {
        Ok((private, public)) => (String::from_utf8_lossy(&private).into_owned(), String::from_utf8_lossy(&public).into_owned()),
        // OpenSSL without P-521 cannot run this simulator at all.
        Err(e) => panic!("P-521 key generation failed: {e}"),
    }
}

impl TrueLayerSimulator {
    pub fn base_url(&self) -> String {
        self.handle.base_url()
    }

    /// The merchant's request-signing public key under `kid`.
    pub fn register_signing_key(&self, kid: &str, public_pem: &str) {
        self.sim.lock().keys.insert(kid.to_owned(), public_pem.as_bytes().to_vec());
    }

    /// The merchant deletes a public key in the console: requests signed
    /// under `kid` are refused from now on (the end of a key rotation).
    pub fn remove_signing_key(&self, kid: &str) {
        self.sim.lock().keys.remove(kid);
    }

    /// The user through the auth dialog: the `code` the redirect carries.
    pub fn grant_code(&self) -> String {
        let code = format!("tl-code-{}", random_id(24));
        self.sim.lock().codes.insert(code.clone());
        code
    }

    /// How the payments created from now on go once authorized.
    pub fn set_scenario(&self, scenario: Scenario) {
        self.sim.lock().scenario = Some(scenario);
    }

    /// The money oracle: payments created for our payment id.
    pub fn payments_created(&self, our_payment_id: &str) -> usize {
        self.sim.lock().created.get(our_payment_id).copied().unwrap_or(0)
    }

    /// Payments created in all.
    pub fn payments_total(&self) -> usize {
        self.sim.lock().payments.len()
    }

    /// Calls of `METHOD path-pattern`, e.g. `GET /v3/payments/{id}`.
    pub fn calls(&self, route: &str) -> u64 {
        self.sim.lock().calls.get(route).copied().unwrap_or(0)
    }

    /// The status the payment is in now (none: no such payment).
    pub fn status(&self, payment_id: &str) -> Option<&'static str> {
        self.sim.lock().payments.get(payment_id).map(|p| p.status(Instant::now()))
    }

    /// The user completes the hosted payment page: the payment starts its
    /// scenario. False for an unknown payment.
    pub fn authorize(&self, payment_id: &str) -> bool {
        let mut g = self.sim.lock();
        let Some(p) = g.payments.get_mut(payment_id) else { return false };
        p.started.get_or_insert((Instant::now(), now_ms()));
        true
    }

    /// Every access token issued so far is expired from now on.
    /// The client secret is rolled in the console: from now on only `new`
    /// gets a token, and the tokens issued so far lapse, so the next call
    /// needs a token made with the new secret.
    pub fn roll_client_secret(&self, new: &str) {
        let past = Instant::now();
        let mut inner = self.sim.lock();
        inner.rolled_client_secret = Some(new.to_owned());
        for at in inner.tokens.values_mut() {
            *at = past;
        }
    }

    pub fn expire_tokens(&self) {
        let past = Instant::now();
        for at in self.sim.lock().tokens.values_mut() {
            *at = past;
        }
    }

    /// Each create holds its key in flight this long before answering.
    pub fn set_create_latency(&self, latency: Duration) {
        self.sim.lock().create_latency = latency;
    }

    /// The next `n` creates create the payment and keep the reply under the
    /// key, but answer this request 500: a reply lost after the commit. A
    /// retry under the same key gets the payment; under another, a second one.
    pub fn fail_after_create(&self, n: u32) {
        self.sim.lock().fail_after_create = n;
    }

    /// Forgets every idempotency key now (the provider's retention passed).
    pub fn forget_idempotency_keys(&self) {
        self.sim.lock().idempotency.clear();
    }

    /// From now on, a signed payment webhook to `url` on each status change
    /// (`authorized`, `executed`, `settled`, `failed`), delivered as `delivery` says.
    pub fn send_webhooks(&self, url: &str, delivery: WebhookDelivery) {
        let Some(signer) = self.sim.lock().hooks.signer.clone() else { return };
        let task = tokio::spawn(hooks::run(Arc::downgrade(&self.sim), signer, url.to_owned(), delivery));
        if let Some(old) = self.sim.lock().hooks.task.replace(task.abort_handle()) {
            old.abort();
        }
    }

    /// The JWKS URL the webhooks' `jku` names (allow it in the ingester).
    pub fn webhook_jwks_url(&self) -> String {
        format!("{}{}", self.base_url(), crate::truelayer_webhooks::JWKS_PATH)
    }

    /// `(type, HTTP status of the last attempt)` of every webhook delivery, in order.
    pub fn webhooks_sent(&self) -> Vec<(String, u16)> {
        self.sim.lock().hooks.sent.clone()
    }

    pub async fn shutdown(self) {
        if let Some(task) = self.sim.lock().hooks.task.take() {
            task.abort();
        }
        self.handle.shutdown().await;
    }
}

/// An RFC 7807 problem document, as TrueLayer answers errors.
fn problem(status: StatusCode, name: &str, title: &str, detail: &str) -> Response {
    let body = json!({
        "type": format!("https://docs.truelayer.com/docs/error-types#{name}"),
        "title": title,
        "status": status.as_u16(),
        "trace_id": random_id(32).to_lowercase(),
        "detail": detail,
        "errors": {},
    });
    json_reply(status, to_bytes(&body), &[(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"))])
}

fn count(sim: &Sim, route: &str) {
    sim.requests.fetch_add(1, Ordering::Relaxed);
    *sim.lock().calls.entry(route.to_owned()).or_default() += 1;
}

async fn token(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    count(&sim, "POST /connect/token");
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let oauth_error = |error: &str| json_reply(StatusCode::BAD_REQUEST, to_bytes(&json!({"error": error})), &[]);
    let grant = form.get("grant_type").map(String::as_str);
    if !matches!(grant, Some("client_credentials" | "authorization_code" | "refresh_token")) {
        return oauth_error("unsupported_grant_type");
    }
    let client_secret = sim.lock().rolled_client_secret.clone().unwrap_or_else(|| sim.cfg.client_secret.clone());
    if form.get("client_id") != Some(&sim.cfg.client_id) || form.get("client_secret") != Some(&client_secret) {
        sim.auth_failures.fetch_add(1, Ordering::Relaxed);
        return oauth_error("invalid_client");
    }
    if grant != Some("client_credentials") {
        return data::user_token(&sim, &form);
    }
    let access = format!("tl-sim-{}", random_id(40));
    let body = json!({
        "access_token": access,
        "expires_in": sim.cfg.token_ttl.as_secs(),
        "token_type": "Bearer",
        "scope": form.get("scope").cloned().unwrap_or_else(|| "payments".into()),
    });
    sim.lock().tokens.insert(access, Instant::now() + sim.cfg.token_ttl);
    json_reply(StatusCode::OK, to_bytes(&body), &[])
}

/// The refusal unless the bearer token is one we issued and it has not expired.
fn unauthenticated(sim: &Sim, headers: &HeaderMap) -> Option<Response> {
    let bearer = header_str(headers, "authorization").and_then(|v| v.strip_prefix("Bearer "));
    let fine = bearer.is_some_and(|t| sim.lock().tokens.get(t).is_some_and(|at| *at > Instant::now()));
    if fine {
        return None;
    }
    sim.auth_failures.fetch_add(1, Ordering::Relaxed);
    Some(problem(StatusCode::UNAUTHORIZED, "unauthenticated", "Unauthenticated", "The access token is missing, invalid or expired."))
}

/// The refusal unless `Tl-Signature` (over method, path, the signed headers
/// and the body) verifies with TrueLayer's own library and the registered
/// key of its `kid`.
fn unsigned(sim: &Sim, path: &str, headers: &HeaderMap, body: &[u8]) -> Option<Response> {
    let refuse = |detail: &str| {
        sim.auth_failures.fetch_add(1, Ordering::Relaxed);
        Some(problem(StatusCode::UNAUTHORIZED, "invalid-signature", "Invalid Signature", detail))
    };
    let Some(signature) = header_str(headers, "tl-signature") else { return refuse("Tl-Signature header is required") };
    let kid = match truelayer_signing::extract_jws_header(signature) {
        Ok(h) => h.kid.to_string(),
        Err(_) => return refuse("Tl-Signature is not a detached JWS"),
    };
    let Some(pem) = sim.lock().keys.get(&kid).cloned() else { return refuse("unknown signing key id") };
    let all: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes())).collect();
    let verified = truelayer_signing::verify_with_pem(&pem)
        .method(truelayer_signing::Method::Post)
        .path(path)
        .require_header("Idempotency-Key")
        .headers(all)
        .body(body)
        .build_verifier()
        .verify(signature);
    match verified {
        Ok(()) => None,
        Err(_) => refuse("signature verification failed"),
    }
}

/// Idempotent POST handling: replay, 422 or 409 for a known key; `work`
/// for a new one, its reply kept under the key.
/// `work` answers `(status, body, reply_lost)`: a lost reply is kept under
/// the key as the client should have got it, and this request gets a 500
/// (the bank committed; the answer never arrived).
async fn idempotent(sim: &Sim, headers: &HeaderMap, body: &Bytes, work: impl FnOnce(&Sim) -> (StatusCode, Bytes, bool)) -> Response {
    let Some(key) = header_str(headers, "idempotency-key").filter(|k| !k.is_empty()).map(str::to_owned) else {
        return problem(StatusCode::BAD_REQUEST, "invalid-parameters", "Invalid Parameters", "Idempotency-Key header is required");
    };
    let latency = {
        let mut g = sim.lock();
        let ttl = sim.cfg.idempotency_ttl;
        if let Some(r) = g.idempotency.get(&key).filter(|r| r.at.elapsed() < ttl) {
            if r.body != *body {
                return problem(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "idempotency-key-reuse",
                    "Idempotency-Key Reuse",
                    "The Idempotency-Key was used with a different payload.",
                );
            }
            return match &r.reply {
                Some((status, reply)) => json_reply(*status, reply.clone(), &[]),
                None => problem(
                    StatusCode::CONFLICT,
                    "idempotency-key-concurrency-conflict",
                    "Idempotency-Key Concurrency Conflict",
                    "A request with this Idempotency-Key is being processed.",
                ),
            };
        }
        g.idempotency.insert(key.clone(), KeyRecord { body: body.clone(), at: Instant::now(), reply: None });
        g.create_latency
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let (status, reply, lost) = work(sim);
    let mut g = sim.lock();
    if status.is_server_error() {
        // Nothing kept: the client's retry is answered afresh.
        g.idempotency.remove(&key);
    } else if let Some(r) = g.idempotency.get_mut(&key) {
        r.reply = Some((status, reply.clone()));
    }
    drop(g);
    if lost {
        return problem(StatusCode::INTERNAL_SERVER_ERROR, "internal-server-error", "Internal Server Error", "Something went wrong.");
    }
    json_reply(status, reply, &[])
}

async fn create_payment(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    count(&sim, "POST /v3/payments");
    if let Some(r) = unauthenticated(&sim, &headers) {
        return r;
    }
    if let Some(r) = unsigned(&sim, "/v3/payments", &headers, &body) {
        return r;
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return problem(StatusCode::BAD_REQUEST, "invalid-parameters", "Invalid Parameters", "The body is not JSON.");
    };
    let amount = req.get("amount_in_minor").and_then(Value::as_i64).filter(|a| *a > 0);
    let currency = req.get("currency").and_then(Value::as_str).filter(|c| matches!(*c, "GBP" | "EUR" | "PLN" | "NOK"));
    let method = req.get("payment_method").filter(|m| m.get("type").and_then(Value::as_str) == Some("bank_transfer"));
    let beneficiary = method.and_then(|m| m.get("beneficiary")).and_then(|b| b.get("type")).and_then(Value::as_str);
    let selection = method.and_then(|m| m.get("provider_selection")).and_then(|p| p.get("type")).and_then(Value::as_str);
    let (Some(amount), Some(currency), Some(method), Some(_), Some(_), Some(user)) = (amount, currency, method, beneficiary, selection, req.get("user")) else {
        let detail = "amount_in_minor, currency, payment_method{type: bank_transfer, provider_selection, beneficiary} and user are required";
        return problem(StatusCode::BAD_REQUEST, "invalid-parameters", "Invalid Parameters", detail);
    };
    let (method, user, metadata, currency) = (method.clone(), user.clone(), req.get("metadata").cloned().unwrap_or(Value::Null), currency.to_owned());
    idempotent(&sim, &headers, &body, move |sim| {
        let id = uuid::Uuid::new_v4().to_string();
        let user_id = user.get("id").and_then(Value::as_str).map(str::to_owned).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let ours = metadata.get("switchyard_payment_id").and_then(Value::as_str).unwrap_or("").to_owned();
        let mut g = sim.lock();
        let scenario = g.scenario.unwrap_or(Scenario::Settles);
        g.payments.insert(
            id.clone(),
            Payment {
                id: id.clone(),
                amount_in_minor: amount,
                currency,
                user_id: user_id.clone(),
                payment_method: method,
                metadata,
                created_at_ms: now_ms(),
                scenario,
                started: None,
                step: sim.cfg.step,
            },
        );
        *g.created.entry(ours).or_default() += 1;
        let lost = g.fail_after_create > 0;
        g.fail_after_create = g.fail_after_create.saturating_sub(1);
        let reply = json!({"id": id, "user": {"id": user_id}, "resource_token": random_id(64), "status": "authorization_required"});
        (StatusCode::CREATED, to_bytes(&reply), lost)
    })
    .await
}

async fn get_payment(State(sim): State<Arc<Sim>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    count(&sim, "GET /v3/payments/{id}");
    if let Some(r) = unauthenticated(&sim, &headers) {
        return r;
    }
    let body = sim.lock().payments.get(&id).map(|p| p.to_json(Instant::now()));
    match body {
        Some(body) => json_reply(StatusCode::OK, to_bytes(&body), &[]),
        None => problem(StatusCode::NOT_FOUND, "not-found", "Not Found", "No payment with this id."),
    }
}

/// The user's side of the hosted payment page, through the API: starts the
/// authorization (the payment moves to `authorizing` and on).
async fn authorization_flow(State(sim): State<Arc<Sim>>, Path(id): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    count(&sim, "POST /v3/payments/{id}/authorization-flow");
    if let Some(r) = unauthenticated(&sim, &headers) {
        return r;
    }
    if let Some(r) = unsigned(&sim, &format!("/v3/payments/{id}/authorization-flow"), &headers, &body) {
        return r;
    }
    idempotent(&sim, &headers, &body, move |sim| {
        let mut g = sim.lock();
        let Some(p) = g.payments.get_mut(&id) else {
            return (StatusCode::NOT_FOUND, to_bytes(&json!({"type": "https://docs.truelayer.com/docs/error-types#not-found", "title": "Not Found", "status": 404})), false);
        };
        p.started.get_or_insert((Instant::now(), now_ms()));
        let reply = json!({"status": "authorizing", "authorization_flow": {"actions": {"next": {"type": "redirect", "uri": format!("https://mock-bank.example/authorize/{id}")}}}});
        (StatusCode::OK, to_bytes(&reply), false)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(private: &str, path: &str, key: &str, body: &[u8]) -> String {
        truelayer_signing::sign_with_pem("kid-1", private.as_bytes())
            .method(truelayer_signing::Method::Post)
            .path(path)
            .header("Idempotency-Key", key.as_bytes())
            .body(body)
            .build_signer()
            .sign()
            .expect("sign")
    }

    #[tokio::test]
    async fn a_signed_create_is_idempotent_per_key_in_flight_conflicts_and_a_forged_one_is_refused() {
        let tl = spawn_truelayer(TrueLayerConfig::local()).await.expect("spawn");
        let (private, public) = generate_signing_key();
        tl.register_signing_key("kid-1", &public);
        let http = reqwest::Client::new();
        let cfg = TrueLayerConfig::local();
        let token: Value = http
            .post(format!("{}/connect/token", tl.base_url()))
            .form(&[("grant_type", "client_credentials"), ("client_id", &cfg.client_id), ("client_secret", &cfg.client_secret), ("scope", "payments")])
            .send()
            .await
            .expect("token")
            .json()
            .await
            .expect("json");
        let bearer = format!("Bearer {}", token["access_token"].as_str().expect("access_token"));
        let body = serde_json::to_vec(&json!({
            "amount_in_minor": 100, "currency": "GBP",
            "payment_method": {"type": "bank_transfer", "provider_selection": {"type": "user_selected"}, "beneficiary": {"type": "merchant_account", "merchant_account_id": "ma-1", "reference": "r"}},
            "user": {"name": "A"}, "metadata": {"switchyard_payment_id": "pay-1"}
        }))
        .expect("body");
        let post = |key: &str, body: Vec<u8>, sig: String| {
            http.post(format!("{}/v3/payments", tl.base_url()))
                .header("Authorization", &bearer)
                .header("Idempotency-Key", key)
                .header("Tl-Signature", sig)
                .body(body)
                .send()
        };
        let first = post("k1", body.clone(), sign(&private, "/v3/payments", "k1", &body)).await.expect("send");
        assert_eq!(first.status(), 201);
        let again = post("k1", body.clone(), sign(&private, "/v3/payments", "k1", &body)).await.expect("send");
        assert_eq!(again.status(), 201);
        assert_eq!(tl.payments_created("pay-1"), 1, "a replay creates nothing");
        let mut other = body.clone();
        other.extend_from_slice(b" ");
        let reuse = post("k1", other.clone(), sign(&private, "/v3/payments", "k1", &other)).await.expect("send");
        assert_eq!(reuse.status(), 422);
        let forged = post("k2", body.clone(), sign(&private, "/v3/payments", "k1", &body)).await.expect("send");
        assert_eq!(forged.status(), 401, "signed for another key");
        let (other_private, _) = generate_signing_key();
        let stranger = post("k3", body.clone(), sign(&other_private, "/v3/payments", "k3", &body)).await.expect("send");
        assert_eq!(stranger.status(), 401, "not the registered key");
        assert_eq!(tl.payments_created("pay-1"), 1);
        // A second request while the first under its key is still working: 409.
        tl.set_create_latency(Duration::from_millis(300));
        let (a, b) = tokio::join!(post("k4", body.clone(), sign(&private, "/v3/payments", "k4", &body)), async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            post("k4", body.clone(), sign(&private, "/v3/payments", "k4", &body)).await
        });
        assert_eq!((a.expect("send").status().as_u16(), b.expect("send").status().as_u16()), (201, 409));
        tl.set_create_latency(Duration::ZERO);
        assert_eq!(tl.payments_created("pay-1"), 2);
        // Past the provider's retention the same request is a new payment.
        tl.forget_idempotency_keys();
        let late = post("k1", body.clone(), sign(&private, "/v3/payments", "k1", &body)).await.expect("send");
        assert_eq!(late.status(), 201);
        assert_eq!(tl.payments_created("pay-1"), 3, "a forgotten key protects nothing");
        tl.shutdown().await;
    }
}
