//! Partner catalog limits: the worker paces calls to the catalog's rate
//! limit, honours a vendor's Retry-After, and routes around capability gaps.

use anyhow::Result;
use std::time::{Duration, Instant};
use switchyard_canonical::{ErrorCode, PayoutStatus};
use switchyard_e2e::{command, TestEnv};
use switchyard_simulators::{adyen, stripe, FaultPlan};
use switchyard_worker::start_payout_worker;
use tokio_util::sync::CancellationToken;

fn catalog_with(env: &TestEnv, from: &str, to: &str) -> Result<std::path::PathBuf> {
    let text = std::fs::read_to_string(switchyard_localstack::repo_root().join("ops/partners.yaml"))?;
    assert!(text.contains(from), "ops/partners.yaml changed; update this test");
    let path = std::env::temp_dir().join(format!("{}partners.yaml", env.prefix));
    std::fs::write(&path, text.replace(from, to))?;
    Ok(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_is_paced_to_the_catalog_rate_limit() -> Result<()> {
    let env = TestEnv::new("ratelimit").await?;
    let sim = stripe::spawn_stripe(stripe::StripeConfig::local()).await?;
    let mut config = env.worker_config(&sim.base_url(), None, "stripe");
    config.catalog_file = Some(catalog_with(&env, "per_second: 100, burst: 25", "per_second: 20, burst: 5")?);
    let shutdown = CancellationToken::new();
    let worker = start_payout_worker(config, shutdown.clone()).await?;
    let producer = env.core_producer().await?;
    let reader = env.outcome_reader()?;

    for i in 0..60 {
        producer.send(&command(&format!("{}po-{i}", env.prefix), &format!("{}key-{i}", env.prefix), 1000 + i)).await?;
    }
    env.collect_outcomes(&reader, 60, Duration::from_secs(60)).await?;
    let mut at: Vec<i64> = sim.ledger().iter().map(|p| p.executed_at_ms).collect();
    at.sort_unstable();
    assert_eq!(at.len(), 60);
    // Any one-second window holds at most rate + burst = 25 calls; 5 more
    // are allowed for scheduling jitter between taking a token and the
    // simulator recording the call on a loaded machine.
    for (i, start) in at.iter().enumerate() {
        let in_window = at[i..].iter().take_while(|t| **t < start + 1000).count();
        assert!(in_window <= 30, "{in_window} calls within one second of {start}");
    }
    assert!(at[59] - at[0] >= 2500, "55 calls beyond the burst take >= 2.75 s at 20/s, took {} ms", at[59] - at[0]);
    shutdown.cancel();
    worker.join.await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retry_after_is_honoured() -> Result<()> {
    let env = TestEnv::new("retryafter").await?;
    let mut sim_config = stripe::StripeConfig::local();
    sim_config.faults = FaultPlan { rate_limit_ratio: 1.0, retry_after_secs: 1, ..FaultPlan::default() };
    let sim = stripe::spawn_stripe(sim_config).await?;
    let shutdown = CancellationToken::new();
    let worker = start_payout_worker(env.worker_config(&sim.base_url(), None, "stripe"), shutdown.clone()).await?;
    let producer = env.core_producer().await?;
    let reader = env.outcome_reader()?;

    let started = Instant::now();
    producer.send(&command(&format!("{}po", env.prefix), &format!("{}key", env.prefix), 1234)).await?;
    while sim.stats().requests == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sim.set_faults(FaultPlan::default());
    let outcome = env.collect_outcomes(&reader, 1, Duration::from_secs(30)).await?.remove(0);
    assert_eq!(outcome.status, PayoutStatus::Submitted);
    assert!(started.elapsed() >= Duration::from_secs(1), "waited the vendor's Retry-After");
    // The first call (registering the beneficiary) met the 429; after the
    // wait, the registration and the payout: no hammering in between.
    assert_eq!(sim.stats().requests, 3, "one 429, then two calls after the wait; no hammering");
    shutdown.cancel();
    worker.join.await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn capability_gaps_in_the_catalog_steer_payouts() -> Result<()> {
    let env = TestEnv::new("capability").await?;
    let stripe_sim = stripe::spawn_stripe(stripe::StripeConfig::local()).await?;
    let adyen_sim = adyen::spawn_adyen(adyen::AdyenConfig::local()).await?;
    let mut config = env.worker_config(&stripe_sim.base_url(), Some(&adyen_sim.base_url()), "adyen");
    config.catalog_file = Some(switchyard_localstack::repo_root().join("ops/partners.yaml"));
    let shutdown = CancellationToken::new();
    let worker = start_payout_worker(config, shutdown.clone()).await?;
    let producer = env.core_producer().await?;
    let reader = env.outcome_reader()?;

    let mut usd = command(&format!("{}po-usd", env.prefix), &format!("{}key-usd", env.prefix), 500);
    usd.currency = "USD".into();
    producer.send(&usd).await?;
    let first = env.collect_outcomes(&reader, 1, Duration::from_secs(30)).await?.remove(0);
    assert_eq!(first.provider.as_deref(), Some("stripe"), "adyen lists no USD, so the secondary takes it");
    let mut jpy = command(&format!("{}po-jpy", env.prefix), &format!("{}key-jpy", env.prefix), 500);
    jpy.currency = "JPY".into();
    producer.send(&jpy).await?;
    let second = env.collect_outcomes(&reader, 1, Duration::from_secs(30)).await?.remove(0);
    assert_eq!(second.status, PayoutStatus::Rejected);
    assert_eq!(second.error.map(|e| e.code), Some(ErrorCode::InvalidRequest));
    assert!(adyen_sim.ledger().is_empty());
    shutdown.cancel();
    worker.join.await??;
    Ok(())
}
