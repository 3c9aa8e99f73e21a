//! `GET /v1/payouts`: the payouts of one account (`Stripe-Account`, else the
//! platform), newest first, cursor-paged, as Stripe lists them. A client
//! that lost a reply finds its payout here by `metadata[switchyard_payout_id]`.
//!
//! Query (from the spec's `GetPayouts`): `created` and `arrival_date` (an
//! integer, or `[gt]`/`[gte]`/`[lt]`/`[lte]`, Unix seconds), `destination`,
//! `status`, `limit` (1-100, default 10), `starting_after`, `ending_before`;
//! `expand[]` is accepted and ignored. Unknown parameters -> 400 with `param`.
//! UNCONFIRMED: the wording of the limit and cursor errors.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::wire::{ApiError, Object, Payout, PayoutView, Stage};
use super::{check_auth, connected_account, error, fault_reply, reply, unauthorized, Sim};
use crate::util::{pause, to_bytes};

const DEFAULT_LIMIT: usize = 10;
const MAX_LIMIT: usize = 100;

/// An inclusive/exclusive bound set on a Unix-seconds field.
#[derive(Default)]
struct Range {
    gt: Option<i64>,
    gte: Option<i64>,
    lt: Option<i64>,
    lte: Option<i64>,
}

impl Range {
    fn contains(&self, v: i64) -> bool {
        self.gt.is_none_or(|b| v > b) && self.gte.is_none_or(|b| v >= b) && self.lt.is_none_or(|b| v < b) && self.lte.is_none_or(|b| v <= b)
    }

    /// Takes `field`, `field[gt]` ... into the range. `Ok(false)`: not ours.
    fn take(&mut self, field: &str, k: &str, v: &str) -> Result<bool, ApiError> {
        let Some(rest) = k.strip_prefix(field) else { return Ok(false) };
        let slot = match rest {
            "" => {
                let n = seconds(k, v)?;
                (self.gte, self.lte) = (Some(n), Some(n));
                return Ok(true);
            }
            "[gt]" => &mut self.gt,
            "[gte]" => &mut self.gte,
            "[lt]" => &mut self.lt,
            "[lte]" => &mut self.lte,
            _ => return Ok(false),
        };
        *slot = Some(seconds(k, v)?);
        Ok(true)
    }
}

fn seconds(k: &str, v: &str) -> Result<i64, ApiError> {
    v.parse::<i64>().map_err(|_| ApiError::invalid(k, "Invalid integer"))
}

struct Query {
    created: Range,
    arrival_date: Range,
    destination: Option<String>,
    status: Option<String>,
    limit: usize,
    starting_after: Option<String>,
    ending_before: Option<String>,
}

fn parse(raw: &str) -> Result<Query, ApiError> {
    let mut q = Query {
        created: Range::default(),
        arrival_date: Range::default(),
        destination: None,
        status: None,
        limit: DEFAULT_LIMIT,
        starting_after: None,
        ending_before: None,
    };
    for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
        let (k, v) = (k.as_ref(), v.into_owned());
        if q.created.take("created", k, &v)? || q.arrival_date.take("arrival_date", k, &v)? {
            continue;
        }
        match k {
            "destination" => q.destination = Some(v),
            "status" => q.status = Some(v),
            "starting_after" => q.starting_after = Some(v),
            "ending_before" => q.ending_before = Some(v),
            "limit" => {
                q.limit = match v.parse::<usize>() {
                    Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                    _ => return Err(ApiError::invalid("limit", format!("Invalid limit: must be an integer between 1 and {MAX_LIMIT}."))),
                }
            }
            _ if k.starts_with("expand[") => {}
            _ => return Err(ApiError::invalid(k, format!("Received unknown parameter: {k}"))),
        }
    }
    if q.starting_after.is_some() && q.ending_before.is_some() {
        return Err(ApiError::invalid("ending_before", "You may only specify one of these parameters: ending_before, starting_after."));
    }
    Ok(q)
}

#[derive(serde::Serialize)]
struct ListView<'a> {
    object: &'static str,
    data: Vec<PayoutView<'a>>,
    has_more: bool,
    url: &'static str,
}

/// Newest first; `seq` breaks ties within a millisecond.
fn order_key(p: &Payout) -> (i64, u64) {
    (p.created_ms, p.seq)
}

pub(crate) async fn list(State(sim): State<Arc<Sim>>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    if let Err(presented) = check_auth(&sim, &headers) {
        return unauthorized(&sim, presented).await;
    }
    let query = connected_account(&headers).and_then(|account| Ok((account, parse(raw.as_deref().unwrap_or(""))?)));
    let (account, q) = match query {
        Ok(v) => v,
        Err(e) => {
            pause(sim.engine.reject(false)).await;
            return error(&e);
        }
    };
    let read = sim.engine.scan(|r| match r {
        Object::Payout(p) if p.account == account => Some(p.clone()),
        Object::Payout(_) | Object::BankAccount(_) => None,
    });
    pause(read.latency).await;
    let mut all = match read.outcome {
        Ok(all) => all,
        Err(fault) => return fault_reply(fault),
    };
    all.sort_unstable_by_key(|p| std::cmp::Reverse(order_key(p)));
    let cursor = match (&q.starting_after, &q.ending_before) {
        (Some(id), _) => Some(("starting_after", id)),
        (None, Some(id)) => Some(("ending_before", id)),
        (None, None) => None,
    };
    let cursor_key = match cursor {
        Some((param, id)) => match all.iter().find(|p| &p.id == id) {
            Some(p) => Some(order_key(p)),
            None => return error(&ApiError::no_such(param, "payout", id)),
        },
        None => None,
    };
    let stage_of = |p: &Payout| Stage::at(p.params.amount, p.created_at.elapsed(), sim.settle_after);
    let matching: Vec<(&Payout, Stage)> = all
        .iter()
        .filter(|p| q.created.contains(p.created_ms / 1000) && q.arrival_date.contains(p.arrival_date(sim.settle_after)))
        .filter(|p| q.destination.as_ref().is_none_or(|d| &p.destination == d))
        .map(|p| (p, stage_of(p)))
        .filter(|(_, stage)| q.status.as_deref().is_none_or(|s| s == stage.as_str()))
        .collect();
    let (page, has_more) = match (q.ending_before.is_some(), cursor_key) {
        // The `limit` payouts just newer than the cursor, still newest first.
        (true, Some(key)) => {
            let newer: Vec<_> = matching.into_iter().filter(|(p, _)| order_key(p) > key).collect();
            let skip = newer.len().saturating_sub(q.limit);
            (newer[skip..].to_vec(), skip > 0)
        }
        (_, key) => {
            let mut older = matching.into_iter().filter(|(p, _)| key.is_none_or(|k| order_key(p) < k)).peekable();
            let page: Vec<_> = older.by_ref().take(q.limit).collect();
            let more = older.peek().is_some();
            (page, more)
        }
    };
    let view = ListView {
        object: "list",
        data: page.iter().map(|(p, stage)| p.render(*stage, sim.settle_after)).collect(),
        has_more,
        url: "/v1/payouts",
    };
    reply(StatusCode::OK, to_bytes(&view), &[])
}
