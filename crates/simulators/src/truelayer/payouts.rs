//! TrueLayer Payouts (Payments API v3): money out of a merchant account to
//! an external account (docs.truelayer.com "Make a payout to an external
//! account", "Payout and refund statuses").
//!
//! - `POST /v3/payouts`: bearer token, `Tl-Signature` and `Idempotency-Key`
//!   exactly as for payments (same verification, same replay / 422 / 409 /
//!   expiry rules, see [`super::idempotent`]). Body `{merchant_account_id,
//!   amount_in_minor, currency, beneficiary: {type: "external_account",
//!   account_holder_name, account_identifier: {type: "iban", iban} |
//!   {type: "sort_code_account_number", sort_code, account_number},
//!   reference}, metadata}` -> 202 `{id}`.
//! - `GET /v3/payouts/{id}`: the payout in its current status, `pending`
//!   -> `authorized` -> `executed`, or `failed` with `failure_reason`
//!   (`insufficient_funds`, `blocked`, `returned` after executing, ...).
//!
//! The beneficiary is checked, never completed: a missing or blank holder
//! name, identifier or reference is a 400, because a simulator that fills
//! gaps in hides the adapter bug that would send them.
//!
//! Money: each merchant account has a balance per currency
//! ([`super::TrueLayerSimulator::fund_merchant_account`]). A payout the
//! balance cannot cover is created and fails with `insufficient_funds`, as
//! TrueLayer documents, moving nothing. Otherwise the amount leaves the
//! balance at creation and the movement is recorded in the shared
//! [`MoneyOracle`] under our payout id, `metadata.switchyard_payout_id`:
//! TrueLayer documents `metadata` on payouts (up to 10 pairs, echoed in the
//! `payout_executed` webhook); that `GET /v3/payouts/{id}` echoes it is
//! UNCONFIRMED. The status then only reveals over time what was committed.
//!
//! UNCONFIRMED: the create's HTTP status (202 here, as for mandates/refunds)
//! and its body beyond `id`; the reply for an unknown merchant account (404
//! here); whether `date_of_birth` / `address` of the holder are required
//! (documented for some regions; not sent, not required here); limits on
//! `reference`.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};
use std::sync::Arc;

use super::{count, idempotent, problem, unauthenticated, unsigned, Sim, TrueLayerSimulator};
use crate::bank::iban_valid;
use crate::util::{header_str, iso8601, json_reply, now_ms, to_bytes};
use crate::{ExecutedPayout, MoneyOracle};

/// How payouts created from now on end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayoutScenario {
    /// pending -> authorized -> executed.
    Executes,
    /// pending -> failed (`blocked`: a sanctions check stopped it). No money moves.
    Blocked,
    /// pending -> authorized -> executed -> failed (`returned` by the bank).
    Returned,
}

/// The payouts side of the simulator's state.
pub(super) struct PayoutBook {
    payouts: std::collections::HashMap<String, Payout>,
    /// merchant account id -> currency -> balance in minor units.
    balances: std::collections::HashMap<String, std::collections::HashMap<String, i64>>,
    oracle: MoneyOracle,
    scenario: PayoutScenario,
    /// Time between two statuses; zero: final at once.
    step: Option<Duration>,
    /// The next creates create the payout, then answer 500.
    reply_lost: u32,
    /// The next creates answer 503 without creating anything.
    unavailable: u32,
    /// Statuses already turned into webhooks, per payout id.
    noticed: std::collections::HashMap<String, usize>,
}

impl Default for PayoutBook {
    fn default() -> Self {
        Self {
            payouts: Default::default(),
            balances: Default::default(),
            oracle: MoneyOracle::new(),
            scenario: PayoutScenario::Executes,
            step: None,
            reply_lost: 0,
            unavailable: 0,
            noticed: Default::default(),
        }
    }
}

struct Payout {
    id: String,
    request: Value,
    created: Instant,
    created_ms: i64,
    step: Duration,
    /// Statuses after `pending`, one per step.
    line: &'static [&'static str],
    failure_reason: Option<&'static str>,
}

impl Payout {
    fn at(&self, now: Instant) -> (&'static str, usize) {
        let steps = now.saturating_duration_since(self.created).as_millis() / self.step.as_millis().max(1);
        let steps = if self.step.is_zero() { usize::MAX } else { usize::try_from(steps).unwrap_or(usize::MAX) };
        if steps == 0 {
            return ("pending", 0);
        }
        let i = steps.min(self.line.len());
        (self.line[i - 1], i)
    }

    fn to_json(&self, now: Instant) -> Value {
        let (status, i) = self.at(now);
        let step_ms = i64::try_from(self.step.as_millis()).unwrap_or(0);
        let stamp = |k: usize| iso8601(self.created_ms + step_ms * k as i64);
        let mut body = json!({
            "id": self.id,
            "merchant_account_id": self.request["merchant_account_id"],
            "amount_in_minor": self.request["amount_in_minor"],
            "currency": self.request["currency"],
            "beneficiary": self.request["beneficiary"],
            "status": status,
            "created_at": iso8601(self.created_ms),
        });
        if let Some(metadata) = self.request.get("metadata") {
            body["metadata"] = metadata.clone();
        }
        for (k, s) in self.line.iter().enumerate().take(i) {
            body[format!("{s}_at")] = json!(stamp(k + 1));
        }
        if status == "failed" {
            body["failure_reason"] = json!(self.failure_reason.unwrap_or("unknown"));
        }
        body
    }
}

impl PayoutBook {
    /// Webhooks of the statuses reached since the last call, as TrueLayer
    /// sends them ("Payout webhooks": only `payout_executed` and
    /// `payout_failed`; `event_id`, `event_version`, `payout_id`,
    /// `merchant_account_id`, `<verb>_at`, `metadata`, `scheme_id`, and
    /// `failure_reason` on a failure). A returned payout gets both.
    pub(super) fn due_webhooks(&mut self, now: Instant) -> Vec<Value> {
        let mut out = Vec::new();
        for (id, p) in &self.payouts {
            let (_, reached) = p.at(now);
            let noticed = self.noticed.entry(id.clone()).or_insert(0);
            let step_ms = i64::try_from(p.step.as_millis()).unwrap_or(0);
            for k in *noticed..reached {
                let status = p.line[k];
                if status != "executed" && status != "failed" {
                    continue;
                }
                let mut b = json!({
                    "type": format!("payout_{status}"),
                    "event_version": 1,
                    "event_id": uuid::Uuid::new_v4().to_string(),
                    "payout_id": p.id,
                    "merchant_account_id": p.request["merchant_account_id"],
                    "scheme_id": "faster_payments_service",
                });
                b[format!("{status}_at")] = json!(iso8601(p.created_ms + step_ms * (k as i64 + 1)));
                if let Some(metadata) = p.request.get("metadata") {
                    b["metadata"] = metadata.clone();
                }
                if status == "failed" {
                    b["failure_reason"] = json!(p.failure_reason.unwrap_or("unknown"));
                }
                out.push(b);
            }
            *noticed = (*noticed).max(reached);
        }
        out
    }
}

impl TrueLayerSimulator {
    /// Adds `amount_minor` of `currency` to a merchant account (creating it).
    pub fn fund_merchant_account(&self, merchant_account_id: &str, currency: &str, amount_minor: i64) {
        let mut g = self.sim.lock();
        *g.payouts.balances.entry(merchant_account_id.to_owned()).or_default().entry(currency.to_owned()).or_default() += amount_minor;
    }

    /// The merchant account's balance now (none: no such account or currency).
    pub fn merchant_balance(&self, merchant_account_id: &str, currency: &str) -> Option<i64> {
        self.sim.lock().payouts.balances.get(merchant_account_id).and_then(|b| b.get(currency)).copied()
    }

    /// Executed payouts go to `oracle` from now on (share one with the other
    /// payout simulators of a test).
    pub fn set_money_oracle(&self, oracle: MoneyOracle) {
        self.sim.lock().payouts.oracle = oracle;
    }

    pub fn set_payout_scenario(&self, scenario: PayoutScenario) {
        self.sim.lock().payouts.scenario = scenario;
    }

    /// Time between two payout statuses (default: the config's `step`);
    /// zero makes every payout final the moment it is created.
    pub fn set_payout_step(&self, step: Duration) {
        self.sim.lock().payouts.step = Some(step);
    }

    /// The next `n` payout creates create the payout (and keep the reply
    /// under the key) but answer this request 500: the reply is lost.
    pub fn lose_payout_replies(&self, n: u32) {
        self.sim.lock().payouts.reply_lost = n;
    }

    /// The next `n` payout creates answer 503 and create nothing.
    pub fn refuse_payouts(&self, n: u32) {
        self.sim.lock().payouts.unavailable = n;
    }

    /// Payouts created in all (failed ones included).
    pub fn payouts_total(&self) -> usize {
        self.sim.lock().payouts.payouts.len()
    }

    /// The status of a payout now (none: no such payout).
    pub fn payout_status(&self, payout_id: &str) -> Option<&'static str> {
        self.sim.lock().payouts.payouts.get(payout_id).map(|p| p.at(Instant::now()).0)
    }
}

/// What is wrong with the request, if anything: every field required, none guessed.
fn invalid(req: &Value) -> Option<String> {
    fn text(v: Option<&Value>) -> Option<&str> {
        v.and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty())
    }
    if text(req.get("merchant_account_id")).is_none() {
        return Some("merchant_account_id is required".into());
    }
    if req.get("amount_in_minor").and_then(Value::as_i64).is_none_or(|a| a <= 0) {
        return Some("amount_in_minor must be a positive integer".into());
    }
    if !matches!(text(req.get("currency")), Some("GBP" | "EUR")) {
        return Some("currency must be GBP or EUR".into());
    }
    let Some(b) = req.get("beneficiary").filter(|b| b.is_object()) else { return Some("beneficiary is required".into()) };
    if text(b.get("type")) != Some("external_account") {
        return Some("beneficiary.type must be external_account".into());
    }
    if text(b.get("account_holder_name")).is_none() {
        return Some("beneficiary.account_holder_name is required".into());
    }
    if text(b.get("reference")).is_none() {
        return Some("beneficiary.reference is required".into());
    }
    let Some(id) = b.get("account_identifier").filter(|i| i.is_object()) else {
        return Some("beneficiary.account_identifier is required".into());
    };
    fn digits(v: Option<&Value>, n: usize) -> bool {
        text(v).is_some_and(|s| s.len() == n && s.bytes().all(|c| c.is_ascii_digit()))
    }
    match text(id.get("type")) {
        Some("iban") if text(id.get("iban")).is_some_and(iban_valid) => None,
        Some("iban") => Some("beneficiary.account_identifier.iban is missing or not a valid IBAN".into()),
        Some("sort_code_account_number") if digits(id.get("sort_code"), 6) && digits(id.get("account_number"), 8) => None,
        Some("sort_code_account_number") => Some("beneficiary.account_identifier needs a 6-digit sort_code and an 8-digit account_number".into()),
        _ => Some("beneficiary.account_identifier.type must be iban or sort_code_account_number".into()),
    }
}

pub(super) async fn create_payout(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    count(&sim, "POST /v3/payouts");
    if let Some(r) = unauthenticated(&sim, &headers) {
        return r;
    }
    if let Some(r) = unsigned(&sim, "/v3/payouts", &headers, &body) {
        return r;
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return problem(StatusCode::BAD_REQUEST, "invalid-parameters", "Invalid Parameters", "The body is not JSON.");
    };
    if let Some(detail) = invalid(&req) {
        return problem(StatusCode::BAD_REQUEST, "invalid-parameters", "Invalid Parameters", &detail);
    }
    {
        let mut g = sim.lock();
        let known = req["merchant_account_id"].as_str().is_some_and(|m| g.payouts.balances.contains_key(m));
        if !known {
            return problem(StatusCode::NOT_FOUND, "not-found", "Not Found", "No merchant account with this id.");
        }
        if g.payouts.unavailable > 0 {
            g.payouts.unavailable -= 1;
            return problem(StatusCode::SERVICE_UNAVAILABLE, "service-unavailable", "Service Unavailable", "Try again later.");
        }
    }
    let key = header_str(&headers, "idempotency-key").unwrap_or("").to_owned();
    idempotent(&sim, &headers, &body, move |sim| {
        let mut g = sim.lock();
        let book = &mut g.payouts;
        let id = uuid::Uuid::new_v4().to_string();
        let (ma, currency) = (req["merchant_account_id"].as_str().unwrap_or(""), req["currency"].as_str().unwrap_or(""));
        let amount = req["amount_in_minor"].as_i64().unwrap_or(0);
        let balance = book.balances.get_mut(ma).map(|b| b.entry(currency.to_owned()).or_default());
        let covered = balance.as_ref().is_some_and(|b| **b >= amount);
        let (line, failure_reason): (&'static [&'static str], _) = match (covered, book.scenario) {
            (false, _) => (&["failed"], Some("insufficient_funds")),
            (true, PayoutScenario::Blocked) => (&["failed"], Some("blocked")),
            (true, PayoutScenario::Executes) => (&["authorized", "executed"], None),
            (true, PayoutScenario::Returned) => (&["authorized", "executed", "failed"], Some("returned")),
        };
        if line.contains(&"executed") {
            if let Some(b) = balance {
                *b -= amount;
            }
            let b = &req["beneficiary"];
            let identifier = &b["account_identifier"];
            let account = identifier["iban"].as_str().map(str::to_owned).unwrap_or_else(|| {
                format!("{}{}", identifier["sort_code"].as_str().unwrap_or(""), identifier["account_number"].as_str().unwrap_or(""))
            });
            book.oracle.record(ExecutedPayout {
                vendor: "truelayer".into(),
                payout_id: req.get("metadata").and_then(|m| m.get("switchyard_payout_id")).and_then(Value::as_str).map(str::to_owned),
                beneficiary_iban: Some(account),
                beneficiary_name: b["account_holder_name"].as_str().map(str::to_owned),
                vendor_id: id.clone(),
                idempotency_key: key.clone(),
                amount_minor: amount,
                currency: currency.to_owned(),
                reference: b["reference"].as_str().unwrap_or("").to_owned(),
                executed_at_ms: now_ms(),
            });
        }
        let step = book.step.unwrap_or(sim.cfg.step);
        book.payouts.insert(id.clone(), Payout { id: id.clone(), request: req, created: Instant::now(), created_ms: now_ms(), step, line, failure_reason });
        let lost = book.reply_lost > 0;
        book.reply_lost = book.reply_lost.saturating_sub(1);
        (StatusCode::ACCEPTED, to_bytes(&json!({"id": id})), lost)
    })
    .await
}

pub(super) async fn get_payout(State(sim): State<Arc<Sim>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    count(&sim, "GET /v3/payouts/{id}");
    if let Some(r) = unauthenticated(&sim, &headers) {
        return r;
    }
    let body = sim.lock().payouts.payouts.get(&id).map(|p| p.to_json(Instant::now()));
    match body {
        Some(body) => json_reply(StatusCode::OK, to_bytes(&body), &[]),
        None => problem(StatusCode::NOT_FOUND, "not-found", "Not Found", "No payout with this id."),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{generate_signing_key, spawn_truelayer, TrueLayerConfig};
    use super::*;

    fn sign(private: &str, key: &str, body: &[u8]) -> String {
        truelayer_signing::sign_with_pem("kid-1", private.as_bytes())
            .method(truelayer_signing::Method::Post)
            .path("/v3/payouts")
            .header("Idempotency-Key", key.as_bytes())
            .body(body)
            .build_signer()
            .sign()
            .expect("sign")
    }

    #[tokio::test]
    async fn payouts_are_idempotent_per_key_checked_never_completed_and_counted_per_payout_id() {
        let cfg = TrueLayerConfig::local();
        let tl = spawn_truelayer(cfg.clone()).await.expect("spawn");
        let (private, public) = generate_signing_key();
        tl.register_signing_key("kid-1", &public);
        let oracle = MoneyOracle::new();
        tl.set_money_oracle(oracle.clone());
        tl.fund_merchant_account("ma-1", "GBP", 1000);
        tl.set_payout_step(Duration::ZERO);
        let http = reqwest::Client::new();
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
        let payout = |amount: i64, beneficiary: Value| {
            serde_json::to_vec(&json!({"merchant_account_id": "ma-1", "amount_in_minor": amount, "currency": "GBP",
                "beneficiary": beneficiary, "metadata": {"switchyard_payout_id": "po-1"}}))
            .expect("body")
        };
        let complete = json!({"type": "external_account", "account_holder_name": "Ada", "reference": "r",
            "account_identifier": {"type": "sort_code_account_number", "sort_code": "040004", "account_number": "12345678"}});
        let post = |key: &str, body: Vec<u8>| {
            http.post(format!("{}/v3/payouts", tl.base_url()))
                .header("Authorization", &bearer)
                .header("Idempotency-Key", key)
                .header("Tl-Signature", sign(&private, key, &body))
                .body(body)
                .send()
        };
        let first: Value = post("k1", payout(300, complete.clone())).await.expect("send").json().await.expect("json");
        let again: Value = post("k1", payout(300, complete.clone())).await.expect("send").json().await.expect("json");
        assert_eq!(first["id"], again["id"], "a replay answers the first payout");
        assert_eq!(post("k1", payout(301, complete.clone())).await.expect("send").status(), 422);
        assert_eq!(oracle.movements().len(), 1);
        assert_eq!(tl.merchant_balance("ma-1", "GBP"), Some(700));
        let id = first["id"].as_str().expect("id");
        let got: Value = http.get(format!("{}/v3/payouts/{id}", tl.base_url())).header("Authorization", &bearer).send().await.expect("get").json().await.expect("json");
        assert_eq!((got["status"].as_str(), got["metadata"]["switchyard_payout_id"].as_str()), (Some("executed"), Some("po-1")));
        // Nothing missing is filled in.
        let mut no_name = complete.clone();
        no_name["account_holder_name"] = json!(" ");
        let mut no_account = complete.clone();
        no_account.as_object_mut().expect("object").remove("account_identifier");
        for (key, beneficiary) in [("k2", no_name), ("k3", no_account), ("k4", Value::Null)] {
            assert_eq!(post(key, payout(100, beneficiary)).await.expect("send").status(), 400, "{key}");
        }
        // More than the balance: created, failed, nothing moved.
        let broke: Value = post("k5", payout(5000, complete.clone())).await.expect("send").json().await.expect("json");
        assert_eq!(tl.payout_status(broke["id"].as_str().expect("id")), Some("failed"));
        assert_eq!(oracle.movements().len(), 1);
        // A key forgotten past retention protects nothing: a second payout.
        tl.forget_idempotency_keys();
        assert_eq!(post("k1", payout(300, complete.clone())).await.expect("send").status(), 202);
        assert_eq!(oracle.per_payout()["po-1"].len(), 2);
        tl.shutdown().await;
    }
}
