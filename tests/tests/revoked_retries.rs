//! A message waiting out its retry delay belongs to its partition's owner:
//! when a rebalance takes the partition away, the waiting copy is dropped
//! (the new owner re-reads it from the last commit), not handled as well.
//! And a waiting retry holds its partition's commit, so nothing behind it
//! may be finished first: it would be handled again after a rebalance.
//!
//! Seen in the one-hour money soak: every rebalance doubled the messages
//! that were waiting on the retry topic, since both the old and the new
//! owner handled them and sent them round again; after ~470 rebalances some
//! payouts were dead-lettered 14 times and the retry topic held a backlog
//! of copies an hour deep.

use anyhow::Result;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_bus::{ConsumerRuntime, Failure, Handler, HeaderName, Inbound, Outbound, Publisher, RuntimeSettings, RuntimeTopics};
use switchyard_canonical::now_ms;
use switchyard_e2e::TestEnv;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct CountingHandler {
    handled: Mutex<HashMap<String, usize>>,
    partitions: Mutex<HashMap<String, i32>>,
}

impl Handler for CountingHandler {
    async fn handle(&self, message: Arc<Inbound>) -> Result<(), Failure> {
        *self.handled.lock().unwrap_or_else(|e| e.into_inner()).entry(message.key_text()).or_default() += 1;
        self.partitions.lock().unwrap_or_else(|e| e.into_inner()).insert(message.key_text(), message.partition);
        Ok(())
    }
}

impl CountingHandler {
    fn counts(&self) -> HashMap<String, usize> {
        self.handled.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn partitions_of(&self, prefix: &str) -> BTreeSet<i32> {
        let partitions = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
        partitions.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(_, p)| *p).collect()
    }
}

/// Polls every 100 ms while `pending` holds, for at most `within`.
async fn wait_while(within: Duration, pending: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while pending() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn retry_headers(due: i64) -> Vec<(String, Vec<u8>)> {
    vec![(HeaderName::RETRY_ATTEMPT.to_owned(), b"1".to_vec()), (HeaderName::RETRY_NOT_BEFORE.to_owned(), due.to_string().into_bytes())]
}

/// Seen in the 20-minute money soak after the revoke fix: a retry waiting
/// out a long delay held its partition's commit while the retries behind it
/// were handled; each of ~230 rebalances re-read and re-handled them, and
/// 537 parked payouts became 20,808 DLQ records. Failed before retry
/// partitions were read in offset order (60 of 100 handled twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retries_behind_a_waiting_retry_are_not_handled_again_after_a_rebalance() -> Result<()> {
    let env = TestEnv::new("behind").await?;
    let topic = env.topic("payouts.commands.v1");
    let retry = format!("{topic}.retry");
    let publisher = Publisher::new(&env.kafka)?;
    // Generous: under a loaded CI machine the join and rebalance took over 20 s.
    let slow_due = now_ms() + 40_000;
    // A waiting head on every partition (keys spread over all of them), then
    // retries that are already due.
    let (slow, due_now) = (40, 60);
    for i in 0..slow {
        publisher.publish(&Outbound { topic: retry.clone(), key: Some(format!("slow-{i}").into_bytes()), payload: b"x".to_vec(), headers: retry_headers(slow_due) }).await?;
    }
    for i in 0..due_now {
        publisher.publish(&Outbound { topic: retry.clone(), key: Some(format!("due-{i}").into_bytes()), payload: b"x".to_vec(), headers: retry_headers(now_ms()) }).await?;
    }
    let handler = Arc::new(CountingHandler::default());
    let shutdown = CancellationToken::new();
    let runtime = |publisher: Publisher| {
        ConsumerRuntime::new(&env.kafka, publisher, RuntimeTopics::conventional(&topic), RuntimeSettings::default(), handler.clone(), shutdown.clone())
    };
    let first = runtime(publisher.clone())?;
    let first_stats = first.stats();
    let first_run = tokio::spawn(first.run());
    wait_while(Duration::from_secs(12), || first_stats.assigned_partitions.load(Ordering::Relaxed) == 0).await;
    // Time for the first member to read everything it would read.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let second = runtime(Publisher::new(&env.kafka)?)?;
    let second_stats = second.stats();
    let second_run = tokio::spawn(second.run());
    wait_while(Duration::from_secs(12), || second_stats.assigned_partitions.load(Ordering::Relaxed) == 0).await;
    assert!(second_stats.assigned_partitions.load(Ordering::Relaxed) > 0, "the second member took partitions");
    assert!(now_ms() < slow_due, "the rebalance finished before the waiting retries fell due; raise the delay");

    wait_while(Duration::from_secs(60), || handler.counts().len() < slow + due_now).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    shutdown.cancel();
    first_run.await??;
    second_run.await??;
    let counts = handler.counts();
    assert_eq!(counts.len(), slow + due_now, "every retry was handled: {counts:?}");
    let (slow_partitions, due_partitions) = (handler.partitions_of("slow-"), handler.partitions_of("due-"));
    assert!(
        due_partitions.is_subset(&slow_partitions),
        "inconclusive: partitions {due_partitions:?} hold due retries but only {slow_partitions:?} a waiting head"
    );
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "{} of {} retries were handled twice: {twice:?}", twice.len(), slow + due_now);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_waiting_on_a_revoked_partition_is_handled_once_by_its_new_owner() -> Result<()> {
    let env = TestEnv::new("revoked").await?;
    let topic = env.topic("payouts.commands.v1");
    let retry = format!("{topic}.retry");
    let publisher = Publisher::new(&env.kafka)?;
    // Long enough for the second member to join and the group to settle,
    // also on a loaded machine (20 s was seen too short).
    let due = now_ms() + 30_000;
    let total = 40;
    for i in 0..total {
        publisher.publish(&Outbound { topic: retry.clone(), key: Some(format!("k-{i}").into_bytes()), payload: b"x".to_vec(), headers: retry_headers(due) }).await?;
    }
    let handler = Arc::new(CountingHandler::default());
    let shutdown = CancellationToken::new();
    let runtime = |publisher: Publisher| {
        ConsumerRuntime::new(&env.kafka, publisher, RuntimeTopics::conventional(&topic), RuntimeSettings::default(), handler.clone(), shutdown.clone())
    };
    let first = runtime(publisher.clone())?;
    let first_stats = first.stats();
    let first_run = tokio::spawn(first.run());
    // It holds them, waiting.
    wait_while(Duration::from_secs(10), || first_stats.received.load(Ordering::Relaxed) == 0).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(first_stats.received.load(Ordering::Relaxed) > 0, "the first member holds retries, waiting");

    // A second member joins: the first member's partitions are revoked.
    let second = runtime(Publisher::new(&env.kafka)?)?;
    let second_stats = second.stats();
    let second_run = tokio::spawn(second.run());
    wait_while(Duration::from_secs(12), || second_stats.assigned_partitions.load(Ordering::Relaxed) == 0).await;
    assert!(second_stats.assigned_partitions.load(Ordering::Relaxed) > 0, "the second member took partitions before the retries fell due");
    assert!(now_ms() < due, "the rebalance finished before the retries fell due; raise the delay");

    wait_while(Duration::from_secs(45), || handler.counts().len() < total).await;
    // Whatever a stale copy would do, it does within its wake-up.
    tokio::time::sleep(Duration::from_secs(3)).await;
    shutdown.cancel();
    first_run.await??;
    second_run.await??;
    let counts = handler.counts();
    assert_eq!(counts.len(), total, "every retry was handled: {counts:?}");
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "{} of {total} retries were handled by the old owner too: {twice:?}", twice.len());
    Ok(())
}

/// Counts handlings of each key's first retry round; fails those rounds
/// (another copy goes round, due much later) and keeps `slow-` heads busy.
#[derive(Default)]
struct SlowHeadHandler {
    first_rounds: Mutex<HashMap<String, usize>>,
}

impl Handler for SlowHeadHandler {
    async fn handle(&self, message: Arc<Inbound>) -> Result<(), Failure> {
        let key = message.key_text();
        if key.starts_with("slow-") {
            tokio::time::sleep(Duration::from_secs(8)).await;
            return Ok(());
        }
        if message.retry_attempt() == 1 {
            *self.first_rounds.lock().unwrap_or_else(|e| e.into_inner()).entry(key).or_default() += 1;
        }
        Err(Failure::Retry { reason: "vendor unavailable".into(), delay: Duration::from_secs(60) })
    }
}

/// Seen in the one-hour money soak with retries read in order: a head
/// whose handler is slow (not waiting) held its partition's commit while
/// the retries behind it were handled, and each rebalance handled them
/// again, each time sending another copy round the retry topic (one payout
/// 481 times). The round ledger remembers handled retry records: a re-read
/// one is finished, not handled again. Without it, most of these first
/// rounds were handled twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_handled_behind_a_slow_head_is_not_handled_again_after_a_rebalance() -> Result<()> {
    let env = TestEnv::new("slow-head").await?;
    let topic = env.topic("payouts.commands.v1");
    let retry = format!("{topic}.retry");
    let publisher = Publisher::new(&env.kafka)?;
    let (slow, failing) = (30, 60);
    for i in 0..slow {
        publisher.publish(&Outbound { topic: retry.clone(), key: Some(format!("slow-{i}").into_bytes()), payload: b"x".to_vec(), headers: retry_headers(now_ms()) }).await?;
    }
    for i in 0..failing {
        publisher.publish(&Outbound { topic: retry.clone(), key: Some(format!("fail-{i}").into_bytes()), payload: b"x".to_vec(), headers: retry_headers(now_ms()) }).await?;
    }
    let store = switchyard_store::Store::connect(&switchyard_localstack::database_url()).await?;
    let ledger: Arc<dyn switchyard_bus::RoundLedger> =
        Arc::new(switchyard_worker::rounds::StoreRounds(switchyard_store::retry_rounds::RetryRounds::open(&store).await?));
    let handler = Arc::new(SlowHeadHandler::default());
    let shutdown = CancellationToken::new();
    let runtime = |publisher: Publisher| -> Result<ConsumerRuntime<SlowHeadHandler>> {
        Ok(ConsumerRuntime::new(&env.kafka, publisher, RuntimeTopics::conventional(&topic), RuntimeSettings::default(), handler.clone(), shutdown.clone())?
            .with_round_ledger(ledger.clone()))
    };
    let first = runtime(publisher.clone())?;
    let first_stats = first.stats();
    let first_run = tokio::spawn(first.run());
    let rounds = || handler.first_rounds.lock().unwrap_or_else(|e| e.into_inner()).len();
    wait_while(Duration::from_secs(15), || rounds() < failing).await;
    assert_eq!(rounds(), failing, "the first member handled every first round while the slow heads run");

    // A second member joins while the heads are still running: the first
    // member's partitions are revoked with their commits behind the heads.
    let second = runtime(Publisher::new(&env.kafka)?)?;
    let second_stats = second.stats();
    let second_run = tokio::spawn(second.run());
    wait_while(Duration::from_secs(12), || second_stats.assigned_partitions.load(Ordering::Relaxed) == 0).await;
    assert!(second_stats.assigned_partitions.load(Ordering::Relaxed) > 0, "the second member took partitions");
    // Long enough for both members to re-read and handle what they own.
    tokio::time::sleep(Duration::from_secs(15)).await;
    shutdown.cancel();
    first_run.await??;
    second_run.await??;
    let skipped = first_stats.rounds_skipped.load(Ordering::Relaxed) + second_stats.rounds_skipped.load(Ordering::Relaxed);
    let counts = handler.first_rounds.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "{} of {failing} first rounds handled twice ({skipped} re-reads skipped): {twice:?}", twice.len());
    assert!(skipped > 0, "inconclusive: no retry record was re-read");
    Ok(())
}
