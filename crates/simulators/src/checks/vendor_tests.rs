//! Vendor-contract tests of the KYC, AML and fraud simulators: auth, the
//! idempotency rule each vendor has (same key and body -> the same reply,
//! another body -> the vendor's error) and the shared fault plan.

use std::time::Duration;

use serde_json::{json, Value};

use crate::{comply_advantage, onfido, open_sanctions, sardine, seon, sumsub, FaultPlan};

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("client")
}

#[tokio::test]
async fn onfido_replays_a_key_and_refuses_it_for_another_body() {
    let h = onfido::spawn_onfido(onfido::OnfidoConfig::local()).await.expect("spawn");
    let url = format!("{}/v3.6/applicants", h.base_url());
    let post = |key: &'static str, body: Value, token: &'static str| {
        client().post(&url).header("Authorization", format!("Token token={token}")).header("Idempotency-Key", key).json(&body).send()
    };
    let ada = json!({ "first_name": "Ada", "last_name": "Lovelace" });
    assert_eq!(post("k1", ada.clone(), "wrong").await.expect("send").status(), 401);
    let first = post("k1", ada.clone(), "api_sandbox.switchyard").await.expect("send");
    assert_eq!(first.status(), 201);
    let first = first.bytes().await.expect("body");
    let again = post("k1", ada, "api_sandbox.switchyard").await.expect("send").bytes().await.expect("body");
    assert_eq!(first, again, "replayed byte for byte");
    let other = post("k1", json!({ "first_name": "Eve", "last_name": "Lovelace" }), "api_sandbox.switchyard").await.expect("send");
    assert_eq!(other.status(), 409);
    assert_eq!(other.json::<Value>().await.expect("json")["error"]["type"], "idempotency_error");
    let blank = post("k2", json!({ "first_name": "Ada" }), "api_sandbox.switchyard").await.expect("send");
    assert_eq!(blank.status(), 422, "partial data is a validation error");
    assert_eq!((h.stats().idempotent_replays, h.stats().idempotency_conflicts, h.stats().auth_failures), (1, 1, 1));
    h.shutdown().await;
}

#[tokio::test]
async fn sumsub_checks_the_request_signature_and_keys_on_external_user_id() {
    let h = sumsub::spawn_sumsub(sumsub::SumsubConfig::local()).await.expect("spawn");
    let path = "/resources/applicants?levelName=basic-kyc-level";
    let send = |body: Value, secret: &'static str| {
        let body = serde_json::to_vec(&body).expect("json");
        let ts = crate::util::now_ms() / 1000;
        let sig = {
            use hmac::Mac;
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
            mac.update(format!("{ts}POST{path}").as_bytes());
            mac.update(&body);
            hex::encode(mac.finalize().into_bytes())
        };
        client()
            .post(format!("{}{path}", h.base_url()))
            .header("X-App-Token", "sbx:switchyard")
            .header("X-App-Access-Ts", ts.to_string())
            .header("X-App-Access-Sig", sig)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
    };
    let ada = json!({ "externalUserId": "u-1", "fixedInfo": { "firstName": "Ada", "lastName": "Lovelace" } });
    assert_eq!(send(ada.clone(), "not-the-secret").await.expect("send").status(), 401);
    let first = send(ada.clone(), "sumsub-secret").await.expect("send").json::<Value>().await.expect("json");
    assert_eq!(first["review"]["reviewStatus"], "init");
    let again = send(ada, "sumsub-secret").await.expect("send").json::<Value>().await.expect("json");
    assert_eq!(first["id"], again["id"], "the same applicant");
    let other = send(json!({ "externalUserId": "u-1", "fixedInfo": { "lastName": "Eve" } }), "sumsub-secret").await.expect("send");
    assert_eq!(other.status(), 409);
    let text = other.text().await.expect("text");
    assert!(text.contains(first["id"].as_str().expect("id")), "names the existing applicant: {text}");
    h.shutdown().await;
}

#[tokio::test]
async fn comply_advantage_keys_searches_on_client_ref_and_injects_faults() {
    let h = comply_advantage::spawn_comply_advantage(comply_advantage::ComplyAdvantageConfig::local()).await.expect("spawn");
    let url = format!("{}/searches", h.base_url());
    let search = |body: Value| client().post(&url).header("Authorization", "Token ca_test_switchyard").json(&body).send();
    let body = json!({ "search_term": "Ivan Similar", "client_ref": "r-1", "fuzziness": 0.6 });
    let first = search(body.clone()).await.expect("send").json::<Value>().await.expect("json");
    assert_eq!(first["content"]["data"]["match_status"], "potential_match");
    let again = search(body).await.expect("send").json::<Value>().await.expect("json");
    assert_eq!(first["content"]["data"]["id"], again["content"]["data"]["id"]);
    assert_eq!(search(json!({ "search_term": "Other", "client_ref": "r-1" })).await.expect("send").status(), 409);
    assert_eq!(h.ledger().len(), 1, "one billable search");
    h.set_faults(FaultPlan { unavailable_ratio: 1.0, ..FaultPlan::default() });
    assert_eq!(search(json!({ "search_term": "Ada", "client_ref": "r-2" })).await.expect("send").status(), 503);
    h.shutdown().await;
}

#[tokio::test]
async fn open_sanctions_is_stateless_and_scores_against_the_threshold() {
    let h = open_sanctions::spawn_open_sanctions(open_sanctions::OpenSanctionsConfig::local()).await.expect("spawn");
    let query = |threshold: f64| {
        client()
            .post(format!("{}/match/default?threshold={threshold}", h.base_url()))
            .header("Authorization", "ApiKey os_test_switchyard")
            .json(&json!({ "queries": { "q": { "schema": "Person", "properties": { "name": ["Ivan Similar"] } } } }))
            .send()
    };
    let low = query(0.7).await.expect("send").json::<Value>().await.expect("json");
    assert_eq!(low["responses"]["q"]["results"][0]["match"], true);
    let high = query(0.9).await.expect("send").json::<Value>().await.expect("json");
    assert_eq!(high["responses"]["q"]["results"][0]["match"], false, "0.82 is below a 0.9 threshold");
    assert_eq!(low["responses"]["q"]["results"][0]["id"], high["responses"]["q"]["results"][0]["id"], "stable entity ids");
    h.shutdown().await;
}

#[tokio::test]
async fn fraud_vendors_replay_their_natural_keys_and_refuse_them_for_other_data() {
    let sd = sardine::spawn_sardine(sardine::SardineConfig::local()).await.expect("spawn");
    let url = format!("{}/v1/customers", sd.base_url());
    let score = |body: Value| client().post(&url).basic_auth("sardine_test_client", Some("sardine-secret")).json(&body).send();
    let body = json!({ "sessionKey": "s-1", "flow": "onboarding", "customer": { "id": "c-1", "emailAddress": "x@mailinator.com" } });
    let first = score(body.clone()).await.expect("send").bytes().await.expect("body");
    assert_eq!(first, score(body).await.expect("send").bytes().await.expect("body"));
    assert_eq!(score(json!({ "sessionKey": "s-1", "customer": { "id": "c-2" } })).await.expect("send").status(), 409);
    assert_eq!(serde_json::from_slice::<Value>(&first).expect("json")["level"], "high");
    sd.shutdown().await;

    let se = seon::spawn_seon(seon::SeonConfig::local()).await.expect("spawn");
    let url = format!("{}/SeonRestService/fraud-api/v2/", se.base_url());
    let score = |body: Value| client().post(&url).header("X-API-KEY", "seon_test_switchyard").json(&body).send();
    let body = json!({ "action_type": "purchase", "transaction_id": "t-1", "email": "fraudster@example.com" });
    let first = score(body.clone()).await.expect("send").json::<Value>().await.expect("json");
    assert_eq!(first["data"]["state"], "DECLINE");
    let again = score(body).await.expect("send").json::<Value>().await.expect("json");
    assert_eq!(first, again);
    let other = score(json!({ "action_type": "purchase", "transaction_id": "t-1", "email": "ada@example.com" })).await.expect("send");
    assert_eq!(other.status(), 400);
    assert_eq!(other.json::<Value>().await.expect("json")["error"]["code"], "1008");
    let label = |tx: &str| {
        client()
            .put(format!("{}/SeonRestService/fraud-api/label/v1/{tx}", se.base_url()))
            .header("X-API-KEY", "seon_test_switchyard")
            .json(&json!({ "label": "fraud_detection_chargeback_fraud" }))
            .send()
    };
    assert_eq!(label("t-1").await.expect("send").status(), 200);
    assert_eq!(label("never-scored").await.expect("send").status(), 404);
    se.shutdown().await;
}
