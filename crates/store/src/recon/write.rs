//! Writes shared by the recon store's statements: rows sent as JSON arrays,
//! and the upserts of subjects and discrepancies a verdict produces.

use super::{Judged, MAX_BINDS, DISCREPANCY_COLUMNS};
use crate::records::{Bind, Sql};
use crate::StoreError;
use sqlx::Row;
use switchyard_canonical::Discrepancy;

/// One value of a row sent as JSON.
pub(super) enum Cell<'a> {
    Text(Option<&'a str>),
    Int(i64),
    OptInt(Option<i64>),
}

pub(super) fn json_ids(ids: &[&str]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".into())
}

pub(super) fn push_json_row(out: &mut String, row: &[Cell<'_>]) {
    use std::fmt::Write;
    out.push('[');
    for (i, cell) in row.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match cell {
            // PostgreSQL text cannot hold NUL; a vendor string carrying one
            // must not wedge the consumer on a batch that can never commit.
            Cell::Text(Some(t)) if t.contains('\0') => out.push_str(&serde_json::to_string(&t.replace('\0', "")).unwrap_or_else(|_| "null".into())),
            Cell::Text(Some(t)) => out.push_str(&serde_json::to_string(t).unwrap_or_else(|_| "null".into())),
            Cell::Int(n) | Cell::OptInt(Some(n)) => {
                let _ = write!(out, "{n}");
            }
            Cell::Text(None) | Cell::OptInt(None) => out.push_str("null"),
        }
    }
    out.push(']');
}

/// Upserts subjects' due time and open count. `conditional`: only where the
/// stored version still equals the one judged; returns the subjects written.
pub(super) async fn write_subjects(
    conn: &mut sqlx::AnyConnection,
    scope: &str,
    judged: &[&Judged],
    conditional: bool,
) -> Result<std::collections::HashSet<String>, StoreError> {
    let mut applied = std::collections::HashSet::new();
    for chunk in judged.chunks(MAX_BINDS / 5) {
        let mut q = Sql::new("INSERT INTO recon_subjects (scope, subject_id, version, due_at_ms, open_count) VALUES ");
        for (i, j) in chunk.iter().enumerate() {
            if i > 0 {
                q.push(", ");
            }
            q.tuple([
                Bind::Text(Some(scope)),
                Bind::Text(Some(&j.subject_id)),
                Bind::Int(j.version.max(1)),
                j.next_due_at_ms.map_or(Bind::OptInt(None), Bind::Int),
                Bind::Int(j.open_count),
            ]);
        }
        q.push(" ON CONFLICT (scope, subject_id) DO UPDATE SET due_at_ms = excluded.due_at_ms, open_count = excluded.open_count");
        if conditional {
            q.push(" WHERE recon_subjects.version = excluded.version RETURNING subject_id");
            for r in q.query().persistent(false).fetch_all(&mut *conn).await? {
                applied.insert(r.try_get::<String, _>("subject_id")?);
            }
        } else {
            q.query().persistent(false).execute(&mut *conn).await?;
        }
    }
    Ok(applied)
}

/// Upserts discrepancy records by id; the caller decides detection times.
pub(super) async fn write_discrepancies(conn: &mut sqlx::AnyConnection, scope: &str, changed: &[&Discrepancy]) -> Result<(), StoreError> {
    let now = switchyard_canonical::now_ms();
    let providers: Vec<String> = changed.iter().map(|d| d.providers.join(",")).collect();
    for (chunk, providers) in changed.chunks(MAX_BINDS / 12).zip(providers.chunks(MAX_BINDS / 12)) {
        let mut q = Sql::new(format!("INSERT INTO recon_discrepancies ({DISCREPANCY_COLUMNS}, scope, updated_at_ms) VALUES "));
        for (i, (d, providers)) in chunk.iter().zip(providers).enumerate() {
            if i > 0 {
                q.push(", ");
            }
            q.tuple([
                Bind::Text(Some(&d.discrepancy_id)),
                Bind::Text(Some(d.class.as_str())),
                Bind::Text(Some(&d.domain)),
                Bind::Text(Some(&d.subject_id)),
                Bind::Text(Some(providers)),
                Bind::Text(Some(&d.expected)),
                Bind::Text(Some(&d.actual)),
                Bind::Text(Some(d.status.as_str())),
                Bind::Int(d.detected_at_ms),
                d.resolved_at_ms.map_or(Bind::OptInt(None), Bind::Int),
                Bind::Text(Some(scope)),
                Bind::Int(now),
            ]);
        }
        q.push(
            " ON CONFLICT (scope, discrepancy_id) DO UPDATE SET providers = excluded.providers, \
             expected = excluded.expected, actual = excluded.actual, status = excluded.status, \
             detected_at_ms = excluded.detected_at_ms, resolved_at_ms = excluded.resolved_at_ms, \
             updated_at_ms = excluded.updated_at_ms",
        );
        q.query().persistent(false).execute(&mut *conn).await?;
    }
    Ok(())
}
