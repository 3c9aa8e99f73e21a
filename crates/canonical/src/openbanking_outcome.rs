//! What the open banking worker answers for each command
//! (`openbanking.outcomes.v1`, keyed by `consent_id`), in our own
//! vocabulary ([`OpenBankingKind`]): whatever Plaid or TrueLayer said, the
//! product designs for these and nothing else. Wire form
//! `schemas/openbanking/OpenBankingOutcome.v1.avsc`.
//!
//! No access or refresh token, no public token or authorization code, and
//! no account number is ever part of an outcome. The one thing handed to
//! the user's device is the hand-off ([`Handoff`]): a Link token or an
//! authorization URL, short-lived and useless without the user.

use crate::openbanking::{Dataset, OpenBankingAction, OpenBankingCommand};
use crate::openbanking_consent::ConsentState;
use crate::openbanking_payment::PaymentStatus;
use crate::OutcomeError;
use serde::{Deserialize, Serialize};

/// The answers and changes of the open banking domain. Outcomes use all of
/// them; events (`openbanking.events.v1`) only those marked as such.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OpenBankingKind {
    /// The user must act: show `handoff` (consent, re-authentication, or a
    /// payment's authorization). Also an event.
    AuthRequired,
    /// The consent is granted and usable. Also an event.
    ConsentActive,
    /// The consent ends soon (`consent_expires_at_ms`): ask the user to
    /// renew it. Also an event.
    ConsentExpiring,
    /// The consent ended; a new consent is needed. Also an event.
    ConsentExpired,
    /// The institution wants the user to log in again (changed password,
    /// MFA, consent withdrawn at the bank's side for re-confirmation): send
    /// CREATE_CONSENT for a re-authentication hand-off. Also an event.
    LoginRequired,
    /// The consent was revoked (by us, the user or the bank). Also an event.
    Revoked,
    /// The institution is down or not answering (the aggregator is fine):
    /// ask again after `retry_after_ms`. Nothing about the consent changed.
    InstitutionUnavailable,
    /// A refresh published what it could; `missing` says what is not there
    /// and why.
    PartialData,
    /// A refresh published everything asked for.
    DataRefreshed,
    /// A payment's status moved (`payment`). Also an event.
    PaymentUpdated,
    /// Refused before any provider call (`refusal` or `error` says why).
    Rejected,
    /// The provider refused or failed for good (`error`).
    Failed,
}

impl OpenBankingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OpenBankingKind::AuthRequired => "AUTH_REQUIRED",
            OpenBankingKind::ConsentActive => "CONSENT_ACTIVE",
            OpenBankingKind::ConsentExpiring => "CONSENT_EXPIRING",
            OpenBankingKind::ConsentExpired => "CONSENT_EXPIRED",
            OpenBankingKind::LoginRequired => "LOGIN_REQUIRED",
            OpenBankingKind::Revoked => "REVOKED",
            OpenBankingKind::InstitutionUnavailable => "INSTITUTION_UNAVAILABLE",
            OpenBankingKind::PartialData => "PARTIAL_DATA",
            OpenBankingKind::DataRefreshed => "DATA_REFRESHED",
            OpenBankingKind::PaymentUpdated => "PAYMENT_UPDATED",
            OpenBankingKind::Rejected => "REJECTED",
            OpenBankingKind::Failed => "FAILED",
        }
    }

    /// Whether a change of this kind is also published on
    /// `openbanking.events.v1` (outcomes answer commands; events tell every
    /// consumer about a change, including those no command caused).
    pub fn is_event(self) -> bool {
        matches!(
            self,
            OpenBankingKind::AuthRequired
                | OpenBankingKind::ConsentActive
                | OpenBankingKind::ConsentExpiring
                | OpenBankingKind::ConsentExpired
                | OpenBankingKind::LoginRequired
                | OpenBankingKind::Revoked
                | OpenBankingKind::PaymentUpdated
        )
    }
}

/// Why a command was refused by the consent's state, before any provider call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpenBankingRefusal {
    /// CREATE_CONSENT for a consent that is already active.
    ConsentExists,
    /// Any command but CREATE_CONSENT for a consent we never created.
    ConsentNotFound,
    /// The consent is over (revoked or expired): a new consent id is needed.
    ConsentClosed,
    /// The command is not possible in the consent's state (COMPLETE_CONSENT
    /// with no hand-off outstanding, a second payment on a single-payment
    /// consent).
    IllegalTransition,
    /// A data set or a payment the consent does not grant.
    ScopeNotGranted,
}

impl OpenBankingRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            OpenBankingRefusal::ConsentExists => "consent_exists",
            OpenBankingRefusal::ConsentNotFound => "consent_not_found",
            OpenBankingRefusal::ConsentClosed => "consent_closed",
            OpenBankingRefusal::IllegalTransition => "illegal_transition",
            OpenBankingRefusal::ScopeNotGranted => "scope_not_granted",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HandoffKind {
    /// Initialise the provider's front-end SDK with it (Plaid Link).
    LinkToken,
    /// Send the user's browser there (TrueLayer's auth link, a bank's OAuth page).
    AuthorizationUrl,
}

/// What the product shows the user to grant, renew or authorize.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handoff {
    pub kind: HandoffKind,
    pub value: String,
    /// After this, the hand-off is useless; ask for a new one with
    /// CREATE_CONSENT.
    pub expires_at_ms: i64,
}

/// Why part of a refresh is not there. The schemas give the enum a
/// default (PROVIDER_ERROR), so under Avro's resolution rules a consumer on
/// an older schema reads a reason added later as that. (Our compatibility
/// gate does not honour enum defaults yet and still refuses a new symbol.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MissingReason {
    /// The institution failed or timed out for this part.
    InstitutionUnavailable,
    /// The institution does not offer it (no balances for this account type).
    NotSupported,
    /// The provider is still preparing it (Plaid PRODUCT_NOT_READY); a
    /// later refresh gets it.
    NotReady,
    /// The consent does not grant it.
    ScopeNotGranted,
    /// The provider throttled us.
    RateLimited,
    /// The account is closed or no longer shared.
    AccountUnavailable,
    /// Anything else the provider said; its code is in the audit.
    ProviderError,
}

/// One gap in a refresh: a data set for one account, or for all of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingData {
    pub dataset: Dataset,
    /// The provider's opaque account id; none: every account.
    pub account_id: Option<String>,
    pub reason: MissingReason,
    /// When asking again may help, from `completed_at_ms`.
    pub retry_after_ms: Option<i64>,
}

/// Why a payment failed; enum default PROVIDER_ERROR, as [`MissingReason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentFailureReason {
    /// The user declined or abandoned the authorization, or it lapsed.
    AuthorizationFailed,
    InsufficientFunds,
    /// The payer's bank refused it before executing.
    RejectedByBank,
    /// Executed, then returned by the receiving or sending bank.
    Returned,
    /// The consent ended before the payment could be made.
    ConsentInvalid,
    /// Anything else the provider said; its code is in the audit.
    ProviderError,
}

/// A payment as it stands after the command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentResult {
    pub payment_id: String,
    pub status: PaymentStatus,
    pub amount_minor: i64,
    pub currency: String,
    /// The provider's id for the payment, for support and reconciliation.
    pub provider_reference: Option<String>,
    pub failure: Option<PaymentFailureReason>,
}

/// One answer per command, keyed by `consent_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenBankingOutcome {
    pub consent_id: String,
    pub idempotency_key: String,
    pub action: OpenBankingAction,
    pub kind: OpenBankingKind,
    /// The consent's state after the command; none when we hold no such consent.
    pub consent_state: Option<ConsentState>,
    pub refusal: Option<OpenBankingRefusal>,
    /// The provider that holds the consent, by catalog name.
    pub provider: Option<String>,
    /// The provider's id of the consent (Plaid item id, TrueLayer
    /// connection id): an identifier, never a credential.
    pub provider_reference: Option<String>,
    pub institution_id: Option<String>,
    /// AUTH_REQUIRED: what to show the user.
    pub handoff: Option<Handoff>,
    pub consent_expires_at_ms: Option<i64>,
    /// INSTITUTION_UNAVAILABLE: how long, from `completed_at_ms`, before
    /// asking again can help.
    pub retry_after_ms: Option<i64>,
    /// PARTIAL_DATA: what a refresh could not get.
    pub missing: Vec<MissingData>,
    /// Data pages a refresh published on `openbanking.data.v1`.
    pub data_pages: i32,
    pub payment: Option<PaymentResult>,
    pub error: Option<OutcomeError>,
    /// Provider calls made for this command.
    pub attempts: i32,
    /// Answered from the store for a duplicate, without a provider call.
    pub replayed: bool,
    pub completed_at_ms: i64,
}

impl OpenBankingOutcome {
    /// An outcome for `command` with nothing filled in beyond its kind.
    pub fn new(command: &OpenBankingCommand, kind: OpenBankingKind, completed_at_ms: i64) -> Self {
        Self {
            consent_id: command.consent_id.clone(),
            idempotency_key: command.idempotency_key.clone(),
            action: command.action,
            kind,
            consent_state: None,
            refusal: None,
            provider: None,
            provider_reference: None,
            institution_id: None,
            handoff: None,
            consent_expires_at_ms: None,
            retry_after_ms: None,
            missing: Vec::new(),
            data_pages: 0,
            payment: None,
            error: None,
            attempts: 0,
            replayed: false,
            completed_at_ms,
        }
    }

    /// Refused before any provider call.
    pub fn rejected(command: &OpenBankingCommand, refusal: Option<OpenBankingRefusal>, error: OutcomeError, completed_at_ms: i64) -> Self {
        let mut o = Self::new(command, OpenBankingKind::Rejected, completed_at_ms);
        o.refusal = refusal;
        o.error = Some(error);
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consent_changes_and_payment_moves_are_events_answers_to_one_command_are_not() {
        let events: Vec<_> = [
            OpenBankingKind::AuthRequired,
            OpenBankingKind::ConsentActive,
            OpenBankingKind::ConsentExpiring,
            OpenBankingKind::ConsentExpired,
            OpenBankingKind::LoginRequired,
            OpenBankingKind::Revoked,
            OpenBankingKind::InstitutionUnavailable,
            OpenBankingKind::PartialData,
            OpenBankingKind::DataRefreshed,
            OpenBankingKind::PaymentUpdated,
            OpenBankingKind::Rejected,
            OpenBankingKind::Failed,
        ]
        .into_iter()
        .filter(|k| k.is_event())
        .map(OpenBankingKind::as_str)
        .collect();
        assert_eq!(events, ["AUTH_REQUIRED", "CONSENT_ACTIVE", "CONSENT_EXPIRING", "CONSENT_EXPIRED", "LOGIN_REQUIRED", "REVOKED", "PAYMENT_UPDATED"]);
    }
}
