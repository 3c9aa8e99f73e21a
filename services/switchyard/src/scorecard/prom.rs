//! The scorecard from Prometheus' HTTP API (`/api/v1/query` for the whole
//! window, `/api/v1/query_range` with one step per bucket), over the series
//! the workers and the ingester export. Percentiles come from the
//! histograms, so they are interpolated within bucket bounds; counts come
//! from `increase()`, which extrapolates. Beyond the audit log this source
//! carries webhook delay, breaker state and shadow comparisons.

use super::model::{Flow, Row, Stats, Window};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;

const CALLS: &str = "switchyard_vendor_call_duration_seconds_count";
const BUCKETS: &str = "switchyard_vendor_call_duration_seconds_bucket";
/// The alert rules' classification (see `switchyard sla rules`).
const ERRORS: &str = r#"result!~"ok|found|not_found""#;
const TIMEOUTS: &str = r#"result=~"timeout|408|504""#;
const COLLISIONS: &str = r#"result="409""#;
/// The reconciler's end-to-end flows (not the workers' command -> outcome
/// `switchyard_flow_duration_seconds`).
const FLOWS: &str = "switchyard_flow_end_to_end_seconds";

/// The flow-latency queries over `range`: count, then p50, p95, p99.
fn flow_queries(range: &str) -> [String; 4] {
    let quantile = |q: &str| format!("histogram_quantile({q}, sum by (domain, flow, le) (increase({FLOWS}_bucket[{range}])))");
    [
        format!("sum by (domain, flow) (increase({FLOWS}_count[{range}]))"),
        quantile("0.50"),
        quantile("0.95"),
        quantile("0.99"),
    ]
}

/// End-to-end flow latency per domain flow over the window.
pub(crate) async fn flows(prom: &Prometheus, window: &Window) -> Result<Vec<Flow>> {
    let whole = format!("{}s", (window.to_ms - window.from_ms).max(1000) / 1000);
    let mut flows: BTreeMap<(String, String), Flow> = BTreeMap::new();
    for (i, query) in flow_queries(&whole).iter().enumerate() {
        for s in prom.instant(query, window.to_ms).await? {
            let Some(&(_, v)) = s.points.first() else { continue };
            let key = (s.label("domain").to_owned(), s.label("flow").to_owned());
            let f = flows.entry(key.clone()).or_insert_with(|| Flow { domain: key.0, flow: key.1, ..Flow::default() });
            match i {
                0 => f.count = v,
                1 => f.p50_ms = Some(v * 1000.0),
                2 => f.p95_ms = Some(v * 1000.0),
                _ => f.p99_ms = Some(v * 1000.0),
            }
        }
    }
    Ok(flows.into_values().collect())
}

/// One series of a query's answer: its labels and `(unix ms, value)` points.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Series {
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) points: Vec<(i64, f64)>,
}

impl Series {
    fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

/// Reads a `/api/v1/query` or `/api/v1/query_range` answer (vector or
/// matrix). NaN points (a quantile of no observations) are dropped: no
/// figure, rather than a made-up one.
pub(crate) fn parse(reply: &serde_json::Value) -> Result<Vec<Series>> {
    if reply["status"] != "success" {
        bail!("prometheus answered {}: {}", reply["errorType"], reply["error"]);
    }
    let result = reply["data"]["result"].as_array().context("no data.result in the answer")?;
    let point = |p: &serde_json::Value| -> Option<(i64, f64)> {
        let at = p.get(0)?.as_f64()?;
        let value: f64 = p.get(1)?.as_str()?.parse().ok()?;
        value.is_finite().then_some(((at * 1000.0).round() as i64, value))
    };
    Ok(result
        .iter()
        .map(|s| {
            let labels = s["metric"].as_object().map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect());
            let points = match s.get("values").and_then(|v| v.as_array()) {
                Some(values) => values.iter().filter_map(point).collect(),
                None => point(&s["value"]).into_iter().collect(),
            };
            Series { labels: labels.unwrap_or_default(), points }
        })
        .collect())
}

pub(crate) struct Prometheus {
    http: reqwest::Client,
    base: String,
}

impl Prometheus {
    pub(crate) fn new(base: &str) -> Result<Self> {
        let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(60)).build()?;
        Ok(Self { http, base: base.trim_end_matches('/').to_owned() })
    }

    async fn get(&self, path: &str, params: &[(&str, String)]) -> Result<Vec<Series>> {
        let url = format!("{}{path}", self.base);
        let reply = self.http.get(&url).query(params).send().await.with_context(|| format!("GET {url}"))?;
        let reply: serde_json::Value = reply.json().await.with_context(|| format!("GET {url}: not a Prometheus API answer"))?;
        let query = params.first().map_or("", |(_, q)| q.as_str());
        parse(&reply).with_context(|| format!("query {query}"))
    }

    /// The whole window, evaluated at its end.
    async fn instant(&self, query: &str, at_ms: i64) -> Result<Vec<Series>> {
        self.get("/api/v1/query", &[("query", query.to_owned()), ("time", secs(at_ms))]).await
    }

    /// One point per bucket. A point at `t` covers `(t - step, t]`, so the
    /// bucket starting at `s` is the point at `s + step`.
    async fn per_bucket(&self, query: &str, window: &Window) -> Result<Vec<Series>> {
        let step = window.bucket.ms();
        let last = window.bucket_of(window.to_ms) + step;
        let params = [("query", query.to_owned()), ("start", secs(window.from_ms + step)), ("end", secs(last)), ("step", format!("{}s", step / 1000))];
        let mut series = self.get("/api/v1/query_range", &params).await?;
        for s in &mut series {
            for p in &mut s.points {
                p.0 -= step;
            }
        }
        Ok(series)
    }
}

fn secs(ms: i64) -> String {
    format!("{:.3}", ms as f64 / 1000.0)
}

/// The queries for one span (`range` like `3600s`), by what they fill in.
fn queries(range: &str) -> [(Field, String); 7] {
    let count = |filter: &str| format!("sum by (domain, provider) (increase({CALLS}{{{filter}}}[{range}]))");
    let quantile = |q: &str| format!("histogram_quantile({q}, sum by (domain, provider, le) (increase({BUCKETS}[{range}])))");
    [
        (Field::Calls, count("")),
        (Field::Errors, count(ERRORS)),
        (Field::Timeouts, count(TIMEOUTS)),
        (Field::Collisions, count(COLLISIONS)),
        (Field::P50, quantile("0.50")),
        (Field::P95, quantile("0.95")),
        (Field::P99, quantile("0.99")),
    ]
}

#[derive(Clone, Copy)]
enum Field {
    Calls,
    Errors,
    Timeouts,
    Collisions,
    P50,
    P95,
    P99,
}

impl Field {
    fn set(self, s: &mut Stats, v: f64) {
        match self {
            Field::Calls => s.calls = v,
            Field::Errors => s.errors = v,
            Field::Timeouts => s.timeouts = v,
            Field::Collisions => s.collisions = Some(v),
            Field::P50 => s.p50_ms = Some(v * 1000.0),
            Field::P95 => s.p95_ms = Some(v * 1000.0),
            Field::P99 => s.p99_ms = Some(v * 1000.0),
        }
    }
}

/// The rows, keyed by (domain, provider), created as series name them.
#[derive(Default)]
struct Rows(BTreeMap<(String, String), Row>);

impl Rows {
    fn row(&mut self, domain: &str, provider: &str) -> &mut Row {
        self.0.entry((domain.to_owned(), provider.to_owned())).or_insert_with(|| Row { domain: domain.to_owned(), provider: provider.to_owned(), ..Row::default() })
    }

    /// Rows that exist, for figures without a domain label (the ingester's
    /// webhook delay is per provider only).
    fn of_provider<'a>(&'a mut self, provider: &'a str) -> impl Iterator<Item = &'a mut Row> + 'a {
        self.0.values_mut().filter(move |r| r.provider == provider)
    }
}

/// Every figure the scorecard prints, for `window`.
pub(crate) async fn load(prom: &Prometheus, window: &Window) -> Result<Vec<Row>> {
    let whole = format!("{}s", (window.to_ms - window.from_ms).max(1000) / 1000);
    let step = format!("{}s", window.bucket.ms() / 1000);
    let mut rows = Rows::default();
    for (field, query) in queries(&whole) {
        for s in prom.instant(&query, window.to_ms).await? {
            if let Some(&(_, v)) = s.points.first() {
                field.set(&mut rows.row(s.label("domain"), s.label("provider")).total, v);
            }
        }
    }
    for (field, query) in queries(&step) {
        for s in prom.per_bucket(&query, window).await? {
            let row = rows.row(s.label("domain"), s.label("provider"));
            for &(start, v) in &s.points {
                field.set(row.buckets.entry(start).or_default(), v);
            }
        }
    }
    // A bucket with no calls has no figures worth a point on a chart.
    for row in rows.0.values_mut() {
        row.buckets.retain(|_, s| s.calls > 0.0);
    }

    let lag = |range: &str| format!("histogram_quantile(0.95, sum by (provider, le) (increase(switchyard_webhooks_lag_seconds_bucket[{range}])))");
    for s in prom.instant(&lag(&whole), window.to_ms).await? {
        if let Some(&(_, v)) = s.points.first() {
            let provider = s.label("provider").to_owned();
            rows.of_provider(&provider).for_each(|r| r.webhook_delay_p95_s = Some(v));
        }
    }
    for s in prom.per_bucket(&lag(&step), window).await? {
        let provider = s.label("provider").to_owned();
        rows.of_provider(&provider).for_each(|r| r.webhook_delay_buckets.extend(s.points.iter().copied()));
    }

    // The breaker gauge (1 = open) sampled each minute over the window.
    let open = format!("sum_over_time((max by (domain, provider) (switchyard_circuit_state) == bool 1)[{whole}:60s]) * 60");
    for s in prom.instant(&open, window.to_ms).await? {
        if let Some(&(_, v)) = s.points.first() {
            rows.row(s.label("domain"), s.label("provider")).breaker_open_s = Some(v);
        }
    }

    let shadow = format!("sum by (domain, candidate, result) (increase(switchyard_shadow_comparisons_total{{result=~\"agree|disagree\"}}[{whole}]))");
    for s in prom.instant(&shadow, window.to_ms).await? {
        if let Some(&(_, v)) = s.points.first() {
            let row = rows.row(s.label("domain"), s.label("candidate"));
            let (agree, compared) = row.shadow.unwrap_or_default();
            let agreeing = if s.label("result") == "agree" { v } else { 0.0 };
            row.shadow = Some((agree + agreeing, compared + v));
        }
    }
    Ok(rows.0.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_and_matrix_answers_parse_and_nan_is_no_figure() {
        let vector = serde_json::json!({"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"domain": "payouts", "provider": "stripe"}, "value": [1700000000.5, "12.5"]},
            {"metric": {"domain": "payouts", "provider": "adyen"}, "value": [1700000000, "NaN"]},
        ]}});
        let series = parse(&vector).expect("vector");
        assert_eq!(series[0].label("provider"), "stripe");
        assert_eq!(series[0].points, [(1_700_000_000_500, 12.5)]);
        assert!(series[1].points.is_empty());
        let matrix = serde_json::json!({"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {"provider": "stripe"}, "values": [[3600, "1"], [7200, "+Inf"], [10800, "3"]]},
        ]}});
        assert_eq!(parse(&matrix).expect("matrix")[0].points, [(3_600_000, 1.0), (10_800_000, 3.0)]);
        let error = serde_json::json!({"status": "error", "errorType": "bad_data", "error": "parse error"});
        assert!(parse(&error).is_err());
    }

    #[test]
    fn flow_queries_read_only_the_reconcilers_series() {
        let [count, p50, ..] = flow_queries("3600s");
        assert_eq!(count, "sum by (domain, flow) (increase(switchyard_flow_end_to_end_seconds_count[3600s]))");
        assert!(p50.starts_with("histogram_quantile(0.50, sum by (domain, flow, le) (increase(switchyard_flow_end_to_end_seconds_bucket[3600s])"), "{p50}");
    }

    #[test]
    fn the_queries_classify_results_as_the_alert_rules_do() {
        let rules = crate::sla::rules(&switchyard_routing::PartnerCatalog { partners: vec![] });
        let [_, (_, errors), (_, timeouts), ..] = queries("5m");
        for (query, filter) in [(errors, ERRORS), (timeouts, TIMEOUTS)] {
            assert!(query.contains(filter) && rules.contains(&format!("{CALLS}{{{filter}}}[5m]")), "{query} vs the rules");
        }
    }
}
