//! End-to-end flow latency from the timestamps already on the bus, the
//! scorecard's first line: `switchyard_flow_end_to_end_seconds{domain,flow}`.
//! Not the workers' `switchyard_flow_duration_seconds` (command -> outcome,
//! seconds): one name for both would sum minutes-long webhook confirmations
//! and their day-long buckets into the workers' 5 s alert.
//!
//! - `payouts` / `command_to_paid`: the command's `requested_at_ms` to the
//!   provider's paid event's `occurred_at_ms` (the vendor's own clock, so a
//!   webhook that arrives late still counts from when the money moved, and a
//!   reconciler that lags does not inflate the figure).
//! - `onboarding` / `start_to_terminal`: the flow's first transition to its
//!   terminal one, both from `onboarding.events.v1`.
//!
//! The two ends of a payout come from different topics, read in any order,
//! so whichever end arrives first waits in a bounded map for the other. The
//! service's maps are also kept in the store ([`FlowLatency::restore`],
//! [`FlowLatency::persist`], table `recon_flow_ends`), written with each
//! batch before its offsets move: a flow whose first end was read before a
//! restart is still joined after it. Each flow is observed once, so a
//! redelivered or re-published event does not count twice, across restarts
//! too while the flow's row is kept ([`RETENTION`]).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;
use switchyard_canonical::onboarding::OnboardingEvent;
use switchyard_canonical::{now_ms, PayoutCommand, ProviderEvent, ProviderEventKind};
use switchyard_store::recon::{FlowEnd, ReconStore};
use switchyard_store::StoreError;

/// Flows awaiting their other end, and flows already observed, per map.
const CAPACITY: usize = 200_000;

/// How long a stored flow end is kept: past the histogram's last bucket
/// (3 days), so a flow that slow is still counted, yet the table stays
/// bounded by a week of flows.
pub const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// How often the expired rows are deleted.
const PRUNE_EVERY_MS: i64 = 3_600_000;

/// The stored names of a flow's states (`recon_flow_ends.end_kind`).
const REQUESTED: &str = "requested";
const PAID: &str = "paid";
const STARTED: &str = "started";
const OBSERVED: &str = "observed";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FlowLabels {
    domain: String,
    flow: String,
}

/// Seconds; a payout confirmed by webhook takes seconds to a day, an
/// onboarding with a manual review up to days.
fn buckets() -> impl Iterator<Item = f64> {
    [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 14_400.0, 86_400.0, 259_200.0].into_iter()
}

/// A map that forgets its oldest entries beyond [`CAPACITY`].
#[derive(Default)]
struct Bounded {
    values: HashMap<String, i64>,
    order: VecDeque<String>,
}

impl Bounded {
    fn insert(&mut self, key: String, value: i64) {
        if self.values.insert(key.clone(), value).is_none() {
            self.order.push_back(key);
            while self.order.len() > CAPACITY {
                if let Some(old) = self.order.pop_front() {
                    self.values.remove(&old);
                }
            }
        }
    }

    fn take(&mut self, key: &str) -> Option<i64> {
        // The key stays in `order` until it ages out; `insert` skips it then.
        self.values.remove(key)
    }

    fn contains(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }
}

#[derive(Default)]
struct Pending {
    /// Payout id -> the command's requested_at_ms.
    requested: Bounded,
    /// Payout id -> the paid event's occurred_at_ms, when it came first.
    paid: Bounded,
    /// Onboarding flow id -> its start's occurred_at_ms.
    started: Bounded,
    /// Flows already observed (`payouts:<id>`, `onboarding:<flow id>`).
    done: Bounded,
    /// Changes not yet stored, by flow key, the latest state winning; None
    /// when nothing is kept (the one-shot job, unit tests).
    journal: Option<HashMap<String, (&'static str, i64)>>,
    /// Wall-clock ms of the last retention delete.
    pruned_at_ms: i64,
}

impl Pending {
    fn note(&mut self, flow_key: String, end_kind: &'static str, at_ms: i64) {
        if let Some(journal) = &mut self.journal {
            journal.insert(flow_key, (end_kind, at_ms));
        }
    }

    fn observed(&mut self, done_key: String) {
        self.note(done_key.clone(), OBSERVED, 0);
        self.done.insert(done_key, 0);
    }
}

/// The histogram and the joins that feed it.
pub struct FlowLatency {
    histogram: Family<FlowLabels, Histogram>,
    registry: Registry,
    pending: Mutex<Pending>,
}

impl Default for FlowLatency {
    fn default() -> Self {
        let histogram = Family::<FlowLabels, Histogram>::new_with_constructor(|| Histogram::new(buckets()));
        let mut registry = Registry::default();
        registry.register(
            "switchyard_flow_end_to_end_seconds",
            "End-to-end flow latency from the bus: payout command requested -> provider paid; onboarding start -> terminal",
            histogram.clone(),
        );
        Self { histogram, registry, pending: Mutex::default() }
    }
}

impl FlowLatency {
    fn observe(&self, domain: &str, flow: &str, from_ms: i64, to_ms: i64) {
        // Clocks of two systems: a vendor stamping before our request is skew, not a negative flow.
        let secs = (to_ms - from_ms).max(0) as f64 / 1000.0;
        self.histogram.get_or_create(&FlowLabels { domain: domain.into(), flow: flow.into() }).observe(secs);
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        // A panic elsewhere while holding the lock leaves plain maps behind, still usable.
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A payout command: one end of `command_to_paid`.
    pub fn command(&self, c: &PayoutCommand) {
        self.requested(&c.payout_id, c.requested_at_ms);
    }

    fn requested(&self, payout_id: &str, requested_at_ms: i64) {
        let done_key = format!("payouts:{payout_id}");
        let mut p = self.pending();
        if p.done.contains(&done_key) {
            return;
        }
        if let Some(paid_at) = p.paid.take(payout_id) {
            p.observed(done_key);
            drop(p);
            self.observe("payouts", "command_to_paid", requested_at_ms, paid_at);
        } else if !p.requested.contains(payout_id) {
            // The first command of a payout is when it was asked for; a re-sent one is not a new flow.
            p.note(done_key, REQUESTED, requested_at_ms);
            p.requested.insert(payout_id.to_owned(), requested_at_ms);
        }
    }

    /// A provider event on the payouts topic: the paid one ends `command_to_paid`.
    pub fn provider_event(&self, e: &ProviderEvent) {
        if e.kind != ProviderEventKind::PayoutPaid {
            return;
        }
        let done_key = format!("payouts:{}", e.subject_id);
        let mut p = self.pending();
        if p.done.contains(&done_key) {
            return;
        }
        if let Some(requested_at) = p.requested.take(&e.subject_id) {
            p.observed(done_key);
            drop(p);
            self.observe("payouts", "command_to_paid", requested_at, e.occurred_at_ms);
        } else if !p.paid.contains(&e.subject_id) {
            p.note(done_key, PAID, e.occurred_at_ms);
            p.paid.insert(e.subject_id.clone(), e.occurred_at_ms);
        }
    }

    /// One onboarding transition. Both ends share the subject's partition,
    /// so the start is read before the terminal transition.
    pub fn onboarding(&self, e: &OnboardingEvent) {
        let done_key = format!("onboarding:{}", e.flow_id);
        let mut p = self.pending();
        if e.version == 1 && !p.done.contains(&done_key) && !p.started.contains(&e.flow_id) {
            p.note(done_key.clone(), STARTED, e.occurred_at_ms);
            p.started.insert(e.flow_id.clone(), e.occurred_at_ms);
        }
        if e.terminal {
            if let Some(started) = p.started.take(&e.flow_id) {
                p.observed(done_key);
                drop(p);
                self.observe("onboarding", "start_to_terminal", started, e.occurred_at_ms);
            }
        }
    }

    /// The joins as a reconciler left them in `store`, kept there from now
    /// on by [`Self::persist`]: the newest [`CAPACITY`] flows come back.
    pub async fn restore(store: &ReconStore) -> Result<Self, StoreError> {
        let flows = Self::default();
        let ends = store.load_flow_ends(CAPACITY).await?;
        {
            let mut p = flows.pending();
            for end in ends {
                let Some((domain, id)) = end.flow_key.split_once(':') else { continue };
                let (domain, id) = (domain.to_owned(), id.to_owned());
                match end.end_kind.as_str() {
                    REQUESTED if domain == "payouts" => p.requested.insert(id, end.at_ms),
                    PAID if domain == "payouts" => p.paid.insert(id, end.at_ms),
                    STARTED if domain == "onboarding" => p.started.insert(id, end.at_ms),
                    OBSERVED => p.done.insert(end.flow_key, 0),
                    // A state a newer reconciler wrote: left alone.
                    _ => {}
                }
            }
            p.journal = Some(HashMap::new());
            p.pruned_at_ms = now_ms();
        }
        Ok(flows)
    }

    /// Stores what changed since the last call (call it before the batch's
    /// offsets move), and deletes rows past [`RETENTION`] once an hour. On
    /// an error the changes stay queued for the next call.
    pub async fn persist(&self, store: &ReconStore) -> Result<(), StoreError> {
        let (changes, prune) = {
            let mut p = self.pending();
            let Some(journal) = p.journal.as_mut() else { return Ok(()) };
            let changes = std::mem::take(journal);
            let now = now_ms();
            let prune = now - p.pruned_at_ms >= PRUNE_EVERY_MS;
            if prune {
                p.pruned_at_ms = now;
            }
            (changes, prune)
        };
        let ends: Vec<FlowEnd> =
            changes.iter().map(|(key, (kind, at))| FlowEnd { flow_key: key.clone(), end_kind: (*kind).to_owned(), at_ms: *at }).collect();
        if let Err(e) = store.save_flow_ends(&ends, now_ms()).await {
            let mut p = self.pending();
            if let Some(journal) = p.journal.as_mut() {
                // A flow that moved on meanwhile keeps its newer state.
                for (key, change) in changes {
                    journal.entry(key).or_insert(change);
                }
            }
            return Err(e);
        }
        if prune {
            let retention = i64::try_from(RETENTION.as_millis()).unwrap_or(i64::MAX);
            let pruned = store.prune_flow_ends(now_ms() - retention).await?;
            tracing::debug!(pruned, "flow ends past retention deleted");
        }
        Ok(())
    }

    /// The histogram in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_ok() {
            // The hand-written series around it are the classic text format: no OpenMetrics trailer.
            out.extend(text.lines().filter(|l| *l != "# EOF").flat_map(|l| [l, "\n"]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(f: &FlowLatency) -> String {
        let mut out = String::new();
        f.render(&mut out);
        out
    }

    fn paid(payout_id: &str, at: i64) -> ProviderEvent {
        ProviderEvent {
            event_id: format!("evt-{payout_id}"),
            provider: "stripe".into(),
            domain: "payouts".into(),
            subject_id: payout_id.into(),
            provider_reference: "po_1".into(),
            kind: ProviderEventKind::PayoutPaid,
            vendor_event_type: "payout.paid".into(),
            amount_minor: Some(100),
            currency: Some("EUR".into()),
            reason: None,
            occurred_at_ms: at,
            // Read long after: the figure must not depend on it.
            received_at_ms: at + 3_600_000,
            payload_sha256: "00".repeat(32),
        }
    }

    #[test]
    fn either_end_first_counts_once_by_the_carried_timestamps() {
        let f = FlowLatency::default();
        f.requested("po-1", 1_000);
        f.provider_event(&paid("po-1", 46_000));
        f.provider_event(&paid("po-1", 46_000));
        f.provider_event(&paid("po-2", 3_000));
        f.requested("po-2", 2_000);
        f.requested("po-2", 2_000);
        let text = render(&f);
        let line = |le: &str| format!(r#"switchyard_flow_end_to_end_seconds_bucket{{le="{le}",domain="payouts",flow="command_to_paid"}}"#);
        assert!(text.contains(r#"switchyard_flow_end_to_end_seconds_count{domain="payouts",flow="command_to_paid"} 2"#), "{text}");
        assert!(text.contains(&format!("{} 1\n", line("30.0"))), "{text}");
        assert!(text.contains(&format!("{} 2\n", line("60.0"))), "{text}");
        assert!(!text.contains("# EOF"));
    }

    #[test]
    fn an_onboarding_counts_from_its_start_to_its_terminal_transition_once() {
        use switchyard_canonical::check::FlowStep;
        use switchyard_canonical::onboarding::OnboardingState;
        let t = |version: i64, terminal: bool, at: i64| OnboardingEvent {
            event_id: format!("flow-1:{version}"),
            subject_id: "app-1".into(),
            flow_id: "flow-1".into(),
            version,
            previous_state: None,
            state: if terminal { OnboardingState::Approved } else { OnboardingState::KycPending },
            terminal,
            trigger: "start".into(),
            step: FlowStep::Kyc,
            attempt: 1,
            reason: None,
            compensate: vec![],
            occurred_at_ms: at,
        };
        let f = FlowLatency::default();
        f.onboarding(&t(1, false, 0));
        f.onboarding(&t(2, false, 5_000));
        f.onboarding(&t(3, true, 100_000));
        f.onboarding(&t(3, true, 100_000));
        let text = render(&f);
        assert!(text.contains(r#"switchyard_flow_end_to_end_seconds_count{domain="onboarding",flow="start_to_terminal"} 1"#), "{text}");
        assert!(text.contains(r#"switchyard_flow_end_to_end_seconds_sum{domain="onboarding",flow="start_to_terminal"} 100.0"#), "{text}");
    }
}
