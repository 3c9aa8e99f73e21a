//! TrueLayer's request-signing key rotates without a restart, end to end:
//! real broker, real PostgreSQL, the payout worker in-process with its
//! `signing_key` and `signing_key_id` in files (as a Kubernetes secret
//! volume or a Vault agent writes them), TrueLayer's simulator verifying
//! every `Tl-Signature` against the public keys registered under each kid.
//!
//! The rotation as a merchant runs it: upload the new public key (a new
//! kid), rewrite both files, delete the old key in the console once the
//! worker signs with the new one. A key that does not sign is refused and
//! the old pair keeps signing.

use anyhow::{Context, Result};
use std::time::Duration;
use switchyard_canonical::PayoutStatus;
use switchyard_e2e::secrets::{replace_secret_file, rotations};
use switchyard_e2e::{command, TestEnv};
use switchyard_simulators::truelayer::{generate_signing_key, spawn_truelayer, TrueLayerConfig};
use switchyard_simulators::{stripe, MoneyOracle};
use switchyard_worker::payout::truelayer_config::TrueLayerPayoutSection;
use switchyard_worker::secrets::KeyIdSource;
use switchyard_worker::{start_payout_worker, ProviderConfig, ProviderKind, SecretSource};
use tokio_util::sync::CancellationToken;

const MERCHANT_ACCOUNT: &str = "ma-switchyard-eur";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rewritten_signing_key_and_kid_sign_the_next_payout_without_a_restart() -> Result<()> {
    let env = TestEnv::new("tlsignroll").await?;
    let run = uuid::Uuid::new_v4().simple().to_string();
    // A provider name of this run only: the audit entry's subject.
    let provider = format!("truelayer-{}", &run[..12]);
    let oracle = MoneyOracle::new();
    let stripe = stripe::spawn_stripe(stripe::StripeConfig { oracle: oracle.clone(), ..stripe::StripeConfig::local() }).await?;
    let tl_config = TrueLayerConfig::local();
    let tl = spawn_truelayer(tl_config.clone()).await?;
    tl.set_money_oracle(oracle.clone());
    tl.fund_merchant_account(MERCHANT_ACCOUNT, "EUR", 1_000_000);
    tl.set_payout_step(Duration::ZERO);
    let (old_private, old_public) = generate_signing_key();
    tl.register_signing_key("kid-2025", &old_public);

    let dir = std::env::temp_dir().join(format!("switchyard-tl-signing-{run}"));
    std::fs::create_dir_all(&dir)?;
    let (kid_file, key_file) = (dir.join("signing-key-id"), dir.join("signing-key.pem"));
    replace_secret_file(&kid_file, "kid-2025")?;
    replace_secret_file(&key_file, &old_private)?;
    let file = |p: &std::path::Path| SecretSource { file: Some(p.display().to_string()), ..SecretSource::default() };

    let mut config = env.worker_config(&stripe.base_url(), None, &provider);
    config.secret_check_every_ms = 50;
    config.providers.push(ProviderConfig {
        name: provider.clone(),
        kind: ProviderKind::TrueLayer,
        base_url: tl.base_url(),
        api_key: SecretSource::inline(&tl_config.client_secret),
        balance_account_id: None,
        connected_account: None,
        key_retention_ms: None,
        timeout_ms: 2000,
        max_concurrency: 16,
        http2_prior_knowledge: false,
        sandbox_only: false,
        tls: None,
        truelayer: Some(TrueLayerPayoutSection {
            auth_url: tl.base_url(),
            client_id: tl_config.client_id.clone(),
            signing_key_id: KeyIdSource::Source(file(&kid_file)),
            signing_key: file(&key_file),
            merchant_account_id: MERCHANT_ACCOUNT.into(),
        }),
    });
    let shutdown = CancellationToken::new();
    let worker = start_payout_worker(config, shutdown.clone()).await?;
    let producer = env.core_producer().await?;
    let reader = env.outcome_reader()?;
    let pay = |name: &str| command(&format!("{}{name}", env.prefix), &format!("{}key-{name}", env.prefix), 1_000);

    let before = pay("po-before");
    producer.send(&before).await?;
    let outcome = env.collect_outcomes(&reader, 1, Duration::from_secs(60)).await?.remove(0);
    assert_eq!((outcome.status, outcome.provider.as_deref()), (PayoutStatus::Paid, Some(provider.as_str())), "{outcome:?}");

    // A key that does not sign (a half-written PEM) under a new kid: refused,
    // nothing audited, the current pair stays.
    replace_secret_file(&kid_file, "kid-broken")?;
    replace_secret_file(&key_file, "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----")?;
    assert!(rotations(&worker.store, &provider, Duration::from_millis(500)).await?.is_empty(), "an unusable key is not a rotation");

    // The new public key is uploaded (its own kid), then both files rewritten.
    let (new_private, new_public) = generate_signing_key();
    tl.register_signing_key("kid-2026", &new_public);
    replace_secret_file(&key_file, &new_private)?;
    replace_secret_file(&kid_file, "kid-2026")?;
    let rotated = rotations(&worker.store, &provider, Duration::from_secs(10)).await?;
    assert_eq!(rotated.len(), 1, "one rotation audited: {rotated:?}");
    assert!(rotated[0].detail.contains("truelayer.signing_key"), "{:?}", rotated[0]);
    let audit = format!("{rotated:?}");
    assert!(!audit.contains("PRIVATE KEY") && !audit.contains(new_private.lines().nth(1).context("key body")?), "no key material audited");

    // The old key is deleted in the console: only the new pair can sign now.
    tl.remove_signing_key("kid-2025");
    let after = pay("po-after");
    producer.send(&after).await?;
    // A signature TrueLayer refuses (401) is for a person (the DLQ): no outcome comes.
    let outcome = env
        .collect_outcomes(&reader, 1, Duration::from_secs(20))
        .await
        .context("no outcome for the payout after the rotation: was it signed with the deleted key?")?
        .remove(0);
    assert_eq!(outcome.payout_id, after.payout_id);
    assert_eq!(outcome.status, PayoutStatus::Paid, "signed with the new key, same process: {outcome:?}");
    switchyard_e2e::money::assert_paid_exactly_once(&oracle, &[before, after]);

    shutdown.cancel();
    worker.join.await??;
    tl.shutdown().await;
    stripe.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
