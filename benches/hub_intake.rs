//! Journal entries landed per second through the hub (HTTP, auth, hash checks, one
//! transaction per batch, verified prefix) next to PostgreSQL's own multi-row INSERT of the
//! same rows into the same schema, in the same run, on the same throwaway cluster.
//!
//! `cargo bench --bench hub_intake`; `BENCH_STORES` (default 64) stores of `BENCH_ENTRIES`
//! (default 1,000) entries each, pushed in batches of `BENCH_BATCH` (default 100) by
//! `BENCH_CONCURRENCY` (default 8) stores at a time. Goal: hub ≥ 0.5 of the baseline.
//! Each side also prints PostgreSQL's CPU per 1,000 entries (the server's processes' time
//! from `/proc`, the backends that exited included): the cost the hub adds per batch.

#[path = "../tests/common/pg.rs"]
#[allow(dead_code)]
mod pg;

use std::time::Instant;

use serde_json::{Value, json};
use standin::journal::chain::{GENESIS, Hashed, canonical_json, entry_hash};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn chain(store: &str, n: usize) -> Vec<Value> {
    let mut prev = GENESIS.to_string();
    (1..=n as i64)
        .map(|seq| {
            let id = uuid::Uuid::now_v7().to_string();
            let body = json!({ "amount_minor": 1000 + seq, "payment_id": format!("p{seq}"), "tender": "card" });
            let hash = entry_hash(
                &prev,
                &Hashed {
                    seq,
                    id: &id,
                    lane: "payments",
                    kind: "payment.approved_offline",
                    occurred_at: "2026-12-06T09:00:00.000Z",
                    store_id: store,
                    actor: Some("kiosk-1"),
                    device: Some("kiosk-1"),
                    body: &canonical_json(&body),
                },
            );
            let e = json!({
                "seq": seq, "id": id, "lane": "payments", "kind": "payment.approved_offline",
                "occurred_at": "2026-12-06T09:00:00.000Z", "store_id": store, "actor": "kiosk-1",
                "device": "kiosk-1", "body": body, "prev_hash": prev, "hash": hash,
            });
            prev = hash;
            e
        })
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (stores, per_store, concurrency, batch_size) = (
        env("BENCH_STORES", 64),
        env("BENCH_ENTRIES", 1_000),
        env("BENCH_CONCURRENCY", 8),
        env("BENCH_BATCH", 100).max(1),
    );
    let Some(pg) = tokio::task::spawn_blocking(pg::TestPg::start)
        .await
        .unwrap()
    else {
        println!("hub_intake skipped: no PostgreSQL");
        return;
    };
    let admin = pg.client().await;
    admin.batch_execute("CREATE DATABASE hub").await.unwrap();
    admin
        .batch_execute("CREATE DATABASE baseline")
        .await
        .unwrap();
    let base_url = pg.url.rsplit_once('/').unwrap().0.to_owned();
    let (hub_url, baseline_url) = (format!("{base_url}/hub"), format!("{base_url}/baseline"));
    for url in [&hub_url, &baseline_url] {
        let mut c = standin::hub::db::connect(url).await.unwrap();
        standin::hub::db::migrate(&mut c).await.unwrap();
    }
    let ids: Vec<String> = (0..stores).map(|i| format!("bench-{i:05}")).collect();
    let chains: Vec<Vec<Value>> = ids.iter().map(|s| chain(s, per_store)).collect();
    let total = stores * per_store;
    println!(
        "{stores} stores x {per_store} entries = {total}, batches of {batch_size}, {concurrency} at once"
    );

    // Through the hub, over HTTP.
    let config = standin::hub::HubConfig {
        database_url: standin::config::Secret::new(hub_url.clone()),
        intake_at_once: concurrency,
        pool_size: concurrency + 2,
        ..Default::default()
    };
    let state = standin::hub::HubState::new(config).unwrap();
    let hub_db = standin::hub::db::connect(&hub_url).await.unwrap();
    let mut tokens = Vec::new();
    for s in &ids {
        tokens.push(standin::hub::auth::add_store(&hub_db, s).await.unwrap());
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(standin::hub::launch(
        state,
        listener,
        std::future::pending(),
    ));
    let client = reqwest::Client::new();
    let pg_ticks = standin::hub::fleet_sim::cluster_ticks(pg.port);
    let started = Instant::now();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = Vec::new();
    for ((store, token), entries) in ids.iter().zip(&tokens).zip(&chains) {
        let (client, url, store, token) =
            (client.clone(), url.clone(), store.clone(), token.clone());
        let entries = entries.clone();
        let sem = sem.clone();
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire_owned().await.unwrap();
            for batch in entries.chunks(batch_size) {
                loop {
                    let res = client
                        .post(format!("{url}/v1/stores/{store}/journal"))
                        .bearer_auth(&token)
                        .json(&json!({ "entries": batch }))
                        .send()
                        .await
                        .unwrap();
                    if res.status().is_success() {
                        break;
                    }
                    assert_eq!(res.status(), 503, "{}", res.text().await.unwrap());
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let hub_secs = started.elapsed().as_secs_f64();
    let hub_pg_ticks = standin::hub::fleet_sim::cluster_ticks(pg.port) - pg_ticks;
    let landed: i64 = hub_db
        .query_one(
            "SELECT count(*) FROM journal_entries WHERE outcome = 'accepted'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(landed as usize, total, "every entry landed once");

    // PostgreSQL's own multi-row INSERT of the same rows, same batches, same concurrency:
    // `concurrency` connections kept open, the statement prepared once on each (as the hub's
    // pool and statement cache do), taking stores from one queue.
    let pg_ticks = standin::hub::fleet_sim::cluster_ticks(pg.port);
    let started = Instant::now();
    let queue = std::sync::Arc::new(std::sync::Mutex::new(chains.clone()));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (url, queue) = (baseline_url.clone(), queue.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = standin::hub::db::connect(&url).await.unwrap();
            let insert = c
                .prepare(standin::hub::fleet_sim::CEILING_INSERT)
                .await
                .unwrap();
            loop {
                let Some(entries) = queue.lock().unwrap().pop() else {
                    return;
                };
                let store = entries[0]["store_id"].as_str().unwrap().to_owned();
                for batch in entries.chunks(batch_size) {
                    let col = |f: &str| -> Vec<String> {
                        batch
                            .iter()
                            .map(|e| e[f].as_str().unwrap_or_default().to_owned())
                            .collect()
                    };
                    let seqs: Vec<i64> = batch.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
                    let bodies: Vec<String> =
                        batch.iter().map(|e| canonical_json(&e["body"])).collect();
                    let tx = c.transaction().await.unwrap();
                    tx.execute(
                        &insert,
                        &[
                            &store,
                            &col("id"),
                            &seqs,
                            &col("lane"),
                            &col("kind"),
                            &col("occurred_at"),
                            &col("actor"),
                            &col("device"),
                            &bodies,
                            &col("prev_hash"),
                            &col("hash"),
                        ],
                    )
                    .await
                    .unwrap();
                    tx.commit().await.unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let base_secs = started.elapsed().as_secs_f64();
    let base_pg_ticks = standin::hub::fleet_sim::cluster_ticks(pg.port) - pg_ticks;
    // Clock ticks are 1/100 s on Linux: ms per 1,000 entries = ticks * 10 * 1000 / total.
    let per_k = |ticks: u64| ticks as f64 * 10_000.0 / total as f64;
    let (hub_rate, base_rate) = (total as f64 / hub_secs, total as f64 / base_secs);
    println!(
        "hub intake:      {hub_rate:>9.0} entries/s ({hub_secs:.2} s); PostgreSQL CPU {:.1} ms per 1,000 entries",
        per_k(hub_pg_ticks)
    );
    println!(
        "postgres INSERT: {base_rate:>9.0} entries/s ({base_secs:.2} s); PostgreSQL CPU {:.1} ms per 1,000 entries",
        per_k(base_pg_ticks)
    );
    println!("ratio: {:.2} (goal >= 0.5)", hub_rate / base_rate);
    // `BENCH_PG_STATEMENTS=1` with `STANDIN_TEST_PG_OPTS="-c
    // shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track_planning=on"`:
    // where PostgreSQL's time went, statement by statement, both sides.
    if std::env::var_os("BENCH_PG_STATEMENTS").is_some() {
        admin
            .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .await
            .unwrap();
        for r in admin
            .query(
                "SELECT calls, total_exec_time, total_plan_time, left(regexp_replace(query, '\\s+', ' ', 'g'), 110)
                 FROM pg_stat_statements ORDER BY total_exec_time + total_plan_time DESC LIMIT 16",
                &[],
            )
            .await
            .unwrap()
        {
            let (calls, exec, plan, q): (i64, f64, f64, String) =
                (r.get(0), r.get(1), r.get(2), r.get(3));
            println!(
                "{calls:>7} calls {:>7.1} us exec {:>6.1} us plan  {q}",
                exec * 1000.0 / calls.max(1) as f64,
                plan * 1000.0 / calls.max(1) as f64
            );
        }
    }
}
