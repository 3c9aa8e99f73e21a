//! A retry partition read as a delay queue, in offset order.
//!
//! Retries on one partition carry different due times (the delay grows per
//! round). Had each waited for its own time, the retries behind a long-waiting
//! head would be handled while the head still held the partition's commit,
//! and every rebalance or kill in that window would hand them to the next
//! owner to handle again: in the hour soak, a parked payout reached the DLQ
//! fourteen times. So a retry never starts before any retry in front of it
//! on its partition ("the gate"): nothing is finished behind a waiting head
//! except what runs concurrently, as on any input partition.
//!
//! Holding everything behind a waiting head in memory would fill the
//! in-flight budget and starve the input topic, so a partition whose next
//! retry is not due within [`HORIZON_MS`] is paused until shortly before it
//! is. Pausing needs no seek: librdkafka refetches a resumed partition from
//! the position after the last message it handed out, and every message
//! handed out is held here until it is handled or its partition revoked. A
//! seek was what lost retries in the first attempt at this (it could land in
//! the next assignment).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Retries due within this long of their receipt wait in memory; a later
/// one pauses its partition until this long before it falls due.
pub(super) const HORIZON_MS: i64 = 1_000;

type PartitionKey = (String, i32);

#[derive(Default)]
pub(super) struct RetryGate {
    /// The latest due time handed out per partition, in the assignment epoch
    /// it was read in; a new epoch starts afresh from the committed offset.
    gates: HashMap<PartitionKey, (u64, i64)>,
    /// Partitions paused until the given time (ms since the epoch); shared
    /// with the rebalance callback, which forgets revoked partitions.
    deferred: Arc<Mutex<HashMap<PartitionKey, i64>>>,
}

/// What to do with a retry just received.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Admission {
    /// When its handler may run: its own due time or the gate's, if later.
    pub(super) not_before: i64,
    /// Pause its partition, to be resumed at this time.
    pub(super) pause_until: Option<i64>,
}

impl RetryGate {
    pub(super) fn deferred(&self) -> Arc<Mutex<HashMap<PartitionKey, i64>>> {
        self.deferred.clone()
    }

    /// Places a retry of `partition` (read in `epoch`) due at `due` behind
    /// everything read before it.
    pub(super) fn admit(&mut self, topic: &str, partition: i32, epoch: u64, due: i64, now: i64) -> Admission {
        let key = (topic.to_owned(), partition);
        let gate = match self.gates.get(&key) {
            Some((e, gate)) if *e == epoch => *gate,
            _ => i64::MIN,
        };
        let not_before = due.max(gate);
        self.gates.insert(key.clone(), (epoch, not_before));
        let pause_until = (not_before - now > HORIZON_MS).then_some(not_before - HORIZON_MS);
        if let Some(until) = pause_until {
            super::lock(&self.deferred).insert(key, until);
        }
        Admission { not_before, pause_until }
    }

    /// Partitions whose pause has run out, removed from the deferred set.
    pub(super) fn take_due(&self, now: i64) -> Vec<PartitionKey> {
        let mut deferred = super::lock(&self.deferred);
        let due: Vec<PartitionKey> = deferred.iter().filter(|(_, until)| **until <= now).map(|(k, _)| k.clone()).collect();
        for key in &due {
            deferred.remove(key);
        }
        due
    }

    pub(super) fn is_deferred(&self, topic: &str, partition: i32) -> bool {
        super::lock(&self.deferred).contains_key(&(topic.to_owned(), partition))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_never_starts_before_one_in_front_of_it() {
        let mut gate = RetryGate::default();
        let now = 1_000_000;
        let head = gate.admit("r", 0, 1, now + 80_000, now);
        assert_eq!(head, Admission { not_before: now + 80_000, pause_until: Some(now + 79_000) });
        let behind = gate.admit("r", 0, 1, now + 5_000, now);
        assert_eq!(behind.not_before, now + 80_000, "due earlier, but behind the head");
        let other_partition = gate.admit("r", 1, 1, now + 5_000, now);
        assert_eq!(other_partition.not_before, now + 5_000);
    }

    #[test]
    fn a_new_assignment_starts_without_the_old_gate() {
        let mut gate = RetryGate::default();
        let now = 1_000_000;
        gate.admit("r", 0, 1, now + 80_000, now);
        let reread = gate.admit("r", 0, 2, now + 5_000, now);
        assert_eq!(reread.not_before, now + 5_000);
    }

    #[test]
    fn retries_due_within_the_horizon_wait_in_memory_and_later_ones_pause() {
        let mut gate = RetryGate::default();
        let now = 1_000_000;
        assert_eq!(gate.admit("r", 0, 1, now - 5, now).pause_until, None, "already due");
        assert_eq!(gate.admit("r", 0, 1, now + HORIZON_MS, now).pause_until, None);
        assert!(!gate.is_deferred("r", 0));
        assert_eq!(gate.admit("r", 0, 1, now + 3_000, now).pause_until, Some(now + 2_000));
        assert!(gate.is_deferred("r", 0));
        assert!(gate.take_due(now + 1_999).is_empty());
        assert_eq!(gate.take_due(now + 2_000), vec![("r".to_owned(), 0)]);
        assert!(!gate.is_deferred("r", 0));
    }
}
