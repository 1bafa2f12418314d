//! The request guard: what every route's requests pass before the access check and the
//! handler, so that no route can forget it.
//!
//! 1. **The body limit** declared with the route ([`super::BodyLimit`]): a JSON 413 as soon as
//!    the limit is crossed, whether the body declared its length or came chunked. What the
//!    client still sends is read and dropped (up to [`DRAIN_MAX`]) so it sees the answer
//!    instead of a reset connection.
//! 2. **A body that arrives too slowly** (under [`BODY_READ_LIMIT`] for the whole body): 408.
//! 3. **Card data** (PCI DSS 3.3.1 / 3.5.1): a card number, CVV or track data in the body (JSON
//!    at any depth, or any other body as text), in the query string or in a path segment is a
//!    422 `card_data_refused` naming only the field. The value is never logged, stored,
//!    journaled or forwarded: the handler never runs.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use super::card_data::{self, Found};
use crate::error::AppError;

/// The whole body must arrive within this; a client trickling it gets a 408.
pub const BODY_READ_LIMIT: Duration = Duration::from_secs(15);
/// After a 413, at most this much more of the refused body is read (and dropped) so the
/// client can read the answer; past it the connection is closed.
pub const DRAIN_MAX: usize = 64 * 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// What a refusal says: never the value, only that the field held card data.
pub const CARD_DATA_MESSAGE: &str = "this field holds what looks like card data (a card number, security code or track data); Standin never accepts card data: send the processor token or P2PE ciphertext";

pub async fn request_guard(State(limit): State<usize>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    if let Some(field) = card_in_target(&parts) {
        return refused(field);
    }
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let chunked = parts.headers.contains_key(TRANSFER_ENCODING);
    if declared.is_none_or(|n| n == 0) && !chunked {
        // No body to read or scan (a GET, a DELETE).
        return next.run(Request::from_parts(parts, body)).await;
    }
    if declared.is_some_and(|n| n > limit as u64) {
        drain(body);
        return AppError::PayloadTooLarge.into_response();
    }
    let bytes = match read_within(body, limit).await {
        Ok(b) => b,
        Err(refusal) => return refusal,
    };
    let found = match card_data::find_in_json(&bytes) {
        Ok(found) => found,
        // Not JSON: the handler will refuse it, but its text is scanned all the same, as
        // sent and percent-decoded (a form body).
        Err(()) => {
            let text = String::from_utf8_lossy(&bytes);
            let decoded = percent_encoding::percent_decode_str(&text.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned();
            (card_data::holds_card_number(&text) || card_data::holds_card_number(&decoded))
                .then(|| Found::CardNumber("body".into()))
        }
    };
    if let Some(Found::FieldName(f) | Found::CardNumber(f)) = found {
        return refused(f);
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

fn refused(field: String) -> Response {
    AppError::invalid("card_data_refused", field, CARD_DATA_MESSAGE).into_response()
}

/// The body, if it ends within `limit` bytes and [`BODY_READ_LIMIT`]; otherwise the answer.
async fn read_within(body: Body, limit: usize) -> Result<Bytes, Response> {
    let mut body = body;
    let mut buf: Vec<u8> = Vec::new();
    let deadline = tokio::time::Instant::now() + BODY_READ_LIMIT;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => {
                return Err(AppError::RequestTimeout(
                    "the request body did not arrive in time".into(),
                )
                .into_response());
            }
            Ok(None) => return Ok(Bytes::from(buf)),
            Ok(Some(Err(_))) => {
                return Err(
                    AppError::bad_request("body", "the request body could not be read")
                        .into_response(),
                );
            }
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                drain(body);
                return Err(AppError::PayloadTooLarge.into_response());
            }
            buf.extend_from_slice(&data);
        }
    }
}

/// Reads and drops the rest of a refused body in the background, bounded in bytes and time,
/// so the client reads the 413 instead of a connection reset.
fn drain(mut body: Body) {
    tokio::spawn(async move {
        let mut seen = 0usize;
        let _ = tokio::time::timeout(DRAIN_TIME, async {
            while let Some(Ok(frame)) = body.frame().await {
                seen += frame.data_ref().map_or(0, Bytes::len);
                if seen > DRAIN_MAX {
                    break;
                }
            }
        })
        .await;
    });
}

/// Card data in the query string (named by its parameter) or in a path segment (named by
/// the route's parameter), each percent-decoded as the handler would read it.
fn card_in_target(parts: &axum::http::request::Parts) -> Option<String> {
    if let Some(query) = parts.uri.query() {
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            if card_data::holds_card_number(&key) {
                return Some("query".into());
            }
            if card_data::holds_card_number(&value) {
                return Some(key.into_owned());
            }
        }
        // A query that form decoding does not take apart is scanned as text too.
        let decoded = percent_encoding::percent_decode_str(query).decode_utf8_lossy();
        if card_data::holds_card_number(&decoded) {
            return Some("query".into());
        }
    }
    let template = parts
        .extensions
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    let mut names = template.map(|t| t.split('/'));
    // Each segment alone (named by its parameter), then the whole path as one text, since a
    // slash is one of the separators a card number can be written with. A UUID segment is
    // never a card number, though its digit groups can chance on one.
    let mut whole = String::new();
    for segment in parts.uri.path().split('/') {
        let name = names.as_mut().and_then(Iterator::next);
        let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
        if card_data::is_uuid(&decoded) {
            whole.push_str("x/");
            continue;
        }
        if card_data::holds_card_number(&decoded) {
            return Some(
                name.and_then(|n| n.strip_prefix('{')?.strip_suffix('}'))
                    .map_or("path", |n| n.trim_start_matches('*'))
                    .to_string(),
            );
        }
        whole.push_str(&decoded);
        whole.push('/');
    }
    if card_data::holds_card_number(&whole) {
        return Some("path".into());
    }
    None
}
