//! The failover rule: a definite refusal moves payouts to the secondary and
//! opens the primary's breaker; an ambiguous one never does, so no payout is
//! executed at both vendors.

use anyhow::Result;
use std::collections::HashSet;
use std::time::Duration;
use switchyard_canonical::PayoutStatus;
use switchyard_e2e::{command, TestEnv};
use switchyard_routing::BreakerConfig;
use switchyard_simulators::{adyen, stripe, FaultPlan};
use switchyard_worker::start_payout_worker;
use tokio_util::sync::CancellationToken;

fn metric(text: &str, prefix: &str) -> f64 {
    text.lines().filter(|l| l.starts_with(prefix)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_primary_refusing_with_503_fails_over_opens_its_breaker_and_recovers() -> Result<()> {
    let env = TestEnv::new("failover").await?;
    let mut down = stripe::StripeConfig::local();
    down.faults = FaultPlan { unavailable_ratio: 1.0, seed: 3, ..FaultPlan::default() };
    let primary = stripe::spawn_stripe(down).await?;
    let secondary = adyen::spawn_adyen(adyen::AdyenConfig::local()).await?;
    let mut config = env.worker_config(&primary.base_url(), Some(&secondary.base_url()), "stripe");
    // A cool-down longer than a slow machine takes for the second wave, so
    // the breaker is still open while it runs (each expiry would let a probe
    // through to the primary).
    config.routing.breaker = BreakerConfig { window_ms: 30_000, min_calls: 5, failure_ratio: 0.5, open_ms: 10_000 };
    let shutdown = CancellationToken::new();
    let worker = start_payout_worker(config, shutdown.clone()).await?;
    let producer = env.core_producer().await?;
    let reader = env.outcome_reader()?;
    let send = |i: i64| command(&format!("{}po-{i}", env.prefix), &format!("{}key-{i}", env.prefix), 1000 + i);

    // First wave: every payout fails over, and the failures open the breaker.
    for i in 0..20 {
        producer.send(&send(i)).await?;
    }
    let mut outcomes = env.collect_outcomes(&reader, 20, Duration::from_secs(60)).await?;
    let calls_after_first_wave = primary.stats().requests;
    // Second wave, while the breaker is open: straight to the secondary.
    for i in 20..100 {
        producer.send(&send(i)).await?;
    }
    outcomes.extend(env.collect_outcomes(&reader, 80, Duration::from_secs(60)).await?);
    assert!(outcomes.iter().all(|o| o.provider.as_deref() == Some("adyen") && o.status == PayoutStatus::Submitted), "{:?}", outcomes.first());
    assert!(primary.ledger().is_empty(), "the refusing primary executed nothing");
    let keys: HashSet<_> = secondary.ledger().into_iter().map(|p| p.idempotency_key).collect();
    assert_eq!(keys.len(), 100, "each payout executed once, at the secondary");
    let metrics = worker.metrics.render();
    // Open (1), or half-open (2) if this machine took longer than the cool-down.
    assert_ne!(metric(&metrics, "switchyard_circuit_state{domain=\"payouts\",provider=\"stripe\"}"), 0.0, "breaker not closed");
    let spared = primary.stats().requests - calls_after_first_wave;
    assert!(spared <= 2, "the open breaker spared the primary: {spared} calls in the second wave");
    assert!(worker.store.audit_count(&format!("{}po-0", env.prefix)).await? >= 1, "failover audited");
    let events = switchyard_e2e::TopicReader::new(&env.kafka, &env.topic("routing.circuit-events.v1"))?;
    let opened = events.collect(1, Duration::from_secs(30)).await?.remove(0);
    assert_eq!(opened.key, b"stripe");
    let decoder = switchyard_bus::AvroDecoder::new(env.registry_client.clone(), switchyard_worker::run::CIRCUIT_EVENT_SCHEMA)?;
    let event: switchyard_canonical::routing::CircuitStateChanged = decoder.decode(&opened.payload).await?;
    assert_eq!(event.state, switchyard_canonical::routing::CircuitState::Open, "the opening was announced on the bus");

    // The primary recovers; after the cool-down a probe closes the breaker
    // and new payouts go to the primary again.
    primary.set_faults(FaultPlan::default());
    tokio::time::sleep(Duration::from_millis(10_100)).await;
    for i in 100..110 {
        producer.send(&send(i)).await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let later = env.collect_outcomes(&reader, 10, Duration::from_secs(30)).await?;
    assert!(later.iter().any(|o| o.provider.as_deref() == Some("stripe")), "traffic is back on the primary");
    assert_eq!(metric(&worker.metrics.render(), "switchyard_circuit_state{domain=\"payouts\",provider=\"stripe\"}"), 0.0, "breaker closed");
    shutdown.cancel();
    worker.join.await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_primary_timing_out_after_accepting_never_sends_a_payout_to_the_secondary() -> Result<()> {
    let env = TestEnv::new("nodrift").await?;
    let mut hanging = stripe::StripeConfig::local();
    hanging.faults = FaultPlan { hang_after_accept_ratio: 1.0, hang_ms: 3000, seed: 5, ..FaultPlan::default() };
    let primary = stripe::spawn_stripe(hanging).await?;
    let secondary = adyen::spawn_adyen(adyen::AdyenConfig::local()).await?;
    let mut config = env.worker_config(&primary.base_url(), Some(&secondary.base_url()), "stripe");
    config.providers[0].timeout_ms = 300;
    // Keep the breaker out of it: an open breaker may rightly send *new*
    // payouts to the secondary, which is not what this test is about.
    config.routing.breaker = BreakerConfig { min_calls: 1_000_000, ..BreakerConfig::default() };
    let shutdown = CancellationToken::new();
    let worker = start_payout_worker(config, shutdown.clone()).await?;
    let producer = env.core_producer().await?;
    let reader = env.outcome_reader()?;

    for i in 0..20 {
        producer.send(&command(&format!("{}po-{i}", env.prefix), &format!("{}key-{i}", env.prefix), 2000 + i)).await?;
    }
    let outcomes = env.collect_outcomes(&reader, 20, Duration::from_secs(60)).await?;
    assert!(secondary.ledger().is_empty(), "not one ambiguous payout went to the secondary");
    let executed: Vec<String> = primary.ledger().into_iter().map(|p| p.idempotency_key).collect();
    let unique: HashSet<_> = executed.iter().collect();
    assert_eq!(unique.len(), executed.len(), "no payout executed twice at the primary");
    for o in &outcomes {
        assert_eq!(o.provider.as_deref(), Some("stripe"));
        assert!(matches!(o.status, PayoutStatus::Submitted | PayoutStatus::PendingUnknown), "{o:?}");
    }
    shutdown.cancel();
    worker.join.await??;
    Ok(())
}
