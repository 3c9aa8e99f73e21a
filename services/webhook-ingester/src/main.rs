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
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, env = "SWITCHYARD_LOG_JSON")]
    log_json: bool,
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
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(Command::Bench { callbacks, concurrency }) = args.command {
        return bench::run(callbacks, concurrency).await;
    }
    let Some(config_path) = args.config else { anyhow::bail!("--config is required") };
    switchyard_service::init_logging(args.log_json);
    let config = IngesterConfig::load(&config_path).context("invalid configuration")?;
    let shutdown = CancellationToken::new();
    let ingester = start_ingester(config, shutdown.clone()).await.context("webhook ingester failed to start")?;
    tracing::info!(addr = %ingester.addr, "POST /webhooks/{{provider}}; metrics on /metrics, health on /health");
    switchyard_service::stop_signal().await;
    tracing::info!("stopping: finishing callbacks in flight");
    shutdown.cancel();
    ingester.join.await.context("server task")?.context("server")?;
    Ok(())
}
