//! Card facts of the reconciler: the card transactions and card events the
//! card worker published, and the card postings core banking booked against
//! them. They live in their own tables, beside the payout facts, because a
//! card posting carries what a payout posting has no column for (the card,
//! a fee code) and a card fact is neither an outcome nor a provider event.
//! Subjects are chosen by the reconciler (one per card transaction event or
//! card event); here they are opaque ids like any other.

use super::{protocol, Cell, HashMap, ReconStore, SubjectFacts};
use crate::StoreError;
use sqlx::any::AnyRow;
use sqlx::Row;
use switchyard_canonical::card_event::CardEventKind;
use switchyard_canonical::card_transaction::CardTransactionKind;
use switchyard_canonical::PostingKind;

pub(super) const DDL: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS recon_card_facts (
        scope TEXT NOT NULL,
        subject_id TEXT NOT NULL,
        fact_id TEXT NOT NULL,
        card_id TEXT NOT NULL,
        processor TEXT NOT NULL,
        source TEXT NOT NULL,
        kind TEXT NOT NULL,
        approved BIGINT NOT NULL,
        amount_minor BIGINT,
        currency TEXT,
        occurred_at_ms BIGINT NOT NULL,
        published_at_ms BIGINT NOT NULL,
        PRIMARY KEY (scope, subject_id, fact_id)
    )",
    "CREATE TABLE IF NOT EXISTS recon_card_postings (
        scope TEXT NOT NULL,
        subject_id TEXT NOT NULL,
        posting_id TEXT NOT NULL,
        card_id TEXT NOT NULL,
        fee TEXT,
        kind TEXT NOT NULL,
        amount_minor BIGINT NOT NULL,
        currency TEXT NOT NULL,
        posted_at_ms BIGINT NOT NULL,
        PRIMARY KEY (scope, subject_id, posting_id)
    )",
];

pub(super) const TABLES: [&str; 2] = ["recon_card_facts", "recon_card_postings"];

/// Which card fact: a transaction event (`cards.transactions.v1`) or a card
/// event (`cards.events.v1`), with its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardFactKind {
    Transaction(CardTransactionKind),
    Event(CardEventKind),
}

impl CardFactKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transaction(k) => k.as_str(),
            Self::Event(k) => k.as_str(),
        }
    }

    fn source(self) -> &'static str {
        match self {
            Self::Transaction(_) => "transaction",
            Self::Event(_) => "event",
        }
    }

    fn parse(source: &str, kind: &str) -> Option<Self> {
        match source {
            "transaction" => CardTransactionKind::parse(kind).map(Self::Transaction),
            "event" => CardEventKind::parse(kind).map(Self::Event),
            _ => None,
        }
    }
}

/// A card transaction event or card event as the reconciler keeps it; a
/// re-published one carries the same id and is stored once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardFact {
    pub subject_id: String,
    /// `transaction_event_id` of a transaction, `event_id` of a card event.
    pub fact_id: String,
    pub card_id: String,
    pub processor: String,
    pub kind: CardFactKind,
    /// Card events are always "approved"; a declined transaction books nothing.
    pub approved: bool,
    /// Transactions: positive minor units. Card events: the provisional
    /// credit, signed (negative when reversed); none for other events.
    pub amount_minor: Option<i64>,
    pub currency: Option<String>,
    pub occurred_at_ms: i64,
    /// Our clock when the card worker published it: core banking could book
    /// it from then on, so windows start here.
    pub published_at_ms: i64,
}

/// A ledger posting that names a card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardPostingFact {
    pub posting_id: String,
    pub subject_id: String,
    pub card_id: String,
    /// Core banking's fee code when the posting is a fee charged for the
    /// subject rather than its booking.
    pub fee: Option<String>,
    /// `Payout` debits the cardholder, `Reversal` credits.
    pub kind: PostingKind,
    pub amount_minor: i64,
    pub currency: String,
    pub posted_at_ms: i64,
}

const FACT_COLUMNS: &str =
    "subject_id, fact_id, card_id, processor, source, kind, approved, amount_minor, currency, occurred_at_ms, published_at_ms";
const POSTING_COLUMNS: &str = "subject_id, posting_id, card_id, fee, kind, amount_minor, currency, posted_at_ms";

impl ReconStore {
    pub(super) async fn write_card_facts(&self, conn: &mut sqlx::AnyConnection, cards: &[CardFact], postings: &[CardPostingFact]) -> Result<(), StoreError> {
        use Cell::{Int, OptInt, Text};
        // One row per key and statement (an upsert may not touch a row twice).
        let mut facts: HashMap<(&str, &str), &CardFact> = HashMap::new();
        for f in cards {
            facts.entry((f.subject_id.as_str(), f.fact_id.as_str())).or_insert(f);
        }
        let rows: Vec<Vec<Cell<'_>>> = facts
            .into_values()
            .map(|f: &CardFact| {
                vec![
                    Text(Some(&f.subject_id)),
                    Text(Some(&f.fact_id)),
                    Text(Some(&f.card_id)),
                    Text(Some(&f.processor)),
                    Text(Some(f.kind.source())),
                    Text(Some(f.kind.as_str())),
                    Int(i64::from(f.approved)),
                    OptInt(f.amount_minor),
                    Text(f.currency.as_deref()),
                    Int(f.occurred_at_ms),
                    Int(f.published_at_ms),
                ]
            })
            .collect();
        let columns = [
            ("subject_id", false),
            ("fact_id", false),
            ("card_id", false),
            ("processor", false),
            ("source", false),
            ("kind", false),
            ("approved", true),
            ("amount_minor", true),
            ("currency", false),
            ("occurred_at_ms", true),
            ("published_at_ms", true),
        ];
        self.insert_rows(conn, "recon_card_facts", &columns, rows, "ON CONFLICT (scope, subject_id, fact_id) DO NOTHING").await?;

        let mut unique: HashMap<(&str, &str), &CardPostingFact> = HashMap::new();
        for p in postings {
            unique.entry((p.subject_id.as_str(), p.posting_id.as_str())).or_insert(p);
        }
        let rows: Vec<Vec<Cell<'_>>> = unique
            .into_values()
            .map(|p: &CardPostingFact| {
                vec![
                    Text(Some(&p.subject_id)),
                    Text(Some(&p.posting_id)),
                    Text(Some(&p.card_id)),
                    Text(p.fee.as_deref()),
                    Text(Some(p.kind.as_str())),
                    Int(p.amount_minor),
                    Text(Some(&p.currency)),
                    Int(p.posted_at_ms),
                ]
            })
            .collect();
        let columns = [
            ("subject_id", false),
            ("posting_id", false),
            ("card_id", false),
            ("fee", false),
            ("kind", false),
            ("amount_minor", true),
            ("currency", false),
            ("posted_at_ms", true),
        ];
        self.insert_rows(conn, "recon_card_postings", &columns, rows, "ON CONFLICT (scope, subject_id, posting_id) DO NOTHING").await
    }

    /// Adds the card facts and card postings of `ids` to `facts` (indexed by `index`).
    pub(super) async fn load_cards(
        &self,
        conn: &mut sqlx::AnyConnection,
        ids: &[&str],
        index: &HashMap<&str, usize>,
        facts: &mut [SubjectFacts],
    ) -> Result<(), StoreError> {
        let slot = |row: &AnyRow| -> Result<usize, StoreError> {
            let subject: String = row.try_get("subject_id")?;
            index.get(subject.as_str()).copied().ok_or_else(|| protocol(format!("unasked subject {subject}")))
        };
        for row in self.select_in(&mut *conn, FACT_COLUMNS, "recon_card_facts", ids).await? {
            facts[slot(&row)?].cards.push(card_fact_from_row(&row)?);
        }
        for row in self.select_in(&mut *conn, POSTING_COLUMNS, "recon_card_postings", ids).await? {
            facts[slot(&row)?].card_postings.push(card_posting_from_row(&row)?);
        }
        for f in facts.iter_mut() {
            f.cards.sort_by(|a, b| (a.published_at_ms, &a.fact_id).cmp(&(b.published_at_ms, &b.fact_id)));
            f.card_postings.sort_by(|a, b| (a.posted_at_ms, &a.posting_id).cmp(&(b.posted_at_ms, &b.posting_id)));
        }
        Ok(())
    }
}

fn card_fact_from_row(r: &AnyRow) -> Result<CardFact, StoreError> {
    let source: String = r.try_get("source")?;
    let kind: String = r.try_get("kind")?;
    Ok(CardFact {
        subject_id: r.try_get("subject_id")?,
        fact_id: r.try_get("fact_id")?,
        card_id: r.try_get("card_id")?,
        processor: r.try_get("processor")?,
        kind: CardFactKind::parse(&source, &kind).ok_or_else(|| protocol(format!("stored card fact {source} {kind:?}")))?,
        approved: r.try_get::<i64, _>("approved")? != 0,
        amount_minor: r.try_get("amount_minor")?,
        currency: r.try_get("currency")?,
        occurred_at_ms: r.try_get("occurred_at_ms")?,
        published_at_ms: r.try_get("published_at_ms")?,
    })
}

fn card_posting_from_row(r: &AnyRow) -> Result<CardPostingFact, StoreError> {
    let kind: String = r.try_get("kind")?;
    Ok(CardPostingFact {
        posting_id: r.try_get("posting_id")?,
        subject_id: r.try_get("subject_id")?,
        card_id: r.try_get("card_id")?,
        fee: r.try_get("fee")?,
        kind: PostingKind::parse(&kind).ok_or_else(|| protocol(format!("stored posting kind {kind:?}")))?,
        amount_minor: r.try_get("amount_minor")?,
        currency: r.try_get("currency")?,
        posted_at_ms: r.try_get("posted_at_ms")?,
    })
}

