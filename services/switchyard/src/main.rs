//! `switchyard`, the ops CLI.
//!
//! - `up`: the local stack (broker, schema registry stand-in, vendor
//!   simulators, payout worker) and a demo flow that prints its outcomes.
//! - `registry`: the schema registry stand-in on its own.
//! - `topics create`: creates every topic of topics.yaml.
//! - `bench`: throughput figures against a baseline measured in the same run.
//! - `catalog`: the partner catalog, the routing table, shadow agreement.
//! - `dlq list|show|replay`: dead letters, decoded and replayed (`switchyard-ops`).
//! - `trace`: one flow's timeline from the audit log and the topics.
//! - `schemas check|release`: schemas/ against each topic's compatibility
//!   level and the released versions in schemas/released.lock.json.
//! - `asyncapi [--check]`: asyncapi.yaml, the bus contract as AsyncAPI 3,
//!   generated from topics.yaml and schemas/.
//! - `scorecard`: per vendor and domain, latency, error and timeout ratios
//!   against the catalog's SLAs, with breaches; from Prometheus or the audit
//!   log; `--html` for a report with charts.
//! - `sandbox`: every vendor simulator on fixed ports, with fault profiles
//!   and signed webhooks to a URL, for teams and the vendors' own SDKs.

mod asyncapi;
mod bench;
mod catalog;
mod certs;
mod demo_cards;
mod demo_onboarding;
mod demo_openbanking;
mod demo_gateway;
mod demo_recon;
mod demo_truelayer;
mod demo_webhooks;
mod ops;
mod pii;
mod sandbox;
mod schemas;
mod scorecard;
mod sla;
mod up;

/// glibc malloc spent about a quarter of all instructions in the benchmark
/// profile (callgrind); mimalloc handles many small, short-lived allocations
/// across tokio worker threads far better. It is built without transparent
/// huge pages (`no_thp`): with them, memory mimalloc returned and reused was
/// faulted back in 2 MiB at a time, and zeroing those pages took 5-11 % of
/// the benchmark's CPU (perf), against under 2 % without.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(version, about = "switchyard ops CLI")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    log: switchyard_service::LogArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Start the local stack and run the payout demo.
    Up(up::UpArgs),
    /// Serve the schema registry stand-in (Confluent REST subset).
    Registry {
        #[arg(long, default_value = "127.0.0.1:8081")]
        bind: SocketAddr,
        /// Persist schemas here so ids survive a restart.
        #[arg(long)]
        data_file: Option<PathBuf>,
    },
    /// Topic management.
    Topics {
        #[command(subcommand)]
        action: TopicsAction,
    },
    /// Measure throughput; prints figures and ratios. With `--steady RATE`,
    /// hold a constant rate instead and print latency overhead, worker RSS,
    /// CPU per payout and lag once a minute.
    Bench(bench::BenchArgs),
    /// Print the partner catalog, the live routing table and, from a running
    /// worker's metrics, the shadow agreement rate per candidate.
    Catalog(catalog::CatalogArgs),
    /// Every certificate and PEM key the given worker and ingester configs
    /// use (client certificates, CA bundles, webhook keys) with subject,
    /// issuer, not-after and days left.
    Certs(certs::CertsArgs),
    /// Prometheus rules from the partner catalog's SLAs (`sla rules`).
    Sla(sla::SlaArgs),
    /// Per vendor and domain: calls, p50/p95/p99 latency, error and timeout
    /// ratios against the catalog's SLAs, with each breach's start and end;
    /// from Prometheus (`--prometheus`) or the audit log. `--html FILE`
    /// writes a self-contained report with charts.
    Scorecard(scorecard::ScorecardArgs),
    /// Dead-letter topics: list, show, replay.
    Dlq(ops::DlqArgs),
    /// The timeline of one flow (correlation id, subject id or onboarding
    /// flow id): commands, routing, vendor calls, retries, dead letters,
    /// outcomes, onboarding transitions.
    Trace(ops::TraceArgs),
    /// Schema compatibility gate: `check` schemas/ against released versions
    /// at each topic's level, `release` the current ones.
    Schemas(schemas::SchemasArgs),
    /// Generate asyncapi.yaml (AsyncAPI 3) from topics.yaml and schemas/;
    /// `--check` fails if the committed file is stale.
    Asyncapi(asyncapi::AsyncApiArgs),
    /// Serve every vendor simulator on fixed, documented ports (Stripe on
    /// 12111, Adyen 12112, ...), with a fault profile per vendor and signed
    /// webhooks to a URL you give, until Ctrl-C: point your code or the
    /// vendors' official SDKs at it.
    Sandbox(sandbox::SandboxArgs),
    /// Personal data at rest: `erase <subject>` crypto-shreds one subject
    /// and writes an erasure attestation to the audit log.
    Pii(pii::PiiArgs),
}

#[derive(Subcommand)]
enum TopicsAction {
    /// Create every topic in topics.yaml (existing ones are left alone).
    Create {
        #[arg(long, default_value = "127.0.0.1:9092")]
        brokers: String,
        #[arg(long, default_value = "topics.yaml")]
        file: PathBuf,
        /// Replicate each topic at most N times (min.insync.replicas lowered
        /// to match), for clusters with fewer brokers than topics.yaml's
        /// production settings; without it the file applies as written.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(1..))]
        max_replication_factor: Option<i32>,
        /// Also set each topic's subject (`<topic>-value`) to its
        /// compatibility level on this registry (`PUT /config/{subject}`).
        #[arg(long, value_name = "URL")]
        schema_registry: Option<String>,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Quiet by default: the commands print their own results.
    switchyard_service::init_logging_at(cli.log.format(), "warn");
    switchyard_service::exit(run(cli.command).await.map(|()| switchyard_service::Ended::Stopped))
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Up(args) => up::run(args).await,
        Command::Registry { bind, data_file } => {
            let config = switchyard_schema_registry::RegistryConfig { bind, data_file };
            println!("schema registry stand-in on http://{bind}");
            switchyard_schema_registry::run_until(config, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .context("schema registry")
        }
        Command::Topics { action: TopicsAction::Create { brokers, file, max_replication_factor, schema_registry } } => {
            let mut topics = switchyard_bus::topics::TopicsFile::load(&file)?;
            if let Some(max) = max_replication_factor {
                topics = topics.capped_replication(max);
            }
            topics.create_all(&switchyard_bus::KafkaConfig::new(brokers, "switchyard-cli")).await?;
            for t in &topics.topics {
                let r = topics.replication_of(t);
                let min_insync = r.min_insync.map_or("broker default".to_owned(), |m| m.to_string());
                println!("{:<32} partitions={} replication_factor={} min_insync_replicas={min_insync}", t.name, t.partitions, r.factor);
            }
            if let Some(url) = schema_registry {
                let registry = switchyard_bus::RegistryClient::new(url)?;
                let text = std::fs::read_to_string(&file).with_context(|| file.display().to_string())?;
                for (subject, level) in switchyard_bus::topics::subject_levels(&text, "")? {
                    registry.set_compatibility(&subject, level.as_str()).await?;
                    println!("{subject:<40} compatibility={}", level.as_str());
                }
            }
            Ok(())
        }
        Command::Bench(args) => bench::run(args).await,
        Command::Catalog(args) => catalog::run(args).await,
        Command::Certs(args) => certs::run(args),
        Command::Sla(args) => sla::run(args),
        Command::Scorecard(args) => scorecard::run(args).await,
        Command::Dlq(args) => ops::run_dlq(args).await,
        Command::Trace(args) => ops::run_trace(args).await,
        Command::Schemas(args) => schemas::run(args),
        Command::Asyncapi(args) => asyncapi::run(args),
        Command::Sandbox(args) => sandbox::run(args).await,
        Command::Pii(args) => pii::run(args).await,
    }
}
