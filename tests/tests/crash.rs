//! kill -9 at random: the worker process is SIGKILLed mid-stream several
//! times and restarted. Every command must end with an outcome and every
//! payout moves money exactly once (counted per payout id by the oracle).

use anyhow::Result;
use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;
use switchyard_e2e::money::assert_paid_exactly_once;
use switchyard_e2e::{command, workspace_binary, TestEnv};
use switchyard_simulators::{stripe, FaultPlan, MoneyOracle};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_stream_loses_no_command_and_pays_nothing_twice() -> Result<()> {
    let env = TestEnv::new("crash").await?;
    let oracle = MoneyOracle::new();
    let mut sim_config = stripe::StripeConfig { oracle: oracle.clone(), ..stripe::StripeConfig::local() };
    // Slow enough that every kill lands with payouts in flight.
    sim_config.faults = FaultPlan { latency_ms: 150, ..FaultPlan::default() };
    let sim = stripe::spawn_stripe(sim_config).await?;
    let config = env.worker_config(&sim.base_url(), None, "stripe");
    let dir = std::env::temp_dir().join(format!("switchyard-{}", env.prefix.trim_end_matches('.')));
    std::fs::create_dir_all(&dir)?;
    let config_path = dir.join("payout-worker.yaml");
    std::fs::write(
        &config_path,
        format!(
            "environment: sandbox\n\
             kafka: {{ brokers: \"{brokers}\", group_id: \"{group}\", session_timeout_ms: 6000 }}\n\
             schema_registry_url: {registry}\n\
             database_url: \"{db}\"\n\
             topics: {{ commands: \"{commands}\", outcomes: \"{outcomes}\" }}\n\
             providers:\n  - {{ name: stripe, kind: stripe, base_url: \"{sim}\", api_key: {{ value: sk_test_switchyard }}, connected_account: acct_1SwitchyardLocal, timeout_ms: 2000 }}\n\
             routing: {{ primary: stripe }}\n\
             max_in_flight: 24\n",
            brokers = config.kafka.brokers,
            group = config.kafka.group_id,
            registry = config.schema_registry_url,
            db = config.database_url,
            commands = config.topics.commands,
            outcomes = config.topics.outcomes,
            sim = sim.base_url(),
        ),
    )?;
    let binary = workspace_binary("payout-worker")?;
    let log_path = dir.join("payout-worker.log");
    let spawn = || -> Result<tokio::process::Child> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
        Ok(tokio::process::Command::new(&binary)
            .arg("--config")
            .arg(&config_path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?)
    };
    let log_tail = || std::fs::read_to_string(&log_path).unwrap_or_default().lines().rev().take(20).collect::<Vec<_>>().join("\n");

    let producer = env.core_producer().await?;
    let reader = env.outcome_reader()?;
    let keys: Vec<String> = (0..400).map(|i| format!("{}key-{i}", env.prefix)).collect();
    let commands: Vec<_> = keys.iter().enumerate().map(|(i, key)| command(&format!("{}po-{i}", env.prefix), key, 100 + i as i64)).collect();
    for cmd in &commands {
        producer.send(cmd).await?;
    }

    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut kills = 0;
    while kills < 3 {
        let mut child = spawn()?;
        // Wait for progress, then kill at a random moment mid-stream.
        let before = sim.ledger().len();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
        while sim.ledger().len() < before + 40 && tokio::time::Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                anyhow::bail!("worker exited by itself ({status}); log (last lines first):\n{}", log_tail());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(rand::random_range(100..600))).await;
        child.start_kill()?; // SIGKILL: no drain, no commit
        child.wait().await?;
        kills += 1;
        for o in env.collect_outcomes(&reader, 0, Duration::ZERO).await? {
            *seen.entry(o.idempotency_key).or_default() += 1;
        }
    }
    let mut last = spawn()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while seen.len() < keys.len() && tokio::time::Instant::now() < deadline {
        for record in reader.read_up_to(10_000, Duration::from_secs(1)).await? {
            let o: switchyard_canonical::PayoutOutcome = env.outcome_decoder()?.decode(&record.payload).await?;
            *seen.entry(o.idempotency_key).or_default() += 1;
        }
    }
    last.start_kill()?;

    let missing: Vec<&String> = keys.iter().filter(|k| !seen.contains_key(*k)).collect();
    assert!(
        missing.is_empty(),
        "{} commands without an outcome after {kills} kills, e.g. {:?}; worker log (last lines first):\n{}",
        missing.len(),
        missing.first(),
        log_tail()
    );
    assert_paid_exactly_once(&oracle, &commands);
    assert!(sim.stats().idempotent_replays > 0 || seen.values().any(|n| *n > 1), "the kills did interrupt work in flight");
    Ok(())
}
