//! Measures recovery after `kill -9` with and without static group
//! membership (KIP-345, `group_instance_id`): the time from restarting a
//! consumer process to its first message. Run by hand against a broker:
//!
//! ```sh
//! cargo test -p switchyard-e2e --test static_membership -- --ignored --nocapture measure
//! ```
//!
//! On Apache Kafka a static member that returns within `session.timeout.ms`
//! gets its partitions back without a rebalance; a dynamic one waits for the
//! dead member's session to expire first.

use anyhow::{bail, Context, Result};
use rdkafka::consumer::{Consumer, StreamConsumer};
use std::process::Stdio;
use std::time::{Duration, Instant};
use switchyard_bus::{KafkaConfig, Outbound, Publisher};
use switchyard_e2e::TestEnv;
use tokio::io::{AsyncBufReadExt, BufReader};

const CHILD: &str = "SWITCHYARD_MEMBER_CHILD_TOPIC";

/// The consumer process: joins `SWITCHYARD_MEMBER_CHILD_GROUP`, prints
/// `FIRST` at its first message, then consumes until killed.
#[tokio::test]
#[ignore = "the child process of `measure`"]
async fn member_child() -> Result<()> {
    let Ok(topic) = std::env::var(CHILD) else { return Ok(()) };
    let group = std::env::var("SWITCHYARD_MEMBER_CHILD_GROUP")?;
    let brokers = std::env::var("SWITCHYARD_MEMBER_CHILD_BROKERS")?;
    // group_instance_id comes from SWITCHYARD_GROUP_INSTANCE_ID when set.
    let kafka = KafkaConfig::new(brokers, group);
    let consumer: StreamConsumer = kafka.consumer_config().create()?;
    consumer.subscribe(&[&topic])?;
    let mut first = true;
    loop {
        let m = consumer.recv().await;
        if first && m.is_ok() {
            println!("FIRST");
            first = false;
        }
    }
}

async fn spawn_member(topic: &str, group: &str, brokers: &str, instance: Option<&str>) -> Result<(tokio::process::Child, Instant, Duration)> {
    // argv[0], not current_exe(): a rebuild in the shared target dir
    // unlinks the running binary and /proc/self/exe then names a deleted file.
    let exe = std::env::args().next().context("argv[0]")?;
    let mut command = tokio::process::Command::new(exe);
    command
        .args(["member_child", "--exact", "--ignored", "--nocapture"])
        .env(CHILD, topic)
        .env("SWITCHYARD_MEMBER_CHILD_GROUP", group)
        .env("SWITCHYARD_MEMBER_CHILD_BROKERS", brokers)
        .env_remove("SWITCHYARD_GROUP_INSTANCE_ID")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    if let Some(id) = instance {
        command.env("SWITCHYARD_GROUP_INSTANCE_ID", id);
    }
    let started = Instant::now();
    let mut child = command.spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let waited = tokio::time::timeout(Duration::from_secs(90), async {
        while let Some(line) = lines.next_line().await? {
            if line.trim() == "FIRST" {
                return Ok(started.elapsed());
            }
        }
        bail!("child ended before its first message")
    })
    .await
    .context("no message within 90 s")??;
    // Keep the pipe drained so the child never blocks on it.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, started, waited))
}

async fn recovery(env: &TestEnv, label: &str, instance: Option<&str>) -> Result<Vec<Duration>> {
    let topic = env.topic("payouts.commands.v1");
    let group = format!("{}member-{label}", env.prefix);
    let publisher = Publisher::new(&env.kafka)?;
    let stop = tokio_util::sync::CancellationToken::new();
    let feeding = {
        let (topic, stop) = (topic.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.is_cancelled() {
                let record = Outbound { topic: topic.clone(), key: Some(i.to_string().into_bytes()), payload: b"x".to_vec(), headers: vec![] };
                let _ = publisher.publish(&record).await;
                i += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let (mut child, _, cold) = spawn_member(&topic, &group, &env.kafka.brokers, instance).await?;
    println!("{label}: cold start to first message {cold:?}");
    let mut samples = Vec::new();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        child.start_kill()?; // SIGKILL
        child.wait().await?;
        let (next, _, took) = spawn_member(&topic, &group, &env.kafka.brokers, instance).await?;
        println!("{label}: restart after SIGKILL to first message {took:?}");
        samples.push(took);
        child = next;
    }
    child.start_kill()?;
    stop.cancel();
    let _ = feeding.await;
    Ok(samples)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, ~1 min; run by hand"]
async fn measure() -> Result<()> {
    let env = TestEnv::new("static-member").await?;
    let dynamic = recovery(&env, "dynamic", None).await?;
    let fixed = recovery(&env, "static", Some("payout-worker-0")).await?;
    println!("dynamic membership: {dynamic:?}\nstatic membership (group.instance.id): {fixed:?}");
    Ok(())
}
