//! Link sessions and `/link/token/get`, and the lost-answer fault of
//! `/item/public_token/exchange`.
//!
//! `/link/token/get` follows Plaid's definition (`LinkTokenGetRequest`,
//! `LinkTokenGetResponse`, `LinkTokenGetSessionsResponse`,
//! `LinkSessionResults`, `LinkSessionItemAddResult`): a session per
//! completed Link flow of the token, its `results.item_add_results[]` with
//! the `public_token`, `accounts` and `institution`. The definition has no
//! `item_id` there, and neither do we.
//!
//! The lost answer: the exchange is executed (the public token is spent,
//! the item's access token issued) and then the connection is cut before a
//! byte of the answer arrives, as a proxy timeout or a reset does. The
//! client cannot tell whether Plaid executed it.

use super::{missing, ok, plaid_error, request_id, str_field, Inner};
use crate::util::iso8601;
use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

/// What `/link/token/create` asked for, as `/link/token/get` echoes it (`metadata`).
#[derive(Clone, Debug, Default)]
pub(super) struct LinkMetadata {
    pub(super) created_at_ms: i64,
    pub(super) products: Vec<Value>,
    pub(super) country_codes: Vec<Value>,
    pub(super) language: Option<String>,
    pub(super) redirect_uri: Option<String>,
    pub(super) client_name: Option<String>,
    pub(super) webhook: Option<String>,
}

impl LinkMetadata {
    pub(super) fn of(body: &Value, now_ms: i64) -> Self {
        let list = |field: &str| body.get(field).and_then(Value::as_array).cloned().unwrap_or_default();
        let text = |field: &str| str_field(body, field).map(str::to_owned);
        Self {
            created_at_ms: now_ms,
            products: list("products"),
            country_codes: list("country_codes"),
            language: text("language"),
            redirect_uri: text("redirect_uri"),
            client_name: text("client_name"),
            webhook: text("webhook"),
        }
    }
}

/// One Link flow the user finished with the token.
#[derive(Clone, Debug)]
pub(super) struct Session {
    pub(super) link_session_id: String,
    pub(super) started_at_ms: i64,
    pub(super) finished_at_ms: i64,
    pub(super) public_token: String,
    /// Ours, for tests: Plaid's answer does not carry it.
    pub(super) item_id: String,
    pub(super) institution_id: String,
    pub(super) account_ids: Vec<(String, &'static str, &'static str, &'static str)>,
}

impl Session {
    fn json(&self) -> Value {
        let accounts: Vec<Value> = self
            .account_ids
            .iter()
            .map(|(id, name, kind, subtype)| {
                json!({ "id": id, "name": name, "mask": null, "type": kind, "subtype": subtype, "verification_status": null, "class_type": null })
            })
            .collect();
        json!({
            "link_session_id": self.link_session_id,
            "started_at": iso8601(self.started_at_ms),
            "finished_at": iso8601(self.finished_at_ms),
            "events": [],
            "results": {
                "item_add_results": [{
                    "public_token": self.public_token,
                    "accounts": accounts,
                    "institution": { "name": format!("Institution {}", self.institution_id), "institution_id": self.institution_id },
                }],
                "cra_item_add_results": [],
                "cra_update_results": [],
                "bank_income_results": [],
                "payroll_income_results": [],
                "document_income_results": null,
            },
        })
    }
}

/// Records the Link flow the user finished with `link_token`.
pub(super) fn record_session(g: &mut Inner, link_token: &str, public_token: &str, item_id: &str, now_ms: i64) {
    let (institution_id, account_ids) = match g.items.get(item_id) {
        Some(item) => (item.institution_id.clone(), item.accounts.iter().map(|a| (a.account_id.clone(), a.name, a.kind, a.subtype)).collect()),
        None => (String::new(), Vec::new()),
    };
    let session = Session {
        link_session_id: uuid::Uuid::new_v4().to_string(),
        started_at_ms: now_ms,
        finished_at_ms: now_ms,
        public_token: public_token.to_owned(),
        item_id: item_id.to_owned(),
        institution_id,
        account_ids,
    };
    if let Some(t) = g.link_tokens.get_mut(link_token) {
        t.sessions.push(session);
    }
}

/// `/link/token/get`.
pub(super) fn link_token_get(g: &Inner, body: &Value) -> Response {
    let Some(token) = str_field(body, "link_token") else { return missing("link_token") };
    let Some(link) = g.link_tokens.get(token) else {
        return plaid_error("INVALID_INPUT", "INVALID_LINK_TOKEN", "provided link token is in an invalid format or expired", None);
    };
    let m = &link.metadata;
    ok(json!({
        "link_token": token,
        "created_at": iso8601(m.created_at_ms),
        "expiration": iso8601(link.expires_at_ms),
        "link_sessions": link.sessions.iter().map(Session::json).collect::<Vec<_>>(),
        "metadata": {
            "initial_products": m.products,
            "webhook": m.webhook,
            "country_codes": m.country_codes,
            "language": m.language,
            "redirect_uri": m.redirect_uri,
            "client_name": m.client_name,
        },
        "request_id": request_id(),
    }))
}

/// A 200 whose body never arrives: the connection is cut after the
/// exchange was executed.
pub(super) fn lost(executed: Value) -> Response {
    // The answer exists (and is dropped): what Plaid would have said.
    drop(executed);
    let stream = futures::stream::once(async { Err::<Bytes, std::io::Error>(std::io::Error::other("connection reset after the exchange executed")) });
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert("content-type", axum::http::HeaderValue::from_static("application/json"));
    response
}
