//! Error bodies in the Confluent shape `{"error_code": N, "message": "..."}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::api::json_response;

#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: u32,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: u32, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub(crate) fn subject_not_found(subject: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            40401,
            format!("Subject '{subject}' not found."),
        )
    }

    pub(crate) fn version_not_found(version: u32) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            40402,
            format!("Version {version} not found."),
        )
    }

    pub(crate) fn schema_not_found(id: Option<u32>) -> Self {
        let message = match id {
            Some(id) => format!("Schema {id} not found"),
            None => "Schema not found".to_owned(),
        };
        Self::new(StatusCode::NOT_FOUND, 40403, message)
    }

    pub(crate) fn subject_level_not_configured(subject: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            40408,
            format!("Subject '{subject}' does not have subject-level compatibility configured"),
        )
    }

    pub(crate) fn incompatible(subject: &str, details: &[String]) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            409,
            format!(
                "Schema being registered is incompatible with an earlier schema for subject \
                 \"{subject}\", details: [{}]",
                details.join(", ")
            ),
        )
    }

    pub(crate) fn invalid_schema(detail: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            42201,
            format!("Invalid schema {detail}"),
        )
    }

    pub(crate) fn invalid_version(raw: &str) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            42202,
            format!(
                "The specified version '{raw}' is not a valid version id. Allowed values are \
                 between [1, 2^31-1] and the string \"latest\""
            ),
        )
    }

    pub(crate) fn invalid_level() -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            42203,
            "Invalid compatibility level. Valid values are none, backward, forward, full, \
             backward_transitive, forward_transitive, and full_transitive",
        )
    }

    pub(crate) fn store(detail: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            50001,
            format!("Error in the backend data store: {detail}"),
        )
    }

    /// Confluent's generic form for errors raised by the HTTP framework itself
    /// (unknown route, wrong method, unparsable path parameter).
    pub(crate) fn http(status: StatusCode, message: Option<String>) -> Self {
        let message = message.unwrap_or_else(|| {
            format!(
                "HTTP {} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            )
        });
        Self::new(status, u32::from(status.as_u16()), message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error_code": self.code, "message": self.message });
        json_response(self.status, &body)
    }
}
