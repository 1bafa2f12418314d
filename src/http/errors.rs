//! Every error leaves in the one JSON shape, whoever produced it: a handler's `AppError`
//! already is; what the framework and middleware answer on their own (a rejected extractor,
//! a 405, a timeout layer) is rewritten here, on every route and on no route at all. What
//! hyper answers before any of this runs (a request line or headers it cannot take) is
//! rewritten on the connection (`crate::http::conn`) with [`code_for`] too.

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::BodyExt;

use super::card_data;

/// The machine-readable code of an error status that carries no code of its own.
pub fn code_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        406 => "not_acceptable",
        408 => "request_timeout",
        409 => "conflict",
        411 => "length_required",
        413 => "payload_too_large",
        414 => "uri_too_long",
        415 => "unsupported_media_type",
        417 => "expectation_failed",
        422 => "unprocessable",
        429 => "too_many_requests",
        431 => "headers_too_large",
        501 => "not_implemented",
        503 => "unavailable",
        505 => "http_version_not_supported",
        s if s >= 500 => "internal",
        _ => "bad_request",
    }
}

/// `{"error": {"code", "message"}}` for a status, with its standard reason as the message.
pub fn body_for(status: StatusCode, message: Option<&str>) -> String {
    let message = message
        .map(str::to_string)
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_lowercase());
    serde_json::json!({"error": {"code": code_for(status), "message": message}}).to_string()
}

/// Rewrites an error answer that is not JSON into the JSON error shape, keeping its status
/// and headers (`Allow`, `Retry-After`) and, when it is short plain text without card data,
/// its message.
pub async fn as_json_error(res: Response) -> Response {
    let status = res.status();
    let is_json = res
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    // Framework rejections are short texts; anything long is not read.
    let text = match http_body_util::Limited::new(body, 1024).collect().await {
        Ok(collected) => String::from_utf8(collected.to_bytes().to_vec()).ok(),
        Err(_) => None,
    };
    let message = text
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty() && !card_data::holds_card_number(t));
    let body = body_for(status, message);
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    parts
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Response::from_parts(parts, Body::from(body))
}

/// The edge every routed request passes, outermost first: an error answer leaves as JSON
/// ([`as_json_error`]); a head over its bounds is refused ([`head_refusal`]); the request
/// gets `limit` to answer ([`super::extract::deadline`]). One middleware for the three: each
/// middleware layer of its own costs every request a clone of the route below it and a
/// boxed future (issue 19).
pub async fn edge(req: Request, next: Next, limit: std::time::Duration) -> Response {
    if let Some(refusal) = head_refusal(&req) {
        return refusal;
    }
    as_json_error(super::extract::deadline(next.run(req), limit).await).await
}

/// The longest request target (path and query) the service reads.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// The most header bytes (names and values) the service reads.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// The JSON 414 or 431 for a request target or headers past the limits above, before the
/// request guard and the handler: neither reads a target or a header that long.
pub fn head_refusal(req: &Request) -> Option<Response> {
    let uri_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri_len > MAX_URI_BYTES {
        return Some(json_status(StatusCode::URI_TOO_LONG));
    }
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    (header_bytes > MAX_HEADER_BYTES)
        .then(|| json_status(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE))
}

fn json_status(status: StatusCode) -> Response {
    let mut res = Response::new(Body::from(body_for(status, None)));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}
