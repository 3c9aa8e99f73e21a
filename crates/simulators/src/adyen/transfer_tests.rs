//! The counterparty requirement, the recorded beneficiary, key expiry, the
//! in-flight conflict and the transfer list.

use std::time::Duration;

use serde_json::{json, Value};

use super::{spawn_adyen, AdyenConfig};
use crate::util::{iso8601, now_ms};
use crate::{FaultPlan, SimulatorHandle, UNKNOWN_PAYOUT};

const KEY: &str = "adyen_test_switchyard";
const BA: &str = "BA00000000000000000000001";
const IBAN: &str = "NL20ADYB2017000035";

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("client")
}

fn body(reference: &str) -> Value {
    json!({
        "amount": { "currency": "EUR", "value": 1000 },
        "balanceAccountId": BA,
        "category": "bank",
        "counterparty": { "bankAccount": {
            "accountHolder": { "fullName": "A. Klaassen" },
            "accountIdentification": { "type": "iban", "iban": IBAN }
        }},
        "priority": "regular",
        "reference": reference,
    })
}

async fn create(h: &SimulatorHandle, key: Option<&str>, b: &Value) -> reqwest::Response {
    let mut req = client().post(format!("{}/btl/v4/transfers", h.base_url())).header("X-API-Key", KEY).json(b);
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    req.send().await.expect("send")
}

async fn invalid_fields(r: reqwest::Response) -> Vec<String> {
    assert_eq!(r.status(), 422);
    let p: Value = r.json().await.expect("json");
    assert_eq!(p["errorCode"], "30_002");
    p["invalidFields"].as_array().expect("fields").iter().filter_map(|f| f["name"].as_str().map(str::to_owned)).collect()
}

#[tokio::test]
async fn refuses_a_transfer_without_a_payable_counterparty() {
    let h = spawn_adyen(AdyenConfig::local()).await.expect("spawn");
    let mut cases: Vec<(Value, &str)> = Vec::new();
    let mut b = body("r");
    b.as_object_mut().expect("object").remove("counterparty");
    cases.push((b, "counterparty"));
    let mut b = body("r");
    b["counterparty"] = json!({ "transferInstrumentId": "SE00000000000000000000001" });
    cases.push((b, "counterparty.bankAccount"));
    let mut b = body("r");
    b["counterparty"]["bankAccount"].as_object_mut().expect("object").remove("accountHolder");
    cases.push((b, "counterparty.bankAccount.accountHolder"));
    let mut b = body("r");
    b["counterparty"]["bankAccount"]["accountHolder"] = json!({ "type": "individual" });
    cases.push((b, "counterparty.bankAccount.accountHolder.fullName"));
    let mut b = body("r");
    b["counterparty"]["bankAccount"]["accountIdentification"] = json!({ "type": "iban" });
    cases.push((b, "counterparty.bankAccount.accountIdentification.iban"));
    let mut b = body("r");
    b.as_object_mut().expect("object").remove("priority");
    cases.push((b, "priority"));
    for (b, field) in cases {
        let names = invalid_fields(create(&h, Some("a-cp"), &b).await).await;
        assert!(names.iter().any(|n| n == field), "{field} not in {names:?}");
    }
    assert!(h.ledger().is_empty());
    // Validation is not saved: the key still executes a valid request.
    assert_eq!(create(&h, Some("a-cp"), &body("r")).await.status(), 200);
    h.shutdown().await;
}

#[tokio::test]
async fn records_the_beneficiary_and_the_reference_as_sent() {
    let h = spawn_adyen(AdyenConfig::local()).await.expect("spawn");
    assert_eq!(create(&h, None, &body("p-9")).await.status(), 200);
    let mut unreferenced = body("x");
    unreferenced.as_object_mut().expect("object").remove("reference");
    let t: Value = create(&h, None, &unreferenced).await.json().await.expect("json");
    assert!(t["reference"].as_str().is_some_and(|r| !r.is_empty()), "Adyen generates one");
    let ledger = h.ledger();
    assert_eq!(ledger[0].vendor, "adyen");
    assert_eq!(ledger[0].payout_id.as_deref(), Some("p-9"));
    assert_eq!((ledger[0].beneficiary_iban.as_deref(), ledger[0].beneficiary_name.as_deref()), (Some(IBAN), Some("A. Klaassen")));
    assert_eq!(ledger[1].payout_id, None, "we sent none, so the oracle cannot attribute it");
    assert_eq!(h.oracle().per_payout()[UNKNOWN_PAYOUT].len(), 1);
    h.shutdown().await;
}

#[tokio::test]
async fn expired_key_executes_again_like_adyen() {
    let cfg = AdyenConfig { key_retention: Duration::from_millis(300), ..AdyenConfig::local() };
    let h = spawn_adyen(cfg).await.expect("spawn");
    let first: Value = create(&h, Some("a-exp"), &body("p-exp")).await.json().await.expect("json");
    let replay: Value = create(&h, Some("a-exp"), &body("p-exp")).await.json().await.expect("json");
    assert_eq!(replay["id"], first["id"]);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let second: Value = create(&h, Some("a-exp"), &body("p-exp")).await.json().await.expect("json");
    assert_ne!(second["id"], first["id"]);
    assert_eq!(h.oracle().per_payout()["p-exp"].len(), 2);
    h.shutdown().await;
}

#[tokio::test]
async fn same_key_in_flight_is_a_transient_409() {
    let h = spawn_adyen(AdyenConfig::local()).await.expect("spawn");
    h.set_faults(FaultPlan { latency_ms: 300, ..FaultPlan::default() });
    let b = body("p-c");
    let (a, second) = tokio::join!(create(&h, Some("a-c"), &b), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        create(&h, Some("a-c"), &b).await
    });
    assert_eq!(a.status(), 200);
    assert_eq!(second.status(), 409);
    assert_eq!(second.headers()["transient-error"], "true");
    let p: Value = second.json().await.expect("json");
    assert_eq!(p["errorCode"], "704");
    assert_eq!(h.ledger().len(), 1);
    h.shutdown().await;
}

#[tokio::test]
async fn list_filters_by_reference_date_and_pages() {
    let h = spawn_adyen(AdyenConfig::local()).await.expect("spawn");
    let mut ids = Vec::new();
    for r in ["r-1", "r-2", "r-3"] {
        let t: Value = create(&h, None, &body(r)).await.json().await.expect("json");
        ids.push(t["id"].as_str().expect("id").to_owned());
    }
    let (since, until) = (iso8601(now_ms() - 60_000), iso8601(now_ms() + 60_000));
    let url = |extra: &str| format!("{}/btl/v4/transfers?balanceAccountId={BA}&createdSince={since}&createdUntil={until}{extra}", h.base_url());
    let fetch = |u: String| async move {
        let r = client().get(u).header("X-API-Key", KEY).send().await.expect("get");
        (r.status().as_u16(), r.json::<Value>().await.expect("json"))
    };
    let ids_of = |v: &Value| -> Vec<String> { v["data"].as_array().expect("data").iter().filter_map(|t| t["id"].as_str().map(str::to_owned)).collect() };
    let (status, all) = fetch(url("")).await;
    assert_eq!(status, 200);
    assert_eq!(ids_of(&all), ids, "oldest first by default");
    assert!(all["_links"].get("next").is_none());
    let (_, desc) = fetch(url("&sortOrder=desc")).await;
    assert_eq!(ids_of(&desc), ids.iter().rev().cloned().collect::<Vec<_>>());
    let (_, one) = fetch(url("&reference=r-2")).await;
    assert_eq!(ids_of(&one), [ids[1].clone()]);
    assert_eq!(one["data"][0]["counterparty"]["bankAccount"]["accountIdentification"]["iban"], IBAN);
    let (_, page) = fetch(url("&limit=2")).await;
    assert_eq!(ids_of(&page), ids[..2]);
    let next = page["_links"]["next"]["href"].as_str().expect("next").to_owned();
    let (_, rest) = fetch(next).await;
    assert_eq!(ids_of(&rest), ids[2..]);
    assert!(rest["_links"].get("next").is_none());
    let (_, none) = fetch(url("&category=internal")).await;
    assert!(ids_of(&none).is_empty());
    let (_, old) = fetch(format!(
        "{}/btl/v4/transfers?balancePlatform=SWITCHYARD_SIM&createdSince=2020-01-01T00:00:00Z&createdUntil=2020-02-01T00:00:00Z",
        h.base_url()
    ))
    .await;
    assert!(ids_of(&old).is_empty());
    let (status, p) = fetch(format!("{}/btl/v4/transfers?balanceAccountId={BA}", h.base_url())).await;
    assert_eq!(status, 422);
    let names: Vec<&str> = p["invalidFields"].as_array().expect("fields").iter().filter_map(|f| f["name"].as_str()).collect();
    assert!(names.contains(&"createdSince") && names.contains(&"createdUntil"), "{names:?}");
    let (status, _) = fetch(format!("{}/btl/v4/transfers?createdSince={since}&createdUntil={until}", h.base_url())).await;
    assert_eq!(status, 422, "an account, account holder or balance platform is required");
    h.shutdown().await;
}
