//! Reconciliation state: the facts the reconciler has seen (outcomes, ledger
//! postings, provider events; card transactions, card events and card
//! postings in `recon/cards.rs`), which subjects are due for evaluation, and the
//! discrepancies found. Everything lives here rather than in RAM, so memory
//! stays bounded and a restarted reconciler continues where it stopped.
//!
//! Every table carries a `scope` (a deployment, a test, a benchmark run), so
//! reconcilers sharing one database never see each other's rows.
//!
//! Writes are multi-row `INSERT .. ON CONFLICT` statements, one transaction
//! per batch: a batch of thousands of messages costs a handful of round trips.
//!
//! The evaluation protocol: a batch of facts is judged in the transaction
//! that stores it ([`ReconStore::begin_ingest`], [`IngestTx::commit`]), so a
//! clean payout costs its fact rows and nothing else. A subject that must be
//! looked at again later (a settlement window or deadline still running) gets
//! a row in `recon_subjects` with a due time, and so does one with open
//! discrepancies. The timer evaluation ([`ReconStore::due`], [`ReconStore::record`])
//! writes back only if the subject's version is unchanged, so a fact that
//! arrived meanwhile is never overruled by a verdict that did not see it.

use crate::records::{Bind, Sql};
use crate::StoreError;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use std::collections::HashMap;
use std::time::Duration;
use switchyard_canonical::{Discrepancy, DiscrepancyClass};

/// PostgreSQL allows 65,535 binds per statement, SQLite 32,766; stay below both.
const MAX_BINDS: usize = 30_000;

mod cards;
pub use cards::{CardFact, CardFactKind, CardPostingFact};
mod flow_ends;
pub use flow_ends::FlowEnd;
mod ddl;
use ddl::DDL;
mod kept;
pub use kept::KeptRow;
mod facts;
pub use facts::*;
mod rows;
use rows::*;
mod write;
use write::*;

#[derive(Clone)]
pub struct ReconStore {
    pool: AnyPool,
    scope: String,
    /// Row sets travel as one JSON parameter, unpacked by backend-specific SQL.
    is_sqlite: bool,
}

impl ReconStore {
    /// Connects with its own pool (reads of due subjects and batch writes run
    /// side by side) and creates the reconciliation tables.
    pub async fn connect(url: &str, scope: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let is_sqlite = url.starts_with("sqlite:");
        if !is_sqlite && !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
            return Err(StoreError::UnsupportedUrl(url.to_owned()));
        }
        let pool = AnyPoolOptions::new()
            .max_connections(if is_sqlite { 1 } else { 6 })
            .acquire_timeout(Duration::from_secs(30))
            .connect(url)
            .await?;
        crate::schema::create_all(&pool, DDL).await?;
        crate::schema::create_all(&pool, cards::DDL).await?;
        crate::schema::create_all(&pool, flow_ends::DDL).await?;
        Ok(Self { pool, scope: scope.to_owned(), is_sqlite })
    }

    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// Stores facts without judging them (a settled outcome the evaluator
    /// already judged with). Re-delivered facts change nothing.
    pub async fn ingest(&self, batch: &FactBatch) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        self.write_facts(&mut tx, batch).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Stores a batch of facts and, in the same transaction, reads back
    /// everything known about the subjects they touch, so the caller can
    /// judge them and hand the verdicts to [`IngestTx::commit`]. Subjects
    /// with a row (a timer or open discrepancies) get their version bumped
    /// first: that locks them against a concurrent evaluation of the timer,
    /// whose write-back then sees the newer version and yields.
    pub async fn begin_ingest(&self, batch: &FactBatch) -> Result<IngestTx, StoreError> {
        let mut tx = self.pool.begin().await?;
        self.write_facts(&mut tx, batch).await?;
        let mut touched: Vec<&str> = batch
            .outcomes
            .iter()
            .map(|o| o.subject_id.as_str())
            .chain(batch.postings.iter().map(|p| p.subject_id.as_str()))
            .chain(batch.events.iter().map(|e| e.subject_id.as_str()))
            .chain(batch.cards.iter().map(|c| c.subject_id.as_str()))
            .chain(batch.card_postings.iter().map(|p| p.subject_id.as_str()))
            .collect();
        touched.sort_unstable();
        touched.dedup();
        let mut rows: HashMap<String, (i64, i64)> = HashMap::new();
        let sql = format!(
            "UPDATE recon_subjects SET version = version + 1 WHERE scope = $1 AND subject_id IN {} \
             RETURNING subject_id, version, open_count",
            self.id_list()
        );
        let bumped = sqlx::query(&sql).bind(self.scope.as_str()).bind(json_ids(&touched)).persistent(false).fetch_all(&mut *tx).await?;
        for r in bumped {
            rows.insert(r.try_get("subject_id")?, (r.try_get("version")?, r.try_get("open_count")?));
        }
        let subjects: Vec<DueSubject> = touched
            .iter()
            .map(|s| {
                let (version, open_count) = rows.get(*s).copied().unwrap_or((0, 0));
                DueSubject { subject_id: (*s).to_owned(), version, open_count }
            })
            .collect();
        let facts = self.load_with(&mut tx, &subjects).await?;
        Ok(IngestTx { tx, scope: self.scope.clone(), subjects, facts })
    }

    async fn write_facts(&self, conn: &mut sqlx::AnyConnection, batch: &FactBatch) -> Result<(), StoreError> {
        use Cell::{Int, OptInt, Text};
        // An upsert may touch a row once per statement: keep the most final
        // outcome per key, the first copy of a posting or event.
        let mut outcomes: HashMap<(&str, &str), &OutcomeFact> = HashMap::new();
        for o in &batch.outcomes {
            let slot = outcomes.entry((o.subject_id.as_str(), o.idempotency_key.as_str())).or_insert(o);
            if (o.rank(), o.completed_at_ms) > (slot.rank(), slot.completed_at_ms) {
                *slot = o;
            }
        }
        let rows: Vec<Vec<Cell<'_>>> = outcomes.into_values().map(|o: &OutcomeFact| {
            vec![
                Text(Some(&o.subject_id)),
                Text(Some(&o.idempotency_key)),
                Text(Some(o.status.as_str())),
                Int(o.rank()),
                Text(o.provider.as_deref()),
                Text(o.provider_reference.as_deref()),
                Int(o.amount_minor),
                Text(Some(&o.currency)),
                Text(o.correlation_id.as_deref()),
                Int(o.completed_at_ms),
            ]
        }).collect();
        let tail = "ON CONFLICT (scope, subject_id, idempotency_key) DO UPDATE SET status = excluded.status, \
             status_rank = excluded.status_rank, provider = excluded.provider, \
             provider_reference = excluded.provider_reference, amount_minor = excluded.amount_minor, \
             currency = excluded.currency, correlation_id = excluded.correlation_id, \
             completed_at_ms = excluded.completed_at_ms \
             WHERE excluded.status_rank > recon_outcomes.status_rank \
             OR (excluded.status_rank = recon_outcomes.status_rank \
             AND excluded.completed_at_ms > recon_outcomes.completed_at_ms)";
        let columns = [
            ("subject_id", false),
            ("idempotency_key", false),
            ("status", false),
            ("status_rank", true),
            ("provider", false),
            ("provider_reference", false),
            ("amount_minor", true),
            ("currency", false),
            ("correlation_id", false),
            ("completed_at_ms", true),
        ];
        self.insert_rows(conn, "recon_outcomes", &columns, rows, tail).await?;

        let mut postings: HashMap<(&str, &str), &PostingFact> = HashMap::new();
        for p in &batch.postings {
            postings.entry((p.subject_id.as_str(), p.posting_id.as_str())).or_insert(p);
        }
        let rows: Vec<Vec<Cell<'_>>> = postings.into_values().map(|p: &PostingFact| {
            vec![
                Text(Some(&p.subject_id)),
                Text(Some(&p.posting_id)),
                Text(p.idempotency_key.as_deref()),
                Text(p.correlation_id.as_deref()),
                Text(Some(p.kind.as_str())),
                Int(p.amount_minor),
                Text(Some(&p.currency)),
                Int(p.posted_at_ms),
            ]
        }).collect();
        let columns = [
            ("subject_id", false),
            ("posting_id", false),
            ("idempotency_key", false),
            ("correlation_id", false),
            ("kind", false),
            ("amount_minor", true),
            ("currency", false),
            ("posted_at_ms", true),
        ];
        self.insert_rows(conn, "recon_postings", &columns, rows, "ON CONFLICT (scope, subject_id, posting_id) DO NOTHING").await?;

        let mut events: HashMap<(&str, &str, &str), &EventFact> = HashMap::new();
        for e in &batch.events {
            events.entry((e.subject_id.as_str(), e.provider.as_str(), e.event_id.as_str())).or_insert(e);
        }
        let rows: Vec<Vec<Cell<'_>>> = events.into_values().map(|e: &EventFact| {
            vec![
                Text(Some(&e.subject_id)),
                Text(Some(&e.provider)),
                Text(Some(&e.event_id)),
                Text(Some(&e.provider_reference)),
                Text(Some(e.kind.as_str())),
                OptInt(e.amount_minor),
                Text(e.currency.as_deref()),
                Int(e.occurred_at_ms),
                Int(e.received_at_ms),
            ]
        }).collect();
        let columns = [
            ("subject_id", false),
            ("provider", false),
            ("event_id", false),
            ("provider_reference", false),
            ("kind", false),
            ("amount_minor", true),
            ("currency", false),
            ("occurred_at_ms", true),
            ("received_at_ms", true),
        ];
        self.insert_rows(conn, "recon_events", &columns, rows, "ON CONFLICT (scope, subject_id, provider, event_id) DO NOTHING").await?;

        let mut commands: HashMap<(&str, &str), &CommandRecord> = HashMap::new();
        for c in &batch.commands {
            commands.entry((c.subject_id.as_str(), c.idempotency_key.as_str())).or_insert(c);
        }
        let rows: Vec<Vec<Cell<'_>>> = commands
            .into_values()
            .map(|c: &CommandRecord| vec![Text(Some(&c.subject_id)), Text(Some(&c.idempotency_key)), Text(Some(&c.command_json))])
            .collect();
        let columns = [("subject_id", false), ("idempotency_key", false), ("command", false)];
        self.insert_rows(conn, "recon_commands", &columns, rows, "ON CONFLICT (scope, subject_id, idempotency_key) DO NOTHING").await?;
        self.write_card_facts(conn, &batch.cards, &batch.card_postings).await
    }

    /// `INSERT INTO table (scope, columns..) <rows> <tail>` with the rows
    /// sent as one JSON array parameter: PostgreSQL and SQLite unpack it
    /// server-side, so a batch of thousands of rows is one short statement
    /// with two parameters instead of tens of thousands of placeholders.
    /// `columns` names each column and whether it is an integer.
    async fn insert_rows<'a>(
        &self,
        conn: &mut sqlx::AnyConnection,
        table: &str,
        columns: &[(&str, bool)],
        rows: Vec<Vec<Cell<'a>>>,
        tail: &str,
    ) -> Result<(), StoreError> {
        const ROWS_PER_STATEMENT: usize = 10_000;
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let mut json = String::with_capacity(chunk.len() * 160);
            json.push('[');
            for (i, row) in chunk.iter().enumerate() {
                if i > 0 {
                    json.push(',');
                }
                push_json_row(&mut json, row);
            }
            json.push(']');
            let names: Vec<&str> = columns.iter().map(|(n, _)| *n).collect();
            let values: Vec<String> = columns
                .iter()
                .enumerate()
                .map(|(i, (_, int))| match (self.is_sqlite, int) {
                    (true, _) => format!("json_extract(value, '$[{i}]')"),
                    (false, true) => format!("(r->>{i})::bigint"),
                    (false, false) => format!("(r->>{i})"),
                })
                .collect();
            let source = if self.is_sqlite {
                // `WHERE true` keeps SQLite from reading ON CONFLICT as a join clause.
                "FROM json_each($2) WHERE true"
            } else {
                "FROM jsonb_array_elements($2::jsonb) AS r"
            };
            let sql = format!(
                "INSERT INTO {table} (scope, {}) SELECT $1, {} {source} {tail}",
                names.join(", "),
                values.join(", ")
            );
            sqlx::query(&sql).bind(self.scope.as_str()).bind(json).persistent(false).execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// Subjects due at `as_of`, earliest first.
    pub async fn due(&self, as_of_ms: i64, limit: usize) -> Result<Vec<DueSubject>, StoreError> {
        let mut q = Sql::new("SELECT subject_id, version, open_count FROM recon_subjects WHERE scope = ");
        q.bind(Bind::Text(Some(&self.scope)))
            .push(" AND due_at_ms <= ")
            .bind(Bind::Int(as_of_ms))
            .push(" ORDER BY due_at_ms LIMIT ")
            .bind(Bind::Int(limit as i64));
        let rows = q.query().persistent(false).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(DueSubject {
                    subject_id: r.try_get("subject_id")?,
                    version: r.try_get("version")?,
                    open_count: r.try_get("open_count")?,
                })
            })
            .collect()
    }

    /// Every stored fact of `subjects`, in the order given. Discrepancies are
    /// read only for subjects that have some on record.
    pub async fn load(&self, subjects: &[DueSubject]) -> Result<Vec<SubjectFacts>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        self.load_with(&mut conn, subjects).await
    }

    async fn load_with(&self, conn: &mut sqlx::AnyConnection, subjects: &[DueSubject]) -> Result<Vec<SubjectFacts>, StoreError> {
        let mut facts: Vec<SubjectFacts> =
            subjects.iter().map(|s| SubjectFacts { subject_id: s.subject_id.clone(), ..SubjectFacts::default() }).collect();
        let index: HashMap<&str, usize> = subjects.iter().enumerate().map(|(i, s)| (s.subject_id.as_str(), i)).collect();
        let ids: Vec<&str> = subjects.iter().map(|s| s.subject_id.as_str()).collect();
        let with_history: Vec<&str> = subjects.iter().filter(|s| s.open_count != 0).map(|s| s.subject_id.as_str()).collect();
        let slot = |row: &AnyRow| -> Result<usize, StoreError> {
            let subject: String = row.try_get("subject_id")?;
            index.get(subject.as_str()).copied().ok_or_else(|| protocol(format!("unasked subject {subject}")))
        };
        for row in self.select_in(&mut *conn, OUTCOME_COLUMNS, "recon_outcomes", &ids).await? {
            facts[slot(&row)?].outcomes.push(outcome_from_row(&row)?);
        }
        for row in self.select_in(&mut *conn, POSTING_COLUMNS, "recon_postings", &ids).await? {
            facts[slot(&row)?].postings.push(posting_from_row(&row)?);
        }
        for row in self.select_in(&mut *conn, EVENT_COLUMNS, "recon_events", &ids).await? {
            facts[slot(&row)?].events.push(event_from_row(&row)?);
        }
        self.load_cards(&mut *conn, &ids, &index, &mut facts).await?;
        for row in self.select_in(&mut *conn, DISCREPANCY_COLUMNS, "recon_discrepancies", &with_history).await? {
            facts[slot(&row)?].discrepancies.push(discrepancy_from_row(&row)?);
        }
        for f in &mut facts {
            // Rows come back in no particular order; the rules want time order.
            f.postings.sort_by(|a, b| (a.posted_at_ms, &a.posting_id).cmp(&(b.posted_at_ms, &b.posting_id)));
            f.events.sort_by(|a, b| (a.occurred_at_ms, &a.event_id).cmp(&(b.occurred_at_ms, &b.event_id)));
            f.outcomes.sort_by(|a, b| (a.completed_at_ms, &a.idempotency_key).cmp(&(b.completed_at_ms, &b.idempotency_key)));
        }
        Ok(facts)
    }

    async fn select_in(&self, conn: &mut sqlx::AnyConnection, columns: &str, table: &str, ids: &[&str]) -> Result<Vec<AnyRow>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!("SELECT {columns} FROM {table} WHERE scope = $1 AND subject_id IN {}", self.id_list());
        Ok(sqlx::query(&sql).bind(self.scope.as_str()).bind(json_ids(ids)).persistent(false).fetch_all(&mut *conn).await?)
    }

    /// `$2`, a JSON array of ids, as a set SQL can test membership in.
    fn id_list(&self) -> &'static str {
        if self.is_sqlite {
            "(SELECT value FROM json_each($2))"
        } else {
            "(SELECT jsonb_array_elements_text($2::jsonb))"
        }
    }

    /// Writes the verdicts of a timer evaluation: each subject's next due
    /// time and open count, only where no fact arrived since it was read, and
    /// then the changed discrepancies of exactly those subjects. Returns how
    /// many verdicts applied. One transaction.
    pub async fn record(&self, judged: &[Judged]) -> Result<usize, StoreError> {
        if judged.is_empty() {
            return Ok(0);
        }
        let mut tx = self.pool.begin().await?;
        let rows: Vec<&Judged> = judged.iter().collect();
        let applied = write_subjects(&mut tx, &self.scope, &rows, true).await?;
        let changed: Vec<&Discrepancy> =
            judged.iter().filter(|j| applied.contains(j.subject_id.as_str())).flat_map(|j| j.changed.iter()).collect();
        write_discrepancies(&mut tx, &self.scope, &changed).await?;
        tx.commit().await?;
        Ok(applied.len())
    }

    /// Subjects of outcomes with one of `keys` as idempotency key or one of
    /// `references` as provider reference: `(subject, key, reference)`.
    /// Unindexed on purpose: only facts filed under an unknown id need it,
    /// which is rare, while two more indexes on every outcome doubled the
    /// database's work in the benchmark.
    pub async fn outcome_subjects(&self, keys: &[&str], references: &[&str]) -> Result<Vec<(String, String, Option<String>)>, StoreError> {
        let set = |n: u8| {
            if self.is_sqlite {
                format!("(SELECT value FROM json_each(${n}))")
            } else {
                format!("(SELECT jsonb_array_elements_text(${n}::jsonb))")
            }
        };
        let sql = format!(
            "SELECT subject_id, idempotency_key, provider_reference FROM recon_outcomes WHERE scope = $1 \
             AND (idempotency_key IN {} OR provider_reference IN {})",
            set(2),
            set(3)
        );
        let rows = sqlx::query(&sql)
            .bind(self.scope.as_str())
            .bind(json_ids(keys))
            .bind(json_ids(references))
            .persistent(false)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("subject_id")?, r.try_get("idempotency_key")?, r.try_get("provider_reference")?)))
            .collect()
    }

    /// Moves every posting and event of subject `from` to subject `to` and
    /// makes `to` due now (its version moves, so a verdict on `to` computed
    /// without them yields). One transaction.
    pub async fn rekey(&self, from: &str, to: &str, now_ms: i64) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for (table, columns) in [
            ("recon_postings", "posting_id, idempotency_key, correlation_id, kind, amount_minor, currency, posted_at_ms"),
            ("recon_events", "provider, event_id, provider_reference, kind, amount_minor, currency, occurred_at_ms, received_at_ms"),
        ] {
            let copy = format!(
                "INSERT INTO {table} (scope, subject_id, {columns}) SELECT scope, $3, {columns} FROM {table} \
                 WHERE scope = $1 AND subject_id = $2 ON CONFLICT DO NOTHING"
            );
            sqlx::query(&copy).bind(self.scope.as_str()).bind(from).bind(to).persistent(false).execute(&mut *tx).await?;
            let delete = format!("DELETE FROM {table} WHERE scope = $1 AND subject_id = $2");
            sqlx::query(&delete).bind(self.scope.as_str()).bind(from).persistent(false).execute(&mut *tx).await?;
        }
        let mut q = Sql::new("INSERT INTO recon_subjects (scope, subject_id, version, due_at_ms, open_count) VALUES ");
        q.tuple([Bind::Text(Some(&self.scope)), Bind::Text(Some(to)), Bind::Int(1), Bind::Int(now_ms), Bind::Int(0)]);
        q.push(" ON CONFLICT (scope, subject_id) DO UPDATE SET version = recon_subjects.version + 1, due_at_ms = excluded.due_at_ms");
        q.query().persistent(false).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The command stored for a payout, as JSON.
    pub async fn command(&self, subject_id: &str, idempotency_key: &str) -> Result<Option<String>, StoreError> {
        let mut q = Sql::new("SELECT command FROM recon_commands WHERE scope = ");
        q.bind(Bind::Text(Some(&self.scope)))
            .push(" AND subject_id = ")
            .bind(Bind::Text(Some(subject_id)))
            .push(" AND idempotency_key = ")
            .bind(Bind::Text(Some(idempotency_key)));
        let row = q.query().persistent(false).fetch_optional(&self.pool).await?;
        Ok(row.map(|r| r.try_get("command")).transpose()?)
    }

    /// Discrepancies of this scope, optionally only open ones, newest first.
    pub async fn discrepancies(&self, only_open: bool, limit: usize) -> Result<Vec<Discrepancy>, StoreError> {
        let mut q = Sql::new(format!("SELECT {DISCREPANCY_COLUMNS} FROM recon_discrepancies WHERE scope = "));
        q.bind(Bind::Text(Some(&self.scope)));
        if only_open {
            q.push(" AND status = 'open'");
        }
        q.push(" ORDER BY detected_at_ms DESC, discrepancy_id LIMIT ").bind(Bind::Int(limit as i64));
        let rows = q.query().persistent(false).fetch_all(&self.pool).await?;
        rows.iter().map(discrepancy_from_row).collect()
    }

    /// Discrepancy counts by class and status.
    pub async fn tally(&self) -> Result<Tally, StoreError> {
        let mut q = Sql::new("SELECT class, status, COUNT(*) AS n FROM recon_discrepancies WHERE scope = ");
        q.bind(Bind::Text(Some(&self.scope))).push(" GROUP BY class, status ORDER BY class, status");
        let rows = q.query().persistent(false).fetch_all(&self.pool).await?;
        let mut by_class = Vec::with_capacity(rows.len());
        for r in rows {
            let class: String = r.try_get("class")?;
            let status: String = r.try_get("status")?;
            by_class.push((DiscrepancyClass::parse(&class), parse_status(&status), r.try_get::<i64, _>("n")?));
        }
        Ok(Tally { by_class })
    }

    /// Subjects waiting on a timer (a window or deadline still running), and
    /// subjects with open discrepancies.
    pub async fn subject_counts(&self) -> Result<(i64, i64), StoreError> {
        let mut q = Sql::new(
            "SELECT COUNT(due_at_ms) AS timers, COALESCE(SUM(CASE WHEN open_count > 0 THEN 1 ELSE 0 END), 0) AS open \
             FROM recon_subjects WHERE scope = ",
        );
        q.bind(Bind::Text(Some(&self.scope)));
        let row = q.query().persistent(false).fetch_one(&self.pool).await?;
        Ok((row.try_get("timers")?, row.try_get("open")?))
    }

    /// Deletes every row of this scope (benchmark and test clean-up).
    pub async fn purge(&self) -> Result<(), StoreError> {
        let payouts = ["recon_outcomes", "recon_postings", "recon_events", "recon_subjects", "recon_discrepancies", "recon_commands"];
        for table in payouts.into_iter().chain(cards::TABLES) {
            let mut q = Sql::new(format!("DELETE FROM {table} WHERE scope = "));
            q.bind(Bind::Text(Some(&self.scope)));
            q.query().persistent(false).execute(&self.pool).await?;
        }
        Ok(())
    }
}

/// Facts of one batch stored but not yet committed, with everything known
/// about the subjects they touch. Dropping it rolls the batch back.
pub struct IngestTx {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    scope: String,
    /// The touched subjects; `version` 0 means the subject has no row yet.
    pub subjects: Vec<DueSubject>,
    /// Their facts, in the order of `subjects`.
    pub facts: Vec<SubjectFacts>,
}

impl IngestTx {
    /// Writes the verdicts and commits facts and verdicts together. A subject
    /// gets a row only when it needs one: a timer, open discrepancies, or a
    /// row it already had; a clean subject costs no write beyond its facts.
    pub async fn commit(mut self, judged: &[Judged]) -> Result<(), StoreError> {
        let had_row: std::collections::HashSet<&str> =
            self.subjects.iter().filter(|s| s.version > 0).map(|s| s.subject_id.as_str()).collect();
        let rows: Vec<&Judged> = judged
            .iter()
            .filter(|j| j.next_due_at_ms.is_some() || j.open_count > 0 || had_row.contains(j.subject_id.as_str()))
            .collect();
        write_subjects(&mut self.tx, &self.scope, &rows, false).await?;
        let changed: Vec<&Discrepancy> = judged.iter().flat_map(|j| j.changed.iter()).collect();
        write_discrepancies(&mut self.tx, &self.scope, &changed).await?;
        self.tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_canonical::PayoutStatus;

    fn outcome(subject: &str, status: PayoutStatus, at: i64) -> OutcomeFact {
        OutcomeFact {
            subject_id: subject.into(),
            idempotency_key: format!("k-{subject}"),
            status,
            provider: Some("stripe".into()),
            provider_reference: None,
            amount_minor: 100,
            currency: "EUR".into(),
            correlation_id: None,
            completed_at_ms: at,
        }
    }

    async fn stores() -> Vec<ReconStore> {
        let scope = format!("unit-{}-{}", std::process::id(), switchyard_canonical::now_ms());
        let mut stores = vec![ReconStore::connect("sqlite::memory:", &scope).await.expect("sqlite")];
        let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        match ReconStore::connect(&url, &scope).await {
            Ok(pg) => stores.push(pg),
            Err(e) if std::env::var("CI").is_ok() => panic!("PostgreSQL required in CI: {e}"),
            Err(e) => eprintln!("skipping PostgreSQL: {e}"),
        }
        stores
    }

    fn verdict(subject: &str, version: i64, next_due: Option<i64>) -> Judged {
        Judged { subject_id: subject.into(), version, next_due_at_ms: next_due, open_count: 0, changed: vec![] }
    }

    #[tokio::test]
    async fn a_replayed_earlier_status_never_hides_the_final_one_and_stale_verdicts_yield() {
        for store in stores().await {
            let batch = FactBatch { outcomes: vec![outcome("s1", PayoutStatus::Paid, 20)], ..FactBatch::default() };
            let tx = store.begin_ingest(&batch).await.expect("ingest");
            assert_eq!(tx.subjects[0].version, 0, "no row yet");
            tx.commit(&[verdict("s1", 0, Some(50))]).await.expect("commit");
            // A replayed pending_unknown arrives later: still paid, and the
            // subject's row is locked and bumped for this evaluation.
            let replay = FactBatch { outcomes: vec![outcome("s1", PayoutStatus::PendingUnknown, 30)], ..FactBatch::default() };
            let tx = store.begin_ingest(&replay).await.expect("ingest");
            assert_eq!((tx.subjects[0].version, tx.facts[0].outcomes.len()), (2, 1));
            assert_eq!(tx.facts[0].outcomes[0].status, PayoutStatus::Paid);
            tx.commit(&[verdict("s1", 2, Some(60))]).await.expect("commit");
            let due = store.due(100, 10).await.expect("due");
            assert_eq!(due.len(), 1);
            assert_eq!(due[0].version, 2);
            // A verdict computed from an older version must not clear the timer.
            assert_eq!(store.record(&[verdict("s1", 1, None)]).await.expect("record"), 0);
            assert_eq!(store.due(100, 10).await.expect("due").len(), 1, "still due after a stale verdict");
            assert_eq!(store.record(&[verdict("s1", 2, None)]).await.expect("record"), 1);
            assert!(store.due(100, 10).await.expect("due").is_empty());
            // A clean subject costs no subject row at all.
            let clean = FactBatch { outcomes: vec![outcome("s2", PayoutStatus::Paid, 20)], ..FactBatch::default() };
            store.begin_ingest(&clean).await.expect("ingest").commit(&[verdict("s2", 0, None)]).await.expect("commit");
            assert_eq!(store.subject_counts().await.expect("counts"), (0, 0));
            store.purge().await.expect("purge");
        }
    }
}
