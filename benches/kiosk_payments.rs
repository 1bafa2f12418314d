//! Kiosk payments in stand-in mode (the processor unreachable) over HTTP against the real
//! server, next to PostgreSQL doing the same work with the same guarantees from as many
//! clients (and, for context, PostgreSQL's single-row committed inserts from 8 clients), in the
//! same run on the same machine.
//!
//! `cargo bench --bench kiosk_payments` (`BENCH_SECONDS=N` per side, default 10;
//! `BENCH_KIOSKS=N`, default 64; `BENCH_CLIENT=wrk|reqwest`, default wrk; `BENCH_KEYS=random`
//! for idempotency keys in random order; `BENCH_VELOCITY=1` for card velocity caps;
//! `BENCH_PAGE_SIZE=N` for a database made with N-byte pages, as an older store's).
//! - **Standin:** `launch` on port 0 with a temp database (`synchronous=FULL`), 64 kiosk
//!   devices and a policy whose caps are far above what the run can reach, so every payment
//!   is an `approved_offline` decision: a durable insert of the payment row plus its journal
//!   entry, answered only after COMMIT. The processor's URL points at a closed port, so its
//!   breaker opens after the first refusals. The load comes from `wrk -t 2` (Debian's `wrk`,
//!   installed with apt when missing), a native load generator in its own process as pgbench
//!   is for PostgreSQL: 64 keep-alive connections paying back to back, each request signed
//!   with the next kiosk's token and a fresh idempotency key. `BENCH_CLIENT=reqwest` drives
//!   it from 64 reqwest clients in this process instead (one per kiosk, sharing the server's
//!   runtime). Payments made durable are counted in the database after the run.
//! - **PostgreSQL:** Debian's `postgresql` (installed with apt when missing and run as root),
//!   a throwaway cluster from `initdb` in a temp dir on a unix socket, with its defaults
//!   (`fsync` and `synchronous_commit` on), driven by `pgbench -c 8 -j 2 -T N` with a script
//!   that inserts one row per transaction. Postgres refuses to run as root: the bench runs it
//!   as the `postgres` user through `runuser` when it is root.
//! - **The fair peer** (issue 19): the same cluster, `pgbench -c KIOSKS -j 2 -T N -M prepared`
//!   calling `pay()`, a PL/pgSQL function (`kiosk_payments_peer.sql`) doing what Standin's
//!   writer does for a stand-in payment: the idempotency check by (kiosk, key) with the stored
//!   answer replayed (another body refused), the kiosk's lane, the policy, exposure and
//!   card-velocity reads, the decision, the payment row with the same columns and indexes, the
//!   exposure counter, and a journal entry (same columns and indexes) chained to the previous
//!   entry's hash. Each payment first locks the chain's head row, which also makes the
//!   exposure cap race-free, as Standin's single writer does. Checked after the run: the
//!   counter equals the sum of approved rows, every entry's `prev_hash` is the entry before's
//!   hash, and a replay returns the first answer.
//! - **WAL per payment:** Standin's, from a second, shorter run with the WAL truncated first
//!   and held from restarting by a read snapshot (so the file's size is what was written); its
//!   p99 next to the main run's is the checkpoint's share of the tail. PostgreSQL's, from
//!   `pg_current_wal_lsn()` before and after the peer's run.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use standin::clock::SystemClock;
use standin::config::{Config, TokenConfig};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Default)]
struct Figures {
    /// 2xx answers the client counted.
    answered: usize,
    /// Payment rows the run added, counted in the database afterwards.
    durable: usize,
    approved_offline: usize,
    errors: usize,
    secs: f64,
    p50_ms: f64,
    p99_ms: f64,
    wal: Option<Wal>,
}

/// WAL written during a run with checkpoints held off.
struct Wal {
    bytes: u64,
    payments: usize,
    secs: f64,
    p99_ms: f64,
    writes_per_commit: f64,
}

/// The load generator on the Standin side.
enum Client {
    /// `wrk` (Debian's package), a native load generator in its own process, as pgbench is
    /// on the PostgreSQL side.
    Wrk(PathBuf),
    /// reqwest clients in this process, sharing the server's tokio runtime.
    Reqwest,
}

/// `BENCH_CLIENT=wrk` (the default) or `reqwest`; wrk is installed with apt when missing and
/// this runs as root, else the bench falls back to reqwest and says so.
fn choose_client() -> Client {
    let wanted = std::env::var("BENCH_CLIENT").unwrap_or_else(|_| "wrk".into());
    if wanted == "reqwest" {
        return Client::Reqwest;
    }
    let find = || {
        ["/usr/bin/wrk", "/usr/local/bin/wrk"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
    };
    if find().is_none() && is_root() {
        apt_install("wrk");
    }
    match find() {
        Some(p) => Client::Wrk(p),
        None => {
            println!(
                "wrk is not installed (apt-get install wrk): using in-process reqwest clients"
            );
            Client::Reqwest
        }
    }
}

fn main() {
    let seconds = env_or("BENCH_SECONDS", 10);
    let kiosks = env_or("BENCH_KIOSKS", 64) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = choose_client();
    let driver = match &client {
        Client::Wrk(_) => "wrk -t 2",
        Client::Reqwest => "reqwest clients in-process",
    };
    println!(
        "standin  idempotency keys {}; card velocity caps {}",
        if random_keys() {
            "in random order (BENCH_KEYS=random)"
        } else {
            "in time order per kiosk (a zero-padded counter)"
        },
        if velocity_capped() {
            "set (BENCH_VELOCITY=1)"
        } else {
            "not set"
        }
    );
    let standin = rt.block_on(run_standin(kiosks, Duration::from_secs(seconds), client));
    drop(rt);
    println!(
        "standin  stand-in payments over HTTP ({driver}), {kiosks} kiosks, {:.1} s: {} answered, {} durable ({} approved_offline), {} errors",
        standin.secs, standin.answered, standin.durable, standin.approved_offline, standin.errors
    );
    let rate = standin.durable.min(standin.answered) as f64 / standin.secs;
    println!(
        "standin  {rate:.0} durable payments/s, p50 {:.2} ms, p99 {:.2} ms",
        standin.p50_ms, standin.p99_ms
    );
    if let Some(wal) = &standin.wal {
        println!(
            "standin  WAL {:.0} bytes per payment ({:.1} MB over {} payments, {:.1} s with the WAL held from checkpointing: {:.0}/s, {:.1} writes per commit, p99 {:.2} ms; checkpoints' share of the p99 {:.0}%)",
            wal.bytes as f64 / wal.payments.max(1) as f64,
            wal.bytes as f64 / 1e6,
            wal.payments,
            wal.secs,
            wal.payments as f64 / wal.secs,
            wal.writes_per_commit,
            wal.p99_ms,
            100.0 * (1.0 - wal.p99_ms / standin.p99_ms).max(0.0)
        );
    }
    match postgres(seconds, kiosks) {
        Ok(pg) => {
            println!(
                "postgres {:.0} single-row committed inserts/s (pgbench -c 8 -j 2 -T {seconds}; context only)",
                pg.single_row_tps
            );
            println!(
                "postgres {:.0} payments/s doing the same work (pay(), pgbench -c {kiosks} -j 2 -T {seconds}), p50 {:.2} ms, p99 {:.2} ms, WAL {:.0} bytes per payment; {}",
                pg.peer_tps,
                pg.peer_p50_ms,
                pg.peer_p99_ms,
                pg.peer_wal_per_payment,
                pg.peer_checked
            );
            println!(
                "ratio    {:.2}x the same work in PostgreSQL (goal >= 2), {:.2}x its single-row inserts; p99 {:.2} ms (goal < 20 ms)",
                rate / pg.peer_tps,
                rate / pg.single_row_tps,
                standin.p99_ms
            );
        }
        Err(e) => println!("postgres baseline skipped: {e}"),
    }
}

async fn run_standin(kiosks: usize, duration: Duration, driver: Client) -> Figures {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on: the processor is unreachable (connection refused).
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let sync_token = standin::access::token::generate();
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    config.payments.url = Some(format!("http://{dead}"));
    config.payments.timeout_ms = 300;
    config.tokens = vec![TokenConfig {
        name: "hq".into(),
        sha256: standin::access::token::sha256_hex(&sync_token),
        scopes: vec!["sync".into()],
    }];
    if let Some(size) = std::env::var("BENCH_PAGE_SIZE")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
    {
        // A database made with another page size than a new one gets: as an older store's.
        let c = rusqlite::Connection::open(dir.path().join("standin.db")).unwrap();
        c.pragma_update(None, "page_size", size).unwrap();
        let _: String = c
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .unwrap();
    }
    let state = standin::server::open(config, Arc::new(SystemClock)).unwrap();
    let store = state.store.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0".parse::<SocketAddr>().unwrap())
        .await
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(standin::launch(state, listener, async move {
        let _ = rx.await;
    }));

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
    // Caps far above the run: every payment is approved offline (a durable write), none capped.
    let policy = [
        ("offline_tx_cap_minor", json!(1_000_000)),
        ("offline_exposure_cap_minor", json!(1_000_000_000_000i64)),
        ("offline_max_hours", json!(24)),
        ("offline_tenders", json!(["card_token", "p2pe"])),
        ("forward_deadline_hours", json!(48)),
    ];
    let velocity = [
        ("card_velocity_count", json!(1_000_000)),
        ("card_velocity_amount_minor", json!(1_000_000_000_000i64)),
    ];
    let upserts: Vec<Value> = policy
        .iter()
        .chain(velocity.iter().filter(|_| velocity_capped()))
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect();
    push(
        "policy",
        json!({"batch": 1, "kind": "delta", "upserts": upserts, "deletes": []}),
    )
    .await;

    let pay = payment_body;
    // Warm-up: connections open, the breaker opens on the dead processor.
    let warm = reqwest::Client::new();
    for n in 0..10 {
        let _ = warm
            .post(format!("{base}/kiosk/v1/payments"))
            .bearer_auth(&tokens[0])
            .json(&pay(0, 1_000_000 + n))
            .send()
            .await;
    }

    let stats = store.writer_stats();
    let counts = || {
        store.read(|c| {
            c.query_row(
                "SELECT count(*), count(*) FILTER (WHERE status = 'approved_offline') FROM payments",
                [],
                |r| Ok((r.get::<_, i64>(0)? as usize, r.get::<_, i64>(1)? as usize)),
            )
            .map_err(standin::store::StoreError::from)
        })
    };
    let (rows0, approved0) = counts().await.unwrap();
    let (commits0, writes0) = (stats.commits.load(Relaxed), stats.writes.load(Relaxed));
    let drive = |round: usize, duration: Duration| {
        let (driver, base, tokens, dir) = (&driver, &base, &tokens, dir.path());
        async move {
            match driver {
                Client::Wrk(wrk) => drive_wrk(wrk, base, tokens, dir, round, duration).await,
                Client::Reqwest => drive_reqwest(base, tokens, round, duration, pay).await,
            }
        }
    };
    let mut figures = drive(0, duration).await;
    // What was made durable, counted in the database rather than taken from the client.
    let (rows, approved) = counts().await.unwrap();
    figures.durable = rows - rows0;
    figures.approved_offline = approved - approved0;
    let (commits, writes) = (
        stats.commits.load(Relaxed) - commits0,
        stats.writes.load(Relaxed) - writes0,
    );
    println!(
        "standin  writer: {commits} commits, {writes} writes, {:.1} writes per commit (group commit)",
        writes as f64 / commits.max(1) as f64
    );
    let (commits0, writes0) = (stats.commits.load(Relaxed), stats.writes.load(Relaxed));
    let mut wal = wal_per_payment(
        dir.path(),
        duration.min(Duration::from_secs(5)),
        counts,
        drive,
    )
    .await;
    // Each commit rewrites the last page of every tree it appends to: the WAL per payment
    // depends on how many payments a commit holds, which is the held run's own figure.
    wal.writes_per_commit = (stats.writes.load(Relaxed) - writes0) as f64
        / (stats.commits.load(Relaxed) - commits0).max(1) as f64;
    figures.wal = Some(wal);
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    figures
}

/// The same load again with the WAL folded back and truncated first, then held from
/// restarting (and from being copied back) by a read snapshot on a connection of this bench:
/// the WAL's size afterwards is every byte the run wrote to it.
async fn wal_per_payment<C, CF, D, DF>(dir: &Path, duration: Duration, counts: C, drive: D) -> Wal
where
    C: Fn() -> CF,
    CF: std::future::Future<Output = Result<(usize, usize), standin::store::StoreError>>,
    D: Fn(usize, Duration) -> DF,
    DF: std::future::Future<Output = Figures>,
{
    let hold = rusqlite::Connection::open(dir.join("standin.db")).unwrap();
    hold.busy_timeout(Duration::from_secs(10)).unwrap();
    // The server may still be finishing the first run's last requests (wrk closes its
    // connections at the deadline, the writer answers what it had queued), and a busy
    // checkpoint gives up once the busy timeout is spent: try again for up to a minute.
    let started = Instant::now();
    let mut tries = 0;
    loop {
        tries += 1;
        let busy: i64 = hold
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
            .unwrap();
        if busy == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the WAL could not be truncated in {tries} tries over a minute"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if tries > 1 {
        println!("standin  (the WAL was truncated at the {tries}th try)");
    }
    hold.execute_batch("BEGIN").unwrap();
    let _: i64 = hold
        .query_row("SELECT count(*) FROM payments_exposure", [], |r| r.get(0))
        .unwrap();
    let (rows0, _) = counts().await.unwrap();
    let held = drive(1, duration).await;
    let (rows, _) = counts().await.unwrap();
    let bytes = std::fs::metadata(dir.join("standin.db-wal"))
        .map(|m| m.len().saturating_sub(32))
        .unwrap_or(0);
    let payments = rows - rows0;
    print_wal_by_btree(dir, payments);
    hold.execute_batch("COMMIT").unwrap();
    Wal {
        bytes,
        payments,
        secs: held.secs,
        p99_ms: held.p99_ms,
        writes_per_commit: 0.0,
    }
}

/// Which b-trees the held WAL's frames belong to: each frame is one whole page, so this is
/// where the WAL bytes per payment go (read while the WAL is still held, through a fresh
/// connection that sees every frame; `dbstat` maps a page to its table or index).
fn print_wal_by_btree(dir: &Path, payments: usize) {
    let wal = std::fs::read(dir.join("standin.db-wal")).unwrap_or_default();
    if wal.len() < 32 {
        return;
    }
    let page_size = u32::from_be_bytes(wal[8..12].try_into().unwrap()) as usize;
    let mut frames_of_page = std::collections::HashMap::<u32, usize>::new();
    for frame in wal[32..].chunks_exact(24 + page_size) {
        *frames_of_page
            .entry(u32::from_be_bytes(frame[0..4].try_into().unwrap()))
            .or_default() += 1;
    }
    let conn = rusqlite::Connection::open(dir.join("standin.db")).unwrap();
    let mut owner = std::collections::HashMap::<u32, String>::new();
    let mut stmt = conn.prepare("SELECT name, pageno FROM dbstat").unwrap();
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?)))
        .unwrap();
    for row in rows {
        let (name, page) = row.unwrap();
        owner.insert(page, name);
    }
    let mut by_name = std::collections::BTreeMap::<String, (usize, usize)>::new();
    for (page, frames) in frames_of_page {
        let name = owner.get(&page).cloned().unwrap_or_else(|| {
            if page == 1 {
                "(header page)".into()
            } else {
                "(free page)".into()
            }
        });
        let e = by_name.entry(name).or_default();
        e.0 += frames;
        e.1 += 1;
    }
    let mut rows: Vec<_> = by_name.into_iter().collect();
    rows.sort_by_key(|(_, (frames, _))| std::cmp::Reverse(*frames));
    // Rows per leaf page: a tree's content costs a whole page per that many entries, so an
    // entry just over a fraction of a page costs the rest of it.
    let mut leaves = std::collections::HashMap::<String, (i64, i64, i64)>::new();
    let mut leaf_stmt = conn
        .prepare(
            "SELECT name, count(*), sum(ncell), sum(payload) FROM dbstat
             WHERE pagetype = 'leaf' GROUP BY name",
        )
        .unwrap();
    let leaf_rows = leaf_stmt
        .query_map([], |r| {
            Ok((r.get::<_, String>(0)?, (r.get(1)?, r.get(2)?, r.get(3)?)))
        })
        .unwrap();
    for row in leaf_rows {
        let (name, l) = row.unwrap();
        leaves.insert(name, l);
    }
    let per = |frames: usize| (frames * (24 + page_size)) as f64 / payments.max(1) as f64;
    println!(
        "standin  WAL by b-tree (page size {page_size}): bytes per payment, frames, distinct pages; entries per leaf page and payload bytes per entry (whole tree)"
    );
    for (name, (frames, pages)) in rows {
        let fill = leaves
            .get(&name)
            .filter(|l| l.0 > 0 && l.1 > 0)
            .map(|&(l, cells, payload)| {
                format!(
                    "  ({:.1}/leaf, {:.0} B each)",
                    cells as f64 / l as f64,
                    payload as f64 / cells as f64
                )
            })
            .unwrap_or_default();
        println!(
            "           {:>7.0}  {frames:>7} {pages:>7}  {name}{fill}",
            per(frames)
        );
    }
}

/// One kiosk payment, unique per kiosk and number (the reqwest driver's; wrk's script builds
/// the same shape).
fn payment_body(kiosk: usize, n: usize) -> Value {
    let prefix = if random_keys() {
        format!("{:016x}-", rand_u64())
    } else {
        String::new()
    };
    json!({"idempotency_key": format!("{prefix}k{kiosk}-{n:012}"), "basket_id": format!("b{kiosk}-{n}"),
           "amount_minor": 1_000 + (n % 50) as i64 * 37, "currency": "USD",
           "tender": {"kind": "card_token", "token": format!("tok_{kiosk}_{n}"), "brand": "visa",
                      "last4": format!("{:04}", (kiosk * 7919 + n) % 10_000), "exp_month": 1 + n % 12, "exp_year": 2029}})
}

/// `BENCH_KEYS=random`: idempotency keys in random order (as UUIDv4 keys are); by default a
/// kiosk's keys come in time order (a fixed-width counter), as ULIDs, UUIDv7 or zero-padded
/// `lane-seq` keys do. (Before issue 19's WAL work the counter was not zero-padded, so key
/// `...-10000` sorted between `...-1000` and `...-1001`: not time order.)
fn random_keys() -> bool {
    std::env::var("BENCH_KEYS").is_ok_and(|v| v == "random")
}

/// `BENCH_VELOCITY=1`: the policy also sets per-card velocity caps (far above what the run
/// reaches), so every payment is counted and indexed by card.
fn velocity_capped() -> bool {
    std::env::var("BENCH_VELOCITY").is_ok_and(|v| v == "1")
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish()
}

/// Each kiosk its own reqwest client and keep-alive connection, paying back to back.
async fn drive_reqwest(
    base: &str,
    tokens: &[String],
    round: usize,
    duration: Duration,
    pay: fn(usize, usize) -> Value,
) -> Figures {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for (k, token) in tokens.iter().enumerate() {
        let (base, token) = (base.to_string(), token.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .unwrap();
            let (mut lat, mut errors) = (Vec::with_capacity(10_000), 0usize);
            let mut n = round * 100_000_000;
            while Instant::now() < deadline {
                let body = pay(k, n);
                n += 1;
                let t = Instant::now();
                match client
                    .post(format!("{base}/kiosk/v1/payments"))
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => match r.bytes().await {
                        Ok(_) => lat.push(t.elapsed()),
                        Err(_) => errors += 1,
                    },
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
    Figures {
        answered: all.len(),
        errors,
        secs,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        ..Figures::default()
    }
}

/// `wrk -t 2 -c KIOSKS --latency` with a script that signs each request with the next
/// kiosk's token and a fresh idempotency key; a kiosk's keys never repeat (thread id and
/// counter), so every request is a new payment.
async fn drive_wrk(
    wrk: &Path,
    base: &str,
    tokens: &[String],
    dir: &Path,
    round: usize,
    duration: Duration,
) -> Figures {
    let list = tokens
        .iter()
        .map(|t| format!("\"{t}\""))
        .collect::<Vec<_>>()
        .join(",");
    // BENCH_KEYS=random: a random prefix (as a UUIDv4 key would be) before the unique part.
    let key_prefix = if random_keys() {
        "string.format('%08x%08x-', math.random(0, 0x7fffffff), math.random(0, 0x7fffffff))"
    } else {
        "''"
    };
    let script = format!(
        r#"local tokens = {{{list}}}
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
local n = 0
request = function()
  n = n + 1
  local k = (n % #tokens) + 1
  local body = string.format('{{"idempotency_key":"%sw{round}-%d-%012d","basket_id":"b{round}-%d-%d","amount_minor":%d,"currency":"USD","tender":{{"kind":"card_token","token":"tok_%d_%d","brand":"visa","last4":"%04d","exp_month":%d,"exp_year":2029}}}}',
    {key_prefix}, tid, n, tid, n, 1000 + (n % 50) * 37, tid, n, (k * 7919 + n) % 10000, 1 + n % 12)
  return wrk.format("POST", "/kiosk/v1/payments",
    {{["Authorization"] = "Bearer " .. tokens[k], ["Content-Type"] = "application/json"}}, body)
end
"#
    );
    let path = dir.join(format!("pay{round}.lua"));
    std::fs::write(&path, script).unwrap();
    let mut c = tokio::process::Command::new(wrk);
    c.args(["-t", "2", "-c"])
        .arg(tokens.len().to_string())
        .arg("-d")
        .arg(format!("{}s", duration.as_secs()))
        .args(["--timeout", "10s", "--latency", "-s"])
        .arg(&path)
        .arg(format!("{base}/kiosk/v1/payments"));
    let out = c.output().await.expect("wrk runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "wrk failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_wrk(&text, duration.as_secs_f64())
}

/// The figures of wrk's `--latency` report.
fn parse_wrk(text: &str, secs: f64) -> Figures {
    let ms = |v: &str| -> f64 {
        let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
        let n: f64 = num.parse().unwrap_or(f64::NAN);
        match unit {
            "us" => n / 1000.0,
            "ms" => n,
            "s" => n * 1000.0,
            "m" => n * 60_000.0,
            _ => f64::NAN,
        }
    };
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix).map(|r| r.trim().to_string()))
    };
    let total: usize = text
        .lines()
        .find_map(|l| {
            l.trim()
                .split_once(" requests in ")
                .map(|(n, _)| n.trim().to_string())
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no request count in wrk's output: {text}"));
    let non_2xx: usize = field("Non-2xx or 3xx responses:")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let socket_errors: usize = field("Socket errors:")
        .map(|l| {
            l.split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<usize>().ok())
                .sum()
        })
        .unwrap_or(0);
    Figures {
        answered: total - non_2xx,
        errors: non_2xx + socket_errors,
        secs,
        p50_ms: field("50%").map_or(f64::NAN, |v| ms(&v)),
        p99_ms: field("99%").map_or(f64::NAN, |v| ms(&v)),
        ..Figures::default()
    }
}

/// Debian's PostgreSQL binaries (`/usr/lib/postgresql/VERSION/bin`), newest first.
fn pg_bin() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists() && p.join("pg_ctl").exists())
        .collect();
    dirs.sort();
    dirs.pop()
}

/// Installs Debian's `package` (as root; a failure shows as the package still missing).
fn apt_install(package: &str) {
    println!("{package} not installed: apt-get install -y {package}");
    let _ = Command::new("apt-get")
        .args(["install", "-y", package])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status();
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

/// Runs `program args` as the `postgres` user when this process is root (Postgres refuses
/// root), as this user otherwise.
fn as_pg(program: &Path, args: &[&str]) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program).args(args);
        c
    } else {
        let mut c = Command::new(program);
        c.args(args);
        c
    }
}

fn run(mut c: Command, what: &str) -> Result<String, String> {
    let out = c.output().map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What PostgreSQL did in the same run.
struct Pg {
    single_row_tps: f64,
    peer_tps: f64,
    peer_p50_ms: f64,
    peer_p99_ms: f64,
    peer_wal_per_payment: f64,
    /// What was checked after the peer's run.
    peer_checked: String,
}

/// The fair peer's schema and `pay()` function.
const PEER_SQL: &str = include_str!("kiosk_payments_peer.sql");

/// The peer's idempotency key: in time order per client (microseconds; one payment at a time
/// per client), as Standin's bench makes them, or random with `BENCH_KEYS=random`.
fn peer_script() -> String {
    let key = if random_keys() {
        "('k' || :k)::text"
    } else {
        "('k' || (extract(epoch FROM clock_timestamp()) * 1000000)::bigint)::text"
    };
    PEER_SCRIPT.replace("KEY", key)
}

/// The peer's policy rows for `BENCH_VELOCITY=1`, as Standin's bench pushes them.
fn peer_velocity_sql() -> &'static str {
    if velocity_capped() {
        "INSERT INTO policy VALUES ('card_velocity_count', '1000000'), ('card_velocity_amount_minor', '1000000000000')"
    } else {
        "SELECT 1"
    }
}

/// One `pay()` call per transaction, a fresh key each, from the client's own kiosk.
const PEER_SCRIPT: &str = r#"\set amt random(1000, 2813)
\set k random(1, 9000000000000000000)
\set last4 random(0, 9999)
\set m random(1, 12)
SELECT pay(('sco-' || :client_id)::text, KEY, ('b' || :k)::text, (:amt)::bigint, jsonb_build_object('kind', 'card_token', 'token', ('tok_' || :k)::text, 'brand', 'visa', 'last4', lpad((:last4)::text, 4, '0'), 'exp_month', (:m)::int, 'exp_year', 2029));
"#;

/// A throwaway cluster: pgbench's single-row inserts from 8 clients, then the fair peer from
/// `kiosks` clients.
fn postgres(seconds: u64, kiosks: usize) -> Result<Pg, String> {
    let bin = match pg_bin() {
        Some(b) => b,
        None if is_root() => {
            apt_install("postgresql");
            pg_bin().ok_or("postgresql could not be installed")?
        }
        None => {
            return Err("postgresql is not installed (apt-get install postgresql, as root)".into());
        }
    };
    let dir = tempfile::Builder::new()
        .prefix("standin-bench-pg")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let (data, sock) = (dir.path().join("data"), dir.path().join("sock"));
    std::fs::create_dir_all(&sock).map_err(|e| e.to_string())?;
    let script = dir.path().join("insert.sql");
    std::fs::write(&script, "INSERT INTO payments (idempotency_key, amount_minor) VALUES (md5(random()::text), 1000);\n")
        .map_err(|e| e.to_string())?;
    let peer_script_path = dir.path().join("pay.sql");
    std::fs::write(&peer_script_path, peer_script()).map_err(|e| e.to_string())?;
    let peer_sql = dir.path().join("peer.sql");
    std::fs::write(&peer_sql, PEER_SQL).map_err(|e| e.to_string())?;
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| e.to_string())?;
    if is_root() {
        run(
            {
                let mut c = Command::new("chown");
                c.args(["-R", "postgres:postgres"]).arg(dir.path());
                c
            },
            "chown",
        )?;
    }
    let (data_s, sock_s) = (
        data.to_string_lossy().into_owned(),
        sock.to_string_lossy().into_owned(),
    );
    run(
        as_pg(
            &bin.join("initdb"),
            &["-D", &data_s, "-A", "trust", "-U", "postgres", "--no-sync"],
        ),
        "initdb",
    )?;
    let opts = format!(
        "-k {sock_s} -c listen_addresses='' -c max_connections={}",
        kiosks + 20
    );
    let log = dir.path().join("pg.log").to_string_lossy().into_owned();
    run(
        as_pg(
            &bin.join("pg_ctl"),
            &["-D", &data_s, "-o", &opts, "-l", &log, "-w", "start"],
        ),
        "pg_ctl start",
    )?;
    let tool = |name: &str| {
        let p = bin.join(name);
        if p.exists() { p } else { PathBuf::from(name) }
    };
    let (psql, pgbench) = (tool("psql"), tool("pgbench"));
    let sql = |db: &str, query: &str| -> Result<String, String> {
        run(
            as_pg(
                &psql,
                &[
                    "-h",
                    &sock_s,
                    "-U",
                    "postgres",
                    "-d",
                    db,
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-Atc",
                    query,
                ],
            ),
            "psql",
        )
        .map(|s| s.trim().to_string())
    };
    let tps_of = |out: &str| {
        out.lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("tps = ")
                    .and_then(|r| r.split_whitespace().next())
                    .and_then(|n| n.parse::<f64>().ok())
            })
            .ok_or_else(|| format!("no tps in pgbench's output: {out}"))
    };
    let secs = seconds.to_string();
    let result = (|| {
        sql(
            "postgres",
            "CREATE TABLE payments (id bigserial PRIMARY KEY, idempotency_key text NOT NULL, amount_minor bigint NOT NULL, created_at timestamptz NOT NULL DEFAULT now())",
        )?;
        println!(
            "postgres fsync, synchronous_commit: {}",
            sql(
                "postgres",
                "SELECT current_setting('fsync') || ' ' || current_setting('synchronous_commit')"
            )?
        );
        let script_s = script.to_string_lossy().into_owned();
        let single_row_tps = tps_of(&run(
            as_pg(
                &pgbench,
                &[
                    "-n", "-h", &sock_s, "-U", "postgres", "-c", "8", "-j", "2", "-T", &secs, "-f",
                    &script_s, "postgres",
                ],
            ),
            "pgbench",
        )?)?;

        // The fair peer, in its own database.
        sql("postgres", "CREATE DATABASE peer")?;
        run(
            as_pg(
                &psql,
                &[
                    "-h",
                    &sock_s,
                    "-U",
                    "postgres",
                    "-d",
                    "peer",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-q",
                    "-f",
                    &peer_sql.to_string_lossy(),
                ],
            ),
            "peer schema",
        )?;
        sql("peer", peer_velocity_sql())?;
        // Replays answer the first answer; another body under the same key is refused.
        let tender = "jsonb_build_object('kind', 'card_token', 'token', 't', 'brand', 'visa', 'last4', '0001', 'exp_month', 1, 'exp_year', 2029)";
        let first = sql(
            "peer",
            &format!("SELECT pay('sco-1', 'replay', 'b', 1000, {tender})"),
        )?;
        let again = sql(
            "peer",
            &format!("SELECT pay('sco-1', 'replay', 'b', 1000, {tender})"),
        )?;
        let other = sql(
            "peer",
            &format!("SELECT pay('sco-1', 'replay', 'b', 2000, {tender})"),
        )?;
        if first != again || !other.contains("idempotency_key_reused") {
            return Err(format!(
                "pay() does not replay: {first} / {again} / {other}"
            ));
        }
        let lsn0 = sql("peer", "SELECT pg_current_wal_lsn()")?;
        let rows0: i64 = sql("peer", "SELECT count(*) FROM payments")?
            .parse()
            .map_err(|e| format!("{e}"))?;
        let peer_script_s = peer_script_path.to_string_lossy().into_owned();
        let prefix = logs.join("peer").to_string_lossy().into_owned();
        let clients = kiosks.to_string();
        let out = run(
            as_pg(
                &pgbench,
                &[
                    "-n",
                    "-h",
                    &sock_s,
                    "-U",
                    "postgres",
                    "-c",
                    &clients,
                    "-j",
                    "2",
                    "-T",
                    &secs,
                    "-M",
                    "prepared",
                    "-l",
                    "--log-prefix",
                    &prefix,
                    "-f",
                    &peer_script_s,
                    "peer",
                ],
            ),
            "pgbench (peer)",
        )?;
        let peer_tps = tps_of(&out)?;
        let wal: f64 = sql(
            "peer",
            &format!("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{lsn0}')"),
        )?
        .parse()
        .map_err(|e| format!("{e}"))?;
        let rows: i64 = sql("peer", "SELECT count(*) FROM payments")?
            .parse()
            .map_err(|e| format!("{e}"))?;
        let checks = sql(
            "peer",
            "SELECT (SELECT count(*) FROM payments WHERE status = 'approved_offline') || ' approved, '
                 || (SELECT count(*) FROM journal) || ' journal entries, exposure counter '
                 || CASE WHEN (SELECT total_minor FROM payments_exposure)
                              = (SELECT sum(amount_minor) FROM payments WHERE status = 'approved_offline')
                         THEN 'equals' ELSE 'DIFFERS FROM' END || ' the approved sum, '
                 || (SELECT count(*) FROM (SELECT prev_hash, lag(hash) OVER (ORDER BY seq) AS before FROM journal) x
                     WHERE before IS NOT NULL AND prev_hash <> before) || ' broken links'",
        )?;
        let mut lat: Vec<f64> = std::fs::read_dir(&logs)
            .map_err(|e| e.to_string())?
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
            .flat_map(|text| {
                text.lines()
                    .filter_map(|l| l.split_whitespace().nth(2)?.parse::<f64>().ok())
                    .map(|us| us / 1000.0)
                    .collect::<Vec<_>>()
            })
            .collect();
        lat.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
                .copied()
                .unwrap_or(f64::NAN)
        };
        Ok(Pg {
            single_row_tps,
            peer_tps,
            peer_p50_ms: pct(0.5),
            peer_p99_ms: pct(0.99),
            peer_wal_per_payment: wal / (rows - rows0).max(1) as f64,
            peer_checked: checks,
        })
    })();
    let _ = run(
        as_pg(
            &bin.join("pg_ctl"),
            &["-D", &data_s, "-m", "fast", "-w", "stop"],
        ),
        "pg_ctl stop",
    );
    result
}
