//! Normalized account data from a refresh, published as deltas on
//! `openbanking.data.v1` (keyed by `consent_id`; wire form
//! `schemas/openbanking/OpenBankingData.v1.avsc`).
//!
//! A refresh pulls pages with the provider's cursor (Plaid
//! `/transactions/sync`, TrueLayer pagination). Each page becomes one
//! [`OpenBankingDataDelta`]: what was added, modified and removed since the
//! cursor it started from. `delta_id` (`<consent_id>:<page sequence>`) and
//! `cursor_before` let consumers drop a page they already applied; the
//! worker stores the cursor only after its page is published, so a
//! redelivered refresh starts from the last published page and never
//! skips one, and publishes nothing twice.
//!
//! No account number, sort code or IBAN is ever part of a delta: accounts
//! are named by the provider's opaque account id and a mask (the last
//! digits a person may see). Amounts are minor units of `currency`,
//! positive, with `direction` saying which way the money moved (as card
//! transactions are); balances are signed (an overdraft is negative).

use crate::openbanking::Dataset;
use crate::openbanking_outcome::MissingData;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AccountKind {
    /// Current, checking, savings.
    Depository,
    /// Credit cards, lines of credit.
    Credit,
    Loan,
    Investment,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The provider's opaque id of the account; never its number.
    pub account_id: String,
    /// The name the bank or user gave it ("Everyday current").
    pub name: String,
    pub kind: AccountKind,
    /// The provider's subtype in our lower-case words (`checking`, `savings`).
    pub subtype: Option<String>,
    pub currency: String,
    /// The last two to four digits, for people to recognise it.
    pub mask: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    pub account_id: String,
    /// Signed minor units: booked balance.
    pub current_minor: Option<i64>,
    /// Signed minor units: what can be spent now.
    pub available_minor: Option<i64>,
    /// Credit limit, for credit accounts.
    pub limit_minor: Option<i64>,
    pub currency: String,
    /// When the institution computed it (its clock), if it says.
    pub as_of_ms: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Direction {
    /// Money into the account.
    Credit,
    /// Money out of the account.
    Debit,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    /// The provider's id; stable across pages and refreshes.
    pub transaction_id: String,
    pub account_id: String,
    /// Minor units of `currency`, positive; `direction` gives the sign.
    pub amount_minor: i64,
    pub currency: String,
    pub direction: Direction,
    /// Still pending at the bank: its posted form arrives later as a new
    /// transaction, and this one is removed.
    pub pending: bool,
    /// The posted transaction that replaces a pending one names it.
    pub pending_transaction_id: Option<String>,
    /// `YYYY-MM-DD` as the bank booked it.
    pub booked_date: String,
    pub description: String,
    pub merchant_name: Option<String>,
    /// The provider's category in our lower-case words.
    pub category: Option<String>,
}

/// A transaction the provider withdrew (a pending one that posted or
/// vanished, a duplicate the bank corrected).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovedTransaction {
    pub transaction_id: String,
    pub account_id: String,
}

/// One page of one refresh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenBankingDataDelta {
    /// `<consent_id>:<page sequence>`: the sequence counts pages over the
    /// consent's life, so a republished page keeps its id.
    pub delta_id: String,
    pub consent_id: String,
    pub provider: String,
    /// The refresh command this page answers (its idempotency key); none
    /// for a refresh our scheduler or a provider update started.
    pub idempotency_key: Option<String>,
    /// The data sets this page carries.
    pub datasets: Vec<Dataset>,
    /// The provider cursor this page started from (none: the first sync)
    /// and the one to continue from. Opaque provider strings, not
    /// credentials.
    pub cursor_before: Option<String>,
    pub cursor_after: Option<String>,
    /// More pages follow in this refresh.
    pub has_more: bool,
    pub accounts_added: Vec<Account>,
    pub accounts_modified: Vec<Account>,
    pub accounts_removed: Vec<String>,
    /// A balance is a point-in-time value: the latest replaces what was known.
    pub balances: Vec<Balance>,
    pub transactions_added: Vec<Transaction>,
    pub transactions_modified: Vec<Transaction>,
    pub transactions_removed: Vec<RemovedTransaction>,
    /// What this refresh could not get (set on its last page).
    pub missing: Vec<MissingData>,
    pub fetched_at_ms: i64,
    pub published_at_ms: i64,
}

impl OpenBankingDataDelta {
    /// The delta id of a consent's `sequence`th page.
    pub fn delta_id(consent_id: &str, sequence: i64) -> String {
        format!("{consent_id}:{sequence}")
    }

    /// Nothing changed: a page worth storing the cursor of, not publishing.
    pub fn is_empty(&self) -> bool {
        self.accounts_added.is_empty()
            && self.accounts_modified.is_empty()
            && self.accounts_removed.is_empty()
            && self.balances.is_empty()
            && self.transactions_added.is_empty()
            && self.transactions_modified.is_empty()
            && self.transactions_removed.is_empty()
            && self.missing.is_empty()
    }
}
