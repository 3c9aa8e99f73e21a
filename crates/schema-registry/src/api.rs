//! HTTP routes: the subset of the Confluent Schema Registry REST API that
//! serializers and our clients use.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::level::Level;
use crate::store::{Parsed, Store, VersionInfo, VersionRef};

pub(crate) const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";
const MAX_BODY: usize = 1024 * 1024;

type Shared = State<Arc<Store>>;
type ApiResult = Result<Response, ApiError>;

pub(crate) fn router(store: Arc<Store>) -> Router {
    Router::new()
        .route("/", get(|| async { ok(&json!({})) }))
        .route("/schemas/types", get(|| async { ok(&json!(["AVRO"])) }))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/versions", get(schema_usages))
        .route("/subjects", get(subjects))
        .route("/subjects/{subject}", post(lookup))
        .route("/subjects/{subject}/versions", get(versions).post(register))
        .route("/subjects/{subject}/versions/{version}", get(version))
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(version_schema),
        )
        .route(
            "/compatibility/subjects/{subject}/versions",
            post(compat_all),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(compat_version),
        )
        .route("/config", get(global_config).put(set_global_config))
        .route(
            "/config/{subject}",
            get(subject_config).put(set_subject_config),
        )
        .fallback(|| async { ApiError::http(StatusCode::NOT_FOUND, None) })
        .layer(middleware::from_fn(check_content_type))
        .layer(middleware::map_response(json_errors))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(store)
}

pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
        bytes,
    )
        .into_response()
}

fn ok(body: &Value) -> ApiResult {
    Ok(json_response(StatusCode::OK, body))
}

/// Rejections from axum itself (bad path parameter, wrong method, body too
/// large) come back as text/plain; clients expect Confluent's JSON error shape.
async fn json_errors(response: Response) -> Response {
    let is_ours = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == CONTENT_TYPE.as_bytes());
    let status = response.status();
    if is_ours || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .filter(|t| !t.trim().is_empty());
    ApiError::http(status, text).into_response()
}

/// Confluent accepts its own media types, plain JSON and octet-stream; a
/// missing Content-Type is tolerated because curl-style clients omit it.
async fn check_content_type(request: Request, next: Next) -> Response {
    if matches!(*request.method(), Method::POST | Method::PUT) {
        if let Some(value) = request.headers().get(header::CONTENT_TYPE) {
            let essence = value
                .to_str()
                .unwrap_or("")
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            let accepted = [
                "application/vnd.schemaregistry.v1+json",
                "application/vnd.schemaregistry+json",
                "application/json",
                "application/octet-stream",
            ];
            if !accepted.contains(&essence.as_str()) {
                return ApiError::http(StatusCode::UNSUPPORTED_MEDIA_TYPE, None).into_response();
            }
        }
    }
    next.run(request).await
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        // Mirrors Confluent's rest-utils: unparsable JSON is 400, JSON of the
        // wrong shape is 422.
        let status = match e.classify() {
            serde_json::error::Category::Data => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(
            status,
            u32::from(status.as_u16()),
            format!("Invalid JSON body: {e}"),
        )
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaRequest {
    schema: Option<String>,
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<Value>,
}

impl SchemaRequest {
    fn into_parsed(self) -> Result<Parsed, ApiError> {
        if let Some(kind) = self.schema_type.filter(|t| t != "AVRO") {
            return Err(ApiError::invalid_schema(format!(
                "type {kind}: this development registry only supports AVRO"
            )));
        }
        if !self.references.is_empty() {
            return Err(ApiError::invalid_schema(
                "references: schema references are not supported by this development registry",
            ));
        }
        match self.schema {
            Some(text) if !text.trim().is_empty() => Parsed::new(text),
            _ => Err(ApiError::invalid_schema("Empty schema")),
        }
    }
}

/// Avro parsing and compatibility checks are CPU-bound and run on untrusted
/// input, so they go to the blocking pool; a panic there becomes a 500.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        tracing::error!(error = %e, "schema registry task failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, 50001, "Internal error")
    })?
}

fn parse_id(raw: &str) -> Result<u32, ApiError> {
    // Confluent (JAX-RS) answers a non-integer path parameter with a plain 404.
    raw.parse::<i32>()
        .ok()
        .filter(|id| *id >= 0)
        .map(i32::unsigned_abs)
        .ok_or_else(|| ApiError::http(StatusCode::NOT_FOUND, None))
}

fn query_flag(query: Option<&str>, name: &str) -> bool {
    query.unwrap_or("").split('&').any(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        key == name && value.eq_ignore_ascii_case("true")
    })
}

fn info_json(info: VersionInfo) -> Value {
    json!({ "subject": info.subject, "version": info.version, "id": info.id, "schema": info.schema })
}

async fn schema_by_id(State(store): Shared, Path(id): Path<String>) -> ApiResult {
    ok(&json!({ "schema": store.schema_by_id(parse_id(&id)?)? }))
}

async fn schema_usages(State(store): Shared, Path(id): Path<String>) -> ApiResult {
    let usages = store.usages(parse_id(&id)?)?;
    let body: Vec<Value> = usages
        .into_iter()
        .map(|(s, v)| json!({ "subject": s, "version": v }))
        .collect();
    ok(&Value::from(body))
}

async fn subjects(State(store): Shared) -> ApiResult {
    ok(&json!(store.subjects()))
}

async fn versions(State(store): Shared, Path(subject): Path<String>) -> ApiResult {
    ok(&json!(store.versions(&subject)?))
}

async fn version(State(store): Shared, Path((subject, v)): Path<(String, String)>) -> ApiResult {
    ok(&info_json(
        store.version(&subject, &VersionRef::parse(&v)?)?,
    ))
}

async fn version_schema(
    State(store): Shared,
    Path((subject, v)): Path<(String, String)>,
) -> ApiResult {
    let info = store.version(&subject, &VersionRef::parse(&v)?)?;
    // Confluent returns the schema itself, not wrapped in an object.
    let schema: Value = serde_json::from_str(&info.schema).unwrap_or(Value::String(info.schema));
    ok(&schema)
}

async fn register(State(store): Shared, Path(subject): Path<String>, body: Bytes) -> ApiResult {
    let request: SchemaRequest = parse_body(&body)?;
    let id = blocking(move || store.register(&subject, request.into_parsed()?)).await?;
    ok(&json!({ "id": id }))
}

async fn lookup(State(store): Shared, Path(subject): Path<String>, body: Bytes) -> ApiResult {
    let request: SchemaRequest = parse_body(&body)?;
    let info = blocking(move || store.lookup(&subject, &request.into_parsed()?)).await?;
    ok(&info_json(info))
}

async fn compat_all(
    state: Shared,
    Path(subject): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> ApiResult {
    compat(state, subject, None, query, body).await
}

async fn compat_version(
    state: Shared,
    Path((subject, v)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> ApiResult {
    let which = VersionRef::parse(&v)?;
    compat(state, subject, Some(which), query, body).await
}

async fn compat(
    State(store): Shared,
    subject: String,
    which: Option<VersionRef>,
    query: Option<String>,
    body: Bytes,
) -> ApiResult {
    let request: SchemaRequest = parse_body(&body)?;
    let messages = blocking(move || {
        let parsed = request.into_parsed()?;
        store.check(&subject, which.as_ref(), &parsed)
    })
    .await?;
    let mut response = json!({ "is_compatible": messages.is_empty() });
    if query_flag(query.as_deref(), "verbose") {
        response["messages"] = json!(messages);
    }
    ok(&response)
}

#[derive(Deserialize)]
struct ConfigRequest {
    compatibility: Option<String>,
}

fn parse_level(body: &[u8]) -> Result<Level, ApiError> {
    let request: ConfigRequest = parse_body(body)?;
    request
        .compatibility
        .as_deref()
        .and_then(Level::parse)
        .ok_or_else(ApiError::invalid_level)
}

async fn global_config(State(store): Shared) -> ApiResult {
    ok(&json!({ "compatibilityLevel": store.global_level().as_str() }))
}

async fn set_global_config(State(store): Shared, body: Bytes) -> ApiResult {
    let level = parse_level(&body)?;
    blocking(move || store.set_level(None, level)).await?;
    ok(&json!({ "compatibility": level.as_str() }))
}

async fn subject_config(
    State(store): Shared,
    Path(subject): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult {
    let level = match store.subject_level(&subject) {
        Some(level) => level,
        None if query_flag(query.as_deref(), "defaultToGlobal") => store.global_level(),
        None => return Err(ApiError::subject_level_not_configured(&subject)),
    };
    ok(&json!({ "compatibilityLevel": level.as_str() }))
}

async fn set_subject_config(
    State(store): Shared,
    Path(subject): Path<String>,
    body: Bytes,
) -> ApiResult {
    let level = parse_level(&body)?;
    blocking(move || store.set_level(Some(&subject), level)).await?;
    ok(&json!({ "compatibility": level.as_str() }))
}
