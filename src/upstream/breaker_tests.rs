//! The breaker against random event sequences: invariants checked after every step.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone)]
enum Op {
    Permit,
    Success,
    Failure(Option<u64>),
    Unreachable,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Permit),
        2 => Just(Op::Success),
        3 => Just(Op::Failure(None)),
        2 => (0u64..=60).prop_map(|s| Op::Failure(Some(s))),
        1 => Just(Op::Unreachable),
    ]
}

fn config() -> impl Strategy<Value = BreakerConfig> {
    (
        1u32..=5,
        1u32..=4,
        1u64..=10,
        1u64..=8,
        0u64..=20,
        5u64..=120,
        0u32..=10,
    )
        .prop_map(|(f, s, base, mul, spread, pt, jitter)| BreakerConfig {
            failure_threshold: f,
            success_threshold: s,
            open_base: Duration::from_secs(base),
            open_cap: Duration::from_secs(base * mul),
            open_spread_min: Duration::from_secs(spread),
            probe_timeout: Duration::from_secs(pt),
            phase_jitter: f64::from(jitter) / 10.0,
        })
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn invariants_hold_for_any_sequence(
        cfg in config(),
        seed in any::<u64>(),
        steps in prop::collection::vec((0i64..20_000, op()), 1..250),
    ) {
        let mut now = t0();
        let mut b = Breaker::new(cfg, seed, now);
        // The model: what the breaker must agree with.
        let mut closed_fails = 0u32;
        let mut success_run = 0u32;
        let mut opened = 0u32;
        let mut probe: Option<DateTime<Utc>> = None;
        // Open since a refused connection: a success then answers a request sent before it.
        let mut nobody_listening = false;

        for (dt, op) in steps {
            now += chrono::Duration::milliseconds(dt);
            let (before, since_before, next_before) = (b.state(), b.since(), b.next_attempt_at());
            match op {
                Op::Permit => {
                    let yes = b.permit(now);
                    match next_before {
                        Some(at) if now < at => prop_assert!(!yes, "permitted before {at} in {before:?}"),
                        _ => prop_assert!(yes, "refused with nothing holding it back in {before:?}"),
                    }
                    if before == BreakerState::HalfOpen
                        && probe.is_some_and(|p| now < p + chrono_duration(cfg.probe_timeout))
                    {
                        prop_assert!(!yes, "a second probe while one is in flight");
                    }
                    if before == BreakerState::Open {
                        prop_assert_eq!(b.state(), if yes { BreakerState::HalfOpen } else { BreakerState::Open });
                    } else {
                        prop_assert_eq!(b.state(), before, "permit only ever moves Open to HalfOpen");
                    }
                    if yes && b.state() == BreakerState::HalfOpen {
                        probe = Some(now);
                    }
                }
                Op::Success if before == BreakerState::Open && nobody_listening => {
                    b.record(Outcome::Success, now);
                    probe = None;
                    prop_assert_eq!(b.state(), BreakerState::Open, "an answer sent before nothing listened half-opened it");
                    prop_assert_eq!(b.next_attempt_at(), next_before, "nor moved its wait");
                }
                Op::Success => {
                    b.record(Outcome::Success, now);
                    probe = None;
                    success_run += 1;
                    if before == BreakerState::Closed {
                        closed_fails = 0;
                        prop_assert_eq!(b.state(), BreakerState::Closed);
                    }
                    if before != BreakerState::Closed && b.state() == BreakerState::Closed {
                        prop_assert_eq!(success_run, cfg.success_threshold, "closed after the wrong number of successes");
                    }
                    if b.state() != BreakerState::Closed {
                        prop_assert_eq!(b.state(), BreakerState::HalfOpen, "a success never leaves it Open");
                        prop_assert!(success_run < cfg.success_threshold);
                    }
                }
                Op::Failure(ra) => {
                    let ra = ra.map(Duration::from_secs);
                    b.record(Outcome::Failure { retry_after: ra }, now);
                    probe = None;
                    success_run = 0;
                    if before == BreakerState::Closed {
                        closed_fails += 1;
                        if closed_fails < cfg.failure_threshold {
                            prop_assert_eq!(b.state(), BreakerState::Closed, "opened early");
                        } else {
                            prop_assert_eq!(closed_fails, cfg.failure_threshold);
                            prop_assert_eq!(b.state(), BreakerState::Open, "did not open at the threshold");
                        }
                    } else {
                        prop_assert_eq!(b.state(), BreakerState::Open, "a failure outside Closed means Open");
                    }
                    let until = b.next_attempt_at();
                    if let Some(ra) = ra {
                        let at = until.expect("a Retry-After always holds traffic back");
                        prop_assert!(at >= now + chrono_duration(ra), "earlier than Retry-After");
                    }
                    if b.state() == BreakerState::Open && before == BreakerState::Open {
                        prop_assert!(until >= next_before, "an Open wait never shrinks");
                    }
                    if b.state() == BreakerState::Open && before != BreakerState::Open {
                        // From HalfOpen with Retry-After: that wait, not one more opening.
                        let told = ra.filter(|_| before == BreakerState::HalfOpen);
                        if told.is_none() {
                            opened += 1;
                        }
                        let exp = cfg.open_base.saturating_mul(1 << (opened.max(1) - 1).min(20)).min(cfg.open_cap);
                        let w = told.unwrap_or_else(|| exp.max(ra.unwrap_or_default()));
                        let wait = (until.expect("Open has an until") - now).to_std().unwrap();
                        prop_assert!(wait >= w, "open wait {wait:?} below {w:?}");
                        let spread = w.max(cfg.open_spread_min);
                        prop_assert!(wait <= w + spread, "open wait {wait:?} above {w:?} plus its jitter");
                        prop_assert!(wait <= cfg.open_cap.max(ra.unwrap_or_default()) + spread);
                        closed_fails = 0;
                    }
                }
                Op::Unreachable => {
                    b.record(Outcome::Unreachable, now);
                    probe = None;
                    success_run = 0;
                    prop_assert_eq!(b.state(), BreakerState::Open, "nothing listening means Open at once");
                    let until = b.next_attempt_at();
                    if before == BreakerState::Open {
                        prop_assert_eq!(until, next_before, "an unreachable report while Open changes nothing");
                    } else {
                        opened += 1;
                        let w = cfg.open_base.saturating_mul(1 << (opened - 1).min(20)).min(cfg.open_cap);
                        let wait = (until.expect("Open has an until") - now).to_std().unwrap();
                        prop_assert!(wait >= w && wait <= w + w.max(cfg.open_spread_min), "open wait {wait:?} for {w:?}");
                        closed_fails = 0;
                    }
                }
            }
            if b.state() == BreakerState::Closed && before != BreakerState::Closed {
                closed_fails = 0;
                opened = 0;
            }
            if b.state() == BreakerState::Open && before != BreakerState::Open {
                success_run = 0;
            }
            if b.state() != before {
                nobody_listening = matches!(op, Op::Unreachable);
                prop_assert_eq!(b.since(), now, "since must move with the state");
            } else {
                prop_assert_eq!(b.since(), since_before, "since moved without a state change");
            }
        }
    }
}

#[test]
fn a_fleet_told_ten_seconds_spreads_over_the_next_ten() {
    let now = t0();
    let ra = Some(Duration::from_secs(10));
    let mut per_second = [0u32; 20];
    for seed in 0..1000 {
        let mut b = Breaker::new(BreakerConfig::default(), seed, now);
        b.record(Outcome::Failure { retry_after: ra }, now);
        let at = b.next_attempt_at().unwrap();
        assert!(!b.permit(now + chrono::Duration::milliseconds(9_999)));
        per_second[(at - now).num_seconds() as usize] += 1;
        assert!(b.permit(at));
        assert!(!b.permit(at), "one request at a time after a Retry-After");
    }
    assert!(per_second[..10].iter().all(|&n| n == 0));
    let busiest = per_second.iter().max().unwrap();
    assert!(*busiest < 150, "{per_second:?}");
}

#[test]
fn recovers_through_half_open() {
    let now = t0();
    let mut b = Breaker::new(BreakerConfig::default(), 1, now);
    for _ in 0..3 {
        assert!(b.permit(now));
        b.record(Outcome::Failure { retry_after: None }, now);
    }
    assert_eq!(b.state(), BreakerState::Open);
    let at = b.next_attempt_at().unwrap();
    assert!(at >= now + chrono::Duration::seconds(5) && at < now + chrono::Duration::seconds(20));
    assert!(b.permit(at));
    assert_eq!((b.state(), b.since()), (BreakerState::HalfOpen, at));
    assert!(!b.permit(at), "one probe at a time");
    b.record(Outcome::Success, at);
    assert!(b.permit(at));
    b.record(Outcome::Success, at);
    assert_eq!(b.state(), BreakerState::Closed);
}

/// `times` half-open probes in a row, each refused at the breaker's next permitted moment
/// (central gone); returns the last one's moment.
fn refuse_probes(b: &mut Breaker, times: usize) -> DateTime<Utc> {
    let mut now = t0();
    for _ in 0..times {
        now = b.next_attempt_at().unwrap();
        assert!(b.permit(now));
        b.record(Outcome::Unreachable, now);
    }
    now
}

/// At the breaker's next permitted moment, a half-open probe answered with `Retry-After`;
/// returns that moment.
fn probe_answered_busy(b: &mut Breaker, told: Duration) -> DateTime<Utc> {
    let now = b.next_attempt_at().unwrap();
    assert!(b.permit(now));
    b.record(
        Outcome::Failure {
            retry_after: Some(told),
        },
        now,
    );
    now
}

#[test]
fn a_busy_answer_to_a_half_open_probe_is_waited_out_as_told_not_escalated() {
    let cfg = BreakerConfig::default();
    let told = Duration::from_secs(1);
    // A long outage: opened many times, so its own wait is the cap (plus a tenth).
    // Its half-open probe answered busy, `Retry-After: 1`: the wait is 1 s plus the usual
    // spread (1-16 s), not the cap's escalated wait.
    let (mut under_cap, mut spread_out) = (0, 0);
    for seed in 0..200 {
        let mut b = Breaker::new(cfg, seed, t0());
        b.record(Outcome::Unreachable, t0());
        refuse_probes(&mut b, 6);
        let now = probe_answered_busy(&mut b, told);
        assert_eq!(b.state(), BreakerState::Open);
        let wait = (b.next_attempt_at().unwrap() - now).to_std().unwrap();
        assert!(
            wait >= told && wait < told + cfg.open_spread_min,
            "{wait:?}"
        );
        under_cap += usize::from(wait < cfg.open_cap);
        spread_out += usize::from(wait > told + Duration::from_secs(5));
    }
    assert!(
        under_cap >= 150,
        "{under_cap} of 200 waited less than the cap"
    );
    assert!(
        spread_out >= 50,
        "a fleet told 1 s must still spread: {spread_out} of 200"
    );
    // Opened once (5-20 s), its probe answered busy: that answer is not a second opening,
    // so the next silent failure opens for the second step (10 s, spread to 10-25 s), not
    // the third (the cap, 15 s). That probe follows an answer, so it is spread as widely as
    // any opening, not kept to the cap's phase.
    let mut second_step = 0;
    for seed in 0..200 {
        let mut b = Breaker::new(cfg, seed, t0());
        b.record(Outcome::Unreachable, t0());
        probe_answered_busy(&mut b, told);
        let now = b.next_attempt_at().unwrap();
        assert!(b.permit(now));
        b.record(Outcome::Failure { retry_after: None }, now);
        let wait = (b.next_attempt_at().unwrap() - now).to_std().unwrap();
        assert!(
            wait >= cfg.open_base * 2 && wait < cfg.open_base * 2 + cfg.open_spread_min,
            "{wait:?}"
        );
        second_step += usize::from(wait < cfg.open_cap);
        let now = b.next_attempt_at().unwrap();
        assert!(b.permit(now));
        b.record(Outcome::Unreachable, now);
        let wait = (b.next_attempt_at().unwrap() - now).to_std().unwrap();
        assert!(
            wait >= cfg.open_cap && wait < cfg.open_cap.mul_f64(1.0 + cfg.phase_jitter),
            "the third opening, at the cap with nothing heard since the second: {wait:?}"
        );
    }
    assert!(second_step >= 50, "{second_step} of 200 below the cap");
}

#[test]
fn a_fleet_opened_in_one_second_retries_spread_over_fifteen() {
    // Every store's breaker opens in the same second (a nationwide outage): the first retry
    // wave must not put more than a fifteenth of the fleet (plus noise) in any one second,
    // and no store may come back before `open_base`.
    let now = t0();
    let cfg = BreakerConfig::default();
    let mut per_second = [0u32; 40];
    for seed in 0..2000 {
        let mut b = Breaker::new(cfg, seed, now);
        for _ in 0..cfg.failure_threshold {
            b.record(Outcome::Failure { retry_after: None }, now);
        }
        let at = b.next_attempt_at().unwrap();
        assert!(at >= now + chrono_duration(cfg.open_base));
        per_second[(at - now).num_seconds() as usize] += 1;
    }
    let busiest = *per_second.iter().max().unwrap();
    assert!(busiest <= 2000 * 9 / 100, "{per_second:?}");
    assert!(per_second[20..].iter().all(|&n| n == 0), "{per_second:?}");
}

#[test]
fn nothing_listening_opens_at_once_and_a_flaky_link_does_not() {
    let now = t0();
    let cfg = BreakerConfig::default();
    let mut b = Breaker::new(cfg, 7, now);
    b.record(Outcome::Failure { retry_after: None }, now);
    assert_eq!(
        b.state(),
        BreakerState::Closed,
        "one timeout is not an outage"
    );
    b.record(Outcome::Unreachable, now);
    assert_eq!((b.state(), b.since()), (BreakerState::Open, now));
    let at = b.next_attempt_at().unwrap();
    assert!(at >= now + chrono_duration(cfg.open_base));
    assert!(b.permit(at), "the half-open probe");
    b.record(Outcome::Unreachable, at);
    assert_eq!(
        b.state(),
        BreakerState::Open,
        "a refused probe opens it again"
    );
    assert!(
        b.next_attempt_at().unwrap() >= at + chrono_duration(cfg.open_base * 2),
        "with the next, longer wait"
    );
}

/// A nationwide outage of 300 s against the default policy: 5,000 stores notice within the
/// same 1.5 s and every probe is refused. Returns the stores probing in each second of the
/// outage and, per store, how long after central's return its first probe went.
fn long_outage(stores: u64) -> (Vec<u32>, Vec<Duration>) {
    const OUTAGE_SECS: i64 = 300;
    let start = t0();
    let back = start + chrono::Duration::seconds(OUTAGE_SECS);
    let mut per_second = vec![0u32; OUTAGE_SECS as usize];
    let mut found = Vec::new();
    for seed in 0..stores {
        let noticed = start + chrono::Duration::milliseconds((seed * 7_919 % 1_500) as i64);
        let mut b = Breaker::new(BreakerConfig::default(), seed, noticed);
        b.record(Outcome::Unreachable, noticed);
        loop {
            let at = b.next_attempt_at().unwrap();
            if at >= back {
                found.push((at - back).to_std().unwrap());
                break;
            }
            per_second[(at - start).num_seconds() as usize] += 1;
            assert!(b.permit(at));
            b.record(Outcome::Unreachable, at);
        }
    }
    (per_second, found)
}

#[test]
fn a_long_outage_keeps_the_fleet_spread_and_every_store_finds_central_within_one_period() {
    let stores = 5_000;
    let (per_second, found) = long_outage(stores);
    let cap = BreakerConfig::default().open_cap;
    // Uniform over the period: 1 / 15.75 s is 6.3 % a second; where the first and second
    // waves overlap and with binomial noise over 300 seconds it stays under 9 %.
    let busiest = *per_second[1..].iter().max().unwrap();
    assert!(
        u64::from(busiest) * 100 <= stores * 9,
        "busiest second {busiest} of {stores}: {per_second:?}"
    );
    let last = found.iter().max().unwrap();
    assert!(
        *last <= cap.mul_f64(1.1),
        "the last store found central {last:?} after its return"
    );
    // Not bunched at the start either: about a fifteenth of the fleet in each of those
    // seconds.
    let mut first = [0u32; 17];
    for f in &found {
        first[f.as_secs() as usize] += 1;
    }
    assert!(
        first.iter().all(|&n| u64::from(n) * 100 <= stores * 9),
        "{first:?}"
    );
}

#[test]
fn a_store_that_heard_central_and_lost_it_again_re_spreads_its_wait() {
    // At the cap, a half-open probe answered and the next request failed (a flapping
    // central): the wait is spread as widely as a first opening's, so the stores that met
    // the flap together do not probe together ever after.
    let cfg = BreakerConfig::default();
    let mut wide = 0;
    for seed in 0..200 {
        let mut b = Breaker::new(cfg, seed, t0());
        b.record(Outcome::Unreachable, t0());
        let mut now = refuse_probes(&mut b, 4);
        let wait = (b.next_attempt_at().unwrap() - now).to_std().unwrap();
        assert!(
            wait >= cfg.open_cap && wait < cfg.open_cap.mul_f64(1.0 + cfg.phase_jitter),
            "a refused probe at the cap keeps its phase: {wait:?}"
        );
        now = b.next_attempt_at().unwrap();
        assert!(b.permit(now));
        b.record(Outcome::Success, now);
        assert!(b.permit(now));
        b.record(Outcome::Unreachable, now);
        let wait = (b.next_attempt_at().unwrap() - now).to_std().unwrap();
        assert!(wait >= cfg.open_cap && wait < cfg.open_cap * 2, "{wait:?}");
        wide += usize::from(wait > cfg.open_cap.mul_f64(1.5));
    }
    assert!(wide >= 60, "{wide} of 200 spread past 1.5 × the cap");
}
