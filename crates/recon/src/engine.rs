//! Evaluation: judge subjects with [`crate::rules`], turn findings into
//! records with [`crate::track`], publish what changed, then write verdicts
//! back. Two entry points: [`Engine::ingest`] judges the subjects a batch of
//! facts touches in the transaction that stores them; [`Engine::step`]
//! judges subjects whose timer (settlement window, pending deadline) is due,
//! and asks vendors about stuck payouts.
//!
//! Publishing comes before the store write: a crash in between re-evaluates
//! the subjects and publishes the same records again (same ids, so consumers
//! keep the latest), rather than recording a change nobody was told about.

use crate::rules::{judge, judge_inline, Policy, SettleRequest, Verdict};
use crate::settle::Settler;
use crate::track::track;
use crate::ReconError;
use switchyard_bus::{AvroEncoder, MessageContext, Outbound, Publisher};
use switchyard_canonical::{Discrepancy, DiscrepancyStatus};
use switchyard_store::recon::{DueSubject, FactBatch, Judged, ReconStore, SubjectFacts};

/// Where discrepancy records go.
#[derive(Clone)]
pub struct DiscrepancySink {
    pub publisher: Publisher,
    pub encoder: AvroEncoder,
    pub topic: String,
}

impl DiscrepancySink {
    async fn publish(&self, records: &[Discrepancy]) -> Result<(), ReconError> {
        // In chunks, so the producer batches without an unbounded queue.
        for chunk in records.chunks(256) {
            futures::future::try_join_all(chunk.iter().map(|d| self.publish_one(d))).await?;
        }
        Ok(())
    }

    async fn publish_one(&self, d: &Discrepancy) -> Result<(), ReconError> {
        let record = Outbound {
            topic: self.topic.clone(),
            key: Some(d.subject_id.clone().into_bytes()),
            payload: self.encoder.encode(d)?,
            headers: MessageContext::new_root().outbound_headers(Some(self.encoder.schema_id())),
        };
        self.publisher.publish(&record).await?;
        Ok(())
    }
}

/// Totals of one or more evaluation passes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassStats {
    pub evaluated: u64,
    pub opened: u64,
    pub updated: u64,
    pub resolved: u64,
    /// `pending_unknown` payouts a vendor answered for.
    pub settled: u64,
}

impl PassStats {
    pub fn add(&mut self, other: PassStats) {
        self.evaluated += other.evaluated;
        self.opened += other.opened;
        self.updated += other.updated;
        self.resolved += other.resolved;
        self.settled += other.settled;
    }
}

pub struct Engine {
    pub store: ReconStore,
    pub policy: Policy,
    pub sink: Option<DiscrepancySink>,
    pub settler: Option<Settler>,
    /// Subjects judged per store round trip.
    pub batch: usize,
    /// Timer evaluation runs alone, so within one process a subject is never
    /// judged twice at once. Ingests may share (the consumer runs one at a
    /// time; the benchmark's parallel ingests touch disjoint subjects).
    pub gate: tokio::sync::RwLock<()>,
}

impl Engine {
    pub fn new(store: ReconStore, policy: Policy, sink: Option<DiscrepancySink>, settler: Option<Settler>, batch: usize) -> Self {
        Self { store, policy, sink, settler, batch, gate: tokio::sync::RwLock::new(()) }
    }

    /// Stores a batch of facts and judges the subjects it touches as of
    /// `as_of_ms`, in one transaction; changes are published before it commits.
    pub async fn ingest(&self, batch: &FactBatch, as_of_ms: i64) -> Result<PassStats, ReconError> {
        if batch.is_empty() {
            return Ok(PassStats::default());
        }
        let _turn = self.gate.read().await;
        let tx = self.store.begin_ingest(batch).await?;
        // No vendor calls while the transaction is open: a stuck payout is
        // only ever found by its deadline timer, which the sweep evaluates.
        let verdicts: Vec<Verdict> = tx.facts.iter().map(|f| judge_inline(f, &self.policy, as_of_ms)).collect();
        let (judged, changed, stats) = self.track_all(&tx.subjects, &tx.facts, verdicts);
        if let Some(sink) = &self.sink {
            sink.publish(&changed).await?;
        }
        tx.commit(&judged).await?;
        Ok(stats)
    }

    /// Evaluates every timer due at `as_of` until none is.
    pub async fn drain(&self, as_of_ms: i64) -> Result<PassStats, ReconError> {
        let mut total = PassStats::default();
        loop {
            let pass = self.step(as_of_ms).await?;
            if pass.evaluated == 0 {
                return Ok(total);
            }
            total.add(pass);
        }
    }

    /// One batch of subjects whose timer is due.
    pub async fn step(&self, as_of_ms: i64) -> Result<PassStats, ReconError> {
        let _turn = self.gate.write().await;
        let due = self.store.due(as_of_ms, self.batch).await?;
        if due.is_empty() {
            return Ok(PassStats::default());
        }
        let mut facts = self.store.load(&due).await?;
        let mut verdicts: Vec<_> = facts.iter().map(|f| judge(f, &self.policy, as_of_ms)).collect();
        let mut settled = 0;
        if let Some(settler) = &self.settler {
            let asks: Vec<(usize, SettleRequest)> =
                verdicts.iter().enumerate().filter_map(|(i, v)| v.settle.clone().map(|s| (i, s))).collect();
            if !asks.is_empty() {
                let answers = settler.settle_all(asks).await;
                let mut learned = FactBatch::default();
                for (i, outcome) in answers {
                    settled += 1;
                    facts[i].outcomes.push(outcome.clone());
                    learned.outcomes.push(outcome);
                    verdicts[i] = judge(&facts[i], &self.policy, as_of_ms);
                }
                // Stored like any consumed outcome (it is also published for
                // core banking), and judged with just above.
                self.store.ingest(&learned).await?;
            }
        }
        let (judged, changed, mut stats) = self.track_all(&due, &facts, verdicts);
        stats.settled = settled;
        if let Some(sink) = &self.sink {
            sink.publish(&changed).await?;
        }
        self.store.record(&judged).await?;
        Ok(stats)
    }

    fn track_all(&self, subjects: &[DueSubject], facts: &[SubjectFacts], verdicts: Vec<Verdict>) -> (Vec<Judged>, Vec<Discrepancy>, PassStats) {
        let now = switchyard_canonical::now_ms();
        let mut stats = PassStats { evaluated: subjects.len() as u64, ..PassStats::default() };
        let mut judged = Vec::with_capacity(subjects.len());
        let mut changed_all = Vec::new();
        for ((d, f), v) in subjects.iter().zip(facts).zip(verdicts) {
            let (changed, open_count) = track(&self.policy.domain, &d.subject_id, &f.discrepancies, &v.open, now);
            for c in &changed {
                let before = f.discrepancies.iter().find(|p| p.discrepancy_id == c.discrepancy_id);
                match (c.status, before.map(|b| b.status)) {
                    (DiscrepancyStatus::Resolved, _) => stats.resolved += 1,
                    (DiscrepancyStatus::Open, Some(DiscrepancyStatus::Open)) => stats.updated += 1,
                    (DiscrepancyStatus::Open, _) => stats.opened += 1,
                }
            }
            changed_all.extend(changed.iter().cloned());
            judged.push(Judged {
                subject_id: d.subject_id.clone(),
                version: d.version,
                next_due_at_ms: v.next_check_ms,
                open_count,
                changed,
            });
        }
        (judged, changed_all, stats)
    }
}

/// Judges facts without a store: the rules and record tracking alone, as the
/// unit tests and the demo's summary use them.
pub fn judge_now(facts: &SubjectFacts, policy: &Policy, as_of_ms: i64) -> Vec<Discrepancy> {
    let verdict = judge(facts, policy, as_of_ms);
    track(&policy.domain, &facts.subject_id, &facts.discrepancies, &verdict.open, as_of_ms).0
}
