//! The scorecard as one self-contained HTML page, the document a quarterly
//! vendor review is held over: no scripts, fonts or stylesheets fetched from
//! anywhere (review rooms and mail gateways block them), charts drawn here
//! as inline SVG. Per vendor and domain: the figures table, its breaches,
//! and charts of latency bands (p50/p95/p99), error and timeout ratios and,
//! where the source has it, webhook delay, each with its contracted
//! threshold as a dashed line and breach intervals shaded.
//!
//! Every data point is a `<circle>` carrying `data-series`, `data-bucket`
//! (bucket start, Unix ms) and `data-value`, so a test (or a reader's tools)
//! can check the drawing against the figures.

use super::model::{fmt_ms, fmt_pct, fmt_utc, Breach, Contract, Measure, Row, Window};
use super::{figures, row_breaches, Scorecard};
use std::fmt::Write as _;

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 30.0;

/// `<`, `&`, quotes: names come from the source and the catalog.
fn esc(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

struct Line {
    name: &'static str,
    color: &'static str,
    points: Vec<(i64, f64)>,
}

struct Threshold {
    label: String,
    value: f64,
    color: &'static str,
}

struct Chart<'a> {
    kind: &'static str,
    title: String,
    window: &'a Window,
    lines: Vec<Line>,
    thresholds: Vec<Threshold>,
    breaches: Vec<&'a Breach>,
    format: fn(f64) -> String,
}

impl Chart<'_> {
    fn svg(&self) -> String {
        let w = self.window;
        let bucket = w.bucket.ms();
        let (x0, x1) = (w.from_ms as f64, (w.bucket_of(w.to_ms) + bucket) as f64);
        let values = self.lines.iter().flat_map(|l| l.points.iter().map(|p| p.1)).chain(self.thresholds.iter().map(|t| t.value));
        let top = values.fold(0.0_f64, f64::max) * 1.15;
        let top = if top > 0.0 { top } else { 1.0 };
        let (plot_w, plot_h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
        let x = |ms: f64| LEFT + (ms - x0) / (x1 - x0).max(1.0) * plot_w;
        let y = |v: f64| TOP + plot_h - v / top * plot_h;
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg class="chart" data-chart="{}" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{}">"#,
            self.kind,
            esc(&self.title)
        );
        let _ = write!(s, r#"<text x="{LEFT}" y="16" class="title">{}</text>"#, esc(&self.title));
        for b in &self.breaches {
            let (bx0, bx1) = (x(b.start_ms as f64), x(b.end_ms as f64));
            let _ = write!(
                s,
                r##"<rect class="breach" data-measure="{}" data-start="{}" data-end="{}" x="{bx0:.1}" y="{TOP}" width="{:.1}" height="{plot_h}" fill="#f8d7da"/>"##,
                b.measure.name(),
                b.start_ms,
                b.end_ms,
                (bx1 - bx0).max(1.0)
            );
        }
        // Axes and three y gridlines with their figures.
        for i in 0..=2 {
            let v = top * f64::from(i) / 2.0;
            let _ = write!(
                s,
                r##"<line x1="{LEFT}" x2="{:.1}" y1="{yy:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end" class="tick">{}</text>"##,
                LEFT + plot_w,
                LEFT - 6.0,
                y(v) + 4.0,
                esc(&(self.format)(v)),
                yy = y(v)
            );
        }
        let _ = write!(
            s,
            r#"<text x="{LEFT}" y="{:.1}" class="tick">{}</text><text x="{:.1}" y="{:.1}" text-anchor="end" class="tick">{}</text>"#,
            HEIGHT - 8.0,
            fmt_utc(w.from_ms),
            LEFT + plot_w,
            HEIGHT - 8.0,
            fmt_utc(x1 as i64)
        );
        for t in &self.thresholds {
            let ty = y(t.value);
            let _ = write!(
                s,
                r#"<line class="threshold" data-threshold="{}" x1="{LEFT}" x2="{:.1}" y1="{ty:.1}" y2="{ty:.1}" stroke="{}" stroke-width="1.5" stroke-dasharray="6 4"/><text x="{:.1}" y="{:.1}" text-anchor="end" class="tick" fill="{}">{}</text>"#,
                t.value,
                LEFT + plot_w,
                t.color,
                LEFT + plot_w,
                ty - 4.0,
                t.color,
                esc(&t.label)
            );
        }
        for line in &self.lines {
            let centre = |start: i64| x(start as f64 + bucket as f64 / 2.0);
            let path: Vec<String> = line.points.iter().map(|&(start, v)| format!("{:.1},{:.1}", centre(start), y(v))).collect();
            let _ = write!(s, r#"<polyline class="series" data-series="{}" fill="none" stroke="{}" stroke-width="2" points="{}"/>"#, line.name, line.color, path.join(" "));
            for &(start, v) in &line.points {
                // Six decimals: enough for any figure, without the float
                // noise histogram interpolation leaves (2200.0000000000014).
                let value = (v * 1e6).round() / 1e6;
                let _ = write!(
                    s,
                    r#"<circle data-series="{}" data-bucket="{start}" data-value="{value}" cx="{:.1}" cy="{:.1}" r="3" fill="{}"><title>{} {}: {}</title></circle>"#,
                    line.name,
                    centre(start),
                    y(v),
                    line.color,
                    line.name,
                    fmt_utc(start),
                    esc(&(self.format)(v))
                );
            }
        }
        // The legend, right-aligned so a long title does not run into it.
        let mut lx = WIDTH - RIGHT - 80.0 * self.lines.len() as f64;
        for line in &self.lines {
            let _ = write!(s, r#"<rect x="{lx:.1}" y="8" width="12" height="4" fill="{}"/><text x="{:.1}" y="14" class="tick">{}</text>"#, line.color, lx + 16.0, line.name);
            lx += 80.0;
        }
        s.push_str("</svg>");
        s
    }
}

fn points(row: &Row, f: impl Fn(&super::model::Stats) -> Option<f64>) -> Vec<(i64, f64)> {
    row.buckets.iter().filter_map(|(start, s)| f(s).map(|v| (*start, v))).collect()
}

fn charts(card: &Scorecard, row: &Row, contract: Option<&Contract>, breaches: &[Breach]) -> String {
    let w = &card.window;
    let of = |m: Measure| breaches.iter().filter(|b| b.measure == m).collect::<Vec<_>>();
    let mut latency = Chart {
        kind: "latency",
        title: format!("{} / {}: latency per {} bucket", row.domain, row.provider, if w.bucket.ms() == 3_600_000 { "hour" } else { "day" }),
        window: w,
        lines: vec![
            Line { name: "p50", color: "#4c78a8", points: points(row, |s| s.p50_ms) },
            Line { name: "p95", color: "#f58518", points: points(row, |s| s.p95_ms) },
            Line { name: "p99", color: "#e45756", points: points(row, |s| s.p99_ms) },
        ],
        thresholds: Vec::new(),
        breaches: of(Measure::P95).into_iter().chain(of(Measure::P99)).collect(),
        format: fmt_ms,
    };
    let mut ratios = Chart {
        kind: "ratios",
        title: format!("{} / {}: error and timeout ratios", row.domain, row.provider),
        window: w,
        lines: vec![
            Line { name: "errors", color: "#e45756", points: points(row, |s| s.error_ratio()) },
            Line { name: "timeouts", color: "#9d755d", points: points(row, |s| s.timeout_ratio()) },
        ],
        thresholds: Vec::new(),
        breaches: of(Measure::ErrorRatio).into_iter().chain(of(Measure::TimeoutRatio)).collect(),
        format: fmt_pct,
    };
    if let Some(c) = contract {
        if let Some(p95) = c.p95_ms {
            latency.thresholds.push(Threshold { label: format!("contract p95 {}", fmt_ms(p95)), value: p95, color: "#f58518" });
        }
        latency.thresholds.push(Threshold { label: format!("contract p99 {}", fmt_ms(c.p99_ms)), value: c.p99_ms, color: "#e45756" });
        ratios.thresholds.push(Threshold { label: format!("contract errors {}", fmt_pct(c.error_ratio)), value: c.error_ratio, color: "#e45756" });
        ratios.thresholds.push(Threshold { label: format!("contract timeouts {}", fmt_pct(c.timeout_ratio)), value: c.timeout_ratio, color: "#9d755d" });
    }
    let mut out = latency.svg() + &ratios.svg();
    if !row.webhook_delay_buckets.is_empty() {
        let delay = Chart {
            kind: "webhook-delay",
            title: format!("{}: webhook delay p95", row.provider),
            window: w,
            lines: vec![Line { name: "p95", color: "#54a24b", points: row.webhook_delay_buckets.iter().map(|(t, v)| (*t, v * 1000.0)).collect() }],
            thresholds: contract
                .and_then(|c| c.webhook_delay_ms)
                .map(|limit| Threshold { label: format!("contract p95 {}", fmt_ms(limit)), value: limit, color: "#54a24b" })
                .into_iter()
                .collect(),
            breaches: of(Measure::WebhookDelay),
            format: fmt_ms,
        };
        out += &delay.svg();
    }
    out
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:800px}\
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:2em;border-top:1px solid #ccc;padding-top:1em}\
table{border-collapse:collapse;margin:.5em 0}td,th{padding:2px 12px 2px 0;text-align:left;vertical-align:top}\
td.breach{color:#b00020;font-weight:600}svg.chart{display:block;margin:.75em 0}\
svg .title{font-size:13px;font-weight:600}svg .tick{font-size:11px;fill:#555}.muted{color:#777}";

/// The whole page.
pub(crate) fn render(card: &Scorecard) -> String {
    let w = &card.window;
    let mut s = String::new();
    let _ = write!(s, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Vendor scorecard</title><style>{STYLE}</style></head><body>");
    let _ = write!(
        s,
        "<h1>Vendor scorecard</h1><p>{} .. {} ({} buckets), from {}. Contracts from {}; a bucket is judged with at least {} calls.</p>",
        fmt_utc(w.from_ms),
        fmt_utc(w.to_ms),
        w.bucket.name(),
        esc(&card.source),
        esc(&card.catalog),
        card.min_calls
    );
    if card.unreadable > 0 {
        let _ = write!(s, "<p class=\"muted\">{} audit entries could not be read and are left out.</p>", card.unreadable);
    }
    if let Some(flows) = &card.flows {
        s.push_str("<section class=\"flows\"><h2>Flow latency, end to end</h2><table class=\"figures\">");
        if flows.is_empty() {
            s.push_str("<tr><td>No flow completed in this window.</td></tr>");
        }
        for f in flows {
            let _ = write!(s, "<tr data-flow=\"{}/{}\"><th>{} / {}</th><td>{}</td></tr>", esc(&f.domain), esc(&f.flow), esc(&f.domain), esc(&f.flow), esc(&super::flow_figures(f)));
        }
        s.push_str("</table></section>");
    }
    if card.rows.is_empty() {
        s.push_str("<p>No vendor calls in this window.</p>");
    }
    for (row, contract) in &card.rows {
        let c = contract.as_ref();
        let _ = write!(s, "<section class=\"vendor\" data-domain=\"{}\" data-provider=\"{}\"><h2>{} / {}</h2>", esc(&row.domain), esc(&row.provider), esc(&row.domain), esc(&row.provider));
        if c.is_none() {
            s.push_str("<p class=\"muted\">No contracted SLA in the catalog.</p>");
        }
        s.push_str("<table class=\"figures\">");
        for (name, value) in figures(row, c) {
            let class = if value.ends_with("BREACH") { " class=\"breach\"" } else { "" };
            let _ = write!(s, "<tr><th>{name}</th><td{class}>{}</td></tr>", esc(&value));
        }
        s.push_str("</table>");
        let found = c.map(|c| row_breaches(card, row, c)).unwrap_or_default();
        if c.is_some() {
            s.push_str("<table class=\"breaches\"><tr><th>breach</th><th>start</th><th>end</th><th>worst</th></tr>");
            if found.is_empty() {
                s.push_str("<tr><td colspan=\"4\">none</td></tr>");
            }
            for b in &found {
                let _ = write!(s, "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", b.measure.name(), fmt_utc(b.start_ms), fmt_utc(b.end_ms), b.measure.format(b.worst));
            }
            s.push_str("</table>");
        }
        s.push_str(&charts(card, row, c, &found));
        s.push_str("</section>");
    }
    s.push_str("</body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scorecard::model::{BucketSize, Stats};

    #[test]
    fn every_bucket_is_a_point_and_the_contract_a_line() {
        let h = BucketSize::Hour.ms();
        let stats = |p99: f64| Stats { calls: 30.0, errors: 3.0, timeouts: 1.0, p50_ms: Some(10.0), p95_ms: Some(50.0), p99_ms: Some(p99), ..Stats::default() };
        let row = Row { domain: "payouts".into(), provider: "st<ripe".into(), buckets: [(0, stats(2000.0)), (h, stats(900.0))].into_iter().collect(), ..Row::default() };
        let c = Contract { p99_ms: 1500.0, error_ratio: 0.01, timeout_ratio: 0.005, p95_ms: None, webhook_delay_ms: None };
        let card = Scorecard {
            source: "test".into(),
            catalog: "c".into(),
            window: Window { from_ms: 0, to_ms: 2 * h - 1, bucket: BucketSize::Hour },
            min_calls: 20.0,
            rows: vec![(row, Some(c))],
            unreadable: 0,
            flows: None,
        };
        let page = render(&card);
        assert!(!page.contains("<script") && !page.contains("http://") && !page.contains("https://"), "self-contained");
        assert!(page.contains("st&lt;ripe") && !page.contains("st<ripe"), "names are escaped");
        assert_eq!(page.matches("<svg").count(), 2, "latency and ratios; no webhook data, no webhook chart");
        // 3 latency series + 2 ratio series, 2 buckets each.
        assert_eq!(page.matches("<circle").count(), 10);
        assert!(page.contains(r#"data-series="p99" data-bucket="0" data-value="2000""#));
        assert!(page.contains(r#"data-series="errors" data-bucket="3600000" data-value="0.1""#));
        assert!(page.contains(r#"data-threshold="1500""#) && page.contains(r#"data-threshold="0.005""#));
        // Bucket 0 breaches p99 (2000 > 1500); both breach the error ratio (10 %).
        assert!(page.contains(r#"data-measure="p99 latency" data-start="0" data-end="3600000""#));
        assert!(page.contains(r#"data-measure="error ratio" data-start="0" data-end="7200000""#));
    }
}
