//! Capped exponential backoff with full jitter, honouring `Retry-After` (plus jitter, so a
//! fleet of stores told "10 s" does not come back in the same second).

use std::time::Duration;

use rand::Rng;

pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            attempt: 0,
        }
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The delay before the next attempt, drawn from the thread's rng.
    pub fn next_delay(&mut self, retry_after: Option<Duration>) -> Duration {
        self.next_delay_with(&mut rand::rng(), retry_after)
    }

    /// The delay before the next attempt, drawn from `rng`:
    /// - without `Retry-After` (or with `Retry-After: 0`): full jitter, uniform in
    ///   [0, min(cap, base·2^attempt)];
    /// - with `Retry-After` RA: uniform in [RA, 2·RA). Never earlier than asked, and as wide
    ///   as RA itself, the same rule as the breaker's hold: a fleet told "10 s" at the same
    ///   moment comes back spread over the next 10 s, about a tenth of it per second. Half
    ///   that width (the previous rule) put 23 % of the fleet in the busiest second
    ///   (`tests/fleet_politeness.rs`, breaker at half width).
    pub fn next_delay_with<R: Rng + ?Sized>(
        &mut self,
        rng: &mut R,
        retry_after: Option<Duration>,
    ) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        match retry_after.filter(|ra| !ra.is_zero()) {
            Some(ra) => ra + ra.mul_f64(rng.random_range(0.0..1.0)),
            None => ceiling.mul_f64(rng.random_range(0.0..=1.0)),
        }
    }
}

/// Parses `Retry-After` as delay-seconds (HTTP dates are not used by our upstreams).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    v.trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s.min(3600)))
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn full_jitter_under_the_cap_and_retry_after_never_early() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let first: Vec<_> = (0..4).map(|_| b.next_delay_with(&mut rng, None)).collect();
        for (i, d) in first.iter().enumerate() {
            assert!(*d <= Duration::from_millis(100 << i), "attempt {i}: {d:?}");
        }
        let mut low = Duration::MAX;
        for _ in 0..200 {
            let d = b.next_delay_with(&mut rng, None);
            assert!(d <= Duration::from_secs(2), "{d:?}");
            low = low.min(d);
        }
        assert!(
            low < Duration::from_millis(200),
            "full jitter reaches near zero"
        );
        let ra = Duration::from_secs(10);
        let (mut lo, mut hi) = (Duration::MAX, Duration::ZERO);
        for _ in 0..200 {
            let d = b.next_delay_with(&mut rng, Some(ra));
            assert!(d >= ra && d < ra * 2, "{d:?}");
            (lo, hi) = (lo.min(d), hi.max(d));
        }
        assert!(
            hi - lo > Duration::from_secs(8),
            "spread over RA: {lo:?}..{hi:?}"
        );
        assert!(
            b.next_delay(Some(ra)) >= ra,
            "the thread rng obeys the same policy"
        );
        b.reset();
        assert!(b.next_delay_with(&mut rng, Some(Duration::ZERO)) <= Duration::from_millis(100));
    }
}
