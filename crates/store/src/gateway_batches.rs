//! The gateway's two writes on every POST, group-committed: the key's claim
//! before the publish, and the answer (with a new resource's `accepted`
//! view) after the acknowledgement. At thousands of POSTs a second, one
//! statement per request was most of what PostgreSQL did for the gateway;
//! concurrent requests now share a statement, as the workers' claims do
//! (see [`crate::batch`]). Each caller still waits for its own statement to
//! commit, so nothing is answered on a write that did not happen.

use crate::bulk::{self, Column, Dialect, Kind};
use crate::gateway::NEWER_VIEW_WINS;
use crate::records::{Bind, Sql};
use futures::future::BoxFuture;
use futures::FutureExt;
use sqlx::{AnyPool, Row};
use std::collections::{HashMap, HashSet};

/// A claim as queued: owned, since the queue outlives the caller's borrow.
pub(crate) struct QueuedClaim {
    pub(crate) domain: String,
    pub(crate) idempotency_key: String,
    pub(crate) request_digest: String,
    pub(crate) resource_id: String,
    pub(crate) lease_until_ms: i64,
    pub(crate) now_ms: i64,
}

/// A claimed request's answer, stored to be replayed to its copies.
pub(crate) struct QueuedAnswer {
    pub(crate) domain: String,
    pub(crate) idempotency_key: String,
    pub(crate) status_code: u16,
    pub(crate) body: String,
    /// A new resource's first view: its domain, id and status; its body is
    /// the answer's.
    pub(crate) created: Option<(String, String, String)>,
}

const CLAIM_COLUMNS: &[Column] = &[
    ("domain", Kind::Text),
    ("idempotency_key", Kind::Text),
    ("request_digest", Kind::Text),
    ("resource_id", Kind::Text),
    ("state", Kind::Text),
    ("lease_until_ms", Kind::Int),
    ("created_at_ms", Kind::Int),
    ("updated_at_ms", Kind::Int),
];

/// Inserts every claim whose key has no row; true for the claims that
/// created theirs. The others (a copy, a replay, a mismatch, a lease to take
/// over) are settled one by one by the caller: rare, and each needs a read.
pub(crate) fn insert_claims<'a>(pool: &'a AnyPool, claims: &'a [QueuedClaim]) -> BoxFuture<'a, Result<Vec<bool>, sqlx::Error>> {
    async move {
        let rows = claims.iter().map(|c| {
            vec![
                Bind::Text(Some(&c.domain)),
                Bind::Text(Some(&c.idempotency_key)),
                Bind::Text(Some(&c.request_digest)),
                Bind::Text(Some(&c.resource_id)),
                Bind::Text(Some("in_flight")),
                Bind::Int(c.lease_until_ms),
                Bind::Int(c.now_ms),
                Bind::Int(c.now_ms),
            ]
        });
        let (insert, prepared) = bulk::insert(
            Dialect::of(pool),
            "gateway_requests",
            CLAIM_COLUMNS,
            rows,
            " ON CONFLICT (domain, idempotency_key) DO NOTHING RETURNING domain, idempotency_key",
        );
        let mut inserted: HashSet<(String, String)> = HashSet::with_capacity(claims.len());
        for row in insert.query().persistent(prepared).fetch_all(pool).await? {
            inserted.insert((row.try_get("domain")?, row.try_get("idempotency_key")?));
        }
        // Two copies of one key in one batch: the first in the list created
        // the row (VALUES apply in order); the second is settled as a copy.
        Ok(claims.iter().map(|c| inserted.remove(&(c.domain.clone(), c.idempotency_key.clone()))).collect())
    }
    .boxed()
}

const VIEW_COLUMNS: &[Column] = &[
    ("domain", Kind::Text),
    ("resource_id", Kind::Text),
    ("status", Kind::Text),
    ("body", Kind::Text),
    ("observed_at_ms", Kind::Int),
    ("updated_at_ms", Kind::Int),
];

const ANSWER_COLUMNS: &[Column] = &[
    ("domain", Kind::Text),
    ("idempotency_key", Kind::Text),
    ("status_code", Kind::Int),
    ("response_body", Kind::Text),
];

/// Writes the new resources' `accepted` views, then the answers: a copy
/// replayed the answer finds the view its `Location` names.
pub(crate) fn store_answers<'a>(pool: &'a AnyPool, answers: &'a [QueuedAnswer]) -> BoxFuture<'a, Result<Vec<()>, sqlx::Error>> {
    async move {
        let now = switchyard_canonical::now_ms();
        // A statement may write a row once; two answers naming one resource
        // carry the same first view.
        let mut views: HashMap<(&str, &str), (&str, &str)> = HashMap::new();
        for a in answers {
            if let Some((domain, id, status)) = &a.created {
                views.insert((domain.as_str(), id.as_str()), (status.as_str(), a.body.as_str()));
            }
        }
        if !views.is_empty() {
            let rows = views.iter().map(|((domain, id), (status, body))| {
                vec![
                    Bind::Text(Some(domain)),
                    Bind::Text(Some(id)),
                    Bind::Text(Some(status)),
                    Bind::Text(Some(body)),
                    // Observed at the dawn of time: any projected state is newer.
                    Bind::Int(i64::MIN),
                    Bind::Int(now),
                ]
            });
            let (insert, prepared) = bulk::insert(
                Dialect::of(pool),
                "gateway_resources",
                VIEW_COLUMNS,
                rows,
                NEWER_VIEW_WINS,
            );
            insert.query().persistent(prepared).execute(pool).await?;
        }
        let rows = answers.iter().map(|a| {
            vec![
                Bind::Text(Some(&a.domain)),
                Bind::Text(Some(&a.idempotency_key)),
                Bind::Int(i64::from(a.status_code)),
                Bind::Text(Some(&a.body)),
            ]
        });
        let mut head = Sql::new("UPDATE gateway_requests AS t SET state = 'done', status_code = v.status_code, response_body = v.response_body, updated_at_ms = ");
        head.bind(Bind::Int(now)).push(" FROM ");
        let tail = " WHERE t.domain = v.domain AND t.idempotency_key = v.idempotency_key";
        let update = match Dialect::of(pool) {
            Dialect::Postgres => bulk::joined(head, ANSWER_COLUMNS, rows, tail),
            Dialect::Sqlite => None,
        };
        match update {
            Some(update) => {
                update.query().persistent(true).execute(pool).await?;
            }
            // SQLite has one writer and no round trip: a statement per answer.
            None => {
                for a in answers {
                    sqlx::query(
                        "UPDATE gateway_requests SET state = 'done', status_code = $1, response_body = $2, updated_at_ms = $3 \
                         WHERE domain = $4 AND idempotency_key = $5",
                    )
                    .bind(i64::from(a.status_code))
                    .bind(a.body.as_str())
                    .bind(now)
                    .bind(a.domain.as_str())
                    .bind(a.idempotency_key.as_str())
                    .execute(pool)
                    .await?;
                }
            }
        }
        Ok(vec![(); answers.len()])
    }
    .boxed()
}
