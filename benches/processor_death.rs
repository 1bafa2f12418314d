//! The first payment after the processor dies (issue 19, item 4): 64 kiosks paying against
//! the real server and the built-in simulator's processor (the real HTTP contract,
//! `Idempotency-Key` and all), which answers, then dies mid-load four ways in one run:
//! **hang** (accepts, acts on the request, never answers), **refused** (listener closed,
//! live connections aborted), **503** and **503 with `Retry-After: 2`**. Between scenarios the
//! processor comes back and the bench waits until the breaker has closed again.
//!
//! `cargo bench --bench processor_death` (`BENCH_KIOSKS=N`, default 64; `BENCH_INTERVAL_MS=N`,
//! default 50: each kiosk starts a payment every N ms, or right after the last one when that
//! took longer, so 64 kiosks ask for about 1,280 payments/s, a busy moment well under the
//! writer's stand-in ceiling (`kiosk_payments`), and 0 is back to back; `BENCH_BASE_SECS`,
//! default 3, before each death; `BENCH_AFTER_SECS`, default 5, after it).
//!
//! Per scenario it prints, next to the same run's p99 before the death:
//! - the longest wait of any payment in flight at the death or started after it, next to
//!   `payments.timeout_ms` (goal: none longer);
//! - the time from the death until the p99 of the payments started in each 250 ms window is
//!   under 20 ms and stays there until the processor comes back (a window in which no payment
//!   started counts as not recovered: the kiosks were all waiting). Goal ≤ 2 s;
//! - payments/s before, and after the death (all of it, and once recovered), and how the
//!   payments after the death were decided.
//!
//! At the end, after the forwarding worker has sent the stand-in approvals on, the database
//! is checked: every payment a kiosk sent got a 2xx and is one row; none is left pending;
//! the answer each kiosk got is the row's stored answer; each payment has exactly one
//! decision entry in the journal (online, offline, declined); none answered online was
//! forwarded. The bench panics if any of that fails.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use standin::clock::SystemClock;
use standin::config::{Config, TokenConfig};
use standin::simulator::{SimConfig, Simulator};
use standin::state::AppState;
use standin::upstream::{BreakerState, Upstream};

const WINDOW: Duration = Duration::from_millis(250);
const GOAL_P99: Duration = Duration::from_millis(20);
const GOAL_RECOVERY: Duration = Duration::from_secs(2);

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One payment as its kiosk saw it.
struct Sample {
    start: Instant,
    took: Duration,
    kiosk: usize,
    key: String,
    /// The answer's `status`, or `error <HTTP status or transport>`.
    status: String,
    /// The answer's body, compared with the stored one at the end.
    answer: Option<Value>,
}

struct Scenario {
    name: &'static str,
    fault: Value,
}

fn main() {
    let kiosks = env_or("BENCH_KIOSKS", 64) as usize;
    let interval = Duration::from_millis(env_or("BENCH_INTERVAL_MS", 50));
    let base = Duration::from_secs(env_or("BENCH_BASE_SECS", 3));
    let after = Duration::from_secs(env_or("BENCH_AFTER_SECS", 5));
    // Standin on its own runtime, the simulator and the kiosks on another: the kiosks' own
    // work does not queue behind the server's tasks (both share the machine's cores still).
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(&server_rt, kiosks, interval, base, after));
    drop(rt);
    server_rt.shutdown_timeout(Duration::from_secs(5));
}

async fn run(
    server_rt: &tokio::runtime::Runtime,
    kiosks: usize,
    interval: Duration,
    base: Duration,
    after: Duration,
) {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let sim = Simulator::start(SimConfig {
        listen: any,
        central_listen: any,
        payments_listen: any,
        store_id: "store-0001".into(),
        receipts: 10,
        pickup_orders: 10,
        seed: 19,
        pepper: b"bench-pepper-0123456789".to_vec(),
        part_size: 100,
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sync_token = standin::access::token::generate();
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    config.payments.url = Some(sim.payments_url());
    let timeout_ms = config.payments.timeout_ms;
    config.tokens = vec![TokenConfig {
        name: "hq".into(),
        sha256: standin::access::token::sha256_hex(&sync_token),
        scopes: vec!["sync".into()],
    }];
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (state, base_url, server) = server_rt
        .spawn(async move {
            let state = standin::server::open(config, Arc::new(SystemClock)).unwrap();
            let listener = tokio::net::TcpListener::bind(any).await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            let server = tokio::spawn(standin::launch(state.clone(), listener, async move {
                let _ = stop_rx.await;
            }));
            (state, url, server)
        })
        .await
        .unwrap();

    let tokens = setup(&base_url, &sync_token, kiosks).await;
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let paying = Arc::new(AtomicBool::new(true));
    let mut kiosk_tasks = Vec::new();
    for (k, token) in tokens.iter().enumerate() {
        let (url, token, samples, paying) = (
            base_url.clone(),
            token.clone(),
            samples.clone(),
            paying.clone(),
        );
        // Spread over one interval, so the kiosks do not pay in lockstep.
        let offset = interval.mul_f64(k as f64 / kiosks as f64);
        kiosk_tasks.push(tokio::spawn(kiosk(
            k, url, token, interval, offset, samples, paying,
        )));
    }

    let scenarios = [
        Scenario {
            name: "hang",
            fault: json!({"mode": "hang"}),
        },
        Scenario {
            name: "refused",
            fault: json!({"mode": "down"}),
        },
        Scenario {
            name: "503",
            fault: json!({"mode": "error", "status": 503}),
        },
        Scenario {
            name: "503 + Retry-After: 2",
            fault: json!({"mode": "retry_after", "status": 503, "retry_after_s": 2}),
        },
    ];
    let load_before = loadavg();
    println!(
        "processor_death: {kiosks} kiosks, one payment each every {} ms (about {:.0}/s asked), payments.timeout_ms = {timeout_ms}, load {load_before}",
        interval.as_millis(),
        if interval.is_zero() {
            f64::INFINITY
        } else {
            kiosks as f64 / interval.as_secs_f64()
        },
    );
    let admin = reqwest::Client::new();
    let mut verdicts = Vec::new();
    for s in &scenarios {
        let back = wait_online(&state, &samples).await;
        println!(
            "[{}] processor answering, breaker closed, stand-in approvals forwarded ({:.1} s after the previous scenario)",
            s.name,
            back.as_secs_f64()
        );
        let base_from = Instant::now();
        tokio::time::sleep(base).await;
        let death = Instant::now();
        set_fault(&admin, &sim, &s.fault).await;
        tokio::time::sleep(after).await;
        let end = Instant::now();
        set_fault(&admin, &sim, &json!({"mode": "ok"})).await;
        // Every payment started before `end` has been answered once the next scenario's
        // wait is over; the figures are taken at the start of the next round.
        verdicts.push((s.name, base_from, death, end));
    }
    wait_online(&state, &samples).await;
    paying.store(false, Ordering::Relaxed);
    for t in kiosk_tasks {
        t.await.unwrap();
    }
    let load_after = loadavg();
    let samples = std::mem::take(&mut *samples.lock().unwrap());

    let mut met = true;
    for (name, base_from, death, end) in verdicts {
        met &= report(name, &samples, base_from, death, end, timeout_ms);
    }
    println!("\nload before {load_before}, after {load_after}");

    check(&state, &samples).await;
    println!(
        "goals (every scenario: none waits longer than payments.timeout_ms, p99 under 20 ms within 2 s): {}",
        if met { "met" } else { "NOT met" }
    );
    let _ = stop.send(());
    let _ = server.await;
    sim.shutdown().await;
}

/// The devices and a policy whose caps the run cannot reach, pushed through the feed route;
/// the kiosks' tokens.
async fn setup(base: &str, sync_token: &str, kiosks: usize) -> Vec<String> {
    let client = reqwest::Client::new();
    let push = |feed: &str, body: Value| {
        let req = client
            .post(format!("{base}/sync/v1/feeds/{feed}/batches"))
            .bearer_auth(sync_token)
            .json(&body);
        async move {
            let r = req.send().await.unwrap();
            assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        }
    };
    let tokens: Vec<String> = (0..kiosks)
        .map(|i| format!("bench-kiosk-token-{i:03}-0123456789abcdef0123456789"))
        .collect();
    let devices: Vec<Value> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({"device_id": format!("sco-{i:03}"), "kind": "kiosk", "lane": format!("lane-{i:03}"),
                   "token_sha256": standin::access::token::sha256_hex(t), "active": true})
        })
        .collect();
    push(
        "devices",
        json!({"batch": 1, "kind": "delta", "upserts": devices, "deletes": []}),
    )
    .await;
    let policy = [
        ("offline_tx_cap_minor", json!(1_000_000)),
        ("offline_exposure_cap_minor", json!(1_000_000_000_000i64)),
        ("offline_max_hours", json!(24)),
        ("offline_tenders", json!(["card_token", "p2pe"])),
        ("forward_deadline_hours", json!(48)),
    ];
    let upserts: Vec<Value> = policy
        .iter()
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect();
    push(
        "policy",
        json!({"batch": 1, "kind": "delta", "upserts": upserts, "deletes": []}),
    )
    .await;
    tokens
}

/// One kiosk: a payment every `interval` (or right after the last when it took longer).
async fn kiosk(
    k: usize,
    base: String,
    token: String,
    interval: Duration,
    offset: Duration,
    samples: Arc<Mutex<Vec<Sample>>>,
    paying: Arc<AtomicBool>,
) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    tokio::time::sleep(offset).await;
    let mut n = 0usize;
    while paying.load(Ordering::Relaxed) {
        let key = format!("k{k}-{n}");
        let body = json!({"idempotency_key": key, "basket_id": format!("b{k}-{n}"),
               "amount_minor": 1_000 + (n % 50) as i64 * 37, "currency": "USD",
               "tender": {"kind": "card_token", "token": format!("tok_{k}_{n}"), "brand": "visa",
                          "last4": format!("{:04}", (k * 7919 + n) % 10_000), "exp_month": 1 + n % 12, "exp_year": 2029}});
        n += 1;
        let start = Instant::now();
        let res = client
            .post(format!("{base}/kiosk/v1/payments"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await;
        let (status, answer) = match res {
            Ok(r) if r.status().is_success() => match r.json::<Value>().await {
                Ok(v) => (
                    v["status"].as_str().unwrap_or("no status").to_string(),
                    Some(v),
                ),
                Err(_) => ("error unreadable body".to_string(), None),
            },
            Ok(r) => (format!("error HTTP {}", r.status().as_u16()), None),
            Err(_) => ("error transport".to_string(), None),
        };
        let took = start.elapsed();
        samples.lock().unwrap().push(Sample {
            start,
            took,
            kiosk: k,
            key,
            status,
            answer,
        });
        if let Some(rest) = interval.checked_sub(took) {
            tokio::time::sleep(rest).await;
        }
    }
}

async fn set_fault(admin: &reqwest::Client, sim: &Simulator, fault: &Value) {
    let r = admin
        .put(format!("{}/admin/faults/payments", sim.admin_url()))
        .json(fault)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}

/// Waits until the payments breaker is closed, holds nothing back, the last 500 ms of
/// payments were decided online and the forwarding worker has sent every stand-in approval
/// on (so each scenario's baseline is the same: online payments and nothing else); how long
/// that took.
async fn wait_online(state: &AppState, samples: &Mutex<Vec<Sample>>) -> Duration {
    let t = Instant::now();
    loop {
        let to_forward = state
            .store
            .read(|c| {
                c.query_row(
                    "SELECT count(*) FROM payments WHERE status = 'approved_offline'",
                    [],
                    |r| r.get::<_, i64>(0),
                )
                .map_err(standin::store::StoreError::from)
            })
            .await
            .unwrap();
        let closed = state
            .upstreams
            .get(Upstream::Payments)
            .is_some_and(|h| h.breaker == BreakerState::Closed && h.retry_at.is_none());
        let online = {
            let s = samples.lock().unwrap();
            let since = Instant::now() - Duration::from_millis(500);
            let recent: Vec<&Sample> = s.iter().rev().take_while(|x| x.start > since).collect();
            !recent.is_empty()
                && recent
                    .iter()
                    .all(|x| x.status == "approved" || x.status == "declined")
        };
        if closed && online && to_forward == 0 {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < Duration::from_secs(env_or("BENCH_DRAIN_SECS", 300)),
            "the processor is not back, or not everything forwarded, within BENCH_DRAIN_SECS"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn p99(mut v: Vec<Duration>) -> Option<Duration> {
    if v.is_empty() {
        return None;
    }
    v.sort();
    Some(v[((v.len() as f64 * 0.99) as usize).min(v.len() - 1)])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The p99 of the payments started in each whole 250 ms window from `from` to `to` (`None`:
/// no payment started in it).
fn per_window(samples: &[Sample], from: Instant, to: Instant) -> Vec<Option<Duration>> {
    let windows = ((to - from).as_secs_f64() / WINDOW.as_secs_f64()).floor() as usize;
    (0..windows)
        .map(|w| {
            let at = from + WINDOW * w as u32;
            p99(samples
                .iter()
                .filter(|s| s.start >= at && s.start < at + WINDOW)
                .map(|s| s.took)
                .collect())
        })
        .collect()
}

/// The scenario's figures; whether its goals were met.
fn report(
    name: &str,
    samples: &[Sample],
    base_from: Instant,
    death: Instant,
    end: Instant,
    timeout_ms: u64,
) -> bool {
    let before: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.start >= base_from && s.start + s.took <= death)
        .collect();
    let before_p99 = p99(before.iter().map(|s| s.took).collect());
    let before_rate = before.len() as f64 / (death - base_from).as_secs_f64();
    // In flight at the death or started after it, until the processor came back.
    let hit: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.start + s.took > death && s.start < end)
        .collect();
    let longest = hit.iter().map(|s| s.took).max().unwrap_or_default();
    let window_p99 = per_window(samples, death, end);
    let bad = |p: &Option<Duration>| p.is_none_or(|p| p >= GOAL_P99);
    let last_bad = window_p99.iter().rposition(bad);
    let recovery = last_bad.map_or(Duration::ZERO, |w| WINDOW * (w as u32 + 1));
    let first_good = window_p99.iter().position(|p| !bad(p));
    // The same windows before the death: how often the machine's own noise alone puts a
    // window's p99 over 20 ms.
    let before_windows = per_window(samples, base_from, death);
    let before_bad = before_windows.iter().filter(|p| bad(p)).count();
    let after_bad = first_good.map_or(0, |f| window_p99[f..].iter().filter(|p| bad(p)).count());
    let after_all =
        hit.iter().filter(|s| s.start >= death).count() as f64 / (end - death).as_secs_f64();
    let settled_from = death + recovery;
    let after_settled = (end - settled_from >= WINDOW).then(|| {
        hit.iter().filter(|s| s.start >= settled_from).count() as f64
            / (end - settled_from).as_secs_f64()
    });
    let mut mix = std::collections::BTreeMap::<&str, usize>::new();
    for s in &hit {
        *mix.entry(s.status.as_str()).or_default() += 1;
    }
    let waited = hit.iter().filter(|s| s.took >= GOAL_P99).count();
    let wait_ok = longest <= Duration::from_millis(timeout_ms);
    let recovery_ok = recovery <= GOAL_RECOVERY;
    println!("\n[{name}]");
    println!(
        "  before: {before_rate:.0} payments/s, p99 {:.2} ms (baseline, {} payments)",
        before_p99.map_or(f64::NAN, ms),
        before.len()
    );
    println!(
        "  longest wait after the death: {:.1} ms (payments.timeout_ms = {timeout_ms}: {}); {waited} of {} payments waited 20 ms or more",
        ms(longest),
        if wait_ok { "met" } else { "NOT met" },
        hit.len()
    );
    println!(
        "  p99 back under 20 ms and staying there: {:.2} s after the death (goal <= 2 s: {}); first under 20 ms: {}",
        recovery.as_secs_f64(),
        if recovery_ok { "met" } else { "NOT met" },
        first_good.map_or("never".into(), |f| format!(
            "{:.2} s",
            (WINDOW * f as u32).as_secs_f64()
        )),
    );
    println!(
        "  250 ms windows with p99 >= 20 ms: {before_bad} of {} before the death, {after_bad} of {} from the first one under 20 ms on",
        before_windows.len(),
        first_good.map_or(0, |f| window_p99.len() - f)
    );
    let shown: Vec<String> = window_p99
        .iter()
        .take(12)
        .map(|p| p.map_or("-".into(), |p| format!("{:.0}", ms(p))))
        .collect();
    println!(
        "  p99 per 250 ms window from the death (ms): {}",
        shown.join(" ")
    );
    println!(
        "  after: {after_all:.0} payments/s over the {:.1} s after the death, {} once recovered",
        (end - death).as_secs_f64(),
        after_settled.map_or("not".into(), |r| format!("{r:.0}/s"))
    );
    println!("  decided after the death: {mix:?}");
    wait_ok && recovery_ok
}

/// Every payment decided once, as its kiosk was told (see the module's doc); panics if not.
async fn check(state: &AppState, samples: &[Sample]) {
    let errors: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.status.starts_with("error"))
        .collect();
    // The forwarding worker sends the stand-in approvals on; wait for it (bounded).
    let t = Instant::now();
    let (mut pending, mut to_forward) = (0, 0);
    while t.elapsed() < Duration::from_secs(env_or("BENCH_DRAIN_SECS", 300)) {
        (pending, to_forward) = state
            .store
            .read(|c| {
                c.query_row(
                    "SELECT count(*) FILTER (WHERE status = 'pending'),
                            count(*) FILTER (WHERE status = 'approved_offline') FROM payments",
                    [],
                    |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
                )
                .map_err(standin::store::StoreError::from)
            })
            .await
            .unwrap();
        if pending == 0 && to_forward == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let drained = t.elapsed();
    type Row = (String, String, String, Option<String>, i64);
    let rows: Vec<Row> = state
        .store
        .read(|c| {
            // The decision entries counted per payment in one pass over the journal, joined
            // here (SQLite would scan the grouped result once per payment).
            let mut st = c.prepare(
                "SELECT json_extract(body, '$.payment_id'), count(*) FROM journal
                 WHERE kind IN ('payment.approved', 'payment.declined',
                                'payment.approved_offline', 'payment.declined_offline')
                 GROUP BY 1",
            )?;
            let decisions: std::collections::HashMap<String, i64> = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            let mut st = c.prepare(
                "SELECT payment_id, device_id, idempotency_key, status, answer FROM payments",
            )?;
            let rows = st
                .query_map([], |r| {
                    let id: String = r.get(0)?;
                    let n = decisions.get(&id).copied().unwrap_or(0);
                    // The answer as a replay gives it: stored without its `payment_id`
                    // (migration 0016), which the row's own column puts back.
                    let answer: Option<String> = r.get(4)?;
                    let answer =
                        answer.map(|a| standin::payments::store::answer_from_stored(&id, a));
                    Ok((r.get(1)?, r.get(2)?, r.get(3)?, answer, n))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok::<_, standin::store::StoreError>(rows)
        })
        .await
        .unwrap();
    let by_key: std::collections::HashMap<(String, String), &Row> = rows
        .iter()
        .map(|r| ((r.0.clone(), r.1.clone()), r))
        .collect();
    let mut wrong = Vec::new();
    for s in samples.iter().filter(|s| s.answer.is_some()) {
        let Some(row) = by_key.get(&(format!("sco-{:03}", s.kiosk), s.key.clone())) else {
            wrong.push(format!("{}: answered {} but no row", s.key, s.status));
            continue;
        };
        let stored: Option<Value> = row.3.as_deref().and_then(|a| serde_json::from_str(a).ok());
        if stored.as_ref() != s.answer.as_ref() {
            wrong.push(format!(
                "{}: kiosk got {:?}, stored {:?}",
                s.key, s.answer, row.3
            ));
        }
        if row.4 != 1 {
            wrong.push(format!("{}: {} decision entries", s.key, row.4));
        }
        let online = matches!(s.status.as_str(), "approved" | "declined");
        if online && row.2 != s.status {
            wrong.push(format!(
                "{}: answered {} online, now {}",
                s.key, s.status, row.2
            ));
        }
    }
    let statuses = rows.iter().fold(
        std::collections::BTreeMap::<&str, usize>::new(),
        |mut m, r| {
            *m.entry(r.2.as_str()).or_default() += 1;
            m
        },
    );
    println!(
        "\nchecked: {} payments sent, {} rows, {} errors; forwarding drained in {:.1} s ({pending} pending, {to_forward} approved_offline left); statuses {statuses:?}",
        samples.len(),
        rows.len(),
        errors.len(),
        drained.as_secs_f64()
    );
    assert!(
        errors.is_empty(),
        "payments without a decision: {:?}",
        errors
            .iter()
            .take(5)
            .map(|s| (&s.key, &s.status))
            .collect::<Vec<_>>()
    );
    assert_eq!(rows.len(), samples.len(), "one row per payment sent");
    assert_eq!(pending, 0, "payments left pending");
    assert!(
        wrong.is_empty(),
        "{} wrong: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    println!("checked: every payment decided exactly once, as its kiosk was told");
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
