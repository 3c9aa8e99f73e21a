//! Outbound keys of a check worker rotate without a restart, through the
//! same re-read as the payout worker's (`switchyard_worker::secrets`): the
//! KYC worker's Onfido token comes from a file (as a Kubernetes secret
//! volume mounts it). A live-shaped token written there in a sandbox
//! deployment is refused and the current one stays in use. Then a good new
//! token is written and Onfido's side is rolled with the old one revoked at
//! once: the verifications after the rotation are approved by the same
//! worker process, and exactly one `secret_rotated` is audited, naming the
//! field, never the value.

use anyhow::{bail, Result};
use std::time::Duration;
use switchyard_canonical::kyc::{DocumentKind, IdDocument, KycCommand, KycOutcome, KycStatus, Person};
use switchyard_e2e::checks::{check_config, provider, CommandProducer, OutcomeReader};
use switchyard_e2e::secrets::{replace_secret_file as replace, rotations};
use switchyard_e2e::TestEnv;
use switchyard_simulators::onfido;
use switchyard_worker::check_config::CheckVendorKind;
use switchyard_worker::check_run::start_check_worker;
use switchyard_worker::config::SecretSource;
use switchyard_worker::kyc::{Kyc, KYC_COMMAND_SCHEMA, KYC_OUTCOME_SCHEMA};
use tokio_util::sync::CancellationToken;

const OLD_TOKEN: &str = "api_sandbox.switchyard";
const LIVE_TOKEN: &str = "api_live.leaked0000000000000007";
const NEW_TOKEN: &str = "api_sandbox.rotated000000000042";

fn command(run: &str, name: &str) -> KycCommand {
    KycCommand {
        subject_id: format!("{run}app-{name}"),
        idempotency_key: format!("{run}kyc-{name}"),
        flow_id: None,
        person: Person { first_name: "Ada".into(), last_name: "Lovelace".into(), date_of_birth: Some("1990-12-10".into()), email: None },
        document: IdDocument { kind: DocumentKind::Passport, issuing_country: "GBR".into(), front_ref: format!("doc://{name}/front"), back_ref: None },
        selfie_ref: Some(format!("doc://{name}/selfie")),
        requested_at_ms: switchyard_canonical::now_ms(),
    }
}

/// Sends the verifications and expects each approved, naming `when`.
async fn approved(producer: &CommandProducer, reader: &OutcomeReader, cmds: &[KycCommand], when: &str) -> Result<()> {
    for cmd in cmds {
        producer.send(&cmd.subject_id, &cmd.idempotency_key, cmd).await?;
    }
    let outcomes = match reader.collect::<KycOutcome>(cmds.len(), Duration::from_secs(30)).await {
        Ok(outcomes) => outcomes,
        Err(e) => bail!("no outcomes for the verifications {when} ({e}); the worker presents a refused token?"),
    };
    for (o, _) in &outcomes {
        assert_eq!(o.status, KycStatus::Approved, "verified {when}: {o:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rewritten_token_file_is_used_from_the_next_verification_and_a_wrong_environment_one_is_refused() -> Result<()> {
    let env = TestEnv::new("kyc-key-rotation").await?;
    let sim = onfido::spawn_onfido(onfido::OnfidoConfig::local()).await?;
    let dir = std::env::temp_dir().join(format!("switchyard-{}", env.prefix.trim_end_matches('.')));
    std::fs::create_dir_all(&dir)?;
    let token_file = dir.join("onfido-api-token");
    replace(&token_file, OLD_TOKEN)?;

    // A provider name of this run only: the audit entry's subject.
    let name = format!("onfido-{}", env.prefix.trim_end_matches('.'));
    let mut p = provider(&name, CheckVendorKind::Onfido, &sim.base_url(), OLD_TOKEN);
    p.api_key = SecretSource { file: Some(token_file.display().to_string()), ..SecretSource::default() };
    let mut config = check_config(&env, "kyc", vec![p], &name);
    config.secret_check_every_ms = 100;
    let shutdown = CancellationToken::new();
    let worker = start_check_worker::<Kyc>(config, shutdown.clone()).await?;
    let producer = CommandProducer::new(&env, "kyc", KYC_COMMAND_SCHEMA).await?;
    let reader = OutcomeReader::new(&env, "kyc", KYC_OUTCOME_SCHEMA)?;
    let run = &env.prefix;

    approved(&producer, &reader, &[command(run, "before")], "with the first token").await?;

    // A production token in a sandbox deployment: refused at every re-read,
    // the current token stays (Onfido still accepts only it).
    replace(&token_file, LIVE_TOKEN)?;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    approved(&producer, &reader, &[command(run, "refused")], "after a live token was written").await?;
    let refused = rotations(&worker.store, &name, Duration::ZERO).await?;
    assert!(refused.is_empty(), "a wrong-environment token is no rotation: {refused:?}");

    // Our side first (the file), then the vendor's: the old token revoked.
    replace(&token_file, NEW_TOKEN)?;
    let rotated = rotations(&worker.store, &name, Duration::from_secs(10)).await?;
    let rolled = reqwest::Client::new()
        .put(format!("{}/_sim/api_token", sim.base_url()))
        .json(&serde_json::json!({ "api_token": NEW_TOKEN }))
        .send()
        .await?;
    assert!(rolled.status().is_success(), "the simulator rolled its token: {}", rolled.status());

    let after: Vec<_> = (0..3).map(|i| command(run, &format!("after-{i}"))).collect();
    approved(&producer, &reader, &after, "with the rotated token, no restart").await?;
    assert_eq!(sim.ledger().len(), 2 + after.len(), "every verification ran one check at Onfido");

    // Nothing rotates twice, and the refused value never became a rotation.
    let rotated = if rotated.is_empty() { rotated } else { rotations(&worker.store, &name, Duration::ZERO).await? };
    assert_eq!(rotated.len(), 1, "one rotation audited: {rotated:?}");
    let entry = &rotated[0];
    assert_eq!(entry.actor, "kyc-worker");
    assert!(entry.detail.contains(&format!("providers[{name}].api_key")), "the field is named: {}", entry.detail);
    for token in [OLD_TOKEN, NEW_TOKEN, LIVE_TOKEN] {
        assert!(!entry.detail.contains(token), "never the value: {}", entry.detail);
    }

    shutdown.cancel();
    worker.join.await??;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
