//! A consent's life as one pure state machine, and the decision the worker
//! takes on a command *before* any provider call.
//!
//! ```text
//! REQUESTED -> AWAITING_USER -> ACTIVE -> EXPIRING -> EXPIRED
//! ACTIVE | EXPIRING -> LOGIN_REQUIRED -> EXPIRED (the grant's end)
//! EXPIRING | LOGIN_REQUIRED --(re-auth hand-off, the user comes back)--> ACTIVE
//! any state -> REVOKED (final); EXPIRED moves only to REVOKED
//! ```
//!
//! The re-authentication hand-off is not a state of its own: an expiring
//! grant keeps working while the user is away, a broken login keeps not
//! working, and `handoff_expires_at_ms` says a hand-off is out.
//!
//! Nothing here reads a clock: deadlines are instants stored with the
//! consent (the grant's end, the access token's end, the hand-off's end),
//! and `now` is passed in. [`Consent::state_at`] is the state once the
//! deadlines that have passed are applied, so a consent whose grant ended
//! while nothing ran is answered as expired, and [`decide`] judges every
//! command on that state. A refresh, a payment or a completion against an
//! expired or revoked consent is answered without calling the provider.
//!
//! The tokens a grant yields are stored beside the consent by the store,
//! encrypted; this record holds only their deadlines.
//!
//! Provider signals ([`ConsentSignal`]) arrive by webhook and by our own
//! calls' answers, duplicated and out of order: one stamped before the last
//! change applied is stale and changes nothing, except a revocation, which
//! is final whenever it happened.

use crate::openbanking::{ConsentScope, Dataset, OpenBankingAction, OpenBankingCommand};
use crate::openbanking_outcome::{OpenBankingKind, OpenBankingRefusal};
use crate::Fingerprint;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConsentState {
    /// Recorded; the hand-off is not created yet (or its creation failed).
    Requested,
    /// The hand-off is out; the user has not come back.
    AwaitingUser,
    Active,
    /// Still usable, ending within the expiring window: ask the user to renew.
    Expiring,
    /// The institution wants the user again; data and payments wait for a
    /// re-authentication hand-off.
    LoginRequired,
    Expired,
    Revoked,
}

impl ConsentState {
    pub const ALL: [ConsentState; 7] = [
        ConsentState::Requested,
        ConsentState::AwaitingUser,
        ConsentState::Active,
        ConsentState::Expiring,
        ConsentState::LoginRequired,
        ConsentState::Expired,
        ConsentState::Revoked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConsentState::Requested => "REQUESTED",
            ConsentState::AwaitingUser => "AWAITING_USER",
            ConsentState::Active => "ACTIVE",
            ConsentState::Expiring => "EXPIRING",
            ConsentState::LoginRequired => "LOGIN_REQUIRED",
            ConsentState::Expired => "EXPIRED",
            ConsentState::Revoked => "REVOKED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == s)
    }

    pub fn terminal(self) -> bool {
        matches!(self, ConsentState::Expired | ConsentState::Revoked)
    }

    /// The grant works: data can be pulled and payments made.
    pub fn usable(self) -> bool {
        matches!(self, ConsentState::Active | ConsentState::Expiring)
    }

    /// What we answer, in our vocabulary, about a consent in this state.
    pub fn answer(self) -> OpenBankingKind {
        match self {
            ConsentState::Requested | ConsentState::AwaitingUser => OpenBankingKind::AuthRequired,
            ConsentState::Active => OpenBankingKind::ConsentActive,
            ConsentState::Expiring => OpenBankingKind::ConsentExpiring,
            ConsentState::LoginRequired => OpenBankingKind::LoginRequired,
            ConsentState::Expired => OpenBankingKind::ConsentExpired,
            ConsentState::Revoked => OpenBankingKind::Revoked,
        }
    }

    /// The event entering this state publishes (none for REQUESTED: nothing
    /// happened anyone outside can act on).
    pub fn event(self) -> Option<OpenBankingKind> {
        (self != ConsentState::Requested).then(|| self.answer())
    }
}

/// Policy, from configuration; durations in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsentTimings {
    /// How long before the grant ends the consent counts as expiring.
    pub expiring_window_ms: i64,
    /// How long before the access token lapses it is renewed with the
    /// refresh token, so no call meets a lapsed token.
    pub renew_margin_ms: i64,
}

impl Default for ConsentTimings {
    /// Seven days' notice (time for a user to act on an e-mail), and five
    /// minutes' margin (longer than a refresh of many pages takes).
    fn default() -> Self {
        Self { expiring_window_ms: 7 * 24 * 3_600_000, renew_margin_ms: 5 * 60_000 }
    }
}

/// One consent's state and deadlines; stored with it (tokens beside it, encrypted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    pub state: ConsentState,
    /// The provider that holds it, by catalog name; none until routed.
    pub provider: Option<String>,
    pub scopes: Vec<ConsentScope>,
    /// A consent for one payment (created with it): the only payment it makes.
    pub payment_id: Option<String>,
    /// The outstanding hand-off's end: set while a first grant or a
    /// re-authentication waits for the user.
    pub handoff_expires_at_ms: Option<i64>,
    /// When the grant ends (PSD2's 90 or 180 days, the user's choice); none
    /// when the provider gives no end.
    pub expires_at_ms: Option<i64>,
    /// When the access token lapses; none for providers whose tokens do not.
    pub access_expires_at_ms: Option<i64>,
    /// The provider's clock of the last state change it told us of (or of
    /// the deadline that changed it): provider signals stamped before it
    /// are stale. Our own calls' answers do not move it.
    pub changed_at_ms: i64,
}

/// What a provider told us about the consent (a webhook, or our own call's answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentSignal {
    /// Our hand-off call succeeded (first grant or re-authentication).
    HandoffIssued { expires_at_ms: i64 },
    /// The user granted or re-authenticated; the tokens are stored.
    Granted { expires_at_ms: Option<i64>, access_expires_at_ms: Option<i64> },
    /// We renewed the access token with the refresh token.
    AccessRenewed { access_expires_at_ms: Option<i64> },
    /// The provider warns of the grant's end (Plaid PENDING_EXPIRATION).
    ExpiringSoon { expires_at_ms: Option<i64> },
    /// Plaid ITEM_LOGIN_REQUIRED, an OAuth `invalid_grant` on renewal.
    LoginRequired,
    Expired,
    /// By us, the user at the bank, or the provider.
    Revoked,
}

impl ConsentSignal {
    /// Our own calls' answers carry our clock, not the provider's, and are
    /// never out of order with themselves: only provider signals go stale.
    fn can_be_stale(self) -> bool {
        !matches!(self, ConsentSignal::HandoffIssued { .. } | ConsentSignal::AccessRenewed { .. } | ConsentSignal::Revoked)
    }
}

/// What a signal did to the consent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentObserved {
    /// A new state: publish its event.
    Entered(ConsentState),
    /// Same state, new deadlines (a hand-off issued, a token renewed): store, publish nothing.
    Updated,
    /// A duplicate, a stale signal, or one that means nothing in this state.
    Unchanged,
    /// The provider claims what our record rules out (a revoked consent
    /// granted again): no change; ops are told.
    Contradiction { from: ConsentState },
}

impl Consent {
    /// A consent recorded for a CREATE_CONSENT, before its hand-off exists.
    /// No provider has said anything yet, so no signal is stale.
    pub fn requested(scopes: Vec<ConsentScope>, payment_id: Option<String>) -> Self {
        Self {
            state: ConsentState::Requested,
            provider: None,
            scopes,
            payment_id,
            handoff_expires_at_ms: None,
            expires_at_ms: None,
            access_expires_at_ms: None,
            changed_at_ms: i64::MIN,
        }
    }

    /// Applies a provider's word, stamped `at_ms` on its clock.
    pub fn observe(&mut self, signal: ConsentSignal, at_ms: i64) -> ConsentObserved {
        use ConsentSignal as G;
        use ConsentState as S;
        let from = self.state;
        if from == S::Revoked {
            return match signal {
                G::Granted { .. } => ConsentObserved::Contradiction { from },
                _ => ConsentObserved::Unchanged,
            };
        }
        if signal.can_be_stale() && at_ms < self.changed_at_ms {
            return ConsentObserved::Unchanged;
        }
        match (signal, from) {
            (G::Revoked, _) => self.enter(S::Revoked, at_ms),
            (_, S::Expired) => match signal {
                G::Granted { .. } => ConsentObserved::Contradiction { from },
                _ => ConsentObserved::Unchanged,
            },
            (G::HandoffIssued { expires_at_ms }, S::Requested | S::AwaitingUser) => {
                self.handoff_expires_at_ms = Some(expires_at_ms);
                if from == S::Requested {
                    // Our clock, not the provider's: it must not make the
                    // provider's grant, stamped a little behind, look stale.
                    let provider_clock = self.changed_at_ms;
                    self.enter(S::AwaitingUser, provider_clock)
                } else {
                    ConsentObserved::Updated
                }
            }
            // A re-authentication hand-off: the grant keeps its state (an
            // expiring one still works) until the user comes back.
            (G::HandoffIssued { expires_at_ms }, S::Expiring | S::LoginRequired) => {
                self.handoff_expires_at_ms = Some(expires_at_ms);
                ConsentObserved::Updated
            }
            (G::HandoffIssued { .. }, _) => ConsentObserved::Contradiction { from },
            (G::Granted { expires_at_ms, access_expires_at_ms }, _) => {
                let same = from == S::Active && self.expires_at_ms == expires_at_ms && self.access_expires_at_ms == access_expires_at_ms;
                self.expires_at_ms = expires_at_ms;
                self.access_expires_at_ms = access_expires_at_ms;
                self.handoff_expires_at_ms = None;
                match (same, from) {
                    (true, _) => ConsentObserved::Unchanged,
                    (false, S::Active) => ConsentObserved::Updated,
                    _ => self.enter(S::Active, at_ms),
                }
            }
            (G::AccessRenewed { access_expires_at_ms }, S::Active | S::Expiring) => {
                self.access_expires_at_ms = access_expires_at_ms;
                ConsentObserved::Updated
            }
            (G::AccessRenewed { .. }, _) => ConsentObserved::Unchanged,
            (G::ExpiringSoon { expires_at_ms }, S::Active | S::Expiring | S::LoginRequired) => {
                let moved = expires_at_ms.is_some() && expires_at_ms != self.expires_at_ms;
                if moved {
                    self.expires_at_ms = expires_at_ms;
                }
                match from {
                    S::Active => self.enter(S::Expiring, at_ms),
                    _ if moved => ConsentObserved::Updated,
                    _ => ConsentObserved::Unchanged,
                }
            }
            (G::ExpiringSoon { .. }, _) => ConsentObserved::Unchanged,
            // A re-authentication hand-off already out stays valid: it is
            // what repairs the login.
            (G::LoginRequired, S::Active | S::Expiring) => self.enter(S::LoginRequired, at_ms),
            (G::LoginRequired, _) => ConsentObserved::Unchanged,
            (G::Expired, _) => self.enter(S::Expired, at_ms),
        }
    }

    /// Applies the deadlines passed by `now`; returns the states entered
    /// (one event each). Entering EXPIRED skips the notice that it was
    /// about to happen: a late warning helps no one.
    pub fn advance(&mut self, now_ms: i64, timings: ConsentTimings) -> Vec<ConsentState> {
        let next = self.due_state(now_ms, timings);
        if next == self.state {
            return Vec::new();
        }
        // The deadline, not `now`, is when it happened: a signal stamped
        // between the two is not stale.
        let at = match next {
            ConsentState::Expiring => self.expires_at_ms.map(|e| e - timings.expiring_window_ms),
            _ => self.expires_at_ms,
        };
        self.state = next;
        self.changed_at_ms = self.changed_at_ms.max(at.unwrap_or(now_ms));
        vec![next]
    }

    /// The state once the deadlines passed by `now` are applied.
    pub fn state_at(&self, now_ms: i64, timings: ConsentTimings) -> ConsentState {
        self.due_state(now_ms, timings)
    }

    fn due_state(&self, now_ms: i64, timings: ConsentTimings) -> ConsentState {
        use ConsentState as S;
        let Some(end) = self.expires_at_ms else { return self.state };
        match self.state {
            S::Active | S::Expiring | S::LoginRequired if now_ms >= end => S::Expired,
            S::Active if now_ms >= end.saturating_sub(timings.expiring_window_ms) => S::Expiring,
            other => other,
        }
    }

    /// The next instant something is due, for the scheduler: renew the
    /// access token, warn of the end, or end the grant.
    pub fn next_deadline(&self, timings: ConsentTimings) -> Option<(i64, Deadline)> {
        use ConsentState as S;
        let mut due = Vec::new();
        if self.state.usable() {
            if let Some(access) = self.access_expires_at_ms {
                due.push((access.saturating_sub(timings.renew_margin_ms), Deadline::RenewAccess));
            }
        }
        if let Some(end) = self.expires_at_ms {
            if self.state == S::Active {
                due.push((end.saturating_sub(timings.expiring_window_ms), Deadline::ExpiringNotice));
            }
            if matches!(self.state, S::Active | S::Expiring | S::LoginRequired) {
                due.push((end, Deadline::Expire));
            }
        }
        due.into_iter().min_by_key(|(at, _)| *at)
    }

    /// Whether the access token must be renewed before a call made at `now`.
    pub fn renew_access_first(&self, now_ms: i64, timings: ConsentTimings) -> bool {
        self.access_expires_at_ms.is_some_and(|t| now_ms >= t.saturating_sub(timings.renew_margin_ms))
    }

    fn enter(&mut self, to: ConsentState, at_ms: i64) -> ConsentObserved {
        if to == self.state {
            return ConsentObserved::Unchanged;
        }
        self.state = to;
        self.changed_at_ms = self.changed_at_ms.max(at_ms);
        if to.terminal() {
            self.handoff_expires_at_ms = None;
        }
        ConsentObserved::Entered(to)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    RenewAccess,
    ExpiringNotice,
    Expire,
}

/// The provider call a command needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderCall {
    /// A Link token or an authorization URL; `reauth` for an existing grant
    /// (Plaid update mode, a new OAuth consent for the same connection).
    CreateHandoff { reauth: bool },
    /// Exchange the public token or authorization code for tokens.
    ExchangeAuthorization,
    /// Pull these data sets from the stored cursor on.
    Sync { datasets: Vec<Dataset>, renew_access_first: bool },
    /// Delete the connection at the provider (it may bill for it even after
    /// the grant expired).
    RemoveConnection,
    CreatePayment { renew_access_first: bool },
}

/// A command refused by the consent's state: the outcome's code and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub code: OpenBankingRefusal,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    CallProvider(ProviderCall),
    /// The answer is known without the provider. `state` is the consent's
    /// state to record and report (it differs from the stored one when a
    /// deadline passed, or for a revocation nothing at the provider holds).
    AnswerWithoutCall { answer: OpenBankingKind, state: ConsentState },
    Reject(Refused),
}

/// Judges `command` against the consent (None: we hold no such consent) as
/// of `now_ms`, before any provider call. Shape errors are
/// [`OpenBankingCommand::validate`]'s; the idempotency store has already
/// answered duplicates.
pub fn decide(consent: Option<&Consent>, command: &OpenBankingCommand, now_ms: i64, timings: ConsentTimings) -> Decision {
    use ConsentState as S;
    use OpenBankingAction as A;
    let refuse = |code: OpenBankingRefusal, message: String| Decision::Reject(Refused { code, message });
    let action = command.action;
    let Some(consent) = consent else {
        return match action {
            A::CreateConsent => Decision::CallProvider(ProviderCall::CreateHandoff { reauth: false }),
            _ => refuse(OpenBankingRefusal::ConsentNotFound, format!("{} for a consent that was never created", action.as_str())),
        };
    };
    let state = consent.state_at(now_ms, timings);
    let answer = |state: ConsentState| Decision::AnswerWithoutCall { answer: state.answer(), state };
    let illegal = || refuse(OpenBankingRefusal::IllegalTransition, format!("{} is not possible for a {} consent", action.as_str(), state.as_str()));
    let renew = consent.renew_access_first(now_ms, timings);
    match action {
        A::CreateConsent => match state {
            S::Requested | S::AwaitingUser => Decision::CallProvider(ProviderCall::CreateHandoff { reauth: false }),
            S::Expiring | S::LoginRequired => Decision::CallProvider(ProviderCall::CreateHandoff { reauth: true }),
            S::Active => refuse(OpenBankingRefusal::ConsentExists, "the consent is already active".into()),
            S::Expired | S::Revoked => refuse(OpenBankingRefusal::ConsentClosed, format!("the consent is {}; create a new one under a new consent_id", state.as_str())),
        },
        A::CompleteConsent => match state {
            S::AwaitingUser => Decision::CallProvider(ProviderCall::ExchangeAuthorization),
            S::Expiring | S::LoginRequired if consent.handoff_expires_at_ms.is_some() => Decision::CallProvider(ProviderCall::ExchangeAuthorization),
            // Exchange material is single use and the grant stands: a second
            // completion (a double submit) learns that without a call.
            S::Active | S::Expired | S::Revoked => answer(state),
            S::Requested | S::Expiring | S::LoginRequired => illegal(),
        },
        A::Refresh => {
            let datasets = command.requested_datasets(&consent.scopes);
            if let Some(d) = datasets.iter().find(|d| !consent.scopes.contains(&d.scope())) {
                return refuse(OpenBankingRefusal::ScopeNotGranted, format!("the consent does not grant {}", d.as_str()));
            }
            if datasets.is_empty() {
                return refuse(OpenBankingRefusal::ScopeNotGranted, "the consent grants no data set".into());
            }
            match state {
                S::Active | S::Expiring => Decision::CallProvider(ProviderCall::Sync { datasets, renew_access_first: renew }),
                _ => answer(state),
            }
        }
        A::RevokeConsent => match state {
            // Nothing at the provider holds a grant yet: recorded as revoked.
            S::Requested | S::AwaitingUser => Decision::AnswerWithoutCall { answer: OpenBankingKind::Revoked, state: S::Revoked },
            S::Revoked => answer(state),
            S::Active | S::Expiring | S::LoginRequired | S::Expired => Decision::CallProvider(ProviderCall::RemoveConnection),
        },
        A::InitiatePayment => {
            if !consent.scopes.contains(&ConsentScope::PaymentInitiation) {
                return refuse(OpenBankingRefusal::ScopeNotGranted, "the consent does not grant PAYMENT_INITIATION".into());
            }
            let asked = command.payment.as_ref().map(|p| p.payment_id.as_str());
            if let Some(own) = consent.payment_id.as_deref() {
                if asked != Some(own) {
                    return refuse(OpenBankingRefusal::IllegalTransition, format!("a single-payment consent makes only its payment ({own})"));
                }
            }
            match state {
                S::Active | S::Expiring => Decision::CallProvider(ProviderCall::CreatePayment { renew_access_first: renew }),
                _ => answer(state),
            }
        }
    }
}

/// When a consent's next scheduled refresh is due: `interval_ms` after the
/// last one plus a jitter of up to `jitter_ms` that is stable per consent
/// and round (no RNG, so a restart reschedules to the same instant) and
/// spreads consents linked at the same moment across the window, so an
/// institution does not see all of them at once.
pub fn scheduled_refresh_at(consent_id: &str, last_refresh_ms: i64, interval_ms: i64, jitter_ms: i64) -> i64 {
    let jitter = if jitter_ms <= 0 {
        0
    } else {
        let digest = Fingerprint::of_fields(&[consent_id.as_bytes(), &last_refresh_ms.to_be_bytes()]);
        let word = digest.0.get(..16).and_then(|h| u64::from_str_radix(h, 16).ok()).unwrap_or(0);
        (word % (jitter_ms as u64 + 1)) as i64
    };
    last_refresh_ms.saturating_add(interval_ms).saturating_add(jitter)
}

#[cfg(test)]
#[path = "openbanking_consent_tests.rs"]
mod tests;
