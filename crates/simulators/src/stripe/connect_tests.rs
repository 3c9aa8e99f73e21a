//! Beneficiaries, connected accounts, key expiry, the payout list and the
//! money oracle: the places where the simulator must be able to disagree
//! with our adapter.

use std::time::Duration;

use serde_json::{json, Value};

use super::{spawn_stripe, StripeConfig, PLATFORM_ACCOUNT_HOLDER, PLATFORM_BANK_ACCOUNT_ID, PLATFORM_IBAN};
use crate::adyen::{spawn_adyen, AdyenConfig};
use crate::{MoneyOracle, SimulatorHandle};

const KEY: &str = "sk_test_switchyard";
const DE_IBAN: &str = "DE89370400440532013000";

async fn sim() -> SimulatorHandle {
    spawn_stripe(StripeConfig::local()).await.expect("spawn")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("client")
}

/// POSTs a form to `path`, optionally on behalf of a connected account.
async fn post(h: &SimulatorHandle, path: &str, account: Option<&str>, key: Option<&str>, form: &[(&str, &str)]) -> reqwest::Response {
    let mut req = client().post(format!("{}{path}", h.base_url())).basic_auth(KEY, Some("")).form(form);
    if let Some(a) = account {
        req = req.header("Stripe-Account", a);
    }
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    req.send().await.expect("send")
}

async fn get(h: &SimulatorHandle, path_and_query: &str, account: Option<&str>) -> reqwest::Response {
    let mut req = client().get(format!("{}{path_and_query}", h.base_url())).basic_auth(KEY, Some(""));
    if let Some(a) = account {
        req = req.header("Stripe-Account", a);
    }
    req.send().await.expect("get")
}

/// Attaches a German EUR account held by `holder` to `account`; returns its id.
async fn attach(h: &SimulatorHandle, account: &str, holder: &str) -> String {
    let form = [
        ("external_account[object]", "bank_account"),
        ("external_account[country]", "DE"),
        ("external_account[currency]", "eur"),
        ("external_account[account_number]", DE_IBAN),
        ("external_account[account_holder_name]", holder),
    ];
    let r = post(h, &format!("/v1/accounts/{account}/external_accounts"), None, None, &form).await;
    assert_eq!(r.status(), 200);
    let ba: Value = r.json().await.expect("json");
    ba["id"].as_str().expect("id").to_owned()
}

async fn error_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let body: Value = r.json().await.expect("json");
    (status, body["error"].clone())
}

#[tokio::test]
async fn expired_key_executes_again_like_stripe() {
    let cfg = StripeConfig { key_retention: Duration::from_millis(300), ..StripeConfig::local() };
    let h = spawn_stripe(cfg).await.expect("spawn");
    let form = [("amount", "500"), ("currency", "eur"), ("metadata[switchyard_payout_id]", "p-exp")];
    let first: Value = post(&h, "/v1/payouts", None, Some("k-exp"), &form).await.json().await.expect("json");
    let replay = post(&h, "/v1/payouts", None, Some("k-exp"), &form).await;
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let after = post(&h, "/v1/payouts", None, Some("k-exp"), &form).await;
    assert!(after.headers().get("idempotent-replayed").is_none(), "the key was pruned");
    let second: Value = after.json().await.expect("json");
    assert_ne!(first["id"], second["id"], "a second payout, as Stripe would make");
    assert_eq!(h.ledger().len(), 2);
    assert_eq!(h.oracle().per_payout()["p-exp"].len(), 2, "the oracle sees the double payout");
    h.shutdown().await;
}

#[tokio::test]
async fn payout_without_destination_pays_the_platform_account() {
    let h = sim().await;
    let form = [
        ("amount", "1200"),
        ("currency", "eur"),
        ("metadata[switchyard_payout_id]", "p-plat"),
        ("metadata[beneficiary_name]", "Alice Example"),
    ];
    let po: Value = post(&h, "/v1/payouts", None, None, &form).await.json().await.expect("json");
    assert_eq!(po["destination"], PLATFORM_BANK_ACCOUNT_ID);
    let paid = &h.ledger()[0];
    assert_eq!(paid.vendor, "stripe");
    assert_eq!(paid.payout_id.as_deref(), Some("p-plat"));
    assert_eq!(paid.beneficiary_iban.as_deref(), Some(PLATFORM_IBAN), "Stripe paid the platform, not Alice");
    assert_eq!(paid.beneficiary_name.as_deref(), Some(PLATFORM_ACCOUNT_HOLDER));
    h.shutdown().await;
}

#[tokio::test]
async fn external_account_is_paid_when_named_as_destination() {
    let h = sim().await;
    let form = [
        ("external_account[object]", "bank_account"),
        ("external_account[country]", "DE"),
        ("external_account[account_number]", DE_IBAN),
        ("external_account[account_holder_name]", "Alice Example"),
        ("external_account[account_holder_type]", "individual"),
    ];
    let path = "/v1/accounts/acct_alice/external_accounts";
    let r = post(&h, path, None, Some("ea-1"), &form).await;
    assert_eq!(r.status(), 200);
    let ba: Value = r.json().await.expect("json");
    assert_eq!(ba["object"], "bank_account");
    assert_eq!(ba["account"], "acct_alice");
    assert_eq!((ba["country"].as_str(), ba["currency"].as_str()), (Some("DE"), Some("eur")), "currency defaults from the country");
    assert_eq!((ba["last4"].as_str(), ba["status"].as_str()), (Some("3000"), Some("new")));
    assert_eq!(ba["default_for_currency"], true);
    assert!(ba.get("account_number").is_none(), "the full number is never echoed");
    let again: Value = post(&h, path, None, Some("ea-1"), &form).await.json().await.expect("json");
    assert_eq!(again["id"], ba["id"], "the key is honoured like a payout's");
    let ba_id = ba["id"].as_str().expect("id");
    let payout = [("amount", "900"), ("currency", "eur"), ("destination", ba_id), ("metadata[switchyard_payout_id]", "p-a")];
    let po: Value = post(&h, "/v1/payouts", Some("acct_alice"), None, &payout).await.json().await.expect("json");
    assert_eq!(po["destination"], ba_id);
    let paid = &h.ledger()[0];
    assert_eq!((paid.beneficiary_iban.as_deref(), paid.beneficiary_name.as_deref()), (Some(DE_IBAN), Some("Alice Example")));
    // Without `destination`, the connected account's default for EUR is paid.
    let po: Value = post(&h, "/v1/payouts", Some("acct_alice"), None, &payout[..2]).await.json().await.expect("json");
    assert_eq!(po["destination"], ba_id);
    // A connected account with no account in the currency cannot be paid.
    let (status, e) = error_of(post(&h, "/v1/payouts", Some("acct_alice"), None, &[("amount", "5"), ("currency", "gbp")]).await).await;
    assert_eq!((status, e["type"].as_str()), (400, Some("invalid_request_error")));
    h.shutdown().await;
}

#[tokio::test]
async fn destination_of_another_account_or_currency_is_refused() {
    let h = sim().await;
    let ba = attach(&h, "acct_alice", "Alice Example").await;
    for account in [Some("acct_mallory"), None] {
        let r = post(&h, "/v1/payouts", account, Some("k-x"), &[("amount", "100"), ("currency", "eur"), ("destination", &ba)]).await;
        let (status, e) = error_of(r).await;
        assert_eq!((status, e["code"].as_str(), e["param"].as_str()), (400, Some("resource_missing"), Some("destination")));
        assert_eq!(e["message"], format!("No such external account: '{ba}'"));
    }
    let r = post(&h, "/v1/payouts", Some("acct_alice"), None, &[("amount", "100"), ("currency", "gbp"), ("destination", &ba)]).await;
    let (status, e) = error_of(r).await;
    assert_eq!((status, e["param"].as_str()), (400, Some("destination")));
    assert!(h.ledger().is_empty(), "nothing paid");
    // The refusals were validation: the key still executes once fixed.
    let r = post(&h, "/v1/payouts", Some("acct_alice"), Some("k-x"), &[("amount", "100"), ("currency", "eur"), ("destination", &ba)]).await;
    assert_eq!(r.status(), 200);
    h.shutdown().await;
}

#[tokio::test]
async fn external_account_validation_names_the_param() {
    let h = sim().await;
    let base = [("external_account[object]", "bank_account"), ("external_account[country]", "FR")];
    for (extra, param) in [
        (vec![], "external_account[account_number]"),
        (vec![("external_account[account_number]", DE_IBAN)], "external_account[account_number]"),
        (vec![("external_account[account_number]", "FR7630006000011234567890188")], "external_account[account_number]"),
        (vec![("external_account[account_number]", "FR7630006000011234567890189"), ("bogus", "1")], "bogus"),
    ] {
        let form: Vec<(&str, &str)> = base.iter().copied().chain(extra).collect();
        let (status, e) = error_of(post(&h, "/v1/accounts/acct_x/external_accounts", None, None, &form).await).await;
        assert_eq!((status, e["param"].as_str()), (400, Some(param)), "{e}");
    }
    let (status, e) = error_of(post(&h, "/v1/accounts/acct_x/external_accounts", None, None, &base[1..]).await).await;
    assert_eq!((status, e["param"].as_str()), (400, Some("external_account[object]")));
    let (status, _) = error_of(post(&h, "/v1/payouts", Some("not-an-account"), None, &[("amount", "1"), ("currency", "eur")]).await).await;
    assert_eq!(status, 403);
    h.shutdown().await;
}

#[tokio::test]
async fn list_filters_pages_and_scopes_by_account() {
    let h = sim().await;
    let mut ids = Vec::new();
    for n in 1..=3 {
        let pid = format!("p-{n}");
        let form = [("amount", "100"), ("currency", "eur"), ("metadata[switchyard_payout_id]", pid.as_str())];
        let po: Value = post(&h, "/v1/payouts", None, None, &form).await.json().await.expect("json");
        ids.push(po["id"].as_str().expect("id").to_owned());
    }
    let ba = attach(&h, "acct_alice", "Alice Example").await;
    post(&h, "/v1/payouts", Some("acct_alice"), None, &[("amount", "7"), ("currency", "eur"), ("destination", &ba)]).await;
    let list = |q: &'static str, account: Option<&'static str>| {
        let h = &h;
        async move { get(h, &format!("/v1/payouts{q}"), account).await.json::<Value>().await.expect("json") }
    };
    let all = list("", None).await;
    assert_eq!((all["object"].as_str(), all["url"].as_str(), all["has_more"].as_bool()), (Some("list"), Some("/v1/payouts"), Some(false)));
    let listed: Vec<&str> = all["data"].as_array().expect("data").iter().filter_map(|p| p["id"].as_str()).collect();
    assert_eq!(listed, [ids[2].as_str(), ids[1].as_str(), ids[0].as_str()], "newest first, platform only");
    assert_eq!(all["data"][0]["metadata"]["switchyard_payout_id"], "p-3");
    let page = list("?limit=2", None).await;
    assert_eq!((page["data"].as_array().map(Vec::len), page["has_more"].as_bool()), (Some(2), Some(true)));
    let rest = get(&h, &format!("/v1/payouts?starting_after={}", ids[1]), None).await.json::<Value>().await.expect("json");
    assert_eq!(rest["data"][0]["id"], ids[0].as_str());
    assert_eq!(rest["has_more"], false);
    let before = get(&h, &format!("/v1/payouts?ending_before={}&limit=1", ids[0]), None).await.json::<Value>().await.expect("json");
    assert_eq!((before["data"][0]["id"].as_str(), before["has_more"].as_bool()), (Some(ids[1].as_str()), Some(true)));
    assert_eq!(list("?created[gte]=4102444800", None).await["data"], json!([]), "nothing created in 2100");
    assert_eq!(list("?created[lte]=4102444800&status=pending", None).await["data"].as_array().map(Vec::len), Some(3));
    assert_eq!(list("?status=paid", None).await["data"], json!([]));
    let alice = list("", Some("acct_alice")).await;
    assert_eq!(alice["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(alice["data"][0]["destination"], ba.as_str());
    assert_eq!(get(&h, "/v1/payouts?limit=101", None).await.status(), 400);
    assert_eq!(get(&h, "/v1/payouts?bogus=1", None).await.status(), 400);
    // Another account's payout cannot be retrieved either.
    assert_eq!(get(&h, &format!("/v1/payouts/{}", ids[0]), Some("acct_alice")).await.status(), 404);
    h.shutdown().await;
}

#[tokio::test]
async fn oracle_counts_one_payout_paid_at_both_vendors_twice() {
    let oracle = MoneyOracle::new();
    let stripe = spawn_stripe(StripeConfig { oracle: oracle.clone(), ..StripeConfig::local() }).await.expect("stripe");
    let adyen = spawn_adyen(AdyenConfig { oracle: oracle.clone(), ..AdyenConfig::local() }).await.expect("adyen");
    let form = [("amount", "2500"), ("currency", "eur"), ("metadata[switchyard_payout_id]", "p-both")];
    assert_eq!(post(&stripe, "/v1/payouts", None, Some("k-s"), &form).await.status(), 200);
    let transfer = json!({
        "amount": { "currency": "EUR", "value": 2500 },
        "balanceAccountId": "BA00000000000000000000001",
        "category": "bank",
        "counterparty": { "bankAccount": {
            "accountHolder": { "fullName": "Alice Example" },
            "accountIdentification": { "type": "iban", "iban": DE_IBAN }
        }},
        "priority": "regular",
        "reference": "p-both",
    });
    let r = client()
        .post(format!("{}/btl/v4/transfers", adyen.base_url()))
        .header("X-API-Key", "adyen_test_switchyard")
        .header("Idempotency-Key", "k-a")
        .json(&transfer)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    // Each vendor executed its key once; only the oracle sees the double payout.
    assert_eq!((stripe.ledger().len(), adyen.ledger().len()), (1, 1));
    let per_payout = oracle.per_payout();
    let vendors: Vec<&str> = per_payout["p-both"].iter().map(|m| m.vendor.as_str()).collect();
    assert_eq!(vendors, ["stripe", "adyen"]);
    assert_eq!(per_payout["p-both"][1].beneficiary_iban.as_deref(), Some(DE_IBAN));
    assert!(oracle.paid_more_than_once().contains_key("p-both"));
    stripe.shutdown().await;
    adyen.shutdown().await;
}

/// The spec's `bank_account[...]` dictionary is the same bank account as the
/// API reference's `external_account[...]` (`object` optional there); a form
/// with both is refused.
#[tokio::test]
async fn the_specs_bank_account_dictionary_is_accepted_too() {
    let h = sim().await;
    let path = "/v1/accounts/acct_spec/external_accounts";
    let form = [
        ("bank_account[country]", "DE"),
        ("bank_account[account_number]", DE_IBAN),
        ("bank_account[account_holder_name]", "Spec Reader"),
        ("bank_account[account_type]", "checking"),
    ];
    let r = post(&h, path, None, None, &form).await;
    assert_eq!(r.status(), 200);
    let ba: Value = r.json().await.expect("json");
    assert_eq!((ba["object"].as_str(), ba["account_holder_name"].as_str()), (Some("bank_account"), Some("Spec Reader")));
    assert_eq!((ba["currency"].as_str(), ba["account_type"].as_str()), (Some("eur"), Some("checking")));
    let both = [("bank_account[country]", "DE"), ("external_account[country]", "DE")];
    let (status, e) = error_of(post(&h, path, None, None, &both).await).await;
    assert_eq!((status, e["param"].as_str()), (400, Some("bank_account")));
    let (status, e) = error_of(post(&h, path, None, None, &[("bank_account[country]", "DE")]).await).await;
    assert_eq!((status, e["param"].as_str()), (400, Some("bank_account[account_number]")));
    h.shutdown().await;
}
