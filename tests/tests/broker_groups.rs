//! The local broker's group coordinator does what the chaos tests rely on.
//!
//! Two ways tansu 0.6.0 lost a group for good, each reported by the money
//! test as unanswered payouts, each fixed by a patch in `ops/tansu/` that
//! `ops/scripts/install-tansu.sh` applies:
//! - a leader leaving while the group re-forms stayed its leader: every
//!   later JoinGroup named it and no member was ever assigned anything;
//! - a member that died after the group formed was dropped at a heartbeat
//!   without a rebalance: its partitions stayed assigned to nobody;
//! - a leader evicted (session timeout) while a new member was re-forming
//!   the group left it leaderless, and the new member's SyncGroup, which
//!   carries no assignments, completed it: everyone assigned nothing, for
//!   good (the SIGKILLed orchestrator of `onboarding.rs` left every flow in
//!   KYC_PENDING so, its restarted consumers each assigned 0 partitions).
//!
//! On Apache Kafka both just start the next rebalance.

use anyhow::{bail, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::process::Stdio;
use std::time::{Duration, Instant};
use switchyard_e2e::TestEnv;

fn member(env: &TestEnv, group: &str, topic: &str) -> Result<BaseConsumer> {
    let mut config = env.kafka.consumer_config();
    config.set("group.id", group);
    let consumer: BaseConsumer = config.create()?;
    consumer.subscribe(&[topic])?;
    Ok(consumer)
}

/// Polls until the member owns `partitions` partitions, or fails after `limit`.
fn poll_until_assigned(consumer: &BaseConsumer, partitions: usize, limit: Duration) -> Result<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        let _ = consumer.poll(Duration::from_millis(100));
        if consumer.assignment()?.count() == partitions {
            return Ok(started.elapsed());
        }
    }
    bail!("no assignment of {partitions} partitions within {limit:?}")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_leaving_during_a_rebalance_does_not_stop_the_group() -> Result<()> {
    let env = TestEnv::new("groups").await?;
    let topic = env.topic("payouts.commands.v1");
    let group = format!("{}leader-leaves", env.prefix);
    tokio::task::spawn_blocking(move || -> Result<()> {
        // The first member is alone, so it leads.
        let leader = member(&env, &group, &topic)?;
        poll_until_assigned(&leader, 6, Duration::from_secs(30))?;
        // A second member joins: the group re-forms. The leader does not
        // poll, so it cannot rejoin; it leaves in the middle instead.
        let follower = member(&env, &group, &topic)?;
        let joining = Instant::now();
        while joining.elapsed() < Duration::from_millis(1500) {
            let _ = follower.poll(Duration::from_millis(100));
        }
        drop(leader);
        // Kafka would finish within a session timeout (6 s) or two.
        let took = poll_until_assigned(&follower, 6, Duration::from_secs(40))?;
        eprintln!("the remaining member owned every partition {took:?} after the leader left");
        Ok(())
    })
    .await?
}

/// The member the next tests kill: run as a child process, it joins each
/// group named in the environment (comma-separated) and polls until killed.
#[test]
#[ignore = "a child process of the tests below that kill a member"]
fn group_member_process() -> Result<()> {
    let (Ok(brokers), Ok(group), Ok(topic)) =
        (std::env::var("MEMBER_BROKERS"), std::env::var("MEMBER_GROUP"), std::env::var("MEMBER_TOPIC"))
    else {
        bail!("run by a_member_killed_after_the_group_formed_gives_its_partitions_back only");
    };
    let mut consumers = Vec::new();
    for group in group.split(',') {
        let consumer: BaseConsumer = switchyard_bus::KafkaConfig::new(brokers.clone(), group).consumer_config().create()?;
        consumer.subscribe(&[&topic])?;
        consumers.push(consumer);
    }
    loop {
        for consumer in &consumers {
            let _ = consumer.poll(Duration::from_millis(20));
        }
    }
}

fn member_process(env: &TestEnv, groups: &str, topic: &str) -> Result<std::process::Child> {
    Ok(std::process::Command::new(std::env::current_exe()?)
        .args(["--ignored", "--exact", "group_member_process", "--nocapture"])
        .env("MEMBER_BROKERS", &env.kafka.brokers)
        .env("MEMBER_GROUP", groups)
        .env("MEMBER_TOPIC", topic)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?)
}

/// A process leads many groups alone and is SIGKILLed; a new process joins
/// each group at once, while the dead leader's session still runs (the
/// orchestrator restarted under a supervisor). Whichever request of the new
/// member finds the leader's session over, every group must end with the
/// new member owning every partition. On the broker without the third part
/// of the patch, a group whose eviction came at the new member's SyncGroup
/// completed with nothing assigned and stayed so.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_member_gets_every_partition_after_the_killed_leader_times_out() -> Result<()> {
    const GROUPS: usize = 24;
    let env = TestEnv::new("groups").await?;
    let topic = env.topic("payouts.commands.v1");
    let groups: Vec<String> = (0..GROUPS).map(|i| format!("{}leader-killed-{i}", env.prefix)).collect();
    let mut child = member_process(&env, &groups.join(","), &topic)?;
    let result = tokio::task::spawn_blocking(move || -> Result<Vec<String>> {
        // Formed: probe members would join the groups, so wait for the
        // child by the committed group state instead: a fixed pause long
        // enough for 24 joins on a loaded machine.
        std::thread::sleep(Duration::from_secs(8));
        child.kill()?;
        child.wait()?;
        // As a supervisor restarts a process: the new member's first
        // request comes seconds after the leader's last heartbeat, so the
        // leader's session ends while the new member is still in its own.
        std::thread::sleep(Duration::from_secs(3));
        let members: Vec<BaseConsumer> = groups.iter().map(|g| member(&env, g, &topic)).collect::<Result<_>>()?;
        let started = Instant::now();
        let mut stuck = Vec::new();
        // Kafka finishes within a session timeout (6 s) or two.
        while started.elapsed() < Duration::from_secs(40) {
            stuck.clear();
            for (g, m) in groups.iter().zip(&members) {
                let _ = m.poll(Duration::from_millis(10));
                if m.assignment()?.count() != 6 {
                    stuck.push(g.clone());
                }
            }
            if stuck.is_empty() {
                break;
            }
        }
        Ok(stuck)
    })
    .await?;
    let stuck = result?;
    assert!(stuck.is_empty(), "{} of {GROUPS} groups never gave the new member its partitions: {stuck:?}", stuck.len());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_killed_after_the_group_formed_gives_its_partitions_back() -> Result<()> {
    let env = TestEnv::new("groups").await?;
    let topic = env.topic("payouts.commands.v1");
    let group = format!("{}member-dies", env.prefix);
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(["--ignored", "--exact", "group_member_process", "--nocapture"])
        .env("MEMBER_BROKERS", &env.kafka.brokers)
        .env("MEMBER_GROUP", &group)
        .env("MEMBER_TOPIC", &topic)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let result = tokio::task::spawn_blocking(move || -> Result<Duration> {
        let run = |child: &mut std::process::Child| -> Result<Duration> {
            let survivor = member(&env, &group, &topic)?;
            // Formed with both: each owns half.
            poll_until_assigned(&survivor, 3, Duration::from_secs(40))?;
            // SIGKILL: no LeaveGroup; only the session timeout tells the broker.
            child.kill()?;
            child.wait()?;
            poll_until_assigned(&survivor, 6, Duration::from_secs(40))
        };
        let result = run(&mut child);
        let _ = child.kill();
        let _ = child.wait();
        result
    })
    .await?;
    let took = result?;
    eprintln!("the survivor owned every partition {took:?} after the other member was killed");
    Ok(())
}
