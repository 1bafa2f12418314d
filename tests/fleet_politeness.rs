//! Fleet politeness: a fleet of stores against a central that answers every request with
//! 503 and `Retry-After: 10` for two minutes, then recovers.
//!
//! A discrete-event simulation in virtual time (no sleeping, no network). Every store runs
//! the real policy code, seeded: its own `Upstreams` (the breaker every caller shares),
//! an uplink with the real `Backoff`, and a health prober, each doing what the workers do:
//!
//! - uplink: ask `permit`; if refused, sleep `next_permit_in(1 s)`; else send, report the
//!   outcome (with `Retry-After`), and on failure sleep
//!   `next_permit_in(backoff.next_delay(retry_after))`: the backoff's delay, cut short to the
//!   breaker's own jittered release when the breaker holds traffic back. Sleeping the
//!   backoff and then also waiting for the breaker would stack two independent jitters, and
//!   the later of two uniform draws bunches the fleet at the far end of the window (about
//!   22 % in the busiest second without the prober, measured);
//! - prober: every `health_interval` (5 s, the default) ask `permit`, send if allowed, and
//!   sleep `next_permit_in(interval)`; this is the half-open probe of an idle store.
//!
//! What is measured: for each one-second bucket, the share of the fleet that sent central
//! at least one request in it, counting a store until its pending work got through. Second
//! 0 is left out of the outage figure: every store was already sending when central went
//! down, so that wave is the outage's start, not a retry. Goal: at most 15 % in any second.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use standin::upstream::{Backoff, BreakerConfig, Upstream, Upstreams};

const STORES: usize = 1_000;
const OUTAGE_MS: i64 = 120_000;
const RETRY_AFTER: Duration = Duration::from_secs(10);
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// The uplink's backoff when central gives no `Retry-After` (transport failures).
const UPLINK_BASE: Duration = Duration::from_secs(1);
const UPLINK_CAP: Duration = Duration::from_secs(60);
const GOAL: f64 = 0.15;
const C: Upstream = Upstream::Central;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Task {
    Uplink,
    Prober,
}

struct Store {
    upstreams: Upstreams,
    backoff: Backoff,
    rng: StdRng,
    delivered_ms: Option<i64>,
    last_second: Option<i64>,
    requests: u32,
}

struct Fleet {
    t0: DateTime<Utc>,
    stores: Vec<Store>,
    queue: BinaryHeap<Reverse<(i64, usize, Task)>>,
    /// Stores that sent at least once, per second.
    per_second: Vec<u32>,
}

impl Fleet {
    fn new(seed: u64, prober: bool) -> Self {
        let t0 = Utc.with_ymd_and_hms(2025, 11, 28, 9, 0, 0).unwrap();
        let mut fleet = Fleet {
            t0,
            stores: Vec::with_capacity(STORES),
            queue: BinaryHeap::new(),
            per_second: Vec::new(),
        };
        for i in 0..STORES {
            let store_seed = seed.wrapping_mul(1_000_003).wrapping_add(i as u64);
            let mut rng = StdRng::seed_from_u64(store_seed);
            let upstreams =
                Upstreams::with_breaker(|_| true, BreakerConfig::default(), rng.random(), t0);
            let phase = rng.random_range(0..HEALTH_INTERVAL.as_millis() as i64);
            fleet.stores.push(Store {
                upstreams,
                backoff: Backoff::new(UPLINK_BASE, UPLINK_CAP),
                rng,
                delivered_ms: None,
                last_second: None,
                requests: 0,
            });
            fleet.queue.push(Reverse((0, i, Task::Uplink)));
            if prober {
                fleet.queue.push(Reverse((phase, i, Task::Prober)));
            }
        }
        fleet
    }

    fn at(&self, ms: i64) -> DateTime<Utc> {
        self.t0 + chrono::Duration::milliseconds(ms)
    }

    /// One request to central at `ms`; true if it succeeded. Reports the outcome.
    fn send(&mut self, i: usize, ms: i64) -> bool {
        let now = self.at(ms);
        let second = ms.div_euclid(1000);
        let s = &mut self.stores[i];
        s.requests += 1;
        if s.last_second != Some(second) {
            s.last_second = Some(second);
            let b = second as usize;
            if self.per_second.len() <= b {
                self.per_second.resize(b + 1, 0);
            }
            self.per_second[b] += 1;
        }
        if ms < OUTAGE_MS {
            let up = &s.upstreams;
            up.report_failure_retry_after(C, "HTTP 503".into(), Some(RETRY_AFTER), now);
            false
        } else {
            s.upstreams.report(C, Ok(()), now);
            true
        }
    }

    fn wake(&mut self, ms: i64, i: usize, task: Task) {
        if self.stores[i].delivered_ms.is_some() {
            return; // from here on its traffic is ordinary traffic, not retrying
        }
        let now = self.at(ms);
        let permitted = self.stores[i].upstreams.permit(C, now);
        let idle = match task {
            Task::Uplink => Duration::from_secs(1),
            Task::Prober => HEALTH_INTERVAL,
        };
        let next = if !permitted {
            self.stores[i].upstreams.next_permit_in(C, now, idle)
        } else {
            let ok = self.send(i, ms);
            let s = &mut self.stores[i];
            match (task, ok) {
                (Task::Uplink, true) => {
                    s.backoff.reset();
                    s.delivered_ms = Some(ms);
                    return;
                }
                (Task::Uplink, false) => {
                    let backoff = s.backoff.next_delay_with(&mut s.rng, Some(RETRY_AFTER));
                    s.upstreams.next_permit_in(C, now, backoff)
                }
                (Task::Prober, _) => s.upstreams.next_permit_in(C, now, idle),
            }
        };
        let next_ms = ms + (next.as_millis() as i64).max(1);
        self.queue.push(Reverse((next_ms, i, task)));
    }

    fn run(&mut self) {
        while let Some(Reverse((ms, i, task))) = self.queue.pop() {
            assert!(ms < 30 * 60_000, "the fleet never drained");
            self.wake(ms, i, task);
        }
    }
}

struct Figures {
    wave0: f64,
    outage_max: (f64, i64),
    recovery_max: (f64, i64),
    drain_s: f64,
    requests_per_store_outage: f64,
}

fn simulate(seed: u64, prober: bool) -> Figures {
    let mut fleet = Fleet::new(seed, prober);
    fleet.run();
    let share = |n: u32| f64::from(n) / STORES as f64;
    let busiest = |from: i64, to: i64| {
        (from..to.min(fleet.per_second.len() as i64))
            .map(|s| (share(fleet.per_second[s as usize]), s))
            .fold((0.0, 0), |a, b| if b.0 > a.0 { b } else { a })
    };
    let outage_s = OUTAGE_MS / 1000;
    let last = fleet.stores.iter().filter_map(|s| s.delivered_ms).max();
    assert!(
        fleet.stores.iter().all(|s| s.delivered_ms.is_some()),
        "every store got through"
    );
    let during: u32 = fleet.per_second[..outage_s as usize].iter().sum();
    Figures {
        wave0: share(fleet.per_second[0]),
        outage_max: busiest(1, outage_s),
        recovery_max: busiest(outage_s, i64::MAX),
        drain_s: (last.unwrap() - OUTAGE_MS) as f64 / 1000.0,
        requests_per_store_outage: f64::from(during) / STORES as f64,
    }
}

fn report(what: &str, f: &Figures) {
    println!("{what}:");
    println!(
        "  second 0 (everyone already sending): {:.1} %",
        f.wave0 * 100.0
    );
    println!(
        "  busiest second during the outage (1..{} s): {:.1} % of stores, at {} s",
        OUTAGE_MS / 1000,
        f.outage_max.0 * 100.0,
        f.outage_max.1
    );
    println!(
        "  busiest second during recovery (from {} s): {:.1} % of stores, at {} s",
        OUTAGE_MS / 1000,
        f.recovery_max.0 * 100.0,
        f.recovery_max.1
    );
    println!(
        "  last store through {:.1} s after central recovered",
        f.drain_s
    );
    println!(
        "  seconds with a request to central during the outage, per store: {:.1}",
        f.requests_per_store_outage
    );
    assert_eq!(
        f.wave0, 1.0,
        "the simulation starts with every store sending"
    );
    assert!(
        f.outage_max.0 <= GOAL,
        "{what}, outage: {:.3} > {GOAL}",
        f.outage_max.0
    );
    assert!(
        f.recovery_max.0 <= GOAL,
        "{what}, recovery: {:.3} > {GOAL}",
        f.recovery_max.0
    );
    assert!(
        f.drain_s <= 120.0,
        "{what}: stores find central back within two minutes"
    );
}

#[test]
fn a_fleet_told_retry_after_10_does_not_retry_in_lockstep() {
    println!(
        "fleet politeness: {STORES} stores, central 503 + Retry-After: 10 for {} s, then up; goal <= {:.0} % per second",
        OUTAGE_MS / 1000,
        GOAL * 100.0
    );
    report("uplink and health prober", &simulate(42, true));
    // Without the prober nothing else takes the breaker's slot when it reopens: this is
    // where an uplink that stacked its own backoff on top of the breaker's hold would bunch.
    report("uplink alone (health probe off)", &simulate(42, false));
}
