use std::time::Duration;

use serde_json::Value;

use super::{spawn_stripe, StripeConfig};
use crate::{FaultPlan, SimulatorHandle};

const KEY: &str = "sk_test_switchyard";

async fn sim(settle_ms: u64) -> SimulatorHandle {
    let cfg = StripeConfig { settle_after: Duration::from_millis(settle_ms), ..StripeConfig::local() };
    spawn_stripe(cfg).await.expect("spawn")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("client")
}

async fn create(h: &SimulatorHandle, key: Option<&str>, form: &[(&str, &str)]) -> reqwest::Response {
    let mut req = client().post(format!("{}/v1/payouts", h.base_url())).basic_auth(KEY, Some("")).form(form);
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    req.send().await.expect("send")
}

#[tokio::test]
async fn refuses_bad_and_missing_keys_without_echoing_them() {
    let h = sim(2000).await;
    let url = format!("{}/v1/payouts", h.base_url());
    let r = client().post(&url).bearer_auth("sk_test_wrongwrongwrong1234").form(&[("amount", "1")]).send().await.expect("send");
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.expect("json");
    let msg = body["error"]["message"].as_str().expect("message");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(msg.starts_with("Invalid API Key provided: sk_test_****"), "{msg}");
    assert!(!msg.contains("wrongwrong"));
    let r = client().post(&url).form(&[("amount", "1")]).send().await.expect("send");
    assert_eq!(r.status(), 401);
    let ok = client().post(&url).bearer_auth(KEY).form(&[("amount", "100"), ("currency", "eur")]).send().await.expect("send");
    assert_eq!(ok.status(), 200);
    assert_eq!(h.stats().auth_failures, 2);
    h.shutdown().await;
}

#[tokio::test]
async fn replay_returns_identical_body_and_executes_once() {
    let h = sim(2000).await;
    let form = [("amount", "1250"), ("currency", "EUR"), ("metadata[reference]", "pay-1"), ("description", "rent")];
    let first = create(&h, Some("k-1"), &form).await;
    assert_eq!(first.status(), 200);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first_body = first.bytes().await.expect("body");
    // Same parameters in a different order are the same request.
    let reordered = [form[3], form[2], form[1], form[0]];
    let second = create(&h, Some("k-1"), &reordered).await;
    assert_eq!(second.status(), 200);
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    assert_eq!(second.bytes().await.expect("body"), first_body);
    let payout: Value = serde_json::from_slice(&first_body).expect("json");
    assert_eq!(payout["object"], "payout");
    assert_eq!(payout["currency"], "eur");
    assert_eq!(payout["status"], "pending");
    assert_eq!(payout["metadata"]["reference"], "pay-1");
    let ledger = h.ledger();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].currency, "EUR");
    assert_eq!(ledger[0].reference, "pay-1");
    assert_eq!(ledger[0].idempotency_key, "k-1");
    assert_eq!(ledger[0].vendor_id, payout["id"].as_str().expect("id"));
    assert_eq!(h.stats().idempotent_replays, 1);
    h.shutdown().await;
}

#[tokio::test]
async fn same_key_other_params_is_an_idempotency_error() {
    let h = sim(2000).await;
    assert_eq!(create(&h, Some("k-2"), &[("amount", "100"), ("currency", "usd")]).await.status(), 200);
    let r = create(&h, Some("k-2"), &[("amount", "101"), ("currency", "usd")]).await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["type"], "idempotency_error");
    assert!(body["error"]["message"].as_str().expect("msg").contains("'k-2'"));
    assert_eq!(h.ledger().len(), 1);
    assert_eq!(h.stats().idempotency_conflicts, 1);
    h.shutdown().await;
}

#[tokio::test]
async fn concurrent_same_key_gets_409() {
    let h = sim(2000).await;
    h.set_faults(FaultPlan { latency_ms: 300, ..FaultPlan::default() });
    let form = [("amount", "100"), ("currency", "usd")];
    let (a, b) = tokio::join!(create(&h, Some("k-c"), &form), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        create(&h, Some("k-c"), &form).await
    });
    assert_eq!(a.status(), 200);
    assert_eq!(b.status(), 409);
    let body: Value = b.json().await.expect("json");
    assert_eq!(body["error"]["type"], "idempotency_error");
    assert_eq!(h.ledger().len(), 1);
    h.shutdown().await;
}

#[tokio::test]
async fn validation_errors_name_the_param() {
    let h = sim(2000).await;
    for (form, param) in [
        (vec![("currency", "usd")], "amount"),
        (vec![("amount", "-5"), ("currency", "usd")], "amount"),
        (vec![("amount", "5"), ("currency", "usd"), ("statement_descriptor", "ABCDEFGHIJKLMNOPQRSTUVW")], "statement_descriptor"),
        (vec![("amount", "5"), ("currency", "usd"), ("method", "slow")], "method"),
        (vec![("amount", "5"), ("currency", "usd"), ("bogus", "x")], "bogus"),
    ] {
        let r = create(&h, Some("k-v"), &form).await;
        assert_eq!(r.status(), 400);
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["error"]["param"], param);
    }
    // Validation failures are not saved: the key is still usable.
    assert_eq!(create(&h, Some("k-v"), &[("amount", "5"), ("currency", "usd")]).await.status(), 200);
    h.shutdown().await;
}

#[tokio::test]
async fn magic_amounts_decline_and_fail() {
    let h = sim(200).await;
    let r = create(&h, Some("k-m1"), &[("amount", "40402"), ("currency", "usd")]).await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "balance_insufficient");
    assert!(h.ledger().is_empty());
    let r = create(&h, Some("k-m2"), &[("amount", "40422"), ("currency", "usd")]).await;
    let po: Value = r.json().await.expect("json");
    assert_eq!(h.ledger().len(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let url = format!("{}/v1/payouts/{}", h.base_url(), po["id"].as_str().expect("id"));
    let later: Value = client().get(url).basic_auth(KEY, Some("")).send().await.expect("get").json().await.expect("json");
    assert_eq!(later["status"], "failed");
    assert_eq!(later["failure_code"], "account_closed");
    h.shutdown().await;
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after_and_executes_nothing() {
    let h = sim(2000).await;
    h.set_faults(FaultPlan { rate_limit_ratio: 1.0, retry_after_secs: 7, ..FaultPlan::default() });
    let r = create(&h, Some("k-r"), &[("amount", "100"), ("currency", "usd")]).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    assert!(h.ledger().is_empty());
    assert_eq!(h.stats().injected_faults, 1);
    // The 429 was not saved: once faults clear, the same key executes.
    h.set_faults(FaultPlan::default());
    assert_eq!(create(&h, Some("k-r"), &[("amount", "100"), ("currency", "usd")]).await.status(), 200);
    assert_eq!(h.ledger().len(), 1);
    h.shutdown().await;
}

#[tokio::test]
async fn hang_after_accept_executes_once_and_replays_the_original() {
    let h = sim(2000).await;
    h.set_faults(FaultPlan { hang_after_accept_ratio: 1.0, hang_ms: 1500, ..FaultPlan::default() });
    let form = [("amount", "777"), ("currency", "gbp")];
    let timed_out = client()
        .post(format!("{}/v1/payouts", h.base_url()))
        .basic_auth(KEY, Some(""))
        .header("Idempotency-Key", "k-h")
        .form(&form)
        .timeout(Duration::from_millis(200))
        .send()
        .await;
    assert!(timed_out.is_err(), "the client should time out");
    assert_eq!(h.ledger().len(), 1);
    h.set_faults(FaultPlan::default());
    let r = create(&h, Some("k-h"), &form).await;
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    let po: Value = r.json().await.expect("json");
    assert_eq!(po["id"], h.ledger()[0].vendor_id.as_str());
    assert_eq!(h.ledger().len(), 1);
    h.shutdown().await;
}

#[tokio::test]
async fn status_advances_to_paid_and_control_routes_work() {
    let h = sim(200).await;
    let po: Value = create(&h, None, &[("amount", "100"), ("currency", "usd")]).await.json().await.expect("json");
    let url = format!("{}/v1/payouts/{}", h.base_url(), po["id"].as_str().expect("id"));
    let get = || async { client().get(&url).basic_auth(KEY, Some("")).send().await.expect("get").json::<Value>().await.expect("json") };
    assert_eq!(get().await["status"], "pending");
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(get().await["status"], "in_transit");
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(get().await["status"], "paid");
    let missing = client().get(format!("{}/v1/payouts/po_nope", h.base_url())).basic_auth(KEY, Some("")).send().await.expect("get");
    assert_eq!(missing.status(), 404);
    let ledger: Value = client().get(format!("{}/_sim/ledger", h.base_url())).send().await.expect("get").json().await.expect("json");
    assert_eq!(ledger.as_array().map(Vec::len), Some(1));
    let put = client()
        .put(format!("{}/_sim/faults", h.base_url()))
        .json(&serde_json::json!({ "server_error_ratio": 1.0 }))
        .send()
        .await
        .expect("put");
    assert_eq!(put.status(), 200);
    let r = create(&h, None, &[("amount", "100"), ("currency", "usd")]).await;
    assert!(r.status().is_server_error());
    let stats: Value = client().get(format!("{}/_sim/stats", h.base_url())).send().await.expect("get").json().await.expect("json");
    assert_eq!(stats["executed"], 1);
    assert_eq!(stats["injected_faults"], 1);
    h.shutdown().await;
}
