//! Request bodies from stores, read within the hub's memory budget for them
//! (`intake_memory_mib`): journal batches and heartbeats, the two routes a whole fleet writes
//! to at once. Nothing a store sends is read into memory past that budget, so 5,000 stores
//! writing at once cost a hub process at most the budget, not 5,000 bodies.

use tokio::sync::OwnedSemaphorePermit;

use super::share::Slot;
use super::{HubError, HubState};

/// What the budget counts in.
pub const UNIT: usize = 64 * 1024;

/// A body not taken.
#[derive(Debug)]
pub enum Refused {
    /// Larger than the route takes (413).
    TooLarge,
    /// No room in the budget: 503 `busy`.
    NoRoom,
    /// Past the store's own share of the budget ([`super::share::UNITS_PER_STORE`]): 429.
    StoreShare,
    /// Not arrived within the deadline (ms from the request): 408 `body_timeout`, which
    /// says what to do about it, where `busy` would point at the hub.
    Slow(u64),
}

impl Refused {
    /// The answer: 413, 408, or 503 `busy` with the `Retry-After` the route gives (`busy`,
    /// which also counts the refusal as the route counts its own).
    pub fn into_error(self, state: &HubState, store: &str, busy: impl FnOnce() -> u64) -> HubError {
        match self {
            Refused::TooLarge => HubError::TooLarge,
            Refused::NoRoom => {
                state.metrics.refused_memory();
                tracing::debug!(
                    store,
                    "store request refused busy: no room in intake_memory_mib"
                );
                HubError::Busy(busy())
            }
            Refused::StoreShare => {
                tracing::debug!(
                    store,
                    "store request refused: past the store's share of the body budget"
                );
                state.past_share(store)
            }
            Refused::Slow(ms) => {
                state.metrics.refused_body_timeout();
                tracing::debug!(store, ms, "store request's body did not arrive in time");
                HubError::BodyTimeout(ms)
            }
        }
    }
}

/// Reads `body` (at most `limit` bytes) while the budget has room for it, taking its share
/// as it goes: all at once when the request states its length, a unit at a time as a body
/// without one arrives. Without room, the rest is read and dropped (so the store reads the
/// answer rather than a reset connection, as the store's own 413 does) and it is refused;
/// a body not in by the deadline is refused as slow. The share comes back when the permit drops.
pub async fn read(
    state: &HubState,
    slot: &mut Slot,
    mut body: axum::body::Body,
    limit: usize,
    deadline: tokio::time::Instant,
) -> Result<(Vec<u8>, OwnedSemaphorePermit), Refused> {
    use http_body_util::BodyExt;
    let allowed_ms = deadline
        .saturating_duration_since(tokio::time::Instant::now())
        .as_millis() as u64;
    let units = |bytes: usize| u32::try_from(bytes.div_ceil(UNIT).max(1)).unwrap_or(u32::MAX);
    let stated = match axum::body::HttpBody::size_hint(&body)
        .exact()
        .map(usize::try_from)
    {
        Some(Ok(n)) if n <= limit => Some(n),
        Some(_) => return Err(Refused::TooLarge),
        None => None,
    };
    // The store's own share first ([`super::share`]), then the fleet's budget; both or none.
    let take = |slot: &mut Slot, n: u32| {
        if !slot.take_units(n) {
            return Err(Refused::StoreShare);
        }
        let permit = state.intake_memory.clone().try_acquire_many_owned(n);
        if permit.is_err() {
            slot.give_units(n);
        }
        permit.map_err(|_| Refused::NoRoom)
    };
    // Why it was refused, once it is: the rest is then read and dropped.
    let mut refused = None;
    let mut held = take(slot, units(stated.unwrap_or(0)))
        .map_err(|why| refused = Some(why))
        .ok();
    let mut buf = Vec::with_capacity(if held.is_some() {
        stated.unwrap_or(0)
    } else {
        0
    });
    let mut seen = 0usize;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            // Refused for room already, it stays that; else it was too slow.
            Err(_) => return Err(refused.unwrap_or(Refused::Slow(allowed_ms))),
            Ok(None) => break,
            Ok(Some(Err(_))) => return Err(Refused::TooLarge),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen += data.len();
        if seen > limit {
            return Err(Refused::TooLarge);
        }
        let Some(permit) = held.as_mut() else {
            continue; // refused: read and dropped
        };
        let (need, have) = (
            units(seen),
            u32::try_from(permit.num_permits()).unwrap_or(u32::MAX),
        );
        if need > have {
            match take(slot, need - have) {
                Ok(more) => permit.merge(more),
                Err(why) => {
                    // Refused: what was taken goes back now, not when the rest is read.
                    slot.give_units(have);
                    refused = Some(why);
                    held = None;
                    buf = Vec::new();
                    continue;
                }
            }
        }
        buf.extend_from_slice(&data);
    }
    match held {
        Some(permit) => Ok((buf, permit)),
        None => Err(refused.unwrap_or(Refused::NoRoom)),
    }
}
