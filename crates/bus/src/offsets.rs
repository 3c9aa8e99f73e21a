//! Which offset may be committed. Messages of one partition finish out of
//! order (many keys run concurrently), but a committed offset promises that
//! everything before it is done, so only the contiguous finished prefix
//! counts. Pure bookkeeping, no I/O.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// Finished-offset tracking for one partition.
#[derive(Debug, Default)]
pub struct PartitionTracker {
    /// Offsets received and not yet committable, and whether each has
    /// finished. Finished ones wait here behind an unfinished head, so this
    /// is the window the consumer bounds (see `RuntimeSettings`).
    pending: BTreeMap<i64, bool>,
    /// When the current head (the oldest unfinished offset) was received.
    head_since: Option<Instant>,
    /// The next offset to commit: everything below it is finished.
    committable: Option<i64>,
    /// The last offset received, to tell a skip or a rewind from the broker
    /// or the client apart from the contiguous stream Kafka promises for a
    /// topic without compaction or transactions.
    last_received: Option<i64>,
}

/// How a received offset relates to the one before it on its partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The first message of this assignment: it starts where the group's
    /// committed offset was.
    FirstOfAssignment,
    Contiguous,
    /// Offsets between `after` and this one were never received: fine for a
    /// compacted or transactional topic, suspicious for ours, since the
    /// commit will pass over them.
    Skipped { after: i64 },
    /// An offset at or below one already received in this assignment.
    Rewound { after: i64 },
}

impl PartitionTracker {
    pub fn begin(&mut self, offset: i64) -> Arrival {
        if self.pending.is_empty() {
            self.head_since = Some(Instant::now());
        }
        self.pending.insert(offset, false);
        let arrival = match self.last_received {
            None => Arrival::FirstOfAssignment,
            Some(last) if offset == last + 1 => Arrival::Contiguous,
            Some(last) if offset > last => Arrival::Skipped { after: last },
            Some(last) => Arrival::Rewound { after: last },
        };
        self.last_received = Some(self.last_received.map_or(offset, |last| last.max(offset)));
        arrival
    }

    /// Offsets held back from the commit: unfinished, and finished behind an
    /// unfinished head.
    pub fn window(&self) -> usize {
        self.pending.len()
    }

    /// How long the oldest unfinished message has held the commit back.
    pub fn head_age(&self) -> Option<Duration> {
        self.head_since.filter(|_| !self.pending.is_empty()).map(|t| t.elapsed())
    }

    /// Marks `offset` finished; returns the new commit position if it advanced.
    pub fn finish(&mut self, offset: i64) -> Option<i64> {
        match self.pending.get_mut(&offset) {
            Some(done) => *done = true,
            None => return None,
        }
        let mut advanced = None;
        while let Some(entry) = self.pending.first_entry() {
            if !*entry.get() {
                break;
            }
            let (finished, _) = entry.remove_entry();
            advanced = Some(finished + 1);
        }
        if advanced.is_some() {
            self.committable = advanced;
            // A new head starts waiting now (approximately: it may have been
            // received earlier, but it only blocks the commit from here on).
            self.head_since = (!self.pending.is_empty()).then(Instant::now);
        }
        advanced
    }

    pub fn committable(&self) -> Option<i64> {
        self.committable
    }

    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }
}

/// Trackers for every assigned partition, with an epoch per partition so that
/// work started before a revocation can never advance the offset after a
/// re-assignment.
#[derive(Debug, Default)]
pub struct OffsetBook {
    partitions: HashMap<(String, i32), (u64, PartitionTracker)>,
    next_epoch: u64,
}

impl OffsetBook {
    /// Registers a received message; returns the epoch it belongs to and
    /// how it follows the previous one.
    pub fn begin(&mut self, topic: &str, partition: i32, offset: i64) -> (u64, Arrival) {
        let next_epoch = &mut self.next_epoch;
        let (epoch, tracker) = self.partitions.entry((topic.to_owned(), partition)).or_insert_with(|| {
            *next_epoch += 1;
            (*next_epoch, PartitionTracker::default())
        });
        (*epoch, tracker.begin(offset))
    }

    /// Whether work of `epoch` still belongs to the current assignment.
    pub fn is_current(&self, topic: &str, partition: i32, epoch: u64) -> bool {
        self.partitions.get(&(topic.to_owned(), partition)).is_some_and(|(e, _)| *e == epoch)
    }

    /// Marks a message finished; returns the new commit position if it advanced.
    pub fn finish(&mut self, topic: &str, partition: i32, offset: i64, epoch: u64) -> Option<i64> {
        match self.partitions.get_mut(&(topic.to_owned(), partition)) {
            Some((e, tracker)) if *e == epoch => tracker.finish(offset),
            _ => None,
        }
    }

    /// Forgets a revoked partition: its in-flight work will be redelivered to
    /// whoever owns it next.
    pub fn revoke(&mut self, topic: &str, partition: i32) {
        self.partitions.remove(&(topic.to_owned(), partition));
    }

    /// Commit positions of every partition that has one.
    pub fn committable(&self) -> Vec<(String, i32, i64)> {
        self.partitions
            .iter()
            .filter_map(|((t, p), (_, tr))| tr.committable().map(|o| (t.clone(), *p, o)))
            .collect()
    }

    pub fn in_flight(&self) -> usize {
        self.partitions.values().map(|(_, t)| t.in_flight()).sum()
    }

    /// The window of one partition (0 if not assigned).
    pub fn window(&self, topic: &str, partition: i32) -> usize {
        self.partitions.get(&(topic.to_owned(), partition)).map_or(0, |(_, t)| t.window())
    }

    /// The largest window and the oldest head over all partitions.
    pub fn worst(&self) -> (usize, Duration) {
        self.partitions.values().fold((0, Duration::ZERO), |(w, a), (_, t)| (w.max(t.window()), a.max(t.head_age().unwrap_or_default())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_only_the_contiguous_prefix() {
        let mut t = PartitionTracker::default();
        for o in 10..15 {
            t.begin(o);
        }
        assert_eq!(t.finish(12), None, "12 finished but 10 and 11 are still running");
        assert_eq!(t.finish(11), None);
        assert_eq!(t.finish(10), Some(13), "10..=12 are done, so 13 is next");
        assert_eq!(t.finish(14), None);
        assert_eq!(t.finish(13), Some(15));
        assert_eq!(t.in_flight(), 0);
        assert_eq!(t.finish(99), None, "unknown offsets are ignored");
    }

    #[test]
    fn the_window_holds_finished_offsets_behind_a_stuck_head() {
        let mut t = PartitionTracker::default();
        for o in 0..100 {
            t.begin(o);
        }
        for o in 1..100 {
            assert_eq!(t.finish(o), None);
        }
        assert_eq!(t.window(), 100, "99 finished offsets wait behind offset 0");
        assert!(t.head_age().is_some());
        assert_eq!(t.finish(0), Some(100));
        assert_eq!((t.window(), t.head_age()), (0, None));
    }

    #[test]
    fn arrivals_tell_skips_and_rewinds_from_the_contiguous_stream() {
        let mut t = PartitionTracker::default();
        assert_eq!(t.begin(7), Arrival::FirstOfAssignment);
        assert_eq!(t.begin(8), Arrival::Contiguous);
        assert_eq!(t.begin(11), Arrival::Skipped { after: 8 });
        assert_eq!(t.begin(9), Arrival::Rewound { after: 11 });
        assert_eq!(t.begin(12), Arrival::Contiguous, "measured from the highest offset seen");
    }

    #[test]
    fn stale_epochs_cannot_advance_a_reassigned_partition() {
        let mut book = OffsetBook::default();
        let (old, _) = book.begin("t", 0, 5);
        book.revoke("t", 0);
        let (new, arrival) = book.begin("t", 0, 5);
        assert_eq!(arrival, Arrival::FirstOfAssignment);
        assert_ne!(old, new);
        assert_eq!(book.finish("t", 0, 5, old), None, "old work must not commit new work");
        assert_eq!(book.finish("t", 0, 5, new), Some(6));
        assert_eq!(book.committable(), vec![("t".to_owned(), 0, 6)]);
    }
}
