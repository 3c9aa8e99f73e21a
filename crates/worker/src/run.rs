//! Wiring: builds a payout worker from its config and runs it until the
//! shutdown token fires.

use crate::config::{PayoutWorkerConfig, ProviderKind};
use crate::metrics::{serve_admin, Metrics};
use crate::payout::{PayoutHandler, Vendor, DOMAIN};
use crate::policy::LiveRouter;
use crate::ratelimit::TokenBucket;
use crate::shadow::ShadowCaller;
use switchyard_routing::{PartnerCatalog, Router};
use crate::WorkerError;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use switchyard_adapters::payouts::adyen::AdyenAdapter;
use switchyard_adapters::payouts::stripe::StripeAdapter;
use switchyard_adapters::payouts::PayoutProvider;
use switchyard_bus::consumer::RuntimeSettings;
use switchyard_bus::{AvroDecoder, AvroEncoder, ConsumerRuntime, Publisher, RegistryClient, RuntimeTopics};
use switchyard_store::Store;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The Avro schemas a payout worker reads and writes, compiled in so the
/// binary cannot drift from `schemas/`.
pub const PAYOUT_COMMAND_SCHEMA: &str = include_str!("../../../schemas/payouts/PayoutCommand.v1.avsc");
pub const PAYOUT_OUTCOME_SCHEMA: &str = include_str!("../../../schemas/payouts/PayoutOutcome.v1.avsc");
pub const CIRCUIT_EVENT_SCHEMA: &str = include_str!("../../../schemas/routing/CircuitStateChanged.v1.avsc");

pub struct RunningWorker {
    pub admin_addr: Option<SocketAddr>,
    pub metrics: Arc<Metrics>,
    pub store: Store,
    /// The routing policy in force; `apply` changes it without a restart.
    pub routing: Arc<LiveRouter>,
    /// Liveness and readiness; dead once a loop stops or the producer fails fatally.
    pub health: switchyard_service::Health,
    /// Resolves when the consumer loop has drained and committed.
    pub join: JoinHandle<Result<(), switchyard_bus::BusError>>,
}

/// Validates the config, connects to everything, and starts consuming.
/// Every dependency is checked here, so a bad config or an unreachable
/// registry stops start-up with a message instead of failing later.
pub async fn start_payout_worker(config: PayoutWorkerConfig, shutdown: CancellationToken) -> Result<RunningWorker, WorkerError> {
    config.validate()?;
    let catalog = match &config.catalog_file {
        Some(path) => Some(PartnerCatalog::load(path).map_err(|e| WorkerError::Config(format!("catalog_file: {e}")))?),
        None => None,
    };
    let mut providers = HashMap::new();
    let mut rotating = crate::secrets::OutboundKeys::default();
    for (i, p) in config.providers.iter().enumerate() {
        // Read on every request, re-read from its file by crate::secrets.
        let (environment, provider_config) = (config.clone(), p.clone());
        let usable: crate::secrets::Usable = Box::new(move |s| environment.check_key_environment(&provider_config, s));
        let key = rotating.key(&p.name, &format!("providers[{i}].api_key"), &p.api_key, usable)?;
        let provider = match p.kind {
            ProviderKind::Stripe => {
                let account = p.connected_account.clone().unwrap_or_default();
                PayoutProvider::Stripe(StripeAdapter::new(&p.name, &p.base_url, key, &account, p.transport()?)?)
            }
            ProviderKind::Adyen => {
                let account = p.balance_account_id.clone().unwrap_or_default();
                PayoutProvider::Adyen(AdyenAdapter::new(&p.name, &p.base_url, key, account, p.transport()?)?)
            }
            ProviderKind::TrueLayer => PayoutProvider::TrueLayer(crate::payout::truelayer_config::rotating_adapter(p, key, p.transport()?, &mut rotating)?),
        };
        // Its client certificate rotates without a restart, whatever the vendor (crate::secrets).
        let provider = rotating.with_certificate(&p.name, p.tls.as_ref(), p.transport()?, provider)?;
        let slots = Arc::new(tokio::sync::Semaphore::new(p.max_concurrency));
        let (limiter, catalog_retention) = match &catalog {
            Some(c) => {
                let Some(partner) = c.partner(&p.name) else {
                    return Err(WorkerError::Config(format!("providers[{i}].name: {:?} is not in the partner catalog", p.name)));
                };
                (Some(Arc::new(TokenBucket::new(partner.rate_limit.per_second, partner.rate_limit.burst))), Some(partner.idempotency_key_retention))
            }
            None => (None, None),
        };
        // The provider's own setting, else the catalog's, else the shortest
        // any payout vendor documents (Stripe's 24 h).
        let key_retention = p
            .key_retention_ms
            .map(std::time::Duration::from_millis)
            .or(catalog_retention)
            .unwrap_or(std::time::Duration::from_secs(24 * 3600));
        let call_timeout = std::time::Duration::from_millis(p.timeout_ms);
        providers.insert(p.name.clone(), Vendor { adapter: provider, slots, limiter, key_retention, call_timeout });
    }
    let metrics = Arc::new(Metrics::new(DOMAIN));
    crate::config::export_expiry(&metrics, &config.certificates()?);
    {
        let (metrics, config) = (metrics.clone(), config.clone());
        rotating.after_certificate_rotation(move || match config.certificates() {
            Ok(items) => crate::config::export_expiry(&metrics, &items),
            Err(e) => tracing::warn!(error = %e, "certificate expiry not re-read after a rotation"),
        });
    }
    let shadow = match &config.routing.shadow {
        Some(name) => {
            let Some(vendor) = providers.remove(name.as_str()) else {
                return Err(WorkerError::Config(format!("routing.shadow: {name:?} is not configured")));
            };
            Some(ShadowCaller { adapter: vendor.adapter, slots: vendor.slots, metrics: metrics.clone() })
        }
        None => None,
    };
    let router = match catalog {
        Some(c) => Router::new(config.routing.clone()).with_catalog(c),
        None => Router::new(config.routing.clone()),
    };
    let known = providers.keys().cloned().chain(config.routing.shadow.clone()).collect();
    let live_router = Arc::new(LiveRouter::new(router, known));
    let registry = Arc::new(RegistryClient::new(&config.schema_registry_url)?);
    let encoder = AvroEncoder::register(&registry, &config.topics.outcomes, PAYOUT_OUTCOME_SCHEMA).await?;
    let circuit_encoder = AvroEncoder::register(&registry, &config.topics.circuit_events, CIRCUIT_EVENT_SCHEMA).await?;
    let decoder = AvroDecoder::new(registry, PAYOUT_COMMAND_SCHEMA)?;
    let store = Store::connect(&config.database_url).await?;
    let store_for_flush = store.clone();
    let check_every = std::time::Duration::from_millis(config.secret_check_every_ms);
    rotating.spawn(store.clone(), "payout-worker", check_every, shutdown.clone());
    let positions: std::sync::Arc<dyn switchyard_bus::PositionSink> = std::sync::Arc::new(crate::positions::StorePositions::new(store.clone()));
    let publisher = Publisher::new(&config.kafka)?.with_positions(positions.clone());
    let release_publisher = publisher.clone();
    let handler = Arc::new(PayoutHandler {
        decoder,
        encoder,
        publisher: publisher.clone(),
        store: store.clone(),
        providers,
        router: live_router.clone(),
        shadow,
        circuit_events: crate::payout::CircuitEvents { encoder: circuit_encoder, topic: config.topics.circuit_events.clone() },
        outcomes_topic: config.topics.outcomes.clone(),
        retry: config.retry.clone(),
        lease_ttl: std::time::Duration::from_millis(config.lease_ttl_ms),
        metrics: metrics.clone(),
        shutdown: shutdown.clone(),
    });
    let settings = RuntimeSettings {
        max_in_flight: config.max_in_flight,
        max_retry_rounds: config.max_retry_rounds,
        ..RuntimeSettings::default()
    };
    let runtime = ConsumerRuntime::new(
        &config.kafka,
        publisher,
        RuntimeTopics::conventional(&config.topics.commands),
        settings,
        handler,
        shutdown.clone(),
    )?
    .with_round_ledger(std::sync::Arc::new(crate::rounds::StoreRounds(switchyard_store::retry_rounds::RetryRounds::open(&store).await?)))
    .with_positions(positions);
    metrics.attach_runtime(runtime.stats());
    let health = switchyard_service::Health::new();
    switchyard_service::checks::broker(&health, &config.kafka, &config.topics.commands)?;
    switchyard_service::checks::registry(&health, &config.schema_registry_url);
    switchyard_service::checks::store(&health, store.pool().clone());
    switchyard_service::checks::producer(&health, release_publisher.clone(), shutdown.clone());
    {
        // Commands parked while the domain was off go back to the command
        // topic whenever it is on (every instance shares the release group).
        let (kafka, live, held, commands) =
            (config.kafka.clone(), live_router.clone(), format!("{}.held", config.topics.commands), config.topics.commands.clone());
        let (publisher, shutdown) = (release_publisher, shutdown.clone());
        let group = format!("{}-release", config.kafka.group_id);
        // Held commands that stopped being released are lost work in
        // waiting: the process is dead, not silently half-alive.
        tokio::spawn(health.track("release of held commands", shutdown.clone(), async move {
            let on = || live.get().policy().mode == switchyard_routing::DomainMode::On;
            switchyard_bus::relay::relay_while(&kafka, &held, &commands, &group, publisher, on, shutdown).await
        }));
    }
    let admin_addr = match config.admin_bind {
        Some(bind) => Some(serve_admin(bind, metrics.clone(), &health, shutdown.clone()).await?),
        None => None,
    };
    tracing::info!(commands = %config.topics.commands, group = %config.kafka.group_id, "payout worker started");
    let join = tokio::spawn(health.track("consumer", shutdown.clone(), async move {
        let drained = runtime.run().await;
        // Vendor-call audit entries are queued, not awaited, by the handler.
        store_for_flush.flush_audit().await;
        drained
    }));
    Ok(RunningWorker { admin_addr, metrics, store, routing: live_router, health, join })
}
