//! The pull worker against the real simulator over HTTP: initial load, later deltas, a bad
//! batch from central, and upstream health kept apart per upstream.

mod common;

use common::sim::{admin, simulator};
use common::*;
use serde_json::{Value, json};
use standin::simulator::Simulator;

async fn standin_pulling_from(sim: &Simulator) -> TestStore {
    let (central, payments) = (sim.central_url(), sim.payments_url());
    TestStore::start_with(move |c| {
        c.central.url = Some(central);
        c.payments.url = Some(payments);
        c.feeds.pull = true;
        c.feeds.pull_interval_secs = 1;
        c.central.health_interval_secs = 1;
        c.payments.health_interval_secs = 1;
        c.central.timeout_ms = 500;
    })
    .await
}

fn loaded(s: &Value) -> bool {
    ["pickup_orders", "receipts", "staff", "devices", "policy"]
        .iter()
        .all(|f| s["feeds"][f]["snapshot_at"].is_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_every_feed_then_later_deltas() {
    let sim = simulator(450, 120).await;
    let t = standin_pulling_from(&sim).await;
    let s = t.wait_for_status("all five feeds", loaded).await;
    assert_eq!(s["feeds"]["receipts"]["records"], 450);
    assert_eq!(s["feeds"]["pickup_orders"]["records"], 120);
    assert!(
        s["feeds"]["staff"]["records"].as_i64().unwrap() >= sim.credentials().staff.len() as i64,
        "{s}"
    );
    assert_eq!(
        s["feeds"]["devices"]["records"].as_i64(),
        Some(sim.credentials().kiosks.len() as i64)
    );
    assert!(s["feeds"]["policy"]["records"].as_i64().unwrap() >= 5);
    assert_eq!(
        s["feeds"]["receipts"]["last_batch"], 5,
        "450 receipts in parts of 100"
    );
    assert!(
        standin::store::maintenance::check(&t.db_path())
            .unwrap()
            .is_empty()
    );

    // Central cancels an order: the delta reaches the store through the same path.
    let order_id: String = t
        .db()
        .query_row(
            "SELECT order_id FROM pickup_orders WHERE status != 'cancelled' LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let before = s["feeds"]["pickup_orders"]["last_batch"].as_i64().unwrap();
    admin(
        &sim,
        reqwest::Method::POST,
        &format!("/admin/central/orders/{order_id}/cancel"),
        json!({}),
    )
    .await;
    t.wait_for_status("the cancel delta", |s| {
        s["feeds"]["pickup_orders"]["last_batch"].as_i64() == Some(before + 1)
    })
    .await;
    let status: String = t
        .db()
        .query_row(
            "SELECT status FROM pickup_orders WHERE order_id = ?1",
            [&order_id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(status, "cancelled");
    t.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_batch_from_central_stops_only_its_feed_and_shows_why() {
    let sim = simulator(120, 30).await;
    let t = standin_pulling_from(&sim).await;
    t.wait_for_status("all five feeds", loaded).await;
    let bad = json!({"key": "offline_tx_cap_minor", "value": "a lot"});
    admin(
        &sim,
        reqwest::Method::POST,
        "/admin/central/feeds/policy/batches",
        json!({"upserts": [bad], "deletes": []}),
    )
    .await;
    let s = t
        .wait_for_status("the refusal", |s| {
            s["feeds"]["policy"]["last_error"].is_string()
        })
        .await;
    assert!(
        s["feeds"]["policy"]["last_error"]
            .as_str()
            .unwrap()
            .contains("upserts[0].value"),
        "{s}"
    );
    let policy_batch = s["feeds"]["policy"]["last_batch"].as_i64().unwrap();

    // Other feeds keep flowing.
    let receipt = json!({
        "receipt_id": "9990000000001", "sold_at": "2026-11-24T12:00:00Z", "lane": "register-1", "currency": "USD",
        "tenders": [{"kind": "cash", "amount_minor": 100}],
        "lines": [{"line": 1, "sku": "S", "description": "d", "category": "grocery", "qty": 1, "unit_price_minor": 100,
                   "discount_minor": 0, "tax_minor": 0, "returnable": true, "return_window_days": 90, "returned_qty": 0}],
        "total_minor": 100});
    admin(
        &sim,
        reqwest::Method::POST,
        "/admin/central/feeds/receipts/batches",
        json!({"upserts": [receipt], "deletes": []}),
    )
    .await;
    let s = t
        .wait_for_status("the receipts delta", |s| {
            s["feeds"]["receipts"]["records"] == 121
        })
        .await;
    assert_eq!(
        s["feeds"]["policy"]["last_batch"].as_i64(),
        Some(policy_batch),
        "the bad batch was not skipped"
    );
    t.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn central_down_is_told_apart_from_the_processor_and_reads_go_on() {
    let sim = simulator(50, 10).await;
    let t = standin_pulling_from(&sim).await;
    t.wait_for_status("both upstreams up", |s| {
        s["upstreams"]["central"]["state"] == "up"
            && s["upstreams"]["payments"]["state"] == "up"
            && loaded(s)
    })
    .await;

    admin(
        &sim,
        reqwest::Method::PUT,
        "/admin/faults/central",
        json!({"mode": "down"}),
    )
    .await;
    let s = t
        .wait_for_status("central down", |s| {
            s["upstreams"]["central"]["state"] == "down"
        })
        .await;
    assert_eq!(
        s["upstreams"]["payments"]["state"], "up",
        "the processor is not central"
    );
    assert_eq!(
        s["feeds"]["receipts"]["records"], 50,
        "the local copy is still served"
    );

    admin(
        &sim,
        reqwest::Method::PUT,
        "/admin/faults/central",
        json!({"mode": "ok"}),
    )
    .await;
    t.wait_for_status("central back", |s| {
        s["upstreams"]["central"]["state"] == "up"
    })
    .await;
    t.stop().await;
    sim.shutdown().await;
}

/// Central answering but HQ's updates stopped is told apart from a quiet feed: the store's data
/// is as of when HQ last updated central, not as of the last answer, and status says the feeds
/// stalled while central is up; once updates flow again it is current as of now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_at_hq_is_told_apart_from_a_quiet_feed() {
    let sim = simulator(30, 20).await;
    let t = standin_pulling_from(&sim).await;
    t.wait_for_status("all five feeds", loaded).await;
    // Quiet: no new batch, yet the data is current as of the last answer.
    let s = t
        .wait_for_status("a check after the load", |s| {
            s["feeds"]["pickup_orders"]["checked_at"].is_string()
                && s["feeds"]["pickup_orders"]["data_age_secs"].as_i64() < Some(5)
        })
        .await;
    assert_eq!(s["hq_updates_stalled"], false, "{s}");
    assert_eq!(s["currency"], "USD");

    admin(
        &sim,
        reqwest::Method::PUT,
        "/admin/central/feeds/stall",
        json!({"stalled": true, "since_secs_ago": 1800}),
    )
    .await;
    let s = t
        .wait_for_status("the stall seen", |s| s["hq_updates_stalled"] == true)
        .await;
    assert_eq!(s["upstreams"]["central"]["state"], "up", "central answers");
    let f = &s["feeds"]["pickup_orders"];
    assert_eq!(f["stalled"], true, "{f}");
    assert!(f["data_age_secs"].as_i64().unwrap() >= 1790, "{f}");
    assert!(f["checked_at"].is_string());

    admin(
        &sim,
        reqwest::Method::PUT,
        "/admin/central/feeds/stall",
        json!({"stalled": false}),
    )
    .await;
    let s = t
        .wait_for_status("updates flowing", |s| s["hq_updates_stalled"] == false)
        .await;
    assert!(
        s["feeds"]["pickup_orders"]["data_age_secs"]
            .as_i64()
            .unwrap()
            < 60
    );
    t.stop().await;
    sim.shutdown().await;
}

/// The simulator's samples arrive through the feeds like any change from HQ: a receipt of
/// many lines (with barcodes), an order of many items, and orders due over the next day.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_arrive_through_the_feeds() {
    let sim = simulator(30, 20).await;
    let t = standin_pulling_from(&sim).await;
    t.wait_for_status("all five feeds", loaded).await;
    let added = admin(
        &sim,
        reqwest::Method::POST,
        "/admin/central/samples",
        json!({"receipt_lines": 44, "order_lines": 28, "due_orders": 30}),
    )
    .await;
    t.wait_for_status("the samples", |s| {
        // 20 seeded, the big order, 30 due.
        s["feeds"]["pickup_orders"]["records"] == 51 && s["feeds"]["receipts"]["records"] == 31
    })
    .await;
    let receipt_id = added["receipt"]["receipt_id"].as_str().unwrap();
    let (lines, upcs): (i64, i64) = t
        .db()
        .query_row(
            "SELECT json_array_length(doc, '$.lines'),
                    (SELECT count(*) FROM json_each(doc, '$.lines') l WHERE length(l.value ->> '$.upc') = 12)
             FROM receipts WHERE receipt_id = ?1",
            [receipt_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((lines, upcs), (44, 44));
    let items: i64 = t
        .db()
        .query_row(
            "SELECT items FROM pickup_orders WHERE order_id = ?1",
            [added["order"]["order_id"].as_str().unwrap()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(items, 28);
    t.stop().await;
    sim.shutdown().await;
}
