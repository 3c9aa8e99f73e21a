//! Plaid (API 2020-09-14): Link tokens, public token exchange, accounts and
//! balances, `/transactions/sync`, `/item/remove`. Request and response
//! shapes follow Plaid's OpenAPI document (`tests/contracts/plaid/plaid.json`,
//! checked by `tests/tests/openbanking_contracts.rs`).
//!
//! - Credentials travel in the JSON body (`client_id`, `secret`), as Plaid's
//!   own client libraries send them; so does the item's `access_token`.
//!   None of it is ever logged: errors quote Plaid's codes, not bodies.
//! - Amounts are read as the JSON number Plaid wrote (a raw value) and
//!   shifted to minor units exactly; Plaid's sign (positive: money out)
//!   becomes our `direction`.
//! - Plaid sends no `Retry-After` for institution errors: the waits in
//!   [`PlaidAdapter`] are ours (configurable), chosen as Plaid's docs
//!   suggest retrying "later" without a figure.

use super::{AccountsSnapshot, Granted, HandoffRequest, HandoffResult, IssuedHandoff, ObFailure, TransactionPage};
use crate::http::{send_json, traced, Transport};
use crate::secret::ApiKey;
use crate::{AdapterError, CallContext, Secret};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::time::Duration;
use switchyard_canonical::money::decimal_to_minor;
use switchyard_canonical::openbanking::ConsentScope;
use switchyard_canonical::openbanking_data::{Account, AccountKind, Balance, Direction, RemovedTransaction, Transaction};
use switchyard_canonical::{ErrorClass, ErrorCode};

/// How long a public token is worth re-asking for is not our call: Plaid
/// documents link tokens as living 4 hours, and says so in `expiration`.
pub struct PlaidAdapter {
    name: String,
    base_url: String,
    client_id: String,
    secret: ApiKey,
    /// Replaced when the client certificate rotates ([`WithClient`](crate::tls_rotation::WithClient)).
    http: crate::tls_rotation::LiveClient,
    /// Link's title for the user.
    client_name: String,
    /// `/transactions/sync` `count` (1-500).
    page_size: u32,
    /// Waits we answer INSTITUTION_UNAVAILABLE and NOT_READY with.
    institution_retry_after: Duration,
    not_ready_retry_after: Duration,
    /// The public token exchange's own deadline, far above the client's:
    /// a public token is single use and no Plaid endpoint returns an
    /// item's access token again, so an exchange cut off by our timeout
    /// after Plaid executed it loses the item for good.
    exchange_timeout: Duration,
}

#[derive(Serialize)]
struct Auth<'a> {
    client_id: &'a str,
    /// Read per request: a rotated secret is sent from the next one on.
    #[serde(serialize_with = "expose")]
    secret: Secret,
}

fn expose<S: serde::Serializer>(secret: &Secret, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(secret.expose())
}

#[derive(Serialize)]
struct LinkTokenCreate<'a> {
    #[serde(flatten)]
    auth: Auth<'a>,
    client_name: &'a str,
    language: &'a str,
    country_codes: [&'a str; 1],
    user: LinkUser<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    products: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    institution_id: Option<&'a str>,
    redirect_uri: &'a str,
}

#[derive(Serialize)]
struct LinkUser<'a> {
    client_user_id: &'a str,
}

#[derive(Deserialize)]
struct LinkTokenCreated {
    link_token: String,
    expiration: String,
}

#[derive(Serialize)]
struct Exchange<'a> {
    #[serde(flatten)]
    auth: Auth<'a>,
    public_token: &'a str,
}

#[derive(Deserialize)]
struct Exchanged {
    access_token: String,
    item_id: String,
}

#[derive(Serialize)]
struct WithToken<'a> {
    #[serde(flatten)]
    auth: Auth<'a>,
    access_token: &'a str,
}

#[derive(Serialize)]
struct Sync<'a> {
    #[serde(flatten)]
    auth: Auth<'a>,
    access_token: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<&'a str>,
    count: u32,
}

#[derive(Deserialize)]
struct AccountsReply {
    accounts: Vec<PlaidAccount>,
}

#[derive(Deserialize)]
struct PlaidAccount {
    account_id: String,
    name: String,
    mask: Option<String>,
    #[serde(rename = "type")]
    kind: String,
    subtype: Option<String>,
    balances: PlaidBalances,
}

#[derive(Deserialize)]
struct PlaidBalances {
    available: Option<Box<RawValue>>,
    current: Option<Box<RawValue>>,
    limit: Option<Box<RawValue>>,
    iso_currency_code: Option<String>,
    unofficial_currency_code: Option<String>,
}

#[derive(Deserialize)]
struct SyncReply {
    added: Vec<PlaidTransaction>,
    modified: Vec<PlaidTransaction>,
    removed: Vec<PlaidRemoved>,
    next_cursor: String,
    has_more: bool,
}

#[derive(Deserialize)]
struct PlaidTransaction {
    transaction_id: String,
    account_id: String,
    amount: Box<RawValue>,
    iso_currency_code: Option<String>,
    unofficial_currency_code: Option<String>,
    date: String,
    name: Option<String>,
    merchant_name: Option<String>,
    pending: bool,
    pending_transaction_id: Option<String>,
    personal_finance_category: Option<Category>,
}

#[derive(Deserialize)]
struct Category {
    primary: String,
}

#[derive(Deserialize)]
struct PlaidRemoved {
    transaction_id: String,
    account_id: Option<String>,
}

#[derive(Deserialize)]
struct PlaidError {
    error_type: String,
    error_code: String,
    request_id: Option<String>,
}

#[derive(Deserialize)]
struct Empty {}

#[derive(Serialize)]
struct LinkTokenGet<'a> {
    #[serde(flatten)]
    auth: Auth<'a>,
    link_token: &'a str,
}

/// `/link/token/get`'s answer, the parts we read (`LinkTokenGetResponse`).
#[derive(Deserialize)]
struct LinkTokenGot {
    #[serde(default)]
    link_sessions: Vec<LinkSession>,
}

/// `LinkTokenGetSessionsResponse`.
#[derive(Deserialize)]
struct LinkSession {
    link_session_id: String,
    results: Option<LinkSessionResults>,
}

/// `LinkSessionResults` (its other result lists are other products').
#[derive(Deserialize)]
struct LinkSessionResults {
    #[serde(default)]
    item_add_results: Vec<ItemAddResult>,
}

/// `LinkSessionItemAddResult`: `public_token`, `accounts`, `institution`;
/// Plaid's definition has no `item_id` here.
#[derive(Deserialize)]
struct ItemAddResult {
    public_token: String,
    #[serde(default)]
    accounts: Vec<SessionAccount>,
    institution: Option<SessionInstitution>,
}

/// `LinkSessionSuccessMetadataAccount` (the mask is not read: never stored).
#[derive(Deserialize)]
struct SessionAccount {
    id: Option<String>,
}

/// `LinkSessionSuccessMetadataInstitution`.
#[derive(Deserialize)]
struct SessionInstitution {
    name: Option<String>,
    institution_id: Option<String>,
}

impl PlaidAdapter {
    pub fn new(name: &str, base_url: &str, client_id: &str, secret: impl Into<ApiKey>, transport: Transport) -> Result<Self, AdapterError> {
        Ok(Self {
            name: name.to_owned(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            client_id: client_id.to_owned(),
            secret: secret.into(),
            http: crate::http::client(transport)?.into(),
            client_name: "switchyard".to_owned(),
            page_size: 100,
            institution_retry_after: Duration::from_secs(60),
            not_ready_retry_after: Duration::from_secs(30),
            exchange_timeout: Duration::from_secs(120),
        })
    }

    pub fn with_page_size(mut self, page_size: u32) -> Self {
        self.page_size = page_size.clamp(1, 500);
        self
    }

    pub fn with_client_name(mut self, client_name: &str) -> Self {
        client_name.clone_into(&mut self.client_name);
        self
    }

    pub fn with_retry_after(mut self, institution: Duration, not_ready: Duration) -> Self {
        self.institution_retry_after = institution;
        self.not_ready_retry_after = not_ready;
        self
    }

    /// See `exchange_timeout`: never below the client's own timeout.
    pub fn with_exchange_timeout(mut self, timeout: Duration) -> Self {
        self.exchange_timeout = timeout;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn auth(&self) -> Auth<'_> {
        Auth { client_id: &self.client_id, secret: self.secret.current() }
    }

    async fn post<B: Serialize, T: serde::de::DeserializeOwned>(&self, ctx: &CallContext, path: &str, body: &B) -> Result<T, ObFailure> {
        self.post_within(ctx, path, body, None).await
    }

    /// [`Self::post`] with its own deadline instead of the client's.
    async fn post_within<B: Serialize, T: serde::de::DeserializeOwned>(&self, ctx: &CallContext, path: &str, body: &B, timeout: Option<Duration>) -> Result<T, ObFailure> {
        let mut req = traced(self.http.current().post(format!("{}{path}", self.base_url)), ctx).json(body);
        if let Some(timeout) = timeout {
            req = req.timeout(timeout);
        }
        let mut failure = None;
        let reply = send_json::<T, PlaidError>(req, |status, wait, error| {
            let (mapped, err) = self.map_error(status, wait, error);
            failure = mapped;
            err
        })
        .await;
        match (reply, failure) {
            (Ok(t), _) => Ok(t),
            (Err(_), Some(f)) => Err(f),
            (Err(e), None) => Err(ObFailure::Call(e)),
        }
    }

    /// Plaid's error object to our failure. The `AdapterError` is what the
    /// taxonomy says when nothing more specific applies.
    fn map_error(&self, status: u16, wait: Option<Duration>, error: Option<PlaidError>) -> (Option<ObFailure>, AdapterError) {
        let Some(e) = error else { return (None, AdapterError::from_status(status, wait, "no Plaid error object")) };
        let detail = format!("Plaid {}/{} (request {})", e.error_type, e.error_code, e.request_id.as_deref().unwrap_or("-"));
        let specific = match (e.error_type.as_str(), e.error_code.as_str()) {
            (_, "ITEM_LOGIN_REQUIRED") => Some(ObFailure::LoginRequired),
            ("INSTITUTION_ERROR", code) => Some(ObFailure::InstitutionUnavailable { code: code.to_owned(), retry_after: self.institution_retry_after }),
            (_, "PRODUCT_NOT_READY") => Some(ObFailure::NotReady { retry_after: self.not_ready_retry_after }),
            (_, code @ ("INVALID_ACCESS_TOKEN" | "ITEM_NOT_FOUND")) => Some(ObFailure::ConnectionGone { code: code.to_owned() }),
            (_, code @ "INVALID_PUBLIC_TOKEN") => Some(ObFailure::AuthorizationSpent { code: code.to_owned() }),
            _ => None,
        };
        let err = match (e.error_type.as_str(), e.error_code.as_str()) {
            ("RATE_LIMIT_EXCEEDED", _) => {
                let mut err = AdapterError::new(ErrorClass::Transient, ErrorCode::RateLimited, detail);
                err.retry_after = Some(wait.unwrap_or(Duration::from_secs(2)));
                err.http_status = Some(status);
                err
            }
            (_, "INVALID_API_KEYS") => AdapterError::new(ErrorClass::ManualRepair, ErrorCode::AuthenticationFailed, detail),
            ("API_ERROR", _) => AdapterError::from_status(status.max(500), wait, &detail),
            _ => AdapterError::from_status(status, wait, &detail),
        };
        (specific, err)
    }

    pub async fn create_link_token(&self, ctx: &CallContext, req: &HandoffRequest<'_>) -> Result<IssuedHandoff, ObFailure> {
        // Update mode names the item by its access token and no products.
        let products = if req.reauth.is_some() { Vec::new() } else { products(req.scopes) };
        let body = LinkTokenCreate {
            auth: self.auth(),
            client_name: &self.client_name,
            language: "en",
            country_codes: [req.country],
            user: LinkUser { client_user_id: req.customer_ref },
            products,
            access_token: req.reauth.map(Secret::expose),
            institution_id: req.institution_id,
            redirect_uri: req.redirect_uri,
        };
        let created: LinkTokenCreated = self.post(ctx, "/link/token/create", &body).await?;
        let Some(expires_at_ms) = parse_time(&created.expiration) else {
            return Err(ObFailure::Call(unreadable("link token expiration is not an RFC 3339 time")));
        };
        Ok(IssuedHandoff { value: created.link_token, expires_at_ms })
    }

    pub async fn exchange_public_token(&self, ctx: &CallContext, public_token: &str) -> Result<Granted, ObFailure> {
        let body = Exchange { auth: self.auth(), public_token };
        let exchanged: Exchanged = self.post_within(ctx, "/item/public_token/exchange", &body, Some(self.exchange_timeout)).await?;
        // Plaid items do not lapse by time (consent_expiration_time is for
        // some European OAuth institutions; PENDING_EXPIRATION says so).
        Ok(Granted { access_token: Secret::new(exchanged.access_token), provider_reference: exchanged.item_id, expires_at_ms: None, access_expires_at_ms: None })
    }

    /// The Link session of `link_token` whose `item_add_results` hold
    /// `public_token`: how an exchange whose answer was lost is found
    /// again. Plaid notes that non-Hosted-Link sessions report their
    /// results here only once Link events are enabled for the client.
    pub async fn link_result(&self, ctx: &CallContext, link_token: &str, public_token: &Secret) -> Result<Option<HandoffResult>, ObFailure> {
        use subtle::ConstantTimeEq;
        let got: LinkTokenGot = self.post(ctx, "/link/token/get", &LinkTokenGet { auth: self.auth(), link_token }).await?;
        for session in got.link_sessions {
            let Some(results) = session.results else { continue };
            for added in results.item_add_results {
                if bool::from(added.public_token.as_bytes().ct_eq(public_token.expose().as_bytes())) {
                    let institution = added.institution;
                    return Ok(Some(HandoffResult {
                        session_id: session.link_session_id,
                        institution_id: institution.as_ref().and_then(|i| i.institution_id.clone()),
                        institution_name: institution.and_then(|i| i.name),
                        account_ids: added.accounts.into_iter().filter_map(|a| a.id).collect(),
                    }));
                }
            }
        }
        Ok(None)
    }

    pub async fn accounts(&self, ctx: &CallContext, access_token: &Secret, with_balances: bool) -> Result<AccountsSnapshot, ObFailure> {
        // `/accounts/balance/get` asks the institution for live balances;
        // `/accounts/get` returns Plaid's cached ones, which we do not publish.
        let path = if with_balances { "/accounts/balance/get" } else { "/accounts/get" };
        let reply: AccountsReply = self.post(ctx, path, &WithToken { auth: self.auth(), access_token: access_token.expose() }).await?;
        let mut snapshot = AccountsSnapshot::default();
        for a in reply.accounts {
            let currency = a.balances.iso_currency_code.clone().or(a.balances.unofficial_currency_code.clone()).unwrap_or_else(|| "XXX".into());
            let kind = match a.kind.as_str() {
                "depository" => AccountKind::Depository,
                "credit" => AccountKind::Credit,
                "loan" => AccountKind::Loan,
                "investment" | "brokerage" => AccountKind::Investment,
                _ => AccountKind::Other,
            };
            if with_balances {
                // Plaid reports what is owed on credit and loan accounts as a
                // positive `current`; our balances are signed from the
                // account holder's side, so a debt is negative.
                let owed = matches!(kind, AccountKind::Credit | AccountKind::Loan);
                let signed = |v: &Option<Box<RawValue>>, flip: bool| -> Result<Option<i64>, ObFailure> {
                    v.as_deref().map(|raw| signed_minor(raw.get(), &currency).map(|m| if flip { -m } else { m })).transpose()
                };
                snapshot.balances.push(Balance {
                    account_id: a.account_id.clone(),
                    current_minor: signed(&a.balances.current, owed)?,
                    available_minor: signed(&a.balances.available, false)?,
                    limit_minor: signed(&a.balances.limit, false)?,
                    currency: currency.clone(),
                    as_of_ms: None,
                });
            }
            snapshot.accounts.push(Account { account_id: a.account_id, name: a.name, kind, subtype: a.subtype, currency, mask: a.mask });
        }
        Ok(snapshot)
    }

    pub async fn transactions_sync(&self, ctx: &CallContext, access_token: &Secret, cursor: Option<&str>) -> Result<TransactionPage, ObFailure> {
        let body = Sync { auth: self.auth(), access_token: access_token.expose(), cursor, count: self.page_size };
        let reply: SyncReply = self.post(ctx, "/transactions/sync", &body).await?;
        let map = |list: Vec<PlaidTransaction>| list.into_iter().map(transaction).collect::<Result<Vec<_>, _>>();
        Ok(TransactionPage {
            added: map(reply.added)?,
            modified: map(reply.modified)?,
            removed: reply
                .removed
                .into_iter()
                .map(|r| RemovedTransaction { transaction_id: r.transaction_id, account_id: r.account_id.unwrap_or_default() })
                .collect(),
            next_cursor: reply.next_cursor,
            has_more: reply.has_more,
        })
    }

    pub async fn remove_item(&self, ctx: &CallContext, access_token: &Secret) -> Result<(), ObFailure> {
        match self.post::<_, Empty>(ctx, "/item/remove", &WithToken { auth: self.auth(), access_token: access_token.expose() }).await {
            Ok(_) | Err(ObFailure::ConnectionGone { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Plaid products for our scopes. Balances come with any product, and
/// Link needs at least one: transactions is the one our data comes from.
fn products(scopes: &[ConsentScope]) -> Vec<&'static str> {
    let mut products = vec!["transactions"];
    if scopes.contains(&ConsentScope::PaymentInitiation) {
        products.push("payment_initiation");
    }
    products
}

fn transaction(t: PlaidTransaction) -> Result<Transaction, ObFailure> {
    let currency = t.iso_currency_code.or(t.unofficial_currency_code).unwrap_or_else(|| "XXX".into());
    let signed = signed_minor(t.amount.get(), &currency)?;
    Ok(Transaction {
        transaction_id: t.transaction_id,
        account_id: t.account_id,
        amount_minor: signed.abs(),
        currency,
        // Plaid: positive is money leaving the account.
        direction: if signed > 0 { Direction::Debit } else { Direction::Credit },
        pending: t.pending,
        pending_transaction_id: t.pending_transaction_id,
        booked_date: t.date,
        description: t.name.unwrap_or_default(),
        merchant_name: t.merchant_name,
        category: t.personal_finance_category.map(|c| c.primary.to_lowercase()),
    })
}

/// A JSON number as Plaid wrote it to signed minor units, exactly.
fn signed_minor(raw: &str, currency: &str) -> Result<i64, ObFailure> {
    let (negative, digits) = match raw.trim().strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, raw.trim()),
    };
    let minor = decimal_to_minor(digits, currency).map_err(|e| ObFailure::Call(unreadable(&e.to_string())))?;
    Ok(if negative { -minor } else { minor })
}

fn unreadable(what: &str) -> AdapterError {
    // A reply we cannot read is a defect for a person, not a retry loop.
    AdapterError::new(ErrorClass::ManualRepair, ErrorCode::Unknown, format!("unreadable Plaid reply: {what}"))
}

/// RFC 3339 (`2026-12-06T12:00:00Z`, offsets and fractions allowed) to Unix ms.
fn parse_time(s: &str) -> Option<i64> {
    crate::webhooks::rfc3339_ms(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_shifted_exactly_and_signed_as_plaid_means_them() {
        assert_eq!(signed_minor("12.34", "USD").ok(), Some(1234));
        assert_eq!(signed_minor("-1500.5", "USD").ok(), Some(-150_050));
        assert_eq!(signed_minor("7", "JPY").ok(), Some(7));
        assert!(signed_minor("0.001", "USD").is_err());
    }

    #[test]
    fn link_token_expiration_parses() {
        assert_eq!(parse_time("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(parse_time("2026-12-06T12:00:00.5+01:00"), Some(1_796_554_800_500));
        assert_eq!(parse_time("tomorrow"), None);
    }
}

crate::tls_rotation::with_client_field!(PlaidAdapter);
