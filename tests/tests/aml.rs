//! AML screening end to end: real broker, real PostgreSQL, ComplyAdvantage
//! and OpenSanctions simulators over HTTP, the aml worker in-process. Every
//! outcome class is reached through each vendor by the simulators' magic names.

use anyhow::Result;
use std::collections::HashMap;
use std::time::Duration;
use switchyard_canonical::aml::{AmlAction, AmlCommand, AmlOutcome, AmlStatus, AmlSubject, MatchedField, ScreeningList, SubjectKind};
use switchyard_canonical::check::FlowStep;
use switchyard_canonical::{ErrorClass, ErrorCode};
use switchyard_e2e::checks::{check_config, provider, CommandProducer, OutcomeReader};
use switchyard_e2e::TestEnv;
use switchyard_simulators::{comply_advantage, open_sanctions, SimulatorHandle};
use switchyard_worker::aml::{Aml, AML_COMMAND_SCHEMA, AML_OUTCOME_SCHEMA};
use switchyard_worker::check_config::{CheckProviderConfig, CheckVendorKind};
use switchyard_worker::check_run::start_check_worker;
use tokio_util::sync::CancellationToken;

fn command(run: &str, name: &str, first: &str, last: &str, birth: Option<&str>) -> AmlCommand {
    AmlCommand {
        subject_id: format!("{run}app-{name}"),
        idempotency_key: format!("{run}aml-{name}"),
        flow_id: Some(format!("{run}flow-{name}")),
        action: AmlAction::Screen,
        subject: AmlSubject {
            kind: SubjectKind::Person,
            full_name: format!("{first} {last}"),
            first_name: Some(first.into()),
            last_name: Some(last.into()),
            birth_date: birth.map(str::to_owned),
            country: Some("GB".into()),
        },
        lists: vec![],
        list_update: None,
        requested_at_ms: switchyard_canonical::now_ms(),
    }
}

struct Expect {
    status: AmlStatus,
    list: Option<ScreeningList>,
}

/// Commands for every class; `unlisted_confirmed` is what a known sanctioned
/// name without a birth date yields at this vendor.
fn scenarios(run: &str, partial_blocked: AmlStatus) -> Vec<(AmlCommand, Expect)> {
    let mut rescreen = command(run, "rescreen", "Ada", "Lovelace", Some("1990-12-10"));
    rescreen.action = AmlAction::Rescreen;
    rescreen.list_update = Some("ofac-sdn-2026-11-25".into());
    let mut invalid = command(run, "invalid", "Ada", "Lovelace", None);
    invalid.subject.country = Some("GBR".into());
    vec![
        (command(run, "clear", "Ada", "Lovelace", Some("1990-12-10")), Expect { status: AmlStatus::Clear, list: None }),
        (command(run, "similar", "Ivan", "Similar", Some("1985")), Expect { status: AmlStatus::PotentialMatch, list: Some(ScreeningList::Sanctions) }),
        (command(run, "pep", "Maria", "Politician", Some("1970")), Expect { status: AmlStatus::PotentialMatch, list: Some(ScreeningList::Pep) }),
        (command(run, "blocked", "Boris", "Blocked", Some("1961-03-04")), Expect { status: AmlStatus::ConfirmedMatch, list: Some(ScreeningList::Sanctions) }),
        (command(run, "partial", "Boris", "Blocked", None), Expect { status: partial_blocked, list: Some(ScreeningList::Sanctions) }),
        (rescreen, Expect { status: AmlStatus::Clear, list: None }),
        (invalid, Expect { status: AmlStatus::Rejected, list: None }),
        (command(run, "old", "Ada", "Lovelace", Some("1850")), Expect { status: AmlStatus::Failed, list: None }),
    ]
}

async fn every_outcome_class_through(name: &str, vendor: CheckProviderConfig, sim: SimulatorHandle, partial_blocked: AmlStatus) -> Result<()> {
    let env = TestEnv::new(name).await?;
    let shutdown = CancellationToken::new();
    let primary = vendor.name.clone();
    let worker = start_check_worker::<Aml>(check_config(&env, "aml", vec![vendor], &primary), shutdown.clone()).await?;
    let producer = CommandProducer::new(&env, "aml", AML_COMMAND_SCHEMA).await?;
    let reader = OutcomeReader::new(&env, "aml", AML_OUTCOME_SCHEMA)?;
    let cases = scenarios(&env.prefix, partial_blocked);
    for (cmd, _) in &cases {
        producer.send(&cmd.subject_id, &cmd.idempotency_key, cmd).await?;
    }
    producer.send(&cases[3].0.subject_id, &cases[3].0.idempotency_key, &cases[3].0).await?;
    let outcomes = reader.collect::<AmlOutcome>(cases.len() + 1, Duration::from_secs(60)).await?;
    let mut by_key: HashMap<String, Vec<AmlOutcome>> = HashMap::new();
    for (o, _) in outcomes {
        by_key.entry(o.idempotency_key.clone()).or_default().push(o);
    }
    for (cmd, expect) in &cases {
        let o = &by_key[&cmd.idempotency_key][0];
        assert_eq!(o.status, expect.status, "{primary}: {}: {o:?}", cmd.idempotency_key);
        assert_eq!((o.terminal, o.step, o.action), (expect.status.terminal(), FlowStep::Aml, cmd.action));
        assert_eq!(o.flow_id, cmd.flow_id);
        match expect.list {
            Some(list) => {
                assert!(o.matches.iter().any(|m| m.list == list && m.matched_fields.contains(&MatchedField::Name)), "{primary}: {o:?}");
                assert!(o.matches.iter().all(|m| (0.0..=1.0).contains(&m.score) && !m.entity_id.is_empty()));
            }
            None => assert!(o.matches.is_empty(), "{primary}: {o:?}"),
        }
        let error = o.error.as_ref().map(|e| (e.class, e.code));
        match o.status {
            AmlStatus::ConfirmedMatch => assert_eq!(error, Some((ErrorClass::ComplianceHold, ErrorCode::SanctionsMatch))),
            AmlStatus::Rejected | AmlStatus::Failed => assert_eq!(error, Some((ErrorClass::Permanent, ErrorCode::InvalidRequest))),
            _ => assert_eq!(error, None),
        }
    }
    let confirmed = &by_key[&cases[3].0.idempotency_key];
    assert!(confirmed[0].matches[0].matched_fields.contains(&MatchedField::BirthDate));
    assert_eq!(confirmed.iter().filter(|o| o.replayed).count(), 1, "the duplicate was answered from the store");
    assert_eq!(sim.stats().injected_faults, 0);
    shutdown.cancel();
    worker.join.await??;
    sim.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_outcome_class_through_comply_advantage() -> Result<()> {
    let sim = comply_advantage::spawn_comply_advantage(comply_advantage::ComplyAdvantageConfig::local()).await?;
    let vendor = provider("complyadvantage", CheckVendorKind::ComplyAdvantage, &sim.base_url(), "ca_test_switchyard");
    // ComplyAdvantage adjudicates the entity itself, birth date or not.
    every_outcome_class_through("aml-ca", vendor, sim, AmlStatus::ConfirmedMatch).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_outcome_class_through_open_sanctions() -> Result<()> {
    let sim = open_sanctions::spawn_open_sanctions(open_sanctions::OpenSanctionsConfig::local()).await?;
    let vendor = provider("opensanctions", CheckVendorKind::OpenSanctions, &sim.base_url(), "os_test_switchyard");
    // Scores only: without a birth date even an exact name stays potential.
    every_outcome_class_through("aml-os", vendor, sim, AmlStatus::PotentialMatch).await
}

/// A vendor that is down (503, a definite refusal) moves fresh screenings to
/// the secondary; one that answers 429 is retried in place, never moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn screenings_fail_over_on_definite_refusals_and_survive_rate_limits() -> Result<()> {
    let env = TestEnv::new("aml-failover").await?;
    let mut ca_config = comply_advantage::ComplyAdvantageConfig::local();
    ca_config.faults = switchyard_simulators::FaultPlan { unavailable_ratio: 1.0, seed: 3, ..Default::default() };
    let ca = comply_advantage::spawn_comply_advantage(ca_config).await?;
    let mut os_config = open_sanctions::OpenSanctionsConfig::local();
    os_config.faults = switchyard_simulators::FaultPlan { rate_limit_ratio: 0.3, retry_after_secs: 0, seed: 5, ..Default::default() };
    let os = open_sanctions::spawn_open_sanctions(os_config).await?;
    let vendors = vec![
        provider("complyadvantage", CheckVendorKind::ComplyAdvantage, &ca.base_url(), "ca_test_switchyard"),
        provider("opensanctions", CheckVendorKind::OpenSanctions, &os.base_url(), "os_test_switchyard"),
    ];
    let mut config = check_config(&env, "aml", vendors, "complyadvantage");
    config.retry.max_attempts = 6;
    let shutdown = CancellationToken::new();
    let worker = start_check_worker::<Aml>(config, shutdown.clone()).await?;
    let producer = CommandProducer::new(&env, "aml", AML_COMMAND_SCHEMA).await?;
    let reader = OutcomeReader::new(&env, "aml", AML_OUTCOME_SCHEMA)?;
    for i in 0..10 {
        let cmd = command(&env.prefix, &format!("fo-{i}"), "Ivan", "Similar", None);
        producer.send(&cmd.subject_id, &cmd.idempotency_key, &cmd).await?;
    }
    let outcomes = reader.collect::<AmlOutcome>(10, Duration::from_secs(60)).await?;
    for (o, _) in &outcomes {
        assert_eq!((o.status, o.provider.as_deref()), (AmlStatus::PotentialMatch, Some("opensanctions")), "{o:?}");
    }
    assert!(os.stats().injected_faults > 0, "rate limits were injected and absorbed");
    // Vendor calls are audited too: look for the failover itself.
    let trail = worker.store.audit_trail(&[outcomes[0].0.subject_id.as_str()]).await?;
    assert!(trail.iter().any(|e| e.action == "failover"), "the failover is in the audit log: {trail:?}");
    shutdown.cancel();
    worker.join.await??;
    Ok(())
}
