//! A broken worker says so, and a dead one exits: `/livez`, `/readyz`
//! (`/health`) against real dependencies taken away one at a time, and the
//! binaries' exit codes and error lines.

use anyhow::{ensure, Context, Result};
use std::process::Stdio;
use std::time::Duration;
use switchyard_e2e::{workspace_binary, TestEnv};
use switchyard_simulators::stripe;
use switchyard_worker::start_payout_worker;
use tokio_util::sync::CancellationToken;

async fn get(addr: std::net::SocketAddr, path: &str) -> Result<(u16, serde_json::Value)> {
    let reply = reqwest::Client::new().get(format!("http://{addr}{path}")).timeout(Duration::from_secs(10)).send().await?;
    let status = reply.status().as_u16();
    Ok((status, reply.json().await.unwrap_or_default()))
}

fn closed_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_naming_the_store_then_the_registry_while_liveness_holds() -> Result<()> {
    let env = TestEnv::new("health").await?;
    let sim = stripe::spawn_stripe(stripe::StripeConfig::local()).await?;
    let mut config = env.worker_config(&sim.base_url(), None, "stripe");
    config.admin_bind = Some("127.0.0.1:0".parse()?);
    let shutdown = CancellationToken::new();
    let worker = start_payout_worker(config, shutdown.clone()).await?;
    let admin = worker.admin_addr.context("admin server")?;

    let (status, body) = get(admin, "/readyz").await?;
    ensure!(status == 200, "ready with everything up: {body}");
    for check in ["broker", "registry", "store", "producer"] {
        ensure!(body["checks"][check] == "ok", "{check}: {body}");
    }
    ensure!(get(admin, "/health").await?.0 == 200, "/health is /readyz");

    worker.store.pool().close().await;
    let (status, body) = get(admin, "/readyz").await?;
    ensure!(status == 503 && body["checks"]["store"] != "ok" && body["checks"]["registry"] == "ok", "store down: {body}");
    ensure!(get(admin, "/health").await?.0 == 503, "/health follows /readyz");

    let TestEnv { registry, .. } = env;
    registry.shutdown().await;
    let (status, body) = get(admin, "/readyz").await?;
    ensure!(status == 503 && body["checks"]["registry"] != "ok", "registry down: {body}");
    let (status, body) = get(admin, "/livez").await?;
    ensure!(status == 200, "dependencies come back; the process is not restarted for them: {body}");
    shutdown.cancel();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_broker_is_unreachable_is_live_but_not_ready() -> Result<()> {
    let env = TestEnv::new("health-broker").await?;
    let sim = stripe::spawn_stripe(stripe::StripeConfig::local()).await?;
    let mut config = env.worker_config(&sim.base_url(), None, "stripe");
    config.admin_bind = Some("127.0.0.1:0".parse()?);
    config.kafka.brokers = format!("127.0.0.1:{}", closed_port()?);
    let shutdown = CancellationToken::new();
    let worker = start_payout_worker(config, shutdown.clone()).await?;
    let admin = worker.admin_addr.context("admin server")?;
    let (status, body) = get(admin, "/readyz").await?;
    ensure!(status == 503, "{body}");
    ensure!(body["checks"]["broker"] != "ok" && body["checks"]["store"] == "ok", "only the broker fails: {body}");
    ensure!(get(admin, "/livez").await?.0 == 200);
    shutdown.cancel();
    Ok(())
}

/// The payout worker's config for a binary run, in the format of ops/.
fn write_config(env: &TestEnv, sim_url: &str, dir: &std::path::Path) -> Result<std::path::PathBuf> {
    let config = env.worker_config(sim_url, None, "stripe");
    let path = dir.join("payout-worker.yaml");
    std::fs::write(
        &path,
        format!(
            "environment: sandbox\n\
             kafka: {{ brokers: \"{}\", group_id: \"{}\" }}\n\
             schema_registry_url: {}\n\
             database_url: \"{}\"\n\
             topics: {{ commands: \"{}\", outcomes: \"{}\" }}\n\
             providers:\n  - {{ name: stripe, kind: stripe, base_url: \"{sim_url}\", api_key: {{ value: sk_test_switchyard }}, connected_account: acct_1SwitchyardLocal }}\n\
             routing: {{ primary: stripe }}\n",
            config.kafka.brokers, config.kafka.group_id, config.schema_registry_url, config.database_url, config.topics.commands, config.topics.outcomes,
        ),
    )?;
    Ok(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_whose_loop_dies_exits_non_zero_with_one_error_line_and_no_colour_in_its_log() -> Result<()> {
    let env = TestEnv::new("health-exit").await?;
    let sim = stripe::spawn_stripe(stripe::StripeConfig::local()).await?;
    let dir = std::env::temp_dir().join(format!("switchyard-{}", env.prefix.trim_end_matches('.')));
    std::fs::create_dir_all(&dir)?;
    let config = write_config(&env, &sim.base_url(), &dir)?;
    let log_path = dir.join("stderr.log");
    let mut child = tokio::process::Command::new(workspace_binary("payout-worker")?)
        .arg("--config")
        .arg(&config)
        // Debug builds: the consumer loop is reported dead a second after start.
        .env("SWITCHYARD_FAULT_STOP_LOOP", "consumer")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path)?)
        .kill_on_drop(true)
        .spawn()?;
    let status = tokio::time::timeout(Duration::from_secs(40), child.wait()).await.context("the worker kept running with a dead loop")??;
    let log = std::fs::read_to_string(&log_path)?;
    ensure!(status.code() == Some(1), "exit {status}; log:\n{log}");
    ensure!(log.lines().last().is_some_and(|l| l.starts_with("error: consumer stopped")), "last line names the loop:\n{log}");
    ensure!(!log.contains('\u{1b}'), "no ANSI colour in a file:\n{log}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_error_is_one_line_and_exit_2_even_with_backtraces_on() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("switchyard-badconfig-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("bad.yaml");
    std::fs::write(&path, "environment: sandbox\nno_such_field: 1\n")?;
    for binary in ["payout-worker", "kyc-worker", "onboarding-orchestrator", "webhook-ingester"] {
        let out = tokio::process::Command::new(workspace_binary(binary)?)
            .arg("--config")
            .arg(&path)
            .env("RUST_BACKTRACE", "1")
            .output()
            .await?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(out.status.code() == Some(2), "{binary}: exit {}: {stderr}", out.status);
        ensure!(!stderr.contains("stack backtrace") && !stderr.contains("Stack backtrace"), "{binary}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        ensure!(lines.len() == 1 && lines[0].starts_with("error: invalid configuration"), "{binary}: one line:\n{stderr}");
    }
    Ok(())
}
