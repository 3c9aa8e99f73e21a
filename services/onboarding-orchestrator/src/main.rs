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
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, env = "SWITCHYARD_LOG_JSON")]
    log_json: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    if args.log_json {
        tracing_subscriber::fmt().json().with_env_filter(filter).init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let config = OrchestratorConfig::load(&args.config).context("invalid configuration")?;
    let shutdown = CancellationToken::new();
    let running = start_orchestrator(config, shutdown.clone()).await.context("orchestrator failed to start")?;
    if let Some(addr) = running.admin_addr {
        tracing::info!(%addr, "metrics on /metrics, health on /health");
    }
    wait_for_signal().await;
    tracing::info!("stopping: draining in-flight inputs");
    shutdown.cancel();
    running.join.await.context("consumer task")?.context("consumer")?;
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
