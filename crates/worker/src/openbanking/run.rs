//! Wiring of the open banking worker: builds the aggregators, the token
//! vault, codecs, store and router from an [`OpenBankingWorkerConfig`] and
//! runs the shared consumer runtime.

use super::config::{ObProviderKind, OpenBankingWorkerConfig};
use super::{ObVendor, OpenBankingHandler, DOMAIN, OB_COMMAND_SCHEMA, OB_DATA_SCHEMA, OB_EVENT_SCHEMA, OB_OUTCOME_SCHEMA};
use crate::metrics::{serve_admin, Metrics};
use crate::WorkerError;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use switchyard_adapters::openbanking::plaid::PlaidAdapter;
use switchyard_adapters::openbanking::vault::TokenVault;
use switchyard_adapters::openbanking::OpenBankingProvider;
use switchyard_bus::consumer::RuntimeSettings;
use switchyard_bus::{AvroDecoder, AvroEncoder, ConsumerRuntime, Publisher, RegistryClient, RuntimeTopics};
use switchyard_canonical::openbanking_consent::ConsentTimings;
use switchyard_routing::Router;
use switchyard_store::openbanking::ConsentStore;
use switchyard_store::Store;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct RunningOpenBankingWorker {
    pub admin_addr: Option<SocketAddr>,
    pub metrics: Arc<Metrics>,
    pub store: Store,
    pub consents: ConsentStore,
    pub health: switchyard_service::Health,
    /// Resolves when the consumer loop has drained and committed.
    pub join: JoinHandle<Result<(), switchyard_bus::BusError>>,
}

/// Validates the config, connects to everything and starts consuming
/// `openbanking.commands.v1` (and its retry topic).
pub async fn start_openbanking_worker(config: OpenBankingWorkerConfig, shutdown: CancellationToken) -> Result<RunningOpenBankingWorker, WorkerError> {
    config.validate()?;
    let mut providers = HashMap::new();
    let mut outbound = crate::secrets::OutboundKeys::default();
    for (i, p) in config.providers.iter().enumerate() {
        let field = format!("providers[{i}].secret");
        let adapter = match p.kind {
            // Read on every request, re-read from its file by crate::secrets.
            ObProviderKind::Plaid => OpenBankingProvider::Plaid(
                PlaidAdapter::new(&p.name, &p.base_url, &p.client_id, outbound.companion(&p.name, &field, &p.secret)?, p.transport())?
                    .with_page_size(p.page_size)
                    .with_client_name(&p.client_name)
                    .with_retry_after(Duration::from_millis(p.institution_retry_after_ms), Duration::from_millis(p.not_ready_retry_after_ms))
                    // A public token is single use: never cut its exchange off early (see `repair`).
                    .with_exchange_timeout(Duration::from_millis(p.timeout_ms).max(Duration::from_secs(120))),
            ),
            // The client secret is read on every token request, re-read from
            // its file like Plaid's; the signing key and its kid likewise, as a pair.
            ObProviderKind::TrueLayer => {
                let secret = outbound.companion(&p.name, &field, &p.secret)?;
                OpenBankingProvider::TrueLayer(super::payment::truelayer_adapter(i, p, secret, &mut outbound)?)
            }
        };
        // Its client certificate rotates without a restart (crate::secrets).
        let adapter = outbound.with_certificate(&p.name, p.tls.as_ref(), p.transport(), adapter)?;
        providers.insert(p.name.clone(), ObVendor { adapter, slots: Arc::new(tokio::sync::Semaphore::new(p.max_concurrency)) });
    }
    let mut keys = Vec::with_capacity(config.token_keys.len());
    for (i, k) in config.token_keys.iter().enumerate() {
        keys.push((k.id.clone(), k.key.load(&format!("token_keys[{i}].key"))?));
    }
    let vault = TokenVault::new(&keys).map_err(|e| WorkerError::Config(format!("token_keys: {e}")))?;
    let metrics = Arc::new(Metrics::new(DOMAIN));
    let registry = Arc::new(RegistryClient::new(&config.schema_registry_url)?);
    let outcome_encoder = AvroEncoder::register(&registry, &config.topics.outcomes, OB_OUTCOME_SCHEMA).await?;
    let event_encoder = AvroEncoder::register(&registry, &config.topics.events, OB_EVENT_SCHEMA).await?;
    let data_encoder = AvroEncoder::register(&registry, &config.topics.data, OB_DATA_SCHEMA).await?;
    let decoder = AvroDecoder::new(registry.clone(), OB_COMMAND_SCHEMA)?;
    let command_encoder = match &config.scheduled_refresh {
        Some(_) => Some(AvroEncoder::register(&registry, &config.topics.commands, OB_COMMAND_SCHEMA).await?),
        None => None,
    };
    let store = Store::connect(&config.database_url).await?;
    outbound.spawn(store.clone(), "openbanking-worker", Duration::from_millis(config.secret_check_every_ms), shutdown.clone());
    let consents = ConsentStore::open(&store).await?;
    let rounds: Arc<dyn switchyard_bus::RoundLedger> = Arc::new(crate::rounds::StoreRounds(switchyard_store::retry_rounds::RetryRounds::open(&store).await?));
    let positions: Arc<dyn switchyard_bus::PositionSink> = Arc::new(crate::positions::StorePositions::new(store.clone()));
    let publisher = Publisher::new(&config.kafka)?.with_positions(positions.clone());
    let handler = Arc::new(OpenBankingHandler {
        decoder,
        outcome_encoder,
        event_encoder,
        data_encoder,
        publisher: publisher.clone(),
        store: store.clone(),
        consents: consents.clone(),
        vault,
        providers,
        router: Arc::new(Router::new(config.routing.clone())),
        topics: config.topics.clone(),
        retry: config.retry.clone(),
        lease_ttl: Duration::from_millis(config.lease_ttl_ms),
        timings: ConsentTimings::default(),
        health: Arc::new(super::health::InstitutionHealth::new(config.institution_breaker.clone(), metrics.clone())),
        payments: switchyard_store::openbanking_payments::PaymentStore::open(&store).await?,
        payment_polling: super::payment::PaymentPolling::from(&config.payment_polling),
        metrics: metrics.clone(),
        shutdown: shutdown.clone(),
    });
    let publisher_for_schedule = publisher.clone();
    // Open payments' statuses, polled until each ends ([`super::payment`]).
    tokio::spawn(handler.clone().poll_payments());
    let settings = RuntimeSettings { max_in_flight: config.max_in_flight, max_retry_rounds: config.max_retry_rounds, ..RuntimeSettings::default() };
    // No held topic: the domain cannot be switched off yet.
    let topics = RuntimeTopics { held: None, ..RuntimeTopics::conventional(&config.topics.commands) };
    let health = switchyard_service::Health::new();
    switchyard_service::checks::broker(&health, &config.kafka, &config.topics.commands)?;
    switchyard_service::checks::registry(&health, &config.schema_registry_url);
    switchyard_service::checks::store(&health, store.pool().clone());
    switchyard_service::checks::producer(&health, publisher.clone(), shutdown.clone());
    // Both consumers stop together: when one ends on its own (a fatal
    // consumer error), the other is stopped too and the worker is dead.
    let consumers = shutdown.child_token();
    let callbacks = if config.callbacks.enabled {
        // Its own group, retry and DLQ topics, as the card worker's callbacks.
        let mut kafka = config.kafka.clone();
        kafka.group_id = config.callbacks.group_id.clone().unwrap_or_else(|| format!("{}.callbacks", config.kafka.group_id));
        let callback_handler = Arc::new(super::callbacks::CallbackHandler {
            ob: handler.clone(),
            callbacks: switchyard_store::openbanking_callbacks::ObCallbacks::open(&store).await?,
            decoder: AvroDecoder::new(registry.clone(), super::callbacks::PROVIDER_EVENT_SCHEMA)?,
            command_encoder: AvroEncoder::register(&registry, &config.topics.commands, OB_COMMAND_SCHEMA).await?,
            unknown_consent_retry: Duration::from_millis(config.callbacks.unknown_consent_retry_ms),
            resend_after: Duration::from_millis(config.callbacks.resend_after_ms),
        });
        let topics = RuntimeTopics { held: None, ..RuntimeTopics::conventional(&config.topics.provider_events) };
        let settings = RuntimeSettings { max_in_flight: config.max_in_flight, max_retry_rounds: config.callbacks.unknown_consent_rounds, ..RuntimeSettings::default() };
        tracing::info!(provider_events = %config.topics.provider_events, group = %kafka.group_id, "open banking callbacks consumed");
        Some(ConsumerRuntime::new(&kafka, publisher.clone(), topics, settings, callback_handler, consumers.clone())?.with_round_ledger(rounds.clone()).with_positions(positions.clone()))
    } else {
        None
    };
    let runtime = ConsumerRuntime::new(&config.kafka, publisher, topics, settings, handler, consumers.clone())?.with_round_ledger(rounds).with_positions(positions);
    metrics.attach_runtime(runtime.stats());
    let admin_addr = match config.admin_bind {
        Some(bind) => Some(serve_admin(bind, metrics.clone(), &health, shutdown.clone()).await?),
        None => None,
    };
    tracing::info!(commands = %config.topics.commands, group = %config.kafka.group_id, "open banking worker started");
    if let (Some(schedule), Some(encoder)) = (config.scheduled_refresh.clone(), command_encoder) {
        let scheduler = super::schedule::RefreshScheduler {
            config: schedule,
            consents: consents.clone(),
            publisher: publisher_for_schedule,
            encoder,
            commands_topic: config.topics.commands.clone(),
            shutdown: shutdown.clone(),
        };
        tokio::spawn(scheduler.run());
    }
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
        store_for_flush.flush_audit().await;
        commands.and(callbacks)
    }));
    Ok(RunningOpenBankingWorker { admin_addr, metrics, store, consents, health, join })
}
