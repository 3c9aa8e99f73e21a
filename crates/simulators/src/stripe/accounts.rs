//! Stripe Connect accounts and their external bank accounts:
//! `POST /v1/accounts/{account}/external_accounts`, and how a payout picks
//! the bank account it pays.
//!
//! Accounts: any `acct_...` id exists on first use (the simulator does not
//! model onboarding). The platform account ([`PLATFORM_ACCOUNT_ID`], used
//! when a request has no `Stripe-Account` header) starts with one bank
//! account, [`PLATFORM_BANK_ACCOUNT_ID`], which is its default for every
//! currency (a simplification: real Stripe needs one per currency).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Map, Value};

use super::wire::{take_metadata, ApiError, Object};
use super::{check_auth, error, idempotency_key, idempotent, unauthorized, Sim};
use crate::engine::Saved;
use crate::util::{fingerprint, pause, random_id, to_bytes};

/// The platform's own account: the payer when `Stripe-Account` is absent.
pub const PLATFORM_ACCOUNT_ID: &str = "acct_1SwitchyardPlatform";
/// The platform's bank account, paid by a platform payout without `destination`.
pub const PLATFORM_BANK_ACCOUNT_ID: &str = "ba_1SwitchyardPlatform";
/// IBAN of [`PLATFORM_BANK_ACCOUNT_ID`].
pub const PLATFORM_IBAN: &str = "GB33BUKB20201555555555";
/// Holder of [`PLATFORM_BANK_ACCOUNT_ID`].
pub const PLATFORM_ACCOUNT_HOLDER: &str = "Switchyard Platform Ltd";

/// A bank account attached to a (connected) account.
#[derive(Debug)]
pub(crate) struct BankAccount {
    pub(crate) id: String,
    pub(crate) account: String,
    pub(crate) holder_name: Option<String>,
    pub(crate) holder_type: Option<&'static str>,
    pub(crate) account_type: Option<&'static str>,
    pub(crate) country: String,
    /// Lowercase, as Stripe renders currencies.
    pub(crate) currency: String,
    /// The full number (the IBAN in IBAN countries); only `last4` is rendered.
    pub(crate) account_number: String,
    pub(crate) routing_number: Option<String>,
    /// Set at creation: asked for, or the first account in its currency.
    pub(crate) default_for_currency: bool,
    pub(crate) metadata: Vec<(String, String)>,
    /// Creation order, so the newest default wins.
    pub(crate) seq: u64,
}

impl BankAccount {
    pub(crate) fn platform() -> Self {
        Self {
            id: PLATFORM_BANK_ACCOUNT_ID.to_owned(),
            account: PLATFORM_ACCOUNT_ID.to_owned(),
            holder_name: Some(PLATFORM_ACCOUNT_HOLDER.to_owned()),
            holder_type: Some("company"),
            account_type: None,
            country: "GB".to_owned(),
            currency: "gbp".to_owned(),
            account_number: PLATFORM_IBAN.to_owned(),
            routing_number: None,
            default_for_currency: true,
            metadata: Vec::new(),
            seq: 0,
        }
    }

    /// Whether a payout in `currency` may go here. The platform's account
    /// takes every currency: the simulator does not make every test attach
    /// a platform account per currency, and no adapter should rely on it.
    fn takes(&self, currency: &str) -> bool {
        self.account == PLATFORM_ACCOUNT_ID || self.currency == currency
    }

    pub(crate) fn render(&self) -> Value {
        let last4: String = self.account_number.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
        let metadata: Map<String, Value> = self.metadata.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect();
        json!({
            "id": self.id,
            "object": "bank_account",
            "account": self.account,
            "account_holder_name": self.holder_name,
            "account_holder_type": self.holder_type,
            "account_type": self.account_type,
            "available_payout_methods": ["standard"],
            "bank_name": "STRIPE TEST BANK",
            "country": self.country,
            "currency": self.currency,
            "default_for_currency": self.default_for_currency,
            // Stable per account number, as Stripe's is, so duplicates show.
            "fingerprint": format!("{:016X}", fingerprint(&self.account_number)).chars().take(16).collect::<String>(),
            "last4": last4,
            "metadata": metadata,
            "routing_number": self.routing_number,
            "status": "new",
        })
    }
}

/// Checks a `Stripe-Account` header or path segment. UNCONFIRMED: Stripe's
/// exact status and wording for an account the key cannot reach.
pub(crate) fn check_account(id: &str) -> Result<(), ApiError> {
    if id.len() > 5 && id.starts_with("acct_") && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Ok(());
    }
    Err(ApiError {
        status: StatusCode::FORBIDDEN,
        kind: "invalid_request_error",
        code: None,
        message: format!("The provided key does not have access to account '{id}' (or that account does not exist)."),
        param: None,
    })
}

/// The bank account a payout of `account` in `currency` pays. With a
/// `destination`, it must be attached to that account and hold that
/// currency; without one, Stripe pays the account's default for the
/// currency. Never the beneficiary our command named.
pub(crate) fn payee(sim: &Sim, account: &str, destination: Option<&str>, currency: &str) -> Result<Arc<BankAccount>, ApiError> {
    if let Some(id) = destination {
        let ba = match sim.engine.record(id) {
            Some(Object::BankAccount(ba)) if ba.account == account => ba,
            _ => return Err(ApiError::no_such("destination", "external account", id)),
        };
        if !ba.takes(currency) {
            // UNCONFIRMED: Stripe's wording for a currency mismatch.
            return Err(ApiError::invalid(
                "destination",
                format!("The bank account {id} is in {}, but the payout is in {currency}.", ba.currency),
            ));
        }
        return Ok(ba);
    }
    if account == PLATFORM_ACCOUNT_ID {
        // The benchmark's hot path: no scan of every stored object.
        return Ok(Arc::clone(&sim.platform_bank));
    }
    let default = sim
        .engine
        .records_where(|r| match r {
            Object::BankAccount(ba) if ba.account == account && ba.default_for_currency && ba.takes(currency) => Some(Arc::clone(ba)),
            _ => None,
        })
        .into_iter()
        .max_by_key(|ba| ba.seq);
    // UNCONFIRMED: Stripe's wording when no external account holds the currency.
    default.ok_or_else(|| {
        ApiError::invalid("currency", format!("You don't have any external accounts in that currency ({currency})."))
    })
}

/// Validated create parameters, before an id and defaults are assigned.
struct NewBankAccount {
    holder_name: Option<String>,
    holder_type: Option<&'static str>,
    account_type: Option<&'static str>,
    country: String,
    currency: String,
    account_number: String,
    routing_number: Option<String>,
    default_for_currency: bool,
    metadata: Vec<(String, String)>,
}

/// Parses the form like Stripe: the bank account as a dictionary, either
/// `external_account[...]` (what Stripe's API reference documents) or
/// `bank_account[...]` (what its OpenAPI document declares, as
/// `external_account_payout_bank_account`), not both: `account_number`,
/// `country` required (and `object` in the first); `currency`, `account_holder_name`,
/// `account_holder_type`, `account_type`, `routing_number` optional; plus
/// `default_for_currency` and `metadata`.
fn parse(body: &[u8]) -> Result<(NewBankAccount, Vec<(String, String)>), ApiError> {
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let uses = |prefix: &str| pairs.iter().any(|(k, _)| k == prefix || k.starts_with(&format!("{prefix}[")));
    let dict = match (uses("external_account"), uses("bank_account")) {
        (true, true) => return Err(ApiError::invalid("bank_account", "Received both external_account and bank_account; send one.")),
        (false, true) => "bank_account",
        _ => "external_account",
    };
    let field = |k: &str| k.strip_prefix(dict).and_then(|r| r.strip_prefix('[')).and_then(|r| r.strip_suffix(']')).map(str::to_owned);
    let (mut object, mut number, mut country, mut currency) = (None, None, None, None);
    let mut ba = NewBankAccount {
        holder_name: None,
        holder_type: None,
        account_type: None,
        country: String::new(),
        currency: String::new(),
        account_number: String::new(),
        routing_number: None,
        default_for_currency: false,
        metadata: Vec::new(),
    };
    for (k, v) in &pairs {
        match (k.as_str(), field(k).as_deref()) {
            (k, _) if k == dict => return Err(ApiError::invalid(dict, format!("Tokens are not supported by the simulator; send {dict}[...] fields."))),
            (_, Some("object")) => object = Some(v.as_str()),
            (_, Some("account_number")) => number = Some(v.as_str()),
            (_, Some("country")) => country = Some(v.as_str()),
            (_, Some("currency")) => currency = Some(v.as_str()),
            (_, Some("account_holder_name")) => ba.holder_name = Some(v.clone()),
            (_, Some("account_holder_type")) => {
                ba.holder_type = Some(match v.as_str() {
                    "individual" => "individual",
                    "company" => "company",
                    _ => return Err(ApiError::invalid(k, format!("Invalid account_holder_type: must be one of individual, company (got '{v}')."))),
                })
            }
            (_, Some("account_type")) => {
                ba.account_type = Some(match v.as_str() {
                    "checking" => "checking",
                    "savings" => "savings",
                    "futsu" => "futsu",
                    "toza" => "toza",
                    _ => return Err(ApiError::invalid(k, format!("Invalid account_type: must be one of checking, futsu, savings, toza (got '{v}')."))),
                })
            }
            (_, Some("routing_number")) => ba.routing_number = Some(v.clone()),
            ("default_for_currency", _) => {
                ba.default_for_currency = match v.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(ApiError::invalid(k, "Invalid boolean")),
                }
            }
            _ => {
                if !take_metadata(k, v, &mut ba.metadata)? {
                    return Err(ApiError::invalid(k, format!("Received unknown parameter: {k}")));
                }
            }
        }
    }
    let param = |f: &str| format!("{dict}[{f}]");
    match object {
        // Required in the API reference's `external_account` dictionary,
        // optional in the spec's `bank_account` one.
        None if dict == "external_account" => return Err(ApiError::missing(&param("object"))),
        None | Some("bank_account") => {}
        Some(other) => return Err(ApiError::invalid(&param("object"), format!("The simulator supports bank_account only (got '{other}')."))),
    }
    let country = country.ok_or_else(|| ApiError::missing(&param("country")))?;
    if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ApiError::invalid(&param("country"), format!("Invalid country: {country}")));
    }
    let number = number.filter(|n| !n.is_empty()).ok_or_else(|| ApiError::missing(&param("account_number")))?;
    let number: String = number.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_uppercase();
    if crate::bank::uses_iban(country) {
        // UNCONFIRMED: Stripe's wording for these two refusals.
        if !crate::bank::iban_valid(&number) {
            return Err(ApiError::invalid(&param("account_number"), "The account number you provided is not a valid IBAN."));
        }
        if crate::bank::iban_country(&number) != Some(country) {
            return Err(ApiError::invalid(
                &param("account_number"),
                format!("The IBAN you provided is for {}, but the country you provided is {country}.", &number[..2]),
            ));
        }
    } else if ba.routing_number.is_none() {
        return Err(ApiError::missing(&param("routing_number")));
    }
    ba.currency = match currency {
        Some(c) if c.len() == 3 && c.bytes().all(|b| b.is_ascii_alphabetic()) => c.to_ascii_lowercase(),
        Some(c) => return Err(ApiError::invalid(&param("currency"), format!("Invalid currency: {c}."))),
        None => crate::bank::default_currency(country).ok_or_else(|| ApiError::missing(&param("currency")))?.to_owned(),
    };
    ba.country = country.to_owned();
    ba.account_number = number;
    pairs.sort_unstable();
    Ok((ba, pairs))
}

/// `POST /v1/accounts/{account}/external_accounts`: attaches a bank account.
/// Idempotency-Key is honoured exactly as for payouts.
pub(crate) async fn create(State(sim): State<Arc<Sim>>, Path(account): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(presented) = check_auth(&sim, &headers) {
        return unauthorized(&sim, presented).await;
    }
    let parsed = idempotency_key(&headers).and_then(|key| {
        check_account(&account)?;
        let (new, canonical) = parse(&body)?;
        Ok((key, new, canonical))
    });
    let (key, new, canonical) = match parsed {
        Ok(v) => v,
        Err(e) => {
            pause(sim.engine.reject(false)).await;
            return error(&e);
        }
    };
    let fp = fingerprint(&("POST /v1/accounts/external_accounts", &account, &canonical));
    idempotent(&sim, key, fp, |ticket| {
        let first_in_currency = sim
            .engine
            .records_where(|r| match r {
                Object::BankAccount(ba) if ba.account == account && ba.currency == new.currency => Some(()),
                _ => None,
            })
            .is_empty();
        let ba = Arc::new(BankAccount {
            id: format!("ba_1{}", random_id(23)),
            default_for_currency: new.default_for_currency || first_in_currency,
            account,
            holder_name: new.holder_name,
            holder_type: new.holder_type,
            account_type: new.account_type,
            country: new.country,
            currency: new.currency,
            account_number: new.account_number,
            routing_number: new.routing_number,
            metadata: new.metadata,
            seq: sim.next_seq(),
        });
        let saved = Saved { status: StatusCode::OK, body: to_bytes(&ba.render()) };
        ticket.commit(Some((ba.id.clone(), Object::BankAccount(ba))), None, &saved);
        saved
    })
    .await
}
