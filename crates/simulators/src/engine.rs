//! Vendor-neutral simulator state: idempotency records, the ledger, stats and
//! fault dice. A POST takes the lock twice (admit, commit) for a few hundred
//! nanoseconds each; bodies are rendered outside the lock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::StatusCode;

use crate::faults::{Fault, FaultPlan, Rng};
use crate::{ExecutedPayout, SimStats};

/// What the handle (and the control routes) need, independent of the vendor.
pub(crate) trait Control: Send + Sync {
    fn ledger(&self) -> Vec<ExecutedPayout>;
    fn stats(&self) -> SimStats;
    fn set_faults(&self, plan: FaultPlan);
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
    Done { fp: u64, reply: Saved },
}

struct Inner<R> {
    ledger: Vec<ExecutedPayout>,
    stats: SimStats,
    plan: FaultPlan,
    rng: Rng,
    idem: HashMap<String, Idem>,
    records: HashMap<String, R>,
}

pub(crate) struct Engine<R> {
    inner: Mutex<Inner<R>>,
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

/// The result of a read request.
pub(crate) struct Read<R> {
    pub(crate) latency: Duration,
    pub(crate) outcome: Result<Option<R>, Fault>,
}

impl<R> Engine<R> {
    fn lock(&self) -> MutexGuard<'_, Inner<R>> {
        // A panic while holding the lock leaves only counters half-updated;
        // keep serving rather than cascading the panic into every request.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<R: Clone + Send + 'static> Engine<R> {
    pub(crate) fn new(plan: FaultPlan) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner {
                ledger: Vec::new(),
                stats: SimStats::default(),
                rng: Rng::new(plan.seed),
                plan,
                idem: HashMap::new(),
                records: HashMap::new(),
            }),
        })
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
            match g.idem.get(k) {
                Some(Idem::Done { fp: saved, reply }) if *saved == fp => {
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
    pub(crate) fn read(&self, id: &str) -> Read<R> {
        let mut g = self.lock();
        let g = &mut *g;
        g.stats.requests += 1;
        let latency = g.plan.latency();
        if let Some(fault) = g.plan.roll_pre(&mut g.rng) {
            g.stats.injected_faults += 1;
            return Read { latency, outcome: Err(fault) };
        }
        Read { latency, outcome: Ok(g.records.get(id).cloned()) }
    }
}

impl<R: Send + 'static> Ticket<R> {
    /// The idempotency key this ticket reserved, for the ledger entry.
    pub(crate) fn key(&self) -> &str {
        self.key.as_deref().unwrap_or("")
    }

    /// Stores the outcome atomically: record, ledger entry and saved reply
    /// become visible together, so no reader sees money moved without a
    /// replayable answer.
    pub(crate) fn commit(mut self, record: Option<(String, R)>, executed: Option<ExecutedPayout>, reply: &Saved) {
        let engine = Arc::clone(&self.engine);
        let mut g = engine.lock();
        if let Some((id, r)) = record {
            g.records.insert(id, r);
        }
        if let Some(e) = executed {
            g.stats.executed += 1;
            g.ledger.push(e);
        }
        if let Some(k) = self.key.take() {
            g.idem.insert(k, Idem::Done { fp: self.fp, reply: reply.clone() });
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
}
