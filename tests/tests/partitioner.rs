//! Our producers place a key where Apache Kafka's Java producer would: on
//! partition `toPositive(murmur2(key)) % partitions`. Otherwise a payout
//! republished by the held-topic relay or a DLQ replay lands on another
//! partition than core banking's command, and per-key order is lost.

use anyhow::Result;
use switchyard_bus::{Outbound, Publisher};
use switchyard_e2e::TestEnv;

/// Kafka's `Utils.murmur2` (seed 0x9747b28c), written here from its
/// definition so the oracle is independent of librdkafka.
fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = 0x9747_b28c ^ (data.len() as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The Java client's `BuiltInPartitioner.partitionForKey`.
fn java_partition(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions
}

#[test]
fn murmur2_matches_kafkas_own_known_answers() {
    // apache/kafka clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java, testMurmur2.
    let kafka: &[(&[u8], i32)] = &[
        (b"21", -973_932_308),
        (b"foobar", -790_332_482),
        (b"a-little-bit-long-string", -985_981_536),
        (b"a-little-bit-longer-string", -1_486_304_829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
        (b"abc", 479_470_107),
    ];
    for (key, expected) in kafka {
        assert_eq!(murmur2(key), *expected, "{}", String::from_utf8_lossy(key));
    }
    // librdkafka src/rdmurmur2.c unit test (java_murmur2_results).
    assert_eq!(murmur2(b"kafka") as u32, 0xd067_cf64);
    assert_eq!(murmur2(b"giberish123456789") as u32, 0x8f55_2b0c);
    assert_eq!(murmur2(b"") as u32, 0x106e_08d9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_producer_places_keys_like_the_java_client() -> Result<()> {
    let env = TestEnv::new("partitioner").await?;
    let topic = env.topic("payouts.commands.v1");
    let partitions = 6; // topics.yaml
    let publisher = Publisher::new(&env.kafka)?;
    let mut spread = std::collections::BTreeSet::new();
    for i in 0..60 {
        let key = format!("po-{i}-{}", env.prefix);
        let record = Outbound { topic: topic.clone(), key: Some(key.clone().into_bytes()), payload: b"x".to_vec(), headers: Vec::new() };
        let (partition, _) = publisher.publish(&record).await?;
        assert_eq!(partition, java_partition(key.as_bytes(), partitions), "key {key}");
        spread.insert(partition);
    }
    assert!(spread.len() > 1, "the keys spread over partitions, so the check is not vacuous");
    Ok(())
}
