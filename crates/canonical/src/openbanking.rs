//! Open banking: the commands core systems and product back ends send about
//! one consent (`openbanking.commands.v1`, keyed by `consent_id`). Wire form
//! `schemas/openbanking/OpenBankingCommand.v1.avsc`; these serde shapes match
//! it field for field.
//!
//! A consent is our name for what an aggregator calls an item (Plaid) or a
//! connection (TrueLayer): one user's grant, at one institution, of some
//! scopes. Everything about it shares the key `consent_id`, payments made
//! under it included, so a consent's commands, outcomes, events and data
//! stay in order on one partition.
//!
//! What never travels here: access and refresh tokens (they live only in
//! the store, encrypted, beside the consent) and account numbers (accounts
//! are named by the provider's opaque account id and a mask). The one
//! credential a command does carry is the short-lived, single-use exchange
//! material of COMPLETE_CONSENT (a Plaid public token, an OAuth
//! authorization code); [`OpenBankingCommand::validate`] refuses anything
//! shaped like a long-lived token there, and outcomes never echo it.
//!
//! Provider choice: like every other domain, the command names no vendor.
//! A new consent is routed by policy on `country` and `tenant_id` (the
//! routing crate's `Needs`); every later command of a consent goes to the
//! provider that holds it, whatever the policy says by then. Correlation id,
//! traceparent and idempotency key also travel as headers, as for every
//! command.

use crate::check;
use crate::money::Currency;
use crate::Fingerprint;
use serde::{Deserialize, Serialize};

/// Longest consent id: it becomes part of vendor idempotency keys (capped at 64).
pub const MAX_CONSENT_ID_LEN: usize = 48;
/// Longest payment reference we accept; SEPA's unstructured remittance
/// field. Tighter scheme limits (Faster Payments: 18) are the adapter's.
pub const MAX_PAYMENT_REFERENCE_LEN: usize = 140;
/// Longest consent we ask for: no provider or regime we know grants more.
pub const MAX_ACCESS_DAYS: i32 = 730;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OpenBankingAction {
    /// Start a consent (or, on a consent that needs it, a re-authentication):
    /// answered with the hand-off the product shows the user.
    CreateConsent,
    /// The user came back from the hand-off with a public token or an
    /// authorization code.
    CompleteConsent,
    /// Pull accounts, balances and transactions since the stored cursor.
    Refresh,
    RevokeConsent,
    /// A payment under an active consent that grants payment initiation.
    InitiatePayment,
}

impl OpenBankingAction {
    pub const ALL: [OpenBankingAction; 5] = [
        OpenBankingAction::CreateConsent,
        OpenBankingAction::CompleteConsent,
        OpenBankingAction::Refresh,
        OpenBankingAction::RevokeConsent,
        OpenBankingAction::InitiatePayment,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OpenBankingAction::CreateConsent => "CREATE_CONSENT",
            OpenBankingAction::CompleteConsent => "COMPLETE_CONSENT",
            OpenBankingAction::Refresh => "REFRESH",
            OpenBankingAction::RevokeConsent => "REVOKE_CONSENT",
            OpenBankingAction::InitiatePayment => "INITIATE_PAYMENT",
        }
    }
}

/// What a consent grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConsentScope {
    Accounts,
    Balances,
    Transactions,
    PaymentInitiation,
}

impl ConsentScope {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentScope::Accounts => "ACCOUNTS",
            ConsentScope::Balances => "BALANCES",
            ConsentScope::Transactions => "TRANSACTIONS",
            ConsentScope::PaymentInitiation => "PAYMENT_INITIATION",
        }
    }
}

/// A data set a refresh pulls; each needs the scope of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Dataset {
    Accounts,
    Balances,
    Transactions,
}

impl Dataset {
    pub const ALL: [Dataset; 3] = [Dataset::Accounts, Dataset::Balances, Dataset::Transactions];

    pub fn as_str(self) -> &'static str {
        match self {
            Dataset::Accounts => "ACCOUNTS",
            Dataset::Balances => "BALANCES",
            Dataset::Transactions => "TRANSACTIONS",
        }
    }

    pub fn scope(self) -> ConsentScope {
        match self {
            Dataset::Accounts => ConsentScope::Accounts,
            Dataset::Balances => ConsentScope::Balances,
            Dataset::Transactions => ConsentScope::Transactions,
        }
    }
}

/// What starts a consent's hand-off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentSpec {
    pub scopes: Vec<ConsentScope>,
    /// Core banking's id for the user (Plaid's `client_user_id`); no
    /// personal data.
    pub customer_ref: String,
    /// The institution's country, ISO 3166-1 alpha-2: the routing region.
    pub country: String,
    /// Our catalog's institution id when the product already knows the
    /// bank; none lets the user pick it in the provider's flow.
    pub institution_id: Option<String>,
    /// Where the provider sends the user back (OAuth redirect, Plaid's
    /// `redirect_uri`); https, or http on localhost for development.
    pub redirect_uri: String,
    /// How long the grant should last, when the product wants less than the
    /// provider's default.
    pub access_days: Option<i32>,
}

/// The exchange material the user's browser came back with: exactly one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletionSpec {
    /// Plaid Link's `public_token` (single use, minutes long).
    pub public_token: Option<String>,
    /// An OAuth authorization code (TrueLayer, bank redirect flows).
    pub authorization_code: Option<String>,
}

/// Why a refresh runs; metrics and scheduling tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RefreshTrigger {
    /// Our own per-consent schedule.
    Scheduled,
    /// The provider said new data is there (Plaid SYNC_UPDATES_AVAILABLE).
    ProviderUpdate,
    /// The product asked (a user pulled to refresh).
    OnDemand,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshSpec {
    /// Empty: every data set the consent grants.
    pub datasets: Vec<Dataset>,
    pub trigger: RefreshTrigger,
}

/// A payment to be initiated from the user's account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentSpec {
    /// Our payment id: the subject of its status events and ledger postings.
    pub payment_id: String,
    pub amount_minor: i64,
    pub currency: String,
    /// Our name for the receiving account as the partner catalog configures
    /// it (a merchant account at the provider); never an account number.
    pub beneficiary_ref: String,
    /// Shown on both statements.
    pub reference: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenBankingCommand {
    /// Our consent id; the Kafka key of every message about the consent.
    pub consent_id: String,
    pub idempotency_key: String,
    pub action: OpenBankingAction,
    /// CREATE_CONSENT; ignored when it re-authenticates an existing consent
    /// (the stored scopes stay).
    pub consent: Option<ConsentSpec>,
    /// COMPLETE_CONSENT.
    pub completion: Option<CompletionSpec>,
    /// REFRESH.
    pub refresh: Option<RefreshSpec>,
    /// INITIATE_PAYMENT, and CREATE_CONSENT with the PAYMENT_INITIATION
    /// scope (a consent for this one payment).
    pub payment: Option<PaymentSpec>,
    /// Why a consent is revoked, in our words (audit only).
    pub reason: Option<String>,
    /// The tenant in a shared deployment. Routing only: not in the fingerprint.
    pub tenant_id: Option<String>,
    pub requested_at_ms: i64,
}

impl OpenBankingCommand {
    /// Shape checks that need no state; the consent machine
    /// ([`crate::openbanking_consent::decide`]) judges the command against
    /// the consent.
    pub fn validate(&self) -> Result<(), String> {
        check::validate_ids(&self.consent_id, &self.idempotency_key).map_err(|e| e.replace("subject_id", "consent_id"))?;
        if self.consent_id.len() > MAX_CONSENT_ID_LEN {
            return Err(format!("consent_id must have at most {MAX_CONSENT_ID_LEN} characters"));
        }
        match self.action {
            OpenBankingAction::CreateConsent => {
                let Some(spec) = &self.consent else { return Err("consent is required for CREATE_CONSENT".into()) };
                validate_consent(spec)?;
                let pays = spec.scopes.contains(&ConsentScope::PaymentInitiation);
                match (&self.payment, pays) {
                    (Some(p), true) => validate_payment(p)?,
                    (None, true) => return Err("payment is required when consent.scopes has PAYMENT_INITIATION".into()),
                    (Some(_), false) => return Err("payment is only allowed with the PAYMENT_INITIATION scope".into()),
                    (None, false) => {}
                }
            }
            OpenBankingAction::CompleteConsent => validate_completion(self.completion.as_ref())?,
            OpenBankingAction::Refresh => {
                let Some(r) = &self.refresh else { return Err("refresh is required for REFRESH".into()) };
                if has_duplicates(&r.datasets) {
                    return Err("refresh.datasets must not repeat a data set".into());
                }
            }
            OpenBankingAction::InitiatePayment => {
                let Some(p) = &self.payment else { return Err("payment is required for INITIATE_PAYMENT".into()) };
                validate_payment(p)?;
            }
            OpenBankingAction::RevokeConsent => {}
        }
        Ok(())
    }

    /// Everything but the request time and the routing hint: a re-sent
    /// command is a duplicate, the same key for anything else a collision.
    /// Each field is length prefixed by [`Fingerprint::of_fields`], and an
    /// absent optional part differs from an empty one by its marker.
    pub fn fingerprint(&self) -> Fingerprint {
        let mut f: Vec<String> = vec![self.consent_id.clone(), self.action.as_str().to_owned()];
        let opt = |f: &mut Vec<String>, v: &Option<String>| match v {
            Some(s) => f.extend(["1".to_owned(), s.clone()]),
            None => f.push("0".to_owned()),
        };
        match &self.consent {
            Some(c) => {
                f.extend(["consent".to_owned(), c.scopes.len().to_string()]);
                f.extend(c.scopes.iter().map(|s| s.as_str().to_owned()));
                f.extend([c.customer_ref.clone(), c.country.clone()]);
                opt(&mut f, &c.institution_id);
                f.push(c.redirect_uri.clone());
                opt(&mut f, &c.access_days.map(|d| d.to_string()));
            }
            None => f.push("-".to_owned()),
        }
        match &self.completion {
            Some(c) => {
                f.push("completion".to_owned());
                opt(&mut f, &c.public_token);
                opt(&mut f, &c.authorization_code);
            }
            None => f.push("-".to_owned()),
        }
        match &self.refresh {
            Some(r) => {
                f.extend(["refresh".to_owned(), format!("{:?}", r.trigger), r.datasets.len().to_string()]);
                f.extend(r.datasets.iter().map(|d| d.as_str().to_owned()));
            }
            None => f.push("-".to_owned()),
        }
        match &self.payment {
            Some(p) => f.extend([
                "payment".to_owned(),
                p.payment_id.clone(),
                p.amount_minor.to_string(),
                p.currency.clone(),
                p.beneficiary_ref.clone(),
                p.reference.clone(),
            ]),
            None => f.push("-".to_owned()),
        }
        opt(&mut f, &self.reason);
        let fields: Vec<&[u8]> = f.iter().map(|s| s.as_bytes()).collect();
        Fingerprint::of_fields(&fields)
    }

    /// The data sets a REFRESH asks for, given what the consent grants:
    /// an empty list means all granted ones.
    pub fn requested_datasets(&self, granted: &[ConsentScope]) -> Vec<Dataset> {
        match &self.refresh {
            Some(r) if !r.datasets.is_empty() => r.datasets.clone(),
            _ => Dataset::ALL.into_iter().filter(|d| granted.contains(&d.scope())).collect(),
        }
    }
}

fn has_duplicates<T: Ord + Copy>(items: &[T]) -> bool {
    let mut sorted = items.to_vec();
    sorted.sort_unstable();
    sorted.windows(2).any(|w| w[0] == w[1])
}

fn validate_consent(spec: &ConsentSpec) -> Result<(), String> {
    if spec.scopes.is_empty() {
        return Err("consent.scopes must name at least one scope".into());
    }
    if has_duplicates(&spec.scopes) {
        return Err("consent.scopes must not repeat a scope".into());
    }
    if spec.customer_ref.trim().is_empty() {
        return Err("consent.customer_ref is required".into());
    }
    check::validate_subject_id("consent.customer_ref", &spec.customer_ref)?;
    if spec.country.len() != 2 || !spec.country.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err("consent.country must be ISO 3166-1 alpha-2".into());
    }
    if let Some(id) = &spec.institution_id {
        if id.trim().is_empty() {
            return Err("consent.institution_id must not be empty when given".into());
        }
        check::validate_subject_id("consent.institution_id", id)?;
    }
    validate_redirect(&spec.redirect_uri)?;
    if let Some(days) = spec.access_days {
        if !(1..=MAX_ACCESS_DAYS).contains(&days) {
            return Err(format!("consent.access_days must be between 1 and {MAX_ACCESS_DAYS}"));
        }
    }
    Ok(())
}

/// The user's browser is sent here with an authorization code: plain http
/// would hand the code to anyone on the path, so only a developer's own
/// machine may use it.
fn validate_redirect(uri: &str) -> Result<(), String> {
    let local = ["http://localhost", "http://127.0.0.1", "http://[::1]"].iter().any(|p| {
        uri.strip_prefix(p).is_some_and(|rest| rest.is_empty() || rest.starts_with(':') || rest.starts_with('/'))
    });
    let https = uri.strip_prefix("https://").is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'));
    if !(https || local) || uri.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("consent.redirect_uri must be an https URL (http only on localhost)".into());
    }
    Ok(())
}

/// Exactly one piece of exchange material, and nothing that is already a
/// long-lived credential: a Plaid access token (`access-<env>-...`) or an
/// OAuth refresh token pasted here would travel the bus in clear.
fn validate_completion(completion: Option<&CompletionSpec>) -> Result<(), String> {
    let Some(c) = completion else { return Err("completion is required for COMPLETE_CONSENT".into()) };
    let value = match (&c.public_token, &c.authorization_code) {
        (Some(t), None) => {
            if t.starts_with("access-") {
                return Err("completion.public_token looks like an access token; send Link's public token".into());
            }
            t
        }
        (None, Some(code)) => code,
        _ => return Err("completion needs exactly one of public_token and authorization_code".into()),
    };
    if value.trim().is_empty() || value.len() > 2048 || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("completion value must be 1 to 2048 printable characters without spaces".into());
    }
    Ok(())
}

fn validate_payment(p: &PaymentSpec) -> Result<(), String> {
    if p.payment_id.trim().is_empty() {
        return Err("payment.payment_id is required".into());
    }
    check::validate_subject_id("payment.payment_id", &p.payment_id)?;
    if p.amount_minor <= 0 {
        return Err("payment.amount_minor must be positive".into());
    }
    Currency::parse(&p.currency).map_err(|e| format!("payment.currency: {e}"))?;
    if p.beneficiary_ref.trim().is_empty() {
        return Err("payment.beneficiary_ref is required".into());
    }
    if p.reference.trim().is_empty() || p.reference.chars().count() > MAX_PAYMENT_REFERENCE_LEN {
        return Err(format!("payment.reference must have 1 to {MAX_PAYMENT_REFERENCE_LEN} characters"));
    }
    if p.reference.chars().any(char::is_control) {
        return Err("payment.reference must not contain control characters".into());
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn command(action: OpenBankingAction) -> OpenBankingCommand {
        OpenBankingCommand {
            consent_id: "cons-1".into(),
            idempotency_key: "k-1".into(),
            action,
            consent: None,
            completion: None,
            refresh: None,
            payment: None,
            reason: None,
            tenant_id: None,
            requested_at_ms: 1,
        }
    }

    pub(crate) fn consent_spec(scopes: &[ConsentScope]) -> ConsentSpec {
        ConsentSpec {
            scopes: scopes.to_vec(),
            customer_ref: "cust-1".into(),
            country: "GB".into(),
            institution_id: None,
            redirect_uri: "https://app.example.com/ob/callback".into(),
            access_days: None,
        }
    }

    pub(crate) fn payment() -> PaymentSpec {
        PaymentSpec { payment_id: "pay-1".into(), amount_minor: 1_000, currency: "GBP".into(), beneficiary_ref: "main-gbp".into(), reference: "invoice 42".into() }
    }

    #[test]
    fn every_action_names_the_part_it_needs() {
        for action in OpenBankingAction::ALL {
            let bare = command(action);
            match action {
                OpenBankingAction::RevokeConsent => assert_eq!(bare.validate(), Ok(())),
                _ => {
                    let err = bare.validate().expect_err(action.as_str());
                    assert!(err.contains(action.as_str()), "{action:?}: {err}");
                }
            }
        }
    }

    #[test]
    fn a_payment_consent_carries_its_payment_and_only_it_does() {
        let mut c = command(OpenBankingAction::CreateConsent);
        c.consent = Some(consent_spec(&[ConsentScope::PaymentInitiation]));
        assert!(c.validate().expect_err("no payment").contains("payment is required"));
        c.payment = Some(payment());
        assert_eq!(c.validate(), Ok(()));
        c.consent = Some(consent_spec(&[ConsentScope::Accounts]));
        assert!(c.validate().expect_err("payment without scope").contains("only allowed"));
        let mut p = command(OpenBankingAction::InitiatePayment);
        p.payment = Some(PaymentSpec { amount_minor: 0, ..payment() });
        assert!(p.validate().expect_err("zero").contains("positive"));
        p.payment = Some(PaymentSpec { currency: "gbp".into(), ..payment() });
        assert!(p.validate().expect_err("currency").contains("payment.currency"));
        p.payment = Some(PaymentSpec { reference: "x".repeat(141), ..payment() });
        assert!(p.validate().is_err());
    }

    #[test]
    fn consent_specs_are_checked_field_by_field() {
        let mut c = command(OpenBankingAction::CreateConsent);
        let cases: [(ConsentSpec, &str); 7] = [
            (consent_spec(&[]), "at least one scope"),
            (consent_spec(&[ConsentScope::Accounts, ConsentScope::Accounts]), "repeat"),
            (ConsentSpec { country: "gb".into(), ..consent_spec(&[ConsentScope::Accounts]) }, "alpha-2"),
            (ConsentSpec { redirect_uri: "http://app.example.com/cb".into(), ..consent_spec(&[ConsentScope::Accounts]) }, "https"),
            (ConsentSpec { redirect_uri: "https://".into(), ..consent_spec(&[ConsentScope::Accounts]) }, "https"),
            (ConsentSpec { access_days: Some(0), ..consent_spec(&[ConsentScope::Accounts]) }, "access_days"),
            (ConsentSpec { customer_ref: " ".into(), ..consent_spec(&[ConsentScope::Accounts]) }, "customer_ref"),
        ];
        for (spec, want) in cases {
            c.consent = Some(spec);
            let err = c.validate().expect_err(want);
            assert!(err.contains(want), "{want}: {err}");
        }
        for local in ["http://localhost:3000/cb", "http://127.0.0.1/cb", "https://app.example.com"] {
            c.consent = Some(ConsentSpec { redirect_uri: local.into(), ..consent_spec(&[ConsentScope::Transactions]) });
            assert_eq!(c.validate(), Ok(()), "{local}");
        }
        c.consent = Some(ConsentSpec { redirect_uri: "http://localhost.evil.com/cb".into(), ..consent_spec(&[ConsentScope::Accounts]) });
        assert!(c.validate().is_err(), "not localhost");
    }

    #[test]
    fn completion_takes_exchange_material_never_a_long_lived_token() {
        let mut c = command(OpenBankingAction::CompleteConsent);
        c.completion = Some(CompletionSpec { public_token: Some("access-sandbox-8ab976e6".into()), authorization_code: None });
        assert!(c.validate().expect_err("access token").contains("access token"));
        c.completion = Some(CompletionSpec { public_token: Some("public-sandbox-b0e2c4ee".into()), authorization_code: Some("code".into()) });
        assert!(c.validate().expect_err("both").contains("exactly one"));
        c.completion = Some(CompletionSpec { public_token: None, authorization_code: Some("a b".into()) });
        assert!(c.validate().is_err());
        c.completion = Some(CompletionSpec { public_token: None, authorization_code: Some("2Yx9-Q_c0de".into()) });
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn ids_are_checked_like_every_other_domain() {
        let mut c = command(OpenBankingAction::RevokeConsent);
        c.consent_id = "c".repeat(49);
        assert!(c.validate().expect_err("long").contains("consent_id"));
        c.consent_id = "cons\n1".into();
        assert!(c.validate().expect_err("control").contains("consent_id"));
        c.consent_id = "cons-1".into();
        c.idempotency_key = "k\r".into();
        assert!(c.validate().expect_err("key").contains("idempotency_key"));
        let mut r = command(OpenBankingAction::Refresh);
        r.refresh = Some(RefreshSpec { datasets: vec![Dataset::Balances, Dataset::Balances], trigger: RefreshTrigger::OnDemand });
        assert!(r.validate().expect_err("dup").contains("repeat"));
    }

    #[test]
    fn fingerprint_ignores_request_time_and_tenant_but_not_the_payload() {
        let mut a = command(OpenBankingAction::InitiatePayment);
        a.payment = Some(payment());
        let mut later = a.clone();
        later.requested_at_ms = 99;
        later.tenant_id = Some("bank-a".into());
        assert_eq!(a.fingerprint(), later.fingerprint());
        let mut more = a.clone();
        more.payment = Some(PaymentSpec { amount_minor: 1_001, ..payment() });
        assert_ne!(a.fingerprint(), more.fingerprint());
        let mut reason = a.clone();
        reason.reason = Some(String::new());
        assert_ne!(a.fingerprint(), reason.fingerprint(), "an empty reason is not an absent one");
        let mut r1 = command(OpenBankingAction::Refresh);
        r1.refresh = Some(RefreshSpec { datasets: vec![], trigger: RefreshTrigger::Scheduled });
        let mut r2 = r1.clone();
        r2.refresh = Some(RefreshSpec { datasets: vec![Dataset::Accounts], trigger: RefreshTrigger::Scheduled });
        assert_ne!(r1.fingerprint(), r2.fingerprint());
    }

    #[test]
    fn an_empty_dataset_list_means_what_the_consent_grants() {
        let mut r = command(OpenBankingAction::Refresh);
        r.refresh = Some(RefreshSpec { datasets: vec![], trigger: RefreshTrigger::Scheduled });
        let granted = [ConsentScope::Transactions, ConsentScope::Accounts, ConsentScope::PaymentInitiation];
        assert_eq!(r.requested_datasets(&granted), vec![Dataset::Accounts, Dataset::Transactions]);
        r.refresh = Some(RefreshSpec { datasets: vec![Dataset::Balances], trigger: RefreshTrigger::Scheduled });
        assert_eq!(r.requested_datasets(&granted), vec![Dataset::Balances], "asked for explicitly; decide() refuses what is not granted");
    }
}
