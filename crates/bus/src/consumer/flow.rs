//! Flow control: which partitions are fetched, and when a retry may start.
//! A partition is paused while its uncommitted window is full (a stuck
//! head) and resumed at half of it; retries start in offset order
//! ([`super::retry_gate`]).

use super::{lock, ConsumerRuntime, Handler, Inbound};
use crate::headers::{header_text, HeaderName};
use rdkafka::consumer::Consumer;
use rdkafka::TopicPartitionList;

impl<H: Handler> ConsumerRuntime<H> {
    /// Stops fetching a partition whose window is full: its head is stuck and
    /// everything behind it would otherwise pile up in memory.
    pub(super) fn pause_if_full(&self, topic: &str, partition: i32) {
        let limit = self.shared.settings.max_uncommitted_per_partition.max(1);
        if lock(&self.book).window(topic, partition) < limit {
            return;
        }
        let mut paused = lock(&self.paused);
        if !paused.insert((topic.to_owned(), partition)) {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, partition);
        match self.consumer.pause(&tpl) {
            Ok(()) => tracing::warn!(topic, partition, limit, "partition paused: its oldest message holds back the commit"),
            Err(e) => tracing::warn!(topic, partition, error = %e, "partition could not be paused"),
        }
    }

    /// Places a retry behind those read before it on its partition.
    pub(super) fn admit_retry(&self, inbound: &Inbound, epoch: u64) -> Option<i64> {
        let due = header_text(&inbound.headers, HeaderName::RETRY_NOT_BEFORE).and_then(|s| s.parse::<i64>().ok());
        if self.shared.topics.retry.as_deref() != Some(inbound.topic.as_str()) {
            return due;
        }
        Some(lock(&self.gate).admit(&inbound.topic, inbound.partition, epoch, due.unwrap_or(i64::MIN)))
    }

    pub(super) fn resume_if_drained(&self, topic: &str, partition: i32) {
        let key = (topic.to_owned(), partition);
        if !lock(&self.paused).contains(&key) {
            return;
        }
        let limit = self.shared.settings.max_uncommitted_per_partition.max(1);
        if lock(&self.book).window(topic, partition) > limit / 2 {
            return;
        }
        lock(&self.paused).remove(&key);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, partition);
        if let Err(e) = self.consumer.resume(&tpl) {
            tracing::warn!(topic, partition, error = %e, "partition could not be resumed");
        }
    }
}
