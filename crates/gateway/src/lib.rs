//! The product-facing HTTP gateway: a thin, stateless edge over the bus.
//! A POST validates, publishes the canonical command the workers already
//! consume, waits for the broker's acknowledgement and answers 202 with the
//! resource's URL; a GET answers from a projection of the outcome topic kept
//! in the store, with `ETag` and bounded long polling.
//!
//! # Layout
//! - [`config`]: the configuration file.
//! - [`auth`]: API keys and scopes per consuming team, and the audit entry of every call.
//! - [`callbacks`]: signed callbacks (Standard Webhooks) to a team when its resource reaches a terminal state.
//! - [`oauth2`]: OAuth2 access tokens (JWT) verified against the issuer's key set
//!   (`jwt_ring`: the signature check, by ring).
//! - [`problem`]: RFC 9457 problem details with our error taxonomy.
//! - [`openapi`]: the OpenAPI 3.1 document generated from the handlers.
//! - `resource`: the shape every domain's routes share (idempotency, publish,
//!   202 + Location; ETag and long polling; lists).
//! - `projection`: the consumers writing each resource's current state.
//! - one module per domain, each its request, canonical command, view,
//!   projection and handlers: [`payouts`] (`/v1/payouts`), [`kyc`]
//!   (`/v1/kyc/checks`), [`aml`] (`/v1/aml/screenings`), [`fraud`]
//!   (`/v1/fraud/scores`), [`onboarding`] (`/v1/onboarding/applications`,
//!   with `/evidence` and `/decisions`), [`cards`] (`/v1/cards`, with
//!   `/transitions`), [`openbanking`] (`/v1/openbanking/consents`, with
//!   [`openbanking_actions`]: `/completion`, `/refresh` and `/revocation`) and
//!   [`openbanking_payments`] (`/v1/openbanking/payments`).
//!
//! Idempotency: every POST needs an `Idempotency-Key`, which becomes the
//! command's idempotency key (so an HTTP retry and a bus redelivery meet in
//! the worker's claim); the gateway's own record of it lives in
//! `switchyard_store::gateway`.

pub mod aml;
pub mod auth;
pub mod callbacks;
pub mod cards;
pub mod config;
pub mod fraud;
mod jwt_ring;
pub mod kyc;
pub mod oauth2;
pub mod onboarding;
pub mod openapi;
pub mod openapi_gate;
pub mod openbanking;
pub mod openbanking_actions;
pub mod openbanking_payments;
pub mod payouts;
pub mod problem;
mod projection;
mod resource;

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
pub const KYC_COMMAND_SCHEMA: &str = include_str!("../../../schemas/kyc/KycCommand.v1.avsc");
pub const KYC_OUTCOME_SCHEMA: &str = include_str!("../../../schemas/kyc/KycOutcome.v1.avsc");
pub const AML_COMMAND_SCHEMA: &str = include_str!("../../../schemas/aml/AmlCommand.v1.avsc");
pub const AML_OUTCOME_SCHEMA: &str = include_str!("../../../schemas/aml/AmlOutcome.v1.avsc");
pub const FRAUD_COMMAND_SCHEMA: &str = include_str!("../../../schemas/fraud/FraudCommand.v1.avsc");
pub const FRAUD_OUTCOME_SCHEMA: &str = include_str!("../../../schemas/fraud/FraudOutcome.v1.avsc");
pub const ONBOARDING_COMMAND_SCHEMA: &str = include_str!("../../../schemas/onboarding/OnboardingCommand.v1.avsc");
pub const ONBOARDING_EVENT_SCHEMA: &str = include_str!("../../../schemas/onboarding/OnboardingEvent.v1.avsc");
pub const CARD_COMMAND_SCHEMA: &str = include_str!("../../../schemas/cards/CardCommand.v1.avsc");
pub const CARD_OUTCOME_SCHEMA: &str = include_str!("../../../schemas/cards/CardOutcome.v1.avsc");
pub const CARD_EVENT_SCHEMA: &str = include_str!("../../../schemas/cards/CardEvent.v1.avsc");
pub const OPENBANKING_COMMAND_SCHEMA: &str = include_str!("../../../schemas/openbanking/OpenBankingCommand.v1.avsc");
pub const OPENBANKING_OUTCOME_SCHEMA: &str = include_str!("../../../schemas/openbanking/OpenBankingOutcome.v1.avsc");
pub const OPENBANKING_EVENT_SCHEMA: &str = include_str!("../../../schemas/openbanking/OpenBankingEvent.v1.avsc");

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

/// One encoder per command topic, each registered under its subject.
pub(crate) struct Encoders {
    pub(crate) payouts: AvroEncoder,
    pub(crate) kyc: AvroEncoder,
    pub(crate) aml: AvroEncoder,
    pub(crate) fraud: AvroEncoder,
    pub(crate) onboarding: AvroEncoder,
    pub(crate) cards: AvroEncoder,
    pub(crate) openbanking: AvroEncoder,
}

/// Shared state of the request path.
pub(crate) struct Gateway {
    pub(crate) config: GatewayConfig,
    pub(crate) encoders: Encoders,
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
    /// The teams' callbacks: a POST records its resource's owner here.
    pub(crate) callbacks: Arc<callbacks::Callbacks>,
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

/// `/metrics`: the callback deliveries (`switchyard_gateway_callbacks_total`).
async fn metrics(axum::extract::State(app): axum::extract::State<Arc<Gateway>>) -> impl axum::response::IntoResponse {
    let mut registry = prometheus_client::registry::Registry::with_prefix("switchyard_gateway");
    registry.register("callbacks", "Callback deliveries to consuming teams by outcome (delivered, retried, failed)", app.callbacks.metrics.deliveries.clone());
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &registry) {
        tracing::warn!(error = %e, "metrics not encoded");
    }
    ([(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
}

async fn openapi_json() -> impl axum::response::IntoResponse {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ([(axum::http::header::CONTENT_TYPE, "application/json")], DOCUMENT.get_or_init(openapi::document).clone())
}

/// What every projection is built from.
struct Sources<'a> {
    config: &'a GatewayConfig,
    registry: &'a Arc<RegistryClient>,
    store: &'a GatewayStore,
    changed: &'a Arc<tokio::sync::Notify>,
    callbacks: &'a Arc<callbacks::Callbacks>,
    publisher: &'a Publisher,
    shutdown: &'a CancellationToken,
    health: &'a switchyard_service::Health,
}

impl Sources<'_> {
    /// Starts the consumer projecting `topic`, in its own group
    /// (`<group_id>.<topic>`, as the orchestrator's inputs): every gateway
    /// instance shares it, each projecting some partitions into the shared
    /// store. Messages are only read here: a failing write is retried in
    /// place, and the DLQ (reached only by a panic or the handler deadline)
    /// is the gateway's own.
    fn project<P: projection::Projects>(&self, topic: &str, schema: &str) -> Result<JoinHandle<Result<(), switchyard_bus::BusError>>, GatewayError> {
        let handler = Arc::new(projection::Projection::<P> {
            decoder: AvroDecoder::new(self.registry.clone(), schema)?,
            store: self.store.clone(),
            changed: self.changed.clone(),
            callbacks: self.callbacks.clone(),
            kind: std::marker::PhantomData,
        });
        let topics = RuntimeTopics { input: topic.to_owned(), retry: None, dlq: config::projection_dlq(topic), held: None };
        let mut kafka = self.config.kafka.clone();
        kafka.group_id = format!("{}.{topic}", self.config.kafka.group_id);
        let runtime = ConsumerRuntime::new(&kafka, self.publisher.clone(), topics, RuntimeSettings::default(), handler, self.shutdown.clone())?;
        Ok(tokio::spawn(self.health.track(format!("{} projection", P::DOMAIN), self.shutdown.clone(), runtime.run())))
    }
}

/// Warms the producer before the listener is bound, so the first POSTs
/// do not spend their publish deadline on metadata and the producer id (a
/// first POST under load was answered 503 so). A broker that does not
/// answer within a publish timeout does not stop start-up (POSTs answer 503
/// meanwhile, as in any outage): the warm-up goes on in the background, and
/// `/readyz` says not ready until it is done.
async fn warm_up(publisher: &Publisher, config: &GatewayConfig, health: &switchyard_service::Health, shutdown: &CancellationToken) {
    let warmed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = warmed.clone();
    health.check("producer", move || {
        let ready = flag.load(std::sync::atomic::Ordering::Acquire);
        async move { if ready { Ok(()) } else { Err("the producer is not warmed up yet".to_owned()) } }
    });
    let topics: Vec<String> = config.topics.commands().iter().map(|t| (*t).to_owned()).collect();
    let timeout = Duration::from_millis(config.publish_timeout_ms);
    let attempt = {
        let publisher = publisher.clone();
        move || {
            let (publisher, topics) = (publisher.clone(), topics.clone());
            async move {
                let names: Vec<&str> = topics.iter().map(String::as_str).collect();
                publisher.warm_up(&names, timeout).await
            }
        }
    };
    match attempt().await {
        Ok(()) => warmed.store(true, std::sync::atomic::Ordering::Release),
        Err(e) => {
            tracing::warn!(error = %e, "producer not warmed up; serving, not ready, still trying");
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    if attempt().await.is_ok() {
                        tracing::info!("producer warmed up");
                        warmed.store(true, std::sync::atomic::Ordering::Release);
                        return;
                    }
                }
            });
        }
    }
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
    let mut auth = auth::Auth::load(&config.teams)?;
    if let Some(section) = &config.oauth2 {
        let issuer = oauth2::Issuer::new(section).map_err(GatewayError::Config)?;
        // An issuer down at start-up does not stop API keys: tokens are
        // refused until a later fetch succeeds.
        match issuer.refresh().await {
            Ok(keys) => tracing::info!(keys, url = %section.jwks_url, "OAuth2 key set fetched"),
            Err(e) => tracing::warn!(error = %e, url = %section.jwks_url, "OAuth2 key set not fetched; access tokens are refused until it is"),
        }
        tokio::spawn(issuer.clone().run(shutdown.clone()));
        auth.accept_tokens(issuer);
    }
    if config.teams.is_empty() {
        tracing::warn!("no team configured: every /v1 call is answered 401");
    }
    let registry = Arc::new(RegistryClient::new(&config.schema_registry_url)?);
    let t = &config.topics;
    let encoders = Encoders {
        payouts: AvroEncoder::register(&registry, &t.payout_commands, PAYOUT_COMMAND_SCHEMA).await?,
        kyc: AvroEncoder::register(&registry, &t.kyc_commands, KYC_COMMAND_SCHEMA).await?,
        aml: AvroEncoder::register(&registry, &t.aml_commands, AML_COMMAND_SCHEMA).await?,
        fraud: AvroEncoder::register(&registry, &t.fraud_commands, FRAUD_COMMAND_SCHEMA).await?,
        onboarding: AvroEncoder::register(&registry, &t.onboarding_commands, ONBOARDING_COMMAND_SCHEMA).await?,
        cards: AvroEncoder::register(&registry, &t.card_commands, CARD_COMMAND_SCHEMA).await?,
        openbanking: AvroEncoder::register(&registry, &t.openbanking_commands, OPENBANKING_COMMAND_SCHEMA).await?,
    };
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
    let callbacks = callbacks::Callbacks::load(&config.teams, &store).await?;
    let deliverer = tokio::spawn(health.track("callback deliverer", shutdown.clone(), callbacks.clone().run(shutdown.clone())));

    let sources = Sources {
        config: &config,
        registry: &registry,
        store: &gateway_store,
        changed: &changed,
        callbacks: &callbacks,
        publisher: &publisher,
        shutdown: &shutdown,
        health: &health,
    };
    let projections = vec![
        sources.project::<payouts::PayoutOutcomes>(&t.payout_outcomes, PAYOUT_OUTCOME_SCHEMA)?,
        sources.project::<kyc::KycOutcomes>(&t.kyc_outcomes, KYC_OUTCOME_SCHEMA)?,
        sources.project::<aml::AmlOutcomes>(&t.aml_outcomes, AML_OUTCOME_SCHEMA)?,
        sources.project::<fraud::FraudOutcomes>(&t.fraud_outcomes, FRAUD_OUTCOME_SCHEMA)?,
        sources.project::<onboarding::OnboardingEvents>(&t.onboarding_events, ONBOARDING_EVENT_SCHEMA)?,
        sources.project::<cards::CardOutcomes>(&t.card_outcomes, CARD_OUTCOME_SCHEMA)?,
        sources.project::<cards::CardEvents>(&t.card_events, CARD_EVENT_SCHEMA)?,
        sources.project::<openbanking::OpenBankingOutcomes>(&t.openbanking_outcomes, OPENBANKING_OUTCOME_SCHEMA)?,
        sources.project::<openbanking_payments::PaymentEvents>(&t.openbanking_events, OPENBANKING_EVENT_SCHEMA)?,
    ];

    warm_up(&publisher, &config, &health, &shutdown).await;

    let (max_body, bind) = (config.max_body_bytes, config.bind);
    let state = Arc::new(Gateway {
        publish_timeout: Duration::from_millis(config.publish_timeout_ms + 2_000),
        config,
        encoders,
        publisher: std::sync::RwLock::new(publisher),
        kafka,
        store: gateway_store,
        auth,
        audit: store.clone(),
        changed,
        callbacks: callbacks.clone(),
    });
    let app = axum::Router::new()
        .route("/v1/payouts", post(payouts::post_payout).get(payouts::list_payouts))
        .route("/v1/payouts/{id}", get(payouts::get_payout))
        .route("/v1/kyc/checks", post(kyc::post_check))
        .route("/v1/kyc/checks/{id}", get(kyc::get_check))
        .route("/v1/aml/screenings", post(aml::post_screening))
        .route("/v1/aml/screenings/{id}", get(aml::get_screening))
        .route("/v1/fraud/scores", post(fraud::post_score))
        .route("/v1/fraud/scores/{id}", get(fraud::get_score))
        .route("/v1/onboarding/applications", post(onboarding::post_application).get(onboarding::list_applications))
        .route("/v1/onboarding/applications/{id}", get(onboarding::get_application))
        .route("/v1/onboarding/applications/{id}/evidence", post(onboarding::post_evidence))
        .route("/v1/onboarding/applications/{id}/decisions", post(onboarding::post_decision))
        .route("/v1/cards", post(cards::post_card).get(cards::list_cards))
        .route("/v1/cards/{id}", get(cards::get_card))
        .route("/v1/cards/{id}/transitions", post(cards::post_transition))
        .route("/v1/openbanking/consents", post(openbanking::post_consent).get(openbanking::list_consents))
        .route("/v1/openbanking/consents/{id}", get(openbanking::get_consent))
        .route("/v1/openbanking/consents/{id}/completion", post(openbanking_actions::post_completion))
        .route("/v1/openbanking/consents/{id}/refresh", post(openbanking_actions::post_refresh))
        .route("/v1/openbanking/consents/{id}/revocation", post(openbanking_actions::post_revocation))
        .route("/v1/openbanking/payments", post(openbanking_payments::post_payment))
        .route("/v1/openbanking/payments/{id}", get(openbanking_payments::get_payment))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::layer))
        // Public, like any API description: added after the auth layer.
        .route("/openapi.json", get(openapi_json))
        .route("/metrics", get(metrics))
        .fallback(resource::not_found)
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
        let mut projected = Ok(());
        for task in projections {
            let ended = task.await.map_err(|e| GatewayError::Config(format!("projection task: {e}")))?;
            projected = projected.and(ended.map_err(GatewayError::from));
        }
        let delivered = deliverer.await.map_err(|e| GatewayError::Config(format!("callback deliverer task: {e}")))?;
        served?;
        projected.and(delivered)
    });
    Ok(RunningGateway { addr, health, join })
}
