//! webhook-ingester: `POST /webhooks/{provider}` in, verified and
//! deduplicated provider events out on `<domain>.provider-events.v1`. All
//! logic lives in `switchyard-ingester`; this binary parses arguments, sets up
//! logging and turns SIGINT/SIGTERM into a graceful stop (requests in flight
//! finish, so none is acknowledged without its event on the bus).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context;
use clap::Parser;
use std::path::PathBuf;
use switchyard_ingester::config::IngesterConfig;
use switchyard_ingester::start_ingester;
use tokio_util::sync::CancellationToken;

mod bench;

#[derive(Parser)]
#[command(version, about = "switchyard webhook ingester")]
struct Args {
    /// YAML config; see ops/webhook-ingester.example.yaml.
    #[arg(long, env = "SWITCHYARD_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    log: switchyard_service::LogArgs,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Measures callbacks/s and latency against a bare handler (needs the broker and PostgreSQL).
    Bench {
        #[arg(long, default_value_t = 20_000)]
        callbacks: usize,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    // Held to the end of main: dropping it flushes the last trace spans.
    let _telemetry = switchyard_service::init_telemetry(&args.log);
    switchyard_service::exit(run(args).await)
}

async fn run(args: Args) -> anyhow::Result<switchyard_service::Ended> {
    if let Some(Command::Bench { callbacks, concurrency }) = args.command {
        bench::run(callbacks, concurrency).await?;
        return Ok(switchyard_service::Ended::Stopped);
    }
    let Some(config_path) = args.config else { anyhow::bail!("--config is required") };
    let config = IngesterConfig::load(&config_path).context("invalid configuration")?;
    let shutdown = CancellationToken::new();
    let ingester = start_ingester(config, shutdown.clone()).await.context("webhook ingester failed to start")?;
    tracing::info!(addr = %ingester.addr, "POST /webhooks/{{provider}}");
    let ended = switchyard_service::serve_until_stopped(Some(ingester.addr), &shutdown, "callbacks", &ingester.health).await;
    Ok(switchyard_service::drain(ended, ingester.join, "server").await)
}
