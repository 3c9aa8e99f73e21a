//! `switchyard up`: the local stack and a payout demo.
//!
//! Starts (or reuses) a tansu broker, the schema registry stand-in, the
//! Stripe and Adyen simulators with injected faults, TrueLayer's for GBP
//! payouts by bank transfer, and a payout worker on
//! the embedded SQLite store; then plays core banking: publishes payouts,
//! duplicates, a declined payout, an idempotency collision and bytes that are
//! not a command, and prints what came back. The simulators' signed status
//! callbacks go through a webhook ingester; the provider events it published
//! are printed too, beside a forged callback it refused. Then a handful of
//! applicants are onboarded through KYC, AML and fraud (approve, step-up,
//! potential match cleared, AML hold, fraud block), and a card is issued,
//! activated, suspended and reinstated at Lithic, whose callbacks arrive
//! twice and still yield one card event per change. Last, open banking: an
//! account linked through Plaid Link and synced, its institution down and
//! back, and a TrueLayer payment authorized and followed to SETTLED. Then
//! the HTTP gateway: one payout and one onboarding application over HTTP,
//! with the `curl` lines to make them again.

use anyhow::{bail, Context, Result};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use switchyard_canonical::PayoutOutcome;
use switchyard_localstack::{command, LocalStack, TopicReader};
use switchyard_simulators::{adyen, stripe, FaultPlan};
use tokio_util::sync::CancellationToken;

#[derive(clap::Args)]
pub(crate) struct UpArgs {
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    /// The embedded default needs no server; pass postgres://... to use one.
    #[arg(long, default_value = "sqlite:.switchyard/demo.db?mode=rwc")]
    database_url: String,
    #[arg(long, default_value = "127.0.0.1:9464")]
    admin_bind: SocketAddr,
    /// Keep the stack running after the demo until Ctrl-C.
    #[arg(long)]
    keep_running: bool,
}

pub(crate) async fn run(args: UpArgs) -> Result<()> {
    let root = repo_root()?;
    ensure_broker(&root, &args.brokers)?;
    println!("broker           {} (tansu, memory engine)", args.brokers);
    if args.database_url.starts_with("sqlite:") {
        std::fs::create_dir_all(root.join(".switchyard"))?;
    }
    std::env::set_current_dir(&root)?;

    let stack = LocalStack::open(String::new(), args.brokers.clone()).await?;
    println!("schema registry  {} (development stand-in)", stack.registry.base_url());
    let shutdown = CancellationToken::new();
    let truelayer = crate::demo_truelayer::TrueLayerRail::spawn().await?;
    let ingester = crate::demo_webhooks::DemoIngester::start(&stack, &args.database_url, &truelayer.sim.webhook_jwks_url(), shutdown.clone()).await?;
    truelayer.send_webhooks_to(&format!("http://{}/webhooks/truelayer", ingester.running.addr));
    let mut stripe_config = stripe::StripeConfig::local();
    // Faults the demo shows being absorbed: 429s with Retry-After and 503s.
    stripe_config.faults =
        FaultPlan { latency_ms: 30, rate_limit_ratio: 0.2, retry_after_secs: 1, server_error_ratio: 0.1, seed: 42, ..FaultPlan::default() };
    stripe_config.webhook = Some(ingester.target("stripe"));
    let stripe = stripe::spawn_stripe(stripe_config).await?;
    let adyen = adyen::spawn_adyen(adyen::AdyenConfig { webhook: Some(ingester.target("adyen")), ..adyen::AdyenConfig::local() }).await?;
    println!("stripe simulator {}  (20% 429 + Retry-After, 10% 5xx)", stripe.base_url());
    println!("adyen simulator  {}", adyen.base_url());
    println!("truelayer simulator {}  (GBP payouts by bank transfer)", truelayer.sim.base_url());

    let mut config = stack.worker_config(&stripe.base_url(), Some(&adyen.base_url()), "stripe");
    truelayer.wire(&mut config);
    config.database_url = args.database_url.clone();
    config.admin_bind = Some(args.admin_bind);
    let worker = switchyard_worker::start_payout_worker(config, shutdown.clone()).await?;
    if let Some(addr) = worker.admin_addr {
        println!("payout worker    metrics http://{addr}/metrics  health http://{addr}/health");
    }
    println!("store            {}", args.database_url);

    let run = uuid::Uuid::new_v4().simple().to_string()[..6].to_owned();
    let producer = stack.core_producer().await?;
    let reader = stack.outcome_reader()?;
    let mut expected = 0;
    println!("\npublishing to payouts.commands.v1 (run {run}):");
    for i in 1..=5 {
        producer.send(&command(&format!("po-{run}-{i}"), &format!("key-{run}-{i}"), 1000 * i)).await?;
        expected += 1;
    }
    println!("  5 payouts");
    for _ in 0..2 {
        producer.send(&command(&format!("po-{run}-1"), &format!("key-{run}-1"), 1000)).await?;
        expected += 1;
    }
    println!("  2 duplicates of po-{run}-1 (same idempotency key, same payload)");
    producer.send(&command(&format!("po-{run}-6"), &format!("key-{run}-6"), 40402)).await?;
    expected += 1;
    println!("  1 payout the vendor declines for insufficient funds");
    producer.send(&command(&format!("po-{run}-2"), &format!("key-{run}-2"), 999_999)).await?;
    expected += 1;
    println!("  1 reuse of key-{run}-2 with another amount (idempotency collision)");
    producer.send(&crate::demo_truelayer::gbp_payout(&format!("po-{run}-7"), &format!("key-{run}-7"), 25_000)).await?;
    expected += 1;
    println!("  1 GBP payout by bank transfer (routed to truelayer by currency)");
    producer.send_raw(format!("po-{run}-junk").as_bytes(), b"not avro".to_vec(), &format!("key-{run}-junk")).await?;
    println!("  1 message that is not a command (goes to payouts.commands.v1.dlq)");

    let outcomes = collect_run(&stack, &reader, &run, expected).await?;
    println!("\noutcomes on payouts.outcomes.v1:");
    println!("  {:<16} {:<10} {:<8} {:<20} {:>8} {:>8}  error", "payout", "status", "provider", "vendor ref", "attempts", "replayed");
    for o in &outcomes {
        println!(
            "  {:<16} {:<10} {:<8} {:<20} {:>8} {:>8}  {}",
            o.payout_id,
            o.status.as_str(),
            o.provider.as_deref().unwrap_or("-"),
            o.provider_reference.as_deref().unwrap_or("-"),
            o.attempts,
            o.replayed,
            o.error.as_ref().map(|e| format!("{}: {}", e.code.as_str(), e.message)).unwrap_or_default()
        );
    }
    let dlq = TopicReader::new(&stack.kafka, "payouts.commands.v1.dlq")?;
    let junk = format!("po-{run}-junk").into_bytes();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while tokio::time::Instant::now() < deadline {
        let dead = dlq.read_up_to(1000, Duration::from_millis(500)).await?;
        if let Some(r) = dead.iter().find(|r| r.key == junk) {
            println!(
                "\ndead-lettered on payouts.commands.v1.dlq: key {}\n  dlq-reason: {}\n  dlq-error-class: {}",
                String::from_utf8_lossy(&r.key),
                r.headers.get("dlq-reason").cloned().unwrap_or_default(),
                r.headers.get("dlq-error-class").cloned().unwrap_or_default()
            );
            break;
        }
    }
    // Each payout Stripe or Adyen accepted calls back twice (created, then
    // paid or failed); TrueLayer once, when the payout executes.
    let accepted = |provider: &str| outcomes.iter().filter(|o| o.provider.as_deref() == Some(provider) && o.provider_reference.is_some() && !o.replayed).count();
    ingester.report(&stack, &run, (accepted("stripe") + accepted("adyen")) * 2 + accepted("truelayer")).await?;
    crate::demo_recon::show(&stack, &outcomes, &run, &args.database_url).await?;
    let onboarding = crate::demo_onboarding::show(&stack, &args.database_url, &run, shutdown.clone()).await?;
    let cards = crate::demo_cards::show(&stack, &ingester, &args.database_url, &run, shutdown.clone()).await?;
    let openbanking = crate::demo_openbanking::show(&stack, &args.database_url, &run, shutdown.clone()).await?;
    let gateway = crate::demo_gateway::show(&root, &stack, &args.database_url, &run, shutdown.clone()).await?;
    let stats = stripe.stats();
    println!(
        "\nstripe simulator: {} requests, {} payouts executed, {} injected faults absorbed",
        stats.requests, stats.executed, stats.injected_faults
    );

    if args.keep_running {
        println!("\nstack is up; Ctrl-C to stop");
        let _ = tokio::signal::ctrl_c().await;
    }
    shutdown.cancel();
    worker.join.await??;
    truelayer.sim.shutdown().await;
    onboarding.join().await?;
    cards.join().await?;
    openbanking.join().await?;
    gateway.join().await?;
    Ok(())
}

async fn collect_run(stack: &LocalStack, reader: &TopicReader, run: &str, expected: usize) -> Result<Vec<PayoutOutcome>> {
    let decoder = stack.outcome_decoder()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut mine = Vec::new();
    while mine.len() < expected {
        if tokio::time::Instant::now() > deadline {
            bail!("only {} of {expected} outcomes arrived within 60 s", mine.len());
        }
        for record in reader.read_up_to(1000, Duration::from_millis(500)).await? {
            let outcome: PayoutOutcome = decoder.decode(&record.payload).await?;
            if outcome.payout_id.contains(run) {
                mine.push(outcome);
            }
        }
    }
    Ok(mine)
}

/// The directory holding topics.yaml: the current one or the binary's checkout.
fn repo_root() -> Result<PathBuf> {
    let cwd = std::env::current_dir()?;
    if cwd.join("topics.yaml").exists() {
        return Ok(cwd);
    }
    let exe = std::env::current_exe()?;
    exe.ancestors()
        .find(|p| p.join("topics.yaml").exists())
        .map(Path::to_path_buf)
        .context("run `switchyard up` from the repository (topics.yaml not found)")
}

fn ensure_broker(root: &Path, brokers: &str) -> Result<()> {
    if std::net::TcpStream::connect(brokers).is_ok() {
        return Ok(());
    }
    let port = brokers.rsplit(':').next().unwrap_or("9092");
    let status = std::process::Command::new(root.join("ops/scripts/broker.sh"))
        .arg("start")
        .env("SWITCHYARD_BROKER_PORT", port)
        .stdout(std::process::Stdio::null())
        .status()
        .context("starting tansu with ops/scripts/broker.sh")?;
    if !status.success() {
        bail!("could not start the broker (ops/scripts/broker.sh start)");
    }
    Ok(())
}
