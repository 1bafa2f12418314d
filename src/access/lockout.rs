//! The lockout rule, as a plain function over plain data: after `limit` wrong PINs in a row
//! an employee id is locked for `lock_for`, whether or not the id exists (so a lockout says
//! nothing about who works here). While locked, even the right PIN is refused.
//!
//! An attempt is counted *before* its PIN is checked ([`reserve`], written in the same
//! transaction that read the count), and the attempt that reaches the limit sets the lock
//! then: so however many attempts arrive at once, at most `limit` are ever checked. A right
//! PIN clears the record (the caller deletes it).

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

/// The record with one more attempt counted at `now`, or the lock that refuses it unchecked.
pub fn reserve(
    f: Option<Failures>,
    now: DateTime<Utc>,
    limit: u32,
    lock_for: Duration,
) -> Result<Failures, DateTime<Utc>> {
    if let Gate::Locked(until) = gate(f, now) {
        return Err(until);
    }
    // A lock that has expired starts a fresh count.
    let previous = match f {
        Some(f) if f.locked_until.is_some_and(|u| u <= now) => 0,
        Some(f) => f.count,
        None => 0,
    };
    let count = previous + 1;
    Ok(Failures {
        count,
        locked_until: (count >= limit).then(|| now + lock_for),
    })
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
            f = Some(reserve(f, t0(), 5, lock).unwrap());
        }
        assert_eq!(reserve(f, t0(), 5, lock), Err(t0() + lock));
        assert_eq!(
            gate(f, t0() + Duration::minutes(29)),
            Gate::Locked(t0() + lock)
        );
        assert_eq!(gate(f, t0() + lock), Gate::Open);
        // After the lock, one more failure does not relock at once.
        let again = reserve(f, t0() + lock, 5, lock).unwrap();
        assert_eq!((again.count, again.locked_until), (1, None));
    }

    proptest! {
        /// Never locked before `limit` attempts, always locked right after; and of any number
        /// of attempts at once, exactly `limit` are let through to be checked.
        #[test]
        fn locks_exactly_at_the_limit(limit in 1u32..10, n in 0u32..20) {
            let mut f = None;
            let mut checked = 0;
            for _ in 0..n {
                if let Ok(next) = reserve(f, t0(), limit, Duration::minutes(30)) {
                    f = Some(next);
                    checked += 1;
                }
            }
            let locked = matches!(gate(f, t0()), Gate::Locked(_));
            prop_assert_eq!(locked, n >= limit);
            prop_assert_eq!(checked, n.min(limit));
        }
    }
}
