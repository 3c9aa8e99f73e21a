//! Webhook dedup: one row per `(provider, event id)`, so a vendor's retries
//! and duplicates are published once.
//!
//! The row is claimed with a lease *before* publishing and marked published
//! after the broker acknowledged. A duplicate arriving while the first copy
//! is being published sees a live lease and is told to come back later
//! ([`DedupVerdict::InFlight`]), so two copies never publish at once.
//!
//! What happened to an earlier attempt decides how a later one may publish:
//! - `pending`, released (lease 0): every attempt so far failed *before*
//!   anything could reach the broker; the next claimer publishes
//!   ([`DedupVerdict::Claimed`]).
//! - `unverified`: an attempt's result is unknown: the producer reported a
//!   timeout for a record the broker may have written, or the lease ran out
//!   under a claimer that died or whose mark was lost after the broker's
//!   acknowledgement. The next claimer must look on the bus before
//!   publishing ([`DedupVerdict::Unverified`]); the row stays unverified
//!   until it is published, since that earlier record may still be found.
//! - `published`: done. Exactly one mark moves a row there, and says so
//!   (`true`), so a caller counting what it marks counts each event once,
//!   however many attempts published it or found it on the bus.
//!
//! Any body takes over a row that was never published, even a different
//! one: vendors re-render retries (retry counters, Stripe's
//! `pending_webhooks`), and the retry's digest replaces the first one's.
//! Only once the event is published does the digest tell an honest
//! re-delivery from a vendor reusing an id for another body.
//!
//! Claims and publications are group-committed (see `batch`), which is what
//! lets the ingester answer thousands of callbacks per second.

use crate::batch::{BatchFn, Batcher};
use crate::records::{Bind, Sql};
use crate::StoreError;
use futures::FutureExt;
use sqlx::{AnyPool, Row};
use std::collections::HashMap;

const DDL: &str = "CREATE TABLE IF NOT EXISTS webhook_events (
    provider TEXT NOT NULL,
    event_id TEXT NOT NULL,
    payload_sha256 TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    state TEXT NOT NULL,
    lease_until_ms BIGINT NOT NULL,
    received_at_ms BIGINT NOT NULL,
    published_at_ms BIGINT,
    PRIMARY KEY (provider, event_id)
)";

const MAX_BATCH: usize = 256;
const PARALLEL_BATCHES: usize = 2;

/// A request to own the publication of one event.
#[derive(Debug, Clone)]
pub struct DedupClaim {
    pub provider: String,
    pub event_id: String,
    pub payload_sha256: String,
    pub subject_id: String,
    /// How long the claimer may take to publish before another may take over.
    pub lease_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DedupVerdict {
    /// First sight, or every earlier attempt failed before sending: publish it.
    Claimed,
    /// Claimed, but an earlier attempt (begun at `since_ms`) may have put
    /// the event on the bus: look there before publishing it again.
    Unverified { since_ms: i64 },
    /// Already published with this very body: acknowledge, publish nothing.
    Duplicate,
    /// Another delivery of it (whatever its body) is being published right
    /// now: ask the vendor to retry. Acknowledging a differing body here
    /// would lose the event if that publish fails.
    InFlight,
    /// The id was published with a different body: the vendor reused an id.
    IdReused,
}

/// The dedup table with its group-commit queues.
#[derive(Clone)]
pub struct WebhookDedup {
    pool: AnyPool,
    claims: Batcher<DedupClaim, DedupVerdict>,
    published: Batcher<(String, String), bool>,
}

/// A queued mark ([`WebhookDedup::mark_published_later`]): resolves to
/// whether this mark is the one that made the row published.
pub type PendingMark = futures::future::BoxFuture<'static, Result<bool, StoreError>>;

impl WebhookDedup {
    /// Creates the table if needed and starts the batchers.
    pub async fn open(store: &crate::Store) -> Result<Self, StoreError> {
        let pool = store.pool().clone();
        // Concurrent first starts race on PostgreSQL's catalog even with
        // IF NOT EXISTS; a second try sees the winner's table.
        let mut tries = 0;
        while let Err(e) = sqlx::query(DDL).execute(&pool).await {
            tries += 1;
            if tries > 5 {
                return Err(e.into());
            }
            tokio::time::sleep(std::time::Duration::from_millis(50 * tries)).await;
        }
        // SQLite has one writer; parallel batches would only queue on its lock.
        let is_sqlite = pool.connect_options().database_url.scheme().starts_with("sqlite");
        let parallel = if is_sqlite { 1 } else { PARALLEL_BATCHES };
        let claim: BatchFn<DedupClaim, DedupVerdict> = claim_batch;
        let publish: BatchFn<(String, String), bool> = published_batch;
        Ok(Self {
            claims: Batcher::spawn(pool.clone(), MAX_BATCH, parallel, claim),
            published: Batcher::spawn(pool.clone(), MAX_BATCH, parallel, publish),
            pool,
        })
    }

    pub async fn claim(&self, claim: DedupClaim) -> Result<DedupVerdict, StoreError> {
        self.claims.submit(claim).await
    }

    /// Records that the event is on the bus. `true` if this mark made the
    /// row published, `false` if another attempt's mark already had: two
    /// attempts may both know the event is on the bus (one published it and
    /// marked late, after its lease ran out; the other took the row over
    /// and found the event there), and only one of them may count it.
    pub async fn mark_published(&self, provider: &str, event_id: &str) -> Result<bool, StoreError> {
        self.published.submit((provider.to_owned(), event_id.to_owned())).await
    }

    /// Queues the mark, waiting only while the queue is full, and returns
    /// its result to await apart: the event is already on the bus, so the
    /// callback can be answered now. Until the mark commits, a copy of the
    /// event sees the claim in flight and is told to retry; a mark lost to a
    /// crash leaves the lease to expire, after which the row is unverified
    /// and a copy finds the event on the bus.
    pub async fn mark_published_later(&self, provider: &str, event_id: &str) -> Result<PendingMark, StoreError> {
        let pending = self.published.submit_queued((provider.to_owned(), event_id.to_owned())).await?;
        Ok(Box::pin(pending))
    }

    /// Gives up a claim whose publication failed *before anything was
    /// sent* (or whose look on the bus failed), so the vendor's retry can
    /// take it at once instead of waiting for the lease to expire. An
    /// unverified row stays unverified.
    pub async fn release(&self, provider: &str, event_id: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE webhook_events SET lease_until_ms = 0 WHERE provider = $1 AND event_id = $2 AND state <> 'published'",
        )
        .bind(provider)
        .bind(event_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records that a publication's result is unknown: the broker may have
    /// written the event. No copy may publish it for `hold_ms` (time for a
    /// request the broker already holds to land), and after that only once
    /// it was looked for on the bus and not found.
    pub async fn mark_unknown(&self, provider: &str, event_id: &str, hold_ms: i64) -> Result<(), StoreError> {
        let until = switchyard_canonical::now_ms() + hold_ms;
        sqlx::query(
            "UPDATE webhook_events SET state = 'unverified', lease_until_ms = $1 \
             WHERE provider = $2 AND event_id = $3 AND state <> 'published'",
        )
        .bind(until)
        .bind(provider)
        .bind(event_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Published events of a provider, for tests and ops.
    pub async fn published_count(&self, provider: &str) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM webhook_events WHERE provider = $1 AND state = 'published'")
            .bind(provider)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>("n")?)
    }
}

fn claim_batch<'a>(pool: &'a AnyPool, claims: &'a [DedupClaim]) -> futures::future::BoxFuture<'a, Result<Vec<DedupVerdict>, sqlx::Error>> {
    async move {
        let now = switchyard_canonical::now_ms();
        // An upsert may touch a row once per statement: the first copy of an
        // id in the batch competes, later copies see it in flight.
        let mut first: HashMap<(&str, &str), usize> = HashMap::new();
        for (i, c) in claims.iter().enumerate() {
            first.entry((c.provider.as_str(), c.event_id.as_str())).or_insert(i);
        }
        let mut insert = Sql::new(
            "INSERT INTO webhook_events (provider, event_id, payload_sha256, subject_id, state, lease_until_ms, received_at_ms) VALUES ",
        );
        for (n, &i) in first.values().enumerate() {
            let c = &claims[i];
            if n > 0 {
                insert.push(", ");
            }
            insert.tuple([
                Bind::Text(Some(&c.provider)),
                Bind::Text(Some(&c.event_id)),
                Bind::Text(Some(&c.payload_sha256)),
                Bind::Text(Some(&c.subject_id)),
                Bind::Text(Some("pending")),
                Bind::Int(now + c.lease_ms),
                Bind::Int(now),
            ]);
        }
        // Any body takes over a row never published whose lease ended. A
        // released pending row (lease 0: its attempts failed before sending)
        // stays pending; a lease that merely ran out, or an unknown result,
        // makes the row unverified, and it keeps the time of its first
        // attempt, from which the bus is searched. The SET expressions read
        // the row as it was before this update.
        insert
            .push(
                " ON CONFLICT (provider, event_id) DO UPDATE SET lease_until_ms = excluded.lease_until_ms, \
                 payload_sha256 = excluded.payload_sha256, subject_id = excluded.subject_id, \
                 state = CASE WHEN webhook_events.state = 'pending' AND webhook_events.lease_until_ms = 0 \
                   THEN 'pending' ELSE 'unverified' END, \
                 received_at_ms = CASE WHEN webhook_events.state = 'pending' AND webhook_events.lease_until_ms = 0 \
                   THEN excluded.received_at_ms ELSE webhook_events.received_at_ms END \
                 WHERE webhook_events.state IN ('pending', 'unverified') AND webhook_events.lease_until_ms < ",
            )
            .bind(Bind::Int(now))
            .push(" RETURNING provider, event_id, state, received_at_ms");
        // Claimed ids, with the time of the first attempt if it may be on the bus.
        let mut claimed: HashMap<(String, String), Option<i64>> = HashMap::new();
        for row in insert.query().persistent(false).fetch_all(pool).await? {
            let state: String = row.try_get("state")?;
            let since = if state == "unverified" { Some(row.try_get::<i64, _>("received_at_ms")?) } else { None };
            claimed.insert((row.try_get("provider")?, row.try_get("event_id")?), since);
        }
        // Only the ids we did not get need a look at who holds them.
        let mut by_provider: HashMap<&str, Vec<&str>> = HashMap::new();
        for (&(provider, event_id), _) in first.iter() {
            if !claimed.contains_key(&(provider.to_owned(), event_id.to_owned())) {
                by_provider.entry(provider).or_default().push(event_id);
            }
        }
        let mut existing: HashMap<(String, String), (String, String)> = HashMap::new();
        for (provider, ids) in by_provider {
            let mut select = Sql::new("SELECT event_id, state, payload_sha256 FROM webhook_events WHERE provider = ");
            select.bind(Bind::Text(Some(provider))).push(" AND event_id IN ");
            select.tuple(ids.into_iter().map(|id| Bind::Text(Some(id))));
            for row in select.query().persistent(false).fetch_all(pool).await? {
                let id: String = row.try_get("event_id")?;
                existing.insert((provider.to_owned(), id), (row.try_get("state")?, row.try_get("payload_sha256")?));
            }
        }
        Ok(claims
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let id = (c.provider.clone(), c.event_id.clone());
                let is_first = first.get(&(c.provider.as_str(), c.event_id.as_str())) == Some(&i);
                if let Some(since) = claimed.get(&id) {
                    // A later copy in the same batch waits for the first,
                    // whose publish may still fail.
                    return match (is_first, since) {
                        (false, _) => DedupVerdict::InFlight,
                        (true, None) => DedupVerdict::Claimed,
                        (true, Some(since_ms)) => DedupVerdict::Unverified { since_ms: *since_ms },
                    };
                }
                match existing.get(&id) {
                    Some((state, sha)) if state == "published" && *sha == c.payload_sha256 => DedupVerdict::Duplicate,
                    Some((state, _)) if state == "published" => DedupVerdict::IdReused,
                    // Pending under someone's live lease, or vanished (cannot
                    // happen: rows are never deleted); either way, retry later.
                    _ => DedupVerdict::InFlight,
                }
            })
            .collect())
    }
    .boxed()
}

/// One statement for the whole batch, so a batch split after a data error
/// re-runs nothing that committed. Only rows not yet published are updated
/// and returned: the request that moved a row gets `true` (the first one,
/// if an id is twice in the batch), every other `false`.
fn published_batch<'a>(pool: &'a AnyPool, ids: &'a [(String, String)]) -> futures::future::BoxFuture<'a, Result<Vec<bool>, sqlx::Error>> {
    async move {
        let now = switchyard_canonical::now_ms();
        let mut update = Sql::new("UPDATE webhook_events SET state = 'published', published_at_ms = ");
        update.bind(Bind::Int(now)).push(" WHERE state <> 'published' AND (provider, event_id) IN (");
        for (n, (provider, event_id)) in ids.iter().enumerate() {
            if n > 0 {
                update.push(", ");
            }
            update.tuple([Bind::Text(Some(provider)), Bind::Text(Some(event_id))]);
        }
        update.push(") RETURNING provider, event_id");
        let rows = match update.query().persistent(false).fetch_all(pool).await {
            Ok(rows) => rows,
            Err(e) => {
                // Callers may not wait for this batch (mark_published_later).
                tracing::warn!(error = %e, "webhook events not marked published; their leases will expire");
                return Err(e);
            }
        };
        let mut moved: std::collections::HashSet<(String, String)> = std::collections::HashSet::with_capacity(rows.len());
        for row in rows {
            moved.insert((row.try_get("provider")?, row.try_get("event_id")?));
        }
        // `remove`: a second request for the same id in this batch moved nothing.
        Ok(ids.iter().map(|id| moved.remove(id)).collect())
    }
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    async fn stores() -> Vec<Store> {
        crate::test_stores().await
    }

    fn claim(event_id: &str, sha: &str) -> DedupClaim {
        DedupClaim {
            provider: "test-vendor".into(),
            event_id: event_id.into(),
            payload_sha256: sha.into(),
            subject_id: "po-1".into(),
            lease_ms: 60_000,
        }
    }

    #[tokio::test]
    async fn a_retry_with_a_re_rendered_body_takes_over_a_released_claim() {
        for store in stores().await {
            let dedup = WebhookDedup::open(&store).await.expect("ddl");
            let id = format!("evt-{}-{}", std::process::id(), switchyard_canonical::now_ms());
            assert_eq!(dedup.claim(claim(&id, "sha-first")).await.expect("claim"), DedupVerdict::Claimed);
            // While the first delivery publishes, a re-rendered copy must not
            // be acknowledged: that publish may still fail.
            assert_eq!(dedup.claim(claim(&id, "sha-retry")).await.expect("claim"), DedupVerdict::InFlight);
            // Its publish failed: nothing is on the bus, so the vendor's
            // retry (retry counter re-rendered in the body) must publish.
            dedup.release("test-vendor", &id).await.expect("release");
            assert_eq!(
                dedup.claim(claim(&id, "sha-retry")).await.expect("claim"),
                DedupVerdict::Claimed,
                "a never-published row accepts the retried body"
            );
            dedup.mark_published("test-vendor", &id).await.expect("mark");
            // Published now with the retry's body: that body is the duplicate,
            // the first one a reuse of the id.
            assert_eq!(dedup.claim(claim(&id, "sha-retry")).await.expect("claim"), DedupVerdict::Duplicate);
            assert_eq!(dedup.claim(claim(&id, "sha-first")).await.expect("claim"), DedupVerdict::IdReused);
        }
    }

    #[tokio::test]
    async fn copies_in_one_batch_with_different_bodies_wait_for_the_owner() {
        for store in stores().await {
            let dedup = WebhookDedup::open(&store).await.expect("ddl");
            let id = format!("evt-batch-{}-{}", std::process::id(), switchyard_canonical::now_ms());
            let (a, b) = tokio::join!(dedup.claim(claim(&id, "sha-a")), dedup.claim(claim(&id, "sha-b")));
            let (a, b) = (a.expect("claim"), b.expect("claim"));
            assert!(
                matches!((a, b), (DedupVerdict::Claimed, DedupVerdict::InFlight) | (DedupVerdict::InFlight, DedupVerdict::Claimed)),
                "{a:?} {b:?}"
            );
        }
    }

    /// Two attempts may both know an event is on the bus (one published it
    /// and marked late; the other took the row over and found the event):
    /// exactly one mark says it moved the row, whether the marks come one
    /// after the other or in one batch.
    #[tokio::test]
    async fn exactly_one_mark_moves_a_row_to_published() {
        for store in stores().await {
            let dedup = WebhookDedup::open(&store).await.expect("ddl");
            let run = format!("{}-{}", std::process::id(), switchyard_canonical::now_ms());
            let one = format!("evt-mark-{run}");
            assert_eq!(dedup.claim(claim(&one, "sha")).await.expect("claim"), DedupVerdict::Claimed);
            let late = dedup.mark_published_later("test-vendor", &one).await.expect("queued");
            assert!(late.await.expect("mark"), "the first mark moves the row");
            assert!(!dedup.mark_published("test-vendor", &one).await.expect("mark"), "a second mark moves nothing");

            let both = format!("evt-mark-both-{run}");
            let other = format!("evt-mark-other-{run}");
            for id in [&both, &other] {
                assert_eq!(dedup.claim(claim(id, "sha")).await.expect("claim"), DedupVerdict::Claimed);
            }
            let (a, b, c) = tokio::join!(
                dedup.mark_published("test-vendor", &both),
                dedup.mark_published("test-vendor", &both),
                dedup.mark_published("test-vendor", &other)
            );
            let (a, b, c) = (a.expect("mark"), b.expect("mark"), c.expect("mark"));
            assert!(a ^ b, "one of two marks of one id moves it: {a} {b}");
            assert!(c, "another id in the same batch is moved too");
        }
    }

    /// A publication whose result is unknown, or a lease that ran out under
    /// its holder, may have put the event on the bus: no later claimer may
    /// publish without looking there first, however often it is released.
    #[tokio::test]
    async fn an_unknown_result_or_an_expired_lease_makes_the_next_claimer_verify() {
        for store in stores().await {
            let dedup = WebhookDedup::open(&store).await.expect("ddl");
            let run = format!("{}-{}", std::process::id(), switchyard_canonical::now_ms());
            let unknown = format!("evt-unknown-{run}");
            assert_eq!(dedup.claim(claim(&unknown, "sha")).await.expect("claim"), DedupVerdict::Claimed);
            dedup.mark_unknown("test-vendor", &unknown, 150).await.expect("unknown");
            assert_eq!(dedup.claim(claim(&unknown, "sha")).await.expect("claim"), DedupVerdict::InFlight, "held while a request the broker holds may land");
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            let verdict = dedup.claim(claim(&unknown, "sha-retry")).await.expect("claim");
            assert!(matches!(verdict, DedupVerdict::Unverified { .. }), "{verdict:?}");
            // The look on the bus failed: released, still unverified.
            dedup.release("test-vendor", &unknown).await.expect("release");
            let again = dedup.claim(claim(&unknown, "sha-retry")).await.expect("claim");
            assert_eq!(again, verdict, "still unverified, searched from the first attempt");
            dedup.mark_published("test-vendor", &unknown).await.expect("mark");
            assert_eq!(dedup.claim(claim(&unknown, "sha-retry")).await.expect("claim"), DedupVerdict::Duplicate);

            let expired = format!("evt-expired-{run}");
            let short = DedupClaim { lease_ms: 50, ..claim(&expired, "sha") };
            assert_eq!(dedup.claim(short).await.expect("claim"), DedupVerdict::Claimed);
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            let verdict = dedup.claim(claim(&expired, "sha")).await.expect("claim");
            assert!(matches!(verdict, DedupVerdict::Unverified { .. }), "a lease that ran out: {verdict:?}");
        }
    }
}
