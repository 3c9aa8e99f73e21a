//! Poison on the payout path: one command whose values the store or an HTTP
//! header cannot hold is refused on its own, before it can fail the group
//! commit of the payouts batched with it or look like a vendor outage.

use anyhow::Result;
use std::time::Duration;
use switchyard_bus::Outbound;
use switchyard_canonical::{ErrorCode, PayoutCommand, PayoutStatus};
use switchyard_e2e::{command, TestEnv, TopicReader};
use switchyard_localstack::CoreProducer;
use switchyard_simulators::stripe;
use switchyard_worker::start_payout_worker;
use tokio_util::sync::CancellationToken;

/// Publishes `cmd` with exactly these headers, as a careless producer might.
async fn send_with(producer: &CoreProducer, cmd: &PayoutCommand, correlation_id: &[u8]) -> Result<()> {
    let record = Outbound {
        topic: producer.topic.clone(),
        key: Some(cmd.payout_id.clone().into_bytes()),
        payload: producer.encoder.encode(cmd)?,
        headers: vec![
            ("correlation-id".into(), correlation_id.to_vec()),
            ("idempotency-key".into(), cmd.idempotency_key.clone().into_bytes()),
        ],
    };
    producer.publisher.publish(&record).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_nul_in_one_correlation_id_dead_letters_that_command_and_no_other() -> Result<()> {
    let env = TestEnv::new("poison").await?;
    let sim = stripe::spawn_stripe(stripe::StripeConfig::local()).await?;
    let shutdown = CancellationToken::new();
    let worker = start_payout_worker(env.worker_config(&sim.base_url(), None, "stripe"), shutdown.clone()).await?;
    let producer = env.core_producer().await?;
    let outcomes = env.outcome_reader()?;
    let dlq = TopicReader::new(&env.kafka, &env.topic("payouts.commands.v1.dlq"))?;
    let retries = TopicReader::new(&env.kafka, &env.topic("payouts.commands.v1.retry"))?;

    let run = &env.prefix;
    let poisoned = command(&format!("{run}po-poison"), &format!("{run}key-poison"), 999);
    let good: Vec<PayoutCommand> = (0..100).map(|i| command(&format!("{run}po-{i}"), &format!("{run}key-{i}"), 1000 + i)).collect();
    // All at once, the poisoned one in the middle: they share claim batches.
    let (first, second) = good.split_at(50);
    let sends = first.iter().map(|c| producer.send(c)).chain(second.iter().map(|c| producer.send(c)));
    let (sent, poison_sent) = tokio::join!(futures::future::try_join_all(sends), send_with(&producer, &poisoned, b"corr-\0-poison"));
    sent?;
    poison_sent?;

    let answered = env.collect_outcomes(&outcomes, 100, Duration::from_secs(90)).await?;
    assert!(answered.iter().all(|o| o.status == PayoutStatus::Submitted && o.payout_id != poisoned.payout_id), "{answered:?}");
    let dead = dlq.collect(1, Duration::from_secs(30)).await?;
    let reason = dead[0].headers.get("dlq-reason").cloned().unwrap_or_default();
    assert!(reason.contains("correlation-id") && reason.contains("NUL"), "dead-lettered for its header: {reason}");
    assert_eq!(dead[0].headers.get("dlq-error-class").map(String::as_str), Some("manual_repair"));
    assert_eq!(dead[0].key, poisoned.payout_id.as_bytes());
    assert!(dlq.read_up_to(1, Duration::from_secs(3)).await?.is_empty(), "exactly one dead letter");
    assert!(env.collect_outcomes(&outcomes, 1, Duration::from_secs(2)).await.is_err(), "exactly 100 outcomes");
    let trips = retries.read_up_to(1, Duration::from_secs(2)).await?;
    assert!(trips.is_empty(), "no innocent payout was failed by the poisoned batch: {:?}", trips.iter().map(|t| &t.headers).collect::<Vec<_>>());
    assert!(sim.ledger().iter().all(|p| p.payout_id.as_deref() != Some(poisoned.payout_id.as_str())), "the poisoned payout was never executed");
    shutdown.cancel();
    worker.join.await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_that_cannot_be_an_http_header_is_rejected_without_a_vendor_call() -> Result<()> {
    let env = TestEnv::new("badkey").await?;
    let sim = stripe::spawn_stripe(stripe::StripeConfig::local()).await?;
    let shutdown = CancellationToken::new();
    let worker = start_payout_worker(env.worker_config(&sim.base_url(), None, "stripe"), shutdown.clone()).await?;
    let producer = env.core_producer().await?;
    let outcomes = env.outcome_reader()?;

    let run = &env.prefix;
    for (i, tail) in ["\r", "\n", "\x0b"].into_iter().enumerate() {
        let cmd = command(&format!("{run}po-{i}"), &format!("{run}key-{i}{tail}"), 1000 + i as i64);
        send_with(&producer, &cmd, format!("corr-{run}{i}").as_bytes()).await?;
    }
    let answered = env.collect_outcomes(&outcomes, 3, Duration::from_secs(60)).await?;
    for outcome in &answered {
        assert_eq!(outcome.status, PayoutStatus::Rejected, "{outcome:?}");
        let error = outcome.error.as_ref().expect("a rejection says why");
        assert_eq!(error.code, ErrorCode::InvalidRequest, "{outcome:?}");
        assert!(error.message.contains("idempotency_key"), "{}", error.message);
        assert_eq!(outcome.attempts, 0, "{outcome:?}");
    }
    assert_eq!(sim.stats().requests, 0, "no request reached the vendor");
    shutdown.cancel();
    worker.join.await??;
    Ok(())
}
