//! A retry partition read as a delay queue, in offset order.
//!
//! Retries on one partition carry different due times (the delay grows per
//! round). Had each waited for its own time, the retries behind a long-waiting
//! head would be handled while the head still held the partition's commit,
//! and every rebalance or kill in that window would hand them to the next
//! owner to handle again. So a retry never starts before any retry in front
//! of it on its partition ("the gate"): nothing is finished behind a
//! waiting head except what runs concurrently, as on any input partition.
//!
//! Waiting retries stay in memory (bounded by `max_in_flight`). Pausing the
//! partition while its next retry was far from due was tried twice, with and
//! without a seek back: in both, soaks under chaos ended with retries
//! committed but never handled (the README's soak table), so the partition
//! is never paused for a retry.

use std::collections::HashMap;

type PartitionKey = (String, i32);

#[derive(Default)]
pub(super) struct RetryGate {
    /// The latest due time handed out per partition, in the assignment epoch
    /// it was read in; a new epoch starts afresh from the committed offset.
    gates: HashMap<PartitionKey, (u64, i64)>,
}

impl RetryGate {
    /// When a retry of `partition` (read in `epoch`) due at `due` may start:
    /// its own due time or that of a retry read before it, if later.
    pub(super) fn admit(&mut self, topic: &str, partition: i32, epoch: u64, due: i64) -> i64 {
        let key = (topic.to_owned(), partition);
        let gate = match self.gates.get(&key) {
            Some((e, gate)) if *e == epoch => *gate,
            _ => i64::MIN,
        };
        let not_before = due.max(gate);
        self.gates.insert(key, (epoch, not_before));
        not_before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_never_starts_before_one_in_front_of_it() {
        let mut gate = RetryGate::default();
        let now = 1_000_000;
        assert_eq!(gate.admit("r", 0, 1, now + 80_000), now + 80_000);
        assert_eq!(gate.admit("r", 0, 1, now + 5_000), now + 80_000, "due earlier, but behind the head");
        assert_eq!(gate.admit("r", 1, 1, now + 5_000), now + 5_000, "another partition");
    }

    #[test]
    fn a_new_assignment_starts_without_the_old_gate() {
        let mut gate = RetryGate::default();
        let now = 1_000_000;
        gate.admit("r", 0, 1, now + 80_000);
        assert_eq!(gate.admit("r", 0, 2, now + 5_000), now + 5_000);
    }
}
