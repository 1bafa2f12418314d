//! PIN attempts per client address: counted *before* they are tried, in one step with the
//! check of the limit, so that whatever the concurrency no more than the limit are ever
//! checked in a window; and served in turn across addresses, so one address flooding sign-in
//! waits behind itself, not in front of everyone else.
//!
//! Memory only: a restart forgets, which is fine for a throttle; the per-employee lockout is
//! in the database.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Default)]
pub struct AddressLimiter {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Per address: when its window started and the attempts counted in it.
    windows: HashMap<IpAddr, (DateTime<Utc>, u32)>,
    /// Per address: one PIN check at a time (the others of that address queue behind it).
    turns: HashMap<IpAddr, Arc<Semaphore>>,
}

/// An attempt counted against an address. [`Reserved::succeeded`] gives it back (a right PIN
/// is not a wrong one); dropped otherwise, it stays counted.
pub struct Reserved<'a> {
    limiter: &'a AddressLimiter,
    ip: IpAddr,
    started: DateTime<Utc>,
}

impl AddressLimiter {
    /// Counts one attempt from `ip` if fewer than `limit` are counted in its window;
    /// `None` when the address is at its limit (nothing counted).
    pub fn reserve(
        &self,
        ip: IpAddr,
        now: DateTime<Utc>,
        limit: u32,
        window: Duration,
    ) -> Option<Reserved<'_>> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.windows.retain(|_, (start, _)| now - *start < window);
        let e = inner.windows.entry(ip).or_insert((now, 0));
        if e.1 >= limit {
            return None;
        }
        e.1 += 1;
        Some(Reserved {
            limiter: self,
            ip,
            started: e.0,
        })
    }

    /// Waits for this address's turn: one PIN check per address at a time.
    pub async fn turn(&self, ip: IpAddr) -> Option<OwnedSemaphorePermit> {
        let queue = {
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            // Addresses nobody is waiting for are forgotten.
            inner.turns.retain(|_, s| Arc::strong_count(s) > 1);
            inner
                .turns
                .entry(ip)
                .or_insert_with(|| Arc::new(Semaphore::new(1)))
                .clone()
        };
        queue.acquire_owned().await.ok()
    }

    /// Attempts counted for `ip` now (tests, metrics).
    pub fn counted(&self, ip: IpAddr) -> u32 {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.windows.get(&ip).map_or(0, |(_, n)| *n)
    }
}

impl Reserved<'_> {
    /// The PIN was right: the attempt is not counted against the address.
    pub fn succeeded(self) {
        let mut inner = self.limiter.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((start, n)) = inner.windows.get_mut(&self.ip)
            && *start == self.started
        {
            *n = n.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_stop_at_the_limit_and_successes_give_theirs_back() {
        let l = AddressLimiter::default();
        let ip = IpAddr::from([10, 0, 0, 7]);
        let now = Utc::now();
        let w = Duration::minutes(15);
        let held: Vec<_> = (0..3).map(|_| l.reserve(ip, now, 3, w)).collect();
        assert!(held.iter().all(Option::is_some));
        assert!(l.reserve(ip, now, 3, w).is_none(), "the fourth is refused");
        assert!(l.reserve(IpAddr::from([10, 0, 0, 8]), now, 3, w).is_some());
        held.into_iter().next().flatten().unwrap().succeeded();
        assert_eq!(l.counted(ip), 2);
        assert!(l.reserve(ip, now, 3, w).is_some());
        assert!(l.reserve(ip, now + w, 3, w).is_some(), "a new window");
    }
}
