//! Ops tooling against the real broker and PostgreSQL: DLQ replay after the
//! cause is fixed pays each payout once, even when the replay runs twice; a
//! dry run publishes nothing; `trace` shows the failing vendor call, with
//! provider events and discrepancies of the same subject.

use anyhow::{ensure, Result};
use std::collections::HashMap;
use std::time::Duration;
use switchyard_canonical::{Discrepancy, DiscrepancyClass, DiscrepancyStatus, PayoutStatus, ProviderEvent, ProviderEventKind};
use switchyard_e2e::{command, TestEnv};
use switchyard_ops::dlq::{self, ReplayAction, ReplayOptions, Selection};
use switchyard_ops::read::{read_topic, ReadOptions};
use switchyard_ops::trace::{self, Trace, TraceRequest};
use switchyard_routing::BreakerConfig;
use switchyard_simulators::{stripe, FaultPlan};
use switchyard_store::Store;
use switchyard_worker::retry::RetryPolicy;
use switchyard_worker::start_payout_worker;
use tokio_util::sync::CancellationToken;

fn reads() -> ReadOptions {
    ReadOptions { idle: Duration::from_secs(2), settle: Duration::from_millis(300), deadline: Duration::from_secs(60) }
}

fn replay_options(dry_run: bool) -> ReplayOptions {
    ReplayOptions { selection: Selection::default(), dry_run, force: false, rate_per_sec: 20.0, operator: "e2e".into() }
}

/// Every topic of topics.yaml under this env's prefix.
fn all_topics(env: &TestEnv) -> Result<Vec<String>> {
    let file = switchyard_bus::topics::TopicsFile::load(&switchyard_localstack::repo_root().join("topics.yaml"))?;
    Ok(file.with_prefix(&env.prefix).topics.into_iter().map(|t| t.name).collect())
}

/// Audit entries are group-committed after the call; wait until the trace
/// holds what `done` asks for.
async fn trace_until(env: &TestEnv, store: &Store, id: &str, done: impl Fn(&Trace) -> bool) -> Result<Trace> {
    let decoders = trace::Decoders::new(env.registry_client.clone())?;
    let mut last = None;
    for _ in 0..20 {
        let request = TraceRequest { id, topics: all_topics(env)?, read: reads(), decoders: Some(&decoders), since: None, scan_all: false };
        let found = trace::trace(&env.kafka, store, request).await?;
        if done(&found) {
            return Ok(found);
        }
        last = Some(found);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    anyhow::bail!("trace of {id} never complete: {last:#?}")
}

/// Runs the `switchyard` binary (built by `cargo build --workspace --bins`,
/// as ops/scripts/test.sh does) against this env's topics and store.
async fn switchyard_cli(env: &TestEnv, args: &[&str]) -> Result<std::process::Output> {
    let topics = switchyard_localstack::repo_root().join("topics.yaml");
    let output = tokio::process::Command::new(switchyard_e2e::workspace_binary("switchyard")?)
        .args(args)
        .args(["--prefix", &env.prefix, "--brokers", &switchyard_localstack::brokers(), "--idle", "2s"])
        .args(["--database-url", &switchyard_localstack::database_url()])
        .arg("--topics-file")
        .arg(topics)
        .env("NO_COLOR", "1")
        .env("RUST_BACKTRACE", "0")
        .output()
        .await?;
    Ok(output)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replay_after_the_fix_pays_each_payout_once_even_when_run_twice() -> Result<()> {
    let env = TestEnv::new("dlq").await?;
    let mut down = stripe::StripeConfig::local();
    down.faults = FaultPlan { unavailable_ratio: 1.0, seed: 11, ..FaultPlan::default() };
    let vendor = stripe::spawn_stripe(down).await?;
    // Stripe only: with no secondary, 503s exhaust the retries and dead-letter.
    let mut config = env.worker_config(&vendor.base_url(), None, "stripe");
    config.max_retry_rounds = 1;
    config.retry = RetryPolicy { max_attempts: 2, base_delay_ms: 10, max_delay_ms: 20, max_in_place_wait_ms: 100, retry_topic_delay_ms: 200, ..RetryPolicy::default() };
    // Keep the breaker out of it: the replay must reach the vendor at once.
    config.routing.breaker = BreakerConfig { min_calls: 1_000_000, ..BreakerConfig::default() };
    let shutdown = CancellationToken::new();
    let worker = start_payout_worker(config, shutdown.clone()).await?;
    let producer = env.core_producer().await?;
    let ids: Vec<String> = (0..3).map(|i| format!("{}po-{i}", env.prefix)).collect();
    for (i, id) in ids.iter().enumerate() {
        producer.send(&command(id, &format!("{}key-{i}", env.prefix), 1000 + i as i64)).await?;
    }
    let dlq_topic = env.topic("payouts.commands.v1.dlq");
    let commands_topic = env.topic("payouts.commands.v1");
    switchyard_e2e::TopicReader::new(&env.kafka, &dlq_topic)?.collect(3, Duration::from_secs(60)).await?;
    ensure!(vendor.ledger().is_empty(), "the refusing vendor executed nothing");

    let store = Store::connect(&switchyard_localstack::database_url()).await?;
    let publisher = switchyard_bus::Publisher::new(&env.kafka)?;
    let shown = dlq::show(&env.kafka, Some(&store), &dlq_topic, &Selection::default(), reads()).await?;
    assert_eq!(shown.len(), 3);
    for m in &shown {
        assert_eq!(m.source_topic.as_deref(), Some(commands_topic.as_str()), "reported at the original position");
        assert_eq!(m.error_class.as_deref(), Some("manual_repair"));
        assert!(m.reason.as_deref().is_some_and(|r| r.contains("retries exhausted")), "{:?}", m.reason);
        assert_eq!(m.retry_attempts, Some(1), "it went through the retry topic once");
    }

    // The cause is fixed.
    vendor.set_faults(FaultPlan::default());

    // Dry run: says what it would do, publishes and records nothing.
    let dry = dlq::replay(&env.kafka, &publisher, &store, &dlq_topic, &replay_options(true), reads(), |_, _| {}).await?;
    assert_eq!(dry.items.len(), 3);
    assert!(dry.items.iter().all(|i| i.action == ReplayAction::WouldReplay { target: commands_topic.clone() }), "{:?}", dry.items);
    let (on_commands, _) = read_topic(&env.kafka, &commands_topic, reads(), |_| true).await?;
    assert_eq!(on_commands.len(), 3, "the dry run published nothing");
    assert!(store.replay_states(&dlq_topic).await?.is_empty(), "the dry run recorded nothing");
    assert!(vendor.ledger().is_empty(), "nothing executed after the dry run");

    // Real replay, then the same command again.
    let mut progress = Vec::new();
    let first = dlq::replay(&env.kafka, &publisher, &store, &dlq_topic, &replay_options(false), reads(), |done, total| progress.push((done, total))).await?;
    assert_eq!((first.replayed(), first.skipped(), first.failed()), (3, 0, 0), "{:?}", first.items);
    assert_eq!(progress.last(), Some(&(3, 3)));
    let reader = env.outcome_reader()?;
    let outcomes = env.collect_outcomes(&reader, 3, Duration::from_secs(30)).await?;
    assert!(outcomes.iter().all(|o| o.status == PayoutStatus::Submitted && !o.replayed), "{outcomes:?}");
    let second = dlq::replay(&env.kafka, &publisher, &store, &dlq_topic, &replay_options(false), reads(), |_, _| {}).await?;
    assert_eq!((second.replayed(), second.skipped()), (0, 3), "the second run skips what the first replayed");

    // The operator's CLI sees the same ledger: a third run replays nothing,
    // and a replay without any filter is refused.
    let refused = switchyard_cli(&env, &["dlq", "replay"]).await?;
    ensure!(!refused.status.success(), "replay without a filter must be refused");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--all"));
    let third = switchyard_cli(&env, &["dlq", "replay", "--all", "--json"]).await?;
    ensure!(third.status.success(), "{}", String::from_utf8_lossy(&third.stderr));
    let third: serde_json::Value = serde_json::from_slice(&third.stdout)?;
    let actions: Vec<&str> = third["items"].as_array().into_iter().flatten().filter_map(|i| i["action"]["action"].as_str()).collect();
    assert_eq!(actions, ["already_replayed"; 3], "{third}");
    let listed = switchyard_cli(&env, &["dlq", "list", "--json"]).await?;
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout)?;
    let ours = listed.as_array().into_iter().flatten().find(|t| t["topic"] == dlq_topic.as_str()).cloned().unwrap_or_default();
    assert_eq!((ours["depth"].as_u64(), ours["replayed"].as_u64()), (Some(3), Some(3)), "{listed}");

    // Give a wrongly repeated replay time to show up, then count everything.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let all = env.collect_outcomes(&env.outcome_reader()?, 3, Duration::from_secs(10)).await?;
    let (on_outcomes, _) = read_topic(&env.kafka, &env.topic("payouts.outcomes.v1"), reads(), |_| true).await?;
    assert_eq!(on_outcomes.len(), 3, "exactly one outcome per replayed command: {all:?}");
    let mut per_payout: HashMap<&str, usize> = HashMap::new();
    for o in &all {
        *per_payout.entry(o.payout_id.as_str()).or_default() += 1;
    }
    assert!(ids.iter().all(|id| per_payout.get(id.as_str()) == Some(&1)), "{per_payout:?}");
    let ledger = vendor.ledger();
    assert_eq!(ledger.len(), 3, "the vendor executed each payout once: {ledger:?}");
    let (on_commands, _) = read_topic(&env.kafka, &commands_topic, reads(), |_| true).await?;
    assert_eq!(on_commands.len(), 6, "3 originals + 3 replays, none from the second run");
    let mut copies: HashMap<&str, usize> = HashMap::new();
    for m in &on_commands {
        assert!(m.headers.iter().all(|(k, _)| !k.starts_with("retry-") && !k.starts_with("dlq-") && !k.starts_with("original-")), "{:?}", m.headers);
        *copies.entry(m.header("correlation-id").unwrap_or("none")).or_default() += 1;
    }
    assert!(copies.values().all(|n| *n == 2), "each replay kept its command's correlation id: {copies:?}");
    for id in &ids {
        let audit = store.audit_trail(&[id.as_str()]).await?;
        assert_eq!(audit.iter().filter(|a| a.actor == dlq::ACTOR && a.action == "dlq_replay").count(), 1, "one audit entry per replay of {id}");
    }

    // The whole story of one payout: the 503s, the dead letter, the replay, the outcome.
    let story = trace_until(&env, &store, &ids[0], |t| t.events.iter().any(|e| e.what == "vendor_call" && !e.failed)).await?;
    let whats: Vec<&str> = story.events.iter().map(|e| e.what.as_str()).collect();
    for expected in ["command", "route", "vendor_call", "retry", "dead_letter", "dlq_replay", "outcome"] {
        assert!(whats.contains(&expected), "{expected} missing from {whats:?}");
    }
    assert!(story.events.iter().any(|e| e.what == "vendor_call" && e.status.as_deref() == Some("503")), "{:#?}", story.events);

    shutdown.cancel();
    worker.join.await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trace_shows_the_failing_vendor_call_of_a_failed_payout() -> Result<()> {
    let env = TestEnv::new("trace").await?;
    let vendor = stripe::spawn_stripe(stripe::StripeConfig::local()).await?;
    let config = env.worker_config(&vendor.base_url(), None, "stripe");
    let shutdown = CancellationToken::new();
    let worker = start_payout_worker(config, shutdown.clone()).await?;
    let producer = env.core_producer().await?;
    let payout_id = format!("{}po-declined", env.prefix);
    let key = format!("{}key-declined", env.prefix);
    // The Stripe simulator refuses this amount with 400 balance_insufficient.
    producer.send(&command(&payout_id, &key, 40402)).await?;
    let outcome = env.collect_outcomes(&env.outcome_reader()?, 1, Duration::from_secs(30)).await?.remove(0);
    assert_eq!(outcome.status, PayoutStatus::Failed, "{outcome:?}");

    // What the webhook ingester and the reconciler would add to this flow.
    let publisher = switchyard_bus::Publisher::new(&env.kafka)?;
    let event = ProviderEvent {
        event_id: "evt_1".into(),
        provider: "stripe".into(),
        domain: "payouts".into(),
        subject_id: payout_id.clone(),
        provider_reference: "po_sim_1".into(),
        kind: ProviderEventKind::PayoutFailed,
        vendor_event_type: "payout.failed".into(),
        amount_minor: Some(40402),
        currency: Some("EUR".into()),
        reason: Some("insufficient_funds".into()),
        occurred_at_ms: switchyard_canonical::now_ms(),
        received_at_ms: switchyard_canonical::now_ms(),
        payload_sha256: "00".into(),
    };
    let discrepancy = Discrepancy {
        discrepancy_id: Discrepancy::id_for("payouts", DiscrepancyClass::UnexpectedPosting, &payout_id),
        class: DiscrepancyClass::UnexpectedPosting,
        domain: "payouts".into(),
        subject_id: payout_id.clone(),
        providers: vec!["stripe".into()],
        expected: "no posting".into(),
        actual: "debit 40402 EUR".into(),
        status: DiscrepancyStatus::Open,
        detected_at_ms: switchyard_canonical::now_ms(),
        resolved_at_ms: None,
    };
    let schemas = switchyard_localstack::repo_root().join("schemas");
    let register = |topic: String, schema: &'static str| {
        let (registry, path) = (env.registry_client.clone(), schemas.join(schema));
        async move { anyhow::Ok((switchyard_bus::AvroEncoder::register(&registry, &topic, &std::fs::read_to_string(path)?).await?, topic)) }
    };
    let (events, events_topic) = register(env.topic("payouts.provider-events.v1"), "events/ProviderEvent.v1.avsc").await?;
    let (recon, recon_topic) = register(env.topic("recon.discrepancies.v1"), "recon/Discrepancy.v1.avsc").await?;
    for (topic, payload) in [(events_topic, events.encode(&event)?), (recon_topic, recon.encode(&discrepancy)?)] {
        let record = switchyard_bus::Outbound { topic, key: Some(payout_id.clone().into_bytes()), payload, headers: Vec::new() };
        publisher.publish(&record).await?;
    }

    let store = Store::connect(&switchyard_localstack::database_url()).await?;
    let found = trace_until(&env, &store, &payout_id, |t| t.events.iter().any(|e| e.what == "vendor_call")).await?;
    let call = found.events.iter().find(|e| e.what == "vendor_call").expect("vendor call");
    assert!(call.failed, "{call:?}");
    assert_eq!(call.status.as_deref(), Some("400"));
    assert!(call.detail.starts_with("stripe create -> HTTP 400 in "), "{}", call.detail);
    assert!(call.detail.contains("vendor request req_"), "Stripe's Request-Id recorded: {}", call.detail);
    assert!(call.detail.contains("insufficient"), "{}", call.detail);
    let order: Vec<&str> = found.events.iter().map(|e| e.what.as_str()).collect();
    let at = |what: &str| order.iter().position(|w| *w == what);
    assert!(at("command") < at("route") && at("route") < at("vendor_call") && at("vendor_call") < at("outcome"), "time-ordered: {order:?}");
    let event_line = found.events.iter().find(|e| e.what == "provider_event").expect("provider event traced");
    assert_eq!(event_line.status.as_deref(), Some("payout_failed"));
    let recon_line = found.events.iter().find(|e| e.what == "discrepancy").expect("discrepancy traced");
    assert!(recon_line.failed && recon_line.detail.contains("unexpected_posting"), "{recon_line:?}");
    let final_line = found.events.iter().find(|e| e.what == "outcome").expect("outcome");
    assert_eq!(final_line.status.as_deref(), Some("FAILED"));
    assert!(final_line.failed);

    // The same flow by its correlation id.
    let by_correlation = trace_until(&env, &store, &format!("corr-{key}"), |t| t.events.len() == found.events.len()).await?;
    assert_eq!(by_correlation.subject_ids, vec![payout_id.clone()]);
    let table = switchyard_ops::view::trace(&by_correlation).render(false);
    assert!(table.contains("vendor_call") && table.contains("HTTP 400"), "{table}");

    shutdown.cancel();
    worker.join.await??;
    Ok(())
}
