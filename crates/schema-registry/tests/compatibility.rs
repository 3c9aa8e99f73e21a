//! The compatibility levels `switchyard schemas check` applies to topics.yaml,
//! enforced by the registry on register and on its compatibility endpoint,
//! with Confluent's bodies and error codes.

mod common;

use common::{Sr, BAD, RETYPED, V1, V2};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use switchyard_schema_registry::RegistryConfig;

// V1 without its only field but with `qty` (default 0): V1 readers miss `id`.
const DROPPED: &str = r#"{"type":"record","name":"Order","namespace":"switchyard","fields":[{"name":"qty","type":"int","default":0}]}"#;

async fn put_config(sr: &Sr, path: &str, level: &str) -> (StatusCode, Value) {
    sr.send(Method::PUT, path, Some(json!({ "compatibility": level })))
        .await
}

#[tokio::test]
async fn subject_level_full_refuses_a_forward_break_with_confluents_409() {
    let sr = Sr::start(RegistryConfig::local()).await;
    assert_eq!(
        put_config(&sr, "/config/orders-value", "FULL").await,
        (StatusCode::OK, json!({"compatibility": "FULL"}))
    );
    assert_eq!(
        sr.get("/config/orders-value").await,
        (StatusCode::OK, json!({"compatibilityLevel": "FULL"}))
    );
    assert_eq!(sr.register("orders-value", V1).await.0, StatusCode::OK);

    // Backward-compatible (the new reader defaults `qty`), forward-broken
    // (a V1 reader finds no `id`): BACKWARD would take it, FULL must not.
    let (status, body) = sr.register("orders-value", DROPPED).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error_code"], 409);
    let message = body["message"].as_str().expect("message");
    assert!(
        message.starts_with(
            "Schema being registered is incompatible with an earlier schema for subject \"orders-value\""
        ),
        "{message}"
    );
    assert!(
        message.contains("errorType:'FORWARD'") && message.contains("field `id`"),
        "names the rule and the field: {message}"
    );
    assert!(!message.contains("errorType:'BACKWARD'"), "{message}");
    assert_eq!(
        sr.get("/subjects/orders-value/versions").await.1,
        json!([1]),
        "nothing registered"
    );

    // An optional field with a default is compatible both ways.
    assert_eq!(sr.register("orders-value", V2).await.0, StatusCode::OK);
    sr.handle.shutdown().await;
}

#[tokio::test]
async fn global_level_applies_until_a_subject_overrides_it() {
    let sr = Sr::start(RegistryConfig::local()).await;
    assert_eq!(
        put_config(&sr, "/config", "FULL_TRANSITIVE").await,
        (StatusCode::OK, json!({"compatibility": "FULL_TRANSITIVE"}))
    );
    sr.register("orders-value", V1).await;
    assert_eq!(
        sr.register("orders-value", DROPPED).await.0,
        StatusCode::CONFLICT
    );
    put_config(&sr, "/config/orders-value", "BACKWARD").await;
    assert_eq!(sr.register("orders-value", DROPPED).await.0, StatusCode::OK);
    // The subject's own level wins; another subject still gets the global one.
    sr.register("returns-value", V1).await;
    assert_eq!(
        sr.register("returns-value", DROPPED).await.0,
        StatusCode::CONFLICT
    );
    sr.handle.shutdown().await;
}

#[tokio::test]
async fn transitive_levels_check_every_version_on_register() {
    let sr = Sr::start(RegistryConfig::local()).await;
    let v1 = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}"#;
    let v2 = r#"{"type":"record","name":"R","fields":[]}"#;
    // Readable from v2 data (default), not from v1 data (int is not a string).
    let v3 = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string","default":""}]}"#;
    for (subject, level, expected) in [
        ("plain-value", "BACKWARD", StatusCode::OK),
        ("all-value", "BACKWARD_TRANSITIVE", StatusCode::CONFLICT),
    ] {
        put_config(&sr, &format!("/config/{subject}"), level).await;
        assert_eq!(sr.register(subject, v1).await.0, StatusCode::OK);
        assert_eq!(sr.register(subject, v2).await.0, StatusCode::OK);
        let (status, body) = sr.register(subject, v3).await;
        assert_eq!(status, expected, "{level}: {body}");
    }
    sr.handle.shutdown().await;
}

#[tokio::test]
async fn compatibility_latest_follows_the_subject_level_and_explains_when_verbose() {
    let sr = Sr::start(RegistryConfig::local()).await;
    sr.register("orders-value", V1).await;
    let path = "/compatibility/subjects/orders-value/versions/latest";
    // BACKWARD (the default) accepts the dropped field...
    assert_eq!(
        sr.post(path, json!({"schema": DROPPED})).await,
        (StatusCode::OK, json!({"is_compatible": true}))
    );
    // ... FULL does not, and says why when asked.
    put_config(&sr, "/config/orders-value", "FULL").await;
    assert_eq!(
        sr.post(path, json!({"schema": DROPPED})).await,
        (StatusCode::OK, json!({"is_compatible": false}))
    );
    let (_, verbose) = sr
        .post(&format!("{path}?verbose=true"), json!({"schema": RETYPED}))
        .await;
    assert_eq!(verbose["is_compatible"], false);
    let messages: Vec<&str> = verbose["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(messages.len(), 2, "both directions broken: {messages:?}");
    assert!(
        messages[0].contains("errorType:'BACKWARD'")
            && messages[0].contains("field `id`: written as String, read as Int")
            && messages[0].contains("compatibility:'FULL'"),
        "{messages:?}"
    );
    assert!(messages[1].contains("errorType:'FORWARD'"), "{messages:?}");
    // Without verbose, no messages key at all.
    let (_, quiet) = sr.post(path, json!({"schema": BAD})).await;
    assert_eq!(quiet, json!({"is_compatible": false}));
    sr.handle.shutdown().await;
}

#[tokio::test]
async fn compatibility_errors_use_confluent_codes() {
    let sr = Sr::start(RegistryConfig::local()).await;
    // 40401: the subject does not exist (a numbered version of it cannot either).
    let (status, body) = sr
        .post(
            "/compatibility/subjects/nope-value/versions/1",
            json!({"schema": V1}),
        )
        .await;
    assert_eq!(
        (status, body["error_code"].clone()),
        (StatusCode::NOT_FOUND, json!(40401)),
        "{body}"
    );
    // 40402: the subject exists, the version does not.
    sr.register("orders-value", V1).await;
    let (status, body) = sr
        .post(
            "/compatibility/subjects/orders-value/versions/2",
            json!({"schema": V2}),
        )
        .await;
    assert_eq!(
        (status, body["error_code"].clone()),
        (StatusCode::NOT_FOUND, json!(40402)),
        "{body}"
    );
    // 42201: not an Avro schema, on register and on the check alike.
    let broken = json!({"schema": r#"{"type":"record","name":"X"}"#});
    for path in [
        "/subjects/orders-value/versions",
        "/compatibility/subjects/orders-value/versions/latest",
    ] {
        let (status, body) = sr.post(path, broken.clone()).await;
        assert_eq!(
            (status, body["error_code"].clone()),
            (StatusCode::UNPROCESSABLE_ENTITY, json!(42201)),
            "{path}: {body}"
        );
    }
    // 42203: an unknown level, globally and per subject; nothing changes.
    for path in ["/config", "/config/orders-value"] {
        let (status, body) = put_config(&sr, path, "SIDEWAYS").await;
        assert_eq!(
            (status, body["error_code"].clone()),
            (StatusCode::UNPROCESSABLE_ENTITY, json!(42203)),
            "{path}: {body}"
        );
    }
    assert_eq!(
        sr.get("/config").await.1,
        json!({"compatibilityLevel": "BACKWARD"})
    );
    // 409 with the exact Confluent prefix.
    let (status, body) = sr.register("orders-value", BAD).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error_code"], 409);
    assert!(body["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("Schema being registered is incompatible with an earlier schema for subject \"orders-value\", details: [{errorType:'BACKWARD'")), "{body}");
    sr.handle.shutdown().await;
}
