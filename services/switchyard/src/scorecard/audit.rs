//! The scorecard from the store's audit log: every worker writes one
//! `vendor_call` entry per vendor call (payouts, cards, KYC, AML, fraud), so
//! the figures are exact (true percentiles, counted ratios) even where no
//! Prometheus keeps a month of history. What the log does not record
//! (webhook delay, breaker state, shadow comparisons) stays unknown.

use super::model::{Row, Stats, Verdict, Window};
use futures::StreamExt;
use std::collections::{BTreeMap, HashMap};
use switchyard_store::audit::AuditRecord;
use switchyard_store::Store;

/// The part of a `vendor_call` entry's detail the scorecard reads. The
/// payout worker writes `result` "ok"/"failed" with the error beside it; the
/// card and check workers write the metric's result label.
#[derive(Debug, serde::Deserialize)]
struct Detail {
    provider: String,
    result: String,
    #[serde(default)]
    http_status: Option<u16>,
    latency_ms: f64,
    #[serde(default)]
    error: Option<String>,
}

/// The result label the worker's `vendor_call_duration_seconds` metric
/// carried for this call: the HTTP status of a failure, else its error code
/// (`class/code: message`), so both sources classify a call alike.
fn label(d: &Detail) -> String {
    if d.result != "failed" {
        return d.result.clone();
    }
    if let Some(status) = d.http_status {
        return status.to_string();
    }
    let code = d.error.as_deref().and_then(|e| e.split_once('/')).map(|(_, rest)| rest.split(':').next().unwrap_or(rest).trim());
    code.filter(|c| !c.is_empty()).unwrap_or("unknown").to_owned()
}

/// The metrics' domain label for a worker's audit actor (`payout-worker`
/// -> `payouts`, `kyc-worker` -> `kyc`).
fn domain_of(actor: &str) -> String {
    match actor.strip_suffix("-worker").unwrap_or(actor) {
        "payout" => "payouts".to_owned(),
        "card" => "cards".to_owned(),
        other => other.to_owned(),
    }
}

/// One readable entry: `(domain, provider, latency_ms, verdict)`.
fn call_of(r: &AuditRecord) -> Option<(String, String, f64, Verdict)> {
    let d: Detail = serde_json::from_str(&r.detail).ok()?;
    let verdict = Verdict::of_label(&label(&d));
    Some((domain_of(&r.actor), d.provider, d.latency_ms, verdict))
}

type Calls = Vec<(f64, Verdict)>;

/// Folds entries into rows as they arrive. Holds one latency per call, the
/// least exact percentiles need (8 bytes a call: 10 M calls are 80 MB).
#[derive(Default)]
pub(crate) struct Fold {
    calls: HashMap<(String, String), BTreeMap<i64, Calls>>,
    pub(crate) unreadable: u64,
}

impl Fold {
    pub(crate) fn add(&mut self, window: &Window, r: &AuditRecord) {
        let Some((domain, provider, latency, verdict)) = call_of(r) else {
            self.unreadable += 1;
            return;
        };
        let buckets = self.calls.entry((domain, provider)).or_default();
        buckets.entry(window.bucket_of(r.at_ms)).or_default().push((latency, verdict));
    }

    pub(crate) fn rows(self) -> Vec<Row> {
        let mut rows: Vec<Row> = self
            .calls
            .into_iter()
            .map(|((domain, provider), buckets)| {
                let all: Calls = buckets.values().flatten().copied().collect();
                let buckets = buckets.iter().map(|(start, calls)| (*start, Stats::of_calls(calls))).collect();
                Row { domain, provider, total: Stats::of_calls(&all), buckets, ..Row::default() }
            })
            .collect();
        rows.sort_by(|a, b| (&a.domain, &a.provider).cmp(&(&b.domain, &b.provider)));
        rows
    }
}

/// Every vendor call in `window`, by domain and vendor; and how many entries
/// could not be read (counted and reported, never guessed at).
pub(crate) async fn load(store: &Store, window: &Window) -> anyhow::Result<(Vec<Row>, u64)> {
    let mut fold = Fold::default();
    let mut entries = store.audit_since("vendor_call", window.from_ms);
    while let Some(entry) = entries.next().await {
        let entry = entry?;
        if entry.at_ms <= window.to_ms {
            fold.add(window, &entry);
        }
    }
    let unreadable = fold.unreadable;
    Ok((fold.rows(), unreadable))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scorecard::model::BucketSize;

    fn entry(actor: &str, at_ms: i64, detail: &str) -> AuditRecord {
        AuditRecord {
            at_ms,
            actor: actor.into(),
            action: "vendor_call".into(),
            subject_id: "s".into(),
            correlation_id: "c".into(),
            detail: detail.into(),
        }
    }

    #[test]
    fn each_workers_detail_shape_gives_the_metric_label() {
        let parse = |s: &str| label(&serde_json::from_str::<Detail>(s).expect("detail"));
        // Payout worker: "failed" with the status, or with the error only.
        assert_eq!(parse(r#"{"provider":"stripe","result":"failed","http_status":409,"latency_ms":3,"error":"transient/vendor_unavailable: busy"}"#), "409");
        assert_eq!(parse(r#"{"provider":"stripe","result":"failed","http_status":null,"latency_ms":3,"error":"transient/timeout: vendor call timed out"}"#), "timeout");
        assert_eq!(parse(r#"{"provider":"stripe","result":"failed","latency_ms":3}"#), "unknown");
        assert_eq!(parse(r#"{"provider":"stripe","result":"ok","http_status":200,"latency_ms":3}"#), "ok");
        // Card and check workers: the label itself.
        assert_eq!(parse(r#"{"provider":"marqeta","result":"not_found","http_status":404,"latency_ms":3}"#), "not_found");
        assert_eq!(parse(r#"{"provider":"onfido","result":"503","http_status":503,"latency_ms":3,"error":"transient/vendor_unavailable: x"}"#), "503");
    }

    #[test]
    fn entries_fold_into_buckets_per_domain_and_vendor() {
        let h = 3_600_000;
        let window = Window::new(10 * h, 10 * h, BucketSize::Hour);
        let mut fold = Fold::default();
        fold.add(&window, &entry("payout-worker", 2 * h + 1, r#"{"provider":"stripe","result":"ok","latency_ms":100}"#));
        fold.add(&window, &entry("payout-worker", 2 * h + 2, r#"{"provider":"stripe","result":"failed","latency_ms":300,"error":"transient/timeout: t"}"#));
        fold.add(&window, &entry("payout-worker", 3 * h, r#"{"provider":"stripe","result":"ok","latency_ms":200}"#));
        fold.add(&window, &entry("kyc-worker", 3 * h, r#"{"provider":"onfido","result":"ok","latency_ms":50}"#));
        fold.add(&window, &entry("payout-worker", 3 * h, "not json"));
        fold.add(&window, &entry("payout-worker", 3 * h, r#"{"provider":"stripe"}"#));
        assert_eq!(fold.unreadable, 2);
        let rows = fold.rows();
        assert_eq!(rows.iter().map(|r| (r.domain.as_str(), r.provider.as_str())).collect::<Vec<_>>(), [("kyc", "onfido"), ("payouts", "stripe")]);
        let stripe = &rows[1];
        assert_eq!((stripe.total.calls, stripe.total.timeouts), (3.0, 1.0));
        // ceil(1.5) = 2nd of 100, 200, 300.
        assert_eq!(stripe.total.p50_ms, Some(200.0));
        assert_eq!(stripe.buckets.keys().copied().collect::<Vec<_>>(), [2 * h, 3 * h]);
        assert_eq!(stripe.buckets[&(2 * h)].error_ratio(), Some(0.5));
    }
}
