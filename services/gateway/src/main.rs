//! gateway: the product-facing HTTP plane (`/v1/payouts`, `/v1/kyc/checks`, ...). All logic
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
    /// YAML config; see ops/gateway.example.yaml. Required to serve.
    #[arg(long, env = "SWITCHYARD_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    log: switchyard_service::LogArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Write the OpenAPI 3.1 document generated from the code (to
    /// services/gateway/openapi.json from the workspace root by default).
    Openapi {
        #[arg(long, default_value = switchyard_gateway::openapi::COMMITTED_PATH)]
        out: PathBuf,
        /// Compare with the file instead of writing it; fail when stale.
        #[arg(long)]
        check: bool,
    },
}

fn openapi(out: &std::path::Path, check: bool) -> anyhow::Result<()> {
    let document = switchyard_gateway::openapi::document();
    if check {
        let committed = std::fs::read_to_string(out).with_context(|| format!("reading {}", out.display()))?;
        anyhow::ensure!(committed == document, "{} is stale: run `gateway openapi`", out.display());
        return Ok(());
    }
    std::fs::write(out, document).with_context(|| format!("writing {}", out.display()))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if let Some(Command::Openapi { out, check }) = &args.command {
        return match openapi(out, *check) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    // Held to the end of main: dropping it flushes the last trace spans
    // (exported when SWITCHYARD_OTLP_ENDPOINT is set, as every worker's).
    let _telemetry = switchyard_service::init_telemetry(&args.log);
    switchyard_service::exit(run(args).await)
}

async fn run(args: Args) -> anyhow::Result<switchyard_service::Ended> {
    let path = args.config.context("--config (or SWITCHYARD_CONFIG) is required to serve")?;
    let config = GatewayConfig::load(&path).context("invalid configuration")?;
    let shutdown = CancellationToken::new();
    let gateway = start_gateway(config, shutdown.clone()).await.context("gateway failed to start")?;
    tracing::info!(addr = %gateway.addr, "serving /v1/payouts, /v1/kyc/checks, /v1/aml/screenings, /v1/fraud/scores, /v1/onboarding/applications");
    let ended = switchyard_service::serve_until_stopped(Some(gateway.addr), &shutdown, "requests", &gateway.health).await;
    Ok(switchyard_service::drain(ended, gateway.join, "gateway").await)
}
