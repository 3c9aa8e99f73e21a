//! Open banking aggregators: [`OpenBankingProvider`] over [`plaid`] and
//! [`truelayer`] (payments, and accounts, balances and transactions
//! through its Data API with renewable OAuth grants). What leaves
//! here is canonical: the hand-off, the
//! granted connection (its access token wrapped in [`Secret`]), normalized
//! accounts, balances and transaction pages, and [`ObFailure`], which sorts
//! a provider's errors into what the consent machine and the product can
//! act on. Vendor JSON stays in the vendor module.

pub mod plaid;
pub mod truelayer;
pub mod vault;

use crate::{AdapterError, CallContext, Secret};
use std::time::Duration;
use switchyard_canonical::openbanking::ConsentScope;
use switchyard_canonical::openbanking_data::{Account, Balance, RemovedTransaction, Transaction};
use switchyard_canonical::openbanking_outcome::PaymentFailureReason;
use switchyard_canonical::openbanking_payment::PaymentStatus;

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
    /// When the access token inside lapses (OAuth providers; Plaid's do not):
    /// the consent machine renews it before then.
    pub access_expires_at_ms: Option<i64>,
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

/// A payment to initiate, in our words.
#[derive(Debug, Clone)]
pub struct PaymentRequest<'a> {
    /// Our payment id: sent as the provider's metadata, so the payment can
    /// be found by it (and counted by the simulator's money oracle).
    pub payment_id: &'a str,
    /// Passed through as the provider's idempotency key: a redelivered
    /// command creates nothing new while the provider remembers the key.
    pub idempotency_key: &'a str,
    pub amount_minor: i64,
    /// ISO 4217.
    pub currency: &'a str,
    /// Our name for the receiving account (the provider config maps it).
    pub beneficiary_ref: &'a str,
    /// Shown on both statements.
    pub reference: &'a str,
    /// Who pays, by our reference (the consent id): never personal data.
    pub payer_ref: &'a str,
}

/// A payment the provider created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedPayment {
    /// The provider's id of the payment: what status queries name.
    pub provider_payment_id: String,
    pub status: PaymentStatus,
    /// What the user opens to authorize it (TrueLayer: the hosted payment
    /// page with the payment's resource token), and until when.
    pub handoff: Option<IssuedHandoff>,
    /// When the provider stamped the status (our clock if it did not).
    pub at_ms: i64,
    pub failure: Option<PaymentFailureReason>,
}

/// A payment's status as the provider reports it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentState {
    pub status: PaymentStatus,
    /// The provider's clock for the status (executed_at, settled_at,
    /// failed_at), which the payment machine uses to tell late history
    /// from news after a failure.
    pub at_ms: i64,
    pub failure: Option<PaymentFailureReason>,
    /// The provider's own failure words, for the audit (`failure_stage/failure_reason`).
    pub failure_code: Option<String>,
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
    /// The one-time authorization (Plaid's public token) is spent or was
    /// never valid: exchanging it again cannot work. After an exchange
    /// whose answer was lost this is *ambiguous*: the lost exchange may
    /// have created the connection ([`OpenBankingProvider::handoff_result`]).
    #[error("the one-time authorization is spent or invalid ({code})")]
    AuthorizationSpent { code: String },
    /// The access token lapsed (an OAuth 401): renew the grant with its
    /// refresh token ([`OpenBankingProvider::renew_grant`]), store it, and
    /// ask once more.
    #[error("the access token lapsed")]
    AccessExpired,
    /// Anything else, classified by the error taxonomy (rate limits and
    /// 5xx are transient, a bad request is permanent).
    #[error(transparent)]
    Call(#[from] AdapterError),
}

/// What a hand-off session produced, as the provider reports it after the
/// fact (Plaid `/link/token/get`: `link_sessions[].results.item_add_results[]`).
/// Plaid's definition gives no `item_id` there: the session id, the
/// institution and the account ids are what identify the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandoffResult {
    /// The provider's id of the user's session (Plaid `link_session_id`).
    pub session_id: String,
    pub institution_id: Option<String>,
    pub institution_name: Option<String>,
    /// The provider's ids of the linked accounts (not account numbers).
    pub account_ids: Vec<String>,
}

/// The configured aggregator of a consent.
pub enum OpenBankingProvider {
    Plaid(plaid::PlaidAdapter),
    TrueLayer(truelayer::TrueLayerAdapter),
}

/// What a provider without this capability answers: permanent, nothing sent.
fn unsupported(provider: &str, what: &str) -> ObFailure {
    ObFailure::Call(AdapterError::new(
        switchyard_canonical::ErrorClass::Permanent,
        switchyard_canonical::ErrorCode::InvalidRequest,
        format!("{what} is not available through {provider}"),
    ))
}

impl OpenBankingProvider {
    pub fn name(&self) -> &str {
        match self {
            OpenBankingProvider::Plaid(a) => a.name(),
            OpenBankingProvider::TrueLayer(a) => a.name(),
        }
    }

    pub async fn create_handoff(&self, ctx: &CallContext, req: &HandoffRequest<'_>) -> Result<IssuedHandoff, ObFailure> {
        match self {
            OpenBankingProvider::Plaid(a) => a.create_link_token(ctx, req).await,
            OpenBankingProvider::TrueLayer(a) => a.auth_link(req),
        }
    }

    /// `scopes`: what the consent covers (TrueLayer gives a data consent an end).
    pub async fn exchange(&self, ctx: &CallContext, public_token: &str, scopes: &[switchyard_canonical::openbanking::ConsentScope]) -> Result<Granted, ObFailure> {
        match self {
            OpenBankingProvider::Plaid(a) => a.exchange_public_token(ctx, public_token).await,
            OpenBankingProvider::TrueLayer(a) => a.exchange_code(ctx, public_token, scopes).await,
        }
    }

    /// The session of hand-off `handoff` (the link token) that produced
    /// `public_token`, if any: a single-use token can be looked up there
    /// without being exchanged. `None`: no session of this hand-off
    /// produced it.
    pub async fn handoff_result(&self, ctx: &CallContext, handoff: &str, public_token: &Secret) -> Result<Option<HandoffResult>, ObFailure> {
        match self {
            OpenBankingProvider::Plaid(a) => a.link_result(ctx, handoff, public_token).await,
            // TrueLayer reports no sessions of its authorization flow.
            OpenBankingProvider::TrueLayer(_) => Ok(None),
        }
    }

    pub async fn accounts(&self, ctx: &CallContext, access_token: &Secret, with_balances: bool) -> Result<AccountsSnapshot, ObFailure> {
        match self {
            OpenBankingProvider::Plaid(a) => a.accounts(ctx, access_token, with_balances).await,
            OpenBankingProvider::TrueLayer(a) => a.data_accounts(ctx, access_token, with_balances).await,
        }
    }

    /// One page of transaction changes after `cursor` (none: from the start).
    pub async fn transactions_page(&self, ctx: &CallContext, access_token: &Secret, cursor: Option<&str>) -> Result<TransactionPage, ObFailure> {
        match self {
            OpenBankingProvider::Plaid(a) => a.transactions_sync(ctx, access_token, cursor).await,
            OpenBankingProvider::TrueLayer(a) => a.data_transactions(ctx, access_token, cursor).await,
        }
    }

    /// A renewed grant (new access token, rotated refresh token), which the
    /// caller stores before anything uses it. LOGIN_REQUIRED when the
    /// grant ended at the provider.
    pub async fn renew_grant(&self, ctx: &CallContext, grant: &Secret) -> Result<Granted, ObFailure> {
        match self {
            OpenBankingProvider::Plaid(a) => Err(unsupported(a.name(), "renewing an access token")),
            OpenBankingProvider::TrueLayer(a) => a.renew_grant(ctx, grant).await,
        }
    }

    /// Deletes the connection at the provider. Already gone counts as done.
    pub async fn remove(&self, ctx: &CallContext, access_token: &Secret) -> Result<(), ObFailure> {
        match self {
            OpenBankingProvider::Plaid(a) => a.remove_item(ctx, access_token).await,
            OpenBankingProvider::TrueLayer(a) => a.delete_connection(ctx, access_token).await,
        }
    }

    /// Creates a payment under our idempotency key. A redelivery with the
    /// same key gets the same payment while the provider remembers the key.
    pub async fn create_payment(&self, ctx: &CallContext, req: &PaymentRequest<'_>) -> Result<CreatedPayment, ObFailure> {
        match self {
            OpenBankingProvider::Plaid(a) => Err(unsupported(a.name(), "payment initiation")),
            OpenBankingProvider::TrueLayer(a) => a.create_payment(ctx, req).await,
        }
    }

    /// The payment's status now.
    pub async fn payment_status(&self, ctx: &CallContext, provider_payment_id: &str) -> Result<PaymentState, ObFailure> {
        match self {
            OpenBankingProvider::Plaid(a) => Err(unsupported(a.name(), "payment initiation")),
            OpenBankingProvider::TrueLayer(a) => a.payment_status(ctx, provider_payment_id).await,
        }
    }
}
