//! The idempotency record and the claim rule of the processing contract.
//!
//! A claim inserts `(domain, idempotency_key)` as `in_progress` with the chosen
//! provider and the key we will send it, *before* the vendor call, unless a
//! row exists. Either way the caller gets the row as it now stands:
//! - `completed`, same fingerprint: answer with the stored outcome, call no vendor;
//! - any state, other fingerprint: an idempotency collision;
//! - `in_progress`, same fingerprint: call the vendor recorded in the row with
//!   the key recorded in the row. That is our own fresh claim or the leftover
//!   of a crashed attempt; either way the vendor deduplicates the call, and the
//!   payout can never go to a second vendor by accident.
//!
//! A claim also carries an attempt **lease** (owner, epoch, expiry): the
//! creating claim holds epoch 1; any other delivery must take the lease
//! ([`crate::Store::acquire_lease`]) before it may call a vendor, and every
//! vendor call and reroute is fenced on the epoch (see [`crate::lease`]).

use crate::bulk::{self, Column, Dialect, Kind};
use futures::future::BoxFuture;
use futures::FutureExt;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};
use std::collections::{HashMap, HashSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordState {
    InProgress,
    Completed,
}

impl RecordState {
    fn as_str(self) -> &'static str {
        match self {
            RecordState::InProgress => "in_progress",
            RecordState::Completed => "completed",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Claim {
    pub domain: String,
    pub idempotency_key: String,
    pub fingerprint: String,
    pub subject_id: String,
    pub provider: String,
    /// The idempotency key in the vendor's own form, sent on every call.
    pub provider_key: String,
    pub correlation_id: String,
    /// Who holds the attempt lease if this claim creates the row: one token
    /// per delivery, so two deliveries of one command are told apart.
    pub lease_owner: String,
    /// How long the creating claim's lease lasts before it must be renewed.
    pub lease_ttl_ms: i64,
}

#[derive(Debug, Clone)]
pub struct Record {
    pub domain: String,
    pub idempotency_key: String,
    pub fingerprint: String,
    pub subject_id: String,
    pub state: RecordState,
    pub provider: Option<String>,
    pub provider_key: Option<String>,
    /// The canonical outcome as JSON, once completed.
    pub outcome: Option<String>,
    pub attempts: i64,
    pub correlation_id: String,
    /// True only for the claim that created the row: no earlier delivery can
    /// have called a vendor for it.
    pub fresh: bool,
    /// The attempt lease: a fencing token that grows with every takeover.
    pub lease_epoch: i64,
    pub lease_owner: Option<String>,
    pub lease_until_ms: i64,
    /// When `provider_key` was first assigned to `provider` (claim or
    /// failover): the vendor remembers the key from about then, and forgets
    /// it after its retention.
    pub key_since_ms: i64,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone)]
pub struct Completion {
    pub claim: Claim,
    pub outcome_json: String,
    pub attempts: i64,
}

pub(crate) const COLUMNS: &str = "domain, idempotency_key, fingerprint, subject_id, state, provider, \
     provider_key, outcome, attempts, correlation_id, created_at_ms, updated_at_ms, \
     lease_owner, lease_epoch, lease_until_ms, key_since_ms";

pub(crate) fn from_row(row: &AnyRow) -> Result<Record, crate::StoreError> {
    let state: String = row.try_get("state")?;
    let created_at: i64 = row.try_get("created_at_ms")?;
    Ok(Record {
        domain: row.try_get("domain")?,
        idempotency_key: row.try_get("idempotency_key")?,
        fingerprint: row.try_get("fingerprint")?,
        subject_id: row.try_get("subject_id")?,
        state: if state == "completed" { RecordState::Completed } else { RecordState::InProgress },
        provider: row.try_get("provider")?,
        provider_key: row.try_get("provider_key")?,
        outcome: row.try_get("outcome")?,
        attempts: row.try_get("attempts")?,
        correlation_id: row.try_get("correlation_id")?,
        fresh: false,
        lease_epoch: row.try_get("lease_epoch")?,
        lease_owner: row.try_get("lease_owner")?,
        lease_until_ms: row.try_get("lease_until_ms")?,
        key_since_ms: row.try_get::<Option<i64>, _>("key_since_ms")?.unwrap_or(created_at),
        created_at_ms: created_at,
    })
}

/// A bind value; statements are assembled by hand because sqlx's
/// `QueryBuilder<Any>` emits `?` placeholders, which PostgreSQL rejects.
#[derive(Debug, Clone)]
pub(crate) enum Bind<'a> {
    Text(Option<&'a str>),
    Int(i64),
    /// A nullable integer; `Text(None)` would reach PostgreSQL typed as text.
    OptInt(Option<i64>),
}

/// Numbered placeholders, valid on both PostgreSQL and SQLite.
#[derive(Default)]
pub(crate) struct Sql<'a> {
    pub(crate) text: String,
    binds: Vec<Bind<'a>>,
}

impl<'a> Sql<'a> {
    pub(crate) fn new(text: impl Into<String>) -> Self {
        Self { text: text.into(), binds: Vec::new() }
    }

    pub(crate) fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    pub(crate) fn bind(&mut self, value: Bind<'a>) -> &mut Self {
        self.binds.push(value);
        // Thousands per batch: `write!` here was 1.5 % of the benchmark.
        self.text.push('$');
        self.text.push_str(itoa::Buffer::new().format(self.binds.len()));
        self
    }

    /// Appends `(b1, b2, ...)` separated from the previous tuple by a comma.
    pub(crate) fn tuple(&mut self, values: impl IntoIterator<Item = Bind<'a>>) -> &mut Self {
        self.text.push('(');
        for (i, v) in values.into_iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.bind(v);
        }
        self.text.push(')');
        self
    }

    pub(crate) fn query(&self) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments<'_>> {
        let mut q = sqlx::query(&self.text);
        for b in &self.binds {
            q = match b {
                // Borrowed: the rows outlive the query, no copy per value.
                Bind::Text(t) => q.bind(*t),
                Bind::Int(i) => q.bind(*i),
                Bind::OptInt(i) => q.bind(*i),
            };
        }
        q
    }
}

const RECORD_COLUMNS: &[Column] = &[
    ("domain", Kind::Text),
    ("idempotency_key", Kind::Text),
    ("fingerprint", Kind::Text),
    ("subject_id", Kind::Text),
    ("state", Kind::Text),
    ("provider", Kind::Text),
    ("provider_key", Kind::Text),
    ("outcome", Kind::Text),
    ("attempts", Kind::Int),
    ("correlation_id", Kind::Text),
    ("created_at_ms", Kind::Int),
    ("updated_at_ms", Kind::Int),
    ("lease_owner", Kind::Text),
    ("lease_epoch", Kind::Int),
    ("lease_until_ms", Kind::Int),
    ("key_since_ms", Kind::Int),
];

/// `INSERT INTO idempotency_records ... <tail>` for many rows at once.
fn insert_rows<'a>(
    pool: &AnyPool,
    rows: impl ExactSizeIterator<Item = (&'a Claim, RecordState, Option<&'a str>, i64)>,
    tail: &str,
) -> (Sql<'a>, bool) {
    let now = switchyard_canonical::now_ms();
    let rows = rows.map(|(c, state, outcome, attempts)| {
        // A claim creates its row holding the lease (epoch 1); a completion
        // that creates its row (no claim seen) needs none.
        let leased = state == RecordState::InProgress;
        vec![
            Bind::Text(Some(&c.domain)),
            Bind::Text(Some(&c.idempotency_key)),
            Bind::Text(Some(&c.fingerprint)),
            Bind::Text(Some(&c.subject_id)),
            Bind::Text(Some(state.as_str())),
            Bind::Text(Some(&c.provider)),
            Bind::Text(Some(&c.provider_key)),
            Bind::Text(outcome),
            Bind::Int(attempts),
            Bind::Text(Some(&c.correlation_id)),
            Bind::Int(now),
            Bind::Int(now),
            Bind::Text(leased.then_some(c.lease_owner.as_str())),
            Bind::Int(i64::from(leased)),
            Bind::Int(if leased { now + c.lease_ttl_ms } else { 0 }),
            Bind::Int(now),
        ]
    });
    bulk::insert(Dialect::of(pool), "idempotency_records", RECORD_COLUMNS, rows, tail)
}

pub(crate) fn claim_batch<'a>(pool: &'a AnyPool, claims: &'a [Claim]) -> BoxFuture<'a, Result<Vec<Record>, sqlx::Error>> {
    async move {
        let (insert, prepared) = insert_rows(
            pool,
            claims.iter().map(|c| (c, RecordState::InProgress, None, 0)),
            " ON CONFLICT (domain, idempotency_key) DO NOTHING RETURNING domain, idempotency_key",
        );
        // Rows we inserted are exactly our claims; only the others need a read.
        let mut inserted: HashSet<(String, String)> = HashSet::with_capacity(claims.len());
        for row in insert.query().persistent(prepared).fetch_all(pool).await? {
            inserted.insert((row.try_get("domain")?, row.try_get("idempotency_key")?));
        }
        if inserted.len() == claims.len() {
            // Every claim created its row (so no key came twice): the common
            // case needs no read and no bookkeeping.
            return Ok(claims.iter().map(fresh_record).collect());
        }
        let mut rows: HashMap<(String, String), Record> = HashMap::new();
        let mut by_domain: HashMap<&str, Vec<&str>> = HashMap::new();
        let mut fresh_for: HashMap<(String, String), usize> = HashMap::new();
        for (i, c) in claims.iter().enumerate() {
            let id = (c.domain.clone(), c.idempotency_key.clone());
            if inserted.contains(&id) {
                // Two claims of one key in one batch: the first inserted the
                // row (VALUES are applied in order) and owns its freshness;
                // the second sees the first's content.
                fresh_for.entry(id.clone()).or_insert(i);
                rows.entry(id).or_insert_with(|| fresh_record(c));
            } else {
                by_domain.entry(c.domain.as_str()).or_default().push(c.idempotency_key.as_str());
            }
        }
        for (domain, keys) in by_domain {
            let mut select = Sql::new(format!("SELECT {COLUMNS} FROM idempotency_records WHERE domain = "));
            select.bind(Bind::Text(Some(domain))).push(" AND idempotency_key IN ");
            select.tuple(keys.into_iter().map(|k| Bind::Text(Some(k))));
            for row in select.query().persistent(false).fetch_all(pool).await? {
                let record = from_row(&row).map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
                rows.insert((record.domain.clone(), record.idempotency_key.clone()), record);
            }
        }
        claims
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let id = (c.domain.clone(), c.idempotency_key.clone());
                let mut record = rows
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| sqlx::Error::Protocol(format!("claimed row for {} vanished", c.idempotency_key)))?;
                record.fresh = fresh_for.get(&id) == Some(&i);
                Ok(record)
            })
            .collect()
    }
    .boxed()
}

fn fresh_record(c: &Claim) -> Record {
    let now = switchyard_canonical::now_ms();
    Record {
        domain: c.domain.clone(),
        idempotency_key: c.idempotency_key.clone(),
        fingerprint: c.fingerprint.clone(),
        subject_id: c.subject_id.clone(),
        state: RecordState::InProgress,
        provider: Some(c.provider.clone()),
        provider_key: Some(c.provider_key.clone()),
        outcome: None,
        attempts: 0,
        correlation_id: c.correlation_id.clone(),
        fresh: true,
        lease_epoch: 1,
        lease_owner: Some(c.lease_owner.clone()),
        lease_until_ms: now + c.lease_ttl_ms,
        key_since_ms: now,
        created_at_ms: now,
    }
}

pub(crate) fn complete_batch<'a>(pool: &'a AnyPool, completions: &'a [Completion]) -> BoxFuture<'a, Result<Vec<()>, sqlx::Error>> {
    async move {
        // A statement may touch a row once: keep the last completion of each
        // key (concurrent duplicates carry the same outcome).
        let mut last: HashMap<(&str, &str), &Completion> = HashMap::with_capacity(completions.len());
        for c in completions {
            last.insert((c.claim.domain.as_str(), c.claim.idempotency_key.as_str()), c);
        }
        let mut rest: Vec<&Completion> = last.into_values().collect();
        if Dialect::of(pool) == Dialect::Postgres {
            // Every completion follows its claim, so the row is there: a plain
            // update is cheaper for the server than an insert that conflicts.
            rest = complete_claimed(pool, rest).await?;
        }
        if !rest.is_empty() {
            upsert_completed(pool, &rest).await?;
        }
        Ok(vec![(); completions.len()])
    }
    .boxed()
}

/// Completes the in-progress records of `completions` with one `UPDATE`;
/// returns the completions it did not apply (no such row, already completed,
/// another fingerprint) for the upsert to settle.
async fn complete_claimed<'a>(pool: &AnyPool, completions: Vec<&'a Completion>) -> Result<Vec<&'a Completion>, sqlx::Error> {
    const COLUMNS: &[Column] = &[
        ("domain", Kind::Text),
        ("idempotency_key", Kind::Text),
        ("fingerprint", Kind::Text),
        ("outcome", Kind::Text),
        ("attempts", Kind::Int),
    ];
    let now = switchyard_canonical::now_ms();
    let rows = completions.iter().map(|c| {
        vec![
            Bind::Text(Some(&c.claim.domain)),
            Bind::Text(Some(&c.claim.idempotency_key)),
            Bind::Text(Some(&c.claim.fingerprint)),
            Bind::Text(Some(&c.outcome_json)),
            Bind::Int(c.attempts),
        ]
    });
    let mut head = Sql::new("UPDATE idempotency_records AS t SET state = 'completed', outcome = v.outcome, attempts = v.attempts, updated_at_ms = ");
    head.bind(Bind::Int(now)).push(" FROM ");
    let tail = " WHERE t.domain = v.domain AND t.idempotency_key = v.idempotency_key \
                AND t.state <> 'completed' AND t.fingerprint = v.fingerprint RETURNING t.domain, t.idempotency_key";
    let Some(update) = bulk::joined(head, COLUMNS, rows, tail) else {
        return Ok(completions);
    };
    let mut done: HashSet<(String, String)> = HashSet::with_capacity(completions.len());
    for row in update.query().persistent(true).fetch_all(pool).await? {
        done.insert((row.try_get(0)?, row.try_get(1)?));
    }
    Ok(completions
        .into_iter()
        .filter(|c| !done.contains(&(c.claim.domain.clone(), c.claim.idempotency_key.clone())))
        .collect())
}

async fn upsert_completed(pool: &AnyPool, completions: &[&Completion]) -> Result<(), sqlx::Error> {
    // A completed record is final; a late duplicate must not rewrite it,
    // and a colliding payload never owns the row.
    let (upsert, prepared) = insert_rows(
        pool,
        completions.iter().map(|c| (&c.claim, RecordState::Completed, Some(c.outcome_json.as_str()), c.attempts)),
        " ON CONFLICT (domain, idempotency_key) DO UPDATE SET state = excluded.state, \
         outcome = excluded.outcome, attempts = excluded.attempts, updated_at_ms = excluded.updated_at_ms \
         WHERE idempotency_records.state <> 'completed' \
         AND idempotency_records.fingerprint = excluded.fingerprint",
    );
    upsert.query().persistent(prepared).execute(pool).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    fn claim(key: &str, fp: &str, provider: &str) -> Claim {
        Claim {
            domain: "payouts".into(),
            idempotency_key: key.into(),
            fingerprint: fp.into(),
            subject_id: format!("subject-{key}"),
            provider: provider.into(),
            provider_key: format!("pk-{key}"),
            correlation_id: "corr".into(),
            lease_owner: format!("owner-{key}"),
            lease_ttl_ms: 10_000,
        }
    }

    async fn stores() -> Vec<Store> {
        crate::test_stores().await
    }

    fn unique(prefix: &str) -> String {
        format!("{prefix}-{}-{}", std::process::id(), switchyard_canonical::now_ms())
    }

    #[tokio::test]
    async fn first_claim_wins_and_later_claims_see_its_provider() {
        for store in stores().await {
            let key = unique("k");
            let first = store.claim(claim(&key, "fp", "stripe")).await.expect("claim");
            assert_eq!(first.state, RecordState::InProgress);
            assert!(first.fresh, "this claim created the row");
            assert_eq!(first.provider.as_deref(), Some("stripe"));
            // A redelivery routed elsewhere must still use the recorded vendor.
            let again = store.claim(claim(&key, "fp", "adyen")).await.expect("claim");
            assert!(!again.fresh, "a redelivery inherits the claim");
            assert_eq!(again.provider.as_deref(), Some("stripe"));
            assert!(!store.reroute("payouts", &key, "stripe", "adyen", "pk2", 2).await.expect("reroute"), "only under the current lease epoch");
            assert!(store.reroute("payouts", &key, "stripe", "adyen", "pk2", 1).await.expect("reroute"));
            assert!(!store.reroute("payouts", &key, "stripe", "adyen", "pk2", 1).await.expect("reroute"), "only from the recorded provider");
            let moved = store.record("payouts", &key).await.expect("read").expect("exists");
            assert_eq!((moved.provider.as_deref(), moved.provider_key.as_deref()), (Some("adyen"), Some("pk2")));
            assert_eq!(again.provider_key.as_deref(), Some(format!("pk-{key}").as_str()));
        }
    }

    #[tokio::test]
    async fn completion_is_final_and_collisions_keep_the_original() {
        for store in stores().await {
            let key = unique("c");
            store.claim(claim(&key, "fp", "stripe")).await.expect("claim");
            let done = Completion { claim: claim(&key, "fp", "stripe"), outcome_json: "{\"a\":1}".into(), attempts: 1 };
            store.complete(done).await.expect("complete");
            let late = Completion { claim: claim(&key, "fp", "stripe"), outcome_json: "{\"a\":2}".into(), attempts: 2 };
            store.complete(late).await.expect("complete");
            let other = Completion { claim: claim(&key, "other", "stripe"), outcome_json: "{\"x\":1}".into(), attempts: 1 };
            store.complete(other).await.expect("complete");
            let rec = store.record("payouts", &key).await.expect("read").expect("exists");
            assert_eq!(rec.state, RecordState::Completed);
            assert_eq!(rec.outcome.as_deref(), Some("{\"a\":1}"));
            assert_eq!(rec.fingerprint, "fp");
        }
    }

    #[tokio::test]
    async fn a_completion_without_a_claimed_row_still_lands() {
        for store in stores().await {
            let key = unique("orphan");
            let done = Completion { claim: claim(&key, "fp", "stripe"), outcome_json: "{\"a\":1}".into(), attempts: 1 };
            store.complete(done).await.expect("complete");
            let rec = store.record("payouts", &key).await.expect("read").expect("created by the completion");
            assert_eq!((rec.state, rec.outcome.as_deref()), (RecordState::Completed, Some("{\"a\":1}")));
        }
    }

    #[tokio::test]
    async fn concurrent_claims_of_one_key_in_one_batch_agree() {
        for store in stores().await {
            let key = unique("b");
            let mut handles = Vec::new();
            for i in 0..50 {
                let store = store.clone();
                let c = claim(&key, if i % 2 == 0 { "fp" } else { "fp2" }, if i % 3 == 0 { "stripe" } else { "adyen" });
                handles.push(tokio::spawn(async move { store.claim(c).await }));
            }
            let mut providers = std::collections::HashSet::new();
            let mut fps = std::collections::HashSet::new();
            for h in handles {
                let rec = h.await.expect("join").expect("claim");
                providers.insert(rec.provider);
                fps.insert(rec.fingerprint);
            }
            assert_eq!(providers.len(), 1, "every claimant sees the same provider");
            assert_eq!(fps.len(), 1, "every claimant sees the same fingerprint");
        }
    }
}

#[cfg(test)]
mod cost {
    use super::*;
    use crate::Store;
    use futures::StreamExt;

    /// PostgreSQL CPU seconds so far (server processes and exited backends).
    fn postgres_cpu() -> f64 {
        let mut total = 0.0;
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
            if &stat[open + 1..close] == "postgres" {
                total += stat[close + 1..].split_whitespace().skip(11).take(4).filter_map(|f| f.parse::<f64>().ok()).sum::<f64>() / 100.0;
            }
        }
        total
    }

    /// `cargo test --release -p switchyard-store records_cost -- --ignored --nocapture`:
    /// database CPU per claim and per completion at the worker's concurrency.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "measurement, not a check"]
    async fn records_cost() {
        let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let store = Store::connect(&url).await.expect("pg");
        let run = format!("cost-{}", switchyard_canonical::now_ms());
        let n = 40_000;
        let claims: Vec<Claim> = (0..n)
            .map(|i| Claim {
                domain: "payouts".into(),
                idempotency_key: format!("{run}-{i}"),
                fingerprint: format!("{:064x}", i),
                subject_id: format!("po-{run}-{i}"),
                provider: "stripe".into(),
                provider_key: format!("{run}-{i}"),
                correlation_id: format!("corr-{run}-{i}"),
                lease_owner: format!("owner-{run}-{i}"),
                lease_ttl_ms: 15_000,
            })
            .collect();
        let outcome = "{\"payout_id\":\"po-1\",\"idempotency_key\":\"k\",\"status\":\"SUCCEEDED\",\"amount_minor\":1000,\"currency\":\"EUR\",\"provider\":\"stripe\",\"provider_reference\":\"po_1234567890abcdef\",\"error\":null,\"attempts\":1,\"replayed\":false,\"completed_at_ms\":1764100000000}";
        for phase in ["claim", "complete", "audit"] {
            let cpu = postgres_cpu();
            let started = std::time::Instant::now();
            futures::stream::iter(claims.iter().cloned())
                .map(|c| {
                    let store = store.clone();
                    async move {
                        match phase {
                            "claim" => {
                                store.claim(c).await.expect("claim");
                            }
                            "complete" => {
                                store.complete(Completion { claim: c, outcome_json: outcome.into(), attempts: 1 }).await.expect("complete");
                            }
                            _ => {
                                let detail = "{\"provider\":\"stripe\",\"operation\":\"create\",\"result\":\"ok\",\"http_status\":200,\"latency_ms\":3,\"request_id\":\"req_123\"}";
                                let entry = crate::AuditEntry { actor: "payout-worker", action: "vendor_call", subject_id: &c.subject_id, correlation_id: &c.correlation_id, detail };
                                store.audit_later(entry).await;
                            }
                        }
                    }
                })
                .buffer_unordered(2000)
                .collect::<Vec<()>>()
                .await;
            store.flush_audit().await;
            let took = started.elapsed();
            let used = postgres_cpu() - cpu;
            eprintln!("{phase:>8}: {:>6.0}/s, postgres {:>5.1} us CPU per row", n as f64 / took.as_secs_f64(), used * 1e6 / n as f64);
        }
    }
}
