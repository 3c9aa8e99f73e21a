//! `switchyard bench`: throughput figures, each against a baseline measured
//! in the same run on the same machine and broker.
//!
//! 1. raw broker consume -> produce passthrough (the ceiling);
//! 2. the vendor leg alone (adapter and simulator, no broker, no store);
//! 3. the payout worker draining a backlog with a zero-latency vendor;
//! 4. the same with a 100 ms vendor;
//! 5. a naive consumer handling one message at a time with the same 100 ms
//!    vendor (decode, call, publish, commit);
//! 6. resident memory of this process (worker, simulators, registry and load
//!    generator share it), and the ratios.
//!
//! `--steady RATE` runs a different measurement instead (`bench_steady.rs`):
//! a constant rate of payouts through a separate `payout-worker` process,
//! one line per minute with the layer's latency overhead, the worker's RSS,
//! CPU per payout and consumer lag.
//!
//! `--gateway` runs another (`bench_gateway.rs`): `POST /v1/payouts` to 202
//! at a fixed rate, open loop, against the gateway, a broker-ack baseline
//! and a bare axum handler, with p50/p95/p99 and the gateway's p99 over the
//! broker ack's.

use anyhow::{bail, Context, Result};
use futures::stream::{FuturesUnordered, StreamExt, TryStreamExt};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::Message;
use std::time::{Duration, Instant};
use switchyard_bus::topics::{TopicSpec, TopicsFile};
use switchyard_bus::KafkaConfig;
use switchyard_canonical::{PayoutCommand, PayoutOutcome};
use switchyard_localstack::{command, database_url, LocalStack};
use switchyard_simulators::{stripe, FaultPlan};
use tokio_util::sync::CancellationToken;

#[path = "bench_steady.rs"]
mod steady;
#[path = "bench_gateway.rs"]
mod gateway;

#[derive(clap::Args)]
pub(crate) struct BenchArgs {
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Store for the worker; defaults to $DATABASE_URL or the local PostgreSQL.
    #[arg(long)]
    database_url: Option<String>,
    /// Messages for the raw passthrough and the zero-latency worker run.
    #[arg(long, default_value_t = 50_000)]
    messages: usize,
    /// Payouts for the 100 ms vendor run.
    #[arg(long, default_value_t = 20_000)]
    slow_messages: usize,
    /// Messages for the naive one-at-a-time consumer (each takes >= 100 ms).
    #[arg(long, default_value_t = 30)]
    naive_messages: usize,
    /// Worker in-flight limit.
    #[arg(long, default_value_t = 4000)]
    max_in_flight: usize,
    /// Steady-rate mode instead of the throughput figures: publish RATE
    /// payouts per second, paced, to a separate payout-worker process and
    /// print latency overhead, worker RSS, CPU per payout and lag each minute.
    #[arg(long, value_name = "RATE", value_parser = clap::value_parser!(u32).range(1..))]
    steady: Option<u32>,
    /// Steady mode: how long to hold the rate.
    #[arg(long, value_name = "N", default_value_t = 60, requires = "steady", value_parser = clap::value_parser!(u64).range(1..))]
    minutes: u64,
    /// Steady mode: the Stripe simulator's latency per call (the vendor's own time).
    #[arg(long, value_name = "MS", default_value_t = 0, requires = "steady")]
    vendor_latency_ms: u64,
    /// Steady mode: the payout-worker binary; defaults to the one next to this executable.
    #[arg(long, value_name = "PATH", requires = "steady")]
    worker_binary: Option<std::path::PathBuf>,
    /// Steady mode: a librdkafka property for the worker (its config's
    /// `kafka.extra`), e.g. `fetch.wait.max.ms=10`; repeatable.
    #[arg(long, value_name = "KEY=VALUE", requires = "steady", value_parser = parse_property)]
    worker_kafka: Vec<(String, String)>,
    /// Gateway mode: `POST /v1/payouts` to 202 at `--rate` for `--seconds`,
    /// open loop, against the real gateway, a broker-ack baseline and a bare
    /// axum handler (all in this process); prints p50/p95/p99/max per target
    /// and the gateway's p99 over the broker ack's.
    #[arg(long, conflicts_with = "steady")]
    gateway: bool,
    /// Gateway mode: requests per second, per target.
    #[arg(long, value_name = "N", default_value_t = 2_000, requires = "gateway", value_parser = clap::value_parser!(u32).range(1..))]
    rate: u32,
    /// Gateway mode: seconds counted per target, after a 2 s warm-up.
    #[arg(long, value_name = "N", default_value_t = 20, requires = "gateway", value_parser = clap::value_parser!(u64).range(1..))]
    seconds: u64,
}

pub(crate) async fn run(args: BenchArgs) -> Result<()> {
    let run = uuid::Uuid::new_v4().simple().to_string()[..6].to_owned();
    let database_url = args.database_url.clone().unwrap_or_else(database_url);
    println!("switchyard bench (run {run}) — broker {}, store {}", args.brokers, redact(&database_url));
    println!("{} cores; figures are from one run on a shared machine", std::thread::available_parallelism().map_or(0, |n| n.get()));
    print_store_health(&database_url).await?;
    println!();
    if let Some(rate) = args.steady {
        return steady::run(&args, &run, rate, &database_url).await;
    }
    if args.gateway {
        return gateway::run(&args, &run, &database_url).await;
    }
    let raw = raw_passthrough(&args, &run).await?;
    println!("raw broker consume->produce      {:>10.0} msg/s   ({} messages)", raw, args.messages);

    let http = vendor_only(args.messages, &run).await?;
    println!("vendor calls alone (adapter+sim)  {:>10.0} calls/s ({} calls, 256 concurrent)", http, args.messages);

    let fast = worker_run(&args, &run, "fast", 0, args.messages, &database_url).await?;
    println!("payout worker, 0 ms vendor       {:>10.0} payouts/s ({} payouts)", fast, args.messages);
    let rss_fast = rss_kib();

    let slow = worker_run(&args, &run, "slow", 100, args.slow_messages, &database_url).await?;
    println!("payout worker, 100 ms vendor     {:>10.0} payouts/s ({} payouts)", slow, args.slow_messages);

    let naive = naive_run(&args, &run).await?;
    println!("naive consumer, 100 ms vendor    {:>10.1} payouts/s ({} payouts)", naive, args.naive_messages);
    let (rss, hwm) = (rss_kib(), hwm_kib());
    println!("\nprocess RSS after 0 ms run {} MiB, now {} MiB, peak {} MiB", rss_fast / 1024, rss / 1024, hwm / 1024);
    println!("\nratios");
    println!("  worker (0 ms) / raw passthrough      {:>8.3}   (the layer's own cost)", fast / raw);
    println!("  worker (100 ms) / naive (100 ms)     {:>8.0}x  (target >= 200x)", slow / naive);
    println!("  worker (0 ms) payouts/s              {:>8.0}   (target >= 10,000)", fast);
    Ok(())
}

fn parse_property(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

async fn print_store_health(database_url: &str) -> Result<()> {
    let store = switchyard_store::Store::connect(database_url).await.context("store")?;
    if let Some(h) = store.records_health().await? {
        // Dead row versions cost the server CPU on every write; a long-lived
        // test database with autovacuum off measured ~40 % more per payout.
        println!(
            "store: {} idempotency records, {} dead row versions, autovacuum {}",
            h.live,
            h.dead,
            if h.autovacuum { "on" } else { "OFF (VACUUM it or use a fresh database)" }
        );
    }
    Ok(())
}

fn redact(url: &str) -> String {
    match url.split_once('@') {
        Some((scheme_user, host)) => format!("{}@{host}", scheme_user.split(':').take(2).collect::<Vec<_>>().join(":")),
        None => url.to_owned(),
    }
}

fn topic_spec(name: String) -> TopicSpec {
    TopicSpec {
        name,
        partitions: 6,
        retention_ms: None,
        key: "id".into(),
        value_schema: None,
        producer: "bench".into(),
        consumer: "bench".into(),
        // One replica: a throughput measurement on the local broker.
        replication_factor: None,
        min_insync_replicas: None,
    }
}

async fn raw_passthrough(args: &BenchArgs, run: &str) -> Result<f64> {
    let kafka = KafkaConfig::new(args.brokers.clone(), format!("bench-{run}-raw"));
    let (input, output) = (format!("bench-{run}.raw.in"), format!("bench-{run}.raw.out"));
    TopicsFile { defaults: Default::default(), topics: vec![topic_spec(input.clone()), topic_spec(output.clone())] }.create_all(&kafka).await?;
    let producer: FutureProducer = kafka.producer_config().create()?;
    let payload = vec![b'x'; 300];
    let keys: Vec<String> = (0..10_000).map(|i| format!("k{i}")).collect();
    let mut pending = FuturesUnordered::new();
    for i in 0..args.messages {
        let record = FutureRecord::to(&input).key(&keys[i % keys.len()]).payload(&payload);
        pending.push(producer.send(record, Timeout::Never));
        if pending.len() >= 10_000 {
            pending.next().await;
        }
    }
    while pending.next().await.is_some() {}

    let consumer: StreamConsumer = kafka.consumer_config().create()?;
    consumer.subscribe(&[&input])?;
    let mut started = None;
    let mut delivered = 0;
    let mut in_flight = FuturesUnordered::new();
    let mut consumed = 0;
    while delivered < args.messages {
        tokio::select! {
            Some(result) = in_flight.next(), if !in_flight.is_empty() => {
                let _: rdkafka::producer::future_producer::OwnedDeliveryResult = result;
                delivered += 1;
            }
            message = consumer.recv(), if consumed < args.messages && in_flight.len() < 20_000 => {
                let message = message?;
                started.get_or_insert_with(Instant::now);
                consumed += 1;
                let (key, value) = (message.key().unwrap_or_default().to_vec(), message.payload().unwrap_or_default().to_vec());
                let (producer, output) = (producer.clone(), output.clone());
                in_flight.push(async move {
                    producer.send(FutureRecord::to(&output).key(&key).payload(&value), Timeout::Never).await
                });
            }
        }
    }
    let took = started.map_or(Duration::ZERO, |s| s.elapsed());
    Ok(args.messages as f64 / took.as_secs_f64())
}

/// Drains a backlog: `n` payouts are published while no worker runs, then a
/// worker starts and the rate is measured from its first outcome to its
/// last, so neither the load generator nor the group join is counted.
async fn worker_run(args: &BenchArgs, run: &str, label: &str, latency_ms: u64, n: usize, database_url: &str) -> Result<f64> {
    let stack = LocalStack::open(format!("bench-{run}-{label}."), args.brokers.clone()).await?;
    let mut sim_config = stripe::StripeConfig::local();
    sim_config.faults = FaultPlan { latency_ms, ..FaultPlan::default() };
    let sim = stripe::spawn_stripe(sim_config).await?;
    let mut config = stack.worker_config(&sim.base_url(), None, "stripe");
    config.database_url = database_url.to_owned();
    config.max_in_flight = args.max_in_flight;
    let producer = stack.core_producer().await?;
    let reader = stack.outcome_reader()?;

    // Warm-up: the reader is assigned and the group has committed a position.
    let warm_up = CancellationToken::new();
    let worker = switchyard_worker::start_payout_worker(config.clone(), warm_up.clone()).await?;
    producer.send(&command(&format!("{run}-{label}-warm"), &format!("{run}-{label}-warm"), 1)).await?;
    reader.collect(1, Duration::from_secs(60)).await.context("warm-up outcome")?;
    warm_up.cancel();
    worker.join.await??;

    let commands: Vec<PayoutCommand> =
        (0..n).map(|i| command(&format!("{run}-{label}-{i}"), &format!("{run}-{label}-{i}"), 1000 + (i % 1000) as i64)).collect();
    futures::stream::iter(&commands).map(|c| producer.send(c)).buffer_unordered(5_000).try_collect::<()>().await?;

    let shutdown = CancellationToken::new();
    let worker = switchyard_worker::start_payout_worker(config, shutdown.clone()).await?;
    let first = reader.collect(1, Duration::from_secs(120)).await.context("first outcome")?;
    let started = Instant::now();
    let cpu_before = CpuSnapshot::take();
    let rest = reader.collect(n - 1, Duration::from_secs(600)).await?;
    let took = started.elapsed();
    if std::env::var("BENCH_DEBUG").is_ok() {
        CpuSnapshot::take().report_since(&cpu_before, n - 1);
        for line in worker.metrics.render().lines().filter(|l| (l.contains("_sum") || l.contains("_count")) && !l.starts_with('#')) {
            eprintln!("{line}");
        }
    }
    let decoder = stack.outcome_decoder()?;
    for record in [&first[0], &rest[rest.len() - 1]] {
        let outcome: PayoutOutcome = decoder.decode(&record.payload).await?;
        if outcome.provider.as_deref() != Some("stripe") || outcome.replayed {
            bail!("unexpected outcome {outcome:?}");
        }
    }
    if sim.ledger().len() != n + 1 {
        bail!("simulator executed {} payouts, expected {}", sim.ledger().len(), n + 1);
    }
    shutdown.cancel();
    worker.join.await??;
    sim.shutdown().await;
    Ok((n - 1) as f64 / took.as_secs_f64())
}

/// The vendor leg alone: the adapter calling the simulator with the worker's
/// default concurrency, no broker, no store. The ceiling the worker shares.
async fn vendor_only(n: usize, run: &str) -> Result<f64> {
    let sim = stripe::spawn_stripe(stripe::StripeConfig::local()).await?;
    let adapter = std::sync::Arc::new(switchyard_adapters_for_bench(&sim.base_url(), 256)?);
    let ctx = switchyard_adapters::CallContext { correlation_id: "bench".into(), traceparent: switchyard_canonical::TraceParent::new_root().to_string() };
    let commands: Vec<PayoutCommand> =
        (0..n).map(|i| command(&format!("{run}-http-{i}"), &format!("{run}-http-{i}"), 1000 + (i % 1000) as i64)).collect();
    let started = Instant::now();
    let calls = futures::stream::iter(&commands).map(|c| adapter.create(c, &c.idempotency_key, &ctx));
    calls.buffer_unordered(256).try_collect::<Vec<_>>().await?;
    let took = started.elapsed();
    sim.shutdown().await;
    Ok(n as f64 / took.as_secs_f64())
}

/// The baseline the issue asks for: one message at a time, in order, with
/// the same decode, vendor call and publish, committing after each.
async fn naive_run(args: &BenchArgs, run: &str) -> Result<f64> {
    let stack = LocalStack::open(format!("bench-{run}-naive."), args.brokers.clone()).await?;
    let mut sim_config = stripe::StripeConfig::local();
    sim_config.faults = FaultPlan { latency_ms: 100, ..FaultPlan::default() };
    let sim = stripe::spawn_stripe(sim_config).await?;
    let adapter = switchyard_adapters_for_bench(&sim.base_url(), 1)?;
    let producer = stack.core_producer().await?;
    for i in 0..args.naive_messages {
        producer.send(&command(&format!("{run}-naive-{i}"), &format!("{run}-naive-{i}"), 100 + i as i64)).await?;
    }
    let encoder = switchyard_bus::AvroEncoder::register(
        &stack.registry_client,
        &stack.topic("payouts.outcomes.v1"),
        switchyard_worker::run::PAYOUT_OUTCOME_SCHEMA,
    )
    .await?;
    let decoder = switchyard_bus::AvroDecoder::new(stack.registry_client.clone(), switchyard_worker::run::PAYOUT_COMMAND_SCHEMA)?;
    let mut config = stack.kafka.consumer_config();
    config.set("enable.auto.commit", "false");
    let consumer: StreamConsumer = config.create()?;
    consumer.subscribe(&[&stack.topic("payouts.commands.v1")])?;
    let publisher = switchyard_bus::Publisher::new(&stack.kafka)?;
    let ctx = switchyard_adapters::CallContext { correlation_id: "bench".into(), traceparent: switchyard_canonical::TraceParent::new_root().to_string() };
    let mut started = None;
    for _ in 0..args.naive_messages {
        let message = consumer.recv().await?;
        started.get_or_insert_with(Instant::now);
        let cmd: PayoutCommand = decoder.decode(message.payload().unwrap_or_default()).await?;
        let vendor = adapter.create(&cmd, &cmd.idempotency_key, &ctx).await?;
        let outcome = PayoutOutcome {
            payout_id: cmd.payout_id.clone(),
            idempotency_key: cmd.idempotency_key.clone(),
            status: vendor.status,
            amount_minor: cmd.amount_minor,
            currency: cmd.currency.clone(),
            provider: Some("stripe".into()),
            provider_reference: Some(vendor.vendor_reference),
            error: vendor.error,
            attempts: 1,
            replayed: false,
            completed_at_ms: switchyard_canonical::now_ms(),
        };
        let record = switchyard_bus::Outbound {
            topic: stack.topic("payouts.outcomes.v1"),
            key: Some(cmd.payout_id.into_bytes()),
            payload: encoder.encode(&outcome)?,
            headers: Vec::new(),
        };
        publisher.publish(&record).await?;
        consumer.commit_message(&message, CommitMode::Sync)?;
    }
    let took = started.map_or(Duration::ZERO, |s| s.elapsed());
    Ok(args.naive_messages as f64 / took.as_secs_f64())
}

fn switchyard_adapters_for_bench(base_url: &str, connections: usize) -> Result<switchyard_adapters::payouts::PayoutProvider> {
    let adapter = switchyard_adapters::payouts::stripe::StripeAdapter::new(
        "stripe",
        base_url,
        switchyard_adapters::Secret::new("sk_test_switchyard"),
        switchyard_localstack::STRIPE_CONNECTED_ACCOUNT,
        // As the worker's local configuration talks to the simulators.
        switchyard_adapters::http::Transport::new(Duration::from_secs(5), connections).with_http2_prior_knowledge(true),
    )?;
    Ok(switchyard_adapters::payouts::PayoutProvider::Stripe(adapter))
}

/// CPU time used so far by this process, the PostgreSQL server and tansu,
/// from /proc: with `BENCH_DEBUG`, where each payout's CPU goes. The machine
/// is CPU-bound, so this is steadier than the rate from run to run.
struct CpuSnapshot {
    this: f64,
    postgres: f64,
    tansu: f64,
}

impl CpuSnapshot {
    fn take() -> Self {
        let mut snapshot = Self { this: 0.0, postgres: 0.0, tansu: 0.0 };
        let me = std::process::id().to_string();
        let Ok(dir) = std::fs::read_dir("/proc") else { return snapshot };
        for entry in dir.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().filter(|n| n.bytes().all(|b| b.is_ascii_digit())) else { continue };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
            // utime, stime, and the waited-for children (exited PostgreSQL
            // backends).
            let Some((comm, ticks)) = stat_cpu_secs(&stat, true) else { continue };
            if pid == me {
                snapshot.this += ticks;
            } else if comm == "postgres" {
                snapshot.postgres += ticks;
            } else if comm.starts_with("tansu") {
                snapshot.tansu += ticks;
            }
        }
        snapshot
    }

    fn report_since(&self, before: &Self, n: usize) {
        let per = |now: f64, then: f64| (now - then) * 1e6 / n as f64;
        eprintln!(
            "cpu per payout: this process {:.0} us, postgres {:.0} us, tansu {:.0} us",
            per(self.this, before.this),
            per(self.postgres, before.postgres),
            per(self.tansu, before.tansu)
        );
    }
}

/// A `/proc/<pid>/stat` line's command name and CPU seconds: utime + stime,
/// plus cutime + cstime (waited-for children) when `with_children`. Clock
/// ticks are taken as 100 per second (Linux's USER_HZ).
fn stat_cpu_secs(stat: &str, with_children: bool) -> Option<(&str, f64)> {
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let comm = stat.get(open + 1..close)?;
    // After the command: state (field 3), ..., utime is field 14.
    let fields: Vec<f64> =
        stat[close + 1..].split_whitespace().skip(11).take(if with_children { 4 } else { 2 }).map(|f| f.parse::<f64>()).collect::<Result<_, _>>().ok()?;
    if fields.len() < 2 {
        return None;
    }
    Some((comm, fields.iter().sum::<f64>() / 100.0))
}

/// A `/proc/<pid>/status` field in KiB (`VmRSS:`, `VmHWM:`).
fn status_kib(status: &str, field: &str) -> Option<u64> {
    status.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok())
}

fn proc_status(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status").ok().and_then(|s| status_kib(&s, field)).unwrap_or(0)
}

fn rss_kib() -> u64 {
    proc_status("VmRSS:")
}

fn hwm_kib() -> u64 {
    proc_status("VmHWM:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_reads_utime_stime_and_children_after_a_command_with_spaces() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime ...
        let stat = "4242 (tokio rt) worker) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 7 3 20 0 9 0 1234 5678 900";
        let (comm, secs) = stat_cpu_secs(stat, false).expect("parses");
        assert_eq!(comm, "tokio rt) worker");
        assert!((secs - 3.0).abs() < 1e-9, "{secs}");
        let (_, with_children) = stat_cpu_secs(stat, true).expect("parses");
        assert!((with_children - 3.1).abs() < 1e-9, "{with_children}");
        assert_eq!(stat_cpu_secs("garbage", false), None);
        assert_eq!(stat_cpu_secs("1 (x) S 1 2", false), None);
    }

    #[test]
    fn status_reads_kib_fields() {
        let status = "Name:\tpayout-worker\nVmPeak:\t 2130696 kB\nVmHWM:\t   80124 kB\nVmRSS:\t   71568 kB\nThreads:\t9\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(71_568));
        assert_eq!(status_kib(status, "VmHWM:"), Some(80_124));
        assert_eq!(status_kib(status, "VmSwap:"), None);
    }
}
