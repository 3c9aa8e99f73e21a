//! `switchyard scorecard`: per vendor and domain, what vendor management
//! asks ("is Stripe inside its SLA this month, and since when not?"): calls,
//! p50/p95/p99 latency, error, timeout and 409 ratios, webhook delay, breaker
//! open time and shadow agreement, each against the partner's contracted SLA
//! in ops/partners.yaml, with every breach's start and end per bucket.
//!
//! Sources: Prometheus' HTTP API (`--prometheus URL`), or the store's audit
//! log (`--database-url`, or `DATABASE_URL`) where no Prometheus keeps the
//! history. A figure a source does not carry prints as
//! "n/a (source has no data)". `--html FILE` writes the same as a
//! self-contained page with inline SVG charts (scorecard/html.rs).

mod audit;
mod html;
pub(crate) mod model;
mod prom;

use anyhow::{bail, Context, Result};
use model::{breaches, contract, fmt_ms, fmt_pct, fmt_utc, BucketSize, Contract, Flow, Measure, Row, Window, NO_DATA};
use std::fmt::Write as _;
use std::path::PathBuf;
use switchyard_routing::PartnerCatalog;

#[derive(clap::Args)]
pub(crate) struct ScorecardArgs {
    /// How far back: `30d`, `12h`, ...
    #[arg(long, default_value = "30d")]
    since: String,
    /// Prometheus' base URL (e.g. http://127.0.0.1:9090); without it, the
    /// audit log is read. Not in conflict with `--database-url`: that one
    /// also comes from DATABASE_URL, which is set wherever the store is.
    #[arg(long, value_name = "URL")]
    prometheus: Option<String>,
    /// The store holding the audit log.
    #[arg(long, value_name = "URL", env = "DATABASE_URL")]
    database_url: Option<String>,
    #[arg(long, default_value = "ops/partners.yaml")]
    catalog: PathBuf,
    /// Breach buckets; default hourly up to two days back, daily beyond.
    #[arg(long, value_enum)]
    bucket: Option<BucketSize>,
    /// A bucket with fewer calls is not judged against the contract (the
    /// alert rules wait for 20 calls in 5 minutes likewise).
    #[arg(long, default_value_t = 20.0)]
    min_calls: f64,
    /// Also write a self-contained HTML report with charts here.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
}

/// Everything one report shows.
pub(crate) struct Scorecard {
    pub(crate) source: String,
    pub(crate) catalog: String,
    pub(crate) window: Window,
    pub(crate) min_calls: f64,
    pub(crate) rows: Vec<(Row, Option<Contract>)>,
    /// Audit entries that could not be read.
    pub(crate) unreadable: u64,
    /// End-to-end flow latency per domain flow, the first line; `None` when
    /// the source has no such figure (the audit log records vendor calls only).
    pub(crate) flows: Option<Vec<Flow>>,
}

pub(crate) async fn run(args: ScorecardArgs) -> Result<()> {
    let since = switchyard_routing::catalog::parse_duration(&args.since).with_context(|| format!("--since {:?}: expected a duration like 30d or 12h", args.since))?;
    let since_ms = i64::try_from(since.as_millis()).context("--since is too long")?;
    if since_ms <= 0 {
        bail!("--since must be longer than zero");
    }
    let bucket = args.bucket.unwrap_or(if since_ms <= 2 * BucketSize::Day.ms() { BucketSize::Hour } else { BucketSize::Day });
    let window = Window::new(switchyard_canonical::now_ms(), since_ms, bucket);
    // Without the catalog there is nothing to judge against; say so in the
    // report rather than refusing to show the figures.
    let catalog = match PartnerCatalog::load(&args.catalog) {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("warning: {e}; figures are shown without contracted thresholds");
            None
        }
    };
    let mut flows = None;
    let (source, rows, unreadable) = match (&args.prometheus, &args.database_url) {
        (Some(url), _) => {
            let prometheus = prom::Prometheus::new(url)?;
            flows = Some(prom::flows(&prometheus, &window).await?);
            (format!("Prometheus at {url}"), prom::load(&prometheus, &window).await?, 0)
        }
        (None, Some(url)) => {
            let store = switchyard_store::Store::connect(url).await.context("connecting to the store")?;
            let (rows, unreadable) = audit::load(&store, &window).await?;
            ("the audit log".to_owned(), rows, unreadable)
        }
        (None, None) => bail!("give --prometheus URL, or --database-url URL (or DATABASE_URL) for the audit log"),
    };
    let rows = rows.into_iter().map(|r| { let c = contract(catalog.as_ref(), &r.provider); (r, c) }).collect();
    let card = Scorecard { source, catalog: args.catalog.display().to_string(), window, min_calls: args.min_calls, rows, unreadable, flows };
    print!("{}", text(&card));
    if let Some(path) = &args.html {
        std::fs::write(path, html::render(&card)).with_context(|| format!("writing {}", path.display()))?;
        println!("\nwrote {}", path.display());
    }
    Ok(())
}

/// One figure against its contract: `1620 ms  contract 1500 ms  BREACH`.
fn judged(value: Option<f64>, measure: Measure, contract: Option<&Contract>) -> String {
    let Some(v) = value else {
        return NO_DATA.to_owned();
    };
    match contract.and_then(|c| measure.limit(c)) {
        Some(limit) => {
            let verdict = if v > limit { "BREACH" } else { "ok" };
            format!("{:<12} contract {:<10} {verdict}", measure.format(v), measure.format(limit))
        }
        None => measure.format(v),
    }
}

fn or_no_data(v: Option<String>) -> String {
    v.unwrap_or_else(|| NO_DATA.to_owned())
}

/// The plain-text report.
pub(crate) fn text(card: &Scorecard) -> String {
    let w = &card.window;
    let mut out = String::new();
    let _ = writeln!(out, "Vendor scorecard, {} .. {} ({} buckets), from {}", fmt_utc(w.from_ms), fmt_utc(w.to_ms), w.bucket.name(), card.source);
    let _ = writeln!(out, "Contracts from {}; a bucket is judged with at least {} calls.", card.catalog, card.min_calls);
    if card.unreadable > 0 {
        let _ = writeln!(out, "{} audit entries could not be read and are left out.", card.unreadable);
    }
    if let Some(flows) = &card.flows {
        let _ = writeln!(out, "\nflow latency, end to end (from the bus)");
        if flows.is_empty() {
            let _ = writeln!(out, "  no flow completed in this window");
        }
        for f in flows {
            let _ = writeln!(out, "  {:<38} {}", format!("{} / {}", f.domain, f.flow), flow_figures(f));
        }
    }
    if card.rows.is_empty() {
        let _ = writeln!(out, "\nno vendor calls in this window");
    }
    for (row, contract) in &card.rows {
        let _ = writeln!(out, "\n{} / {}", row.domain, row.provider);
        if contract.is_none() {
            let _ = writeln!(out, "  (no contracted SLA in the catalog)");
        }
        let c = contract.as_ref();
        for (name, value) in figures(row, c) {
            let _ = writeln!(out, "  {name:<20} {value}");
        }
        let Some(c) = c else { continue };
        let found = row_breaches(card, row, c);
        if found.is_empty() {
            let _ = writeln!(out, "  breaches             none");
        }
        for b in found {
            let buckets = (b.end_ms - b.start_ms) / w.bucket.ms();
            let _ = writeln!(
                out,
                "  breach               {:<13} {} -> {}  ({buckets} {}, worst {})",
                b.measure.name(),
                fmt_utc(b.start_ms),
                fmt_utc(b.end_ms),
                if w.bucket == BucketSize::Hour { "h" } else { "d" },
                b.measure.format(b.worst)
            );
        }
    }
    out
}

/// The figures of one row, as the text and the HTML report print them.
pub(crate) fn figures(row: &Row, c: Option<&Contract>) -> [(&'static str, String); 10] {
    let t = &row.total;
    [
        ("calls", format!("{:.0}", t.calls)),
        ("latency p50", or_no_data(t.p50_ms.map(fmt_ms))),
        ("latency p95", judged(t.p95_ms, Measure::P95, c)),
        ("latency p99", judged(t.p99_ms, Measure::P99, c)),
        ("error ratio", judged(t.error_ratio(), Measure::ErrorRatio, c)),
        ("timeout ratio", judged(t.timeout_ratio(), Measure::TimeoutRatio, c)),
        ("409 collision ratio", or_no_data(t.collision_ratio().map(fmt_pct))),
        ("webhook delay p95", judged(row.webhook_delay_p95_s.map(|s| s * 1000.0), Measure::WebhookDelay, c)),
        ("breaker open time", or_no_data(row.breaker_open_s.map(fmt_duration))),
        ("shadow agreement", or_no_data(row.shadow.and_then(|(a, n)| model::ratio(a, n).map(|r| format!("{} of {n:.0} compared", fmt_pct(r)))))),
    ]
}

/// Every breach interval of a row, measure by measure. Webhook delay has no
/// call count to wait for: each bucket with a figure is judged.
pub(crate) fn row_breaches(card: &Scorecard, row: &Row, c: &Contract) -> Vec<model::Breach> {
    let bucket = card.window.bucket.ms();
    let mut found: Vec<_> = Measure::CALLS.iter().filter_map(|m| Some(breaches(&row.buckets, bucket, *m, m.limit(c)?, card.min_calls))).flatten().collect();
    if let Some(limit) = c.webhook_delay_ms {
        let delays = row.webhook_delay_buckets.iter().map(|(start, s)| (*start, s * 1000.0));
        found.extend(model::intervals(delays, bucket, Measure::WebhookDelay, limit));
    }
    found
}

/// Seconds as `2h 05m 10s`.
/// One flow's line: how many, and p50 / p95 / p99.
pub(crate) fn flow_figures(f: &Flow) -> String {
    let q = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), fmt_ms);
    format!("{:.0} flows  p50 {}  p95 {}  p99 {}", f.count, q(f.p50_ms), q(f.p95_ms), q(f.p99_ms))
}

fn fmt_duration(secs: f64) -> String {
    let s = secs.round() as u64;
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m {s:02}s"),
        (h, m, s) => format!("{h}h {m:02}m {s:02}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::Stats;

    #[test]
    fn a_breached_contract_prints_its_interval_and_missing_figures_say_so() {
        let h = BucketSize::Hour.ms();
        let window = Window { from_ms: 0, to_ms: 5 * h, bucket: BucketSize::Hour };
        let hot = Stats { calls: 40.0, errors: 1.0, p95_ms: Some(1200.0), p99_ms: Some(1800.0), collisions: Some(0.0), ..Stats::default() };
        let cool = Stats { calls: 40.0, p95_ms: Some(600.0), p99_ms: Some(900.0), collisions: Some(0.0), ..Stats::default() };
        let row = Row {
            domain: "payouts".into(),
            provider: "stripe".into(),
            total: Stats { calls: 120.0, errors: 2.0, timeouts: 0.0, collisions: Some(0.0), p50_ms: Some(80.0), p95_ms: Some(700.0), p99_ms: Some(1800.0) },
            buckets: [(h, hot.clone()), (2 * h, hot), (3 * h, cool)].into_iter().collect(),
            breaker_open_s: Some(3725.0),
            // Webhook delay p95 in seconds: 30 s, then 90 s and 120 s late.
            webhook_delay_p95_s: Some(90.0),
            webhook_delay_buckets: [(h, 30.0), (2 * h, 90.0), (3 * h, 120.0)].into_iter().collect(),
            ..Row::default()
        };
        let c = Contract { p99_ms: 1500.0, error_ratio: 0.01, timeout_ratio: 0.005, p95_ms: Some(1000.0), webhook_delay_ms: Some(60_000.0) };
        let card = Scorecard { source: "test".into(), catalog: "partners.yaml".into(), window, min_calls: 20.0, rows: vec![(row, Some(c))], unreadable: 0, flows: None };
        let out = text(&card);
        let line = |name: &str| out.lines().find(|l| l.trim_start().starts_with(name)).map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "));
        assert_eq!(line("calls").as_deref(), Some("calls 120"));
        assert_eq!(line("latency p99").as_deref(), Some("latency p99 1800 ms contract 1500 ms BREACH"));
        // 2 of 120 = 1.67 %, above 1 %; 1 of 40 in each hot bucket = 2.5 %.
        assert_eq!(line("error ratio").as_deref(), Some("error ratio 1.67 % contract 1.00 % BREACH"));
        assert_eq!(line("timeout ratio").as_deref(), Some("timeout ratio 0.00 % contract 0.50 % ok"));
        assert_eq!(line("breaker open time").as_deref(), Some("breaker open time 1h 02m 05s"));
        assert_eq!(line("latency p95").as_deref(), Some("latency p95 700 ms contract 1000 ms ok"));
        assert_eq!(line("webhook delay p95").as_deref(), Some("webhook delay p95 90.0 s contract 60.0 s BREACH"));
        assert_eq!(line("shadow agreement").as_deref(), Some("shadow agreement n/a (source has no data)"));
        let breaches: Vec<_> = out.lines().filter(|l| l.trim_start().starts_with("breach ")).map(str::trim).collect();
        assert_eq!(
            breaches,
            [
                "breach               p95 latency   1970-01-01 01:00 UTC -> 1970-01-01 03:00 UTC  (2 h, worst 1200 ms)",
                "breach               p99 latency   1970-01-01 01:00 UTC -> 1970-01-01 03:00 UTC  (2 h, worst 1800 ms)",
                "breach               error ratio   1970-01-01 01:00 UTC -> 1970-01-01 03:00 UTC  (2 h, worst 2.50 %)",
                "breach               webhook delay 1970-01-01 02:00 UTC -> 1970-01-01 04:00 UTC  (2 h, worst 120.0 s)",
            ]
        );
    }

    #[test]
    fn flow_latency_is_the_first_line_when_the_source_has_it() {
        let window = Window { from_ms: 0, to_ms: BucketSize::Hour.ms(), bucket: BucketSize::Hour };
        let row = Row { domain: "payouts".into(), provider: "stripe".into(), ..Row::default() };
        let flow = Flow { domain: "payouts".into(), flow: "command_to_paid".into(), count: 20.0, p50_ms: Some(2100.0), p95_ms: Some(41_000.0), p99_ms: None };
        let mut card = Scorecard { source: "t".into(), catalog: "c".into(), window, min_calls: 20.0, rows: vec![(row, None)], unreadable: 0, flows: Some(vec![flow]) };
        let out = text(&card);
        let figures: Vec<_> = out.lines().skip(2).filter(|l| !l.is_empty()).map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
        assert_eq!(figures[0], "flow latency, end to end (from the bus)");
        assert_eq!(figures[1], "payouts / command_to_paid 20 flows p50 2100 ms p95 41.0 s p99 n/a");
        assert_eq!(figures[2], "payouts / stripe");
        card.flows = Some(vec![]);
        assert!(text(&card).contains("no flow completed in this window"));
        card.flows = None;
        assert!(!text(&card).contains("flow latency"), "the audit log has no flow figure");
    }
}
