//! A token bucket per provider, from the partner catalog's rate limit: calls
//! wait for a token instead of collecting 429s from the vendor; the webhook
//! ingester uses the same bucket to refuse a callback flood per provider.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct TokenBucket {
    per_second: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    pub fn new(per_second: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self { per_second, burst, state: Mutex::new((burst, Instant::now())) }
    }

    /// Takes a token now, or says how long until one is free (the token is
    /// reserved either way, so waiters queue fairly).
    fn reserve(&self) -> Duration {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, last) = &mut *state;
        let now = Instant::now();
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.per_second).min(self.burst);
        *last = now;
        *tokens -= 1.0;
        if *tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-*tokens / self.per_second)
        }
    }

    /// Takes a token if one is free now; otherwise takes nothing and says
    /// how long until one is. For callers that refuse instead of waiting
    /// (the webhook ingester answers 429 with that as Retry-After).
    pub fn try_take(&self) -> Result<(), Duration> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, last) = &mut *state;
        let now = Instant::now();
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.per_second).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.per_second))
        }
    }

    pub async fn acquire(&self) {
        let wait = self.reserve();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_free_then_calls_are_spaced() {
        let bucket = TokenBucket::new(10.0, 3);
        for _ in 0..3 {
            assert_eq!(bucket.reserve(), Duration::ZERO);
        }
        let fourth = bucket.reserve();
        assert!(fourth > Duration::from_millis(80) && fourth <= Duration::from_millis(100), "{fourth:?}");
        let fifth = bucket.reserve();
        assert!(fifth > Duration::from_millis(180), "queued behind the fourth: {fifth:?}");
    }

    #[test]
    fn try_take_refuses_without_reserving() {
        let bucket = TokenBucket::new(10.0, 2);
        assert_eq!(bucket.try_take(), Ok(()));
        assert_eq!(bucket.try_take(), Ok(()));
        let wait = bucket.try_take().expect_err("empty");
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        // A refusal took nothing: the wait does not grow with refusals.
        let again = bucket.try_take().expect_err("still empty");
        assert!(again <= wait, "{again:?} vs {wait:?}");
    }
}
