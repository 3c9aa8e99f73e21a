use super::*;
use serde_json::{json, Value};

struct T {
    base: String,
    http: reqwest::Client,
    handle: SimulatorHandle,
}

async fn start(cfg: MarqetaConfig) -> T {
    let handle = spawn_marqeta(cfg).await.expect("spawn");
    T { base: handle.base_url(), http: reqwest::Client::new(), handle }
}

impl T {
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, body).await
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .request(method, format!("{}/v3{path}", self.base))
            .basic_auth("app_token_switchyard", Some("access_token_switchyard"))
            .json(&body)
            .send()
            .await
            .expect("send");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(format!("{}/v3{path}", self.base)).basic_auth("app_token_switchyard", Some("access_token_switchyard")).send().await.expect("send");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

fn card(token: &str) -> Value {
    json!({"token": token, "user_token": "user-1", "card_product_token": "prod-1", "metadata": {"switchyard_card_id": "card-1"}})
}

#[tokio::test]
async fn marqeta_card_token_reuse_is_a_conflict_and_the_oracle_counts_one_card() {
    let oracle = CardOracle::new();
    let t = start(MarqetaConfig { oracle: oracle.clone(), ..MarqetaConfig::local() }).await;
    let (status, body) = t.post("/cards", card("tok-1")).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["state"], "UNACTIVATED");
    assert_eq!(body["fulfillment_status"], "ISSUED");
    assert!(body["pan"].as_str().expect("pan").contains("______"), "masked: {body}");
    let (status, again) = t.post("/cards", card("tok-1")).await;
    assert_eq!((status, again["error_code"].as_str()), (409, Some("409001")));
    assert_eq!(oracle.per_card()["card-1"].len(), 1);
    let (status, got) = t.get("/cards/tok-1").await;
    assert_eq!((status, got["token"].as_str()), (200, Some("tok-1")));
    assert_eq!(t.get("/cards/nope").await.0, 404);
    t.handle.shutdown().await;
}

#[tokio::test]
async fn marqeta_transitions_follow_the_card_lifecycle() {
    let t = start(MarqetaConfig::local()).await;
    t.post("/cards", card("tok-2")).await;
    let tr = |state: &str| json!({"card_token": "tok-2", "channel": "API", "state": state, "reason_code": "00"});
    let (s, b) = t.post("/cardtransitions", tr("ACTIVE")).await;
    assert_eq!((s, b["type"].as_str()), (201, Some("state.activated")), "{b}");
    let (s, b) = t.post("/cardtransitions", tr("ACTIVE")).await;
    assert_eq!((s, b["error_code"].as_str()), (400, Some("400011")), "{b}");
    assert_eq!(t.post("/cardtransitions", tr("SUSPENDED")).await.1["type"], "state.suspended");
    assert_eq!(t.post("/cardtransitions", tr("ACTIVE")).await.1["type"], "state.reinstated");
    assert_eq!(t.post("/cardtransitions", tr("TERMINATED")).await.1["type"], "state.terminated");
    assert_eq!(t.post("/cardtransitions", tr("ACTIVE")).await.0, 400);
    assert_eq!(t.post("/cardtransitions", json!({"card_token": "tok-2", "channel": "PHONE", "state": "ACTIVE"})).await.0, 400);
    t.handle.shutdown().await;
}

#[tokio::test]
async fn marqeta_magic_decline_and_pins() {
    let t = start(MarqetaConfig::local()).await;
    let (s, b) = t.post("/cards", json!({"token": "tok-d", "user_token": "declined-1", "card_product_token": "p"})).await;
    assert_eq!((s, b["error_code"].as_str()), (400, Some("400200")));
    t.post("/cards", card("tok-3")).await;
    let (s, ct) = t.post("/pins/controltoken", json!({"card_token": "tok-3", "controltoken_type": "SET_PIN"})).await;
    assert_eq!(s, 201);
    let control = ct["control_token"].as_str().expect("token").to_owned();
    assert_eq!(t.send(reqwest::Method::PUT, "/pins", json!({"control_token": control, "pin": "1234"})).await.0, 412);
    assert_eq!(t.send(reqwest::Method::PUT, "/pins", json!({"control_token": control, "pin": "0123456789ABCDEF"})).await.0, 204);
    assert_eq!(t.send(reqwest::Method::PUT, "/pins", json!({"control_token": control, "pin": "0123456789ABCDEF"})).await.0, 400);
    assert_eq!(t.get("/cards/tok-3").await.1["pin_is_set"], true);
    t.handle.shutdown().await;
}

#[tokio::test]
async fn marqeta_webhooks_come_in_batches_with_basic_auth_and_signature() {
    use axum::routing::post;
    let seen: Arc<std::sync::Mutex<Vec<(HeaderMap, Bytes)>>> = Arc::default();
    let sink = Arc::clone(&seen);
    let app = axum::Router::new().route(
        "/hook",
        post(move |h: HeaderMap, b: Bytes| {
            let sink = Arc::clone(&sink);
            async move {
                let mut g = sink.lock().expect("lock");
                g.push((h, b));
                // The first delivery is refused: Marqeta must retry it.
                if g.len() == 1 { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut hook = MarqetaWebhook::new(format!("http://{addr}/hook"), "hookuser", "hookpass");
    hook.secret = Some("s3cret".into());
    hook.backoff = Duration::from_millis(20);
    let t = start(MarqetaConfig { webhook: Some(hook), ..MarqetaConfig::local() }).await;
    for i in 0..12 {
        t.post("/cards", card(&format!("tok-w{i}"))).await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let seen = seen.lock().expect("lock").clone();
    assert!(seen.len() >= 3, "12 events: 2 batches, the first retried: {}", seen.len());
    let mut events = 0;
    for (h, body) in &seen[1..] {
        let v: Value = serde_json::from_slice(body).expect("json");
        let n = v["cardtransitions"].as_array().expect("cardtransitions").len();
        assert!(n <= MAX_BATCH);
        events += n;
        assert_eq!(h["authorization"], format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("hookuser:hookpass")));
        assert_eq!(h["x-marqeta-signature"].to_str().expect("sig"), signature("s3cret", body));
    }
    assert_eq!(events, 12, "every fulfillment.issued delivered once");
    t.handle.shutdown().await;
}

#[tokio::test]
async fn marqeta_physical_cards_ship_and_the_magic_address_comes_back() {
    // Generous windows: a loaded machine must not make SHIPPED look DELIVERED.
    let t = start(MarqetaConfig { ship_after: Duration::from_millis(500), ..MarqetaConfig::local() }).await;
    let ship = |token: &str, line: &str| {
        json!({"token": token, "user_token": "user-1", "card_product_token": "prod-1",
               "fulfillment": {"shipping": {"recipient_address": {"first_name": "Ada", "address1": line, "city": "London", "country": "GB"}},
                               "card_personalization": {"text": {"name_line_1": {"value": "Ada"}}}}})
    };
    let (s, b) = t.post("/cards", ship("tok-p", "1 Main St")).await;
    assert_eq!((s, b["fulfillment_status"].as_str(), b["instrument_type"].as_str()), (201, Some("ISSUED"), Some("PHYSICAL_COMBO")), "{b}");
    t.post("/cards", ship("tok-r", "RETURN TO SENDER 9 Nowhere")).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(t.get("/cards/tok-p").await.1["fulfillment_status"], "SHIPPED");
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(t.get("/cards/tok-p").await.1["fulfillment_status"], "DELIVERED");
    assert_eq!(t.get("/cards/tok-r").await.1["fulfillment_status"], "REJECTED");
    t.handle.shutdown().await;
}

#[tokio::test]
async fn marqeta_faults_reissue_and_pan_reveals() {
    let reveals = PanReveals::default();
    let t = start(MarqetaConfig { pan_reveals: reveals.clone(), ..MarqetaConfig::local() }).await;
    t.post("/cards", card("tok-o")).await;
    let (s, b) = t.post("/cards", json!({"token": "tok-n", "user_token": "user-1", "card_product_token": "prod-1", "reissue_pan_from_card_token": "tok-o"})).await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["last_four"], t.get("/cards/tok-o").await.1["last_four"], "a reissue keeps the PAN");
    let activate = json!({"card_token": "tok-n", "channel": "API", "state": "ACTIVE"});
    assert_eq!(t.post("/cardtransitions", activate).await.0, 201);
    assert_eq!(t.get("/cards/tok-o").await.1["state"], "TERMINATED", "the old card retires when the new one is active");
    let shown = t.get("/cards/tok-o?show_pan=true").await.1;
    assert!(!shown["pan"].as_str().expect("pan").contains('_'));
    assert_eq!(reveals.count(), 1);
    t.handle.set_faults(FaultPlan { unavailable_ratio: 1.0, ..FaultPlan::default() });
    let (s, b) = t.post("/cards", card("tok-f")).await;
    assert_eq!((s, b["error_code"].as_str()), (503, Some("503001")));
    t.handle.set_faults(FaultPlan::default());
    assert_eq!(t.post("/cards", card("tok-f")).await.0, 201, "a refused request leaves the token free");
    let unauthorized = t.http.get(format!("{}/v3/cards/tok-f", t.base)).basic_auth("app_token_switchyard", Some("nope")).send().await.expect("send");
    assert_eq!(unauthorized.status().as_u16(), 401);
    t.handle.shutdown().await;
}

#[tokio::test]
async fn marqeta_webhooks_can_come_twice_and_late() {
    use axum::routing::post;
    let seen: Arc<std::sync::Mutex<Vec<Value>>> = Arc::default();
    let sink = Arc::clone(&seen);
    let app = axum::Router::new().route(
        "/hook",
        post(move |b: Bytes| {
            let sink = Arc::clone(&sink);
            async move {
                sink.lock().expect("lock").push(serde_json::from_slice(&b).expect("json"));
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut hook = MarqetaWebhook::new(format!("http://{addr}/hook"), "u", "p");
    hook.duplicate_ratio = 1.0;
    hook.max_jitter = Duration::from_millis(100);
    let t = start(MarqetaConfig { webhook: Some(hook), ..MarqetaConfig::local() }).await;
    t.post("/cards", card("tok-dup")).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let seen = seen.lock().expect("lock").clone();
    let issued = seen.iter().flat_map(|b| b["cardtransitions"].as_array().cloned().unwrap_or_default()).filter(|e| e["type"] == "fulfillment.issued").count();
    assert_eq!(issued, 2, "the same event twice: {seen:?}");
    t.handle.shutdown().await;
}

/// `digital_wallet_token_transition_request` as Marqeta defines it: only
/// ACTIVE, SUSPENDED and TERMINATED may be asked for, `channel` and
/// `reason_code` are enums, and the definition's optional fields are taken.
#[tokio::test]
async fn marqeta_wallet_transitions_take_only_what_the_definition_allows() {
    let t = start(MarqetaConfig::local()).await;
    assert_eq!(t.post("/cards", card("tok-w")).await.0, 201);
    let (status, provisioned) = t
        .post("/digitalwalletprovisionrequests/applepay", json!({"card_token": "tok-w", "device_type": "MOBILE_PHONE", "provisioning_app_version": "1.0", "certificates": ["bGVhZg=="], "nonce": "stepup-1", "nonce_signature": "c2ln"}))
        .await;
    assert_eq!(status, 201, "{provisioned}");
    let (_, listed) = t.get("/digitalwallettokens/card/tok-w").await;
    let token = listed["data"][0]["token"]
        .as_str()
        .expect("a wallet token")
        .to_owned();
    let ask = |extra: Value| {
        let mut body = json!({"digital_wallet_token": {"token": token, "card_token": "tok-w"}, "state": "ACTIVE"});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        body
    };
    for (bad, why) in [
        (
            json!({"state": "REQUESTED"}),
            "a token state Marqeta sets itself",
        ),
        (json!({"channel": "WEB"}), "a channel outside the enum"),
        (json!({"reason_code": "33"}), "a reason code outside 00-32"),
        (
            json!({"reason": "x".repeat(256)}),
            "a reason over 255 characters",
        ),
    ] {
        let (status, body) = t.post("/digitalwallettokentransitions", ask(bad)).await;
        assert_eq!(status, 400, "{why}: {body}");
    }
    let (status, body) = t.post("/digitalwallettokentransitions", ask(json!({"channel": "API", "reason_code": "00", "override_tsp_error": false, "token_reference_id": "ref-1"}))).await;
    assert_eq!(
        (status, body["state"].as_str()),
        (201, Some("ACTIVE")),
        "{body}"
    );
    t.handle.shutdown().await;
}
