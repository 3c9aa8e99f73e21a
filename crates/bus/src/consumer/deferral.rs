//! Retries that are not due yet wait on the broker, not in memory.
//!
//! A message read from the retry topic before its `retry-not-before` time
//! is not taken: its partition is paused and sought back to it, and resumed
//! when it falls due. Nothing behind it is read meanwhile, so the partition's
//! commit can move up to the waiting message and no further.
//!
//! Holding the waiting message in memory instead (the earlier design) kept
//! the commit behind it while everything after it was handled: every
//! rebalance re-read and re-handled those finished messages, and the
//! one-hour money soak turned 537 parked payouts into 20,808 DLQ records.
//! Messages on one retry topic become due roughly in the order they were
//! written, so waiting for the head costs at most the difference between
//! the longest and shortest round delay (see the README's retry section).

use super::{lock, ConsumerRuntime, Handler, Inbound};
use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_canonical::now_ms;

/// Closer to its due time than this, a retry is simply waited for in place.
const WAIT_IN_PLACE_MS: i64 = 50;

/// How often deferred partitions are checked for a due head.
pub(super) const DEFERRAL_TICK: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Copy)]
pub(super) struct Deferred {
    /// The waiting message: the first one the partition must deliver again.
    offset: i64,
    due_ms: i64,
    resumed: bool,
}

/// Partitions paused for a waiting retry, shared with the rebalance callback:
/// a revoked partition forgets its deferral (the next owner reads from the
/// last commit, which is at or before the waiting message).
pub(super) type Deferrals = Arc<Mutex<HashMap<(String, i32), Deferred>>>;

/// What to do with a message just read.
pub(super) enum Admission {
    Take,
    /// Not now: it (or a message ahead of it) waits on the broker.
    Skip,
}

impl<H: Handler> ConsumerRuntime<H> {
    /// Defers a retry that is not due, and drops what the fetcher had read
    /// past a deferred message (it is fetched again after the seek).
    pub(super) fn admit(&self, message: &Inbound) -> Admission {
        let key = (message.topic.clone(), message.partition);
        {
            let mut deferrals = lock(&self.deferrals);
            if let Some(deferred) = deferrals.get(&key).copied() {
                // Anything but the waiting message itself was read ahead of
                // the seek. The waiting message is judged afresh: it may be
                // back early (a drained window resumed its partition).
                if message.offset != deferred.offset {
                    tracing::debug!(topic = %message.topic, partition = message.partition, offset = message.offset, waiting = deferred.offset, "read past a deferred retry; dropped");
                    return Admission::Skip;
                }
                deferrals.remove(&key);
            }
        }
        if self.shared.topics.retry.as_deref() != Some(message.topic.as_str()) {
            return Admission::Take;
        }
        let Some(due_ms) = message.retry_not_before() else { return Admission::Take };
        if due_ms - now_ms() <= WAIT_IN_PLACE_MS {
            return Admission::Take;
        }
        tracing::debug!(topic = %message.topic, partition = message.partition, offset = message.offset, due_ms, "retry not due; deferred");
        if self.park_on_broker(message) {
            lock(&self.deferrals).insert(key, Deferred { offset: message.offset, due_ms, resumed: false });
            self.shared.stats.deferred_retries.fetch_add(1, Ordering::Relaxed);
            Admission::Skip
        } else {
            // The consumer could not seek: wait in memory as before rather
            // than lose the message.
            Admission::Take
        }
    }

    fn park_on_broker(&self, message: &Inbound) -> bool {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&message.topic, message.partition);
        if let Err(e) = self.consumer.pause(&tpl) {
            tracing::warn!(topic = %message.topic, partition = message.partition, error = %e, "retry partition could not be paused; waiting in memory");
            return false;
        }
        match self.consumer.seek(&message.topic, message.partition, Offset::Offset(message.offset), Duration::from_secs(1)) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(topic = %message.topic, partition = message.partition, error = %e, "retry partition could not seek back; waiting in memory");
                if let Err(e) = self.consumer.resume(&tpl) {
                    tracing::warn!(topic = %message.topic, partition = message.partition, error = %e, "retry partition could not be resumed");
                }
                false
            }
        }
    }

    /// Resumes the deferred partitions whose waiting message fell due,
    /// unless a full window keeps one paused (it resumes when it drains).
    pub(super) fn resume_due(&self) {
        let now = now_ms();
        let mut due = TopicPartitionList::new();
        {
            let mut deferrals = lock(&self.deferrals);
            let paused_for_window = lock(&self.paused);
            for ((topic, partition), deferred) in deferrals.iter_mut() {
                if deferred.resumed || deferred.due_ms > now {
                    continue;
                }
                if paused_for_window.contains(&(topic.clone(), *partition)) {
                    continue;
                }
                deferred.resumed = true;
                tracing::debug!(%topic, partition, offset = deferred.offset, "deferred retry due; resuming");
                due.add_partition(topic, *partition);
            }
        }
        if due.count() == 0 {
            return;
        }
        if let Err(e) = self.consumer.resume(&due) {
            tracing::warn!(error = %e, "deferred retry partitions could not be resumed");
            let mut deferrals = lock(&self.deferrals);
            for e in due.elements() {
                if let Some(deferred) = deferrals.get_mut(&(e.topic().to_owned(), e.partition())) {
                    deferred.resumed = false;
                }
            }
        }
    }
}

impl Inbound {
    /// When a retried message may be handled again (epoch milliseconds).
    pub fn retry_not_before(&self) -> Option<i64> {
        crate::headers::header_text(&self.headers, crate::headers::HeaderName::RETRY_NOT_BEFORE).and_then(|s| s.parse().ok())
    }
}
