//! One store's share of a hub process: how many requests with bodies it has in the process
//! at once, and how much of the body budget (`intake_memory_mib`) they hold. Everything a
//! store writes is shared by the whole fleet (admission, turns, the body budget); a store
//! following the contract needs a small part of it, and one store's token in the wrong hands
//! must not take the rest. Counted and checked in one step under one lock.

use std::collections::HashMap;
use std::sync::Mutex;

use super::HubState;
use super::body::UNIT;

/// Journal batches one store may have in a process at once (read, waiting or landing).
/// Standin sends one push at a time (and may resend it while the first still lands in the
/// background, answered `busy` at the deadline); a store of another make may push its four
/// lanes at once.
pub const BATCHES_PER_STORE: usize = 4;

/// Heartbeats one store may have in a process at once: it sends one an interval, and one
/// more on a change of state.
pub const HEARTBEATS_PER_STORE: usize = 2;

/// The body budget one store may hold in a process, in [`UNIT`]s: the largest journal
/// request (32 MiB), so a fleet's budget (256 MiB by default) is never one store's.
pub const UNITS_PER_STORE: u32 = (super::MAX_BODY_BYTES / UNIT) as u32;

/// What a request is, for its store's count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Journal,
    Heartbeat,
}

#[derive(Default)]
struct PerStore {
    batches: usize,
    heartbeats: usize,
    units: u32,
}

#[derive(Default)]
pub struct Shares(Mutex<HashMap<String, PerStore>>);

impl Shares {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, PerStore>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `store`'s journal batches in this process now.
    pub fn batches(&self, store: &str) -> usize {
        self.lock().get(store).map_or(0, |p| p.batches)
    }
}

/// A place for one of a store's requests; it and the body units taken through it are given
/// back when it drops.
pub struct Slot {
    state: HubState,
    store: String,
    kind: Kind,
    units: u32,
}

impl HubState {
    /// A place for one more of `store`'s requests of `kind`, or `None` when it has as many
    /// as a store may.
    pub fn store_slot(&self, store: &str, kind: Kind) -> Option<Slot> {
        let mut m = self.shares.lock();
        let p = m.entry(store.to_owned()).or_default();
        let (n, max) = match kind {
            Kind::Journal => (&mut p.batches, BATCHES_PER_STORE),
            Kind::Heartbeat => (&mut p.heartbeats, HEARTBEATS_PER_STORE),
        };
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Slot {
            state: self.clone(),
            store: store.to_owned(),
            kind,
            units: 0,
        })
    }
}

impl HubState {
    /// [`HubState::store_slot`], or the 429 (`Retry-After`, counted) a store past its share
    /// gets: what every route a store writes a body to takes first.
    pub fn take_share(&self, store: &str, kind: Kind) -> Result<Slot, super::HubError> {
        self.store_slot(store, kind).ok_or_else(|| {
            self.metrics.refused_store_busy();
            super::HubError::TooMany(self.retry_after(store))
        })
    }
}

impl Slot {
    /// Takes `n` more units of the store's share of the body budget; false (nothing taken)
    /// when that would go past [`UNITS_PER_STORE`].
    pub fn take_units(&mut self, n: u32) -> bool {
        let mut m = self.state.shares.lock();
        let Some(p) = m.get_mut(&self.store) else {
            return false;
        };
        if p.units.saturating_add(n) > UNITS_PER_STORE {
            return false;
        }
        p.units += n;
        self.units += n;
        true
    }

    /// Gives back `n` of the units taken through this slot.
    pub fn give_units(&mut self, n: u32) {
        let n = n.min(self.units);
        self.units -= n;
        if let Some(p) = self.state.shares.lock().get_mut(&self.store) {
            p.units = p.units.saturating_sub(n);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut m = self.state.shares.lock();
        if let Some(p) = m.get_mut(&self.store) {
            match self.kind {
                Kind::Journal => p.batches = p.batches.saturating_sub(1),
                Kind::Heartbeat => p.heartbeats = p.heartbeats.saturating_sub(1),
            }
            p.units = p.units.saturating_sub(self.units);
            if p.batches == 0 && p.heartbeats == 0 && p.units == 0 {
                m.remove(&self.store);
            }
        }
    }
}
