//! Paging through the kept payout commands (`recon_commands`) to rewrite
//! the ones stored before their personal part was sealed: the table keeps
//! every command for good, so without this a deployment's older rows would
//! hold beneficiaries' names and accounts in clear forever.

use super::ReconStore;
use crate::StoreError;
use sqlx::Row;

/// A kept command as stored, with its row key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptRow {
    pub subject_id: String,
    pub idempotency_key: String,
    pub command: String,
}

impl ReconStore {
    /// Up to `limit` kept commands of this scope after `after` (subject,
    /// key) in key order, with no `"personal"` field: stored before sealing.
    pub async fn unsealed_commands(&self, after: (&str, &str), limit: i64) -> Result<(Vec<KeptRow>, Option<(String, String)>), StoreError> {
        let rows = sqlx::query(
            "SELECT subject_id, idempotency_key, command FROM recon_commands WHERE scope = $1 \
             AND (subject_id > $2 OR (subject_id = $2 AND idempotency_key > $3)) ORDER BY subject_id, idempotency_key LIMIT $4",
        )
        .bind(self.scope.as_str())
        .bind(after.0)
        .bind(after.1)
        .bind(limit)
        .persistent(false)
        .fetch_all(&self.pool)
        .await?;
        let mut last = None;
        let mut unsealed = Vec::new();
        for r in rows {
            let row = KeptRow { subject_id: r.try_get("subject_id")?, idempotency_key: r.try_get("idempotency_key")?, command: r.try_get("command")? };
            last = Some((row.subject_id.clone(), row.idempotency_key.clone()));
            let sealed = serde_json::from_str::<serde_json::Value>(&row.command).ok().is_some_and(|v| v.get("personal").is_some());
            if !sealed {
                unsealed.push(row);
            }
        }
        Ok((unsealed, last))
    }

    /// Replaces a kept command if it is still `old` (an erasure may have
    /// blanked it meanwhile); whether it was replaced.
    pub async fn replace_command(&self, row: &KeptRow, new: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE recon_commands SET command = $1 WHERE scope = $2 AND subject_id = $3 AND idempotency_key = $4 AND command = $5")
            .bind(new)
            .bind(self.scope.as_str())
            .bind(&row.subject_id)
            .bind(&row.idempotency_key)
            .bind(&row.command)
            .persistent(false)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
