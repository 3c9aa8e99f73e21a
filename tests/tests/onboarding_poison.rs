//! The onboarding orchestrator under poison: an input it can never apply
//! goes to the DLQ at once, one that keeps failing for a reason that may
//! pass is retried through `onboarding.*.retry` a bounded number of rounds
//! and then dead-lettered, instead of either looping in place forever.

use anyhow::{Context, Result};
use std::time::Duration;
use switchyard_canonical::kyc::{DocumentKind, IdDocument, Person};
use switchyard_canonical::onboarding::{Applicant, OnboardingAction, OnboardingCommand};
use switchyard_e2e::checks::CommandProducer;
use switchyard_e2e::{TestEnv, TopicReader};
use switchyard_localstack::database_url;
use switchyard_onboarding::config::OnboardingTopics;
use switchyard_onboarding::handler::{row_of, ONBOARDING_COMMAND_SCHEMA};
use switchyard_onboarding::machine::{self, Limits};
use switchyard_onboarding::{start_orchestrator, OrchestratorConfig};
use switchyard_store::onboarding::{Commit, FlowWrite, OnboardingStore};
use switchyard_store::Store;
use tokio_util::sync::CancellationToken;

fn config(env: &TestEnv) -> OrchestratorConfig {
    let mut kafka = env.kafka.clone();
    kafka.group_id = format!("{}onboarding-orchestrator", env.prefix);
    // A publish to a missing topic fails after this, not after 15 s; and
    // the producer must not ask the broker to create it (tansu would).
    kafka.extra.insert("message.timeout.ms".into(), "1500".into());
    kafka.extra.insert("allow.auto.create.topics".into(), "false".into());
    OrchestratorConfig {
        kafka,
        schema_registry_url: env.registry.base_url(),
        database_url: database_url(),
        topics: OnboardingTopics::with_prefix(&env.prefix),
        limits: Limits { max_kyc_attempts: 3, max_resends: 1, step_timeout_ms: 60_000, evidence_timeout_ms: 60_000, decision_timeout_ms: 60_000 },
        sweep_interval_ms: 200,
        // The sweep re-sends unsent outbox rows too; kept out of the way so
        // what is measured is the handler's retry budget.
        outbox_grace_ms: 600_000,
        retention_ms: 24 * 3600 * 1000,
        admin_bind: None,
        max_in_flight: 50,
        max_retry_rounds: 2,
        retry_topic_delay_ms: 200,
        pii_keys: Vec::new(),
    }
}

fn start_command(env: &TestEnv, name: &str) -> OnboardingCommand {
    let run = env.prefix.trim_end_matches('.').rsplit('-').next().unwrap_or("run").to_owned();
    OnboardingCommand {
        subject_id: format!("app-{run}-{name}"),
        idempotency_key: format!("{run}-{name}-start"),
        flow_id: format!("f-{run}-{name}"),
        action: OnboardingAction::Start,
        applicant: Some(Applicant {
            person: Person { first_name: "Ada".into(), last_name: "Lovelace".into(), date_of_birth: Some("1990-12-10".into()), email: None },
            document: IdDocument { kind: DocumentKind::Passport, issuing_country: "GBR".into(), front_ref: "doc://front".into(), back_ref: None },
            selfie_ref: None,
            nationality: None,
            phone: None,
            ip: None,
            session_id: None,
        }),
        evidence: None,
        decision: None,
        requested_at_ms: switchyard_canonical::now_ms(),
    }
}

/// A flow whose outbox holds a row no code can publish (a kind this version
/// does not know, as after a downgrade): re-sending it can never succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_outbox_failure_is_dead_lettered_without_retry_rounds() -> Result<()> {
    let env = TestEnv::new("onb-poison-perm").await?;
    let config = config(&env);
    let cmd = start_command(&env, "bogus-outbox");
    let store = Store::connect(&database_url()).await?;
    let flows = OnboardingStore::open(&store, &config.topics.commands).await?;
    let applicant = cmd.applicant.clone().context("applicant")?;
    let t = machine::start(&cmd, applicant, "corr-poison", &config.limits, switchyard_canonical::now_ms());
    let row = row_of(&t.flow)?;
    let write = FlowWrite { row: &row, expected_version: None, input_key: "cmd:earlier", outbox: vec![("from-a-newer-version", "{}".into())], audit: vec![] };
    assert_eq!(flows.commit(&write).await?, Commit::Applied);

    let dlq = TopicReader::new(&env.kafka, &env.topic("onboarding.commands.v1.dlq"))?;
    let retries = TopicReader::new(&env.kafka, &env.topic("onboarding.commands.v1.retry"))?;
    let token = CancellationToken::new();
    let orchestrator = start_orchestrator(config, token.clone()).await?;
    // The START re-sent (a core system retrying): a duplicate, whose
    // handling flushes the flow's unsent outbox and meets the bad row.
    CommandProducer::new(&env, "onboarding", ONBOARDING_COMMAND_SCHEMA).await?.send(&cmd.subject_id, &cmd.idempotency_key, &cmd).await?;

    let dead = dlq.read_up_to(1, Duration::from_secs(30)).await?;
    assert_eq!(dead.len(), 1, "the command is dead-lettered, not retried forever");
    let reason = dead[0].headers.get("dlq-reason").cloned().unwrap_or_default();
    assert!(reason.contains("from-a-newer-version"), "the reason names the bad row: {reason}");
    assert_eq!(dead[0].headers.get("dlq-error-class").map(String::as_str), Some("manual_repair"), "{:?}", dead[0].headers);
    assert!(!dead[0].headers.contains_key("retry-attempt"), "no retry rounds for a permanent failure: {:?}", dead[0].headers);
    assert!(retries.read_up_to(1, Duration::from_secs(1)).await?.is_empty(), "nothing went through the retry topic");
    token.cancel();
    orchestrator.join.await??;
    Ok(())
}

/// The KYC commands topic missing (a broker-side failure that could pass):
/// the committed START cannot publish its KYC command, is retried through
/// the retry topic `max_retry_rounds` times, then dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_failure_is_retried_a_bounded_number_of_rounds_then_dead_lettered() -> Result<()> {
    let env = TestEnv::new("onb-poison-transient").await?;
    let mut config = config(&env);
    config.topics.kyc_commands = env.topic("kyc.commands.v1.not-created");
    let cmd = start_command(&env, "kyc-topic-missing");
    let dlq = TopicReader::new(&env.kafka, &env.topic("onboarding.commands.v1.dlq"))?;
    let retries = TopicReader::new(&env.kafka, &env.topic("onboarding.commands.v1.retry"))?;
    let token = CancellationToken::new();
    let orchestrator = start_orchestrator(config, token.clone()).await?;
    CommandProducer::new(&env, "onboarding", ONBOARDING_COMMAND_SCHEMA).await?.send(&cmd.subject_id, &cmd.idempotency_key, &cmd).await?;

    let dead = dlq.read_up_to(1, Duration::from_secs(60)).await?;
    assert_eq!(dead.len(), 1, "dead-lettered once the retry budget is spent, not retried forever");
    let reason = dead[0].headers.get("dlq-reason").cloned().unwrap_or_default();
    assert!(reason.contains("retries exhausted after 2 rounds"), "{reason}");
    assert_eq!(
        dead[0].headers.get("dlq-source-topic").map(String::as_str),
        Some(env.topic("onboarding.commands.v1").as_str()),
        "reported at its original position, where a replay starts"
    );
    let rounds = retries.read_up_to(3, Duration::from_secs(2)).await?;
    let attempts: Vec<&str> = rounds.iter().filter_map(|r| r.headers.get("retry-attempt").map(String::as_str)).collect();
    assert_eq!(attempts, ["1", "2"], "two rounds through the retry topic");
    token.cancel();
    orchestrator.join.await??;
    Ok(())
}
