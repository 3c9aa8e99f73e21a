//! Onboarding flows: the orchestrator's state, with its own DDL.
//!
//! - `onboarding_flows`: one row per flow; the state machine's flow as JSON
//!   (`data`) plus the columns the sweep queries. `version` grows by one per
//!   transition and every update compares and sets it, so two deliveries,
//!   two orchestrator instances or an outcome racing the timeout sweep can
//!   never both move a flow from the same version.
//! - `onboarding_applied`: which inputs moved a flow (`<step>.<attempt>` for
//!   outcomes, `cmd:<idempotency key>` for commands, `timeout:<version>`).
//!   Inserted in the transition's transaction: a redelivered or duplicated
//!   input finds its row and changes nothing.
//! - `onboarding_outbox`: what a transition must publish (the next step's
//!   command, the onboarding event), written in the same transaction and
//!   marked sent once the broker acknowledged. A crash between commit and
//!   publish leaves unsent rows that the next delivery or the sweep sends;
//!   receivers deduplicate (commands by idempotency key, events by id).
//!
//! Audit entries of a transition are written in its transaction too, so the
//! append-only log has exactly the transitions that happened.
//!
//! Rows carry a `scope` (one orchestrator deployment: its commands topic), so
//! deployments sharing a database (e.g. test stacks with prefixed topics)
//! never sweep or publish each other's flows.

use crate::records::{Bind, Sql};
use crate::{Store, StoreError};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

pub(crate) const DDL: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS onboarding_flows (
        flow_id TEXT NOT NULL PRIMARY KEY,
        scope TEXT NOT NULL,
        subject_id TEXT NOT NULL,
        correlation_id TEXT NOT NULL,
        state TEXT NOT NULL,
        terminal BIGINT NOT NULL,
        version BIGINT NOT NULL,
        deadline_at_ms BIGINT,
        data TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL,
        updated_at_ms BIGINT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS onboarding_flows_due ON onboarding_flows (scope, terminal, deadline_at_ms)",
    "CREATE INDEX IF NOT EXISTS onboarding_flows_subject ON onboarding_flows (subject_id)",
    "CREATE TABLE IF NOT EXISTS onboarding_applied (
        flow_id TEXT NOT NULL,
        input_key TEXT NOT NULL,
        version BIGINT NOT NULL,
        applied_at_ms BIGINT NOT NULL,
        PRIMARY KEY (flow_id, input_key)
    )",
    "CREATE TABLE IF NOT EXISTS onboarding_outbox (
        flow_id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        scope TEXT NOT NULL,
        kind TEXT NOT NULL,
        message_key TEXT NOT NULL,
        payload TEXT NOT NULL,
        correlation_id TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL,
        sent_at_ms BIGINT,
        PRIMARY KEY (flow_id, seq)
    )",
    "CREATE INDEX IF NOT EXISTS onboarding_outbox_unsent ON onboarding_outbox (scope, sent_at_ms, created_at_ms)",
];

/// A flow row as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowRow {
    pub flow_id: String,
    pub subject_id: String,
    pub correlation_id: String,
    pub state: String,
    pub terminal: bool,
    pub version: i64,
    pub deadline_at_ms: Option<i64>,
    /// The orchestrator's flow as JSON.
    pub data: String,
}

/// One message a transition must publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    pub flow_id: String,
    /// Orders a flow's messages: `version * 100 + index`.
    pub seq: i64,
    /// Which topic and schema (the orchestrator's names, e.g. `kyc`, `event`).
    pub kind: String,
    pub message_key: String,
    /// The canonical value as JSON; encoded to Avro when published.
    pub payload: String,
    pub correlation_id: String,
}

/// Everything one transition writes, atomically.
#[derive(Debug, Clone)]
pub struct FlowWrite<'a> {
    pub row: &'a FlowRow,
    /// The version the transition was computed from; `None` creates the flow.
    pub expected_version: Option<i64>,
    /// What moved the flow; applied once per flow.
    pub input_key: &'a str,
    /// `(kind, payload)` in publishing order.
    pub outbox: Vec<(&'a str, String)>,
    /// `(action, detail)` for the audit log, actor `onboarding-orchestrator`.
    pub audit: Vec<(&'a str, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    Applied,
    /// The input already moved this flow.
    Duplicate,
    /// The flow is not at the expected version (or already exists): reload.
    Conflict,
}

/// The orchestrator's tables on the shared pool.
#[derive(Clone)]
pub struct OnboardingStore {
    pool: AnyPool,
    /// The deployment whose flows this handle creates, sweeps and publishes.
    scope: String,
}

const FLOW_COLUMNS: &str = "flow_id, subject_id, correlation_id, state, terminal, version, deadline_at_ms, data";

fn flow_from_row(r: &AnyRow) -> Result<FlowRow, sqlx::Error> {
    Ok(FlowRow {
        flow_id: r.try_get("flow_id")?,
        subject_id: r.try_get("subject_id")?,
        correlation_id: r.try_get("correlation_id")?,
        state: r.try_get("state")?,
        terminal: r.try_get::<i64, _>("terminal")? != 0,
        version: r.try_get("version")?,
        deadline_at_ms: r.try_get("deadline_at_ms")?,
        data: r.try_get("data")?,
    })
}

fn outbox_from_row(r: &AnyRow) -> Result<OutboxMessage, sqlx::Error> {
    Ok(OutboxMessage {
        flow_id: r.try_get("flow_id")?,
        seq: r.try_get("seq")?,
        kind: r.try_get("kind")?,
        message_key: r.try_get("message_key")?,
        payload: r.try_get("payload")?,
        correlation_id: r.try_get("correlation_id")?,
    })
}

impl OnboardingStore {
    /// Creates the tables if needed; `scope` names the deployment.
    pub async fn open(store: &Store, scope: &str) -> Result<Self, StoreError> {
        let pool = store.pool().clone();
        crate::schema::create_all(&pool, DDL).await?;
        Ok(Self { pool, scope: scope.to_owned() })
    }

    pub async fn load(&self, flow_id: &str) -> Result<Option<FlowRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {FLOW_COLUMNS} FROM onboarding_flows WHERE flow_id = $1"))
            .bind(flow_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(flow_from_row).transpose()?)
    }

    /// Every flow of an applicant, oldest first.
    pub async fn by_subject(&self, subject_id: &str) -> Result<Vec<FlowRow>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {FLOW_COLUMNS} FROM onboarding_flows WHERE subject_id = $1 ORDER BY created_at_ms"))
            .bind(subject_id)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(flow_from_row).collect::<Result<_, _>>()?)
    }

    pub async fn was_applied(&self, flow_id: &str, input_key: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT version FROM onboarding_applied WHERE flow_id = $1 AND input_key = $2")
            .bind(flow_id)
            .bind(input_key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// Writes one transition: the applied input, the flow (created or
    /// compared-and-set), its outbox messages and audit entries, in one
    /// transaction. Nothing is written unless all of it is.
    pub async fn commit(&self, w: &FlowWrite<'_>) -> Result<Commit, StoreError> {
        let now = switchyard_canonical::now_ms();
        let row = w.row;
        let mut tx = self.pool.begin().await?;
        let mut applied = Sql::new("INSERT INTO onboarding_applied (flow_id, input_key, version, applied_at_ms) VALUES ");
        applied.tuple([Bind::Text(Some(&row.flow_id)), Bind::Text(Some(w.input_key)), Bind::Int(row.version), Bind::Int(now)]);
        applied.push(" ON CONFLICT (flow_id, input_key) DO NOTHING");
        if applied.query().execute(&mut *tx).await?.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(Commit::Duplicate);
        }
        let terminal = i64::from(row.terminal);
        let moved = match w.expected_version {
            None => {
                let mut q = Sql::new(format!("INSERT INTO onboarding_flows ({FLOW_COLUMNS}, scope, created_at_ms, updated_at_ms) VALUES "));
                q.tuple([
                    Bind::Text(Some(&row.flow_id)),
                    Bind::Text(Some(&row.subject_id)),
                    Bind::Text(Some(&row.correlation_id)),
                    Bind::Text(Some(&row.state)),
                    Bind::Int(terminal),
                    Bind::Int(row.version),
                    Bind::OptInt(row.deadline_at_ms),
                    Bind::Text(Some(&row.data)),
                    Bind::Text(Some(&self.scope)),
                    Bind::Int(now),
                    Bind::Int(now),
                ]);
                q.push(" ON CONFLICT (flow_id) DO NOTHING");
                q.query().execute(&mut *tx).await?.rows_affected()
            }
            Some(expected) => {
                let mut q = Sql::new("UPDATE onboarding_flows SET state = ");
                q.bind(Bind::Text(Some(&row.state)))
                    .push(", terminal = ")
                    .bind(Bind::Int(terminal))
                    .push(", version = ")
                    .bind(Bind::Int(row.version))
                    .push(", deadline_at_ms = ")
                    .bind(Bind::OptInt(row.deadline_at_ms))
                    .push(", data = ")
                    .bind(Bind::Text(Some(&row.data)))
                    .push(", updated_at_ms = ")
                    .bind(Bind::Int(now))
                    .push(" WHERE flow_id = ")
                    .bind(Bind::Text(Some(&row.flow_id)))
                    .push(" AND version = ")
                    .bind(Bind::Int(expected));
                q.query().execute(&mut *tx).await?.rows_affected()
            }
        };
        if moved != 1 {
            tx.rollback().await?;
            return Ok(Commit::Conflict);
        }
        if !w.outbox.is_empty() {
            let mut q = Sql::new("INSERT INTO onboarding_outbox (flow_id, seq, scope, kind, message_key, payload, correlation_id, created_at_ms) VALUES ");
            for (i, (kind, payload)) in w.outbox.iter().enumerate() {
                if i > 0 {
                    q.push(", ");
                }
                q.tuple([
                    Bind::Text(Some(&row.flow_id)),
                    Bind::Int(row.version * 100 + i as i64),
                    Bind::Text(Some(&self.scope)),
                    Bind::Text(Some(kind)),
                    Bind::Text(Some(&row.subject_id)),
                    Bind::Text(Some(payload)),
                    Bind::Text(Some(&row.correlation_id)),
                    Bind::Int(now),
                ]);
            }
            q.query().execute(&mut *tx).await?;
        }
        if !w.audit.is_empty() {
            let mut q = Sql::new("INSERT INTO audit_log (at_ms, actor, action, subject_id, correlation_id, detail) VALUES ");
            for (i, (action, detail)) in w.audit.iter().enumerate() {
                if i > 0 {
                    q.push(", ");
                }
                q.tuple([
                    Bind::Int(now),
                    Bind::Text(Some("onboarding-orchestrator")),
                    Bind::Text(Some(action)),
                    Bind::Text(Some(&row.subject_id)),
                    Bind::Text(Some(&row.correlation_id)),
                    Bind::Text(Some(detail)),
                ]);
            }
            q.query().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(Commit::Applied)
    }

    /// Unsent messages of one flow, in order.
    pub async fn unsent_of(&self, flow_id: &str) -> Result<Vec<OutboxMessage>, StoreError> {
        let rows = sqlx::query(
            "SELECT flow_id, seq, kind, message_key, payload, correlation_id FROM onboarding_outbox \
             WHERE flow_id = $1 AND sent_at_ms IS NULL ORDER BY seq",
        )
        .bind(flow_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(outbox_from_row).collect::<Result<_, _>>()?)
    }

    /// Unsent messages written before `before_ms` (their writer probably
    /// died before publishing), oldest first, grouped by flow.
    pub async fn unsent_before(&self, before_ms: i64, limit: i64) -> Result<Vec<OutboxMessage>, StoreError> {
        let rows = sqlx::query(
            "SELECT flow_id, seq, kind, message_key, payload, correlation_id FROM onboarding_outbox \
             WHERE scope = $1 AND sent_at_ms IS NULL AND created_at_ms < $2 ORDER BY flow_id, seq LIMIT $3",
        )
        .bind(&self.scope)
        .bind(before_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(outbox_from_row).collect::<Result<_, _>>()?)
    }

    pub async fn mark_sent(&self, flow_id: &str, seq: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE onboarding_outbox SET sent_at_ms = $1 WHERE flow_id = $2 AND seq = $3")
            .bind(switchyard_canonical::now_ms())
            .bind(flow_id)
            .bind(seq)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Forgets the applied inputs and sent outbox rows of flows that ended
    /// before `before_ms`. Safe: a finished flow ignores every input, so a
    /// very late duplicate still changes nothing. Returns the rows deleted.
    pub async fn forget_finished(&self, before_ms: i64) -> Result<u64, StoreError> {
        let finished = "SELECT flow_id FROM onboarding_flows WHERE scope = $1 AND terminal = 1 AND updated_at_ms < $2";
        let applied = sqlx::query(&format!("DELETE FROM onboarding_applied WHERE flow_id IN ({finished})"))
            .bind(&self.scope)
            .bind(before_ms)
            .execute(&self.pool)
            .await?;
        let sent = sqlx::query(&format!("DELETE FROM onboarding_outbox WHERE sent_at_ms IS NOT NULL AND flow_id IN ({finished})"))
            .bind(&self.scope)
            .bind(before_ms)
            .execute(&self.pool)
            .await?;
        Ok(applied.rows_affected() + sent.rows_affected())
    }

    /// Live flows whose deadline passed, most overdue first.
    pub async fn due(&self, now_ms: i64, limit: i64) -> Result<Vec<FlowRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {FLOW_COLUMNS} FROM onboarding_flows WHERE scope = $1 AND terminal = 0 AND deadline_at_ms <= $2 ORDER BY deadline_at_ms LIMIT $3"
        ))
        .bind(&self.scope)
        .bind(now_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(flow_from_row).collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(version: i64, state: &str) -> FlowRow {
        FlowRow {
            flow_id: "f1".into(),
            subject_id: "app-1".into(),
            correlation_id: "corr-1".into(),
            state: state.into(),
            terminal: state == "approved",
            version,
            deadline_at_ms: (state != "approved").then_some(100),
            data: "{}".into(),
        }
    }

    #[tokio::test]
    async fn transitions_apply_once_and_compare_the_version() {
        let store = Store::connect("sqlite::memory:").await.expect("sqlite");
        let flows = OnboardingStore::open(&store, "onboarding.commands.v1").await.expect("ddl");
        let first = row(1, "kyc_pending");
        let create = FlowWrite { row: &first, expected_version: None, input_key: "cmd:start", outbox: vec![("kyc", "{}".into()), ("event", "{}".into())], audit: vec![("onboarding_transition", "{}".into())] };
        assert_eq!(flows.commit(&create).await.expect("create"), Commit::Applied);
        assert_eq!(flows.commit(&create).await.expect("again"), Commit::Duplicate);
        let second = row(2, "approved");
        let next = FlowWrite { row: &second, expected_version: Some(1), input_key: "kyc.1", outbox: vec![], audit: vec![("onboarding_transition", "{}".into())] };
        assert_eq!(flows.commit(&next).await.expect("next"), Commit::Applied);
        // Another input computed from version 1 lost the race: nothing written.
        let stale = FlowWrite { input_key: "timeout:1", ..next.clone() };
        assert_eq!(flows.commit(&stale).await.expect("stale"), Commit::Conflict);
        assert!(!flows.was_applied("f1", "timeout:1").await.expect("read"), "a lost race leaves no applied row");
        let loaded = flows.load("f1").await.expect("load").expect("row");
        assert_eq!((loaded.version, loaded.terminal, loaded.deadline_at_ms), (2, true, None));
        assert_eq!(store.audit_count("app-1").await.expect("count"), 2);
        let unsent = flows.unsent_of("f1").await.expect("outbox");
        assert_eq!(unsent.iter().map(|m| (m.seq, m.kind.as_str())).collect::<Vec<_>>(), [(100, "kyc"), (101, "event")]);
        flows.mark_sent("f1", 100).await.expect("sent");
        assert_eq!(flows.unsent_of("f1").await.expect("outbox").len(), 1);
        assert!(flows.due(1_000, 10).await.expect("due").is_empty(), "terminal flows are never due");
        let other = OnboardingStore::open(&store, "test-x.onboarding.commands.v1").await.expect("ddl");
        assert!(other.unsent_before(i64::MAX, 10).await.expect("outbox").is_empty(), "another deployment's outbox is not ours");
        assert_eq!(other.forget_finished(i64::MAX).await.expect("forget"), 0, "nor its flows");
        // The finished flow's applied inputs and its sent row go; the unsent row stays.
        assert_eq!(flows.forget_finished(i64::MAX).await.expect("forget"), 3);
        assert!(!flows.was_applied("f1", "kyc.1").await.expect("read"));
        assert_eq!(flows.unsent_of("f1").await.expect("outbox").len(), 1);
    }
}
