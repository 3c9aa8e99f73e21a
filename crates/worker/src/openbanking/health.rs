//! Institution health as routing input: one circuit breaker per
//! (provider, institution). An aggregator is usually fine while one bank
//! behind it is down for hours (Plaid's INSTITUTION_DOWN /
//! INSTITUTION_NOT_RESPONDING), so the provider's own breaker would never
//! open, and every command for that bank would still wait on the
//! aggregator just to hear "down". While an institution's breaker is open a
//! command for it is answered INSTITUTION_UNAVAILABLE at once, with the
//! cool-down left as its retry-after, and no provider call; after the
//! cool-down one command goes through as the half-open probe.
//!
//! What counts against an institution: its own errors and timeouts. An
//! aggregator-side failure (rate limit, 5xx, bad credentials) says nothing
//! about the bank and counts as neither, except that it ends a probe (the
//! call reached past the breaker, so the breaker must hear back).
//!
//! Only calls that reach the bank are judged (data and login checks):
//! creating a link token or exchanging a public token is Plaid's own
//! business, so those are refused while the breaker is open (linking a
//! dark bank fails in the user's browser anyway) but neither probe nor
//! count; removing a connection (a revocation) is never held back.
//!
//! State lives in the process: each worker instance learns on its own
//! within `min_calls` commands, which is cheap next to sharing it.

use crate::metrics::Metrics;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_routing::{BreakerConfig, BreakerState, CircuitBreaker};

/// Whether a provider operation reaches the institution (see the module doc).
pub fn reaches_institution(operation: &str) -> bool {
    matches!(operation, "accounts" | "transactions_sync" | "verify_login")
}

/// Whether the breaker guards an operation at all: removing a connection
/// is Plaid's alone, and a customer's revocation must never wait on a bank.
pub fn guarded(operation: &str) -> bool {
    operation != "remove"
}

/// How a call to a provider about one institution ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstitutionResult {
    Ok,
    /// The institution said it is down or not responding.
    Error,
    /// The call timed out.
    Timeout,
    /// Anything that is not the institution's doing.
    Other,
}

impl InstitutionResult {
    fn as_str(self) -> &'static str {
        match self {
            InstitutionResult::Ok => "ok",
            InstitutionResult::Error => "error",
            InstitutionResult::Timeout => "timeout",
            InstitutionResult::Other => "other",
        }
    }
}

struct Entry {
    breaker: CircuitBreaker,
    /// When the breaker last opened: the retry-after is what is left of the cool-down.
    opened_at: Option<Instant>,
}

/// Breakers per (provider, institution), made on first use.
pub struct InstitutionHealth {
    config: BreakerConfig,
    entries: Mutex<HashMap<(String, String), Entry>>,
    metrics: Arc<Metrics>,
}

impl InstitutionHealth {
    pub fn new(config: BreakerConfig, metrics: Arc<Metrics>) -> Self {
        Self { config, entries: Mutex::default(), metrics }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a call about `institution` may go out now; `Err` carries the
    /// cool-down left while the breaker is open (or a probe is out). A
    /// call that `reaches` the bank may be the half-open probe and must be
    /// [`record`](Self::record)ed; one that does not only looks.
    pub fn admit(&self, provider: &str, institution: &str, reaches: bool) -> Result<(), Duration> {
        let mut entries = self.lock();
        let Some(entry) = entries.get_mut(&(provider.to_owned(), institution.to_owned())) else { return Ok(()) };
        let before = entry.breaker.state();
        let allowed = if reaches { entry.breaker.allow() } else { entry.breaker.would_allow() };
        if allowed {
            let after = entry.breaker.state();
            if after != before {
                tracing::info!(provider, institution, "institution breaker half-open: one probe goes through");
                self.metrics.institution_breaker(provider, institution, after);
            }
            return Ok(());
        }
        let open = Duration::from_millis(self.config.open_ms);
        let left = entry.opened_at.map_or(open, |t| open.saturating_sub(t.elapsed()));
        // A probe in flight leaves no cool-down; the probe answers soon.
        Err(left.max(Duration::from_millis(100)))
    }

    /// Records how a call ended (the probe's included).
    pub fn record(&self, provider: &str, institution: &str, result: InstitutionResult) {
        self.metrics.institution_call(provider, institution, result.as_str());
        let mut entries = self.lock();
        let entry = entries
            .entry((provider.to_owned(), institution.to_owned()))
            .or_insert_with(|| Entry { breaker: CircuitBreaker::new(self.config.clone()), opened_at: None });
        let failed = matches!(result, InstitutionResult::Error | InstitutionResult::Timeout);
        if result == InstitutionResult::Other && entry.breaker.state() == BreakerState::Closed {
            // Not the institution's doing, and no probe waits on it.
            return;
        }
        if let Some(state) = entry.breaker.record(failed) {
            if state == BreakerState::Open {
                entry.opened_at = Some(Instant::now());
                tracing::warn!(provider, institution, "institution breaker open: commands answered INSTITUTION_UNAVAILABLE without a call");
            } else {
                tracing::info!(provider, institution, state = ?state, "institution breaker changed");
            }
            self.metrics.institution_breaker(provider, institution, state);
        }
    }

    /// A call let through that ended without an answer. If a probe is out
    /// it is taken as failed (the breaker reopens and probes again after
    /// the cool-down), so a lost probe never holds the breaker half-open.
    /// It may be another delivery's probe: that one's answer is then
    /// ignored and one more cool-down passes, which errs on the safe side.
    pub fn abandoned(&self, provider: &str, institution: &str) {
        let mut entries = self.lock();
        let Some(entry) = entries.get_mut(&(provider.to_owned(), institution.to_owned())) else { return };
        if entry.breaker.state() == BreakerState::HalfOpen {
            if let Some(state) = entry.breaker.record(true) {
                entry.opened_at = Some(Instant::now());
                self.metrics.institution_breaker(provider, institution, state);
            }
        }
    }

    /// The state of one institution's breaker (closed if never seen).
    pub fn state(&self, provider: &str, institution: &str) -> BreakerState {
        self.lock().get(&(provider.to_owned(), institution.to_owned())).map_or(BreakerState::Closed, |e| e.breaker.state())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health() -> InstitutionHealth {
        let config = BreakerConfig { window_ms: 60_000, min_calls: 3, failure_ratio: 0.5, open_ms: 40 };
        InstitutionHealth::new(config, Arc::new(Metrics::new("openbanking")))
    }

    #[test]
    fn opens_per_institution_answers_with_the_cool_down_then_probes() {
        let h = health();
        for _ in 0..3 {
            assert!(h.admit("plaid", "ins_1", true).is_ok());
            h.record("plaid", "ins_1", InstitutionResult::Error);
        }
        assert_eq!(h.state("plaid", "ins_1"), BreakerState::Open);
        let left = h.admit("plaid", "ins_1", true).expect_err("open: refused");
        assert!(left <= Duration::from_millis(100), "{left:?}");
        assert!(h.admit("plaid", "ins_2", true).is_ok(), "another institution is not affected");
        std::thread::sleep(Duration::from_millis(50));
        assert!(h.admit("plaid", "ins_1", true).is_ok(), "cooled down: the probe");
        assert!(h.admit("plaid", "ins_1", true).is_err(), "one probe at a time");
        h.record("plaid", "ins_1", InstitutionResult::Ok);
        assert_eq!(h.state("plaid", "ins_1"), BreakerState::Closed);
        let text = h.metrics.render();
        assert!(text.contains("switchyard_institution_circuit_state{domain=\"openbanking\",provider=\"plaid\",institution=\"ins_1\"} 0"), "{text}");
        assert!(text.contains("result=\"error\"} 3"), "{text}");
    }

    #[test]
    fn aggregator_failures_do_not_count_against_the_institution() {
        let h = health();
        for _ in 0..5 {
            h.record("plaid", "ins_1", InstitutionResult::Other);
        }
        h.record("plaid", "ins_1", InstitutionResult::Timeout);
        assert_eq!(h.state("plaid", "ins_1"), BreakerState::Closed);
        h.record("plaid", "ins_1", InstitutionResult::Timeout);
        h.record("plaid", "ins_1", InstitutionResult::Timeout);
        assert_eq!(h.state("plaid", "ins_1"), BreakerState::Open, "timeouts do");
    }
}
