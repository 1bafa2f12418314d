//! The one error type of the HTTP layer. Every error answers
//! `{"error": {"code": "...", "message": "...", "field"?: "..."}}` and never leaks internals.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// 400: the body is not the JSON we expect; `field` names where.
    #[error("{message}")]
    BadRequest {
        code: &'static str,
        message: String,
        field: Option<String>,
    },
    /// 401: no credential, or one we do not accept.
    #[error("authentication required")]
    Unauthorized,
    /// 401: an employee id or PIN that is not accepted (never says which).
    #[error("employee id or PIN not accepted")]
    InvalidCredentials,
    /// 429: a throttle or lockout; `Retry-After` says when to try again.
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after_secs: u64,
    },
    /// 403: a valid credential without the right to this action.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such thing.
    #[error("{0}")]
    NotFound(String),
    /// 405: the route exists, the method does not.
    #[error("this route does not take that method")]
    MethodNotAllowed,
    /// 409: the request conflicts with what is stored; `extra` adds fields such as `expected`.
    #[error("{message}")]
    Conflict {
        code: &'static str,
        message: String,
        extra: Map<String, Value>,
    },
    /// 408: the client did not send the request (its body) in time.
    #[error("{0}")]
    RequestTimeout(String),
    /// 413: body over the route's limit.
    #[error("request body too large")]
    PayloadTooLarge,
    /// 422: well-formed JSON that breaks a rule; `field` names the offending field.
    #[error("{message}")]
    Unprocessable {
        code: &'static str,
        message: String,
        field: Option<String>,
        extra: Map<String, Value>,
    },
    /// 503: storage is refusing new work (disk full, database busy); nothing acknowledged is lost.
    #[error("{0}")]
    Unavailable(String),
    /// 500: a bug or an unexpected storage failure; details go to the log only.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl AppError {
    pub fn bad_request(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code: "invalid_body",
            message: message.into(),
            field: Some(field.into()),
        }
    }

    pub fn invalid(
        code: &'static str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::Unprocessable {
            code,
            message: message.into(),
            field: Some(field.into()),
            extra: Map::new(),
        }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
            extra: Map::new(),
        }
    }

    /// Adds a machine-readable field next to `code` and `message` (e.g. `expected`).
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        match &mut self {
            Self::Conflict { extra, .. } | Self::Unprocessable { extra, .. } => {
                extra.insert(key.to_string(), value.into());
            }
            _ => {}
        }
        self
    }

    /// The message with the field it names, for logs and status (never shown with internals).
    pub fn detail(&self) -> String {
        match self {
            Self::BadRequest {
                field: Some(f),
                message,
                ..
            }
            | Self::Unprocessable {
                field: Some(f),
                message,
                ..
            } => {
                format!("{message} (field {f})")
            }
            Self::Internal(_) => "internal error".into(),
            other => other.to_string(),
        }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::InvalidCredentials => (StatusCode::UNAUTHORIZED, "invalid_credentials"),
            Self::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, "too_many_attempts"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::Conflict { code, .. } => (StatusCode::CONFLICT, code),
            Self::RequestTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            Self::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::Unprocessable { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, code),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let Self::Internal(e) = &self {
            tracing::error!(error = format!("{e:#}"), "internal error");
        }
        let retry_after = match &self {
            Self::TooManyRequests {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        };
        let mut body = Map::new();
        body.insert("code".into(), code.into());
        body.insert("message".into(), self.to_string().into());
        match self {
            Self::BadRequest { field: Some(f), .. } => {
                body.insert("field".into(), f.into());
            }
            Self::Unprocessable { field, extra, .. } => {
                if let Some(f) = field {
                    body.insert("field".into(), f.into());
                }
                body.extend(extra);
            }
            Self::Conflict { extra, .. } => body.extend(extra),
            _ => {}
        }
        let mut res = (status, axum::Json(json!({ "error": body }))).into_response();
        if let Some(secs) = retry_after {
            res.headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                "www-authenticate",
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        res
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::NotFound("not found".into()),
            StoreError::Full => Self::Unavailable(
                "storage is full: new work is refused until space is freed".into(),
            ),
            StoreError::Busy => Self::Unavailable("storage is busy, retry shortly".into()),
            StoreError::Closed => Self::Unavailable("the service is shutting down".into()),
            other => Self::Internal(other.into()),
        }
    }
}

impl From<rusqlite::Error> for AppError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::from(e).into()
    }
}
