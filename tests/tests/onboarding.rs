//! Onboarding end to end: real broker, real PostgreSQL, the KYC (Onfido),
//! AML (ComplyAdvantage) and fraud (SEON) workers in-process against their
//! simulators, and the onboarding orchestrator driving applicants through
//! KYC -> AML -> fraud with the simulators' magic inputs. The test plays
//! core banking and the analyst: it starts flows, hands in evidence after a
//! step-up and decides reviews, reading `onboarding.events.v1`.

use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_bus::{AvroDecoder, AvroEncoder, KafkaConfig, Outbound, Publisher, RegistryClient};
use switchyard_canonical::check::FlowStep;
use switchyard_canonical::fraud::{FraudAction, FraudCommand, FraudDecision, FraudEvent, FraudOutcome, FraudStatus};
use switchyard_canonical::kyc::{DocumentKind, IdDocument, KycOutcome, Person};
use switchyard_canonical::onboarding::{
    Applicant, Evidence, ManualDecision, ManualVerdict, OnboardingAction, OnboardingCommand, OnboardingEvent, OnboardingState,
};
use switchyard_e2e::checks::{check_config, provider, CommandProducer};
use switchyard_e2e::{TestEnv, TopicReader};
use switchyard_localstack::database_url;
use switchyard_onboarding::config::OnboardingTopics;
use switchyard_onboarding::handler::KYC_OUTCOME_SCHEMA;
use switchyard_onboarding::handler::row_of;
use switchyard_onboarding::machine::{self, Limits};
use switchyard_onboarding::outbox::rows_of;
use switchyard_onboarding::metrics::Metrics;
use switchyard_onboarding::outbox::ONBOARDING_EVENT_SCHEMA;
use switchyard_onboarding::{start_orchestrator, OrchestratorConfig, RunningOrchestrator};
use switchyard_simulators::{comply_advantage, onfido, seon, SimulatorHandle};
use switchyard_store::onboarding::{Commit, FlowWrite, OnboardingStore};
use switchyard_store::Store;
use switchyard_worker::aml::Aml;
use switchyard_worker::check_config::{CheckProviderConfig, CheckVendorKind};
use switchyard_worker::check_run::{start_check_worker, RunningCheckWorker};
use switchyard_worker::fraud::{Fraud, FRAUD_OUTCOME_SCHEMA};
use switchyard_worker::kyc::Kyc;
use tokio_util::sync::CancellationToken;

use OnboardingState as S;

/// Workers and simulators of the three checks, and the test's ends of the bus.
struct Stack {
    env: TestEnv,
    /// Eight hex digits unique to this run, in every id.
    run: String,
    workers: Vec<RunningCheckWorker>,
    sims: Vec<SimulatorHandle>,
    /// The fraud vendor, for a fraud worker started late.
    fraud: CheckProviderConfig,
    shutdown: CancellationToken,
    commands: CommandProducer,
    events: Events,
}

impl Stack {
    async fn new(name: &str, kyc_settle: Duration) -> Result<Self> {
        let mut stack = Self::without_fraud_worker(name, kyc_settle).await?;
        stack.start_fraud_worker().await?;
        Ok(stack)
    }

    async fn start_fraud_worker(&mut self) -> Result<()> {
        let config = check_config(&self.env, "fraud", vec![self.fraud.clone()], "seon");
        self.workers.push(start_check_worker::<Fraud>(config, self.shutdown.clone()).await?);
        Ok(())
    }

    async fn without_fraud_worker(name: &str, kyc_settle: Duration) -> Result<Self> {
        let env = TestEnv::new(name).await?;
        let run = env.prefix.trim_end_matches('.').rsplit('-').next().unwrap_or("run").to_owned();
        let onfido = onfido::spawn_onfido(onfido::OnfidoConfig { settle_after: kyc_settle, ..onfido::OnfidoConfig::local() }).await?;
        let ca = comply_advantage::spawn_comply_advantage(comply_advantage::ComplyAdvantageConfig::local()).await?;
        let seon = seon::spawn_seon(seon::SeonConfig::local()).await?;
        let shutdown = CancellationToken::new();
        let kyc = provider("onfido", CheckVendorKind::Onfido, &onfido.base_url(), "api_sandbox.switchyard");
        let aml = provider("complyadvantage", CheckVendorKind::ComplyAdvantage, &ca.base_url(), "ca_test_switchyard");
        let fraud = provider("seon", CheckVendorKind::Seon, &seon.base_url(), "seon_test_switchyard");
        let workers = vec![
            start_check_worker::<Kyc>(check_config(&env, "kyc", vec![kyc], "onfido"), shutdown.clone()).await?,
            start_check_worker::<Aml>(check_config(&env, "aml", vec![aml], "complyadvantage"), shutdown.clone()).await?,
        ];
        let commands = CommandProducer::new(&env, "onboarding", switchyard_onboarding::handler::ONBOARDING_COMMAND_SCHEMA).await?;
        let events = Events::new(&env)?;
        Ok(Self { env, run, workers, sims: vec![onfido, ca, seon], fraud, shutdown, commands, events })
    }

    fn config(&self) -> OrchestratorConfig {
        let mut kafka = self.env.kafka.clone();
        kafka.group_id = format!("{}onboarding-orchestrator", self.env.prefix);
        OrchestratorConfig {
            kafka,
            schema_registry_url: self.env.registry.base_url(),
            database_url: database_url(),
            topics: OnboardingTopics::with_prefix(&self.env.prefix),
            // Evidence is handed in at once by this test; only the applicant
            // who never answers waits this long and expires.
            limits: Limits { max_kyc_attempts: 3, max_resends: 1, step_timeout_ms: 60_000, evidence_timeout_ms: 15_000, decision_timeout_ms: 60_000 },
            sweep_interval_ms: 200,
            outbox_grace_ms: 3_000,
            retention_ms: 24 * 3600 * 1000,
            admin_bind: None,
            max_in_flight: 100,
            max_retry_rounds: 5,
            retry_topic_delay_ms: 500,
            // Every flow of these tests is sealed at rest (see pii_at_rest.rs).
            pii_keys: vec![switchyard_onboarding::pii::PiiKeyConfig {
                id: "e2e".into(),
                key: switchyard_adapters::secret::SecretSource::inline("c3dpdGNoeWFyZC1lMmUtcGlpLWtleS0zMi1ieXRlcyE="),
            }],
        }
    }

    async fn orchestrator(&self) -> Result<(RunningOrchestrator, CancellationToken)> {
        self.orchestrator_with(self.config()).await
    }

    async fn orchestrator_with(&self, config: OrchestratorConfig) -> Result<(RunningOrchestrator, CancellationToken)> {
        let token = CancellationToken::new();
        Ok((start_orchestrator(config, token.clone()).await?, token))
    }

    fn flow_id(&self, name: &str) -> String {
        format!("f-{}-{name}", self.run)
    }

    fn subject(&self, name: &str) -> String {
        format!("app-{}-{name}", self.run)
    }

    async fn send(&self, name: &str, key: &str, action: OnboardingAction, fill: impl FnOnce(&mut OnboardingCommand)) -> Result<()> {
        let mut cmd = OnboardingCommand {
            subject_id: self.subject(name),
            idempotency_key: format!("{}-{name}-{key}", self.run),
            flow_id: self.flow_id(name),
            action,
            applicant: None,
            evidence: None,
            decision: None,
            requested_at_ms: switchyard_canonical::now_ms(),
        };
        fill(&mut cmd);
        self.commands.send(&cmd.subject_id, &cmd.idempotency_key, &cmd).await
    }

    async fn start(&self, name: &str, applicant: Applicant) -> Result<()> {
        self.send(name, "start", OnboardingAction::Start, |c| c.applicant = Some(applicant)).await
    }

    async fn evidence(&self, name: &str, n: i32) -> Result<()> {
        let evidence = Evidence { document: document(&format!("doc://{name}-{n}/front")), selfie_ref: None };
        self.send(name, &format!("evidence-{n}"), OnboardingAction::SubmitEvidence, |c| c.evidence = Some(evidence)).await
    }

    async fn decide(&self, name: &str, step: FlowStep, verdict: ManualVerdict) -> Result<()> {
        let decision = ManualDecision { step, verdict, reviewer: "analyst-7".into(), note: Some(format!("{verdict:?} after review")) };
        self.send(name, "decision", OnboardingAction::Decide, |c| c.decision = Some(decision)).await
    }

    async fn stop(self) -> Result<()> {
        self.shutdown.cancel();
        for w in self.workers {
            w.join.await??;
        }
        for s in self.sims {
            s.shutdown().await;
        }
        Ok(())
    }
}

fn document(front: &str) -> IdDocument {
    IdDocument { kind: DocumentKind::Passport, issuing_country: "GBR".into(), front_ref: front.into(), back_ref: None }
}

/// `first last`, born `dob`, writing from `email`: the simulators' magic
/// inputs pick each check's answer from these.
fn applicant(first: &str, last: &str, dob: &str, email: &str, front: &str) -> Applicant {
    Applicant {
        person: Person { first_name: first.into(), last_name: last.into(), date_of_birth: Some(dob.into()), email: Some(email.into()) },
        document: document(front),
        selfie_ref: Some("doc://selfie".into()),
        nationality: Some("GB".into()),
        phone: Some("+447700900123".into()),
        ip: Some("192.0.2.10".into()),
        session_id: None,
    }
}

fn clear(name: &str) -> Applicant {
    applicant("Ada", "Lovelace", "1990-12-10", &format!("{name}@example.com"), &format!("doc://{name}/front"))
}

/// `onboarding.events.v1` as read so far, per flow.
struct Events {
    reader: TopicReader,
    decoder: AvroDecoder,
    /// Every event received, with its `correlation-id` header, in arrival order.
    by_flow: BTreeMap<String, Vec<(OnboardingEvent, String)>>,
}

impl Events {
    fn new(env: &TestEnv) -> Result<Self> {
        Ok(Self {
            reader: TopicReader::new(&env.kafka, &env.topic("onboarding.events.v1"))?,
            decoder: AvroDecoder::new(env.registry_client.clone(), ONBOARDING_EVENT_SCHEMA)?,
            by_flow: BTreeMap::new(),
        })
    }

    /// Reads what arrived within `wait`; returns the new events.
    async fn pump(&mut self, wait: Duration) -> Result<Vec<OnboardingEvent>> {
        let mut new = Vec::new();
        for r in self.reader.read_up_to(500, wait).await? {
            let e: OnboardingEvent = self.decoder.decode(&r.payload).await?;
            let corr = r.headers.get("correlation-id").cloned().unwrap_or_default();
            self.by_flow.entry(e.flow_id.clone()).or_default().push((e.clone(), corr));
            new.push(e);
        }
        Ok(new)
    }

    /// The flow's transitions, one per version (re-published copies must be identical).
    fn transitions(&self, flow_id: &str) -> Result<Vec<OnboardingEvent>> {
        let mut by_version: BTreeMap<i64, OnboardingEvent> = BTreeMap::new();
        for (e, _) in self.by_flow.get(flow_id).into_iter().flatten() {
            if let Some(seen) = by_version.get(&e.version) {
                let same = OnboardingEvent { occurred_at_ms: seen.occurred_at_ms, ..e.clone() } == *seen;
                if !same {
                    bail!("{flow_id} moved twice from version {}: {seen:?} and {e:?}", e.version - 1);
                }
            }
            by_version.insert(e.version, e.clone());
        }
        let versions: Vec<i64> = by_version.keys().copied().collect();
        let expected: Vec<i64> = (1..=versions.len() as i64).collect();
        if versions != expected {
            bail!("{flow_id}: versions {versions:?} are not 1..n");
        }
        Ok(by_version.into_values().collect())
    }

    fn state(&self, flow_id: &str) -> Option<OnboardingState> {
        self.by_flow.get(flow_id).and_then(|v| v.iter().max_by_key(|(e, _)| e.version)).map(|(e, _)| e.state)
    }
}

/// Publishes raw bytes onto a topic as a worker would have.
async fn republish(kafka: &KafkaConfig, topic: String, key: &[u8], payload: Vec<u8>, correlation: &str) -> Result<()> {
    let publisher = Publisher::new(kafka)?;
    let record = Outbound {
        topic,
        key: Some(key.to_vec()),
        payload,
        headers: vec![("correlation-id".into(), correlation.as_bytes().to_vec())],
    };
    publisher.publish(&record).await?;
    Ok(())
}

/// Publishes the KYC outcome a worker published for `idempotency_key`
/// once more, byte for byte.
async fn replay_kyc_outcome(kafka: KafkaConfig, registry: Arc<RegistryClient>, topic: String, idempotency_key: String, correlation: String) -> Result<()> {
    let (key, bytes) = kyc_outcome_bytes(&kafka, registry, &topic, &idempotency_key).await?;
    republish(&kafka, topic, &key, bytes, &correlation).await
}

/// The raw KYC outcome published for `idempotency_key`.
async fn kyc_outcome_bytes(kafka: &KafkaConfig, registry: Arc<RegistryClient>, topic: &str, idempotency_key: &str) -> Result<(Vec<u8>, Vec<u8>)> {
    let reader = TopicReader::new(kafka, topic)?;
    let decoder = AvroDecoder::new(registry, KYC_OUTCOME_SCHEMA)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        for r in reader.read_up_to(1000, Duration::from_secs(2)).await? {
            let o: KycOutcome = decoder.decode(&r.payload).await?;
            if o.idempotency_key == idempotency_key {
                return Ok((r.key, r.payload));
            }
        }
    }
    bail!("no kyc outcome for {idempotency_key}")
}

/// What the test does for each applicant and where the flow must end.
struct Plan {
    name: String,
    applicant: Applicant,
    end: OnboardingState,
    /// Evidence handed in after each step-up (false: the applicant never answers).
    answers_step_up: bool,
    /// The analyst's verdict on a review.
    verdict: Option<ManualVerdict>,
    compensate: Vec<FlowStep>,
}

fn plans() -> Vec<Plan> {
    let plan = |name: &str, applicant, end, compensate| Plan { name: name.into(), applicant, end, answers_step_up: true, verdict: None, compensate };
    vec![
        plan("approve", clear("approve"), S::Approved, vec![]),
        // A blurry scan asks for a resubmit; the new document passes.
        plan("resubmit", applicant("Ada", "Lovelace", "1990-12-10", "r@example.com", "doc://blurry-scan/front"), S::Approved, vec![]),
        // StepUp keeps asking for more: three attempts, then rejected.
        plan("stepup", applicant("Ada", "StepUp", "1990-12-10", "s@example.com", "doc://s/front"), S::Rejected, vec![]),
        Plan { answers_step_up: false, ..plan("silent", applicant("Ada", "Lovelace", "1990-12-10", "x@example.com", "doc://blurry-x/front"), S::Expired, vec![]) },
        plan("forged", applicant("Ada", "Forged", "1990-12-10", "f@example.com", "doc://f/front"), S::Rejected, vec![]),
        // An impossible birth date is refused by the KYC worker: the check could not run.
        plan("invalid", applicant("Ada", "Lovelace", "1990-13-40", "i@example.com", "doc://i/front"), S::Failed, vec![]),
        Plan { verdict: Some(ManualVerdict::Approve), ..plan("similar", applicant("Ivan", "Similar", "1985-01-01", "v@example.com", "doc://v/front"), S::Approved, vec![]) },
        Plan { verdict: Some(ManualVerdict::Reject), ..plan("pep", applicant("Maria", "Politician", "1970-01-01", "m@example.com", "doc://m/front"), S::Rejected, vec![FlowStep::Kyc]) },
        plan("sanctioned", applicant("Boris", "Blocked", "1961-03-04", "b@example.com", "doc://b/front"), S::ComplianceHold, vec![]),
        plan("fraudster", applicant("Ada", "Lovelace", "1990-12-10", "fraudster@example.com", "doc://fr/front"), S::FraudBlocked, vec![FlowStep::Kyc, FlowStep::Aml]),
        // A disposable email sends fraud to review; the analyst approves.
        Plan { verdict: Some(ManualVerdict::Approve), ..plan("disposable", applicant("Ada", "Lovelace", "1990-12-10", "d@mailinator.com", "doc://d/front"), S::Approved, vec![]) },
        // A suspected document goes to KYC manual review; the analyst holds it.
        Plan { verdict: Some(ManualVerdict::Hold), ..plan("suspect", applicant("Ada", "Review", "1990-12-10", "u@example.com", "doc://u/front"), S::ComplianceHold, vec![]) },
    ]
}

/// Reads events and answers step-ups and reviews until every flow of
/// `plans` is terminal, calling `on_event` for each new event.
async fn drive(stack: &mut Stack, plans: &[Plan], timeout: Duration, on_event: &mut impl AsyncEvent) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let by_flow: HashMap<String, &Plan> = plans.iter().map(|p| (stack.flow_id(&p.name), p)).collect();
    loop {
        let new = stack.events.pump(Duration::from_millis(300)).await?;
        for e in &new {
            let Some(plan) = by_flow.get(&e.flow_id) else { continue };
            if on_event.call(&*stack, e).await? {
                continue;
            }
            match e.state {
                S::AwaitingEvidence if plan.answers_step_up => stack.evidence(&plan.name, e.attempt + 1).await?,
                S::AmlReview | S::KycReview | S::FraudReview => {
                    if let Some(v) = plan.verdict {
                        stack.decide(&plan.name, e.step, v).await?;
                    }
                }
                _ => {}
            }
        }
        let done = plans.iter().all(|p| stack.events.state(&stack.flow_id(&p.name)).is_some_and(OnboardingState::terminal));
        if done {
            return Ok(());
        }
        if Instant::now() > deadline {
            let states: Vec<_> = plans.iter().map(|p| (p.name.as_str(), stack.events.state(&stack.flow_id(&p.name)))).collect();
            bail!("flows not finished in time: {states:?}");
        }
    }
}

/// A hook into [`drive`] that may publish (an async closure over the stack);
/// `true` means it answered the event itself.
trait AsyncEvent {
    fn call(&mut self, stack: &Stack, e: &OnboardingEvent) -> impl std::future::Future<Output = Result<bool>>;
}

struct Nothing;

impl AsyncEvent for Nothing {
    async fn call(&mut self, _: &Stack, _: &OnboardingEvent) -> Result<bool> {
        Ok(false)
    }
}

/// Injects a duplicate and two out-of-order outcomes once their flows are where the test wants them.
struct Injector {
    encoder: AvroEncoder,
    metrics: Arc<Metrics>,
    /// Replays read the outcome topic from the start; they run beside the
    /// driving loop so answers to other flows are not held up.
    replays: Vec<tokio::task::JoinHandle<Result<()>>>,
    duplicate_sent: bool,
    reordered_sent: bool,
    early_sent: bool,
}

impl AsyncEvent for Injector {
    async fn call(&mut self, stack: &Stack, e: &OnboardingEvent) -> Result<bool> {
        let name = e.flow_id.rsplit('-').next().unwrap_or_default();
        let corr = format!("{}-{name}-start", stack.run);
        // The approved KYC outcome of `approve` again, once AML is under way.
        if name == "approve" && e.state == S::AmlPending && !self.duplicate_sent {
            self.duplicate_sent = true;
            self.replay(stack, format!("{}.kyc.1", e.flow_id), format!("corr-{corr}"));
        }
        // `resubmit`'s first answer (resubmit) again, after attempt 2 was requested.
        if name == "resubmit" && e.state == S::KycPending && e.attempt == 2 && !self.reordered_sent {
            self.reordered_sent = true;
            self.replay(stack, format!("{}.kyc.1", e.flow_id), format!("corr-{corr}"));
        }
        // A fraud "allow" for `pep` while it waits for the analyst: it must
        // not skip the review. Once it was ignored, the analyst rejects.
        if name == "pep" && e.state == S::AmlReview && !self.early_sent {
            self.early_sent = true;
            let cmd = FraudCommand {
                subject_id: stack.subject(name),
                idempotency_key: format!("{}.fraud.1", e.flow_id),
                flow_id: Some(e.flow_id.clone()),
                action: FraudAction::Score,
                event: FraudEvent::Onboarding,
                email: None,
                phone: None,
                ip: None,
                session_id: None,
                transaction: None,
                feedback: None,
                requested_at_ms: 0,
            };
            let outcome = FraudOutcome::new(&cmd, FraudStatus::Scored, Some(FraudDecision::Allow));
            let bytes = self.encoder.encode(&outcome)?;
            republish(&stack.env.kafka, stack.env.topic("fraud.outcomes.v1"), cmd.subject_id.as_bytes(), bytes, &format!("corr-{corr}")).await?;
            let deadline = Instant::now() + Duration::from_secs(30);
            while self.metrics.ignored_count("not_awaited") == 0 {
                if Instant::now() > deadline {
                    bail!("the early fraud outcome was never handled");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            stack.decide(name, FlowStep::Aml, ManualVerdict::Reject).await?;
            return Ok(true);
        }
        Ok(false)
    }
}

impl Injector {
    fn replay(&mut self, stack: &Stack, idempotency_key: String, correlation: String) {
        let (kafka, registry, topic) = (stack.env.kafka.clone(), stack.env.registry_client.clone(), stack.env.topic("kyc.outcomes.v1"));
        self.replays.push(tokio::spawn(replay_kyc_outcome(kafka, registry, topic, idempotency_key, correlation)));
    }
}

async fn audit_actions(store: &Store, subject: &str) -> Result<Vec<(String, String)>> {
    Ok(store
        .audit_trail(&[subject])
        .await?
        .into_iter()
        .filter(|r| r.actor == "onboarding-orchestrator")
        .map(|r| (r.action, r.correlation_id))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_terminal_state_is_reached_and_duplicate_or_reordered_outcomes_move_nothing() -> Result<()> {
    let mut stack = Stack::new("onb-terminal", Duration::from_millis(200)).await?;
    let (orchestrator, token) = stack.orchestrator().await?;
    let plans = plans();
    for p in &plans {
        stack.start(&p.name, p.applicant.clone()).await?;
    }
    // The start of `approve` again: the same flow, not a second one.
    stack.start("approve", clear("approve")).await?;
    let encoder = AvroEncoder::register(&stack.env.registry_client, &stack.env.topic("fraud.outcomes.v1"), FRAUD_OUTCOME_SCHEMA).await?;
    let mut injector = Injector { encoder, metrics: orchestrator.metrics.clone(), replays: Vec::new(), duplicate_sent: false, reordered_sent: false, early_sent: false };
    drive(&mut stack, &plans, Duration::from_secs(150), &mut injector).await?;
    assert!(injector.duplicate_sent && injector.reordered_sent && injector.early_sent, "every injection happened");
    for replay in injector.replays.drain(..) {
        replay.await??;
    }
    // Late copies are still being handled; give them time to be (not) applied.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stack.events.pump(Duration::from_millis(500)).await?;

    let store = Store::connect(&database_url()).await?;
    for p in &plans {
        let flow_id = stack.flow_id(&p.name);
        let transitions = stack.events.transitions(&flow_id).with_context(|| p.name.clone())?;
        let last = transitions.last().context("no events")?;
        assert_eq!(last.state, p.end, "{}: {transitions:#?}", p.name);
        assert_eq!(transitions.iter().filter(|e| e.terminal).count(), 1, "{}: one terminal transition", p.name);
        assert_eq!(last.compensate, p.compensate, "{}", p.name);
        for pair in transitions.windows(2) {
            assert_eq!(pair[1].previous_state, Some(pair[0].state), "{}: events chain", p.name);
        }
        let row = orchestrator.flows.load(&flow_id).await?.context("flow row")?;
        assert_eq!((row.state.as_str(), row.version, row.terminal), (p.end.as_str(), last.version, true), "{}", p.name);
        // Every transition is in the audit log under the flow's correlation id.
        let corr = format!("corr-{}-{}-start", stack.run, p.name);
        let audit = audit_actions(&store, &stack.subject(&p.name)).await?;
        assert_eq!(audit.iter().filter(|(a, _)| a == "onboarding_transition").count(), transitions.len(), "{}: {audit:?}", p.name);
        assert!(audit.iter().all(|(_, c)| *c == corr), "{}: {audit:?}", p.name);
        assert!(stack.events.by_flow[&flow_id].iter().all(|(_, c)| *c == corr), "{}: events carry the correlation id", p.name);
        let has = |action: &str| audit.iter().any(|(a, _)| a == action);
        assert_eq!(has("compliance_hold"), p.end == S::ComplianceHold, "{}", p.name);
        assert_eq!(has("compensate"), !p.compensate.is_empty(), "{}", p.name);
        assert_eq!(has("manual_decision"), p.verdict.is_some(), "{}", p.name);
    }
    let events = |name: &str| stack.events.transitions(&stack.flow_id(name)).unwrap_or_default();
    let states = |name: &str| events(name).iter().map(|e| e.state).collect::<Vec<_>>();
    assert_eq!(states("approve"), [S::KycPending, S::AmlPending, S::FraudPending, S::Approved]);
    assert_eq!(states("resubmit"), [S::KycPending, S::AwaitingEvidence, S::KycPending, S::AmlPending, S::FraudPending, S::Approved]);
    let stepup = events("stepup");
    assert_eq!(stepup.iter().filter(|e| e.state == S::AwaitingEvidence).count(), 2, "two step-ups answered, the third attempt's ends it");
    assert!(stepup.last().and_then(|e| e.reason.clone()).is_some_and(|r| r.contains("kyc_attempts_exhausted")));
    assert_eq!(states("silent"), [S::KycPending, S::AwaitingEvidence, S::Expired]);
    assert_eq!(states("similar"), [S::KycPending, S::AmlPending, S::AmlReview, S::FraudPending, S::Approved]);
    assert_eq!(states("pep"), [S::KycPending, S::AmlPending, S::AmlReview, S::Rejected], "the early fraud outcome did not skip the review");
    assert_eq!(states("sanctioned"), [S::KycPending, S::AmlPending, S::ComplianceHold]);
    assert_eq!(states("disposable"), [S::KycPending, S::AmlPending, S::FraudPending, S::FraudReview, S::Approved]);
    assert_eq!(states("suspect"), [S::KycPending, S::KycReview, S::ComplianceHold]);
    let m = &orchestrator.metrics;
    assert!(m.ignored_count("duplicate") >= 3, "start again, approve's and resubmit's kyc outcomes again: {}", m.render());
    assert!(m.ignored_count("not_awaited") >= 1, "the early fraud outcome: {}", m.render());
    token.cancel();
    orchestrator.join.await??;
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_orchestrator_resumes_every_flow_from_the_store() -> Result<()> {
    // Slow KYC reviews, so every flow is mid-way when the orchestrator stops.
    let mut stack = Stack::new("onb-restart", Duration::from_millis(1500)).await?;
    let (first, token) = stack.orchestrator().await?;
    // `invalid` fails at once and `silent` only times out: neither is mid-flow at the stop.
    let mut plans: Vec<Plan> = plans().into_iter().filter(|p| p.name != "silent" && p.name != "invalid").collect();
    for i in 0..6 {
        let name = format!("bulk{i}");
        plans.push(Plan { applicant: clear(&name), name, end: S::Approved, answers_step_up: true, verdict: None, compensate: vec![] });
    }
    for p in &plans {
        stack.start(&p.name, p.applicant.clone()).await?;
    }
    // Stop as soon as every flow exists (its KYC command was sent).
    let deadline = Instant::now() + Duration::from_secs(60);
    while !plans.iter().all(|p| stack.events.state(&stack.flow_id(&p.name)).is_some()) {
        if Instant::now() > deadline {
            bail!("flows did not start");
        }
        stack.events.pump(Duration::from_millis(200)).await?;
    }
    token.cancel();
    first.join.await??;
    let stopped_at: HashMap<String, usize> =
        plans.iter().map(|p| (p.name.clone(), stack.events.transitions(&stack.flow_id(&p.name)).map_or(0, |t| t.len()))).collect();
    assert!(plans.iter().all(|p| !stack.events.state(&stack.flow_id(&p.name)).is_some_and(OnboardingState::terminal)), "stopped mid-flow");
    // Outcomes pile up on the topics while no orchestrator runs.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let (second, token) = stack.orchestrator().await?;
    drive(&mut stack, &plans, Duration::from_secs(150), &mut Nothing).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stack.events.pump(Duration::from_millis(500)).await?;
    for p in &plans {
        let flow_id = stack.flow_id(&p.name);
        let transitions = stack.events.transitions(&flow_id).with_context(|| p.name.clone())?;
        assert_eq!(transitions.last().map(|e| e.state), Some(p.end), "{}: {transitions:#?}", p.name);
        assert!(transitions.len() > stopped_at[&p.name], "{}: moved after the restart", p.name);
        let row = second.flows.load(&flow_id).await?.context("flow row")?;
        assert_eq!((row.state.as_str(), row.version), (p.end.as_str(), transitions.len() as i64), "{}", p.name);
    }
    // No flow started again: the only KYC requests after the restart are resubmit's and stepup's loops back.
    assert_eq!(second.metrics.transition_count("kyc_pending"), 1 + 2);
    token.cancel();
    second.join.await??;
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_share_the_flows_and_time_out_each_one_once() -> Result<()> {
    let mut stack = Stack::new("onb-pair", Duration::from_millis(200)).await?;
    let mut config = stack.config();
    config.limits.evidence_timeout_ms = 3_000;
    let (a, token_a) = stack.orchestrator_with(config.clone()).await?;
    let (b, token_b) = stack.orchestrator_with(config).await?;
    let mut plans = Vec::new();
    for i in 0..4 {
        let silent = format!("silent{i}");
        let applicant = applicant("Ada", "Lovelace", "1990-12-10", &format!("{silent}@example.com"), &format!("doc://blurry-{silent}/front"));
        plans.push(Plan { name: silent, applicant, end: S::Expired, answers_step_up: false, verdict: None, compensate: vec![] });
        let name = format!("clear{i}");
        plans.push(Plan { applicant: clear(&name), name, end: S::Approved, answers_step_up: true, verdict: None, compensate: vec![] });
    }
    for p in &plans {
        stack.start(&p.name, p.applicant.clone()).await?;
    }
    drive(&mut stack, &plans, Duration::from_secs(120), &mut Nothing).await?;
    // Both sweeps keep running for a few more passes: nothing may move twice.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stack.events.pump(Duration::from_millis(500)).await?;
    for p in &plans {
        let transitions = stack.events.transitions(&stack.flow_id(&p.name)).with_context(|| p.name.clone())?;
        assert_eq!(transitions.last().map(|e| e.state), Some(p.end), "{}: {transitions:#?}", p.name);
        assert_eq!(transitions.iter().filter(|e| e.terminal).count(), 1, "{}", p.name);
    }
    let expired = a.metrics.transition_count("expired") + b.metrics.transition_count("expired");
    assert_eq!(expired, 4, "each deadline claimed by exactly one instance");
    token_a.cancel();
    token_b.cancel();
    a.join.await??;
    b.join.await??;
    stack.stop().await
}

/// An instance that committed a transition and died before publishing it:
/// the next one's sweep finds the outbox rows and sends them, and the flow goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transition_committed_but_never_published_is_sent_by_the_sweep() -> Result<()> {
    let mut stack = Stack::new("onb-outbox", Duration::from_millis(200)).await?;
    let config = stack.config();
    let store = Store::connect(&database_url()).await?;
    let flows = OnboardingStore::open(&store, &config.topics.commands).await?;
    let name = "orphan";
    let start = OnboardingCommand {
        subject_id: stack.subject(name),
        idempotency_key: format!("{}-{name}-start", stack.run),
        flow_id: stack.flow_id(name),
        action: OnboardingAction::Start,
        applicant: Some(clear(name)),
        evidence: None,
        decision: None,
        requested_at_ms: switchyard_canonical::now_ms(),
    };
    let corr = format!("corr-{}", start.idempotency_key);
    let t = machine::start(&start, clear(name), &corr, &config.limits, switchyard_canonical::now_ms());
    let row = row_of(&t.flow)?;
    let write = FlowWrite { row: &row, expected_version: None, input_key: "cmd:dead-instance", outbox: rows_of(&t)?, audit: vec![] };
    assert_eq!(flows.commit(&write).await?, Commit::Applied);
    assert_eq!(flows.unsent_of(&start.flow_id).await?.len(), 2, "the KYC command and the event wait in the outbox");

    let (orchestrator, token) = stack.orchestrator().await?;
    let plans = vec![Plan { name: name.into(), applicant: clear(name), end: S::Approved, answers_step_up: true, verdict: None, compensate: vec![] }];
    drive(&mut stack, &plans, Duration::from_secs(60), &mut Nothing).await?;
    let transitions = stack.events.transitions(&start.flow_id)?;
    assert_eq!(transitions.iter().map(|e| e.state).collect::<Vec<_>>(), [S::KycPending, S::AmlPending, S::FraudPending, S::Approved]);
    assert!(stack.events.by_flow[&start.flow_id].iter().all(|(_, c)| *c == corr), "the stored correlation id travels on");
    assert!(flows.unsent_of(&start.flow_id).await?.is_empty());
    token.cancel();
    orchestrator.join.await??;
    stack.stop().await
}

/// A worker step past its deadline: the command is sent again under the
/// same key, the late worker answers both deliveries (the second from its
/// store) and the flow moves once; a step still unanswered after the last
/// resend expires the flow and compensates what had passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_step_past_its_deadline_is_resent_under_the_same_key_then_expires() -> Result<()> {
    let mut stack = Stack::without_fraud_worker("onb-timeout", Duration::from_millis(200)).await?;
    let mut config = stack.config();
    // Long enough that the fraud worker, started after `never` expired, is
    // up before `late` runs out of resends on a loaded 2-core CI machine.
    config.limits.step_timeout_ms = 8_000;
    config.limits.max_resends = 2;
    let (orchestrator, token) = stack.orchestrator_with(config).await?;
    let (late, never) = (stack.flow_id("late"), stack.flow_id("never"));
    let resends = |events: &Events, flow: &str| events.transitions(flow).unwrap_or_default().iter().filter(|e| e.trigger == "timeout" && !e.terminal).count();
    let deadline = Instant::now() + Duration::from_secs(90);
    // No fraud worker yet: `never` is resent twice, then expires. `late`
    // starts once `never` was resent twice, so it is half-way through its
    // own deadlines when `never` expires; then the worker comes.
    stack.start("never", clear("never")).await?;
    let mut late_started = false;
    while stack.events.state(&never) != Some(S::Expired) || resends(&stack.events, &late) == 0 {
        if Instant::now() > deadline {
            bail!("timeouts did not fire: never {:?}, late {:?}", stack.events.transitions(&never), stack.events.transitions(&late));
        }
        stack.events.pump(Duration::from_millis(200)).await?;
        if !late_started && resends(&stack.events, &never) == 2 {
            late_started = true;
            stack.start("late", clear("late")).await?;
        }
    }
    assert_ne!(stack.events.state(&late), Some(S::Expired), "the worker must come before `late` runs out of resends");
    stack.start_fraud_worker().await?;
    let plans = vec![Plan { name: "late".into(), applicant: clear("late"), end: S::Approved, answers_step_up: true, verdict: None, compensate: vec![] }];
    drive(&mut stack, &plans, Duration::from_secs(60), &mut Nothing).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stack.events.pump(Duration::from_millis(500)).await?;

    let late_events = stack.events.transitions(&late)?;
    let states: Vec<_> = late_events.iter().map(|e| (e.state, e.trigger.as_str())).collect();
    assert_eq!(states.last().map(|(s, _)| *s), Some(S::Approved), "{states:?}");
    assert_eq!(states.iter().filter(|(s, _)| *s == S::Approved).count(), 1, "both deliveries answered, one transition: {states:?}");
    assert!(late_events.iter().filter(|e| e.state == S::FraudPending).all(|e| e.attempt == 1), "a resend is the same attempt (same key)");
    let never_events = stack.events.transitions(&never)?;
    let last = never_events.last().context("events")?;
    assert_eq!((last.state, last.trigger.as_str(), last.compensate.clone()), (S::Expired, "timeout", vec![FlowStep::Kyc, FlowStep::Aml]));
    assert_eq!(resends(&stack.events, &never), 2, "max_resends");
    // The worker answered `late`'s original and resent command; `never`'s
    // three deliveries too, after it had expired.
    assert!(orchestrator.metrics.ignored_count("duplicate") >= 1, "{}", orchestrator.metrics.render());
    assert!(orchestrator.metrics.ignored_count("finished") >= 1, "{}", orchestrator.metrics.render());
    token.cancel();
    orchestrator.join.await??;
    stack.stop().await
}

/// The orchestrator binary as its own process, to be SIGKILLed.
struct OrchestratorProcess {
    binary: std::path::PathBuf,
    config: std::path::PathBuf,
    log: std::path::PathBuf,
    child: Option<tokio::process::Child>,
    kills: usize,
}

impl OrchestratorProcess {
    fn new(stack: &Stack) -> Result<Self> {
        let c = stack.config();
        let t = &c.topics;
        let dir = std::env::temp_dir().join(format!("switchyard-{}", stack.env.prefix.trim_end_matches('.')));
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("onboarding-orchestrator.yaml");
        std::fs::write(
            &config,
            format!(
                "kafka: {{ brokers: \"{brokers}\", group_id: \"{group}\" }}\n\
                 schema_registry_url: {registry}\n\
                 database_url: \"{db}\"\n\
                 topics: {{ commands: \"{}\", events: \"{}\", dlq: \"{}\", kyc_commands: \"{}\", kyc_outcomes: \"{}\", \
                 aml_commands: \"{}\", aml_outcomes: \"{}\", fraud_commands: \"{}\", fraud_outcomes: \"{}\", \
                 commands_retry: \"{}\", kyc_outcomes_retry: \"{}\", aml_outcomes_retry: \"{}\", fraud_outcomes_retry: \"{}\" }}\n\
                 limits: {{ evidence_timeout_ms: 60000 }}\n\
                 sweep_interval_ms: 200\n\
                 outbox_grace_ms: 2000\n",
                t.commands, t.events, t.dlq, t.kyc_commands, t.kyc_outcomes, t.aml_commands, t.aml_outcomes, t.fraud_commands, t.fraud_outcomes,
                // The orchestrator's own retry topics, under this stack's
                // prefix: left out, the process subscribed to topics.yaml's
                // bare names, which no test creates.
                t.commands_retry, t.kyc_outcomes_retry, t.aml_outcomes_retry, t.fraud_outcomes_retry,
                brokers = c.kafka.brokers,
                group = c.kafka.group_id,
                registry = c.schema_registry_url,
                db = c.database_url,
            ),
        )?;
        Ok(Self { binary: switchyard_e2e::workspace_binary("onboarding-orchestrator")?, config, log: dir.join("onboarding-orchestrator.log"), child: None, kills: 0 })
    }

    fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let child = tokio::process::Command::new(&self.binary)
            .arg("--config")
            .arg(&self.config)
            // Group assignments and the outbox at info: this test has failed
            // under the full suite with every flow left in KycPending and
            // nothing but warnings in the log to tell why.
            .env("RUST_LOG", "warn,switchyard_bus=info,switchyard_onboarding=info")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL: no drain, no final commit, nothing flushed.
    async fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().await?;
            self.kills += 1;
        }
        Ok(())
    }

    fn log_tail(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default().lines().rev().take(60).collect::<Vec<_>>().join("\n")
    }
}

/// Kills the orchestrator process again once several flows are past KYC, and restarts it.
struct KillMidway<'a> {
    process: &'a mut OrchestratorProcess,
    past_kyc: usize,
}

impl AsyncEvent for KillMidway<'_> {
    async fn call(&mut self, _: &Stack, e: &OnboardingEvent) -> Result<bool> {
        if e.state == S::AmlPending {
            self.past_kyc += 1;
            if self.past_kyc == 3 && self.process.kills == 1 {
                self.process.kill().await?;
                tokio::time::sleep(Duration::from_secs(1)).await;
                self.process.spawn()?;
            }
        }
        Ok(false)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sigkilled_orchestrator_process_resumes_every_flow_from_the_store() -> Result<()> {
    let mut stack = Stack::new("onb-kill", Duration::from_millis(1000)).await?;
    let mut process = OrchestratorProcess::new(&stack)?;
    process.spawn()?;
    let mut plans: Vec<Plan> = plans().into_iter().filter(|p| ["resubmit", "similar", "fraudster", "sanctioned"].contains(&p.name.as_str())).collect();
    for i in 0..6 {
        let name = format!("bulk{i}");
        plans.push(Plan { applicant: clear(&name), name, end: S::Approved, answers_step_up: true, verdict: None, compensate: vec![] });
    }
    for p in &plans {
        stack.start(&p.name, p.applicant.clone()).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while !plans.iter().all(|p| stack.events.state(&stack.flow_id(&p.name)).is_some()) {
        if Instant::now() > deadline {
            bail!("flows did not start; orchestrator log:\n{}", process.log_tail());
        }
        stack.events.pump(Duration::from_millis(200)).await?;
    }
    // First kill right after the starts, a second one once flows are past KYC.
    process.kill().await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    process.spawn()?;
    let mut hook = KillMidway { process: &mut process, past_kyc: 0 };
    let driven = drive(&mut stack, &plans, Duration::from_secs(150), &mut hook).await;
    if let Err(e) = driven {
        bail!("{e}; orchestrator log:\n{}", process.log_tail());
    }
    assert_eq!(process.kills, 2, "killed twice mid-flow");
    tokio::time::sleep(Duration::from_secs(1)).await;
    stack.events.pump(Duration::from_millis(500)).await?;
    let store = Store::connect(&database_url()).await?;
    let flows = OnboardingStore::open(&store, &stack.config().topics.commands).await?;
    for p in &plans {
        let flow_id = stack.flow_id(&p.name);
        let transitions = stack.events.transitions(&flow_id).with_context(|| p.name.clone())?;
        assert_eq!(transitions.last().map(|e| e.state), Some(p.end), "{}: {transitions:#?}", p.name);
        assert_eq!(transitions.iter().filter(|e| e.terminal).count(), 1, "{}", p.name);
        let row = flows.load(&flow_id).await?.context("flow row")?;
        assert_eq!((row.state.as_str(), row.version), (p.end.as_str(), transitions.len() as i64), "{}", p.name);
        assert!(flows.unsent_of(&flow_id).await?.is_empty(), "{}: everything committed was published", p.name);
    }
    process.kill().await?;
    stack.stop().await
}

/// `switchyard trace` of an applicant (or its flow id) reads as the flow's
/// story: each check's outcome, each transition, and the step that stopped
/// it — here a fraud block and a confirmed sanctions match.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trace_of_an_onboarding_flow_names_each_step_and_the_one_that_stopped_it() -> Result<()> {
    use switchyard_ops::read::ReadOptions;
    use switchyard_ops::trace::{self, Trace, TraceEvent, TraceRequest};
    let mut stack = Stack::new("onb-trace", Duration::from_millis(200)).await?;
    let (orchestrator, token) = stack.orchestrator().await?;
    let plans: Vec<Plan> = plans().into_iter().filter(|p| p.name == "fraudster" || p.name == "sanctioned").collect();
    for p in &plans {
        stack.start(&p.name, p.applicant.clone()).await?;
    }
    drive(&mut stack, &plans, Duration::from_secs(90), &mut Nothing).await?;

    let store = Store::connect(&database_url()).await?;
    let file = switchyard_bus::topics::TopicsFile::load(&switchyard_localstack::repo_root().join("topics.yaml"))?;
    let topics: Vec<String> = file.with_prefix(&stack.env.prefix).topics.into_iter().map(|t| t.name).collect();
    let decoders = trace::Decoders::new(stack.env.registry_client.clone())?;
    let read = ReadOptions { idle: Duration::from_secs(2), settle: Duration::from_millis(300), deadline: Duration::from_secs(60) };
    let (kafka, store, topics, decoders) = (&stack.env.kafka, &store, &topics, &decoders);
    let trace_of = |id: String| async move {
        let request = TraceRequest { id: &id, topics: topics.clone(), read, decoders: Some(decoders), since: None, scan_all: false };
        anyhow::Ok(trace::trace(kafka, store, request).await?)
    };
    let of = |t: &Trace, what: &str| -> Vec<TraceEvent> { t.events.iter().filter(|e| e.what == what).cloned().collect() };

    let fraudster = trace_of(stack.subject("fraudster")).await?;
    let statuses = |events: &[TraceEvent]| events.iter().map(|e| e.status.clone().unwrap_or_default()).collect::<Vec<_>>();
    // Each transition once: the audit row of a transition found on the topic is not repeated.
    let transitions = of(&fraudster, "transition");
    assert_eq!(statuses(&transitions), ["KYC_PENDING", "AML_PENDING", "FRAUD_PENDING", "FRAUD_BLOCKED"], "{fraudster:#?}");
    assert!(transitions.iter().all(|e| e.source.ends_with("onboarding.events.v1")), "{transitions:#?}");
    let blocked = transitions.last().context("transition")?;
    assert!(blocked.failed, "{blocked:?}");
    assert!(blocked.detail.contains("fraud_pending -> fraud_blocked on fraud:block") && blocked.detail.contains("undo kyc, aml"), "{}", blocked.detail);
    assert!(transitions[..3].iter().all(|e| !e.failed), "{transitions:#?}");
    let outcomes = of(&fraudster, "outcome");
    assert_eq!(statuses(&outcomes), ["APPROVED", "CLEAR", "BLOCK"], "{outcomes:#?}");
    let block = &outcomes[2];
    assert!(block.failed && block.source.ends_with("fraud.outcomes.v1") && block.detail.contains("via seon"), "{block:?}");
    assert!(outcomes[..2].iter().all(|e| !e.failed), "{outcomes:#?}");
    let position = |e: &TraceEvent| fraudster.events.iter().position(|x| x.source == e.source && x.detail == e.detail);
    assert!(position(block) < position(blocked), "the block comes before the transition it causes");
    let undo = of(&fraudster, "compensate");
    assert!(undo.len() == 1 && undo[0].detail.contains("undoes kyc, aml because fraud_blocked"), "{undo:#?}");
    let table = switchyard_ops::view::trace(&fraudster).render(false);
    assert!(table.contains("FRAUD_BLOCKED") && table.contains("BLOCK"), "{table}");

    // The flow id finds the same story through the orchestrator's flow row.
    let by_flow = trace_of(stack.flow_id("fraudster")).await?;
    assert_eq!(by_flow.subject_ids, fraudster.subject_ids);
    assert_eq!(statuses(&of(&by_flow, "transition")), statuses(&transitions));

    let sanctioned = trace_of(stack.subject("sanctioned")).await?;
    let hit = of(&sanctioned, "outcome").into_iter().find(|e| e.source.ends_with("aml.outcomes.v1")).context("aml outcome")?;
    assert!(hit.failed && hit.status.as_deref() == Some("CONFIRMED_MATCH") && hit.detail.contains("sanctions"), "{hit:?}");
    let held = of(&sanctioned, "transition").pop().context("transition")?;
    assert!(held.failed && held.status.as_deref() == Some("COMPLIANCE_HOLD"), "{held:?}");
    assert!(of(&sanctioned, "compliance_hold").iter().all(|e| e.failed) && !of(&sanctioned, "compliance_hold").is_empty(), "{sanctioned:#?}");

    token.cancel();
    orchestrator.join.await??;
    stack.stop().await
}
