//! Request and response helpers that keep every error in the JSON error shape.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::AppError;

/// The raw body, with the body-size limit answered as a JSON 413.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Bytes::from_request(req, state).await {
            Ok(b) => Ok(Self(b)),
            Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(AppError::PayloadTooLarge),
            Err(r) => Err(AppError::bad_request("body", r.body_text())),
        }
    }
}

/// A JSON body in, with serde's complaint turned into a 400 naming the field; or JSON out.
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        from_json(&bytes).map(ApiJson)
    }
}

/// Parses a request body; a body that does not fit is a 400 naming the field (`body` for
/// the document as a whole).
pub fn from_json<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, AppError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let (field, message) = describe_json_error(&e);
        AppError::bad_request(
            if field.is_empty() {
                "body".into()
            } else {
                field
            },
            message,
        )
    })
}

/// The field path serde stopped at and a message without serde_json's "at line 1 column 380"
/// noise; syntax errors are about the whole `body`. The path is empty for the top level.
pub fn describe_json_error(e: &serde_path_to_error::Error<serde_json::Error>) -> (String, String) {
    let inner = e.inner();
    if inner.is_syntax() || inner.is_eof() {
        return ("body".into(), format!("not valid JSON: {inner}"));
    }
    let mut path = e.path().to_string();
    if path == "." || path == "?" {
        path.clear();
    }
    let mut message = inner.to_string();
    if let Some(i) = message.rfind(" at line ") {
        message.truncate(i);
    }
    // "missing field `x`" is reported at the parent: name the field itself.
    if let Some(name) = message
        .strip_prefix("missing field `")
        .and_then(|r| r.split('`').next())
    {
        path = if path.is_empty() {
            name.to_string()
        } else {
            format!("{path}.{name}")
        };
    }
    (path, message)
}

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Bounds every request's time; a request over it gets a JSON 503 (the work it started on the
/// writer still commits or not atomically; the client retries with the same ids).
pub async fn deadline(req: Request, next: Next, limit: Duration) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => {
            AppError::Unavailable("the request took too long; retry with the same ids".into())
                .into_response()
        }
    }
}

/// The client's address, when the server was started with connect info (always, in
/// `launch`); `None` for a router driven directly in a test.
pub struct ClientAddr(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// Refuses, before any handler runs, a request that declares a body over the limit: a JSON
/// 413 on every route, including those that never read their body.
pub async fn declared_length(req: Request, next: Next, limit: usize) -> Response {
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return AppError::PayloadTooLarge.into_response();
    }
    next.run(req).await
}
