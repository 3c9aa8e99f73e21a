//! The recon tables.

/// Fact tables are keyed by subject first: the only read is "everything
/// about these subjects", served by the primary key without a second index.
/// (A re-sent posting or event keeps its subject, so deduplication holds.)
pub(super) const DDL: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS recon_outcomes (
        scope TEXT NOT NULL,
        subject_id TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        status TEXT NOT NULL,
        status_rank BIGINT NOT NULL,
        provider TEXT,
        provider_reference TEXT,
        amount_minor BIGINT NOT NULL,
        currency TEXT NOT NULL,
        correlation_id TEXT,
        completed_at_ms BIGINT NOT NULL,
        PRIMARY KEY (scope, subject_id, idempotency_key)
    )",
    "CREATE TABLE IF NOT EXISTS recon_postings (
        scope TEXT NOT NULL,
        posting_id TEXT NOT NULL,
        subject_id TEXT NOT NULL,
        idempotency_key TEXT,
        correlation_id TEXT,
        kind TEXT NOT NULL,
        amount_minor BIGINT NOT NULL,
        currency TEXT NOT NULL,
        posted_at_ms BIGINT NOT NULL,
        PRIMARY KEY (scope, subject_id, posting_id)
    )",
    "CREATE TABLE IF NOT EXISTS recon_events (
        scope TEXT NOT NULL,
        provider TEXT NOT NULL,
        event_id TEXT NOT NULL,
        subject_id TEXT NOT NULL,
        provider_reference TEXT NOT NULL,
        kind TEXT NOT NULL,
        amount_minor BIGINT,
        currency TEXT,
        occurred_at_ms BIGINT NOT NULL,
        received_at_ms BIGINT NOT NULL,
        PRIMARY KEY (scope, subject_id, provider, event_id)
    )",
    "CREATE TABLE IF NOT EXISTS recon_subjects (
        scope TEXT NOT NULL,
        subject_id TEXT NOT NULL,
        version BIGINT NOT NULL,
        due_at_ms BIGINT,
        open_count BIGINT NOT NULL,
        PRIMARY KEY (scope, subject_id)
    )",
    // Only subjects with a timer are indexed: clean ones cost no index entry.
    "CREATE INDEX IF NOT EXISTS recon_subjects_timer ON recon_subjects (scope, due_at_ms) WHERE due_at_ms IS NOT NULL",
    "CREATE TABLE IF NOT EXISTS recon_discrepancies (
        scope TEXT NOT NULL,
        discrepancy_id TEXT NOT NULL,
        class TEXT NOT NULL,
        domain TEXT NOT NULL,
        subject_id TEXT NOT NULL,
        providers TEXT NOT NULL,
        expected TEXT NOT NULL,
        actual TEXT NOT NULL,
        status TEXT NOT NULL,
        detected_at_ms BIGINT NOT NULL,
        resolved_at_ms BIGINT,
        updated_at_ms BIGINT NOT NULL,
        PRIMARY KEY (scope, discrepancy_id)
    )",
    "CREATE INDEX IF NOT EXISTS recon_discrepancies_subject ON recon_discrepancies (scope, subject_id)",
    // The commands themselves, kept only so a vendor can be asked about a
    // stuck payout with the exact request it may have seen.
    "CREATE TABLE IF NOT EXISTS recon_commands (
        scope TEXT NOT NULL,
        subject_id TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        command TEXT NOT NULL,
        PRIMARY KEY (scope, subject_id, idempotency_key)
    )",
];
