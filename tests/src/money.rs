//! The oracle's verdict shared by the payout tests: count money movements per
//! payout id across every simulated vendor, never executions per key.

use std::collections::BTreeMap;
use switchyard_canonical::PayoutCommand;
use switchyard_store::Claim;
use switchyard_simulators::MoneyOracle;

/// Every command paid exactly once, to its own beneficiary, with its own
/// money, and nothing paid that was not commanded. Returns the violations.
pub fn paid_exactly_once(oracle: &MoneyOracle, commands: &[PayoutCommand]) -> Vec<String> {
    let mut violations = Vec::new();
    let mut moved = oracle.per_payout();
    for cmd in commands {
        let movements = moved.remove(&cmd.payout_id).unwrap_or_default();
        if movements.len() != 1 {
            let at: Vec<_> = movements.iter().map(|m| format!("{} key {}", m.vendor, m.idempotency_key)).collect();
            violations.push(format!("{}: {} money movements {at:?}", cmd.payout_id, movements.len()));
        }
        for m in &movements {
            let paid = (m.beneficiary_iban.as_deref(), m.beneficiary_name.as_deref(), m.amount_minor, m.currency.as_str());
            let asked = (Some(cmd.beneficiary.iban.as_str()), Some(cmd.beneficiary.name.as_str()), cmd.amount_minor, cmd.currency.as_str());
            if paid != asked {
                violations.push(format!("{}: {} paid {paid:?}, the command asked {asked:?}", cmd.payout_id, m.vendor));
            }
        }
    }
    let strays: BTreeMap<_, _> = moved.into_iter().map(|(id, m)| (id, m.len())).collect();
    if !strays.is_empty() {
        violations.push(format!("money moved for payouts nobody commanded here: {strays:?}"));
    }
    violations
}

/// Panics with every violation of [`paid_exactly_once`].
pub fn assert_paid_exactly_once(oracle: &MoneyOracle, commands: &[PayoutCommand]) {
    let violations = paid_exactly_once(oracle, commands);
    assert!(violations.is_empty(), "{} violations:\n{}", violations.len(), violations.join("\n"));
}

/// The claim a payout worker's delivery makes before its first vendor call,
/// for tests that stage "another delivery" by hand: `owner` holds the lease
/// for `lease_ttl_ms` (0: already expired, a delivery that died).
pub fn payout_claim(cmd: &PayoutCommand, provider: &str, owner: &str, lease_ttl_ms: i64) -> Claim {
    Claim {
        domain: "payouts".into(),
        idempotency_key: cmd.idempotency_key.clone(),
        fingerprint: cmd.fingerprint().0,
        subject_id: cmd.payout_id.clone(),
        provider: provider.into(),
        provider_key: cmd.idempotency_key.clone(),
        correlation_id: owner.into(),
        lease_owner: owner.into(),
        lease_ttl_ms,
    }
}
