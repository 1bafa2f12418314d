//! `standin hub fleet-sim`: N virtual stores against real hub processes on a real
//! PostgreSQL, over real HTTP, through a nationwide outage.
//!
//! Each store ([`store::VStore`]) keeps its own hash-chained journal sealed with
//! [`crate::journal::seal`], pulls its feeds with `after=n` cursors, sends a heartbeat, and
//! talks to the hub only through Standin's own breaker ([`crate::upstream::Upstreams`]),
//! backoff and the uplink's sleep rule. The run ([`run`]):
//!
//! 1. PostgreSQL (a private cluster unless a URL is given), the schema, every store
//!    registered (`store add`) and a small feed set imported (`import`);
//! 2. one or two `standin hub serve` processes, stores spread over them;
//! 3. the stores start and pull; then the hub goes away (its processes stopped) for the
//!    outage, while every store journals its entries at random moments;
//! 4. the hub comes back; while the fleet drains, one hub process is SIGKILLed (a third of
//!    the backlog in) and PostgreSQL is stopped hard and restarted (two thirds in);
//! 5. once every store's backlog has landed: what landed is read back from PostgreSQL and
//!    every store's chain re-verified with [`crate::journal::chain`], entry by entry against
//!    what the store generated.

pub mod background;
pub mod store;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use self::store::{Policy, VStore};
use super::cluster::{Cluster, find_or_install_bin};
use crate::journal::Entry;
use crate::journal::chain::{GENESIS, Hashed, canonical_json, entry_hash};

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub stores: usize,
    /// Entries each store journals during the outage.
    pub entries_per_store: usize,
    pub outage: Duration,
    /// A second outage after the first drain, for the faults: the hub SIGKILL and the
    /// PostgreSQL restart then hit its drain, and the first drain is measured clean. `None`:
    /// one outage, the faults in its drain.
    pub second_outage: Option<Duration>,
    /// Entries each store journals during the second outage.
    pub second_entries_per_store: usize,
    /// Time with the hub up before the outage (first pulls, heartbeats).
    pub warmup: Duration,
    /// Hub processes (stores spread round-robin over them).
    pub hubs: usize,
    pub kill_hub: bool,
    /// Needs the simulator's own cluster (no `database_url`).
    pub restart_postgres: bool,
    pub intake_at_once: usize,
    /// The `standin` binary to run `hub serve` from.
    pub standin_bin: PathBuf,
    /// An existing, migrated or empty database; `None`: a private cluster under `work_dir`.
    pub database_url: Option<String>,
    pub work_dir: PathBuf,
    /// Also measure PostgreSQL's own multi-row INSERT of the same rows (a second database).
    pub ceiling: bool,
    /// Give up waiting for the drain after this long past the hub's return.
    pub give_up_after: Duration,
    pub policy: Policy,
    pub quiet: bool,
}

impl Plan {
    pub fn new(stores: usize, standin_bin: PathBuf, work_dir: PathBuf) -> Self {
        Self {
            stores,
            entries_per_store: 40,
            outage: Duration::from_secs(60),
            second_outage: None,
            second_entries_per_store: 40,
            warmup: Duration::from_secs(3),
            hubs: 2,
            kill_hub: true,
            restart_postgres: true,
            intake_at_once: 8,
            standin_bin,
            database_url: None,
            work_dir,
            ceiling: true,
            give_up_after: Duration::from_secs(900),
            policy: Policy::default(),
            quiet: false,
        }
    }
}

/// Counters the stores share.
pub struct Stats {
    t0: Instant,
    /// Subtracted from the time since `t0` before it is cut into seconds: moved when an
    /// outage starts, so its first second is exactly the second after the hub's exit.
    shift_ms: AtomicU64,
    per_second: Mutex<Vec<u32>>,
    /// Stores sending again after central failed them (a retry, a half-open probe).
    retry_per_second: Mutex<Vec<u32>>,
    landed_per_second: Mutex<Vec<u64>>,
    latencies: Mutex<Vec<(u64, Duration)>>,
    pub landed: AtomicU64,
    pub duplicates: AtomicU64,
    pub push_503: AtomicU64,
    /// Of those, answered `database_unavailable` (the rest: `busy`).
    pub push_503_db: AtomicU64,
    pub push_failed: AtomicU64,
    /// Of `push_failed`: no connection (refused) and timed out.
    pub push_refused: AtomicU64,
    pub push_timed_out: AtomicU64,
    /// Whether the hub is meant to be up: push failures are counted only then.
    pub hub_up: std::sync::atomic::AtomicBool,
}

impl Stats {
    fn new() -> Self {
        Self {
            t0: Instant::now(),
            shift_ms: AtomicU64::new(0),
            per_second: Mutex::default(),
            retry_per_second: Mutex::default(),
            landed_per_second: Mutex::default(),
            latencies: Mutex::default(),
            landed: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            push_503: AtomicU64::new(0),
            push_503_db: AtomicU64::new(0),
            push_failed: AtomicU64::new(0),
            push_refused: AtomicU64::new(0),
            push_timed_out: AtomicU64::new(0),
            hub_up: std::sync::atomic::AtomicBool::new(true),
        }
    }

    /// Milliseconds on the clock the seconds are cut from.
    fn ms(&self) -> u64 {
        (self.t0.elapsed().as_millis() as u64).saturating_sub(self.shift_ms.load(Ordering::Relaxed))
    }

    fn second(&self) -> i64 {
        (self.ms() / 1000) as i64
    }

    /// Starts a new second now and returns its number. The second before it ends early
    /// (never runs backwards), so a burst just after this moment is not split between two
    /// seconds by where the clock's seconds happened to fall.
    fn start_second_now(&self) -> i64 {
        let into = self.ms() % 1000;
        if into > 0 {
            // Move the boundary back to now: the current second keeps its number and
            // starts over; what came before in it stays counted in it.
            self.shift_ms.fetch_add(into, Ordering::Relaxed);
        }
        self.second()
    }

    fn count_sender(&self, s: i64) {
        bump(&mut self.per_second.lock().expect("stats"), s, 1u32);
    }

    fn count_retrying(&self, s: i64) {
        bump(&mut self.retry_per_second.lock().expect("stats"), s, 1u32);
    }

    fn landed(&self, n: u64) {
        self.landed.fetch_add(n, Ordering::Relaxed);
        bump(
            &mut self.landed_per_second.lock().expect("stats"),
            self.second(),
            n,
        );
    }

    fn intake_latency(&self, d: Duration) {
        let ms = self.ms();
        self.latencies.lock().expect("stats").push((ms, d));
    }
}

fn bump<T: Copy + Default + std::ops::AddAssign>(v: &mut Vec<T>, s: i64, n: T) {
    let i = s.max(0) as usize;
    if v.len() <= i {
        v.resize(i + 1, T::default());
    }
    v[i] += n;
}

/// What a run found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub stores: usize,
    pub hubs: usize,
    pub outage_secs: f64,
    /// Largest share of stores sending in one second during the outage, its first second
    /// (the second after the hub's exit, exactly) left out (as `tests/fleet_politeness.rs`
    /// counts): in that second the fleet finds the
    /// hub gone, each store with its ordinary traffic and, where the hub's exit cut a
    /// request, one retry before the refused connection opens its breaker.
    pub max_share_outage: f64,
    /// Largest share in one second, the first included, of stores sending again after the
    /// hub failed them (retries, half-open probes).
    pub max_share_outage_retrying: f64,
    /// After the return, every request counts, until the store's backlog has landed.
    pub max_share_recovery: f64,
    /// Seconds into the outage of its busiest second of retries.
    pub busiest_outage_second: i64,
    /// Share of stores sending in each second, from the outage's first second to the
    /// return (every request, and retries only), and from the return to the last backlog
    /// landed.
    pub outage_series: Vec<f64>,
    pub outage_retry_series: Vec<f64>,
    /// With the hub up, before the outage: the mean share of stores sending in a second
    /// (the fleet's own cadence: heartbeats, probes, pulls), left out its first 3 seconds.
    pub cadence_share: f64,
    pub recovery_series: Vec<f64>,
    /// From the hub's return to the last store's backlog landed.
    pub drain_secs: f64,
    pub generated: u64,
    pub landed_after_return: u64,
    pub drain_rate: f64,
    /// The busiest second's landings after the return.
    pub peak_rate: f64,
    /// PostgreSQL's own multi-row INSERT of the same rows in the same transactions the
    /// stores sent, entries/s (if measured); and of the same rows 100 to a transaction.
    pub ceiling_rate: Option<f64>,
    pub ceiling_rate_100: Option<f64>,
    pub intake_p50_ms: f64,
    pub intake_p99_ms: f64,
    pub intake_requests: usize,
    pub push_503: u64,
    pub push_503_db: u64,
    pub push_failed: u64,
    pub push_refused: u64,
    pub push_timed_out: u64,
    pub duplicates: u64,
    /// Seconds after the return the hub process was SIGKILLed and PostgreSQL restarted, and
    /// whether each happened while the backlog was still draining.
    pub hub_killed_at: Option<(f64, bool)>,
    pub postgres_restarted_at: Option<(f64, bool)>,
    pub feed_records_received: u64,
    pub heartbeats_accepted: u64,
    pub heartbeat_unsupported: bool,
    /// Per-store problems found when reading back from PostgreSQL; empty: exactly once,
    /// every chain verified.
    pub problems: Vec<String>,
    pub stores_verified: usize,
    pub entries_verified: u64,
    /// The second outage's drain, the one the faults hit (when planned).
    pub faulted: Option<FaultedDrain>,
    /// Entries landed in each second of the (first) drain.
    pub landed_series: Vec<u64>,
    /// Where the machine's CPU went over the (first) drain.
    pub drain_cpu: Option<CpuSplit>,
    /// The stores' runtime lag over the (first) drain, p99 and max, ms ([`Phase`]).
    pub drain_lag: Option<(u64, u64)>,
    /// Each hub process's peak RSS (MB, `VmHWM`: since it started) once the (first) drain
    /// is over: what taking the fleet's backlogs cost it in memory.
    pub hub_rss_peak_mb: Vec<f64>,
    /// The hub processes' refusal counters once the (first) drain is over, summed over the
    /// processes (each since it started), as [`HUB_COUNTERS`] names them.
    pub hub_counters: Vec<(&'static str, u64)>,
}

/// The hub's counters the report prints (from each process's `/metrics`), with a short name.
pub const HUB_COUNTERS: [(&str, &str); 11] = [
    ("busy", "standin_hub_intake_refused_busy_total"),
    (
        "too many from one store",
        "standin_hub_intake_refused_store_busy_total",
    ),
    ("body timeout", "standin_hub_refused_body_timeout_total"),
    (
        "of which expected wait",
        "standin_hub_intake_refused_expected_wait_total",
    ),
    (
        "of which body budget",
        "standin_hub_intake_refused_memory_total",
    ),
    ("no connection", "standin_hub_refused_no_connection_total"),
    (
        "of which feed pulls",
        "standin_hub_refused_no_connection_by_work_total{work=\"feed_pull\"}",
    ),
    (
        "of which pushes",
        "standin_hub_refused_no_connection_by_work_total{work=\"journal\"}",
    ),
    (
        "database unavailable",
        "standin_hub_intake_refused_unavailable_total",
    ),
    (
        "idle sockets closed at the cap",
        "standin_hub_http_connections_closed_idle_total",
    ),
    (
        "sockets refused",
        "standin_hub_http_connections_refused_total",
    ),
];

/// [`HUB_COUNTERS`] summed over the hub processes on `ports` (a process that does not answer
/// counts nothing).
async fn hub_counters(ports: &[u16]) -> Vec<(&'static str, u64)> {
    let client = reqwest::Client::new();
    let mut sums = vec![0u64; HUB_COUNTERS.len()];
    for port in ports {
        let Ok(res) = client
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
        else {
            continue;
        };
        let text = res.text().await.unwrap_or_default();
        for (i, (_, name)) in HUB_COUNTERS.iter().enumerate() {
            sums[i] += text
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    HUB_COUNTERS
        .iter()
        .map(|(short, _)| *short)
        .zip(sums)
        .collect()
}

/// CPU time over a window, as shares of one core (a 2-core machine has 200 %), from
/// `/proc`: the hub processes, every `postgres` process, this process (the stores), and
/// the machine's idle time.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSplit {
    pub hubs: f64,
    pub postgres: f64,
    pub stores: f64,
    pub idle: f64,
}

/// A `/proc` CPU reading: clock ticks per part, and when.
#[derive(Debug, Clone, Copy)]
struct CpuTicks {
    at: Instant,
    hubs: u64,
    postgres: u64,
    stores: u64,
    idle: u64,
}

/// utime + stime of a process, in clock ticks (0 if gone).
/// A process's name and CPU ticks: its own, plus (`with_reaped`) those of the children it
/// has reaped. PostgreSQL's are counted with them: the postmaster reaps every backend that
/// exits (a hub closes the connections its deadline cut), and a sum over live processes alone
/// would lose their time.
fn proc_ticks(stat: &str, with_reaped: bool) -> Option<(String, u64)> {
    // `pid (comm) state ...`: comm may hold spaces, so split at the last ')'.
    let (head, rest) = stat.rsplit_once(')')?;
    let comm = head.split_once('(')?.1.to_owned();
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After comm: state is field 3, utime 14, stime 15, cutime 16, cstime 17.
    let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    let mut t = field(11)? + field(12)?;
    if with_reaped {
        t += field(13)? + field(14)?;
    }
    Some((comm, t))
}

/// CPU clock ticks of every `postgres` process on the machine, with the backends they have
/// reaped (see [`proc_ticks`]).
fn postgres_ticks() -> u64 {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", e.file_name().to_str()?));
            proc_ticks(&stat.ok()?, true)
        })
        .filter(|(comm, _)| comm == "postgres")
        .map(|(_, t)| t)
        .sum()
}

/// CPU clock ticks of one PostgreSQL server: its postmaster (the server listening on `port`)
/// with every backend it has reaped, and its live children. Other clusters on the machine,
/// and one still shutting down from an earlier run, are not counted.
pub fn cluster_ticks(port: u16) -> u64 {
    let want = format!("-p\0{port}\0");
    let procs: Vec<(u32, u32, String, u64, u64)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (comm, own) = proc_ticks(&stat, false)?;
            let (_, with_reaped) = proc_ticks(&stat, true)?;
            // After comm: state, then ppid.
            let ppid = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            (comm == "postgres").then_some((pid, ppid, comm, own, with_reaped))
        })
        .collect();
    let Some(postmaster) = procs.iter().find(|p| {
        std::fs::read(format!("/proc/{}/cmdline", p.0))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&want))
    }) else {
        return 0;
    };
    postmaster.4
        + procs
            .iter()
            .filter(|p| p.1 == postmaster.0)
            .map(|p| p.3)
            .sum::<u64>()
}

fn read_cpu(hub_pids: &[u32]) -> CpuTicks {
    let ticks_of = |pid: &str, with_reaped: bool| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| proc_ticks(&s, with_reaped))
    };
    let hubs = hub_pids
        .iter()
        .filter_map(|p| ticks_of(&p.to_string(), false))
        .map(|(_, t)| t)
        .sum();
    let postgres = postgres_ticks();
    // Without the hub processes it has reaped.
    let stores = ticks_of("self", false).map_or(0, |(_, t)| t);
    // /proc/stat's first line: cpu user nice system idle iowait ...
    let idle = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            let line = s.lines().next()?.to_owned();
            let f: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .filter_map(|v| v.parse().ok())
                .collect();
            Some(f.get(3)? + f.get(4).copied().unwrap_or(0))
        })
        .unwrap_or(0);
    CpuTicks {
        at: Instant::now(),
        hubs,
        postgres,
        stores,
        idle,
    }
}

impl CpuTicks {
    /// Shares of one core between `self` and a later reading (100 ticks a second: Linux's
    /// USER_HZ everywhere this runs).
    fn split_until(&self, later: &CpuTicks) -> CpuSplit {
        let secs = later.at.duration_since(self.at).as_secs_f64().max(0.001);
        let share = |a: u64, b: u64| b.saturating_sub(a) as f64 / 100.0 / secs;
        CpuSplit {
            hubs: share(self.hubs, later.hubs),
            postgres: share(self.postgres, later.postgres),
            stores: share(self.stores, later.stores),
            idle: share(self.idle, later.idle),
        }
    }
}

/// The drain a hub SIGKILL and a PostgreSQL restart hit.
#[derive(Debug, Clone, Default)]
pub struct FaultedDrain {
    pub outage_secs: f64,
    pub drain_secs: f64,
    pub landed: u64,
    pub max_share_outage: f64,
    /// Of stores sending again after the hub had failed them (its first second included).
    pub max_share_outage_retrying: f64,
    pub max_share_recovery: f64,
}

impl Report {
    pub fn exactly_once(&self) -> bool {
        self.problems.is_empty()
            && self.stores_verified == self.stores
            && self.entries_verified == self.generated
    }

    pub fn print(&self) {
        println!(
            "fleet: {} stores over {} hub process(es), {:.0} s outage, {} entries generated",
            self.stores, self.hubs, self.outage_secs, self.generated
        );
        println!(
            "busiest second, share of stores sending: outage {:.1} % sending again after the hub failed them (every second, its first included), recovery {:.1} % (goal <= 15 %)",
            self.max_share_outage_retrying * 100.0,
            self.max_share_recovery * 100.0
        );
        println!(
            "outage counting every request: {:.1} % of stores in its first second ({:.1} % of them sending again), {:.1} % at its busiest after it ({} s in): a store sending for the first time since the hub went is its routine traffic finding the hub gone, once",
            self.outage_series.first().copied().unwrap_or_default() * 100.0,
            self.outage_retry_series
                .first()
                .copied()
                .unwrap_or_default()
                * 100.0,
            self.max_share_outage * 100.0,
            self.busiest_outage_second,
        );
        let pct = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{:.0}", x * 100.0))
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!(
            "with the hub up, before the outage, {:.1} % of stores send in an average second (heartbeats, probes, pulls)",
            self.cadence_share * 100.0
        );
        println!(
            "outage, % of stores sending again after the hub failed them, by second: {}",
            pct(&self.outage_retry_series)
        );
        println!(
            "outage, % of stores sending anything, by second: {}",
            pct(&self.outage_series)
        );
        println!(
            "recovery, % of stores sending by second: {}",
            pct(&self.recovery_series)
        );
        println!(
            "return to last backlog landed: {:.1} s; {:.0} entries/s landed over the drain, busiest second {:.0}/s",
            self.drain_secs, self.drain_rate, self.peak_rate
        );
        println!(
            "entries landed by second of the drain: {}",
            self.landed_series
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        );
        if let Some(c) = self.drain_cpu {
            println!(
                "CPU over the drain, % of one core: hub processes {:.0}, PostgreSQL {:.0}, the stores (this process) {:.0}, idle {:.0}",
                c.hubs * 100.0,
                c.postgres * 100.0,
                c.stores * 100.0,
                c.idle * 100.0
            );
        }
        if !self.hub_rss_peak_mb.is_empty() {
            println!(
                "hub processes' peak RSS (since each started): {}",
                self.hub_rss_peak_mb
                    .iter()
                    .map(|m| format!("{m:.1} MB"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if !self.hub_counters.is_empty() {
            println!(
                "hub counters after the drain (summed over processes, each since it started): {}",
                self.hub_counters
                    .iter()
                    .map(|(name, n)| format!("{name} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if let Some((p99, max)) = self.drain_lag {
            println!(
                "the stores' runtime over the drain (a 10 ms timer's lateness): p99 {p99} ms, max {max} ms"
            );
        }
        if let Some(c) = self.ceiling_rate {
            println!(
                "postgres multi-row INSERT of the same rows in the same transactions: {c:.0} entries/s; drain/ceiling {:.2}, busiest second/ceiling {:.2} (goal >= 0.5)",
                self.drain_rate / c,
                self.peak_rate / c
            );
        }
        if let Some(c) = self.ceiling_rate_100 {
            println!(
                "postgres multi-row INSERT of the same rows, 100 a transaction: {c:.0} entries/s; drain/that {:.2}, busiest second/that {:.2}",
                self.drain_rate / c,
                self.peak_rate / c
            );
        }
        println!(
            "intake while draining: {} answered pushes, p50 {:.0} ms, p99 {:.0} ms; with the hub up (whole run): {} answered 503 ({} of them database_unavailable, the rest busy), {} failed otherwise ({} refused, {} timed out)",
            self.intake_requests,
            self.intake_p50_ms,
            self.intake_p99_ms,
            self.push_503,
            self.push_503_db,
            self.push_failed,
            self.push_refused,
            self.push_timed_out
        );
        let when = |w: Option<(f64, bool)>| match w {
            Some((t, true)) => format!("{t:.1} s after the return, mid-drain"),
            Some((t, false)) => format!("{t:.1} s after the return, after the drain"),
            None => "not done".into(),
        };
        if let Some(f) = &self.faulted {
            println!(
                "second outage ({:.0} s), for the faults: its drain took {:.1} s for {} entries; busiest second of the outage {:.1} % sending again after the hub had failed them ({:.1} % counting every request, its first second left out), of its recovery {:.1} %",
                f.outage_secs,
                f.drain_secs,
                f.landed,
                f.max_share_outage_retrying * 100.0,
                f.max_share_outage * 100.0,
                f.max_share_recovery * 100.0
            );
        }
        println!(
            "hub SIGKILL: {}; PostgreSQL restart: {}{}",
            when(self.hub_killed_at),
            when(self.postgres_restarted_at),
            if self.faulted.is_some() {
                " (the second outage's drain)"
            } else {
                ""
            }
        );
        println!(
            "exactly once: {} generated, {} landed and re-verified in PostgreSQL over {} stores ({} answered duplicate): {}",
            self.generated,
            self.entries_verified,
            self.stores_verified,
            self.duplicates,
            if self.exactly_once() {
                "OK, every chain verified".to_owned()
            } else {
                format!("FAILED: {}", self.problems.join("; "))
            }
        );
        println!(
            "feeds: {} records received; heartbeats: {}",
            self.feed_records_received,
            if self.heartbeat_unsupported {
                "hub answers 404 (not supported yet), stores went on without".to_owned()
            } else {
                format!("{} accepted", self.heartbeats_accepted)
            }
        );
    }
}

/// A `standin hub serve` process on a fixed port.
struct HubProc {
    port: u16,
    child: Option<Child>,
}

impl HubProc {
    fn spawn(plan: &Plan, db: &str, port: u16, log: &std::path::Path) -> anyhow::Result<HubProc> {
        let mut p = HubProc { port, child: None };
        p.start(plan, db, log)?;
        Ok(p)
    }

    fn start(&mut self, plan: &Plan, db: &str, log: &std::path::Path) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let child = Command::new(&plan.standin_bin)
            .args([
                "hub",
                "serve",
                "--listen",
                &format!("127.0.0.1:{}", self.port),
            ])
            .env("STANDIN_HUB__DATABASE_URL", db)
            .env(
                "STANDIN_HUB__INTAKE_AT_ONCE",
                plan.intake_at_once.to_string(),
            )
            .env(
                "STANDIN_HUB__POOL_SIZE",
                // The intake's own (intake_at_once + 1) and 8 for feed pulls.
                (plan.intake_at_once + 9).to_string(),
            )
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot run {}", plan.standin_bin.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// Stops it as an operator would (SIGTERM, in-flight requests finish).
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }

    /// SIGKILL: no goodbye, transactions cut mid-way.
    fn kill_9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    async fn wait_ready(&self, client: &reqwest::Client) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = client
                .get(format!("http://127.0.0.1:{}/readyz", self.port))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "hub on port {} not ready in 30 s",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for HubProc {
    fn drop(&mut self) {
        self.kill_9();
    }
}

/// How long the fleet may take to settle before its outage starts anyway.
const SETTLE_AT_MOST: Duration = Duration::from_secs(120);

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn say(plan: &Plan, msg: impl std::fmt::Display) {
    if !plan.quiet {
        eprintln!("fleet-sim: {msg}");
    }
}

/// Runs the plan end to end; the report says what happened, including any store whose
/// journal did not land exactly once (an error is returned only when the run itself could
/// not be carried out).
pub async fn run(plan: Plan) -> anyhow::Result<Report> {
    anyhow::ensure!(plan.stores > 0 && plan.hubs > 0, "no stores or no hubs");
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    std::fs::create_dir_all(&plan.work_dir)?;
    // PostgreSQL.
    let cluster = match &plan.database_url {
        Some(_) => None,
        None => {
            let bin = tokio::task::spawn_blocking(find_or_install_bin)
                .await?
                .map_err(anyhow::Error::msg)?;
            let dir = plan.work_dir.join("pg");
            let port = free_port()?;
            say(&plan, format!("PostgreSQL in {}", dir.display()));
            Some(
                tokio::task::spawn_blocking(move || Cluster::create(bin, &dir, port))
                    .await?
                    .map_err(anyhow::Error::msg)?,
            )
        }
    };
    let db = match (&plan.database_url, &cluster) {
        (Some(u), _) => u.clone(),
        (None, Some(c)) => c.url.clone(),
        (None, None) => unreachable!("a cluster when no URL"),
    };
    let cluster = cluster.map(Arc::new);
    let mut admin = super::db::connect(&db).await?;
    super::db::migrate(&mut admin).await?;

    // Stores and feeds.
    let run_tag = uuid::Uuid::now_v7().simple().to_string();
    let ids: Vec<String> = (0..plan.stores)
        .map(|i| format!("sim-{}-{i:05}", &run_tag[20..]))
        .collect();
    say(&plan, format!("registering {} stores", ids.len()));
    let mut tokens = Vec::with_capacity(ids.len());
    for id in &ids {
        tokens.push(super::auth::add_store(&admin, id).await?);
    }
    let policy_lines = format!("{}\n", json!({ "key": "offline_max_hours", "value": 6 }));
    super::feeds::import(
        &mut admin,
        crate::feeds::Feed::Policy,
        policy_lines.as_bytes(),
    )
    .await?;
    let orders: String = ids
        .iter()
        .map(|s| format!("{}\n", order(s, &format!("{s}-o1"))))
        .collect();
    super::feeds::import(
        &mut admin,
        crate::feeds::Feed::PickupOrders,
        orders.as_bytes(),
    )
    .await?;
    drop(admin);

    // Hub processes.
    let log = plan.work_dir.join("hub.log");
    let client = reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(20))
        .build()?;
    let mut hubs = Vec::new();
    for _ in 0..plan.hubs {
        hubs.push(HubProc::spawn(&plan, &db, free_port()?, &log)?);
    }
    for h in &hubs {
        h.wait_ready(&client).await?;
    }
    say(&plan, format!("{} hub process(es) ready", hubs.len()));

    let stats = Arc::new(Stats::new());
    let policy = Arc::new(plan.policy.clone());
    let stores: Vec<Arc<VStore>> = ids
        .iter()
        .zip(tokens)
        .enumerate()
        .map(|(i, (id, token))| {
            let base = format!("http://127.0.0.1:{}", hubs[i % hubs.len()].port);
            Arc::new(VStore::new(
                id.clone(),
                token,
                base,
                &policy,
                rand::random(),
            ))
        })
        .collect();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for s in &stores {
        let phase = Duration::from_millis(rand::random::<u64>() % 2_000);
        for run in s.loops(&client, &policy, &stats, &stop_rx) {
            tasks.spawn(async move {
                tokio::time::sleep(phase).await;
                run.await;
            });
        }
    }
    // A nationwide outage meets a fleet in its routine traffic, not in its first minute:
    // 5,000 stores starting within 2 s make 25,000 first feed pulls at once, and pulls still
    // queued at the hub when it went away made the outage's first second look like a
    // fleet retrying (2026-12-07: timed out at 5 s, each store then sending again).
    let starting = Instant::now();
    while !stores.iter().all(|s| s.settled()) && starting.elapsed() < SETTLE_AT_MOST {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let settled = stores.iter().filter(|s| s.settled()).count();
    say(
        &plan,
        format!(
            "{settled} of {} stores settled (feeds pulled, a heartbeat in) in {:.1} s; {:?} of routine traffic before the outage",
            stores.len(),
            starting.elapsed().as_secs_f64(),
            plan.warmup
        ),
    );
    tokio::time::sleep(plan.warmup).await;

    // The measured outage and drain; then, when planned, a second outage whose drain the
    // hub SIGKILL and the PostgreSQL restart hit. The first drain's figures are then the
    // fleet's own, not the faults': a fault reopens breakers mid-drain and the drain time
    // becomes the breaker's wait after it.
    let mut report = Report {
        stores: plan.stores,
        hubs: plan.hubs,
        outage_secs: plan.outage.as_secs_f64(),
        ..Report::default()
    };
    let mut env = Env {
        plan: &plan,
        db: &db,
        log: &log,
        cluster: cluster.as_ref(),
        hubs: &mut hubs,
        stats: &stats,
        stores: &stores,
    };
    let first = outage_and_drain(
        &mut env,
        (plan.outage, plan.entries_per_store),
        0,
        plan.second_outage.is_none(),
        &mut report,
    )
    .await?;
    let second = match plan.second_outage {
        Some(o) => Some(
            outage_and_drain(
                &mut env,
                (o, plan.second_entries_per_store),
                plan.entries_per_store,
                true,
                &mut report,
            )
            .await?,
        ),
        None => None,
    };
    report.generated = second.as_ref().unwrap_or(&first).target;
    // One last heartbeat and pull round per store, then stop.
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    for h in &hubs {
        h.wait_ready(&client).await?;
    }
    // A store whose breaker still holds (a refused connection during the SIGKILL, a
    // `Retry-After` from the PostgreSQL restart) pulls when it lets it, as its loop would:
    // every store at once, each for at most a minute.
    let mut last = tokio::task::JoinSet::new();
    for s in &stores {
        let (s, client, policy, stats) = (s.clone(), client.clone(), policy.clone(), stats.clone());
        last.spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            s.heartbeat(&client, &policy, &stats).await;
            loop {
                match s.pull_all(&client, &policy, &stats).await {
                    Ok(()) => return None,
                    Err(_) if Instant::now() < deadline => {
                        let wait = s
                            .upstreams
                            .next_permit_in(
                                crate::upstream::Upstream::Central,
                                chrono::Utc::now(),
                                Duration::from_secs(1),
                            )
                            .max(Duration::from_millis(50));
                        tokio::time::sleep(wait).await;
                    }
                    Err(_) => return Some(format!("{}: the last feed pull failed", s.id)),
                }
            }
        });
    }
    while let Some(problem) = last.join_next().await {
        report.problems.extend(problem?);
    }

    // Figures.
    first.figures(&stats, plan.stores, &mut report);
    if let Some(second) = &second {
        let mut r = Report::default();
        second.figures(&stats, plan.stores, &mut r);
        report.faulted = Some(FaultedDrain {
            outage_secs: second.outage.as_secs_f64(),
            drain_secs: r.drain_secs,
            landed: r.landed_after_return,
            max_share_outage: r.max_share_outage,
            max_share_outage_retrying: r.max_share_outage_retrying,
            max_share_recovery: r.max_share_recovery,
        });
    }
    report.push_503 = stats.push_503.load(Ordering::Relaxed);
    report.push_503_db = stats.push_503_db.load(Ordering::Relaxed);
    report.push_failed = stats.push_failed.load(Ordering::Relaxed);
    report.push_refused = stats.push_refused.load(Ordering::Relaxed);
    report.push_timed_out = stats.push_timed_out.load(Ordering::Relaxed);
    report.duplicates = stats.duplicates.load(Ordering::Relaxed);
    report.feed_records_received = stores
        .iter()
        .map(|s| s.feed_records.load(Ordering::Relaxed))
        .sum();
    report.heartbeats_accepted = stores
        .iter()
        .map(|s| s.heartbeats_accepted.load(Ordering::Relaxed))
        .sum();
    report.heartbeat_unsupported = stores
        .iter()
        .any(|s| s.heartbeat_unsupported.load(Ordering::Relaxed));
    for s in &stores {
        let n = s.set_aside.load(Ordering::Relaxed);
        if n > 0 {
            report
                .problems
                .push(format!("{}: {n} entries set aside by the hub", s.id));
        }
    }

    // Exactly once, read back from PostgreSQL.
    let (client_pg, conn) = tokio_postgres::connect(&db, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    verify(&client_pg, &stores, &mut report).await?;
    drop(hubs);

    if plan.ceiling {
        let base = db.rsplit_once('/').map_or(db.as_str(), |(b, _)| b);
        let concurrency = plan.intake_at_once * plan.hubs;
        // Twice, each into a fresh database: the same transactions the stores sent (each
        // store's lanes in priority order, in pushes growing from `batch_size` as the
        // uplink's do: the hub's own unit of work),
        // and the same rows in 100-row transactions whatever their lane (PostgreSQL's best).
        // The first outage's rows: the drain the ratio is printed for.
        let first = |s: &VStore| {
            let mut e = s.entries();
            e.truncate(plan.entries_per_store);
            e
        };
        let as_sent: Vec<Vec<Vec<Entry>>> = stores
            .iter()
            .map(|s| store::delivery_batches(&first(s), plan.policy.batch_size))
            .collect();
        let by_hundred: Vec<Vec<Vec<Entry>>> = stores
            .iter()
            .map(|s| first(s).chunks(100).map(<[Entry]>::to_vec).collect())
            .collect();
        for (i, batches) in [as_sent, by_hundred].into_iter().enumerate() {
            let name = format!("fleet_ceiling_{}_{i}", &run_tag[20..]);
            // A new connection: PostgreSQL's restart ended the first one.
            client_pg
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await?;
            let rate = insert_ceiling(&format!("{base}/{name}"), batches, concurrency).await?;
            if i == 0 {
                report.ceiling_rate = Some(rate);
            } else {
                report.ceiling_rate_100 = Some(rate);
            }
        }
    }
    drop(cluster);
    Ok(report)
}

/// What one outage-and-drain needs from the run.
struct Env<'a> {
    plan: &'a Plan,
    db: &'a str,
    log: &'a std::path::Path,
    cluster: Option<&'a Arc<Cluster>>,
    hubs: &'a mut Vec<HubProc>,
    stats: &'a Stats,
    stores: &'a [Arc<VStore>],
}

impl Env<'_> {
    fn hub_pids(&self) -> Vec<u32> {
        self.hubs
            .iter()
            .filter_map(|h| h.child.as_ref().map(Child::id))
            .collect()
    }
}

/// When one outage and its drain happened, in the run's seconds.
struct Phase {
    outage: Duration,
    outage_from: i64,
    return_second: i64,
    /// The second the drain was seen complete.
    drained_second: i64,
    drain_secs: f64,
    landed_after_return: u64,
    /// Entries generated since the run began (what must have landed by the drain's end).
    target: u64,
    /// Where the CPU went from the return to the drain's end.
    cpu: CpuSplit,
    /// How late this process's runtime woke a 10 ms timer over the drain, p99 and max (ms):
    /// the stores' own scheduling delay, which every push's latency includes.
    lag: (u64, u64),
    hub_rss_peak_mb: Vec<f64>,
    hub_counters: Vec<(&'static str, u64)>,
}

/// The hub goes away for `outage` while every store journals `per_store` entries at random
/// moments; then it comes back and the fleet drains. With `faults`, one hub process is
/// SIGKILLed a third of the way into the drain and PostgreSQL is stopped hard and restarted
/// two thirds in. `before` entries per store were journalled by earlier outages.
async fn outage_and_drain(
    env: &mut Env<'_>,
    (outage, per_store): (Duration, usize),
    before: usize,
    faults: bool,
    report: &mut Report,
) -> anyhow::Result<Phase> {
    let (plan, stats) = (env.plan, env.stats);
    // SIGTERM lets a hub finish what it is answering, which takes a few seconds with
    // thousands of stores connected: the outage counts from when no hub process is left.
    let stopping = Instant::now();
    stats.hub_up.store(false, Ordering::Relaxed);
    tokio::task::block_in_place(|| {
        for h in env.hubs.iter_mut() {
            h.stop();
        }
    });
    let outage_from = stats.start_second_now();
    say(
        plan,
        format!(
            "hub down for {outage:?} (its processes took {:.1} s to stop)",
            stopping.elapsed().as_secs_f64()
        ),
    );
    let mut generators = tokio::task::JoinSet::new();
    for s in env.stores {
        let s = s.clone();
        s.generated_all.store(false, Ordering::Relaxed);
        generators.spawn(async move {
            let mut at: Vec<u64> = (0..per_store)
                .map(|_| rand::random::<u64>() % (outage.as_millis() as u64).max(1))
                .collect();
            at.sort_unstable();
            let start = Instant::now();
            for (n, ms) in at.into_iter().enumerate() {
                let due = Duration::from_millis(ms);
                if let Some(wait) = due.checked_sub(start.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
                s.append((before + n) as u64);
            }
            s.generated_all.store(true, Ordering::Relaxed);
        });
    }
    while generators.join_next().await.is_some() {}
    let target = (plan.stores * (before + per_store)) as u64;
    let landed_before = stats.landed.load(Ordering::Relaxed);
    let want = target.saturating_sub(landed_before);

    // The return.
    for h in env.hubs.iter_mut() {
        h.start(plan, env.db, env.log)?;
    }
    let returned = Instant::now();
    let cpu_from = read_cpu(&env.hub_pids());
    stats.hub_up.store(true, Ordering::Relaxed);
    let return_second = stats.second();
    say(plan, "hub back; the fleet drains");
    let lags = Arc::new(Mutex::new(Vec::<u64>::new()));
    let lag_probe = tokio::spawn({
        let lags = lags.clone();
        async move {
            let tick = Duration::from_millis(10);
            loop {
                let t = Instant::now();
                tokio::time::sleep(tick).await;
                let late = t.elapsed().saturating_sub(tick).as_millis() as u64;
                lags.lock().expect("lags").push(late);
            }
        }
    });
    let mut last_landed = returned;
    let mut seen = landed_before;
    let (mut killed, mut restarted) = (!faults, !faults || env.cluster.is_none());
    loop {
        let landed = stats.landed.load(Ordering::Relaxed);
        if landed != seen {
            seen = landed;
            last_landed = Instant::now();
        }
        let got = landed - landed_before;
        let drained = landed >= target;
        let t = returned.elapsed().as_secs_f64();
        if !killed && plan.kill_hub && (got * 3 >= want || drained) {
            say(plan, format!("SIGKILL hub process 1 at {t:.1} s"));
            env.hubs[0].kill_9();
            report.hub_killed_at = Some((t, !drained));
            tokio::time::sleep(Duration::from_millis(500)).await;
            env.hubs[0].start(plan, env.db, env.log)?;
        }
        killed |= !plan.kill_hub || report.hub_killed_at.is_some();
        if !restarted
            && plan.restart_postgres
            && (got * 3 >= want * 2 || drained)
            && let Some(c) = env.cluster
        {
            say(plan, format!("PostgreSQL stopped hard at {t:.1} s"));
            let c2 = c.clone();
            tokio::task::spawn_blocking(move || c2.stop_immediate()).await?;
            report.postgres_restarted_at = Some((t, !drained));
            tokio::time::sleep(Duration::from_millis(500)).await;
            let c2 = c.clone();
            tokio::task::spawn_blocking(move || c2.start())
                .await?
                .map_err(anyhow::Error::msg)?;
            say(plan, "PostgreSQL back");
        }
        restarted |= !plan.restart_postgres || report.postgres_restarted_at.is_some();
        let set_aside: u64 = env
            .stores
            .iter()
            .map(|s| s.set_aside.load(Ordering::Relaxed))
            .sum();
        if (drained || landed + set_aside >= target) && killed && restarted {
            break;
        }
        if returned.elapsed() > plan.give_up_after {
            report.problems.push(format!(
                "gave up: {landed} of {target} landed {t:.0} s after a return"
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drained_second = stats.second();
    let cpu = cpu_from.split_until(&read_cpu(&env.hub_pids()));
    lag_probe.abort();
    let lag = {
        let mut l = std::mem::take(&mut *lags.lock().expect("lags"));
        l.sort_unstable();
        let at = |q: f64| l.get(((l.len() as f64 * q) as usize).min(l.len().saturating_sub(1)));
        (
            at(0.99).copied().unwrap_or(0),
            l.last().copied().unwrap_or(0),
        )
    };
    // Two quiet seconds before anything else (the next outage): the recovery's last
    // second must not count the fleet finding the hub gone again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(Phase {
        outage,
        outage_from,
        return_second,
        drained_second,
        drain_secs: last_landed.duration_since(returned).as_secs_f64(),
        landed_after_return: stats.landed.load(Ordering::Relaxed) - landed_before,
        target,
        cpu,
        lag,
        hub_rss_peak_mb: env
            .hub_pids()
            .iter()
            .filter_map(|&p| rss_peak_mb(p))
            .collect(),
        hub_counters: hub_counters(&env.hubs.iter().map(|h| h.port).collect::<Vec<_>>()).await,
    })
}

/// A process's peak resident set (`VmHWM` in `/proc/PID/status`), in MB.
fn rss_peak_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

impl Phase {
    /// This outage's and drain's figures from the run's per-second counts.
    fn figures(&self, stats: &Stats, stores: usize, report: &mut Report) {
        let (outage_from, return_second) = (self.outage_from, self.return_second);
        report.drain_secs = self.drain_secs;
        report.landed_after_return = self.landed_after_return;
        report.drain_rate = self.landed_after_return as f64 / self.drain_secs.max(0.001);
        let drained_second = self.drained_second + 1;
        let series = |per: &[u32], from: i64, to: i64| -> Vec<f64> {
            (from.max(0)..to.max(0))
                .map(|s| {
                    per.get(s as usize)
                        .map_or(0.0, |&n| n as f64 / stores as f64)
                })
                .collect()
        };
        let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
        {
            let per = stats.per_second.lock().expect("stats");
            report.outage_series = series(&per, outage_from, return_second);
            report.max_share_outage = max(report.outage_series.get(1..).unwrap_or_default());
            report.busiest_outage_second = report
                .outage_series
                .iter()
                .enumerate()
                .skip(1)
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(i, _)| i as i64);
            let warm = series(&per, 3, outage_from);
            report.cadence_share = warm.iter().sum::<f64>() / warm.len().max(1) as f64;
            report.recovery_series = series(&per, return_second, drained_second);
            report.max_share_recovery = max(&report.recovery_series);
        }
        {
            let per = stats.retry_per_second.lock().expect("stats");
            report.outage_retry_series = series(&per, outage_from, return_second);
            report.max_share_outage_retrying = max(&report.outage_retry_series);
        }
        let landed = stats.landed_per_second.lock().expect("stats");
        report.landed_series = (return_second.max(0)..drained_second)
            .map(|s| landed.get(s as usize).copied().unwrap_or(0))
            .collect();
        report.peak_rate = report.landed_series.iter().copied().max().unwrap_or(0) as f64;
        report.drain_cpu = Some(self.cpu);
        report.drain_lag = Some(self.lag);
        report.hub_rss_peak_mb = self.hub_rss_peak_mb.clone();
        report.hub_counters = self.hub_counters.clone();
        let (from_ms, to_ms) = (
            (return_second.max(0) as u64) * 1000,
            (drained_second.max(0) as u64) * 1000,
        );
        let mut lat: Vec<Duration> = stats
            .latencies
            .lock()
            .expect("stats")
            .iter()
            .filter(|(at, _)| (from_ms..to_ms).contains(at))
            .map(|(_, d)| *d)
            .collect();
        lat.sort_unstable();
        report.intake_requests = lat.len();
        let pct = |p: f64| {
            lat.get(((lat.len() as f64 * p).ceil() as usize).saturating_sub(1))
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        report.intake_p50_ms = pct(0.50);
        report.intake_p99_ms = pct(0.99);
    }
}

/// A pickup order record in API.md's shape.
fn order(store: &str, order_id: &str) -> serde_json::Value {
    json!({
        "store_id": store, "order_id": order_id, "order_number": format!("N-{order_id}"),
        "pickup_code": "PC1", "customer": { "name": "Ann Lee", "phone_last4": "1234" },
        "due_at": "2026-12-06T12:00:00Z", "status": "ready", "payment_state": "paid",
        "lines": [{ "line": 1, "sku": "SKU1", "description": "Kettle", "qty": 1,
                    "unit_price_minor": 2500, "requires_id_check": false }],
        "total_minor": 2500, "currency": "EUR", "updated_at": "2026-12-06T08:00:00Z",
    })
}

/// Reads every store's landed entries back from PostgreSQL and checks them against what
/// the store generated: the same ids at the same seqs, each once, accepted, the chain
/// re-verified link by link from the genesis hash, and the hub's verified prefix complete.
async fn verify(
    pg: &tokio_postgres::Client,
    stores: &[Arc<VStore>],
    report: &mut Report,
) -> anyhow::Result<()> {
    for s in stores {
        let generated = s.entries();
        let rows = pg
            .query(
                "SELECT seq, id, lane, kind, occurred_at, actor, device, body_canonical,
                        prev_hash, hash, outcome
                 FROM journal_entries WHERE store_id = $1 ORDER BY seq, id",
                &[&s.id],
            )
            .await?;
        let mut problems = Vec::new();
        if rows.len() != generated.len() {
            problems.push(format!(
                "{} rows for {} entries generated",
                rows.len(),
                generated.len()
            ));
        }
        let mut prev = GENESIS.to_string();
        let mut ok = 0u64;
        for (i, r) in rows.iter().enumerate() {
            let seq: i64 = r.get(0);
            let id: String = r.get(1);
            let (lane, kind): (String, String) = (r.get(2), r.get(3));
            let occurred_at: Option<String> = r.get(4);
            let (actor, device): (Option<String>, Option<String>) = (r.get(5), r.get(6));
            let body: String = r.get(7);
            let (prev_hash, hash, outcome): (String, String, String) =
                (r.get(8), r.get(9), r.get(10));
            let Some(g) = generated.get(i) else {
                problems.push(format!("seq {seq}: an entry the store never generated"));
                break;
            };
            if seq != i as i64 + 1 || id != g.id {
                problems.push(format!(
                    "seq {seq} (id {id}): not the store's entry {}",
                    g.seq
                ));
                break;
            }
            if outcome != "accepted" {
                problems.push(format!("seq {seq}: {outcome}"));
            }
            let recomputed = entry_hash(
                &prev_hash,
                &Hashed {
                    seq,
                    id: &id,
                    lane: &lane,
                    kind: &kind,
                    occurred_at: occurred_at.as_deref().unwrap_or_default(),
                    store_id: &s.id,
                    actor: actor.as_deref(),
                    device: device.as_deref(),
                    body: &body,
                },
            );
            if prev_hash != prev || recomputed != hash || hash != g.hash {
                problems.push(format!("seq {seq}: the chain breaks here"));
                break;
            }
            prev = hash;
            ok += 1;
        }
        let verified: i64 = pg
            .query_one(
                "SELECT verified_seq FROM stores WHERE store_id = $1",
                &[&s.id],
            )
            .await?
            .get(0);
        if verified != generated.len() as i64 {
            problems.push(format!(
                "hub's verified prefix {verified} of {}",
                generated.len()
            ));
        }
        if problems.is_empty() {
            report.stores_verified += 1;
            report.entries_verified += ok;
        } else {
            report
                .problems
                .push(format!("{}: {}", s.id, problems.join(", ")));
        }
    }
    Ok(())
}

/// The ceiling's one statement: every row of a batch in one multi-row INSERT.
pub const CEILING_INSERT: &str =
    "INSERT INTO journal_entries (store_id, id, seq, lane, kind, occurred_at, actor,
         device, body_canonical, body, prev_hash, hash, outcome)
     SELECT $1, id, seq, lane, kind, occ, actor, device, b, b::jsonb, prev, hash, 'accepted'
     FROM unnest($2::text[], $3::int8[], $4::text[], $5::text[], $6::text[],
                 $7::text[], $8::text[], $9::text[], $10::text[], $11::text[])
          AS t(id, seq, lane, kind, occ, actor, device, b, prev, hash)";

/// PostgreSQL's own multi-row INSERT of each store's `batches` into the hub's schema in a
/// fresh database: one transaction per batch, `concurrency` stores at a time (the hub's
/// intake bound). Entries per second.
pub async fn insert_ceiling(
    url: &str,
    batches: Vec<Vec<Vec<Entry>>>,
    concurrency: usize,
) -> anyhow::Result<f64> {
    let mut c = super::db::connect(url).await?;
    super::db::migrate(&mut c).await?;
    let total: usize = batches.iter().flatten().map(Vec::len).sum();
    let queue = Arc::new(Mutex::new(batches));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (queue, url) = (queue.clone(), url.to_owned());
        workers.spawn(async move {
            let mut c = super::db::connect(&url).await?;
            // Prepared once per connection, as the hub's own statements are.
            let insert = c.prepare(CEILING_INSERT).await?;
            loop {
                let Some(store_batches) = queue.lock().expect("queue").pop() else {
                    return anyhow::Ok(());
                };
                for b in store_batches.iter().filter(|b| !b.is_empty()) {
                    let col =
                        |f: fn(&Entry) -> String| -> Vec<String> { b.iter().map(f).collect() };
                    let opt = |f: fn(&Entry) -> Option<String>| -> Vec<Option<String>> {
                        b.iter().map(f).collect()
                    };
                    let seqs: Vec<i64> = b.iter().map(|e| e.seq).collect();
                    let bodies: Vec<String> = b.iter().map(|e| canonical_json(&e.body)).collect();
                    let store = b[0].store_id.clone();
                    let tx = c.transaction().await?;
                    tx.execute(
                        &insert,
                        &[
                            &store,
                            &col(|e| e.id.clone()),
                            &seqs,
                            &col(|e| e.lane.as_str().to_owned()),
                            &col(|e| e.kind.clone()),
                            &col(|e| e.occurred_at.clone()),
                            &opt(|e| e.actor.clone()),
                            &opt(|e| e.device.clone()),
                            &bodies,
                            &col(|e| e.prev_hash.clone()),
                            &col(|e| e.hash.clone()),
                        ],
                    )
                    .await?;
                    tx.commit().await?;
                }
            }
        });
    }
    while let Some(r) = workers.join_next().await {
        r??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64().max(1e-6))
}
