//! Per-upstream health as status shows it: up, degraded or down, and since when.
//!
//! A single failure marks an upstream `degraded`; three in a row mark it `down`; one success
//! brings it back `up`. The consecutive-failure threshold keeps one dropped connection from
//! flapping the banner at the service desk.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Upstream;

const DOWN_AFTER: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    /// Not heard from yet (just started, or not configured).
    Unknown,
    Up,
    Degraded,
    Down,
}

#[derive(Debug, Clone, Serialize)]
pub struct Health {
    pub configured: bool,
    pub state: HealthState,
    pub since: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_success: Option<DateTime<Utc>>,
    pub consecutive_failures: u32,
}

pub struct Upstreams {
    inner: Mutex<HashMap<Upstream, Health>>,
}

impl Upstreams {
    pub fn new(configured: impl Fn(Upstream) -> bool, now: DateTime<Utc>) -> Self {
        let map = Upstream::ALL
            .into_iter()
            .map(|u| {
                let h = Health {
                    configured: configured(u),
                    state: HealthState::Unknown,
                    since: now,
                    last_error: None,
                    last_success: None,
                    consecutive_failures: 0,
                };
                (u, h)
            })
            .collect();
        Self {
            inner: Mutex::new(map),
        }
    }

    /// Records the outcome of one exchange with `which`.
    pub fn report(&self, which: Upstream, outcome: Result<(), String>, now: DateTime<Utc>) {
        let Ok(mut map) = self.inner.lock() else {
            return;
        };
        let Some(h) = map.get_mut(&which) else { return };
        let next = match &outcome {
            Ok(()) => HealthState::Up,
            Err(_) if h.consecutive_failures + 1 >= DOWN_AFTER => HealthState::Down,
            Err(_) => match h.state {
                HealthState::Down => HealthState::Down,
                _ => HealthState::Degraded,
            },
        };
        match outcome {
            Ok(()) => {
                h.consecutive_failures = 0;
                h.last_success = Some(now);
            }
            Err(e) => {
                h.consecutive_failures += 1;
                h.last_error = Some(e);
            }
        }
        if next != h.state {
            tracing::info!(upstream = which.as_str(), from = ?h.state, to = ?next, "upstream state changed");
            h.state = next;
            h.since = now;
        }
    }

    pub fn get(&self, which: Upstream) -> Option<Health> {
        self.inner.lock().ok()?.get(&which).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_failures_mean_down_and_one_success_means_up() {
        let t0 = Utc::now();
        let u = Upstreams::new(|_| true, t0);
        let st = || u.get(Upstream::Central).unwrap().state;
        assert_eq!(st(), HealthState::Unknown);
        u.report(Upstream::Central, Err("x".into()), t0);
        assert_eq!(st(), HealthState::Degraded);
        u.report(Upstream::Central, Err("x".into()), t0);
        u.report(Upstream::Central, Err("x".into()), t0);
        assert_eq!(st(), HealthState::Down);
        assert_eq!(
            u.get(Upstream::Payments).unwrap().state,
            HealthState::Unknown,
            "bulkhead"
        );
        let t1 = t0 + chrono::Duration::seconds(5);
        u.report(Upstream::Central, Ok(()), t1);
        let h = u.get(Upstream::Central).unwrap();
        assert_eq!((h.state, h.since), (HealthState::Up, t1));
    }
}
