//! REFRESH: accounts and balances, then transaction pages from the stored
//! cursor, each published as one `openbanking.data.v1` delta **before** its
//! progress is stored. The order is the whole point: a page whose publish
//! was not acknowledged leaves the cursor where it was, so the redelivery
//! fetches it again (never skipped); a page acknowledged and stored is
//! never fetched again (never published twice). The only window is a crash
//! between the acknowledgement and the store's write: that page is
//! republished under the same `delta_id`, which consumers drop.
//!
//! Plaid documents that a sync interrupted mid-pagination may restart from
//! the cursor the pagination began with (TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION);
//! we keep each page's cursor instead, which Plaid accepts as long as no
//! mutation error is returned. That error is not mapped yet (see the report).
//!
//! An OAuth grant (TrueLayer) is renewed first when its access token is
//! about to lapse, and once after a 401 ([`super::renew`]); its cursor is
//! the adapter's per-account watermark, stored the same way.

use super::consent::Held;
use super::{OpenBankingHandler, Stop, Turn};
use switchyard_adapters::openbanking::{AccountsSnapshot, ObFailure, TransactionPage};
use switchyard_bus::Failure;
use switchyard_canonical::now_ms;
use switchyard_canonical::openbanking::{Dataset, RefreshTrigger};
use switchyard_canonical::openbanking_data::OpenBankingDataDelta;
use switchyard_canonical::openbanking_outcome::{MissingData, MissingReason, OpenBankingKind, OpenBankingOutcome};
use switchyard_store::openbanking::{ConsentRow, PageAdvance};

/// How far this refresh got, as stored.
struct Progress {
    row: ConsentRow,
    key: String,
}

impl OpenBankingHandler {
    pub(super) async fn refresh(&self, turn: &mut Turn<'_>, held: Held, datasets: &[Dataset], renew_first: bool) -> Result<OpenBankingOutcome, Stop> {
        let mut held = held;
        if renew_first {
            if let Err(failure) = self.renew_grant(turn, &mut held).await? {
                return self.failed(turn, Some(held), failure).await;
            }
        }
        let mut token = self.token(&held)?;
        let provider = held.row.provider.clone();
        let mut progress = Progress { row: held.row.clone(), key: turn.command.idempotency_key.clone() };
        let mut missing: Vec<MissingData> = Vec::new();
        let wants = |d| datasets.contains(&d);
        if (wants(Dataset::Accounts) || wants(Dataset::Balances)) && !progress.row.accounts_done_for(&progress.key) {
            let with_balances = wants(Dataset::Balances);
            let fetched = self.call_fresh(turn, &mut held, &mut token, "accounts", |p, ctx, token| async move {
                p.accounts(&ctx, &token, with_balances).await
            });
            match fetched.await? {
                Ok(snapshot) => {
                    let sets: Vec<Dataset> = [Dataset::Accounts, Dataset::Balances].into_iter().filter(|d| wants(*d)).collect();
                    let delta = self.accounts_delta(turn, &progress, &provider, sets, snapshot);
                    let known = delta.accounts_added.iter().chain(&delta.accounts_modified).map(|a| a.account_id.as_str()).collect::<Vec<_>>().join(",");
                    self.publish_page(turn, &mut progress, &delta, None, true, Some(known)).await?;
                }
                Err(failure) => {
                    let sets = [Dataset::Accounts, Dataset::Balances].into_iter().filter(|d| wants(*d));
                    match gap(failure, &progress) {
                        Gap::Missing(reason, retry) => missing.extend(sets.map(|dataset| MissingData { dataset, account_id: None, reason, retry_after_ms: retry })),
                        Gap::Stop(failure) => return self.failed(turn, Some(held), failure).await,
                    }
                }
            }
        }
        if wants(Dataset::Transactions) {
            loop {
                let cursor = progress.row.sync_cursor.clone();
                let fetched = self.call_fresh(turn, &mut held, &mut token, "transactions_sync", |p, ctx, token| {
                    let cursor = cursor.clone();
                    async move { p.transactions_page(&ctx, &token, cursor.as_deref()).await }
                });
                match fetched.await? {
                    Ok(page) => {
                        let has_more = page.has_more;
                        let next = page.next_cursor.clone();
                        let delta = self.transactions_delta(turn, &progress, &provider, page);
                        let publish = !delta.is_empty();
                        self.publish_page(turn, &mut progress, &delta, Some(&next), publish, None).await?;
                        if !has_more {
                            break;
                        }
                    }
                    Err(failure) => match gap(failure, &progress) {
                        Gap::Missing(reason, retry) => {
                            missing.push(MissingData { dataset: Dataset::Transactions, account_id: None, reason, retry_after_ms: retry });
                            break;
                        }
                        Gap::Stop(failure) => return self.failed(turn, Some(held), failure).await,
                    },
                }
            }
        }
        if !missing.is_empty() {
            // The refresh's last page says what it could not get.
            let mut delta = self.empty_delta(turn, &progress, &provider, Vec::new());
            delta.missing = missing.clone();
            self.publish_page(turn, &mut progress, &delta, None, true, None).await?;
        }
        let kind = if missing.is_empty() { OpenBankingKind::DataRefreshed } else { OpenBankingKind::PartialData };
        let mut outcome = self.outcome(turn, kind, Some(&held));
        outcome.data_pages = i32::try_from(progress.row.pages_of(&progress.key)).unwrap_or(i32::MAX);
        outcome.missing = missing;
        Ok(outcome)
    }

    /// Publishes `delta` (when `publish`), waits for the broker, and only
    /// then stores the page's cursor and count. The store write compares
    /// and sets the page count this delivery read: another delivery that
    /// moved it first wins, and this one goes back to the retry topic.
    async fn publish_page(
        &self,
        turn: &Turn<'_>,
        progress: &mut Progress,
        delta: &OpenBankingDataDelta,
        cursor: Option<&str>,
        publish: bool,
        known_accounts: Option<String>,
    ) -> Result<(), Stop> {
        if publish {
            self.publish_data(turn.ctx, delta).await.map_err(Stop::Later)?;
        }
        let accounts_done = known_accounts.is_some();
        let advance = PageAdvance {
            consent_id: &progress.row.consent_id,
            expected_seq: progress.row.page_seq,
            published: publish,
            cursor,
            refresh_key: &progress.key,
            accounts_done,
            known_accounts: known_accounts.clone(),
        };
        if !self.consents.advance(&advance).await? {
            return Err(Stop::Later(Failure::Retry {
                reason: "another delivery stored a page of this consent first".into(),
                delay: std::time::Duration::from_millis(self.retry.retry_topic_delay_ms),
            }));
        }
        let row = &mut progress.row;
        let same = row.refresh_key.as_deref() == Some(progress.key.as_str());
        row.refresh_pages = if same { row.refresh_pages } else { 0 } + i64::from(publish);
        row.refresh_accounts_done = (same && row.refresh_accounts_done) || accounts_done;
        row.refresh_key = Some(progress.key.clone());
        row.page_seq += i64::from(publish);
        if let Some(c) = cursor {
            row.sync_cursor = Some(c.to_owned());
        }
        if let Some(k) = known_accounts {
            row.known_accounts = k;
        }
        Ok(())
    }

    fn empty_delta(&self, turn: &Turn<'_>, progress: &Progress, provider: &str, datasets: Vec<Dataset>) -> OpenBankingDataDelta {
        let command = turn.command;
        let scheduled = command.refresh.as_ref().is_some_and(|r| r.trigger != RefreshTrigger::OnDemand);
        let now = now_ms();
        OpenBankingDataDelta {
            delta_id: OpenBankingDataDelta::delta_id(&command.consent_id, progress.row.page_seq + 1),
            consent_id: command.consent_id.clone(),
            provider: provider.to_owned(),
            idempotency_key: (!scheduled).then(|| command.idempotency_key.clone()),
            datasets,
            cursor_before: progress.row.sync_cursor.clone(),
            cursor_after: progress.row.sync_cursor.clone(),
            has_more: false,
            accounts_added: Vec::new(),
            accounts_modified: Vec::new(),
            accounts_removed: Vec::new(),
            balances: Vec::new(),
            transactions_added: Vec::new(),
            transactions_modified: Vec::new(),
            transactions_removed: Vec::new(),
            missing: Vec::new(),
            fetched_at_ms: now,
            published_at_ms: now,
        }
    }

    fn accounts_delta(&self, turn: &Turn<'_>, progress: &Progress, provider: &str, sets: Vec<Dataset>, snapshot: AccountsSnapshot) -> OpenBankingDataDelta {
        let known = progress.row.known_account_ids();
        let mut delta = self.empty_delta(turn, progress, provider, sets);
        let current: Vec<String> = snapshot.accounts.iter().map(|a| a.account_id.clone()).collect();
        delta.accounts_removed = known.iter().filter(|k| !current.iter().any(|c| c == *k)).map(|k| (*k).to_owned()).collect();
        let (modified, added) = snapshot.accounts.into_iter().partition(|a| known.contains(&a.account_id.as_str()));
        delta.accounts_added = added;
        delta.accounts_modified = modified;
        delta.balances = snapshot.balances;
        delta
    }

    fn transactions_delta(&self, turn: &Turn<'_>, progress: &Progress, provider: &str, page: TransactionPage) -> OpenBankingDataDelta {
        let mut delta = self.empty_delta(turn, progress, provider, vec![Dataset::Transactions]);
        delta.cursor_after = Some(page.next_cursor);
        delta.has_more = page.has_more;
        delta.transactions_added = page.added;
        delta.transactions_modified = page.modified;
        delta.transactions_removed = page.removed;
        delta
    }
}

enum Gap {
    /// Publish what there is and say this part is missing.
    Missing(MissingReason, Option<i64>),
    /// The refresh ends with this failure's answer.
    Stop(ObFailure),
}

/// A failure during a refresh: a gap in what it publishes, or its end. An
/// institution that is down before anything was published is
/// INSTITUTION_UNAVAILABLE; once pages are out it is a gap in them.
fn gap(failure: ObFailure, progress: &Progress) -> Gap {
    let ms = |d: std::time::Duration| Some(i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    match failure {
        ObFailure::NotReady { retry_after } => Gap::Missing(MissingReason::NotReady, ms(retry_after)),
        ObFailure::InstitutionUnavailable { retry_after, .. } if progress.row.pages_of(&progress.key) > 0 => {
            Gap::Missing(MissingReason::InstitutionUnavailable, ms(retry_after))
        }
        other => Gap::Stop(other),
    }
}
