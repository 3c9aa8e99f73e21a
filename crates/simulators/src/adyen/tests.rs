use std::time::Duration;

use serde_json::{json, Value};

use super::{spawn_adyen, AdyenConfig};
use crate::{FaultPlan, SimulatorHandle, WebhookTarget};

const KEY: &str = "adyen_test_switchyard";
const BA: &str = "BA00000000000000000000001";

async fn sim(settle_ms: u64) -> SimulatorHandle {
    let cfg = AdyenConfig { settle_after: Duration::from_millis(settle_ms), ..AdyenConfig::local() };
    spawn_adyen(cfg).await.expect("spawn")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("client")
}

fn body(value: i64, reference: &str) -> Value {
    json!({
        "amount": { "currency": "EUR", "value": value },
        "balanceAccountId": BA,
        "category": "bank",
        "counterparty": { "bankAccount": {
            "accountHolder": { "fullName": "A. Klaassen" },
            "accountIdentification": { "type": "iban", "iban": "NL20ADYB2017000035" }
        }},
        "priority": "regular",
        "reference": reference,
        "description": "payout",
    })
}

async fn create(h: &SimulatorHandle, key: Option<&str>, b: &Value) -> reqwest::Response {
    let mut req = client().post(format!("{}/btl/v4/transfers", h.base_url())).header("X-API-Key", KEY).json(b);
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    req.send().await.expect("send")
}

async fn get(h: &SimulatorHandle, id: &str) -> Value {
    let url = format!("{}/btl/v4/transfers/{id}", h.base_url());
    client().get(url).header("X-API-Key", KEY).send().await.expect("get").json().await.expect("json")
}

#[tokio::test]
async fn refuses_missing_or_wrong_api_key() {
    let h = sim(2000).await;
    let url = format!("{}/btl/v4/transfers", h.base_url());
    let r = client().post(&url).header("X-API-Key", "nope").json(&body(100, "r")).send().await.expect("send");
    assert_eq!(r.status(), 401);
    let p: Value = r.json().await.expect("json");
    assert_eq!(p["status"], 401);
    assert_eq!(p["errorCode"], "00_401");
    assert!(p["requestId"].is_string());
    assert_eq!(client().post(&url).json(&body(100, "r")).send().await.expect("send").status(), 401);
    assert_eq!(h.stats().auth_failures, 2);
    h.shutdown().await;
}

#[tokio::test]
async fn replay_is_identical_and_mismatch_is_422() {
    let h = sim(2000).await;
    let first = create(&h, Some("a-1"), &body(5000, "pay-7")).await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["idempotency-key"], "a-1");
    let first_body = first.bytes().await.expect("body");
    let t: Value = serde_json::from_slice(&first_body).expect("json");
    assert_eq!(t["status"], "authorised");
    assert_eq!(t["direction"], "outgoing");
    assert_eq!(t["balanceAccount"]["id"], BA);
    let again = create(&h, Some("a-1"), &body(5000, "pay-7")).await;
    assert_eq!(again.bytes().await.expect("body"), first_body);
    let other = create(&h, Some("a-1"), &body(5001, "pay-7")).await;
    assert_eq!(other.status(), 422);
    let p: Value = other.json().await.expect("json");
    assert_eq!(p["errorCode"], "704");
    let ledger = h.ledger();
    assert_eq!(ledger.len(), 1);
    assert_eq!((ledger[0].reference.as_str(), ledger[0].currency.as_str()), ("pay-7", "EUR"));
    assert_eq!(ledger[0].vendor_id, t["id"].as_str().expect("id"));
    let s = h.stats();
    assert_eq!((s.idempotent_replays, s.idempotency_conflicts), (1, 1));
    h.shutdown().await;
}

#[tokio::test]
async fn validation_lists_invalid_fields_and_checks_balance_account() {
    let h = sim(2000).await;
    let mut b = body(0, "r");
    b["counterparty"]["bankAccount"]["accountIdentification"]["iban"] = json!("nope");
    let r = create(&h, None, &b).await;
    assert_eq!(r.status(), 422);
    let p: Value = r.json().await.expect("json");
    let names: Vec<&str> = p["invalidFields"].as_array().expect("fields").iter().filter_map(|f| f["name"].as_str()).collect();
    assert!(names.contains(&"amount.value") && names.contains(&"counterparty.bankAccount.accountIdentification.iban"), "{names:?}");
    let mut b = body(100, "r");
    b["balanceAccountId"] = json!("BA_OTHER");
    assert_eq!(create(&h, None, &b).await.status(), 422);
    let bad_json = client().post(format!("{}/btl/v4/transfers", h.base_url())).header("X-API-Key", KEY).body("{").send().await.expect("send");
    assert_eq!(bad_json.status(), 400);
    assert!(h.ledger().is_empty());
    h.shutdown().await;
}

#[tokio::test]
async fn magic_values_refuse_and_return() {
    let h = sim(150).await;
    let refused: Value = create(&h, Some("a-m1"), &body(40402, "r1")).await.json().await.expect("json");
    assert_eq!((refused["status"].as_str(), refused["reason"].as_str()), (Some("refused"), Some("notEnoughBalance")));
    assert!(h.ledger().is_empty());
    let t: Value = create(&h, Some("a-m2"), &body(40422, "r2")).await.json().await.expect("json");
    assert_eq!(t["status"], "authorised");
    assert_eq!(h.ledger().len(), 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let later = get(&h, t["id"].as_str().expect("id")).await;
    assert_eq!((later["status"].as_str(), later["reason"].as_str()), (Some("returned"), Some("counterpartyAccountClosed")));
    h.shutdown().await;
}

#[tokio::test]
async fn books_after_settle_and_rate_limits() {
    let h = sim(150).await;
    let t: Value = create(&h, None, &body(100, "r")).await.json().await.expect("json");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(get(&h, t["id"].as_str().expect("id")).await["status"], "booked");
    h.set_faults(FaultPlan { rate_limit_ratio: 1.0, retry_after_secs: 3, ..FaultPlan::default() });
    let r = create(&h, Some("a-r"), &body(100, "r")).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "3");
    assert_eq!(h.ledger().len(), 1);
    h.shutdown().await;
}

#[tokio::test]
async fn hang_after_accept_executes_once_then_replays() {
    let h = sim(2000).await;
    h.set_faults(FaultPlan { hang_after_accept_ratio: 1.0, hang_ms: 1000, ..FaultPlan::default() });
    let sent = client()
        .post(format!("{}/btl/v4/transfers", h.base_url()))
        .header("X-API-Key", KEY)
        .header("Idempotency-Key", "a-h")
        .json(&body(900, "r-h"))
        .timeout(Duration::from_millis(150))
        .send()
        .await;
    assert!(sent.is_err());
    h.set_faults(FaultPlan::default());
    let t: Value = create(&h, Some("a-h"), &body(900, "r-h")).await.json().await.expect("json");
    assert_eq!(h.ledger().len(), 1);
    assert_eq!(t["id"], h.ledger()[0].vendor_id.as_str());
    h.shutdown().await;
}

#[tokio::test]
async fn signed_webhooks_are_posted_on_create_and_settle() {
    use axum::{body::Bytes, http::HeaderMap, routing::post, Router};
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Bytes)>();
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, raw: Bytes| {
            let tx = tx.clone();
            async move {
                let sig = headers.get("hmacsignature").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                let _ = tx.send((sig, raw));
                "[accepted]"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let secret = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056".to_owned();
    let cfg = AdyenConfig {
        settle_after: Duration::from_millis(100),
        webhook: Some(WebhookTarget { url, secret: secret.clone() }),
        ..AdyenConfig::local()
    };
    let h = spawn_adyen(cfg).await.expect("spawn");
    assert_eq!(create(&h, None, &body(100, "r-w")).await.status(), 200);
    let mut kinds = Vec::new();
    for _ in 0..2 {
        let (sig, raw) = tokio::time::timeout(Duration::from_secs(3), rx.recv()).await.expect("webhook").expect("open");
        let expected = crate::callbacks::Signer::AdyenHmac { hex_key: secret.clone() }.headers("", 0, &raw).expect("signs");
        assert_eq!(sig, expected[0].1);
        let ev: Value = serde_json::from_slice(&raw).expect("json");
        kinds.push((ev["type"].as_str().map(str::to_owned), ev["data"]["status"].as_str().map(str::to_owned)));
    }
    kinds.sort();
    assert_eq!(kinds[0], (Some("balancePlatform.transfer.created".into()), Some("authorised".into())));
    assert_eq!(kinds[1], (Some("balancePlatform.transfer.updated".into()), Some("booked".into())));
    h.shutdown().await;
}
