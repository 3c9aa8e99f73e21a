//! Marqeta HTTP plumbing: Basic auth (application token : access token),
//! JSON bodies, the tracing headers, and the error mapping. No request
//! built here ever carries `show_pan` or `show_cvv_number`.

use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::transformers::{map_error, ErrorBody};
use crate::encode::path_segment;
use crate::http::{self, traced, Transport};
use crate::secret::ApiKey;
use crate::{AdapterError, CallContext};
use switchyard_canonical::{ErrorClass, ErrorCode};

#[derive(Debug, Clone)]
pub(crate) struct Client {
    base_url: Url,
    application_token: ApiKey,
    access_token: ApiKey,
    /// Replaced when the client certificate rotates ([`WithClient`](crate::tls_rotation::WithClient)).
    http: crate::tls_rotation::LiveClient,
}

impl Client {
    pub(crate) fn new(base_url: &str, application_token: impl Into<ApiKey>, access_token: impl Into<ApiKey>, transport: Transport) -> Result<Self, AdapterError> {
        // A trailing slash makes `join` keep the `/v3` path of the base URL.
        let base = format!("{}/", base_url.trim_end_matches('/'));
        let base_url = Url::parse(&base)
            .map_err(|e| AdapterError::new(ErrorClass::ManualRepair, ErrorCode::InvalidRequest, format!("base_url: {e}")))?;
        Ok(Self { base_url, application_token: application_token.into(), access_token: access_token.into(), http: http::client(transport)?.into() })
    }

    fn url(&self, path: &str) -> Result<Url, AdapterError> {
        self.base_url
            .join(path)
            .map_err(|e| AdapterError::new(ErrorClass::Permanent, ErrorCode::InvalidRequest, format!("url {path}: {e}")))
    }

    fn request(&self, method: Method, path: &str, ctx: &CallContext) -> Result<reqwest::RequestBuilder, AdapterError> {
        let req = self.http.current().request(method, self.url(path)?).basic_auth(self.application_token.current().expose(), Some(self.access_token.current().expose()));
        Ok(traced(req, ctx))
    }

    pub(crate) async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B, ctx: &CallContext) -> Result<T, AdapterError> {
        let req = self.request(Method::POST, path, ctx)?.json(body);
        http::send_json::<T, ErrorBody>(req, map_error).await
    }

    /// `GET /<collection>/<token>`, the token percent-encoded.
    pub(crate) async fn get<T: DeserializeOwned>(&self, collection: &str, token: &str, ctx: &CallContext) -> Result<T, AdapterError> {
        let req = self.request(Method::GET, &format!("{collection}/{}", path_segment(token)), ctx)?;
        http::send_json::<T, ErrorBody>(req, map_error).await
    }

    /// A request whose success has no body (`PUT /pins` answers 204).
    pub(crate) async fn put_empty<B: Serialize>(&self, path: &str, body: &B, ctx: &CallContext) -> Result<(), AdapterError> {
        // Through the shared sender like every other call: a `vendor_call`
        // span whose id is the traceparent Marqeta gets, and the reply's
        // status for the audit entry.
        let req = self.request(Method::PUT, path, ctx)?.json(body);
        http::send_empty::<ErrorBody>(req, map_error).await
    }
}

impl Client {
    /// The adapter's [`WithClient`](crate::tls_rotation::WithClient) lands here.
    pub(crate) fn with_http(self, http: crate::tls_rotation::LiveClient) -> Self {
        Self { http, ..self }
    }
}
