//! Finding a sale over HTTP against 90 days of a supercenter's receipts, next to the same
//! server's `/healthz` in the same run: by barcode (a scan), by the phone's last four, by the
//! card's brand and last four over 90 days, and one receipt with its returnable quantities.
//!
//! `cargo bench --bench receipt_lookup` (`BENCH_RECEIPTS=N`, default 1,000,000;
//! `BENCH_SECONDS=N` per phase, default 5; `BENCH_CONNECTIONS=N`, default 32). Standin and
//! the simulator of central run in this process (release build), receipts loaded through the
//! feed pull. Each phase runs twice: one connection (what one desk waits) and N at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use standin::clock::SystemClock;
use standin::config::{Config, Secret};
use standin::simulator::{SimConfig, Simulator};

const PEPPER: &str = "bench-pepper";

struct Phase {
    requests: usize,
    errors: usize,
    secs: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

async fn run_phase(
    base: &str,
    cookie: &str,
    paths: Arc<Vec<String>>,
    connections: usize,
    duration: Duration,
) -> Phase {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for c in 0..connections {
        let (base, cookie, paths) = (base.to_string(), cookie.to_string(), paths.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .unwrap();
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(c as u64);
            let (mut lat, mut errors) = (Vec::with_capacity(20_000), 0usize);
            while Instant::now() < deadline {
                let path = &paths[rng.random_range(0..paths.len())];
                let t = Instant::now();
                match client
                    .get(format!("{base}{path}"))
                    .header("cookie", &cookie)
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        lat.push(t.elapsed());
                    }
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    let secs = started.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Phase {
        requests: all.len(),
        errors,
        secs,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: all.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
    }
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let receipts = env("BENCH_RECEIPTS", 1_000_000);
    let seconds = env("BENCH_SECONDS", 5) as u64;
    let connections = env("BENCH_CONNECTIONS", 32);
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
            receipts,
            pickup_orders: 10,
            seed: 13,
            pepper: PEPPER.as_bytes().to_vec(),
            part_size: 5000,
        })
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config { data_dir: dir.path().to_path_buf(), ..Config::default() };
        config.central.url = Some(sim.central_url());
        config.feeds.pull = true;
        config.feeds.pull_interval_secs = 3600;
        config.feeds.pull_page = 10;
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
        let loading = Instant::now();
        loop {
            let s = standin::status::current(&state).await.unwrap();
            if ["receipts", "staff", "policy"].iter().all(|f| s.feeds[f].status.snapshot_at.is_some()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        println!("receipt_lookup: {receipts} receipts loaded through the feed in {:.1} s", loading.elapsed().as_secs_f64());
        let who = &sim.credentials().staff[0];
        let res = reqwest::Client::new()
            .post(format!("{base}/api/v1/session"))
            .json(&serde_json::json!({"employee_id": who.employee_id, "pin": who.pin}))
            .send()
            .await
            .unwrap();
        let cookie = res.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();

        type Keys = (Vec<String>, Vec<String>, Vec<(String, String)>);
        let (ids, phones, cards): Keys = state
            .store
            .read(|c| {
                let ids = c.prepare("SELECT receipt_id FROM receipts ORDER BY random() LIMIT 20000")?
                    .query_map([], |r| r.get(0))?.collect::<Result<Vec<_>, _>>()?;
                let phones = c.prepare("SELECT DISTINCT customer_phone_last4 FROM receipts WHERE customer_phone_last4 IS NOT NULL LIMIT 5000")?
                    .query_map([], |r| r.get(0))?.collect::<Result<Vec<_>, _>>()?;
                let cards = c.prepare("SELECT DISTINCT brand, last4 FROM receipt_cards LIMIT 5000")?
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<Vec<_>, _>>()?;
                Ok::<_, standin::store::StoreError>((ids, phones, cards))
            })
            .await
            .unwrap();
        let phases: Vec<(&str, Vec<String>)> = vec![
            ("/healthz", vec!["/healthz".into()]),
            ("barcode scan", ids.iter().map(|id| format!("/api/v1/receipts?q={id}")).collect()),
            ("phone last 4", phones.iter().map(|p| format!("/api/v1/receipts?q={p}")).collect()),
            ("card + 90 days", cards.iter().map(|(b, l)| format!("/api/v1/receipts?card_brand={b}&last4={l}")).collect()),
            ("one receipt", ids.iter().map(|id| format!("/api/v1/receipts/{id}")).collect()),
        ];
        let d = Duration::from_secs(seconds);
        for conns in [1, connections] {
            println!("-- {conns} connection(s), {seconds} s per phase");
            let mut base_rate = None;
            for (name, paths) in &phases {
                let p = run_phase(&base, &cookie, Arc::new(paths.clone()), conns, d).await;
                let rate = p.requests as f64 / p.secs;
                let base_rate = *base_rate.get_or_insert(rate);
                println!(
                    "{name:<15} {rate:>8.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  errors {:>3}  ratio to /healthz {:.2}",
                    p.p50_ms, p.p99_ms, p.max_ms, p.errors, rate / base_rate
                );
            }
        }
        println!("goal: every lookup well under a second (phone and card answers carry up to 50 receipts)");
        sim.shutdown().await;
    });
}
