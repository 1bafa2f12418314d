//! Memory, measured (issue 19): `standin serve` in its own process (release build) on a
//! million receipts, its RSS read from `/proc/PID/status` every 20 ms, next to the throughput
//! it served in the same run.
//!
//! `cargo bench --bench footprint` (`BENCH_RECEIPTS=N`, default 1,000,000; `BENCH_SECONDS=N`
//! per phase, default 10; `BENCH_SIGNINS=N`, default 500).
//! - **Data:** the simulator's supercenter (N receipts over 90 days, 5,000 pickup orders)
//!   loaded through the feed pull, 64 kiosks and a policy whose caps the run cannot reach
//!   pushed through the feed route; the database is built once and kept in
//!   `target/bench-data/footprint-N/` (a copy is served, so every run starts from the same
//!   file).
//! - **Phases**, one after another on the same process: idle; a sign-in flood (N wrong PINs
//!   at once from 25 addresses); `/healthz` from 32 connections (the baseline of the ratios);
//!   32 desk connections searching receipts and pickups (barcode, phone last four, card and
//!   dates, one receipt, pickup scan, last name, one order); 64 kiosks paying in stand-in
//!   (the processor refused, every payment a durable `approved_offline` write); then desks
//!   and kiosks at once. Each phase prints its rate, p50, p99, its ratio to `/healthz` and
//!   the RSS peak while it ran; RSS idle, peak and at the end close the report.
//! - **Allocator:** the report names the allocator the server runs with and the malloc
//!   settings in its environment (`GLIBC_TUNABLES`, `MIMALLOC_…`, `_RJEM_MALLOC_CONF`), read
//!   from the process, so runs of different builds or settings compared side by side say what
//!   each measured (issue 19: `GLIBC_TUNABLES=glibc.malloc.arena_max=16` lifts `serve`'s cap).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use standin::clock::SystemClock;
use standin::config::{Config, Secret, TokenConfig};
use standin::simulator::{SimConfig, Simulator};

const PEPPER: &str = "bench-pepper";
const KIOSKS: usize = 64;
const DESKS: usize = 32;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `VmRSS`, `RssAnon` and `RssFile` of `pid`, in KiB.
fn rss(pid: u32) -> (u64, u64, u64) {
    let (rss, anon, file, _) = status(pid);
    (rss, anon, file)
}

#[path = "common/serve.rs"]
mod serve;

use serve::{free_port, mb, spawn_serve};

/// `VmRSS`, `RssAnon`, `RssFile` (KiB) and `Threads` of `pid`.
fn status(pid: u32) -> (u64, u64, u64, u64) {
    let field = |name: &str| serve::status_kib(pid, name);
    (
        field("VmRSS:"),
        field("RssAnon:"),
        field("RssFile:"),
        field("Threads:"),
    )
}

/// Which allocator and malloc settings `pid` runs with, read from the process itself: the
/// allocator linked into its executable (`mimalloc` or `jemalloc` leave their names in it;
/// otherwise glibc's malloc) and the `GLIBC_TUNABLES` / `MIMALLOC_…` / `MALLOC_CONF` in its
/// environment (after `serve`'s own re-execution, if any). Printed so a run says what it
/// measured (issue 19: runs of different allocators are compared side by side).
fn allocator(pid: u32) -> String {
    let exe = std::fs::read(format!("/proc/{pid}/exe")).unwrap_or_default();
    let has = |needle: &[u8]| exe.windows(needle.len()).any(|w| w == needle);
    let linked = if has(b"mimalloc") {
        "mimalloc"
    } else if has(b"jemalloc") {
        "jemalloc"
    } else {
        "glibc malloc"
    };
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    // glibc (2.36) parses `GLIBC_TUNABLES` in place, writing a NUL over each `:`: the
    // tunables after the first read as entries of their own, put back here.
    let mut vars: Vec<String> = Vec::new();
    for v in environ.split(|&b| b == 0) {
        let v = String::from_utf8_lossy(v).into_owned();
        match vars.last_mut() {
            Some(last) if last.starts_with("GLIBC_TUNABLES=") && v.starts_with("glibc.") => {
                last.push(':');
                last.push_str(&v);
            }
            _ => vars.push(v),
        }
    }
    let settings: Vec<String> = vars
        .into_iter()
        .filter(|v| {
            [
                "GLIBC_TUNABLES=",
                "MIMALLOC_",
                "MALLOC_CONF=",
                "_RJEM_MALLOC_CONF=",
            ]
            .iter()
            .any(|p| v.starts_with(p))
        })
        .collect();
    if settings.is_empty() {
        format!("{linked}, no malloc settings in its environment")
    } else {
        format!("{linked}, {}", settings.join(" "))
    }
}

fn kiosk_token(i: usize) -> String {
    format!("footprint-kiosk-token-{i:03}-0123456789abcdef0123456789")
}

/// The target directory this bench runs from (`target/release/deps/footprint-…`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"))
}

/// The built database and the staff logins behind it, built once per receipt count.
async fn data(receipts: usize) -> PathBuf {
    let dir = target_dir()
        .join("bench-data")
        .join(format!("footprint-{receipts}"));
    if dir.join("staff.json").exists() {
        println!("footprint: reusing {}", dir.display());
        return dir;
    }
    let partial = dir.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).unwrap();
    let started = Instant::now();
    let any = "127.0.0.1:0".parse().unwrap();
    let sim = Simulator::start(SimConfig {
        listen: any,
        central_listen: any,
        payments_listen: any,
        store_id: "store-0001".into(),
        receipts,
        pickup_orders: 5_000,
        seed: 19,
        pepper: PEPPER.as_bytes().to_vec(),
        part_size: 5_000,
    })
    .await
    .unwrap();
    let sync_token = standin::access::token::generate();
    let mut config = Config {
        data_dir: partial.clone(),
        ..Config::default()
    };
    config.store_id = "store-0001".into();
    config.central.url = Some(sim.central_url());
    config.feeds.pull = true;
    config.feeds.pull_interval_secs = 3600;
    config.feeds.pull_page = 10;
    config.journal.push = false;
    config.pepper = Secret::new(PEPPER);
    config.log.filter = "error".into();
    config.tokens = vec![TokenConfig {
        name: "hq".into(),
        sha256: standin::access::token::sha256_hex(&sync_token),
        scopes: vec!["sync".into()],
    }];
    let state = standin::server::open(config, Arc::new(SystemClock)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(standin::launch(state.clone(), listener, async move {
        let _ = rx.await;
    }));
    let feeds = ["receipts", "pickup_orders", "staff", "policy", "devices"];
    let status = loop {
        let s = standin::status::current(&state).await.unwrap();
        if feeds
            .iter()
            .all(|f| s.feeds[f].status.snapshot_at.is_some())
        {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let client = reqwest::Client::new();
    let push = |feed: &str, body: Value| {
        let req = client
            .post(format!("{base}/sync/v1/feeds/{feed}/batches"))
            .bearer_auth(&sync_token)
            .json(&body);
        async move {
            let r = req.send().await.unwrap();
            assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        }
    };
    let devices: Vec<Value> = (0..KIOSKS)
        .map(|i| {
            json!({"device_id": format!("sco-bench-{i:03}"), "kind": "kiosk", "lane": format!("bench-{i:03}"),
                   "token_sha256": standin::access::token::sha256_hex(&kiosk_token(i)), "active": true})
        })
        .collect();
    let next = |feed: &str| status.feeds[feed].status.last_batch + 1;
    push(
        "devices",
        json!({"batch": next("devices"), "kind": "delta", "upserts": devices, "deletes": []}),
    )
    .await;
    // Caps the run cannot reach: every payment is a durable approved_offline write.
    let policy: Vec<Value> = [
        ("offline_tx_cap_minor", json!(1_000_000)),
        ("offline_exposure_cap_minor", json!(1_000_000_000_000i64)),
        ("card_velocity_count", json!(1_000_000)),
        ("card_velocity_amount_minor", json!(1_000_000_000_000i64)),
    ]
    .iter()
    .map(|(k, v)| json!({"key": k, "value": v}))
    .collect();
    push(
        "policy",
        json!({"batch": next("policy"), "kind": "delta", "upserts": policy, "deletes": []}),
    )
    .await;
    let staff: Vec<Value> = sim
        .credentials()
        .staff
        .iter()
        .map(|s| json!({"employee_id": s.employee_id, "pin": s.pin, "role": s.role}))
        .collect();
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    state.store.close().await;
    drop(state);
    sim.shutdown().await;
    std::fs::write(
        partial.join("staff.json"),
        serde_json::to_vec(&staff).unwrap(),
    )
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&partial, &dir).unwrap();
    println!(
        "footprint: built {receipts} receipts in {:.1} s into {}",
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    dir
}

struct Server {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn serve(data: &Path) -> Server {
    let dir = tempfile::tempdir_in(data.parent().unwrap()).unwrap();
    std::fs::copy(data.join("standin.db"), dir.path().join("standin.db")).unwrap();
    let port = free_port();
    // A port nothing listens on: the processor refuses, so payments are decided in stand-in.
    let dead = free_port();
    let config = format!(
        "store_id = \"store-0001\"\nlisten = \"0.0.0.0:{port}\"\ndata_dir = \"{}\"\npepper = \"{PEPPER}\"\n\n[http]\nmax_connections_per_client = 256\n\n[access]\naddress_failures = 1000\n\n[payments]\nurl = \"http://127.0.0.1:{dead}\"\ntimeout_ms = 300\n\n[journal]\npush = false\n\n[log]\nfilter = \"error\"\n",
        dir.path().display(),
    );
    let path = dir.path().join("standin.toml");
    std::fs::write(&path, config).unwrap();
    let child = spawn_serve(&path, port, Stdio::inherit(), Duration::from_secs(30)).await;
    let url = format!("http://127.0.0.1:{port}");
    Server {
        child,
        url,
        _dir: dir,
    }
}

/// Samples `pid`'s RSS every 20 ms until `done` resolves; the peak (VmRSS, KiB).
async fn peak_while<F: std::future::Future>(pid: u32, done: F) -> (F::Output, u64) {
    serve::peak_while(|| rss(pid).0, done).await
}

/// Latencies of answered requests and errors, over `secs`.
#[derive(Default)]
struct Load {
    lat: Vec<Duration>,
    errors: usize,
    secs: f64,
}

impl Load {
    fn add(&mut self, other: Load) {
        self.lat.extend(other.lat);
        self.errors += other.errors;
        self.secs = self.secs.max(other.secs);
    }

    fn rate(&self) -> f64 {
        self.lat.len() as f64 / self.secs
    }

    fn pct(&mut self, p: f64) -> f64 {
        self.lat.sort();
        self.lat
            .get(((self.lat.len() as f64 * p) as usize).min(self.lat.len().saturating_sub(1)))
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    }
}

/// `clients` connections sending GETs from `paths` back to back for `duration`.
async fn desks(
    clients: &[reqwest::Client],
    base: &str,
    cookie: &str,
    paths: Arc<Vec<String>>,
    duration: Duration,
) -> Load {
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for (c, client) in clients.iter().enumerate() {
        let (client, base, cookie, paths) = (
            client.clone(),
            base.to_string(),
            cookie.to_string(),
            paths.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(c as u64);
            let mut load = Load::default();
            while Instant::now() < deadline {
                let path = &paths[rng.random_range(0..paths.len())];
                let t = Instant::now();
                let ok = match client
                    .get(format!("{base}{path}"))
                    .header("cookie", &cookie)
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                    _ => false,
                };
                if ok {
                    load.lat.push(t.elapsed());
                } else {
                    load.errors += 1;
                }
            }
            load
        }));
    }
    let mut all = Load {
        secs: duration.as_secs_f64(),
        ..Load::default()
    };
    for t in tasks {
        all.add(t.await.unwrap());
    }
    all
}

/// `clients.len()` kiosks paying back to back for `duration`, each with its own token and
/// fresh idempotency keys (`round` keeps keys unique across phases).
async fn kiosks(clients: &[reqwest::Client], base: &str, round: usize, duration: Duration) -> Load {
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for (k, client) in clients.iter().enumerate() {
        let (client, base, token) = (client.clone(), base.to_string(), kiosk_token(k));
        tasks.push(tokio::spawn(async move {
            let mut load = Load::default();
            let mut n = 0usize;
            while Instant::now() < deadline {
                n += 1;
                let body = json!({"idempotency_key": format!("f{round}-{k}-{n}"), "basket_id": format!("b{round}-{k}-{n}"),
                    "amount_minor": 1_000 + (n % 50) as i64 * 37, "currency": "USD",
                    "tender": {"kind": "card_token", "token": format!("tok_{k}_{n}"), "brand": "visa",
                               "last4": format!("{:04}", (k * 7919 + n) % 10_000), "exp_month": 1 + n % 12, "exp_year": 2029}});
                let t = Instant::now();
                let ok = match client
                    .post(format!("{base}/kiosk/v1/payments"))
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                    _ => false,
                };
                if ok {
                    load.lat.push(t.elapsed());
                } else {
                    load.errors += 1;
                }
            }
            load
        }));
    }
    let mut all = Load {
        secs: duration.as_secs_f64(),
        ..Load::default()
    };
    for t in tasks {
        all.add(t.await.unwrap());
    }
    all
}

/// What the desks search: receipts and pickups as a desk finds them.
fn desk_paths(db: &Path) -> Vec<String> {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    let strings = |sql: &str| -> Vec<String> {
        c.prepare(sql)
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let mut paths = Vec::new();
    for id in strings("SELECT receipt_id FROM receipts ORDER BY random() LIMIT 5000") {
        paths.push(format!("/api/v1/receipts?q={id}"));
        paths.push(format!("/api/v1/receipts/{id}"));
    }
    for p in strings(
        "SELECT DISTINCT customer_phone_last4 FROM receipts WHERE customer_phone_last4 IS NOT NULL LIMIT 2000",
    ) {
        paths.push(format!("/api/v1/receipts?q={p}"));
    }
    for bl in strings("SELECT DISTINCT brand || '&last4=' || last4 FROM receipt_cards LIMIT 2000") {
        paths.push(format!("/api/v1/receipts?card_brand={bl}"));
    }
    for (id, code) in c
        .prepare("SELECT order_id, pickup_code FROM pickup_orders ORDER BY random() LIMIT 3000")
        .unwrap()
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .unwrap()
        .map(Result::unwrap)
    {
        paths.push(format!("/api/v1/pickups?q={code}"));
        paths.push(format!("/api/v1/pickups/{id}"));
    }
    for name in strings("SELECT customer_name FROM pickup_orders LIMIT 2000") {
        let last = name.split(' ').next_back().unwrap_or(&name).to_string();
        paths.push(format!("/api/v1/pickups?q={last}"));
    }
    paths
}

fn main() {
    let receipts = env_or("BENCH_RECEIPTS", 1_000_000);
    let seconds = env_or("BENCH_SECONDS", 10) as u64;
    let signins = env_or("BENCH_SIGNINS", 500);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let data = data(receipts).await;
        let paths = Arc::new(desk_paths(&data.join("standin.db")));
        let staff: Vec<Value> =
            serde_json::from_slice(&std::fs::read(data.join("staff.json")).unwrap()).unwrap();
        let server = serve(&data).await;
        let pid = server.child.id();
        let base = server.url.clone();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let idle = rss(pid);
        let mut overall_peak = idle.0;
        let d = Duration::from_secs(seconds);

        // A desk signs in (its cookie serves every desk connection).
        let who = staff
            .iter()
            .find(|s| s["role"] == "associate")
            .unwrap_or(&staff[0]);
        let res = reqwest::Client::new()
            .post(format!("{base}/api/v1/session"))
            .json(&json!({"employee_id": who["employee_id"], "pin": who["pin"]}))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "sign-in: {}", res.status());
        let cookie = res.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();

        // The sign-in flood: wrong PINs from 25 addresses at once.
        let addrs: Vec<reqwest::Client> = (0..25u8)
            .map(|i| {
                reqwest::Client::builder()
                    .local_address(IpAddr::from([127, 0, 0, 10 + i]))
                    .build()
                    .unwrap()
            })
            .collect();
        let before_flood = rss(pid).0;
        let flood = async {
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..signins {
                let (c, url) = (addrs[i % addrs.len()].clone(), base.clone());
                tasks.spawn(async move {
                    c.post(format!("{url}/api/v1/session"))
                        .json(&json!({"employee_id": format!("U{i:05}"), "pin": "000000"}))
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .unwrap_or(0)
                });
            }
            let mut checked = 0;
            while let Some(s) = tasks.join_next().await {
                checked += usize::from(s.unwrap_or(0) == 401);
            }
            checked
        };
        let t = Instant::now();
        let (checked, flood_peak) = peak_while(pid, flood).await;
        let flood_secs = t.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after_flood = rss(pid).0;
        overall_peak = overall_peak.max(flood_peak);
        println!(
            "footprint: standin serve on {receipts} receipts (pid {pid}), {seconds} s per phase, {DESKS} desks, {KIOSKS} kiosks"
        );
        println!("allocator: {}", allocator(pid));
        println!(
            "sign-in flood   {signins} wrong PINs from 25 addresses: {checked} checked in {flood_secs:.1} s; RSS before {:.1} MB, peak {:.1} MB, 2 s after {:.1} MB",
            mb(before_flood),
            mb(flood_peak),
            mb(after_flood)
        );

        let conn = || {
            reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .unwrap()
        };
        let desk_clients: Vec<_> = (0..DESKS).map(|_| conn()).collect();
        let kiosk_clients: Vec<_> = (0..KIOSKS).map(|_| conn()).collect();
        let health = Arc::new(vec!["/healthz".to_string()]);
        let (mut h, h_peak) = peak_while(pid, desks(&desk_clients, &base, &cookie, health, d)).await;
        let (mut dl, d_peak) =
            peak_while(pid, desks(&desk_clients, &base, &cookie, paths.clone(), d)).await;
        let (mut kl, k_peak) = peak_while(pid, kiosks(&kiosk_clients, &base, 1, d)).await;
        let ((mut both_d, mut both_k), b_peak) = peak_while(pid, async {
            tokio::join!(
                desks(&desk_clients, &base, &cookie, paths.clone(), d),
                kiosks(&kiosk_clients, &base, 2, d)
            )
        })
        .await;
        overall_peak = overall_peak.max(h_peak).max(d_peak).max(k_peak).max(b_peak);
        let h_rate = h.rate();
        let row = |name: &str, l: &mut Load, peak: u64| {
            println!(
                "{name:<26} {:>8.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  errors {:>4}  ratio to /healthz {:.3}  RSS peak {:>6.1} MB",
                l.rate(),
                l.pct(0.5),
                l.pct(0.99),
                l.errors,
                l.rate() / h_rate,
                mb(peak)
            );
        };
        row("/healthz (32 conns)", &mut h, h_peak);
        row("desks: receipts + pickups", &mut dl, d_peak);
        row("kiosks: payments", &mut kl, k_peak);
        row("together: desks", &mut both_d, b_peak);
        row("together: kiosks", &mut both_k, b_peak);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let end = status(pid);
        println!(
            "RSS idle {:.1} MB (anon {:.1}, file {:.1})  peak {:.1} MB  end {:.1} MB (anon {:.1}, file {:.1}; {} threads)  goal <= 40 MB",
            mb(idle.0),
            mb(idle.1),
            mb(idle.2),
            mb(overall_peak),
            mb(end.0),
            mb(end.1),
            mb(end.2),
            end.3
        );
    });
}
