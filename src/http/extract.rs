//! Request and response helpers that keep every error in the JSON error shape.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::AppError;

/// The raw body (the request guard has already bounded it by the route's limit).
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
        match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(mut value) => {
                integral_numbers(&mut value);
                serde_path_to_error::deserialize(&value)
                    .map(ApiJson)
                    .map_err(|e| json_body_error(&e))
            }
            // Not JSON: the same 400 as any body that does not parse.
            Err(_) => from_json(&bytes).map(ApiJson),
        }
    }
}

/// Writes every number with no fractional part (`2.0`, `1e3`) as the integer it is, so a
/// field the server reads as an integer takes it. JSON, and the OpenAPI document's JSON Schema
/// `"type": "integer"`, make no difference between `2` and `2.0`; serde does. Numbers past
/// what an integer type holds stay as they are (and are refused by the field's type).
pub fn integral_numbers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|_| n.is_f64())
                && f.fract() == 0.0
                && f.abs() < 9.0e15
            {
                // Below 2^53 every integer is exact in an f64.
                *n = serde_json::Number::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_numbers),
        Value::Object(map) => map.values_mut().for_each(integral_numbers),
        _ => {}
    }
}

/// Parses a request body; a body that does not fit is a 400 naming the field (`body` for
/// the document as a whole), and a field the route does not take a 422 `unknown_field`
/// naming it.
pub fn from_json<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, AppError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| json_body_error(&e))
}

/// The error for a body that does not fit its type: see [`from_json`].
pub fn json_body_error(e: &serde_path_to_error::Error<serde_json::Error>) -> AppError {
    let (field, message) = describe_json_error(e);
    let field = if field.is_empty() {
        "body".into()
    } else {
        field
    };
    if message.starts_with("unknown field `") {
        return AppError::invalid("unknown_field", field, message);
    }
    AppError::bad_request(field, message)
}

/// The field serde names in "`<kind>` field `x`…" (`missing`, `unknown`): reported at the
/// parent, so the path alone does not say which.
fn field_in_message<'m>(message: &'m str, kinds: &[&str]) -> Option<&'m str> {
    kinds.iter().find_map(|kind| {
        message
            .strip_prefix(kind)?
            .strip_prefix(" field `")?
            .split('`')
            .next()
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
    if let Some(name) = field_in_message(&message, &["missing"]) {
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
/// writer still commits or not atomically; the client retries with the same ids), with a
/// `Retry-After` like every 503 of the contract: a request that took the whole limit is not
/// to be sent again at once.
pub async fn deadline(answer: impl Future<Output = Response>, limit: Duration) -> Response {
    match tokio::time::timeout(limit, answer).await {
        Ok(res) => res,
        Err(_) => {
            let mut res =
                AppError::Unavailable("the request took too long; retry with the same ids".into())
                    .into_response();
            res.headers_mut()
                .entry(axum::http::header::RETRY_AFTER)
                .or_insert(axum::http::HeaderValue::from(DEADLINE_RETRY_AFTER_SECS));
            res
        }
    }
}

/// `Retry-After` of a request answered at its time limit ([`deadline`]).
pub const DEADLINE_RETRY_AFTER_SECS: u64 = 5;

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

/// A query string, parsed into `T`; a query that does not fit is a 400 naming the parameter.
pub struct ApiQuery<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(ApiQuery)
            .map_err(|e| {
                let mut field = e.path().to_string();
                let mut message = e.inner().to_string();
                if let Some(name) = field_in_message(&message, &["missing", "unknown"]) {
                    field = name.to_string();
                }
                if field == "." || field == "?" || field.is_empty() {
                    field = "query".into();
                }
                if message.starts_with("duplicate field") {
                    message = format!("`{field}` is given more than once");
                }
                AppError::BadRequest {
                    code: "invalid_query",
                    message,
                    field: Some(field),
                }
            })
    }
}

/// One path parameter, percent-decoded; a segment that is not UTF-8 is a 400 naming it.
pub struct ApiPath<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for ApiPath<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(rejection) => {
                let field = parts
                    .extensions
                    .get::<axum::extract::MatchedPath>()
                    .and_then(|m| {
                        m.as_str()
                            .split('/')
                            .find_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
                            .map(|n| n.trim_start_matches('*').to_string())
                    })
                    .unwrap_or_else(|| "path".into());
                Err(AppError::BadRequest {
                    code: "invalid_path",
                    message: format!(
                        "the path parameter could not be read: {}",
                        match rejection {
                            axum::extract::rejection::PathRejection::FailedToDeserializePathParams(
                                e,
                            ) => match e.kind() {
                                axum::extract::path::ErrorKind::InvalidUtf8InPathParam {
                                    ..
                                } => "not valid UTF-8 once percent-decoded".to_string(),
                                _ => "wrong form".to_string(),
                            },
                            _ => "wrong form".to_string(),
                        }
                    ),
                    field: Some(field),
                })
            }
        }
    }
}

/// A whole number read from JSON written either way (`3` or `3.0`), for a type that borrows
/// from the body and so cannot go through [`integral_numbers`] (`#[serde(deserialize_with)]`).
pub fn whole_number<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    use serde::Deserialize;
    use serde::de::Error;
    let n = serde_json::Number::deserialize(d)?;
    n.as_u64()
        .or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && (0.0..9.0e15).contains(f))
                .map(|f| f as u64)
        })
        .and_then(|v| T::try_from(v).ok())
        .ok_or_else(|| D::Error::custom(format!("expected a whole number in range, got {n}")))
}

/// Whether a text field holds something besides whitespace and at most `max` characters.
/// Characters (Unicode scalar values), not bytes: that is how the OpenAPI document's
/// `maxLength` counts, and the document states each such field as `minLength: 1`,
/// `maxLength: max`, `pattern: \S` (`tests/openapi.rs` holds the two together).
pub fn is_short_text(v: &str, max: usize) -> bool {
    !v.trim().is_empty() && v.chars().count() <= max
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_at_its_time_limit_is_a_json_503_with_retry_after() {
        let res = deadline(std::future::pending(), Duration::from_millis(10)).await;
        assert_eq!(res.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()[axum::http::header::RETRY_AFTER], "5");
        assert!(
            res.headers()[axum::http::header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
    }
}
