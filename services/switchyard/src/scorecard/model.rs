//! The scorecard's figures, independent of where they came from: per vendor
//! and domain, totals and per-bucket statistics, each compared with the
//! partner's contracted SLA, and the breach intervals. Pure functions only,
//! so every figure can be checked against a hand computation.

use std::collections::BTreeMap;
use switchyard_routing::PartnerCatalog;

/// What the report prints where a source does not carry a figure: an honest
/// gap instead of a made-up zero.
pub(crate) const NO_DATA: &str = "n/a (source has no data)";

/// Results the alert rules (`switchyard sla rules`) count as success: a
/// lookup that finds nothing is still a healthy answer. Kept identical to
/// the rules so the scorecard and the alerts agree on what a failure is.
const SUCCESS: &[&str] = &["ok", "found", "not_found"];
/// Results the alert rules count as timeouts (ours, or the vendor's 408/504).
const TIMEOUT: &[&str] = &["timeout", "408", "504"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum BucketSize {
    Hour,
    Day,
}

impl BucketSize {
    pub(crate) fn ms(self) -> i64 {
        match self {
            BucketSize::Hour => 3_600_000,
            BucketSize::Day => 86_400_000,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            BucketSize::Hour => "hourly",
            BucketSize::Day => "daily",
        }
    }
}

/// The reporting window: `from_ms` is aligned down to a bucket boundary (UTC),
/// so the same call lands in the same bucket whichever source is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    pub(crate) from_ms: i64,
    pub(crate) to_ms: i64,
    pub(crate) bucket: BucketSize,
}

impl Window {
    pub(crate) fn new(now_ms: i64, since_ms: i64, bucket: BucketSize) -> Self {
        let b = bucket.ms();
        Self { from_ms: (now_ms - since_ms).div_euclid(b) * b, to_ms: now_ms, bucket }
    }

    /// The start of the bucket holding `at_ms`.
    pub(crate) fn bucket_of(&self, at_ms: i64) -> i64 {
        let b = self.bucket.ms();
        at_ms.div_euclid(b) * b
    }
}

/// How a call ended, in the alert rules' terms. A timeout and a 409 are also
/// errors, as they are in the rules' error ratio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub(crate) error: bool,
    pub(crate) timeout: bool,
    /// The vendor answered 409: another request under the same idempotency key.
    pub(crate) collision: bool,
}

impl Verdict {
    pub(crate) fn of_label(label: &str) -> Self {
        Self { error: !SUCCESS.contains(&label), timeout: TIMEOUT.contains(&label), collision: label == "409" }
    }
}

/// The nearest-rank percentile (`q` in 0..=1) of `sorted` values: the
/// smallest value with at least q of the values at or below it. Chosen over
/// interpolation because every figure it gives was actually measured.
pub(crate) fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// Figures over one span of time (a bucket or the whole window). Counts are
/// real numbers: Prometheus' `increase()` extrapolates.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Stats {
    pub(crate) calls: f64,
    pub(crate) errors: f64,
    pub(crate) timeouts: f64,
    /// None where the source cannot tell 409s apart.
    pub(crate) collisions: Option<f64>,
    /// Latency percentiles in milliseconds.
    pub(crate) p50_ms: Option<f64>,
    pub(crate) p95_ms: Option<f64>,
    pub(crate) p99_ms: Option<f64>,
}

impl Stats {
    /// From individual calls: `(latency_ms, verdict)`.
    pub(crate) fn of_calls(calls: &[(f64, Verdict)]) -> Self {
        let mut latencies: Vec<f64> = calls.iter().map(|(l, _)| *l).collect();
        latencies.sort_by(f64::total_cmp);
        let count = |f: fn(&Verdict) -> bool| calls.iter().filter(|(_, v)| f(v)).count() as f64;
        Self {
            calls: calls.len() as f64,
            errors: count(|v| v.error),
            timeouts: count(|v| v.timeout),
            collisions: Some(count(|v| v.collision)),
            p50_ms: percentile(&latencies, 0.50),
            p95_ms: percentile(&latencies, 0.95),
            p99_ms: percentile(&latencies, 0.99),
        }
    }

    pub(crate) fn error_ratio(&self) -> Option<f64> {
        ratio(self.errors, self.calls)
    }

    pub(crate) fn timeout_ratio(&self) -> Option<f64> {
        ratio(self.timeouts, self.calls)
    }

    pub(crate) fn collision_ratio(&self) -> Option<f64> {
        ratio(self.collisions?, self.calls)
    }
}

/// `part / whole`, none without calls (0/0 is no evidence either way).
pub(crate) fn ratio(part: f64, whole: f64) -> Option<f64> {
    (whole > 0.0).then(|| part / whole)
}

/// One vendor in one domain.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Row {
    pub(crate) domain: String,
    pub(crate) provider: String,
    pub(crate) total: Stats,
    /// Bucket start (ms) -> figures; buckets without calls are absent.
    pub(crate) buckets: BTreeMap<i64, Stats>,
    /// Webhook delay p95 (vendor timestamp -> on the bus), seconds, overall
    /// and per bucket.
    pub(crate) webhook_delay_p95_s: Option<f64>,
    pub(crate) webhook_delay_buckets: BTreeMap<i64, f64>,
    /// Seconds the breaker was open within the window.
    pub(crate) breaker_open_s: Option<f64>,
    /// Shadow comparisons with this vendor as candidate: (agreeing, compared).
    pub(crate) shadow: Option<(f64, f64)>,
}

/// One end-to-end flow of a domain (`switchyard_flow_end_to_end_seconds`,
/// observed by the reconciler from the timestamps on the bus).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Flow {
    pub(crate) domain: String,
    pub(crate) flow: String,
    /// Flows completed in the window.
    pub(crate) count: f64,
    pub(crate) p50_ms: Option<f64>,
    pub(crate) p95_ms: Option<f64>,
    pub(crate) p99_ms: Option<f64>,
}

/// A partner's contracted SLA, as the catalog states it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Contract {
    pub(crate) p99_ms: f64,
    pub(crate) error_ratio: f64,
    pub(crate) timeout_ratio: f64,
    /// Optional in the catalog: not every contract states them.
    pub(crate) p95_ms: Option<f64>,
    pub(crate) webhook_delay_ms: Option<f64>,
}

pub(crate) fn contract(catalog: Option<&PartnerCatalog>, provider: &str) -> Option<Contract> {
    let sla = &catalog?.partners.iter().find(|p| p.name == provider)?.sla;
    Some(Contract {
        p99_ms: sla.p99_latency_ms as f64,
        error_ratio: sla.error_ratio,
        timeout_ratio: sla.timeout_ratio,
        p95_ms: sla.p95_latency_ms.map(|ms| ms as f64),
        webhook_delay_ms: sla.webhook_delay_p95_ms.map(|ms| ms as f64),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Measure {
    P95,
    P99,
    ErrorRatio,
    TimeoutRatio,
    /// Webhook delay p95, in ms; per provider, not in [`Stats`].
    WebhookDelay,
}

impl Measure {
    /// The measures judged per bucket from [`Stats`].
    pub(crate) const CALLS: [Measure; 4] = [Measure::P95, Measure::P99, Measure::ErrorRatio, Measure::TimeoutRatio];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Measure::P95 => "p95 latency",
            Measure::P99 => "p99 latency",
            Measure::ErrorRatio => "error ratio",
            Measure::TimeoutRatio => "timeout ratio",
            Measure::WebhookDelay => "webhook delay",
        }
    }

    pub(crate) fn of(self, s: &Stats) -> Option<f64> {
        match self {
            Measure::P95 => s.p95_ms,
            Measure::P99 => s.p99_ms,
            Measure::ErrorRatio => s.error_ratio(),
            Measure::TimeoutRatio => s.timeout_ratio(),
            Measure::WebhookDelay => None,
        }
    }

    /// The contracted limit; none where the contract does not state one.
    pub(crate) fn limit(self, c: &Contract) -> Option<f64> {
        match self {
            Measure::P95 => c.p95_ms,
            Measure::P99 => Some(c.p99_ms),
            Measure::ErrorRatio => Some(c.error_ratio),
            Measure::TimeoutRatio => Some(c.timeout_ratio),
            Measure::WebhookDelay => c.webhook_delay_ms,
        }
    }

    pub(crate) fn format(self, value: f64) -> String {
        match self {
            Measure::P95 | Measure::P99 | Measure::WebhookDelay => fmt_ms(value),
            Measure::ErrorRatio | Measure::TimeoutRatio => fmt_pct(value),
        }
    }
}

/// A run of consecutive buckets above the contract: `[start_ms, end_ms)`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Breach {
    pub(crate) measure: Measure,
    pub(crate) start_ms: i64,
    pub(crate) end_ms: i64,
    /// The worst bucket's figure.
    pub(crate) worst: f64,
}

/// The breach intervals of `measure` in `buckets`. A bucket counts only with
/// at least `min_calls` calls (as the alert rules wait for a minimum: three
/// failures out of ten is noise), and a bucket that is missing or too thin
/// ends a run, so every interval printed was measured throughout.
pub(crate) fn breaches(buckets: &BTreeMap<i64, Stats>, bucket_ms: i64, measure: Measure, limit: f64, min_calls: f64) -> Vec<Breach> {
    let judged = buckets.iter().filter(|(_, s)| s.calls >= min_calls).filter_map(|(start, s)| Some((*start, measure.of(s)?)));
    intervals(judged, bucket_ms, measure, limit)
}

/// Runs of consecutive buckets (`(start, value)`, in order) above `limit`.
pub(crate) fn intervals(points: impl IntoIterator<Item = (i64, f64)>, bucket_ms: i64, measure: Measure, limit: f64) -> Vec<Breach> {
    let mut out: Vec<Breach> = Vec::new();
    for (start, value) in points {
        if value <= limit {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.end_ms == start => {
                last.end_ms = start + bucket_ms;
                last.worst = last.worst.max(value);
            }
            _ => out.push(Breach { measure, start_ms: start, end_ms: start + bucket_ms, worst: value }),
        }
    }
    out
}

/// Milliseconds as printed: seconds from 10 s (webhook delays run to
/// minutes), whole milliseconds from 10 ms, one decimal below.
pub(crate) fn fmt_ms(ms: f64) -> String {
    if ms >= 10_000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else if ms >= 10.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

pub(crate) fn fmt_pct(ratio: f64) -> String {
    format!("{:.2} %", ratio * 100.0)
}

/// `YYYY-MM-DD HH:MM UTC`.
pub(crate) fn fmt_utc(ms: i64) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|at| at.format(FORMAT).ok())
        .unwrap_or_else(|| format!("{ms} ms"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: Verdict = Verdict { error: false, timeout: false, collision: false };

    #[test]
    fn nearest_rank_percentiles_of_hand_counted_samples() {
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        // ceil(0.5*10) = 5th, ceil(0.95*10) = 10th, ceil(0.99*10) = 10th.
        assert_eq!(percentile(&ten, 0.50), Some(5.0));
        assert_eq!(percentile(&ten, 0.95), Some(10.0));
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&hundred, 0.95), Some(95.0));
        assert_eq!(percentile(&hundred, 0.99), Some(99.0));
        assert_eq!(percentile(&hundred, 0.50), Some(50.0));
        // One sample is every percentile; none is no figure at all.
        assert_eq!(percentile(&[7.0], 0.99), Some(7.0));
        assert_eq!(percentile(&[7.0], 0.0), Some(7.0));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn results_are_classified_as_the_alert_rules_do() {
        assert_eq!(Verdict::of_label("ok"), OK);
        assert_eq!(Verdict::of_label("not_found"), OK);
        assert_eq!(Verdict::of_label("504"), Verdict { error: true, timeout: true, collision: false });
        assert_eq!(Verdict::of_label("timeout"), Verdict { error: true, timeout: true, collision: false });
        assert_eq!(Verdict::of_label("409"), Verdict { error: true, timeout: false, collision: true });
        assert_eq!(Verdict::of_label("insufficient_funds"), Verdict { error: true, timeout: false, collision: false });
    }

    #[test]
    fn stats_of_calls_count_ratios_and_percentiles() {
        let timeout = Verdict::of_label("timeout");
        let conflict = Verdict::of_label("409");
        // Latencies 10..80 ms; one timeout and one 409 among eight calls.
        let calls: Vec<(f64, Verdict)> =
            [(30.0, OK), (10.0, OK), (80.0, timeout), (20.0, OK), (50.0, conflict), (40.0, OK), (70.0, OK), (60.0, OK)].to_vec();
        let s = Stats::of_calls(&calls);
        assert_eq!((s.calls, s.errors, s.timeouts, s.collisions), (8.0, 2.0, 1.0, Some(1.0)));
        assert_eq!(s.error_ratio(), Some(0.25));
        assert_eq!(s.timeout_ratio(), Some(0.125));
        assert_eq!(s.collision_ratio(), Some(0.125));
        // ceil(4) = 4th of 10..80 is 40; ceil(7.6) = 8th and ceil(7.92) = 8th are 80.
        assert_eq!((s.p50_ms, s.p95_ms, s.p99_ms), (Some(40.0), Some(80.0), Some(80.0)));
        assert_eq!(Stats::default().error_ratio(), None, "no calls is no ratio, not 0 %");
    }

    fn bucket(calls: f64, errors: f64, p99: f64) -> Stats {
        Stats { calls, errors, p99_ms: Some(p99), ..Stats::default() }
    }

    #[test]
    fn consecutive_breaching_buckets_merge_and_gaps_or_thin_buckets_split() {
        let h = 3_600_000;
        let buckets: BTreeMap<i64, Stats> = [
            (0, bucket(100.0, 0.0, 900.0)),
            (h, bucket(100.0, 5.0, 1600.0)),     // p99 above 1500, errors 5 %
            (2 * h, bucket(100.0, 1.0, 2400.0)), // worst p99
            (3 * h, bucket(100.0, 0.0, 1700.0)),
            (4 * h, bucket(5.0, 5.0, 9000.0)),   // too few calls to count
            (5 * h, bucket(100.0, 0.0, 1501.0)), // after the thin bucket: a new run
            // 6h has no calls: absent
            (7 * h, bucket(100.0, 2.0, 1499.0)),
        ]
        .into_iter()
        .collect();
        let p99 = breaches(&buckets, h, Measure::P99, 1500.0, 20.0);
        assert_eq!(
            p99,
            vec![
                Breach { measure: Measure::P99, start_ms: h, end_ms: 4 * h, worst: 2400.0 },
                Breach { measure: Measure::P99, start_ms: 5 * h, end_ms: 6 * h, worst: 1501.0 },
            ]
        );
        // Error ratio above 1 %: 5 % at 1h; 1 % at 2h is not above; 2 % at 7h.
        let errors = breaches(&buckets, h, Measure::ErrorRatio, 0.01, 20.0);
        assert_eq!(
            errors,
            vec![
                Breach { measure: Measure::ErrorRatio, start_ms: h, end_ms: 2 * h, worst: 0.05 },
                Breach { measure: Measure::ErrorRatio, start_ms: 7 * h, end_ms: 8 * h, worst: 0.02 },
            ]
        );
        // With a minimum of 1 the thin bucket counts and joins both runs.
        assert_eq!(
            breaches(&buckets, h, Measure::P99, 1500.0, 1.0),
            vec![Breach { measure: Measure::P99, start_ms: h, end_ms: 6 * h, worst: 9000.0 }]
        );
    }

    #[test]
    fn windows_start_on_a_bucket_boundary() {
        let day = 86_400_000;
        let w = Window::new(10 * day + 5_000, 3 * day, BucketSize::Day);
        assert_eq!(w.from_ms, 7 * day);
        assert_eq!(w.bucket_of(8 * day + 1), 8 * day);
        let w = Window::new(10 * 3_600_000 + 1, 3_600_000, BucketSize::Hour);
        assert_eq!(w.from_ms, 9 * 3_600_000);
    }

    #[test]
    fn utc_and_figures_format_as_printed() {
        assert_eq!(fmt_utc(0), "1970-01-01 00:00 UTC");
        // 2026-12-06 20:25 UTC is 1796588700 s after the epoch.
        assert_eq!(fmt_utc(1_796_588_700_000), "2026-12-06 20:25 UTC");
        assert_eq!(fmt_utc(951_782_400_000), "2000-02-29 00:00 UTC");
        assert_eq!(fmt_ms(1234.4), "1234 ms");
        assert_eq!(fmt_ms(288_000.0), "288.0 s");
        assert_eq!(fmt_ms(2.26), "2.3 ms");
        assert_eq!(fmt_pct(7.0 / 85.0), "8.24 %");
    }
}
