//! One stuck message costs one message: the consumer's memory stays bounded
//! while it blocks its partition's commit, and its handler is cut off at a
//! deadline so it takes the retry path instead of holding the partition.

use anyhow::Result;
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_bus::{ConsumerRuntime, Failure, Handler, Inbound, Outbound, Publisher, RuntimeSettings, RuntimeTopics};
use switchyard_e2e::TestEnv;
use tokio_util::sync::CancellationToken;

/// Hangs forever on the first delivery of key `stuck`; finishes the rest.
#[derive(Default)]
struct StuckOnce {
    finished: Mutex<HashSet<String>>,
}

impl Handler for StuckOnce {
    async fn handle(&self, message: Arc<Inbound>) -> Result<(), Failure> {
        let key = message.key_text();
        if key == "stuck" && message.retry_attempt() == 0 {
            std::future::pending::<()>().await;
        }
        self.finished.lock().unwrap_or_else(|e| e.into_inner()).insert(key);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stuck_message_bounds_memory_and_takes_the_retry_path_at_its_deadline() -> Result<()> {
    let env = TestEnv::new("bounds").await?;
    let topic = env.topic("payouts.commands.v1");
    let publisher = Publisher::new(&env.kafka)?;
    let send = |key: String| Outbound { topic: topic.clone(), key: Some(key.into_bytes()), payload: b"x".to_vec(), headers: Vec::new() };
    publisher.publish(&send("stuck".into())).await?;
    let total = 1200;
    for i in 0..total {
        publisher.publish(&send(format!("k-{i}"))).await?;
    }
    let limit = 40;
    let settings = RuntimeSettings {
        max_in_flight: 5000,
        max_uncommitted_per_partition: limit,
        handler_deadline: Duration::from_secs(3),
        ..RuntimeSettings::default()
    };
    let handler = Arc::new(StuckOnce::default());
    let shutdown = CancellationToken::new();
    let runtime = ConsumerRuntime::new(&env.kafka, publisher.clone(), RuntimeTopics::conventional(&topic), settings, handler.clone(), shutdown.clone())?;
    let stats = runtime.stats();
    let run = tokio::spawn(runtime.run());

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut widest = 0;
    loop {
        widest = widest.max(stats.max_uncommitted.load(Ordering::Relaxed));
        let done = handler.finished.lock().unwrap_or_else(|e| e.into_inner()).len();
        if done == total + 1 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.cancel();
    run.await??;
    let done = handler.finished.lock().unwrap_or_else(|e| e.into_inner()).len();
    assert_eq!(done, total + 1, "every message finished, the stuck one through the retry topic");
    assert_eq!(stats.deadline_exceeded.load(Ordering::Relaxed), 1, "only the stuck handler was cut off");
    // The window is checked after each receive, so a burst may overshoot by
    // what was already fetched in that wake-up; never by the partition's share.
    assert!(widest <= limit as u64 + 5, "the stuck partition held {widest} offsets back (limit {limit})");
    assert!(widest >= limit as u64 / 2, "the stuck head did hold offsets back ({widest}), so the bound was exercised");
    Ok(())
}
