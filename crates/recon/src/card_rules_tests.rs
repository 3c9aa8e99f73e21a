//! Card postings against card transactions and card events, rule by rule.

use super::*;
use crate::rules::{judge, judge_inline, Verdict};
use std::collections::HashMap;
use switchyard_canonical::card_transaction::CardTransactionKind;
use DiscrepancyClass::*;

const H: i64 = 3_600_000;
const CARD: &str = "card-1";
const TXN: &str = "lithic:evt-1";

fn policy() -> Policy {
    Policy {
        domain: "payouts".into(),
        settlement_windows_ms: HashMap::from([("lithic".to_owned(), 48 * H)]),
        default_window_ms: 24 * H,
        pending_deadline_ms: H,
        settle_retry_ms: 60_000,
    }
}

fn txn(kind: CardTransactionKind, approved: bool) -> CardFact {
    CardFact {
        subject_id: transaction_subject(CARD, TXN),
        fact_id: TXN.into(),
        card_id: CARD.into(),
        processor: "lithic".into(),
        kind: CardFactKind::Transaction(kind),
        approved,
        amount_minor: Some(1250),
        currency: Some("EUR".into()),
        occurred_at_ms: 900,
        published_at_ms: 1000,
    }
}

fn credit_event(amount: i64) -> CardFact {
    CardFact {
        subject_id: event_subject(CARD, "card-1:7"),
        fact_id: "card-1:7".into(),
        kind: CardFactKind::Event(CardEventKind::ProvisionalCredit),
        amount_minor: Some(amount),
        ..txn(CardTransactionKind::Clearing, true)
    }
}

fn posting(id: &str, kind: PostingKind, amount: i64, currency: &str) -> CardPostingFact {
    CardPostingFact {
        posting_id: id.into(),
        subject_id: transaction_subject(CARD, TXN),
        card_id: CARD.into(),
        fee: None,
        kind,
        amount_minor: amount,
        currency: currency.into(),
        posted_at_ms: 2000,
    }
}

fn debit(id: &str) -> CardPostingFact {
    posting(id, PostingKind::Payout, 1250, "EUR")
}

fn fee(id: &str, code: &str) -> CardPostingFact {
    CardPostingFact { fee: Some(code.into()), amount_minor: 300, ..debit(id) }
}

fn facts(subject: String, cards: Vec<CardFact>, mut card_postings: Vec<CardPostingFact>) -> SubjectFacts {
    for p in &mut card_postings {
        p.subject_id = subject.clone();
    }
    SubjectFacts { subject_id: subject, cards, card_postings, ..SubjectFacts::default() }
}

fn of_txn(cards: Vec<CardFact>, postings: Vec<CardPostingFact>) -> SubjectFacts {
    facts(transaction_subject(CARD, TXN), cards, postings)
}

fn classes(v: &Verdict) -> Vec<DiscrepancyClass> {
    let mut c: Vec<_> = v.open.iter().map(|f| f.class).collect();
    c.sort();
    c
}

#[test]
fn a_clearing_booked_once_is_clean_and_needs_no_second_look() {
    let f = of_txn(vec![txn(CardTransactionKind::Clearing, true)], vec![debit("gl-1")]);
    assert_eq!(judge(&f, &policy(), 100 * H), Verdict::default());
    // A return is a credit, a return reversal a debit again.
    let ret = of_txn(vec![txn(CardTransactionKind::Return, true)], vec![posting("gl-1", PostingKind::Reversal, 1250, "EUR")]);
    assert_eq!(judge(&ret, &policy(), 100 * H), Verdict::default());
    let again = of_txn(vec![txn(CardTransactionKind::ReturnReversal, true)], vec![debit("gl-1")]);
    assert_eq!(judge(&again, &policy(), 100 * H), Verdict::default());
}

#[test]
fn a_cleared_transaction_never_booked_is_missing_after_the_processors_window() {
    let f = of_txn(vec![txn(CardTransactionKind::Clearing, true)], vec![]);
    let inside = judge(&f, &policy(), 1000 + 47 * H);
    assert!(inside.open.is_empty(), "no false drift inside lithic's 48h window");
    assert_eq!(inside.next_check_ms, Some(1000 + 48 * H));
    let v = judge(&f, &policy(), 1000 + 48 * H);
    assert_eq!(classes(&v), vec![MissingPosting]);
    assert_eq!(v.open[0].providers, vec!["lithic".to_owned()]);
    // Holds and declines are not bookings: nothing is missing.
    for (kind, approved) in [(CardTransactionKind::Authorization, true), (CardTransactionKind::Clearing, false)] {
        let v = judge(&of_txn(vec![txn(kind, approved)], vec![]), &policy(), 100 * H);
        assert_eq!(v, Verdict::default(), "{kind:?} approved={approved}");
    }
    // A booking later resolves it: the same rules find nothing.
    let booked = of_txn(vec![txn(CardTransactionKind::Clearing, true)], vec![debit("gl-1")]);
    assert!(judge(&booked, &policy(), 100 * H).open.is_empty());
}

#[test]
fn a_posting_without_its_card_transaction_is_unexpected_after_the_default_window() {
    let f = of_txn(vec![], vec![debit("gl-1")]);
    let early = judge(&f, &policy(), 2000 + 23 * H);
    assert!(early.open.is_empty(), "the card worker's topic may lag");
    assert_eq!(early.next_check_ms, Some(2000 + 24 * H));
    let v = judge(&f, &policy(), 2000 + 24 * H);
    assert_eq!(classes(&v), vec![UnexpectedPosting]);
    assert!(v.open[0].expected.contains("card transaction lithic:evt-1 of card card-1"), "{:?}", v.open[0]);
    // Judged inline, the absence is left to the timer.
    let inline = judge_inline(&f, &policy(), 100 * H);
    assert!(inline.open.is_empty());
    assert_eq!(inline.next_check_ms, Some(2000 + 24 * H));
    // A booking reversed by core banking itself is no drift.
    let reversed = of_txn(vec![], vec![debit("gl-1"), posting("gl-2", PostingKind::Reversal, 1250, "EUR")]);
    assert!(judge(&reversed, &policy(), 100 * H).open.is_empty());
}

#[test]
fn a_fee_posted_without_its_card_event_is_unexpected_and_twice_is_a_duplicate() {
    let subject = event_subject(CARD, "card-1:1");
    let orphan = facts(subject.clone(), vec![], vec![fee("gl-fee-1", "ISSUANCE")]);
    assert_eq!(classes(&judge(&orphan, &policy(), 2000 + 24 * H)), vec![UnexpectedPosting]);
    let issued = CardFact {
        subject_id: subject.clone(),
        fact_id: "card-1:1".into(),
        kind: CardFactKind::Event(CardEventKind::CardIssued),
        amount_minor: None,
        currency: None,
        ..txn(CardTransactionKind::Clearing, true)
    };
    let charged = facts(subject.clone(), vec![issued.clone()], vec![fee("gl-fee-1", "ISSUANCE")]);
    assert_eq!(judge(&charged, &policy(), 100 * H), Verdict::default(), "a fee for a published event");
    let twice = facts(subject.clone(), vec![issued.clone()], vec![fee("gl-fee-1", "ISSUANCE"), fee("gl-fee-2", "ISSUANCE")]);
    let v = judge(&twice, &policy(), 3000);
    assert_eq!(classes(&v), vec![DuplicatePosting]);
    assert!(v.open[0].actual.contains("gl-fee-1, gl-fee-2"), "{:?}", v.open[0]);
    // Two different fees on one event are two fees, not a duplicate.
    let two_fees = facts(subject, vec![issued], vec![fee("gl-fee-1", "ISSUANCE"), fee("gl-fee-2", "EXPRESS_SHIPPING")]);
    assert!(judge(&two_fees, &policy(), 3000).open.is_empty());
    // Twice without the event: both at once.
    let orphan_twice = of_txn(vec![], vec![debit("gl-1"), debit("gl-2")]);
    assert_eq!(classes(&judge(&orphan_twice, &policy(), 2000 + 24 * H)), vec![UnexpectedPosting, DuplicatePosting]);
    assert_eq!(classes(&judge(&orphan_twice, &policy(), 3000)), vec![DuplicatePosting], "the duplicate is shown by the facts");
}

#[test]
fn the_same_transaction_booked_twice_is_a_duplicate_but_its_fee_is_not() {
    let twice = of_txn(vec![txn(CardTransactionKind::Clearing, true)], vec![debit("gl-1"), debit("gl-2")]);
    let v = judge_inline(&twice, &policy(), 3000);
    assert_eq!(classes(&v), vec![DuplicatePosting], "decided as the posting is stored");
    // A correction pair plus a rebooking nets to one.
    let corrected = of_txn(
        vec![txn(CardTransactionKind::Clearing, true)],
        vec![debit("gl-1"), posting("gl-2", PostingKind::Reversal, 1250, "EUR"), debit("gl-3")],
    );
    assert!(judge(&corrected, &policy(), 100 * H).open.is_empty());
    // An ATM fee next to its withdrawal.
    let with_fee = of_txn(vec![txn(CardTransactionKind::Clearing, true)], vec![debit("gl-1"), fee("gl-2", "ATM")]);
    assert!(judge(&with_fee, &policy(), 100 * H).open.is_empty());
}

#[test]
fn amount_currency_and_direction_mismatches_are_immediate() {
    let amount = of_txn(vec![txn(CardTransactionKind::Clearing, true)], vec![posting("gl-1", PostingKind::Payout, 1205, "EUR")]);
    let v = judge(&amount, &policy(), 3000);
    assert_eq!(classes(&v), vec![AmountMismatch]);
    assert_eq!((v.open[0].expected.as_str(), v.open[0].actual.as_str()), ("debit 1250 EUR", "debit 1205 EUR (posting gl-1)"));
    let currency = of_txn(vec![txn(CardTransactionKind::Clearing, true)], vec![posting("gl-1", PostingKind::Payout, 1250, "USD")]);
    assert_eq!(classes(&judge(&currency, &policy(), 3000)), vec![AmountMismatch]);
    // A refund booked as a debit: wrong way now, and still missing its credit after the window.
    let wrong_way = of_txn(vec![txn(CardTransactionKind::Return, true)], vec![debit("gl-1")]);
    assert_eq!(classes(&judge(&wrong_way, &policy(), 3000)), vec![AmountMismatch]);
    assert_eq!(classes(&judge(&wrong_way, &policy(), 1000 + 48 * H)), vec![MissingPosting, AmountMismatch]);
}

#[test]
fn bookings_of_what_moves_no_money_are_unexpected() {
    let hold = of_txn(vec![txn(CardTransactionKind::Authorization, true)], vec![debit("gl-1")]);
    assert!(judge(&hold, &policy(), 3000).open.is_empty(), "core banking may still reverse it");
    let v = judge(&hold, &policy(), 2000 + 48 * H);
    assert_eq!(classes(&v), vec![UnexpectedPosting]);
    assert_eq!(v.open[0].expected, "no booking for AUTHORIZATION lithic:evt-1");
    let declined = of_txn(vec![txn(CardTransactionKind::Clearing, false)], vec![debit("gl-1")]);
    assert_eq!(judge(&declined, &policy(), 2000 + 48 * H).open[0].expected, "no booking for declined CLEARING lithic:evt-1");
}

#[test]
fn a_provisional_credit_is_booked_as_a_credit_of_its_amount() {
    let subject = event_subject(CARD, "card-1:7");
    let credit = |id: &str, amount| posting(id, PostingKind::Reversal, amount, "EUR");
    let booked = facts(subject.clone(), vec![credit_event(1250)], vec![credit("gl-1", 1250)]);
    assert_eq!(judge(&booked, &policy(), 100 * H), Verdict::default());
    let missing = facts(subject.clone(), vec![credit_event(1250)], vec![]);
    assert_eq!(classes(&judge(&missing, &policy(), 1000 + 48 * H)), vec![MissingPosting]);
    // Reversed (negative): core banking takes it back with a debit.
    let taken_back = facts(subject.clone(), vec![credit_event(-1250)], vec![debit("gl-2")]);
    assert_eq!(judge(&taken_back, &policy(), 100 * H), Verdict::default());
    let short = facts(subject, vec![credit_event(1250)], vec![credit("gl-1", 1000)]);
    assert_eq!(classes(&judge(&short, &policy(), 3000)), vec![AmountMismatch]);
}

#[test]
fn postings_are_filed_under_what_they_book_and_reported_under_cards() {
    let mut p = LedgerPosting {
        posting_id: "gl-1".into(),
        payout_id: CARD.into(),
        idempotency_key: None,
        correlation_id: None,
        kind: PostingKind::Payout,
        amount_minor: 1250,
        currency: "EUR".into(),
        posted_at_ms: 2000,
        card_id: None,
        card_transaction_id: None,
        card_event_id: None,
        card_fee: None,
    };
    assert_eq!(posting_subject(&p), None, "a payout posting");
    p.card_transaction_id = Some(TXN.into());
    assert_eq!(posting_subject(&p), Some((transaction_subject(CARD, TXN), CARD.to_owned())), "the key names the card");
    p.card_id = Some("card-2".into());
    assert_eq!(posting_subject(&p).map(|s| s.0), Some("card:card-2:txn:lithic:evt-1".to_owned()));
    p.card_transaction_id = None;
    p.card_event_id = Some("card-2:3".into());
    assert_eq!(posting_subject(&p).map(|s| s.0), Some(event_subject("card-2", "card-2:3")));
    p.card_event_id = None;
    assert_eq!(posting_subject(&p).map(|s| s.0), Some(unreferenced_subject("card-2", "gl-1")));
    assert_eq!(domain_of(&transaction_subject(CARD, TXN), &policy()), "cards");
    assert_eq!(domain_of("po-1", &policy()), "payouts");
    let f = of_txn(vec![txn(CardTransactionKind::Clearing, true)], vec![debit("gl-1"), debit("gl-2")]);
    let records = crate::engine::judge_now(&f, &policy(), 3000);
    assert_eq!(records[0].discrepancy_id, "cards:duplicate_posting:card:card-1:txn:lithic:evt-1");
    assert_eq!(records[0].domain, "cards");
}
