//! The card oracle: every card the card-processor simulators issued, shared
//! across processors, grouped by *our* card id (what the adapter put on the
//! wire: Lithic `memo`, Marqeta `metadata`/token). The money oracle's twin:
//! a card issued twice, at one processor under two keys or at both after a
//! failover, shows as two entries for one card id, however each simulator
//! counts its own keys.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Cards whose request carried no card id of ours are grouped under this key.
pub const UNKNOWN_CARD: &str = "<unknown>";

/// One card a processor simulator actually created.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct IssuedCard {
    pub processor: String,
    /// Our card id as the request carried it.
    pub card_id: Option<String>,
    /// The processor's token for the new card.
    pub token: String,
    pub idempotency_key: Option<String>,
    /// VIRTUAL or PHYSICAL, as the processor names it.
    pub form: String,
    pub last_four: String,
}

/// A shared, append-only record of issued cards; clones share it.
#[derive(Clone, Default)]
pub struct CardOracle {
    cards: Arc<Mutex<Vec<IssuedCard>>>,
}

impl std::fmt::Debug for CardOracle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardOracle").field("cards", &self.lock().len()).finish()
    }
}

impl CardOracle {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<IssuedCard>> {
        self.cards.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records one issued card; simulators call it under their own lock,
    /// together with the card's idempotency record.
    pub fn record(&self, card: IssuedCard) {
        self.lock().push(card);
    }

    pub fn cards(&self) -> Vec<IssuedCard> {
        self.lock().clone()
    }

    /// Cards grouped by our card id; a card issued once has one entry.
    pub fn per_card(&self) -> BTreeMap<String, Vec<IssuedCard>> {
        let mut grouped: BTreeMap<String, Vec<IssuedCard>> = BTreeMap::new();
        for c in self.lock().iter() {
            grouped.entry(c.card_id.clone().unwrap_or_else(|| UNKNOWN_CARD.to_owned())).or_default().push(c.clone());
        }
        grouped
    }

    /// Card ids issued more than once, across processors.
    pub fn issued_more_than_once(&self) -> BTreeMap<String, Vec<IssuedCard>> {
        let mut grouped = self.per_card();
        grouped.retain(|id, cards| id != UNKNOWN_CARD && cards.len() > 1);
        grouped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_card_id_issued_at_two_processors_is_counted_twice() {
        let oracle = CardOracle::new();
        let card = |processor: &str, id: Option<&str>| IssuedCard { processor: processor.into(), card_id: id.map(Into::into), ..IssuedCard::default() };
        oracle.record(card("lithic", Some("card-1")));
        oracle.record(card("marqeta", Some("card-1")));
        oracle.record(card("lithic", Some("card-2")));
        oracle.record(card("lithic", None));
        oracle.record(card("lithic", None));
        let twice = oracle.issued_more_than_once();
        assert_eq!(twice.keys().collect::<Vec<_>>(), vec!["card-1"]);
        assert_eq!(oracle.per_card()[UNKNOWN_CARD].len(), 2);
    }
}
