//! Percentage rollouts and shadow mode.

use anyhow::Result;
use std::time::Duration;
use switchyard_canonical::PayoutStatus;
use switchyard_e2e::{command, TestEnv};
use switchyard_routing::Rollout;
use switchyard_simulators::{adyen, stripe};
use switchyard_worker::{start_payout_worker, ProviderConfig, ProviderKind, SecretSource};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ten_percent_rollout_sends_about_ten_percent_to_the_candidate() -> Result<()> {
    let env = TestEnv::new("split").await?;
    let live = stripe::spawn_stripe(stripe::StripeConfig::local()).await?;
    let candidate = adyen::spawn_adyen(adyen::AdyenConfig::local()).await?;
    let mut config = env.worker_config(&live.base_url(), Some(&candidate.base_url()), "stripe");
    config.routing.secondary = None;
    config.routing.rollout = Some(Rollout { candidate: "adyen".into(), percent: 10.0 });
    let shutdown = CancellationToken::new();
    let worker = start_payout_worker(config, shutdown.clone()).await?;
    let producer = env.core_producer().await?;
    let reader = env.outcome_reader()?;

    for i in 0..2000 {
        producer.send(&command(&format!("{}po-{i}", env.prefix), &format!("{}key-{i}", env.prefix), 1000 + i % 1000)).await?;
    }
    // One answer per payout id: a payout may be answered more than once (a
    // re-delivery after a rebalance on a loaded machine is answered again,
    // README "Known cost"), and counting answers then counted one candidate
    // payout twice (195 answers from adyen, 194 movements in its ledger).
    // Its answers must agree on the provider, or it moved money twice.
    let mut provider_of: std::collections::HashMap<String, Option<String>> = std::collections::HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while provider_of.len() < 2000 {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        for o in env.collect_outcomes(&reader, 2000 - provider_of.len(), left).await? {
            if let Some(earlier) = provider_of.insert(o.payout_id.clone(), o.provider.clone()) {
                assert_eq!(earlier, o.provider, "{} answered by two providers", o.payout_id);
            }
        }
    }
    let to_candidate = provider_of.values().filter(|p| p.as_deref() == Some("adyen")).count();
    // Binomial(2000, 0.1) has a standard deviation of 13.4; 3 points is 4.5 of them.
    assert!((140..=260).contains(&to_candidate), "10 % +/- 3 points of 2,000, got {to_candidate}");
    assert_eq!(candidate.ledger().len(), to_candidate);
    assert_eq!(live.ledger().len(), 2000 - to_candidate);
    shutdown.cancel();
    worker.join.await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shadow_mode_compares_against_a_sandbox_and_never_changes_an_outcome() -> Result<()> {
    let env = TestEnv::new("shadow").await?;
    let live = stripe::spawn_stripe(stripe::StripeConfig::local()).await?;
    let sandbox = adyen::spawn_adyen(adyen::AdyenConfig::local()).await?;
    let mut config = env.worker_config(&live.base_url(), None, "stripe");
    config.providers.push(ProviderConfig {
        name: "adyen-sandbox".into(),
        kind: ProviderKind::Adyen,
        base_url: sandbox.base_url(),
        api_key: SecretSource::inline("adyen_test_switchyard"),
        balance_account_id: Some("BA00000000000000000000001".into()),
        connected_account: None,
        key_retention_ms: None,
        timeout_ms: 2000,
        max_concurrency: 64,
        // The shadow candidate keeps HTTP/1 so both transports stay exercised.
        http2_prior_knowledge: false,
        sandbox_only: true,
        tls: None,
        truelayer: None,
    });
    config.routing.shadow = Some("adyen-sandbox".into());
    let shutdown = CancellationToken::new();
    let worker = start_payout_worker(config.clone(), shutdown.clone()).await?;
    let producer = env.core_producer().await?;
    let reader = env.outcome_reader()?;

    // Every fifth payout is one both vendors decline for insufficient funds.
    for i in 0..50 {
        let amount = if i % 5 == 0 { 40402 } else { 1000 + i };
        producer.send(&command(&format!("{}po-{i}", env.prefix), &format!("{}key-{i}", env.prefix), amount)).await?;
    }
    let outcomes = env.collect_outcomes(&reader, 50, Duration::from_secs(60)).await?;
    for o in &outcomes {
        assert_eq!(o.provider.as_deref(), Some("stripe"), "the shadow never answers");
        let expected = if o.amount_minor == 40402 { PayoutStatus::Failed } else { PayoutStatus::Submitted };
        assert_eq!(o.status, expected);
    }
    let agreed = "switchyard_shadow_comparisons_total{domain=\"payouts\",candidate=\"adyen-sandbox\",result=\"agree\"} 50";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !worker.metrics.render().contains(agreed) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(worker.metrics.render().contains(agreed), "{}", worker.metrics.render());
    assert_eq!(live.ledger().len(), 40, "live executed the 40 fundable payouts");
    assert_eq!(sandbox.ledger().len(), 40, "the sandbox saw the same calls, in its own books");

    // A shadow provider that could move money is refused at start-up.
    let mut unsafe_config = config;
    if let Some(p) = unsafe_config.providers.last_mut() {
        p.sandbox_only = false;
    }
    let refused = start_payout_worker(unsafe_config, CancellationToken::new()).await;
    assert!(refused.is_err_and(|e| e.to_string().contains("routing.shadow")));
    shutdown.cancel();
    worker.join.await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_policy_change_applies_without_a_restart_and_is_audited() -> Result<()> {
    let env = TestEnv::new("reload").await?;
    let stripe_sim = stripe::spawn_stripe(stripe::StripeConfig::local()).await?;
    let adyen_sim = adyen::spawn_adyen(adyen::AdyenConfig::local()).await?;
    let config = env.worker_config(&stripe_sim.base_url(), Some(&adyen_sim.base_url()), "stripe");
    let mut next = config.routing.clone();
    let shutdown = CancellationToken::new();
    let worker = start_payout_worker(config, shutdown.clone()).await?;
    let producer = env.core_producer().await?;
    let reader = env.outcome_reader()?;

    producer.send(&command(&format!("{}po-1", env.prefix), &format!("{}key-1", env.prefix), 1001)).await?;
    let before = env.collect_outcomes(&reader, 1, Duration::from_secs(30)).await?.remove(0);
    assert_eq!(before.provider.as_deref(), Some("stripe"));

    next.primary = "adyen".into();
    next.secondary = Some("stripe".into());
    let audited_before = worker.store.audit_count("payouts").await?;
    assert!(worker.routing.apply(next.clone(), &worker.store, "test").await.map_err(anyhow::Error::msg)?);
    assert!(!worker.routing.apply(next, &worker.store, "test").await.map_err(anyhow::Error::msg)?, "no-op change");
    let mut unknown = worker.routing.get().policy().clone();
    unknown.primary = "wise".into();
    assert!(worker.routing.apply(unknown, &worker.store, "test").await.is_err(), "unknown providers refused");

    producer.send(&command(&format!("{}po-2", env.prefix), &format!("{}key-2", env.prefix), 1002)).await?;
    let after = env.collect_outcomes(&reader, 1, Duration::from_secs(30)).await?.remove(0);
    assert_eq!(after.provider.as_deref(), Some("adyen"), "new payouts follow the new policy");
    assert_eq!(worker.store.audit_count("payouts").await? - audited_before, 1, "the one change is in the audit log");
    shutdown.cancel();
    worker.join.await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn switching_the_domain_off_holds_commands_and_switching_it_on_releases_them() -> Result<()> {
    let env = TestEnv::new("off").await?;
    let sim = stripe::spawn_stripe(stripe::StripeConfig::local()).await?;
    let mut config = env.worker_config(&sim.base_url(), None, "stripe");
    config.routing.mode = switchyard_routing::DomainMode::Off;
    let mut on = config.routing.clone();
    on.mode = switchyard_routing::DomainMode::On;
    let shutdown = CancellationToken::new();
    let worker = start_payout_worker(config, shutdown.clone()).await?;
    let producer = env.core_producer().await?;
    let reader = env.outcome_reader()?;

    for i in 0..5 {
        producer.send(&command(&format!("{}po-{i}", env.prefix), &format!("{}key-{i}", env.prefix), 1000 + i)).await?;
    }
    let held = env.collect_outcomes(&reader, 5, Duration::from_secs(30)).await?;
    assert!(held.iter().all(|o| o.status == PayoutStatus::Held), "{:?}", held.first());
    assert!(held.iter().all(|o| o.error.as_ref().map(|e| e.code) == Some(switchyard_canonical::ErrorCode::DomainOff)));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(sim.ledger().is_empty(), "nothing reaches the vendor while off");

    let mut off = on.clone();
    off.mode = switchyard_routing::DomainMode::Off;
    assert!(worker.routing.apply(on, &worker.store, "test").await.map_err(anyhow::Error::msg)?);
    let released = env.collect_outcomes(&reader, 5, Duration::from_secs(60)).await?;
    assert!(released.iter().all(|o| o.status == PayoutStatus::Submitted), "{:?}", released.first());
    let keys: std::collections::HashSet<_> = sim.ledger().into_iter().map(|p| p.idempotency_key).collect();
    assert_eq!(keys.len(), 5, "every held command ran once after release");

    // Off again: a duplicate of a finished payout is still answered from the store.
    assert!(worker.routing.apply(off, &worker.store, "test").await.map_err(anyhow::Error::msg)?);
    producer.send(&command(&format!("{}po-0", env.prefix), &format!("{}key-0", env.prefix), 1000)).await?;
    let duplicate = env.collect_outcomes(&reader, 1, Duration::from_secs(30)).await?.remove(0);
    assert_eq!((duplicate.status, duplicate.replayed), (PayoutStatus::Submitted, true));
    shutdown.cancel();
    worker.join.await??;
    Ok(())
}
