//! Backlog drain (issue 19): 100,000 journal entries pending across the four lanes, central
//! comes back, and `standin serve` (its own process, release build) delivers them; next to
//! the simulator's own intake ceiling for the same entries, measured in the same run.
//!
//! `cargo bench --bench backlog_drain` (`BENCH_ENTRIES=N`, default 100,000).
//! - **Backlog:** N entries appended through the store's writer with `journal::append` (one
//!   transaction: real, hash-chained entries, seeded mix of lanes interleaved in `seq` order:
//!   40 % payments, 10 % returns, 20 % pickups, 30 % audit).
//! - **Ceiling:** the same entries, serialised beforehand, pushed straight to a fresh
//!   simulator's journal intake (`POST /v1/stores/{store}/journal`) in batches of the size the
//!   uplink sends while a backlog exists, from 1, 2 and 4 concurrent clients (a fresh
//!   simulator each); the best rate is the baseline.
//! - **Drain:** a fresh simulator with central down; `standin serve` started on the backlog,
//!   left failing for a moment; central comes back. The rate is N over the time from the
//!   first entry to the last entry acknowledged (their `delivered_at`, set when the outcome
//!   commits); the wait from central's return to the first acknowledgement is the breaker's
//!   (`src/upstream/`) and is printed apart. RSS of the standin process is sampled from
//!   `/proc` every 20 ms while it drains.
//! - **Checked afterwards:** the simulator holds exactly the N ids, each received once, in
//!   `seq` order within each lane; lanes arrived in priority order (every payment before the
//!   first return, and so on); every entry acknowledged `accepted` by push; the chain verifies.
//!
//! Goal: ≥ 10,000 entries/s and ≥ 0.5 of the ceiling, lane priority kept.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use standin::clock::SystemClock;
use standin::config::{Config, Secret};
use standin::journal::{Entry, Lane, NewEntry};
use standin::simulator::{SimConfig, Simulator};
use standin::store::StoreError;

#[path = "common/serve.rs"]
mod serve;

use serve::{free_port, mb, spawn_serve};

const STORE: &str = "store-0001";
const PEPPER: &str = "bench-pepper";

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The target directory this bench runs from (`target/release/deps/backlog_drain-…`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"))
}

async fn simulator() -> Simulator {
    let any = "127.0.0.1:0".parse().unwrap();
    Simulator::start(SimConfig {
        listen: any,
        central_listen: any,
        payments_listen: any,
        store_id: STORE.into(),
        receipts: 10,
        pickup_orders: 5,
        seed: 19,
        pepper: PEPPER.as_bytes().to_vec(),
        part_size: 1_000,
    })
    .await
    .unwrap()
}

/// One entry as an action at the store would write it (no card data, as in the real ones).
fn new_entry(rng: &mut impl Rng, i: usize) -> NewEntry {
    let roll = rng.random_range(0..100);
    let amount = rng.random_range(100..50_000);
    let id = uuid::Uuid::from_u128(rng.random()).to_string();
    let (lane, kind, actor, device, body) = match roll {
        0..40 => (
            Lane::Payments,
            "payment.approved_offline",
            format!("sco-{:03}", i % 64),
            format!("sco-{:03}", i % 64),
            json!({"payment_id": id, "lane": format!("lane-{:02}", i % 64), "amount_minor": amount,
                   "currency": "USD", "status": "approved_offline", "reason": null,
                   "forward_by": "2026-12-07T11:00:00.000Z", "outcome_unknown": false,
                   "exposure_minor": amount * 7}),
        ),
        40..50 => (
            Lane::Returns,
            "return.refunded",
            format!("E{}", 100 + i % 40),
            "desk-1".to_owned(),
            json!({"return_id": id, "receipt_id": format!("R-{:010}", i * 7), "tender": "cash",
                   "refund_minor": amount, "lines": [{"sku": format!("{:08}", i % 9_999), "qty": 1,
                   "refund_minor": amount}], "reason_code": "defective"}),
        ),
        50..70 => (
            Lane::Pickups,
            "pickup.handed_over",
            format!("E{}", 100 + i % 40),
            "desk-2".to_owned(),
            json!({"order_id": format!("PO-{:08}", i), "items": 1 + i % 5, "verified_by": "order_code",
                   "handed_over_at": "2026-12-06T10:00:00.000Z"}),
        ),
        _ => (
            Lane::Audit,
            "audit.login",
            format!("E{}", 100 + i % 40),
            "desk-1".to_owned(),
            json!({"employee_id": format!("E{}", 100 + i % 40), "result": "ok",
                   "address": format!("10.0.{}.{}", i % 4, i % 250), "session": id}),
        ),
    };
    NewEntry {
        lane,
        kind: kind.into(),
        actor: Some(actor),
        device: Some(device),
        body,
    }
}

/// A data directory whose journal holds `n` pending entries; the entries as written.
async fn backlog(dir: &Path, n: usize) -> Vec<Entry> {
    let mut config = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    config.store_id = STORE.into();
    config.journal.push = false;
    config.feeds.pull = false;
    config.pepper = Secret::new(PEPPER);
    let state = standin::server::open(config, Arc::new(SystemClock)).unwrap();
    let entries = state
        .store
        .write(move |c| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(19);
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            (0..n)
                .map(|i| standin::journal::append(c, STORE, &now, new_entry(&mut rng, i)))
                .collect::<Result<Vec<_>, _>>()
                .map_err(StoreError::from)
        })
        .await
        .unwrap();
    state.store.close().await;
    entries
}

/// Pushes `bodies` (each a whole request) to a fresh simulator from `clients` at once;
/// entries/s.
async fn intake_rate(bodies: &Arc<Vec<String>>, n: usize, clients: usize) -> f64 {
    let sim = simulator().await;
    let url = format!("{}/v1/stores/{STORE}/journal", sim.central_url());
    let http = reqwest::Client::new();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (bodies, next, http, url) =
                (bodies.clone(), next.clone(), http.clone(), url.clone());
            tokio::spawn(async move {
                let mut answered = 0;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else {
                        return answered;
                    };
                    let res = http
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    assert!(res.status().is_success(), "{}", res.status());
                    let answer: Value = res.json().await.unwrap();
                    answered += answer["results"].as_array().unwrap().len();
                }
            })
        })
        .collect();
    let mut answered = 0;
    for t in tasks {
        answered += t.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(answered, n, "the simulator answered for every entry");
    sim.shutdown().await;
    n as f64 / secs
}

async fn set_central(sim: &Simulator, mode: &str) {
    let r = reqwest::Client::new()
        .put(format!("{}/admin/faults/central", sim.admin_url()))
        .json(&json!({"mode": mode}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}

/// Whether any entry still waits, asked the way the uplink asks (the pending index, lane by
/// lane): cheap enough to poll without taking CPU from the drain it watches.
fn any_pending(c: &rusqlite::Connection) -> bool {
    Lane::BY_PRIORITY.iter().any(|l| {
        c.prepare_cached("SELECT 1 FROM journal WHERE lane = ?1 AND outcome IS NULL LIMIT 1")
            .unwrap()
            .exists([l.as_str()])
            .unwrap()
    })
}

fn read_only(db: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c
}

/// CPU seconds (user + system) `pid` has used so far, from `/proc/PID/stat`.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |r| r.1);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    f.iter().sum::<u64>() as f64 / 100.0
}

fn at(ts: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(ts)
        .unwrap()
        .with_timezone(&chrono::Utc)
}

#[tokio::main]
async fn main() {
    let n = env_or("BENCH_ENTRIES", 100_000);
    let batch = standin::journal::uplink::backlog_batch(&standin::config::JournalConfig::default());
    let work = tempfile::tempdir_in(target_dir()).unwrap();
    let data = work.path().join("data");

    let started = Instant::now();
    let written = backlog(&data, n).await;
    let mut per_lane: HashMap<Lane, usize> = HashMap::new();
    for e in &written {
        *per_lane.entry(e.lane).or_default() += 1;
    }
    println!(
        "backlog_drain: {n} entries appended and chained in {:.1} s ({})",
        started.elapsed().as_secs_f64(),
        Lane::BY_PRIORITY
            .iter()
            .map(|l| format!("{} {}", l.as_str(), per_lane.get(l).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join(", ")
    );

    // The ceiling: the same entries in the order the uplink sends them (lane by lane), in
    // batches of the size it sends, serialised before the clock starts.
    let mut in_order: Vec<&Entry> = written.iter().collect();
    in_order.sort_by_key(|e| (e.lane, e.seq));
    let bodies: Arc<Vec<String>> = Arc::new(
        in_order
            .chunks(batch)
            .map(|c| serde_json::to_string(&json!({ "entries": c })).unwrap())
            .collect(),
    );
    let mut ceiling: f64 = 0.0;
    let mut one_client = 0.0;
    for clients in [1, 2, 4] {
        let rate = intake_rate(&bodies, n, clients).await;
        println!(
            "backlog_drain: ceiling, simulator intake from {clients} client(s), batches of {batch}: {rate:.0} entries/s"
        );
        ceiling = ceiling.max(rate);
        if clients == 1 {
            one_client = rate;
        }
    }
    drop(bodies);

    // Central down; standin serve starts on the backlog and fails for a moment.
    let sim = simulator().await;
    set_central(&sim, "down").await;
    let port = free_port();
    let config = format!(
        "store_id = \"{STORE}\"\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\npepper = \"{PEPPER}\"\n\n\
         [central]\nurl = \"{}\"\ntimeout_ms = 30000\nhealth_interval_secs = 1\n\n\
         [feeds]\npull = false\n\n[journal]\nretry_base_ms = 100\nretry_cap_ms = 1000\n\n\
         [log]\nfilter = \"warn\"\n",
        data.display(),
        sim.central_url()
    );
    let path = work.path().join("standin.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = spawn_serve(&path, port, Stdio::inherit(), Duration::from_secs(30)).await;
    let pid = child.id();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let db = data.join("standin.db");
    let watch = read_only(&db);
    let pending: i64 = watch
        .query_row(
            "SELECT count(*) FROM journal WHERE outcome IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        pending, n as i64,
        "nothing delivered while central was down"
    );
    let rss_before = serve::status_kib(pid, "VmRSS:");

    // BENCH_PERF=FILE: `perf record` the standin process while it drains.
    let perf = std::env::var("BENCH_PERF").ok().map(|out| {
        std::process::Command::new("perf")
            .args([
                "record",
                "-F",
                "499",
                "-g",
                "-o",
                &out,
                "-p",
                &pid.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    });
    let (standin_cpu, bench_cpu) = (cpu_secs(pid), cpu_secs(std::process::id()));
    set_central(&sim, "ok").await;
    let back = chrono::Utc::now();
    let back_instant = Instant::now();
    let drained = async {
        loop {
            if !any_pending(&watch) {
                return back_instant.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(
                back_instant.elapsed() < Duration::from_secs(600),
                "not drained in 10 minutes"
            );
        }
    };
    let (seen_drained, rss_peak) =
        serve::peak_while(|| serve::status_kib(pid, "VmRSS:"), drained).await;
    let rss_after = serve::status_kib(pid, "VmRSS:");
    let standin_cpu = cpu_secs(pid) - standin_cpu;
    let bench_cpu = cpu_secs(std::process::id()) - bench_cpu;
    if let Some(perf) = perf {
        let _ = std::process::Command::new("kill")
            .args(["-INT", &perf.id().to_string()])
            .status();
        let _ = perf.wait_with_output();
    }

    // When each lane was acknowledged, from the store's own records.
    let c = rusqlite::Connection::open(&db).unwrap();
    let mut lanes: HashMap<String, (String, String, i64)> = HashMap::new();
    let mut stmt = c
        .prepare(
            "SELECT lane, min(delivered_at), max(delivered_at), count(*) FROM journal
             WHERE outcome = 'accepted' AND delivered_via = 'push' GROUP BY lane",
        )
        .unwrap();
    let mut rows = stmt.query([]).unwrap();
    while let Some(r) = rows.next().unwrap() {
        lanes.insert(
            r.get(0).unwrap(),
            (r.get(1).unwrap(), r.get(2).unwrap(), r.get(3).unwrap()),
        );
    }
    drop(rows);
    drop(stmt);
    let accepted: i64 = lanes.values().map(|l| l.2).sum();
    let first = lanes.values().map(|l| at(&l.0)).min().unwrap();
    let last = lanes.values().map(|l| at(&l.1)).max().unwrap();
    let secs = (last - first).num_microseconds().unwrap() as f64 / 1e6;
    let rate = n as f64 / secs;
    let broken = standin::journal::chain::verify(&c).unwrap();
    drop(c);
    let _ = child.kill();
    let _ = child.wait();

    // What central holds: every id once, each lane in seq order, lanes in priority order.
    let received: Value = reqwest::get(format!("{}/admin/received", sim.admin_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    sim.shutdown().await;
    let received = received["journal"].as_array().unwrap();
    let by_id: HashMap<&str, &Entry> = written.iter().map(|e| (e.id.as_str(), e)).collect();
    let mut more_than_once = 0;
    let mut unknown = 0;
    let mut last_seq: HashMap<Lane, i64> = HashMap::new();
    let mut out_of_order = 0;
    let mut span: HashMap<Lane, (usize, usize)> = HashMap::new();
    for (pos, r) in received.iter().enumerate() {
        if r["count"] != 1 {
            more_than_once += 1;
        }
        let Some(e) = by_id.get(r["id"].as_str().unwrap()) else {
            unknown += 1;
            continue;
        };
        if r["entry"]["hash"] != e.hash.as_str() {
            unknown += 1;
        }
        let prev = last_seq.insert(e.lane, e.seq).unwrap_or(0);
        if e.seq <= prev {
            out_of_order += 1;
        }
        let s = span.entry(e.lane).or_insert((pos, pos));
        s.1 = pos;
    }
    let priority_kept =
        Lane::BY_PRIORITY
            .windows(2)
            .all(|w| match (span.get(&w[0]), span.get(&w[1])) {
                (Some(hi), Some(lo)) => hi.1 < lo.0,
                _ => true,
            });

    println!(
        "backlog_drain: central back; first acknowledgement after {:.2} s (the breaker's wait, not counted), drained (seen by polling) after {:.2} s",
        (first - back).num_milliseconds() as f64 / 1e3,
        seen_drained.as_secs_f64()
    );
    for lane in Lane::BY_PRIORITY {
        if let Some((lo, hi, count)) = lanes.get(lane.as_str()) {
            let (a, b) = span[&lane];
            println!(
                "backlog_drain:   {:<8} {count:>6} entries acknowledged from {:>6.2} s to {:>6.2} s; arrived at central as #{a}..#{b}",
                lane.as_str(),
                (at(lo) - first).num_milliseconds() as f64 / 1e3,
                (at(hi) - first).num_milliseconds() as f64 / 1e3,
            );
        }
    }
    println!(
        "backlog_drain: RESULT drain {rate:.0} entries/s ({n} in {secs:.2} s, first to last acknowledgement); ceiling {ceiling:.0} entries/s; ratio {:.2} (goal >= 10,000/s and >= 0.5); {:.2} of one client's intake (one ordered stream, as the uplink sends)",
        rate / ceiling,
        rate / one_client
    );
    println!(
        "backlog_drain: CPU while draining: standin {standin_cpu:.2} s, this process (the simulator and the poller) {bench_cpu:.2} s"
    );
    println!(
        "backlog_drain: standin RSS {:.1} MB before, peak {:.1} MB while draining, {:.1} MB after",
        mb(rss_before),
        mb(rss_peak),
        mb(rss_after)
    );
    println!(
        "backlog_drain: central holds {} entries ({} unknown or altered, {more_than_once} received more than once, {out_of_order} out of seq order in their lane); lane priority {}; standin: {accepted} accepted by push; chain {}",
        received.len(),
        unknown,
        if priority_kept { "kept" } else { "BROKEN" },
        broken.as_deref().unwrap_or("verifies"),
    );
    assert_eq!(received.len(), n, "central holds every entry");
    assert_eq!((unknown, more_than_once, out_of_order), (0, 0, 0));
    assert!(
        priority_kept,
        "lanes arrived out of priority order: {span:?}"
    );
    assert_eq!(accepted, n as i64);
    assert!(broken.is_none());
}
