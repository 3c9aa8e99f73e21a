//! Wiring: the continuous reconciler (a consumer group plus an evaluation
//! loop) and the one-shot job over a time range.

use crate::commands::CommandSealer;
use crate::engine::{DiscrepancySink, Engine, PassStats};
use crate::ingest::{IngestStats, Ingestor, ReconTopics, TimeRange, DISCREPANCY_SCHEMA, PAYOUT_OUTCOME_SCHEMA};
use crate::rules::Policy;
use crate::settle::{OutcomeSink, Settler};
use crate::ReconError;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use switchyard_adapters::payouts::PayoutProvider;
use switchyard_bus::{AvroEncoder, KafkaConfig, PositionSink, Publisher, RegistryClient};
use switchyard_service::positions::StorePositions;
use switchyard_canonical::{now_ms, Discrepancy, DiscrepancyStatus};
use switchyard_routing::PartnerCatalog;
use switchyard_store::recon::{ReconStore, Tally};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct ReconConfig {
    pub kafka: KafkaConfig,
    pub schema_registry_url: String,
    pub database_url: String,
    /// Partitions the store between deployments sharing a database.
    pub scope: String,
    pub topics: ReconTopics,
    pub policy: Policy,
    /// Adapters used to settle stuck payouts, by catalog name; empty = report only.
    pub providers: HashMap<String, PayoutProvider>,
    /// The payout worker's database: settled payouts complete its records.
    pub worker_database_url: Option<String>,
    /// How often due subjects are evaluated when no new facts wake the loop
    /// (windows expire without any message arriving).
    pub eval_interval: Duration,
    /// Subjects per evaluation batch.
    pub batch: usize,
    /// Where `/metrics` and `/health` are served; none to serve nothing.
    pub admin_bind: Option<std::net::SocketAddr>,
    /// Key-encryption keys sealing the beneficiary data of the payout
    /// commands kept (the first wraps, every listed one unwraps); none: that
    /// data is not kept (see `commands`).
    pub pii_keys: Vec<switchyard_onboarding::pii::PiiKeyConfig>,
}

/// The sealer of kept payout commands, its data keys in the recon database.
async fn sealer(config: &ReconConfig, store: &switchyard_store::Store) -> Result<CommandSealer, ReconError> {
    if config.pii_keys.is_empty() {
        tracing::info!("no pii_keys: payout commands are kept without the beneficiary's name, account and reference");
        return Ok(CommandSealer::default());
    }
    Ok(CommandSealer::new(Some(switchyard_onboarding::pii::Pii::from_config(store, &config.pii_keys).await?)))
}

impl Policy {
    /// Windows per provider from the partner catalog.
    pub fn from_catalog(catalog: Option<&PartnerCatalog>, default_window: Duration, pending_deadline: Duration) -> Self {
        let windows = catalog
            .map(|c| c.partners.iter().map(|p| (p.name.clone(), p.settlement_window.as_millis() as i64)).collect())
            .unwrap_or_default();
        Self {
            domain: "payouts".into(),
            settlement_windows_ms: windows,
            default_window_ms: default_window.as_millis() as i64,
            pending_deadline_ms: pending_deadline.as_millis() as i64,
            settle_retry_ms: 60_000,
        }
    }
}

pub struct RunningReconciler {
    pub store: ReconStore,
    pub admin_addr: Option<std::net::SocketAddr>,
    pub ingest: Arc<IngestStats>,
    /// Liveness and readiness; dead once a loop stops or the producer fails fatally.
    pub health: switchyard_service::Health,
    /// Resolves when both loops stopped.
    pub join: JoinHandle<Result<(), ReconError>>,
}

async fn engine(config: &ReconConfig, store: &ReconStore, publisher: Publisher) -> Result<Engine, ReconError> {
    let registry = Arc::new(RegistryClient::new(&config.schema_registry_url)?);
    let sink = DiscrepancySink {
        publisher: publisher.clone(),
        encoder: AvroEncoder::register(&registry, &config.topics.discrepancies, DISCREPANCY_SCHEMA).await?,
        topic: config.topics.discrepancies.clone(),
    };
    let settler = if config.providers.is_empty() {
        None
    } else {
        let outcomes = OutcomeSink {
            publisher,
            encoder: AvroEncoder::register(&registry, &config.topics.outcomes, PAYOUT_OUTCOME_SCHEMA).await?,
            topic: config.topics.outcomes.clone(),
        };
        let records = match &config.worker_database_url {
            Some(url) => Some(switchyard_store::Store::connect(url).await?),
            None => None,
        };
        Some(Settler { providers: config.providers.clone(), store: store.clone(), outcomes: Some(outcomes), records, concurrency: 16 })
    };
    Ok(Engine::new(store.clone(), config.policy.clone(), Some(sink), settler, config.batch))
}

/// Starts consuming and evaluating until `shutdown`.
pub async fn start(config: ReconConfig, shutdown: CancellationToken) -> Result<RunningReconciler, ReconError> {
    let store = ReconStore::connect(&config.database_url, &config.scope).await?;
    let registry = Arc::new(RegistryClient::new(&config.schema_registry_url)?);
    // Message positions go to the audit log of the same database, where
    // `switchyard trace` looks them up (as the workers' do).
    let audit = switchyard_store::Store::connect(&config.database_url).await?;
    let positions: Arc<dyn PositionSink> = Arc::new(StorePositions::new(audit.clone()));
    let publisher = Publisher::new(&config.kafka)?.with_positions(positions.clone());
    let engine = Arc::new(engine(&config, &store, publisher.clone()).await?);
    let mut ingestor = Ingestor::new(&config.kafka, registry, config.topics.clone(), engine.clone())?;
    ingestor.positions = Some(positions);
    ingestor.sealer = sealer(&config, &audit).await?;
    // Rows kept before sealing (or before this version) get the same treatment, in the background.
    tokio::spawn({
        let (sealer, store, shutdown) = (ingestor.sealer.clone(), store.clone(), shutdown.clone());
        async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                done = sealer.seal_unsealed(&store) => match done {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(commands = n, "payout commands kept before sealing rewritten"),
                    Err(e) => tracing::warn!(error = %e, "payout commands kept before sealing not rewritten; the next start tries again"),
                },
            }
        }
    });
    // Flow-latency joins survive a restart: what the last run left waiting comes back.
    ingestor.flows = Arc::new(crate::flows::FlowLatency::restore(&store).await?);
    let stats = ingestor.stats.clone();
    let health = switchyard_service::Health::new();
    switchyard_service::checks::broker(&health, &config.kafka, &config.topics.postings)?;
    switchyard_service::checks::registry(&health, &config.schema_registry_url);
    {
        // ReconStore keeps its pool to itself; a point lookup is as cheap as `SELECT 1`.
        let store = store.clone();
        health.check("store", move || {
            let store = store.clone();
            async move { store.command("", "").await.map(|_| ()).map_err(|e| e.to_string()) }
        });
    }
    switchyard_service::checks::producer(&health, publisher, shutdown.clone());
    let admin_addr = match config.admin_bind {
        Some(bind) => Some(
            crate::metrics::serve(bind, store.clone(), stats.clone(), ingestor.flows.clone(), &health, shutdown.clone())
                .await
                .map_err(|e| ReconError::Config(format!("admin_bind {bind}: {e}")))?,
        ),
        None => None,
    };
    let ingest = tokio::spawn(health.track("ingest", shutdown.clone(), ingestor.run(shutdown.clone())));
    let interval = config.eval_interval;
    let evaluate = tokio::spawn(health.track("evaluation", shutdown.clone(), {
        let (shutdown, stats) = (shutdown.clone(), stats.clone());
        async move {
            let mut last_sweep = tokio::time::Instant::now();
            while !shutdown.is_cancelled() {
                // Absences are decided once the topics fell quiet (every one
                // read up to now), or after a minute of steady traffic: a
                // consumer that keeps up is never more than a batch behind,
                // and an alarm raised while one lags resolves itself later.
                let caught_up = !stats.backlogged.load(Ordering::Relaxed) || last_sweep.elapsed() >= Duration::from_secs(60);
                let pass = if caught_up {
                    last_sweep = tokio::time::Instant::now();
                    engine.drain(switchyard_canonical::now_ms()).await
                } else {
                    Ok(PassStats::default())
                };
                if let Ok(p) = &pass {
                    stats.evaluated.fetch_add(p.evaluated, Ordering::Relaxed);
                    stats.opened.fetch_add(p.opened, Ordering::Relaxed);
                    stats.resolved.fetch_add(p.resolved, Ordering::Relaxed);
                    stats.settled.fetch_add(p.settled, Ordering::Relaxed);
                }
                match pass {
                    Ok(p) if p != PassStats::default() => tracing::info!(
                        evaluated = p.evaluated, opened = p.opened, updated = p.updated, resolved = p.resolved, settled = p.settled,
                        "reconciled"
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "evaluation failed; retrying"),
                }
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(interval) => {}
                }
            }
            Ok::<(), std::convert::Infallible>(())
        }
    }));
    let join = tokio::spawn(async move {
        let ingested = ingest.await;
        let _ = evaluate.await;
        // Positions still queued for the store: a clean stop loses none.
        audit.flush_audit().await;
        match ingested {
            Ok(r) => r,
            Err(e) => Err(ReconError::Config(format!("ingest task: {e}"))),
        }
    });
    Ok(RunningReconciler { store, admin_addr, ingest: stats, health, join })
}

/// What a run found.
#[derive(Debug, Clone)]
pub struct Report {
    pub as_of_ms: i64,
    pub messages: u64,
    pub undecodable: u64,
    pub pass: PassStats,
    pub tally: Tally,
    pub open: Vec<Discrepancy>,
}

impl Report {
    pub fn open_count(&self) -> i64 {
        self.tally.by_class.iter().filter(|(_, s, _)| *s == DiscrepancyStatus::Open).map(|(_, _, n)| n).sum()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "reconciliation as of {} ms: {} messages ({} undecodable), {} subjects evaluated, {} opened, {} resolved, {} settled",
            self.as_of_ms, self.messages, self.undecodable, self.pass.evaluated, self.pass.opened, self.pass.resolved, self.pass.settled
        )?;
        if self.tally.by_class.is_empty() {
            writeln!(f, "  no discrepancies")?;
        }
        for (class, status, n) in &self.tally.by_class {
            writeln!(f, "  {:<26} {:<9} {n}", class.as_str(), status.as_str())?;
        }
        for d in &self.open {
            writeln!(
                f,
                "  OPEN {} [{}] expected {} / actual {}",
                d.discrepancy_id,
                d.providers.join(","),
                d.expected,
                d.actual
            )?;
        }
        Ok(())
    }
}

/// Reads the topics from the beginning, keeps facts stamped within `range`,
/// stops once no message arrived for `idle`, and judges every subject as of
/// the end of the range (or now, if that is earlier).
pub async fn run_once(config: ReconConfig, range: TimeRange, idle: Duration) -> Result<Report, ReconError> {
    let store = ReconStore::connect(&config.database_url, &config.scope).await?;
    let registry = Arc::new(RegistryClient::new(&config.schema_registry_url)?);
    let engine = Arc::new(engine(&config, &store, Publisher::new(&config.kafka)?).await?);
    // A private group: the job reads everything and leaves the service's offsets alone.
    let mut kafka = config.kafka.clone();
    kafka.group_id = format!("{}-once-{}", config.kafka.group_id, switchyard_canonical::now_ms());
    kafka.extra.insert("enable.auto.commit".into(), "false".into());
    let mut ingestor = Ingestor::new(&kafka, registry, config.topics.clone(), engine.clone())?;
    ingestor.range = Some(range);
    if !config.pii_keys.is_empty() {
        ingestor.sealer = sealer(&config, &switchyard_store::Store::connect(&config.database_url).await?).await?;
    }
    let stats = ingestor.stats.clone();
    let stop = CancellationToken::new();
    let task = tokio::spawn(ingestor.run(stop.clone()));
    let started = switchyard_canonical::now_ms();
    // Joining a group takes seconds on some brokers: before the first batch,
    // wait longer than the idle gap that ends the run.
    let first_wait = (idle.as_millis() as i64).max(30_000);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let last = stats.last_batch_at_ms.load(Ordering::Relaxed) as i64;
        let quiet = if last == 0 { now_ms() - started >= first_wait } else { now_ms() - last >= idle.as_millis() as i64 };
        if quiet || task.is_finished() {
            break;
        }
    }
    stop.cancel();
    match task.await {
        Ok(r) => r?,
        Err(e) => return Err(ReconError::Config(format!("ingest task: {e}"))),
    }
    let as_of = range.to_ms.min(switchyard_canonical::now_ms());
    let pass = engine.drain(as_of).await?;
    report(&store, &stats, pass, as_of).await
}

/// The report of a run: judged on ingest plus the timer passes in `pass`.
pub async fn report(store: &ReconStore, stats: &IngestStats, mut pass: PassStats, as_of_ms: i64) -> Result<Report, ReconError> {
    pass.add(PassStats {
        evaluated: stats.evaluated.load(Ordering::Relaxed),
        opened: stats.opened.load(Ordering::Relaxed),
        resolved: stats.resolved.load(Ordering::Relaxed),
        ..PassStats::default()
    });
    Ok(Report {
        as_of_ms,
        messages: stats.messages.load(Ordering::Relaxed),
        undecodable: stats.undecodable.load(Ordering::Relaxed),
        pass,
        tally: store.tally().await?,
        open: store.discrepancies(true, 50).await?,
    })
}
