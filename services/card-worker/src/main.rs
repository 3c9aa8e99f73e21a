//! card-worker: consumes `cards.commands.v1`, carries each card command out
//! once at the processor that holds the card (Lithic or Marqeta; a new card
//! where the routing policy says), publishes `cards.outcomes.v1` and one
//! `cards.events.v1` event per change of a card. All logic lives in
//! `switchyard-worker`; this binary parses arguments, sets up logging and
//! turns SIGINT/SIGTERM into a graceful drain.

use anyhow::Context;
use clap::Parser;
use std::path::PathBuf;
use switchyard_worker::card::config::CardWorkerConfig;
use switchyard_worker::card::run::start_card_worker;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(version, about = "switchyard card worker")]
struct Args {
    /// YAML config; see ops/card-worker.example.yaml.
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
    let config = CardWorkerConfig::load(&args.config).context("invalid configuration")?;
    let shutdown = CancellationToken::new();
    let worker = start_card_worker(config, shutdown.clone()).await.context("card worker failed to start")?;
    let ended = switchyard_service::serve_until_stopped(worker.admin_addr, &shutdown, "card commands", &worker.health).await;
    Ok(switchyard_service::drain(ended, worker.join, "consumer").await)
}
