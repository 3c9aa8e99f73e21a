//! `switchyard trace` at volume: the payout worker records where each
//! message it consumes and publishes is, and the trace reads a flow's
//! records at those positions instead of reading whole topics.
//!
//! The webhook ingester does the same for the provider events it publishes,
//! and the reconciler for the ledger postings it consumes.
//!
//! The topics carry noise that no flow owns (SWITCHYARD_TRACE_NOISE records
//! on the outcome topic, 20,000 by default; 1,000,000 is the README's
//! benchmark). The trace by positions must find exactly what a full scan
//! finds, without reading the noisy topics in full, and prints both times.

use anyhow::{ensure, Result};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use switchyard_e2e::{command, TestEnv};
use switchyard_ops::read::{read_positions, ReadOptions};
use switchyard_ops::trace::{self, Trace, TraceRequest};
use switchyard_simulators::stripe;
use switchyard_store::Store;
use switchyard_worker::start_payout_worker;
use tokio_util::sync::CancellationToken;

fn topics(env: &TestEnv) -> Result<Vec<String>> {
    let file = switchyard_bus::topics::TopicsFile::load(&switchyard_localstack::repo_root().join("topics.yaml"))?;
    Ok(file.with_prefix(&env.prefix).topics.into_iter().map(|t| t.name).collect())
}

async fn trace_of(env: &TestEnv, store: &Store, id: &str, scan_all: bool) -> Result<(Trace, Duration)> {
    let read = ReadOptions { idle: Duration::from_secs(2), settle: Duration::from_millis(300), deadline: Duration::from_secs(600) };
    let request = TraceRequest { id, topics: topics(env)?, read, decoders: None, since: None, scan_all };
    let started = Instant::now();
    let found = trace::trace(&env.kafka, store, request).await?;
    Ok((found, started.elapsed()))
}

/// What a trace saw, without timing-dependent text.
fn seen(t: &Trace) -> BTreeSet<(String, String, Option<String>)> {
    t.events.iter().map(|e| (e.source.clone(), e.what.clone(), e.status.clone())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_trace_reads_the_flows_positions_and_finds_what_a_full_scan_finds() -> Result<()> {
    let env = TestEnv::new("trace-index").await?;
    let noise: usize = std::env::var("SWITCHYARD_TRACE_NOISE").ok().and_then(|n| n.parse().ok()).unwrap_or(20_000);
    let outcomes = env.topic("payouts.outcomes.v1");
    // Noise from a producer that records no positions, as core banking's would.
    let raw = switchyard_bus::Publisher::new(&env.kafka)?;
    let started = Instant::now();
    for chunk in (0..noise).collect::<Vec<_>>().chunks(5_000) {
        let sends = chunk.iter().map(|i| {
            let record = switchyard_bus::Outbound { topic: outcomes.clone(), key: Some(format!("noise-{i}").into_bytes()), payload: vec![0; 64], headers: Vec::new() };
            let raw = raw.clone();
            async move { raw.publish(&record).await }
        });
        for sent in futures::future::join_all(sends).await {
            sent?;
        }
    }
    eprintln!("{noise} noise records on {outcomes} in {:?}", started.elapsed());

    let vendor = stripe::spawn_stripe(stripe::StripeConfig::local()).await?;
    let shutdown = CancellationToken::new();
    let worker = start_payout_worker(env.worker_config(&vendor.base_url(), None, "stripe"), shutdown.clone()).await?;
    let producer = env.core_producer().await?;
    let (payout_id, key) = (format!("{}po-traced", env.prefix), format!("{}key-traced", env.prefix));
    producer.send(&command(&payout_id, &key, 1200)).await?;
    // Wait for the outcome, then stop the worker: its shutdown flushes the
    // positions still queued for the store.
    let store = Store::connect(&switchyard_localstack::database_url()).await?;
    for _ in 0..120 {
        if trace_of(&env, &store, &payout_id, false).await?.0.events.iter().any(|e| e.what == "outcome") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    shutdown.cancel();
    worker.join.await??;

    let (by_positions, indexed_time) = trace_of(&env, &store, &payout_id, false).await?;
    let (by_scan, scan_time) = trace_of(&env, &store, &payout_id, true).await?;
    eprintln!("trace of {payout_id} with {noise} noise records: {indexed_time:?} by positions, {scan_time:?} by full scan");
    eprintln!("read in full by positions: {:?}", by_positions.scanned_topics);

    let outcome = by_positions.events.iter().find(|e| e.what == "outcome").ok_or_else(|| anyhow::anyhow!("no outcome: {by_positions:#?}"))?;
    ensure!(outcome.source == outcomes, "{outcome:?}");
    ensure!(by_positions.events.iter().any(|e| e.what == "command"), "{by_positions:#?}");
    ensure!(seen(&by_positions) == seen(&by_scan), "positions {:#?}\nscan {:#?}", seen(&by_positions), seen(&by_scan));
    for topic in [&outcomes, &env.topic("payouts.commands.v1")] {
        ensure!(!by_positions.scanned_topics.contains(topic), "{topic} read in full: {:?}", by_positions.scanned_topics);
        ensure!(by_scan.scanned_topics.contains(topic), "--scan reads {topic}");
    }
    ensure!(!by_positions.events.iter().any(|e| e.what.starts_with("message_")), "positions are not events: {by_positions:#?}");
    // Topics nobody wrote to are skipped on their watermarks, not read to
    // their end: in this run every topic but the payout flow's is empty.
    eprintln!("empty, not read: {} topics", by_positions.empty_topics.len());
    let dlq = env.topic("payouts.commands.v1.dlq");
    for t in [&by_positions, &by_scan] {
        ensure!(t.empty_topics.contains(&dlq), "{dlq} is empty and not read: empty {:?}", t.empty_topics);
        ensure!(t.scanned_topics.iter().all(|s| !t.empty_topics.contains(s)), "an empty topic read in full: {:?}", t.scanned_topics);
    }
    ensure!(by_positions.scanned_topics.len() <= 2, "only topics with records are read in full: {:?}", by_positions.scanned_topics);
    Ok(())
}

/// The webhook ingester records where it published each provider event:
/// the trace reads the event at its position, not the noisy topic in full.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_provider_event_published_by_the_ingester_is_found_by_its_position() -> Result<()> {
    use std::collections::BTreeMap;
    use switchyard_ingester::config::{KeyConfig, ProviderConfig};
    use switchyard_simulators::callbacks::{bodies, Callback, Signer, WebhookEmitter};
    const SECRET: &str = "whsec_trace_index_stripe";

    let env = TestEnv::new("trace-webhook").await?;
    let events = env.topic("payouts.provider-events.v1");
    let raw = switchyard_bus::Publisher::new(&env.kafka)?;
    let sends = (0..2_000).map(|i| {
        let record = switchyard_bus::Outbound { topic: events.clone(), key: Some(format!("noise-{i}").into_bytes()), payload: vec![0; 64], headers: Vec::new() };
        let raw = raw.clone();
        async move { raw.publish(&record).await }
    });
    for sent in futures::future::join_all(sends).await {
        sent?;
    }
    let shutdown = CancellationToken::new();
    let providers = BTreeMap::from([("stripe".to_owned(), ProviderConfig::new("payouts", vec![KeyConfig::inline(SECRET)]))]);
    let ingester = switchyard_ingester::start_ingester(env.ingester_config(providers), shutdown.clone()).await?;
    let payout_id = format!("{}po-webhook", env.prefix);
    let id = format!("evt_{}", env.prefix.replace('-', "_"));
    let body = bodies::stripe_payout(&id, "payout.paid", &payout_id, "po_traced", 1200, switchyard_canonical::now_ms() / 1000);
    let emitter = WebhookEmitter::new(format!("http://{}/webhooks/stripe", ingester.addr), Signer::Stripe { secret: SECRET.into() });
    ensure!(emitter.deliver(&Callback { id, body }).await.0, "the callback was accepted");

    // The position reaches the store by a group commit shortly after the publish.
    let store = Store::connect(&switchyard_localstack::database_url()).await?;
    let mut by_positions = trace_of(&env, &store, &payout_id, false).await?.0;
    for _ in 0..40 {
        if !by_positions.scanned_topics.contains(&events) && by_positions.events.iter().any(|e| e.what == "provider_event") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        by_positions = trace_of(&env, &store, &payout_id, false).await?.0;
    }
    shutdown.cancel();
    let by_scan = trace_of(&env, &store, &payout_id, true).await?.0;
    let event = by_positions.events.iter().find(|e| e.what == "provider_event").ok_or_else(|| anyhow::anyhow!("no provider event: {by_positions:#?}"))?;
    ensure!(event.source == events, "{event:?}");
    ensure!(!by_positions.scanned_topics.contains(&events), "{events} read in full: {:?}", by_positions.scanned_topics);
    ensure!(seen(&by_positions) == seen(&by_scan), "positions {:#?}\nscan {:#?}", seen(&by_positions), seen(&by_scan));
    Ok(())
}

/// Core banking records no positions; the reconciler records where it
/// consumed each ledger posting, so the trace reads the posting at its position.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ledger_posting_consumed_by_the_reconciler_is_found_by_its_position() -> Result<()> {
    use switchyard_canonical::{LedgerPosting, PostingKind};
    use switchyard_recon::ingest::{ReconTopics, LEDGER_POSTING_SCHEMA};

    let env = TestEnv::new("trace-posting").await?;
    let postings = env.topic("ledger.postings.v1");
    let raw = switchyard_bus::Publisher::new(&env.kafka)?;
    let sends = (0..2_000).map(|i| {
        let record = switchyard_bus::Outbound { topic: postings.clone(), key: Some(format!("noise-{i}").into_bytes()), payload: vec![0; 64], headers: Vec::new() };
        let raw = raw.clone();
        async move { raw.publish(&record).await }
    });
    for sent in futures::future::join_all(sends).await {
        sent?;
    }
    let payout_id = format!("{}po-posted", env.prefix);
    let posting = LedgerPosting {
        posting_id: format!("posting-{payout_id}"),
        payout_id: payout_id.clone(),
        idempotency_key: Some(format!("key-{payout_id}")),
        correlation_id: None,
        kind: PostingKind::Payout,
        amount_minor: 1200,
        currency: "EUR".into(),
        posted_at_ms: switchyard_canonical::now_ms(),
        card_id: None,
        card_transaction_id: None,
        card_event_id: None,
        card_fee: None,
    };
    let encoder = switchyard_bus::AvroEncoder::register(&env.registry_client, &postings, LEDGER_POSTING_SCHEMA).await?;
    raw.publish(&switchyard_bus::Outbound { topic: postings.clone(), key: Some(payout_id.as_bytes().to_vec()), payload: encoder.encode(&posting)?, headers: Vec::new() })
        .await?;

    let mut kafka = switchyard_bus::KafkaConfig::new(env.kafka.brokers.clone(), format!("{}reconciler", env.prefix));
    kafka.session_timeout_ms = env.kafka.session_timeout_ms;
    let config = switchyard_recon::run::ReconConfig {
        kafka,
        schema_registry_url: env.registry.base_url(),
        database_url: switchyard_localstack::database_url(),
        scope: env.prefix.clone(),
        topics: ReconTopics::with_prefix(&env.prefix),
        policy: switchyard_recon::Policy::from_catalog(None, Duration::from_secs(86_400), Duration::from_secs(900)),
        providers: Default::default(),
        worker_database_url: None,
        eval_interval: Duration::from_millis(200),
        batch: 5000,
        admin_bind: None,
        pii_keys: Vec::new(),
    };
    let shutdown = CancellationToken::new();
    let running = switchyard_recon::run::start(config, shutdown.clone()).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while running.ingest.messages.load(std::sync::atomic::Ordering::Relaxed) < 2_001 {
        ensure!(Instant::now() < deadline, "the reconciler did not read the postings");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Its stop flushes the positions still queued for the store.
    shutdown.cancel();
    running.join.await??;

    let store = Store::connect(&switchyard_localstack::database_url()).await?;
    let by_positions = trace_of(&env, &store, &payout_id, false).await?.0;
    let by_scan = trace_of(&env, &store, &payout_id, true).await?.0;
    let found = by_positions.events.iter().find(|e| e.what == "ledger_posting").ok_or_else(|| anyhow::anyhow!("no posting: {by_positions:#?}"))?;
    ensure!(found.source == postings, "{found:?}");
    ensure!(!by_positions.scanned_topics.contains(&postings), "{postings} read in full: {:?}", by_positions.scanned_topics);
    ensure!(seen(&by_positions) == seen(&by_scan), "positions {:#?}\nscan {:#?}", seen(&by_positions), seen(&by_scan));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_are_read_at_their_positions_and_a_missing_one_is_skipped() -> Result<()> {
    let env = TestEnv::new("positions").await?;
    let topic = env.topic("payouts.outcomes.v1");
    let publisher = switchyard_bus::Publisher::new(&env.kafka)?;
    let mut landed = Vec::new();
    for i in 0..1_200 {
        let record = switchyard_bus::Outbound { topic: topic.clone(), key: Some(format!("k{i}").into_bytes()), payload: vec![1], headers: Vec::new() };
        landed.push((i, publisher.publish(&record).await?));
    }
    // Near and far apart on a partition (read through, then a seek), and
    // one offset past the end.
    let wanted: Vec<&(usize, (i32, i64))> = landed.iter().filter(|(i, _)| [3, 4, 700, 1_199].contains(i)).collect();
    let mut positions: BTreeSet<(i32, i64)> = wanted.iter().map(|(_, at)| *at).collect();
    let (p, last) = wanted[wanted.len() - 1].1;
    positions.insert((p, last + 10_000));
    let found = read_positions(&env.kafka, &topic, positions, Duration::from_secs(2)).await?;
    let keys: BTreeSet<String> = found.iter().map(|m| m.key_text()).collect();
    ensure!(keys == BTreeSet::from(["k3", "k4", "k700", "k1199"].map(String::from)), "{keys:?}");
    Ok(())
}
