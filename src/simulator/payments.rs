//! The card/app-pay processor: authorisations and refunds, idempotent by `Idempotency-Key`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rand::Rng;
use serde_json::{Map, Value, json};

use super::central::{health, method_not_allowed, not_found};
use super::generate::alnum;
use super::state::{ApiError, IdemLog, Shared, State, invalid, lock, parse_body};

pub(crate) fn router(state: Shared) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/authorizations", post(authorize))
        .route("/v1/refunds", post(refund))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(1024 * 1024))
        .with_state(state)
}

fn idempotency_key(headers: &HeaderMap) -> Result<String, ApiError> {
    match headers.get("idempotency-key").and_then(|v| v.to_str().ok()) {
        Some(k) if !k.trim().is_empty() && k.len() <= 255 => Ok(k.to_owned()),
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "missing_idempotency_key",
            "the Idempotency-Key header is required",
        )
        .field("Idempotency-Key")),
    }
}

/// `amount_minor` (positive integer) and `currency` (ISO 4217 letters), common to both routes.
fn money(body: &Map<String, Value>) -> Result<u64, ApiError> {
    let amount = match body.get("amount_minor").and_then(Value::as_u64) {
        Some(a) if a > 0 => a,
        _ => {
            return Err(invalid(
                "amount_minor",
                "amount_minor must be a positive integer",
            ));
        }
    };
    match body.get("currency").and_then(Value::as_str) {
        Some(c) if c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()) => Ok(amount),
        _ => Err(invalid(
            "currency",
            "currency must be an ISO 4217 code such as USD",
        )),
    }
}

/// The shared shape of both routes: key, replay, validate, decide, record.
fn idempotent(
    state: &Shared,
    headers: &HeaderMap,
    body: &Bytes,
    log: fn(&mut State) -> &mut IdemLog,
    decide: impl FnOnce(&mut State, &Map<String, Value>) -> Result<Value, ApiError>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(headers)?;
    if let Some(first) = log(&mut lock(state)).replay(&key) {
        return Ok(axum::Json(first).into_response());
    }
    let request = parse_body(body)?;
    let Some(obj) = request.as_object() else {
        return Err(invalid("amount_minor", "body must be a JSON object"));
    };
    let mut st = lock(state);
    // Another arrival with this key may have been recorded while the body was parsed.
    if let Some(first) = log(&mut st).replay(&key) {
        return Ok(axum::Json(first).into_response());
    }
    let response = decide(&mut st, obj)?;
    log(&mut st).record(&key, request.clone(), response.clone());
    Ok(axum::Json(response).into_response())
}

async fn authorize(
    AxState(state): AxState<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    idempotent(
        &state,
        &headers,
        &body,
        |s| &mut s.authorizations,
        |st, obj| {
            let amount = money(obj)?;
            let Some(tender) = obj.get("tender").and_then(Value::as_object) else {
                return Err(invalid("tender", "tender must be an object"));
            };
            if obj.get("stored").is_some_and(|s| !s.is_boolean()) {
                return Err(invalid("stored", "stored must be true or false"));
            }
            let secret = ["token", "ciphertext"]
                .iter()
                .find_map(|f| tender.get(*f).and_then(Value::as_str))
                .unwrap_or_default();
            Ok(if amount % 100 == 51 {
                json!({ "status": "declined", "reason": "insufficient_funds" })
            } else if secret.starts_with("decline") {
                json!({ "status": "declined", "reason": "do_not_honor" })
            } else {
                const A: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ0123456789";
                let code: String = (0..6)
                    .map(|_| char::from(A[st.rng.random_range(0..A.len())]))
                    .collect();
                json!({ "status": "approved", "auth_code": code })
            })
        },
    )
}

async fn refund(
    AxState(state): AxState<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    idempotent(
        &state,
        &headers,
        &body,
        |s| &mut s.refunds,
        |st, obj| {
            let by_auth = obj
                .get("authorization")
                .and_then(Value::as_str)
                .is_some_and(|a| !a.is_empty());
            let by_tender = obj.get("tender").is_some_and(Value::is_object);
            if !by_auth && !by_tender {
                return Err(invalid(
                    "authorization",
                    "a refund needs the original authorization or a tender",
                ));
            }
            money(obj)?;
            Ok(
                json!({ "status": "approved", "refund_id": format!("rf_{}", alnum(&mut st.rng, 16)) }),
            )
        },
    )
}
