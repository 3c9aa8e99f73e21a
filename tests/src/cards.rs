//! Harness pieces for the card tests: Lithic and Marqeta simulators on one
//! card oracle, a card worker config against the local stack, card commands,
//! and the checks every card test makes of what came back on the bus.

use crate::checks::OutcomeReader;
use anyhow::{ensure, Result};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use switchyard_bus::AvroDecoder;
use switchyard_canonical::card::{CardAction, CardCommand, CardForm, CardState, IssueSpec};
use switchyard_canonical::card_event::CardEvent;
use switchyard_canonical::card_outcome::CardOutcome;
use switchyard_localstack::{database_url, LocalStack as TestEnv, TopicReader};
use switchyard_simulators::lithic::{spawn_lithic, LithicConfig};
use switchyard_simulators::marqeta::{spawn_marqeta, MarqetaConfig};
use switchyard_simulators::{CardOracle, FaultPlan, SimulatorHandle};
use switchyard_worker::card::config::{CallbackSettings, CardProcessorKind, CardProviderConfig, CardTopics, CardWorkerConfig};
use switchyard_worker::card::run::RunningCardWorker;
use switchyard_worker::card::CARD_EVENT_SCHEMA;
use switchyard_worker::config::{Environment, SecretSource};
use switchyard_worker::retry::RetryPolicy;
use tokio_util::sync::CancellationToken;

/// The lifecycle every card goes through, in order.
pub const LIFECYCLE: [(CardAction, CardState); 5] = [
    (CardAction::Issue, CardState::Issued),
    (CardAction::Activate, CardState::Active),
    (CardAction::Suspend, CardState::Suspended),
    (CardAction::Reinstate, CardState::Active),
    (CardAction::Terminate, CardState::Terminated),
];

/// Both processors on one oracle, and the worker's view of them.
pub struct Processors {
    pub lithic: SimulatorHandle,
    pub marqeta: SimulatorHandle,
    pub oracle: CardOracle,
}

impl Processors {
    pub async fn start(lithic_faults: FaultPlan) -> Result<Self> {
        Self::start_with(LithicConfig { faults: lithic_faults, ..LithicConfig::local() }).await
    }

    /// Both simulators, Lithic as `lithic` says (its oracle replaced by the
    /// shared one).
    pub async fn start_with(lithic: LithicConfig) -> Result<Self> {
        let oracle = CardOracle::new();
        let lithic = spawn_lithic(LithicConfig { oracle: oracle.clone(), ..lithic }).await?;
        let marqeta = spawn_marqeta(MarqetaConfig { oracle: oracle.clone(), ..MarqetaConfig::local() }).await?;
        Ok(Self { lithic, marqeta, oracle })
    }

    pub fn sim(&self, name: &str) -> &SimulatorHandle {
        if name == "lithic" {
            &self.lithic
        } else {
            &self.marqeta
        }
    }

    pub fn providers(&self, timeout_ms: u64) -> Vec<CardProviderConfig> {
        let provider = |name: &str, kind, base_url: String, key: &str, access: Option<&str>| CardProviderConfig {
            name: name.into(),
            kind,
            base_url,
            api_key: SecretSource::inline(key),
            access_token: access.map(SecretSource::inline),
            card_products: HashMap::new(),
            timeout_ms,
            max_concurrency: 32,
            http2_prior_knowledge: false,
            key_retention_ms: None,
            tls: None,
        };
        vec![
            provider("lithic", CardProcessorKind::Lithic, self.lithic.base_url(), "lithic_sk_test_switchyard", None),
            provider("marqeta", CardProcessorKind::Marqeta, format!("{}/v3", self.marqeta.base_url()), "app_token_switchyard", Some("access_token_switchyard")),
        ]
    }

    /// Each card id issued exactly once across both processors.
    pub fn assert_issued_once(&self, card_ids: &[String]) {
        let twice = self.oracle.issued_more_than_once();
        assert!(twice.is_empty(), "card ids issued more than once: {twice:?}");
        let per_card = self.oracle.per_card();
        for id in card_ids {
            assert_eq!(per_card.get(id).map(Vec::len), Some(1), "card {id} issued once: {:?}", per_card.get(id));
        }
    }
}

pub fn config(env: &TestEnv, processors: &Processors, primary: &str, timeout_ms: u64) -> CardWorkerConfig {
    let mut kafka = env.kafka.clone();
    kafka.group_id = format!("{}card-worker", env.prefix);
    let secondary = if primary == "lithic" { "marqeta" } else { "lithic" };
    CardWorkerConfig {
        secret_check_every_ms: 5_000,
        environment: Environment::Sandbox,
        kafka,
        schema_registry_url: env.registry.base_url(),
        database_url: database_url(),
        topics: CardTopics {
            commands: env.topic("cards.commands.v1"),
            outcomes: env.topic("cards.outcomes.v1"),
            events: env.topic("cards.events.v1"),
            provider_events: env.topic("cards.provider-events.v1"),
            transactions: env.topic("cards.transactions.v1"),
        },
        providers: processors.providers(timeout_ms),
        routing: switchyard_routing::RoutingPolicy {
            mode: switchyard_routing::DomainMode::On,
            primary: primary.into(),
            secondary: Some(secondary.into()),
            breaker: switchyard_routing::BreakerConfig::default(),
            rollout: None,
            shadow: None,
            segments: Vec::new(),
        },
        admin_bind: None,
        max_in_flight: 200,
        max_retry_rounds: 10,
        retry: RetryPolicy { max_attempts: 4, base_delay_ms: 20, max_delay_ms: 200, retry_topic_delay_ms: 200, ..RetryPolicy::default() },
        lease_ttl_ms: 3_000,
        // Quick rounds for a callback that beats its card's ISSUE outcome.
        callbacks: CallbackSettings { unknown_card_retry_ms: 200, unknown_card_rounds: 4, ..CallbackSettings::default() },
    }
}

pub fn command(card_id: &str, key: &str, action: CardAction) -> CardCommand {
    let issue = (action == CardAction::Issue)
        .then(|| IssueSpec { form: CardForm::Virtual, product: "debit-classic".into(), cardholder_ref: "cust-1".into(), shipping: None });
    CardCommand {
        card_id: card_id.into(),
        idempotency_key: key.into(),
        action,
        issue,
        pin: None,
        replace: None,
        provision: None,
        dispute: None,
        evidence: None,
        reason: None,
        requested_at_ms: switchyard_canonical::now_ms(),
    }
}

/// The commands of one card's lifecycle, keys `<card>-<step>`.
pub fn lifecycle(card_id: &str) -> Vec<CardCommand> {
    LIFECYCLE.iter().enumerate().map(|(i, (action, _))| command(card_id, &format!("{card_id}-{i}"), *action)).collect()
}

/// Everything published, by idempotency key.
pub fn by_key(outcomes: Vec<(CardOutcome, String)>) -> BTreeMap<String, Vec<CardOutcome>> {
    let mut keyed: BTreeMap<String, Vec<CardOutcome>> = BTreeMap::new();
    for (o, _) in outcomes {
        keyed.entry(o.idempotency_key.clone()).or_default().push(o);
    }
    keyed
}

/// Exactly one outcome per key came from processing it; every other one is
/// a replay of it from the store, identical but for `replayed`.
pub fn the_one_outcome(key: &str, outcomes: &[CardOutcome]) -> CardOutcome {
    let original: Vec<&CardOutcome> = outcomes.iter().filter(|o| !o.replayed).collect();
    assert_eq!(original.len(), 1, "{key}: exactly one outcome processed, the rest replayed: {outcomes:?}");
    for o in outcomes.iter().filter(|o| o.replayed) {
        let mut same = o.clone();
        same.replayed = false;
        assert_eq!(&same, original[0], "{key}: a replay answers what the first delivery answered");
    }
    original[0].clone()
}

pub async fn read_events(env: &TestEnv, reader: &TopicReader, n: usize) -> Result<Vec<CardEvent>> {
    let decoder = AvroDecoder::new(env.registry_client.clone(), CARD_EVENT_SCHEMA)?;
    let mut events = Vec::new();
    for record in reader.collect(n, Duration::from_secs(60)).await? {
        events.push(decoder.decode::<CardEvent>(&record.payload).await?);
    }
    Ok(events)
}

/// The next processed outcome for `key`. A restarted worker may answer a
/// command the previous one answered but had not committed yet: such
/// redeliveries come back replayed from the store, and are skipped.
pub async fn answer_to(outcomes: &OutcomeReader, key: &str) -> Result<CardOutcome> {
    loop {
        let (o, _) = outcomes.collect::<CardOutcome>(1, Duration::from_secs(30)).await?.remove(0);
        if o.idempotency_key == key {
            return Ok(o);
        }
        ensure!(o.replayed, "an unexpected outcome while waiting for {key}: {o:?}");
    }
}

pub async fn stop(worker: RunningCardWorker, shutdown: CancellationToken) -> Result<()> {
    shutdown.cancel();
    worker.join.await??;
    Ok(())
}
