//! Traffic still arriving on a deprecated topic is counted where it lands,
//! so the teams still producing to it are found before its sunset.

use anyhow::Result;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_bus::deprecation::deprecations;
use switchyard_bus::{ConsumerRuntime, Failure, Handler, Inbound, Outbound, Publisher, RuntimeSettings, RuntimeTopics};
use switchyard_e2e::TestEnv;
use tokio_util::sync::CancellationToken;

/// The repository's topics.yaml with `payouts.commands.v1` deprecated, as a
/// release announcing `v2` would ship it.
fn catalog_with_v1_deprecated() -> Result<std::collections::BTreeMap<String, switchyard_bus::deprecation::Deprecation>> {
    let text = std::fs::read_to_string(switchyard_localstack::repo_root().join("topics.yaml"))?;
    let marked = text.replacen(
        "  - name: payouts.commands.v1\n",
        "  - name: payouts.commands.v1\n    deprecated: { sunset: 2027-06-30 }\n",
        1,
    );
    anyhow::ensure!(marked != text, "topics.yaml has payouts.commands.v1");
    Ok(deprecations(&marked)?)
}

#[derive(Default)]
struct Count(AtomicUsize);

impl Handler for Count {
    async fn handle(&self, _message: Arc<Inbound>) -> Result<(), Failure> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_on_a_deprecated_topic_are_counted_and_others_are_not() -> Result<()> {
    let env = TestEnv::new("deprecated").await?;
    let catalog = catalog_with_v1_deprecated()?;
    let publisher = Publisher::new(&env.kafka)?;
    let (old, current) = (env.topic("payouts.commands.v1"), env.topic("kyc.commands.v1"));
    for (topic, n) in [(&old, 5), (&current, 3)] {
        for i in 0..n {
            let message = Outbound { topic: topic.clone(), key: Some(format!("k-{i}").into_bytes()), payload: b"x".to_vec(), headers: Vec::new() };
            publisher.publish(&message).await?;
        }
    }
    let mut seen = Vec::new();
    for (topic, expected) in [(&old, 5), (&current, 3)] {
        let settings = RuntimeSettings { deprecations: catalog.clone(), ..RuntimeSettings::default() };
        let handler = Arc::new(Count::default());
        let shutdown = CancellationToken::new();
        let runtime = ConsumerRuntime::new(&env.kafka, publisher.clone(), RuntimeTopics::conventional(topic), settings, handler.clone(), shutdown.clone())?;
        let stats = runtime.stats();
        let run = tokio::spawn(runtime.run());
        let deadline = Instant::now() + Duration::from_secs(60);
        while handler.0.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        shutdown.cancel();
        run.await??;
        assert_eq!(handler.0.load(Ordering::Relaxed), expected, "{topic}: every message handled");
        seen.extend(stats.deprecated.snapshot().into_iter().map(|(t, d, n)| (t, d.sunset, n)));
    }
    // The retry copy of the deprecated topic is watched too (nothing there yet);
    // the current topic is not watched at all.
    assert_eq!(seen, vec![(old.clone(), "2027-06-30".to_owned(), 5), (format!("{old}.retry"), "2027-06-30".to_owned(), 0)]);
    Ok(())
}
