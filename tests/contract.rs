//! One contract suite, two centrals: the simulator and the hub answer the paths Standin
//! relies on (API.md "What Standin expects of central") the same way, so they cannot drift.
//! Where the hub is stricter (per-store tokens) its own tests say so (tests/hub.rs).

mod common;

use common::hub::{Chain, TestHub, order};
use common::sim::simulator;
use reqwest::StatusCode;
use serde_json::{Value, json};

const STORE: &str = "store-0001";

/// A central as a store sees it: a base URL and the store's token.
struct Central {
    name: &'static str,
    url: String,
    token: String,
    client: reqwest::Client,
    /// Where the newest heartbeat per store is read back: the simulator's admin API, or
    /// the hub's `/v1/fleet`.
    readback: Readback,
}

enum Readback {
    Simulator(String),
    Hub,
}

impl Central {
    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let res = self
            .client
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        (res.status(), res.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: String) -> (StatusCode, Value) {
        let res = self
            .client
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        (res.status(), res.json().await.unwrap_or(Value::Null))
    }

    async fn push(&self, entries: &[Value]) -> (StatusCode, Value) {
        let body = json!({ "entries": entries }).to_string();
        self.post(&format!("/v1/stores/{STORE}/journal"), body)
            .await
    }

    async fn heartbeat(&self, body: &Value) -> (StatusCode, Value) {
        self.post(&format!("/v1/stores/{STORE}/status"), body.to_string())
            .await
    }

    /// The newest heartbeat central keeps for the store, as the store sent it.
    async fn latest_heartbeat(&self) -> Value {
        let get = |url: String| async move {
            let res = reqwest::get(url).await.unwrap();
            assert!(res.status().is_success(), "{}", self.name);
            res.json::<Value>().await.unwrap()
        };
        match &self.readback {
            Readback::Simulator(admin) => {
                let all = get(format!("{admin}/admin/heartbeats")).await;
                all["stores"][STORE]["latest"].clone()
            }
            Readback::Hub => {
                let fleet = get(format!("{}/v1/fleet", self.url)).await;
                fleet["stores"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|s| s["store_id"] == STORE)
                    .unwrap()["reported"]
                    .clone()
            }
        }
    }

    async fn batches(&self, feed: &str, after: u64) -> (StatusCode, Value) {
        self.get(&format!(
            "/v1/stores/{STORE}/feeds/{feed}/batches?after={after}&limit=100"
        ))
        .await
    }

    /// Every batch of `feed`, paged as the pull worker pages.
    async fn all_batches(&self, feed: &str) -> Vec<Value> {
        let mut all = Vec::new();
        loop {
            let (status, page) = self.batches(feed, all.len() as u64).await;
            assert_eq!(status, StatusCode::OK, "{}: {page}", self.name);
            let got = page["batches"].as_array().unwrap().clone();
            if got.is_empty() {
                return all;
            }
            all.extend(got);
        }
    }
}

/// Both centrals, with pickup orders for the store (some cancelled). The hub is left out,
/// with a note, only where PostgreSQL cannot be had outside CI.
async fn centrals(run: impl AsyncFn(&Central)) {
    let sim = simulator(20, 30).await;
    let c = Central {
        name: "simulator",
        url: sim.central_url(),
        token: "unused-by-the-simulator".into(),
        client: reqwest::Client::new(),
        readback: Readback::Simulator(sim.admin_url()),
    };
    run(&c).await;
    sim.shutdown().await;
    if let Some(hub) = TestHub::start_with(|c| c.batch_records = 7).await {
        let token = hub.add_store(STORE).await;
        let orders: Vec<Value> = (0..30)
            .map(|i| {
                order(
                    STORE,
                    &format!("o{i}"),
                    if i % 6 == 0 { "cancelled" } else { "ready" },
                )
            })
            .collect();
        hub.import("pickup_orders", &orders).await;
        let c = Central {
            name: "hub",
            url: hub.url.clone(),
            token,
            client: reqwest::Client::new(),
            readback: Readback::Hub,
        };
        run(&c).await;
        hub.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_200() {
    centrals(async |c| {
        let (status, body) = c.get("/v1/health").await;
        assert_eq!(status, StatusCode::OK, "{}", c.name);
        assert_eq!(body["status"], "ok", "{}", c.name);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_are_accepted_once_then_answered_duplicate_by_id() {
    centrals(async |c| {
        let entries = Chain::new(STORE).take(4);
        let (status, first) = c.push(&entries).await;
        assert_eq!(status, StatusCode::OK, "{}: {first}", c.name);
        let results = first["results"].as_array().unwrap();
        assert_eq!(results.len(), 4, "{}", c.name);
        for (r, e) in results.iter().zip(&entries) {
            assert_eq!(r["id"], e["id"], "{}", c.name);
            assert_eq!(r["outcome"], "accepted", "{}: {r}", c.name);
        }
        let (_, again) = c.push(&entries[1..3]).await;
        let outcomes: Vec<&str> = again["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["outcome"].as_str().unwrap())
            .collect();
        assert_eq!(outcomes, ["duplicate", "duplicate"], "{}", c.name);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_over_of_a_cancelled_order_is_a_conflict() {
    centrals(async |c| {
        let batches = c.all_batches("pickup_orders").await;
        let cancelled = batches
            .iter()
            .flat_map(|b| b["upserts"].as_array().unwrap().iter())
            .find(|o| o["status"] == "cancelled")
            .unwrap_or_else(|| panic!("{}: no cancelled order in the feed", c.name))["order_id"]
            .clone();
        let mut chain = Chain::new(STORE);
        let e = chain.next("pickup.handed_over", json!({ "order_id": cancelled }));
        let (_, body) = c.push(&[e]).await;
        assert_eq!(
            body["results"][0]["outcome"], "conflict",
            "{}: {body}",
            c.name
        );
        assert_eq!(
            body["results"][0]["reason"], "order_cancelled",
            "{}",
            c.name
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_batches_are_numbered_from_one_and_stable() {
    centrals(async |c| {
        let all = c.all_batches("pickup_orders").await;
        assert!(!all.is_empty(), "{}", c.name);
        for (i, b) in all.iter().enumerate() {
            assert_eq!(b["batch"], i + 1, "{}", c.name);
            assert!(
                b["kind"] == "snapshot" || b["kind"] == "delta",
                "{}",
                c.name
            );
            assert!(b["upserts"].is_array(), "{}", c.name);
            // The push body's shape: Standin's own parser takes it.
            let feed = standin::feeds::Feed::PickupOrders;
            assert!(
                standin::feeds::batch::parse(feed, b.to_string().as_bytes()).is_ok(),
                "{}: batch {} does not parse",
                c.name,
                i + 1
            );
        }
        // after=n answers batch n+1 again, the same.
        for after in [0, all.len() - 1] {
            let (_, again) = c.batches("pickup_orders", after as u64).await;
            assert_eq!(again["batches"][0], all[after], "{}", c.name);
        }
        let (_, end) = c.batches("pickup_orders", all.len() as u64).await;
        assert_eq!(end["batches"], json!([]), "{}", c.name);
    })
    .await;
}

/// `as_of` (API.md): how current HQ's data behind the feed is, on every page, the one a
/// caught-up store reads to the end included: RFC 3339 UTC, never ahead of now, and recent
/// here (the hub's feed was just imported; the simulator's HQ is not stalled).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_page_says_how_current_hqs_data_is() {
    centrals(async |c| {
        let all = c.all_batches("pickup_orders").await;
        for after in [0, all.len()] {
            let (status, page) = c.batches("pickup_orders", after as u64).await;
            assert_eq!(status, StatusCode::OK, "{}", c.name);
            let as_of = page["as_of"]
                .as_str()
                .unwrap_or_else(|| panic!("{}: no as_of in the page after {after}", c.name));
            assert!(as_of.ends_with('Z'), "{}: {as_of}", c.name);
            let t = chrono::DateTime::parse_from_rfc3339(as_of)
                .unwrap_or_else(|e| panic!("{}: as_of {as_of}: {e}", c.name));
            let age = chrono::Utc::now().signed_duration_since(t).num_seconds();
            assert!(
                (0..120).contains(&age),
                "{}: as_of {as_of} is {age} s old",
                c.name
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_have_the_contract_shape() {
    centrals(async |c| {
        let (status, body) = c.batches("no_such_feed", 0).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{}", c.name);
        assert_eq!(body["error"]["code"], "unknown_feed", "{}", c.name);
        let (status, body) = c
            .post(&format!("/v1/stores/{STORE}/journal"), "{oops".into())
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{}", c.name);
        assert_eq!(body["error"]["code"], "invalid_json", "{}", c.name);
        let (status, body) = c
            .post(&format!("/v1/stores/{STORE}/journal"), "{}".into())
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{}", c.name);
        assert_eq!(body["error"]["field"], "entries", "{}", c.name);
        assert!(body["error"]["message"].is_string(), "{}", c.name);
        let (status, body) = c.get("/v1/nowhere").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{}", c.name);
        assert!(body["error"]["code"].is_string(), "{}", c.name);
    })
    .await;
}

/// A heartbeat in API.md's shape, at `sent_at` with `seq`.
fn heartbeat(sent_at: &str, seq: u64, pending: i64) -> Value {
    json!({
        "store_id": STORE, "sent_at": sent_at, "version": "0.1.0", "seq": seq,
        "upstreams": {
            "central": {"state": "up", "since": "2026-12-06T09:00:00Z"},
            "payments": {"state": "down", "since": "2026-12-06T09:55:00Z"}
        },
        "journal": {"pending": pending, "oldest_pending_at": "2026-12-06T09:55:01Z",
            "lanes": {"payments": {"pending": pending, "oldest_pending_at": "2026-12-06T09:55:01Z"},
                      "audit": {"pending": 0, "oldest_pending_at": null}}},
        "payments": {"offline_count": 57, "offline_total_minor": 123456, "currency": "USD",
                     "tightest_deadline": "2026-12-07T09:55:00Z"},
        "refunds": {"queued": 2, "queued_total_minor": 4599},
        "feeds": {"receipts": {"last_batch": 12, "age_secs": 30}},
        "a_field_from_a_later_store": {"kept": true}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_is_taken_with_204_and_the_newest_is_kept() {
    centrals(async |c| {
        let (status, body) = c.heartbeat(&heartbeat("2026-12-06T10:00:00Z", 5, 40)).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{}: {body}", c.name);
        // Newer by sent_at wins even with a lower seq (the store restarted).
        let (status, _) = c.heartbeat(&heartbeat("2026-12-06T10:00:05Z", 1, 7)).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{}", c.name);
        // An older one arriving late does not replace it.
        let (status, _) = c.heartbeat(&heartbeat("2026-12-06T09:59:00Z", 9, 99)).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{}", c.name);
        let latest = c.latest_heartbeat().await;
        assert_eq!(latest["seq"], 1, "{}: {latest}", c.name);
        assert_eq!(latest["journal"]["pending"], 7, "{}", c.name);
        assert_eq!(
            latest["payments"]["offline_total_minor"], 123456,
            "{}",
            c.name
        );
        // Same sent_at: the higher seq wins.
        let (status, _) = c.heartbeat(&heartbeat("2026-12-06T10:00:05Z", 2, 8)).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{}", c.name);
        assert_eq!(
            c.latest_heartbeat().await["journal"]["pending"],
            8,
            "{}",
            c.name
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_heartbeat_is_refused_in_the_error_shape() {
    centrals(async |c| {
        let path = format!("/v1/stores/{STORE}/status");
        let (status, body) = c.post(&path, "{oops".into()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{}", c.name);
        assert_eq!(body["error"]["code"], "invalid_json", "{}", c.name);
        let mut no_time = heartbeat("2026-12-06T10:00:00Z", 1, 0);
        no_time.as_object_mut().unwrap().remove("sent_at");
        let (status, body) = c.heartbeat(&no_time).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}: {body}",
            c.name
        );
        assert!(body["error"]["message"].is_string(), "{}", c.name);
        let mut bad_state = heartbeat("2026-12-06T10:00:00Z", 1, 0);
        bad_state["upstreams"]["central"]["state"] = json!("sideways");
        let (status, body) = c.heartbeat(&bad_state).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}: {body}",
            c.name
        );
        assert_eq!(body["error"]["code"], "invalid_body", "{}", c.name);
        let mut other = heartbeat("2026-12-06T10:00:00Z", 1, 0);
        other["store_id"] = json!("store-0002");
        let (status, body) = c.heartbeat(&other).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{}", c.name);
        assert_eq!(body["error"]["field"], "store_id", "{}", c.name);
    })
    .await;
}
