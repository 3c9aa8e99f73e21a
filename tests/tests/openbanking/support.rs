//! Shared by openbanking.rs: the Plaid simulator, the worker's config, the
//! commands a product back end sends, and readers of the domain's topics.

use anyhow::{ensure, Result};
use std::time::Duration;
use switchyard_bus::AvroDecoder;
use switchyard_canonical::openbanking::{
    CompletionSpec, ConsentScope, ConsentSpec, OpenBankingAction, OpenBankingCommand, RefreshSpec, RefreshTrigger,
};
use switchyard_canonical::openbanking_data::OpenBankingDataDelta;
use switchyard_canonical::openbanking_event::OpenBankingEvent;
use switchyard_canonical::openbanking_outcome::OpenBankingOutcome;
use switchyard_e2e::checks::{CommandProducer, OutcomeReader};
use switchyard_e2e::{TestEnv, TopicReader};
use switchyard_simulators::plaid::{spawn_plaid, PlaidConfig, PlaidSimulator};
use switchyard_worker::config::{Environment, SecretSource};
use switchyard_worker::openbanking::config::{ObCallbackSettings, ObProviderConfig, ObProviderKind, OpenBankingTopics, OpenBankingWorkerConfig, TokenKeyConfig};
use switchyard_worker::openbanking::run::{start_openbanking_worker, RunningOpenBankingWorker};
use switchyard_worker::openbanking::{OB_COMMAND_SCHEMA, OB_DATA_SCHEMA, OB_EVENT_SCHEMA, OB_OUTCOME_SCHEMA};
use switchyard_worker::retry::RetryPolicy;
use tokio_util::sync::CancellationToken;

pub(crate) const PAGE_SIZE: u32 = 5;
pub(crate) const INSTITUTION: &str = "ins_109508";
pub(crate) const INSTITUTION_RETRY_AFTER_MS: u64 = 1_500;
/// Institution failures within a minute that open its breaker (tests that
/// do not mean to open it stay below this).
pub(crate) const INSTITUTION_BREAKER_CALLS: usize = 3;
pub(crate) const INSTITUTION_COOL_DOWN_MS: u64 = 2_000;

/// A worker, the Plaid simulator it talks to, and the domain's topics.
pub(crate) struct Stack {
    pub(crate) env: TestEnv,
    pub(crate) plaid: PlaidSimulator,
    pub(crate) worker: Option<RunningOpenBankingWorker>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) producer: CommandProducer,
    pub(crate) outcomes: OutcomeReader,
    pub(crate) data: TopicReader,
    pub(crate) events: TopicReader,
    data_decoder: AvroDecoder,
    event_decoder: AvroDecoder,
    /// Applied to every worker config this stack starts.
    tweak: Tweak,
}

/// A change to every worker config a stack starts.
pub(crate) type Tweak = std::sync::Arc<dyn Fn(&mut OpenBankingWorkerConfig) + Send + Sync>;

impl Stack {
    pub(crate) async fn start(name: &str) -> Result<Self> {
        Self::start_with(name, std::sync::Arc::new(|_: &mut OpenBankingWorkerConfig| {})).await
    }

    /// A stack whose workers' configs `tweak` changes.
    pub(crate) async fn start_with(name: &str, tweak: Tweak) -> Result<Self> {
        let env = TestEnv::new(name).await?;
        let plaid = spawn_plaid(PlaidConfig::local()).await?;
        let shutdown = CancellationToken::new();
        let mut cfg = config(&env, &plaid.base_url());
        tweak(&mut cfg);
        let worker = start_openbanking_worker(cfg, shutdown.clone()).await?;
        let producer = CommandProducer::new(&env, "openbanking", OB_COMMAND_SCHEMA).await?;
        let outcomes = OutcomeReader::new(&env, "openbanking", OB_OUTCOME_SCHEMA)?;
        let data = TopicReader::new(&env.kafka, &env.topic("openbanking.data.v1"))?;
        let events = TopicReader::new(&env.kafka, &env.topic("openbanking.events.v1"))?;
        let data_decoder = AvroDecoder::new(env.registry_client.clone(), OB_DATA_SCHEMA)?;
        let event_decoder = AvroDecoder::new(env.registry_client.clone(), OB_EVENT_SCHEMA)?;
        Ok(Self { env, plaid, worker: Some(worker), shutdown, producer, outcomes, data, events, data_decoder, event_decoder, tweak })
    }

    /// One more worker instance in the same group, stopped by the stack's shutdown.
    #[allow(dead_code)] // openbanking_schedule.rs
    pub(crate) async fn another_worker(&self) -> Result<RunningOpenBankingWorker> {
        let mut cfg = config(&self.env, &self.plaid.base_url());
        (self.tweak)(&mut cfg);
        Ok(start_openbanking_worker(cfg, self.shutdown.clone()).await?)
    }

    pub(crate) async fn send(&self, command: &OpenBankingCommand) -> Result<()> {
        self.producer.send(&command.consent_id, &command.idempotency_key, command).await
    }

    /// Sends `command` and waits for its answer.
    pub(crate) async fn ask(&self, command: &OpenBankingCommand) -> Result<OpenBankingOutcome> {
        self.send(command).await?;
        self.answer_to(&command.idempotency_key).await
    }

    /// The next outcome, which must answer `key`.
    pub(crate) async fn answer_to(&self, key: &str) -> Result<OpenBankingOutcome> {
        let (outcome, _) = self.outcomes.collect::<OpenBankingOutcome>(1, Duration::from_secs(60)).await?.remove(0);
        ensure!(outcome.idempotency_key == key, "expected the answer to {key}, got {outcome:?}");
        Ok(outcome)
    }

    /// Every data delta published so far (the topic quiet for `quiet`).
    pub(crate) async fn deltas(&self, quiet: Duration) -> Result<Vec<OpenBankingDataDelta>> {
        let mut out = Vec::new();
        for record in self.data.read_up_to(10_000, quiet).await? {
            out.push(self.data_decoder.decode::<OpenBankingDataDelta>(&record.payload).await?);
        }
        Ok(out)
    }

    pub(crate) async fn events(&self, quiet: Duration) -> Result<Vec<OpenBankingEvent>> {
        let mut out = Vec::new();
        for record in self.events.read_up_to(10_000, quiet).await? {
            out.push(self.event_decoder.decode::<OpenBankingEvent>(&record.payload).await?);
        }
        Ok(out)
    }

    /// CREATE_CONSENT, the user through Link, COMPLETE_CONSENT: an active
    /// consent and its Plaid item id.
    pub(crate) async fn grant(&self, consent_id: &str) -> Result<String> {
        self.grant_at(consent_id, INSTITUTION).await
    }

    /// [`Self::grant`] at another institution.
    pub(crate) async fn grant_at(&self, consent_id: &str, institution: &str) -> Result<String> {
        let mut create = create(consent_id, &format!("{consent_id}-create"));
        if let Some(spec) = create.consent.as_mut() {
            spec.institution_id = Some(institution.into());
        }
        let created = self.ask(&create).await?;
        ensure!(created.kind.as_str() == "AUTH_REQUIRED", "create: {created:?}");
        let handoff = created.handoff.clone().ok_or_else(|| anyhow::anyhow!("no hand-off: {created:?}"))?;
        let public = self.plaid.complete_link(&handoff.value).ok_or_else(|| anyhow::anyhow!("link token refused"))?;
        let completed = self.ask(&complete(consent_id, &format!("{consent_id}-complete"), &public)).await?;
        ensure!(completed.kind.as_str() == "CONSENT_ACTIVE", "complete: {completed:?}");
        completed.provider_reference.clone().ok_or_else(|| anyhow::anyhow!("no item id: {completed:?}"))
    }

    /// Stops the worker (a graceful stop that abandons what is in flight)
    /// and starts a new one in the same group, as a deploy or a crash-restart does.
    pub(crate) async fn restart(&mut self) -> Result<()> {
        self.shutdown.cancel();
        if let Some(worker) = self.worker.take() {
            worker.join.await??;
        }
        self.shutdown = CancellationToken::new();
        let mut cfg = config(&self.env, &self.plaid.base_url());
        (self.tweak)(&mut cfg);
        self.worker = Some(start_openbanking_worker(cfg, self.shutdown.clone()).await?);
        Ok(())
    }

    pub(crate) async fn stop(mut self) -> Result<()> {
        self.shutdown.cancel();
        if let Some(worker) = self.worker.take() {
            worker.join.await??;
        }
        self.plaid.shutdown().await;
        Ok(())
    }
}

pub(crate) fn config(env: &TestEnv, plaid_url: &str) -> OpenBankingWorkerConfig {
    let mut kafka = env.kafka.clone();
    kafka.group_id = format!("{}openbanking-worker", env.prefix);
    OpenBankingWorkerConfig {
        secret_check_every_ms: 5_000,
        environment: Environment::Sandbox,
        kafka,
        schema_registry_url: env.registry.base_url(),
        database_url: switchyard_localstack::database_url(),
        topics: OpenBankingTopics {
            commands: env.topic("openbanking.commands.v1"),
            outcomes: env.topic("openbanking.outcomes.v1"),
            events: env.topic("openbanking.events.v1"),
            data: env.topic("openbanking.data.v1"),
            provider_events: env.topic("openbanking.provider-events.v1"),
        },
        providers: vec![ObProviderConfig {
            name: "plaid".into(),
            kind: ObProviderKind::Plaid,
            base_url: plaid_url.into(),
            client_id: PlaidConfig::local().client_id,
            secret: SecretSource::inline(&PlaidConfig::local().secret),
            timeout_ms: 5_000,
            max_concurrency: 8,
            page_size: PAGE_SIZE,
            client_name: "switchyard e2e".into(),
            institution_retry_after_ms: INSTITUTION_RETRY_AFTER_MS,
            not_ready_retry_after_ms: 1_000,
            truelayer: None,
            tls: None,
        }],
        routing: switchyard_routing::RoutingPolicy {
            mode: switchyard_routing::DomainMode::On,
            primary: "plaid".into(),
            secondary: None,
            breaker: switchyard_routing::BreakerConfig::default(),
            rollout: None,
            shadow: None,
            segments: Vec::new(),
        },
        token_keys: vec![TokenKeyConfig { id: "e2e".into(), key: SecretSource::inline("bXVzdC1iZS10aGlydHktdHdvLWJ5dGVzLWxvbmchISE=") }],
        admin_bind: None,
        max_in_flight: 50,
        max_retry_rounds: 6,
        // One call per delivery: a transient failure goes through the retry
        // topic, so the test sees a real redelivery, not an in-place retry.
        retry: RetryPolicy { max_attempts: 1, base_delay_ms: 20, max_delay_ms: 100, retry_topic_delay_ms: 300, ..RetryPolicy::default() },
        lease_ttl_ms: 5_000,
        institution_breaker: switchyard_routing::BreakerConfig { window_ms: 60_000, min_calls: INSTITUTION_BREAKER_CALLS, failure_ratio: 0.5, open_ms: INSTITUTION_COOL_DOWN_MS },
        scheduled_refresh: None,
        // Tests of callbacks turn them on (openbanking_webhooks.rs).
        callbacks: ObCallbackSettings { enabled: false, ..ObCallbackSettings::default() },
        payment_polling: Default::default(),
    }
}

fn command(consent_id: &str, key: &str, action: OpenBankingAction) -> OpenBankingCommand {
    OpenBankingCommand {
        consent_id: consent_id.into(),
        idempotency_key: key.into(),
        action,
        consent: None,
        completion: None,
        refresh: None,
        payment: None,
        reason: None,
        tenant_id: None,
        requested_at_ms: switchyard_canonical::now_ms(),
    }
}

pub(crate) fn create(consent_id: &str, key: &str) -> OpenBankingCommand {
    let mut c = command(consent_id, key, OpenBankingAction::CreateConsent);
    c.consent = Some(ConsentSpec {
        scopes: vec![ConsentScope::Accounts, ConsentScope::Balances, ConsentScope::Transactions],
        customer_ref: "cust-42".into(),
        country: "US".into(),
        institution_id: Some(INSTITUTION.into()),
        redirect_uri: "https://app.example.com/linked".into(),
        access_days: None,
    });
    c
}

pub(crate) fn complete(consent_id: &str, key: &str, public_token: &str) -> OpenBankingCommand {
    let mut c = command(consent_id, key, OpenBankingAction::CompleteConsent);
    c.completion = Some(CompletionSpec { public_token: Some(public_token.into()), authorization_code: None });
    c
}

pub(crate) fn refresh(consent_id: &str, key: &str) -> OpenBankingCommand {
    let mut c = command(consent_id, key, OpenBankingAction::Refresh);
    c.refresh = Some(RefreshSpec { datasets: Vec::new(), trigger: RefreshTrigger::OnDemand });
    c
}

pub(crate) fn revoke(consent_id: &str, key: &str) -> OpenBankingCommand {
    let mut c = command(consent_id, key, OpenBankingAction::RevokeConsent);
    c.reason = Some("customer asked".into());
    c
}
