//! A real Prometheus scraping a running payout worker and webhook ingester,
//! with the project's alert and SLA rules loaded, queried over its HTTP API:
//! the metrics the rules and dashboards are written against are what the
//! services serve, every rule evaluates without error against them, and a
//! payout shows up in the counters.
//!
//! Prometheus comes with Debian's `prometheus` package (ops/scripts/test.sh
//! installs it for promtool). Without it this test prints a notice and
//! passes, unless `CI` or `SWITCHYARD_REQUIRE_PROMTOOL` is set.

use anyhow::{bail, ensure, Context, Result};
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use switchyard_e2e::{command, TestEnv};
use switchyard_localstack::repo_root;
use switchyard_ingester::start_ingester;
use switchyard_simulators::stripe;
use switchyard_worker::start_payout_worker;
use tokio_util::sync::CancellationToken;

fn flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"))
}

struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `/api/v1/query` for `query`: its result vector.
async fn query(http: &reqwest::Client, base: &str, query: &str) -> Result<Vec<serde_json::Value>> {
    let reply: serde_json::Value = http.get(format!("{base}/api/v1/query")).query(&[("query", query)]).send().await?.json().await?;
    ensure!(reply["status"] == "success", "{query}: {reply}");
    Ok(reply["data"]["result"].as_array().cloned().unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prometheus_scrapes_a_worker_and_the_ingester_and_every_rule_evaluates() -> Result<()> {
    let binary = std::env::var("PROMETHEUS").unwrap_or_else(|_| "prometheus".into());
    if Command::new(&binary).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
        if flag("CI") || flag("SWITCHYARD_REQUIRE_PROMTOOL") {
            bail!("prometheus is required (CI or SWITCHYARD_REQUIRE_PROMTOOL is set) but `{binary}` cannot be run");
        }
        eprintln!("SKIPPED: prometheus is not installed (`apt-get install --no-install-recommends prometheus`)");
        return Ok(());
    }
    let env = TestEnv::new("prom-scrape").await?;
    let sim = stripe::spawn_stripe(stripe::StripeConfig::local()).await?;
    let mut config = env.worker_config(&sim.base_url(), None, "stripe");
    config.admin_bind = Some("127.0.0.1:0".parse()?);
    let shutdown = CancellationToken::new();
    let worker = start_payout_worker(config, shutdown.clone()).await?;
    let worker_admin = worker.admin_addr.context("admin server")?;
    let ingester = start_ingester(env.ingester_config(BTreeMap::new()), shutdown.clone()).await?;

    let producer = env.core_producer().await?;
    let reader = env.outcome_reader()?;
    for i in 0..5 {
        producer.send(&command(&format!("{}po-{i}", env.prefix), &format!("{}key-{i}", env.prefix), 1_000 + i)).await?;
    }
    env.collect_outcomes(&reader, 5, Duration::from_secs(60)).await?;

    let dir = std::env::temp_dir().join(format!("switchyard-prometheus-{}", env.prefix.trim_end_matches('.')));
    std::fs::create_dir_all(&dir)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let rules = |name: &str| repo_root().join("ops/prometheus").join(name).display().to_string();
    let config_text = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n  - {}\nscrape_configs:\n  - job_name: switchyard\n    static_configs:\n      - targets: ['{worker_admin}']\n        labels:\n          service: payout-worker\n      - targets: ['{}']\n        labels:\n          service: webhook-ingester\n",
        rules("alerts.yml"),
        rules("sla-partners.yml"),
        ingester.addr,
    );
    std::fs::write(dir.join("prometheus.yml"), config_text)?;
    let child = Command::new(&binary)
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log"))?)
        .spawn()
        .context("starting prometheus")?;
    let _prometheus = Prometheus(child);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;

    // Both targets up, and the five payouts counted.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut up, mut processed) = (Vec::new(), Vec::new());
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Ok(u) = query(&http, &base, "up{job=\"switchyard\"} == 1").await else { continue };
        up = u;
        processed = query(&http, &base, "sum(switchyard_commands_processed_total{domain=\"payouts\"})").await?;
        let counted = processed.first().and_then(|s| s["value"][1].as_str()).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        if up.len() == 2 && counted >= 5.0 {
            break;
        }
    }
    ensure!(up.len() == 2, "both targets scraped and up: {up:?} (log: {})", dir.join("prometheus.log").display());
    let counted = processed.first().and_then(|s| s["value"][1].as_str()).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    ensure!(counted >= 5.0, "the five payouts counted: {processed:?}");

    // Every rule was evaluated at least once, without error.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rules: serde_json::Value = http.get(format!("{base}/api/v1/rules")).send().await?.json().await?;
    let groups = rules["data"]["groups"].as_array().context("rule groups")?;
    let mut loaded = 0;
    let mut broken = Vec::new();
    for rule in groups.iter().flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default()) {
        loaded += 1;
        if rule["health"] != "ok" {
            broken.push(format!("{}: {} {}", rule["name"], rule["health"], rule["lastError"]));
        }
    }
    ensure!(loaded > 20, "the alert and SLA rules are loaded: {loaded}");
    ensure!(broken.is_empty(), "rules failing against real series:\n  {}", broken.join("\n  "));
    // The SLA thresholds are there for every catalog partner.
    let thresholds = query(&http, &base, "switchyard:partner_sla_error_ratio").await?;
    ensure!(thresholds.len() >= 2, "stripe's and adyen's thresholds: {thresholds:?}");
    shutdown.cancel();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
