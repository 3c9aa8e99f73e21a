//! The local broker's group coordinator does what the chaos tests rely on.
//!
//! Two ways tansu 0.6.0 lost a group for good, each reported by the money
//! test as unanswered payouts, each fixed by a patch in `ops/tansu/` that
//! `ops/scripts/install-tansu.sh` applies:
//! - a leader leaving while the group re-forms stayed its leader: every
//!   later JoinGroup named it and no member was ever assigned anything;
//! - a member that died after the group formed was dropped at a heartbeat
//!   without a rebalance: its partitions stayed assigned to nobody.
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

/// The member the next test kills: run as a child process, it joins the
/// group named in the environment and polls until it is killed.
#[test]
#[ignore = "a child process of a_member_killed_after_the_group_formed_gives_its_partitions_back"]
fn group_member_process() -> Result<()> {
    let (Ok(brokers), Ok(group), Ok(topic)) =
        (std::env::var("MEMBER_BROKERS"), std::env::var("MEMBER_GROUP"), std::env::var("MEMBER_TOPIC"))
    else {
        bail!("run by a_member_killed_after_the_group_formed_gives_its_partitions_back only");
    };
    let consumer: BaseConsumer = switchyard_bus::KafkaConfig::new(brokers, group).consumer_config().create()?;
    consumer.subscribe(&[&topic])?;
    loop {
        let _ = consumer.poll(Duration::from_millis(100));
    }
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
