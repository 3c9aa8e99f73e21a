//! The reconciliation part of `switchyard up`: a core-banking stand-in books
//! ledger postings for the demo's payouts, with a few deliberate breaks, and
//! a reconciler compares them with the outcomes and provider events.

use anyhow::Result;
use std::collections::HashMap;
use std::time::Duration;
use switchyard_bus::{AvroEncoder, Outbound, Publisher};
use switchyard_canonical::{DiscrepancyStatus, LedgerPosting, PayoutOutcome, PayoutStatus, PostingKind};
use switchyard_localstack::LocalStack;
use switchyard_recon::ingest::{ReconTopics, LEDGER_POSTING_SCHEMA};
use switchyard_recon::run::ReconConfig;
use switchyard_recon::Policy;
use tokio_util::sync::CancellationToken;

const DAY_MS: i64 = 86_400_000;

/// Books postings for `outcomes` of run `run`, reconciles, prints the report.
pub(crate) async fn show(stack: &LocalStack, outcomes: &[PayoutOutcome], run: &str, database_url: &str) -> Result<()> {
    let topic = stack.topic("ledger.postings.v1");
    let encoder = AvroEncoder::register(&stack.registry_client, &topic, LEDGER_POSTING_SCHEMA).await?;
    let publisher = Publisher::new(&stack.kafka)?;
    let now = switchyard_canonical::now_ms();
    // The first executed outcome of each payout is what core banking books.
    let mut booked: HashMap<&str, &PayoutOutcome> = HashMap::new();
    for o in outcomes.iter().filter(|o| matches!(o.status, PayoutStatus::Paid | PayoutStatus::Submitted)) {
        booked.entry(o.payout_id.as_str()).or_insert(o);
    }
    let posting = |o: &PayoutOutcome, n: u32, amount: i64, at: i64| LedgerPosting {
        posting_id: format!("gl-{}-{n}", o.payout_id),
        payout_id: o.payout_id.clone(),
        idempotency_key: Some(o.idempotency_key.clone()),
        correlation_id: None,
        kind: PostingKind::Payout,
        amount_minor: amount,
        currency: o.currency.clone(),
        posted_at_ms: at,
        card_id: None,
        card_transaction_id: None,
        card_event_id: None,
        card_fee: None,
    };
    let mut postings = Vec::new();
    for (id, o) in &booked {
        match id.rsplit('-').next() {
            Some("3") => postings.push(posting(o, 1, o.amount_minor + 1, now)), // booked one cent off
            Some("4") => {
                postings.push(posting(o, 1, o.amount_minor, now));
                postings.push(posting(o, 2, o.amount_minor, now)); // booked twice
            }
            Some("5") => {} // not booked yet: inside the settlement window, no drift
            _ => postings.push(posting(o, 1, o.amount_minor, now)),
        }
    }
    // A booking two days old for a payout switchyard never saw.
    let ghost = PayoutOutcome {
        payout_id: format!("po-{run}-ghost"),
        idempotency_key: format!("key-{run}-ghost"),
        status: PayoutStatus::Paid,
        amount_minor: 4200,
        currency: "EUR".into(),
        provider: None,
        provider_reference: None,
        error: None,
        attempts: 0,
        replayed: false,
        completed_at_ms: now,
    };
    postings.push(posting(&ghost, 1, 4200, now - 2 * DAY_MS));
    for p in &postings {
        let record = Outbound { topic: topic.clone(), key: Some(p.payout_id.clone().into_bytes()), payload: encoder.encode(p)?, headers: Vec::new() };
        publisher.publish(&record).await?;
    }
    println!("\nledger.postings.v1 (core-banking stand-in): {} postings; po-{run}-3 one cent off, po-{run}-4 booked twice,", postings.len());
    println!("  po-{run}-5 not booked yet (inside its settlement window), po-{run}-ghost booked for a payout never made");

    let catalog = switchyard_routing::PartnerCatalog::load(std::path::Path::new("ops/partners.yaml")).ok();
    let database_url = if database_url.starts_with("sqlite:") { "sqlite:.switchyard/reconciler.db?mode=rwc" } else { database_url };
    let mut kafka = stack.kafka.clone();
    kafka.group_id = format!("demo-reconciler-{run}");
    let config = ReconConfig {
        kafka,
        schema_registry_url: stack.registry.base_url(),
        database_url: database_url.to_owned(),
        scope: format!("demo-{run}"),
        topics: ReconTopics::with_prefix(&stack.prefix),
        policy: Policy::from_catalog(catalog.as_ref(), Duration::from_secs(24 * 3600), Duration::from_secs(15 * 60)),
        providers: HashMap::new(),
        worker_database_url: None,
        eval_interval: Duration::from_millis(500),
        batch: 5000,
        admin_bind: None,
        pii_keys: Vec::new(),
    };
    let shutdown = CancellationToken::new();
    let recon = switchyard_recon::run::start(config, shutdown.clone()).await?;
    // Wait for the three deliberate breaks that are due now.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mine = loop {
        let found: Vec<_> = recon.store.discrepancies(false, 10_000).await?.into_iter().filter(|d| d.subject_id.contains(run)).collect();
        if found.len() >= 3 || tokio::time::Instant::now() > deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    println!("\nrecon.discrepancies.v1 (reconciler, run {run}):");
    for d in &mine {
        let status = match d.status {
            DiscrepancyStatus::Open => "OPEN",
            DiscrepancyStatus::Resolved => "resolved",
        };
        println!("  {status:<8} {:<26} {:<18} expected {} / actual {}", d.class.as_str(), d.subject_id, d.expected, d.actual);
    }
    let (timers, _) = recon.store.subject_counts().await?;
    println!("  {timers} payout(s) waiting on a settlement window or deadline (no drift reported inside it)");
    shutdown.cancel();
    recon.join.await??;
    Ok(())
}
