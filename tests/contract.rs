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
