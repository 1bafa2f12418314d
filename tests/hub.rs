//! The hub on a real PostgreSQL: journal intake exactly once and verified, each store only
//! on its own paths, feeds numbered stably, politeness and operations.

mod common;

use common::hub::{Chain, TestHub, beat, entry, order};
use reqwest::StatusCode;
use serde_json::{Value, json};

macro_rules! hub {
    ($tweak:expr) => {
        match TestHub::start_with($tweak).await {
            Some(h) => h,
            None => return,
        }
    };
    () => {
        hub!(|_| {})
    };
}

#[tokio::test]
async fn a_batch_lands_once_and_a_resend_is_a_duplicate() {
    let hub = hub!();
    let token = hub.add_store("s1").await;
    let entries = Chain::new("s1").take(3);
    assert_eq!(hub.outcomes("s1", &token, &entries).await, ["accepted"; 3]);
    assert_eq!(hub.outcomes("s1", &token, &entries).await, ["duplicate"; 3]);
    // One entry again inside a new batch, with a new one after it.
    let again = vec![entries[2].clone()];
    assert_eq!(hub.outcomes("s1", &token, &again).await, ["duplicate"]);
    let rows = hub.rows("s1").await;
    assert_eq!(rows.len(), 3, "one row per entry: {rows:?}");
    assert!(rows.iter().all(|r| r.1 == "accepted"));
    assert_eq!(rows.iter().map(|r| r.2).collect::<Vec<_>>(), [2, 2, 3]);
    assert_eq!(hub.verified("s1").await, (3, None));
}

#[tokio::test]
async fn a_changed_entry_is_rejected_as_a_hash_mismatch() {
    let hub = hub!();
    let token = hub.add_store("s1").await;
    let mut entries = Chain::new("s1").take(2);
    entries[1]["body"]["n"] = json!(999);
    assert_eq!(
        hub.outcomes("s1", &token, &entries).await,
        ["accepted", "rejected:hash_mismatch"]
    );
    // Re-sent, it gets the same answer and still one row.
    assert_eq!(
        hub.outcomes("s1", &token, &entries[1..]).await,
        ["rejected:hash_mismatch"]
    );
    assert_eq!(hub.rows("s1").await.len(), 2);
    assert_eq!(hub.verified("s1").await.0, 1);
}

/// An entry that is not one (a field missing, of the wrong type, a time that is not RFC
/// 3339) is rejected `invalid_entry` with the field named in its result, on its first
/// answer and on a re-send; the entries around it land.
#[tokio::test]
async fn an_unreadable_entry_is_rejected_naming_its_field() {
    let hub = hub!();
    let token = hub.add_store("s1").await;
    let mut chain = Chain::new("s1");
    let good = chain.take(1);
    let mut no_lane = Chain::new("s1").take(1)[0].clone();
    no_lane["id"] = json!(uuid::Uuid::now_v7().to_string());
    no_lane.as_object_mut().unwrap().remove("lane");
    let mut bad_seq = no_lane.clone();
    bad_seq["id"] = json!(uuid::Uuid::now_v7().to_string());
    bad_seq["lane"] = json!("audit");
    bad_seq["seq"] = json!("two");
    let yesterday = common::hub::entry(
        "s1",
        2,
        good[0]["hash"].as_str().unwrap(),
        "audit.note",
        json!({}),
    );
    let mut yesterday = yesterday;
    yesterday["occurred_at"] = json!("yesterday");
    let batch = [good[0].clone(), no_lane, bad_seq, yesterday];
    for _ in 0..2 {
        let (status, body) = hub.post_journal("s1", &token, &batch).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let fields: Vec<Value> = body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| json!([r["reason"], r["field"]]))
            .collect();
        assert_eq!(
            fields,
            [
                json!([null, null]),
                json!(["invalid_entry", "lane"]),
                json!(["invalid_entry", "seq"]),
                json!(["invalid_entry", "occurred_at"]),
            ],
            "{body}"
        );
    }
    assert_eq!(hub.verified("s1").await.0, 1);
    // Half a surrogate pair escaped in its text: JSON by grammar, no Unicode text. Rejected
    // alone, naming where, not a refused batch the store would send forever.
    let (status, body) = hub
        .post_raw(
            "s1",
            "journal",
            Some(token.as_str()),
            r#"{"entries":[{"id":"e-surrogate","seq":9,"body":{"note":"a\ud800b"}}]}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["results"][0]["reason"], "invalid_entry", "{body}");
    assert_eq!(body["results"][0]["field"], "body.note", "{body}");
    // An id too long to keep (past PostgreSQL's index row) and a seq of 0: each rejected
    // alone, naming the field; the entry after them lands.
    let mut long = common::hub::entry(
        "s1",
        2,
        good[0]["hash"].as_str().unwrap(),
        "audit.note",
        json!({}),
    );
    long["id"] = json!("x".repeat(3_000));
    let zero = common::hub::entry(
        "s1",
        0,
        standin::journal::chain::GENESIS,
        "audit.note",
        json!({}),
    );
    let next = common::hub::entry(
        "s1",
        2,
        good[0]["hash"].as_str().unwrap(),
        "audit.note",
        json!({ "n": 2 }),
    );
    let (status, body) = hub.post_journal("s1", &token, &[long, zero, next]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let got: Vec<Value> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| json!([r["outcome"], r["reason"], r["field"]]))
        .collect();
    assert_eq!(
        got,
        [
            json!(["rejected", "invalid_entry", "id"]),
            json!(["rejected", "invalid_entry", "seq"]),
            json!(["accepted", null, null]),
        ],
        "{body}"
    );
    assert_eq!(hub.verified("s1").await.0, 2);
    // JSON by grammar that serde cannot hold as a value (a number past f64, nesting past 128
    // levels), between two entries that land: rejected alone, naming where, kept as text.
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let token = hub.add_store("s2").await;
    let next = Chain::new("s2").take(2);
    let text: &'static str = format!(
        r#"{{"entries":[{},{{"id":"e-huge","seq":2,"body":{{"amount":1e400}}}},{{"id":"e-deep","seq":2,"body":{{"x":{deep}}}}},{}]}}"#,
        next[0], next[1]
    )
    .leak();
    for _ in 0..2 {
        let (status, body) = hub
            .post_raw("s2", "journal", Some(token.as_str()), text)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let got: Vec<Value> = body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| json!([r["id"], r["reason"], r["field"]]))
            .collect();
        assert_eq!(
            got[1],
            json!(["e-huge", "invalid_entry", "body.amount"]),
            "{body}"
        );
        assert_eq!(
            [&got[2][0], &got[2][1]],
            ["e-deep", "invalid_entry"],
            "{body}"
        );
        assert!(got[2][2].as_str().unwrap().starts_with("body.x"), "{body}");
        assert_ne!(body["results"][0]["outcome"], "rejected", "{body}");
        assert_ne!(body["results"][3]["outcome"], "rejected", "{body}");
    }
    assert_eq!(hub.verified("s2").await.0, 2);
    // Half a surrogate pair in the id itself: answered under the id as sent, escape and all,
    // so the store can match it; two such ids are two answers, and neither is kept.
    let res = hub
        .client
        .post(format!("{}/v1/stores/s2/journal", hub.url))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(r#"{"entries":[{"id":"ID-\ud800-1","seq":1},{"id":"ID-\udbff-1","seq":2}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.unwrap();
    assert!(
        text.contains(r#""id":"ID-\ud800-1""#) && text.contains(r#""id":"ID-\udbff-1""#),
        "{text}"
    );
    assert_eq!(
        text.matches(r#""reason":"invalid_entry""#).count(),
        2,
        "{text}"
    );
    assert!(
        hub.rows("s2")
            .await
            .iter()
            .all(|r| !r.0.contains('\u{FFFD}'))
    );
    // A store id a store could not put in its URLs as it is.
    let client = hub.pg.client().await;
    for odd in [".", "..", "a?b", "a#b", "a%2Fb", "a b", ""] {
        assert!(
            standin::hub::auth::add_store(&client, odd).await.is_err(),
            "{odd:?}"
        );
    }
}

/// An entry PostgreSQL could not store (U+0000 in its text) is rejected and kept with
/// U+FFFD in its place; the batch around it lands, and the store is not left resending it.
#[tokio::test]
async fn an_entry_holding_u0000_is_rejected_alone_not_a_failed_batch() {
    let hub = hub!();
    let token = hub.add_store("s1").await;
    let mut entries = Chain::new("s1").take(3);
    entries[1]["body"]["note"] = json!("a\u{0}b");
    assert_eq!(
        hub.outcomes("s1", &token, &entries).await,
        ["accepted", "rejected:invalid_entry", "accepted"]
    );
    let kept: String = hub
        .pg
        .client()
        .await
        .query_one(
            "SELECT body->>'body' FROM journal_entries WHERE store_id = 's1' AND outcome = 'rejected'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(kept.contains("a\u{FFFD}b"), "{kept}");
    // An id PostgreSQL could not store is the request's error, naming the entry.
    let mut bad = Chain::new("s2").take(1);
    bad[0]["id"] = json!("x\u{0}");
    let (status, body) = hub.post_journal("s1", &token, &bad).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}

#[tokio::test]
async fn two_entries_for_one_place_in_the_chain_are_a_fork_and_flag_the_store() {
    let hub = hub!();
    let token = hub.add_store("s1").await;
    let mut chain = Chain::new("s1");
    let first = chain.take(2);
    assert_eq!(hub.outcomes("s1", &token, &first).await, ["accepted"; 2]);
    // A self-consistent second seq 2 (a restored backup, a forged store).
    let fork = entry(
        "s1",
        2,
        first[0]["hash"].as_str().unwrap(),
        "audit.note",
        json!({ "other": 1 }),
    );
    assert_eq!(
        hub.outcomes("s1", &token, &[fork]).await,
        ["rejected:chain_fork"]
    );
    let (seq, flag) = hub.verified("s1").await;
    assert_eq!(seq, 2);
    assert!(flag.unwrap_or_default().contains("chain_fork"));
    let (status, fleet) = hub.get("/v1/fleet").await;
    assert_eq!(status, StatusCode::OK);
    assert!(fleet.contains("chain_fork at seq 2"), "{fleet}");
}

/// An id already in the chain sent again with other content (a valid hash over it) is not a
/// re-send: it is answered `chain_fork` and flags the store, never `duplicate`, which would
/// tell the store its new content is at HQ; the id's row stays the first. So too an id
/// reused at another seq. A true re-send is still a duplicate.
#[tokio::test]
async fn an_id_sent_again_with_other_content_is_a_fork_not_a_duplicate() {
    let hub = hub!();
    let token = hub.add_store("s1").await;
    let mut chain = Chain::new("s1");
    let first = chain.take(3);
    assert_eq!(hub.outcomes("s1", &token, &first).await, ["accepted"; 3]);
    let id = |i: usize| first[i]["id"].as_str().unwrap().to_owned();
    let hash = |i: usize| first[i]["hash"].as_str().unwrap().to_owned();
    // Seq 3 again under its own id, with another body.
    let changed =
        common::hub::entry_as(&id(2), "s1", 3, &hash(1), "audit.note", json!({ "n": 99 }));
    assert_ne!(changed["hash"], first[2]["hash"]);
    // Seq 4 under seq 1's id.
    let reused = common::hub::entry_as(&id(0), "s1", 4, &hash(2), "audit.note", json!({ "n": 4 }));
    for e in [changed, reused] {
        assert_eq!(
            hub.outcomes("s1", &token, &[e]).await,
            ["rejected:chain_fork"]
        );
    }
    // Seq 2's hash with other content; seq 1's id on an entry that is not one.
    let mut tampered = first[1].clone();
    tampered["body"] = json!({ "n": 1000 });
    assert_eq!(
        hub.outcomes("s1", &token, &[tampered]).await,
        ["rejected:hash_mismatch"]
    );
    let mut unreadable = first[0].clone();
    unreadable.as_object_mut().unwrap().remove("lane");
    assert_eq!(
        hub.outcomes("s1", &token, &[unreadable]).await,
        ["rejected:chain_fork"]
    );
    assert_eq!(
        hub.outcomes("s1", &token, &first).await,
        ["duplicate"; 3],
        "a true re-send"
    );
    let rows = hub.rows("s1").await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    // Accepted once, arrived twice (the re-send); the forks are not arrivals of them.
    assert!(
        rows.iter().all(|r| r.1 == "accepted" && r.2 == 2),
        "{rows:?}"
    );
    let (seq, flag) = hub.verified("s1").await;
    assert_eq!(seq, 3);
    assert!(flag.unwrap_or_default().contains("chain_fork"));
    let (_, fleet) = hub.get("/v1/fleet?state=flagged").await;
    assert!(fleet.contains("\"s1\""), "{fleet}");
}

#[tokio::test]
async fn lanes_out_of_seq_order_advance_the_verified_prefix_only_when_contiguous() {
    let hub = hub!();
    let token = hub.add_store("s1").await;
    let e = Chain::new("s1").take(5);
    assert_eq!(
        hub.outcomes("s1", &token, &[e[2].clone(), e[4].clone()])
            .await,
        ["accepted"; 2]
    );
    assert_eq!(hub.verified("s1").await.0, 0);
    assert_eq!(
        hub.outcomes("s1", &token, &[e[0].clone()]).await,
        ["accepted"]
    );
    assert_eq!(hub.verified("s1").await.0, 1);
    assert_eq!(
        hub.outcomes("s1", &token, &[e[1].clone()]).await,
        ["accepted"]
    );
    assert_eq!(hub.verified("s1").await.0, 3);
    assert_eq!(
        hub.outcomes("s1", &token, &[e[3].clone()]).await,
        ["accepted"]
    );
    assert_eq!(hub.verified("s1").await, (5, None));
}

#[tokio::test]
async fn a_store_uses_only_its_own_paths() {
    let hub = hub!();
    let t1 = hub.add_store("s1").await;
    let t2 = hub.add_store("s2").await;
    let entries = Chain::new("s1").take(1);
    let (status, body) = hub.post_journal("s1", &t2, &entries).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "forbidden");
    let (status, _) = hub.batches("s1", &t2, "pickup_orders", 0).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = hub.post_journal("s1", "not-a-token", &entries).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unauthorized");
    // Every path of a store is behind its token, before anything of the request is read: a
    // body that is not JSON, a feed that does not exist, a heartbeat.
    for (path, body) in [("journal", "not json"), ("status", "{}")] {
        let (status, _) = hub.post_raw("s1", path, Some(&t2), body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        let (status, body) = hub.post_raw("s1", path, None, body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(body["error"]["code"], "unauthorized", "{path}");
    }
    let (status, _) = hub.batches("s1", &t2, "no_such_feed", 0).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A store id that is not text (invalid UTF-8 once decoded) is refused in JSON, naming it.
    let (status, body) = hub.post_raw("%FF", "journal", Some(&t1), "{}").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "store", "{body}");
    // Another store's entry sent on one's own path is refused, not landed under it.
    assert_eq!(
        hub.outcomes("s2", &t2, &entries).await,
        ["rejected:store_mismatch"]
    );
    assert_eq!(hub.outcomes("s1", &t1, &entries).await, ["accepted"]);
    assert!(hub.rows("s2").await.iter().all(|r| r.1 == "rejected"));
}

#[tokio::test]
async fn a_hand_over_of_an_order_hq_cancelled_is_a_conflict() {
    let hub = hub!();
    let token = hub.add_store("s1").await;
    hub.import(
        "pickup_orders",
        &[order("s1", "o1", "cancelled"), order("s1", "o2", "ready")],
    )
    .await;
    let mut chain = Chain::new("s1");
    let e = vec![
        chain.next("pickup.handed_over", json!({ "order_id": "o1" })),
        chain.next("pickup.handed_over", json!({ "order_id": "o2" })),
    ];
    assert_eq!(
        hub.outcomes("s1", &token, &e).await,
        ["conflict:order_cancelled", "accepted"]
    );
    // A conflict landed: it is in the chain, and the prefix passes it.
    assert_eq!(hub.verified("s1").await.0, 2);
}

#[tokio::test]
async fn bad_bodies_get_the_error_shape_and_nothing_lands() {
    let hub = hub!();
    let token = hub.add_store("s1").await;
    let res = hub
        .client
        .post(format!("{}/v1/stores/s1/journal", hub.url))
        .bearer_auth(&token)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_json");
    let (status, body) = hub.post_journal("s1", &token, &[json!({ "seq": 1 })]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["field"], "entries[0].id");
    let (_, body) = hub
        .post_journal("s1", &token, &[json!({ "id": "x", "seq": "one" })])
        .await;
    assert_eq!(body["results"][0]["reason"], "invalid_entry");
    assert_eq!(hub.verified("s1").await.0, 0);
}

#[tokio::test]
async fn feeds_start_with_a_snapshot_in_parts_then_deltas_numbered_stably() {
    let hub = hub!(|c| c.batch_records = 2);
    let t1 = hub.add_store("s1").await;
    let t2 = hub.add_store("s2").await;
    let orders: Vec<_> = (1..=5)
        .map(|i| order("s1", &format!("o{i}"), "ready"))
        .collect();
    hub.import("pickup_orders", &orders).await;
    hub.import("pickup_orders", &[order("s2", "x1", "ready")])
        .await;
    let (status, first) = hub.batches("s1", &t1, "pickup_orders", 0).await;
    assert_eq!(status, StatusCode::OK);
    let batches = first["batches"].as_array().unwrap();
    assert_eq!(batches.len(), 3, "{first}");
    for (i, b) in batches.iter().enumerate() {
        assert_eq!(b["batch"], i + 1);
        assert_eq!(b["kind"], "snapshot");
        assert_eq!(b["snapshot"]["part"], i + 1);
        assert_eq!(b["snapshot"]["parts"], 3);
        assert_eq!(b["snapshot"]["id"], batches[0]["snapshot"]["id"]);
    }
    let ids: Vec<_> = batches
        .iter()
        .flat_map(|b| b["upserts"].as_array().unwrap().iter())
        .map(|r| r["order_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        ids,
        ["o1", "o2", "o3", "o4", "o5"],
        "s2's order is not s1's"
    );
    // The same numbers answer the same batches, however often asked.
    assert_eq!(hub.batches("s1", &t1, "pickup_orders", 0).await.1, first);
    assert_eq!(
        hub.batches("s1", &t1, "pickup_orders", 3).await.1["batches"],
        json!([])
    );
    // A change becomes the next delta; re-importing the same file changes nothing.
    assert_eq!(hub.import("pickup_orders", &orders).await, 0);
    let changed = order("s1", "o2", "cancelled");
    hub.import(
        "pickup_orders",
        &[
            changed,
            json!({ "store_id": "s1", "order_id": "o5", "deleted": true }),
        ],
    )
    .await;
    let (_, next) = hub.batches("s1", &t1, "pickup_orders", 3).await;
    let delta = &next["batches"][0];
    assert_eq!(delta["batch"], 4);
    assert_eq!(delta["kind"], "delta");
    assert_eq!(delta["upserts"][0]["status"], "cancelled");
    assert_eq!(delta["deletes"], json!(["o5"]));
    assert_eq!(hub.batches("s1", &t1, "pickup_orders", 3).await.1, next);
    // The other store got only its own.
    let (_, other) = hub.batches("s2", &t2, "pickup_orders", 0).await;
    assert_eq!(other["batches"].as_array().unwrap().len(), 1);
    assert_eq!(other["batches"][0]["upserts"][0]["order_id"], "x1");
    // A policy record without a store reaches every store.
    hub.import(
        "policy",
        &[json!({ "key": "offline_max_hours", "value": 6 })],
    )
    .await;
    for (s, t) in [("s1", &t1), ("s2", &t2)] {
        let (_, p) = hub.batches(s, t, "policy", 0).await;
        assert_eq!(p["batches"][0]["upserts"][0]["value"], 6, "{s}: {p}");
    }
    let (status, body) = hub.batches("s1", &t1, "nope", 0).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "unknown_feed");
}

#[tokio::test]
async fn a_full_intake_answers_503_with_retry_after_spread_per_store() {
    // No queue: a batch finding the one slot taken is refused at once.
    let hub = hub!(|c| {
        c.intake_at_once = 1;
        c.intake_queue = 0;
    });
    let mut waits = std::collections::HashSet::new();
    let mut tokens = Vec::new();
    for i in 0..8 {
        tokens.push(hub.add_store(&format!("s{i}")).await);
    }
    // Hold the only permit, as a long transaction would.
    let held = hub
        .state
        .intake_permits
        .clone()
        .acquire_owned()
        .await
        .unwrap();
    for (i, t) in tokens.iter().enumerate() {
        let store = format!("s{i}");
        let entries = Chain::new(&store).take(1);
        let res = hub
            .client
            .post(format!("{}/v1/stores/{store}/journal", hub.url))
            .bearer_auth(t)
            .json(&json!({ "entries": entries }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        let ra: u64 = res.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=30).contains(&ra), "{ra}");
        waits.insert(ra);
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "busy");
    }
    assert!(
        waits.len() >= 3,
        "the fleet is told to come back at once: {waits:?}"
    );
    drop(held);
    let entries = Chain::new("s0").take(1);
    assert_eq!(hub.outcomes("s0", &tokens[0], &entries).await, ["accepted"]);
    let (_, metrics) = hub.get("/metrics").await;
    assert!(
        metrics.contains("standin_hub_intake_refused_busy_total 8"),
        "{metrics}"
    );
    assert!(
        metrics.contains("standin_hub_journal_entries_accepted_total 1"),
        "{metrics}"
    );
}

/// A hub that has just been landing pushes tells the few it refuses to come back soon (the
/// least spread, 2 s: `Retry-After` 1 or 2), not the whole `retry_after_spread_secs` it tells
/// when nothing lands (`src/hub/pace.rs`). Fails if landings are not counted.
#[tokio::test]
async fn a_hub_that_is_landing_tells_the_few_it_refuses_to_come_back_soon() {
    let hub = hub!(|c| {
        c.intake_at_once = 1;
        c.intake_queue = 0;
        c.retry_after_min_secs = 1;
        c.retry_after_spread_secs = 30;
    });
    let mut tokens = Vec::new();
    for i in 0..8 {
        tokens.push(hub.add_store(&format!("r{i}")).await);
    }
    // The landings just before the refusals (the hub looks back 2–3 s).
    let token = hub.add_store("lands").await;
    let mut chain = Chain::new("lands");
    for _ in 0..20 {
        let batch = chain.take(1);
        assert_eq!(hub.outcomes("lands", &token, &batch).await, ["accepted"]);
    }
    // Every admission taken, as a running batch would: the next push is refused at once.
    let held = hub
        .state
        .intake_admitted
        .clone()
        .acquire_owned()
        .await
        .unwrap();
    let mut told = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let store = format!("r{i}");
        let res = hub
            .client
            .post(format!("{}/v1/stores/{store}/journal", hub.url))
            .bearer_auth(t)
            .json(&json!({ "entries": Chain::new(&store).take(1) }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        told.push(
            res.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse::<u64>()
                .unwrap(),
        );
    }
    drop(held);
    assert!(
        told.iter().all(|ra| (1..=2).contains(ra)),
        "told {told:?} after 20 landings in the last moment"
    );
}

#[tokio::test]
async fn a_batch_waits_its_turn_in_the_queue_and_beyond_the_queue_is_refused_at_once() {
    let hub = hub!(|c| {
        c.intake_at_once = 1;
        c.intake_queue = 1;
        c.intake_deadline_ms = 20_000;
    });
    let (t1, t2) = (hub.add_store("s1").await, hub.add_store("s2").await);
    // A running batch holds one admission and the one slot.
    let held = hub.hold_a_running_batch().await;
    // The held permit stands for a running batch: one more may wait for it.
    let waiting = hub.push_in_background("s1", &t1, Chain::new("s1").take(2));
    // Until it is admitted, the queue has room; then the third batch is refused at once
    // (not after the 20 s deadline, which is what waiting in an unbounded queue would give).
    assert!(
        hub.until_holding(2).await,
        "the second batch never took its place in the queue"
    );
    let asked = std::time::Instant::now();
    let refused = hub
        .client
        .post(format!("{}/v1/stores/s2/journal", hub.url))
        .bearer_auth(&t2)
        .json(&json!({ "entries": Chain::new("s2").take(1) }))
        .send()
        .await
        .unwrap();
    assert!(
        asked.elapsed() < std::time::Duration::from_secs(10),
        "refused only after {:?}",
        asked.elapsed()
    );
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.headers().contains_key("retry-after"));
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "busy", "{body}");
    assert!(
        !waiting.is_finished(),
        "the queued batch waits for the slot"
    );
    drop(held);
    let res = waiting.await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["results"][1]["outcome"], "accepted", "{body}");
    assert_eq!(hub.verified("s1").await, (2, None));
    assert_eq!(
        hub.rows("s2").await.len(),
        0,
        "the refused batch left nothing"
    );
}

/// A batch that fails inside its own transaction lands nothing: the hub answers an error in
/// JSON, never 2xx, and leaves no connection inside that transaction; sent again once
/// PostgreSQL takes it, it lands whole. Failed at each flight of the landing: the INSERT;
/// the store's row, with COMMIT pipelined behind it (PostgreSQL answers that COMMIT with a
/// rollback); and COMMIT itself (a deferred constraint trigger).
#[tokio::test]
async fn a_batch_failing_inside_its_transaction_lands_nothing_and_lands_whole_when_resent() {
    let hub = hub!();
    let token = hub.add_store("s1").await;
    let mut chain = Chain::new("s1");
    let db = hub.pg.client().await;
    db.batch_execute(
        "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql
             AS $$ BEGIN RAISE EXCEPTION 'boom'; END $$",
    )
    .await
    .unwrap();
    let failures = [
        (
            "journal_entries",
            "BEFORE INSERT ON journal_entries FOR EACH ROW",
        ),
        ("stores", "BEFORE UPDATE ON stores FOR EACH ROW"),
        (
            "stores",
            "AFTER UPDATE ON stores DEFERRABLE INITIALLY DEFERRED FOR EACH ROW",
        ),
    ];
    for (i, (table, when)) in failures.into_iter().enumerate() {
        let constraint = if when.contains("DEFERRED") {
            "CONSTRAINT"
        } else {
            ""
        };
        db.batch_execute(&format!(
            "CREATE {constraint} TRIGGER boom {when} EXECUTE FUNCTION boom()"
        ))
        .await
        .unwrap();
        let entries = chain.take(2);
        let (status, body) = hub.post_journal("s1", &token, &entries).await;
        assert!(status.is_server_error(), "{when}: {status} {body}");
        assert!(
            body["error"]["code"].is_string(),
            "{when}: not the error shape: {body}"
        );
        assert_eq!(
            hub.rows("s1").await.len(),
            2 * i,
            "{when}: something landed"
        );
        // The failed transaction's connection is closed, not left idle inside it.
        let mut left_open = -1;
        for _ in 0..100 {
            left_open = db
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity
                     WHERE application_name = 'standin-hub' AND state LIKE 'idle in transaction%'",
                    &[],
                )
                .await
                .unwrap()
                .get::<_, i64>(0);
            if left_open == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(
            left_open, 0,
            "{when}: a connection stayed inside the failed transaction"
        );
        db.batch_execute(&format!("DROP TRIGGER boom ON {table}"))
            .await
            .unwrap();
        assert_eq!(
            hub.outcomes("s1", &token, &entries).await,
            ["accepted"; 2],
            "{when}"
        );
        assert_eq!(
            hub.verified("s1").await,
            (2 * (i as i64 + 1), None),
            "{when}"
        );
    }
}

/// The intake's transaction is its connection's own (BEGIN goes with its first flight): a
/// landing cut short, by an error or the deadline, drops its connection unfinished, and that
/// connection is closed, so PostgreSQL rolls it back and no later request is handed a
/// connection still inside it, or waits on its locks.
#[tokio::test]
async fn a_connection_cut_short_inside_a_transaction_is_closed_not_reused() {
    use standin::hub::db::Exclusive;
    let hub = hub!();
    let pool = &hub.state.intake_pool;
    async fn pid(c: &Exclusive) -> i32 {
        c.query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0)
    }
    let cut = Exclusive::get(pool).await.unwrap();
    let cut_pid = pid(&cut).await;
    cut.batch_execute("BEGIN; SELECT pg_advisory_xact_lock(4242)")
        .await
        .unwrap();
    drop(cut);
    // The pool never hands the cut connection out again, and its transaction's lock is let
    // go once PostgreSQL sees it closed.
    let mut released = false;
    for _ in 0..100 {
        let c = Exclusive::get(pool).await.unwrap();
        assert_ne!(
            pid(&c).await,
            cut_pid,
            "the cut connection was handed out again"
        );
        // Let go: the lock is free and the cut connection's backend has ended.
        released = c
            .query_one(
                "SELECT pg_try_advisory_xact_lock(4242)
                        AND NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)",
                &[&cut_pid],
            )
            .await
            .unwrap()
            .get(0);
        c.finished();
        if released {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(released, "the cut transaction was still open after 5 s");
}

#[tokio::test]
async fn readiness_follows_postgresql_and_the_schema() {
    let hub = hub!();
    assert_eq!(hub.get("/healthz").await.0, StatusCode::OK);
    let (status, body) = hub.get("/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    hub.pg.stop_immediate();
    let (status, body) = hub.get("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(hub.get("/healthz").await.0, StatusCode::OK);
    hub.pg.start_again();
    // The pool reconnects: ready again, without restarting the hub.
    let mut ready = false;
    for _ in 0..50 {
        if hub.get("/readyz").await.0 == StatusCode::OK {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ready);
    // A fresh database without the schema is not ready.
    let client = hub.pg.client().await;
    client.batch_execute("CREATE DATABASE bare").await.unwrap();
    let config = standin::hub::HubConfig {
        database_url: standin::config::Secret::new(format!(
            "{}/bare",
            hub.pg.url.rsplit_once('/').unwrap().0
        )),
        ..Default::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/readyz", listener.local_addr().unwrap());
    let state = standin::hub::HubState::new(config).unwrap();
    tokio::spawn(standin::hub::launch(
        state,
        listener,
        std::future::pending(),
    ));
    let res = reqwest::get(url).await.unwrap();
    let (status, body) = (res.status(), res.text().await.unwrap());
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("schema version 0"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hub_processes_racing_one_batch_land_it_once() {
    let hub = hub!();
    let token = hub.add_store("s1").await;
    // A second, independent hub over the same database (another process behind the LB).
    let config = standin::hub::HubConfig {
        database_url: standin::config::Secret::new(hub.pg.url.clone()),
        ..Default::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other = format!("http://{}", listener.local_addr().unwrap());
    let state = standin::hub::HubState::new(config).unwrap();
    tokio::spawn(standin::hub::launch(
        state,
        listener,
        std::future::pending(),
    ));
    let entries = Chain::new("s1").take(50);
    let mut sends = Vec::new();
    for i in 0..8 {
        let url = if i % 2 == 0 {
            hub.url.clone()
        } else {
            other.clone()
        };
        let (client, token, entries) = (hub.client.clone(), token.clone(), entries.clone());
        sends.push(tokio::spawn(async move {
            let res = client
                .post(format!("{url}/v1/stores/s1/journal"))
                .bearer_auth(token)
                .json(&json!({ "entries": entries }))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            let body: serde_json::Value = res.json().await.unwrap();
            body["results"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["outcome"] == "accepted")
                .count()
        }));
    }
    let mut accepted = 0;
    for s in sends {
        accepted += s.await.unwrap();
    }
    assert_eq!(accepted, 50, "each entry accepted by exactly one request");
    let rows = hub.rows("s1").await;
    assert_eq!(rows.len(), 50);
    assert_eq!(rows.iter().map(|r| r.2).sum::<i32>(), 8 * 50);
    assert_eq!(hub.verified("s1").await, (50, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_the_hub_cannot_land_in_time_is_answered_busy_before_the_store_gives_up() {
    // A store's row held by another transaction (the other hub process, a stuck lock): the
    // store waits no longer than `intake_deadline_ms` and is answered 503 busy with a
    // Retry-After, well before its own 5 s timeout. The landing it started is not thrown
    // away: it finishes once the row is free, with no resend, and the resend is answered
    // `duplicate`. Every entry lands once.
    let Some(hub) = TestHub::start_with(|c| c.intake_deadline_ms = 500).await else {
        return;
    };
    let token = hub.add_store("s-held").await;
    let mut chain = Chain::new("s-held");
    let batch = chain.take(3);

    let mut holder = standin::hub::db::connect(&hub.pg.url).await.unwrap();
    let tx = holder.transaction().await.unwrap();
    tx.execute(
        "SELECT 1 FROM stores WHERE store_id = 's-held' FOR UPDATE",
        &[],
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let res = hub
        .client
        .post(format!("{}/v1/stores/s-held/journal", hub.url))
        .bearer_auth(&token)
        .json(&json!({ "entries": batch }))
        .send()
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.headers().contains_key("retry-after"));
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "busy", "{body}");
    assert!(
        waited < std::time::Duration::from_secs(4),
        "answered after {waited:?}: past the store's own timeout"
    );
    assert!(hub.rows("s-held").await.is_empty(), "nothing landed");

    tx.rollback().await.unwrap();
    let freed = std::time::Instant::now();
    while hub.rows("s-held").await.len() < 3 {
        assert!(
            freed.elapsed() < std::time::Duration::from_secs(10),
            "the landing answered busy never finished"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        hub.outcomes("s-held", &token, &batch).await,
        ["duplicate", "duplicate", "duplicate"]
    );
    assert_eq!(hub.rows("s-held").await.len(), 3);
    assert_eq!(hub.verified("s-held").await.0, 3);
    hub.stop().await;
}

/// A push that the ones ahead of it cannot let through within the deadline, at the rate
/// this process has just been landing, is refused `busy` on arrival, not after the whole
/// deadline; one that can wait its turn still does, and lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_that_cannot_land_in_time_at_the_recent_rate_is_refused_at_once() {
    let Some(hub) = TestHub::start_with(|c| {
        c.intake_at_once = 1;
        c.intake_queue = 8;
        c.intake_deadline_ms = 4_000;
    })
    .await
    else {
        return;
    };
    let (t1, t2) = (hub.add_store("w1").await, hub.add_store("w2").await);
    // A running batch holds an admission and the one slot.
    let held = hub.hold_a_running_batch().await;
    // Landings have just been taking 2.5 s each (one slot): one push waiting fits in three quarters of the
    // 4 s deadline, a second behind it does not.
    hub.state
        .pace
        .landed(std::time::Duration::from_millis(2_500), 1);
    let waiting = hub.push_in_background("w1", &t1, Chain::new("w1").take(2));
    assert!(
        hub.until_holding(2).await,
        "the first push never took its place in the queue"
    );
    let asked = std::time::Instant::now();
    let (status, body) = hub.post_journal("w2", &t2, &Chain::new("w2").take(1)).await;
    let waited = asked.elapsed();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "busy", "{body}");
    assert!(
        waited < std::time::Duration::from_millis(1_500),
        "refused after {waited:?}: it waited for the deadline"
    );
    drop(held);
    let res = waiting.await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(hub.rows("w2").await.is_empty());
    assert_eq!(hub.rows("w1").await.len(), 2);
    let (_, metrics) = hub.get("/metrics").await;
    assert!(
        metrics.contains("standin_hub_intake_refused_expected_wait_total 1"),
        "{metrics}"
    );
    hub.stop().await;
}

/// Store bodies held at once are bounded in bytes (`intake_memory_mib`): a journal batch
/// that would go past it is answered `busy` with a `Retry-After` (its body read and dropped,
/// never kept), whether it states its length or not, and so is a heartbeat; a small batch
/// that fits lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_bodies_past_the_memory_budget_are_refused_busy_unkept() {
    let Some(hub) = TestHub::start_with(|c| c.intake_memory_mib = 32).await else {
        return;
    };
    let token = hub.add_store("m1").await;
    // All of the budget but one 64 KiB unit held, as bodies being read or landing would.
    let units = hub.state.intake_memory.available_permits() as u32;
    let held = hub
        .state
        .intake_memory
        .clone()
        .acquire_many_owned(units - 1)
        .await
        .unwrap();
    let mut chain = Chain::new("m1");
    assert_eq!(
        hub.outcomes("m1", &token, &chain.take(1)).await,
        ["accepted"]
    );
    // About 200 KiB: four units. With its length stated, and then as a stream without one.
    let big =
        json!({ "entries": [entry("m1", 2, "x", "note", json!({ "pad": "p".repeat(200_000) }))] })
            .to_string();
    let url = format!("{}/v1/stores/m1/journal", hub.url);
    let stated = hub
        .client
        .post(&url)
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    // Chunked: no Content-Length, the budget is found short while reading.
    let addr = hub.url.trim_start_matches("http://").to_string();
    let mut req = format!(
        "POST /v1/stores/m1/journal HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    )
    .into_bytes();
    for chunk in big.as_bytes().chunks(16 * 1024) {
        req.extend(format!("{:x}\r\n", chunk.len()).into_bytes());
        req.extend(chunk);
        req.extend(b"\r\n");
    }
    req.extend(b"0\r\n\r\n");
    let (status, head, body) = common::raw(&addr, &req).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("busy")),
        "{head}"
    );
    assert!(head.contains("retry-after:"), "{head}");
    assert_eq!(stated.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(stated.headers().contains_key("retry-after"));
    let body: serde_json::Value = stated.json().await.unwrap();
    assert_eq!(body["error"]["code"], "busy", "{body}");
    assert_eq!(
        hub.rows("m1").await.len(),
        1,
        "nothing of the refused batches landed"
    );
    let (_, metrics) = hub.get("/metrics").await;
    assert!(
        metrics.contains("standin_hub_intake_refused_memory_total 2"),
        "{metrics}"
    );
    // Heartbeats are read within the same budget: with none of it left, one is refused too.
    let last = hub
        .state
        .intake_memory
        .clone()
        .acquire_owned()
        .await
        .unwrap();
    let res = hub
        .client
        .post(format!("{}/v1/stores/m1/status", hub.url))
        .bearer_auth(&token)
        .json(&json!({ "store_id": "m1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.headers().contains_key("retry-after"));
    drop(last);
    // The budget back, the next batch lands; and every unit taken was given back.
    drop(held);
    assert_eq!(
        hub.outcomes("m1", &token, &chain.take(1)).await,
        ["accepted"]
    );
    assert_eq!(hub.state.intake_memory.available_permits() as u32, units);
    hub.stop().await;
}

/// Feed pulls holding every connection they may use (blocked here on the lock that makes a
/// store's batches, as a crowd of first pulls keeps them busy) neither hold up a journal
/// batch, which has connections of its own, nor wait past the pool's 2 s: the next pull is
/// answered `busy` with a `Retry-After`, not `database_unavailable`. With one pool for both
/// (before 2026-12-07 afternoon) the batch waited for a connection and was refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_holding_their_connections_leave_the_intake_its_own() {
    let Some(hub) = TestHub::start_with(|c| {
        c.intake_at_once = 1;
        // The intake's two (one batch, the heartbeat writer) and one for pulls.
        c.pool_size = 3;
    })
    .await
    else {
        return;
    };
    let (t1, t2) = (hub.add_store("p1").await, hub.add_store("p2").await);
    // Three stores pulling (one store may have two pulls at once: `share::PULLS_PER_STORE`).
    let pullers = [
        ("p1", t1),
        ("p3", hub.add_store("p3").await),
        ("p4", hub.add_store("p4").await),
    ];
    hub.import(
        "policy",
        &[json!({ "key": "offline_max_hours", "value": 6 })],
    )
    .await;
    // p2's token is looked up (on the pulls' connections) and cached by its first push, as
    // a starting hub caches every store's.
    let mut chain = Chain::new("p2");
    assert_eq!(hub.outcomes("p2", &t2, &chain.take(1)).await, ["accepted"]);
    // The locks the pullers' first policy pulls need to make their snapshots, held.
    let mut holder = standin::hub::db::connect(&hub.pg.url).await.unwrap();
    let tx = holder.transaction().await.unwrap();
    for (store, _) in &pullers {
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || 'policy', 0))",
            &[store],
        )
        .await
        .unwrap();
    }
    // Three pulls, as many as the old single pool had connections: one takes the pulls'
    // connection and waits on the lock, the others wait for that connection.
    let pulls: Vec<_> = pullers
        .iter()
        .map(|(store, token)| {
            let (client, url) = (hub.client.clone(), hub.url.clone());
            let (store, token) = (store.to_string(), token.clone());
            tokio::spawn(async move {
                let res = client
                    .get(format!(
                        "{url}/v1/stores/{store}/feeds/policy/batches?after=0"
                    ))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap();
                let status = res.status();
                let ra = res.headers().get("retry-after").cloned();
                let body: serde_json::Value = res.json().await.unwrap_or_default();
                (status, ra, body)
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let landed = std::time::Instant::now();
    assert_eq!(
        hub.outcomes("p2", &t2, &chain.take(2)).await,
        ["accepted", "accepted"]
    );
    assert!(
        landed.elapsed() < std::time::Duration::from_millis(1_500),
        "the batch waited {:?} behind the pulls",
        landed.elapsed()
    );
    // The pulls still waiting for a connection get `busy` once the pool's wait (2 s) is
    // over; then the lock goes, and the pull that held it is answered.
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    tx.rollback().await.unwrap();
    let mut refused = 0;
    let mut answered = Vec::new();
    for pull in pulls {
        answered.push(pull.await.unwrap());
    }
    for (status, ra, body) in &answered {
        if *status == StatusCode::SERVICE_UNAVAILABLE {
            refused += 1;
            assert_eq!(body["error"]["code"], "busy", "{body}");
            assert!(ra.is_some(), "no Retry-After");
        } else {
            assert_eq!(*status, StatusCode::OK, "{body}");
            assert_eq!(body["batches"][0]["upserts"][0]["value"], 6, "{body}");
        }
    }
    assert_eq!(refused, 2, "{answered:?}");
    let (_, metrics) = hub.get("/metrics").await;
    assert!(
        metrics.contains("standin_hub_refused_no_connection_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("standin_hub_refused_no_connection_by_work_total{work=\"feed_pull\"} 2\n")
            && metrics
                .contains("standin_hub_refused_no_connection_by_work_total{work=\"journal\"} 0\n"),
        "counted as feed pulls: {metrics}"
    );
    // With the lock gone, the pulls' connection serves again.
    let (status, page) = hub.batches("p2", &t2, "policy", 0).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    hub.stop().await;
}

#[tokio::test]
async fn a_starting_hub_caches_every_stores_token_in_one_query() {
    let hub = hub!();
    let tokens = [hub.add_store("s1").await, hub.add_store("s2").await];
    // Another hub process starting over the same database, as after an outage.
    let config = standin::hub::HubConfig {
        database_url: standin::config::Secret::new(hub.pg.url.clone()),
        ..Default::default()
    };
    let state = standin::hub::HubState::new(config).unwrap();
    assert!(state.tokens.is_empty());
    assert_eq!(standin::hub::auth::warm(&state).await.unwrap(), 2);
    assert_eq!(state.tokens.len(), 2);
    // The cached tokens still authenticate only their own store.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(standin::hub::launch(
        state,
        listener,
        std::future::pending(),
    ));
    let status = |store: &'static str, token: String| {
        let (client, other) = (hub.client.clone(), other.clone());
        async move {
            client
                .post(format!("{other}/v1/stores/{store}/journal"))
                .bearer_auth(token)
                .json(&json!({ "entries": [] }))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(status("s1", tokens[0].clone()).await, StatusCode::OK);
    assert_eq!(status("s2", tokens[0].clone()).await, StatusCode::FORBIDDEN);
    assert_eq!(status("s2", tokens[1].clone()).await, StatusCode::OK);
}

/// The hub serves through the same governed accept loop as the store: a client hoarding
/// idle sockets and slow heads loses its own idle ones, never the stores' pushes; a slow
/// head is closed within `idle_timeout_secs`; and what hyper or the router answers before
/// any handler runs (a request line it cannot parse, a method a path does not take, a head
/// past the limits) is JSON like every other answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hoarding_sockets_cannot_starve_the_fleet_and_every_error_is_json() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hub = hub!(|c| {
        c.max_connections = 200;
        c.max_connections_per_client = 100;
        c.idle_timeout_secs = 2;
    });
    let token = hub.add_store("s1").await;
    let addr = hub.url.trim_start_matches("http://").to_string();
    let mut idle = Vec::new();
    for _ in 0..600 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    let mut slow = Vec::new();
    for _ in 0..100 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"POST /v1/stores/s1/journal HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        slow.push(s);
    }
    // A store with a fresh connection each time still lands its batches.
    let mut chain = Chain::new("s1");
    for _ in 0..3 {
        let fresh = reqwest::Client::new();
        let res = fresh
            .post(format!("{}/v1/stores/s1/journal", hub.url))
            .bearer_auth(&token)
            .json(&json!({ "entries": chain.take(2) }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    assert_eq!(hub.verified("s1").await.0, 6);
    let (open, evicted, _) = hub.state.connections.get().unwrap().counts();
    assert!(open <= 100, "{open} open");
    assert!(evicted >= 500, "{evicted} evicted");
    let (_, metrics) = hub.get("/metrics").await;
    let closed: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("standin_hub_http_connections_closed_idle_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    assert!(closed >= 500, "{closed}");
    let mut s = slow.pop().unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut buf)).await;
    assert!(
        matches!(n, Ok(Ok(0)) | Ok(Err(_))),
        "the slow head was closed: {n:?}"
    );
    drop((idle, slow));

    // Errors answered before any handler runs, each in the JSON shape with its code.
    let long = format!(
        "GET /healthz?{} HTTP/1.1\r\nhost: x\r\n\r\n",
        "a".repeat(100_000)
    );
    let many: String = (0..200).map(|i| format!("x-h{i}: v\r\n")).collect();
    for (request, status, code) in [
        (
            b"POST /v1/fleet HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n".to_vec(),
            405,
            "method_not_allowed",
        ),
        (b"GET /\x01 HTTP/1.1\r\n\r\n".to_vec(), 400, "bad_request"),
        (long.into_bytes(), 414, "uri_too_long"),
        (
            format!("GET /healthz HTTP/1.1\r\nhost: x\r\n{many}\r\n").into_bytes(),
            431,
            "headers_too_large",
        ),
    ] {
        let (got, head, v) = common::raw(&addr, &request).await;
        assert_eq!(
            (got, v["error"]["code"].as_str()),
            (status, Some(code)),
            "{head}"
        );
        assert!(head.contains("content-type: application/json"), "{head}");
    }
    hub.stop().await;
}

/// A rotated token stops working on a running hub process within `token_refresh_secs`,
/// though the process had it cached; the new one works at once (looked up on first use).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_token_stops_working_within_the_refresh_interval() {
    let hub = hub!(|c| c.token_refresh_secs = 1);
    let old = hub.add_store("s1").await;
    let mut chain = Chain::new("s1");
    assert_eq!(hub.outcomes("s1", &old, &chain.take(1)).await, ["accepted"]);
    let client = hub.pg.client().await;
    let new = standin::hub::auth::rotate_token(&client, "s1")
        .await
        .unwrap();
    assert_eq!(hub.outcomes("s1", &new, &chain.take(1)).await, ["accepted"]);
    let started = std::time::Instant::now();
    loop {
        let (status, _) = hub.post_journal("s1", &old, &[]).await;
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert_eq!(status, StatusCode::OK);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the old token still works after 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(hub.outcomes("s1", &new, &chain.take(1)).await, ["accepted"]);
    assert!(
        standin::hub::auth::rotate_token(&client, "nobody")
            .await
            .is_err()
    );
}

/// One store cannot hold more than `BATCHES_PER_STORE` of a process's journal admission,
/// whatever it sends: its pushes past that are answered 429 with a `Retry-After` at once,
/// while another store's push lands. A body that does not arrive in time is answered 408
/// `body_timeout`, saying what to do, not 503 `busy`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_store_cannot_take_the_admission_and_a_slow_body_is_told_so() {
    let hub = hub!(|c| c.intake_deadline_ms = 1_500);
    let token = hub.add_store("s1").await;
    let other = hub.add_store("s2").await;
    // s1's pushes whose bodies never finish arriving, each holding a place.
    let mut held = Vec::new();
    for _ in 0..standin::hub::BATCHES_PER_STORE {
        held.push(
            hub.unfinished_post("s1", "journal", &token, 100, "{\"entries\":[")
                .await,
        );
    }
    let started = std::time::Instant::now();
    while hub.state.store_batches("s1") < standin::hub::BATCHES_PER_STORE {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "{}",
            hub.state.store_batches("s1")
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let (status, body) = hub
        .post_journal("s1", &token, &Chain::new("s1").take(1))
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "too_many_requests", "{body}");
    assert_eq!(
        hub.outcomes("s2", &other, &Chain::new("s2").take(1)).await,
        ["accepted"]
    );
    // The store's pushes land one at a time: the first held one is answered 408 once its
    // time is up; the others waited for the store's own turn, holding nothing of the
    // fleet's (not even their bodies were read), and are answered 429. Their places come back.
    let mut answers = Vec::new();
    for mut s in held {
        let (status, _, v) = common::read_answer(&mut s).await;
        answers.push((status, v["error"]["code"].as_str().unwrap_or("").to_owned()));
    }
    // (One whose turn came just before its own time was up is answered 408 too.)
    assert!(
        answers
            .iter()
            .all(|(s, c)| (*s, c.as_str()) == (408, "body_timeout")
                || (*s, c.as_str()) == (429, "too_many_requests")),
        "{answers:?}"
    );
    assert!(answers.iter().any(|(s, _)| *s == 408), "{answers:?}");
    assert_eq!(
        hub.outcomes("s1", &token, &Chain::new("s1").take(1)).await,
        ["accepted"]
    );
    let (_, metrics) = hub.get("/metrics").await;
    for name in [
        "standin_hub_intake_refused_store_busy_total",
        "standin_hub_refused_body_timeout_total",
    ] {
        let n: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap();
        assert!(n >= 1, "{name} {n}");
    }
}

/// One store holds at most its share of the body budget (32 MiB), however many requests it
/// sends: with a 64 MiB budget, a store holding 30 MiB with one slow request does not get a
/// second read (its pushes land one at a time), and another store's 30 MiB request still
/// fits and lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_store_cannot_take_the_fleets_body_budget() {
    let hub = hub!(|c| {
        c.intake_memory_mib = 64;
        c.intake_deadline_ms = 2_000;
    });
    let token = hub.add_store("s1").await;
    let other = hub.add_store("s2").await;
    const STATED: usize = 30 * 1024 * 1024;
    let slow = || hub.unfinished_post("s1", "journal", &token, STATED, "{\"entries\":[");
    let mut first = slow().await;
    let started = std::time::Instant::now();
    while hub.state.store_batches("s1") < 1 {
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let mut second = slow().await;
    // Another store's 30 MiB body (an empty batch padded with whitespace) fits.
    let mut padded = b"{\"entries\":[]}".to_vec();
    padded.resize(STATED, b' ');
    let res = hub
        .client
        .post(format!("{}/v1/stores/s2/journal", hub.url))
        .bearer_auth(&other)
        .header("content-type", "application/json")
        .body(padded)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // The second waited for the store's own turn, its body unread: 429, or 408 when the turn
    // came in its last moment.
    let (status, _, v) = common::read_answer(&mut second).await;
    assert!(
        [
            (429, Some("too_many_requests")),
            (408, Some("body_timeout"))
        ]
        .contains(&(status, v["error"]["code"].as_str())),
        "{v}"
    );
    let (status, _, v) = common::read_answer(&mut first).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (408, Some("body_timeout")),
        "{v}"
    );
}

/// PostgreSQL frozen (SIGSTOP: a hung VM, a stuck volume), not stopped: the kernel keeps
/// its connections open and nothing errors. A hostile round found feed pulls, `/v1/fleet`
/// and `/readyz` then hung for the hub's whole 60 s request timeout, each holding a shared
/// connection, and were answered without a `Retry-After`. Now the shared pool's work is
/// bounded (`db::SHARED_WORK_BOUND`, 4.5 s): each is answered 503 well before that timeout,
/// a store's with a `Retry-After`, and the hub serves again once PostgreSQL thaws.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_postgresql_is_answered_in_seconds_with_retry_after() {
    let hub = hub!();
    let token = hub.add_store("f1").await;
    let pull = format!("{}/v1/stores/f1/feeds/policy/batches?after=0", hub.url);
    let get = |url: String| {
        let (client, token) = (hub.client.clone(), token.clone());
        async move {
            let started = std::time::Instant::now();
            let res = client.get(url).bearer_auth(token).send().await.unwrap();
            let retry_after = res.headers().get("retry-after").cloned();
            let status = res.status();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            (status, body, retry_after, started.elapsed())
        }
    };
    // Connections open and the token cached: what a serving hub has when PostgreSQL hangs.
    assert_eq!(get(pull.clone()).await.0, StatusCode::OK);
    assert_eq!(hub.get("/v1/fleet").await.0, StatusCode::OK);

    let frozen = hub.pg.freeze();
    let (pulled, fleet, ready) = tokio::join!(
        get(pull.clone()),
        get(format!("{}/v1/fleet", hub.url)),
        get(format!("{}/readyz", hub.url)),
    );
    for (what, (status, body, _, took)) in
        [("pull", &pulled), ("fleet", &fleet), ("readyz", &ready)]
    {
        assert_eq!(*status, StatusCode::SERVICE_UNAVAILABLE, "{what}: {body}");
        // Answered by the bound, not by the 60 s request timeout.
        assert!(took.as_secs() < 30, "{what} took {took:?}");
    }
    assert_eq!(
        pulled.1["error"]["code"], "database_unavailable",
        "{}",
        pulled.1
    );
    assert!(pulled.2.is_some(), "a store is told when to come back");
    assert_eq!(
        fleet.1["error"]["code"], "database_unavailable",
        "{}",
        fleet.1
    );
    // The probe says so in the same shape, and when to look again.
    assert_eq!(ready.1["error"]["code"], "not_ready", "{}", ready.1);
    assert!(ready.2.is_some(), "readiness says when to look again");
    // A heartbeat too: answered within the bound from its arrival (before: up to 8 s, after
    // its store had stopped waiting at 5 s).
    let started = std::time::Instant::now();
    let res = hub
        .client
        .post(format!("{}/v1/stores/f1/status", hub.url))
        .bearer_auth(&token)
        .json(&beat("f1", 1, "up", "up", 0, 0))
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.headers().get("retry-after").is_some());
    assert!(took.as_millis() < 6_500, "the heartbeat took {took:?}");
    drop(frozen);

    // Thawed: the connections cut short were closed, not handed out again mid-statement.
    let mut back = false;
    for _ in 0..100 {
        if get(pull.clone()).await.0 == StatusCode::OK
            && hub.get("/v1/fleet").await.0 == StatusCode::OK
        {
            back = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(back, "the hub serves again once PostgreSQL thaws");
}

/// A path segment that is not text once percent-decoded is a JSON 422 naming that segment.
#[tokio::test]
async fn a_path_segment_that_is_not_text_is_named() {
    let hub = hub!();
    let token = hub.add_store("s1").await;
    for (path, field) in [
        ("/v1/stores/s1/feeds/%FF/batches", "feed"),
        ("/v1/stores/%FF/journal", "store"),
    ] {
        let res = hub
            .client
            .get(format!("{}{path}", hub.url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let status = res.status();
        let body: Value = res.json().await.unwrap();
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {body}");
        assert_eq!(body["error"]["code"], "invalid_path", "{path}: {body}");
        assert_eq!(body["error"]["field"], field, "{path}: {body}");
    }
}

/// Pulls hold the few connections the fleet's pulls share, and pulls of one store's feed
/// wait on one lock: one store's token may have `PULLS_PER_STORE` (2) at once in a process.
/// Its third is answered 429 at once, and another store's pull is served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_store_cannot_hold_the_fleets_pulls() {
    let hub = hub!();
    let (t1, t2) = (hub.add_store("p1").await, hub.add_store("p2").await);
    hub.import(
        "policy",
        &[json!({ "key": "offline_max_hours", "value": 6 })],
    )
    .await;
    let mut holder = standin::hub::db::connect(&hub.pg.url).await.unwrap();
    let tx = holder.transaction().await.unwrap();
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('p1' || '/' || 'policy', 0))",
        &[],
    )
    .await
    .unwrap();
    let pull = |t: String| {
        let (client, url) = (hub.client.clone(), hub.url.clone());
        tokio::spawn(async move {
            let res = client
                .get(format!("{url}/v1/stores/p1/feeds/policy/batches?after=0"))
                .bearer_auth(&t)
                .send()
                .await
                .unwrap();
            let ra = res.headers().get("retry-after").cloned();
            (res.status(), ra)
        })
    };
    let held = [pull(t1.clone()), pull(t1.clone())];
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (status, ra) = pull(t1.clone()).await.unwrap();
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(ra.is_some(), "no Retry-After");
    let (status, page) = hub.batches("p2", &t2, "policy", 0).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        held.iter().all(|h| !h.is_finished()),
        "p1's two pulls wait on the lock"
    );
    tx.rollback().await.unwrap();
    for h in held {
        assert_eq!(h.await.unwrap().0, StatusCode::OK);
    }
}

/// A made-up token needs no credential to send, and a token not cached is looked up on the
/// connections the fleet's pulls share: at most two such lookups run at once per process;
/// the rest wait a second for a turn and are answered `busy`, holding no connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_tokens_cannot_hold_the_shared_connections() {
    let hub = hub!();
    hub.add_store("s1").await;
    // Lookups held: they read the table this locks.
    let mut holder = standin::hub::db::connect(&hub.pg.url).await.unwrap();
    let tx = holder.transaction().await.unwrap();
    tx.batch_execute("LOCK TABLE stores IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let tries: Vec<_> = (0..10)
        .map(|i| {
            let (client, url) = (hub.client.clone(), hub.url.clone());
            tokio::spawn(async move {
                let res = client
                    .get(format!("{url}/v1/stores/s1/feeds/policy/batches"))
                    .bearer_auth(format!("made-up-{i}"))
                    .send()
                    .await
                    .unwrap();
                let status = res.status();
                let body: Value = res.json().await.unwrap_or_default();
                (
                    status,
                    body["error"]["code"].as_str().unwrap_or("").to_owned(),
                )
            })
        })
        .collect();
    // Those without a turn are answered after their second's wait; the two with one wait
    // on the lock.
    let mut waiting = Vec::new();
    let mut busy = 0;
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    for t in tries {
        if t.is_finished() {
            let (status, code) = t.await.unwrap();
            assert_eq!(
                (status, code.as_str()),
                (StatusCode::SERVICE_UNAVAILABLE, "busy")
            );
            busy += 1;
        } else {
            waiting.push(t);
        }
    }
    assert_eq!((busy, waiting.len()), (8, 2));
    tx.rollback().await.unwrap();
    for t in waiting {
        assert_eq!(t.await.unwrap().0, StatusCode::UNAUTHORIZED);
    }
    let (_, metrics) = hub.get("/metrics").await;
    assert!(
        metrics.contains("standin_hub_refused_token_lookup_total 8\n"),
        "{metrics}"
    );
}

/// A store's batches lock its row, so they land one at a time: its others wait for the
/// store's own turn holding none of the process's intake turns. Before, one store's token
/// pushing four at once held half a process's turns, each waiting on that row lock, and
/// other stores' pushes were answered `busy` (a hostile round, 2026-12-07).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_stores_pushes_take_one_intake_turn_at_a_time() {
    let hub = hub!(|c| {
        c.intake_at_once = 2;
        c.pool_size = 4;
    });
    let (t1, t2) = (hub.add_store("s1").await, hub.add_store("s2").await);
    let mut holder = standin::hub::db::connect(&hub.pg.url).await.unwrap();
    let tx = holder.transaction().await.unwrap();
    tx.execute("SELECT 1 FROM stores WHERE store_id = 's1' FOR UPDATE", &[])
        .await
        .unwrap();
    let mut chain = Chain::new("s1");
    let pushes: Vec<_> = (0..3)
        .map(|_| hub.push_in_background("s1", &t1, chain.take(1)))
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        hub.state.intake_permits.available_permits(),
        1,
        "s1 holds one turn, waiting on its row"
    );
    assert_eq!(
        hub.outcomes("s2", &t2, &Chain::new("s2").take(1)).await,
        ["accepted"]
    );
    tx.rollback().await.unwrap();
    for p in pushes {
        let status = p.await.unwrap().status();
        assert!(
            [
                StatusCode::OK,
                StatusCode::TOO_MANY_REQUESTS,
                StatusCode::SERVICE_UNAVAILABLE
            ]
            .contains(&status),
            "{status}"
        );
    }
}
