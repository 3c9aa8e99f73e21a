//! The HTTP gateway's state: one row per `(domain, idempotency key)` of a
//! POST, so a retried request is answered with the first one's response,
//! and one row per resource, the projection of its outcome topic that
//! `GET` reads.
//!
//! A request claims its key with a lease *before* publishing. While the
//! lease runs, a copy is told the request is in flight (409); once the
//! answer is stored, a copy with the same request digest gets it replayed
//! and one with another digest is refused (422). A claim whose holder died
//! is taken over after its lease: the command it was about to publish
//! carries the same key and content, so a second publish meets the first
//! in the worker's claim.

use crate::batch::Batcher;
use crate::bulk::Dialect;
use crate::gateway_batches::{insert_claims, store_answers, QueuedAnswer, QueuedClaim};
use crate::{Store, StoreError};
use sqlx::{AnyPool, Row};

/// Requests sharing one statement, at most.
const MAX_BATCH: usize = 256;
/// Statements of each kind in flight at once on PostgreSQL: a request that
/// arrives while one runs goes in the next without waiting for it.
const PARALLEL_BATCHES: usize = 2;

const DDL: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS gateway_requests (
        domain TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        request_digest TEXT NOT NULL,
        resource_id TEXT NOT NULL,
        state TEXT NOT NULL,
        lease_until_ms BIGINT NOT NULL,
        status_code BIGINT,
        response_body TEXT,
        created_at_ms BIGINT NOT NULL,
        updated_at_ms BIGINT NOT NULL,
        PRIMARY KEY (domain, idempotency_key)
    )",
    "CREATE TABLE IF NOT EXISTS gateway_resources (
        domain TEXT NOT NULL,
        resource_id TEXT NOT NULL,
        status TEXT NOT NULL,
        body TEXT NOT NULL,
        observed_at_ms BIGINT NOT NULL,
        updated_at_ms BIGINT NOT NULL,
        PRIMARY KEY (domain, resource_id)
    )",
    // `GET /v1/payouts?status=pending_unknown` lists by status.
    "CREATE INDEX IF NOT EXISTS gateway_resources_status ON gateway_resources (domain, status, updated_at_ms)",
];

/// How a view is written over a stored one: only by an observation at
/// least as new, so a replayed or re-read old outcome never moves a
/// resource back. One text for the projection's writes and the answers'.
pub(crate) const NEWER_VIEW_WINS: &str = " ON CONFLICT (domain, resource_id) DO UPDATE SET status = excluded.status, body = excluded.body, \
     observed_at_ms = excluded.observed_at_ms, updated_at_ms = excluded.updated_at_ms \
     WHERE gateway_resources.observed_at_ms <= excluded.observed_at_ms";

/// The claims' and answers' own connections, whose commits return before
/// the WAL is flushed (`synchronous_commit = off`): at 2,000 POSTs a second
/// the two flushes on every request's path were most of what the gateway
/// added to the broker's acknowledgement (2026-12-07: 3.4 ms at p99 with
/// them, 1.4 to 2.2 ms without; README, HTTP gateway). What a database
/// crash can then lose, its last fraction of a second of these rows, costs
/// no safety: the command's durability is the broker's acknowledgement, and
/// a vendor call is guarded by the worker's own claim, committed
/// synchronously. A lost claim or answer lets the caller's retry publish
/// the same command again, which the worker answers from its record; a lost
/// `accepted` view is replaced by the projection's once the outcome comes.
/// Visibility is not delayed: a copy on another instance sees the claim as
/// soon as the statement returns.
fn without_commit_wait(pool: &AnyPool) -> Result<AnyPool, StoreError> {
    let mut url = pool.connect_options().database_url.clone();
    url.query_pairs_mut().append_pair("options[synchronous_commit]", "off");
    Ok(sqlx::any::AnyPoolOptions::new()
        .max_connections(2 * PARALLEL_BATCHES as u32 + 2)
        .acquire_timeout(std::time::Duration::from_secs(10))
        // As the store's pool: no ping per batch.
        .test_before_acquire(false)
        .connect_lazy(url.as_str())?)
}

/// A request to own the answer to one idempotency key.
#[derive(Debug, Clone)]
pub struct RequestClaim<'a> {
    pub domain: &'a str,
    pub idempotency_key: &'a str,
    /// Digest of the caller and the validated request body.
    pub request_digest: &'a str,
    pub resource_id: &'a str,
    /// How long the claimer may take to answer before a copy may take over.
    pub lease_ms: i64,
}

/// What a request with an idempotency key may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestVerdict {
    /// First sight (or the earlier holder's lease ran out): publish and answer.
    Claimed,
    /// Answered before for the same request: replay status and body.
    Replay { status: u16, body: String },
    /// The key was used for another request (body or caller).
    Mismatch,
    /// The same request is being answered right now.
    InFlight,
}

/// The gateway's tables.
#[derive(Clone)]
pub struct GatewayStore {
    pool: AnyPool,
    /// The claims' and answers' connections (see [`without_commit_wait`]).
    requests: AnyPool,
    claims: Batcher<QueuedClaim, bool>,
    answers: Batcher<QueuedAnswer, ()>,
}

impl std::fmt::Debug for GatewayStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayStore").finish_non_exhaustive()
    }
}

/// A new resource's first view, stored with the answer that created it.
#[derive(Debug, Clone, Copy)]
pub struct CreatedView<'a> {
    pub domain: &'a str,
    pub resource_id: &'a str,
    pub status: &'a str,
}

/// A resource's current state as the projection last wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceState {
    pub resource_id: String,
    pub status: String,
    /// The JSON answered by `GET`.
    pub body: String,
    pub updated_at_ms: i64,
}

impl GatewayStore {
    pub async fn open(store: &Store) -> Result<Self, StoreError> {
        let pool = store.pool().clone();
        crate::schema::create_all(&pool, DDL).await?;
        let (parallel, requests) = match Dialect::of(&pool) {
            Dialect::Postgres => (PARALLEL_BATCHES, without_commit_wait(&pool)?),
            // One connection: `:memory:` is one database per connection.
            Dialect::Sqlite => (1, pool.clone()),
        };
        let claims = Batcher::spawn(requests.clone(), MAX_BATCH, parallel, insert_claims);
        let answers = Batcher::spawn(requests.clone(), MAX_BATCH, parallel, store_answers);
        Ok(Self { pool, requests, claims, answers })
    }

    /// Claims `claim.idempotency_key`, or says why not.
    pub async fn claim(&self, claim: &RequestClaim<'_>) -> Result<RequestVerdict, StoreError> {
        let now = switchyard_canonical::now_ms();
        let queued = QueuedClaim {
            domain: claim.domain.to_owned(),
            idempotency_key: claim.idempotency_key.to_owned(),
            request_digest: claim.request_digest.to_owned(),
            resource_id: claim.resource_id.to_owned(),
            lease_until_ms: now + claim.lease_ms,
            now_ms: now,
        };
        if self.claims.submit(queued).await? {
            return Ok(RequestVerdict::Claimed);
        }
        self.settle(claim, now).await
    }

    /// A claim whose key has a row: a replay, a mismatch, a copy in flight,
    /// or a dead holder's lease to take over.
    async fn settle(&self, claim: &RequestClaim<'_>, now: i64) -> Result<RequestVerdict, StoreError> {
        let row = sqlx::query(
            "SELECT request_digest, state, lease_until_ms, status_code, response_body FROM gateway_requests \
             WHERE domain = $1 AND idempotency_key = $2",
        )
        .bind(claim.domain)
        .bind(claim.idempotency_key)
        .fetch_optional(&self.requests)
        .await?;
        // Deleted between the insert and the read (a released claim): the
        // caller's retry claims it afresh.
        let Some(row) = row else { return Ok(RequestVerdict::InFlight) };
        if row.try_get::<String, _>("request_digest")? != claim.request_digest {
            return Ok(RequestVerdict::Mismatch);
        }
        if row.try_get::<String, _>("state")? == "done" {
            let status = row.try_get::<Option<i64>, _>("status_code")?.unwrap_or(500);
            let body = row.try_get::<Option<String>, _>("response_body")?.unwrap_or_default();
            return Ok(RequestVerdict::Replay { status: u16::try_from(status).unwrap_or(500), body });
        }
        let lease_until: i64 = row.try_get("lease_until_ms")?;
        if lease_until > now {
            return Ok(RequestVerdict::InFlight);
        }
        // Compare-and-set on the old lease: of two copies taking over at
        // once, one wins.
        let taken = sqlx::query(
            "UPDATE gateway_requests SET lease_until_ms = $1, updated_at_ms = $2 \
             WHERE domain = $3 AND idempotency_key = $4 AND state = 'in_flight' AND lease_until_ms = $5",
        )
        .bind(now + claim.lease_ms)
        .bind(now)
        .bind(claim.domain)
        .bind(claim.idempotency_key)
        .bind(lease_until)
        .execute(&self.requests)
        .await?
        .rows_affected();
        Ok(if taken == 1 { RequestVerdict::Claimed } else { RequestVerdict::InFlight })
    }

    /// Stores the answer of a claimed request, to be replayed to its copies,
    /// and first the view of the resource it created, if any; shares its
    /// statements with the answers of concurrent requests.
    pub async fn answer(&self, domain: &str, idempotency_key: &str, status: u16, body: &str, created: Option<CreatedView<'_>>) -> Result<(), StoreError> {
        self.answers
            .submit(QueuedAnswer {
                domain: domain.to_owned(),
                idempotency_key: idempotency_key.to_owned(),
                status_code: status,
                body: body.to_owned(),
                created: created.map(|v| (v.domain.to_owned(), v.resource_id.to_owned(), v.status.to_owned())),
            })
            .await
    }

    /// Forgets a claim whose request was not accepted (the broker did not
    /// acknowledge), so the caller's retry is handled as new instead of
    /// being replayed an error or waiting out the lease.
    pub async fn release(&self, domain: &str, idempotency_key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM gateway_requests WHERE domain = $1 AND idempotency_key = $2 AND state = 'in_flight'")
            .bind(domain)
            .bind(idempotency_key)
            .execute(&self.requests)
            .await?;
        Ok(())
    }

    /// Writes a resource's state observed at `observed_at_ms` (the outcome's
    /// time), unless a later observation is already stored: a replayed or
    /// re-read old outcome never moves a resource back. True when written
    /// (an observation as new as the stored one is written again).
    pub async fn upsert_resource(&self, domain: &str, resource_id: &str, status: &str, body: &str, observed_at_ms: i64) -> Result<bool, StoreError> {
        static UPSERT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!("INSERT INTO gateway_resources (domain, resource_id, status, body, observed_at_ms, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6){NEWER_VIEW_WINS}")
        });
        let written = sqlx::query(UPSERT.as_str())
        .bind(domain)
        .bind(resource_id)
        .bind(status)
        .bind(body)
        .bind(observed_at_ms)
        .bind(switchyard_canonical::now_ms())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(written == 1)
    }

    /// Writes a view amended from `expected` (the body it was read as) only
    /// if the stored one is still that body and not newer: a read, amend,
    /// write that loses to any write between its read and its write, which
    /// would otherwise be overwritten with the state it read. False: it
    /// lost (read again and amend that), or there is no such view.
    pub async fn amend_resource(
        &self,
        domain: &str,
        resource_id: &str,
        expected: &str,
        status: &str,
        body: &str,
        observed_at_ms: i64,
    ) -> Result<bool, StoreError> {
        let written = sqlx::query(
            "UPDATE gateway_resources SET status = $1, body = $2, observed_at_ms = $3, updated_at_ms = $4 \
             WHERE domain = $5 AND resource_id = $6 AND body = $7 AND observed_at_ms <= $3",
        )
        .bind(status)
        .bind(body)
        .bind(observed_at_ms)
        .bind(switchyard_canonical::now_ms())
        .bind(domain)
        .bind(resource_id)
        .bind(expected)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(written == 1)
    }

    pub async fn resource(&self, domain: &str, resource_id: &str) -> Result<Option<ResourceState>, StoreError> {
        let row = sqlx::query("SELECT resource_id, status, body, updated_at_ms FROM gateway_resources WHERE domain = $1 AND resource_id = $2")
            .bind(domain)
            .bind(resource_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| resource_from_row(&r)).transpose()
    }

    /// Resources of `domain` in `status`, oldest change first, at most `limit`.
    pub async fn resources_in(&self, domain: &str, status: &str, limit: i64) -> Result<Vec<ResourceState>, StoreError> {
        let rows = sqlx::query(
            "SELECT resource_id, status, body, updated_at_ms FROM gateway_resources WHERE domain = $1 AND status = $2 \
             ORDER BY updated_at_ms, resource_id LIMIT $3",
        )
        .bind(domain)
        .bind(status)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(resource_from_row).collect()
    }
}

fn resource_from_row(row: &sqlx::any::AnyRow) -> Result<ResourceState, StoreError> {
    Ok(ResourceState {
        resource_id: row.try_get("resource_id")?,
        status: row.try_get("status")?,
        body: row.try_get("body")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Not a domain the gateway serves: these views are not valid payouts,
    /// and the schemathesis test lists the real domains from the same database.
    const TEST_DOMAIN: &str = "store-tests";

    fn claim<'a>(key: &'a str, digest: &'a str, lease_ms: i64) -> RequestClaim<'a> {
        RequestClaim { domain: TEST_DOMAIN, idempotency_key: key, request_digest: digest, resource_id: "po-1", lease_ms }
    }

    #[tokio::test]
    async fn a_key_is_claimed_once_then_replayed_refused_or_taken_over() {
        for store in crate::test_stores().await {
            let gateway = GatewayStore::open(&store).await.expect("ddl");
            let key = format!("gw-{}-{}", std::process::id(), switchyard_canonical::now_ms());
            assert_eq!(gateway.claim(&claim(&key, "d1", 60_000)).await.expect("claim"), RequestVerdict::Claimed);
            assert_eq!(gateway.claim(&claim(&key, "d1", 60_000)).await.expect("copy"), RequestVerdict::InFlight);
            assert_eq!(gateway.claim(&claim(&key, "d2", 60_000)).await.expect("other"), RequestVerdict::Mismatch);
            gateway.answer(TEST_DOMAIN, &key, 202, "{\"id\":\"po-1\"}", None).await.expect("answer");
            let replay = RequestVerdict::Replay { status: 202, body: "{\"id\":\"po-1\"}".into() };
            assert_eq!(gateway.claim(&claim(&key, "d1", 60_000)).await.expect("replay"), replay);
            assert_eq!(gateway.claim(&claim(&key, "d2", 60_000)).await.expect("other"), RequestVerdict::Mismatch);

            // A holder that died: its lease runs out and one copy takes over.
            let dead = format!("{key}-dead");
            assert_eq!(gateway.claim(&claim(&dead, "d1", -1)).await.expect("claim"), RequestVerdict::Claimed);
            assert_eq!(gateway.claim(&claim(&dead, "d1", 60_000)).await.expect("take over"), RequestVerdict::Claimed);
            assert_eq!(gateway.claim(&claim(&dead, "d1", 60_000)).await.expect("copy"), RequestVerdict::InFlight);
            // A released claim is new again.
            gateway.release(TEST_DOMAIN, &dead).await.expect("release");
            assert_eq!(gateway.claim(&claim(&dead, "d1", 60_000)).await.expect("again"), RequestVerdict::Claimed);
        }
    }

    /// Only the requests' own connections skip the WAL flush wait; the
    /// store's, which the workers' claims and the audit log use, keep it.
    #[tokio::test]
    async fn only_the_requests_connections_commit_without_waiting_for_the_flush() {
        for store in crate::test_stores().await {
            let gateway = GatewayStore::open(&store).await.expect("ddl");
            if Dialect::of(&gateway.pool) == Dialect::Sqlite {
                continue;
            }
            let setting = |pool: AnyPool| async move {
                sqlx::query("SELECT current_setting('synchronous_commit') AS s").fetch_one(&pool).await.expect("show").try_get::<String, _>("s").expect("text")
            };
            assert_eq!(setting(gateway.requests.clone()).await, "off");
            assert_eq!(setting(store.pool().clone()).await, "on");
        }
    }

    /// Claims and answers share statements when they come together: copies
    /// of one key in one batch must still get one claim between them, and
    /// each answer its own row and view.
    #[tokio::test]
    async fn concurrent_claims_and_answers_share_statements_but_not_outcomes() {
        for store in crate::test_stores().await {
            let gateway = GatewayStore::open(&store).await.expect("ddl");
            let run = format!("gwb-{}-{}", std::process::id(), switchyard_canonical::now_ms());
            let keys: Vec<String> = (0..60).map(|i| format!("{run}-{i}")).collect();
            let ids: Vec<String> = (0..60).map(|i| format!("po-{run}-{i}")).collect();
            let claims = keys.iter().zip(&ids).flat_map(|(key, id)| {
                let gateway = gateway.clone();
                (0..3).map(move |_| {
                    let gateway = gateway.clone();
                    async move {
                        let claim = RequestClaim { domain: TEST_DOMAIN, idempotency_key: key, request_digest: "d1", resource_id: id, lease_ms: 60_000 };
                        (key.clone(), gateway.claim(&claim).await.expect("claim"))
                    }
                })
            });
            let verdicts = futures::future::join_all(claims).await;
            for key in &keys {
                let mine: Vec<&RequestVerdict> = verdicts.iter().filter(|(k, _)| k == key).map(|(_, v)| v).collect();
                let claimed = mine.iter().filter(|v| ***v == RequestVerdict::Claimed).count();
                assert_eq!(claimed, 1, "{key}: {mine:?}");
                assert!(mine.iter().all(|v| matches!(v, RequestVerdict::Claimed | RequestVerdict::InFlight)), "{key}: {mine:?}");
            }
            // A resource the projection already moved keeps its later state.
            gateway.upsert_resource(TEST_DOMAIN, &ids[0], "submitted", "{\"later\":true}", 5).await.expect("projected");
            let answers = keys.iter().zip(&ids).map(|(key, id)| {
                let gateway = gateway.clone();
                async move {
                    let body = format!("{{\"id\":\"{id}\"}}");
                    let view = CreatedView { domain: TEST_DOMAIN, resource_id: id, status: "accepted" };
                    gateway.answer(TEST_DOMAIN, key, 202, &body, Some(view)).await.expect("answer");
                }
            });
            futures::future::join_all(answers).await;
            for (key, id) in keys.iter().zip(&ids) {
                let body = format!("{{\"id\":\"{id}\"}}");
                let claim = RequestClaim { domain: TEST_DOMAIN, idempotency_key: key, request_digest: "d1", resource_id: id, lease_ms: 60_000 };
                assert_eq!(gateway.claim(&claim).await.expect("replay"), RequestVerdict::Replay { status: 202, body: body.clone() });
                let view = gateway.resource(TEST_DOMAIN, id).await.expect("read").expect("a view");
                if id == &ids[0] {
                    assert_eq!(view.status, "submitted", "the accepted view overwrote a projected one");
                } else {
                    assert_eq!((view.status.as_str(), view.body.as_str()), ("accepted", body.as_str()));
                }
            }
        }
    }

    #[tokio::test]
    async fn an_amend_loses_to_a_write_between_its_read_and_its_write() {
        for store in crate::test_stores().await {
            let g = GatewayStore::open(&store).await.expect("open");
            let id = format!("card-{}", switchyard_canonical::now_ms());
            g.upsert_resource("cards", &id, "issued", "{\"v\":1}", 10).await.expect("write");
            let read = g.resource("cards", &id).await.expect("read").expect("a view");
            // Another consumer writes after our read.
            g.upsert_resource("cards", &id, "active", "{\"v\":2}", 20).await.expect("write");
            assert!(!g.amend_resource("cards", &id, &read.body, "terminated", "{\"v\":3}", 30).await.expect("amend"), "amended over a view it did not read");
            assert_eq!(g.resource("cards", &id).await.expect("read").expect("a view").status, "active");
            assert!(g.amend_resource("cards", &id, "{\"v\":2}", "terminated", "{\"v\":3}", 30).await.expect("amend"));
            assert!(!g.amend_resource("cards", &id, "{\"v\":3}", "active", "{\"v\":4}", 25).await.expect("amend"), "an older observation never wins");
            assert!(!g.amend_resource("cards", "no-such-card", "{}", "x", "{}", 1).await.expect("amend"));
        }
    }

    #[tokio::test]
    async fn an_older_observation_never_overwrites_a_newer_one() {
        for store in crate::test_stores().await {
            let gateway = GatewayStore::open(&store).await.expect("ddl");
            let id = format!("po-{}-{}", std::process::id(), switchyard_canonical::now_ms());
            assert_eq!(gateway.resource(TEST_DOMAIN, &id).await.expect("read"), None);
            gateway.upsert_resource(TEST_DOMAIN, &id, "accepted", "{}", 10).await.expect("write");
            gateway.upsert_resource(TEST_DOMAIN, &id, "pending_unknown", "{\"s\":2}", 30).await.expect("write");
            assert!(!gateway.upsert_resource(TEST_DOMAIN, &id, "submitted", "{\"s\":1}", 20).await.expect("late, older"), "not written");
            assert!(gateway.upsert_resource(TEST_DOMAIN, &id, "pending_unknown", "{\"s\":2}", 30).await.expect("again"), "as new: written again");
            let state = gateway.resource(TEST_DOMAIN, &id).await.expect("read").expect("present");
            assert_eq!((state.status.as_str(), state.body.as_str()), ("pending_unknown", "{\"s\":2}"));
            let listed = gateway.resources_in(TEST_DOMAIN, "pending_unknown", 10_000).await.expect("list");
            assert!(listed.iter().any(|r| r.resource_id == id));
        }
    }
}
