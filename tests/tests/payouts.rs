//! The payout walking skeleton end to end: real broker (tansu or Kafka), real
//! PostgreSQL, simulated vendors over HTTP, the worker in-process (or as a
//! separate process where it gets killed).

use anyhow::Result;
use rand::seq::SliceRandom;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use switchyard_canonical::{ErrorCode, PayoutStatus};
use switchyard_e2e::{command, TestEnv};
use switchyard_simulators::{adyen, stripe, FaultPlan, MoneyOracle};
use switchyard_worker::start_payout_worker;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_commands_over_200_payouts_move_each_payouts_money_once() -> Result<()> {
    let env = TestEnv::new("dupes").await?;
    let oracle = MoneyOracle::new();
    let sim = stripe::spawn_stripe(stripe::StripeConfig { oracle: oracle.clone(), ..stripe::StripeConfig::local() }).await?;
    let shutdown = CancellationToken::new();
    let worker = start_payout_worker(env.worker_config(&sim.base_url(), None, "stripe"), shutdown.clone()).await?;
    let producer = env.core_producer().await?;
    let reader = env.outcome_reader()?;

    // 200 payouts, each delivered five times, duplicates interleaved at random.
    let mut sends: Vec<usize> = (0..200).flat_map(|i| std::iter::repeat_n(i, 5)).collect();
    sends.shuffle(&mut rand::rng());
    let run = &env.prefix;
    for &i in &sends {
        producer.send(&command(&format!("{run}po-{i}"), &format!("{run}key-{i}"), 1000 + i as i64)).await?;
    }
    let outcomes = env.collect_outcomes(&reader, 1000, Duration::from_secs(90)).await?;

    let commands: Vec<_> = (0..200).map(|i| command(&format!("{run}po-{i}"), &format!("{run}key-{i}"), 1000 + i as i64)).collect();
    switchyard_e2e::money::assert_paid_exactly_once(&oracle, &commands);

    let mut by_key: HashMap<&str, Vec<&switchyard_canonical::PayoutOutcome>> = HashMap::new();
    for o in &outcomes {
        by_key.entry(o.idempotency_key.as_str()).or_default().push(o);
    }
    assert_eq!(by_key.len(), 200);
    for (key, list) in &by_key {
        assert_eq!(list.len(), 5, "one outcome per delivered command for {key}");
        let refs: HashSet<_> = list.iter().map(|o| o.provider_reference.clone()).collect();
        assert_eq!(refs.len(), 1, "duplicates report the same vendor payout");
        assert_eq!(list.iter().filter(|o| !o.replayed).count(), 1, "exactly one answer came from the vendor");
        assert!(list.iter().all(|o| o.status == PayoutStatus::Submitted));
    }
    // One request per payout, plus one registering the (shared) beneficiary
    // as a bank account on the connected account.
    assert_eq!(sim.stats().requests, 200 + 1, "duplicates never reached the vendor");
    shutdown.cancel();
    worker.join.await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn same_key_with_another_amount_is_a_collision_without_vendor_call() -> Result<()> {
    let env = TestEnv::new("collide").await?;
    let sim = stripe::spawn_stripe(stripe::StripeConfig::local()).await?;
    let shutdown = CancellationToken::new();
    let worker = start_payout_worker(env.worker_config(&sim.base_url(), None, "stripe"), shutdown.clone()).await?;
    let producer = env.core_producer().await?;
    let reader = env.outcome_reader()?;
    let key = format!("{}key", env.prefix);
    let id = format!("{}po", env.prefix);

    producer.send(&command(&id, &key, 5000)).await?;
    let first = env.collect_outcomes(&reader, 1, Duration::from_secs(30)).await?;
    assert_eq!(first[0].status, PayoutStatus::Submitted);
    producer.send(&command(&id, &key, 5001)).await?;
    let second = env.collect_outcomes(&reader, 1, Duration::from_secs(30)).await?;
    assert_eq!(second[0].status, PayoutStatus::Rejected);
    assert_eq!(second[0].error.as_ref().map(|e| e.code), Some(ErrorCode::IdempotencyCollision));
    assert_eq!(second[0].amount_minor, 5001);
    assert_eq!(sim.stats().requests, 2, "beneficiary + payout; the colliding command never reached the vendor");
    assert_eq!(sim.ledger().len(), 1);
    let metrics = worker.metrics.render();
    assert!(metrics.contains("switchyard_idempotency_collisions_total{domain=\"payouts\"} 1"), "{metrics}");
    shutdown.cancel();
    worker.join.await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn undecodable_bytes_and_unknown_schema_ids_are_dead_lettered_and_the_worker_goes_on() -> Result<()> {
    let env = TestEnv::new("dlq").await?;
    let sim = adyen::spawn_adyen(adyen::AdyenConfig::local()).await?;
    let shutdown = CancellationToken::new();
    let config = env.worker_config("http://127.0.0.1:9", Some(&sim.base_url()), "adyen");
    let worker = start_payout_worker(config, shutdown.clone()).await?;
    let producer = env.core_producer().await?;
    let outcomes = env.outcome_reader()?;
    let dlq = switchyard_e2e::TopicReader::new(&env.kafka, &env.topic("payouts.commands.v1.dlq"))?;

    producer.send_raw(b"bad-1", b"{\"not\":\"avro\"}".to_vec(), "k-bad-1").await?;
    producer.send_raw(b"bad-2", switchyard_bus::wire::frame(987_654, b"\x02xx"), "k-bad-2").await?;
    let good = command(&format!("{}po-good", env.prefix), &format!("{}key-good", env.prefix), 777);
    producer.send(&good).await?;

    let dead = dlq.collect(2, Duration::from_secs(30)).await?;
    let reasons: Vec<&str> = dead.iter().map(|r| r.headers.get("dlq-reason").map(String::as_str).unwrap_or("")).collect();
    assert!(reasons.iter().any(|r| r.contains("magic byte")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("unknown schema id 987654")), "{reasons:?}");
    for record in &dead {
        assert_eq!(record.headers.get("dlq-error-class").map(String::as_str), Some("manual_repair"));
        assert!(record.headers.contains_key("dlq-source-offset"));
    }
    assert_eq!(dead.iter().find(|r| r.key == b"bad-1").map(|r| r.payload.clone()), Some(b"{\"not\":\"avro\"}".to_vec()), "original bytes kept");
    let answered = env.collect_outcomes(&outcomes, 1, Duration::from_secs(30)).await?;
    assert_eq!(answered[0].payout_id, good.payout_id);
    assert_eq!(answered[0].provider.as_deref(), Some("adyen"));
    shutdown.cancel();
    worker.join.await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_timeout_after_acceptance_is_resolved_by_status_query_not_a_second_payout() -> Result<()> {
    let env = TestEnv::new("ambiguous").await?;
    let mut sim_config = stripe::StripeConfig::local();
    sim_config.faults = FaultPlan { hang_after_accept_ratio: 1.0, hang_ms: 4000, seed: 7, ..FaultPlan::default() };
    let sim = stripe::spawn_stripe(sim_config).await?;
    let shutdown = CancellationToken::new();
    let mut config = env.worker_config(&sim.base_url(), None, "stripe");
    config.providers[0].timeout_ms = 500;
    let worker = start_payout_worker(config, shutdown.clone()).await?;
    let producer = env.core_producer().await?;
    let reader = env.outcome_reader()?;

    let cmd = command(&format!("{}po", env.prefix), &format!("{}key", env.prefix), 4321);
    producer.send(&cmd).await?;
    let outcome = env.collect_outcomes(&reader, 1, Duration::from_secs(30)).await?.remove(0);
    assert_eq!(outcome.status, PayoutStatus::Submitted, "{outcome:?}");
    assert!(outcome.attempts >= 2, "the timeout was followed by a status query: {outcome:?}");
    assert_eq!(sim.ledger().len(), 1, "executed exactly once");
    assert_eq!(outcome.provider_reference.as_deref(), Some(sim.ledger()[0].vendor_id.as_str()));
    assert!(sim.stats().idempotent_replays >= 1, "the query reused the original key");
    shutdown.cancel();
    worker.join.await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_vendor_that_keeps_refusing_moves_the_command_through_the_retry_topic_to_the_dlq() -> Result<()> {
    let env = TestEnv::new("retry").await?;
    let mut sim_config = stripe::StripeConfig::local();
    // 429 is a definite refusal: safe to retry, never ambiguous.
    sim_config.faults = FaultPlan { rate_limit_ratio: 1.0, retry_after_secs: 0, seed: 1, ..FaultPlan::default() };
    let sim = stripe::spawn_stripe(sim_config).await?;
    let shutdown = CancellationToken::new();
    let config = env.worker_config(&sim.base_url(), None, "stripe");
    let (rounds, attempts) = (config.max_retry_rounds, config.retry.max_attempts);
    let worker = start_payout_worker(config, shutdown.clone()).await?;
    let producer = env.core_producer().await?;
    let dlq = switchyard_e2e::TopicReader::new(&env.kafka, &env.topic("payouts.commands.v1.dlq"))?;
    let retries = switchyard_e2e::TopicReader::new(&env.kafka, &env.topic("payouts.commands.v1.retry"))?;

    producer.send(&command(&format!("{}po", env.prefix), &format!("{}key", env.prefix), 1234)).await?;
    let dead = dlq.collect(1, Duration::from_secs(60)).await?.remove(0);
    let reason = dead.headers.get("dlq-reason").cloned().unwrap_or_default();
    assert!(reason.contains("retries exhausted"), "{reason}");
    assert_eq!(dead.headers.get("dlq-source-topic"), Some(&env.topic("payouts.commands.v1")));
    assert_eq!(dead.headers.get("dlq-source-offset").map(String::as_str), Some("0"), "reported at its original offset");
    let trips = retries.read_up_to(100, Duration::from_secs(2)).await?;
    assert_eq!(trips.len() as u32, rounds, "one trip through the retry topic per round");
    assert!(trips.iter().all(|t| t.headers.contains_key("retry-not-before")));
    assert_eq!(sim.stats().requests, u64::from(attempts * (rounds + 1)), "bounded in-place attempts per round");
    assert!(sim.ledger().is_empty());
    shutdown.cancel();
    worker.join.await??;
    Ok(())
}
