//! Payout workers as separate processes in one consumer group, for tests
//! that kill, stop and start them at random (`tests/tests/money_at_most_once.rs`,
//! `tests/tests/crash.rs`).
//!
//! When a run stalls: `SWITCHYARD_FLEET_LOG=info,librdkafka=debug` sets the
//! workers' log filter and `SWITCHYARD_FLEET_KAFKA_DEBUG=cgrp` librdkafka's
//! `debug` contexts; each worker logs to `worker-N.log` in the fleet's dir.

use anyhow::{bail, Result};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use switchyard_localstack::{workspace_binary, LocalStack};

/// What the fleet's shared config file says; rewriting it is how a test
/// changes routing under running workers (they watch the file).
#[derive(Debug, Clone)]
pub struct FleetConfig {
    pub stripe_url: String,
    pub adyen_url: Option<String>,
    pub primary: &'static str,
    pub secondary: Option<&'static str>,
    /// Both vendors' idempotency-key retention, as the workers should assume it.
    pub key_retention: Duration,
    pub lease_ttl: Duration,
    pub vendor_timeout: Duration,
    /// Calls in flight per vendor per worker: few, so a slow vendor makes
    /// payouts queue between their claim and their call.
    pub vendor_slots: usize,
    pub max_in_flight: usize,
}

impl FleetConfig {
    fn yaml(&self, env: &LocalStack) -> String {
        let base = env.worker_config(&self.stripe_url, self.adyen_url.as_deref(), "stripe");
        let retention = self.key_retention.as_millis();
        let timeout = self.vendor_timeout.as_millis();
        let slots = self.vendor_slots;
        let mut providers = format!(
            "  - {{ name: stripe, kind: stripe, base_url: \"{}\", api_key: {{ value: sk_test_switchyard }}, connected_account: {}, \
             timeout_ms: {timeout}, key_retention_ms: {retention}, http2_prior_knowledge: true, max_concurrency: {slots} }}\n",
            self.stripe_url,
            switchyard_localstack::STRIPE_CONNECTED_ACCOUNT,
        );
        if let Some(adyen) = &self.adyen_url {
            providers.push_str(&format!(
                "  - {{ name: adyen, kind: adyen, base_url: \"{adyen}\", api_key: {{ value: adyen_test_switchyard }}, \
                 balance_account_id: BA00000000000000000000001, timeout_ms: {timeout}, key_retention_ms: {retention}, http2_prior_knowledge: true, max_concurrency: {slots} }}\n"
            ));
        }
        let secondary = self.secondary.map(|s| format!(", secondary: {s}")).unwrap_or_default();
        format!(
            "environment: sandbox\n\
             kafka: {{ brokers: \"{brokers}\", group_id: \"{group}\", session_timeout_ms: 6000{debug} }}\n\
             schema_registry_url: {registry}\n\
             database_url: \"{db}\"\n\
             topics: {{ commands: \"{commands}\", outcomes: \"{outcomes}\", circuit_events: \"{circuits}\" }}\n\
             providers:\n{providers}\
             routing: {{ primary: {primary}{secondary} }}\n\
             max_in_flight: {in_flight}\n\
             max_retry_rounds: 8\n\
             lease_ttl_ms: {lease}\n\
             retry: {{ max_attempts: 4, base_delay_ms: 50, max_delay_ms: 1000, max_in_place_wait_ms: 3000, retry_topic_delay_ms: 500 }}\n",
            brokers = base.kafka.brokers,
            group = base.kafka.group_id,
            registry = base.schema_registry_url,
            db = base.database_url,
            commands = base.topics.commands,
            outcomes = base.topics.outcomes,
            circuits = base.topics.circuit_events,
            primary = self.primary,
            debug = std::env::var("SWITCHYARD_FLEET_KAFKA_DEBUG").map(|d| format!(", extra: {{ debug: \"{d}\" }}")).unwrap_or_default(),
            in_flight = self.max_in_flight,
            lease = self.lease_ttl.as_millis(),
        )
    }
}

/// Running worker processes, each logging to its own file.
pub struct Fleet {
    binary: PathBuf,
    dir: PathBuf,
    config_path: PathBuf,
    members: Vec<(usize, tokio::process::Child)>,
    next_id: usize,
}

impl Fleet {
    pub fn new(env: &LocalStack, config: &FleetConfig) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("switchyard-{}", env.prefix.trim_end_matches('.')));
        std::fs::create_dir_all(&dir)?;
        let config_path = dir.join("payout-worker.yaml");
        std::fs::write(&config_path, config.yaml(env))?;
        Ok(Self { binary: workspace_binary("payout-worker")?, dir, config_path, members: Vec::new(), next_id: 0 })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Rewrites the config file; the workers pick its routing up by themselves.
    pub fn reconfigure(&self, env: &LocalStack, config: &FleetConfig) -> Result<()> {
        let tmp = self.dir.join("payout-worker.yaml.tmp");
        std::fs::write(&tmp, config.yaml(env))?;
        std::fs::rename(&tmp, &self.config_path)?;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Starts one more member.
    pub fn start(&mut self) -> Result<()> {
        let id = self.next_id;
        self.next_id += 1;
        let log = std::fs::File::create(self.dir.join(format!("worker-{id}.log")))?;
        let child = tokio::process::Command::new(&self.binary)
            .arg("--config")
            .arg(&self.config_path)
            .env("RUST_LOG", std::env::var("SWITCHYARD_FLEET_LOG").unwrap_or_else(|_| "warn".into()))
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        self.members.push((id, child));
        Ok(())
    }

    /// SIGKILL: no drain, no commit, calls cut off mid-flight.
    pub async fn kill(&mut self, index: usize) -> Result<()> {
        let (_, mut child) = self.members.remove(index % self.members.len());
        child.start_kill()?;
        child.wait().await?;
        Ok(())
    }

    /// SIGTERM: the member drains and leaves the group.
    pub async fn stop(&mut self, index: usize) -> Result<()> {
        let (_, mut child) = self.members.remove(index % self.members.len());
        if let Some(pid) = child.id() {
            let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
        }
        if tokio::time::timeout(Duration::from_secs(40), child.wait()).await.is_err() {
            child.start_kill()?;
            child.wait().await?;
        }
        Ok(())
    }

    /// Fails if a member exited by itself (a crash is a finding, not chaos).
    pub fn check_alive(&mut self) -> Result<()> {
        let mut exited = None;
        for (id, child) in &mut self.members {
            if let Some(status) = child.try_wait()? {
                exited = Some((*id, status));
                break;
            }
        }
        match exited {
            Some((id, status)) => bail!("worker {id} exited by itself ({status}); log tail:\n{}", self.log_tail(id)),
            None => Ok(()),
        }
    }

    pub fn log_tail(&self, id: usize) -> String {
        let text = std::fs::read_to_string(self.dir.join(format!("worker-{id}.log"))).unwrap_or_default();
        text.lines().rev().take(20).collect::<Vec<_>>().join("\n")
    }

    pub async fn shutdown(mut self) {
        while !self.members.is_empty() {
            let _ = self.kill(0).await;
        }
    }
}
