//! The per-upstream circuit breaker: a pure state machine over outcomes and time.
//!
//! No clock reads and no I/O: time comes in as arguments, and the jitter comes from a small
//! rng seeded at construction, so a sequence of events always gives the same answers.
//!
//! - **Closed**: traffic flows. `failure_threshold` consecutive failures open it, or one
//!   failure to connect at all ([`Outcome::Unreachable`]: refused, no route; central only,
//!   see [`super::Upstreams`]). Nothing is listening then, so there is nothing to learn
//!   from asking twice more, and a store that retried its way to the threshold sent central
//!   three requests in its first second of an outage instead of one (`cargo bench --bench
//!   fleet`, 2026-12-06: 35 % of the fleet in the outage's second second). A dropped
//!   connection or a timeout still needs the threshold: those happen to a live server on a
//!   flaky link. A failure carrying `Retry-After` does not open it early (one 503 is not
//!   an outage), but it does hold *every* caller of this upstream back until `Retry-After`
//!   plus jitter, then lets one request through at a time until one succeeds. The breaker
//!   is the one place all callers share, so the health probe and the workers honour the
//!   same `Retry-After` together instead of each coming back on its own schedule.
//! - **Open**: nothing is sent until `until` = W + max(W, `open_spread_min`)·U[0,1), where W
//!   is the larger of `Retry-After` and `open_base`·2^(times opened in a row − 1) capped at
//!   `open_cap`. The jitter is as wide as W itself and never narrower than
//!   `open_spread_min`: a nationwide outage opens every store's breaker within the same
//!   second or two, and a first wait of 5 s spread over only 5 s put a fifth of the fleet in
//!   each second of the first retry wave (`cargo bench --bench fleet`, 2026-12-06: 19–20 %);
//!   spread over 15 s it is a fifteenth. One exception keeps a long outage both polite and short:
//!   once W is the cap and a half-open probe got no answer at all, the jitter is only
//!   `phase_jitter`·W, so each store keeps the moment its earlier wide waits gave it, the
//!   fleet's probes stay uniform over the period, and every store finds central back within
//!   one period of its return (see [`BreakerConfig::default`]).
//! - **HalfOpen**: one probe at a time; `success_threshold` successes close it, any failure
//!   opens it again: with a longer wait, or, when the answer carried `Retry-After` (the
//!   upstream answered: it is back, only busy), for that `Retry-After` with the same jitter.
//!
//! Outcomes reported by callers that did not ask `permit` (an unsolicited success while
//! Open, say) still count: a success is evidence the upstream answers, so it moves Open to
//! HalfOpen; a failure while Open only ever pushes `until` later, by its `Retry-After`.
//! Except after a refused connection: Open lets nothing through, so a success while it is
//! open answers a request sent before the refusal, and once nothing was listening that is
//! the old process finishing its work as it stopped, not evidence of one listening again.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure {
        retry_after: Option<Duration>,
    },
    /// No connection could be made (refused, no route): opens a closed breaker at once.
    Unreachable,
}

#[derive(Debug, Clone, Copy)]
pub struct BreakerConfig {
    pub failure_threshold: u32,
    pub success_threshold: u32,
    pub open_base: Duration,
    pub open_cap: Duration,
    /// The open wait's jitter is at least this wide (see the module's comment).
    pub open_spread_min: Duration,
    /// Once the wait is at `open_cap` and a half-open probe got no answer at all, the next
    /// wait is `open_cap` plus at most this share of it: the store keeps the phase its
    /// earlier, widely spread waits gave it (see the module's comment).
    pub phase_jitter: f64,
    /// A single request let through that never reports back (its task was cancelled) is
    /// given up on after this long, so the breaker cannot wedge shut.
    pub probe_timeout: Duration,
}

impl Default for BreakerConfig {
    /// A store whose breaker stays open probes central once every 15–16.5 s, each store at
    /// its own moment of those 15 s: 5,000 stores are then about 320 probes a second, 6–7 %
    /// of the fleet in any second (a hub is promised at most 15 %), and every store finds
    /// central back within 16.5 s of its return once its wait is at the cap (an outage of
    /// about 45 s or more; a probe that times out rather than being refused adds its
    /// timeout to each period).
    ///
    /// The moments are spread by the first wait: 5 s plus up to 15 s, so a fleet opened in
    /// the same second is uniform over 15 s, exactly one period. Any later wait keeps that
    /// (a phase uniform over the period plus any delay is still uniform over it), and once
    /// the wait is the cap and a probe found nothing, it is the cap plus at most a tenth
    /// (`phase_jitter`), so the last store is at most one period away.
    ///
    /// Measured with `cargo bench --bench fleet` (2026-12-06 and 07):
    /// - the earlier rule drew every wait at the cap from 15–30 s: about 4.4 % of the fleet a
    ///   second, but the last stores found central back 30 s after its return, and the drain
    ///   was that wait (30 s for 200,000 entries PostgreSQL lands in 5 s);
    /// - a 10 s cap with waits of 10–20 s found it in 20 s, but put 15.5–17.8 % of the fleet
    ///   in the recovery's busiest second (before an answered probe woke the uplink);
    /// - a 10 s period kept as here found it in 11 s, but 500 stores a second coming back,
    ///   four pushes each, were more than the bench's hub could land on 2 cores: 3,703
    ///   answered `busy`, intake p50 320 ms, 28 % of the fleet in the recovery's busiest
    ///   second, and a 32 s drain. A period that brings stores back faster than the hub
    ///   lands them only moves the wait from the breaker to `Retry-After`.
    ///
    /// A store that heard an answer and then failed again (central flapping: back for a
    /// moment, then gone) is not keeping a phase: it re-spreads over the full width, so a
    /// flap does not leave a clump of stores probing in the same second ever after.
    fn default() -> Self {
        Self {
            failure_threshold: 3,
            success_threshold: 2,
            open_base: Duration::from_secs(5),
            open_cap: Duration::from_secs(15),
            open_spread_min: Duration::from_secs(15),
            phase_jitter: 0.1,
            probe_timeout: Duration::from_secs(60),
        }
    }
}

impl BreakerConfig {
    /// The payment processor's breaker: the policy central's had before 2026-12-07 (first
    /// wait 5 s plus up to 10 s, then 10–20 s, then 15–30 s, drawn afresh each time). While
    /// it is open a lane's card payments are approved offline (money at risk), so the first
    /// wait stays short; the fleet-wide spread and kept phase of [`BreakerConfig::default`]
    /// are for central, which every store of the fleet probes at once.
    pub fn processor() -> Self {
        Self {
            open_spread_min: Duration::from_secs(10),
            phase_jitter: 1.0,
            ..Self::default()
        }
    }
}

/// `Retry-After` beyond this is taken as this: keeps the time arithmetic finite.
const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone)]
pub struct Breaker {
    cfg: BreakerConfig,
    rng: StdRng,
    state: BreakerState,
    since: DateTime<Utc>,
    /// Consecutive failures while Closed.
    failures: u32,
    /// Times opened without closing in between.
    opened: u32,
    /// Consecutive successes since leaving Open.
    successes: u32,
    /// Whether the upstream has answered anything (a success, a `Retry-After`) since the
    /// breaker last opened: a probe failing after that is a flap, not the same outage.
    answered: bool,
    /// Open because a connection was refused: nothing was listening. Open lets nothing
    /// through, so a success arriving now answers a request sent before that: the old
    /// process finishing its work as it stopped, not one listening again. It does not
    /// half-open the breaker (`cargo bench --bench fleet`, 2026-12-07: such answers
    /// half-opened 7 % of the fleet in the outage's first second, each store then probing
    /// a hub that was gone).
    nobody_listening: bool,
    /// Open: when a half-open probe may go. Closed: a `Retry-After` hold.
    until: Option<DateTime<Utc>>,
    /// Closed only: after a `Retry-After`, one request at a time until one succeeds.
    gated: bool,
    /// When the single request allowed in HalfOpen (or gated Closed) was let through.
    probe: Option<DateTime<Utc>>,
}

impl Breaker {
    pub fn new(cfg: BreakerConfig, seed: u64, now: DateTime<Utc>) -> Self {
        Self {
            cfg,
            rng: StdRng::seed_from_u64(seed),
            state: BreakerState::Closed,
            since: now,
            failures: 0,
            opened: 0,
            successes: 0,
            answered: false,
            nobody_listening: false,
            until: None,
            gated: false,
            probe: None,
        }
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// When the state last changed.
    pub fn since(&self) -> DateTime<Utc> {
        self.since
    }

    pub fn config(&self) -> &BreakerConfig {
        &self.cfg
    }

    /// Whether traffic is held back at all: open, half-open (one request at a time), or
    /// closed but gated by a `Retry-After`.
    pub fn holds_back(&self) -> bool {
        self.state != BreakerState::Closed || self.gated
    }

    /// Consecutive failures while Closed (reset when it opens or a request succeeds).
    pub fn closed_failures(&self) -> u32 {
        self.failures
    }

    /// Open: when the half-open probe may go; Closed: the end of a `Retry-After` hold.
    pub fn held_until(&self) -> Option<DateTime<Utc>> {
        self.until
    }

    /// `None` when traffic is not held back; otherwise the earliest time `permit` may say
    /// yes again (it may be in the past: then it will).
    pub fn next_attempt_at(&self) -> Option<DateTime<Utc>> {
        let single_flight = self.state == BreakerState::HalfOpen || self.gated;
        let in_flight = self
            .probe
            .filter(|_| single_flight)
            .map(|p| p + chrono_duration(self.cfg.probe_timeout));
        match (self.until, in_flight) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// May a request go now? In HalfOpen (and gated Closed) a yes marks the single request
    /// in flight until its outcome is recorded.
    pub fn permit(&mut self, now: DateTime<Utc>) -> bool {
        match self.state {
            BreakerState::Closed if !self.gated => true,
            BreakerState::Open => {
                if self.until.is_some_and(|u| now < u) {
                    return false;
                }
                self.enter(BreakerState::HalfOpen, now);
                self.probe = Some(now);
                true
            }
            BreakerState::Closed | BreakerState::HalfOpen => {
                let held = self.until.is_some_and(|u| now < u);
                let busy = self
                    .probe
                    .is_some_and(|p| now < p + chrono_duration(self.cfg.probe_timeout));
                if held || busy {
                    return false;
                }
                self.probe = Some(now);
                true
            }
        }
    }

    /// Records `outcome`; false when it says nothing about the upstream now (a success
    /// answering a request sent before nothing was listening), so callers keep their own
    /// view of it unchanged too.
    pub fn record(&mut self, outcome: Outcome, now: DateTime<Utc>) -> bool {
        if self.state == BreakerState::Open && self.nobody_listening && outcome == Outcome::Success
        {
            return false;
        }
        self.probe = None;
        match (self.state, outcome) {
            (BreakerState::Closed, Outcome::Success) => {
                self.failures = 0;
                self.gated = false;
                self.until = None;
            }
            (BreakerState::Open | BreakerState::HalfOpen, Outcome::Success) => {
                self.answered = true;
                if self.state == BreakerState::Open {
                    self.enter(BreakerState::HalfOpen, now);
                }
                self.successes += 1;
                if self.successes >= self.cfg.success_threshold {
                    self.enter(BreakerState::Closed, now);
                }
            }
            (BreakerState::Closed, Outcome::Unreachable) => {
                self.open(now, None);
                self.nobody_listening = true;
            }
            (BreakerState::HalfOpen, Outcome::Unreachable) => {
                self.reopen(now);
                self.nobody_listening = true;
            }
            (BreakerState::Open, Outcome::Unreachable) => {}
            (BreakerState::Closed, Outcome::Failure { retry_after }) => {
                self.failures += 1;
                if self.failures >= self.cfg.failure_threshold {
                    self.open(now, retry_after);
                } else if let Some(ra) = retry_after {
                    let hold = now + chrono_duration(self.jittered(ra));
                    self.until = Some(self.until.map_or(hold, |u| u.max(hold)));
                    self.gated = true;
                }
            }
            (BreakerState::Open, Outcome::Failure { retry_after }) => {
                if let Some(ra) = retry_after {
                    self.answered = true;
                    let hold = now + chrono_duration(self.jittered(ra));
                    self.until = Some(self.until.map_or(hold, |u| u.max(hold)));
                }
            }
            (
                BreakerState::HalfOpen,
                Outcome::Failure {
                    retry_after: Some(ra),
                },
            ) => {
                // It answered, and said when to come back: alive but busy (or its own
                // upstream is away). Its `Retry-After` is the wait, not a longer escalated
                // one: a fleet whose half-open probes met a busy hub went dark for 15–30 s
                // each and drained for a minute after the rest (`cargo bench --bench fleet`).
                self.open_for(now, ra);
            }
            (BreakerState::HalfOpen, Outcome::Failure { retry_after: None }) => self.reopen(now),
        }
        true
    }

    fn open(&mut self, now: DateTime<Utc>, retry_after: Option<Duration>) {
        self.open_with(now, retry_after, false);
    }

    /// Open again after a half-open failure without `Retry-After`. When nothing has answered
    /// since it opened (the probe itself failed) and the wait has reached the cap, the wait is
    /// the cap plus at most `phase_jitter` of it: the store keeps its phase.
    fn reopen(&mut self, now: DateTime<Utc>) {
        let unanswered = !self.answered;
        self.open_with(now, None, unanswered);
    }

    fn open_with(&mut self, now: DateTime<Utc>, retry_after: Option<Duration>, keep_phase: bool) {
        self.enter(BreakerState::Open, now);
        self.opened = self.opened.saturating_add(1);
        let exp = self
            .cfg
            .open_base
            .saturating_mul(1u32 << (self.opened - 1).min(20))
            .min(self.cfg.open_cap);
        let w = exp.max(retry_after.unwrap_or_default()).min(MAX_WAIT);
        let spread = if keep_phase && w >= self.cfg.open_cap {
            w.mul_f64(self.cfg.phase_jitter.clamp(0.0, 1.0))
        } else {
            w.max(self.cfg.open_spread_min.min(MAX_WAIT))
        };
        let wait = w + spread.mul_f64(self.rng.random_range(0.0..1.0));
        self.until = Some(now + chrono_duration(wait));
        self.answered = false;
    }

    /// Open for `Retry-After` (W = `ra`), spread as [`Self::open`] spreads, without counting
    /// another opening: the next failure without `Retry-After` escalates from where it was.
    fn open_for(&mut self, now: DateTime<Utc>, ra: Duration) {
        let opened = self.opened;
        self.enter(BreakerState::Open, now);
        self.opened = opened;
        let w = ra.min(MAX_WAIT);
        let spread = w.max(self.cfg.open_spread_min.min(MAX_WAIT));
        let wait = w + spread.mul_f64(self.rng.random_range(0.0..1.0));
        self.until = Some(now + chrono_duration(wait));
        self.answered = true;
    }

    /// W·(1 + U[0,1)): never earlier than W, spread over as much again.
    fn jittered(&mut self, w: Duration) -> Duration {
        let w = w.min(MAX_WAIT);
        w + w.mul_f64(self.rng.random_range(0.0..1.0))
    }

    fn enter(&mut self, state: BreakerState, now: DateTime<Utc>) {
        self.state = state;
        self.since = now;
        self.successes = 0;
        self.failures = 0;
        self.until = None;
        self.gated = false;
        self.probe = None;
        self.nobody_listening = false;
        if state == BreakerState::Closed {
            self.opened = 0;
        }
    }
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d.min(MAX_WAIT * 2)).unwrap_or(chrono::Duration::MAX)
}

#[cfg(test)]
#[path = "breaker_tests.rs"]
mod tests;
