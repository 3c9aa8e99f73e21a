//! The webhook ingester: vendor callbacks in, verified and deduplicated
//! [`ProviderEvent`](switchyard_canonical::ProviderEvent)s out on
//! `<domain>.provider-events.v1`.
//!
//! # Layout
//! - [`config`]: the configuration file (providers, keys with rotation, limits).
//! - [`providers`]: one verifier per configured provider.
//! - [`source`]: source-address allowlists and trusted proxies.
//! - `receive`: the request path: verify -> map -> dedup -> publish -> answer.
//! - `verify`: looks on the bus for an event whose publish had an unknown result.
//! - [`faults`]: a test seam in the publish path.
//! - [`metrics`]: lag, refusals by reason, duplicates.
//!
//! Signature schemes and vendor payload mapping live in
//! `switchyard_adapters::webhooks` and the vendors' modules; the dedup table
//! in `switchyard_store::webhooks`.

pub mod config;
pub mod faults;
pub mod metrics;
pub mod providers;
mod receive;
pub mod rotation;
pub mod source;
mod verify;

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
    /// Where each published event landed, so `switchyard trace` reads it
    /// by position; kept to hand to a replaced producer.
    positions: Arc<dyn switchyard_bus::PositionSink>,
    renewed_at: std::sync::Mutex<std::time::Instant>,
    dedup: WebhookDedup,
    store: Store,
    metrics: Arc<Metrics>,
    lease: Duration,
    publish_timeout: Duration,
    /// How long a row whose publish had an unknown result is held before a
    /// copy may look for it on the bus.
    unknown_hold: Duration,
    faults: faults::PublishFaults,
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
        match Publisher::new(&self.kafka).map(|p| p.with_positions(self.positions.clone())) {
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

/// Our own wait for an acknowledgement exceeds librdkafka's by this much.
const PUBLISH_TIMEOUT_MARGIN_MS: u64 = 5_000;

/// A claim's lease must outlast everything its holder may still do that can
/// put the event on the bus: a look on the bus and a publish, whose record
/// librdkafka keeps trying until `publish_timeout_ms`. A shorter lease lets a
/// copy take the claim over while that record may still land.
fn check_lease(config: &IngesterConfig) -> Result<(), IngesterError> {
    let needed = config.publish_timeout_ms + PUBLISH_TIMEOUT_MARGIN_MS + verify::VERIFY_BUDGET.as_millis() as u64 + 1_000;
    if config.lease_ms < needed {
        return Err(IngesterError::Config(format!(
            "lease_ms ({}) must be at least publish_timeout_ms + {} ms = {needed} ms, so no copy takes over a claim whose publish may still land",
            config.lease_ms,
            needed - config.publish_timeout_ms
        )));
    }
    Ok(())
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
    start_ingester_with(config, shutdown, faults::PublishFaults::none()).await
}

/// [`start_ingester`] with faults injected into the publish path (tests).
pub async fn start_ingester_with(
    config: IngesterConfig,
    shutdown: CancellationToken,
    faults: faults::PublishFaults,
) -> Result<RunningIngester, IngesterError> {
    check_lease(&config)?;
    let providers = providers::build(&config)?;
    let trusted_proxies = source::parse_networks(&config.trusted_proxies, "trusted_proxies")?;
    let registry = RegistryClient::new(&config.schema_registry_url)?;
    let mut encoders = HashMap::new();
    for topic in providers.values().flat_map(|p| p.topics()) {
        if !encoders.contains_key(topic) {
            encoders.insert(topic.to_owned(), AvroEncoder::register(&registry, topic, PROVIDER_EVENT_SCHEMA).await?);
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
    rotation::spawn(&providers, store.clone(), shutdown.clone());
    let positions: Arc<dyn switchyard_bus::PositionSink> = Arc::new(switchyard_service::positions::StorePositions::new(store.clone()));
    let state = Arc::new(Ingester {
        providers,
        trusted_proxies,
        encoders,
        publisher: std::sync::RwLock::new(Publisher::new(&kafka)?.with_positions(positions.clone())),
        kafka,
        positions,
        renewed_at: std::sync::Mutex::new(std::time::Instant::now()),
        dedup: dedup.clone(),
        store,
        metrics: metrics.clone(),
        lease: Duration::from_millis(config.lease_ms),
        // A safety net only: librdkafka's own timeout answers first.
        publish_timeout: Duration::from_millis(config.publish_timeout_ms + PUBLISH_TIMEOUT_MARGIN_MS),
        // Twice librdkafka's own timeout: time for a produce request the
        // broker already holds to be written before anyone looks for it.
        unknown_hold: Duration::from_millis(2 * config.publish_timeout_ms),
        faults,
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
    // Positions are queued for a group commit; a clean stop writes the last ones.
    let audit = state.store.clone();
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
        let served = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        audit.flush_audit().await;
        served
    }));
    Ok(RunningIngester { addr, metrics, dedup, health, join })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_shorter_than_a_publish_and_a_look_on_the_bus_is_refused_at_start_up() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ops/webhook-ingester.example.yaml");
        let mut config = IngesterConfig::load(&path).expect("example parses");
        check_lease(&config).expect("the example's lease covers its publish timeout");
        config.lease_ms = config.publish_timeout_ms + 5_000;
        let err = check_lease(&config).expect_err("a copy could take over while the record may still land");
        assert!(err.to_string().contains("lease_ms"), "{err}");
    }
}
