//! aml-worker: consumes `aml.commands.v1`, runs each sanctions/PEP screening
//! once at a vendor (ComplyAdvantage or OpenSanctions), publishes `aml.outcomes.v1`. All
//! logic lives in `switchyard-worker`; this binary parses arguments, sets up
//! logging and turns SIGINT/SIGTERM into a graceful drain.

use anyhow::Context;
use clap::Parser;
use std::path::PathBuf;
use switchyard_worker::check_config::CheckWorkerConfig;
use switchyard_worker::check_run::start_check_worker;
use switchyard_worker::aml::Aml;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(version, about = "switchyard AML worker")]
struct Args {
    /// YAML config; see ops/aml-worker.example.yaml.
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
    let config = CheckWorkerConfig::load(&args.config).context("invalid configuration")?;
    let shutdown = CancellationToken::new();
    let worker = start_check_worker::<Aml>(config, shutdown.clone()).await.context("aml worker failed to start")?;
    let ended = switchyard_service::serve_until_stopped(worker.admin_addr, &shutdown, "screenings", &worker.health).await;
    Ok(switchyard_service::drain(ended, worker.join, "consumer").await)
}
