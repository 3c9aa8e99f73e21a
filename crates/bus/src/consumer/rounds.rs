//! Retry rounds handled once, whoever re-reads them.
//!
//! A retry whose partition's commit is held back by a slow head (a handler
//! still calling a vendor) is handled and finished, but not committed; a
//! rebalance then hands it to the next owner, which handles it again and
//! sends another copy round the retry topic. Each rebalance multiplies the
//! copies (the hour soak: one payout 481 times on the retry topic). A
//! [`RoundLedger`] remembers, durably, which retry records reached a final
//! place; a re-read one is finished without being handled again. A crash
//! between landing and recording costs one extra round, no more.

use super::{Handler, Inbound, Shared};
use crate::headers::{header_text, HeaderName};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// One retry record, as the ledger knows it. The due time is part of it so
/// that a topic deleted and created again (offsets from 0) cannot match
/// records of its former life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundPosition {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub not_before_ms: i64,
}

/// Durable memory of handled retry records (the store implements it).
/// Errors are text: the runtime only logs them and handles the record, as
/// it would without a ledger.
pub trait RoundLedger: Send + Sync + 'static {
    fn handled(&self, position: &RoundPosition) -> LedgerFuture<'_, bool>;
    fn record(&self, position: &RoundPosition) -> LedgerFuture<'_, ()>;
}

/// What a [`RoundLedger`] call returns (boxed: the runtime holds the ledger
/// as a trait object).
pub type LedgerFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, String>> + Send + 'a>>;

impl<H: Handler> Shared<H> {
    /// The handler's run for one message, skipped for a retry record the
    /// ledger knows, recorded once it reached a final place.
    pub(super) async fn run_handler(&self, message: &Arc<Inbound>, epoch: u64, not_before: Option<i64>) -> bool {
        let round = self.round_position(message);
        if let (Some(ledger), Some(round)) = (&self.rounds, &round) {
            match ledger.handled(round).await {
                Ok(true) => {
                    self.stats.rounds_skipped.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(key = %message.key_text(), offset = message.offset, "retry round already handled; not again");
                    return true;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "retry ledger unreadable; handling the round"),
            }
        }
        let landed = self.run_handler_once(message, epoch, not_before).await;
        if let (true, Some(ledger), Some(round)) = (landed, &self.rounds, &round) {
            if let Err(e) = ledger.record(round).await {
                tracing::warn!(error = %e, "retry round handled but not recorded; a re-read handles it again");
            }
        }
        landed
    }

    /// The ledger's name for a record of the retry topic; none for others.
    fn round_position(&self, message: &Inbound) -> Option<RoundPosition> {
        if self.topics.retry.as_deref() != Some(message.topic.as_str()) {
            return None;
        }
        let not_before_ms = header_text(&message.headers, HeaderName::RETRY_NOT_BEFORE).and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
        Some(RoundPosition { topic: message.topic.clone(), partition: message.partition, offset: message.offset, not_before_ms })
    }

}
