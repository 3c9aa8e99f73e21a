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
    )"];

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
}
