//! `switchyard bench --steady RATE --minutes N`: the layer under a constant
//! load, as production sees it, instead of a backlog drained flat out.
//!
//! A paced producer publishes RATE payout commands per second (each
//! millisecond it tops up to `RATE * elapsed`, so the rate holds whatever the
//! broker's acknowledgements do). A `payout-worker` *process* (the release
//! binary next to this one, with a generated config) handles them against
//! the Stripe simulator at a fixed latency, and this process reads the
//! outcomes. Once a minute it prints:
//!
//! - **overhead p50/p95/p99**: per payout, from the moment the command was
//!   handed to the producer to the moment its outcome was consumed here,
//!   minus the simulator's configured latency (the vendor's own time; the
//!   simulator sleeps exactly that long before answering, tokio's timer
//!   rounding up by under 1 ms). What remains is the layer: both broker
//!   hops, decode, store claim and completion, the adapter's HTTP leg,
//!   publish. Samples belong to the minute their outcome arrived in.
//! - **ack p99**: how long the broker took to acknowledge the commands sent
//!   that minute (part of the overhead: the first hop's share).
//! - **worker mean vendor / flow**: from the worker's /metrics, that
//!   minute's mean vendor-call time (`switchyard_vendor_call_duration_seconds`:
//!   the simulator's latency plus the HTTP round trip) and mean flow time
//!   (`switchyard_flow_duration_seconds`: the command's `requested_at_ms` to
//!   its outcome published, ms resolution). Overhead minus flow is roughly
//!   the outcome's hop to this reader.
//! - **worker RSS**: `VmRSS` of the worker process at the end of the minute.
//! - **CPU per payout**: the worker process's utime + stime over the minute
//!   divided by the payouts answered in it; PostgreSQL's (the bench
//!   database's backends and the server's background processes) and the
//!   broker's tansu the same way.
//! - **lag**: commands produced so far minus outcomes consumed so far (the
//!   bench's own counts; tansu's memory engine reports wrong watermarks).
//!
//! The summary judges the targets: worker RSS flat (under 10 %
//! growth after the first 5 minutes) and at most 150 MiB at its peak
//! (`VmHWM`), and overhead p99 over the whole run at most 10 ms up to
//! 1,000/s and 50 ms up to 5,000/s.

use super::{redact, stat_cpu_secs, status_kib, BenchArgs};
use anyhow::{bail, Context, Result};
use futures::stream::{FuturesUnordered, StreamExt};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Message;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use switchyard_canonical::{PayoutOutcome, PayoutStatus};
use switchyard_localstack::{command, LocalStack};
use switchyard_simulators::{stripe, FaultPlan};

/// Sends waiting for the broker's acknowledgement before the producer stops
/// topping up (and reports that it fell behind).
const MAX_PENDING_SENDS: usize = 50_000;
/// How long the outcomes of the last commands are awaited after the load stops.
const DRAIN: Duration = Duration::from_secs(60);
const RSS_LIMIT_KIB: u64 = 150 * 1024;
/// Minutes of warm-up before RSS has to stay flat.
const RSS_SETTLE_MINUTES: usize = 5;
const RSS_MAX_GROWTH: f64 = 0.10;

/// On a server without autovacuum (this project's test machines run without
/// it) the idempotency records' dead row versions pile up and every claim
/// costs more by the minute: a 60-minute run at 1,000/s on 2026-12-07 went
/// from p50 56 ms to 200 ms in 12 minutes, and fell back to ~45 ms within a
/// minute of the first VACUUM. Production servers vacuum; so does the bench,
/// every minute, when the server does not.
async fn vacuum_without_autovacuum(database_url: &str) -> Result<Option<tokio::task::JoinHandle<()>>> {
    let store = switchyard_store::Store::connect(database_url).await.context("store")?;
    match store.records_health().await? {
        Some(h) if !h.autovacuum => {}
        _ => return Ok(None),
    }
    println!("the server's autovacuum is off: the bench vacuums idempotency_records and audit_log every 60 s, as autovacuum would");
    Ok(Some(tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        loop {
            every.tick().await;
            if let Err(e) = store.vacuum_hot_tables().await {
                eprintln!("vacuum failed: {e}");
            }
        }
    })))
}

pub(super) async fn run(args: &BenchArgs, run: &str, rate: u32, database_url: &str) -> Result<()> {
    let binary = worker_binary(args)?;
    let stack = LocalStack::open(format!("bench-{run}-steady."), args.brokers.clone()).await?;
    let mut sim_config = stripe::StripeConfig::local();
    sim_config.faults = FaultPlan { latency_ms: args.vendor_latency_ms, ..FaultPlan::default() };
    let sim = stripe::spawn_stripe(sim_config).await?;

    let dir = std::env::temp_dir().join(format!("switchyard-bench-{run}"));
    std::fs::create_dir_all(&dir)?;
    let admin_port = free_port()?;
    let config_path = dir.join("payout-worker.yaml");
    std::fs::write(&config_path, worker_yaml(&stack, &sim.base_url(), database_url, admin_port, args.max_in_flight, &args.worker_kafka))?;
    let log_path = dir.join("payout-worker.log");
    let mut worker = tokio::process::Command::new(&binary)
        .arg("--config")
        .arg(&config_path)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path)?)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let pid = worker.id().context("worker pid")?;
    let log_tail = || std::fs::read_to_string(&log_path).unwrap_or_default().lines().rev().take(20).collect::<Vec<_>>().join("\n");
    println!(
        "steady: {rate} payouts/s for {} min, vendor latency {} ms; worker {} (pid {pid}), config and log in {}",
        args.minutes,
        args.vendor_latency_ms,
        binary.display(),
        dir.display()
    );
    println!("store {}; topics {}*", redact(database_url), stack.prefix);
    for (k, v) in &args.worker_kafka {
        println!("worker kafka property {k}={v}");
    }

    let producer = stack.core_producer().await?;
    let decoder = stack.outcome_decoder()?;
    let mut reader_config = stack.kafka.consumer_config();
    // A fresh group read from the start; a short fetch wait so an idle
    // moment of this reader is not counted as the layer's time.
    reader_config.set("group.id", format!("bench-{run}-steady-reader")).set("fetch.wait.max.ms", "5");
    let reader: StreamConsumer = reader_config.create()?;
    reader.subscribe(&[&stack.topic("payouts.outcomes.v1")])?;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
    let metrics_url = format!("http://127.0.0.1:{admin_port}/metrics");

    // Warm-up: one payout end to end proves the worker and the reader are
    // both assigned, so the group joins are not measured.
    let warm_up = Instant::now();
    producer.send(&command(&format!("{run}-st-warm"), &format!("{run}-st-warm"), 1)).await?;
    loop {
        if let Some(status) = worker.try_wait()? {
            bail!("worker exited during warm-up ({status}); log (last lines first):\n{}", log_tail());
        }
        if warm_up.elapsed() > Duration::from_secs(120) {
            bail!("no warm-up outcome within 120 s; worker log (last lines first):\n{}", log_tail());
        }
        if let Ok(message) = tokio::time::timeout(Duration::from_secs(1), reader.recv()).await {
            message?;
            break;
        }
    }
    println!("warm-up outcome after {:.1} s", warm_up.elapsed().as_secs_f64());
    let vacuum = vacuum_without_autovacuum(database_url).await?;
    println!();

    println!(
        "{:>4} {:>8} {:>8} {:>7}  {:>7} {:>7} {:>7}  {:>7}  {:>15}  {:>8}  {:>17}",
        "min", "answered", "per s", "lag", "p50 ms", "p95 ms", "p99 ms", "ack p99", "worker mean ms", "RSS MiB", "CPU us/payout"
    );
    println!(
        "{:>4} {:>8} {:>8} {:>7}  {:^23}  {:>7}  {:>7} {:>7}  {:>8}  {:>17}",
        "", "", "", "", "overhead (minus vendor)", "ms", "vendor", "flow", "worker", "worker pg tansu"
    );

    let vendor_us = args.vendor_latency_ms * 1000;
    let start = Instant::now();
    let end = start + Duration::from_secs(args.minutes * 60);
    let mut next_report = start + Duration::from_secs(60);
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut alive = tokio::time::interval(Duration::from_secs(1));

    let mut sent_at: HashMap<u64, Instant> = HashMap::new();
    let mut pending = FuturesUnordered::new();
    let mut totals = Totals::default();
    let mut minute_samples: Vec<u32> = Vec::new();
    // How long the broker took to acknowledge each command sent this minute.
    let mut minute_acks: Vec<u32> = Vec::new();
    let mut overall = LatencyHistogram::new();
    let mut minutes: Vec<MinuteRow> = Vec::new();
    let scope = Scope { database: database_name(database_url), broker: args.brokers.clone() };
    let mut window = Window::open(pid, &http, &metrics_url, &scope).await;
    let mut producing = true;
    let mut behind_logged = false;
    let worker_cpu_start = window.worker_cpu;
    let cpu_start = window.cpu;

    loop {
        tokio::select! {
            _ = tick.tick(), if producing => {
                let now = Instant::now();
                if now >= end {
                    producing = false;
                    continue;
                }
                let due = due_count(now - start, rate);
                while totals.produced < due {
                    if pending.len() >= MAX_PENDING_SENDS {
                        if !behind_logged {
                            eprintln!("producer: {MAX_PENDING_SENDS} sends unacknowledged; the rate is not being held");
                            behind_logged = true;
                        }
                        break;
                    }
                    let i = totals.produced;
                    let id = format!("{run}-st-{i}");
                    let cmd = command(&id, &id, 1000 + (i % 1000) as i64);
                    let sent = Instant::now();
                    sent_at.insert(i, sent);
                    let producer = &producer;
                    pending.push(async move { (producer.send(&cmd).await, sent.elapsed()) });
                    totals.produced += 1;
                }
            }
            Some((result, took)) = pending.next(), if !pending.is_empty() => {
                minute_acks.push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
                if let Err(e) = result {
                    totals.send_errors += 1;
                    if totals.send_errors <= 3 {
                        eprintln!("send failed: {e:#}");
                    }
                }
            }
            message = reader.recv() => {
                let message = message?;
                let arrived = Instant::now();
                let Some(i) = message.key().and_then(|k| std::str::from_utf8(k).ok()).and_then(payout_index) else { continue };
                let Some(sent) = sent_at.remove(&i) else {
                    totals.duplicates += 1;
                    continue;
                };
                totals.answered += 1;
                let overhead_us = (arrived - sent).as_micros().saturating_sub(u128::from(vendor_us));
                let overhead_us = u32::try_from(overhead_us).unwrap_or(u32::MAX);
                minute_samples.push(overhead_us);
                overall.record(u64::from(overhead_us));
                let outcome: PayoutOutcome = decoder.decode(message.payload().unwrap_or_default()).await?;
                if !matches!(outcome.status, PayoutStatus::Submitted | PayoutStatus::Paid) || outcome.replayed {
                    totals.not_ok += 1;
                    if totals.not_ok <= 3 {
                        eprintln!("unexpected outcome: {outcome:?}");
                    }
                }
            }
            _ = tokio::time::sleep_until(next_report.into()), if next_report <= end => {
                let closed = Window::open(pid, &http, &metrics_url, &scope).await;
                let row = MinuteRow::new(minutes.len() + 1, &window, &closed, [&mut minute_samples, &mut minute_acks], &totals);
                row.print();
                minutes.push(row);
                window = closed;
                next_report += Duration::from_secs(60);
            }
            _ = alive.tick() => {
                if let Some(status) = worker.try_wait()? {
                    bail!("worker exited by itself ({status}); log (last lines first):\n{}", log_tail());
                }
                if !producing && (sent_at.is_empty() || Instant::now() >= end + DRAIN) && pending.is_empty() {
                    break;
                }
            }
        }
    }
    let drained = Instant::now() - end;
    if !minute_samples.is_empty() {
        minute_samples.sort_unstable();
        println!(
            "drain: {} outcomes after the load stopped, in {:.1} s; p99 overhead {} ms",
            minute_samples.len(),
            drained.as_secs_f64(),
            ms(percentile(&minute_samples, 99.0))
        );
    }

    let worker_cpu = proc_cpu(pid).unwrap_or(0.0) - worker_cpu_start;
    let cpu_now = ServerCpu::take(&scope);
    let hwm_kib = proc_status_kib(pid, "VmHWM:").unwrap_or(0);
    stop(&mut worker, pid).await;
    if let Some(vacuum) = vacuum {
        vacuum.abort();
    }
    sim.shutdown().await;

    let answered = totals.answered.max(1) as f64;
    println!("\nsummary: {rate}/s for {} min, vendor latency {} ms", args.minutes, args.vendor_latency_ms);
    println!(
        "  produced {}, answered {} ({} missing after {} s of drain), {} not SUBMITTED/PAID or replayed, {} duplicate outcomes, {} send errors",
        totals.produced,
        totals.answered,
        sent_at.len(),
        DRAIN.as_secs(),
        totals.not_ok,
        totals.duplicates,
        totals.send_errors
    );
    let worst_minute = minutes.iter().filter_map(|m| m.p99_us).max();
    let p99 = overall.percentile(99.0);
    println!(
        "  overhead over the run: p50 {} ms, p95 {} ms, p99 {} ms (worst minute p99 {} ms)",
        ms(overall.percentile(50.0).map(|v| v as u32)),
        ms(overall.percentile(95.0).map(|v| v as u32)),
        ms(p99.map(|v| v as u32)),
        ms(worst_minute)
    );
    match p99_target_ms(rate) {
        Some(target) => {
            let met = p99.is_some_and(|p| p <= target * 1000) && sent_at.is_empty();
            println!("  target p99 overhead <= {target} ms at {rate}/s: {}", if met { "met" } else { "NOT met" });
        }
        None => println!("  no p99 target above 5,000/s"),
    }
    let rss: Vec<u64> = minutes.iter().map(|m| m.rss_kib).collect();
    match rss_growth(&rss, RSS_SETTLE_MINUTES) {
        Some(g) => println!(
            "  worker RSS after minute {RSS_SETTLE_MINUTES} {:.1} MiB, highest later {:.1} MiB ({:+.1} %): {}",
            mib(g.baseline_kib),
            mib(g.max_after_kib),
            g.growth * 100.0,
            if g.growth < RSS_MAX_GROWTH { "flat (< 10 %)" } else { "NOT flat (>= 10 %)" }
        ),
        None => println!("  worker RSS flatness: not judged (needs more than {RSS_SETTLE_MINUTES} minutes)"),
    }
    println!(
        "  worker peak RSS (VmHWM) {:.1} MiB: {}",
        mib(hwm_kib),
        if hwm_kib > 0 && hwm_kib <= RSS_LIMIT_KIB { "<= 150 MiB" } else { "NOT <= 150 MiB" }
    );
    println!(
        "  CPU per payout over the run: worker {:.0} us, postgres {:.0} us, tansu {:.0} us",
        worker_cpu * 1e6 / answered,
        (cpu_now.postgres - cpu_start.postgres) * 1e6 / answered,
        (cpu_now.tansu - cpu_start.tansu) * 1e6 / answered
    );
    if !sent_at.is_empty() {
        bail!("{} payouts without an outcome", sent_at.len());
    }
    Ok(())
}

#[derive(Default)]
struct Totals {
    produced: u64,
    answered: u64,
    send_errors: u64,
    not_ok: u64,
    duplicates: u64,
}

/// What is read at each minute boundary; a minute is the difference of two.
struct Window {
    at: Instant,
    worker_cpu: f64,
    rss_kib: u64,
    cpu: ServerCpu,
    /// The worker's vendor-call and flow histograms: sum (seconds) and count.
    vendor: Option<(f64, f64)>,
    flow: Option<(f64, f64)>,
}

impl Window {
    async fn open(pid: u32, http: &reqwest::Client, metrics_url: &str, scope: &Scope) -> Self {
        let scrape = async { http.get(metrics_url).send().await?.error_for_status()?.text().await };
        let text = scrape.await.ok();
        let histogram = |name: &str| {
            text.as_deref().map(|text| (metric_total(text, &format!("{name}_sum")), metric_total(text, &format!("{name}_count"))))
        };
        let (vendor, flow) = (histogram("switchyard_vendor_call_duration_seconds"), histogram("switchyard_flow_duration_seconds"));
        Self {
            at: Instant::now(),
            worker_cpu: proc_cpu(pid).unwrap_or(0.0),
            rss_kib: proc_status_kib(pid, "VmRSS:").unwrap_or(0),
            cpu: ServerCpu::take(scope),
            vendor,
            flow,
        }
    }
}

struct MinuteRow {
    minute: usize,
    answered: usize,
    per_sec: f64,
    lag: u64,
    p50_us: Option<u32>,
    p95_us: Option<u32>,
    p99_us: Option<u32>,
    /// Broker acknowledgement of the commands sent this minute, p99.
    ack_p99_us: Option<u32>,
    vendor_ms: Option<f64>,
    /// The worker's mean command requested -> outcome published.
    flow_ms: Option<f64>,
    rss_kib: u64,
    /// Worker, PostgreSQL, tansu.
    cpu_us: [f64; 3],
}

impl MinuteRow {
    /// The minute between two windows; `samples` (its overheads) is emptied.
    fn new(minute: usize, from: &Window, to: &Window, [samples, acks]: [&mut Vec<u32>; 2], totals: &Totals) -> Self {
        samples.sort_unstable();
        acks.sort_unstable();
        let answered = samples.len();
        let per = |secs: f64| if answered == 0 { 0.0 } else { secs * 1e6 / answered as f64 };
        let mean_ms = |from: Option<(f64, f64)>, to: Option<(f64, f64)>| match (from, to) {
            (Some((s0, c0)), Some((s1, c1))) if c1 > c0 => Some((s1 - s0) * 1000.0 / (c1 - c0)),
            _ => None,
        };
        let row = Self {
            minute,
            answered,
            per_sec: answered as f64 / (to.at - from.at).as_secs_f64(),
            lag: totals.produced.saturating_sub(totals.answered),
            p50_us: percentile(samples, 50.0),
            p95_us: percentile(samples, 95.0),
            p99_us: percentile(samples, 99.0),
            ack_p99_us: percentile(acks, 99.0),
            vendor_ms: mean_ms(from.vendor, to.vendor),
            flow_ms: mean_ms(from.flow, to.flow),
            rss_kib: to.rss_kib,
            cpu_us: [per(to.worker_cpu - from.worker_cpu), per(to.cpu.postgres - from.cpu.postgres), per(to.cpu.tansu - from.cpu.tansu)],
        };
        samples.clear();
        acks.clear();
        row
    }

    fn print(&self) {
        println!(
            "{:>4} {:>8} {:>8.0} {:>7}  {:>7} {:>7} {:>7}  {:>7}  {:>7} {:>7}  {:>8.1}  {:>5.0} {:>5.0} {:>5.0}",
            self.minute,
            self.answered,
            self.per_sec,
            self.lag,
            ms(self.p50_us),
            ms(self.p95_us),
            ms(self.p99_us),
            ms(self.ack_p99_us),
            self.vendor_ms.map_or("-".to_owned(), |v| format!("{v:.2}")),
            self.flow_ms.map_or("-".to_owned(), |v| format!("{v:.1}")),
            mib(self.rss_kib),
            self.cpu_us[0],
            self.cpu_us[1],
            self.cpu_us[2]
        );
    }
}

/// Which PostgreSQL and tansu processes serve this bench.
struct Scope {
    database: Option<String>,
    broker: String,
}

/// CPU seconds of the PostgreSQL processes serving the bench (backends
/// connected to its database, and the server's shared background processes:
/// checkpointer, WAL writer, ...; not other databases' backends) and of the
/// tansu listening on its broker address (every tansu if none matches).
/// `CpuSnapshot` counts every process of those names, which on a machine
/// running other tests counts their load too.
#[derive(Clone, Copy, Default)]
struct ServerCpu {
    postgres: f64,
    tansu: f64,
}

impl ServerCpu {
    fn take(scope: &Scope) -> Self {
        let (mut cpu, mut any_tansu, mut matched_tansu) = (Self::default(), 0.0, false);
        let Ok(dir) = std::fs::read_dir("/proc") else { return cpu };
        for entry in dir.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().filter(|n| n.bytes().all(|b| b.is_ascii_digit())) else { continue };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
            let Some((comm, secs)) = stat_cpu_secs(&stat, false) else { continue };
            // The broker runs from its cached, versioned file name
            // (`tansu-0.6.0-p3`), which is its process name too.
            let is_tansu = comm.starts_with("tansu");
            if comm != "postgres" && !is_tansu {
                continue;
            }
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if is_tansu {
                any_tansu += secs;
                if cmdline.contains(&format!("//{} ", scope.broker)) || cmdline.ends_with(&format!("//{}", scope.broker)) {
                    cpu.tansu += secs;
                    matched_tansu = true;
                }
            } else if serves_database(&cmdline, scope.database.as_deref()) {
                cpu.postgres += secs;
            }
        }
        if !matched_tansu {
            cpu.tansu = any_tansu;
        }
        cpu
    }
}

/// Whether a PostgreSQL process's title (`postgres: [cluster: ]user db host(port) state`
/// for a client backend, `postgres: walwriter` for a background process, the
/// postmaster's own command line) belongs to `database`'s load.
fn serves_database(title: &str, database: Option<&str>) -> bool {
    let Some(rest) = title.strip_prefix("postgres: ") else { return true }; // the postmaster
    let mut words: Vec<&str> = rest.split_whitespace().collect();
    // With `cluster_name` set (Debian's default) the title starts `15/main: `.
    if words.first().is_some_and(|w| w.ends_with(':')) {
        words.remove(0);
    }
    let is_client_backend = words.get(2).is_some_and(|w| w.contains('(') || *w == "[local]");
    !is_client_backend || database.is_none_or(|db| words.get(1) == Some(&db))
}

/// The database name of a `postgres://` URL.
fn database_name(url: &str) -> Option<String> {
    let path = url.split_once("://")?.1.split_once('/')?.1;
    let name = path.split(['?', '#']).next()?;
    (!name.is_empty()).then(|| name.to_owned())
}

/// `--worker-binary`, else `payout-worker` beside this executable (both in
/// `target/release` after `cargo build --release -p switchyard -p payout-worker`).
fn worker_binary(args: &BenchArgs) -> Result<PathBuf> {
    let path = match &args.worker_binary {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.parent().context("executable has no directory")?.join("payout-worker"),
    };
    if !path.exists() {
        bail!("{} not found; build it (`cargo build --release -p payout-worker`) or pass --worker-binary", path.display());
    }
    Ok(path)
}

/// A port nothing listens on right now, for the worker's admin server.
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The worker's config: this stack's topics and registry, the simulator, the
/// bench's store, an admin port for /metrics. No partner catalog, so calls
/// are not paced to Stripe's published rate limit.
fn worker_yaml(
    stack: &LocalStack,
    stripe_url: &str,
    database_url: &str,
    admin_port: u16,
    max_in_flight: usize,
    kafka_extra: &[(String, String)],
) -> String {
    let base = stack.worker_config(stripe_url, None, "stripe");
    let extra = kafka_extra.iter().map(|(k, v)| format!("\"{k}\": \"{v}\"")).collect::<Vec<_>>().join(", ");
    format!(
        "environment: sandbox\n\
         kafka: {{ brokers: \"{brokers}\", group_id: \"{group}\", session_timeout_ms: 6000, extra: {{ {extra} }} }}\n\
         schema_registry_url: {registry}\n\
         database_url: \"{database_url}\"\n\
         topics: {{ commands: \"{commands}\", outcomes: \"{outcomes}\", circuit_events: \"{circuits}\" }}\n\
         providers:\n  - {{ name: stripe, kind: stripe, base_url: \"{stripe_url}\", api_key: {{ value: sk_test_switchyard }}, \
         connected_account: {account}, timeout_ms: 2000, max_concurrency: 256, http2_prior_knowledge: true }}\n\
         routing: {{ primary: stripe }}\n\
         admin_bind: 127.0.0.1:{admin_port}\n\
         max_in_flight: {max_in_flight}\n",
        brokers = base.kafka.brokers,
        group = base.kafka.group_id,
        registry = base.schema_registry_url,
        commands = base.topics.commands,
        outcomes = base.topics.outcomes,
        circuits = base.topics.circuit_events,
        account = switchyard_localstack::STRIPE_CONNECTED_ACCOUNT,
    )
}

/// SIGTERM (the worker drains), SIGKILL after 20 s.
async fn stop(worker: &mut tokio::process::Child, pid: u32) {
    let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
    if tokio::time::timeout(Duration::from_secs(20), worker.wait()).await.is_err() {
        let _ = worker.start_kill();
        let _ = worker.wait().await;
    }
}

/// Commands due after `elapsed` at `rate` per second.
fn due_count(elapsed: Duration, rate: u32) -> u64 {
    (elapsed.as_secs_f64() * f64::from(rate)) as u64
}

/// The index in a bench payout id `<run>-st-<i>`; none for the warm-up.
fn payout_index(payout_id: &str) -> Option<u64> {
    payout_id.rsplit_once("-st-")?.1.parse().ok()
}

fn proc_cpu(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat_cpu_secs(&stat, false).map(|(_, secs)| secs)
}

fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    status_kib(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?, field)
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[u32], p: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The targets: p99 overhead <= 10 ms at 1,000/s, <= 50 ms at
/// 5,000/s; a lower rate is held to the stricter target.
fn p99_target_ms(rate: u32) -> Option<u64> {
    match rate {
        0..=1000 => Some(10),
        1001..=5000 => Some(50),
        _ => None,
    }
}

struct RssGrowth {
    baseline_kib: u64,
    max_after_kib: u64,
    growth: f64,
}

/// Growth of per-minute RSS samples after the first `settle` minutes,
/// relative to the sample at the end of minute `settle`; none when the run
/// has no minute after it.
fn rss_growth(per_minute_kib: &[u64], settle: usize) -> Option<RssGrowth> {
    let baseline_kib = *per_minute_kib.get(settle.checked_sub(1)?)?;
    let max_after_kib = *per_minute_kib[settle..].iter().max()?;
    if baseline_kib == 0 {
        return None;
    }
    Some(RssGrowth { baseline_kib, max_after_kib, growth: (max_after_kib as f64 - baseline_kib as f64) / baseline_kib as f64 })
}

/// Sum of a Prometheus text-format metric over all its label sets.
fn metric_total(text: &str, name: &str) -> f64 {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let value = match rest.as_bytes().first()? {
                b'{' => &rest[rest.rfind('}')? + 1..],
                b' ' => rest,
                _ => return None,
            };
            value.split_whitespace().next()?.parse::<f64>().ok()
        })
        .sum()
}

fn ms(us: Option<u32>) -> String {
    us.map_or("-".to_owned(), |us| format!("{:.2}", f64::from(us) / 1000.0))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Microsecond latencies of a whole run in fixed memory: 10 us buckets up to
/// 100 ms, 1 ms buckets up to 60 s, one overflow bucket. Percentiles are
/// the upper edge of their bucket.
struct LatencyHistogram {
    counts: Vec<u64>,
    total: u64,
}

const FINE_US: u64 = 10;
const FINE_LIMIT_US: u64 = 100_000;
const COARSE_US: u64 = 1_000;
const COARSE_LIMIT_US: u64 = 60_000_000;
const FINE_BUCKETS: usize = (FINE_LIMIT_US / FINE_US) as usize;
const BUCKETS: usize = FINE_BUCKETS + ((COARSE_LIMIT_US - FINE_LIMIT_US) / COARSE_US) as usize + 1;

impl LatencyHistogram {
    fn new() -> Self {
        Self { counts: vec![0; BUCKETS], total: 0 }
    }

    fn bucket(us: u64) -> usize {
        if us < FINE_LIMIT_US {
            (us / FINE_US) as usize
        } else {
            (FINE_BUCKETS + ((us - FINE_LIMIT_US) / COARSE_US) as usize).min(BUCKETS - 1)
        }
    }

    /// The largest value counted in bucket `b` (the overflow bucket: its start).
    fn upper_edge(b: usize) -> u64 {
        if b < FINE_BUCKETS {
            (b as u64 + 1) * FINE_US
        } else {
            (FINE_LIMIT_US + (b - FINE_BUCKETS + 1) as u64 * COARSE_US).min(COARSE_LIMIT_US)
        }
    }

    fn record(&mut self, us: u64) {
        self.counts[Self::bucket(us)] += 1;
        self.total += 1;
    }

    fn percentile(&self, p: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = (((p / 100.0) * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (b, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(Self::upper_edge(b));
            }
        }
        None
    }
}

#[cfg(test)]
#[path = "bench_steady_tests.rs"]
mod tests;
