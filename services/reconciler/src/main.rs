//! reconciler: compares payout outcomes and provider events with the ledger
//! postings core banking publishes, and reports drift on
//! `recon.discrepancies.v1`. All logic lives in `switchyard-recon`; this
//! binary parses arguments and wires it up.
//!
//! - `reconciler run`: continuous, as a consumer group, until SIGINT/SIGTERM.
//! - `reconciler once --from .. --to ..`: one pass over a time range, prints the report.
//! - `reconciler bench`: reconciles generated postings against their outcomes
//!   through the store and prints throughput and peak RSS.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bench;
mod time;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;
use switchyard_adapters::payouts::adyen::AdyenAdapter;
use switchyard_adapters::payouts::stripe::StripeAdapter;
use switchyard_adapters::payouts::PayoutProvider;
use switchyard_bus::KafkaConfig;
use switchyard_recon::ingest::{ReconTopics, TimeRange};
use switchyard_recon::run::ReconConfig;
use switchyard_recon::Policy;
use switchyard_routing::catalog::parse_duration;
use switchyard_routing::PartnerCatalog;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(version, about = "switchyard reconciler")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    log: switchyard_service::LogArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Reconcile continuously as a member of the consumer group.
    Run(Common),
    /// One pass over facts stamped within a time range; prints the report.
    Once {
        #[command(flatten)]
        common: Common,
        /// Start of the range: Unix ms, RFC 3339 UTC (2026-11-25T00:00:00Z) or `-24h` (before now).
        #[arg(long, value_parser = time::parse_instant)]
        from: i64,
        /// End of the range, same forms; `now` by default. Subjects are judged as of this time.
        #[arg(long, value_parser = time::parse_instant, default_value = "now")]
        to: i64,
        /// The run ends once no message arrived for this long.
        #[arg(long, value_parser = duration, default_value = "3s")]
        idle: Duration,
    },
    /// Reconcile generated postings against their outcomes through the store.
    Bench(bench::BenchArgs),
}

#[derive(Args)]
struct Common {
    #[arg(long, env = "SWITCHYARD_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    #[arg(long, env = "SWITCHYARD_RECON_GROUP", default_value = "reconciler")]
    group: String,
    #[arg(long, env = "SWITCHYARD_SCHEMA_REGISTRY_URL", default_value = "http://127.0.0.1:8081")]
    schema_registry_url: String,
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite:reconciler.db?mode=rwc")]
    database_url: String,
    /// Partitions reconciliation state between deployments sharing a database.
    #[arg(long, env = "SWITCHYARD_RECON_SCOPE", default_value = "default")]
    scope: String,
    /// Prepended to every topic name (isolated environments, tests).
    #[arg(long, env = "SWITCHYARD_TOPIC_PREFIX", default_value = "")]
    topic_prefix: String,
    /// Partner catalog; its `settlement_window` per provider bounds how late a posting may be.
    #[arg(long, env = "SWITCHYARD_CATALOG", default_value = "ops/partners.yaml")]
    catalog: PathBuf,
    /// Window for providers the catalog does not list, and for postings without an outcome.
    #[arg(long, value_parser = duration, default_value = "24h")]
    default_window: Duration,
    /// How long a payout may stay pending_unknown before it is reported and its vendor asked.
    #[arg(long, value_parser = duration, default_value = "15m")]
    pending_deadline: Duration,
    /// A payout-worker config (ops/payout-worker.example.yaml) whose providers are used to
    /// settle stuck payouts; without one, stuck payouts are only reported.
    #[arg(long, env = "SWITCHYARD_WORKER_CONFIG")]
    worker_config: Option<PathBuf>,
    /// Serve `/metrics`, `/livez` and `/readyz` (`/health`) here (e.g. 127.0.0.1:9465).
    #[arg(long, env = "SWITCHYARD_RECON_ADMIN_BIND")]
    admin_bind: Option<std::net::SocketAddr>,
    /// How often due subjects are evaluated when no message arrives.
    #[arg(long, value_parser = duration, default_value = "5s")]
    eval_interval: Duration,
    /// A YAML list of key-encryption keys sealing the beneficiary data of
    /// the payout commands kept (`- {id: k1, key: {file: /run/secrets/pii-k1}}`,
    /// new key first). Without it that data is not kept at all.
    #[arg(long, env = "SWITCHYARD_PII_KEYS")]
    pii_keys: Option<PathBuf>,
}

fn duration(s: &str) -> Result<Duration, String> {
    parse_duration(s).ok_or_else(|| format!("{s:?} is not a duration like 500ms, 3s, 15m, 24h"))
}

impl Common {
    fn config(&self) -> anyhow::Result<ReconConfig> {
        let catalog = if self.catalog.exists() {
            Some(PartnerCatalog::load(&self.catalog).context("--catalog")?)
        } else {
            tracing::warn!(path = %self.catalog.display(), "no partner catalog; every provider gets --default-window");
            None
        };
        Ok(ReconConfig {
            kafka: KafkaConfig::new(&self.brokers, &self.group),
            schema_registry_url: self.schema_registry_url.clone(),
            database_url: self.database_url.clone(),
            scope: self.scope.clone(),
            topics: ReconTopics::with_prefix(&self.topic_prefix),
            policy: Policy::from_catalog(catalog.as_ref(), self.default_window, self.pending_deadline),
            providers: self.providers()?,
            // Settled payouts complete the worker's records, in its database.
            worker_database_url: self.worker_database_url()?,
            eval_interval: self.eval_interval,
            batch: 5000,
            admin_bind: self.admin_bind,
            pii_keys: self.pii_keys()?,
        })
    }

    fn pii_keys(&self) -> anyhow::Result<Vec<switchyard_recon::commands::PiiKeyConfig>> {
        let Some(path) = &self.pii_keys else { return Ok(Vec::new()) };
        let text = std::fs::read_to_string(path).with_context(|| format!("--pii-keys {}", path.display()))?;
        serde_norway::from_str(&text).with_context(|| format!("--pii-keys {}", path.display()))
    }

    fn worker_database_url(&self) -> anyhow::Result<Option<String>> {
        let Some(path) = &self.worker_config else { return Ok(None) };
        Ok(Some(switchyard_worker::PayoutWorkerConfig::load(path).context("--worker-config")?.database_url))
    }

    fn providers(&self) -> anyhow::Result<HashMap<String, PayoutProvider>> {
        let Some(path) = &self.worker_config else { return Ok(HashMap::new()) };
        let config = switchyard_worker::PayoutWorkerConfig::load(path).context("--worker-config")?;
        let mut providers = HashMap::new();
        for (i, p) in config.providers.iter().enumerate().filter(|(_, p)| !p.sandbox_only) {
            let key = p.api_key.load(&format!("providers[{i}].api_key"))?;
            // Status queries only: a few connections are plenty.
            let transport = switchyard_adapters::http::Transport { max_connections: 16, ..p.transport()? };
            let adapter = match p.kind {
                switchyard_worker::ProviderKind::Stripe => {
                    let account = p.connected_account.clone().unwrap_or_default();
                    PayoutProvider::Stripe(StripeAdapter::new(&p.name, &p.base_url, key, &account, transport)?)
                }
                switchyard_worker::ProviderKind::Adyen => {
                    let account = p.balance_account_id.clone().unwrap_or_default();
                    PayoutProvider::Adyen(AdyenAdapter::new(&p.name, &p.base_url, key, account, transport)?)
                }
                switchyard_worker::ProviderKind::TrueLayer => {
                    PayoutProvider::TrueLayer(switchyard_worker::payout::truelayer_config::adapter(p, key.into(), transport)?)
                }
            };
            providers.insert(p.name.clone(), adapter);
        }
        Ok(providers)
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Held to the end of main: dropping it flushes the last trace spans.
    let _telemetry = switchyard_service::init_telemetry(&cli.log);
    switchyard_service::exit(run(cli.command).await)
}

async fn run(command: Command) -> anyhow::Result<switchyard_service::Ended> {
    match command {
        Command::Run(common) => {
            let shutdown = CancellationToken::new();
            let running = switchyard_recon::run::start(common.config()?, shutdown.clone()).await.context("reconciler failed to start")?;
            tracing::info!(scope = %common.scope, "reconciler started");
            let ended = switchyard_service::serve_until_stopped(running.admin_addr, &shutdown, "facts", &running.health).await;
            return Ok(switchyard_service::drain(ended, running.join, "reconciler").await);
        }
        Command::Once { common, from, to, idle } => {
            if from > to {
                bail!("--from is after --to");
            }
            let range = TimeRange { from_ms: from, to_ms: to };
            let report = switchyard_recon::run::run_once(common.config()?, range, idle).await?;
            print!("{report}");
        }
        Command::Bench(args) => bench::run(args).await?,
    }
    Ok(switchyard_service::Ended::Stopped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent_and_parses_a_range() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["reconciler", "once", "--from", "2026-11-24T00:00:00Z", "--to", "1795600000000", "--scope", "s"])
            .expect("parses");
        let Command::Once { from, to, idle, common } = cli.command else { panic!("once") };
        assert_eq!((from, to, idle, common.scope.as_str()), (1_795_478_400_000, 1_795_600_000_000, Duration::from_secs(3), "s"));
        assert!(Cli::try_parse_from(["reconciler", "once", "--from", "yesterday"]).is_err());
        assert!(Cli::try_parse_from(["reconciler", "run", "--pending-deadline", "soon"]).is_err());
    }
}
