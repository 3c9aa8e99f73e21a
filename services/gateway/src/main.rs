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
        /// Record the generated document as the released `/v1`
        /// (services/gateway/openapi.v1.released.json), once the freeze gate
        /// finds nothing in it that breaks the released one's clients.
        #[arg(long, conflicts_with = "check")]
        release: bool,
    },
}

fn release(document: &str) -> anyhow::Result<()> {
    let path = std::path::Path::new(switchyard_gateway::openapi_gate::RELEASED_PATH);
    let released: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?)?;
    let current: serde_json::Value = serde_json::from_str(document)?;
    let broken = switchyard_gateway::openapi_gate::breaking_changes(&released, &current);
    anyhow::ensure!(broken.is_empty(), "not released: these changes break /v1 clients (make them a /v2):\n{}", broken.join("\n"));
    std::fs::write(path, document).with_context(|| format!("writing {}", path.display()))
}

fn openapi(out: &std::path::Path, check: bool, release_it: bool) -> anyhow::Result<()> {
    let document = switchyard_gateway::openapi::document();
    if release_it {
        return release(&document);
    }
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
    if let Some(Command::Openapi { out, check, release }) = &args.command {
        return match openapi(out, *check, *release) {
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
