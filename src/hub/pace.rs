//! How long a store told `busy` should stay away: about as long as this process needs to land
//! the pushes waiting in it and those it has just refused, at the rate it has just been
//! landing them, and never longer than `retry_after_spread_secs`.
//!
//! A fixed spread was either too short for a machine that lands slowly or far too long for a
//! burst the hub would clear in a second: a fleet draining after an outage had a few hundred
//! pushes refused in one bad second, each store told 1–13 s and spreading it to twice that
//! (its backoff waits [RA, 2·RA)), and the last entries landed over a 25 s tail after the
//! rest had landed in 18 s (`cargo bench --bench fleet`, 2026-12-07). The spread follows the
//! refusals: when they keep coming (the hub stays behind), it grows with them; when the hub
//! lands nothing at all, it is the full spread.
//!
//! The window also keeps how long landings took, which tells the intake whether a push just
//! admitted behind a queue can land within its deadline ([`Pace::expected_wait_ms`]): one
//! that cannot is refused at once rather than after holding its store for the whole deadline.

use std::sync::Mutex;
use std::time::Instant;

/// Refusals and landings over the last two whole seconds and this one.
pub struct Pace {
    started: Instant,
    window: Mutex<Window>,
}

#[derive(Default)]
struct Window {
    /// The second (since `started`) that `refused[0]` and `landed[0]` count.
    second: u64,
    refused: [u64; 3],
    landed: [u64; 3],
    /// Milliseconds those landings took, from their turn to COMMIT.
    landing_ms: [u64; 3],
}

impl Window {
    /// Moves the window to `second`, forgetting what is older than two seconds before it.
    fn at(&mut self, second: u64) -> &mut Self {
        let shift = second.saturating_sub(self.second).min(3) as usize;
        if shift > 0 {
            self.refused.rotate_right(shift);
            self.landed.rotate_right(shift);
            self.landing_ms.rotate_right(shift);
            self.refused[..shift].fill(0);
            self.landed[..shift].fill(0);
            self.landing_ms[..shift].fill(0);
            self.second = second;
        }
        self
    }
}

impl Default for Pace {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            window: Mutex::default(),
        }
    }
}

impl Pace {
    fn second(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    fn window(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A push landed (committed), `took` from its turn to COMMIT.
    pub fn landed(&self, took: std::time::Duration) {
        let s = self.second();
        let mut w = self.window();
        let w = w.at(s);
        w.landed[0] += 1;
        w.landing_ms[0] += took.as_millis() as u64;
    }

    /// How long (ms) until the last of `ahead` pushes waiting for one of `at_once` turns has
    /// landed, at what a landing has just been taking here; `None` when nothing landed lately
    /// (a fresh start, or PostgreSQL just back): then nothing is known.
    pub fn expected_wait_ms(&self, ahead: u64, at_once: u64) -> Option<u64> {
        let s = self.second();
        let mut w = self.window();
        let w = w.at(s);
        expected_wait_ms(
            ahead,
            at_once,
            w.landed.iter().sum(),
            w.landing_ms.iter().sum(),
        )
    }

    /// A push refused `busy`, with `waiting` pushes admitted and not yet landed; the spread
    /// (seconds) to tell it, at most `most`.
    pub fn refused(&self, waiting: u64, most: u64) -> u64 {
        let s = self.second();
        let mut w = self.window();
        let w = w.at(s);
        w.refused[0] += 1;
        busy_spread(
            w.refused.iter().sum::<u64>() + waiting,
            w.landed.iter().sum(),
            most,
        )
    }
}

/// Seconds to spread `ahead` pushes (waiting, and just refused) over so this process can
/// land them at the rate it landed `landed` in the same window (up to three seconds, counted
/// as two and a half: the current one is partly gone): at least 2, so the stores refused in
/// one second are not all told the same second; at most `most`; `most` when nothing landed.
pub fn busy_spread(ahead: u64, landed: u64, most: u64) -> u64 {
    let most = most.max(1);
    if landed == 0 {
        return most;
    }
    // ahead ÷ (landed per second), with landed per second = landed ÷ 2.5.
    (ahead.saturating_mul(5))
        .div_ceil(landed.saturating_mul(2))
        .max(2)
        .min(most)
}

/// `ahead` pushes through `at_once` turns, each taking the mean of `landed` landings that
/// took `landing_ms` in all: what the hub can do, not how much it was asked (a quiet hub
/// that landed one push lately is not a slow one).
pub fn expected_wait_ms(ahead: u64, at_once: u64, landed: u64, landing_ms: u64) -> Option<u64> {
    (landed > 0).then(|| {
        ahead
            .div_ceil(at_once.max(1))
            .saturating_mul(landing_ms)
            .div_ceil(landed)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spread_follows_refusals_against_landings() {
        // A hub landing 250 pushes a second (625 in the window) with 100 ahead of a refused
        // one: under a second's work, told the least, two seconds.
        assert_eq!(busy_spread(100, 625, 10), 2);
        // 600 ahead, 2.4 s of work: three.
        assert_eq!(busy_spread(600, 625, 10), 3);
        // Four times what it lands in a second: the cap.
        assert_eq!(busy_spread(2_500, 625, 10), 10);
        // Nothing landed (stalled, or nothing yet): the full spread.
        assert_eq!(busy_spread(1, 0, 10), 10);
        assert_eq!(busy_spread(1, 0, 0), 1);
        assert_eq!(busy_spread(1, 1_000_000, 1), 1);
        // Never below two seconds when the cap allows.
        assert_eq!(busy_spread(1, 1_000_000, 10), 2);
        assert_eq!(busy_spread(u64::MAX, 1, 10), 10);
    }

    #[test]
    fn the_expected_wait_is_the_pushes_ahead_at_the_recent_rate() {
        // Landings of 40 ms on average, 8 at once: 16 ahead is two rounds, 80 ms.
        assert_eq!(expected_wait_ms(16, 8, 10, 400), Some(80));
        assert_eq!(expected_wait_ms(17, 8, 10, 400), Some(120));
        // Fewer ahead than turns: one landing's time.
        assert_eq!(expected_wait_ms(1, 8, 3, 90), Some(30));
        // 600 ahead of 8 turns at 400 ms: 30 s, far past any deadline.
        assert_eq!(expected_wait_ms(600, 8, 5, 2_000), Some(30_000));
        // Nothing landed lately: unknown, not "forever".
        assert_eq!(expected_wait_ms(5, 8, 0, 0), None);
        assert_eq!(expected_wait_ms(u64::MAX, 1, 1, 1), Some(u64::MAX));
    }

    #[test]
    fn the_window_forgets_what_is_older_than_two_seconds() {
        let mut w = Window::default();
        w.at(0).landed[0] += 5;
        w.at(0).refused[0] += 1;
        w.at(1).landed[0] += 7;
        w.at(2).refused[0] += 2;
        assert_eq!(w.landed, [0, 7, 5]);
        assert_eq!(w.refused, [2, 0, 1]);
        w.at(3);
        assert_eq!(w.landed, [0, 0, 7]);
        assert_eq!(w.refused, [0, 2, 0]);
        w.at(100);
        assert_eq!((w.landed, w.refused), ([0; 3], [0; 3]));
        // A second seen again (or earlier, from a racing clock read) changes nothing.
        w.at(100).landed[0] += 1;
        w.at(99);
        assert_eq!(w.landed, [1, 0, 0]);
    }
}
