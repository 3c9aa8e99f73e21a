//! Waiting for a vendor's asynchronous result (a KYC review, a screening)
//! inside one delivery, within a budget.

use crate::AdapterError;
use std::time::Duration;
use switchyard_canonical::{ErrorClass, ErrorCode};

/// The `http_status` of an error that only says the poll budget ran out.
pub const STILL_PROCESSING: u16 = 202;

/// How long to wait for an asynchronous result inside one delivery.
#[derive(Debug, Clone, Copy)]
pub struct Polling {
    pub interval: Duration,
    /// After this, the call fails as transient; the next delivery resumes
    /// the same check under the same key.
    pub budget: Duration,
}

impl Default for Polling {
    fn default() -> Self {
        Self { interval: Duration::from_millis(500), budget: Duration::from_secs(20) }
    }
}

impl Polling {
    /// Waits until `probe` answers `Some`, or the budget is spent.
    pub async fn until<T, F, Fut>(&self, what: &str, mut probe: F) -> Result<T, AdapterError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>, AdapterError>>,
    {
        let deadline = tokio::time::Instant::now() + self.budget;
        loop {
            if let Some(done) = probe().await? {
                return Ok(done);
            }
            if tokio::time::Instant::now() + self.interval > deadline {
                // The vendor holds the work; asking again later under the
                // same key finds it, so this is safe to retry, but it must
                // not fail over to a second vendor.
                let mut e = AdapterError::new(ErrorClass::Transient, ErrorCode::Timeout, format!("{what} still in progress at the vendor"));
                e.ambiguous = true;
                // Like HTTP 202: the vendor is healthy and working on it, so
                // this must not count against its circuit breaker.
                e.http_status = Some(STILL_PROCESSING);
                return Err(e);
            }
            tokio::time::sleep(self.interval).await;
        }
    }
}

