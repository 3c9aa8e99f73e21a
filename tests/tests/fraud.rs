//! Fraud end to end: real broker, real PostgreSQL, Sardine and SEON
//! simulators over HTTP, the fraud worker in-process. Every decision and
//! the feedback path are reached through each vendor.

use anyhow::Result;
use std::collections::HashMap;
use std::time::Duration;
use switchyard_canonical::check::FlowStep;
use switchyard_canonical::fraud::{
    FeedbackKind, FraudAction, FraudCommand, FraudDecision, FraudEvent, FraudFeedback, FraudOutcome, FraudReason, FraudStatus, FraudTransaction,
};
use switchyard_canonical::{ErrorClass, ErrorCode};
use switchyard_e2e::checks::{check_config, provider, CommandProducer, OutcomeReader};
use switchyard_e2e::TestEnv;
use switchyard_simulators::{sardine, seon, SimulatorHandle};
use switchyard_worker::check_config::{CheckProviderConfig, CheckVendorKind};
use switchyard_worker::check_run::start_check_worker;
use switchyard_worker::config::SecretSource;
use switchyard_worker::fraud::{Fraud, FRAUD_COMMAND_SCHEMA, FRAUD_OUTCOME_SCHEMA};
use tokio_util::sync::CancellationToken;

fn score(run: &str, name: &str, event: FraudEvent, email: &str, ip: Option<&str>, amount_minor: Option<i64>) -> FraudCommand {
    FraudCommand {
        subject_id: format!("{run}cust-{name}"),
        idempotency_key: format!("{run}fraud-{name}"),
        flow_id: Some(format!("{run}flow-{name}")),
        action: FraudAction::Score,
        event,
        email: Some(email.into()),
        phone: Some("+447700900123".into()),
        ip: ip.map(str::to_owned),
        session_id: None,
        transaction: amount_minor.map(|a| FraudTransaction { transaction_id: format!("{run}tx-{name}"), amount_minor: a, currency: "EUR".into() }),
        feedback: None,
        requested_at_ms: switchyard_canonical::now_ms(),
    }
}

fn feedback(of: &FraudCommand, name: &str, kind: FeedbackKind) -> FraudCommand {
    let tx = of.transaction.as_ref().map_or_else(|| of.idempotency_key.clone(), |t| t.transaction_id.clone());
    FraudCommand {
        idempotency_key: format!("{}-{name}", of.idempotency_key),
        action: FraudAction::Feedback,
        transaction: None,
        feedback: Some(FraudFeedback { kind, transaction_id: tx, reason: Some("issuer reported 10.4".into()), occurred_at_ms: 1 }),
        ..of.clone()
    }
}

struct Expect {
    status: FraudStatus,
    decision: Option<FraudDecision>,
    reason: Option<FraudReason>,
}

fn expect(status: FraudStatus, decision: Option<FraudDecision>, reason: Option<FraudReason>) -> Expect {
    Expect { status, decision, reason }
}

async fn every_decision_through(name: &str, vendor: CheckProviderConfig, sim: SimulatorHandle) -> Result<()> {
    let env = TestEnv::new(name).await?;
    let run = env.prefix.clone();
    let shutdown = CancellationToken::new();
    let primary = vendor.name.clone();
    let worker = start_check_worker::<Fraud>(check_config(&env, "fraud", vec![vendor], &primary), shutdown.clone()).await?;
    let producer = CommandProducer::new(&env, "fraud", FRAUD_COMMAND_SCHEMA).await?;
    let reader = OutcomeReader::new(&env, "fraud", FRAUD_OUTCOME_SCHEMA)?;

    let allowed = score(&run, "allow", FraudEvent::Payment, "ada@example.com", Some("81.2.69.160"), Some(5_000));
    let mut invalid = score(&run, "invalid", FraudEvent::Payment, "ada@example.com", None, None);
    invalid.transaction = None;
    let stranger = score(&run, "stranger", FraudEvent::Onboarding, "eve@example.com", None, None);
    let cases = vec![
        (allowed.clone(), expect(FraudStatus::Scored, Some(FraudDecision::Allow), None)),
        (score(&run, "disposable", FraudEvent::Onboarding, "x@mailinator.com", None, None), expect(FraudStatus::Scored, Some(FraudDecision::Review), Some(FraudReason::DisposableEmail))),
        (score(&run, "proxy", FraudEvent::Login, "bob@example.com", Some("10.66.1.2"), None), expect(FraudStatus::Scored, Some(FraudDecision::Review), Some(FraudReason::ProxyOrVpn))),
        (score(&run, "amount", FraudEvent::Payout, "bob@example.com", None, Some(2_500_000)), expect(FraudStatus::Scored, Some(FraudDecision::Review), Some(FraudReason::UnusualAmount))),
        (score(&run, "block", FraudEvent::Payment, "fraudster@example.com", None, Some(9_900)), expect(FraudStatus::Scored, Some(FraudDecision::Block), Some(FraudReason::Blocklisted))),
        (invalid, expect(FraudStatus::Rejected, None, None)),
        // Same subject as the allowed payment: key order puts it after the score.
        (feedback(&allowed, "chargeback", FeedbackKind::Chargeback), expect(FraudStatus::FeedbackAccepted, None, None)),
        // Feedback about something the vendor never scored.
        (feedback(&stranger, "unknown", FeedbackKind::ConfirmedFraud), expect(FraudStatus::Failed, None, None)),
    ];
    for (cmd, _) in &cases {
        producer.send(&cmd.subject_id, &cmd.idempotency_key, cmd).await?;
    }
    producer.send(&cases[4].0.subject_id, &cases[4].0.idempotency_key, &cases[4].0).await?;
    let outcomes = reader.collect::<FraudOutcome>(cases.len() + 1, Duration::from_secs(60)).await?;
    let mut by_key: HashMap<String, Vec<FraudOutcome>> = HashMap::new();
    for (o, _) in outcomes {
        by_key.entry(o.idempotency_key.clone()).or_default().push(o);
    }
    for (cmd, e) in &cases {
        let o = &by_key[&cmd.idempotency_key][0];
        assert_eq!((o.status, o.decision), (e.status, e.decision), "{primary}: {}: {o:?}", cmd.idempotency_key);
        assert_eq!((o.step, o.action, o.flow_id.as_ref()), (FlowStep::Fraud, cmd.action, cmd.flow_id.as_ref()));
        assert_eq!(o.terminal, e.decision != Some(FraudDecision::Review), "only review waits for an analyst");
        if let Some(r) = e.reason {
            assert!(o.reasons.contains(&r), "{primary}: {:?} lacks {r:?}", o.reasons);
        }
        match (o.status, o.decision) {
            (FraudStatus::Scored, Some(FraudDecision::Allow)) => assert!(o.score.is_some_and(|s| s < 0.5)),
            (FraudStatus::Scored, Some(_)) => assert!(o.score.is_some_and(|s| s >= 0.5)),
            (FraudStatus::Rejected, _) => assert_eq!(o.error.as_ref().map(|e| (e.class, e.code)), Some((ErrorClass::Permanent, ErrorCode::InvalidRequest))),
            (FraudStatus::Failed, _) => {
                assert_eq!(o.error.as_ref().map(|e| e.class), Some(ErrorClass::Permanent));
                assert_eq!(o.provider.as_deref(), Some(primary.as_str()));
            }
            _ => {}
        }
    }
    let blocked = &by_key[&cases[4].0.idempotency_key];
    assert_eq!(blocked.iter().filter(|o| o.replayed).count(), 1, "the duplicate was answered from the store");
    assert_eq!(sim.ledger().len(), 5, "one vendor score per scoring command, none for the duplicate");
    shutdown.cancel();
    worker.join.await??;
    sim.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_decision_and_feedback_through_sardine() -> Result<()> {
    let sim = sardine::spawn_sardine(sardine::SardineConfig::local()).await?;
    let mut vendor = provider("sardine", CheckVendorKind::Sardine, &sim.base_url(), "sardine_test_client");
    vendor.api_secret = Some(SecretSource::inline("sardine-secret"));
    every_decision_through("fraud-sardine", vendor, sim).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_decision_and_feedback_through_seon() -> Result<()> {
    let sim = seon::spawn_seon(seon::SeonConfig::local()).await?;
    let vendor = provider("seon", CheckVendorKind::Seon, &sim.base_url(), "seon_test_switchyard");
    every_decision_through("fraud-seon", vendor, sim).await
}

/// A vendor that hangs after scoring: the timeout is retried under the same
/// transaction id, and SEON answers the repeat from its record.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_score_that_times_out_is_retried_under_the_same_transaction() -> Result<()> {
    let env = TestEnv::new("fraud-hang").await?;
    let mut sim_config = seon::SeonConfig::local();
    sim_config.faults = switchyard_simulators::FaultPlan { hang_after_accept_ratio: 1.0, hang_ms: 1500, seed: 9, ..Default::default() };
    let sim = seon::spawn_seon(sim_config).await?;
    let mut vendor = provider("seon", CheckVendorKind::Seon, &sim.base_url(), "seon_test_switchyard");
    vendor.timeout_ms = 300;
    let config = check_config(&env, "fraud", vec![vendor], "seon");
    let shutdown = CancellationToken::new();
    let worker = start_check_worker::<Fraud>(config, shutdown.clone()).await?;
    let producer = CommandProducer::new(&env, "fraud", FRAUD_COMMAND_SCHEMA).await?;
    let reader = OutcomeReader::new(&env, "fraud", FRAUD_OUTCOME_SCHEMA)?;
    let cmd = score(&env.prefix, "hang", FraudEvent::Payment, "ada@example.com", None, Some(1_000));
    producer.send(&cmd.subject_id, &cmd.idempotency_key, &cmd).await?;
    // Hangs apply to executions only; the replay of the stored reply is instant.
    let (o, _) = reader.collect::<FraudOutcome>(1, Duration::from_secs(60)).await?.remove(0);
    assert_eq!((o.status, o.decision), (FraudStatus::Scored, Some(FraudDecision::Allow)), "{o:?}");
    assert!(o.attempts >= 2, "{o:?}");
    assert_eq!(sim.ledger().len(), 1, "scored once, answered again from the vendor's record");
    assert!(sim.stats().idempotent_replays >= 1);
    shutdown.cancel();
    worker.join.await??;
    Ok(())
}
