//! Where a message goes when its handler did not finish it: the DLQ, the
//! held topic, or the retry topic with a delay growing per round. A message
//! counts as finished only once one of them acknowledged it.

use super::{Failure, Handler, Inbound, Shared};
use crate::headers::{header_text, set_header, HeaderName};
use crate::publisher::Outbound;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use switchyard_canonical::{now_ms, ErrorClass};

/// The wait before retry round `attempt` (1-based): the handler's delay,
/// doubled each round, at most `max`.
pub fn retry_round_delay(asked: Duration, attempt: u32, max: Duration) -> Duration {
    asked.saturating_mul(1u32 << attempt.saturating_sub(1).min(16)).min(max)
}

impl<H: Handler> Shared<H> {
    /// Puts a failed message where its failure says: DLQ, held topic, retry
    /// topic (or the DLQ once the rounds are spent). `Some(finished)` once it
    /// landed (or shutdown interrupted it); `None` to call the handler again
    /// in place (no retry topic configured, after the delay).
    pub(super) async fn settle_failure(&self, message: &Arc<Inbound>, failure: Failure) -> Option<bool> {
        match failure {
            Failure::DeadLetter { class, reason } => Some(self.dead_letter(message, class, &reason).await),
            Failure::Park { reason } => Some(match &self.topics.held {
                Some(held) => {
                    let mut headers = with_origin(message);
                    set_header(&mut headers, HeaderName::HELD_REASON, truncate(&reason));
                    self.land(message, held, headers).await
                }
                None => self.dead_letter(message, ErrorClass::ManualRepair, &reason).await,
            }),
            Failure::Retry { reason, delay } => match &self.topics.retry {
                Some(retry_topic) => {
                    let attempt = message.retry_attempt() + 1;
                    if attempt > self.settings.max_retry_rounds {
                        let reason = format!("retries exhausted after {} rounds: {reason}", attempt - 1);
                        return Some(self.dead_letter(message, ErrorClass::ManualRepair, &reason).await);
                    }
                    let delay = retry_round_delay(delay, attempt, self.settings.max_retry_delay);
                    Some(self.to_retry_topic(message, retry_topic, attempt, &reason, delay).await)
                }
                None => {
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => None,
                        _ = self.shutdown.cancelled() => Some(false),
                    }
                }
            },
        }
    }

    async fn to_retry_topic(&self, message: &Inbound, topic: &str, attempt: u32, reason: &str, delay: Duration) -> bool {
        let mut headers = with_origin(message);
        set_header(&mut headers, HeaderName::RETRY_ATTEMPT, attempt.to_string());
        set_header(&mut headers, HeaderName::RETRY_NOT_BEFORE, (now_ms() + delay.as_millis() as i64).to_string());
        set_header(&mut headers, HeaderName::RETRY_REASON, truncate(reason));
        tracing::info!(key = %message.key_text(), attempt, reason, "to retry topic");
        let ok = self.land(message, topic, headers).await;
        if ok {
            self.stats.retried.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    async fn dead_letter(&self, message: &Inbound, class: ErrorClass, reason: &str) -> bool {
        let mut headers = message.headers.clone();
        // A message that went through the retry topic is reported at its
        // original position, which is what an operator replays from.
        let original = |name: &str, own: String| header_text(&message.headers, name).map_or(own, str::to_owned);
        let source = original(HeaderName::ORIGINAL_TOPIC, message.topic.clone());
        let partition = original(HeaderName::ORIGINAL_PARTITION, message.partition.to_string());
        let offset = original(HeaderName::ORIGINAL_OFFSET, message.offset.to_string());
        set_header(&mut headers, HeaderName::DLQ_REASON, truncate(reason));
        set_header(&mut headers, HeaderName::DLQ_ERROR_CLASS, class.as_str());
        set_header(&mut headers, HeaderName::DLQ_SOURCE_TOPIC, source);
        set_header(&mut headers, HeaderName::DLQ_SOURCE_PARTITION, partition);
        set_header(&mut headers, HeaderName::DLQ_SOURCE_OFFSET, offset);
        set_header(&mut headers, HeaderName::DLQ_FAILED_AT, now_ms().to_string());
        tracing::warn!(key = %message.key_text(), topic = %message.topic, offset = message.offset, reason, "dead-lettered");
        let ok = self.land(message, &self.topics.dlq, headers).await;
        if ok {
            self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// The original bytes must land somewhere before the offset may move, so
    /// a broker hiccup is retried until it succeeds or the worker stops.
    async fn land(&self, message: &Inbound, topic: &str, headers: Vec<(String, Vec<u8>)>) -> bool {
        let record = Outbound {
            topic: topic.to_owned(),
            key: message.key.clone(),
            payload: message.payload.clone().unwrap_or_default(),
            headers,
        };
        crate::publisher::publish_until_acked(&self.publisher, &record, &self.shutdown).await
    }
}

/// The message's headers plus where it was first consumed: the first trip
/// through the retry or held topic records it, later trips keep it, so the
/// DLQ can report the position an operator replays from.
fn with_origin(message: &Inbound) -> Vec<(String, Vec<u8>)> {
    let mut headers = message.headers.clone();
    if header_text(&message.headers, HeaderName::ORIGINAL_TOPIC).is_none() {
        set_header(&mut headers, HeaderName::ORIGINAL_TOPIC, message.topic.clone());
        set_header(&mut headers, HeaderName::ORIGINAL_PARTITION, message.partition.to_string());
        set_header(&mut headers, HeaderName::ORIGINAL_OFFSET, message.offset.to_string());
    }
    headers
}

fn truncate(reason: &str) -> String {
    const MAX: usize = 1024;
    if reason.len() <= MAX {
        return reason.to_owned();
    }
    let mut end = MAX;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_rounds_back_off_and_stay_capped() {
        let max = Duration::from_secs(300);
        let rounds: Vec<u64> = (1..=5).map(|a| retry_round_delay(Duration::from_secs(5), a, max).as_secs()).collect();
        assert_eq!(rounds, [5, 10, 20, 40, 80], "five rounds ride out a 30-second outage with room to spare");
        assert_eq!(retry_round_delay(Duration::from_secs(3600), 1, max), max, "no vendor or handler parks a message longer");
        assert_eq!(retry_round_delay(Duration::from_secs(5), 40, max), max);
    }
}
