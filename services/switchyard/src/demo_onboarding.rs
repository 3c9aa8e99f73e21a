//! The onboarding part of `switchyard up`: KYC (Onfido), AML
//! (ComplyAdvantage) and fraud (SEON) workers on their simulators, the
//! onboarding orchestrator, and a handful of applicants whose magic inputs
//! reach approve, a step-up answered with a new document, a potential AML
//! match an analyst clears, an AML compliance hold and a fraud block. The
//! demo plays core banking and the analyst on `onboarding.commands.v1` and
//! prints each flow's path from `onboarding.events.v1`.

use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::time::Duration;
use switchyard_bus::{AvroDecoder, AvroEncoder, Outbound, Publisher};
use switchyard_canonical::check::FlowStep;
use switchyard_canonical::kyc::{DocumentKind, IdDocument, Person};
use switchyard_canonical::onboarding::{
    Applicant, Evidence, ManualDecision, ManualVerdict, OnboardingAction, OnboardingCommand, OnboardingEvent, OnboardingState,
};
use switchyard_localstack::{LocalStack, TopicReader};
use switchyard_onboarding::config::OnboardingTopics;
use switchyard_onboarding::handler::ONBOARDING_COMMAND_SCHEMA;
use switchyard_onboarding::machine::Limits;
use switchyard_onboarding::outbox::ONBOARDING_EVENT_SCHEMA;
use switchyard_onboarding::{start_orchestrator, OrchestratorConfig};
use switchyard_simulators::{comply_advantage, onfido, seon, SimulatorHandle};
use switchyard_worker::check::CheckDomain;
use switchyard_worker::check_config::{CheckProviderConfig, CheckVendorKind, CheckWorkerConfig};
use switchyard_worker::check_run::start_check_worker;
use switchyard_worker::config::{Environment, SecretSource};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The running onboarding stack; joined after the shutdown token fired.
pub(crate) struct OnboardingDemo {
    joins: Vec<JoinHandle<Result<(), switchyard_bus::BusError>>>,
    sims: Vec<SimulatorHandle>,
}

impl OnboardingDemo {
    pub(crate) async fn join(self) -> Result<()> {
        for j in self.joins {
            j.await??;
        }
        for s in self.sims {
            s.shutdown().await;
        }
        Ok(())
    }
}

fn vendor(name: &str, kind: CheckVendorKind, base_url: &str, key: &str) -> CheckProviderConfig {
    CheckProviderConfig {
        name: name.into(),
        kind,
        base_url: base_url.into(),
        api_key: SecretSource::inline(key),
        api_secret: None,
        level_name: None,
        dataset: None,
        timeout_ms: 5000,
        max_concurrency: 16,
        http2_prior_knowledge: false,
        poll_interval_ms: 50,
        poll_budget_ms: 5000,
        tls: None,
    }
}

async fn start_worker<D: CheckDomain>(stack: &LocalStack, database_url: &str, provider: CheckProviderConfig, shutdown: &CancellationToken) -> Result<JoinHandle<Result<(), switchyard_bus::BusError>>> {
    let mut kafka = stack.kafka.clone();
    kafka.group_id = format!("{}-worker", D::NAME);
    let config = CheckWorkerConfig {
        environment: Environment::Sandbox,
        secret_check_every_ms: 5_000,
        kafka,
        schema_registry_url: stack.registry.base_url(),
        database_url: database_url.into(),
        topics: None,
        routing: switchyard_routing::RoutingPolicy {
            mode: switchyard_routing::DomainMode::On,
            primary: provider.name.clone(),
            secondary: None,
            breaker: switchyard_routing::BreakerConfig::default(),
            rollout: None,
            shadow: None,
            segments: Vec::new(),
        },
        providers: vec![provider],
        admin_bind: None,
        max_in_flight: 200,
        max_retry_rounds: 3,
        retry: switchyard_worker::retry::RetryPolicy::default(),
    };
    Ok(start_check_worker::<D>(config, shutdown.clone()).await?.join)
}

fn applicant(first: &str, last: &str, dob: &str, email: &str, front: &str) -> Applicant {
    Applicant {
        person: Person { first_name: first.into(), last_name: last.into(), date_of_birth: Some(dob.into()), email: Some(email.into()) },
        document: IdDocument { kind: DocumentKind::Passport, issuing_country: "GBR".into(), front_ref: front.into(), back_ref: None },
        selfie_ref: Some("doc://demo/selfie".into()),
        nationality: Some("GB".into()),
        phone: Some("+447700900123".into()),
        ip: Some("192.0.2.10".into()),
        session_id: None,
    }
}

/// Name, what the demo shows, and the applicant whose inputs produce it.
fn applicants() -> Vec<(&'static str, &'static str, Applicant)> {
    vec![
        ("approve", "all three checks pass", applicant("Ada", "Lovelace", "1990-12-10", "ada@example.com", "doc://ada/front")),
        ("step-up", "blurry scan; a new document is handed in", applicant("Grace", "Hopper", "1986-12-09", "grace@example.com", "doc://blurry-scan/front")),
        ("cleared", "potential sanctions match; an analyst clears it", applicant("Ivan", "Similar", "1985-01-01", "ivan@example.com", "doc://ivan/front")),
        ("aml-hold", "confirmed sanctions match", applicant("Boris", "Blocked", "1961-03-04", "boris@example.com", "doc://boris/front")),
        ("fraud-block", "blocklisted email after KYC and AML passed", applicant("Eve", "Mallory", "1992-02-02", "fraudster@example.com", "doc://eve/front")),
    ]
}

struct Commands {
    publisher: Publisher,
    encoder: AvroEncoder,
    topic: String,
}

impl Commands {
    async fn send(&self, cmd: &OnboardingCommand) -> Result<()> {
        let record = Outbound {
            topic: self.topic.clone(),
            key: Some(cmd.subject_id.as_bytes().to_vec()),
            payload: self.encoder.encode(cmd)?,
            headers: vec![
                ("correlation-id".into(), format!("corr-{}", cmd.flow_id).into_bytes()),
                ("idempotency-key".into(), cmd.idempotency_key.as_bytes().to_vec()),
            ],
        };
        self.publisher.publish(&record).await?;
        Ok(())
    }
}

fn command(run: &str, name: &str, key: &str, action: OnboardingAction) -> OnboardingCommand {
    OnboardingCommand {
        subject_id: format!("app-{run}-{name}"),
        idempotency_key: format!("{run}-{name}-{key}"),
        flow_id: format!("onb-{run}-{name}"),
        action,
        applicant: None,
        evidence: None,
        decision: None,
        requested_at_ms: switchyard_canonical::now_ms(),
    }
}

/// Starts the workers and the orchestrator, onboards the applicants and
/// prints each flow's path. Everything keeps running until `shutdown`.
pub(crate) async fn show(stack: &LocalStack, database_url: &str, run: &str, shutdown: CancellationToken) -> Result<OnboardingDemo> {
    let kyc = onfido::spawn_onfido(onfido::OnfidoConfig::local()).await?;
    let aml = comply_advantage::spawn_comply_advantage(comply_advantage::ComplyAdvantageConfig::local()).await?;
    let fraud = seon::spawn_seon(seon::SeonConfig::local()).await?;
    let mut joins = vec![
        start_worker::<switchyard_worker::kyc::Kyc>(stack, database_url, vendor("onfido", CheckVendorKind::Onfido, &kyc.base_url(), "api_sandbox.switchyard"), &shutdown).await?,
        start_worker::<switchyard_worker::aml::Aml>(stack, database_url, vendor("complyadvantage", CheckVendorKind::ComplyAdvantage, &aml.base_url(), "ca_test_switchyard"), &shutdown).await?,
        start_worker::<switchyard_worker::fraud::Fraud>(stack, database_url, vendor("seon", CheckVendorKind::Seon, &fraud.base_url(), "seon_test_switchyard"), &shutdown).await?,
    ];
    let mut kafka = stack.kafka.clone();
    kafka.group_id = "onboarding-orchestrator".into();
    let config = OrchestratorConfig {
        kafka,
        schema_registry_url: stack.registry.base_url(),
        database_url: database_url.into(),
        topics: OnboardingTopics::default(),
        limits: Limits::default(),
        sweep_interval_ms: 500,
        outbox_grace_ms: 5000,
        retention_ms: 30 * 24 * 3600 * 1000,
        admin_bind: None,
        max_in_flight: 200,
        max_retry_rounds: 5,
        retry_topic_delay_ms: 5000,
        pii_keys: Vec::new(),
    };
    let orchestrator = start_orchestrator(config, shutdown.clone()).await?;
    joins.push(orchestrator.join);
    println!("\nonboarding: kyc-worker (onfido {}), aml-worker (complyadvantage {}), fraud-worker (seon {}), orchestrator", kyc.base_url(), aml.base_url(), fraud.base_url());

    let topics = OnboardingTopics::default();
    let commands = Commands {
        publisher: Publisher::new(&stack.kafka)?,
        encoder: AvroEncoder::register(&stack.registry_client, &topics.commands, ONBOARDING_COMMAND_SCHEMA).await?,
        topic: topics.commands.clone(),
    };
    let events = TopicReader::new(&stack.kafka, &topics.events)?;
    let decoder = AvroDecoder::new(stack.registry_client.clone(), ONBOARDING_EVENT_SCHEMA)?;
    println!("publishing to {} (START per applicant):", topics.commands);
    let people = applicants();
    for (name, what, a) in &people {
        let mut cmd = command(run, name, "start", OnboardingAction::Start);
        cmd.applicant = Some(a.clone());
        commands.send(&cmd).await?;
        println!("  {name:<12} {what}");
    }

    let mut paths: BTreeMap<String, Vec<OnboardingEvent>> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        for record in events.read_up_to(1000, Duration::from_millis(300)).await? {
            let e: OnboardingEvent = decoder.decode(&record.payload).await?;
            let Some(name) = e.flow_id.strip_prefix(&format!("onb-{run}-")).map(str::to_owned) else { continue };
            let path = paths.entry(name.clone()).or_default();
            if path.iter().any(|p| p.event_id == e.event_id) {
                continue;
            }
            match e.state {
                // The applicant answers the step-up with a sharper scan.
                OnboardingState::AwaitingEvidence => {
                    let mut cmd = command(run, &name, &format!("evidence-{}", e.attempt), OnboardingAction::SubmitEvidence);
                    let document = IdDocument { kind: DocumentKind::DrivingLicence, issuing_country: "GBR".into(), front_ref: format!("doc://{name}/sharp"), back_ref: Some(format!("doc://{name}/back")) };
                    cmd.evidence = Some(Evidence { document, selfie_ref: None });
                    commands.send(&cmd).await?;
                }
                // The analyst reviews the potential match and clears it.
                OnboardingState::AmlReview => {
                    let mut cmd = command(run, &name, "decision", OnboardingAction::Decide);
                    cmd.decision = Some(ManualDecision { step: FlowStep::Aml, verdict: ManualVerdict::Approve, reviewer: "analyst-demo".into(), note: Some("false positive: different birth date".into()) });
                    commands.send(&cmd).await?;
                }
                _ => {}
            }
            path.push(e);
        }
        let done = people.iter().all(|(n, _, _)| paths.get(*n).and_then(|p| p.last()).is_some_and(|e| e.terminal));
        if done {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("onboarding flows did not finish within 90 s: {:?}", paths.iter().map(|(n, p)| (n, p.last().map(|e| e.state))).collect::<Vec<_>>());
        }
    }

    println!("\nflows on {} (one event per transition):", topics.events);
    for (name, _, _) in &people {
        let Some(path) = paths.get(*name) else { continue };
        let states: Vec<&str> = path.iter().map(|e| e.state.as_str()).collect();
        println!("  {name:<12} {}", states.join(" -> "));
        if let Some(last) = path.last() {
            if let Some(reason) = &last.reason {
                println!("  {:<12}   reason: {reason}", "");
            }
            if !last.compensate.is_empty() {
                let steps: Vec<&str> = last.compensate.iter().map(|s| switchyard_onboarding::machine::step_name(*s)).collect();
                println!("  {:<12}   compensate: {} (core banking offboards the provisional customer)", "", steps.join(", "));
            }
        }
    }
    let store = switchyard_store::Store::connect(database_url).await?;
    let subject = format!("app-{run}-aml-hold");
    let trail = store.audit_trail(&[&subject]).await?;
    println!("\naudit log for {subject} (correlation id corr-onb-{run}-aml-hold):");
    for r in trail.iter().filter(|r| r.actor == "onboarding-orchestrator") {
        println!("  {:<22} {}", r.action, r.detail);
    }
    Ok(OnboardingDemo { joins, sims: vec![kyc, aml, fraud] })
}
