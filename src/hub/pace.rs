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
//! The window also keeps how long landings took, and how many entries each held, which tells
//! the intake whether a push just admitted behind a queue can land within its deadline
//! ([`Pace::expected_wait_ms`]): one that cannot is refused at once rather than after holding
//! its store for the whole deadline. A landing's time is fitted as a part per push and a part
//! per entry ([`Landings::cost`]), so one store's token pushing 2,000-entry batches does not
//! make every other store's 40-entry push look as slow as its own: with one mean per push, a
//! hostile round (2026-12-07) had 1,342 of 1,577 honest pushes refused `busy` on the
//! estimate.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Refusals and landings over the last two whole seconds and this one.
pub struct Pace {
    started: Instant,
    window: Mutex<Window>,
    /// Pushes read and waiting for their turn, and the entries they hold ([`Queued`]).
    queued_pushes: AtomicU64,
    queued_entries: AtomicU64,
}

/// Landings in one second: how many, and the sums a least-squares line of milliseconds
/// over entries needs.
#[derive(Default, Clone, Copy)]
pub struct Landings {
    count: u64,
    /// Σ entries, Σ ms, Σ entries², Σ entries·ms.
    x: f64,
    y: f64,
    xx: f64,
    xy: f64,
}

impl Landings {
    fn add(&mut self, entries: u64, ms: f64) {
        let x = entries as f64;
        self.count += 1;
        self.x += x;
        self.y += ms;
        self.xx += x * x;
        self.xy += x * ms;
    }

    fn plus(mut self, o: &Landings) -> Self {
        self.count += o.count;
        self.x += o.x;
        self.y += o.y;
        self.xx += o.xx;
        self.xy += o.xy;
        self
    }

    /// What a landing of `entries` has just been taking (ms): a part per push and a part per
    /// entry, fitted by least squares; the mean of every landing when they were all about
    /// the same size (or the fit says a bigger push is quicker). `None` with no landings.
    pub fn cost(&self, entries: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let n = self.count as f64;
        let mean = self.y / n;
        let spread = n * self.xx - self.x * self.x;
        // Sizes within about one entry of each other: nothing to fit a slope to.
        if spread <= n * n {
            return Some(mean);
        }
        let per_entry = (n * self.xy - self.x * self.y) / spread;
        if per_entry <= 0.0 {
            return Some(mean);
        }
        let per_push = (self.y - per_entry * self.x) / n;
        if per_push < 0.0 {
            // A line through the origin: all of it per entry.
            return Some(entries * self.y / self.x.max(1.0));
        }
        Some(per_push + per_entry * entries)
    }
}

#[derive(Default)]
struct Window {
    /// The second (since `started`) that `refused[0]` and `landed[0]` count.
    second: u64,
    refused: [u64; 3],
    /// Landings, each from its turn to COMMIT.
    landed: [Landings; 3],
}

impl Window {
    /// Moves the window to `second`, forgetting what is older than two seconds before it.
    fn at(&mut self, second: u64) -> &mut Self {
        let shift = second.saturating_sub(self.second).min(3) as usize;
        if shift > 0 {
            self.refused.rotate_right(shift);
            self.landed.rotate_right(shift);
            self.refused[..shift].fill(0);
            self.landed[..shift].fill(Landings::default());
            self.second = second;
        }
        self
    }

    fn landings(&self) -> Landings {
        self.landed
            .iter()
            .fold(Landings::default(), |all, l| all.plus(l))
    }
}

impl Default for Pace {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            window: Mutex::default(),
            queued_pushes: AtomicU64::new(0),
            queued_entries: AtomicU64::new(0),
        }
    }
}

/// A push read and waiting for its turn, counted with its entries in [`Pace`] until it drops.
pub struct Queued<'a> {
    pace: &'a Pace,
    entries: u64,
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.pace.queued_pushes.fetch_sub(1, Ordering::Relaxed);
        self.pace
            .queued_entries
            .fetch_sub(self.entries, Ordering::Relaxed);
    }
}

impl Pace {
    fn second(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    fn window(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A push of `entries` landed (committed), `took` from its turn to COMMIT.
    pub fn landed(&self, took: std::time::Duration, entries: usize) {
        let s = self.second();
        let mut w = self.window();
        w.at(s).landed[0].add(entries as u64, took.as_secs_f64() * 1_000.0);
    }

    /// Counts a push of `entries` as waiting for its turn while the guard lives.
    pub fn queued(&self, entries: usize) -> Queued<'_> {
        let entries = entries as u64;
        self.queued_pushes.fetch_add(1, Ordering::Relaxed);
        self.queued_entries.fetch_add(entries, Ordering::Relaxed);
        Queued {
            pace: self,
            entries,
        }
    }

    /// How long (ms) until the last of `ahead` pushes waiting for one of `at_once` turns has
    /// landed, at what a landing of the size of those waiting ([`Pace::queued`]) has just
    /// been taking here; `None` when nothing landed lately (a fresh start, or PostgreSQL
    /// just back): then nothing is known.
    pub fn expected_wait_ms(&self, ahead: u64, at_once: u64) -> Option<u64> {
        let pushes = self.queued_pushes.load(Ordering::Relaxed).max(1);
        let entries = self.queued_entries.load(Ordering::Relaxed);
        let s = self.second();
        let landings = self.window().at(s).landings();
        let each = landings.cost(entries as f64 / pushes as f64)?;
        Some(expected_wait_ms(ahead, at_once, each))
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
            w.landed.iter().map(|l| l.count).sum(),
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

/// `ahead` pushes through `at_once` turns, each taking `each_ms`: what the hub can do, not
/// how much it was asked (a quiet hub that landed one push lately is not a slow one).
pub fn expected_wait_ms(ahead: u64, at_once: u64, each_ms: f64) -> u64 {
    let rounds = ahead.div_ceil(at_once.max(1)) as f64;
    let ms = (rounds * each_ms).ceil();
    if ms >= u64::MAX as f64 {
        u64::MAX
    } else {
        ms as u64
    }
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
        // Landings of 40 ms, 8 at once: 16 ahead is two rounds, 80 ms.
        assert_eq!(expected_wait_ms(16, 8, 40.0), 80);
        assert_eq!(expected_wait_ms(17, 8, 40.0), 120);
        // Fewer ahead than turns: one landing's time.
        assert_eq!(expected_wait_ms(1, 8, 30.0), 30);
        // 600 ahead of 8 turns at 400 ms: 30 s, far past any deadline.
        assert_eq!(expected_wait_ms(600, 8, 400.0), 30_000);
        assert_eq!(expected_wait_ms(u64::MAX, 1, 1.0), u64::MAX);
    }

    #[test]
    fn a_landing_costs_a_part_per_push_and_a_part_per_entry() {
        let fit = |landings: &[(u64, f64)]| {
            let mut l = Landings::default();
            for &(entries, ms) in landings {
                l.add(entries, ms);
            }
            l
        };
        // Nothing landed lately: unknown, not "forever".
        assert_eq!(Landings::default().cost(40.0), None);
        // All the same size: the mean, whatever the size asked about.
        let same = fit(&[(40, 30.0), (40, 50.0)]);
        assert_eq!(same.cost(40.0), Some(40.0));
        assert_eq!(same.cost(2_000.0), Some(40.0));
        // 40-entry pushes in 30 ms next to one store's 2,000-entry batch in 1,010 ms
        // (10 ms a push, 0.5 ms an entry): a 40-entry push is still about 30 ms, where the
        // mean of every landing would say 119 ms.
        let mut mixed = vec![(40, 30.0); 10];
        mixed.push((2_000, 1_010.0));
        let mixed = fit(&mixed);
        let small = mixed.cost(40.0).unwrap();
        assert!((29.0..31.0).contains(&small), "{small}");
        let big = mixed.cost(2_000.0).unwrap();
        assert!((1_009.0..1_011.0).contains(&big), "{big}");
        // Bigger pushes landing quicker (noise): the mean.
        let odd = fit(&[(10, 100.0), (1_000, 20.0)]);
        assert_eq!(odd.cost(10.0), Some(60.0));
        // A fit with no part per push: all of it per entry.
        let per_entry = fit(&[(10, 1.0), (20, 30.0)]);
        assert_eq!(per_entry.cost(15.0), Some(15.0 * 31.0 / 30.0));
    }

    #[test]
    fn what_waits_is_counted_while_it_waits() {
        let pace = Pace::default();
        pace.landed(std::time::Duration::from_millis(30), 40);
        pace.landed(std::time::Duration::from_millis(1_010), 2_000);
        // One 40-entry push waiting behind 8 turns: one landing of 40 entries.
        let one = pace.queued(40);
        assert_eq!(pace.expected_wait_ms(1, 8), Some(30));
        // With a 2,000-entry batch waiting too, the pushes ahead are as big as those two.
        let big = pace.queued(2_000);
        assert_eq!(pace.expected_wait_ms(2, 8), Some(520));
        drop((one, big));
        assert_eq!(pace.queued_pushes.load(Ordering::Relaxed), 0);
        assert_eq!(pace.queued_entries.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_window_forgets_what_is_older_than_two_seconds() {
        let counts = |w: &Window| w.landed.map(|l| l.count);
        let mut w = Window::default();
        for _ in 0..5 {
            w.at(0).landed[0].add(1, 1.0);
        }
        w.at(0).refused[0] += 1;
        for _ in 0..7 {
            w.at(1).landed[0].add(1, 1.0);
        }
        w.at(2).refused[0] += 2;
        assert_eq!(counts(&w), [0, 7, 5]);
        assert_eq!(w.refused, [2, 0, 1]);
        assert_eq!(w.landings().count, 12);
        w.at(3);
        assert_eq!(counts(&w), [0, 0, 7]);
        assert_eq!(w.refused, [0, 2, 0]);
        w.at(100);
        assert_eq!((counts(&w), w.refused), ([0; 3], [0; 3]));
        // A second seen again (or earlier, from a racing clock read) changes nothing.
        w.at(100).landed[0].add(1, 1.0);
        w.at(99);
        assert_eq!(counts(&w), [1, 0, 0]);
    }
}
