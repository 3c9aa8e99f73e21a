//! Card postings against what the card worker published: each card
//! transaction event (`cards.transactions.v1`) and each card event
//! (`cards.events.v1`) is a subject of its own, and the ledger postings
//! that name it are judged with it. Pure, like [`crate::rules`].
//!
//! What the ledger must book is the canonical model's word: an approved
//! clearing or return reversal is a debit, an approved return a credit
//! ([`CardTransactionKind::ledger_debits`]); authorizations are holds, not
//! bookings; a `PROVISIONAL_CREDIT` event is a credit of its amount (a debit
//! when it is reversed). Other card events book nothing themselves but may
//! carry fees. Fees are never required (the fee schedule is core banking's),
//! only at most one per fee code, and never for a fact switchyard did not
//! publish.
//!
//! The classes are the payout ones, because the drift is the same:
//! - `unexpected_posting`: booked with no card transaction or card event
//!   behind it after the default window, or booked for one that moves no
//!   money (a declined authorization, a hold).
//! - `duplicate_posting`: one transaction event (or one fee code) booked
//!   more often than reversed, beyond once.
//! - `amount_mismatch`: amount, currency or direction differ from the fact.
//! - `missing_posting`: a clearing, return or provisional credit not booked
//!   within the processor's `settlement_window` (or the default window).

use crate::rules::{human, Judge, Policy};
use std::collections::BTreeMap;
use switchyard_canonical::card_event::CardEventKind;
use switchyard_canonical::{DiscrepancyClass, LedgerPosting, PostingKind};
use switchyard_store::recon::{CardFact, CardFactKind, CardPostingFact, SubjectFacts};

/// The domain card discrepancies are reported under.
pub const DOMAIN: &str = "cards";

/// Card subjects share the store with payout ids; the prefix keeps them
/// apart (a payout id starting with `card:` would be judged as a card).
const PREFIX: &str = "card:";

/// The subject of one card transaction event on one card.
pub fn transaction_subject(card_id: &str, transaction_event_id: &str) -> String {
    format!("{PREFIX}{card_id}:txn:{transaction_event_id}")
}

/// The subject of one card event on one card.
pub fn event_subject(card_id: &str, event_id: &str) -> String {
    format!("{PREFIX}{card_id}:event:{event_id}")
}

/// A card posting that names neither a transaction nor an event: it can
/// never match, so it stands alone and is reported as unexpected.
pub fn unreferenced_subject(card_id: &str, posting_id: &str) -> String {
    format!("{PREFIX}{card_id}:posting:{posting_id}")
}

pub fn is_card_subject(subject_id: &str) -> bool {
    subject_id.starts_with(PREFIX)
}

/// The domain a subject's discrepancies are reported under.
pub fn domain_of<'a>(subject_id: &str, policy: &'a Policy) -> &'a str {
    if is_card_subject(subject_id) {
        DOMAIN
    } else {
        &policy.domain
    }
}

/// The subject a card posting is filed under, or `None` for a payout posting.
/// The card is `card_id`; a posting that names a card transaction or event
/// but forgot `card_id` is read with its key field (`payout_id`), which core
/// banking fills with the card id.
pub fn posting_subject(p: &LedgerPosting) -> Option<(String, String)> {
    let referenced = p.card_transaction_id.is_some() || p.card_event_id.is_some();
    let card = p.card_id.clone().or_else(|| referenced.then(|| p.payout_id.clone()))?;
    let subject = match (&p.card_transaction_id, &p.card_event_id) {
        (Some(t), _) => transaction_subject(&card, t),
        (None, Some(e)) => event_subject(&card, e),
        (None, None) => unreferenced_subject(&card, &p.posting_id),
    };
    Some((subject, card))
}

fn direction(kind: PostingKind) -> &'static str {
    match kind {
        PostingKind::Payout => "debit",
        PostingKind::Reversal => "credit",
    }
}

/// Debits minus credits.
fn net(postings: &[&CardPostingFact]) -> i64 {
    postings.iter().map(|p| if p.kind == PostingKind::Payout { 1 } else { -1 }).sum()
}

fn ids(postings: &[&CardPostingFact]) -> String {
    postings.iter().map(|p| p.posting_id.as_str()).collect::<Vec<_>>().join(", ")
}

/// What the subject is, for people reading a discrepancy.
fn describe(subject_id: &str) -> String {
    let rest = subject_id.strip_prefix(PREFIX).unwrap_or(subject_id);
    for (tag, what) in [(":txn:", "card transaction"), (":event:", "card event"), (":posting:", "reference in posting")] {
        if let Some((card, id)) = rest.split_once(tag) {
            return format!("{what} {id} of card {card}");
        }
    }
    subject_id.to_owned()
}

/// What the fact asks the ledger to book: (debit?, amount, currency).
fn expected_booking(fact: &CardFact) -> Option<(bool, i64, String)> {
    let currency = fact.currency.clone().unwrap_or_default();
    match fact.kind {
        CardFactKind::Transaction(k) if fact.approved => k.ledger_debits().map(|debit| (debit, fact.amount_minor.unwrap_or(0), currency)),
        CardFactKind::Transaction(_) => None,
        CardFactKind::Event(CardEventKind::ProvisionalCredit) => {
            fact.amount_minor.filter(|a| *a != 0).map(|a| (a < 0, a.saturating_abs(), currency))
        }
        CardFactKind::Event(_) => None,
    }
}

pub(crate) fn judge_card(j: &mut Judge<'_>, facts: &SubjectFacts) {
    let as_of = j.as_of;
    let postings: Vec<&CardPostingFact> = facts.card_postings.iter().filter(|p| p.posted_at_ms <= as_of).collect();
    // One fact per subject (its id is part of the subject); a republish is
    // the same row, so the first known is the fact.
    let Some(fact) = facts.cards.iter().filter(|c| c.published_at_ms <= as_of).min_by_key(|c| c.published_at_ms) else {
        judge_orphans(j, &facts.subject_id, &postings);
        return;
    };
    let providers = vec![fact.processor.clone()];
    let window = j.policy.window_ms(Some(fact.processor.as_str()));
    let (fees, bookings): (Vec<&CardPostingFact>, Vec<&CardPostingFact>) = postings.iter().copied().partition(|p| p.fee.is_some());
    for (code, charged) in by_fee(&fees) {
        if net(&charged) > 1 {
            j.open(
                DiscrepancyClass::DuplicatePosting,
                providers.clone(),
                format!("one {code} fee for {}", describe(&facts.subject_id)),
                format!("net {} {code} fee postings: {}", net(&charged), ids(&charged)),
            );
        }
    }
    let booked = net(&bookings);
    let last_posted = bookings.iter().map(|p| p.posted_at_ms).max().unwrap_or(fact.published_at_ms);
    match expected_booking(fact) {
        Some((debit, amount, currency)) => {
            let want = if debit { PostingKind::Payout } else { PostingKind::Reversal };
            let expected = format!("{} {amount} {currency}", direction(want));
            for p in &bookings {
                if p.amount_minor != amount || p.currency != currency {
                    j.open(
                        DiscrepancyClass::AmountMismatch,
                        providers.clone(),
                        expected.clone(),
                        format!("{} {} {} (posting {})", direction(p.kind), p.amount_minor, p.currency, p.posting_id),
                    );
                }
            }
            // Postings the expected way minus corrections the other way.
            let net_booked = if debit { booked } else { -booked };
            if net_booked < 0 {
                j.open(
                    DiscrepancyClass::AmountMismatch,
                    providers.clone(),
                    expected.clone(),
                    format!("booked the other way: {}", ids(&bookings)),
                );
            }
            if net_booked > 1 {
                j.open(
                    DiscrepancyClass::DuplicatePosting,
                    providers.clone(),
                    format!("one booking of {}", describe(&facts.subject_id)),
                    format!("booked {net_booked} times net: {}", ids(&bookings)),
                );
            }
            if net_booked < 1 {
                j.open_after(
                    fact.published_at_ms.saturating_add(window),
                    DiscrepancyClass::MissingPosting,
                    providers.clone(),
                    format!("{expected} within {} of {} ms ({} {})", human(window), fact.published_at_ms, fact.kind.as_str(), fact.fact_id),
                    format!("net {net_booked} booking(s) ({} posting(s))", bookings.len()),
                );
            }
        }
        // Nothing to book (declined, a hold, a card event without money):
        // a booking is drift unless reversed within the window.
        None if booked != 0 => {
            let approved = if fact.approved { "" } else { " declined" };
            j.open_after(
                last_posted.saturating_add(window),
                DiscrepancyClass::UnexpectedPosting,
                providers.clone(),
                format!("no booking for{approved} {} {}", fact.kind.as_str(), fact.fact_id),
                format!("net {booked} booking(s): {}", ids(&bookings)),
            );
        }
        None => {}
    }
}

/// Card postings whose card transaction or card event was never published
/// (or not yet: the card worker's topic may lag, hence the default window).
fn judge_orphans(j: &mut Judge<'_>, subject_id: &str, postings: &[&CardPostingFact]) {
    let (fees, bookings): (Vec<&CardPostingFact>, Vec<&CardPostingFact>) = postings.iter().copied().partition(|p| p.fee.is_some());
    let mut groups: Vec<(String, Vec<&CardPostingFact>)> = by_fee(&fees).into_iter().map(|(c, p)| (format!("{c} fee"), p)).collect();
    groups.push(("booking".to_owned(), bookings));
    let standing: Vec<&(String, Vec<&CardPostingFact>)> = groups.iter().filter(|(_, p)| net(p) != 0).collect();
    if standing.is_empty() {
        return;
    }
    let all: Vec<&CardPostingFact> = standing.iter().flat_map(|(_, p)| p.iter().copied()).collect();
    let last = all.iter().map(|p| p.posted_at_ms).max().unwrap_or(0);
    j.open_after(
        last.saturating_add(j.policy.default_window_ms),
        DiscrepancyClass::UnexpectedPosting,
        Vec::new(),
        format!("the {} behind every card posting", describe(subject_id)),
        format!("nothing published for posting(s) {}", ids(&all)),
    );
    for (what, charged) in standing {
        if net(charged).abs() > 1 {
            j.open(
                DiscrepancyClass::DuplicatePosting,
                Vec::new(),
                format!("one {what} for {}", describe(subject_id)),
                format!("net {} postings: {}", net(charged), ids(charged)),
            );
        }
    }
}

fn by_fee<'a>(fees: &[&'a CardPostingFact]) -> BTreeMap<String, Vec<&'a CardPostingFact>> {
    let mut groups: BTreeMap<String, Vec<&CardPostingFact>> = BTreeMap::new();
    for p in fees {
        groups.entry(p.fee.clone().unwrap_or_default()).or_default().push(p);
    }
    groups
}

#[cfg(test)]
#[path = "card_rules_tests.rs"]
mod tests;
