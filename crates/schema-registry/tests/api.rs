//! Black-box tests over HTTP, asserting Confluent's status and error codes.

mod common;

use common::{Sr, BAD, RETYPED, V1, V2};
use reqwest::StatusCode;
use serde_json::{json, Value};
use switchyard_schema_registry::RegistryConfig;

#[tokio::test]
async fn register_fetch_and_dedupe() {
    let sr = Sr::start(RegistryConfig::local()).await;
    let (status, body) = sr.register("orders-value", V1).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = body["id"].as_u64().expect("id");

    let (status, body) = sr.get(&format!("/schemas/ids/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({ "schema": V1 }));

    // Whitespace differences do not make a new schema or a new version.
    let pretty = serde_json::to_string_pretty(&serde_json::from_str::<Value>(V1).expect("v1"))
        .expect("pretty");
    let (_, again) = sr.register("orders-value", &pretty).await;
    assert_eq!(again["id"].as_u64(), Some(id));
    assert_eq!(
        sr.get("/subjects/orders-value/versions").await.1,
        json!([1])
    );

    // Ids are global across subjects.
    let (_, other) = sr.register("returns-value", V1).await;
    assert_eq!(other["id"].as_u64(), Some(id));
    assert_eq!(
        sr.get("/subjects").await.1,
        json!(["orders-value", "returns-value"])
    );
    let (_, usages) = sr.get(&format!("/schemas/ids/{id}/versions")).await;
    assert_eq!(
        usages,
        json!([{"subject":"orders-value","version":1},{"subject":"returns-value","version":1}])
    );

    let (status, found) = sr
        .post("/subjects/orders-value", json!({ "schema": pretty }))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        found,
        json!({"subject":"orders-value","version":1,"id":id,"schema":V1})
    );
    let (status, missing) = sr
        .post("/subjects/orders-value", json!({ "schema": V2 }))
        .await;
    assert_eq!(
        (status, missing["error_code"].clone()),
        (StatusCode::NOT_FOUND, json!(40403))
    );
    let (_, missing) = sr.post("/subjects/nope", json!({ "schema": V1 })).await;
    assert_eq!(missing["error_code"], 40401);
    sr.handle.shutdown().await;
}

#[tokio::test]
async fn evolution_follows_backward_compatibility() {
    let sr = Sr::start(RegistryConfig::local()).await;
    let (_, first) = sr.register("orders-value", V1).await;
    let (status, body) = sr.register("orders-value", BAD).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error_code"], 409);
    let message = body["message"].as_str().expect("message");
    assert!(message.starts_with("Schema being registered is incompatible with an earlier schema"));

    let (status, second) = sr.register("orders-value", V2).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_ne!(first["id"], second["id"]);
    assert_eq!(
        sr.get("/subjects/orders-value/versions").await.1,
        json!([1, 2])
    );
    assert_eq!(
        sr.register("orders-value", RETYPED).await.0,
        StatusCode::CONFLICT
    );

    let (status, latest) = sr.get("/subjects/orders-value/versions/latest").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        latest,
        json!({"subject":"orders-value","version":2,"id":second["id"],"schema":V2})
    );
    assert_eq!(
        sr.get("/subjects/orders-value/versions/1").await.1["schema"],
        V1
    );
    assert_eq!(
        sr.get("/subjects/orders-value/versions/3").await.1["error_code"],
        40402
    );
    assert_eq!(
        sr.get("/subjects/orders-value/versions/0").await.1["error_code"],
        42202
    );
    assert_eq!(
        sr.get("/subjects/nope/versions/latest").await.1["error_code"],
        40401
    );
    assert_eq!(
        sr.get("/subjects/nope/versions").await.1["error_code"],
        40401
    );

    // With NONE on the subject the same change is accepted.
    let (status, _) = sr
        .send(
            reqwest::Method::PUT,
            "/config/orders-value",
            Some(json!({"compatibility":"NONE"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sr.register("orders-value", RETYPED).await.0, StatusCode::OK);
    sr.handle.shutdown().await;
}

#[tokio::test]
async fn compatibility_endpoint() {
    let sr = Sr::start(RegistryConfig::local()).await;
    // Confluent reports a subject without versions as compatible with "latest".
    let path = "/compatibility/subjects/orders-value/versions/latest";
    assert_eq!(
        sr.post(path, json!({"schema": V1})).await.1,
        json!({"is_compatible": true})
    );
    sr.register("orders-value", V1).await;
    assert_eq!(
        sr.post(path, json!({"schema": V2})).await.1,
        json!({"is_compatible": true})
    );
    assert_eq!(
        sr.post(path, json!({"schema": BAD})).await.1,
        json!({"is_compatible": false})
    );
    let (_, verbose) = sr
        .post(&format!("{path}?verbose=true"), json!({"schema": BAD}))
        .await;
    assert_eq!(verbose["is_compatible"], false);
    assert_eq!(verbose["messages"].as_array().map(Vec::len), Some(1));
    let (status, body) = sr
        .post(
            "/compatibility/subjects/orders-value/versions/7",
            json!({"schema": V2}),
        )
        .await;
    assert_eq!(
        (status, body["error_code"].clone()),
        (StatusCode::NOT_FOUND, json!(40402))
    );
    sr.handle.shutdown().await;
}

#[tokio::test]
async fn errors_use_confluent_codes() {
    let sr = Sr::start(RegistryConfig::local()).await;
    let (status, body) = sr.get("/schemas/ids/7").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({"error_code": 40403, "message": "Schema 7 not found"})
    );
    assert_eq!(sr.get("/schemas/ids/abc").await.0, StatusCode::NOT_FOUND);

    let (status, body) = sr.register("x", r#"{"type":"record","name":"X"}"#).await;
    assert_eq!(
        (status, body["error_code"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!(42201))
    );
    let (status, body) = sr.register("x", "not json").await;
    assert_eq!(
        (status, body["error_code"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!(42201))
    );
    let (status, body) = sr
        .post(
            "/subjects/x/versions",
            json!({"schema": "syntax = \"proto3\";", "schemaType": "PROTOBUF"}),
        )
        .await;
    assert_eq!(
        (status, body["error_code"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!(42201))
    );

    // Malformed and mistyped bodies are errors, never crashes.
    let url = format!("{}/subjects/x/versions", sr.handle.base_url());
    let resp = sr
        .http
        .post(&url)
        .body("{not json")
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let (status, body) = sr.post("/subjects/x/versions", json!({"schema": 5})).await;
    assert_eq!(
        (status, body["error_code"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!(422))
    );
    let resp = sr
        .http
        .post(&url)
        .body(vec![b' '; 2 * 1024 * 1024])
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let resp = sr
        .http
        .post(&url)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await;
    assert_eq!(
        resp.expect("sent").status(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    sr.handle.shutdown().await;
}

#[tokio::test]
async fn config_endpoints() {
    let sr = Sr::start(RegistryConfig::local()).await;
    assert_eq!(
        sr.get("/config").await.1,
        json!({"compatibilityLevel": "BACKWARD"})
    );
    let (status, body) = sr.get("/config/orders-value").await;
    assert_eq!(
        (status, body["error_code"].clone()),
        (StatusCode::NOT_FOUND, json!(40408))
    );
    let (_, body) = sr.get("/config/orders-value?defaultToGlobal=true").await;
    assert_eq!(body, json!({"compatibilityLevel": "BACKWARD"}));

    let put = |path: &'static str, level: &'static str| {
        sr.send(
            reqwest::Method::PUT,
            path,
            Some(json!({ "compatibility": level })),
        )
    };
    assert_eq!(
        put("/config", "FULL_TRANSITIVE").await.1,
        json!({"compatibility": "FULL_TRANSITIVE"})
    );
    assert_eq!(
        sr.get("/config").await.1,
        json!({"compatibilityLevel": "FULL_TRANSITIVE"})
    );
    assert_eq!(
        put("/config/orders-value", "forward").await.1,
        json!({"compatibility": "FORWARD"})
    );
    assert_eq!(
        sr.get("/config/orders-value").await.1,
        json!({"compatibilityLevel": "FORWARD"})
    );
    let (status, body) = put("/config", "SIDEWAYS").await;
    assert_eq!(
        (status, body["error_code"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!(42203))
    );
    sr.handle.shutdown().await;
}

#[tokio::test]
async fn schemas_differing_only_in_a_default_get_distinct_ids() {
    let sr = Sr::start(RegistryConfig::local()).await;
    let other_default = V2.replace(r#""default":0"#, r#""default":5"#);
    let (_, a) = sr.register("a-value", V2).await;
    let (_, b) = sr.register("b-value", &other_default).await;
    assert_ne!(a["id"], b["id"]);
    sr.handle.shutdown().await;
}
