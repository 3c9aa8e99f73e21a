//! Two deliveries of one payout overlapping at the vendor, staged exactly.
//! The randomized money test finds such interleavings by chance; these two
//! pin down the ones that paid twice before (issue "A payout moves money at
//! most once"), counted by the money oracle.

use anyhow::Result;
use std::time::Duration;
use switchyard_canonical::{PayoutCommand, PayoutStatus};
use switchyard_e2e::money::{paid_exactly_once, payout_claim};
use switchyard_e2e::{command, TestEnv};
use switchyard_simulators::{adyen, stripe, FaultPlan, MoneyOracle, SimulatorHandle};
use switchyard_worker::{start_payout_worker, PayoutWorkerConfig};
use tokio_util::sync::CancellationToken;

struct Stage {
    env: TestEnv,
    oracle: MoneyOracle,
    stripe: SimulatorHandle,
    adyen: SimulatorHandle,
    config: PayoutWorkerConfig,
}

async fn stage(name: &str) -> Result<Stage> {
    let env = TestEnv::new(name).await?;
    let oracle = MoneyOracle::new();
    let stripe = stripe::spawn_stripe(stripe::StripeConfig { oracle: oracle.clone(), ..stripe::StripeConfig::local() }).await?;
    let adyen = adyen::spawn_adyen(adyen::AdyenConfig { oracle: oracle.clone(), ..adyen::AdyenConfig::local() }).await?;
    let mut config = env.worker_config(&stripe.base_url(), Some(&adyen.base_url()), "stripe");
    for p in &mut config.providers {
        // Long enough that a slow vendor answers instead of timing out.
        p.timeout_ms = 10_000;
    }
    Ok(Stage { env, oracle, stripe, adyen, config })
}

fn ctx() -> switchyard_adapters::CallContext {
    switchyard_adapters::CallContext { correlation_id: "test".into(), traceparent: switchyard_canonical::TraceParent::new_root().to_string() }
}

fn stripe_adapter(stage: &Stage) -> Result<switchyard_adapters::payouts::PayoutProvider> {
    let transport = switchyard_adapters::http::Transport::new(Duration::from_secs(10), 4);
    let key = switchyard_adapters::Secret::new("sk_test_switchyard");
    let adapter = switchyard_adapters::payouts::stripe::StripeAdapter::new(
        "stripe",
        &stage.stripe.base_url(),
        key,
        switchyard_localstack::STRIPE_CONNECTED_ACCOUNT,
        transport,
    )?;
    Ok(switchyard_adapters::payouts::PayoutProvider::Stripe(adapter))
}

/// A running worker that has paid `warm` already, so its adapter has the
/// (shared) beneficiary registered and the next payout is one vendor call.
struct Warm {
    worker: switchyard_worker::RunningWorker,
    shutdown: CancellationToken,
    reader: switchyard_e2e::TopicReader,
    warm: PayoutCommand,
}

async fn warm_worker(stage: &Stage) -> Result<Warm> {
    let shutdown = CancellationToken::new();
    let worker = start_payout_worker(stage.config.clone(), shutdown.clone()).await?;
    let reader = stage.env.outcome_reader()?;
    let run = &stage.env.prefix;
    let warm = command(&format!("{run}po-warm"), &format!("{run}key-warm"), 100);
    stage.env.core_producer().await?.send(&warm).await?;
    let first = stage.env.collect_outcomes(&reader, 1, Duration::from_secs(30)).await?;
    anyhow::ensure!(first[0].status == PayoutStatus::Submitted, "warm-up payout: {:?}", first[0]);
    Ok(Warm { worker, shutdown, reader, warm })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_409_while_another_request_with_the_key_executes_never_fails_over() -> Result<()> {
    let stage = stage("overlap409").await?;
    let Warm { worker, shutdown, reader, warm } = warm_worker(&stage).await?;
    let run = &stage.env.prefix;

    // Another request under the payout's key is executing at Stripe (an
    // earlier delivery's call): Stripe takes 3 s before it pays.
    let cmd = command(&format!("{run}po-1"), &format!("{run}key-1"), 4242);
    let adapter = stripe_adapter(&stage)?;
    adapter.create(&warm, &warm.idempotency_key, &ctx()).await?; // registers the beneficiary for this adapter too
    stage.stripe.set_faults(FaultPlan { latency_ms: 3000, ..FaultPlan::default() });
    let earlier = {
        let (adapter, cmd) = (adapter.clone(), cmd.clone());
        tokio::spawn(async move { adapter.create(&cmd, &cmd.idempotency_key, &ctx()).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Now the command arrives: the worker's claim is fresh, and Stripe
    // answers its call with 409 (the key is in flight).
    stage.env.core_producer().await?.send(&cmd).await?;
    let outcome = stage.env.collect_outcomes(&reader, 1, Duration::from_secs(60)).await?.remove(0);
    earlier.await??;
    stage.stripe.set_faults(FaultPlan::default());

    let violations = paid_exactly_once(&stage.oracle, &[warm, cmd]);
    assert!(violations.is_empty(), "{violations:?}; worker said {outcome:?}");
    assert_ne!(outcome.provider.as_deref(), Some("adyen"), "a payout in flight at Stripe never goes to Adyen: {outcome:?}");
    assert!(stage.adyen.ledger().is_empty());
    shutdown.cancel();
    worker.join.await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delivery_that_finds_a_live_lease_calls_no_one_while_the_holder_fails_over() -> Result<()> {
    use switchyard_store::{Claim, Completion, Store};
    let stage = stage("overlaplease").await?;
    let Warm { worker, shutdown, reader, warm } = warm_worker(&stage).await?;
    let run = &stage.env.prefix;

    // Delivery A (played by the test) created the claim for Stripe and holds
    // its lease; Stripe is slow from now on.
    let cmd = command(&format!("{run}po-1"), &format!("{run}key-1"), 4343);
    let store = Store::connect(&stage.config.database_url).await?;
    let claim = payout_claim(&cmd, "stripe", "delivery-a", 60_000);
    let record = store.claim(claim.clone()).await?;
    assert!(record.fresh);
    stage.stripe.set_faults(FaultPlan { latency_ms: 3000, ..FaultPlan::default() });

    // Delivery B (the worker: a rebalance redelivered the command) arrives
    // while A still works on it.
    stage.env.core_producer().await?.send(&cmd).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A met a definite refusal at Stripe and fails over, fenced on its lease.
    assert!(store.reroute("payouts", &cmd.idempotency_key, "stripe", "adyen", &cmd.idempotency_key, record.lease_epoch).await?);
    let adyen = switchyard_adapters::payouts::adyen::AdyenAdapter::new(
        "adyen",
        &stage.adyen.base_url(),
        switchyard_adapters::Secret::new("adyen_test_switchyard"),
        "BA00000000000000000000001",
        switchyard_adapters::http::Transport::new(Duration::from_secs(10), 4),
    )?;
    let paid = adyen.create(&cmd, &cmd.idempotency_key, &ctx()).await?;
    let mut outcome = switchyard_canonical::PayoutOutcome::rejected(&cmd, switchyard_canonical::OutcomeError {
        class: switchyard_canonical::ErrorClass::Permanent,
        code: switchyard_canonical::ErrorCode::Unknown,
        message: String::new(),
    });
    (outcome.status, outcome.provider, outcome.provider_reference, outcome.error) = (paid.status, Some("adyen".into()), Some(paid.vendor_reference), None);
    store.complete(Completion { claim: Claim { provider: "adyen".into(), ..claim }, outcome_json: serde_json::to_string(&outcome)?, attempts: 1 }).await?;

    // B answers with A's result and never called Stripe for this payout.
    let answer = stage.env.collect_outcomes(&reader, 1, Duration::from_secs(60)).await?.remove(0);
    tokio::time::sleep(Duration::from_secs(4)).await; // a Stripe call B made would have landed by now
    stage.stripe.set_faults(FaultPlan::default());
    let violations = paid_exactly_once(&stage.oracle, &[warm, cmd]);
    assert!(violations.is_empty(), "{violations:?}; the worker said {answer:?}");
    assert_eq!((answer.provider.as_deref(), answer.replayed), (Some("adyen"), true), "{answer:?}");
    shutdown.cancel();
    worker.join.await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_claim_older_than_the_vendors_key_memory_is_looked_up_never_created_again() -> Result<()> {
    let retention = Duration::from_secs(3);
    let env = TestEnv::new("forgotten").await?;
    let oracle = MoneyOracle::new();
    let stripe = stripe::spawn_stripe(stripe::StripeConfig { oracle: oracle.clone(), key_retention: retention, ..stripe::StripeConfig::local() }).await?;
    let mut config = env.worker_config(&stripe.base_url(), None, "stripe");
    config.providers[0].key_retention_ms = Some(retention.as_millis() as u64);
    let stage = Stage { env, oracle, adyen: adyen::spawn_adyen(adyen::AdyenConfig::local()).await?, stripe, config };

    // An earlier delivery claimed the payout, Stripe paid it, and the worker
    // died before it could record the answer.
    let run = &stage.env.prefix;
    let cmd = command(&format!("{run}po-1"), &format!("{run}key-1"), 4444);
    let store = switchyard_store::Store::connect(&stage.config.database_url).await?;
    store.claim(payout_claim(&cmd, "stripe", "died", 0)).await?;
    stripe_adapter(&stage)?.create(&cmd, &cmd.idempotency_key, &ctx()).await?;
    // Stripe forgets the key; then the command is delivered again.
    tokio::time::sleep(retention + Duration::from_millis(500)).await;
    let shutdown = CancellationToken::new();
    let worker = start_payout_worker(stage.config.clone(), shutdown.clone()).await?;
    let reader = stage.env.outcome_reader()?;
    stage.env.core_producer().await?.send(&cmd).await?;
    let outcome = stage.env.collect_outcomes(&reader, 1, Duration::from_secs(30)).await?.remove(0);

    let violations = paid_exactly_once(&stage.oracle, std::slice::from_ref(&cmd));
    assert!(violations.is_empty(), "{violations:?}; the worker said {outcome:?}");
    assert!(matches!(outcome.status, PayoutStatus::Submitted | PayoutStatus::Paid), "found by its reference: {outcome:?}");
    assert_eq!(outcome.provider.as_deref(), Some("stripe"));
    assert_eq!(outcome.provider_reference.as_deref(), Some(stage.oracle.movements()[0].vendor_id.as_str()));
    shutdown.cancel();
    worker.join.await??;
    Ok(())
}
