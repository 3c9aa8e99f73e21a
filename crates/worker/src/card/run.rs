//! Wiring of the card worker: builds the processors, codecs, stores and
//! router from a [`CardWorkerConfig`] and runs the shared consumer runtime.

use super::config::{CardProcessorKind, CardWorkerConfig};
use super::callback::{CallbackHandler, PROVIDER_EVENT_SCHEMA};
use super::{CardHandler, CardVendor, CARD_COMMAND_SCHEMA, CARD_EVENT_SCHEMA, CARD_OUTCOME_SCHEMA, CARD_TRANSACTION_SCHEMA, DOMAIN};
use crate::metrics::{serve_admin, Metrics};
use crate::WorkerError;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use switchyard_adapters::cards::lithic::LithicAdapter;
use switchyard_adapters::cards::marqeta::MarqetaAdapter;
use switchyard_adapters::cards::CardProcessor;
use switchyard_bus::consumer::RuntimeSettings;
use switchyard_bus::{AvroDecoder, AvroEncoder, ConsumerRuntime, Publisher, RegistryClient, RuntimeTopics};
use switchyard_routing::Router;
use switchyard_store::card_transactions::CardTransactions;
use switchyard_store::cards::CardStore;
use switchyard_store::Store;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct RunningCardWorker {
    pub admin_addr: Option<SocketAddr>,
    pub metrics: Arc<Metrics>,
    pub store: Store,
    pub cards: CardStore,
    /// The command handler, for what the runtime does not drive itself
    /// (sending a card's outbox on demand).
    pub handler: Arc<CardHandler>,
    /// Liveness and readiness; dead once the consumer stops or the producer fails fatally.
    pub health: switchyard_service::Health,
    /// Resolves when the consumer loop has drained and committed.
    pub join: JoinHandle<Result<(), switchyard_bus::BusError>>,
}

/// Validates the config, connects to everything, and starts consuming
/// `cards.commands.v1` and (unless `callbacks.enabled` is off)
/// `cards.provider-events.v1` in its own group. A bad config or an unreachable dependency stops
/// start-up here with a message naming it.
pub async fn start_card_worker(config: CardWorkerConfig, shutdown: CancellationToken) -> Result<RunningCardWorker, WorkerError> {
    config.validate()?;
    let mut providers = HashMap::new();
    let mut keys = crate::secrets::OutboundKeys::default();
    for (i, p) in config.providers.iter().enumerate() {
        // Read on every request, re-read from its file by crate::secrets.
        let (environment, provider_config) = (config.clone(), p.clone());
        let usable: crate::secrets::Usable = Box::new(move |s| environment.check_key_environment(&provider_config, s));
        let key = keys.key(&p.name, &format!("providers[{i}].api_key"), &p.api_key, usable)?;
        let adapter = match p.kind {
            CardProcessorKind::Lithic => CardProcessor::Lithic(LithicAdapter::new(&p.name, &p.base_url, key, p.transport()?)?),
            CardProcessorKind::Marqeta => {
                let Some(access) = &p.access_token else {
                    return Err(WorkerError::Config(format!("providers[{i}].access_token is required for marqeta")));
                };
                let access = keys.companion(&p.name, &format!("providers[{i}].access_token"), access)?;
                let adapter = MarqetaAdapter::new(&p.name, &p.base_url, key, access, p.transport()?)?.with_card_products(p.card_products.clone());
                CardProcessor::Marqeta(adapter)
            }
        };
        // Its client certificate rotates without a restart (crate::secrets).
        let adapter = keys.with_certificate(&p.name, p.tls.as_ref(), p.transport()?, adapter)?;
        let slots = Arc::new(tokio::sync::Semaphore::new(p.max_concurrency));
        let key_retention = match p.key_retention_ms {
            Some(ms) => Some(Duration::from_millis(ms)),
            None => adapter.default_key_retention(),
        };
        providers.insert(p.name.clone(), CardVendor { adapter, slots, key_retention, call_timeout: Duration::from_millis(p.timeout_ms) });
    }
    let metrics = Arc::new(Metrics::new(DOMAIN));
    crate::config::export_expiry(&metrics, &config.certificates()?);
    {
        // A rotated certificate's new expiry replaces the old one's.
        let (metrics, config) = (metrics.clone(), config.clone());
        keys.after_certificate_rotation(move || match config.certificates() {
            Ok(items) => crate::config::export_expiry(&metrics, &items),
            Err(e) => tracing::warn!(error = %e, "certificate expiry not re-read after a rotation"),
        });
    }
    let registry = Arc::new(RegistryClient::new(&config.schema_registry_url)?);
    let encoder = AvroEncoder::register(&registry, &config.topics.outcomes, CARD_OUTCOME_SCHEMA).await?;
    let event_encoder = AvroEncoder::register(&registry, &config.topics.events, CARD_EVENT_SCHEMA).await?;
    let transaction_encoder = AvroEncoder::register(&registry, &config.topics.transactions, CARD_TRANSACTION_SCHEMA).await?;
    let decoder = AvroDecoder::new(registry.clone(), CARD_COMMAND_SCHEMA)?;
    let store = Store::connect(&config.database_url).await?;
    keys.spawn(store.clone(), "card-worker", Duration::from_millis(config.secret_check_every_ms), shutdown.clone());
    let cards = CardStore::open(&store).await?;
    let transactions = CardTransactions::open(&store).await?;
    let rounds: Arc<dyn switchyard_bus::RoundLedger> = Arc::new(crate::rounds::StoreRounds(switchyard_store::retry_rounds::RetryRounds::open(&store).await?));
    let positions: Arc<dyn switchyard_bus::PositionSink> = Arc::new(crate::positions::StorePositions::new(store.clone()));
    let publisher = Publisher::new(&config.kafka)?.with_positions(positions.clone());
    let handler = Arc::new(CardHandler {
        decoder,
        encoder,
        event_encoder,
        transaction_encoder,
        publisher: publisher.clone(),
        store: store.clone(),
        cards: cards.clone(),
        transactions,
        providers,
        router: Arc::new(Router::new(config.routing.clone())),
        outcomes_topic: config.topics.outcomes.clone(),
        events_topic: config.topics.events.clone(),
        transactions_topic: config.topics.transactions.clone(),
        retry: config.retry.clone(),
        lease_ttl: Duration::from_millis(config.lease_ttl_ms),
        metrics: metrics.clone(),
        shutdown: shutdown.clone(),
        flush_locks: super::publish::FlushLocks::new(switchyard_store::card_turns::FlushTurns::open(&store).await?),
    });
    let settings = RuntimeSettings { max_in_flight: config.max_in_flight, max_retry_rounds: config.max_retry_rounds, ..RuntimeSettings::default() };
    // No held topic: the card domain cannot be switched off yet.
    let runtime_topics = RuntimeTopics { held: None, ..RuntimeTopics::conventional(&config.topics.commands) };
    let health = switchyard_service::Health::new();
    switchyard_service::checks::broker(&health, &config.kafka, &config.topics.commands)?;
    switchyard_service::checks::registry(&health, &config.schema_registry_url);
    switchyard_service::checks::store(&health, store.pool().clone());
    switchyard_service::checks::producer(&health, publisher.clone(), shutdown.clone());
    // Both consumers stop together: when one ends on its own (a fatal
    // consumer error), the other is stopped too and the worker is dead.
    let consumers = shutdown.child_token();
    let callbacks = if config.callbacks.enabled {
        // Its own group: a runtime reads one input topic (and its retry
        // topic), and callbacks need their own retry and DLQ topics and
        // retry budget, apart from commands.
        let mut kafka = config.kafka.clone();
        kafka.group_id = config.callbacks.group_id.clone().unwrap_or_else(|| format!("{}.callbacks", config.kafka.group_id));
        let callback_handler = Arc::new(CallbackHandler {
            card: handler.clone(),
            decoder: AvroDecoder::new(registry, PROVIDER_EVENT_SCHEMA)?,
            unknown_card_retry: Duration::from_millis(config.callbacks.unknown_card_retry_ms),
        });
        let topics = RuntimeTopics { held: None, ..RuntimeTopics::conventional(&config.topics.provider_events) };
        let settings = RuntimeSettings { max_in_flight: config.max_in_flight, max_retry_rounds: config.callbacks.unknown_card_rounds, ..RuntimeSettings::default() };
        tracing::info!(provider_events = %config.topics.provider_events, group = %kafka.group_id, "card callbacks consumed");
        Some(ConsumerRuntime::new(&kafka, publisher.clone(), topics, settings, callback_handler, consumers.clone())?.with_round_ledger(rounds.clone()).with_positions(positions.clone()))
    } else {
        None
    };
    let runtime = ConsumerRuntime::new(&config.kafka, publisher, runtime_topics, settings, handler.clone(), consumers.clone())?.with_round_ledger(rounds).with_positions(positions);
    metrics.attach_runtime(runtime.stats());
    let admin_addr = match config.admin_bind {
        Some(bind) => Some(serve_admin(bind, metrics.clone(), &health, shutdown.clone()).await?),
        None => None,
    };
    tracing::info!(commands = %config.topics.commands, group = %config.kafka.group_id, "card worker started");
    let store_for_flush = store.clone();
    let join = tokio::spawn(health.track("consumer", shutdown.clone(), async move {
        let stop_commands = consumers.clone();
        let commands = async move {
            let drained = runtime.run().await;
            stop_commands.cancel();
            drained
        };
        let callbacks = async move {
            match callbacks {
                Some(runtime) => {
                    let drained = runtime.run().await;
                    consumers.cancel();
                    drained
                }
                None => Ok(()),
            }
        };
        let (commands, callbacks) = tokio::join!(commands, callbacks);
        let drained = commands.and(callbacks);
        // Processor-call audit entries are queued, not awaited, by the handler.
        store_for_flush.flush_audit().await;
        drained
    }));
    Ok(RunningCardWorker { admin_addr, metrics, store, cards, handler, health, join })
}
