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

    /// The delay before the next attempt. With `retry_after`, at least that long plus up to
    /// half of it again at random; otherwise uniform in [0, min(cap, base·2^attempt)].
    pub fn next_delay(&mut self, retry_after: Option<Duration>) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        let mut rng = rand::rng();
        match retry_after {
            Some(ra) => ra + ra.mul_f64(rng.random_range(0.0..0.5)),
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
    use super::*;

    #[test]
    fn delays_stay_under_the_cap_and_respect_retry_after() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        for _ in 0..50 {
            assert!(b.next_delay(None) <= Duration::from_secs(2));
        }
        for _ in 0..50 {
            let d = b.next_delay(Some(Duration::from_secs(10)));
            assert!(
                d >= Duration::from_secs(10) && d <= Duration::from_secs(15),
                "{d:?}"
            );
        }
    }
}
