//! KYC end to end: real broker, real PostgreSQL, Onfido and Sumsub
//! simulators over HTTP, the kyc worker in-process. Every outcome class is
//! reached through each vendor, driven by the simulators' magic inputs.

use anyhow::Result;
use std::collections::HashMap;
use std::time::Duration;
use switchyard_canonical::kyc::{DocumentKind, IdDocument, KycCommand, KycOutcome, KycReason, KycStatus, Person};
use switchyard_canonical::check::FlowStep;
use switchyard_canonical::{ErrorClass, ErrorCode};
use switchyard_e2e::checks::{check_config, provider, CommandProducer, OutcomeReader};
use switchyard_e2e::TestEnv;
use switchyard_simulators::{onfido, sumsub, SimulatorHandle};
use switchyard_worker::check_config::{CheckProviderConfig, CheckVendorKind};
use switchyard_worker::check_run::start_check_worker;
use switchyard_worker::config::SecretSource;
use switchyard_worker::kyc::{Kyc, KYC_COMMAND_SCHEMA, KYC_OUTCOME_SCHEMA};
use tokio_util::sync::CancellationToken;

fn command(run: &str, name: &str, last_name: &str) -> KycCommand {
    KycCommand {
        subject_id: format!("{run}app-{name}"),
        idempotency_key: format!("{run}kyc-{name}"),
        flow_id: Some(format!("{run}flow-{name}")),
        person: Person { first_name: "Ada".into(), last_name: last_name.into(), date_of_birth: Some("1990-12-10".into()), email: None },
        document: IdDocument { kind: DocumentKind::Passport, issuing_country: "GBR".into(), front_ref: format!("doc://{name}/front"), back_ref: None },
        selfie_ref: Some(format!("doc://{name}/selfie")),
        requested_at_ms: switchyard_canonical::now_ms(),
    }
}

fn onfido_provider(sim: &SimulatorHandle) -> CheckProviderConfig {
    provider("onfido", CheckVendorKind::Onfido, &sim.base_url(), "api_sandbox.switchyard")
}

fn sumsub_provider(sim: &SimulatorHandle) -> CheckProviderConfig {
    let mut p = provider("sumsub", CheckVendorKind::Sumsub, &sim.base_url(), "sbx:switchyard");
    p.api_secret = Some(SecretSource::inline("sumsub-secret"));
    p.level_name = Some("basic-kyc-level".into());
    p
}

/// The commands that reach every outcome class, and what each must yield.
fn scenarios(run: &str) -> Vec<(KycCommand, KycStatus, Option<KycReason>)> {
    let mut blurry = command(run, "blurry", "Lovelace");
    blurry.document.front_ref = "doc://blurry-scan/front".into();
    let mut invalid = command(run, "invalid", "Lovelace");
    invalid.document.issuing_country = "GB".into();
    // Passes our validation, refused by the vendor's: a permanent failure.
    let mut bad_email = command(run, "bad-email", "Lovelace");
    bad_email.person.email = Some("ada.example.com".into());
    vec![
        (command(run, "clear", "Lovelace"), KycStatus::Approved, None),
        (command(run, "forged", "Forged"), KycStatus::Declined, Some(KycReason::DocumentForged)),
        (blurry, KycStatus::Resubmit, Some(KycReason::DocumentUnreadable)),
        (command(run, "expired", "Expired"), KycStatus::Resubmit, Some(KycReason::DocumentExpired)),
        (command(run, "stepup", "StepUp"), KycStatus::StepUpRequired, Some(KycReason::AdditionalDocumentRequired)),
        (command(run, "review", "Review"), KycStatus::ManualReview, None),
        (invalid, KycStatus::Rejected, None),
        (bad_email, KycStatus::Failed, None),
    ]
}

/// Runs every scenario through `primary` and checks each outcome.
async fn every_outcome_class_through(name: &str, primary: &str, vendor: impl Fn(&SimulatorHandle) -> CheckProviderConfig, sim: SimulatorHandle) -> Result<()> {
    let env = TestEnv::new(name).await?;
    let shutdown = CancellationToken::new();
    let worker = start_check_worker::<Kyc>(check_config(&env, "kyc", vec![vendor(&sim)], primary), shutdown.clone()).await?;
    let producer = CommandProducer::new(&env, "kyc", KYC_COMMAND_SCHEMA).await?;
    let reader = OutcomeReader::new(&env, "kyc", KYC_OUTCOME_SCHEMA)?;
    let cases = scenarios(&env.prefix);
    for (cmd, _, _) in &cases {
        producer.send(&cmd.subject_id, &cmd.idempotency_key, cmd).await?;
    }
    // The approved verification again: answered from the store.
    producer.send(&cases[0].0.subject_id, &cases[0].0.idempotency_key, &cases[0].0).await?;
    let outcomes = reader.collect::<KycOutcome>(cases.len() + 1, Duration::from_secs(60)).await?;

    let mut by_key: HashMap<String, Vec<(KycOutcome, String)>> = HashMap::new();
    for (o, corr) in outcomes {
        by_key.entry(o.idempotency_key.clone()).or_default().push((o, corr));
    }
    for (cmd, status, reason) in &cases {
        let got = &by_key[&cmd.idempotency_key];
        let (o, corr) = &got[0];
        assert_eq!(o.status, *status, "{primary}: {}: {o:?}", cmd.idempotency_key);
        assert_eq!(o.terminal, status.terminal());
        assert_eq!((o.step, o.flow_id.as_ref(), o.subject_id.as_str()), (FlowStep::Kyc, cmd.flow_id.as_ref(), cmd.subject_id.as_str()));
        assert_eq!(corr, &format!("corr-{}", cmd.idempotency_key), "correlation id carried to the outcome");
        if let Some(r) = reason {
            assert!(o.reasons.contains(r), "{primary}: {:?} lacks {r:?}", o.reasons);
        }
        match status {
            KycStatus::Rejected => {
                assert_eq!(o.error.as_ref().map(|e| e.code), Some(ErrorCode::InvalidRequest));
                assert_eq!(o.provider, None, "no vendor call for an invalid command");
            }
            KycStatus::Failed => {
                assert_eq!(o.error.as_ref().map(|e| (e.class, e.code)), Some((ErrorClass::Permanent, ErrorCode::InvalidRequest)));
                assert_eq!(o.provider.as_deref(), Some(primary));
            }
            _ => {
                assert_eq!(o.provider.as_deref(), Some(primary));
                assert!(o.provider_reference.is_some());
            }
        }
    }
    let approved = &by_key[&cases[0].0.idempotency_key];
    assert_eq!(approved.len(), 2);
    assert_eq!(approved.iter().filter(|(o, _)| o.replayed).count(), 1, "the duplicate was answered from the store");
    assert_eq!(approved[0].0.provider_reference, approved[1].0.provider_reference);
    let checks = sim.ledger();
    assert_eq!(checks.len(), cases.len() - 2, "one billable check per command the vendor took, none for the duplicate: {checks:?}");
    shutdown.cancel();
    worker.join.await??;
    // Each vendor call is in the audit log (written by the time the worker
    // has drained), in the shape `switchyard scorecard` and `trace` read.
    let trail = worker.store.audit_trail(&[cases[0].0.subject_id.as_str()]).await?;
    let calls: Vec<_> = trail.iter().filter(|e| e.action == "vendor_call").collect();
    let last = calls.last().unwrap_or_else(|| panic!("the approved check's vendor call is audited: {trail:?}"));
    assert!(calls.iter().all(|e| e.actor == "kyc-worker"), "{calls:?}");
    let detail: serde_json::Value = serde_json::from_str(&last.detail)?;
    assert_eq!((detail["provider"].as_str(), detail["operation"].as_str(), detail["result"].as_str()), (Some(primary), Some("kyc"), Some("ok")), "{detail}");
    assert!(detail["latency_ms"].is_u64(), "{detail}");
    sim.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_outcome_class_through_onfido() -> Result<()> {
    let sim = onfido::spawn_onfido(onfido::OnfidoConfig::local()).await?;
    every_outcome_class_through("kyc-onfido", "onfido", onfido_provider, sim).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_outcome_class_through_sumsub() -> Result<()> {
    let sim = sumsub::spawn_sumsub(sumsub::SumsubConfig::local()).await?;
    every_outcome_class_through("kyc-sumsub", "sumsub", sumsub_provider, sim).await
}

/// A review slower than the poll budget sends the command round the retry
/// topic; the redelivery resumes the same check instead of starting another.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_review_resumes_the_same_check_after_the_retry_topic() -> Result<()> {
    let env = TestEnv::new("kyc-slow").await?;
    let sim = onfido::spawn_onfido(onfido::OnfidoConfig { settle_after: Duration::from_millis(1500), ..onfido::OnfidoConfig::local() }).await?;
    let mut vendor = onfido_provider(&sim);
    vendor.poll_budget_ms = 300;
    let mut config = check_config(&env, "kyc", vec![vendor], "onfido");
    config.retry.max_attempts = 1;
    let shutdown = CancellationToken::new();
    let worker = start_check_worker::<Kyc>(config, shutdown.clone()).await?;
    let producer = CommandProducer::new(&env, "kyc", KYC_COMMAND_SCHEMA).await?;
    let reader = OutcomeReader::new(&env, "kyc", KYC_OUTCOME_SCHEMA)?;
    let retries = switchyard_e2e::TopicReader::new(&env.kafka, &env.topic("kyc.commands.v1.retry"))?;
    let cmd = command(&env.prefix, "slow", "Lovelace");
    producer.send(&cmd.subject_id, &cmd.idempotency_key, &cmd).await?;

    let (outcome, _) = reader.collect::<KycOutcome>(1, Duration::from_secs(60)).await?.remove(0);
    assert_eq!(outcome.status, KycStatus::Approved, "{outcome:?}");
    assert!(!retries.read_up_to(1, Duration::from_secs(5)).await?.is_empty(), "the first delivery went round the retry topic");
    let checks = sim.ledger();
    assert_eq!(checks.len(), 1, "one check, resumed: {checks:?}");
    assert_eq!(outcome.provider_reference.as_deref(), Some(checks[0].vendor_id.as_str()));
    assert!(sim.stats().idempotent_replays >= 2, "applicant and check creation were replayed under the same keys");
    shutdown.cancel();
    worker.join.await??;
    Ok(())
}

/// Partial data: an ID card without its back side is a soft failure at
/// Sumsub; a selfie that does not match is a face mismatch at either vendor.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partial_documents_and_face_mismatches_map_to_our_reasons() -> Result<()> {
    let env = TestEnv::new("kyc-partial").await?;
    let onfido_sim = onfido::spawn_onfido(onfido::OnfidoConfig::local()).await?;
    let sumsub_sim = sumsub::spawn_sumsub(sumsub::SumsubConfig::local()).await?;
    let ctx = switchyard_adapters::CallContext { correlation_id: "c".into(), traceparent: switchyard_canonical::TraceParent::new_root().to_string() };
    let polling = switchyard_adapters::kyc::Polling { interval: Duration::from_millis(50), budget: Duration::from_secs(5) };
    let onfido = switchyard_adapters::kyc::onfido::OnfidoAdapter::new(
        "onfido", &onfido_sim.base_url(), switchyard_adapters::Secret::new("api_sandbox.switchyard"), switchyard_adapters::http::Transport::new(Duration::from_secs(2), 4), polling,
    )?;
    let sumsub = switchyard_adapters::kyc::sumsub::SumsubAdapter::new(
        "sumsub", &sumsub_sim.base_url(), switchyard_adapters::Secret::new("sbx:switchyard"),
        switchyard_adapters::Secret::new("sumsub-secret"), "basic-kyc-level", switchyard_adapters::http::Transport::new(Duration::from_secs(2), 4), polling,
    )?;
    let mut card = command(&env.prefix, "card", "Lovelace");
    card.document.kind = DocumentKind::NationalIdentityCard;
    let v = sumsub.verify(&card, &card.idempotency_key, &ctx).await?;
    assert_eq!((v.status, v.reasons), (KycStatus::Resubmit, vec![KycReason::DocumentSideMissing]));
    assert!(v.applicant_message.is_some_and(|m| m.contains("back side")), "the user-safe comment is passed on");

    let mut face = command(&env.prefix, "face", "Lovelace");
    face.selfie_ref = Some("doc://mismatch/selfie".into());
    let v = onfido.verify(&face, &face.idempotency_key, &ctx).await?;
    assert_eq!((v.status, v.reasons), (KycStatus::ManualReview, vec![KycReason::FaceMismatch]));
    let v = sumsub.verify(&face, &format!("{}-s", face.idempotency_key), &ctx).await?;
    assert_eq!((v.status, v.reasons), (KycStatus::Resubmit, vec![KycReason::FaceMismatch]));
    // Sumsub's natural key: the same verification again resumes the applicant.
    let again = sumsub.verify(&face, &format!("{}-s", face.idempotency_key), &ctx).await?;
    assert_eq!(again.vendor_reference, v.vendor_reference);
    Ok(())
}

/// The same key with another document is a collision: rejected from the
/// store, the vendor never hears of it; the first verification stands.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_reused_for_another_document_is_a_collision_without_a_vendor_call() -> Result<()> {
    let env = TestEnv::new("kyc-collide").await?;
    let sim = sumsub::spawn_sumsub(sumsub::SumsubConfig::local()).await?;
    let shutdown = CancellationToken::new();
    let worker = start_check_worker::<Kyc>(check_config(&env, "kyc", vec![sumsub_provider(&sim)], "sumsub"), shutdown.clone()).await?;
    let producer = CommandProducer::new(&env, "kyc", KYC_COMMAND_SCHEMA).await?;
    let reader = OutcomeReader::new(&env, "kyc", KYC_OUTCOME_SCHEMA)?;
    let first = command(&env.prefix, "collide", "Lovelace");
    producer.send(&first.subject_id, &first.idempotency_key, &first).await?;
    let (o, _) = reader.collect::<KycOutcome>(1, Duration::from_secs(30)).await?.remove(0);
    assert_eq!(o.status, KycStatus::Approved);
    let requests = sim.stats().requests;

    let mut other = first.clone();
    other.document.front_ref = "doc://someone-else/front".into();
    producer.send(&other.subject_id, &other.idempotency_key, &other).await?;
    let (o, _) = reader.collect::<KycOutcome>(1, Duration::from_secs(30)).await?.remove(0);
    assert_eq!((o.status, o.error.as_ref().map(|e| e.code)), (KycStatus::Rejected, Some(ErrorCode::IdempotencyCollision)));
    assert_eq!(sim.stats().requests, requests, "the colliding command never reached the vendor");
    let metrics = worker.metrics.render();
    assert!(metrics.contains("switchyard_idempotency_collisions_total{domain=\"kyc\"} 1"), "{metrics}");
    shutdown.cancel();
    worker.join.await??;
    Ok(())
}

/// Bytes that are not a KYC command go to the DLQ with the reason; the
/// worker goes on with the next command.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn undecodable_commands_are_dead_lettered_and_the_worker_goes_on() -> Result<()> {
    let env = TestEnv::new("kyc-dlq").await?;
    let sim = onfido::spawn_onfido(onfido::OnfidoConfig::local()).await?;
    let shutdown = CancellationToken::new();
    let worker = start_check_worker::<Kyc>(check_config(&env, "kyc", vec![onfido_provider(&sim)], "onfido"), shutdown.clone()).await?;
    let producer = CommandProducer::new(&env, "kyc", KYC_COMMAND_SCHEMA).await?;
    let reader = OutcomeReader::new(&env, "kyc", KYC_OUTCOME_SCHEMA)?;
    let dlq = switchyard_e2e::TopicReader::new(&env.kafka, &env.topic("kyc.commands.v1.dlq"))?;
    let raw = switchyard_bus::Outbound {
        topic: env.topic("kyc.commands.v1"),
        key: Some(b"bad-1".to_vec()),
        payload: b"{\"subject_id\":\"json, not avro\"}".to_vec(),
        headers: vec![],
    };
    switchyard_bus::Publisher::new(&env.kafka)?.publish(&raw).await?;
    let good = command(&env.prefix, "after-bad", "Lovelace");
    producer.send(&good.subject_id, &good.idempotency_key, &good).await?;

    let dead = dlq.collect(1, Duration::from_secs(30)).await?.remove(0);
    assert!(dead.headers.get("dlq-reason").is_some_and(|r| r.contains("magic byte")), "{:?}", dead.headers);
    assert_eq!(dead.headers.get("dlq-error-class").map(String::as_str), Some("manual_repair"));
    assert_eq!(dead.payload, raw.payload, "original bytes kept");
    let (o, _) = reader.collect::<KycOutcome>(1, Duration::from_secs(30)).await?.remove(0);
    assert_eq!((o.subject_id.as_str(), o.status), (good.subject_id.as_str(), KycStatus::Approved));
    shutdown.cancel();
    worker.join.await??;
    Ok(())
}
