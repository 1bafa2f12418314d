//! Per-upstream health as status shows it, and the circuit breaker every caller of that
//! upstream shares (one per upstream: bulkheads).
//!
//! Status reads the breaker: `up` while it is closed and the last exchange succeeded,
//! `degraded` while closed after a failure or half-open, `down` while open, `unknown` until
//! the upstream has been heard from. The failure threshold (3 by default) keeps one dropped
//! connection or timeout from flapping the banner at the service desk; a refused connection
//! opens the breaker at once (see [`super::breaker`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::Serialize;

use super::breaker::{Breaker, BreakerConfig, BreakerState, Outcome};
use super::{Failure, Upstream};

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
    /// When `state` last changed.
    pub since: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_success: Option<DateTime<Utc>>,
    pub consecutive_failures: u32,
    pub breaker: BreakerState,
    /// While the breaker holds traffic back (open, or a `Retry-After`): when it lets a
    /// request through again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<DateTime<Utc>>,
}

struct Entry {
    health: Health,
    breaker: Breaker,
    /// Whether a connection refused opens the breaker at once ([`Failure::unreachable`]):
    /// central's does, so a fleet finds a dead central with one request per store. The
    /// processor's does not: there an open breaker turns a lane's payments into offline
    /// approvals (money at risk) for 5–15 s ([`BreakerConfig::processor`]), while a kiosk paying into a refused connection
    /// is already decided by stand-in within milliseconds, so the threshold costs nothing.
    opens_when_unreachable: bool,
}

pub struct Upstreams {
    inner: Mutex<HashMap<Upstream, Entry>>,
    /// Per upstream (indexed by `Upstream as usize`): woken when the upstream answers a
    /// request its breaker let through while holding traffic back ([`Upstreams::eased`]).
    eased: [tokio::sync::Notify; Upstream::ALL.len()],
}

impl Upstreams {
    /// Central's breaker with the fleet's policy ([`BreakerConfig::default`]), the
    /// processor's with its own ([`BreakerConfig::processor`]).
    pub fn new(configured: impl Fn(Upstream) -> bool, now: DateTime<Utc>) -> Self {
        Self::with_breakers(
            configured,
            |u| match u {
                Upstream::Central => BreakerConfig::default(),
                Upstream::Payments => BreakerConfig::processor(),
            },
            rand::rng().random(),
            now,
        )
    }

    /// With one breaker policy for every upstream and a jitter seed (simulations and tests).
    pub fn with_breaker(
        configured: impl Fn(Upstream) -> bool,
        cfg: BreakerConfig,
        seed: u64,
        now: DateTime<Utc>,
    ) -> Self {
        Self::with_breakers(configured, |_| cfg, seed, now)
    }

    fn with_breakers(
        configured: impl Fn(Upstream) -> bool,
        cfg: impl Fn(Upstream) -> BreakerConfig,
        seed: u64,
        now: DateTime<Utc>,
    ) -> Self {
        let map = Upstream::ALL
            .into_iter()
            .enumerate()
            .map(|(i, u)| {
                let health = Health {
                    configured: configured(u),
                    state: HealthState::Unknown,
                    since: now,
                    last_error: None,
                    last_success: None,
                    consecutive_failures: 0,
                    breaker: BreakerState::Closed,
                    retry_at: None,
                };
                let breaker = Breaker::new(cfg(u), seed.wrapping_add(i as u64), now);
                let opens_when_unreachable = u == Upstream::Central;
                (
                    u,
                    Entry {
                        health,
                        breaker,
                        opens_when_unreachable,
                    },
                )
            })
            .collect();
        Self {
            inner: Mutex::new(map),
            eased: std::array::from_fn(|_| tokio::sync::Notify::new()),
        }
    }

    /// Completes when `which` next answers a request while its breaker was holding traffic
    /// back (open, half-open, or gated by a `Retry-After`) and that hold had run out (a
    /// request sent before a `Retry-After` and answered during it does not cut the wait
    /// short for the others): the moment a caller sleeping on
    /// the breaker should ask `permit` again rather than wait out its timer. The health
    /// probe is usually that request after an outage; without this the journal's uplink,
    /// asleep for up to `journal.idle_poll_ms`, started the backlog up to a second later,
    /// and a fleet's stores each sent in two seconds of the recovery instead of one (`cargo
    /// bench --bench fleet`). Create it (and `enable` it) before reading the breaker, so an
    /// answer in between is not missed; a wake-up is a hint, never a permit.
    pub fn eased(&self, which: Upstream) -> tokio::sync::futures::Notified<'_> {
        self.eased[which as usize].notified()
    }

    /// May a request to `which` go now? Ask before every request and report its outcome
    /// after: while the breaker is half-open (or holding for a `Retry-After`) a yes lets
    /// exactly one request through until its outcome is reported.
    pub fn permit(&self, which: Upstream, now: DateTime<Utc>) -> bool {
        // A poisoned lock means a panic elsewhere; sending is safer than stalling forever.
        let Ok(mut map) = self.inner.lock() else {
            return true;
        };
        let Some(e) = map.get_mut(&which) else {
            return true;
        };
        let yes = e.breaker.permit(now);
        e.refresh(which, now);
        yes
    }

    /// How long a caller that would otherwise wait `idle` between attempts should sleep
    /// before asking `permit` again: `idle` while the breaker lets traffic through, never
    /// past the moment it will next say yes, zero when it would say yes now.
    ///
    /// After a failure, sleep `next_permit_in(which, now, backoff.next_delay(retry_after))`
    /// rather than the backoff and then the breaker's hold: two independent jitters stacked
    /// bunch the fleet at the far end of the window (22 % of stores in one second instead
    /// of 11 %, `tests/fleet_politeness.rs`).
    pub fn next_permit_in(&self, which: Upstream, now: DateTime<Utc>, idle: Duration) -> Duration {
        let Some(b) = self
            .inner
            .lock()
            .ok()
            .and_then(|m| m.get(&which).map(|e| e.breaker.clone()))
        else {
            return idle;
        };
        match b.next_attempt_at() {
            None if b.state() == BreakerState::Closed => idle,
            None => Duration::ZERO,
            Some(at) => (at - now).to_std().unwrap_or(Duration::ZERO).min(idle),
        }
    }

    /// Records the outcome of one exchange with `which` (a failure without `Retry-After`).
    pub fn report(&self, which: Upstream, outcome: Result<(), String>, now: DateTime<Utc>) {
        match outcome {
            Ok(()) => self.record(which, None, Outcome::Success, false, now),
            Err(e) => self.report_failure(which, Failure::answered(e, None), now),
        }
    }

    /// Records a failed exchange with `which` that carried `Retry-After` (if any): the
    /// breaker then holds every caller of `which` back at least that long.
    pub fn report_failure_retry_after(
        &self,
        which: Upstream,
        error: String,
        retry_after: Option<Duration>,
        now: DateTime<Utc>,
    ) {
        self.report_failure(which, Failure::answered(error, retry_after), now);
    }

    /// Records a failed exchange with `which`, as [`Failure`] describes it.
    pub fn report_failure(&self, which: Upstream, failure: Failure, now: DateTime<Utc>) {
        let outcome = Outcome::Failure {
            retry_after: failure.retry_after,
        };
        let unreachable = failure.unreachable;
        self.record(which, Some(failure.error), outcome, unreachable, now);
    }

    fn record(
        &self,
        which: Upstream,
        error: Option<String>,
        outcome: Outcome,
        unreachable: bool,
        now: DateTime<Utc>,
    ) {
        let Ok(mut map) = self.inner.lock() else {
            return;
        };
        let Some(e) = map.get_mut(&which) else { return };
        let outcome = if unreachable && e.opens_when_unreachable {
            Outcome::Unreachable
        } else {
            outcome
        };
        let held = e.breaker.holds_back() && e.breaker.held_until().is_none_or(|u| now >= u);
        if !e.breaker.record(outcome, now) {
            return;
        }
        let h = &mut e.health;
        match error {
            None => {
                h.consecutive_failures = 0;
                h.last_success = Some(now);
            }
            Some(msg) => {
                h.consecutive_failures = h.consecutive_failures.saturating_add(1);
                h.last_error = Some(msg);
            }
        }
        e.refresh(which, now);
        if held && outcome == Outcome::Success {
            self.eased[which as usize].notify_waiters();
        }
    }

    pub fn get(&self, which: Upstream) -> Option<Health> {
        self.inner
            .lock()
            .ok()?
            .get(&which)
            .map(|e| e.health.clone())
    }
}

impl Entry {
    /// Brings the status view in line with the breaker after an event.
    fn refresh(&mut self, which: Upstream, now: DateTime<Utc>) {
        let h = &mut self.health;
        let heard = h.last_success.is_some() || h.last_error.is_some();
        let next = match self.breaker.state() {
            _ if !heard => HealthState::Unknown,
            BreakerState::Open => HealthState::Down,
            BreakerState::HalfOpen => HealthState::Degraded,
            BreakerState::Closed if h.consecutive_failures > 0 => HealthState::Degraded,
            BreakerState::Closed => HealthState::Up,
        };
        if self.breaker.state() != h.breaker {
            tracing::info!(upstream = which.as_str(), from = ?h.breaker, to = ?self.breaker.state(), "circuit breaker changed");
            h.breaker = self.breaker.state();
        }
        h.retry_at = self.breaker.held_until();
        if next != h.state {
            tracing::info!(upstream = which.as_str(), from = ?h.state, to = ?next, "upstream state changed");
            h.state = next;
            h.since = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_failures_mean_down_and_two_successes_mean_up() {
        let t0 = Utc::now();
        let u = Upstreams::new(|_| true, t0);
        let st = || u.get(Upstream::Central).unwrap();
        assert_eq!(st().state, HealthState::Unknown);
        u.report(Upstream::Central, Err("x".into()), t0);
        assert_eq!(st().state, HealthState::Degraded);
        u.report(Upstream::Central, Err("x".into()), t0);
        u.report(Upstream::Central, Err("x".into()), t0);
        let h = st();
        assert_eq!(
            (h.state, h.breaker),
            (HealthState::Down, BreakerState::Open)
        );
        let retry_at = h.retry_at.expect("open shows when it retries");
        assert!(retry_at >= t0 + chrono::Duration::seconds(5), "{retry_at}");
        assert!(!u.permit(Upstream::Central, t0), "open: nothing goes");
        assert_eq!(
            u.next_permit_in(Upstream::Central, t0, Duration::from_secs(60)),
            (retry_at - t0).to_std().unwrap()
        );
        assert_eq!(
            u.get(Upstream::Payments).unwrap().state,
            HealthState::Unknown,
            "bulkhead"
        );
        assert!(u.permit(Upstream::Payments, t0), "bulkhead");

        assert!(u.permit(Upstream::Central, retry_at), "the half-open probe");
        assert_eq!(st().state, HealthState::Degraded);
        assert!(
            !u.permit(Upstream::Central, retry_at),
            "one probe at a time"
        );
        u.report(Upstream::Central, Ok(()), retry_at);
        assert_eq!(st().breaker, BreakerState::HalfOpen);
        assert_eq!(
            u.next_permit_in(Upstream::Central, retry_at, Duration::from_secs(5)),
            Duration::ZERO
        );
        let t1 = retry_at + chrono::Duration::seconds(1);
        assert!(u.permit(Upstream::Central, t1));
        u.report(Upstream::Central, Ok(()), t1);
        let h = st();
        assert_eq!(
            (h.state, h.since, h.breaker, h.retry_at),
            (HealthState::Up, t1, BreakerState::Closed, None)
        );
    }

    #[test]
    fn a_refused_connection_means_down_at_once() {
        let t0 = Utc::now();
        let u = Upstreams::new(|_| true, t0);
        let refused = || Failure::unreachable("connection refused or unreachable");
        u.report_failure(Upstream::Central, refused(), t0);
        let h = u.get(Upstream::Central).unwrap();
        assert_eq!(
            (h.state, h.breaker, h.consecutive_failures),
            (HealthState::Down, BreakerState::Open, 1)
        );
        assert!(!u.permit(Upstream::Central, t0));
        // A request sent before the refusal, answered as the old process stops: no evidence
        // of one listening, so no half-open probe at a hub that is gone.
        u.report(
            Upstream::Central,
            Ok(()),
            t0 + chrono::Duration::milliseconds(300),
        );
        let h = u.get(Upstream::Central).unwrap();
        assert_eq!(
            (h.state, h.breaker, h.consecutive_failures, h.last_success),
            (HealthState::Down, BreakerState::Open, 1, None),
            "nor does the status say central answered"
        );
        assert!(!u.permit(Upstream::Central, t0 + chrono::Duration::seconds(1)));
        assert!(u.permit(Upstream::Payments, t0), "bulkhead");
        u.report_failure(Upstream::Payments, refused(), t0);
        let h = u.get(Upstream::Payments).unwrap();
        assert_eq!(
            (h.state, h.breaker),
            (HealthState::Degraded, BreakerState::Closed),
            "the processor's breaker keeps its threshold: open means offline approvals"
        );
    }

    /// Whether an enabled [`Upstreams::eased`] future has been woken.
    fn woken(n: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>) -> bool {
        use std::future::Future;
        use std::task::{Context, Waker};
        n.poll(&mut Context::from_waker(Waker::noop())).is_ready()
    }

    #[test]
    fn an_answer_while_held_back_wakes_the_callers_waiting_on_the_breaker() {
        let t0 = Utc::now();
        let u = Upstreams::with_breaker(|_| true, BreakerConfig::default(), 5, t0);
        let mut n = std::pin::pin!(u.eased(Upstream::Central));
        n.as_mut().enable();
        u.report(Upstream::Central, Ok(()), t0);
        u.report(Upstream::Central, Err("HTTP 500".into()), t0);
        assert!(!woken(n.as_mut()), "closed: nothing was held back");

        u.report_failure(
            Upstream::Central,
            Failure::unreachable("connection refused"),
            t0,
        );
        let at = u.get(Upstream::Central).unwrap().retry_at.unwrap();
        assert!(u.permit(Upstream::Central, at), "the half-open probe");
        let mut other = std::pin::pin!(u.eased(Upstream::Payments));
        other.as_mut().enable();
        u.report(Upstream::Central, Err("timeout".into()), at);
        assert!(!woken(n.as_mut()), "a failed probe eases nothing");
        let at = u.get(Upstream::Central).unwrap().retry_at.unwrap();
        assert!(u.permit(Upstream::Central, at));
        u.report(Upstream::Central, Ok(()), at);
        assert!(woken(n.as_mut()), "the probe's answer wakes the uplink");
        assert!(
            !woken(other.as_mut()),
            "bulkhead: the processor's waiters sleep on"
        );

        // Gated by a `Retry-After`: the one request let through answering wakes the rest.
        assert!(u.permit(Upstream::Central, at));
        u.report(Upstream::Central, Ok(()), at);
        assert_eq!(
            u.get(Upstream::Central).unwrap().breaker,
            BreakerState::Closed
        );
        let mut n = std::pin::pin!(u.eased(Upstream::Central));
        n.as_mut().enable();
        u.report(Upstream::Central, Ok(()), at);
        assert!(!woken(n.as_mut()), "closed again");
        u.report_failure_retry_after(
            Upstream::Central,
            "HTTP 503".into(),
            Some(Duration::from_secs(2)),
            at,
        );
        let held = u.get(Upstream::Central).unwrap().retry_at.unwrap();
        assert!(u.permit(Upstream::Central, held));
        u.report(Upstream::Central, Ok(()), held);
        assert!(woken(n.as_mut()));
    }

    #[test]
    fn the_processors_breaker_keeps_its_short_first_wait() {
        // Central's first wait is spread over 15 s for the fleet; the processor's over 10 s,
        // since its open breaker means offline approvals.
        let mut central_late = 0;
        for _ in 0..200 {
            let t0 = Utc::now();
            let u = Upstreams::new(|_| true, t0);
            u.report_failure(Upstream::Central, Failure::unreachable("refused"), t0);
            for _ in 0..3 {
                u.report(Upstream::Payments, Err("timeout".into()), t0);
            }
            let wait = |w: Upstream| (u.get(w).unwrap().retry_at.unwrap() - t0).to_std().unwrap();
            let (c, p) = (wait(Upstream::Central), wait(Upstream::Payments));
            assert!(
                c >= Duration::from_secs(5) && c < Duration::from_secs(20),
                "{c:?}"
            );
            assert!(
                p >= Duration::from_secs(5) && p < Duration::from_secs(15),
                "{p:?}"
            );
            central_late += usize::from(c >= Duration::from_secs(15));
        }
        assert!(
            central_late >= 20,
            "{central_late} of 200 central waits past 15 s"
        );
    }

    #[test]
    fn an_answer_to_a_request_sent_before_a_hold_does_not_wake_the_callers() {
        let t0 = Utc::now();
        let u = Upstreams::with_breaker(|_| true, BreakerConfig::default(), 8, t0);
        u.report_failure_retry_after(
            Upstream::Central,
            "HTTP 503".into(),
            Some(Duration::from_secs(10)),
            t0,
        );
        let mut n = std::pin::pin!(u.eased(Upstream::Central));
        n.as_mut().enable();
        // A heartbeat sent before the 503 comes back fine a second later.
        u.report(Upstream::Central, Ok(()), t0 + chrono::Duration::seconds(1));
        assert!(
            !woken(n.as_mut()),
            "the uplink sleeps out the Retry-After it computed"
        );
    }

    #[test]
    fn retry_after_holds_every_caller_back() {
        let t0 = Utc::now();
        let u = Upstreams::with_breaker(|_| true, BreakerConfig::default(), 9, t0);
        u.report_failure_retry_after(
            Upstream::Central,
            "HTTP 503".into(),
            Some(Duration::from_secs(10)),
            t0,
        );
        let h = u.get(Upstream::Central).unwrap();
        assert_eq!(
            (h.state, h.breaker),
            (HealthState::Degraded, BreakerState::Closed)
        );
        let at = h.retry_at.unwrap();
        assert!(
            at >= t0 + chrono::Duration::seconds(10) && at < t0 + chrono::Duration::seconds(20)
        );
        assert!(!u.permit(Upstream::Central, at - chrono::Duration::milliseconds(1)));
        assert!(u.permit(Upstream::Central, at));
        assert!(
            !u.permit(Upstream::Central, at),
            "one at a time until one succeeds"
        );
        u.report(Upstream::Central, Ok(()), at);
        assert!(u.permit(Upstream::Central, at) && u.permit(Upstream::Central, at));
        assert_eq!(u.get(Upstream::Central).unwrap().state, HealthState::Up);
    }
}
