//! A circuit breaker per provider: closed -> open when the failure ratio over
//! a sliding window crosses the threshold, open -> half-open after a
//! cool-down, half-open -> closed on a successful probe (or back to open on a
//! failed one). Only vendor-side failures count: a declined payout is a
//! healthy vendor saying no.

use serde::Deserialize;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Results older than this are forgotten (in steps of a tenth of it).
    pub window_ms: u64,
    /// Fewer calls than this in the window never open the breaker.
    pub min_calls: usize,
    /// Opens at or above this share of failures (0..1).
    pub failure_ratio: f64,
    /// How long it stays open before one probe is let through.
    pub open_ms: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self { window_ms: 10_000, min_calls: 10, failure_ratio: 0.5, open_ms: 5_000 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    /// For a gauge: 0 closed, 1 open, 2 half-open.
    pub fn as_gauge(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        }
    }
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    opened_at: Option<Instant>,
    probe_in_flight: bool,
    window: Window,
}

/// Call results over the sliding window, kept as per-slice counts with
/// running totals: recording is O(1) and memory does not grow with the call
/// rate (one entry per call measured 5 % of a busy worker's CPU). The window
/// edge moves in steps of a tenth of its length.
#[derive(Debug, Default)]
struct Window {
    slices: VecDeque<Slice>,
    calls: usize,
    failures: usize,
}

#[derive(Debug)]
struct Slice {
    started: Instant,
    calls: usize,
    failures: usize,
}

const SLICES_PER_WINDOW: u32 = 10;

impl Window {
    fn record(&mut self, now: Instant, length: Duration, failed: bool) {
        let slice_length = (length / SLICES_PER_WINDOW).max(Duration::from_millis(1));
        while let Some(oldest) = self.slices.front() {
            if now.duration_since(oldest.started) <= length {
                break;
            }
            self.calls -= oldest.calls;
            self.failures -= oldest.failures;
            self.slices.pop_front();
        }
        match self.slices.back_mut() {
            Some(slice) if now.duration_since(slice.started) < slice_length => {
                slice.calls += 1;
                slice.failures += usize::from(failed);
            }
            _ => self.slices.push_back(Slice { started: now, calls: 1, failures: usize::from(failed) }),
        }
        self.calls += 1;
        self.failures += usize::from(failed);
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

#[derive(Debug)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    inner: Mutex<Inner>,
}

impl CircuitBreaker {
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            inner: Mutex::new(Inner { state: BreakerState::Closed, opened_at: None, probe_in_flight: false, window: Window::default() }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn state(&self) -> BreakerState {
        self.lock().state
    }

    /// Whether [`allow`](Self::allow) would let a call through now, without
    /// taking the half-open probe: routing asks this, the call site allows.
    pub fn would_allow(&self) -> bool {
        let inner = self.lock();
        match inner.state {
            BreakerState::Closed => true,
            BreakerState::Open => inner.opened_at.is_none_or(|t| t.elapsed() >= Duration::from_millis(self.config.open_ms)),
            BreakerState::HalfOpen => !inner.probe_in_flight,
        }
    }

    /// Whether a call may go out now. In half-open, one probe at a time.
    pub fn allow(&self) -> bool {
        let mut inner = self.lock();
        match inner.state {
            BreakerState::Closed => true,
            BreakerState::Open => {
                let cooled = inner.opened_at.is_none_or(|t| t.elapsed() >= Duration::from_millis(self.config.open_ms));
                if cooled {
                    inner.state = BreakerState::HalfOpen;
                    inner.probe_in_flight = true;
                }
                cooled
            }
            BreakerState::HalfOpen if inner.probe_in_flight => false,
            BreakerState::HalfOpen => {
                inner.probe_in_flight = true;
                true
            }
        }
    }

    /// Records a call's result; returns the new state if it changed.
    pub fn record(&self, vendor_failed: bool) -> Option<BreakerState> {
        let now = Instant::now();
        let mut inner = self.lock();
        let before = inner.state;
        match inner.state {
            BreakerState::HalfOpen => {
                inner.probe_in_flight = false;
                if vendor_failed {
                    inner.state = BreakerState::Open;
                    inner.opened_at = Some(now);
                } else {
                    inner.state = BreakerState::Closed;
                    inner.window.clear();
                }
            }
            BreakerState::Closed => {
                inner.window.record(now, Duration::from_millis(self.config.window_ms), vendor_failed);
                let (calls, failures) = (inner.window.calls, inner.window.failures);
                if calls >= self.config.min_calls && failures as f64 >= self.config.failure_ratio * calls as f64 {
                    inner.state = BreakerState::Open;
                    inner.opened_at = Some(now);
                }
            }
            // Late results of calls that started before the breaker opened.
            BreakerState::Open => {}
        }
        (inner.state != before).then_some(inner.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new(BreakerConfig { window_ms: 60_000, min_calls: 4, failure_ratio: 0.5, open_ms: 30 })
    }

    #[test]
    fn opens_on_failures_then_probes_and_closes() {
        let b = breaker();
        assert_eq!(b.record(true), None);
        assert_eq!(b.record(false), None);
        assert_eq!(b.record(true), None, "three calls are below min_calls");
        assert_eq!(b.record(true), Some(BreakerState::Open));
        assert!(!b.allow(), "open: no calls");
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.allow(), "cooled down: one probe");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(!b.allow(), "only one probe at a time");
        assert_eq!(b.record(false), Some(BreakerState::Closed));
        assert!(b.allow());
    }

    #[test]
    fn a_failed_probe_reopens() {
        let b = breaker();
        for _ in 0..4 {
            b.record(true);
        }
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.allow());
        assert_eq!(b.record(true), Some(BreakerState::Open));
        assert!(!b.allow());
    }

    #[test]
    fn failures_older_than_the_window_are_forgotten() {
        let b = CircuitBreaker::new(BreakerConfig { window_ms: 50, min_calls: 4, failure_ratio: 0.5, open_ms: 30 });
        for _ in 0..3 {
            assert_eq!(b.record(true), None);
        }
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(b.record(true), None, "the first three failures left the window");
        for _ in 0..3 {
            b.record(true);
        }
        assert_eq!(b.state(), BreakerState::Open, "four failures inside the window open it");
    }

    #[test]
    fn healthy_traffic_stays_closed() {
        let b = breaker();
        for i in 0..100 {
            b.record(i % 10 == 0);
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
