//! Finding the card a processor's dispute callback is about. A dispute
//! (Lithic `dispute.updated`, Marqeta `chargebacktransitions`) names the
//! processor's dispute token, not the card; the card row keeps the disputes
//! it opened (`disputes`, JSON: our dispute id, the processor's token, ...),
//! so the card is the one at that processor whose disputes hold the token.
//!
//! The text match is only a prefilter that works on PostgreSQL and SQLite
//! alike (`_` in a token matches any character there); each candidate's
//! disputes are parsed and compared exactly.

use crate::cards::{card_from_row, ByReference, CardStore, CARD_COLUMNS};
use crate::StoreError;

impl CardStore {
    /// The card holding the processor's dispute token `reference`.
    pub async fn find_by_dispute(&self, processor: &str, reference: &str) -> Result<ByReference, StoreError> {
        let pattern = format!("%\"reference\":{}%", serde_json::Value::from(reference));
        let rows = sqlx::query(&format!("SELECT {CARD_COLUMNS} FROM cards WHERE processor = $1 AND disputes LIKE $2"))
            .bind(processor)
            .bind(pattern)
            .fetch_all(&self.pool)
            .await?;
        let mut found = Vec::new();
        for row in &rows {
            let card = card_from_row(row)?;
            if holds(&card.disputes, reference) {
                found.push(card);
            }
        }
        Ok(match found.len() {
            0 => ByReference::None,
            1 => ByReference::One(found.remove(0)),
            _ => ByReference::Ambiguous,
        })
    }
}

/// Whether a card's `disputes` JSON lists the processor's token `reference`.
/// Unreadable JSON holds nothing here; the worker reports it when it reads the card.
fn holds(disputes: &str, reference: &str) -> bool {
    serde_json::from_str::<Vec<serde_json::Value>>(disputes)
        .map(|all| all.iter().any(|d| d.get("reference").and_then(|r| r.as_str()) == Some(reference)))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::holds;

    #[test]
    fn only_an_exact_token_is_held() {
        let disputes = r#"[{"dispute_id":"dsp-1","reference":"cb_1","state":"OPENED"}]"#;
        assert!(holds(disputes, "cb_1"));
        assert!(!holds(disputes, "cbx1"), "a LIKE wildcard match is not a match");
        assert!(!holds(disputes, "cb"));
        assert!(!holds("not json", "cb_1"));
    }
}
