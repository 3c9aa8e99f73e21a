//! `reconciler bench`: reconciles generated ledger postings against their
//! outcomes through the real store (PostgreSQL by default), the way the
//! service does: facts ingested in batches, due subjects judged in batches,
//! verdicts written back. State lives in the database, so memory stays flat
//! however many payouts run. A few payouts carry a deliberate amount break;
//! the run checks exactly those are reported.

use anyhow::{ensure, Context};
use clap::Args;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_canonical::{DiscrepancyClass, DiscrepancyStatus, PayoutStatus, PostingKind};
use switchyard_recon::engine::{Engine, PassStats};
use switchyard_recon::Policy;
use switchyard_store::recon::{FactBatch, OutcomeFact, PostingFact, ReconStore};

#[derive(Args)]
pub(crate) struct BenchArgs {
    /// Payouts, each with one outcome and one posting.
    #[arg(long, default_value_t = 1_000_000)]
    postings: usize,
    /// Facts per ingested batch and subjects per evaluation batch.
    #[arg(long, default_value_t = 5000)]
    batch: usize,
    /// Batches being ingested at once.
    #[arg(long, default_value_t = 3)]
    ingest_tasks: usize,
    /// One payout in this many is posted with a wrong amount (0: a clean stream).
    #[arg(long, default_value_t = 10_000)]
    break_every: usize,
    /// Outcomes and postings arrive in separate batches, so each payout is
    /// judged twice (once waiting for its posting), as when the topics lag apart.
    #[arg(long)]
    split: bool,
    #[arg(long, env = "DATABASE_URL", default_value = "postgres://postgres@127.0.0.1:5432/test")]
    database_url: String,
    /// Leave the rows in the database afterwards.
    #[arg(long)]
    keep: bool,
}

fn batch_of(from: usize, to: usize, base_ms: i64, args: &BenchArgs, outcomes: bool, postings: bool) -> FactBatch {
    let mut batch = FactBatch::default();
    for i in from..to {
        let subject = format!("bench-po-{i:08}");
        let key = format!("bench-key-{i:08}");
        let at = base_ms + i as i64;
        if outcomes {
            batch.outcomes.push(OutcomeFact {
                subject_id: subject.clone(),
                idempotency_key: key.clone(),
                status: PayoutStatus::Paid,
                provider: Some(if i % 3 == 0 { "adyen" } else { "stripe" }.to_owned()),
                provider_reference: Some(format!("po_{i}")),
                amount_minor: 1000 + (i % 5000) as i64,
                currency: "EUR".into(),
                correlation_id: None,
                completed_at_ms: at,
            });
        }
        if postings {
            let broken = args.break_every > 0 && i % args.break_every == 0;
            batch.postings.push(PostingFact {
                posting_id: format!("bench-posting-{i:08}"),
                subject_id: subject,
                idempotency_key: Some(key),
                correlation_id: None,
                kind: PostingKind::Payout,
                amount_minor: 1000 + (i % 5000) as i64 + i64::from(broken),
                currency: "EUR".into(),
                posted_at_ms: at + 1000,
            });
        }
    }
    batch
}

pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let args = Arc::new(args);
    let scope = format!("bench-{}-{}", std::process::id(), switchyard_canonical::now_ms());
    let store = ReconStore::connect(&args.database_url, &scope).await.context("database")?;
    let catalog = switchyard_routing::PartnerCatalog::load(std::path::Path::new("ops/partners.yaml")).ok();
    let policy = Policy::from_catalog(catalog.as_ref(), Duration::from_secs(24 * 3600), Duration::from_secs(900));
    let engine = Arc::new(Engine::new(store.clone(), policy, None, None, args.batch));
    // Three days ago: every settlement window has passed, so a missing
    // posting would be reported; none is.
    let base_ms = switchyard_canonical::now_ms() - 3 * 86_400_000;
    println!("reconciling {} postings against their outcomes (scope {scope}, batch {}, {} ingest tasks{})", args.postings, args.batch, args.ingest_tasks, if args.split { ", split topics" } else { "" });

    let cpu_before = (own_cpu_secs(), postgres_cpu_secs());
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    // One work unit per batch of subjects; tasks never share a subject, as
    // consumers of co-partitioned topics never do.
    let units = args.postings.div_ceil(args.batch);
    let mut ingesters = Vec::new();
    for _ in 0..args.ingest_tasks.max(1) {
        let (engine, next, args) = (engine.clone(), next.clone(), args.clone());
        ingesters.push(tokio::spawn(async move {
            let mut total = PassStats::default();
            loop {
                let unit = next.fetch_add(1, Ordering::Relaxed);
                if unit >= units {
                    return Ok::<_, anyhow::Error>(total);
                }
                let from = unit * args.batch;
                let to = (from + args.batch).min(args.postings);
                let batches = match args.split {
                    false => vec![batch_of(from, to, base_ms, &args, true, true)],
                    // The outcomes first, their postings in a later batch.
                    true => vec![batch_of(from, to, base_ms, &args, true, false), batch_of(from, to, base_ms, &args, false, true)],
                };
                for batch in batches {
                    total.add(engine.ingest(&batch, switchyard_canonical::now_ms()).await?);
                }
            }
        }));
    }
    let mut total = PassStats::default();
    for i in ingesters {
        total.add(i.await??);
    }
    let ingest_secs = started.elapsed().as_secs_f64();
    // Timers that came due meanwhile (none in a clean run that is not split).
    total.add(engine.drain(switchyard_canonical::now_ms()).await?);
    let secs = started.elapsed().as_secs_f64();
    let (own_cpu, pg_cpu) = (own_cpu_secs() - cpu_before.0, postgres_cpu_secs() - cpu_before.1);

    let tally = store.tally().await?;
    let (timers, _) = store.subject_counts().await?;
    let count = |class: DiscrepancyClass| {
        tally.by_class.iter().filter(|(c, s, _)| *c == class && *s == DiscrepancyStatus::Open).map(|(_, _, n)| n).sum::<i64>()
    };
    let mismatches = count(DiscrepancyClass::AmountMismatch);
    let all_open: i64 = tally.by_class.iter().filter(|(_, s, _)| *s == DiscrepancyStatus::Open).map(|(_, _, n)| n).sum();
    let expected = if args.break_every == 0 { 0 } else { args.postings.div_ceil(args.break_every) as i64 };
    println!("ingested and judged {} facts in {ingest_secs:.1} s ({:.0} facts/s)", args.postings * 2, (args.postings * 2) as f64 / ingest_secs);
    println!(
        "reconciled {} postings in {secs:.1} s ({:.0} postings/s), {} evaluations",
        args.postings,
        args.postings as f64 / secs,
        total.evaluated
    );
    println!("subjects still waiting on a timer: {timers}");
    // Wall time depends on what else runs on the box; CPU time much less so.
    println!(
        "CPU: reconciler {own_cpu:.1} s, PostgreSQL {pg_cpu:.1} s (local server processes); {:.1} s of CPU per 1M postings, {:.1} s on 2 idle cores",
        (own_cpu + pg_cpu) * 1e6 / args.postings as f64,
        (own_cpu + pg_cpu) / 2.0
    );
    println!("discrepancies open: {all_open} (amount_mismatch {mismatches}, deliberate breaks {expected})");
    println!("peak RSS {} MiB", proc_status_kib("VmHWM:") / 1024);
    if !args.keep {
        store.purge().await?;
    }
    ensure!(mismatches == expected && all_open == expected, "the report does not match the deliberate breaks");
    ensure!(timers == 0, "{timers} subjects were left waiting for a posting they already have");
    Ok(())
}

fn proc_status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

/// utime + stime of this process, in seconds.
fn own_cpu_secs() -> f64 {
    std::fs::read_to_string("/proc/self/stat").map(|s| stat_cpu_secs(&s)).unwrap_or(0.0)
}

/// utime + stime of every local process named `postgres` (0 when the
/// database is elsewhere or /proc is not readable).
fn postgres_cpu_secs() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0.0 };
    dir.filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|s| s.contains("(postgres)"))
        .map(|s| stat_cpu_secs(&s))
        .sum()
}

fn stat_cpu_secs(stat: &str) -> f64 {
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields overall, in clock ticks (100 per second on Linux).
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return 0.0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}
