//! Open banking consents: the open banking worker's state, with its own DDL.
//!
//! One row per consent (`ob_consents`): the consent machine as JSON (the
//! canonical `Consent`), its state for queries, the provider and its id of
//! the connection (Plaid item id), the provider's access token **encrypted**
//! (`access_token_enc`: the worker's vault seals it before it reaches this
//! module; no plaintext column exists), and the sync position: the
//! provider's cursor and `page_seq`, the number of data pages published
//! over the consent's life.
//!
//! Every write compares and sets: consent changes on `version` (the event
//! counter), page progress on `page_seq`. The worker stores a page's cursor
//! only after the page was acknowledged by the broker
//! ([`ConsentStore::advance`]), so a redelivered refresh resumes after the
//! last published page: it skips none and publishes none twice.
//!
//! `last_key` / `last_outcome`: the command that last changed the consent
//! and its answer, written with the change, so a redelivery after a crash
//! (the change stored, the claim not completed) answers the same without a
//! provider call. `refresh_key` / `refresh_pages` / `refresh_accounts_done`:
//! how far the refresh under that key got, for its outcome's page count and
//! so a resumed refresh does not pull accounts again.

use crate::{Store, StoreError};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

const DDL: &[&str] = &["CREATE TABLE IF NOT EXISTS ob_consents (
        consent_id TEXT NOT NULL PRIMARY KEY,
        provider TEXT NOT NULL,
        state TEXT NOT NULL,
        consent TEXT NOT NULL,
        version BIGINT NOT NULL,
        provider_reference TEXT,
        institution_id TEXT,
        access_token_enc TEXT,
        sync_cursor TEXT,
        page_seq BIGINT NOT NULL,
        known_accounts TEXT NOT NULL,
        refresh_key TEXT,
        refresh_pages BIGINT NOT NULL,
        refresh_accounts_done BIGINT NOT NULL,
        last_key TEXT,
        last_outcome TEXT,
        created_at_ms BIGINT NOT NULL,
        updated_at_ms BIGINT NOT NULL
    )",
    // Scheduled refreshes: when each consent's next one is due, and how many
    // periods were claimed. Claiming a period is a compare-and-set on
    // `period_seq`, so across worker instances one wins each period.
    "CREATE TABLE IF NOT EXISTS ob_refresh_schedule (
        consent_id TEXT NOT NULL PRIMARY KEY,
        due_at_ms BIGINT NOT NULL,
        period_seq BIGINT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS ob_refresh_schedule_due ON ob_refresh_schedule (due_at_ms)"];

/// A scheduled refresh that is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueRefresh {
    pub consent_id: String,
    /// The period to claim: its refresh's idempotency key names it.
    pub period_seq: i64,
}

/// A consent as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRow {
    pub consent_id: String,
    pub provider: String,
    pub state: String,
    /// The canonical `Consent` as JSON.
    pub consent: String,
    pub version: i64,
    pub provider_reference: Option<String>,
    pub institution_id: Option<String>,
    /// Sealed by the worker's vault; opaque here.
    pub access_token_enc: Option<String>,
    pub sync_cursor: Option<String>,
    pub page_seq: i64,
    /// Account ids published so far, comma separated (added vs modified).
    pub known_accounts: String,
    pub refresh_key: Option<String>,
    pub refresh_pages: i64,
    pub refresh_accounts_done: bool,
    pub last_key: Option<String>,
    pub last_outcome: Option<String>,
}

impl ConsentRow {
    pub fn known_account_ids(&self) -> Vec<&str> {
        self.known_accounts.split(',').filter(|s| !s.is_empty()).collect()
    }

    /// Pages published so far by the refresh under `key` (0 for another key).
    pub fn pages_of(&self, key: &str) -> i64 {
        if self.refresh_key.as_deref() == Some(key) {
            self.refresh_pages
        } else {
            0
        }
    }

    pub fn accounts_done_for(&self, key: &str) -> bool {
        self.refresh_key.as_deref() == Some(key) && self.refresh_accounts_done
    }
}

/// A published page's effect on the sync position.
#[derive(Debug, Clone)]
pub struct PageAdvance<'a> {
    pub consent_id: &'a str,
    /// The page count the page was published against (compare-and-set).
    pub expected_seq: i64,
    /// True when a page was published (the count moves); false for an
    /// empty page whose cursor is stored without publishing anything.
    pub published: bool,
    /// The cursor to continue from; none leaves it as it is.
    pub cursor: Option<&'a str>,
    pub refresh_key: &'a str,
    /// This page carried the refresh's accounts.
    pub accounts_done: bool,
    /// The account ids known after this page.
    pub known_accounts: Option<String>,
}

#[derive(Clone)]
pub struct ConsentStore {
    pool: AnyPool,
}

const COLUMNS: &str = "consent_id, provider, state, consent, version, provider_reference, institution_id, access_token_enc, sync_cursor, \
    page_seq, known_accounts, refresh_key, refresh_pages, refresh_accounts_done, last_key, last_outcome";

/// The columns of a [`ConsentRow`], for queries elsewhere in the crate.
pub(crate) const CONSENT_COLUMNS: &str = COLUMNS;

/// Reads a [`ConsentRow`] selected with [`CONSENT_COLUMNS`].
pub(crate) fn consent_row(r: &AnyRow) -> Result<ConsentRow, sqlx::Error> {
    row(r)
}

fn row(r: &AnyRow) -> Result<ConsentRow, sqlx::Error> {
    Ok(ConsentRow {
        consent_id: r.try_get("consent_id")?,
        provider: r.try_get("provider")?,
        state: r.try_get("state")?,
        consent: r.try_get("consent")?,
        version: r.try_get("version")?,
        provider_reference: r.try_get("provider_reference")?,
        institution_id: r.try_get("institution_id")?,
        access_token_enc: r.try_get("access_token_enc")?,
        sync_cursor: r.try_get("sync_cursor")?,
        page_seq: r.try_get("page_seq")?,
        known_accounts: r.try_get("known_accounts")?,
        refresh_key: r.try_get("refresh_key")?,
        refresh_pages: r.try_get("refresh_pages")?,
        refresh_accounts_done: r.try_get::<i64, _>("refresh_accounts_done")? != 0,
        last_key: r.try_get("last_key")?,
        last_outcome: r.try_get("last_outcome")?,
    })
}

impl ConsentStore {
    /// Creates the table if needed.
    pub async fn open(store: &Store) -> Result<Self, StoreError> {
        let pool = store.pool().clone();
        crate::schema::create_all(&pool, DDL).await?;
        Ok(Self { pool })
    }

    pub async fn load(&self, consent_id: &str) -> Result<Option<ConsentRow>, StoreError> {
        let r = sqlx::query(&format!("SELECT {COLUMNS} FROM ob_consents WHERE consent_id = $1")).bind(consent_id).fetch_optional(&self.pool).await?;
        Ok(r.as_ref().map(row).transpose()?)
    }

    /// Creates a consent; false when it exists already (another delivery).
    pub async fn insert(&self, new: &ConsentRow) -> Result<bool, StoreError> {
        let now = switchyard_canonical::now_ms();
        let q = format!(
            "INSERT INTO ob_consents ({COLUMNS}, created_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $17) ON CONFLICT (consent_id) DO NOTHING"
        );
        let done = sqlx::query(&q)
            .bind(&new.consent_id)
            .bind(&new.provider)
            .bind(&new.state)
            .bind(&new.consent)
            .bind(new.version)
            .bind(new.provider_reference.clone())
            .bind(new.institution_id.clone())
            .bind(new.access_token_enc.clone())
            .bind(new.sync_cursor.clone())
            .bind(new.page_seq)
            .bind(&new.known_accounts)
            .bind(new.refresh_key.clone())
            .bind(new.refresh_pages)
            .bind(i64::from(new.refresh_accounts_done))
            .bind(new.last_key.clone())
            .bind(new.last_outcome.clone())
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Writes a consent change (state, machine, token, last answer),
    /// comparing and setting `version`; the sync position is
    /// [`ConsentStore::advance`]'s and is left alone. False: another
    /// delivery changed it first.
    pub async fn update(&self, new: &ConsentRow, expected_version: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE ob_consents SET state = $2, consent = $3, version = $4, provider_reference = $5, institution_id = $6, \
             access_token_enc = $7, last_key = $8, last_outcome = $9, updated_at_ms = $10 WHERE consent_id = $1 AND version = $11",
        )
        .bind(&new.consent_id)
        .bind(&new.state)
        .bind(&new.consent)
        .bind(new.version)
        .bind(new.provider_reference.clone())
        .bind(new.institution_id.clone())
        .bind(new.access_token_enc.clone())
        .bind(new.last_key.clone())
        .bind(new.last_outcome.clone())
        .bind(switchyard_canonical::now_ms())
        .bind(expected_version)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a page as published (or an empty page's cursor), comparing
    /// and setting `page_seq`. False: another delivery moved it first.
    pub async fn advance(&self, a: &PageAdvance<'_>) -> Result<bool, StoreError> {
        let step = i64::from(a.published);
        let done = sqlx::query(
            "UPDATE ob_consents SET page_seq = page_seq + $1, sync_cursor = COALESCE($2, sync_cursor), \
             refresh_pages = CASE WHEN refresh_key = $3 THEN refresh_pages + $1 ELSE $1 END, \
             refresh_accounts_done = CASE WHEN refresh_key = $3 THEN refresh_accounts_done ELSE 0 END + $4, \
             refresh_key = $3, known_accounts = COALESCE($5, known_accounts), updated_at_ms = $6 \
             WHERE consent_id = $7 AND page_seq = $8",
        )
        .bind(step)
        .bind(a.cursor.map(str::to_owned))
        .bind(a.refresh_key)
        .bind(i64::from(a.accounts_done))
        .bind(a.known_accounts.clone())
        .bind(switchyard_canonical::now_ms())
        .bind(a.consent_id)
        .bind(a.expected_seq)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

impl ConsentStore {
    /// Puts consents that can be refreshed (active or expiring) and have no
    /// schedule yet on it, first due at `first_due(consent_id)`; returns how many.
    pub async fn schedule_new(&self, first_due: impl Fn(&str) -> i64) -> Result<usize, StoreError> {
        let rows = sqlx::query(
            "SELECT c.consent_id FROM ob_consents c LEFT JOIN ob_refresh_schedule s ON s.consent_id = c.consent_id \
             WHERE s.consent_id IS NULL AND c.state IN ('ACTIVE', 'EXPIRING')",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut added = 0;
        for r in rows {
            let id: String = r.try_get("consent_id")?;
            let done = sqlx::query("INSERT INTO ob_refresh_schedule (consent_id, due_at_ms, period_seq) VALUES ($1, $2, 0) ON CONFLICT (consent_id) DO NOTHING")
                .bind(&id)
                .bind(first_due(&id))
                .execute(&self.pool)
                .await?;
            added += done.rows_affected() as usize;
        }
        Ok(added)
    }

    /// Up to `limit` refreshes due at `now` of consents that can be refreshed.
    pub async fn due_refreshes(&self, now_ms: i64, limit: i64) -> Result<Vec<DueRefresh>, StoreError> {
        let rows = sqlx::query(
            "SELECT s.consent_id, s.period_seq FROM ob_refresh_schedule s JOIN ob_consents c ON c.consent_id = s.consent_id \
             WHERE s.due_at_ms <= $1 AND c.state IN ('ACTIVE', 'EXPIRING') ORDER BY s.due_at_ms LIMIT $2",
        )
        .bind(now_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(DueRefresh { consent_id: r.try_get("consent_id")?, period_seq: r.try_get("period_seq")? })).collect()
    }

    /// Claims `due`'s period and sets the next due time; false when another
    /// instance claimed it first.
    pub async fn claim_refresh(&self, due: &DueRefresh, next_due_ms: i64) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE ob_refresh_schedule SET period_seq = period_seq + 1, due_at_ms = $1 WHERE consent_id = $2 AND period_seq = $3")
            .bind(next_due_ms)
            .bind(&due.consent_id)
            .bind(due.period_seq)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A claimed period whose command could not be published: due again at
    /// `due_ms` (as the next period, under its own key).
    pub async fn refresh_due_again(&self, due: &DueRefresh, due_ms: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE ob_refresh_schedule SET due_at_ms = $1 WHERE consent_id = $2 AND period_seq = $3")
            .bind(due_ms)
            .bind(&due.consent_id)
            .bind(due.period_seq + 1)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh(id: &str) -> ConsentRow {
        ConsentRow {
            consent_id: id.into(),
            provider: "plaid".into(),
            state: "AWAITING_USER".into(),
            consent: "{}".into(),
            version: 1,
            provider_reference: None,
            institution_id: Some("ins_1".into()),
            access_token_enc: None,
            sync_cursor: None,
            page_seq: 0,
            known_accounts: String::new(),
            refresh_key: None,
            refresh_pages: 0,
            refresh_accounts_done: false,
            last_key: Some("k1".into()),
            last_outcome: Some("{}".into()),
        }
    }

    #[tokio::test]
    async fn changes_and_pages_compare_and_set() {
        for store in crate::test_stores().await {
            let consents = ConsentStore::open(&store).await.expect("ddl");
            let id = format!("obc-{}-{}", std::process::id(), switchyard_canonical::now_ms());
            let row = fresh(&id);
            assert!(consents.insert(&row).await.expect("insert"));
            assert!(!consents.insert(&row).await.expect("second insert"), "created once");
            let mut next = row.clone();
            next.version = 2;
            next.access_token_enc = Some("k1:sealed".into());
            assert!(consents.update(&next, 1).await.expect("cas"));
            assert!(!consents.update(&next, 1).await.expect("stale cas"), "a stale version changes nothing");
            let page = |seq, cursor, accounts| PageAdvance {
                consent_id: &id,
                expected_seq: seq,
                published: true,
                cursor,
                refresh_key: "r1",
                accounts_done: accounts,
                known_accounts: accounts.then(|| "a1,a2".to_owned()),
            };
            assert!(consents.advance(&page(0, None, true)).await.expect("accounts page"));
            assert!(consents.advance(&page(1, Some("c1"), false)).await.expect("page 2"));
            assert!(!consents.advance(&page(1, Some("c1"), false)).await.expect("replayed page"), "a page is stored once");
            let got = consents.load(&id).await.expect("load").expect("row");
            assert_eq!((got.page_seq, got.sync_cursor.as_deref(), got.pages_of("r1"), got.accounts_done_for("r1")), (2, Some("c1"), 2, true));
            assert_eq!(got.known_account_ids(), ["a1", "a2"]);
            assert_eq!(got.access_token_enc.as_deref(), Some("k1:sealed"));
            assert_eq!(got.pages_of("r2"), 0);
        }
    }

    #[tokio::test]
    async fn a_scheduled_period_is_claimed_once() {
        for store in crate::test_stores().await {
            let consents = ConsentStore::open(&store).await.expect("ddl");
            let id = format!("obs-{}-{}", std::process::id(), switchyard_canonical::now_ms());
            let mut row = fresh(&id);
            row.state = "ACTIVE".into();
            assert!(consents.insert(&row).await.expect("insert"));
            consents.schedule_new(|c| if c == id { 100 } else { i64::MAX }).await.expect("schedule");
            assert_eq!(consents.schedule_new(|_| 0).await.expect("again"), 0, "scheduled once");
            let due: Vec<_> = consents.due_refreshes(100, 10_000).await.expect("due").into_iter().filter(|d| d.consent_id == id).collect();
            assert_eq!(due, [DueRefresh { consent_id: id.clone(), period_seq: 0 }]);
            assert!(consents.due_refreshes(99, 10_000).await.expect("due").iter().all(|d| d.consent_id != id), "not due before its time");
            // Two instances read the same due period; one claims it.
            assert!(consents.claim_refresh(&due[0], 1_000).await.expect("claim"));
            assert!(!consents.claim_refresh(&due[0], 1_000).await.expect("second claim"), "one claim per period");
            assert!(consents.due_refreshes(999, 10_000).await.expect("due").iter().all(|d| d.consent_id != id), "next period not due yet");
        }
    }
}
