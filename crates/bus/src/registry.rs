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

/// One registration attempt's failure, and whether another may succeed.
struct Attempt {
    transient: bool,
    message: String,
}

/// reqwest's own message ("error sending request for url ...") hides why;
/// the causes say it: refused, timed out, DNS.
fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
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
    ///
    /// Every worker registers at start-up, so a registry that is restarting
    /// or briefly overloaded would otherwise crash-loop the whole fleet: an
    /// unreachable registry, a timeout or a 5xx/408/429 is retried with
    /// backoff for about half a minute. A refusal (an incompatible or
    /// invalid schema, 4xx) is final at once: retrying cannot change it.
    pub async fn register(&self, subject: &str, schema_json: &str) -> Result<u32, BusError> {
        use backon::{ExponentialBuilder, Retryable};
        let policy = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(250))
            .with_max_delay(Duration::from_secs(5))
            .with_jitter()
            .with_max_times(7);
        let attempt = || self.register_once(subject, schema_json);
        let id = attempt
            .retry(policy)
            .sleep(tokio::time::sleep)
            .when(|e| e.transient)
            .notify(|e, wait| tracing::warn!(error = %e.message, ?wait, "schema registration failed; retrying"))
            .await
            .map_err(|e| self.error(e.message))?;
        if let Ok(schema) = Schema::parse_str(schema_json) {
            self.cache(id, Arc::new(schema));
        }
        Ok(id)
    }

    async fn register_once(&self, subject: &str, schema_json: &str) -> Result<u32, Attempt> {
        let url = format!("{}/subjects/{}/versions", self.base_url, subject);
        let body = serde_json::json!({ "schema": schema_json });
        let reply = self
            .http
            .post(&url)
            .header("Content-Type", CONTENT_TYPE)
            .json(&body)
            .send()
            .await
            .map_err(|e| Attempt { transient: true, message: format!("register {subject}: {}", with_causes(&e)) })?;
        let status = reply.status();
        if !status.is_success() {
            let transient = status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429;
            let text = reply.text().await.unwrap_or_default();
            return Err(Attempt { transient, message: format!("register {subject}: HTTP {status}: {text}") });
        }
        let IdReply { id } = reply.json().await.map_err(|e| Attempt { transient: false, message: format!("register {subject}: {e}") })?;
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

    /// A registry that answers each request in turn with the next of
    /// `replies` (the last one repeated), counting the requests.
    async fn answering_in_turn(replies: &'static [(&'static str, &'static str)]) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = [0u8; 8192];
                let _ = socket.read(&mut request).await;
                let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let (status, body) = replies[n.min(replies.len() - 1)];
                let reply = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
                let _ = socket.write_all(reply.as_bytes()).await;
            }
        });
        (format!("http://{addr}"), seen)
    }

    const SCHEMA: &str = r#"{"type":"record","name":"T","fields":[{"name":"a","type":"string"}]}"#;

    #[tokio::test]
    async fn a_registry_that_is_briefly_unavailable_at_start_up_is_waited_for() {
        let (registry, seen) =
            answering_in_turn(&[("503 Service Unavailable", ""), ("500 Internal Server Error", "{}"), ("200 OK", r#"{"id":42}"#)]).await;
        let id = RegistryClient::new(registry).expect("client").register("t-value", SCHEMA).await.expect("registered on the third try");
        assert_eq!((id, seen.load(std::sync::atomic::Ordering::SeqCst)), (42, 3));
    }

    #[tokio::test]
    async fn a_refused_schema_is_not_retried() {
        let (registry, seen) =
            answering_in_turn(&[("409 Conflict", r#"{"error_code":409,"message":"Schema being registered is incompatible"}"#)]).await;
        let err = RegistryClient::new(registry).expect("client").register("t-value", SCHEMA).await.expect_err("incompatible");
        assert!(err.to_string().contains("incompatible"), "{err}");
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_unreachable_registry_is_named_with_the_reason() {
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = closed.local_addr().expect("addr");
        drop(closed);
        let client = RegistryClient::new(format!("http://{addr}")).expect("client");
        let Err(attempt) = client.register_once("t-value", SCHEMA).await else { panic!("nothing listens there") };
        assert!(attempt.transient);
        assert!(attempt.message.to_lowercase().contains("refused"), "{}", attempt.message);
    }
}
