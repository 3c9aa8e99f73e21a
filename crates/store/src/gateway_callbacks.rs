//! The HTTP gateway's callbacks to consuming teams: who created each
//! resource, and an outbox of signed deliveries, one per
//! `(domain, resource, terminal status)`.
//!
//! The owner is recorded when a POST claims its key, before the command is
//! published, so no outcome can be projected before its owner is known; it
//! has its own table because `gateway_resources` must not show a resource
//! whose command the broker has not acknowledged yet, and
//! `gateway_requests` is keyed by idempotency key (actions on a resource,
//! by any team, have their own rows there).
//!
//! A delivery's id is derived from `(domain, resource, status)`, so a
//! redelivered or replayed outcome inserts nothing new. Gateway instances
//! share the outbox: each claims due deliveries under a lease (`FOR UPDATE
//! SKIP LOCKED` on PostgreSQL; SQLite has one writer), and a claim counts
//! as an attempt, so an instance dying mid-delivery still uses one up.

use crate::bulk::Dialect;
use crate::{Store, StoreError};
use sqlx::{AnyPool, Row};

const DDL: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS gateway_resource_owners (
        domain TEXT NOT NULL,
        resource_id TEXT NOT NULL,
        team TEXT NOT NULL,
        claimed_at_ms BIGINT NOT NULL,
        PRIMARY KEY (domain, resource_id)
    )",
    "CREATE TABLE IF NOT EXISTS gateway_callbacks (
        delivery_id TEXT PRIMARY KEY,
        domain TEXT NOT NULL,
        resource_id TEXT NOT NULL,
        status TEXT NOT NULL,
        team TEXT NOT NULL,
        payload TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts BIGINT NOT NULL,
        next_at_ms BIGINT NOT NULL,
        lease_owner TEXT,
        lease_until_ms BIGINT NOT NULL,
        last_error TEXT,
        created_at_ms BIGINT NOT NULL,
        updated_at_ms BIGINT NOT NULL
    )",
    // The deliverer's poll: pending rows by due time.
    "CREATE INDEX IF NOT EXISTS gateway_callbacks_due ON gateway_callbacks (state, next_at_ms)",
    "CREATE INDEX IF NOT EXISTS gateway_callbacks_resource ON gateway_callbacks (domain, resource_id)",
];

/// Where a delivery stands.
pub const PENDING: &str = "pending";
pub const DELIVERED: &str = "delivered";
/// Given up after the team's last attempt.
pub const FAILED: &str = "failed";

/// A delivery to enqueue.
#[derive(Debug, Clone)]
pub struct NewCallback<'a> {
    /// Stable across retries: the receiver deduplicates by it (`webhook-id`).
    pub delivery_id: &'a str,
    pub domain: &'a str,
    pub resource_id: &'a str,
    pub status: &'a str,
    pub team: &'a str,
    /// The JSON body sent, identical on every attempt.
    pub payload: &'a str,
}

/// A delivery as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callback {
    pub delivery_id: String,
    pub domain: String,
    pub resource_id: String,
    pub status: String,
    pub team: String,
    pub payload: String,
    pub state: String,
    /// Attempts started so far, the current one included once claimed.
    pub attempts: i64,
    pub next_at_ms: i64,
    /// Status code or transport error of the last failed attempt; never a body.
    pub last_error: Option<String>,
}

const COLUMNS: &str = "delivery_id, domain, resource_id, status, team, payload, state, attempts, next_at_ms, last_error";

/// The callbacks' tables.
#[derive(Debug, Clone)]
pub struct CallbackStore {
    pool: AnyPool,
    dialect: Dialect,
}

impl CallbackStore {
    pub async fn open(store: &Store) -> Result<Self, StoreError> {
        let pool = store.pool().clone();
        crate::schema::create_all(&pool, DDL).await?;
        let dialect = Dialect::of(&pool);
        Ok(Self { pool, dialect })
    }

    /// Records `team` as the creator of a resource. The latest claim wins:
    /// a claim released after a failed publish may be taken by another
    /// team's request with the same key, whose command is then the one on
    /// the bus.
    pub async fn record_owner(&self, domain: &str, resource_id: &str, team: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO gateway_resource_owners (domain, resource_id, team, claimed_at_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (domain, resource_id) DO UPDATE SET team = excluded.team, claimed_at_ms = excluded.claimed_at_ms",
        )
        .bind(domain)
        .bind(resource_id)
        .bind(team)
        .bind(switchyard_canonical::now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn owner(&self, domain: &str, resource_id: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT team FROM gateway_resource_owners WHERE domain = $1 AND resource_id = $2")
            .bind(domain)
            .bind(resource_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("team")).transpose()?)
    }

    /// Queues a delivery, due now; false when it was queued before (a
    /// redelivered outcome).
    pub async fn enqueue(&self, callback: &NewCallback<'_>) -> Result<bool, StoreError> {
        let now = switchyard_canonical::now_ms();
        let inserted = sqlx::query(
            "INSERT INTO gateway_callbacks (delivery_id, domain, resource_id, status, team, payload, state, attempts, next_at_ms, lease_until_ms, created_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, 0, $7, $7) ON CONFLICT (delivery_id) DO NOTHING",
        )
        .bind(callback.delivery_id)
        .bind(callback.domain)
        .bind(callback.resource_id)
        .bind(callback.status)
        .bind(callback.team)
        .bind(callback.payload)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(inserted == 1)
    }

    /// Leases up to `limit` due deliveries of `teams` to `owner` for
    /// `lease_ms` and counts the attempt. Another instance skips leased
    /// rows; a lease that ran out (its holder died) makes the row due
    /// again. Only the teams the caller can deliver to: during a rolling
    /// configuration change an instance that does not know a team's
    /// callback yet leaves its deliveries to one that does.
    pub async fn claim_due(&self, owner: &str, teams: &[&str], lease_ms: i64, limit: i64) -> Result<Vec<Callback>, StoreError> {
        if teams.is_empty() {
            return Ok(Vec::new());
        }
        let now = switchyard_canonical::now_ms();
        let teams_in = (0..teams.len()).map(|i| format!("${}", i + 5)).collect::<Vec<_>>().join(", ");
        let lock = match self.dialect {
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
            Dialect::Sqlite => "",
        };
        // The outer condition is checked again on the row as it is when
        // updated: of two instances that picked the same row, one wins.
        let sql = format!(
            "UPDATE gateway_callbacks SET lease_owner = $1, lease_until_ms = $2, attempts = attempts + 1, updated_at_ms = $3 \
             WHERE state = 'pending' AND next_at_ms <= $3 AND lease_until_ms <= $3 AND delivery_id IN ( \
               SELECT delivery_id FROM gateway_callbacks WHERE state = 'pending' AND next_at_ms <= $3 AND lease_until_ms <= $3 \
               AND team IN ({teams_in}) ORDER BY next_at_ms LIMIT $4{lock}) \
             RETURNING {COLUMNS}"
        );
        let mut query = sqlx::query(&sql).bind(owner).bind(now + lease_ms).bind(now).bind(limit);
        for team in teams {
            query = query.bind(*team);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(from_row).collect()
    }

    /// Marks a leased delivery delivered; false if the lease was lost.
    pub async fn delivered(&self, delivery_id: &str, owner: &str) -> Result<bool, StoreError> {
        self.finish(delivery_id, owner, DELIVERED, None, 0).await
    }

    /// Puts a leased delivery back, due at `next_at_ms`.
    pub async fn retry_at(&self, delivery_id: &str, owner: &str, next_at_ms: i64, error: &str) -> Result<bool, StoreError> {
        self.finish(delivery_id, owner, PENDING, Some(error), next_at_ms).await
    }

    /// Gives a leased delivery up.
    pub async fn give_up(&self, delivery_id: &str, owner: &str, error: &str) -> Result<bool, StoreError> {
        self.finish(delivery_id, owner, FAILED, Some(error), 0).await
    }

    async fn finish(&self, delivery_id: &str, owner: &str, state: &str, error: Option<&str>, next_at_ms: i64) -> Result<bool, StoreError> {
        let updated = sqlx::query(
            "UPDATE gateway_callbacks SET state = $1, last_error = COALESCE($2, last_error), next_at_ms = $3, lease_owner = NULL, \
             lease_until_ms = 0, updated_at_ms = $4 WHERE delivery_id = $5 AND lease_owner = $6 AND state = 'pending'",
        )
        .bind(state)
        .bind(error)
        .bind(next_at_ms)
        .bind(switchyard_canonical::now_ms())
        .bind(delivery_id)
        .bind(owner)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated == 1)
    }

    /// Every delivery about one resource, oldest first.
    pub async fn of_resource(&self, domain: &str, resource_id: &str) -> Result<Vec<Callback>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM gateway_callbacks WHERE domain = $1 AND resource_id = $2 ORDER BY created_at_ms, delivery_id"))
            .bind(domain)
            .bind(resource_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(from_row).collect()
    }
}

fn from_row(row: &sqlx::any::AnyRow) -> Result<Callback, StoreError> {
    Ok(Callback {
        delivery_id: row.try_get("delivery_id")?,
        domain: row.try_get("domain")?,
        resource_id: row.try_get("resource_id")?,
        status: row.try_get("status")?,
        team: row.try_get("team")?,
        payload: row.try_get("payload")?,
        state: row.try_get("state")?,
        attempts: row.try_get("attempts")?,
        next_at_ms: row.try_get("next_at_ms")?,
        last_error: row.try_get("last_error")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unique(what: &str) -> String {
        format!("{what}-{}", switchyard_canonical::CorrelationId::new_random().0)
    }

    #[tokio::test]
    async fn a_delivery_is_queued_once_leased_to_one_instance_and_retried_until_done() {
        for store in crate::test_stores().await {
            let callbacks = CallbackStore::open(&store).await.expect("ddl");
            let (id, resource, team) = (unique("msg"), unique("po"), unique("portal"));
            let teams = [team.as_str()];
            callbacks.record_owner("payouts", &resource, "app").await.expect("owner");
            assert_eq!(callbacks.owner("payouts", &resource).await.expect("read").as_deref(), Some("app"));
            callbacks.record_owner("payouts", &resource, &team).await.expect("taken over");
            assert_eq!(callbacks.owner("payouts", &resource).await.expect("read").as_deref(), Some(team.as_str()));

            let new = NewCallback { delivery_id: &id, domain: "payouts", resource_id: &resource, status: "paid", team: &team, payload: "{}" };
            assert!(callbacks.enqueue(&new).await.expect("enqueue"));
            assert!(!callbacks.enqueue(&new).await.expect("again"), "a redelivered outcome queues nothing");

            let mine = |all: Vec<Callback>| all.into_iter().filter(|c| c.delivery_id == id).collect::<Vec<_>>();
            let first = mine(callbacks.claim_due("gw-a", &teams, 60_000, 1_000).await.expect("claim"));
            assert_eq!(first.len(), 1);
            assert_eq!(first[0].attempts, 1);
            assert!(callbacks.claim_due("gw-a", &["someone-else"], 60_000, 1_000).await.expect("claim").iter().all(|c| c.team != team));
            assert!(mine(callbacks.claim_due("gw-b", &teams, 60_000, 1_000).await.expect("claim")).is_empty(), "leased to gw-a");
            assert!(!callbacks.delivered(&id, "gw-b").await.expect("not the holder"));
            assert!(callbacks.retry_at(&id, "gw-a", 0, "status 500").await.expect("back"));
            let second = mine(callbacks.claim_due("gw-b", &teams, 60_000, 1_000).await.expect("claim"));
            assert_eq!((second.len(), second[0].attempts, second[0].last_error.as_deref()), (1, 2, Some("status 500")));
            assert!(callbacks.delivered(&id, "gw-b").await.expect("delivered"));
            assert!(mine(callbacks.claim_due("gw-a", &teams, 60_000, 1_000).await.expect("claim")).is_empty(), "done");
            let stored = callbacks.of_resource("payouts", &resource).await.expect("read");
            assert_eq!((stored.len(), stored[0].state.as_str()), (1, DELIVERED));

            // A holder that died: its lease runs out and the row is due again.
            let dead = unique("msg");
            let new = NewCallback { delivery_id: &dead, status: "failed", ..new };
            assert!(callbacks.enqueue(&new).await.expect("enqueue"));
            let mine = |all: Vec<Callback>| all.into_iter().filter(|c| c.delivery_id == dead).count();
            assert_eq!(mine(callbacks.claim_due("gw-a", &teams, -1, 1_000).await.expect("claim")), 1);
            assert_eq!(mine(callbacks.claim_due("gw-b", &teams, 60_000, 1_000).await.expect("claim")), 1, "taken over");
            assert!(callbacks.give_up(&dead, "gw-b", "status 410").await.expect("give up"));
            assert!(mine(callbacks.claim_due("gw-a", &teams, 60_000, 1_000).await.expect("claim")) == 0, "failed is final");
        }
    }
}
