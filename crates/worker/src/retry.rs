//! In-place retry policy: a few quick tries with jittered exponential backoff
//! before a message is handed to the retry topic, so a blip costs
//! milliseconds and an outage does not block the partition.

use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Vendor calls per delivery, the first one included.
    pub max_attempts: u32,
    pub base_delay_ms: u64,
    pub max_delay_ms: u64,
    /// A vendor asking to wait longer than this sends the message to the
    /// retry topic instead of holding a task.
    pub max_in_place_wait_ms: u64,
    /// Delay of a message sent to the retry topic when the vendor named none
    /// (the first round; later rounds double it).
    pub retry_topic_delay_ms: u64,
    /// The longest a vendor's `Retry-After` is obeyed: a vendor asking for an
    /// hour (or a proxy's garbage) must not park payouts that long.
    pub max_vendor_wait_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay_ms: 50,
            max_delay_ms: 2000,
            max_in_place_wait_ms: 5000,
            retry_topic_delay_ms: 5000,
            max_vendor_wait_ms: 60_000,
        }
    }
}

impl RetryPolicy {
    /// Full-jitter backoff for the given attempt (0-based), never shorter
    /// than what the vendor asked for, up to `max_vendor_wait_ms`.
    pub fn delay(&self, attempt: u32, vendor_asked: Option<Duration>) -> Duration {
        let cap = self.base_delay_ms.saturating_mul(1 << attempt.min(16)).min(self.max_delay_ms);
        let jittered = Duration::from_millis(rand::random_range(cap / 2..=cap.max(1)));
        let asked = vendor_asked.map(|a| a.min(Duration::from_millis(self.max_vendor_wait_ms)));
        asked.map_or(jittered, |asked| asked.max(jittered))
    }

    pub fn waits_in_place(&self, delay: Duration) -> bool {
        delay <= Duration::from_millis(self.max_in_place_wait_ms)
    }

    /// Waits before try `attempt + 1` of a vendor call. A wait longer than
    /// `max_in_place_wait_ms` (a vendor's `Retry-After`) is not held in a
    /// task: the message goes to the retry topic with that delay instead;
    /// shutdown hands it back at once.
    pub async fn wait_in_place(
        &self,
        attempt: u32,
        vendor_asked: Option<Duration>,
        reason: impl FnOnce() -> String,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> Result<(), switchyard_bus::Failure> {
        let delay = self.delay(attempt, vendor_asked);
        if !self.waits_in_place(delay) {
            return Err(switchyard_bus::Failure::Retry { reason: reason(), delay });
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => Ok(()),
            _ = shutdown.cancelled() => Err(switchyard_bus::Failure::Retry { reason: "worker stopping".into(), delay: Duration::ZERO }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn honours_retry_after_and_caps_backoff() {
        let p = RetryPolicy::default();
        assert!(p.delay(10, None) <= Duration::from_millis(p.max_delay_ms));
        assert_eq!(p.delay(0, Some(Duration::from_secs(3))), Duration::from_secs(3));
        assert!(!p.waits_in_place(Duration::from_secs(60)));
        assert_eq!(p.delay(0, Some(Duration::from_secs(86_400))), Duration::from_millis(p.max_vendor_wait_ms), "Retry-After is capped");
    }
}
