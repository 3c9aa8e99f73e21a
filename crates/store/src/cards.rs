//! Cards: the card worker's state, with its own DDL.
//!
//! - `cards`: one row per card of ours: the processor that holds it, the
//!   processor's token, the last four digits and the lifecycle as JSON
//!   (`lifecycle`, the card worker's `CardLifecycle`). `version` counts the
//!   card's changes and every update compares and sets it, so two
//!   deliveries or two worker instances can never both move a card from the
//!   same version. A row is created `ORDERED` *before* the issuing call
//!   ([`CardStore::reserve`]), naming the command that issues it
//!   (`issue_key`): a second ISSUE of the same card id under another key is
//!   refused before it can reach any processor, so one card id is issued at
//!   most once across processors.
//! - `card_applied`: which command (idempotency key) moved a card, with its
//!   outcome, written in the transition's transaction. A delivery that finds
//!   its key there changes nothing and answers with the stored outcome: the
//!   card moved, only the claim's completion was lost (a crash in between).
//! - `card_events`: the events a transition must publish, written in the
//!   same transaction and marked sent once the broker acknowledged them. A
//!   crash before publishing leaves them unsent for the next delivery of
//!   any command of that card; consumers deduplicate by `event_id`.
//! - `card_callbacks`: which processor callbacks (provider, the processor's
//!   event id) were applied to a card, written in the transaction of the
//!   change they caused (or of the version bump when they changed nothing):
//!   a redelivered callback finds its id there and changes nothing
//!   ([`CardStore::commit_callback`]). Callbacks name a card by the
//!   processor's token: [`CardStore::find_by_reference`] (index
//!   `cards_by_reference`).

use crate::records::{Bind, Sql};
use crate::{Store, StoreError};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

const DDL: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS cards (
        card_id TEXT NOT NULL PRIMARY KEY,
        processor TEXT NOT NULL,
        processor_reference TEXT,
        last_four TEXT,
        state TEXT NOT NULL,
        lifecycle TEXT NOT NULL,
        version BIGINT NOT NULL,
        issue_key TEXT NOT NULL,
        disputes TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL,
        updated_at_ms BIGINT NOT NULL
    )",
    // Callbacks name a card by the processor's token.
    "CREATE INDEX IF NOT EXISTS cards_by_reference ON cards (processor, processor_reference)",
    "CREATE TABLE IF NOT EXISTS card_applied (
        card_id TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        version BIGINT NOT NULL,
        outcome TEXT NOT NULL,
        applied_at_ms BIGINT NOT NULL,
        PRIMARY KEY (card_id, idempotency_key)
    )",
    "CREATE TABLE IF NOT EXISTS card_events (
        event_id TEXT NOT NULL PRIMARY KEY,
        card_id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        payload TEXT NOT NULL,
        correlation_id TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL,
        sent_at_ms BIGINT
    )",
    "CREATE INDEX IF NOT EXISTS card_events_unsent ON card_events (card_id, sent_at_ms)",
    "CREATE TABLE IF NOT EXISTS card_callbacks (
        provider TEXT NOT NULL,
        event_id TEXT NOT NULL,
        card_id TEXT NOT NULL,
        version BIGINT NOT NULL,
        result TEXT NOT NULL,
        applied_at_ms BIGINT NOT NULL,
        PRIMARY KEY (provider, event_id)
    )",
];

/// A card as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardRow {
    pub card_id: String,
    /// The processor (catalog name) that holds the card.
    pub processor: String,
    /// The processor's token for the card; none until it is issued.
    pub processor_reference: Option<String>,
    pub last_four: Option<String>,
    /// The lifecycle state's name, for queries; the lifecycle JSON is authoritative.
    pub state: String,
    /// The card worker's lifecycle as JSON.
    pub lifecycle: String,
    pub version: i64,
    /// The idempotency key of the command that issued the card (ISSUE or REPLACE).
    pub issue_key: String,
    /// The card's disputes as JSON (our dispute id -> the processor's).
    pub disputes: String,
}

/// What [`CardStore::reserve`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserved {
    /// The row is ours now.
    Created,
    /// The card id is taken; by this very command if `issue_key` matches.
    Exists(CardRow),
}

/// The outcome a command left when it moved a card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub version: i64,
    pub outcome: String,
}

/// An event to publish, written with its transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardEventRow {
    /// `<card_id>:<version>`: the consumers' dedup key.
    pub event_id: String,
    pub card_id: String,
    /// Orders one card's events (the card's version at the change).
    pub seq: i64,
    /// The canonical event as JSON; encoded to Avro when published.
    pub payload: String,
    pub correlation_id: String,
}

/// Everything one command writes, atomically.
#[derive(Debug, Clone)]
pub struct CardWrite<'a> {
    /// The card the command named and the command's key: applied once.
    pub card_id: &'a str,
    pub idempotency_key: &'a str,
    /// The command's outcome as JSON.
    pub outcome: &'a str,
    /// Rows to write with the version each was read at: compare and set it
    /// (`Some`), or create the row (`None`).
    pub rows: Vec<(&'a CardRow, Option<i64>)>,
    pub events: Vec<CardEventRow>,
    /// `(action, detail)` for the audit log, actor `card-worker`.
    pub audit: Vec<(&'a str, String)>,
    pub correlation_id: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    Applied,
    /// This command already moved the card.
    Duplicate,
    /// A card is not at the version it was read at (or already exists): reload.
    Conflict,
}

/// A processor callback applied to a card, with what it did.
#[derive(Debug, Clone)]
pub struct CallbackWrite<'a> {
    /// The processor (catalog name) and its event id: applied once.
    pub provider: &'a str,
    pub event_id: &'a str,
    /// The card with the version it was read at (always compared and set,
    /// so a callback and a command never both move a card from one version).
    pub row: &'a CardRow,
    pub read_version: i64,
    /// `changed`, `unchanged`, `contradiction`: kept with the event id.
    pub result: &'a str,
    pub events: Vec<CardEventRow>,
    pub audit: Vec<(&'a str, String)>,
    pub correlation_id: &'a str,
}

/// What [`CardStore::find_by_reference`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ByReference {
    None,
    One(CardRow),
    /// Two cards of ours carry that token at that processor: a person decides.
    Ambiguous,
}

/// The card worker's tables on the shared pool.
#[derive(Clone)]
pub struct CardStore {
    pub(crate) pool: AnyPool,
}

pub(crate) const CARD_COLUMNS: &str = "card_id, processor, processor_reference, last_four, state, lifecycle, version, issue_key, disputes";

pub(crate) fn card_from_row(r: &AnyRow) -> Result<CardRow, sqlx::Error> {
    Ok(CardRow {
        card_id: r.try_get("card_id")?,
        processor: r.try_get("processor")?,
        processor_reference: r.try_get("processor_reference")?,
        last_four: r.try_get("last_four")?,
        state: r.try_get("state")?,
        lifecycle: r.try_get("lifecycle")?,
        version: r.try_get("version")?,
        issue_key: r.try_get("issue_key")?,
        disputes: r.try_get("disputes")?,
    })
}

fn insert_card<'a>(row: &'a CardRow, now: i64) -> Sql<'a> {
    let mut q = Sql::new(format!("INSERT INTO cards ({CARD_COLUMNS}, created_at_ms, updated_at_ms) VALUES "));
    q.tuple([
        Bind::Text(Some(&row.card_id)),
        Bind::Text(Some(&row.processor)),
        Bind::Text(row.processor_reference.as_deref()),
        Bind::Text(row.last_four.as_deref()),
        Bind::Text(Some(&row.state)),
        Bind::Text(Some(&row.lifecycle)),
        Bind::Int(row.version),
        Bind::Text(Some(&row.issue_key)),
        Bind::Text(Some(&row.disputes)),
        Bind::Int(now),
        Bind::Int(now),
    ]);
    q.push(" ON CONFLICT (card_id) DO NOTHING");
    q
}

/// The rows (compared-and-set or created), events and audit entries of one
/// change, inside the caller's transaction. `false`: a row was not at the
/// version it was read at (or already existed); the caller rolls back.
async fn write_effects(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    rows: &[(&CardRow, Option<i64>)],
    events: &[CardEventRow],
    audit: &[(&str, String)],
    subject: &str,
    correlation_id: &str,
    now: i64,
) -> Result<bool, StoreError> {
        for (row, expected) in rows {
            let moved = match expected {
                None => insert_card(row, now).query().execute(&mut **tx).await?.rows_affected(),
                Some(expected) => {
                    let mut q = Sql::new("UPDATE cards SET processor = ");
                    q.bind(Bind::Text(Some(&row.processor)))
                        .push(", processor_reference = ")
                        .bind(Bind::Text(row.processor_reference.as_deref()))
                        .push(", last_four = ")
                        .bind(Bind::Text(row.last_four.as_deref()))
                        .push(", state = ")
                        .bind(Bind::Text(Some(&row.state)))
                        .push(", lifecycle = ")
                        .bind(Bind::Text(Some(&row.lifecycle)))
                        .push(", version = ")
                        .bind(Bind::Int(row.version))
                        .push(", disputes = ")
                        .bind(Bind::Text(Some(&row.disputes)))
                        .push(", updated_at_ms = ")
                        .bind(Bind::Int(now))
                        .push(" WHERE card_id = ")
                        .bind(Bind::Text(Some(&row.card_id)))
                        .push(" AND version = ")
                        .bind(Bind::Int(*expected));
                    q.query().execute(&mut **tx).await?.rows_affected()
                }
            };
            if moved != 1 {
                return Ok(false);
            }
        }
        if !events.is_empty() {
            let mut q = Sql::new("INSERT INTO card_events (event_id, card_id, seq, payload, correlation_id, created_at_ms) VALUES ");
            for (i, e) in events.iter().enumerate() {
                if i > 0 {
                    q.push(", ");
                }
                q.tuple([
                    Bind::Text(Some(&e.event_id)),
                    Bind::Text(Some(&e.card_id)),
                    Bind::Int(e.seq),
                    Bind::Text(Some(&e.payload)),
                    Bind::Text(Some(&e.correlation_id)),
                    Bind::Int(now),
                ]);
            }
            q.query().execute(&mut **tx).await?;
        }
        if !audit.is_empty() {
            let mut q = Sql::new("INSERT INTO audit_log (at_ms, actor, action, subject_id, correlation_id, detail) VALUES ");
            for (i, (action, detail)) in audit.iter().enumerate() {
                if i > 0 {
                    q.push(", ");
                }
                q.tuple([
                    Bind::Int(now),
                    Bind::Text(Some("card-worker")),
                    Bind::Text(Some(action)),
                    Bind::Text(Some(subject)),
                    Bind::Text(Some(correlation_id)),
                    Bind::Text(Some(detail)),
                ]);
            }
            q.query().execute(&mut **tx).await?;
        }
    Ok(true)
}

impl CardStore {
    /// Creates the tables if needed.
    pub async fn open(store: &Store) -> Result<Self, StoreError> {
        let pool = store.pool().clone();
        crate::schema::create_all(&pool, DDL).await?;
        Ok(Self { pool })
    }

    pub async fn load(&self, card_id: &str) -> Result<Option<CardRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {CARD_COLUMNS} FROM cards WHERE card_id = $1"))
            .bind(card_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(card_from_row).transpose()?)
    }

    /// Our card that `processor` knows by `reference` (its token).
    pub async fn find_by_reference(&self, processor: &str, reference: &str) -> Result<ByReference, StoreError> {
        let rows = sqlx::query(&format!("SELECT {CARD_COLUMNS} FROM cards WHERE processor = $1 AND processor_reference = $2 LIMIT 2"))
            .bind(processor)
            .bind(reference)
            .fetch_all(&self.pool)
            .await?;
        Ok(match rows.as_slice() {
            [] => ByReference::None,
            [one] => ByReference::One(card_from_row(one)?),
            _ => ByReference::Ambiguous,
        })
    }

    /// Whether a processor callback was already applied.
    pub async fn callback_applied(&self, provider: &str, event_id: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT version FROM card_callbacks WHERE provider = $1 AND event_id = $2")
            .bind(provider)
            .bind(event_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// Applies one processor callback: records its event id, compares and
    /// sets the card, queues its events and audit entries, in one
    /// transaction. `Duplicate`: the callback was applied before;
    /// `Conflict`: the card moved since it was read.
    pub async fn commit_callback(&self, w: &CallbackWrite<'_>) -> Result<Commit, StoreError> {
        let now = switchyard_canonical::now_ms();
        let mut tx = self.pool.begin().await?;
        let mut applied = Sql::new("INSERT INTO card_callbacks (provider, event_id, card_id, version, result, applied_at_ms) VALUES ");
        applied.tuple([
            Bind::Text(Some(w.provider)),
            Bind::Text(Some(w.event_id)),
            Bind::Text(Some(&w.row.card_id)),
            Bind::Int(w.row.version),
            Bind::Text(Some(w.result)),
            Bind::Int(now),
        ]);
        applied.push(" ON CONFLICT (provider, event_id) DO NOTHING");
        if applied.query().execute(&mut *tx).await?.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(Commit::Duplicate);
        }
        if !write_effects(&mut tx, &[(w.row, Some(w.read_version))], &w.events, &w.audit, &w.row.card_id, w.correlation_id, now).await? {
            tx.rollback().await?;
            return Ok(Commit::Conflict);
        }
        tx.commit().await?;
        Ok(Commit::Applied)
    }

    /// The outcome `idempotency_key` left on `card_id`, if it moved it.
    pub async fn applied(&self, card_id: &str, idempotency_key: &str) -> Result<Option<Applied>, StoreError> {
        let row = sqlx::query("SELECT version, outcome FROM card_applied WHERE card_id = $1 AND idempotency_key = $2")
            .bind(card_id)
            .bind(idempotency_key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| Ok::<_, sqlx::Error>(Applied { version: r.try_get("version")?, outcome: r.try_get("outcome")? })).transpose()?)
    }

    /// Creates the card's row before the issuing call, or returns the row
    /// that holds the card id.
    pub async fn reserve(&self, row: &CardRow) -> Result<Reserved, StoreError> {
        let created = insert_card(row, switchyard_canonical::now_ms()).query().execute(&self.pool).await?.rows_affected();
        if created == 1 {
            return Ok(Reserved::Created);
        }
        match self.load(&row.card_id).await? {
            Some(existing) => Ok(Reserved::Exists(existing)),
            // Released between our insert and read: the id is free again, but
            // this delivery did not get it; the caller tries again later.
            None => Err(StoreError::Database(sqlx::Error::Protocol(format!("card {} vanished while reserving it", row.card_id)))),
        }
    }

    /// Gives a reservation back after a definite refusal of its issuance,
    /// so a corrected command under a new key may issue the card id. Only a
    /// row still as reserved (version 1) by `issue_key` goes.
    pub async fn release(&self, card_id: &str, issue_key: &str) -> Result<bool, StoreError> {
        let gone = sqlx::query("DELETE FROM cards WHERE card_id = $1 AND issue_key = $2 AND version = 1 AND processor_reference IS NULL")
            .bind(card_id)
            .bind(issue_key)
            .execute(&self.pool)
            .await?;
        Ok(gone.rows_affected() == 1)
    }

    /// Writes one command's effect: the applied key, every row (created or
    /// compared-and-set), its events and audit entries, in one transaction.
    /// Nothing is written unless all of it is.
    pub async fn commit(&self, w: &CardWrite<'_>) -> Result<Commit, StoreError> {
        let now = switchyard_canonical::now_ms();
        let mut tx = self.pool.begin().await?;
        let version = w.rows.iter().find(|(r, _)| r.card_id == w.card_id).map_or(0, |(r, _)| r.version);
        let mut applied = Sql::new("INSERT INTO card_applied (card_id, idempotency_key, version, outcome, applied_at_ms) VALUES ");
        applied.tuple([Bind::Text(Some(w.card_id)), Bind::Text(Some(w.idempotency_key)), Bind::Int(version), Bind::Text(Some(w.outcome)), Bind::Int(now)]);
        applied.push(" ON CONFLICT (card_id, idempotency_key) DO NOTHING");
        if applied.query().execute(&mut *tx).await?.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(Commit::Duplicate);
        }
        if !write_effects(&mut tx, &w.rows, &w.events, &w.audit, w.card_id, w.correlation_id, now).await? {
            tx.rollback().await?;
            return Ok(Commit::Conflict);
        }
        tx.commit().await?;
        Ok(Commit::Applied)
    }

    /// Unsent events of one card, in the order of its changes.
    pub async fn unsent_events(&self, card_id: &str) -> Result<Vec<CardEventRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT event_id, card_id, seq, payload, correlation_id FROM card_events \
             WHERE card_id = $1 AND sent_at_ms IS NULL ORDER BY seq",
        )
        .bind(card_id)
        .fetch_all(&self.pool)
        .await?;
        let event = |r: &AnyRow| -> Result<CardEventRow, sqlx::Error> {
            Ok(CardEventRow {
                event_id: r.try_get("event_id")?,
                card_id: r.try_get("card_id")?,
                seq: r.try_get("seq")?,
                payload: r.try_get("payload")?,
                correlation_id: r.try_get("correlation_id")?,
            })
        };
        Ok(rows.iter().map(event).collect::<Result<_, _>>()?)
    }

    pub async fn mark_sent(&self, event_id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE card_events SET sent_at_ms = $1 WHERE event_id = $2 AND sent_at_ms IS NULL")
            .bind(switchyard_canonical::now_ms())
            .bind(event_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unique(prefix: &str) -> String {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{prefix}-{}-{}-{n}", std::process::id(), switchyard_canonical::now_ms())
    }

    fn row(card_id: &str, version: i64, state: &str) -> CardRow {
        CardRow {
            card_id: card_id.into(),
            processor: "lithic".into(),
            processor_reference: (version > 1).then(|| "tok".into()),
            last_four: None,
            state: state.into(),
            lifecycle: format!("{{\"state\":\"{state}\"}}"),
            version,
            issue_key: "issue-key".into(),
            disputes: "[]".into(),
        }
    }

    fn write<'a>(card_id: &'a str, key: &'a str, rows: Vec<(&'a CardRow, Option<i64>)>) -> CardWrite<'a> {
        CardWrite { card_id, idempotency_key: key, outcome: "{}", rows, events: Vec::new(), audit: Vec::new(), correlation_id: "corr" }
    }

    #[tokio::test]
    async fn a_callback_finds_its_card_by_token_and_applies_once_under_compare_and_set() {
        for store in crate::test_stores().await {
            let cards = CardStore::open(&store).await.expect("ddl");
            let id = unique("card");
            let token = unique("tok");
            let mut issued = row(&id, 2, "ISSUED");
            issued.processor = "marqeta".into();
            issued.processor_reference = Some(token.clone());
            let reserved = CardRow { version: 1, processor_reference: None, state: "ORDERED".into(), ..issued.clone() };
            cards.reserve(&reserved).await.expect("reserve");
            assert_eq!(cards.find_by_reference("marqeta", &token).await.expect("find"), ByReference::None, "no token before issuance");
            assert_eq!(cards.commit(&write(&id, "k-issue", vec![(&issued, Some(1))])).await.expect("commit"), Commit::Applied);
            assert_eq!(cards.find_by_reference("marqeta", &token).await.expect("find"), ByReference::One(issued.clone()));
            assert_eq!(cards.find_by_reference("lithic", &token).await.expect("find"), ByReference::None, "tokens are per processor");
            let shipped = CardRow { version: 3, state: "SHIPPED".into(), ..issued.clone() };
            let event = CardEventRow { event_id: format!("{id}:3"), card_id: id.clone(), seq: 3, payload: "{}".into(), correlation_id: "c".into() };
            let w = CallbackWrite {
                provider: "marqeta",
                event_id: &token,
                row: &shipped,
                read_version: 2,
                result: "changed",
                events: vec![event],
                audit: Vec::new(),
                correlation_id: "c",
            };
            assert!(!cards.callback_applied("marqeta", &token).await.expect("read"));
            assert_eq!(cards.commit_callback(&w).await.expect("commit"), Commit::Applied);
            assert!(cards.callback_applied("marqeta", &token).await.expect("read"));
            assert_eq!(cards.commit_callback(&w).await.expect("commit"), Commit::Duplicate, "a redelivered callback changes nothing");
            let stale = CallbackWrite { event_id: "another-event", ..w.clone() };
            assert_eq!(cards.commit_callback(&stale).await.expect("commit"), Commit::Conflict, "read at version 2, which is gone");
            assert!(!cards.callback_applied("marqeta", "another-event").await.expect("read"), "a conflict records nothing");
            assert_eq!(cards.unsent_events(&id).await.expect("events").len(), 1, "one event queued");
            assert_eq!(cards.load(&id).await.expect("load").map(|r| (r.state, r.version)), Some(("SHIPPED".into(), 3)));
        }
    }

    #[tokio::test]
    async fn a_card_id_is_reserved_once_and_released_only_by_its_issuer_while_unissued() {
        for store in crate::test_stores().await {
            let cards = CardStore::open(&store).await.expect("ddl");
            let id = unique("card");
            let reserved = row(&id, 1, "ORDERED");
            assert_eq!(cards.reserve(&reserved).await.expect("reserve"), Reserved::Created);
            let mut other = reserved.clone();
            other.issue_key = "another-key".into();
            assert_eq!(cards.reserve(&other).await.expect("reserve"), Reserved::Exists(reserved.clone()), "the first issuer keeps the id");
            assert!(!cards.release(&id, "another-key").await.expect("release"), "only by its issuer");
            assert!(cards.release(&id, "issue-key").await.expect("release"));
            assert_eq!(cards.load(&id).await.expect("load"), None);
            assert_eq!(cards.reserve(&other).await.expect("reserve"), Reserved::Created, "free again after a refused issuance");
        }
    }

    #[tokio::test]
    async fn two_writers_from_one_version_move_the_card_once_and_a_key_applies_once() {
        for store in crate::test_stores().await {
            let cards = CardStore::open(&store).await.expect("ddl");
            let id = unique("card");
            let reserved = row(&id, 1, "ORDERED");
            cards.reserve(&reserved).await.expect("reserve");
            let issued = row(&id, 2, "ISSUED");
            let mut w = write(&id, "k-issue", vec![(&issued, Some(1))]);
            w.events.push(CardEventRow { event_id: format!("{id}:2"), card_id: id.clone(), seq: 2, payload: "{}".into(), correlation_id: "c".into() });
            assert_eq!(cards.commit(&w).await.expect("commit"), Commit::Applied);
            assert_eq!(cards.commit(&w).await.expect("commit"), Commit::Duplicate, "the same command again changes nothing");
            let rival = row(&id, 2, "TERMINATED");
            assert_eq!(cards.commit(&write(&id, "k-rival", vec![(&rival, Some(1))])).await.expect("commit"), Commit::Conflict, "read at version 1, which is gone");
            assert_eq!(cards.applied(&id, "k-rival").await.expect("read"), None, "a conflict writes nothing");
            let loaded = cards.load(&id).await.expect("load").expect("exists");
            assert_eq!((loaded.state.as_str(), loaded.version, loaded.processor_reference.as_deref()), ("ISSUED", 2, Some("tok")));
            assert_eq!(cards.applied(&id, "k-issue").await.expect("read"), Some(Applied { version: 2, outcome: "{}".into() }));
            let unsent = cards.unsent_events(&id).await.expect("events");
            assert_eq!(unsent.len(), 1);
            cards.mark_sent(&unsent[0].event_id).await.expect("sent");
            assert!(cards.unsent_events(&id).await.expect("events").is_empty());
            assert!(!cards.release(&id, "issue-key").await.expect("release"), "an issued card is never released");
        }
    }
}
