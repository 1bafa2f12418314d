//! `standin demo` and `standin simulate`: the simulator of central and the processor, and
//! Standin wired to it with its data loaded through the real feed path (the pull worker).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use tokio::net::TcpListener;

use crate::clock::SystemClock;
use crate::config::{Config, Secret, TokenConfig};
use crate::feeds::Feed;
use crate::simulator::{DemoCredentials, SimConfig, Simulator};

/// The demo's pepper is fixed so PINs keep working across restarts of the same demo.
pub(crate) const DEMO_PEPPER: &str = "standin-demo-pepper-not-for-production";
const CREDENTIALS_FILE: &str = "demo-credentials.json";

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Where Standin listens.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Where the demo keeps its database (recreated on every demo run).
    #[arg(long, default_value = "./standin-demo")]
    pub data_dir: PathBuf,
    #[arg(long, default_value_t = 20_000)]
    pub receipts: usize,
    #[arg(long, default_value_t = 3_000)]
    pub pickup_orders: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Where the simulator's admin API listens (central and the processor take the next ports
    /// when this is fixed, ephemeral ones when it is port 0).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub simulator_listen: SocketAddr,
    /// Serve the UI from this directory instead of the built-in copy (editing without
    /// rebuilding); only files inside it are served.
    #[arg(long, env = "STANDIN_UI_DIR")]
    pub ui_dir: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct SimulateArgs {
    /// The simulator's admin API; central listens on the next port, the processor on the one after.
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,
    #[arg(long)]
    pub central_listen: Option<SocketAddr>,
    #[arg(long)]
    pub payments_listen: Option<SocketAddr>,
    #[arg(long, default_value_t = 20_000)]
    pub receipts: usize,
    #[arg(long, default_value_t = 3_000)]
    pub pickup_orders: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[arg(long, default_value = "store-0001")]
    pub store_id: String,
    /// Pepper for the staff PIN verifiers it generates (Standin's `pepper` must match).
    #[arg(long, env = "STANDIN_PEPPER", default_value = DEMO_PEPPER, hide_default_value = true)]
    pub pepper: String,
    /// Records per snapshot part.
    #[arg(long, default_value_t = 1000)]
    pub part_size: usize,
}

fn next_port(addr: SocketAddr, by: u16) -> SocketAddr {
    if addr.port() == 0 {
        addr
    } else {
        SocketAddr::new(addr.ip(), addr.port().saturating_add(by))
    }
}

fn sim_config(args: &SimulateArgs) -> SimConfig {
    SimConfig {
        listen: args.listen,
        central_listen: args.central_listen.unwrap_or(next_port(args.listen, 1)),
        payments_listen: args.payments_listen.unwrap_or(next_port(args.listen, 2)),
        store_id: args.store_id.clone(),
        receipts: args.receipts,
        pickup_orders: args.pickup_orders,
        seed: args.seed,
        pepper: args.pepper.as_bytes().to_vec(),
        part_size: args.part_size.max(1),
    }
}

pub async fn run_simulator(args: SimulateArgs) -> anyhow::Result<()> {
    let sim = Simulator::start(sim_config(&args)).await?;
    println!("simulator admin:   {}", sim.admin_url());
    println!("central:           {}", sim.central_url());
    println!("payments:          {}", sim.payments_url());
    println!("store id:          {}", args.store_id);
    println!(
        "faults:            curl -X PUT {}/admin/faults/central -d '{{\"mode\":\"down\"}}'",
        sim.admin_url()
    );
    crate::server::shutdown_signal().await;
    sim.shutdown().await;
    Ok(())
}

#[derive(Serialize)]
struct CredentialsFile<'a> {
    url: String,
    simulator_url: String,
    sync_token: &'a str,
    #[serde(flatten)]
    credentials: &'a DemoCredentials,
}

/// Starts the simulator and Standin, waits for the feeds to load, prints how to look around.
pub async fn run_demo(args: DemoArgs) -> anyhow::Result<()> {
    prepare_data_dir(&args.data_dir)?;
    let sim_args = SimulateArgs {
        listen: args.simulator_listen,
        central_listen: None,
        payments_listen: None,
        receipts: args.receipts,
        pickup_orders: args.pickup_orders,
        seed: args.seed,
        store_id: "store-0001".into(),
        pepper: DEMO_PEPPER.into(),
        part_size: 1000,
    };
    eprintln!(
        "generating a supercenter's data ({} receipts, {} pickup orders)…",
        args.receipts, args.pickup_orders
    );
    let sim = Simulator::start(sim_config(&sim_args)).await?;

    let sync_token = crate::access::token::generate();
    let mut config = Config {
        store_id: sim_args.store_id.clone(),
        listen: args.listen,
        data_dir: args.data_dir.clone(),
        ..Config::default()
    };
    config.central.url = Some(sim.central_url());
    config.payments.url = Some(sim.payments_url());
    config.feeds.pull = true;
    config.feeds.pull_interval_secs = 5;
    config.central.health_interval_secs = 2;
    config.payments.health_interval_secs = 2;
    config.pepper = Secret::new(DEMO_PEPPER);
    config.demo = Some(crate::config::DemoConfig {
        simulator_url: sim.admin_url(),
    });
    config.ui_dir = args.ui_dir.clone();
    config.tokens = vec![TokenConfig {
        name: "demo-hq-sync".into(),
        sha256: crate::access::token::sha256_hex(&sync_token),
        scopes: vec!["sync".into()],
    }];

    let state = crate::server::open(config, Arc::new(SystemClock))?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::server::launch(state.clone(), listener, async move {
        let _ = stop_rx.await;
    }));

    wait_for_feeds(&state).await?;
    let file = CredentialsFile {
        url: url.clone(),
        simulator_url: sim.admin_url(),
        sync_token: &sync_token,
        credentials: sim.credentials(),
    };
    let path = args.data_dir.join(CREDENTIALS_FILE);
    std::fs::write(&path, serde_json::to_vec_pretty(&file)?)
        .with_context(|| format!("writing {}", path.display()))?;
    print_banner(&url, &sim, &path);

    tokio::select! {
        _ = crate::server::shutdown_signal() => {}
        res = server => {
            res??;
            bail!("standin stopped unexpectedly");
        }
    }
    let _ = stop_tx.send(());
    sim.shutdown().await;
    Ok(())
}

/// A demo starts from a clean database each run; it refuses a directory that holds a real one.
fn prepare_data_dir(dir: &Path) -> anyhow::Result<()> {
    let db = dir.join("standin.db");
    if db.exists() {
        if !dir.join(CREDENTIALS_FILE).exists() {
            bail!(
                "{} holds a database that is not a demo's; pick another --data-dir",
                dir.display()
            );
        }
        for f in [
            "standin.db",
            "standin.db-wal",
            "standin.db-shm",
            CREDENTIALS_FILE,
        ] {
            let _ = std::fs::remove_file(dir.join(f));
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(())
}

/// Waits until every feed's first snapshot has switched in.
pub(crate) async fn wait_for_feeds(state: &crate::state::AppState) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut last_report = Instant::now();
    loop {
        let status = crate::status::current(state)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let pending: Vec<&str> = Feed::ALL
            .into_iter()
            .filter(|f| {
                status
                    .feeds
                    .get(f.as_str())
                    .is_none_or(|s| s.status.snapshot_at.is_none())
            })
            .map(Feed::as_str)
            .collect();
        if pending.is_empty() {
            eprintln!("feeds loaded in {:.1} s:", started.elapsed().as_secs_f64());
            for (name, f) in &status.feeds {
                eprintln!(
                    "  {name:<14} {:>8} records (batch {})",
                    f.status.records, f.status.last_batch
                );
            }
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!(
                "feeds still loading after 10 minutes: {}",
                pending.join(", ")
            );
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!("still loading: {}", pending.join(", "));
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn print_banner(url: &str, sim: &Simulator, creds_path: &Path) {
    let creds = sim.credentials();
    println!();
    println!("Standin demo is running.");
    println!("  service desk:   {url}/");
    println!("  status page:    {url}/status");
    println!("  status JSON:    {url}/api/v1/status");
    println!(
        "  simulator:      {} (central {}, processor {})",
        sim.admin_url(),
        sim.central_url(),
        sim.payments_url()
    );
    for role in ["associate", "lead", "manager"] {
        if let Some(s) = creds.staff.iter().find(|s| s.role == role) {
            println!(
                "  {role:<10}      employee {} / PIN {}",
                s.employee_id, s.pin
            );
        }
    }
    if let Some(k) = creds.kiosks.first() {
        println!("  kiosk           {} / token {}", k.device_id, k.token);
    }
    println!("  all credentials: {}", creds_path.display());
    println!(
        "  take central down: curl -X PUT {}/admin/faults/central -d '{{\"mode\":\"down\"}}'",
        sim.admin_url()
    );
    println!(
        "  stall HQ's updates (central still answers): curl -X PUT {}/admin/central/feeds/stall -d '{{\"stalled\":true,\"since_secs_ago\":1800}}'",
        sim.admin_url()
    );
    println!(
        "  add a 44-line receipt, a 28-item order and 600 orders due: curl -X POST {}/admin/central/samples -d '{{\"receipt_lines\":44,\"order_lines\":28,\"due_orders\":600}}'",
        sim.admin_url()
    );
    println!("  (the demo panel at the foot of the desk does both too)");
    println!("Ctrl-C stops both.");
}
