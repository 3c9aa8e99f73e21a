//! Provider callbacks applied to open banking consents (Plaid's item
//! webhooks, as the ingester publishes them on
//! `openbanking.provider-events.v1`).
//!
//! A callback names the provider's connection (Plaid's `item_id`), which is
//! the consent's `provider_reference`: [`ObCallbacks::find_by_reference`]
//! finds the consent by it (indexed).
//!
//! Each callback is claimed once per `(provider, event_id)` in
//! `ob_callbacks`, in the same transaction as the consent change it causes
//! (compare-and-set on the consent's `version`): a redelivered callback, or
//! the same callback read by a second worker instance after a rebalance,
//! finds the claim and changes nothing. What the callback publishes (an
//! `OpenBankingEvent`, or the REFRESH command a provider update starts) is
//! stored with the claim as JSON, and `sent_at_ms` is set once the broker
//! acknowledged it: a delivery that finds a claim whose payload was never
//! sent (its worker died in between) sends it, under the same event id or
//! idempotency key, so it is never lost and consumers drop a repeat.

use crate::openbanking::{consent_row, ConsentRow, CONSENT_COLUMNS};
use crate::{Store, StoreError};
use sqlx::{AnyPool, Row};

const DDL: &[&str] = &[
    // Callbacks name a consent by the provider's connection id.
    "CREATE INDEX IF NOT EXISTS ob_consents_by_reference ON ob_consents (provider, provider_reference)",
    "CREATE TABLE IF NOT EXISTS ob_callbacks (
        provider TEXT NOT NULL,
        event_id TEXT NOT NULL,
        consent_id TEXT NOT NULL,
        result TEXT NOT NULL,
        payload_kind TEXT,
        payload TEXT,
        applied_at_ms BIGINT NOT NULL,
        sent_at_ms BIGINT,
        PRIMARY KEY (provider, event_id)
    )",
];

/// The consents a provider's connection id names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ByReference {
    None,
    One(Box<ConsentRow>),
    /// Two consents hold one connection: the store needs repair.
    Ambiguous,
}

/// What a callback publishes once applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// `event` (an OpenBankingEvent) or `command` (an OpenBankingCommand).
    pub kind: String,
    pub json: String,
}

/// One callback's claim, with its effect.
#[derive(Debug, Clone)]
pub struct CallbackClaim<'a> {
    pub provider: &'a str,
    pub event_id: &'a str,
    pub consent_id: &'a str,
    /// What applying it did (`entered`, `updated`, `unchanged`, `refresh`, ...).
    pub result: &'a str,
    pub payload: Option<Payload>,
    /// The consent as changed, and the version it was read at; none when
    /// the callback changes no consent.
    pub change: Option<(&'a ConsentRow, i64)>,
}

/// A callback applied before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedCallback {
    pub consent_id: String,
    pub result: String,
    pub payload: Option<Payload>,
    pub applied_at_ms: i64,
    pub sent: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    Applied,
    /// Claimed before (a redelivery, or another instance).
    Duplicate,
    /// The consent moved since it was read: read again and retry.
    Conflict,
}

#[derive(Clone)]
pub struct ObCallbacks {
    pool: AnyPool,
}

impl ObCallbacks {
    /// Creates the consent tables (if needed), the index and the claims table.
    pub async fn open(store: &Store) -> Result<Self, StoreError> {
        crate::openbanking::ConsentStore::open(store).await?;
        let pool = store.pool().clone();
        crate::schema::create_all(&pool, DDL).await?;
        Ok(Self { pool })
    }

    /// The consent `provider` knows as `reference` (Plaid's item id).
    pub async fn find_by_reference(&self, provider: &str, reference: &str) -> Result<ByReference, StoreError> {
        let rows = sqlx::query(&format!("SELECT {CONSENT_COLUMNS} FROM ob_consents WHERE provider = $1 AND provider_reference = $2 LIMIT 2"))
            .bind(provider)
            .bind(reference)
            .fetch_all(&self.pool)
            .await?;
        Ok(match rows.as_slice() {
            [] => ByReference::None,
            [one] => ByReference::One(Box::new(consent_row(one)?)),
            _ => ByReference::Ambiguous,
        })
    }

    /// The claim of a callback, if it was applied.
    pub async fn applied(&self, provider: &str, event_id: &str) -> Result<Option<AppliedCallback>, StoreError> {
        let row = sqlx::query("SELECT consent_id, result, payload_kind, payload, applied_at_ms, sent_at_ms FROM ob_callbacks WHERE provider = $1 AND event_id = $2")
            .bind(provider)
            .bind(event_id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(r) = row else { return Ok(None) };
        let kind: Option<String> = r.try_get("payload_kind")?;
        let json: Option<String> = r.try_get("payload")?;
        Ok(Some(AppliedCallback {
            consent_id: r.try_get("consent_id")?,
            result: r.try_get("result")?,
            payload: kind.zip(json).map(|(kind, json)| Payload { kind, json }),
            applied_at_ms: r.try_get("applied_at_ms")?,
            sent: r.try_get::<Option<i64>, _>("sent_at_ms")?.is_some(),
        }))
    }

    /// Claims the callback and writes the consent change, in one
    /// transaction: nothing is written unless all of it is.
    pub async fn commit(&self, c: &CallbackClaim<'_>) -> Result<Commit, StoreError> {
        let now = switchyard_canonical::now_ms();
        let mut tx = self.pool.begin().await?;
        // Nothing to send counts as sent.
        let sent = if c.payload.is_none() { Some(now) } else { None };
        let claimed = sqlx::query(
            "INSERT INTO ob_callbacks (provider, event_id, consent_id, result, payload_kind, payload, applied_at_ms, sent_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (provider, event_id) DO NOTHING",
        )
        .bind(c.provider)
        .bind(c.event_id)
        .bind(c.consent_id)
        .bind(c.result)
        .bind(c.payload.as_ref().map(|p| p.kind.clone()))
        .bind(c.payload.as_ref().map(|p| p.json.clone()))
        .bind(now)
        .bind(sent)
        .execute(&mut *tx)
        .await?;
        if claimed.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(Commit::Duplicate);
        }
        if let Some((row, read_version)) = c.change {
            // The consent's state and machine only: the command path's
            // `last_key` / `last_outcome` and sync position stay its own.
            let moved = sqlx::query("UPDATE ob_consents SET state = $1, consent = $2, version = $3, updated_at_ms = $4 WHERE consent_id = $5 AND version = $6")
                .bind(&row.state)
                .bind(&row.consent)
                .bind(row.version)
                .bind(now)
                .bind(&row.consent_id)
                .bind(read_version)
                .execute(&mut *tx)
                .await?;
            if moved.rows_affected() != 1 {
                tx.rollback().await?;
                return Ok(Commit::Conflict);
            }
        }
        tx.commit().await?;
        Ok(Commit::Applied)
    }

    /// Records that the callback's payload reached the broker.
    pub async fn mark_sent(&self, provider: &str, event_id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE ob_callbacks SET sent_at_ms = $1 WHERE provider = $2 AND event_id = $3 AND sent_at_ms IS NULL")
            .bind(switchyard_canonical::now_ms())
            .bind(provider)
            .bind(event_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openbanking::ConsentStore;

    fn consent(id: &str, item: &str) -> ConsentRow {
        ConsentRow {
            consent_id: id.into(),
            provider: "plaid".into(),
            state: "ACTIVE".into(),
            consent: "{}".into(),
            version: 2,
            provider_reference: Some(item.into()),
            institution_id: None,
            access_token_enc: Some("k:sealed".into()),
            sync_cursor: None,
            page_seq: 0,
            known_accounts: String::new(),
            refresh_key: None,
            refresh_pages: 0,
            refresh_accounts_done: false,
            last_key: Some("k2".into()),
            last_outcome: Some("{}".into()),
        }
    }

    #[tokio::test]
    async fn a_callback_is_claimed_once_with_its_consent_change() {
        for store in crate::test_stores().await {
            let callbacks = ObCallbacks::open(&store).await.expect("ddl");
            let consents = ConsentStore::open(&store).await.expect("ddl");
            let run = format!("{}-{}", std::process::id(), switchyard_canonical::now_ms());
            let (id, item) = (format!("obcb-{run}"), format!("item-{run}"));
            assert!(consents.insert(&consent(&id, &item)).await.expect("insert"));
            let ByReference::One(found) = callbacks.find_by_reference("plaid", &item).await.expect("find") else { panic!("one consent holds the item") };
            assert_eq!(found.consent_id, id);
            assert_eq!(callbacks.find_by_reference("plaid", "item-nobody").await.expect("find"), ByReference::None);

            let mut changed = (*found).clone();
            changed.state = "LOGIN_REQUIRED".into();
            changed.version = 3;
            let event = format!("ev-{run}");
            let claim = CallbackClaim {
                provider: "plaid",
                event_id: &event,
                consent_id: &id,
                result: "entered",
                payload: Some(Payload { kind: "event".into(), json: "{\"e\":1}".into() }),
                change: Some((&changed, 2)),
            };
            assert_eq!(callbacks.commit(&claim).await.expect("commit"), Commit::Applied);
            assert_eq!(callbacks.commit(&claim).await.expect("again"), Commit::Duplicate, "a redelivered callback changes nothing");
            let applied = callbacks.applied("plaid", &event).await.expect("applied").expect("claimed");
            assert!(!applied.sent, "not sent until the broker acknowledged");
            callbacks.mark_sent("plaid", &event).await.expect("sent");
            assert!(callbacks.applied("plaid", &event).await.expect("applied").expect("claimed").sent);
            let row = consents.load(&id).await.expect("load").expect("row");
            assert_eq!((row.state.as_str(), row.version, row.last_key.as_deref()), ("LOGIN_REQUIRED", 3, Some("k2")), "the command's last answer stays");

            // Read at a version that is gone: nothing claimed, nothing changed.
            let stale_event = format!("ev2-{run}");
            let stale = CallbackClaim { event_id: &stale_event, change: Some((&changed, 2)), ..claim.clone() };
            assert_eq!(callbacks.commit(&stale).await.expect("commit"), Commit::Conflict);
            assert!(callbacks.applied("plaid", &stale_event).await.expect("applied").is_none(), "a conflict claims nothing");
        }
    }
}
