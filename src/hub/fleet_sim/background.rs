//! A standing fleet of virtual stores behind `standin hub demo`, so the fleet page has a few
//! hundred stores in every state, not three.
//!
//! Each store is a [`VStore`] registered at the hub as `standin hub store add` registers one,
//! with its feeds imported as HQ imports them, running its four loops (uplink, probe, feed
//! pull, heartbeat) against the demo's hub through Standin's own breaker and backoff. One
//! director task gives the fleet a life, once a second:
//! - every store journals at a modest random rate (card sales, returns, hand-overs, notes);
//! - now and then a store loses its card processor for a few minutes: it reports the
//!   processor down and approves card payments offline (exposure, with a forwarding deadline),
//!   then forwards them when the processor returns;
//! - now and then a store's link is cut for a few minutes: its loops stop, so the hub hears
//!   nothing (silent), while it goes on trading offline; when the link returns its breaker
//!   finds central again in its own time and the backlog drains;
//! - a few stores hand over an order HQ had cancelled: the hub sets the entry aside.
//!
//! Some stores start in each state, so every state shows from the first refresh. When the
//! hub goes away the stores need nothing from the director: their breakers hold them off and
//! bring them back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::sync::watch;
use tracing::instrument::WithSubscriber;
use tracing::subscriber::NoSubscriber;

use super::Stats;
use super::store::{Policy, VStore};
use crate::feeds::Feed;
use crate::journal::{Lane, NewEntry};
use crate::upstream::{Failure, Upstream};

/// Mean journal entries per store per minute.
pub const ENTRIES_PER_MINUTE: f64 = 3.0;
/// Shares of the fleet, on average, with the processor down and with the link cut.
const PROCESSOR_DOWN_SHARE: f64 = 0.04;
const CUT_SHARE: f64 = 0.02;
/// Episode lengths, seconds.
const PROCESSOR_DOWN_SECS: (u64, u64) = (60, 240);
const CUT_SECS: (u64, u64) = (45, 180);
/// What a store's policy allows before an offline approval must be forwarded.
const OFFLINE_MAX_HOURS: i64 = 6;

/// A virtual store as registered at the hub.
pub struct Registered {
    pub id: String,
    pub token: String,
    /// An order HQ cancelled that this store will hand over (its entry is set aside).
    pub cancelled_order: Option<String>,
}

/// Which stores start in which state: a fixed pattern, so a small fleet has each.
fn starts_cut(i: usize) -> bool {
    i % 50 == 13
}
fn starts_processor_down(i: usize) -> bool {
    i % 25 == 3
}
fn hands_over_a_cancelled_order(i: usize) -> bool {
    i % 50 == 7
}

/// Registers `n` virtual stores (`vstore-0001`…) and imports their feeds: a policy record
/// and two ready pickup orders each, plus a cancelled one for a few.
pub async fn register(
    client: &mut tokio_postgres::Client,
    n: usize,
) -> anyhow::Result<Vec<Registered>> {
    let mut out = Vec::with_capacity(n);
    let (mut policy, mut orders) = (String::new(), String::new());
    for i in 0..n {
        let id = format!("vstore-{:04}", i + 1);
        let token = crate::hub::auth::add_store(client, &id).await?;
        policy.push_str(&format!(
            "{}\n",
            json!({ "store_id": id, "key": "offline_max_hours", "value": OFFLINE_MAX_HOURS })
        ));
        for k in 1..=2 {
            orders.push_str(&format!("{}\n", super::order(&id, &format!("{id}-o{k}"))));
        }
        let cancelled_order = hands_over_a_cancelled_order(i).then(|| format!("{id}-c1"));
        if let Some(o) = &cancelled_order {
            let mut r = super::order(&id, o);
            r["status"] = json!("cancelled");
            orders.push_str(&format!("{r}\n"));
        }
        out.push(Registered {
            id,
            token,
            cancelled_order,
        });
    }
    crate::hub::feeds::import(client, Feed::Policy, policy.as_bytes()).await?;
    crate::hub::feeds::import(client, Feed::PickupOrders, orders.as_bytes()).await?;
    Ok(out)
}

struct Member {
    store: Arc<VStore>,
    /// True while the store's link is cut.
    cut: watch::Sender<bool>,
}

/// What the director keeps per store.
struct Life {
    member: Arc<Member>,
    cut_until: Option<Instant>,
    processor_until: Option<Instant>,
    /// Offline approvals not yet forwarded: (payment id, amount).
    offline: Vec<(String, i64)>,
    cancelled_order: Option<String>,
    payments: u64,
}

/// Counts for the demo's console.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    pub stores: usize,
    pub cut: usize,
    pub processor_down: usize,
    pub offline_payments: i64,
    pub backlog: usize,
}

pub struct Background {
    members: Vec<Arc<Member>>,
    stop: watch::Sender<bool>,
    tasks: tokio::task::JoinSet<()>,
}

impl Background {
    /// Starts every store against `hub` (their base URL) and the director.
    pub fn start(hub: &str, stores: Vec<Registered>, seed: u64) -> anyhow::Result<Background> {
        let _ = rlimit::increase_nofile_limit(u64::MAX);
        let policy = Arc::new(Policy::default());
        let interval = policy.health_interval.as_secs().max(1);
        let stats = Arc::new(Stats::new());
        let client = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(20))
            .build()?;
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut lives = Vec::with_capacity(stores.len());
        for (i, r) in stores.into_iter().enumerate() {
            let store = VStore::new(r.id, r.token, hub.to_owned(), &policy, rng.random())
                .reporting_interval(interval);
            let member = Arc::new(Member {
                store: Arc::new(store),
                cut: watch::channel(false).0,
            });
            let mut life = Life {
                member: member.clone(),
                cut_until: None,
                processor_until: None,
                offline: Vec::new(),
                cancelled_order: r.cancelled_order,
                payments: 0,
            };
            if starts_processor_down(i) {
                // Down for a while already: a few payments approved offline.
                let down_for = chrono::Duration::seconds(rng.random_range(60..900));
                processor_down(&mut life, Instant::now(), down_for, &mut rng);
                for _ in 0..rng.random_range(1..6) {
                    sale(&mut life, &mut rng);
                }
            }
            if starts_cut(i) {
                cut(&mut life, Instant::now(), &mut rng);
            }
            // Quiet: the demo's log is for its real stores and the hub, not a few hundred
            // breakers' every change of state (the fleet page shows those).
            tasks.spawn(
                live(
                    member.clone(),
                    client.clone(),
                    policy.clone(),
                    stats.clone(),
                    stop_rx.clone(),
                )
                .with_subscriber(NoSubscriber::default()),
            );
            lives.push(life);
        }
        let members = lives.iter().map(|l| l.member.clone()).collect();
        tasks.spawn(direct(lives, rng, stop_rx));
        Ok(Background {
            members,
            stop,
            tasks,
        })
    }

    pub fn summary(&self) -> Summary {
        let mut s = Summary {
            stores: self.members.len(),
            ..Summary::default()
        };
        for m in &self.members {
            s.cut += usize::from(*m.cut.borrow());
            let till = m.store.till.lock().expect("till");
            s.processor_down += usize::from(till.processor_down);
            s.offline_payments += till.offline_count;
            drop(till);
            s.backlog += m.store.backlog();
        }
        s
    }

    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

fn secs_between(rng: &mut StdRng, (lo, hi): (u64, u64)) -> Duration {
    Duration::from_secs(rng.random_range(lo..=hi))
}

fn processor_down(life: &mut Life, now: Instant, down_for: chrono::Duration, rng: &mut StdRng) {
    life.processor_until = Some(now + secs_between(rng, PROCESSOR_DOWN_SECS));
    let mut till = life.member.store.till.lock().expect("till");
    till.processor_down = true;
    till.processor_since = Some(Utc::now() - down_for);
}

/// The link goes; the processor with it (it is reached over the same link), and it comes
/// back a little after the link, so the store returns with offline payments to forward.
fn cut(life: &mut Life, now: Instant, rng: &mut StdRng) {
    let until = now + secs_between(rng, CUT_SECS);
    life.cut_until = Some(until);
    let _ = life.member.cut.send_replace(true);
    let back = until + Duration::from_secs(rng.random_range(10..40));
    if life.processor_until.is_none_or(|p| p < back) {
        if life.processor_until.is_none() {
            processor_down(life, now, chrono::Duration::zero(), rng);
        }
        life.processor_until = Some(back);
    }
}

fn entry(lane: Lane, kind: &str, body: serde_json::Value) -> NewEntry {
    NewEntry {
        lane,
        kind: kind.into(),
        actor: Some("kiosk-1".into()),
        device: Some("kiosk-1".into()),
        body,
    }
}

/// A card sale: approved by the processor, or offline (exposure) while it is down.
fn sale(life: &mut Life, rng: &mut StdRng) {
    life.payments += 1;
    let store = &life.member.store;
    let id = format!("{}-p{}", store.id, life.payments);
    let amount: i64 = rng.random_range(300..15_000);
    let mut till = store.till.lock().expect("till");
    if till.processor_down {
        let deadline = (Utc::now() + chrono::Duration::hours(OFFLINE_MAX_HOURS))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        till.offline_count += 1;
        till.offline_total_minor += amount;
        till.tightest_deadline.get_or_insert(deadline.clone());
        drop(till);
        life.offline.push((id.clone(), amount));
        store.append_entry(entry(
            Lane::Payments,
            "payment.approved_offline",
            json!({ "payment_id": id, "amount_minor": amount, "currency": "EUR",
                    "tender": "card", "forward_by": deadline }),
        ));
    } else {
        drop(till);
        store.append_entry(entry(
            Lane::Payments,
            "payment.approved",
            json!({ "payment_id": id, "amount_minor": amount, "currency": "EUR", "tender": "card" }),
        ));
    }
}

/// One journal entry of the store's ordinary day.
fn trade(life: &mut Life, rng: &mut StdRng) {
    let store = life.member.store.clone();
    let n: u32 = rng.random();
    match rng.random_range(0..100) {
        0..55 => sale(life, rng),
        55..70 => {
            store.append_entry(entry(
                Lane::Returns,
                "return.accepted",
                json!({ "return_id": format!("{}-r{n}", store.id), "refund_minor": rng.random_range(300..5_000) }),
            ));
        }
        70..90 => {
            let order = format!("{}-o{}", store.id, rng.random_range(1..=2));
            store.append_entry(entry(
                Lane::Pickups,
                "pickup.handed_over",
                json!({ "order_id": order, "code_checked": true }),
            ));
        }
        _ => {
            store.append_entry(entry(Lane::Audit, "audit.note", json!({ "n": n })));
        }
    }
}

/// The processor is back: every offline approval is forwarded (and journalled as approved).
fn processor_back(life: &mut Life) {
    life.processor_until = None;
    let store = &life.member.store;
    *store.till.lock().expect("till") = super::store::Till {
        processor_since: Some(Utc::now()),
        ..Default::default()
    };
    let forwarded_at = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for (id, amount) in life.offline.drain(..) {
        store.append_entry(entry(
            Lane::Payments,
            "payment.approved",
            json!({ "payment_id": id, "amount_minor": amount, "currency": "EUR",
                    "tender": "card", "forwarded_at": forwarded_at }),
        ));
    }
}

/// Ten times a second: entries, processor outages and cut links, each store on its own
/// dice (a finer tick than the rates need, so stores do not all send on the same instant).
async fn direct(mut lives: Vec<Life>, mut rng: StdRng, mut stop: watch::Receiver<bool>) {
    const TICK: Duration = Duration::from_millis(100);
    let per_tick = TICK.as_secs_f64();
    let p_entry = ENTRIES_PER_MINUTE / 60.0 * per_tick;
    let mean = |(lo, hi): (u64, u64)| (lo + hi) as f64 / 2.0;
    let p_processor = PROCESSOR_DOWN_SHARE / mean(PROCESSOR_DOWN_SECS) * per_tick;
    let p_cut = CUT_SHARE / mean(CUT_SECS) * per_tick;
    // The cancelled hand-overs go first, so set-aside entries show from the start.
    for life in &mut lives {
        if life.cancelled_order.is_some() {
            let order = life.cancelled_order.take();
            life.member.store.append_entry(entry(
                Lane::Pickups,
                "pickup.handed_over",
                json!({ "order_id": order, "code_checked": true }),
            ));
        }
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = stop.changed() => return,
        }
        let now = Instant::now();
        for life in &mut lives {
            if life.cut_until.is_some_and(|t| now >= t) {
                life.cut_until = None;
                let _ = life.member.cut.send_replace(false);
            }
            if life.processor_until.is_some_and(|t| now >= t) {
                processor_back(life);
            }
            if life.cut_until.is_none() && rng.random_bool(p_cut) {
                cut(life, now, &mut rng);
            } else if life.processor_until.is_none() && rng.random_bool(p_processor) {
                processor_down(life, now, chrono::Duration::zero(), &mut rng);
            }
            if rng.random_bool(p_entry) {
                trade(life, &mut rng);
            }
        }
    }
}

/// One store for the demo's lifetime: its four loops while its link is up; while it is
/// cut, only its breaker learns of it (each health probe it would send fails).
async fn live(
    member: Arc<Member>,
    client: reqwest::Client,
    policy: Arc<Policy>,
    stats: Arc<Stats>,
    mut stop: watch::Receiver<bool>,
) {
    const C: Upstream = Upstream::Central;
    let s = &member.store;
    let mut cut = member.cut.subscribe();
    // Stores do not start in step: spread over one health interval.
    let spread = policy.health_interval.as_millis().max(1) as u64;
    let phase = Duration::from_millis(rand::random::<u64>() % spread);
    tokio::select! {
        _ = tokio::time::sleep(phase) => {}
        _ = stop.changed() => return,
    }
    loop {
        if *stop.borrow() {
            return;
        }
        if *cut.borrow_and_update() {
            let now = Utc::now();
            if s.upstreams.permit(C, now) {
                s.upstreams.report_failure(
                    C,
                    Failure::unreachable("network unreachable (the store's link is cut)"),
                    now,
                );
            }
            let wait = s
                .upstreams
                .next_permit_in(C, Utc::now(), policy.health_interval)
                .max(Duration::from_millis(20));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = cut.changed() => {}
                _ = stop.changed() => return,
            }
            continue;
        }
        let (phase_stop, phase_rx) = watch::channel(false);
        let mut loops = tokio::task::JoinSet::new();
        for run in member.store.loops(&client, &policy, &stats, &phase_rx) {
            loops.spawn(run.with_subscriber(NoSubscriber::default()));
        }
        tokio::select! {
            _ = async { let _ = cut.wait_for(|c| *c).await; } => {}
            _ = async { let _ = stop.wait_for(|s| *s).await; } => {}
        }
        let _ = phase_stop.send(true);
        while loops.join_next().await.is_some() {}
    }
}
