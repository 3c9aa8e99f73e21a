//! A fetch from the middle of a record batch returns that batch's remaining
//! records, as Apache Kafka does.
//!
//! A consumer resumes from its group's committed offset, and a commit is per
//! message, so it lands inside a batch whenever the producer batched. tansu
//! 0.6.0's memory engine answered such a fetch with the *next* batch: the
//! rest of the batch was never delivered, the consumer's next commit passed
//! over it, and the chaos soaks reported those messages as committed but
//! never handled. `ops/tansu/fetch-batch-start.patch` fixes it;
//! `ops/scripts/install-tansu.sh` applies it.

use anyhow::{bail, Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};
use switchyard_e2e::TestEnv;

const RECORDS: i64 = 12;

#[tokio::test(flavor = "multi_thread")]
async fn a_fetch_from_inside_a_batch_starts_at_the_requested_offset() -> Result<()> {
    let env = TestEnv::new("fetch").await?;
    let topic = env.topic("payouts.commands.v1.retry");

    // One key, one partition, sent together with a long linger: one batch.
    let mut config = env.kafka.producer_config();
    config.set("linger.ms", "200");
    let producer: FutureProducer = config.create()?;
    let sends = (0..RECORDS).map(|i| {
        let payload = format!("record-{i}");
        let producer = producer.clone();
        let topic = topic.clone();
        async move {
            producer
                .send(FutureRecord::to(&topic).key("one-key").payload(&payload), Duration::from_secs(10))
                .await
                .map_err(|(e, _)| anyhow::anyhow!("produce failed: {e}"))
        }
    });
    let delivered = futures::future::try_join_all(sends).await?;
    let partition = delivered[0].partition;
    let base = delivered.iter().map(|d| d.offset).min().context("nothing delivered")?;
    let last = delivered.iter().map(|d| d.offset).max().context("nothing delivered")?;
    assert_eq!(last - base + 1, RECORDS, "the records sit at consecutive offsets");

    let kafka = env.kafka.clone();
    let topic_for_reads = topic.clone();
    tokio::task::spawn_blocking(move || -> Result<()> {
        for start in [base, base + 1, base + RECORDS / 2, last] {
            let offsets = read_from(&kafka, &topic_for_reads, partition, start, last)?;
            let expected: Vec<i64> = (start..=last).collect();
            assert_eq!(offsets, expected, "a fetch from offset {start} (batch {base}..={last}) must deliver every record from {start} on");
        }
        Ok(())
    })
    .await??;
    Ok(())
}

/// Offsets delivered to a fresh consumer assigned at `start`, up to `last`.
fn read_from(kafka: &switchyard_bus::KafkaConfig, topic: &str, partition: i32, start: i64, last: i64) -> Result<Vec<i64>> {
    let mut config = kafka.consumer_config();
    config.set("group.id", format!("fetch-reader-{start}"));
    let consumer: BaseConsumer = config.create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(start))?;
    consumer.assign(&tpl)?;
    let mut offsets = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                offsets.push(m.offset());
                if m.offset() >= last {
                    return Ok(offsets);
                }
            }
            Some(Err(e)) => bail!("fetch from {start} failed: {e}"),
            None => {}
        }
    }
    bail!("a fetch from {start} delivered {offsets:?} and then nothing up to {last} within 20 s")
}
