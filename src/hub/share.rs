//! One store's share of a hub process: how many requests it has in the process at once (of
//! any kind, taken by the guard every store route passes, so a route added later is
//! covered; and of each kind that holds something the fleet shares: pushes, heartbeats,
//! feed pulls), and how much of the body budget (`intake_memory_mib`) they hold. Everything a
//! store writes is shared by the whole fleet (admission, turns, the body budget); a store
//! following the contract needs a small part of it, and one store's token in the wrong hands
//! must not take the rest. Counted and checked in one step under one lock.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// Feed pulls one store may have in a process at once. Standin pulls its feeds one at a
/// time; each pull holds one of the few connections the fleet's pulls share (`pool_size`
/// less the intake's), and pulls of one store's feed wait on one lock, so without this one
/// store's token could hold every one of them.
pub const PULLS_PER_STORE: usize = 2;

/// Requests of any kind one store may have in a process at once: room for the kinds above
/// together (heartbeats waiting for the writer included, `heartbeats::MAX_WAITING_PER_STORE`),
/// and the bound on a store route that has no kind of its own.
pub const REQUESTS_PER_STORE: usize = 48;

/// A store's heartbeats come back into its bucket at one per this (`heartbeat_burst` is the
/// bucket's size): two a second. Standin sends at most one a second; another make sending
/// on every change of state may send a few more, and a 429 counts against its breaker.
pub const HEARTBEAT_REFILL: Duration = Duration::from_millis(500);

/// Stores whose heartbeat bucket is kept before the full ones are let go (a full bucket is
/// what a store not seen at all has).
const BUCKETS_BEFORE_PRUNING: usize = 1_024;

/// What a request is, for its store's count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Any request on a store's path (the guard's).
    Request,
    Journal,
    Heartbeat,
    Pull,
}

struct PerStore {
    /// One of the store's journal batches lands at a time in this process
    /// ([`Slot::store_turn`]).
    turn: std::sync::Arc<tokio::sync::Semaphore>,
    requests: usize,
    batches: usize,
    heartbeats: usize,
    pulls: usize,
    units: u32,
}

impl Default for PerStore {
    fn default() -> Self {
        Self {
            turn: std::sync::Arc::new(tokio::sync::Semaphore::new(1)),
            requests: 0,
            batches: 0,
            heartbeats: 0,
            pulls: 0,
            units: 0,
        }
    }
}

impl PerStore {
    fn count(&mut self, kind: Kind) -> (&mut usize, usize) {
        match kind {
            Kind::Request => (&mut self.requests, REQUESTS_PER_STORE),
            Kind::Journal => (&mut self.batches, BATCHES_PER_STORE),
            Kind::Heartbeat => (&mut self.heartbeats, HEARTBEATS_PER_STORE),
            Kind::Pull => (&mut self.pulls, PULLS_PER_STORE),
        }
    }

    fn is_empty(&self) -> bool {
        self.requests == 0
            && self.batches == 0
            && self.heartbeats == 0
            && self.pulls == 0
            && self.units == 0
    }
}

#[derive(Default)]
pub struct Shares {
    held: Mutex<HashMap<String, PerStore>>,
    beats: Mutex<Buckets>,
}

/// Heartbeats each store has left to send now, by store (see [`HubState::heartbeat_turn`]).
#[derive(Default)]
struct Buckets {
    by_store: HashMap<String, Bucket>,
    /// Pruned when `by_store` grows past this (then twice what is left, at least
    /// [`BUCKETS_BEFORE_PRUNING`]): a store is kept only while its bucket is not full.
    prune_at: usize,
}

struct Bucket {
    /// Heartbeats left, as of `at`.
    left: f64,
    at: Instant,
}

impl Bucket {
    /// Heartbeats left at `now` in a bucket of `size`.
    fn left_at(&self, now: Instant, size: f64) -> f64 {
        let refilled =
            now.saturating_duration_since(self.at).as_secs_f64() / HEARTBEAT_REFILL.as_secs_f64();
        (self.left + refilled).min(size)
    }
}

impl Buckets {
    /// Takes one of `store`'s heartbeats at `now` from a bucket of `size`; false when none
    /// is left.
    fn take(&mut self, store: &str, now: Instant, size: u32) -> bool {
        let size = f64::from(size.max(1));
        if self.by_store.len() >= self.prune_at.max(BUCKETS_BEFORE_PRUNING) {
            self.by_store.retain(|_, b| b.left_at(now, size) < size);
            self.prune_at = (2 * self.by_store.len()).max(BUCKETS_BEFORE_PRUNING);
        }
        // A store not kept has a full bucket; one kept costs no copy of its id.
        let left = self
            .by_store
            .get(store)
            .map_or(size, |b| b.left_at(now, size));
        if left < 1.0 {
            return false;
        }
        let taken = Bucket {
            left: left - 1.0,
            at: now,
        };
        match self.by_store.get_mut(store) {
            Some(b) => *b = taken,
            None => {
                self.by_store.insert(store.to_owned(), taken);
            }
        }
        true
    }
}

impl Shares {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, PerStore>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
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
        let (n, max) = p.count(kind);
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
        self.store_slot(store, kind)
            .ok_or_else(|| self.past_share(store))
    }

    /// One of `store`'s heartbeats in this process: `heartbeat_burst` at once, then one per
    /// [`HEARTBEAT_REFILL`]; past that the 429 of [`HubState::past_share`], before its body
    /// is read. Counted per process (a store spread over two processes has twice the rate).
    pub fn heartbeat_turn(&self, store: &str) -> Result<(), super::HubError> {
        let taken = self
            .shares
            .beats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take(store, Instant::now(), self.config.heartbeat_burst);
        if taken {
            Ok(())
        } else {
            Err(self.past_share(store))
        }
    }

    /// The 429 a store past any of its shares gets (counted, with its `Retry-After`): the
    /// one answer for every cap on one store, here and in the intake, the body budget and
    /// the heartbeat writer.
    pub fn past_share(&self, store: &str) -> super::HubError {
        self.metrics.refused_store_busy();
        super::HubError::TooMany(self.retry_after(store))
    }
}

impl Slot {
    /// The store's landing turn: one of its journal batches at a time lands in a process.
    /// Its batches lock its row in PostgreSQL (`FOR UPDATE`), so a second landing at once
    /// would only wait there, holding an intake turn and a connection the fleet shares: one
    /// store's token pushing four at once held half the process's turns, and other stores'
    /// pushes were answered `busy` (a hostile round, 2026-12-07). Waiting for it holds
    /// nothing of the fleet's.
    pub fn store_turn(&self) -> std::sync::Arc<tokio::sync::Semaphore> {
        let mut m = self.state.shares.lock();
        // The entry lives while this slot does (its count is in it).
        m.entry(self.store.clone()).or_default().turn.clone()
    }

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
            let (n, _) = p.count(self.kind);
            *n = n.saturating_sub(1);
            p.units = p.units.saturating_sub(self.units);
            if p.is_empty() {
                m.remove(&self.store);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_kind_is_capped_and_given_back() {
        let config = crate::hub::HubConfig {
            database_url: crate::config::Secret::new("postgres://nowhere/db".to_owned()),
            ..Default::default()
        };
        let state = HubState::new(config).unwrap();
        for (kind, max) in [
            (Kind::Request, REQUESTS_PER_STORE),
            (Kind::Journal, BATCHES_PER_STORE),
            (Kind::Heartbeat, HEARTBEATS_PER_STORE),
            (Kind::Pull, PULLS_PER_STORE),
        ] {
            let held: Vec<Slot> = (0..max)
                .map(|_| state.store_slot("s1", kind).expect("within the share"))
                .collect();
            assert!(
                state.store_slot("s1", kind).is_none(),
                "{kind:?} past {max}"
            );
            // Another store's share is its own.
            assert!(state.store_slot("s2", kind).is_some(), "{kind:?}");
            drop(held);
            assert!(
                state.store_slot("s1", kind).is_some(),
                "{kind:?} given back"
            );
        }
        assert!(state.shares.lock().is_empty(), "nothing left counted");
    }

    #[test]
    fn heartbeats_come_in_a_burst_then_at_a_steady_rate() {
        let t0 = Instant::now();
        let mut b = Buckets::default();
        for _ in 0..10 {
            assert!(b.take("s1", t0, 10));
        }
        assert!(!b.take("s1", t0, 10), "past the burst");
        // Another store has its own bucket.
        assert!(b.take("s2", t0, 10));
        // Half a refill gives back half a heartbeat: still none.
        let r = HEARTBEAT_REFILL;
        assert!(!b.take("s1", t0 + r / 2, 10));
        assert!(b.take("s1", t0 + r, 10));
        assert!(!b.take("s1", t0 + r + r / 10, 10));
        // Never more than the burst, however long the store was quiet.
        let later = t0 + Duration::from_secs(3_600);
        for _ in 0..10 {
            assert!(b.take("s1", later, 10));
        }
        assert!(!b.take("s1", later, 10));
        // Full buckets are let go once enough stores are kept; the others stay.
        let mut b = Buckets::default();
        for _ in 0..10 {
            assert!(b.take("s0", t0, 10));
        }
        for i in 1..BUCKETS_BEFORE_PRUNING {
            assert!(b.take(&format!("s{i}"), t0, 10));
        }
        assert_eq!(b.by_store.len(), BUCKETS_BEFORE_PRUNING);
        assert!(b.take("new", t0 + r, 10));
        // s0 had spent its burst (1 back of 10): kept; the rest were full again: gone.
        assert_eq!(b.by_store.len(), 2);
        assert!(b.take("s0", t0 + r, 10));
        assert!(!b.take("s0", t0 + r, 10));
    }
}
