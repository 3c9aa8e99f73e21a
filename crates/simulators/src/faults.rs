//! Fault injection plan and its deterministic dice.

use std::time::Duration;

/// What to inject on API routes; control routes are never affected.
/// Ratios are probabilities in `0..=1`, rolled per request from `seed`, so a
/// test run is reproducible.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct FaultPlan {
    /// Added to every API reply, before the payout executes, so a second
    /// request with the same key can observe the first one in flight. For a
    /// vendor that executes first and answers slowly, use
    /// `hang_after_accept_ratio: 1.0` with `hang_ms` instead.
    pub latency_ms: u64,
    /// Answer 500 or 503 before executing anything: a definite non-acceptance.
    pub server_error_ratio: f64,
    /// Answer 503 before executing anything (maintenance, overload): the
    /// deterministic definite refusal failover tests need.
    pub unavailable_ratio: f64,
    /// Answer 429 with `Retry-After`, nothing executed.
    pub rate_limit_ratio: f64,
    /// Value of the `Retry-After` header, in seconds.
    pub retry_after_secs: u64,
    /// Execute the payout, save its idempotency record, then sleep `hang_ms`
    /// before replying, so the client times out on an ambiguous result.
    /// This is also the "slow call" (the vendor pays, then takes its time to
    /// answer): with ratio 1.0 every call is slow; a `hang_ms` below the
    /// client's timeout gives a slow success, above it an ambiguous timeout.
    /// Both count as `injected_faults`.
    pub hang_after_accept_ratio: f64,
    /// How long a hang lasts.
    pub hang_ms: u64,
    /// Seed of the RNG behind the ratios.
    pub seed: u64,
}

/// An injected failure that replaces the real reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// 500 (`unavailable == false`) or 503.
    ServerError { unavailable: bool },
    /// 429 with `Retry-After: secs`.
    RateLimited { secs: u64 },
}

impl FaultPlan {
    pub(crate) fn latency(&self) -> Duration {
        Duration::from_millis(self.latency_ms)
    }

    /// Rolls the pre-execution faults. Ratios of zero skip the dice so the
    /// default plan costs nothing.
    pub(crate) fn roll_pre(&self, rng: &mut Rng) -> Option<Fault> {
        if self.unavailable_ratio > 0.0 && rng.next_f64() < self.unavailable_ratio {
            return Some(Fault::ServerError { unavailable: true });
        }
        if self.server_error_ratio > 0.0 && rng.next_f64() < self.server_error_ratio {
            return Some(Fault::ServerError { unavailable: rng.next_u64() & 1 == 1 });
        }
        if self.rate_limit_ratio > 0.0 && rng.next_f64() < self.rate_limit_ratio {
            return Some(Fault::RateLimited { secs: self.retry_after_secs });
        }
        None
    }

    /// Rolls hang-after-accept; `Some(duration)` means execute, then stall.
    pub(crate) fn roll_hang(&self, rng: &mut Rng) -> Option<Duration> {
        (self.hang_after_accept_ratio > 0.0 && rng.next_f64() < self.hang_after_accept_ratio)
            .then(|| Duration::from_millis(self.hang_ms))
    }
}

/// SplitMix64: tiny, fast and good enough for fault dice; avoids a
/// per-request call into a heavier RNG.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn next_f64(&mut self) -> f64 {
        // 53 random bits -> [0, 1).
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_deterministic_and_roughly_right() {
        let plan = FaultPlan { rate_limit_ratio: 0.25, seed: 7, ..FaultPlan::default() };
        let count = |seed| {
            let mut rng = Rng::new(seed);
            (0..10_000).filter(|_| plan.roll_pre(&mut rng).is_some()).count()
        };
        assert_eq!(count(7), count(7));
        let n = count(7);
        assert!((2_200..2_800).contains(&n), "{n}");
    }
}
