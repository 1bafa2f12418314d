//! `cargo bench --bench fleet`: a fleet of virtual stores (`standin hub fleet-sim`'s code)
//! through a nationwide outage against real `standin hub serve` processes on a throwaway
//! PostgreSQL cluster. Prints the busiest second's share of stores sending (outage,
//! recovery), the time from the hub's return to the last backlog landed with entries/s next
//! to PostgreSQL's own multi-row INSERT of the same rows in the same run, and intake p99
//! while draining. Then a second, shorter outage whose drain takes one hub SIGKILL and one
//! PostgreSQL restart, and the exactly-once check over both, read back from PostgreSQL.
//!
//! - `BENCH_STORES` (default 5,000), `BENCH_ENTRIES` per store (default 40),
//!   `BENCH_HUBS` (default 2), `BENCH_INTAKE_AT_ONCE` per hub (default 8);
//! - `BENCH_OUTAGE_SECS` (default 300, the 5 minutes, in real time): Standin's
//!   breaker caps its open wait at 15 s (+ up to 15 s of jitter), so a shorter outage
//!   (`BENCH_OUTAGE_SECS=60`) already shows the steady retry pattern;
//! - `BENCH_SECOND_OUTAGE_SECS` (default 30; 0: no second outage, the faults hit the first
//!   drain as before 2026-12-06 evening) and `BENCH_SECOND_ENTRIES` per store in it
//!   (default 40);
//! - `BENCH_FAULTS` (default 1; 0: no hub SIGKILL, no PostgreSQL restart: a quick look at
//!   one clean drain, e.g. with `BENCH_OUTAGE_SECS=60 BENCH_SECOND_OUTAGE_SECS=0`);
//! - `BENCH_WARMUP_SECS` (default 10): the hub up before the outage, once every store has
//!   pulled its feeds and had a heartbeat taken, long enough to print the fleet's own
//!   cadence of requests with nothing wrong;
//! - `BENCH_FLEET_THREADS` (default 2): the virtual stores' runtime threads. The stores
//!   share the machine's cores with the hub and PostgreSQL; their runtime falling behind
//!   turns into stores timing out on pushes the hub lands anyway.

use std::time::Duration;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(env("BENCH_FLEET_THREADS", 2).max(1))
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(bench());
}

async fn bench() {
    let dir = std::env::temp_dir().join(format!(
        "standin-bench-fleet-{}",
        uuid::Uuid::now_v7().simple()
    ));
    let mut plan = standin::hub::fleet_sim::Plan::new(
        env("BENCH_STORES", 5_000),
        env!("CARGO_BIN_EXE_standin").into(),
        dir.clone(),
    );
    plan.entries_per_store = env("BENCH_ENTRIES", 40);
    plan.outage = Duration::from_secs(env("BENCH_OUTAGE_SECS", 300) as u64);
    plan.warmup = Duration::from_secs(env("BENCH_WARMUP_SECS", 10) as u64);
    plan.second_outage = Some(env("BENCH_SECOND_OUTAGE_SECS", 30) as u64)
        .filter(|&s| s > 0)
        .map(Duration::from_secs);
    plan.second_entries_per_store = env("BENCH_SECOND_ENTRIES", 40);
    plan.hubs = env("BENCH_HUBS", 2).clamp(1, 2);
    plan.intake_at_once = env("BENCH_INTAKE_AT_ONCE", 8);
    let faults = env("BENCH_FAULTS", 1) != 0;
    plan.kill_hub = faults;
    plan.restart_postgres = faults;
    let outage = plan.outage.as_secs();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average before: {}", load.trim());
    let report = standin::hub::fleet_sim::run(plan).await;
    let _ = std::fs::remove_dir_all(&dir);
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            println!("fleet bench could not run: {e:#}");
            std::process::exit(1);
        }
    };
    report.print();
    if outage != 300 {
        println!("(scaled: a {outage} s outage; BENCH_OUTAGE_SECS=300 for the 5-minute figure)");
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average after: {}", load.trim());
    if !report.exactly_once() {
        std::process::exit(1);
    }
}
