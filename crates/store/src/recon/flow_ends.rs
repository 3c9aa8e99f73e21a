//! The waiting ends of the reconciler's flow-latency joins
//! (`switchyard_recon::flows`): a payout command whose paid event has not
//! been read yet (or the reverse), an onboarding flow's start awaiting its
//! terminal transition, and the flows already observed. Kept here so a
//! restarted reconciler still joins a flow whose first end it read before
//! the restart, and does not count a re-read flow twice.
//!
//! One row per flow: its ends arrive one at a time and the state only moves
//! forward (waiting -> observed), so an upsert per flow is the whole write.
//! Rows age out after the retention the reconciler passes to
//! [`ReconStore::prune_flow_ends`]: a flow whose other end comes later than
//! that is not observed, as it would not be by the in-memory bound either.

use super::{Cell, ReconStore};
use crate::StoreError;
use sqlx::Row;

pub(super) const DDL: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS recon_flow_ends (
        scope TEXT NOT NULL,
        flow_key TEXT NOT NULL,
        end_kind TEXT NOT NULL,
        at_ms BIGINT NOT NULL,
        stored_at_ms BIGINT NOT NULL,
        PRIMARY KEY (scope, flow_key)
    )",
    // Retention deletes and the start-up load read by age.
    "CREATE INDEX IF NOT EXISTS recon_flow_ends_age ON recon_flow_ends (scope, stored_at_ms)",
];

/// One flow's stored state: `flow_key` is the reconciler's own
/// (`payouts:<payout id>`, `onboarding:<flow id>`), `end_kind` which end
/// waits (`requested`, `paid`, `started`) or `observed`, `at_ms` that end's
/// timestamp as carried on the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowEnd {
    pub flow_key: String,
    pub end_kind: String,
    pub at_ms: i64,
}

impl ReconStore {
    /// Writes each flow's latest state; a later state of the same flow
    /// replaces the earlier one. One statement per 10,000 flows.
    pub async fn save_flow_ends(&self, ends: &[FlowEnd], now_ms: i64) -> Result<(), StoreError> {
        if ends.is_empty() {
            return Ok(());
        }
        let rows: Vec<Vec<Cell<'_>>> = ends
            .iter()
            .map(|e| {
                vec![
                    Cell::Text(Some(&e.flow_key)),
                    Cell::Text(Some(&e.end_kind)),
                    Cell::Int(e.at_ms),
                    Cell::Int(now_ms),
                ]
            })
            .collect();
        let columns = [
            ("flow_key", false),
            ("end_kind", false),
            ("at_ms", true),
            ("stored_at_ms", true),
        ];
        let tail = "ON CONFLICT (scope, flow_key) DO UPDATE SET end_kind = excluded.end_kind, at_ms = excluded.at_ms, \
                    stored_at_ms = excluded.stored_at_ms";
        let mut conn = self.pool.acquire().await?;
        self.insert_rows(&mut conn, "recon_flow_ends", &columns, rows, tail)
            .await
    }

    /// The newest `limit` flows stored, oldest first (the order the
    /// in-memory maps forget them in).
    pub async fn load_flow_ends(&self, limit: usize) -> Result<Vec<FlowEnd>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = sqlx::query(
            "SELECT flow_key, end_kind, at_ms FROM recon_flow_ends WHERE scope = $1 ORDER BY stored_at_ms DESC, flow_key DESC LIMIT $2",
        )
        .bind(self.scope.as_str())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut ends = rows
            .iter()
            .map(|r| {
                Ok(FlowEnd {
                    flow_key: r.try_get("flow_key")?,
                    end_kind: r.try_get("end_kind")?,
                    at_ms: r.try_get("at_ms")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        ends.reverse();
        Ok(ends)
    }

    /// Forgets flows stored before `before_ms`; returns how many.
    pub async fn prune_flow_ends(&self, before_ms: i64) -> Result<u64, StoreError> {
        let done =
            sqlx::query("DELETE FROM recon_flow_ends WHERE scope = $1 AND stored_at_ms < $2")
                .bind(self.scope.as_str())
                .bind(before_ms)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(key: &str, kind: &str, at: i64) -> FlowEnd {
        FlowEnd {
            flow_key: key.into(),
            end_kind: kind.into(),
            at_ms: at,
        }
    }

    #[tokio::test]
    async fn the_latest_state_per_flow_survives_and_ages_out() {
        let scope = format!(
            "flow-ends-{}-{}",
            std::process::id(),
            switchyard_canonical::now_ms()
        );
        let mut urls = vec!["sqlite::memory:".to_owned()];
        let pg = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        match ReconStore::connect(&pg, &scope).await {
            Ok(_) => urls.push(pg),
            Err(e) if std::env::var("CI").is_ok() => panic!("PostgreSQL required in CI: {e}"),
            Err(e) => eprintln!("skipping PostgreSQL: {e}"),
        }
        for url in urls {
            let store = ReconStore::connect(&url, &scope).await.expect("connect");
            store
                .save_flow_ends(
                    &[
                        end("payouts:a", "requested", 10),
                        end("onboarding:f", "started", 5),
                    ],
                    1_000,
                )
                .await
                .expect("save");
            store
                .save_flow_ends(
                    &[
                        end("payouts:a", "observed", 0),
                        end("payouts:b", "paid", 30),
                    ],
                    2_000,
                )
                .await
                .expect("save");
            let got = store.load_flow_ends(10).await.expect("load");
            assert_eq!(
                got,
                vec![
                    end("onboarding:f", "started", 5),
                    end("payouts:a", "observed", 0),
                    end("payouts:b", "paid", 30)
                ],
                "{url}"
            );
            assert_eq!(
                store.load_flow_ends(1).await.expect("load"),
                vec![end("payouts:b", "paid", 30)],
                "the newest when bounded"
            );
            assert_eq!(
                store.prune_flow_ends(1_500).await.expect("prune"),
                1,
                "{url}"
            );
            assert_eq!(
                store.load_flow_ends(10).await.expect("load").len(),
                2,
                "{url}"
            );
        }
    }
}
