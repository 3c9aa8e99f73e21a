//! One delivery's right to call a vendor for a claim: the attempt lease of
//! [`switchyard_store::lease`], as the handler holds it.
//!
//! - The claim that created the record holds the lease (epoch 1); any other
//!   delivery waits for the holder ([`take_over`]) and then either answers
//!   from the finished record or takes the lease at a higher epoch.
//! - Before every vendor call the holder proves the lease is still its own
//!   ([`AttemptLease::fence`]); while a call runs it renews the lease every
//!   third of its length ([`AttemptLease::guard`]), and a holder that lost it
//!   drops the call and calls no one again.
//! - A renewal is trusted locally for a third of the lease, so a fast payout
//!   costs no extra statement; the taker compares expiry with its own clock,
//!   so members' clocks must agree to within two thirds of the lease.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use switchyard_bus::Failure;
use switchyard_canonical::now_ms;
use switchyard_store::{Acquired, Record, Store, StoreError};
use tokio_util::sync::CancellationToken;

/// A token naming one delivery: this process's random id and a counter.
pub fn owner_token() -> String {
    static MEMBER: OnceLock<String> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let member = MEMBER.get_or_init(|| format!("{:016x}", rand::random::<u64>()));
    format!("{member}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The lease a delivery holds.
#[derive(Debug)]
pub struct AttemptLease {
    pub domain: &'static str,
    pub idempotency_key: String,
    pub epoch: i64,
    ttl: Duration,
    /// When the store last confirmed the lease (claim, take-over or renewal).
    confirmed: Instant,
}

/// Why a delivery stopped short of calling a vendor.
#[derive(Debug)]
pub enum Fenced {
    /// Another delivery took the lease: it answers for this payout.
    Lost,
    /// The store could not confirm the lease; calling would be a guess.
    StoreDown(StoreError),
}

impl AttemptLease {
    /// The lease a fresh claim was created with.
    pub fn created(domain: &'static str, record: &Record, ttl: Duration) -> Self {
        Self { domain, idempotency_key: record.idempotency_key.clone(), epoch: record.lease_epoch, ttl, confirmed: Instant::now() }
    }

    fn trusted(&self) -> bool {
        self.confirmed.elapsed() < self.ttl / 3
    }

    /// Proves the lease is still ours right before a vendor call.
    pub async fn fence(&mut self, store: &Store) -> Result<(), Fenced> {
        if self.trusted() {
            return Ok(());
        }
        self.renew(store).await
    }

    async fn renew(&mut self, store: &Store) -> Result<(), Fenced> {
        match store.renew_lease(self.domain, &self.idempotency_key, self.epoch, ttl_ms(self.ttl)).await {
            Ok(true) => {
                self.confirmed = Instant::now();
                Ok(())
            }
            Ok(false) => Err(Fenced::Lost),
            Err(e) => Err(Fenced::StoreDown(e)),
        }
    }

    /// Runs a vendor call while keeping the lease alive. If another delivery
    /// took the lease meanwhile the call is dropped (its result, whatever the
    /// vendor did, is the new holder's to find out under the same key). A
    /// store outage during the call does not stop it: nobody can take the
    /// lease without the store either.
    pub async fn guard<F: Future>(&mut self, store: &Store, call: F) -> Result<F::Output, Fenced> {
        tokio::pin!(call);
        loop {
            let tick = tokio::time::sleep(self.ttl / 3);
            tokio::select! {
                out = &mut call => return Ok(out),
                _ = tick => match self.renew(store).await {
                    Ok(()) | Err(Fenced::StoreDown(_)) => {}
                    Err(Fenced::Lost) => return Err(Fenced::Lost),
                },
            }
        }
    }

    /// Lets the next delivery in at once instead of after expiry.
    pub async fn release(&self, store: &Store) {
        if let Err(e) = store.release_lease(self.domain, &self.idempotency_key, self.epoch).await {
            tracing::debug!(error = %e, "lease not released; it expires by itself");
        }
    }
}

fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}

/// What waiting for a claim's lease ended with.
pub enum TakeOver {
    /// Ours now; `Record` is the claim as it stands (provider may have moved).
    Held(Record, AttemptLease),
    /// Another delivery finished the payout: answer from this record.
    Finished(Record),
}

/// Waits, up to `patience`, for the delivery holding the lease to finish or
/// let go, then takes the lease. Past `patience` the message goes to the
/// retry topic: the holder is alive (it keeps renewing) and will answer.
pub async fn take_over(
    store: &Store,
    domain: &'static str,
    idempotency_key: &str,
    ttl: Duration,
    patience: Duration,
    shutdown: &CancellationToken,
) -> Result<TakeOver, Failure> {
    let owner = owner_token();
    let started = Instant::now();
    loop {
        let acquired = store.acquire_lease(domain, idempotency_key, &owner, ttl_ms(ttl)).await.map_err(|e| Failure::Retry {
            reason: format!("store unavailable: {e}"),
            delay: Duration::from_secs(1),
        })?;
        let until_ms = match acquired {
            Acquired::Held(record) => {
                let lease = AttemptLease { domain, idempotency_key: idempotency_key.to_owned(), epoch: record.lease_epoch, ttl, confirmed: Instant::now() };
                return Ok(TakeOver::Held(record, lease));
            }
            Acquired::Completed(record) => return Ok(TakeOver::Finished(record)),
            Acquired::Missing => {
                return Err(Failure::DeadLetter {
                    class: switchyard_canonical::ErrorClass::ManualRepair,
                    reason: "claimed record vanished from the store".into(),
                });
            }
            Acquired::Busy { until_ms } => until_ms,
        };
        if started.elapsed() >= patience {
            return Err(Failure::Retry { reason: "another delivery holds this payout's attempt lease".into(), delay: ttl });
        }
        // Poll no faster than every 100 ms and no slower than every second:
        // the holder usually finishes well before its lease would expire.
        let wait = Duration::from_millis(u64::try_from(until_ms - now_ms()).unwrap_or(0)).clamp(Duration::from_millis(100), Duration::from_secs(1));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => {
                return Err(Failure::Retry { reason: "worker stopping".into(), delay: Duration::ZERO });
            }
        }
    }
}
