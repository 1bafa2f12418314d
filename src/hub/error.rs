//! The hub's one error type: every failure answers API.md's JSON error shape, never internals.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// 401 `unauthorized`: no bearer token, or one no store holds.
    #[error("a store's bearer token is required")]
    Unauthorized,
    /// 403 `forbidden`: a store asking for another store's path.
    #[error("this token belongs to another store")]
    Forbidden,
    /// 404 `not_found` (or a more precise code).
    #[error("{1}")]
    NotFound(&'static str, String),
    /// 400 `invalid_json`.
    #[error("body is not JSON: {0}")]
    BadJson(String),
    /// 413 `body_too_large` (or a body that could not be read).
    #[error("request body too large or unreadable")]
    TooLarge,
    /// 422 `invalid_body` / `invalid_query`, naming the field.
    #[error("{message}")]
    Invalid {
        code: &'static str,
        field: String,
        message: String,
    },
    /// 503 `busy`: too many intakes at once; come back after `Retry-After` seconds.
    #[error("the hub is busy; retry after {0} s")]
    Busy(u64),
    /// 429 `too_many_requests`: this store already has as many requests of this kind in the
    /// hub process as one store may (`hub::share`), or its earlier push was still landing
    /// when this one's time was up; send one at a time.
    #[error(
        "this store already has as many of these requests in flight here as one store may; send one at a time, retry after {0} s"
    )]
    TooMany(u64),
    /// 408 `body_timeout`: the request's body did not arrive within the time it had.
    #[error(
        "the request body did not arrive within {0} ms of the request; send fewer entries at a time"
    )]
    BodyTimeout(u64),
    /// 503 `database_unavailable`: PostgreSQL cannot be reached; also with `Retry-After`.
    #[error("the hub's database is unavailable; retry after {retry_after} s")]
    Unavailable { retry_after: u64, detail: String },
    /// 500 `internal`: logged, never shown.
    #[error("internal error")]
    Internal(String),
}

impl HubError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            code: "invalid_body",
            field: field.into(),
            message: message.into(),
        }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            Self::NotFound(code, _) => (StatusCode::NOT_FOUND, code),
            Self::BadJson(_) => (StatusCode::BAD_REQUEST, "invalid_json"),
            Self::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            Self::Invalid { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, code),
            Self::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            Self::TooMany(_) => (StatusCode::TOO_MANY_REQUESTS, "too_many_requests"),
            Self::BodyTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "body_timeout"),
            Self::Unavailable { .. } => (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for HubError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        match &self {
            Self::Internal(detail) => tracing::error!(%detail, "hub internal error"),
            Self::Unavailable { detail, .. } => {
                tracing::warn!(%detail, "PostgreSQL unavailable")
            }
            _ => {}
        }
        let mut body = json!({ "error": { "code": code, "message": self.to_string() } });
        if let Self::Invalid { field, .. } = &self {
            body["error"]["field"] = json!(field);
        }
        let mut res = (status, axum::Json(body)).into_response();
        if let Self::Busy(s) | Self::TooMany(s) | Self::Unavailable { retry_after: s, .. } = self {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        res
    }
}
