//! The money oracle: one ledger of every money movement, shared by as many
//! payout simulators as a test wires to it.
//!
//! Why it exists: counting executions per idempotency key per simulator is
//! exactly the assumption that hid double payouts. A payout retried under a
//! new key, after the vendor forgot the old one, or failed over to a second
//! vendor moves money twice while every per-simulator, per-key count stays
//! at one. The oracle groups movements by *our* payout id (what the adapter
//! put on the wire), across vendors, so a test can assert "paid once".

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::ExecutedPayout;

/// Movements whose request carried no payout id are grouped under this key.
pub const UNKNOWN_PAYOUT: &str = "<unknown>";

/// A shared, append-only record of executed money movements. Cloning shares
/// the record: pass one clone to each simulator's config, keep one to assert.
#[derive(Clone, Default)]
pub struct MoneyOracle {
    movements: Arc<Mutex<Vec<ExecutedPayout>>>,
}

impl std::fmt::Debug for MoneyOracle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MoneyOracle").field("movements", &self.lock().len()).finish()
    }
}

impl MoneyOracle {
    /// An empty oracle.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<ExecutedPayout>> {
        // Appends cannot leave the vector half-written; keep serving after a
        // panic elsewhere rather than poisoning every later assertion.
        self.movements.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records one movement. Simulators call this while holding their own
    /// lock, so the movement appears together with its idempotency record.
    pub(crate) fn record(&self, movement: ExecutedPayout) {
        self.lock().push(movement);
    }

    /// Every movement, in the order the simulators executed them.
    pub fn movements(&self) -> Vec<ExecutedPayout> {
        self.lock().clone()
    }

    /// Movements grouped by payout id; those without one are under
    /// [`UNKNOWN_PAYOUT`]. A payout paid once has exactly one entry.
    pub fn per_payout(&self) -> BTreeMap<String, Vec<ExecutedPayout>> {
        let mut grouped: BTreeMap<String, Vec<ExecutedPayout>> = BTreeMap::new();
        for m in self.lock().iter() {
            let key = m.payout_id.clone().unwrap_or_else(|| UNKNOWN_PAYOUT.to_owned());
            grouped.entry(key).or_default().push(m.clone());
        }
        grouped
    }

    /// Payout ids with more than one movement: the double payouts.
    pub fn paid_more_than_once(&self) -> BTreeMap<String, Vec<ExecutedPayout>> {
        let mut grouped = self.per_payout();
        grouped.retain(|id, movements| id != UNKNOWN_PAYOUT && movements.len() > 1);
        grouped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn movement(vendor: &str, payout_id: Option<&str>) -> ExecutedPayout {
        ExecutedPayout { vendor: vendor.to_owned(), payout_id: payout_id.map(str::to_owned), ..ExecutedPayout::default() }
    }

    #[test]
    fn groups_by_payout_id_across_clones() {
        let oracle = MoneyOracle::new();
        let (a, b) = (oracle.clone(), oracle.clone());
        a.record(movement("stripe", Some("p-1")));
        b.record(movement("adyen", Some("p-1")));
        b.record(movement("adyen", Some("p-2")));
        a.record(movement("stripe", None));
        let grouped = oracle.per_payout();
        assert_eq!(grouped["p-1"].len(), 2);
        assert_eq!(grouped["p-2"].len(), 1);
        assert_eq!(grouped[UNKNOWN_PAYOUT].len(), 1);
        assert_eq!(oracle.paid_more_than_once().keys().collect::<Vec<_>>(), vec!["p-1"]);
        assert_eq!(oracle.movements().len(), 4);
    }
}
