//! payout-worker: consumes `payouts.commands.v1`, executes each payout once at
//! a vendor, publishes `payouts.outcomes.v1`. All logic lives in
//! `switchyard-worker`; this binary parses arguments, sets up logging and
//! turns SIGINT/SIGTERM into a graceful drain.

/// glibc malloc spent about a quarter of all instructions in the benchmark
/// profile (callgrind); mimalloc handles many small, short-lived allocations
/// across tokio worker threads far better. It is built without transparent
/// huge pages (`no_thp`): with them, memory mimalloc returned and reused was
/// faulted back in 2 MiB at a time, and zeroing those pages took 5-11 % of
/// the benchmark's CPU (perf), against under 2 % without. Built without
/// default features it uses the system allocator, for heap profilers.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context;
use clap::Parser;
use std::path::PathBuf;
use switchyard_worker::{start_payout_worker, PayoutWorkerConfig};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(version, about = "switchyard payout worker")]
struct Args {
    /// YAML config; see ops/payout-worker.example.yaml.
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
    let config = PayoutWorkerConfig::load(&args.config).context("invalid configuration")?;
    let shutdown = CancellationToken::new();
    let worker = start_payout_worker(config, shutdown.clone()).await.context("payout worker failed to start")?;
    // Routing policy edits in the config file apply without a restart.
    switchyard_worker::policy::watch_config(
        args.config.clone(),
        worker.routing.clone(),
        worker.store.clone(),
        std::time::Duration::from_secs(2),
        shutdown.clone(),
    );
    let ended = switchyard_service::serve_until_stopped(worker.admin_addr, &shutdown, "payouts", &worker.health).await;
    Ok(switchyard_service::drain(ended, worker.join, "consumer").await)
}
