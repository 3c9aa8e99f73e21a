//! The attempt lease on an unfinished idempotency record: who may call a
//! vendor for it right now.
//!
//! Without it, two deliveries of one command (a rebalance redelivers while
//! the old owner's call still runs; a duplicate sits on the retry topic)
//! could each read `provider = stripe` and one of them move the claim to the
//! secondary while the other's Stripe call completes: two payouts. So:
//! - the claim that creates the row holds the lease at epoch 1;
//! - any other delivery takes it with [`Store::acquire_lease`], which only
//!   succeeds once the holder's lease expired, and bumps the epoch (the
//!   fencing token);
//! - before every vendor call and every reroute the holder proves its epoch
//!   is still current ([`Store::renew_lease`], [`Store::reroute`]); a holder
//!   that lost it calls no one.
//!
//! Expiry compares `lease_until_ms` (the holder's clock) with the taker's
//! clock, so members' clocks must agree to well within the lease's length;
//! the worker trusts a renewal for a third of it (see the worker's lease).

use crate::records::{self, Bind, Record, RecordState, Sql};
use crate::{Store, StoreError};
use sqlx::any::AnyRow;

/// What [`Store::acquire_lease`] found.
#[derive(Debug, Clone)]
pub enum Acquired {
    /// The lease is ours at `record.lease_epoch`; the record is as it stands
    /// now (its provider may differ from what an earlier read said).
    Held(Record),
    /// Another delivery holds it until `until_ms`.
    Busy { until_ms: i64 },
    /// The record is finished: answer from it.
    Completed(Record),
    /// No such record.
    Missing,
}

impl Store {
    /// Takes the lease of an unfinished record whose lease has expired.
    pub async fn acquire_lease(&self, domain: &str, idempotency_key: &str, owner: &str, ttl_ms: i64) -> Result<Acquired, StoreError> {
        let now = switchyard_canonical::now_ms();
        let mut q = Sql::new("UPDATE idempotency_records SET lease_owner = ");
        q.bind(Bind::Text(Some(owner)))
            .push(", lease_epoch = lease_epoch + 1, lease_until_ms = ")
            .bind(Bind::Int(now + ttl_ms))
            .push(" WHERE domain = ")
            .bind(Bind::Text(Some(domain)))
            .push(" AND idempotency_key = ")
            .bind(Bind::Text(Some(idempotency_key)))
            .push(" AND state = 'in_progress' AND lease_until_ms < ")
            .bind(Bind::Int(now))
            .push(&format!(" RETURNING {}", records::COLUMNS));
        let taken: Option<AnyRow> = q.query().fetch_optional(self.pool()).await?;
        if let Some(row) = taken {
            return Ok(Acquired::Held(records::from_row(&row)?));
        }
        Ok(match self.record(domain, idempotency_key).await? {
            None => Acquired::Missing,
            Some(r) if r.state == RecordState::Completed => Acquired::Completed(r),
            // Expired between the two statements: the caller simply asks again.
            Some(r) => Acquired::Busy { until_ms: r.lease_until_ms },
        })
    }

    /// Extends the lease if `epoch` still holds it: the fence before a vendor
    /// call. False means another delivery took over; call no one.
    pub async fn renew_lease(&self, domain: &str, idempotency_key: &str, epoch: i64, ttl_ms: i64) -> Result<bool, StoreError> {
        let mut q = Sql::new("UPDATE idempotency_records SET lease_until_ms = ");
        q.bind(Bind::Int(switchyard_canonical::now_ms() + ttl_ms));
        fenced(&mut q, domain, idempotency_key, epoch);
        Ok(q.query().execute(self.pool()).await?.rows_affected() == 1)
    }

    /// Gives the lease up early (the delivery goes to the retry topic or
    /// ends unresolved), so the next delivery need not wait for it to expire.
    pub async fn release_lease(&self, domain: &str, idempotency_key: &str, epoch: i64) -> Result<(), StoreError> {
        let mut q = Sql::new("UPDATE idempotency_records SET lease_until_ms = 0");
        fenced(&mut q, domain, idempotency_key, epoch);
        q.query().execute(self.pool()).await?;
        Ok(())
    }

    /// Moves an unfinished claim from `from` to `to` (failover after a
    /// definite refusal), fenced on the lease: false if the record is
    /// finished, no longer names `from`, or another delivery took the lease.
    /// The new key's age starts now.
    pub async fn reroute(&self, domain: &str, idempotency_key: &str, from: &str, to: &str, to_key: &str, epoch: i64) -> Result<bool, StoreError> {
        let now = switchyard_canonical::now_ms();
        let mut q = Sql::new("UPDATE idempotency_records SET provider = ");
        q.bind(Bind::Text(Some(to)))
            .push(", provider_key = ")
            .bind(Bind::Text(Some(to_key)))
            .push(", key_since_ms = ")
            .bind(Bind::Int(now))
            .push(", updated_at_ms = ")
            .bind(Bind::Int(now));
        fenced(&mut q, domain, idempotency_key, epoch);
        q.push(" AND provider = ").bind(Bind::Text(Some(from)));
        Ok(q.query().execute(self.pool()).await?.rows_affected() == 1)
    }
}

fn fenced<'a>(q: &mut Sql<'a>, domain: &'a str, idempotency_key: &'a str, epoch: i64) {
    q.push(" WHERE domain = ")
        .bind(Bind::Text(Some(domain)))
        .push(" AND idempotency_key = ")
        .bind(Bind::Text(Some(idempotency_key)))
        .push(" AND state = 'in_progress' AND lease_epoch = ")
        .bind(Bind::Int(epoch));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Claim;

    fn claim(key: &str, owner: &str, ttl_ms: i64) -> Claim {
        Claim {
            domain: "payouts".into(),
            idempotency_key: key.into(),
            fingerprint: "fp".into(),
            subject_id: format!("subject-{key}"),
            provider: "stripe".into(),
            provider_key: key.into(),
            correlation_id: "corr".into(),
            lease_owner: owner.into(),
            lease_ttl_ms: ttl_ms,
        }
    }

    async fn stores() -> Vec<Store> {
        crate::test_stores().await
    }

    fn unique(prefix: &str) -> String {
        format!("{prefix}-{}-{}", std::process::id(), switchyard_canonical::now_ms())
    }

    #[tokio::test]
    async fn a_live_lease_fences_out_every_other_delivery() {
        for store in stores().await {
            let key = unique("lease");
            let first = store.claim(claim(&key, "a", 60_000)).await.expect("claim");
            assert_eq!((first.lease_epoch, first.lease_owner.as_deref()), (1, Some("a")));
            // A redelivery sees the claim but may not take a live lease.
            let second = store.claim(claim(&key, "b", 60_000)).await.expect("claim");
            assert_eq!(second.lease_owner.as_deref(), Some("a"));
            assert!(matches!(store.acquire_lease("payouts", &key, "b", 60_000).await.expect("acquire"), Acquired::Busy { .. }));
            assert!(store.renew_lease("payouts", &key, 1, 60_000).await.expect("renew"), "the holder keeps it");
            // The holder goes away (released or expired): b takes over at epoch 2.
            store.release_lease("payouts", &key, 1).await.expect("release");
            let Acquired::Held(taken) = store.acquire_lease("payouts", &key, "b", 60_000).await.expect("acquire") else {
                panic!("an expired lease can be taken");
            };
            assert_eq!((taken.lease_epoch, taken.lease_owner.as_deref()), (2, Some("b")));
            // The old holder is fenced out of calls and reroutes alike.
            assert!(!store.renew_lease("payouts", &key, 1, 60_000).await.expect("renew"));
            assert!(!store.reroute("payouts", &key, "stripe", "adyen", "k2", 1).await.expect("reroute"));
            assert!(store.reroute("payouts", &key, "stripe", "adyen", "k2", 2).await.expect("reroute"));
            let moved = store.record("payouts", &key).await.expect("read").expect("exists");
            assert_eq!(moved.provider.as_deref(), Some("adyen"));
            assert!(moved.key_since_ms >= taken.key_since_ms, "a new key's age starts at the reroute");
        }
    }

    #[tokio::test]
    async fn a_finished_record_has_no_lease_to_take() {
        for store in stores().await {
            let key = unique("done");
            store.claim(claim(&key, "a", 0)).await.expect("claim");
            let done = crate::Completion { claim: claim(&key, "a", 0), outcome_json: "{}".into(), attempts: 1 };
            store.complete(done).await.expect("complete");
            assert!(matches!(store.acquire_lease("payouts", &key, "b", 1000).await.expect("acquire"), Acquired::Completed(_)));
            assert!(matches!(store.acquire_lease("payouts", "no-such-key", "b", 1000).await.expect("acquire"), Acquired::Missing));
        }
    }
}
