//! Open banking aggregators: [`OpenBankingProvider`] over [`plaid`]
//! (TrueLayer to follow). What leaves here is canonical: the hand-off, the
//! granted connection (its access token wrapped in [`Secret`]), normalized
//! accounts, balances and transaction pages, and [`ObFailure`], which sorts
//! a provider's errors into what the consent machine and the product can
//! act on. Vendor JSON stays in the vendor module.

pub mod plaid;
pub mod vault;

use crate::{AdapterError, CallContext, Secret};
use std::time::Duration;
use switchyard_canonical::openbanking::ConsentScope;
use switchyard_canonical::openbanking_data::{Account, Balance, RemovedTransaction, Transaction};

/// What a hand-off (first grant or re-authentication) needs.
#[derive(Debug, Clone)]
pub struct HandoffRequest<'a> {
    pub consent_id: &'a str,
    pub customer_ref: &'a str,
    /// ISO 3166-1 alpha-2.
    pub country: &'a str,
    pub institution_id: Option<&'a str>,
    pub redirect_uri: &'a str,
    pub scopes: &'a [ConsentScope],
    /// Re-authentication of an existing connection (Plaid update mode).
    pub reauth: Option<&'a Secret>,
}

/// What the product shows the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedHandoff {
    pub value: String,
    pub expires_at_ms: i64,
}

/// A connection the user granted.
#[derive(Debug, Clone)]
pub struct Granted {
    /// Stored encrypted, never logged or published.
    pub access_token: Secret,
    /// The provider's id of the connection (Plaid item id): not a credential.
    pub provider_reference: String,
    /// When the grant ends, if the provider says.
    pub expires_at_ms: Option<i64>,
}

/// Accounts and, when asked for, their balances.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountsSnapshot {
    pub accounts: Vec<Account>,
    pub balances: Vec<Balance>,
}

/// One page of transaction changes from a cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionPage {
    pub added: Vec<Transaction>,
    pub modified: Vec<Transaction>,
    pub removed: Vec<RemovedTransaction>,
    pub next_cursor: String,
    pub has_more: bool,
}

/// Why a call did not return data, in the words the worker acts on.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ObFailure {
    /// The institution wants the user again (Plaid ITEM_LOGIN_REQUIRED).
    #[error("login required at the institution")]
    LoginRequired,
    /// The institution is down or not answering; the aggregator is fine.
    #[error("institution unavailable ({code}); retry after {retry_after:?}")]
    InstitutionUnavailable { code: String, retry_after: Duration },
    /// The provider is still preparing the data (Plaid PRODUCT_NOT_READY).
    #[error("data not ready yet; retry after {retry_after:?}")]
    NotReady { retry_after: Duration },
    /// The connection no longer exists at the provider (removed, or the
    /// access token is no longer valid): the consent is over.
    #[error("the connection is gone at the provider ({code})")]
    ConnectionGone { code: String },
    /// Anything else, classified by the error taxonomy (rate limits and
    /// 5xx are transient, a bad request is permanent).
    #[error(transparent)]
    Call(#[from] AdapterError),
}

/// The configured aggregator of a consent.
pub enum OpenBankingProvider {
    Plaid(plaid::PlaidAdapter),
}

impl OpenBankingProvider {
    pub fn name(&self) -> &str {
        match self {
            OpenBankingProvider::Plaid(a) => a.name(),
        }
    }

    pub async fn create_handoff(&self, ctx: &CallContext, req: &HandoffRequest<'_>) -> Result<IssuedHandoff, ObFailure> {
        match self {
            OpenBankingProvider::Plaid(a) => a.create_link_token(ctx, req).await,
        }
    }

    pub async fn exchange(&self, ctx: &CallContext, public_token: &str) -> Result<Granted, ObFailure> {
        match self {
            OpenBankingProvider::Plaid(a) => a.exchange_public_token(ctx, public_token).await,
        }
    }

    pub async fn accounts(&self, ctx: &CallContext, access_token: &Secret, with_balances: bool) -> Result<AccountsSnapshot, ObFailure> {
        match self {
            OpenBankingProvider::Plaid(a) => a.accounts(ctx, access_token, with_balances).await,
        }
    }

    /// One page of transaction changes after `cursor` (none: from the start).
    pub async fn transactions_page(&self, ctx: &CallContext, access_token: &Secret, cursor: Option<&str>) -> Result<TransactionPage, ObFailure> {
        match self {
            OpenBankingProvider::Plaid(a) => a.transactions_sync(ctx, access_token, cursor).await,
        }
    }

    /// Deletes the connection at the provider. Already gone counts as done.
    pub async fn remove(&self, ctx: &CallContext, access_token: &Secret) -> Result<(), ObFailure> {
        match self {
            OpenBankingProvider::Plaid(a) => a.remove_item(ctx, access_token).await,
        }
    }
}
