//! A payment initiated through open banking, as one pure status machine
//! every provider's statuses are mapped onto:
//!
//! ```text
//! AUTHORIZATION_REQUIRED -> AUTHORIZING -> AUTHORIZED -> EXECUTED -> SETTLED
//!            any of them but SETTLED -> FAILED
//! ```
//!
//! Payment statuses arrive for days, by webhook and by polling, duplicated
//! and out of order. [`PaymentProgress::observe`] only ever moves forward:
//! a status behind the current one is late and changes nothing, a status
//! that skips ahead fills in the ones it skipped (executing implies the
//! user authorized), each entered once, so each is published once.
//!
//! FAILED is accepted from every state before SETTLED, EXECUTED included:
//! a bank can return an executed payment. Whether EXECUTED was published
//! before it failed is remembered (`executed`): it decides whether the
//! ledger has something to reverse. After FAILED, an EXECUTED stamped
//! before the failure is late history (the failure already told everyone
//! the money is not there) and changes nothing; one stamped after it, or
//! any SETTLED, says money moved after we said it failed: a contradiction,
//! no change, and ops and the reconciler are told. SETTLED is final, and
//! FAILED after it is a contradiction as well, in whichever order the two
//! arrive: a refund or a return after settlement is a new money movement,
//! not a status of this payment.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentStatus {
    /// Created; the user has yet to authorize it at their bank (hand-off out).
    AuthorizationRequired,
    /// The user is at their bank.
    Authorizing,
    /// The user authorized; the bank has yet to execute it.
    Authorized,
    /// The bank sent the money.
    Executed,
    /// The money reached the beneficiary's account.
    Settled,
    Failed,
}

impl PaymentStatus {
    pub const ALL: [PaymentStatus; 6] = [
        PaymentStatus::AuthorizationRequired,
        PaymentStatus::Authorizing,
        PaymentStatus::Authorized,
        PaymentStatus::Executed,
        PaymentStatus::Settled,
        PaymentStatus::Failed,
    ];

    /// The forward path, in order (FAILED is off it).
    pub const PATH: [PaymentStatus; 5] =
        [PaymentStatus::AuthorizationRequired, PaymentStatus::Authorizing, PaymentStatus::Authorized, PaymentStatus::Executed, PaymentStatus::Settled];

    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::AuthorizationRequired => "AUTHORIZATION_REQUIRED",
            PaymentStatus::Authorizing => "AUTHORIZING",
            PaymentStatus::Authorized => "AUTHORIZED",
            PaymentStatus::Executed => "EXECUTED",
            PaymentStatus::Settled => "SETTLED",
            PaymentStatus::Failed => "FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }

    pub fn terminal(self) -> bool {
        matches!(self, PaymentStatus::Settled | PaymentStatus::Failed)
    }

    /// Position on the forward path; FAILED has none.
    fn rank(self) -> Option<usize> {
        Self::PATH.iter().position(|s| *s == self)
    }
}

/// What a provider's status did to the payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentObserved {
    /// The statuses entered, in order: one event each.
    Entered(Vec<PaymentStatus>),
    /// A duplicate or a late status: nothing to publish.
    Unchanged,
    /// The provider claims what our record rules out (money moved after it
    /// failed, a settled payment failing): no event; ops and the reconciler
    /// are told.
    Contradiction { from: PaymentStatus, to: PaymentStatus },
}

/// One payment's status, stored with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentProgress {
    pub status: PaymentStatus,
    /// EXECUTED was entered (and published) at some point: a FAILED after
    /// it is a return, and the ledger must reverse what it booked.
    pub executed: bool,
    /// The latest provider clock applied. Order on the path comes from the
    /// path, not the clock (providers stamp statuses from different
    /// systems); the clock only tells, after FAILED, whether an EXECUTED
    /// happened before the failure or after it.
    pub changed_at_ms: i64,
}

impl PaymentProgress {
    /// A payment just created at the provider.
    pub fn created(status: PaymentStatus, at_ms: i64) -> Self {
        let executed = matches!(status, PaymentStatus::Executed | PaymentStatus::Settled);
        Self { status, executed, changed_at_ms: at_ms }
    }

    /// Applies a provider's word that the payment is now `to`, as of `at_ms`
    /// on the provider's clock.
    pub fn observe(&mut self, to: PaymentStatus, at_ms: i64) -> PaymentObserved {
        let from = self.status;
        if to == from {
            return PaymentObserved::Unchanged;
        }
        match (from, to) {
            (PaymentStatus::Settled, PaymentStatus::Failed) | (PaymentStatus::Failed, PaymentStatus::Settled) => PaymentObserved::Contradiction { from, to },
            (PaymentStatus::Settled, _) => PaymentObserved::Unchanged,
            (PaymentStatus::Failed, PaymentStatus::Executed) if at_ms > self.changed_at_ms => PaymentObserved::Contradiction { from, to },
            (PaymentStatus::Failed, _) => PaymentObserved::Unchanged,
            (_, PaymentStatus::Failed) => {
                self.enter(to, at_ms);
                PaymentObserved::Entered(vec![to])
            }
            _ => {
                let (Some(have), Some(want)) = (from.rank(), to.rank()) else {
                    // Unreachable with FAILED handled above; unchanged is the safe answer.
                    return PaymentObserved::Unchanged;
                };
                if want < have {
                    return PaymentObserved::Unchanged;
                }
                let entered: Vec<PaymentStatus> = PaymentStatus::PATH[have + 1..=want].to_vec();
                self.enter(to, at_ms);
                PaymentObserved::Entered(entered)
            }
        }
    }

    fn enter(&mut self, to: PaymentStatus, at_ms: i64) {
        self.status = to;
        self.executed |= matches!(to, PaymentStatus::Executed | PaymentStatus::Settled);
        self.changed_at_ms = self.changed_at_ms.max(at_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PaymentStatus as P;

    /// Every (from, to) pair, stamped after and before the latest change:
    /// the expected answer written out from the rules in the module doc,
    /// not derived from the code.
    #[test]
    fn every_status_after_every_status() {
        for from in P::ALL {
            for at in [20, 5] {
                for to in P::ALL {
                    let mut p = PaymentProgress::created(from, 10);
                    let got = p.observe(to, at);
                    let later = at > 10;
                    let expected = match (from, to) {
                        _ if from == to => PaymentObserved::Unchanged,
                        (P::Settled, P::Failed) | (P::Failed, P::Settled) => PaymentObserved::Contradiction { from, to },
                        (P::Settled, _) => PaymentObserved::Unchanged,
                        (P::Failed, P::Executed) if later => PaymentObserved::Contradiction { from, to },
                        (P::Failed, _) => PaymentObserved::Unchanged,
                        (_, P::Failed) => PaymentObserved::Entered(vec![P::Failed]),
                        _ => {
                            let (a, b) = (P::PATH.iter().position(|s| *s == from).expect("on path"), P::PATH.iter().position(|s| *s == to).expect("on path"));
                            if b < a {
                                PaymentObserved::Unchanged
                            } else {
                                PaymentObserved::Entered(P::PATH[a + 1..=b].to_vec())
                            }
                        }
                    };
                    assert_eq!(got, expected, "{from:?} -> {to:?} at {at}");
                    match &got {
                        PaymentObserved::Entered(states) => assert_eq!(p.status, *states.last().expect("one at least")),
                        _ => assert_eq!(p, PaymentProgress::created(from, 10), "{from:?} -> {to:?} at {at} changed nothing"),
                    }
                    assert_eq!(p.executed, matches!(p.status, P::Executed | P::Settled) || (p.status == P::Failed && matches!(from, P::Executed)));
                }
            }
        }
    }

    #[test]
    fn a_bank_return_fails_an_executed_payment_and_a_late_executed_changes_nothing() {
        let mut p = PaymentProgress::created(P::AuthorizationRequired, 0);
        assert_eq!(p.observe(P::Executed, 30), PaymentObserved::Entered(vec![P::Authorizing, P::Authorized, P::Executed]));
        assert_eq!(p.observe(P::Failed, 90), PaymentObserved::Entered(vec![P::Failed]));
        assert!(p.executed, "the ledger must reverse what it booked");
        // The provider's earlier statuses, redelivered.
        assert_eq!(p.observe(P::Authorized, 20), PaymentObserved::Unchanged);
        assert_eq!(p.observe(P::Executed, 30), PaymentObserved::Unchanged);
        assert_eq!(p.observe(P::Settled, 95), PaymentObserved::Contradiction { from: P::Failed, to: P::Settled });
        assert_eq!(p.status, P::Failed);
    }

    #[test]
    fn money_moving_after_a_failure_is_a_contradiction_history_before_it_is_not() {
        let mut p = PaymentProgress::created(P::Authorizing, 0);
        assert_eq!(p.observe(P::Failed, 10), PaymentObserved::Entered(vec![P::Failed]));
        assert!(!p.executed);
        assert_eq!(p.observe(P::Executed, 5), PaymentObserved::Unchanged, "executed, then returned: the failure already said so");
        assert_eq!(p.observe(P::Executed, 20), PaymentObserved::Contradiction { from: P::Failed, to: P::Executed });
        assert!(!p.executed, "nothing was published as executed, nothing to reverse");
        let mut settled = PaymentProgress::created(P::Settled, 0);
        assert_eq!(settled.observe(P::Failed, 10), PaymentObserved::Contradiction { from: P::Settled, to: P::Failed });
    }

    /// Random deliveries of a payment's statuses (a prefix of the path,
    /// maybe then FAILED), each possibly duplicated, all shuffled: what is
    /// published is always in path order, each status at most once, never a
    /// step back, and the payment ends where the furthest status says.
    /// Seeded, reproducible; xorshift keeps it free of dependencies, as the
    /// card lifecycle's property test is.
    #[test]
    fn any_delivery_order_publishes_each_status_once_in_order() {
        let mut seed: u64 = 0x0b_5eed_2026;
        let mut next = move |n: usize| {
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            (seed.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
        };
        for round in 0..5_000 {
            let reached = 1 + next(P::PATH.len());
            let fails = next(3) == 0 && reached < P::PATH.len();
            let mut deliveries: Vec<(P, i64)> = P::PATH[..reached].iter().enumerate().map(|(i, s)| (*s, i as i64 * 10)).collect();
            if fails {
                deliveries.push((P::Failed, 1_000));
            }
            for _ in 0..next(5) {
                let d = deliveries[next(deliveries.len())];
                deliveries.push(d);
            }
            for i in (1..deliveries.len()).rev() {
                deliveries.swap(i, next(i + 1));
            }
            let mut p = PaymentProgress::created(P::AuthorizationRequired, 0);
            let mut published = vec![P::AuthorizationRequired];
            for (to, at) in &deliveries {
                match p.observe(*to, *at) {
                    PaymentObserved::Entered(states) => published.extend(states),
                    PaymentObserved::Unchanged => {}
                    // The failure is stamped after every other status and
                    // nothing settles: the provider never contradicts itself.
                    PaymentObserved::Contradiction { from, to } => panic!("round {round}: {from:?} -> {to:?} in {deliveries:?}"),
                }
            }
            let mut seen = std::collections::HashSet::new();
            assert!(published.iter().all(|s| seen.insert(*s)), "round {round}: published twice: {published:?}");
            let path_part: Vec<P> = published.iter().copied().filter(|s| *s != P::Failed).collect();
            assert_eq!(path_part, P::PATH[..path_part.len()].to_vec(), "round {round}: out of order: {published:?}");
            if fails {
                assert_eq!(p.status, P::Failed, "round {round}");
                assert_eq!(published.last(), Some(&P::Failed));
            } else {
                assert_eq!(p.status, P::PATH[reached - 1], "round {round}: {deliveries:?}");
                assert_eq!(published, P::PATH[..reached].to_vec());
            }
        }
    }
}
