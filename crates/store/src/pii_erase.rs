//! Erasing one data subject wherever the store keeps their personal data.
//!
//! A subject is an applicant (core banking's customer id), a payout (its
//! beneficiary) or a card (its cardholder). One transaction:
//!
//! - destroys the subject's data key in `pii_subject_keys`: every sealed
//!   copy (onboarding flows and outbox, the payout commands the reconciler
//!   keeps), in this database and in its backups, no longer opens;
//! - blanks the clear copies it knows: the onboarding flow and its outbox
//!   (applicants), the personal part of the kept payout command (payouts,
//!   also rows stored before sealing), and every free text a vendor may
//!   have written about the person: the message of a stored outcome's
//!   error (`idempotency_records`, `card_applied`) and the `error`,
//!   `reason` and `message` texts in the subject's audit entries;
//! - keeps what reconciliation, the SLA scorecard and the audit trail need:
//!   ids, amounts, currencies, statuses, providers, error classes and codes,
//!   latencies and timestamps (`recon_outcomes`, `recon_postings`,
//!   `recon_events` are not touched at all: they hold no personal data);
//! - writes one `pii_erased` audit entry: the kind, the counts, the tables,
//!   when and by whom; never a personal value.
//!
//! The gateway's stored answers (`gateway_requests.response_body`,
//! `gateway_resources.body`): the payout and card views carry ids, amounts,
//! statuses, the last four digits and error codes only, never a name, an
//! account number or a vendor message, so they stay as they are. An
//! applicant's AML screening views (and stored AML outcomes) name the list
//! entries they may be (`matched_name`, often the applicant's own name):
//! those names are replaced, list, score and matched fields stay.

use crate::pii::{Erasure, PiiKeys, ERASED};
use crate::StoreError;
use serde_json::Value;
use sqlx::{AnyPool, Row};

/// What replaces a free text that may quote a person.
pub const REDACTED: &str = "[erased]";

/// Whose personal data to erase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// An onboarding applicant, by core banking's customer id.
    Applicant(String),
    /// A payout's beneficiary, by the payout id.
    Payout(String),
    /// A card's cardholder, by our card id.
    Card(String),
}

impl Subject {
    pub fn kind(&self) -> &'static str {
        match self {
            Subject::Applicant(_) => "applicant",
            Subject::Payout(_) => "payout",
            Subject::Card(_) => "card",
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Subject::Applicant(id) | Subject::Payout(id) | Subject::Card(id) => id,
        }
    }

    /// The subject's row in `pii_subject_keys`. Applicants keep their bare
    /// customer id (as stored before payouts had keys); payouts and cards
    /// are prefixed, so a payout id equal to a customer id is another key.
    pub fn key_subject(&self) -> String {
        match self {
            Subject::Applicant(id) => id.clone(),
            Subject::Payout(id) => payout_key_subject(id),
            Subject::Card(id) => format!("card:{id}"),
        }
    }

    /// The worker domains whose idempotency records are about this subject.
    fn domains(&self) -> &'static [&'static str] {
        match self {
            Subject::Applicant(_) => &["kyc", "aml", "fraud", "onboarding"],
            Subject::Payout(_) => &["payouts"],
            Subject::Card(_) => &["cards"],
        }
    }
}

/// The data-key subject of a payout's beneficiary.
pub fn payout_key_subject(payout_id: &str) -> String {
    format!("payout:{payout_id}")
}

/// Whether `table` exists: a store used by one service only has that
/// service's tables, and erasure reaches what is there.
async fn has_table(pool: &AnyPool, table: &str) -> bool {
    sqlx::query(&format!("SELECT 1 FROM {table} WHERE 1 = 0")).fetch_optional(pool).await.is_ok()
}

/// `text` with what follows our `class/code: ` prefix replaced, or the whole
/// text if it is not one of our codes; None when nothing would change.
fn redact_text(text: &str) -> Option<String> {
    let code = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_/.-".contains(&b));
    let redacted = match text.split_once(": ") {
        Some((prefix, _)) if code(prefix) => format!("{prefix}: {REDACTED}"),
        None if code(text) => return None,
        _ => REDACTED.to_owned(),
    };
    (redacted != text).then_some(redacted)
}

/// An audit entry's detail with the free texts of its `error`, `reason`
/// and `message` fields redacted; None when there is nothing to change.
pub fn redact_detail(detail: &str) -> Option<String> {
    let Ok(Value::Object(mut map)) = serde_json::from_str::<Value>(detail) else {
        return None;
    };
    let mut changed = false;
    for field in ["error", "reason", "message"] {
        if let Some(Value::String(text)) = map.get_mut(field) {
            if let Some(new) = redact_text(text) {
                *text = new;
                changed = true;
            }
        }
    }
    changed.then(|| Value::Object(map).to_string())
}

/// A stored outcome or view with its error's message (vendor text) and
/// the names of screening matches redacted; class, code, list and score
/// stay. None when there is nothing to change.
fn redact_outcome(outcome: &str) -> Option<String> {
    let mut value: Value = serde_json::from_str(outcome).ok()?;
    let map = value.as_object_mut()?;
    let mut changed = false;
    let mut redact = |text: Option<&mut Value>| {
        if let Some(text) = text.filter(|t| t.is_string() && t.as_str() != Some(REDACTED)) {
            *text = Value::String(REDACTED.to_owned());
            changed = true;
        }
    };
    redact(map.get_mut("error").and_then(|e| e.get_mut("message")));
    if let Some(matches) = map.get_mut("matches").and_then(Value::as_array_mut) {
        for m in matches {
            redact(m.get_mut("matched_name"));
        }
    }
    changed.then(|| value.to_string())
}

/// A kept payout command without its personal part: beneficiary name and
/// account, the statement reference and the sealed copy of them. Amount,
/// currency, country, rail, ids and the fingerprint stay.
fn blank_command(command: &str) -> Option<String> {
    let mut value: Value = serde_json::from_str(command).ok()?;
    let before = value.clone();
    if let Some(b) = value.get_mut("beneficiary").and_then(Value::as_object_mut) {
        b.insert("name".into(), Value::String(String::new()));
        b.insert("iban".into(), Value::String(String::new()));
    }
    let map = value.as_object_mut()?;
    map.insert("reference".into(), Value::String(String::new()));
    map.insert("personal".into(), Value::String(ERASED.to_owned()));
    (value != before).then(|| value.to_string())
}

impl PiiKeys {
    /// Erases `subject` (see the module doc) and attests it in the audit
    /// log as `pii_erased` by `actor`. Safe to repeat: a second run finds
    /// nothing left and attests that.
    pub async fn erase_subject(&self, subject: &Subject, actor: &str) -> Result<Erasure, StoreError> {
        let now = switchyard_canonical::now_ms();
        let id = subject.id();
        let pool = self.pool();
        // Probed before the transaction: a failed statement aborts a PostgreSQL one.
        let commands_kept = matches!(subject, Subject::Payout(_)) && has_table(pool, "recon_commands").await;
        let cards_kept = matches!(subject, Subject::Card(_)) && has_table(pool, "card_applied").await;
        let views_kept = matches!(subject, Subject::Applicant(_)) && has_table(pool, "gateway_resources").await;
        let mut tx = pool.begin().await?;
        let mut done = Erasure { kind: subject.kind(), at_ms: now, ..Erasure::default() };
        done.tables.push("pii_subject_keys");
        done.key_destroyed = sqlx::query("DELETE FROM pii_subject_keys WHERE subject_id = $1")
            .bind(subject.key_subject())
            .execute(&mut *tx)
            .await?
            .rows_affected()
            > 0;
        if let Subject::Applicant(_) = subject {
            let (flows, outbox) = crate::pii::blank_flows(&mut tx, id, now).await?;
            done.flows = flows;
            done.outbox_messages = outbox;
            done.tables.extend(["onboarding_flows", "onboarding_outbox"]);
        }
        if commands_kept {
            let rows = sqlx::query("SELECT scope, idempotency_key, command FROM recon_commands WHERE subject_id = $1")
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
            for r in rows {
                let command: String = r.try_get("command")?;
                let Some(blank) = blank_command(&command) else { continue };
                let scope: String = r.try_get("scope")?;
                let key: String = r.try_get("idempotency_key")?;
                sqlx::query("UPDATE recon_commands SET command = $1 WHERE scope = $2 AND subject_id = $3 AND idempotency_key = $4")
                    .bind(blank)
                    .bind(scope)
                    .bind(id)
                    .bind(key)
                    .execute(&mut *tx)
                    .await?;
                done.commands += 1;
            }
            done.tables.push("recon_commands");
        }
        // Stored outcomes: the worker answers a re-sent command from them, so
        // they stay, with the vendor's message replaced.
        for domain in subject.domains() {
            let rows = sqlx::query("SELECT idempotency_key, outcome FROM idempotency_records WHERE domain = $1 AND subject_id = $2")
                .bind(*domain)
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
            for r in rows {
                let Some(outcome) = r.try_get::<Option<String>, _>("outcome")? else { continue };
                let Some(redacted) = redact_outcome(&outcome) else { continue };
                let key: String = r.try_get("idempotency_key")?;
                sqlx::query("UPDATE idempotency_records SET outcome = $1 WHERE domain = $2 AND idempotency_key = $3")
                    .bind(redacted)
                    .bind(*domain)
                    .bind(key)
                    .execute(&mut *tx)
                    .await?;
                done.outcome_texts += 1;
            }
        }
        done.tables.push("idempotency_records");
        if cards_kept {
            let rows = sqlx::query("SELECT idempotency_key, outcome FROM card_applied WHERE card_id = $1").bind(id).fetch_all(&mut *tx).await?;
            for r in rows {
                let outcome: String = r.try_get("outcome")?;
                let Some(redacted) = redact_outcome(&outcome) else { continue };
                let key: String = r.try_get("idempotency_key")?;
                sqlx::query("UPDATE card_applied SET outcome = $1 WHERE card_id = $2 AND idempotency_key = $3")
                    .bind(redacted)
                    .bind(id)
                    .bind(key)
                    .execute(&mut *tx)
                    .await?;
                done.outcome_texts += 1;
            }
            done.tables.push("card_applied");
        }
        if views_kept {
            done.gateway_views = redact_screening_views(&mut tx, id).await?;
            done.tables.push("gateway_resources");
        }
        // The audit log has no key: an entry is matched by all it says.
        let rows = sqlx::query("SELECT at_ms, action, correlation_id, detail FROM audit_log WHERE subject_id = $1 AND action <> 'pii_erased'")
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
        for r in rows {
            let detail: String = r.try_get("detail")?;
            let Some(redacted) = redact_detail(&detail) else { continue };
            let (at_ms, action, correlation): (i64, String, String) = (r.try_get("at_ms")?, r.try_get("action")?, r.try_get("correlation_id")?);
            done.audit_texts += sqlx::query(
                "UPDATE audit_log SET detail = $1 WHERE subject_id = $2 AND at_ms = $3 AND action = $4 AND correlation_id = $5 AND detail = $6",
            )
            .bind(redacted)
            .bind(id)
            .bind(at_ms)
            .bind(action)
            .bind(correlation)
            .bind(detail)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        done.tables.push("audit_log");
        let detail = serde_json::to_string(&done).unwrap_or_default();
        sqlx::query("INSERT INTO audit_log (at_ms, actor, action, subject_id, correlation_id, detail) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(now)
            .bind(actor)
            .bind("pii_erased")
            .bind(id)
            .bind("")
            .bind(detail)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done)
    }
}

/// Replaces the matched names in the applicant's AML screening views; the
/// views name their subject only inside the body. Returns how many changed.
async fn redact_screening_views(tx: &mut sqlx::Transaction<'_, sqlx::Any>, id: &str) -> Result<u64, StoreError> {
    let pattern = format!("%\"subject_id\":{}%", Value::from(id));
    let rows = sqlx::query("SELECT resource_id, body FROM gateway_resources WHERE domain = 'aml' AND body LIKE $1")
        .bind(pattern)
        .fetch_all(&mut **tx)
        .await?;
    let mut changed = 0;
    for r in rows {
        let body: String = r.try_get("body")?;
        // LIKE's `_` matches any character: the subject must be this one.
        let subject = serde_json::from_str::<Value>(&body).ok().and_then(|v| v.get("subject_id")?.as_str().map(str::to_owned));
        if subject.as_deref() != Some(id) {
            continue;
        }
        let Some(redacted) = redact_outcome(&body) else { continue };
        let resource: String = r.try_get("resource_id")?;
        sqlx::query("UPDATE gateway_resources SET body = $1 WHERE domain = 'aml' AND resource_id = $2")
            .bind(redacted)
            .bind(resource)
            .execute(&mut **tx)
            .await?;
        changed += 1;
    }
    Ok(changed)
}

#[cfg(test)]
#[path = "pii_erase_tests.rs"]
mod tests;
