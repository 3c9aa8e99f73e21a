//! `GET /btl/v4/transfers`: "Get all transfers", as the TransferService-v4
//! spec defines it, so a client that lost a reply can find its transfer by
//! `reference`.
//!
//! Query: one of `balancePlatform`, `accountHolderId`, `balanceAccountId`
//! (required; others than the simulator's own match nothing);
//! `paymentInstrumentId` (the simulator's transfers have none, so it matches
//! nothing); `reference`; `category`; `createdSince` and `createdUntil`
//! (both required by this version of the spec, ISO 8601, inclusive);
//! `sortOrder` (`asc` default, `desc`); `limit` (default 10, max 100);
//! `cursor` (from `_links.next.href`). Reply: `{"data": [...], "_links":
//! {"next": {"href"}}}`, `next` only when more remain.
//!
//! UNCONFIRMED: the error status and `errorCode` for a bad query (422
//! `00_422` here); the cursor format (here the last id of the page); `prev`
//! links (not given); the 6-month window between the two dates (not enforced).

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::wire::{Problem, Transfer, ACCOUNT_HOLDER_ID, BALANCE_PLATFORM};
use super::{authorized, fault_reply, json_reply, rejected, unauthorized, Sim};
use crate::util::{header_str, parse_iso8601, pause, to_bytes};

const DEFAULT_LIMIT: usize = 10;
const MAX_LIMIT: usize = 100;
const CATEGORIES: [&str; 10] = ["bank", "card", "grants", "interest", "internal", "issuedCard", "migration", "platformPayment", "topUp", "upgrade"];

struct Query {
    pairs: Vec<(String, String)>,
    balance_platform: Option<String>,
    account_holder_id: Option<String>,
    balance_account_id: Option<String>,
    payment_instrument_id: Option<String>,
    reference: Option<String>,
    category: Option<String>,
    since_ms: i64,
    until_ms: i64,
    descending: bool,
    limit: usize,
    cursor: Option<String>,
}

fn field(name: &str, value: Option<&str>, message: &str) -> Value {
    json!({ "name": name, "value": value.unwrap_or_default(), "message": message })
}

fn parse(raw: &str) -> Result<Query, Problem> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(raw.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let get = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let mut bad = Vec::new();
    let (balance_platform, account_holder_id, balance_account_id) = (get("balancePlatform"), get("accountHolderId"), get("balanceAccountId"));
    if balance_platform.is_none() && account_holder_id.is_none() && balance_account_id.is_none() {
        bad.push(field("balanceAccountId", None, "Provide balancePlatform, accountHolderId or balanceAccountId"));
    }
    let mut date = |name: &str| match get(name) {
        None => {
            bad.push(field(name, None, "Required"));
            0
        }
        Some(v) => parse_iso8601(&v).unwrap_or_else(|| {
            bad.push(field(name, Some(&v), "Must be an ISO 8601 date-time"));
            0
        }),
    };
    let (since_ms, until_ms) = (date("createdSince"), date("createdUntil"));
    let category = get("category");
    if let Some(c) = category.as_deref().filter(|c| !CATEGORIES.contains(c)) {
        bad.push(field("category", Some(c), "Unsupported category"));
    }
    let descending = match get("sortOrder").as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(other) => {
            bad.push(field("sortOrder", Some(other), "Must be asc or desc"));
            false
        }
    };
    let limit = match get("limit") {
        None => DEFAULT_LIMIT,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                bad.push(field("limit", Some(&v), "Must be between 1 and 100"));
                DEFAULT_LIMIT
            }
        },
    };
    if !bad.is_empty() {
        let mut p = Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "validation", "Invalid query", "00_422", "Request validation failed");
        p.invalid_fields = bad;
        return Err(p);
    }
    Ok(Query {
        balance_platform,
        account_holder_id,
        balance_account_id,
        payment_instrument_id: get("paymentInstrumentId"),
        reference: get("reference"),
        category,
        since_ms,
        until_ms,
        descending,
        limit,
        cursor: get("cursor"),
        pairs,
    })
}

impl Query {
    fn matches(&self, t: &Transfer) -> bool {
        self.balance_platform.as_deref().is_none_or(|b| b == BALANCE_PLATFORM)
            && self.account_holder_id.as_deref().is_none_or(|a| a == ACCOUNT_HOLDER_ID)
            && self.balance_account_id.as_deref().is_none_or(|b| b == t.req.balance_account_id)
            && self.payment_instrument_id.is_none()
            && self.reference.as_deref().is_none_or(|r| r == t.reference)
            && self.category.as_deref().is_none_or(|c| c == "bank")
            && (self.since_ms..=self.until_ms).contains(&t.created_ms)
    }

    /// This query with `cursor` replaced, for `_links.next.href`.
    fn next_href(&self, host: &str, cursor: &str) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in self.pairs.iter().filter(|(k, _)| k != "cursor") {
            q.append_pair(k, v);
        }
        q.append_pair("cursor", cursor);
        format!("http://{host}/btl/v4/transfers?{}", q.finish())
    }
}

pub(crate) async fn list(State(sim): State<Arc<Sim>>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    if !authorized(&sim, &headers) {
        return unauthorized(&sim).await;
    }
    let q = match parse(raw.as_deref().unwrap_or("")) {
        Ok(q) => q,
        Err(p) => return rejected(&sim, &p).await,
    };
    let read = sim.engine.scan(|t| q.matches(t).then(|| t.clone()));
    pause(read.latency).await;
    let mut found = match read.outcome {
        Ok(found) => found,
        Err(fault) => return fault_reply(fault),
    };
    found.sort_unstable_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    if q.descending {
        found.reverse();
    }
    let start = match &q.cursor {
        None => 0,
        Some(c) => match found.iter().position(|t| &t.id == c) {
            Some(i) => i + 1,
            None => {
                let mut p = Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "validation", "Invalid query", "00_422", "Request validation failed");
                p.invalid_fields = vec![field("cursor", Some(c), "Unknown cursor")];
                return super::problem(&p, &[]);
            }
        },
    };
    let page = &found[start.min(found.len())..];
    let more = page.len() > q.limit;
    let page = &page[..page.len().min(q.limit)];
    let data: Vec<Value> = page.iter().map(|t| t.render(super::wire::stage(t, t.created_at.elapsed(), sim.settle_after))).collect();
    let mut links = json!({});
    if let (true, Some(last)) = (more, page.last()) {
        let host = header_str(&headers, "host").unwrap_or("localhost");
        links["next"] = json!({ "href": q.next_href(host, &last.id) });
    }
    json_reply(StatusCode::OK, to_bytes(&json!({ "data": data, "_links": links })), &[])
}
