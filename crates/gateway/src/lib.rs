//! The product-facing HTTP gateway: a thin, stateless edge over the bus.
//! A POST validates, publishes the canonical command the workers already
//! consume, waits for the broker's acknowledgement and answers 202 with the
//! resource's URL; a GET answers from a projection of the outcome topic kept
//! in the store, with `ETag` and bounded long polling.
//!
//! # Layout
//! - [`config`]: the configuration file.
//! - [`auth`]: API keys and scopes per consuming team, and the audit entry of every call.
//! - [`problem`]: RFC 9457 problem details with our error taxonomy.
//! - [`openapi`]: the OpenAPI 3.1 document generated from the handlers.
//! - [`payouts`]: the payout request, its canonical command and the view GET answers.
//! - `routes`: the HTTP handlers (idempotency, publish, ETag, long polling).
//! - `projection`: the consumer writing each resource's current state.
//!
//! Idempotency: every POST needs an `Idempotency-Key`, which becomes the
//! command's idempotency key (so an HTTP retry and a bus redelivery meet in
//! the worker's claim); the gateway's own record of it lives in
//! `switchyard_store::gateway`.

pub mod auth;
pub mod config;
pub mod openapi;
pub mod payouts;
pub mod problem;
mod projection;
mod routes;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use config::GatewayConfig;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use switchyard_bus::{AvroDecoder, AvroEncoder, ConsumerRuntime, Publisher, RegistryClient, RuntimeSettings, RuntimeTopics};
use switchyard_store::gateway::GatewayStore;
use switchyard_store::Store;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const PAYOUT_COMMAND_SCHEMA: &str = include_str!("../../../schemas/payouts/PayoutCommand.v1.avsc");
pub const PAYOUT_OUTCOME_SCHEMA: &str = include_str!("../../../schemas/payouts/PayoutOutcome.v1.avsc");

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
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
pub(crate) struct Gateway {
    pub(crate) config: GatewayConfig,
    pub(crate) payout_encoder: AvroEncoder,
    /// Replaced after a fatal error (see [`Gateway::renew_publisher`]).
    publisher: std::sync::RwLock<Publisher>,
    kafka: switchyard_bus::KafkaConfig,
    pub(crate) store: GatewayStore,
    /// The consuming teams and their keys.
    pub(crate) auth: auth::Auth,
    /// Where every call is audited (group-committed, off the request's path).
    pub(crate) audit: Store,
    /// Woken by the projection after each write, so a long poll answers at
    /// once when this instance projected the change (others are polled).
    pub(crate) changed: Arc<tokio::sync::Notify>,
    /// Longest wait for an acknowledgement, a margin over librdkafka's own.
    pub(crate) publish_timeout: Duration,
}

impl Gateway {
    pub(crate) fn publisher(&self) -> Publisher {
        self.publisher.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A producer whose idempotence state the broker lost never delivers
    /// again; a new one starts a new sequence.
    pub(crate) fn renew_publisher(&self, failed: &Publisher) {
        if failed.fatal_error().is_none() {
            return;
        }
        match Publisher::new(&self.kafka) {
            Ok(fresh) => {
                tracing::warn!("producer replaced after a fatal error");
                *self.publisher.write().unwrap_or_else(|e| e.into_inner()) = fresh;
            }
            Err(e) => tracing::error!(error = %e, "producer cannot be replaced"),
        }
    }
}

async fn openapi_json() -> impl axum::response::IntoResponse {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ([(axum::http::header::CONTENT_TYPE, "application/json")], DOCUMENT.get_or_init(openapi::document).clone())
}

pub struct RunningGateway {
    pub addr: SocketAddr,
    pub health: switchyard_service::Health,
    /// The HTTP server, then the projection.
    pub join: JoinHandle<Result<(), GatewayError>>,
}

/// Validates the config, connects, and serves until `shutdown`.
pub async fn start_gateway(config: GatewayConfig, shutdown: CancellationToken) -> Result<RunningGateway, GatewayError> {
    config.validate()?;
    let auth = auth::Auth::load(&config.teams)?;
    if config.teams.is_empty() {
        tracing::warn!("no team configured: every /v1 call is answered 401");
    }
    let registry = Arc::new(RegistryClient::new(&config.schema_registry_url)?);
    let payout_encoder = AvroEncoder::register(&registry, &config.topics.payout_commands, PAYOUT_COMMAND_SCHEMA).await?;
    let store = Store::connect(&config.database_url).await?;
    let gateway_store = GatewayStore::open(&store).await?;
    // librdkafka drops a record it could not deliver within this and says
    // so: once we answer 503, the record is no longer queued to land later.
    let mut kafka = config.kafka.clone();
    kafka.extra.entry("message.timeout.ms".into()).or_insert_with(|| config.publish_timeout_ms.to_string());
    let publisher = Publisher::new(&kafka)?;
    let health = switchyard_service::Health::new();
    switchyard_service::checks::broker(&health, &config.kafka, &config.topics.payout_commands)?;
    switchyard_service::checks::registry(&health, &config.schema_registry_url);
    switchyard_service::checks::store(&health, store.pool().clone());
    let changed = Arc::new(tokio::sync::Notify::new());

    let projection = Arc::new(projection::PayoutProjection {
        decoder: AvroDecoder::new(registry.clone(), PAYOUT_OUTCOME_SCHEMA)?,
        store: gateway_store.clone(),
        changed: changed.clone(),
    });
    // Outcomes are only read here: a failing write is retried in place, and
    // the DLQ (reached only by a panic or the handler deadline) is the
    // gateway's own.
    let topics = RuntimeTopics {
        input: config.topics.payout_outcomes.clone(),
        retry: None,
        dlq: format!("{}.gateway-dlq", config.topics.payout_outcomes),
        held: None,
    };
    let runtime = ConsumerRuntime::new(&config.kafka, publisher.clone(), topics, RuntimeSettings::default(), projection, shutdown.clone())?;
    let projection_task = tokio::spawn(health.track("payout projection", shutdown.clone(), runtime.run()));

    let (max_body, bind) = (config.max_body_bytes, config.bind);
    let state = Arc::new(Gateway {
        publish_timeout: Duration::from_millis(config.publish_timeout_ms + 2_000),
        config,
        payout_encoder,
        publisher: std::sync::RwLock::new(publisher),
        kafka,
        store: gateway_store,
        auth,
        audit: store.clone(),
        changed,
    });
    let app = axum::Router::new()
        .route("/v1/payouts", post(routes::post_payout).get(routes::list_payouts))
        .route("/v1/payouts/{id}", get(routes::get_payout))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::layer))
        // Public, like any API description: added after the auth layer.
        .route("/openapi.json", get(openapi_json))
        .fallback(routes::not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
        .merge(health.router());
    let listener = tokio::net::TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "gateway listening");
    let server = tokio::spawn(health.track("http server", shutdown.clone(), async move {
        axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await
    }));
    let join = tokio::spawn(async move {
        let served = server.await.map_err(|e| GatewayError::Config(format!("http server task: {e}")))?;
        let projected = projection_task.await.map_err(|e| GatewayError::Config(format!("projection task: {e}")))?;
        served?;
        projected?;
        Ok(())
    });
    Ok(RunningGateway { addr, health, join })
}
