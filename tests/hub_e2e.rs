//! End to end: three real Standin stores against a real hub process and PostgreSQL. Feeds
//! flow down (orders, staff, kiosks and policy imported with `standin hub import`, pulled by
//! each store), journals flow up through lanes out of seq order (hand-overs, stand-in
//! payments, kiosk sales and returns done over HTTP by a desk and a kiosk at each store,
//! besides entries appended directly), while the hub is SIGKILLed and restarted and PostgreSQL
//! is stopped hard and restarted. Then, read from PostgreSQL: every entry landed exactly
//! once, every store's chain verifies, every feed record reached its store.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::TestStore;
use common::binary::{BIN, free_port};
use common::hub::order;
use common::people::{ASSOCIATE, Browser, KIOSK_1, browser, device_record, staff_record};
use common::pg::TestPg;
use serde_json::{Value, json};
use standin::config::Secret;
use standin::journal::chain::{GENESIS, Hashed, entry_hash};
use standin::journal::{Entry, Lane, NewEntry};

const STORES: [&str; 3] = ["s-north", "s-south", "s-east"];

/// `standin hub serve` as its own process, killed with SIGKILL on drop.
struct HubProcess(Child);

impl HubProcess {
    fn spawn(db: &str, port: u16) -> HubProcess {
        let child = Command::new(BIN)
            .args(["hub", "serve", "--listen", &format!("127.0.0.1:{port}")])
            .env("STANDIN_HUB__DATABASE_URL", db)
            .env("STANDIN_HUB__INTAKE_AT_ONCE", "2")
            .env("STANDIN_HUB__RETRY_AFTER_MIN_SECS", "1")
            .env("STANDIN_HUB__RETRY_AFTER_SPREAD_SECS", "2")
            .env("STANDIN_HUB__BATCH_RECORDS", "2")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        HubProcess(child)
    }

    fn kill_9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        self.kill_9();
    }
}

fn hub_cli(db: &str, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("hub")
        .args(args)
        .env("STANDIN_HUB__DATABASE_URL", db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "standin hub {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

async fn wait_until(what: &str, secs: u64, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Appends entries across lanes the way an action does (its own BEGIN IMMEDIATE).
fn act(store: &TestStore, store_id: &str, round: usize) -> Vec<Entry> {
    let mut conn = rusqlite::Connection::open(store.db_path()).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut written = Vec::new();
    for i in 0..30 {
        let (lane, kind, body) = match i % 3 {
            0 => (
                Lane::Audit,
                "audit.login",
                json!({ "round": round, "i": i }),
            ),
            1 => (
                Lane::Pickups,
                "pickup.handed_over",
                json!({ "order_id": format!("{store_id}-o{}", i % 4) }),
            ),
            _ => (
                Lane::Payments,
                "payment.approved_offline",
                json!({ "amount_minor": 100 + i, "round": round }),
            ),
        };
        let e = NewEntry {
            lane,
            kind: kind.into(),
            actor: Some("E100".into()),
            device: Some("desk-1".into()),
            body,
        };
        written.push(standin::journal::append(&tx, store_id, &now, e).unwrap());
    }
    tx.commit().unwrap();
    written
}

/// What a desk and a kiosk do at `store` in a round, over HTTP as they would: a hand-over of
/// a ready order, a stand-in payment, the kiosk's sale on it (a local receipt), and a return
/// against that receipt. Each is journaled by the store itself.
async fn desk_and_kiosk(t: &TestStore, store: &str, desk: &Browser, round: usize) {
    let staff_post = |path: String, body: Value| {
        t.client
            .post(format!("{}{path}", t.url))
            .header("cookie", &desk.cookie)
            .header("x-csrf-token", &desk.csrf)
            .json(&body)
            .send()
    };
    let res = staff_post(
        format!("/api/v1/pickups/{store}-o{}/handover", round - 1),
        json!({"lines": [], "id_checked": true, "request_id": format!("{store}-h{round}")}),
    )
    .await
    .unwrap();
    assert!(
        res.status().is_success(),
        "hand-over: {}",
        res.text().await.unwrap()
    );
    let key = format!("{store}-k{round}");
    let (s, paid) = t
        .kiosk_post(
            KIOSK_1.1,
            "/kiosk/v1/payments",
            &json!({"idempotency_key": key, "basket_id": format!("basket-{key}"), "amount_minor": 1200,
                    "currency": "EUR", "tender": {"kind": "card_token", "token": "tok_e2e", "brand": "visa",
                    "last4": "4242", "exp_month": 12, "exp_year": 2029, "entry_mode": "contactless"}}),
        )
        .await;
    assert_eq!(s, reqwest::StatusCode::OK, "payment: {paid}");
    assert_eq!(paid["status"], "approved_offline", "{paid}");
    let receipt = format!("{store}-R{round}");
    let (s, sold) = t
        .kiosk_post(
            KIOSK_1.1,
            "/kiosk/v1/sales",
            &json!({"sale_id": format!("{store}-sale{round}"), "receipt_id": receipt,
                    "sold_at": chrono::Utc::now().to_rfc3339(),
                    "lines": [{"line": 1, "sku": "SKU-1", "description": "Kettle", "category": "household",
                               "qty": 1, "unit_price_minor": 1192, "discount_minor": 0, "tax_minor": 8,
                               "returnable": true, "return_window_days": 30, "returned_qty": 0}],
                    "tenders": [{"payment_id": paid["payment_id"], "amount_minor": 1200}]}),
        )
        .await;
    assert!(s.is_success(), "sale: {sold}");
    let res = staff_post(
        "/api/v1/returns".into(),
        json!({"receipt_id": receipt, "lines": [{"line": 1, "qty": 1, "reason": "damaged"}],
               "refund": {"method": "original_tender"}, "request_id": format!("{store}-ret{round}")}),
    )
    .await
    .unwrap();
    assert!(
        res.status().is_success(),
        "return: {}",
        res.text().await.unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_stores_land_exactly_once_through_a_hub_kill_and_a_postgresql_restart() {
    let Some(pg) = tokio::task::spawn_blocking(TestPg::start).await.unwrap() else {
        return;
    };
    let db = pg.url.clone();
    hub_cli(&db, &["migrate"]);
    let mut tokens = Vec::new();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("orders.jsonl");
    let mut lines = String::new();
    for s in STORES {
        let out = hub_cli(&db, &["store", "add", s]);
        tokens.push(out.lines().last().unwrap().trim().to_owned());
        for i in 0..4 {
            let status = if i == 3 { "cancelled" } else { "ready" };
            lines.push_str(&format!("{}\n", order(s, &format!("{s}-o{i}"), status)));
        }
    }
    std::fs::write(&file, lines).unwrap();
    let out = hub_cli(&db, &["import", "pickup_orders", file.to_str().unwrap()]);
    assert!(out.contains("12 records changed"), "{out}");
    // Staff and a kiosk per store, and one policy for every store, as HQ's systems hand them in.
    let with_store = |mut r: Value, s: &str| {
        r["store_id"] = json!(s);
        r.to_string()
    };
    let staff: Vec<String> = STORES
        .iter()
        .map(|s| with_store(staff_record(&ASSOCIATE, true), s))
        .collect();
    let devices: Vec<String> = STORES
        .iter()
        .map(|s| with_store(device_record(KIOSK_1, true), s))
        .collect();
    let policy: Vec<String> = [
        ("offline_tx_cap_minor", json!(50_000)),
        ("offline_exposure_cap_minor", json!(1_000_000)),
        ("offline_max_hours", json!(24)),
        ("offline_tenders", json!(["card_token", "p2pe"])),
        ("forward_deadline_hours", json!(48)),
        ("refund_cap_associate_minor", json!(5_000)),
        ("offline_refund_budget_minor", json!(100_000)),
    ]
    .iter()
    .map(|(k, v)| json!({"key": k, "value": v}).to_string())
    .collect();
    for (feed, records) in [("staff", staff), ("devices", devices), ("policy", policy)] {
        let file = dir.path().join(format!("{feed}.jsonl"));
        std::fs::write(&file, records.join("\n") + "\n").unwrap();
        hub_cli(&db, &["import", feed, file.to_str().unwrap()]);
    }

    let port = free_port();
    let hub_url = format!("http://127.0.0.1:{port}");
    let mut hub = HubProcess::spawn(&db, port);
    let mut stores = Vec::new();
    for (s, token) in STORES.iter().zip(&tokens) {
        let (url, token, id) = (hub_url.clone(), token.clone(), s.to_string());
        stores.push(
            TestStore::start_with(move |c| {
                c.store_id = id;
                c.central.url = Some(url);
                c.central.token = Secret::new(token);
                c.central.timeout_ms = 2_000;
                c.central.health_interval_secs = 1;
                c.feeds.pull = true;
                c.feeds.pull_interval_secs = 1;
                c.journal.batch_size = 7;
                c.journal.retry_base_ms = 50;
                c.journal.retry_cap_ms = 1_000;
                c.journal.idle_poll_ms = 50;
            })
            .await,
        );
    }
    // Feeds flow down: each store holds its own four orders (snapshot in two parts), its
    // staff, its kiosk and the policy.
    for t in &stores {
        wait_until("feeds at every store", 60, async || {
            let st = t.status().await;
            st["feeds"]["pickup_orders"]["records"] == 4
                && st["feeds"]["staff"]["records"] == 1
                && st["feeds"]["devices"]["records"] == 1
                && st["feeds"]["policy"]["records"] == 7
        })
        .await;
    }
    let mut desks = Vec::new();
    for t in &stores {
        desks.push(browser(t, &ASSOCIATE).await);
    }

    let mut written: Vec<Vec<Entry>> = vec![Vec::new(); 3];
    for (i, t) in stores.iter().enumerate() {
        written[i].extend(act(t, STORES[i], 1));
        desk_and_kiosk(t, STORES[i], &desks[i], 1).await;
    }
    let client = pg.client().await;
    wait_until("some entries landed", 60, async || {
        let n: i64 = client
            .query_one("SELECT count(*) FROM journal_entries", &[])
            .await
            .unwrap()
            .get(0);
        n > 0
    })
    .await;
    drop(client);
    hub.kill_9();
    for (i, t) in stores.iter().enumerate() {
        written[i].extend(act(t, STORES[i], 2));
        desk_and_kiosk(t, STORES[i], &desks[i], 2).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // PostgreSQL goes down hard while the hub comes back: the hub answers 503 meanwhile.
    pg.stop_immediate();
    let hub2 = HubProcess::spawn(&db, port);
    tokio::time::sleep(Duration::from_secs(1)).await;
    pg.start_again();
    for (i, t) in stores.iter().enumerate() {
        written[i].extend(act(t, STORES[i], 3));
        desk_and_kiosk(t, STORES[i], &desks[i], 3).await;
    }

    // The stores see every entry settled; then what each store wrote is its whole journal
    // (its own entries too, not only the ones this test appended).
    for t in &stores {
        t.wait_for_status("every lane drained", |st| {
            st["journal"]["lanes"]
                .as_object()
                .unwrap()
                .values()
                .all(|l| l["pending"] == 0)
        })
        .await;
    }
    let journals: Vec<Vec<(String, i64, String, String)>> = stores
        .iter()
        .map(|t| {
            common::column::<String>(
                &t.db(),
                "SELECT json_array(id, seq, kind, body) FROM journal ORDER BY seq",
            )
            .into_iter()
            .map(|j| serde_json::from_str(&j).unwrap())
            .collect()
        })
        .collect();
    let client = pg.client().await;
    for (i, s) in STORES.iter().enumerate() {
        let journal = &journals[i];
        for e in &written[i] {
            assert!(
                journal.iter().any(|j| j.0 == e.id),
                "{s}: seq {} not in the store's journal",
                e.seq
            );
        }
        let last = journal.last().unwrap().1;
        wait_until(&format!("{s} verified through {last}"), 60, async || {
            let v: i64 = client
                .query_one("SELECT verified_seq FROM stores WHERE store_id = $1", &[s])
                .await
                .unwrap()
                .get(0);
            v == last
        })
        .await;
        let rows = client
            .query(
                "SELECT id, seq, lane, kind, occurred_at, actor, device, body_canonical,
                        prev_hash, hash, outcome, reason
                 FROM journal_entries WHERE store_id = $1 ORDER BY seq",
                &[s],
            )
            .await
            .unwrap();
        assert_eq!(
            rows.len(),
            journal.len(),
            "{s}: each entry once, none missing"
        );
        // The chain re-verified from what HQ's systems read, with the store's own hashing.
        let mut prev = GENESIS.to_string();
        let mut conflicts = 0;
        for (r, (jid, jseq, kind, body)) in rows.iter().zip(journal) {
            let (id, seq): (String, i64) = (r.get(0), r.get(1));
            assert_eq!((&id, seq), (jid, *jseq), "{s}");
            let hash = entry_hash(
                &prev,
                &Hashed {
                    seq,
                    id: &id,
                    lane: r.get(2),
                    kind: r.get(3),
                    occurred_at: r.get(4),
                    store_id: s,
                    actor: r.get(5),
                    device: r.get(6),
                    body: r.get(7),
                },
            );
            assert_eq!(r.get::<_, String>(8), prev, "{s} seq {seq}");
            assert_eq!(r.get::<_, String>(9), hash, "{s} seq {seq}");
            prev = hash;
            let (outcome, reason): (String, Option<String>) = (r.get(10), r.get(11));
            let cancelled = kind == "pickup.handed_over" && body.contains(&format!("\"{s}-o3\""));
            if cancelled {
                assert_eq!(
                    (outcome.as_str(), reason.as_deref()),
                    ("conflict", Some("order_cancelled"))
                );
                conflicts += 1;
            } else {
                assert_eq!(outcome, "accepted", "{s} seq {seq} {kind}: {reason:?}");
            }
        }
        assert!(
            conflicts >= 3,
            "{s}: hand-overs of the cancelled order: {conflicts}"
        );
        // What the desk and the kiosk did over HTTP landed too, each action three times.
        for kind in [
            "pickup.handed_over",
            "payment.approved_offline",
            "sale.recorded",
            "return.taken",
        ] {
            let n = journal.iter().filter(|j| j.2 == kind).count();
            assert!(n >= 3, "{s}: {kind} landed {n} times");
        }
        let flag: Option<String> = client
            .query_one("SELECT flag_reason FROM stores WHERE store_id = $1", &[s])
            .await
            .unwrap()
            .get(0);
        assert_eq!(flag, None, "{s}");
    }
    for t in stores {
        t.stop().await;
    }
    drop(hub2);
}
