//! A client for the Confluent Schema Registry REST API: register a schema
//! under a subject, fetch a writer schema by id. Ids are immutable, so they
//! are cached forever.

use crate::BusError;
use apache_avro::Schema;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

#[derive(Debug)]
pub struct RegistryClient {
    base_url: String,
    http: reqwest::Client,
    by_id: RwLock<HashMap<u32, Arc<Schema>>>,
}

/// Why a schema could not be fetched: the difference decides between the DLQ
/// (the registry says the id does not exist) and a retry (the registry is
/// unreachable, or something other than the registry answered).
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("schema id {0} is not registered")]
    UnknownId(u32),
    #[error("{0}")]
    Unavailable(BusError),
}

#[derive(Deserialize)]
struct IdReply {
    id: u32,
}

/// Confluent's `error_code` for "schema not found" (its 404 for an id).
const SCHEMA_NOT_FOUND: u32 = 40403;

/// Confluent's error body: `{"error_code": 40403, "message": "..."}`.
#[derive(Deserialize)]
struct ErrorReply {
    error_code: u32,
}

#[derive(Deserialize)]
struct SchemaReply {
    schema: String,
}

impl RegistryClient {
    pub fn new(base_url: impl Into<String>) -> Result<Self, BusError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| BusError::Config(format!("http client: {e}")))?;
        Ok(Self { base_url: base_url.into().trim_end_matches('/').to_owned(), http, by_id: RwLock::default() })
    }

    fn error(&self, message: impl Into<String>) -> BusError {
        BusError::Registry { url: self.base_url.clone(), message: message.into() }
    }

    /// Registers `schema_json` under `subject` (TopicNameStrategy: `<topic>-value`)
    /// and returns its global id; registering an existing schema is a lookup.
    pub async fn register(&self, subject: &str, schema_json: &str) -> Result<u32, BusError> {
        let url = format!("{}/subjects/{}/versions", self.base_url, subject);
        let body = serde_json::json!({ "schema": schema_json });
        let reply = self
            .http
            .post(&url)
            .header("Content-Type", CONTENT_TYPE)
            .json(&body)
            .send()
            .await
            .map_err(|e| self.error(format!("register {subject}: {e}")))?;
        let status = reply.status();
        if !status.is_success() {
            let text = reply.text().await.unwrap_or_default();
            return Err(self.error(format!("register {subject}: HTTP {status}: {text}")));
        }
        let IdReply { id } = reply.json().await.map_err(|e| self.error(format!("register {subject}: {e}")))?;
        if let Ok(schema) = Schema::parse_str(schema_json) {
            self.cache(id, Arc::new(schema));
        }
        Ok(id)
    }

    /// Sets `subject`'s compatibility level (`PUT /config/{subject}`), so the
    /// registry refuses on register what `switchyard schemas check` refuses
    /// in CI.
    pub async fn set_compatibility(&self, subject: &str, level: &str) -> Result<(), BusError> {
        let url = format!("{}/config/{}", self.base_url, subject);
        let reply = self
            .http
            .put(&url)
            .header("Content-Type", CONTENT_TYPE)
            .json(&serde_json::json!({ "compatibility": level }))
            .send()
            .await
            .map_err(|e| self.error(format!("set compatibility of {subject}: {e}")))?;
        let status = reply.status();
        if !status.is_success() {
            let text = reply.text().await.unwrap_or_default();
            return Err(self.error(format!("set compatibility of {subject}: HTTP {status}: {text}")));
        }
        Ok(())
    }

    pub async fn schema_by_id(&self, id: u32) -> Result<Arc<Schema>, LookupError> {
        if let Some(schema) = self.by_id.read().unwrap_or_else(|e| e.into_inner()).get(&id) {
            return Ok(schema.clone());
        }
        let url = format!("{}/schemas/ids/{}", self.base_url, id);
        let reply = self
            .http
            .get(&url)
            .header("Accept", CONTENT_TYPE)
            .send()
            .await
            .map_err(|e| LookupError::Unavailable(self.error(format!("schema {id}: {e}"))))?;
        match reply.status().as_u16() {
            200 => {}
            404 => {
                // Only the registry itself saying "schema not found" makes the
                // message undeliverable; a 404 from a proxy or a wrong path
                // says nothing about the id, and must not dead-letter.
                let body = reply.bytes().await.unwrap_or_default();
                let code = serde_json::from_slice::<ErrorReply>(&body).ok().map(|r| r.error_code);
                if code == Some(SCHEMA_NOT_FOUND) {
                    return Err(LookupError::UnknownId(id));
                }
                let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
                return Err(LookupError::Unavailable(self.error(format!("schema {id}: HTTP 404 without error code {SCHEMA_NOT_FOUND}: {text}"))));
            }
            other => return Err(LookupError::Unavailable(self.error(format!("schema {id}: HTTP {other}")))),
        }
        let SchemaReply { schema } =
            reply.json().await.map_err(|e| LookupError::Unavailable(self.error(format!("schema {id}: {e}"))))?;
        // A registered schema that does not parse is as useless as a missing one.
        let parsed = Schema::parse_str(&schema).map_err(|_| LookupError::UnknownId(id))?;
        let parsed = Arc::new(parsed);
        self.cache(id, parsed.clone());
        Ok(parsed)
    }

    fn cache(&self, id: u32, schema: Arc<Schema>) {
        self.by_id.write().unwrap_or_else(|e| e.into_inner()).insert(id, schema);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A registry stand-in that answers every request with `status` and `body`.
    async fn answering(status: &'static str, body: &'static str) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let reply = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/vnd.schemaregistry.v1+json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(reply.as_bytes()).await;
            }
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn only_the_registrys_own_schema_not_found_means_an_unknown_id() {
        let registry = answering("404 Not Found", r#"{"error_code":40403,"message":"Schema 7 not found"}"#).await;
        let lookup = RegistryClient::new(registry).expect("client").schema_by_id(7).await;
        assert!(matches!(lookup, Err(LookupError::UnknownId(7))), "{lookup:?}");

        // A proxy or a misrouted URL: the schema may well exist.
        for body in ["<html>404 Not Found</html>", "", r#"{"error_code":40401,"message":"Subject not found"}"#] {
            let elsewhere = answering("404 Not Found", body).await;
            let lookup = RegistryClient::new(elsewhere).expect("client").schema_by_id(7).await;
            assert!(matches!(lookup, Err(LookupError::Unavailable(_))), "{body:?}: {lookup:?}");
        }
    }
}
