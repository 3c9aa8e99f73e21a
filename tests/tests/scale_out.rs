//! Workers scale out as members of one consumer group: two instances split
//! the partitions, one leaves mid-stream (graceful drain), and still every
//! command gets an outcome and every payout executes once.

use anyhow::Result;
use std::collections::HashMap;
use std::time::Duration;
use switchyard_e2e::money::assert_paid_exactly_once;
use switchyard_e2e::{command, TestEnv};
use switchyard_simulators::{stripe, FaultPlan, MoneyOracle};
use switchyard_worker::start_payout_worker;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_group_members_share_the_work_and_survive_one_leaving() -> Result<()> {
    let env = TestEnv::new("scale").await?;
    let oracle = MoneyOracle::new();
    let mut sim_config = stripe::StripeConfig { oracle: oracle.clone(), ..stripe::StripeConfig::local() };
    sim_config.faults = FaultPlan { latency_ms: 20, ..FaultPlan::default() };
    let sim = stripe::spawn_stripe(sim_config).await?;
    let config = env.worker_config(&sim.base_url(), None, "stripe");
    let (first_stop, second_stop) = (CancellationToken::new(), CancellationToken::new());
    let first = start_payout_worker(config.clone(), first_stop.clone()).await?;
    let second = start_payout_worker(config, second_stop.clone()).await?;
    let producer = env.core_producer().await?;
    let reader = env.outcome_reader()?;
    // Both members own partitions before the first command: otherwise the
    // first to join may do all the work before the other is assigned any.
    let assigned = |text: String| {
        text.lines().find(|l| l.starts_with("switchyard_consumer_assigned_partitions")).and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (a, b) = (assigned(first.metrics.render()).unwrap_or(0), assigned(second.metrics.render()).unwrap_or(0));
        if a > 0 && b > 0 && a + b == 12 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the two members own {a} and {b} of 12 partitions");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let keys: Vec<String> = (0..600).map(|i| format!("{}key-{i}", env.prefix)).collect();
    let commands: Vec<_> = keys.iter().enumerate().map(|(i, key)| command(&format!("{}po-{i}", env.prefix), key, 1000 + i as i64)).collect();
    for cmd in &commands {
        producer.send(cmd).await?;
    }
    // Let both members work, then take one away while payouts are in flight.
    while sim.ledger().len() < 150 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first_stop.cancel();
    first.join.await??;
    // The group does not stop: the member left owns every partition (six
    // of the command topic, six of its retry topic) within a rebalance.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while assigned(second.metrics.render()) != Some(12) {
        assert!(tokio::time::Instant::now() < deadline, "the remaining member owns {:?} partitions", assigned(second.metrics.render()));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let decoder = env.outcome_decoder()?;
    let mut seen: HashMap<String, usize> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while seen.len() < keys.len() && tokio::time::Instant::now() < deadline {
        for record in reader.read_up_to(10_000, Duration::from_millis(500)).await? {
            let outcome: switchyard_canonical::PayoutOutcome = decoder.decode(&record.payload).await?;
            *seen.entry(outcome.idempotency_key).or_default() += 1;
        }
    }
    assert_eq!(seen.len(), keys.len(), "every command answered after a member left");
    assert_paid_exactly_once(&oracle, &commands);
    let first_share = first.metrics.render();
    assert!(
        first_share.contains("switchyard_commands_processed_total{domain=\"payouts\",status=\"submitted\"}"),
        "the first member did part of the work"
    );
    second_stop.cancel();
    second.join.await??;
    Ok(())
}
