//! Self-checkout kiosks: a device bearer token whose SHA-256 came down in the devices feed.
//! A device disabled or removed by a feed batch is refused from the next request on.

use axum::Extension;
use axum::extract::State;
use axum::http::Method;
use axum::routing::get;
use rusqlite::OptionalExtension;
use serde_json::{Value, json};

use super::Caller;
use super::token::sha256_hex;
use crate::error::AppError;
use crate::http::{Access, ApiJson, Route};
use crate::state::AppState;

pub fn routes() -> Vec<Route> {
    vec![Route::new(
        Method::GET,
        "/kiosk/v1/device",
        Access::Kiosk,
        get(this_device),
    )]
}

/// The kiosk behind `token`, if it is an active device of this store.
pub async fn authenticate(state: &AppState, token: &str) -> Result<Caller, AppError> {
    let digest = sha256_hex(token);
    let found = state
        .store
        .read(move |c| {
            c.prepare_cached(
                "SELECT device_id, lane FROM devices WHERE token_sha256 = ?1 AND active = 1",
            )?
            .query_row([digest], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .optional()
            .map_err(AppError::from)
        })
        .await?;
    let (device_id, lane) = found.ok_or(AppError::Unauthorized)?;
    Ok(Caller::Kiosk { device_id, lane })
}

/// `GET /kiosk/v1/device`: who this kiosk is to Standin (its id, lane, store).
async fn this_device(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<ApiJson<Value>, AppError> {
    let Caller::Kiosk { device_id, lane } = caller else {
        return Err(AppError::Unauthorized);
    };
    Ok(ApiJson(
        json!({"device_id": device_id, "lane": lane, "store_id": state.config.store_id}),
    ))
}
