use super::*;

async fn sim(cfg: LithicConfig) -> (SimulatorHandle, reqwest::Client) {
    (spawn_lithic(cfg).await.expect("spawns"), reqwest::Client::new())
}

fn physical(memo: &str, product: &str) -> Value {
    json!({"type": "PHYSICAL", "memo": memo, "product_id": product, "shipping_address": {
        "first_name": "Ada", "last_name": "Lovelace", "address1": "1 Main St", "city": "NEW YORK",
        "country": "USA", "postal_code": "10001", "state": "NY"}})
}

#[tokio::test]
async fn issues_replays_and_refuses_other_bodies_under_one_key() {
    let oracle = CardOracle::new();
    let (h, c) = sim(LithicConfig { oracle: oracle.clone(), ..LithicConfig::local() }).await;
    let url = format!("{}/v1/cards", h.base_url());
    let key = uuid::Uuid::new_v4().to_string();
    let post = |body: Value, key: &str| c.post(&url).header("Authorization", "lithic_sk_test_switchyard").header("Idempotency-Key", key).json(&body).send();
    let first: Value = post(json!({"type": "VIRTUAL", "memo": "card-1"}), &key).await.expect("sent").json().await.expect("json");
    assert_eq!(first["state"], "OPEN");
    assert!(first.get("pan").is_none(), "no PAN for a non-PCI program");
    let again = post(json!({"type": "VIRTUAL", "memo": "card-1"}), &key).await.expect("sent");
    assert_eq!(again.headers().get("idempotent-replayed").map(|v| v.as_bytes()), Some(&b"true"[..]));
    let again: Value = again.json().await.expect("json");
    assert_eq!(again["token"], first["token"]);
    let other = post(json!({"type": "VIRTUAL", "memo": "card-2"}), &key).await.expect("sent");
    assert_eq!(other.status(), 422);
    assert_eq!(post(json!({"type": "VIRTUAL"}), "not-a-uuid").await.expect("sent").status(), 400);
    let unauth = c.post(&url).header("Authorization", "Bearer lithic_sk_test_switchyard").json(&json!({"type": "VIRTUAL"})).send().await.expect("sent");
    assert_eq!(unauth.status(), 401);
    assert_eq!(oracle.cards().len(), 1);
    assert_eq!(oracle.cards()[0].card_id.as_deref(), Some("card-1"));
    h.shutdown().await;
}

#[tokio::test]
async fn physical_cards_ship_and_magic_inputs_decline_or_return() {
    let (h, c) = sim(LithicConfig { ship_after: Duration::from_millis(100), ..LithicConfig::local() }).await;
    let base = h.base_url();
    let auth = "lithic_sk_test_switchyard";
    let card: Value = c.post(format!("{base}/v1/cards")).header("Authorization", auth).json(&physical("card-p", "1")).send().await.expect("sent").json().await.expect("json");
    assert_eq!(card["state"], "PENDING_FULFILLMENT");
    let declined = c.post(format!("{base}/v1/cards")).header("Authorization", auth).json(&physical("card-d", MAGIC_DECLINE)).send().await.expect("sent");
    assert_eq!(declined.status(), 422);
    let returned: Value = c.post(format!("{base}/v1/cards")).header("Authorization", auth).json(&physical("card-r", MAGIC_RETURNED)).send().await.expect("sent").json().await.expect("json");
    tokio::time::sleep(Duration::from_millis(350)).await;
    let get = |t: &Value| c.get(format!("{base}/v1/cards/{}", t.as_str().unwrap_or_default())).header("Authorization", auth).send();
    let shipped: Value = get(&card["token"]).await.expect("sent").json().await.expect("json");
    assert_eq!(shipped["state"], "PENDING_ACTIVATION");
    let back: Value = get(&returned["token"]).await.expect("sent").json().await.expect("json");
    assert_eq!((back["state"].as_str(), back["substatus"].as_str()), (Some("CLOSED"), Some("UNDELIVERABLE")));
    let closed = c.patch(format!("{base}/v1/cards/{}", back["token"].as_str().unwrap_or_default())).header("Authorization", auth).json(&json!({"state": "OPEN"})).send().await.expect("sent");
    assert_eq!(closed.status(), 400, "a closed card stays closed");
    h.shutdown().await;
}

#[tokio::test]
async fn a_key_in_flight_is_a_conflict() {
    let plan = FaultPlan { latency_ms: 300, ..FaultPlan::default() };
    let (h, c) = sim(LithicConfig { faults: plan, ..LithicConfig::local() }).await;
    let url = format!("{}/v1/cards", h.base_url());
    let key = uuid::Uuid::new_v4().to_string();
    let send = || c.post(&url).header("Authorization", "lithic_sk_test_switchyard").header("Idempotency-Key", &key).json(&json!({"type": "VIRTUAL"})).send();
    let first = send();
    let second = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        send().await
    };
    let (a, b) = tokio::join!(first, second);
    assert_eq!(a.expect("sent").status(), 200);
    assert_eq!(b.expect("sent").status(), 409);
    h.shutdown().await;
}

#[tokio::test]
async fn webhooks_are_signed_and_duplicated_when_the_plan_says_so() {
    use axum::routing::post;
    let seen: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let sink = Arc::clone(&seen);
    let app = axum::Router::new().route(
        "/hooks",
        post(move |headers: HeaderMap, body: Bytes| {
            let sink = Arc::clone(&sink);
            async move {
                let id = header_str(&headers, "webhook-id").unwrap_or_default().to_owned();
                assert!(header_str(&headers, "webhook-signature").is_some_and(|s| s.starts_with("v1,")));
                sink.lock().unwrap_or_else(|p| p.into_inner()).push((id, serde_json::from_slice(&body).unwrap_or_default()));
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hooks", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let cfg = LithicConfig {
        webhook: Some(WebhookTarget { url, secret: "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ=".into() }),
        callback_faults: CallbackFaults { duplicate_ratio: 1.0, reorder_ratio: 1.0, ..CallbackFaults::default() },
        ship_after: Duration::from_millis(50),
        ..LithicConfig::local()
    };
    let (h, c) = sim(cfg).await;
    c.post(format!("{}/v1/cards", h.base_url())).header("Authorization", "lithic_sk_test_switchyard").json(&physical("card-w", "1")).send().await.expect("sent");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let kinds: Vec<&str> = seen.iter().filter_map(|(_, v)| v["event_type"].as_str()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "card.created").count(), 2, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "card.shipped").count(), 2, "{kinds:?}");
    let created: Vec<&String> = seen.iter().filter(|(_, v)| v["event_type"] == "card.created").map(|(id, _)| id).collect();
    assert_eq!(created[0], created[1], "a duplicate keeps its webhook-id");
    assert_eq!(kinds.first(), Some(&"card.shipped"), "card.created held back behind card.shipped: {kinds:?}");
    h.shutdown().await;
}

#[tokio::test]
async fn a_dispute_is_moved_on_by_lithics_own_statuses_only() {
    let (h, c) = sim(LithicConfig { ship_after: Duration::from_secs(60), ..LithicConfig::local() }).await;
    let base = h.base_url();
    let auth = "lithic_sk_test_switchyard";
    let body = json!({"amount": 1250, "reason": "FRAUD_CARD_NOT_PRESENT", "transaction_token": uuid::Uuid::new_v4().to_string()});
    let dispute: Value = c.post(format!("{base}/v1/disputes")).header("Authorization", auth).json(&body).send().await.expect("sent").json().await.expect("json");
    let token = dispute["token"].as_str().unwrap_or_default().to_owned();
    let control = format!("{base}/_sim/disputes/{token}");
    let moved: Value = c.post(&control).json(&json!({"status": "CASE_CLOSED", "resolution_reason": "WITHDRAWN"})).send().await.expect("sent").json().await.expect("json");
    assert_eq!((moved["status"].as_str(), moved["resolution_reason"].as_str()), (Some("CASE_CLOSED"), Some("WITHDRAWN")));
    let read: Value = c.get(format!("{base}/v1/disputes/{token}")).header("Authorization", auth).send().await.expect("sent").json().await.expect("json");
    assert_eq!(read["status"], "CASE_CLOSED", "the API reads what the control set");
    assert_eq!(c.post(&control).json(&json!({"status": "LOST"})).send().await.expect("sent").status(), 400, "LOST is no Lithic status");
    assert_eq!(c.post(&control).json(&json!({"status": "CASE_CLOSED", "resolution_reason": "GAVE_UP"})).send().await.expect("sent").status(), 400);
    let unknown = format!("{base}/_sim/disputes/{}", uuid::Uuid::new_v4());
    assert_eq!(c.post(&unknown).json(&json!({"status": "CASE_WON"})).send().await.expect("sent").status(), 404);
    h.shutdown().await;
}
