//! openbanking-worker: consumes `openbanking.commands.v1`, carries each
//! consent command out at the aggregator that holds the consent (Plaid; a
//! new consent where the routing policy says), publishes
//! `openbanking.outcomes.v1`, one `openbanking.events.v1` event per consent
//! change and the data deltas of refreshes on `openbanking.data.v1`; and
//! acts on Plaid's webhooks from `openbanking.provider-events.v1`. All
//! logic lives in `switchyard-worker`; this binary parses arguments, sets up
//! logging and turns SIGINT/SIGTERM into a graceful drain.

use anyhow::Context;
use clap::Parser;
use std::path::PathBuf;
use switchyard_worker::openbanking::config::OpenBankingWorkerConfig;
use switchyard_worker::openbanking::run::start_openbanking_worker;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(version, about = "switchyard open banking worker")]
struct Args {
    /// YAML config; see ops/openbanking-worker.example.yaml.
    #[arg(long, env = "SWITCHYARD_CONFIG")]
    config: PathBuf,
    #[command(flatten)]
    log: switchyard_service::LogArgs,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    // Held to the end of main: dropping it flushes the last trace spans.
    let _telemetry = switchyard_service::init_telemetry(&args.log);
    switchyard_service::exit(run(args).await)
}

async fn run(args: Args) -> anyhow::Result<switchyard_service::Ended> {
    let config = OpenBankingWorkerConfig::load(&args.config).context("invalid configuration")?;
    let shutdown = CancellationToken::new();
    let worker = start_openbanking_worker(config, shutdown.clone()).await.context("open banking worker failed to start")?;
    let ended = switchyard_service::serve_until_stopped(worker.admin_addr, &shutdown, "open banking commands", &worker.health).await;
    Ok(switchyard_service::drain(ended, worker.join, "consumer").await)
}
