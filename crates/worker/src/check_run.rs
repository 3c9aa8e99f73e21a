//! Wiring of a check worker: builds providers, codecs, store and router
//! from a [`CheckWorkerConfig`] and runs the shared consumer runtime.

use crate::check::{CheckDomain, CheckHandler, CheckVendor};
use crate::check_config::CheckWorkerConfig;
use crate::metrics::{serve_admin, Metrics};
use crate::WorkerError;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use switchyard_bus::consumer::RuntimeSettings;
use switchyard_bus::{AvroDecoder, AvroEncoder, ConsumerRuntime, Publisher, RegistryClient, RuntimeTopics};
use switchyard_routing::Router;
use switchyard_store::Store;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct RunningCheckWorker {
    pub admin_addr: Option<SocketAddr>,
    pub metrics: Arc<Metrics>,
    pub store: Store,
    /// Liveness and readiness; dead once the consumer stops or the producer fails fatally.
    pub health: switchyard_service::Health,
    /// Resolves when the consumer loop has drained and committed.
    pub join: JoinHandle<Result<(), switchyard_bus::BusError>>,
}

/// Validates the config, connects to everything, and starts consuming
/// `<domain>.commands.v1`. A bad config or unreachable dependency stops
/// start-up here with a message naming it.
pub async fn start_check_worker<D: CheckDomain>(config: CheckWorkerConfig, shutdown: CancellationToken) -> Result<RunningCheckWorker, WorkerError> {
    config.validate(D::NAME, D::VENDORS)?;
    let topics = config.topics_for(D::NAME);
    let mut providers = HashMap::new();
    let mut keys = crate::secrets::OutboundKeys::default();
    for p in &config.providers {
        // Read on every request, re-read from its file by crate::secrets.
        let (environment, provider_config) = (config.clone(), p.clone());
        let usable: crate::secrets::Usable = Box::new(move |s| environment.check_key_environment(&provider_config, s));
        let key = keys.key(&p.name, &format!("providers[{}].api_key", p.name), &p.api_key, usable)?;
        let adapter = D::build_provider(p, key, &mut keys)?;
        // Its client certificate rotates without a restart (crate::secrets).
        let adapter = keys.with_certificate(&p.name, p.tls.as_ref(), p.transport()?, adapter)?;
        let slots = Arc::new(tokio::sync::Semaphore::new(p.max_concurrency));
        providers.insert(p.name.clone(), CheckVendor { adapter, slots });
    }
    let metrics = Arc::new(Metrics::new(D::NAME));
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
    let encoder = AvroEncoder::register(&registry, &topics.outcomes, D::OUTCOME_SCHEMA).await?;
    let decoder = AvroDecoder::new(registry, D::COMMAND_SCHEMA)?;
    let store = Store::connect(&config.database_url).await?;
    let actor: &'static str = match D::NAME {
        "kyc" => "kyc-worker",
        "aml" => "aml-worker",
        "fraud" => "fraud-worker",
        _ => "check-worker",
    };
    keys.spawn(store.clone(), actor, std::time::Duration::from_millis(config.secret_check_every_ms), shutdown.clone());
    let positions: std::sync::Arc<dyn switchyard_bus::PositionSink> = std::sync::Arc::new(crate::positions::StorePositions::new(store.clone()));
    let publisher = Publisher::new(&config.kafka)?.with_positions(positions.clone());
    let handler = Arc::new(CheckHandler::<D> {
        decoder,
        encoder,
        publisher: publisher.clone(),
        store: store.clone(),
        providers,
        router: Arc::new(Router::new(config.routing.clone())),
        outcomes_topic: topics.outcomes.clone(),
        retry: config.retry.clone(),
        metrics: metrics.clone(),
        shutdown: shutdown.clone(),
    });
    let settings = RuntimeSettings { max_in_flight: config.max_in_flight, max_retry_rounds: config.max_retry_rounds, ..RuntimeSettings::default() };
    // No held topic: check domains cannot be switched off yet.
    let runtime_topics = RuntimeTopics { held: None, ..RuntimeTopics::conventional(&topics.commands) };
    let health = switchyard_service::Health::new();
    switchyard_service::checks::broker(&health, &config.kafka, &topics.commands)?;
    switchyard_service::checks::registry(&health, &config.schema_registry_url);
    switchyard_service::checks::store(&health, store.pool().clone());
    switchyard_service::checks::producer(&health, publisher.clone(), shutdown.clone());
    let runtime = ConsumerRuntime::new(&config.kafka, publisher, runtime_topics, settings, handler, shutdown.clone())?
        .with_round_ledger(std::sync::Arc::new(crate::rounds::StoreRounds(switchyard_store::retry_rounds::RetryRounds::open(&store).await?)))
        .with_positions(positions);
    metrics.attach_runtime(runtime.stats());
    let admin_addr = match config.admin_bind {
        Some(bind) => Some(serve_admin(bind, metrics.clone(), &health, shutdown.clone()).await?),
        None => None,
    };
    tracing::info!(domain = D::NAME, commands = %topics.commands, group = %config.kafka.group_id, "check worker started");
    let join = tokio::spawn(health.track("consumer", shutdown.clone(), runtime.run()));
    Ok(RunningCheckWorker { admin_addr, metrics, store, health, join })
}
