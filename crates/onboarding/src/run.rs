//! Wiring: store, codecs, outbox, one consumer runtime per input topic and
//! the sweep, until the shutdown token fires.
//!
//! Each input topic has its own consumer group (`<group_id>.<input>`), so a
//! slow topic never holds back another's offsets. Messages of one applicant
//! may thus be handled concurrently across topics; the store's
//! compare-and-set on the flow version serializes them. There is no retry
//! topic: a failure (store or broker down) is retried in place, which keeps
//! an applicant's inputs in order.

use crate::config::OrchestratorConfig;
use crate::handler::{Decoders, OnboardingHandler, AML_OUTCOME_SCHEMA, FRAUD_OUTCOME_SCHEMA, KYC_OUTCOME_SCHEMA, ONBOARDING_COMMAND_SCHEMA};
use crate::metrics::{serve_admin, Metrics};
use crate::outbox::Outbox;
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
    let outbox = Arc::new(Outbox::new(flows.clone(), publisher.clone(), &registry, topics.clone(), metrics.clone()).await?);
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
    });
    let settings = RuntimeSettings { max_in_flight: config.max_in_flight, ..RuntimeSettings::default() };
    let mut tasks = Vec::new();
    for (name, input) in [("commands", &topics.commands), ("kyc", &topics.kyc_outcomes), ("aml", &topics.aml_outcomes), ("fraud", &topics.fraud_outcomes)] {
        let mut kafka = config.kafka.clone();
        kafka.group_id = format!("{}.{name}", config.kafka.group_id);
        let runtime_topics = RuntimeTopics { input: input.clone(), retry: None, dlq: topics.dlq.clone(), held: None };
        let runtime = ConsumerRuntime::new(&kafka, publisher.clone(), runtime_topics, settings.clone(), handler.clone(), shutdown.clone())?;
        metrics.attach_runtime(name, runtime.stats());
        tasks.push(tokio::spawn(runtime.run()));
    }
    let sweep = Sweep {
        outbox,
        limits: config.limits.clone(),
        metrics: metrics.clone(),
        interval: Duration::from_millis(config.sweep_interval_ms),
        outbox_grace_ms: config.outbox_grace_ms,
        retention_ms: config.retention_ms,
    };
    let sweep_task = tokio::spawn(sweep.run(shutdown.clone()));
    let admin_addr = match config.admin_bind {
        Some(bind) => Some(serve_admin(bind, metrics.clone(), shutdown.clone()).await?),
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
    Ok(RunningOrchestrator { admin_addr, metrics, flows, join })
}
