//! Vendor-neutral simulator state: idempotency records, the ledger, stats and
//! fault dice. A POST takes the lock twice (admit, commit) for a few hundred
//! nanoseconds each; bodies are rendered outside the lock.
//!
//! Idempotency records expire after the configured retention, as the
//! vendors' do (Stripe: "at least 24 hours", Adyen: a documented minimum).
//! An expired key is treated as never seen, so a retry after retention
//! executes again: exactly the double payout a real vendor would make, and
//! one the workers must prevent themselves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::StatusCode;

use crate::faults::{Fault, FaultPlan, Rng};
use crate::{ExecutedPayout, MoneyOracle, SimStats};

/// What the handle (and the control routes) need, independent of the vendor.
pub(crate) trait Control: Send + Sync {
    fn ledger(&self) -> Vec<ExecutedPayout>;
    fn stats(&self) -> SimStats;
    fn set_faults(&self, plan: FaultPlan);
    fn oracle(&self) -> MoneyOracle;
}

/// A reply kept for idempotent replays: exactly what the first request got.
#[derive(Clone, Debug)]
pub(crate) struct Saved {
    pub(crate) status: StatusCode,
    pub(crate) body: Bytes,
}

enum Idem {
    /// Admitted, not yet committed: a concurrent retry must get a conflict.
    InFlight,
    Done { fp: u64, reply: Saved, committed_at: Instant },
}

/// The idempotency map is swept once it reaches this size, and then at twice
/// its surviving size, so pruning costs amortised O(1) per request.
const FIRST_PRUNE_AT: usize = 1024;

struct Inner<R> {
    ledger: Vec<ExecutedPayout>,
    stats: SimStats,
    plan: FaultPlan,
    rng: Rng,
    idem: HashMap<String, Idem>,
    prune_at: usize,
    records: HashMap<String, R>,
}

pub(crate) struct Engine<R> {
    inner: Mutex<Inner<R>>,
    /// How long a committed idempotency record answers replays.
    retention: Duration,
    /// Receives every ledger entry too, under the same lock as the commit.
    oracle: MoneyOracle,
}

impl Idem {
    /// In-flight reservations never expire: their ticket removes them.
    fn expired(&self, retention: Duration) -> bool {
        matches!(self, Idem::Done { committed_at, .. } if committed_at.elapsed() >= retention)
    }
}

impl<R> Inner<R> {
    /// Forgets `key` if its record has outlived `retention`, as the vendor
    /// would have pruned it; the caller then sees the key as new.
    fn expire(&mut self, key: &str, retention: Duration) {
        if self.idem.get(key).is_some_and(|r| r.expired(retention)) {
            self.idem.remove(key);
        }
    }

    /// Sweeps expired records so a long benchmark does not grow without bound.
    fn prune(&mut self, retention: Duration) {
        if self.idem.len() < self.prune_at {
            return;
        }
        self.idem.retain(|_, r| !r.expired(retention));
        self.prune_at = (self.idem.len() * 2).max(FIRST_PRUNE_AT);
    }
}

/// The decision for a mutating request, taken under one lock.
pub(crate) enum Admit<R: Send + 'static> {
    /// Execute; commit through the ticket. Dropping it un-reserves the key.
    Proceed { latency: Duration, hang: Option<Duration>, ticket: Ticket<R> },
    Replay { latency: Duration, reply: Saved },
    Mismatch { latency: Duration },
    InFlight { latency: Duration },
    Fault { latency: Duration, fault: Fault },
}

/// A reservation of an idempotency key between admit and commit. If the
/// client disconnects mid-request, the handler future is dropped, and so is
/// this: the key must not stay "in flight" forever.
pub(crate) struct Ticket<R: Send + 'static> {
    engine: Arc<Engine<R>>,
    key: Option<String>,
    fp: u64,
    committed: bool,
}

/// The result of a read request: `Option<R>` by id, `Vec` for a list.
pub(crate) struct Read<T> {
    pub(crate) latency: Duration,
    pub(crate) outcome: Result<T, Fault>,
}

impl<R> Engine<R> {
    fn lock(&self) -> MutexGuard<'_, Inner<R>> {
        // A panic while holding the lock leaves only counters half-updated;
        // keep serving rather than cascading the panic into every request.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<R: Clone + Send + 'static> Engine<R> {
    /// Keys never expire and the oracle is private: for the check vendors,
    /// whose ledgers count billable checks, not money.
    pub(crate) fn new(plan: FaultPlan) -> Arc<Self> {
        Self::with_retention(plan, Duration::MAX, MoneyOracle::new())
    }

    /// Keys expire `retention` after commit; executions also go to `oracle`.
    pub(crate) fn with_retention(plan: FaultPlan, retention: Duration, oracle: MoneyOracle) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner {
                ledger: Vec::new(),
                stats: SimStats::default(),
                rng: Rng::new(plan.seed),
                plan,
                idem: HashMap::new(),
                prune_at: FIRST_PRUNE_AT,
                records: HashMap::new(),
            }),
            retention,
            oracle,
        })
    }

    /// Stores a record that exists from the start (e.g. the platform's own
    /// bank account), without touching stats or keys.
    pub(crate) fn seed(&self, id: String, record: R) {
        self.lock().records.insert(id, record);
    }

    /// A record by id for the simulator's own checks: no stats, no faults.
    pub(crate) fn record(&self, id: &str) -> Option<R> {
        self.lock().records.get(id).cloned()
    }

    /// Records `pick` maps to `Some`, for the simulator's own checks (e.g. a
    /// default bank account): no stats, no faults. O(records): keep it off
    /// the hot path.
    pub(crate) fn records_where<T>(&self, pick: impl FnMut(&R) -> Option<T>) -> Vec<T> {
        self.lock().records.values().filter_map(pick).collect()
    }

    /// Counts a request rejected before admission (auth or validation); it
    /// sees the configured latency but no fault dice.
    pub(crate) fn reject(&self, auth_failure: bool) -> Duration {
        let mut g = self.lock();
        g.stats.requests += 1;
        if auth_failure {
            g.stats.auth_failures += 1;
        }
        g.plan.latency()
    }

    /// Admits a mutating request: rolls faults, then checks the key.
    /// `fp` fingerprints the request parameters.
    pub(crate) fn admit(self: &Arc<Self>, key: Option<&str>, fp: u64) -> Admit<R> {
        let mut g = self.lock();
        let g = &mut *g;
        g.stats.requests += 1;
        let latency = g.plan.latency();
        if let Some(fault) = g.plan.roll_pre(&mut g.rng) {
            g.stats.injected_faults += 1;
            return Admit::Fault { latency, fault };
        }
        if let Some(k) = key {
            g.prune(self.retention);
            g.expire(k, self.retention);
            match g.idem.get(k) {
                Some(Idem::Done { fp: saved, reply, .. }) if *saved == fp => {
                    g.stats.idempotent_replays += 1;
                    return Admit::Replay { latency, reply: reply.clone() };
                }
                Some(Idem::Done { .. }) => {
                    g.stats.idempotency_conflicts += 1;
                    return Admit::Mismatch { latency };
                }
                Some(Idem::InFlight) => {
                    g.stats.idempotency_conflicts += 1;
                    return Admit::InFlight { latency };
                }
                None => {
                    g.idem.insert(k.to_owned(), Idem::InFlight);
                }
            }
        }
        let hang = g.plan.roll_hang(&mut g.rng);
        if hang.is_some() {
            g.stats.injected_faults += 1;
        }
        let ticket = Ticket { engine: Arc::clone(self), key: key.map(str::to_owned), fp, committed: false };
        Admit::Proceed { latency, hang, ticket }
    }

    /// Reads a record by id, with faults rolled like any API call.
    pub(crate) fn read(&self, id: &str) -> Read<Option<R>> {
        self.answer_read(|records| records.get(id).cloned())
    }

    /// A list request: every record `pick` maps to `Some`, with faults
    /// rolled like any API call. Ordering and paging are the caller's.
    pub(crate) fn scan<T>(&self, mut pick: impl FnMut(&R) -> Option<T>) -> Read<Vec<T>> {
        self.answer_read(|records| records.values().filter_map(&mut pick).collect())
    }

    /// A read request: counted, faults rolled, then `look` at the records.
    fn answer_read<T>(&self, look: impl FnOnce(&HashMap<String, R>) -> T) -> Read<T> {
        let mut g = self.lock();
        let g = &mut *g;
        g.stats.requests += 1;
        let latency = g.plan.latency();
        if let Some(fault) = g.plan.roll_pre(&mut g.rng) {
            g.stats.injected_faults += 1;
            return Read { latency, outcome: Err(fault) };
        }
        Read { latency, outcome: Ok(look(&g.records)) }
    }
}

impl<R: Send + 'static> Ticket<R> {
    /// The idempotency key this ticket reserved, for the ledger entry.
    pub(crate) fn key(&self) -> &str {
        self.key.as_deref().unwrap_or("")
    }

    /// Stores the outcome atomically: record, ledger and oracle entries and
    /// the saved reply become visible together, so no reader sees money
    /// moved without a replayable answer. (Lock order: engine, then oracle;
    /// the oracle never takes an engine lock.)
    pub(crate) fn commit(mut self, record: Option<(String, R)>, executed: Option<ExecutedPayout>, reply: &Saved) {
        let engine = Arc::clone(&self.engine);
        let mut g = engine.lock();
        if let Some((id, r)) = record {
            g.records.insert(id, r);
        }
        if let Some(e) = executed {
            g.stats.executed += 1;
            engine.oracle.record(e.clone());
            g.ledger.push(e);
        }
        if let Some(k) = self.key.take() {
            g.idem.insert(k, Idem::Done { fp: self.fp, reply: reply.clone(), committed_at: Instant::now() });
        }
        self.committed = true;
    }
}

impl<R: Send + 'static> Drop for Ticket<R> {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        if let Some(k) = self.key.take() {
            let mut g = self.engine.lock();
            if matches!(g.idem.get(&k), Some(Idem::InFlight)) {
                g.idem.remove(&k);
            }
        }
    }
}

impl<R: Send + 'static> Control for Engine<R> {
    fn ledger(&self) -> Vec<ExecutedPayout> {
        self.lock().ledger.clone()
    }

    fn stats(&self) -> SimStats {
        self.lock().stats.clone()
    }

    fn set_faults(&self, plan: FaultPlan) {
        let mut g = self.lock();
        g.rng = Rng::new(plan.seed);
        g.plan = plan;
    }

    fn oracle(&self) -> MoneyOracle {
        self.oracle.clone()
    }
}
