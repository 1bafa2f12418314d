//! Issue 14's attacks as measurements, against `standin serve` in its own process (release
//! build, RSS read from `/proc/PID/status`), each next to a baseline in the same run.
//!
//! `cargo bench --bench attack` (`BENCH_SIGNINS=N`, default 500; `BENCH_SOCKETS=N`, default
//! 5000).
//! - **Sign-in flood:** N sign-ins at once with wrong PINs (spread over 25 loopback
//!   addresses, 127.0.0.10–34, so the per-address limit lets them all be checked). Standin's
//!   RSS before, at peak (sampled every 20 ms) and 3 s after. Baseline, in this process: the
//!   same N Argon2 checks the way Standin did them before issue 14 (argon2's own
//!   `verify_password`, a fresh 19 MiB per check on the blocking pool, 2 at a time), this
//!   process's RSS before, at peak and after.
//! - **Socket hoarding:** one address (127.0.0.2) opens N idle sockets and keeps them; another
//!   (127.0.0.3) asks `/healthz` 200 times on fresh connections. p50/p99 and failures, next to
//!   the same 200 requests with no hoarder, in the same run.

use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use serde_json::json;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[path = "common/serve.rs"]
mod serve;

use serve::{free_port, mb, peak_while, spawn_serve};

fn rss_kib(pid: u32) -> u64 {
    serve::status_kib(pid, "VmRSS:")
}

const PEPPER: &str = "bench-pepper";

struct Server {
    child: Child,
    url: String,
    sync_token: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let sync_token = standin::access::token::generate();
    let port = free_port();
    let config = format!(
        "store_id = \"bench\"\nlisten = \"0.0.0.0:{port}\"\ndata_dir = \"{}\"\npepper = \"{PEPPER}\"\n\n[http]\nmax_connections_per_client = 256\n\n[access]\naddress_failures = 1000\n\n[[tokens]]\nname = \"hq\"\nsha256 = \"{}\"\nscopes = [\"sync\"]\n",
        dir.path().display(),
        standin::access::token::sha256_hex(&sync_token)
    );
    let path = dir.path().join("standin.toml");
    std::fs::write(&path, config).unwrap();
    let child = spawn_serve(&path, port, Stdio::null(), Duration::from_secs(10)).await;
    let url = format!("http://127.0.0.1:{port}");
    Server {
        child,
        url,
        sync_token,
        _dir: dir,
    }
}

async fn sign_in_flood(n: usize) {
    let server = start().await;
    let pid = server.child.id();
    let verifier =
        standin::access::pin::make_verifier("123456", PEPPER.as_bytes(), [5; 16]).unwrap();
    let staff: Vec<_> = (0..20)
        .map(|i| json!({"employee_id": format!("E{i:03}"), "name": format!("Staff {i}"), "role": "associate", "pin_verifier": verifier, "active": true}))
        .collect();
    let res = reqwest::Client::new()
        .post(format!("{}/sync/v1/feeds/staff/batches", server.url))
        .bearer_auth(&server.sync_token)
        .json(&json!({"batch": 1, "kind": "delta", "upserts": staff, "deletes": []}))
        .send()
        .await
        .unwrap();
    assert!(
        res.status().is_success(),
        "staff feed: {}",
        res.text().await.unwrap()
    );
    // One sign-in first, so "before" holds what any working store holds.
    let _ = reqwest::Client::new()
        .post(format!("{}/api/v1/session", server.url))
        .json(&json!({"employee_id": "E000", "pin": "123456"}))
        .send()
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let clients: Vec<reqwest::Client> = (0..25u8)
        .map(|i| {
            reqwest::Client::builder()
                .local_address(IpAddr::from([127, 0, 0, 10 + i]))
                .build()
                .unwrap()
        })
        .collect();
    let mut rounds = Vec::new();
    for round in 0..2 {
        let before = rss_kib(pid);
        let started = Instant::now();
        let flood = async {
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..n {
                let (c, url) = (clients[i % clients.len()].clone(), server.url.clone());
                tasks.spawn(async move {
                    c.post(format!("{url}/api/v1/session"))
                        .json(&json!({"employee_id": format!("U{round}-{i:05}"), "pin": "000000"}))
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .unwrap_or(0)
                });
            }
            let mut checked = 0;
            while let Some(s) = tasks.join_next().await {
                if s.unwrap_or(0) == 401 {
                    checked += 1;
                }
            }
            checked
        };
        let (checked, peak) = peak_while(|| rss_kib(pid), flood).await;
        let secs = started.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs(3)).await;
        rounds.push((before, peak, rss_kib(pid), checked, secs));
    }
    // One address floods (n at once) while a desk at another signs in with its right PIN.
    let flooder = clients[0].clone();
    let desk = reqwest::Client::builder()
        .local_address(IpAddr::from([127, 0, 0, 99]))
        .build()
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let (c, url) = (flooder.clone(), server.url.clone());
        tasks.spawn(async move {
            let _ = c
                .post(format!("{url}/api/v1/session"))
                .json(&json!({"employee_id": format!("F{i:05}"), "pin": "000000"}))
                .send()
                .await;
        });
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t = Instant::now();
    let desk_status = desk
        .post(format!("{}/api/v1/session", server.url))
        .json(&json!({"employee_id": "E001", "pin": "123456"}))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    let desk_ms = t.elapsed().as_secs_f64() * 1000.0;
    let t = Instant::now();
    while tasks.join_next().await.is_some() {}
    let flood_rest_ms = t.elapsed().as_secs_f64() * 1000.0;

    // Baseline: the same checks as before issue 14, in this process.
    let me = std::process::id();
    let base_before = rss_kib(me);
    let permits = Arc::new(tokio::sync::Semaphore::new(2));
    let baseline = async {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..n {
            let (p, v) = (permits.clone(), verifier.clone());
            tasks.spawn(async move {
                let _permit = p.acquire_owned().await.unwrap();
                tokio::task::spawn_blocking(move || {
                    let parsed = PasswordHash::new(&v).unwrap();
                    let params = argon2::Params::try_from(&parsed).unwrap();
                    let a = argon2::Argon2::new_with_secret(
                        PEPPER.as_bytes(),
                        argon2::Algorithm::Argon2id,
                        argon2::Version::V0x13,
                        params,
                    )
                    .unwrap();
                    a.verify_password(b"000000", &parsed).is_ok()
                })
                .await
                .unwrap()
            });
        }
        while tasks.join_next().await.is_some() {}
    };
    let base_started = Instant::now();
    let ((), base_peak) = peak_while(|| rss_kib(me), baseline).await;
    let base_secs = base_started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let base_after = rss_kib(me);
    println!("sign-in flood: {n} wrong PINs at once from 25 addresses, twice");
    for (i, (before, peak, after, checked, secs)) in rounds.into_iter().enumerate() {
        println!(
            "  standin serve #{} RSS before {:6.1} MB  peak {:6.1} MB  after {:6.1} MB  (after - before {:+.1} MB; {checked} checked, {:.0}/s)",
            i + 1,
            mb(before),
            mb(peak),
            mb(after),
            mb(after) - mb(before),
            checked as f64 / secs
        );
    }
    println!(
        "  one address floods {n} at once: a desk at another address signed in ({desk_status}) in {desk_ms:.0} ms; the flood finished {flood_rest_ms:.0} ms later"
    );
    println!(
        "  baseline (argon2 verify_password, fresh memory per check, same {n} checks, {:.0}/s)\n                    RSS before {:6.1} MB  peak {:6.1} MB  after {:6.1} MB  (after - before {:+.1} MB)",
        n as f64 / base_secs,
        mb(base_before),
        mb(base_peak),
        mb(base_after),
        mb(base_after) - mb(base_before)
    );
}

async fn health_from(url: &str, from: IpAddr, n: usize) -> (f64, f64, usize) {
    let mut times = Vec::with_capacity(n);
    let mut failed = 0;
    for _ in 0..n {
        let c = reqwest::Client::builder()
            .local_address(from)
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let t = Instant::now();
        match c.get(format!("{url}/healthz")).send().await {
            Ok(r) if r.status().is_success() => times.push(t.elapsed().as_secs_f64() * 1000.0),
            _ => failed += 1,
        }
    }
    times.sort_by(f64::total_cmp);
    let q = |p: f64| {
        times
            .get(((times.len() as f64 * p) as usize).min(times.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    (q(0.5), q(0.99), failed)
}

async fn socket_hoarding(n: usize) {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let server = start().await;
    let pid = server.child.id();
    let (b50, b99, bfail) = health_from(&server.url, IpAddr::from([127, 0, 0, 3]), 200).await;
    let addr: SocketAddr = server.url.trim_start_matches("http://").parse().unwrap();
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..n {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind(SocketAddr::from(([127, 0, 0, 2], 0))).unwrap();
        match s.connect(addr).await {
            Ok(c) => held.push(c),
            Err(_) => refused += 1,
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss = rss_kib(pid);
    let (h50, h99, hfail) = health_from(&server.url, IpAddr::from([127, 0, 0, 3]), 200).await;
    // How many of the hoarder's sockets the server still holds open.
    let mut open = 0;
    for s in &mut held {
        let mut buf = [0u8; 1];
        match s.try_read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => open += 1,
            _ => {}
        }
    }
    println!(
        "socket hoarding: one address opens {n} idle sockets ({refused} connects failed), another asks /healthz 200 times on fresh connections"
    );
    println!(
        "  with the hoarder   p50 {h50:6.2} ms  p99 {h99:6.2} ms  failed {hfail}   (hoarder's sockets still open: {open}; server RSS {:.1} MB)",
        mb(rss)
    );
    println!(
        "  baseline, no hoard p50 {b50:6.2} ms  p99 {b99:6.2} ms  failed {bfail}   p99 ratio {:.2}",
        h99 / b99
    );
    let _ = std::io::stdout().lock();
    let _ = std::io::empty().read(&mut [0u8; 0]);
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        sign_in_flood(env_or("BENCH_SIGNINS", 500)).await;
        socket_hoarding(env_or("BENCH_SOCKETS", 5000)).await;
    });
}
