//! When a kiosk stops waiting for the processor (issue 19, "the first payment after the
//! processor dies").
//!
//! The breaker opens after `failure_threshold` failures, and a processor that hangs fails a
//! call only when that call's budget runs out: without more, every payment in flight or
//! started in the meantime waits the whole budget. So, for the online attempt of a kiosk
//! payment:
//! - **Deadline:** `payments.timeout_ms` is the kiosk's whole wait, from arrival to answer.
//!   The processor call gets what is left of it less [`answer_reserve`], the time kept for
//!   the stand-in write that follows a call that ran out.
//! - **Hedge:** a call with no answer [`HEDGE_FACTOR`] times later than the slowest of the
//!   processor's recent answers (never before [`HEDGE_FLOOR`]) is far outside normal: the
//!   payment is decided by stand-in then, *if the rules approve it offline*. A stand-in
//!   decline is not taken early: the call goes on to its deadline, as the processor may
//!   still approve. The call itself is not cancelled: it runs to its own end and tells the
//!   breaker how it went; a late answer finds the payment decided (`settle_online` changes
//!   only a pending row) and the approval is forwarded later with the same key, so the
//!   processor counts it once. Until the processor has answered at least once in this
//!   process there is no hedge (nothing to call slow).
//! - **Stalled:** while [`STALLED_CALLS`] calls are past their hedge point, the processor is
//!   taken as not answering: a new payment is not sent to join them but decided by stand-in
//!   at once, again only if the rules approve it (otherwise it is sent as usual). This
//!   lasts at most one call budget: then the calls end, and the breaker has heard them.
//!
//! The numbers are plain functions over plain data, tested below.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A call is hedged this many times later than the slowest recent answer.
pub const HEDGE_FACTOR: u32 = 4;
/// Never earlier than this: a fast processor's jitter is not an outage.
pub const HEDGE_FLOOR: Duration = Duration::from_millis(100);
/// The recent answers the hedge is measured against.
pub const RECENT: usize = 64;
/// Calls past their hedge point at once that mean the processor is not answering (the
/// breaker's default `failure_threshold`).
pub const STALLED_CALLS: usize = 3;

/// How long after sending a call is hedged, given the slowest of the recent answers; `None`
/// (no hedge) before the processor has answered at all.
pub fn hedge_after(slowest_recent: Option<Duration>) -> Option<Duration> {
    slowest_recent.map(|s| s.saturating_mul(HEDGE_FACTOR).max(HEDGE_FLOOR))
}

/// Of a kiosk's whole wait (`payments.timeout_ms`), what is kept for the stand-in write after
/// a call that ran out: a fifth, at most 200 ms (a group commit under load takes tens of ms).
pub fn answer_reserve(limit: Duration) -> Duration {
    (limit / 5).min(Duration::from_millis(200))
}

/// The processor's recent answer times and the calls now overdue.
#[derive(Default)]
pub struct Watch {
    recent: Mutex<VecDeque<Duration>>,
    overdue: AtomicUsize,
}

impl Watch {
    /// The processor answered (any HTTP response) after `took`.
    pub fn answered(&self, took: Duration) {
        if let Ok(mut r) = self.recent.lock() {
            if r.len() == RECENT {
                r.pop_front();
            }
            r.push_back(took);
        }
    }

    /// When to hedge a call sent now ([`hedge_after`]).
    pub fn hedge_after(&self) -> Option<Duration> {
        let slowest = self
            .recent
            .lock()
            .ok()
            .and_then(|r| r.iter().max().copied());
        hedge_after(slowest)
    }

    /// Are enough calls overdue that a new one would only join them?
    pub fn stalled(&self) -> bool {
        self.overdue.load(Ordering::Relaxed) >= STALLED_CALLS
    }

    /// Counts a call as overdue until the returned guard is dropped (when the call ends).
    pub fn overdue(self: &Arc<Self>) -> Overdue {
        self.overdue.fetch_add(1, Ordering::Relaxed);
        Overdue(self.clone())
    }
}

/// One call past its hedge point, still with the processor.
pub struct Overdue(Arc<Watch>);

impl Drop for Overdue {
    fn drop(&mut self) {
        self.0.overdue.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn no_hedge_before_the_processor_has_answered() {
        assert_eq!(hedge_after(None), None);
        assert_eq!(Watch::default().hedge_after(), None);
    }

    #[test]
    fn the_hedge_is_far_above_the_slowest_recent_answer_and_never_below_the_floor() {
        assert_eq!(hedge_after(Some(MS(2))), Some(HEDGE_FLOOR));
        assert_eq!(hedge_after(Some(MS(80))), Some(MS(320)));
        let w = Watch::default();
        for ms in [3, 90, 5, 4] {
            w.answered(MS(ms));
        }
        assert_eq!(w.hedge_after(), Some(MS(360)), "the slowest one counts");
        // The slow answer ages out after RECENT others.
        for _ in 0..RECENT {
            w.answered(MS(5));
        }
        assert_eq!(w.hedge_after(), Some(HEDGE_FLOOR));
    }

    #[test]
    fn stalled_while_enough_calls_are_overdue_and_no_longer_once_they_end() {
        let w = Arc::new(Watch::default());
        let a = w.overdue();
        let b = w.overdue();
        assert!(!w.stalled());
        let c = w.overdue();
        assert!(w.stalled());
        drop(b);
        assert!(!w.stalled());
        drop((a, c));
        assert_eq!(w.overdue.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_reserve_is_a_fifth_of_the_wait_at_most_200_ms() {
        assert_eq!(answer_reserve(MS(400)), MS(80));
        assert_eq!(answer_reserve(MS(1_000)), MS(200));
        assert_eq!(answer_reserve(MS(5_000)), MS(200));
    }
}
