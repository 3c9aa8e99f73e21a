//! onboarding-orchestrator: runs the KYC -> AML -> fraud chain per applicant
//! as a state machine driven by the workers' outcomes (see the
//! `switchyard-onboarding` crate docs for states, timeouts and
//! compensation). This binary parses arguments, sets up logging and turns
//! SIGINT/SIGTERM into a graceful drain; flows resume from the store on the
//! next start.

use anyhow::Context;
use clap::Parser;
use std::path::PathBuf;
use switchyard_onboarding::{start_orchestrator, OrchestratorConfig};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(version, about = "switchyard onboarding orchestrator")]
struct Args {
    /// YAML config; see ops/onboarding-orchestrator.example.yaml.
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
    let config = OrchestratorConfig::load(&args.config).context("invalid configuration")?;
    let shutdown = CancellationToken::new();
    let running = start_orchestrator(config, shutdown.clone()).await.context("orchestrator failed to start")?;
    let ended = switchyard_service::serve_until_stopped(running.admin_addr, &shutdown, "inputs", &running.health).await;
    Ok(switchyard_service::drain(ended, running.join, "consumers").await)
}
