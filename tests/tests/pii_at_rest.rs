//! Personal data at rest: the real onboarding orchestrator (broker, PostgreSQL)
//! runs an applicant with distinctive personal data; then every table of
//! the database is scanned as text (what a `pg_dump` would show) for it.
//! Then `switchyard pii erase` (the binary) crypto-shreds the applicant: a
//! copy of the sealed row taken before (a backup) no longer opens, the
//! flow row holds nothing of them, and the audit trail keeps its
//! transitions plus a `pii_erased` attestation.
//!
//! Seen failing with encryption off (`pii_keys: Vec::new()` below): the scan
//! finds the name in `onboarding_flows` and `onboarding_outbox`.

use anyhow::{bail, Context, Result};
use sqlx::Row;
use std::time::{Duration, Instant};
use switchyard_adapters::secret::SecretSource;
use switchyard_canonical::kyc::{DocumentKind, IdDocument, Person};
use switchyard_canonical::onboarding::{Applicant, OnboardingAction, OnboardingCommand};
use switchyard_e2e::checks::CommandProducer;
use switchyard_e2e::{workspace_binary, TestEnv};
use switchyard_localstack::database_url;
use switchyard_onboarding::config::OnboardingTopics;
use switchyard_onboarding::machine::Limits;
use switchyard_onboarding::pii::{Pii, PiiError, PiiKeyConfig};
use switchyard_onboarding::{start_orchestrator, OrchestratorConfig};
use switchyard_store::Store;
use tokio_util::sync::CancellationToken;

fn pii_keys() -> Vec<PiiKeyConfig> {
    // base64 of 32 bytes; the key id names it for rotation.
    vec![PiiKeyConfig { id: "t1".into(), key: SecretSource::inline("cGlpLWF0LXJlc3QtdGVzdC1rZXktMzItYnl0ZXMhISE=") }]
}

/// Tables whose rows, read as text, contain `needle`.
async fn tables_containing(store: &Store, needle: &str) -> Result<Vec<String>> {
    let pool = store.pool();
    let tables = sqlx::query("SELECT table_name::text AS t FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'")
        .fetch_all(pool)
        .await?;
    let mut hits = Vec::new();
    for row in tables {
        let table: String = row.try_get("t")?;
        let sql = format!("SELECT COUNT(*) AS n FROM \"{table}\" t WHERE t::text LIKE $1");
        let n: i64 = sqlx::query(&sql).bind(format!("%{needle}%")).fetch_one(pool).await?.try_get("n")?;
        if n > 0 {
            hits.push(table);
        }
    }
    Ok(hits)
}

#[tokio::test(flavor = "multi_thread")]
async fn applicant_data_is_sealed_at_rest_and_erasure_shreds_it_but_keeps_the_audit_trail() -> Result<()> {
    let env = TestEnv::new("pii").await?;
    let run = env.prefix.trim_end_matches('.').rsplit('-').next().unwrap_or("run").to_owned();
    let surname = format!("Vantablack{run}");
    let email = format!("quintessa.{run}@example.org");
    let subject = format!("app-{run}-pii");
    let flow_id = format!("f-{run}-pii");

    let mut kafka = env.kafka.clone();
    kafka.group_id = format!("{}onboarding-orchestrator", env.prefix);
    let config = OrchestratorConfig {
        kafka,
        schema_registry_url: env.registry.base_url(),
        database_url: database_url(),
        topics: OnboardingTopics::with_prefix(&env.prefix),
        limits: Limits::default(),
        sweep_interval_ms: 200,
        outbox_grace_ms: 3_000,
        retention_ms: 24 * 3600 * 1000,
        admin_bind: None,
        max_in_flight: 10,
        max_retry_rounds: 2,
        retry_topic_delay_ms: 200,
        pii_keys: pii_keys(),
    };
    let shutdown = CancellationToken::new();
    let orchestrator = start_orchestrator(config, shutdown.clone()).await?;

    let commands = CommandProducer::new(&env, "onboarding", switchyard_onboarding::handler::ONBOARDING_COMMAND_SCHEMA).await?;
    let applicant = Applicant {
        person: Person { first_name: "Quintessa".into(), last_name: surname.clone(), date_of_birth: Some("1987-03-14".into()), email: Some(email.clone()) },
        document: IdDocument { kind: DocumentKind::Passport, issuing_country: "GBR".into(), front_ref: format!("doc://{run}/front"), back_ref: None },
        selfie_ref: None,
        nationality: Some("GB".into()),
        phone: Some(format!("+4477009{}", &run[..run.len().min(5)])),
        ip: Some("192.0.2.77".into()),
        session_id: None,
    };
    let start = OnboardingCommand {
        subject_id: subject.clone(),
        idempotency_key: format!("{run}-pii-start"),
        flow_id: flow_id.clone(),
        action: OnboardingAction::Start,
        applicant: Some(applicant),
        evidence: None,
        decision: None,
        requested_at_ms: switchyard_canonical::now_ms(),
    };
    commands.send(&subject, &start.idempotency_key, &start).await?;

    // The flow started and its KYC command (which carries the applicant) was published.
    let deadline = Instant::now() + Duration::from_secs(60);
    let row = loop {
        if let Some(row) = orchestrator.flows.load(&flow_id).await? {
            if orchestrator.flows.unsent_of(&flow_id).await?.is_empty() {
                break row;
            }
        }
        if Instant::now() > deadline {
            bail!("flow {flow_id} not started and published within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(row.state, "kyc_pending");

    let store = Store::connect(&database_url()).await?;
    for needle in [surname.as_str(), email.as_str()] {
        let hits = tables_containing(&store, needle).await?;
        assert!(hits.is_empty(), "{needle:?} in clear in table(s) {hits:?}");
    }
    // Sealed, not lost: the orchestrator's own key opens it.
    let pii = Pii::from_config(&store, &pii_keys()).await?;
    let opened = pii.open(&subject, &flow_id, &row.data).await?;
    assert!(opened.contains(&surname), "the sealed flow opens to the applicant");
    let backup = row.data.clone();

    let out = std::process::Command::new(workspace_binary("switchyard")?)
        .args(["pii", "erase", &subject, "--actor", "dpo-ticket-4711", "--database-url", &database_url()])
        .output()
        .context("run switchyard pii erase")?;
    assert!(out.status.success(), "pii erase: {}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("data key destroyed") && said.contains("1 flow(s)"), "{said}");

    // The backup copy no longer opens: the data key is gone.
    assert!(matches!(pii.open(&subject, &flow_id, &backup).await, Err(PiiError::Erased)), "a pre-erasure copy still opens");
    let erased = orchestrator.flows.load(&flow_id).await?.context("flow row kept")?;
    assert!(erased.terminal && erased.data == switchyard_store::pii::ERASED, "{erased:?}");
    for needle in [surname.as_str(), email.as_str()] {
        assert!(tables_containing(&store, needle).await?.is_empty());
    }
    // The audit trail keeps the transition (no personal data in it) and attests the erasure.
    let trail = store.audit_trail(&[subject.as_str()]).await?;
    let actions: Vec<&str> = trail.iter().map(|r| r.action.as_str()).collect();
    assert!(actions.contains(&"onboarding_transition"), "{actions:?}");
    let attestation = trail.iter().find(|r| r.action == "pii_erased").context("no pii_erased audit entry")?;
    assert_eq!(attestation.actor, "dpo-ticket-4711");
    assert!(attestation.detail.contains("\"key_destroyed\":true"), "{}", attestation.detail);

    shutdown.cancel();
    orchestrator.join.await??;
    Ok(())
}
