//! AML screening adapters. [`AmlProvider`] is the closed set of screening
//! vendors; both answer synchronously, so there is nothing to poll.
//!
//! Vendors report hits differently: ComplyAdvantage adjudicates
//! (`match_status`), OpenSanctions only scores. Each adapter maps to one
//! verdict in our vocabulary, with hits normalized to [`AmlMatch`].

pub mod comply_advantage;
pub mod open_sanctions;

use crate::{AdapterError, CallContext};
use switchyard_canonical::aml::{AmlCommand, AmlMatch, AmlStatus, ScreeningList};

/// The vendor's answer, already in canonical terms.
#[derive(Debug, Clone, PartialEq)]
pub struct AmlVerdict {
    /// Clear, potential match or confirmed match.
    pub status: AmlStatus,
    pub matches: Vec<AmlMatch>,
    /// The vendor's id for the screening; empty where the vendor keeps none.
    pub vendor_reference: String,
}

#[derive(Debug, Clone)]
pub enum AmlProvider {
    ComplyAdvantage(comply_advantage::ComplyAdvantageAdapter),
    OpenSanctions(open_sanctions::OpenSanctionsAdapter),
}

impl AmlProvider {
    pub fn name(&self) -> &str {
        match self {
            AmlProvider::ComplyAdvantage(a) => a.name(),
            AmlProvider::OpenSanctions(a) => a.name(),
        }
    }

    /// ComplyAdvantage takes our key as `client_ref`; OpenSanctions keeps
    /// nothing, so the key only identifies our attempt.
    pub fn provider_key(&self, idempotency_key: &str) -> String {
        match self {
            AmlProvider::ComplyAdvantage(_) | AmlProvider::OpenSanctions(_) => idempotency_key.to_owned(),
        }
    }

    pub async fn screen(&self, cmd: &AmlCommand, provider_key: &str, ctx: &CallContext) -> Result<AmlVerdict, AdapterError> {
        match self {
            AmlProvider::ComplyAdvantage(a) => a.screen(cmd, provider_key, ctx).await,
            AmlProvider::OpenSanctions(a) => a.screen(cmd, ctx).await,
        }
    }
}

/// The list that matters most when an entry is on several.
pub(crate) fn most_severe(lists: impl IntoIterator<Item = ScreeningList>) -> Option<ScreeningList> {
    let rank = |l: &ScreeningList| match l {
        ScreeningList::Sanctions => 0,
        ScreeningList::Pep => 1,
        ScreeningList::Watchlist => 2,
        ScreeningList::AdverseMedia => 3,
    };
    lists.into_iter().min_by_key(rank)
}
