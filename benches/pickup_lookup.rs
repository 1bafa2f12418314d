//! Pickup search and order lookup over HTTP against a supercenter's data, next to the same
//! server's `/healthz` in the same run.
//!
//! `cargo bench --bench pickup_lookup` (`BENCH_SECONDS=N` per phase, default 5;
//! `BENCH_CONNECTIONS=N`, default 32). Standin and the simulator of central run in this
//! process (release build), data loaded through the feed pull; each of the N client tasks
//! keeps its own keep-alive connection and sends requests back to back. Client and server
//! share the machine's cores, which is why the figures that travel are the ratios to
//! `/healthz`, a route that does no work.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use standin::clock::SystemClock;
use standin::config::{Config, Secret};
use standin::simulator::{SimConfig, Simulator};

const PEPPER: &str = "bench-pepper";

struct Phase {
    name: &'static str,
    requests: usize,
    errors: usize,
    secs: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Latencies of answered requests, errors and seconds of one run, for adding up.
#[derive(Default)]
struct Run {
    lat: Vec<Duration>,
    errors: usize,
    secs: f64,
}

impl Run {
    fn add(&mut self, other: Run) {
        self.lat.extend(other.lat);
        self.errors += other.errors;
        self.secs += other.secs;
    }

    fn phase(mut self, name: &'static str) -> Phase {
        self.lat.sort();
        let all = &self.lat;
        let pct = |p: f64| {
            all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        Phase {
            name,
            requests: all.len(),
            errors: self.errors,
            secs: self.secs,
            p50_ms: pct(0.50),
            p99_ms: pct(0.99),
        }
    }
}

/// One slice: each client sends requests back to back until `duration` is up. Only requests
/// answered inside it count, over exactly `duration`; the clients (one keep-alive connection
/// each) outlive the slice, so no slice pays for connecting.
async fn run_phase(
    clients: &[reqwest::Client],
    base: &str,
    cookie: &str,
    paths: Arc<Vec<String>>,
    seed: u64,
    duration: Duration,
) -> Run {
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
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed * 1_000 + c as u64);
            let (mut lat, mut errors) = (Vec::with_capacity(20_000), 0usize);
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
                if Instant::now() > deadline {
                    break;
                }
                if ok {
                    lat.push(t.elapsed());
                } else {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    Run {
        lat: all,
        errors,
        secs: duration.as_secs_f64(),
    }
}

fn main() {
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let connections: usize = std::env::var("BENCH_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let sim = Simulator::start(SimConfig {
            listen: any,
            central_listen: any,
            payments_listen: any,
            store_id: "store-0001".into(),
            receipts: 2_000,
            pickup_orders: 5_000,
            seed: 11,
            pepper: PEPPER.as_bytes().to_vec(),
            part_size: 1000,
        })
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config { data_dir: dir.path().to_path_buf(), ..Config::default() };
        config.central.url = Some(sim.central_url());
        config.feeds.pull = true;
        config.feeds.pull_interval_secs = 3600;
        config.journal.push = false;
        config.pepper = Secret::new(PEPPER);
        config.log.filter = "error".into();
        let state = standin::server::open(config, Arc::new(SystemClock)).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (_stop, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(standin::launch(state.clone(), listener, async move {
            let _ = rx.await;
        }));
        loop {
            let s = standin::status::current(&state).await.unwrap();
            if ["pickup_orders", "staff"].iter().all(|f| s.feeds[f].status.snapshot_at.is_some()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let who = &sim.credentials().staff[0];
        let res = reqwest::Client::new()
            .post(format!("{base}/api/v1/session"))
            .json(&serde_json::json!({"employee_id": who.employee_id, "pin": who.pin}))
            .send()
            .await
            .unwrap();
        let cookie = res.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();

        // Lookups as the desk makes them: a scanned pickup code, an order number, a name.
        let orders: Vec<(String, String, String, String)> = state
            .store
            .read(|c| {
                let mut stmt = c.prepare("SELECT order_id, order_number, pickup_code, customer_name FROM pickup_orders")?;
                let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?.collect::<Result<Vec<_>, _>>();
                rows.map_err(standin::store::StoreError::from)
            })
            .await
            .unwrap();
        let scans: Vec<String> = orders
            .iter()
            .flat_map(|(_, number, code, _)| [format!("/api/v1/pickups?q={number}"), format!("/api/v1/pickups?q={code}")])
            .collect();
        let names: Vec<String> = orders
            .iter()
            .map(|(_, _, _, name)| format!("/api/v1/pickups?q={}", name.split(' ').next_back().unwrap_or(name)))
            .collect();
        let lookups: Vec<String> = orders.iter().map(|(id, ..)| format!("/api/v1/pickups/{id}")).collect();
        println!("pickup_lookup: {} pickup orders, {connections} connections, {seconds} s per phase", orders.len());
        // What a change to the list costs name search: one rebuild of its copy in memory
        // (searches meanwhile are answered in SQL).
        let copy = state.clone();
        let built = Instant::now();
        state
            .store
            .read(move |c| copy.pickup_names.rebuild(c).map_err(standin::store::StoreError::from))
            .await
            .unwrap();
        println!("name search copy in memory: rebuilt from {} orders in {:.1} ms", orders.len(), built.elapsed().as_secs_f64() * 1000.0);

        // BENCH_ONLY=scan|name|lookup runs /healthz and that phase alone (for a profiler).
        let only = std::env::var("BENCH_ONLY").ok();
        let wanted = |p: &str| only.as_deref().is_none_or(|o| o == p);
        // Each phase takes turns with /healthz, a second each, and is compared with the
        // /healthz seconds between its own: this machine's speed drifts by a third from one
        // minute to the next, which a ratio to one /healthz run elsewhere would count as the
        // route's.
        let mut rows = vec![];
        for (key, name, paths) in [("scan", "search: scan", scans), ("name", "search: name", names), ("lookup", "order lookup", lookups)] {
            if wanted(key) {
                let (paths, health_path) = (Arc::new(paths), Arc::new(vec!["/healthz".to_string()]));
                let (mut health, mut phase) = (Run::default(), Run::default());
                let client = || reqwest::Client::builder().pool_max_idle_per_host(1).build().unwrap();
                let health_clients: Vec<_> = (0..connections).map(|_| client()).collect();
                let clients: Vec<_> = (0..connections).map(|_| client()).collect();
                for slice in 0..seconds {
                    let d = Duration::from_secs(1);
                    health.add(run_phase(&health_clients, &base, &cookie, health_path.clone(), slice, d).await);
                    phase.add(run_phase(&clients, &base, &cookie, paths.clone(), slice, d).await);
                }
                rows.push((health.phase("/healthz"), phase.phase(name)));
            }
        }
        for (health, p) in &rows {
            let base_rate = health.requests as f64 / health.secs;
            let rate = p.requests as f64 / p.secs;
            println!(
                "{:<14} {:>8.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  errors {:>3}  /healthz in turns {:>6.0} req/s ({} errors)  ratio {:.2}",
                p.name, rate, p.p50_ms, p.p99_ms, p.errors, base_rate, health.errors, rate / base_rate
            );
        }
        println!("goal: lookups >= 0.50 of /healthz, p99 < 5 ms at 32 connections");
        println!("(scan = order number or pickup code, as a scanner sends it; name = a last name, up to 20 orders)");
        sim.shutdown().await;
    });
}
