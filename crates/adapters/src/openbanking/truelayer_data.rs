//! TrueLayer's Data API v1 (`/data/v1/accounts`, `/accounts/{id}/balance`,
//! `/accounts/{id}/transactions?from=&to=`) and the user's OAuth tokens
//! (`/connect/token` with `authorization_code` and `refresh_token`), as
//! docs.truelayer.com publishes them ("Data API basics", "Account data
//! requests", "Data API errors", the authentication server's OpenAPI).
//!
//! - The grant is one opaque [`Secret`] to everyone outside this module: a
//!   small JSON bundle of the access token, the refresh token and the
//!   access token's end. The worker seals it like Plaid's access token and
//!   hands it back for every call; a renewal returns a new bundle that the
//!   worker must store *before* using it, because the refresh token
//!   rotates (the old one is refused afterwards) and a renewal whose answer
//!   is not stored loses the grant.
//! - Data answers are `{"results": [...], "status": "Succeeded"}`; errors
//!   `{"error", "error_description", "error_details"}`. 401 (`unauthorized`,
//!   `invalid_token`): the access token lapsed, [`ObFailure::AccessExpired`],
//!   renewed by the worker and tried once more. 403 `access_denied` /
//!   `sca_exceeded` and a refresh's `invalid_grant`: the user must reconnect
//!   (expired 90-day consent or revoked at the bank), LOGIN_REQUIRED.
//!   501/503 (`provider_error`, `provider_timeout`, ...): the bank, not
//!   TrueLayer, is down, INSTITUTION_UNAVAILABLE.
//! - TrueLayer has no sync cursor. Ours is a per-account watermark: the
//!   newest booked date published, and the ids published on that date
//!   (a `from` on the watermark date returns them again; they are dropped
//!   by id). A pass over the accounts is paged one account per page, so a
//!   redelivery resumes at the account whose page was not stored.
//!
//! UNCONFIRMED: that `from` is inclusive at day granularity (we refetch
//! the watermark day either way and drop by id); that a rotated refresh
//! token is refused at once (we store the new one before any other call);
//! the exact codes behind 501 (`endpoint_not_supported`?) and 503
//! (`provider_error`, `provider_timeout`, `provider_unavailable`): every
//! 501/503 counts as the bank being down. Pending transactions
//! (`/transactions/pending`) are not pulled; a transaction the bank books
//! with a date older than the watermark is not seen (no overlap window).

use super::TrueLayerAdapter;
use crate::http::{send_json, traced};
use crate::openbanking::{AccountsSnapshot, Granted, ObFailure, TransactionPage};
use crate::{AdapterError, CallContext, Secret};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::time::Duration;
use switchyard_canonical::money::decimal_to_minor;
use switchyard_canonical::openbanking_data::{Account, AccountKind, Balance, Direction, Transaction};
use switchyard_canonical::{ErrorClass, ErrorCode};

/// How far back the first pass of a new consent reaches.
const HISTORY_DAYS: i64 = 90;
/// What INSTITUTION_UNAVAILABLE tells the product to wait when the bank
/// sends no Retry-After.
const BANK_RETRY_AFTER: Duration = Duration::from_secs(60);

/// The grant as sealed at rest (never logged: no Debug).
#[derive(Serialize, Deserialize)]
struct Bundle {
    access: String,
    refresh: String,
    access_expires_at_ms: i64,
}

#[derive(Deserialize)]
struct Results<T> {
    results: Vec<T>,
}

#[derive(Deserialize)]
struct DataError {
    error: String,
}

#[derive(Deserialize)]
struct TlAccount {
    account_id: String,
    #[serde(default)]
    account_type: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
    currency: String,
    #[serde(default)]
    account_number: Option<AccountNumber>,
}

#[derive(Deserialize)]
struct AccountNumber {
    #[serde(default)]
    number: Option<String>,
}

#[derive(Deserialize)]
struct TlBalance {
    currency: String,
    #[serde(default)]
    available: Option<Box<RawValue>>,
    #[serde(default)]
    current: Option<Box<RawValue>>,
    #[serde(default)]
    update_timestamp: Option<String>,
}

#[derive(Deserialize)]
struct TlTransaction {
    transaction_id: String,
    timestamp: String,
    #[serde(default)]
    description: Option<String>,
    amount: Box<RawValue>,
    currency: String,
    #[serde(default)]
    transaction_type: Option<String>,
    #[serde(default)]
    transaction_category: Option<String>,
    #[serde(default)]
    merchant_name: Option<String>,
}

/// Our transaction cursor (opaque outside this module).
#[derive(Serialize, Deserialize, Default)]
struct Cursor {
    /// Per account: the newest booked date published and the ids published on it.
    marks: Vec<Mark>,
    /// Accounts still to fetch in the pass under way; empty: none under way.
    queue: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone)]
struct Mark {
    account_id: String,
    date: String,
    seen: Vec<String>,
}

impl TrueLayerAdapter {
    /// The grant from a token answer: its bundle and the access token's end.
    pub(super) fn grant_from(access: String, refresh: Option<String>, expires_in: u64, previous_refresh: Option<&str>) -> Result<Granted, ObFailure> {
        // A refresh answer without a new refresh token keeps the old one.
        let Some(refresh) = refresh.or_else(|| previous_refresh.map(str::to_owned)) else {
            return Err(ObFailure::Call(unreadable("token answer without a refresh_token (offline_access scope missing?)")));
        };
        let ends = super::now_ms().saturating_add(i64::try_from(expires_in).unwrap_or(i64::MAX / 2_000).saturating_mul(1_000));
        let bundle = Bundle { access, refresh, access_expires_at_ms: ends };
        let sealed = serde_json::to_string(&bundle).map_err(|e| ObFailure::Call(unreadable(&e.to_string())))?;
        Ok(Granted { access_token: Secret::new(sealed), provider_reference: String::new(), expires_at_ms: None, access_expires_at_ms: Some(ends) })
    }

    /// A new access token (and, rotated, refresh token) for the grant.
    /// `invalid_grant`: the consent ended at the bank, LOGIN_REQUIRED.
    pub async fn renew_grant(&self, ctx: &CallContext, grant: &Secret) -> Result<Granted, ObFailure> {
        let bundle = open(grant)?;
        let client_secret = self.s.client_secret.current();
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", self.s.client_id.as_str()),
            ("client_secret", client_secret.expose()),
            ("refresh_token", bundle.refresh.as_str()),
        ];
        let req = traced(self.http.current().post(format!("{}/connect/token", self.s.auth_url)), ctx).form(&form);
        let mut grant_ended = false;
        let reply = send_json::<super::TokenReply, super::OAuthError>(req, |status, wait, error| {
            let code = error.map(|e| e.error).unwrap_or_default();
            grant_ended = code == "invalid_grant";
            if matches!(code.as_str(), "invalid_client" | "unauthorized_client") {
                return AdapterError::new(ErrorClass::ManualRepair, ErrorCode::AuthenticationFailed, format!("TrueLayer auth: {code}"));
            }
            AdapterError::from_status(status, wait, &format!("TrueLayer auth: {status} {code}"))
        })
        .await;
        match reply {
            Ok(r) => Self::grant_from(r.access_token, r.refresh_token, r.expires_in, Some(&bundle.refresh)),
            // Expired (90 days), revoked at the bank, or a refresh token
            // already rotated away: only the user can mend it.
            Err(_) if grant_ended => Err(ObFailure::LoginRequired),
            Err(e) => Err(ObFailure::Call(e)),
        }
    }

    async fn data<T: serde::de::DeserializeOwned>(&self, ctx: &CallContext, grant: &Secret, path: &str) -> Result<Vec<T>, ObFailure> {
        let bundle = open(grant)?;
        let req = traced(self.http.current().get(format!("{}/data/v1{path}", self.s.api_url)), ctx).bearer_auth(&bundle.access);
        let mut failure = None;
        let reply = send_json::<Results<T>, DataError>(req, |status, wait, error| {
            let (mapped, err) = map_data_error(status, wait, error);
            failure = mapped;
            err
        })
        .await;
        match (reply, failure) {
            (Ok(r), _) => Ok(r.results),
            (Err(_), Some(f)) => Err(f),
            (Err(e), None) => Err(ObFailure::Call(e)),
        }
    }

    pub async fn data_accounts(&self, ctx: &CallContext, grant: &Secret, with_balances: bool) -> Result<AccountsSnapshot, ObFailure> {
        let accounts: Vec<TlAccount> = self.data(ctx, grant, "/accounts").await?;
        let mut snapshot = AccountsSnapshot::default();
        for a in accounts {
            checked_id(&a.account_id)?;
            if with_balances {
                let balances: Vec<TlBalance> = self.data(ctx, grant, &format!("/accounts/{}/balance", a.account_id)).await?;
                if let Some(b) = balances.into_iter().next() {
                    let minor = |v: &Option<Box<RawValue>>| v.as_deref().map(|raw| signed_minor(raw.get(), &b.currency)).transpose();
                    snapshot.balances.push(Balance {
                        account_id: a.account_id.clone(),
                        current_minor: minor(&b.current)?,
                        available_minor: minor(&b.available)?,
                        // TrueLayer's `overdraft` is not a credit limit: not mapped.
                        limit_minor: None,
                        currency: b.currency.clone(),
                        as_of_ms: b.update_timestamp.as_deref().and_then(super::parse_rfc3339_ms),
                    });
                }
            }
            let (kind, subtype) = match a.account_type.as_deref() {
                Some("TRANSACTION" | "BUSINESS_TRANSACTION") => (AccountKind::Depository, Some("checking")),
                Some("SAVINGS" | "BUSINESS_SAVINGS") => (AccountKind::Depository, Some("savings")),
                _ => (AccountKind::Other, None),
            };
            // The last four digits only: the account number never leaves here.
            let mask = a.account_number.and_then(|n| n.number).map(|n| n.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect());
            snapshot.accounts.push(Account {
                account_id: a.account_id,
                name: a.display_name.unwrap_or_default(),
                kind,
                subtype: subtype.map(str::to_owned),
                currency: a.currency,
                mask,
            });
        }
        Ok(snapshot)
    }

    /// One account's new transactions after the cursor's watermark; a pass
    /// starts by listing the accounts.
    pub async fn data_transactions(&self, ctx: &CallContext, grant: &Secret, cursor: Option<&str>) -> Result<TransactionPage, ObFailure> {
        let mut state: Cursor = match cursor {
            Some(c) => serde_json::from_str(c).map_err(|_| ObFailure::Call(unreadable("the stored cursor is not a TrueLayer watermark")))?,
            None => Cursor::default(),
        };
        if state.queue.is_empty() {
            let accounts: Vec<TlAccount> = self.data(ctx, grant, "/accounts").await?;
            state.queue = accounts.into_iter().map(|a| a.account_id).collect();
        }
        let mut added = Vec::new();
        if let Some(account) = state.queue.first().cloned() {
            checked_id(&account)?;
            let today = super::now_ms().div_euclid(86_400_000);
            let mark = state.marks.iter().find(|m| m.account_id == account).cloned();
            let from = mark.as_ref().map_or_else(|| civil(today - HISTORY_DAYS), |m| m.date.clone());
            let query = serde_urlencoded::to_string([("from", format!("{from}T00:00:00")), ("to", format!("{}T00:00:00", civil(today + 1)))])
                .map_err(|e| ObFailure::Call(unreadable(&e.to_string())))?;
            let found: Vec<TlTransaction> = self.data(ctx, grant, &format!("/accounts/{account}/transactions?{query}")).await?;
            // Dropped by the watermark the cursor holds, whatever order the
            // answer lists them in; the new watermark is the newest date seen.
            let mut next = mark.clone().unwrap_or(Mark { account_id: account.clone(), date: from.clone(), seen: Vec::new() });
            for t in found {
                let date = t.timestamp.get(..10).unwrap_or("").to_owned();
                if date.len() != 10 || date < from {
                    continue;
                }
                let published = mark.as_ref().is_some_and(|m| m.date == date && m.seen.contains(&t.transaction_id));
                if date > next.date {
                    next.date.clone_from(&date);
                    next.seen.clear();
                }
                if date == next.date && !next.seen.contains(&t.transaction_id) {
                    next.seen.push(t.transaction_id.clone());
                }
                if published || added.iter().any(|a: &Transaction| a.transaction_id == t.transaction_id) {
                    continue;
                }
                added.push(transaction(&account, t, date)?);
            }
            // A transaction dated before the new watermark but after `from`
            // that comes in a later answer is not seen again (see UNCONFIRMED).
            state.marks.retain(|m| m.account_id != account);
            state.marks.push(next);
            state.queue.remove(0);
        }
        let has_more = !state.queue.is_empty();
        let next_cursor = serde_json::to_string(&state).map_err(|e| ObFailure::Call(unreadable(&e.to_string())))?;
        Ok(TransactionPage { added, modified: Vec::new(), removed: Vec::new(), next_cursor, has_more })
    }

    /// REVOKE_CONSENT: `DELETE {auth}/api/delete` ends the connection. A
    /// lapsed access token is renewed for it first (the grant's tokens are
    /// wiped afterwards, so the new ones need not be stored); a grant the
    /// bank already ended has nothing left to delete.
    pub async fn delete_connection(&self, ctx: &CallContext, grant: &Secret) -> Result<(), ObFailure> {
        let mut grant = grant.clone();
        for attempt in 0..2 {
            let bundle = open(&grant)?;
            let req = traced(self.http.current().delete(format!("{}/api/delete", self.s.auth_url)), ctx).bearer_auth(&bundle.access);
            let reply = send_json::<serde_json::Value, DataError>(req, |status, wait, error| {
                let code = error.map(|e| e.error).unwrap_or_default();
                AdapterError::from_status(status, wait, &format!("TrueLayer delete: {status} {code}"))
            })
            .await;
            match reply {
                Ok(_) => return Ok(()),
                Err(e) if e.http_status == Some(401) && attempt == 0 => match self.renew_grant(ctx, &grant).await {
                    Ok(renewed) => grant = renewed.access_token,
                    Err(ObFailure::LoginRequired) => return Ok(()),
                    Err(other) => return Err(other),
                },
                Err(e) if e.http_status == Some(403) => return Ok(()),
                Err(e) => return Err(ObFailure::Call(e)),
            }
        }
        Err(ObFailure::AccessExpired)
    }
}

fn open(grant: &Secret) -> Result<Bundle, ObFailure> {
    serde_json::from_str(grant.expose()).map_err(|_| ObFailure::Call(unreadable("the stored grant is not a TrueLayer token bundle")))
}

/// A TrueLayer id goes into a URL path: nothing but what ids are made of.
fn checked_id(id: &str) -> Result<(), ObFailure> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(ObFailure::Call(unreadable("an account id that is not an id")));
    }
    Ok(())
}

/// A Data API error to our failure (first) and the taxonomy's word (second).
fn map_data_error(status: u16, wait: Option<Duration>, error: Option<DataError>) -> (Option<ObFailure>, AdapterError) {
    let code = error.map(|e| e.error).unwrap_or_default();
    let err = AdapterError::from_status(status, wait, &format!("TrueLayer Data API {status} {code}"));
    let specific = match (status, code.as_str()) {
        (401, _) => Some(ObFailure::AccessExpired),
        (403, "access_denied" | "sca_exceeded") => Some(ObFailure::LoginRequired),
        (501 | 503, _) => Some(ObFailure::InstitutionUnavailable { code: if code.is_empty() { status.to_string() } else { code }, retry_after: wait.unwrap_or(BANK_RETRY_AFTER) }),
        _ => None,
    };
    (specific, err)
}

fn transaction(account: &str, t: TlTransaction, date: String) -> Result<Transaction, ObFailure> {
    let signed = signed_minor(t.amount.get(), &t.currency)?;
    // TrueLayer signs debits negative; `transaction_type` says it in words.
    let debit = match t.transaction_type.as_deref() {
        Some("DEBIT") => true,
        Some("CREDIT") => false,
        _ => signed < 0,
    };
    Ok(Transaction {
        transaction_id: t.transaction_id,
        account_id: account.to_owned(),
        amount_minor: signed.abs(),
        currency: t.currency,
        direction: if debit { Direction::Debit } else { Direction::Credit },
        pending: false,
        pending_transaction_id: None,
        booked_date: date,
        description: t.description.unwrap_or_default(),
        merchant_name: t.merchant_name,
        category: t.transaction_category.map(|c| c.to_lowercase()),
    })
}

fn signed_minor(raw: &str, currency: &str) -> Result<i64, ObFailure> {
    let (negative, digits) = match raw.trim().strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, raw.trim()),
    };
    let minor = decimal_to_minor(digits, currency).map_err(|e| ObFailure::Call(unreadable(&e.to_string())))?;
    Ok(if negative { -minor } else { minor })
}

fn unreadable(what: &str) -> AdapterError {
    AdapterError::new(ErrorClass::ManualRepair, ErrorCode::Unknown, format!("TrueLayer Data API: {what}"))
}

/// Days since 1970-01-01 to `YYYY-MM-DD` (Howard Hinnant's civil_from_days).
fn civil(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_errors_map_as_truelayer_means_them() {
        assert_eq!(civil(0), "1970-01-01");
        assert_eq!(civil(19_835), "2024-04-22");
        assert_eq!(civil(-1), "1969-12-31");
        let e = |s: &str| Some(DataError { error: s.into() });
        assert!(matches!(map_data_error(401, None, e("unauthorized")).0, Some(ObFailure::AccessExpired)));
        assert!(matches!(map_data_error(403, None, e("access_denied")).0, Some(ObFailure::LoginRequired)));
        assert!(matches!(map_data_error(503, None, e("provider_error")).0, Some(ObFailure::InstitutionUnavailable { .. })));
        assert!(map_data_error(404, None, e("account_not_found")).0.is_none());
        assert_eq!(signed_minor("-12.5", "GBP").ok(), Some(-1_250));
    }
}
