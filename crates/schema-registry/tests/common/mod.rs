//! Shared test client for the registry's HTTP API.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use switchyard_schema_registry::{serve, RegistryConfig, RegistryHandle};

pub(crate) const CT: &str = "application/vnd.schemaregistry.v1+json";

pub(crate) const V1: &str = r#"{"type":"record","name":"Order","namespace":"switchyard","fields":[{"name":"id","type":"string"}]}"#;
// V1 with an extra field that has a default: readers on V2 can read V1 data.
pub(crate) const V2: &str = r#"{"type":"record","name":"Order","namespace":"switchyard","fields":[{"name":"id","type":"string"},{"name":"qty","type":"int","default":0}]}"#;
// An extra field without a default: V1 data cannot be read.
pub(crate) const BAD: &str = r#"{"type":"record","name":"Order","namespace":"switchyard","fields":[{"name":"id","type":"string"},{"name":"qty","type":"int"}]}"#;
// A string field turned into an int: incompatible with every version above.
pub(crate) const RETYPED: &str = r#"{"type":"record","name":"Order","namespace":"switchyard","fields":[{"name":"id","type":"int"}]}"#;

pub(crate) struct Sr {
    pub(crate) handle: RegistryHandle,
    pub(crate) http: Client,
}

impl Sr {
    pub(crate) async fn start(cfg: RegistryConfig) -> Self {
        let handle = serve(cfg).await.expect("registry starts");
        Self {
            handle,
            http: Client::new(),
        }
    }

    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let url = format!("{}{}", self.handle.base_url(), path);
        let mut req = self.http.request(method, url);
        if let Some(body) = body {
            req = req.header("content-type", CT).body(body.to_string());
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let ct = resp.headers().get("content-type").cloned();
        assert_eq!(
            ct.as_ref().and_then(|v| v.to_str().ok()),
            Some(CT),
            "{path}"
        );
        (status, resp.json().await.expect("json body"))
    }

    pub(crate) async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    pub(crate) async fn register(&self, subject: &str, schema: &str) -> (StatusCode, Value) {
        self.post(
            &format!("/subjects/{subject}/versions"),
            json!({ "schema": schema }),
        )
        .await
    }
}

pub(crate) fn temp_file() -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!(
        "switchyard-sr-{}-{}-{nanos}/schemas.jsonl",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}
