//! The webhook ingester: vendor callbacks in, verified and deduplicated
//! [`ProviderEvent`](switchyard_canonical::ProviderEvent)s out on
//! `<domain>.provider-events.v1`.
//!
//! # Layout
//! - [`config`]: the configuration file (providers, keys with rotation, limits).
//! - [`providers`]: one verifier per configured provider.
//! - [`source`]: source-address allowlists and trusted proxies.
//! - `receive`: the request path: verify -> map -> dedup -> publish -> answer.
//! - [`metrics`]: lag, refusals by reason, duplicates.
//!
//! Signature schemes and vendor payload mapping live in
//! `switchyard_adapters::webhooks` and the vendors' modules; the dedup table
//! in `switchyard_store::webhooks`.

pub mod config;
pub mod metrics;
pub mod providers;
mod receive;
pub mod source;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use config::IngesterConfig;
use metrics::Metrics;
use providers::Provider;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use switchyard_bus::{AvroEncoder, Publisher, RegistryClient};
use switchyard_canonical::ProviderEvent;
use switchyard_store::webhooks::WebhookDedup;
use switchyard_store::{AuditEntry, Store};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const PROVIDER_EVENT_SCHEMA: &str = include_str!("../../../schemas/events/ProviderEvent.v1.avsc");

#[derive(Debug, thiserror::Error)]
pub enum IngesterError {
    #[error("config: {0}")]
    Config(String),
    #[error(transparent)]
    Bus(#[from] switchyard_bus::BusError),
    #[error(transparent)]
    Store(#[from] switchyard_store::StoreError),
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
}

/// Shared state of the request path.
pub(crate) struct Ingester {
    providers: HashMap<String, Arc<Provider>>,
    /// Peers whose `X-Forwarded-For` is believed.
    trusted_proxies: Vec<ipnet::IpNet>,
    encoders: HashMap<String, AvroEncoder>,
    /// Replaced when it fails fatally (see [`Ingester::publisher`]).
    publisher: std::sync::RwLock<Publisher>,
    kafka: switchyard_bus::KafkaConfig,
    renewed_at: std::sync::Mutex<std::time::Instant>,
    dedup: WebhookDedup,
    store: Store,
    metrics: Arc<Metrics>,
    lease: Duration,
    publish_timeout: Duration,
}

impl Ingester {
    fn publisher(&self) -> Publisher {
        self.publisher.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Called after a failed publish. An idempotent producer whose broker
    /// lost its state (a restart without persistence; tansu's memory engine
    /// does this) can stay stuck on its old producer id, fatally or not; a
    /// new producer starts a new sequence. Renewed at most every few seconds
    /// so an outage does not churn producers.
    fn renew_publisher(&self, failed: &Publisher) {
        let fatal = failed.fatal_error();
        {
            let mut last = self.renewed_at.lock().unwrap_or_else(|e| e.into_inner());
            if fatal.is_none() && last.elapsed() < Duration::from_secs(3) {
                return;
            }
            *last = std::time::Instant::now();
        }
        match Publisher::new(&self.kafka) {
            Ok(fresh) => {
                tracing::warn!(fatal = ?fatal, "producer replaced after a failed publish");
                *self.publisher.write().unwrap_or_else(|e| e.into_inner()) = fresh;
            }
            Err(e) => tracing::error!(error = %e, "producer cannot be replaced"),
        }
    }

    async fn audit_id_reuse(&self, event: &ProviderEvent) {
        let detail = format!(
            "{{\"provider\":\"{}\",\"event_id\":{:?},\"payload_sha256\":\"{}\"}}",
            event.provider, event.event_id, event.payload_sha256
        );
        let entry = AuditEntry {
            actor: "webhook-ingester",
            action: "webhook_id_reused",
            subject_id: &event.subject_id,
            correlation_id: "",
            detail: &detail,
        };
        if let Err(e) = self.store.audit(entry).await {
            tracing::warn!(error = %e, "audit entry for a reused event id not written");
        }
    }
}

pub struct RunningIngester {
    pub addr: SocketAddr,
    pub metrics: Arc<Metrics>,
    pub dedup: WebhookDedup,
    /// Liveness and readiness of the receiving path.
    pub health: switchyard_service::Health,
    pub join: JoinHandle<Result<(), std::io::Error>>,
}

/// Validates the config, connects, and serves until `shutdown`.
pub async fn start_ingester(config: IngesterConfig, shutdown: CancellationToken) -> Result<RunningIngester, IngesterError> {
    let providers = providers::build(&config)?;
    let trusted_proxies = source::parse_networks(&config.trusted_proxies, "trusted_proxies")?;
    let registry = RegistryClient::new(&config.schema_registry_url)?;
    let mut encoders = HashMap::new();
    for p in providers.values() {
        if !encoders.contains_key(&p.topic) {
            encoders.insert(p.topic.clone(), AvroEncoder::register(&registry, &p.topic, PROVIDER_EVENT_SCHEMA).await?);
        }
    }
    let store = Store::connect(&config.database_url).await?;
    let dedup = WebhookDedup::open(&store).await?;
    let health = switchyard_service::Health::new();
    if let Some(topic) = encoders.keys().next() {
        switchyard_service::checks::broker(&health, &config.kafka, topic)?;
    }
    switchyard_service::checks::registry(&health, &config.schema_registry_url);
    switchyard_service::checks::store(&health, store.pool().clone());
    let metrics = Arc::new(Metrics::new());
    metrics.certificates.set(config.certificates()?.into_iter().filter_map(|i| Some((i.provider, i.kind, i.subject, i.not_after?))));
    // librdkafka drops a record it could not deliver within this, and says
    // so: once we answer 503 the record is no longer queued to appear later
    // beside the vendor's retry.
    let mut kafka = config.kafka.clone();
    kafka.extra.entry("message.timeout.ms".into()).or_insert_with(|| config.publish_timeout_ms.to_string());
    let state = Arc::new(Ingester {
        providers,
        trusted_proxies,
        encoders,
        publisher: std::sync::RwLock::new(Publisher::new(&kafka)?),
        kafka,
        renewed_at: std::sync::Mutex::new(std::time::Instant::now()),
        dedup: dedup.clone(),
        store,
        metrics: metrics.clone(),
        lease: Duration::from_millis(config.lease_ms),
        // A safety net only: librdkafka's own timeout answers first.
        publish_timeout: Duration::from_millis(config.publish_timeout_ms + 5_000),
    });
    {
        // Not fatal here, unlike in the workers: a failed publish replaces
        // the producer (`renew_publisher`); until then the instance is not ready.
        let state = state.clone();
        health.check("producer", move || {
            let fatal = state.publisher().fatal_error();
            async move { fatal.map_or(Ok(()), |e| Err(format!("fatal: {e}"))) }
        });
    }
    let metrics_for_route = metrics.clone();
    let app = axum::Router::new()
        .route("/webhooks/{provider}", post(receive::receive))
        .route("/metrics", get(move || async move { metrics_for_route.render() }))
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .with_state(state)
        .merge(health.router());
    let listener = tokio::net::TcpListener::bind(config.bind).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "webhook ingester listening");
    let join = tokio::spawn(health.track("http server", shutdown.clone(), async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
    }));
    Ok(RunningIngester { addr, metrics, dedup, health, join })
}
