//! The simulated Plaid items: accounts, a transaction change log that
//! `/transactions/sync` pages through, and the JSON Plaid renders them as
//! (shapes from `tests/contracts/plaid/plaid.json`, checked by
//! `tests/tests/openbanking_contracts.rs`).

use serde_json::{json, Value};

/// One change in an item's transaction history, in the order Plaid learned it.
#[derive(Clone, Debug)]
pub(crate) enum Change {
    Added(Txn),
    Modified(Txn),
    Removed { transaction_id: String, account_id: String },
}

#[derive(Clone, Debug)]
pub(crate) struct Txn {
    pub(crate) transaction_id: String,
    pub(crate) account_id: String,
    /// Plaid's sign: positive is money out of the account.
    pub(crate) amount_cents: i64,
    pub(crate) date: String,
    pub(crate) name: String,
    pub(crate) pending: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct Acct {
    pub(crate) account_id: String,
    pub(crate) name: &'static str,
    pub(crate) mask: &'static str,
    pub(crate) subtype: &'static str,
    pub(crate) kind: &'static str,
    pub(crate) current_cents: i64,
    pub(crate) available_cents: Option<i64>,
    pub(crate) limit_cents: Option<i64>,
}

#[derive(Clone, Debug)]
pub(crate) struct Item {
    pub(crate) item_id: String,
    pub(crate) institution_id: String,
    pub(crate) accounts: Vec<Acct>,
    pub(crate) changes: Vec<Change>,
    pub(crate) login_required: bool,
    pub(crate) removed: bool,
    /// Transactions are still being pulled from the institution (PRODUCT_NOT_READY).
    pub(crate) not_ready: bool,
}

impl Item {
    /// A checking and a credit card account and `transactions` generated
    /// transactions, spread over both.
    pub(crate) fn generated(item_id: String, institution_id: String, transactions: usize) -> Self {
        let short = item_id.chars().take(10).collect::<String>();
        let accounts = vec![
            Acct {
                account_id: format!("acc_{short}_chk"),
                name: "Plaid Checking",
                mask: "0000",
                subtype: "checking",
                kind: "depository",
                current_cents: 11_000,
                available_cents: Some(10_000),
                limit_cents: None,
            },
            Acct {
                account_id: format!("acc_{short}_cc"),
                name: "Plaid Credit Card",
                mask: "3333",
                subtype: "credit card",
                kind: "credit",
                current_cents: 41_000,
                available_cents: None,
                limit_cents: Some(200_000),
            },
        ];
        let mut item = Self { item_id, institution_id, accounts, changes: Vec::new(), login_required: false, removed: false, not_ready: false };
        item.add_transactions(transactions);
        item
    }

    /// Appends `n` new transactions to the change log.
    pub(crate) fn add_transactions(&mut self, n: usize) {
        let base = self.changes.len();
        for i in 0..n {
            let seq = base + i;
            let account = &self.accounts[seq % self.accounts.len()];
            // Every fifth one is money in (a negative Plaid amount).
            let amount_cents = if seq % 5 == 4 { -(150_000 + seq as i64) } else { 1_000 + (seq as i64 * 137) % 9_000 };
            self.changes.push(Change::Added(Txn {
                transaction_id: format!("txn_{}_{seq:05}", self.item_id.chars().take(10).collect::<String>()),
                account_id: account.account_id.clone(),
                amount_cents,
                date: format!("2026-11-{:02}", 1 + seq % 28),
                name: format!("Merchant {}", seq % 7),
                pending: false,
            }));
        }
    }

    /// Marks an added transaction as modified (a pending one that posted) or removed.
    pub(crate) fn change_existing(&mut self, transaction_id: &str, remove: bool) -> bool {
        let found = self.changes.iter().find_map(|c| match c {
            Change::Added(t) if t.transaction_id == transaction_id => Some(t.clone()),
            _ => None,
        });
        let Some(mut txn) = found else { return false };
        if remove {
            self.changes.push(Change::Removed { transaction_id: txn.transaction_id, account_id: txn.account_id });
        } else {
            txn.name = format!("{} (posted)", txn.name);
            self.changes.push(Change::Modified(txn));
        }
        true
    }
}

/// Cents as Plaid's JSON number (a double on the wire; two decimals here).
fn money(cents: i64) -> Value {
    let text = format!("{}{}.{:02}", if cents < 0 { "-" } else { "" }, cents.unsigned_abs() / 100, cents.unsigned_abs() % 100);
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

pub(crate) fn account_json(a: &Acct) -> Value {
    json!({
        "account_id": a.account_id,
        "balances": {
            "available": a.available_cents.map(money),
            "current": money(a.current_cents),
            "limit": a.limit_cents.map(money),
            "iso_currency_code": "USD",
            "unofficial_currency_code": null,
        },
        "mask": a.mask,
        "name": a.name,
        "official_name": format!("{} Official", a.name),
        "type": a.kind,
        "subtype": a.subtype,
    })
}

pub(crate) fn transaction_json(t: &Txn) -> Value {
    json!({
        "transaction_id": t.transaction_id,
        "account_id": t.account_id,
        "amount": money(t.amount_cents),
        "iso_currency_code": "USD",
        "unofficial_currency_code": null,
        "date": t.date,
        "authorized_date": t.date,
        "authorized_datetime": null,
        "datetime": null,
        "name": t.name,
        "merchant_name": t.name,
        "pending": t.pending,
        "pending_transaction_id": null,
        "account_owner": null,
        "payment_channel": "in store",
        "payment_meta": {
            "by_order_of": null, "payee": null, "payer": null, "payment_method": null,
            "payment_processor": null, "ppd_id": null, "reason": null, "reference_number": null,
        },
        "location": {
            "address": null, "city": null, "region": null, "postal_code": null,
            "country": null, "lat": null, "lon": null, "store_number": null,
        },
        "transaction_code": null,
        "personal_finance_category": { "primary": "GENERAL_MERCHANDISE", "detailed": "GENERAL_MERCHANDISE_OTHER_GENERAL_MERCHANDISE" },
    })
}

pub(crate) fn item_json(item: &Item) -> Value {
    json!({
        "item_id": item.item_id,
        "institution_id": item.institution_id,
        "webhook": null,
        "error": null,
        "available_products": ["balance"],
        "billed_products": ["transactions"],
        "products": ["transactions"],
        "consent_expiration_time": null,
        "update_type": "background",
    })
}

/// One `/transactions/sync` page from change-log position `from`.
pub(crate) fn sync_page(item: &Item, from: usize, count: usize, request_id: &str) -> Value {
    let end = (from + count).min(item.changes.len());
    let (mut added, mut modified, mut removed) = (Vec::new(), Vec::new(), Vec::new());
    for change in item.changes.get(from..end).unwrap_or_default() {
        match change {
            Change::Added(t) => added.push(transaction_json(t)),
            Change::Modified(t) => modified.push(transaction_json(t)),
            Change::Removed { transaction_id, account_id } => removed.push(json!({ "transaction_id": transaction_id, "account_id": account_id })),
        }
    }
    json!({
        "accounts": item.accounts.iter().map(account_json).collect::<Vec<_>>(),
        "added": added,
        "modified": modified,
        "removed": removed,
        "next_cursor": encode_cursor(&item.item_id, end),
        "has_more": end < item.changes.len(),
        "request_id": request_id,
        "transactions_update_status": "HISTORICAL_UPDATE_COMPLETE",
    })
}

/// Plaid's cursors are opaque base64 strings; ours carry the item and a
/// change-log position, so a cursor of another item is refused.
pub(crate) fn encode_cursor(item_id: &str, position: usize) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{item_id}:{position}"))
}

pub(crate) fn decode_cursor(item_id: &str, cursor: &str) -> Option<usize> {
    use base64::Engine;
    if cursor.is_empty() {
        return Some(0);
    }
    let raw = base64::engine::general_purpose::STANDARD.decode(cursor).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (item, position) = text.rsplit_once(':')?;
    (item == item_id).then_some(())?;
    position.parse().ok()
}
