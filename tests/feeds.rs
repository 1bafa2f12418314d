//! Feeds down, over HTTP against the real server: numbering, replays, gaps, bad records,
//! snapshots that switch in atomically, access to the sync routes.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn a_replayed_batch_changes_nothing_and_says_so() {
    let t = TestStore::start().await;
    let (s, b) = t
        .push("receipts", &delta(1, vec![receipt("R1"), receipt("R2")]))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        (b["applied"].as_bool(), b["records"].as_i64()),
        (Some(true), Some(2))
    );

    // The same number again, even with other content: acknowledged, ignored.
    let mut changed = receipt("R1");
    changed["total_minor"] = json!(1);
    let (s, b) = t
        .push("receipts", &delta(1, vec![changed, receipt("R3")]))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["applied"], json!(false));
    assert_eq!(t.receipt_ids(), ["R1", "R2"]);
    let total: i64 = t
        .db()
        .query_row(
            "SELECT total_minor FROM receipts WHERE receipt_id='R1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(total, 1188);
    assert_eq!(t.feed("receipts").await["last_batch"], 1);
    t.stop().await;
}

#[tokio::test]
async fn a_gap_is_refused_with_the_expected_number() {
    let t = TestStore::start().await;
    t.push("pickup_orders", &delta(1, vec![order("O1")])).await;
    let (s, b) = t.push("pickup_orders", &delta(3, vec![order("O3")])).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(b["error"]["code"], "batch_gap");
    assert_eq!(b["error"]["expected"], 2);
    let f = t.feed("pickup_orders").await;
    assert_eq!(
        (f["last_batch"].as_i64(), f["records"].as_i64()),
        (Some(1), Some(1))
    );
    t.stop().await;
}

#[tokio::test]
async fn one_bad_record_refuses_the_whole_batch_naming_index_and_field() {
    let t = TestStore::start().await;
    let mut bad = receipt("R3");
    bad["lines"][0]["qty"] = json!("two");
    let (s, b) = t
        .push(
            "receipts",
            &delta(1, vec![receipt("R1"), receipt("R2"), bad]),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["field"], "upserts[2].lines[0].qty");
    assert_eq!(b["error"]["index"], 2);

    let mut missing = order("O2");
    missing.as_object_mut().unwrap().remove("due_at");
    let (s, b) = t
        .push("pickup_orders", &delta(1, vec![order("O1"), missing]))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(b["error"]["field"], "upserts[1].due_at");

    let mut bad_phone = order("O1");
    bad_phone["customer"]["phone_last4"] = json!("12a4");
    let (_, b) = t.push("pickup_orders", &delta(1, vec![bad_phone])).await;
    assert_eq!(b["error"]["field"], "upserts[0].customer.phone_last4");

    assert!(
        t.receipt_ids().is_empty(),
        "nothing of a refused batch is kept"
    );
    assert_eq!(t.feed("receipts").await["last_batch"], 0);
    // The batch number was not used up: the corrected batch 1 applies.
    let (s, _) = t.push("receipts", &delta(1, vec![receipt("R1")])).await;
    assert_eq!(s, StatusCode::OK);
    t.stop().await;
}

#[tokio::test]
async fn wrong_envelopes_are_400s_naming_the_field() {
    let t = TestStore::start().await;
    let (s, b) = t
        .push("policy", &json!({"batch": 1, "kind": "everything"}))
        .await;
    assert_eq!(
        (s, b["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("kind"))
    );
    let (s, b) = t
        .push_raw("policy", "{not json".into(), Some(&t.sync_token))
        .await;
    assert_eq!(
        (s, b["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("body"))
    );
    let (s, b) = t.push("planograms", &delta(1, vec![])).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("pickup_orders")
    );
    t.stop().await;
}

#[tokio::test]
async fn a_snapshot_switches_in_only_when_its_last_part_arrives() {
    let t = TestStore::start().await;
    // Snapshot A, complete.
    t.push(
        "receipts",
        &snapshot_part(1, "A", 1, 2, receipts("A", 0..50)),
    )
    .await;
    let (_, b) = t
        .push(
            "receipts",
            &snapshot_part(2, "A", 2, 2, receipts("A", 50..100)),
        )
        .await;
    assert_eq!(b["snapshot"]["complete"], true);
    assert_eq!(b["records"], 100);

    // Snapshot B: two of three parts, then HQ goes quiet. A is still served, all of it.
    let (_, b) = t
        .push(
            "receipts",
            &snapshot_part(3, "B", 1, 3, receipts("B", 0..70)),
        )
        .await;
    assert_eq!(
        (b["snapshot"]["complete"].as_bool(), b["records"].as_i64()),
        (Some(false), Some(100))
    );
    t.push(
        "receipts",
        &snapshot_part(4, "B", 2, 3, receipts("B", 70..140)),
    )
    .await;
    let ids = t.receipt_ids();
    assert_eq!(ids.len(), 100);
    assert!(ids.iter().all(|id| id.starts_with('A')));
    let f = t.feed("receipts").await;
    assert_eq!(f["records"], 100);
    assert_eq!(f["pending_snapshot"]["part"], 2);
    assert_eq!(f["pending_snapshot"]["staged_records"], 140);

    // A part out of order is refused, and says what it expected.
    let (s, b) = t
        .push(
            "receipts",
            &snapshot_part(5, "C", 2, 3, receipts("C", 0..1)),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(b["error"]["expected_snapshot"]["id"], "B");
    assert_eq!(b["error"]["expected_snapshot"]["part"], 3);

    // The last part: B replaces A whole, card index included.
    let (_, b) = t
        .push(
            "receipts",
            &snapshot_part(5, "B", 3, 3, receipts("B", 140..150)),
        )
        .await;
    assert_eq!(
        (b["snapshot"]["complete"].as_bool(), b["records"].as_i64()),
        (Some(true), Some(150))
    );
    let ids = t.receipt_ids();
    assert_eq!(ids.len(), 150);
    assert!(ids.iter().all(|id| id.starts_with('B')));
    let cards: i64 = t
        .db()
        .query_row(
            "SELECT count(*) FROM receipt_cards WHERE receipt_id LIKE 'A%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(cards, 0);
    assert!(
        standin::store::maintenance::check(&t.db_path())
            .unwrap()
            .is_empty()
    );
    t.stop().await;
}

#[tokio::test]
async fn a_new_snapshot_abandons_an_unfinished_one() {
    let t = TestStore::start().await;
    t.push(
        "receipts",
        &snapshot_part(1, "A", 1, 1, receipts("A", 0..10)),
    )
    .await;
    t.push(
        "receipts",
        &snapshot_part(2, "B", 1, 2, receipts("B", 0..10)),
    )
    .await;
    // HQ restarts its export: C part 1 discards B's staged part.
    t.push(
        "receipts",
        &snapshot_part(3, "C", 1, 2, receipts("C", 0..5)),
    )
    .await;
    let (_, b) = t
        .push(
            "receipts",
            &snapshot_part(4, "C", 2, 2, receipts("C", 5..8)),
        )
        .await;
    assert_eq!(b["records"], 8);
    assert!(t.receipt_ids().iter().all(|id| id.starts_with('C')));
    t.stop().await;
}

#[tokio::test]
async fn a_delta_during_a_snapshot_survives_the_switch() {
    let t = TestStore::start().await;
    t.push(
        "pickup_orders",
        &snapshot_part(1, "S1", 1, 2, vec![order("O1"), order("O2")]),
    )
    .await;
    let mut cancelled = order("O9");
    cancelled["status"] = json!("cancelled");
    let (_, b) = t.push("pickup_orders", &delta(2, vec![cancelled])).await;
    assert_eq!(b["records"], 1, "served at once");
    t.push(
        "pickup_orders",
        &snapshot_part(3, "S1", 2, 2, vec![order("O3")]),
    )
    .await;
    let status: String = t
        .db()
        .query_row(
            "SELECT status FROM pickup_orders WHERE order_id='O9'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(status, "cancelled");
    assert_eq!(t.feed("pickup_orders").await["records"], 4);
    t.stop().await;
}

#[tokio::test]
async fn deletes_remove_records_and_their_card_index() {
    let t = TestStore::start().await;
    t.push("receipts", &delta(1, receipts("R", 0..3))).await;
    let (_, b) = t
        .push(
            "receipts",
            &json!({"batch": 2, "kind": "delta", "deletes": ["R000001", "nope"]}),
        )
        .await;
    assert_eq!(b["records"], 2);
    let cards: i64 = t
        .db()
        .query_row("SELECT count(*) FROM receipt_cards", [], |r| r.get(0))
        .unwrap();
    assert_eq!(cards, 2);
    t.stop().await;
}

#[tokio::test]
async fn every_feed_takes_its_records() {
    let t = TestStore::start().await;
    let verifier =
        standin::access::pin::make_verifier("123456", PEPPER.as_bytes(), [1; 16]).unwrap();
    let staff = json!({"employee_id": "E1", "name": "Ana", "role": "manager", "pin_verifier": verifier, "active": true});
    let device = json!({"device_id": "sco-01", "kind": "kiosk", "lane": "sco-1",
                        "token_sha256": standin::access::token::sha256_hex("t"), "active": true});
    let policy = json!({"key": "offline_tx_cap_minor", "value": 10000});
    for (feed, rec) in [
        ("staff", staff),
        ("devices", device),
        ("policy", policy),
        ("pickup_orders", order("O1")),
    ] {
        let (s, b) = t.push(feed, &delta(1, vec![rec])).await;
        assert_eq!(
            (s, b["records"].as_i64()),
            (StatusCode::OK, Some(1)),
            "{feed}: {b}"
        );
    }
    let bad_staff = json!({"employee_id": "E2", "name": "Bo", "role": "associate", "pin_verifier": "1234", "active": true});
    let (s, b) = t.push("staff", &delta(2, vec![bad_staff])).await;
    assert_eq!(
        (s, b["error"]["field"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("upserts[0].pin_verifier")
        )
    );
    let bad_role = json!({"employee_id": "E2", "name": "Bo", "role": "owner", "pin_verifier": "x", "active": true});
    let (_, b) = t.push("staff", &delta(2, vec![bad_role])).await;
    assert_eq!(b["error"]["field"], "upserts[0].role");
    t.stop().await;
}

#[tokio::test]
async fn sync_routes_need_a_sync_token() {
    let t = TestStore::start().await;
    let body = delta(1, vec![receipt("R1")]).to_string();
    let (s, b) = t.push_raw("receipts", body.clone(), None).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
    let (s, _) = t
        .push_raw("receipts", body.clone(), Some("made-up-token"))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, b) = t
        .push_raw("receipts", body.clone(), Some("token-without-sync-scope"))
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    assert!(t.receipt_ids().is_empty());
    let (s, _) = t.push_raw("receipts", body, Some(&t.sync_token)).await;
    assert_eq!(s, StatusCode::OK);
    t.stop().await;
}

#[tokio::test]
async fn an_oversized_body_is_a_json_413() {
    let t = TestStore::start_with(|c| c.http.body_limit_bytes = 4096).await;
    let (s, b) = t.push("receipts", &delta(1, receipts("R", 0..20))).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(b["error"]["code"], "payload_too_large");
    assert!(t.receipt_ids().is_empty());
    t.stop().await;
}

#[tokio::test]
async fn concurrent_pushes_of_one_feed_apply_each_number_once() {
    let t = TestStore::start().await;
    // HQ retries aggressively: every batch sent three times, all at once.
    let mut tasks = Vec::new();
    for n in 1..=10u64 {
        for _ in 0..3 {
            let body = delta(n, receipts(&format!("B{n:02}-"), 0..5));
            let (client, url, token) = (t.client.clone(), t.url.clone(), t.sync_token.clone());
            tasks.push(tokio::spawn(async move {
                client
                    .post(format!("{url}/sync/v1/feeds/receipts/batches"))
                    .bearer_auth(token)
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .status()
            }));
        }
    }
    for task in tasks {
        let s = task.await.unwrap();
        assert!(s == StatusCode::OK || s == StatusCode::CONFLICT, "{s}");
    }
    // Whatever raced ahead of its predecessor was refused; resend in order to fill in.
    for n in 1..=10u64 {
        let (s, _) = t
            .push("receipts", &delta(n, receipts(&format!("B{n:02}-"), 0..5)))
            .await;
        assert_eq!(s, StatusCode::OK);
    }
    assert_eq!(t.receipt_ids().len(), 50);
    assert_eq!(t.feed("receipts").await["last_batch"], 10);
    assert!(
        standin::store::maintenance::check(&t.db_path())
            .unwrap()
            .is_empty()
    );
    t.stop().await;
}
