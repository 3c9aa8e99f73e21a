//! Wiring: store, codecs, outbox, one consumer runtime per input topic and
//! the sweep, until the shutdown token fires.
//!
//! Each input topic has its own consumer group (`<group_id>.<input>`), so a
//! slow topic never holds back another's offsets. Messages of one applicant
//! may thus be handled concurrently across topics; the store's
//! compare-and-set on the flow version serializes them. A failure that may
//! pass (store or broker down) goes to the input's own retry topic, at most
//! `max_retry_rounds` times, then to the DLQ; one that cannot pass goes to
//! the DLQ at once. A retried input may thus be overtaken by a later one of
//! the same applicant; the state machine ignores inputs that arrive out of
//! turn, and the DLQ keeps what could not apply for an operator, which beats
//! blocking the partition forever behind a poison message.

use crate::config::OrchestratorConfig;
use crate::handler::{Decoders, OnboardingHandler, AML_OUTCOME_SCHEMA, FRAUD_OUTCOME_SCHEMA, KYC_OUTCOME_SCHEMA, ONBOARDING_COMMAND_SCHEMA};
use crate::metrics::{serve_admin, Metrics};
use crate::outbox::Outbox;
use crate::pii::Pii;
use crate::sweep::Sweep;
use crate::OrchestratorError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use switchyard_bus::consumer::RuntimeSettings;
use switchyard_bus::{AvroDecoder, BusError, ConsumerRuntime, Publisher, RegistryClient, RuntimeTopics};
use switchyard_store::onboarding::OnboardingStore;
use switchyard_store::Store;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct RunningOrchestrator {
    pub admin_addr: Option<SocketAddr>,
    pub metrics: Arc<Metrics>,
    pub flows: OnboardingStore,
    /// Liveness and readiness; dead once a consumer or the sweep stops or the producer fails fatally.
    pub health: switchyard_service::Health,
    /// Resolves when every consumer has drained and committed and the sweep stopped.
    pub join: JoinHandle<Result<(), BusError>>,
}

pub async fn start_orchestrator(config: OrchestratorConfig, shutdown: CancellationToken) -> Result<RunningOrchestrator, OrchestratorError> {
    config.validate()?;
    let topics = config.topics.clone();
    let registry = Arc::new(RegistryClient::new(&config.schema_registry_url)?);
    let store = Store::connect(&config.database_url).await?;
    // The commands topic names the deployment (test stacks prefix it).
    let flows = OnboardingStore::open(&store, &topics.commands).await?;
    let publisher = Publisher::new(&config.kafka)?;
    let metrics = Arc::new(Metrics::new());
    let pii = Pii::from_config(&store, &config.pii_keys).await.map_err(|e| OrchestratorError::Config(e.to_string()))?;
    let outbox = Arc::new(Outbox::new(flows.clone(), pii, publisher.clone(), &registry, topics.clone(), metrics.clone()).await?);
    let decoders = Decoders {
        commands: AvroDecoder::new(registry.clone(), ONBOARDING_COMMAND_SCHEMA)?,
        kyc: AvroDecoder::new(registry.clone(), KYC_OUTCOME_SCHEMA)?,
        aml: AvroDecoder::new(registry.clone(), AML_OUTCOME_SCHEMA)?,
        fraud: AvroDecoder::new(registry.clone(), FRAUD_OUTCOME_SCHEMA)?,
    };
    let handler = Arc::new(OnboardingHandler {
        decoders,
        outbox: outbox.clone(),
        topics: topics.clone(),
        limits: config.limits.clone(),
        metrics: metrics.clone(),
        retry_delay: Duration::from_millis(config.retry_topic_delay_ms),
    });
    let settings = RuntimeSettings { max_in_flight: config.max_in_flight, max_retry_rounds: config.max_retry_rounds, ..RuntimeSettings::default() };
    let health = switchyard_service::Health::new();
    switchyard_service::checks::broker(&health, &config.kafka, &topics.commands)?;
    switchyard_service::checks::registry(&health, &config.schema_registry_url);
    switchyard_service::checks::store(&health, store.pool().clone());
    switchyard_service::checks::producer(&health, publisher.clone(), shutdown.clone());
    let mut tasks = Vec::new();
    for (name, input, retry) in topics.inputs() {
        let mut kafka = config.kafka.clone();
        kafka.group_id = format!("{}.{name}", config.kafka.group_id);
        let runtime_topics = RuntimeTopics { input: input.to_owned(), retry: Some(retry.to_owned()), dlq: topics.dlq.clone(), held: None };
        let runtime = ConsumerRuntime::new(&kafka, publisher.clone(), runtime_topics, settings.clone(), handler.clone(), shutdown.clone())?;
        metrics.attach_runtime(name, runtime.stats());
        tasks.push(tokio::spawn(health.track(format!("{name} consumer"), shutdown.clone(), runtime.run())));
    }
    let sweep = Sweep {
        outbox,
        limits: config.limits.clone(),
        metrics: metrics.clone(),
        interval: Duration::from_millis(config.sweep_interval_ms),
        outbox_grace_ms: config.outbox_grace_ms,
        retention_ms: config.retention_ms,
    };
    let sweep_task = tokio::spawn(health.track("sweep", shutdown.clone(), {
        let shutdown = shutdown.clone();
        async move {
            sweep.run(shutdown).await;
            Ok::<(), std::convert::Infallible>(())
        }
    }));
    let admin_addr = match config.admin_bind {
        Some(bind) => Some(serve_admin(bind, metrics.clone(), &health, shutdown.clone()).await?),
        None => None,
    };
    tracing::info!(commands = %topics.commands, group = %config.kafka.group_id, "onboarding orchestrator started");
    let join = tokio::spawn(async move {
        let mut result = Ok(());
        for task in tasks {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = Err(e),
                Err(e) => result = Err(BusError::Config(format!("consumer task: {e}"))),
            }
        }
        let _ = sweep_task.await;
        result
    });
    Ok(RunningOrchestrator { admin_addr, metrics, flows, health, join })
}
