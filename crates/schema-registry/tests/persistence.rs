//! The data file: ids, versions and config survive a restart.

mod common;

use common::{temp_file, Sr, BAD, RETYPED, V1, V2};
use reqwest::StatusCode;
use serde_json::json;
use switchyard_schema_registry::{serve, RegistryConfig};

#[tokio::test]
async fn ids_survive_restart_with_data_file() {
    let path = temp_file();
    let cfg = RegistryConfig {
        data_file: Some(path.clone()),
        ..RegistryConfig::local()
    };

    let sr = Sr::start(cfg.clone()).await;
    let (_, v1) = sr.register("orders-value", V1).await;
    let (_, v2) = sr.register("orders-value", V2).await;
    sr.register("returns-value", V1).await;
    sr.send(
        reqwest::Method::PUT,
        "/config/returns-value",
        Some(json!({"compatibility":"NONE"})),
    )
    .await;
    sr.handle.shutdown().await;

    let sr = Sr::start(cfg).await;
    assert_eq!(
        sr.get(&format!("/schemas/ids/{}", v2["id"])).await.1["schema"],
        V2
    );
    assert_eq!(
        sr.get("/subjects/orders-value/versions").await.1,
        json!([1, 2])
    );
    assert_eq!(
        sr.get("/subjects/returns-value/versions/1").await.1["id"],
        v1["id"]
    );
    assert_eq!(
        sr.get("/config/returns-value").await.1,
        json!({"compatibilityLevel": "NONE"})
    );
    // Numbering continues rather than restarting at 1.
    let (_, v3) = sr.register("returns-value", BAD).await;
    assert!(v3["id"].as_u64() > v2["id"].as_u64(), "{v3}");
    // The compatibility rules still see the reloaded history.
    assert_eq!(
        sr.register("orders-value", RETYPED).await.0,
        StatusCode::CONFLICT
    );
    sr.handle.shutdown().await;
    if let Some(dir) = path.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[tokio::test]
async fn damaged_data_file() {
    let path = temp_file();
    let cfg = RegistryConfig {
        data_file: Some(path.clone()),
        ..RegistryConfig::local()
    };
    let sr = Sr::start(cfg.clone()).await;
    let (_, v1) = sr.register("orders-value", V1).await;
    sr.handle.shutdown().await;

    // A crash mid-write leaves an unterminated line: dropped, the rest survives.
    let mut text = std::fs::read_to_string(&path).expect("data file");
    text.push_str(r#"{"kind":"schema","id":2,"sch"#);
    std::fs::write(&path, &text).expect("write");
    let sr = Sr::start(cfg.clone()).await;
    assert_eq!(
        sr.get("/subjects/orders-value/versions/1").await.1["id"],
        v1["id"]
    );
    let (status, _) = sr.register("orders-value", V2).await;
    assert_eq!(status, StatusCode::OK);
    sr.handle.shutdown().await;

    // Damage in the middle is reported, not silently skipped.
    let mut text = std::fs::read_to_string(&path).expect("data file");
    text.push_str("garbage\n");
    std::fs::write(&path, &text).expect("write");
    let err = serve(cfg).await.expect_err("corrupt file is rejected");
    assert!(err.to_string().contains("line 5"), "{err}");
    if let Some(dir) = path.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
}
