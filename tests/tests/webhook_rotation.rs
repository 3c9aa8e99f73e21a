//! A webhook secret rotated while the ingester runs, the way Kubernetes
//! rotates a mounted secret: the new value is written to a fresh
//! timestamped directory and the `..data` symlink is swapped onto it
//! atomically (the key file itself is a symlink through `..data`).
//!
//! Without a restart: the new secret verifies within a few checks, the old
//! one keeps verifying during the overlap and is refused after it, and the
//! rotation is in the audit log as `secret_rotated` (naming the field, not
//! the value). Signatures come from the independent reference signer.
//!
//! Seen failing with the re-read disabled (`RotatingSecret::refresh`
//! returning `Ok(None)`): the new secret is never accepted.

use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use switchyard_e2e::webhooks::{reference_sign, url};
use switchyard_ingester::config::{KeyConfig, ProviderConfig, RotationConfig};
use switchyard_ingester::start_ingester;
use switchyard_localstack::LocalStack;
use switchyard_simulators::callbacks::bodies;
use switchyard_store::Store;
use tokio_util::sync::CancellationToken;

const OLD: &str = "whsec_rotation_old_value_2b7c";
const NEW: &str = "whsec_rotation_new_value_9e41";
const OVERLAP_S: u64 = 4;

/// Writes `value` as `<dir>/<version>/stripe` and points `<dir>/..data` at
/// it by renaming a fresh symlink over the old one (atomic, as kubelet does).
fn publish(dir: &Path, version: &str, value: &str) -> Result<()> {
    std::fs::create_dir_all(dir.join(version))?;
    std::fs::write(dir.join(version).join("stripe"), value)?;
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(version, &tmp)?;
    std::fs::rename(&tmp, dir.join("..data"))?;
    Ok(())
}

struct Sender {
    client: reqwest::Client,
    url: String,
    run: String,
    n: std::sync::atomic::AtomicU32,
}

impl Sender {
    /// Posts a fresh `payout.paid` signed with `secret`; the HTTP status.
    async fn post(&self, secret: &str) -> Result<u16> {
        let n = self.n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("evt_rot_{}_{n}", self.run);
        let now_s = switchyard_canonical::now_ms() / 1000;
        let body = bodies::stripe_payout(&id, "payout.paid", &format!("po-rot-{}-{n}", self.run), &format!("po_rot{}{n}", self.run), 1000, now_s);
        let mut req = self.client.post(&self.url).header("content-type", "application/json").body(body.clone());
        for (k, v) in reference_sign("stripe", secret, &id, &body)? {
            req = req.header(k, v);
        }
        Ok(req.send().await?.status().as_u16())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_secret_file_is_picked_up_without_a_restart_and_the_old_one_ends_with_the_overlap() -> Result<()> {
    let stack = LocalStack::new("rotate").await?;
    let run = stack.prefix.trim_end_matches('.').rsplit('-').next().unwrap_or("run").to_owned();
    let dir = std::env::temp_dir().join(format!("switchyard-rotation-{run}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    publish(&dir, "..2026_12_07_01", OLD)?;
    std::os::unix::fs::symlink("..data/stripe", dir.join("stripe"))?;

    let key = KeyConfig { env: None, file: Some(dir.join("stripe").display().to_string()), value: None, not_after: None };
    let provider = ProviderConfig { rotation: RotationConfig { check_every_ms: 100, overlap_s: OVERLAP_S }, ..ProviderConfig::new("payouts", vec![key]) };
    let shutdown = CancellationToken::new();
    let ingester = start_ingester(stack.ingester_config(BTreeMap::from([("stripe".to_owned(), provider)])), shutdown.clone()).await?;
    let send = Sender { client: reqwest::Client::new(), url: url(&ingester, "stripe"), run: run.clone(), n: Default::default() };

    assert_eq!(send.post(OLD).await?, 200, "the first secret verifies");
    assert_eq!(send.post(NEW).await?, 401, "a secret not yet rotated in is refused");

    let started_ms = switchyard_canonical::now_ms();
    publish(&dir, "..2026_12_07_02", NEW)?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if send.post(NEW).await? == 200 {
            break;
        }
        if Instant::now() > deadline {
            bail!("the new secret was not accepted within 5 s of the swap: no re-read without a restart");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let picked_up = Instant::now();
    assert_eq!(send.post(OLD).await?, 200, "the old secret verifies during the overlap");

    // Past the overlap (measured from the swap, plus a check interval).
    tokio::time::sleep(Duration::from_secs(OVERLAP_S).saturating_sub(picked_up.elapsed()) + Duration::from_millis(500)).await;
    assert_eq!(send.post(OLD).await?, 401, "the old secret is refused after the overlap");
    assert_eq!(send.post(NEW).await?, 200, "the new one still verifies");

    let store = Store::connect(&switchyard_localstack::database_url()).await?;
    let rotations: Vec<_> = store
        .audit_trail(&["stripe"])
        .await?
        .into_iter()
        .filter(|r| r.action == "secret_rotated" && r.at_ms >= started_ms && r.actor == "webhook-ingester")
        .collect();
    assert_eq!(rotations.len(), 1, "one audited rotation: {rotations:?}");
    assert!(rotations[0].detail.contains("providers.stripe.keys[0]"), "{}", rotations[0].detail);
    assert!(!rotations[0].detail.contains(OLD) && !rotations[0].detail.contains(NEW), "the audit entry holds no secret");

    shutdown.cancel();
    ingester.join.await??;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
