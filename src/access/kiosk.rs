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

pub fn routes() -> Vec<Route<AppState>> {
    vec![Route::new(
        Method::GET,
        "/kiosk/v1/device",
        Access::Kiosk,
        get(this_device),
    )]
}

/// Kiosks recently authenticated, in memory: a kiosk pays back to back, and reading the
/// devices table for every payment is a trip to the read pool each time.
///
/// Revocation stays immediate, as for staff sessions: every applied devices feed batch bumps
/// the generation, and an entry read under an older generation is never trusted. Only known
/// devices are cached, so unknown tokens cannot grow it.
#[derive(Default)]
pub struct DeviceCache {
    generation: std::sync::atomic::AtomicU64,
    entries: std::sync::Mutex<std::collections::HashMap<String, (u64, String, String)>>,
}

/// Most kiosks held; past it the cache starts over (a store has tens of kiosks).
const CACHE_MAX: usize = 10_000;

impl DeviceCache {
    /// The devices feed changed: nothing cached so far may be trusted.
    pub fn invalidate(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    fn get(&self, digest: &str, generation: u64) -> Option<Caller> {
        let m = self.entries.lock().ok()?;
        let (g, device_id, lane) = m.get(digest)?;
        (*g == generation).then(|| Caller::Kiosk {
            device_id: device_id.clone(),
            lane: lane.clone(),
        })
    }

    fn put(&self, digest: String, generation: u64, device_id: &str, lane: &str) {
        if let Ok(mut m) = self.entries.lock() {
            if m.len() >= CACHE_MAX {
                m.clear();
            }
            m.insert(
                digest,
                (generation, device_id.to_string(), lane.to_string()),
            );
        }
    }
}

/// The kiosk behind `token`, if it is an active device of this store.
pub async fn authenticate(state: &AppState, token: &str) -> Result<Caller, AppError> {
    let digest = sha256_hex(token);
    // Read before the lookup: a batch applied meanwhile makes this entry untrusted.
    let generation = state
        .devices
        .generation
        .load(std::sync::atomic::Ordering::SeqCst);
    if let Some(caller) = state.devices.get(&digest, generation) {
        return Ok(caller);
    }
    let key = digest.clone();
    let found = state
        .store
        .read(move |c| {
            c.prepare_cached(
                "SELECT device_id, lane FROM devices WHERE token_sha256 = ?1 AND active = 1",
            )?
            .query_row([key], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .optional()
            .map_err(AppError::from)
        })
        .await?;
    let (device_id, lane) = found.ok_or(AppError::Unauthorized)?;
    state.devices.put(digest, generation, &device_id, &lane);
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
