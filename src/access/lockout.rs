//! The lockout rule, as a plain function over plain data: after `limit` wrong PINs in a row
//! an employee id is locked for `lock_for`, whether or not the id exists (so a lockout says
//! nothing about who works here). While locked, even the right PIN is refused.

use chrono::{DateTime, Duration, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failures {
    pub count: u32,
    pub locked_until: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// The PIN may be checked.
    Open,
    /// Refused without checking, until then.
    Locked(DateTime<Utc>),
}

pub fn gate(f: Option<Failures>, now: DateTime<Utc>) -> Gate {
    match f.and_then(|f| f.locked_until) {
        Some(until) if until > now => Gate::Locked(until),
        _ => Gate::Open,
    }
}

/// The failure record after one more wrong PIN at `now`.
pub fn after_failure(
    f: Option<Failures>,
    now: DateTime<Utc>,
    limit: u32,
    lock_for: Duration,
) -> Failures {
    // A lock that has expired starts a fresh count.
    let previous = match f {
        Some(f) if f.locked_until.is_some_and(|u| u <= now) => 0,
        Some(f) => f.count,
        None => 0,
    };
    let count = previous + 1;
    Failures {
        count,
        locked_until: (count >= limit).then(|| now + lock_for),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn the_fifth_failure_locks_for_thirty_minutes_then_it_lifts() {
        let lock = Duration::minutes(30);
        let mut f = None;
        for i in 0..5 {
            assert_eq!(gate(f, t0()), Gate::Open, "attempt {}", i + 1);
            f = Some(after_failure(f, t0(), 5, lock));
        }
        assert_eq!(
            gate(f, t0() + Duration::minutes(29)),
            Gate::Locked(t0() + lock)
        );
        assert_eq!(gate(f, t0() + lock), Gate::Open);
        // After the lock, one more failure does not relock at once.
        let again = after_failure(f, t0() + lock, 5, lock);
        assert_eq!((again.count, again.locked_until), (1, None));
    }

    proptest! {
        /// Never locked before `limit` consecutive failures, always locked right after.
        #[test]
        fn locks_exactly_at_the_limit(limit in 1u32..10, n in 0u32..20) {
            let mut f = None;
            for _ in 0..n {
                f = Some(after_failure(f, t0(), limit, Duration::minutes(30)));
            }
            let locked = matches!(gate(f, t0()), Gate::Locked(_));
            prop_assert_eq!(locked, n >= limit);
        }
    }
}
