//! gateway: the product-facing HTTP plane (`/v1/payouts`, ...). All logic
//! lives in `switchyard-gateway`; this binary parses arguments, sets up
//! logging and turns SIGINT/SIGTERM into a graceful stop (requests in flight
//! finish, so none is answered 202 without its command on the bus).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context;
use clap::Parser;
use std::path::PathBuf;
use switchyard_gateway::config::GatewayConfig;
use switchyard_gateway::start_gateway;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(version, about = "switchyard HTTP gateway")]
struct Args {
    /// YAML config; see ops/gateway.example.yaml.
    #[arg(long, env = "SWITCHYARD_CONFIG")]
    config: PathBuf,
    #[command(flatten)]
    log: switchyard_service::LogArgs,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    switchyard_service::init_logging(args.log.format());
    switchyard_service::exit(run(args).await)
}

async fn run(args: Args) -> anyhow::Result<switchyard_service::Ended> {
    let config = GatewayConfig::load(&args.config).context("invalid configuration")?;
    let shutdown = CancellationToken::new();
    let gateway = start_gateway(config, shutdown.clone()).await.context("gateway failed to start")?;
    tracing::info!(addr = %gateway.addr, "POST /v1/payouts");
    let ended = switchyard_service::serve_until_stopped(Some(gateway.addr), &shutdown, "requests", &gateway.health).await;
    Ok(switchyard_service::drain(ended, gateway.join, "gateway").await)
}
