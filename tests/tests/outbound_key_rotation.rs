//! Outbound API keys rotate without a restart: the payout worker's Stripe
//! key comes from a file (as a Kubernetes secret volume mounts it); the
//! file is rewritten mid-run and Stripe's side is rolled with the old key
//! expiring at once, so from then on the simulator accepts only the new
//! key. The payouts after the rotation succeed with the same worker process,
//! and the rotation is audited as `secret_rotated` naming the field, never
//! the value.

use anyhow::{bail, Result};
use std::time::Duration;
use switchyard_canonical::PayoutStatus;
use switchyard_e2e::secrets::{replace_secret_file as replace, rotations};
use switchyard_e2e::{command, TestEnv};
use switchyard_simulators::stripe;
use switchyard_worker::{start_payout_worker, SecretSource};
use tokio_util::sync::CancellationToken;

const OLD_KEY: &str = "sk_test_switchyard";
const NEW_KEY: &str = "sk_test_rotated0000000000000042";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rewritten_key_file_is_used_from_the_next_payout_without_a_restart() -> Result<()> {
    let env = TestEnv::new("key-rotation").await?;
    let sim = stripe::spawn_stripe(stripe::StripeConfig::local()).await?;
    let dir = std::env::temp_dir().join(format!("switchyard-{}", env.prefix.trim_end_matches('.')));
    std::fs::create_dir_all(&dir)?;
    let key_file = dir.join("stripe-api-key");
    replace(&key_file, OLD_KEY)?;

    let mut config = env.worker_config(&sim.base_url(), None, "stripe");
    // A provider name of this run only: the audit entry's subject.
    let provider = format!("stripe-{}", env.prefix.trim_end_matches('.'));
    config.providers[0].name = provider.clone();
    config.routing.primary = provider.clone();
    config.providers[0].api_key = SecretSource {
        file: Some(key_file.display().to_string()),
        ..SecretSource::default()
    };
    config.secret_check_every_ms = 100;
    let shutdown = CancellationToken::new();
    let worker = start_payout_worker(config, shutdown.clone()).await?;
    let producer = env.core_producer().await?;
    let reader = env.outcome_reader()?;
    let run = &env.prefix;

    producer
        .send(&command(
            &format!("{run}po-before"),
            &format!("{run}key-before"),
            1000,
        ))
        .await?;
    let before = env
        .collect_outcomes(&reader, 1, Duration::from_secs(60))
        .await?;
    assert_eq!(
        before[0].status,
        PayoutStatus::Submitted,
        "paid with the first key: {before:?}"
    );

    // Our side first (the file), then the vendor's: Stripe's roll with the
    // old key expiring now. From here the old key gets 401.
    replace(&key_file, NEW_KEY)?;
    let rotated = rotations(&worker.store, &provider, Duration::from_secs(10)).await?;
    let roll = serde_json::json!({ "api_key": NEW_KEY, "previous_valid_ms": 0 });
    let rolled = reqwest::Client::new()
        .put(format!("{}/_sim/api_key", sim.base_url()))
        .json(&roll)
        .send()
        .await?;
    assert!(
        rolled.status().is_success(),
        "the simulator rolled its key: {}",
        rolled.status()
    );

    let after: Vec<_> = (0..3)
        .map(|i| {
            command(
                &format!("{run}po-after-{i}"),
                &format!("{run}key-after-{i}"),
                1000 + i,
            )
        })
        .collect();
    for cmd in &after {
        producer.send(cmd).await?;
    }
    let outcomes = match env.collect_outcomes(&reader, after.len(), Duration::from_secs(30)).await {
        Ok(outcomes) => outcomes,
        Err(e) => bail!("no outcomes for the payouts after the rotation ({e}); the worker still presents the old key?"),
    };
    for o in &outcomes {
        assert_eq!(
            o.status,
            PayoutStatus::Submitted,
            "paid with the rotated key, no restart: {o:?}"
        );
    }
    assert_eq!(
        sim.ledger().len(),
        1 + after.len(),
        "every payout executed once at Stripe"
    );

    assert_eq!(rotated.len(), 1, "one rotation audited: {rotated:?}");
    let entry = &rotated[0];
    assert_eq!(entry.actor, "payout-worker");
    assert!(
        entry.detail.contains("providers[0].api_key"),
        "the field is named: {}",
        entry.detail
    );
    assert!(
        !entry.detail.contains(NEW_KEY) && !entry.detail.contains(OLD_KEY),
        "never the value: {}",
        entry.detail
    );

    shutdown.cancel();
    worker.join.await??;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
