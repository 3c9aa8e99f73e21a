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
    /// Provider events stored after a later stage of the same object; ignored.
    pub out_of_order: u64,
}

impl PassStats {
    pub fn add(&mut self, other: PassStats) {
        self.evaluated += other.evaluated;
        self.opened += other.opened;
        self.updated += other.updated;
        self.resolved += other.resolved;
        self.settled += other.settled;
        self.out_of_order += other.out_of_order;
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
        let (judged, changed, mut stats) = self.track_all(&tx.subjects, &tx.facts, verdicts);
        // Vendors deliver out of order; the rules ignore a regression, and
        // this records that they did.
        let fresh: std::collections::HashSet<&str> = batch.events.iter().map(|e| e.event_id.as_str()).collect();
        if !fresh.is_empty() {
            for f in &tx.facts {
                for e in crate::rules::late_events(f, &fresh) {
                    stats.out_of_order += 1;
                    tracing::info!(subject = %f.subject_id, provider = %e.provider, event_id = %e.event_id, kind = e.kind.as_str(), "provider event arrived after a later stage; ignored");
                }
            }
        }
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
        let looked_at = due.len() as u64;
        let mut facts = self.store.load(&due).await?;
        let joined = self.join_strays(&mut facts, as_of_ms).await?;
        // A payout that just received joined facts is judged in the next
        // step with all of them; a verdict now would be published stale.
        let (due, mut facts): (Vec<_>, Vec<_>) =
            due.into_iter().zip(facts).filter(|(d, _)| !joined.contains(&d.subject_id)).unzip();
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
        // Counted even when all were set aside for the next step, so a drain goes on.
        stats.evaluated = looked_at;
        if let Some(sink) = &self.sink {
            sink.publish(&changed).await?;
        }
        self.store.record(&judged).await?;
        Ok(stats)
    }

    /// Facts filed under an id no outcome has (a vendor that names the payout
    /// by its own id, a posting booked under a wrong payout id) are moved to
    /// the payout whose outcome carries their idempotency key or provider
    /// reference; that payout is judged with them in the next step.
    async fn join_strays(&self, facts: &mut [SubjectFacts], as_of_ms: i64) -> Result<std::collections::HashSet<String>, ReconError> {
        let mut joined = std::collections::HashSet::new();
        // Card subjects are named by what they book and never join a payout.
        let strays: Vec<usize> = (0..facts.len())
            .filter(|&i| !crate::card_rules::is_card_subject(&facts[i].subject_id))
            .filter(|&i| facts[i].outcomes.is_empty() && (!facts[i].postings.is_empty() || !facts[i].events.is_empty()))
            .collect();
        if strays.is_empty() {
            return Ok(joined);
        }
        let keys: Vec<&str> = strays.iter().flat_map(|&i| facts[i].postings.iter().filter_map(|p| p.idempotency_key.as_deref())).collect();
        let references: Vec<&str> = strays
            .iter()
            .flat_map(|&i| facts[i].events.iter().map(|e| e.provider_reference.as_str()).chain(std::iter::once(facts[i].subject_id.as_str())))
            .collect();
        let found = self.store.outcome_subjects(&keys, &references).await?;
        for i in strays {
            let f = &facts[i];
            let target = found.iter().find(|(subject, key, reference)| {
                subject != &f.subject_id
                    && (f.postings.iter().any(|p| p.idempotency_key.as_deref() == Some(key.as_str()))
                        || reference.as_deref().is_some_and(|r| r == f.subject_id || f.events.iter().any(|e| e.provider_reference == r)))
            });
            if let Some((to, _, _)) = target {
                tracing::info!(from = %f.subject_id, to = %to, "facts filed under another id joined to their payout");
                // Due at the time being judged, so this drain picks it up.
                self.store.rekey(&f.subject_id, to, as_of_ms).await?;
                joined.insert(to.clone());
                facts[i].postings.clear();
                facts[i].events.clear();
            }
        }
        Ok(joined)
    }

    fn track_all(&self, subjects: &[DueSubject], facts: &[SubjectFacts], verdicts: Vec<Verdict>) -> (Vec<Judged>, Vec<Discrepancy>, PassStats) {
        let now = switchyard_canonical::now_ms();
        let mut stats = PassStats { evaluated: subjects.len() as u64, ..PassStats::default() };
        let mut judged = Vec::with_capacity(subjects.len());
        let mut changed_all = Vec::new();
        for ((d, f), v) in subjects.iter().zip(facts).zip(verdicts) {
            let domain = crate::card_rules::domain_of(&d.subject_id, &self.policy);
            let (changed, open_count) = track(domain, &d.subject_id, &f.discrepancies, &v.open, now);
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
    track(crate::card_rules::domain_of(&facts.subject_id, policy), &facts.subject_id, &facts.discrepancies, &verdict.open, as_of_ms).0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use switchyard_canonical::{PayoutStatus, PostingKind, ProviderEventKind};
    use switchyard_store::recon::{EventFact, OutcomeFact, PostingFact};

    const DAY: i64 = 86_400_000;

    fn policy() -> Policy {
        Policy {
            domain: "payouts".into(),
            settlement_windows_ms: HashMap::new(),
            default_window_ms: DAY,
            pending_deadline_ms: 60_000,
            settle_retry_ms: 60_000,
        }
    }

    fn outcome(subject: &str, at: i64) -> OutcomeFact {
        OutcomeFact {
            subject_id: subject.into(),
            idempotency_key: format!("key-{subject}"),
            status: PayoutStatus::Paid,
            provider: Some("stripe".into()),
            provider_reference: Some(format!("ref-{subject}")),
            amount_minor: 100,
            currency: "EUR".into(),
            correlation_id: None,
            completed_at_ms: at,
        }
    }

    #[tokio::test]
    async fn facts_filed_under_other_ids_are_joined_to_their_payout() {
        let url = std::env::var("RECON_TEST_URL").unwrap_or_else(|_| "sqlite::memory:".into());
        let store = ReconStore::connect(&url, &format!("join-{}", switchyard_canonical::now_ms())).await.expect("store");
        let engine = Engine::new(store.clone(), policy(), None, None, 100);
        let old = switchyard_canonical::now_ms() - 3 * DAY;
        let batch = FactBatch {
            outcomes: vec![outcome("po-a", old), outcome("po-b", old)],
            // Booked under a wrong payout id, with po-a's idempotency key.
            postings: vec![
                PostingFact {
                    posting_id: "gl-1".into(),
                    subject_id: "po-wrong".into(),
                    idempotency_key: Some("key-po-a".into()),
                    correlation_id: None,
                    kind: PostingKind::Payout,
                    amount_minor: 100,
                    currency: "EUR".into(),
                    posted_at_ms: old,
                },
                PostingFact {
                    posting_id: "gl-2".into(),
                    subject_id: "po-b".into(),
                    idempotency_key: None,
                    correlation_id: None,
                    kind: PostingKind::Payout,
                    amount_minor: 100,
                    currency: "EUR".into(),
                    posted_at_ms: old,
                },
            ],
            // The vendor names po-b by its own id, and says it failed after paying.
            events: vec![EventFact {
                provider: "stripe".into(),
                event_id: "evt-1".into(),
                subject_id: "ref-po-b".into(),
                provider_reference: "ref-po-b".into(),
                kind: ProviderEventKind::PayoutFailed,
                amount_minor: None,
                currency: None,
                occurred_at_ms: old,
                received_at_ms: old,
            }],
            ..FactBatch::default()
        };
        engine.ingest(&batch, switchyard_canonical::now_ms()).await.expect("ingest");
        engine.drain(switchyard_canonical::now_ms()).await.expect("drain");
        let found: Vec<_> = store.discrepancies(false, 10).await.expect("read").into_iter().map(|d| (d.subject_id, d.class)).collect();
        assert_eq!(found, vec![("po-b".to_owned(), switchyard_canonical::DiscrepancyClass::EventContradictsOutcome)]);
    }

    /// Card facts and card postings through the store: stored, read back,
    /// judged under the cards domain, a re-sent posting stored once, and a
    /// card posting never joined to a payout that shares its key.
    #[tokio::test]
    async fn card_postings_are_judged_against_stored_card_facts() {
        use switchyard_canonical::card_transaction::{CardTransaction, CardTransactionKind};
        use switchyard_canonical::{DiscrepancyClass, LedgerPosting};
        let url = std::env::var("RECON_TEST_URL").unwrap_or_else(|_| "sqlite::memory:".into());
        let store = ReconStore::connect(&url, &format!("cards-{}", switchyard_canonical::now_ms())).await.expect("store");
        let engine = Engine::new(store.clone(), policy(), None, None, 100);
        let old = switchyard_canonical::now_ms() - 3 * DAY;
        let clearing = |card: &str| CardTransaction {
            transaction_event_id: format!("lithic:evt-{card}"),
            card_id: card.into(),
            processor: "lithic".into(),
            processor_reference: "tok".into(),
            transaction_reference: "txn".into(),
            kind: CardTransactionKind::Clearing,
            amount_minor: 100,
            currency: "EUR".into(),
            approved: true,
            decline_code: None,
            occurred_at_ms: old,
            published_at_ms: old,
        };
        let booking = |card: &str, n: u32| LedgerPosting {
            posting_id: format!("gl-{card}-{n}"),
            payout_id: card.into(),
            // A payout's key: must not pull the card posting into the payout.
            idempotency_key: Some("key-po-a".into()),
            correlation_id: None,
            kind: PostingKind::Payout,
            amount_minor: 100,
            currency: "EUR".into(),
            posted_at_ms: old,
            card_id: Some(card.into()),
            card_transaction_id: Some(format!("lithic:evt-{card}")),
            card_event_id: None,
            card_fee: None,
        };
        let card_postings = [booking("c-clean", 1), booking("c-clean", 1), booking("c-twice", 1), booking("c-twice", 2), booking("c-orphan", 1)]
            .iter()
            .filter_map(crate::ingest::card_posting_fact)
            .collect();
        let batch = FactBatch {
            outcomes: vec![outcome("po-a", old)],
            postings: vec![PostingFact {
                posting_id: "gl-po-a".into(),
                subject_id: "po-a".into(),
                idempotency_key: Some("key-po-a".into()),
                correlation_id: None,
                kind: PostingKind::Payout,
                amount_minor: 100,
                currency: "EUR".into(),
                posted_at_ms: old,
            }],
            cards: ["c-clean", "c-twice", "c-missing"].map(|c| crate::ingest::card_transaction_fact(clearing(c))).to_vec(),
            card_postings,
            ..FactBatch::default()
        };
        engine.ingest(&batch, switchyard_canonical::now_ms()).await.expect("ingest");
        engine.drain(switchyard_canonical::now_ms()).await.expect("drain");
        let mut found: Vec<_> =
            store.discrepancies(false, 10).await.expect("read").into_iter().map(|d| (d.domain, d.subject_id, d.class)).collect();
        found.sort();
        let subject = |c: &str| crate::card_rules::transaction_subject(c, &format!("lithic:evt-{c}"));
        assert_eq!(
            found,
            vec![
                ("cards".to_owned(), subject("c-missing"), DiscrepancyClass::MissingPosting),
                ("cards".to_owned(), subject("c-orphan"), DiscrepancyClass::UnexpectedPosting),
                ("cards".to_owned(), subject("c-twice"), DiscrepancyClass::DuplicatePosting),
            ]
        );
    }
}
