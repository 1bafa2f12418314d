//! Loads receipts through the feed path and, in the same run, the same rows with a plain
//! rusqlite bulk insert; prints both rates and their ratio.
//!
//! `cargo bench --bench feed_load` (1,000,000 receipts; `BENCH_RECEIPTS=N` for fewer).
//!
//! Feed path = what a pushed or pulled batch goes through after the socket: the JSON body is
//! parsed and every record checked (serde + the feed rules), then applied on the writer
//! thread as snapshot parts (numbering, staging in the twin tables, the final switch), one
//! group-commit transaction per part with `synchronous=FULL`.
//! Baseline = the same rows (the same columns, the same stored JSON, the same card index)
//! inserted with cached prepared statements into a database with the same schema and
//! pragmas, one transaction per part. Parts alternate which side runs first.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use standin::config::DatabaseConfig;
use standin::feeds::{Feed, apply, batch};
use standin::store::{Store, StoreError, open_write_connection};

const PART: usize = 5_000;

struct Row {
    receipt_id: String,
    order_number: Option<String>,
    sold_at: String,
    lane: String,
    currency: String,
    phone: Option<String>,
    total: i64,
    doc: String,
    cards: Vec<(String, String)>,
}

fn row_of(r: &Value) -> Row {
    let s = |k: &str| r[k].as_str().map(str::to_owned);
    let cards = r["tenders"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| {
            Some((
                t["brand"].as_str()?.to_ascii_lowercase(),
                t["last4"].as_str()?.to_owned(),
            ))
        })
        .collect();
    Row {
        receipt_id: s("receipt_id").unwrap(),
        order_number: s("order_number"),
        sold_at: standin::feeds::records::utc_time("sold_at", r["sold_at"].as_str().unwrap())
            .unwrap(),
        lane: s("lane").unwrap(),
        currency: s("currency").unwrap(),
        phone: s("customer_phone_last4"),
        total: r["total_minor"].as_i64().unwrap(),
        doc: r.to_string(),
        cards,
    }
}

fn plain_insert(conn: &rusqlite::Connection, rows: &[Row]) {
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    {
        let mut ins = conn
            .prepare_cached(
                "INSERT INTO receipts (receipt_id, order_number, sold_at, lane, currency, customer_phone_last4, total_minor, doc)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .unwrap();
        let mut card = conn
            .prepare_cached("INSERT OR IGNORE INTO receipt_cards (brand, last4, sold_at, receipt_id) VALUES (?1, ?2, ?3, ?4)")
            .unwrap();
        for r in rows {
            ins.execute(rusqlite::params![
                r.receipt_id,
                r.order_number,
                r.sold_at,
                r.lane,
                r.currency,
                r.phone,
                r.total,
                r.doc
            ])
            .unwrap();
            for (brand, last4) in &r.cards {
                card.execute(rusqlite::params![brand, last4, r.sold_at, r.receipt_id])
                    .unwrap();
            }
        }
    }
    conn.execute_batch("COMMIT").unwrap();
}

fn main() {
    let total: usize = std::env::var("BENCH_RECEIPTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let parts = total.div_ceil(PART) as u32;
    let dir = tempfile::tempdir().unwrap();
    let feed_db = dir.path().join("feed.db");
    let plain_db = dir.path().join("plain.db");

    let store = Store::open(&feed_db, &DatabaseConfig::default()).unwrap();
    let mut plain = open_write_connection(&plain_db, 5_000).unwrap();
    standin::store::migrate(&mut plain).unwrap();

    let mut generator = standin::simulator::Receipts::new(42, total, chrono::Utc::now());
    let (mut feed_time, mut plain_time, mut gen_time) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut parse_time = Duration::ZERO;
    let mut done = 0usize;
    println!("feed_load: {total} receipts in {parts} snapshot parts of {PART}");
    for part in 1..=parts {
        let t = Instant::now();
        let n = PART.min(total - done);
        let records: Vec<Value> = (0..n).map(|_| generator.next_receipt()).collect();
        let rows: Vec<Row> = records.iter().map(row_of).collect();
        let body = json!({"batch": part, "kind": "snapshot", "snapshot": {"id": "bench", "part": part, "parts": parts},
                          "upserts": records, "deletes": []})
        .to_string()
        .into_bytes();
        gen_time += t.elapsed();

        let feed_side = |feed_time: &mut Duration, parse_time: &mut Duration| {
            let t = Instant::now();
            let parsed = batch::parse(Feed::Receipts, &body).expect("generated data is valid");
            *parse_time += t.elapsed();
            let now = "2026-11-25T00:00:00.000Z";
            let applied = store
                .write_blocking(move |c| {
                    apply::apply(
                        c,
                        &parsed,
                        &apply::Applier {
                            store_id: "bench",
                            now,
                            source: "bench",
                        },
                    )
                    .map_err(|e| StoreError::Io(std::io::Error::other(e.detail())))
                })
                .unwrap();
            assert!(applied.applied);
            *feed_time += t.elapsed();
        };
        let plain_side = |plain_time: &mut Duration| {
            let t = Instant::now();
            plain_insert(&plain, &rows);
            *plain_time += t.elapsed();
        };
        if part % 2 == 0 {
            feed_side(&mut feed_time, &mut parse_time);
            plain_side(&mut plain_time);
        } else {
            plain_side(&mut plain_time);
            feed_side(&mut feed_time, &mut parse_time);
        }
        done += n;
        if part % 20 == 0 {
            eprintln!("  {done} receipts…");
        }
    }

    let check = rusqlite::Connection::open(&feed_db).unwrap();
    let served: i64 = check
        .query_row("SELECT count(*) FROM receipts", [], |r| r.get(0))
        .unwrap();
    let plain_rows: i64 = plain
        .query_row("SELECT count(*) FROM receipts", [], |r| r.get(0))
        .unwrap();
    assert_eq!((served, plain_rows), (total as i64, total as i64));
    let feed_rate = total as f64 / feed_time.as_secs_f64();
    let plain_rate = total as f64 / plain_time.as_secs_f64();
    println!(
        "  (generating the data, untimed: {:.1} s)",
        gen_time.as_secs_f64()
    );
    println!(
        "feed path (parse + check + apply + switch): {:>9.0} receipts/s  ({:.1} s)",
        feed_rate,
        feed_time.as_secs_f64()
    );
    println!(
        "  of which parsing and checking the JSON: {:.1} s",
        parse_time.as_secs_f64()
    );
    println!(
        "plain rusqlite bulk insert, same rows:      {:>9.0} receipts/s  ({:.1} s)",
        plain_rate,
        plain_time.as_secs_f64()
    );
    println!(
        "ratio feed/plain: {:.2}  (goal >= 0.50)",
        feed_rate / plain_rate
    );
    drop(check);
    let stats = store.writer_stats();
    println!(
        "  writer commits: {}",
        stats.commits.load(std::sync::atomic::Ordering::Relaxed)
    );
}
