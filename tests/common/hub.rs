//! The hub in the test process on port 0, over a throwaway PostgreSQL, driven over HTTP as
//! stores drive it; and journal chains made the way a store makes them.

use reqwest::StatusCode;
use serde_json::{Value, json};
use standin::hub::{HubConfig, HubState};
use standin::journal::chain::{GENESIS, Hashed, canonical_json, entry_hash};
use tokio::net::TcpListener;

use super::pg::TestPg;

pub struct TestHub {
    pub url: String,
    pub state: HubState,
    pub client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    // Last: PostgreSQL stops after the hub.
    pub pg: TestPg,
}

impl TestHub {
    /// A migrated hub; `None` when PostgreSQL cannot be had outside CI (the test skips).
    pub async fn start() -> Option<TestHub> {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut HubConfig)) -> Option<TestHub> {
        let pg = tokio::task::spawn_blocking(TestPg::start).await.unwrap()?;
        Some(Self::on(pg, tweak).await)
    }

    /// A hub over an existing cluster (migrating it if needed).
    pub async fn on(pg: TestPg, tweak: impl FnOnce(&mut HubConfig)) -> TestHub {
        let mut client = standin::hub::db::connect(&pg.url).await.unwrap();
        standin::hub::db::migrate(&mut client).await.unwrap();
        let mut config = HubConfig {
            database_url: standin::config::Secret::new(pg.url.clone()),
            // Each read sees what the test just did (`fleet_view_max_age_ms`'s own test sets it).
            fleet_view_max_age_ms: 0,
            ..HubConfig::default()
        };
        tweak(&mut config);
        let state = HubState::new(config).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(standin::hub::launch(state.clone(), listener, async move {
            let _ = rx.await;
        }));
        TestHub {
            url,
            state,
            client: reqwest::Client::new(),
            stop: Some(stop),
            handle: Some(handle),
            pg,
        }
    }

    /// An admission and a turn held, as a running batch holds them (dropped: it is done).
    pub async fn hold_a_running_batch(
        &self,
    ) -> (
        tokio::sync::OwnedSemaphorePermit,
        tokio::sync::OwnedSemaphorePermit,
    ) {
        let admitted = self.state.intake_admitted.clone().acquire_owned().await;
        let turn = self.state.intake_permits.clone().acquire_owned().await;
        (admitted.unwrap(), turn.unwrap())
    }

    /// Waits (up to 5 s) until this process holds `n` journal batches, landing or waiting;
    /// whether it did.
    pub async fn until_holding(&self, n: usize) -> bool {
        for _ in 0..500 {
            if self.state.intake_held() == n {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        false
    }

    /// Pushes `entries` for `store` in a task of its own (to wait in the queue meanwhile).
    pub fn push_in_background(
        &self,
        store: &str,
        token: &str,
        entries: Vec<Value>,
    ) -> tokio::task::JoinHandle<reqwest::Response> {
        let (client, token) = (self.client.clone(), token.to_owned());
        let url = format!("{}/v1/stores/{store}/journal", self.url);
        tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(&token)
                .json(&serde_json::json!({ "entries": entries }))
                .send()
                .await
                .unwrap()
        })
    }

    /// `body` sent as `store`'s heartbeat, owning what it needs (to spawn, or to join with
    /// others): its status and text.
    pub fn send_status(
        &self,
        store: &str,
        token: &str,
        body: Value,
    ) -> impl std::future::Future<Output = (StatusCode, String)> + Send + 'static {
        let (client, token) = (self.client.clone(), token.to_owned());
        let url = format!("{}/v1/stores/{store}/status", self.url);
        async move {
            let res = client
                .post(url)
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await
                .unwrap();
            (res.status(), res.text().await.unwrap_or_default())
        }
    }

    /// A store's `POST /v1/stores/{store}/{path}` that states `length` bytes of body and sends
    /// only `start` of it: held open, as a slow or hostile store holds it.
    pub async fn unfinished_post(
        &self,
        store: &str,
        path: &str,
        token: &str,
        length: usize,
        start: &str,
    ) -> tokio::net::TcpStream {
        use tokio::io::AsyncWriteExt;
        let addr = self.url.trim_start_matches("http://");
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!(
                "POST /v1/stores/{store}/{path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\r\n{start}"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        s
    }

    /// Registers `store`; its token.
    pub async fn add_store(&self, store: &str) -> String {
        let client = self.pg.client().await;
        standin::hub::auth::add_store(&client, store).await.unwrap()
    }

    /// Imports `records` into `feed` as `standin hub import` does.
    pub async fn import(&self, feed: &str, records: &[Value]) -> u64 {
        let text: String = records.iter().map(|r| format!("{r}\n")).collect();
        let mut client = standin::hub::db::connect(&self.pg.url).await.unwrap();
        let feed = standin::feeds::Feed::parse(feed).unwrap();
        standin::hub::feeds::import(&mut client, feed, text.as_bytes())
            .await
            .unwrap()
            .changed
    }

    pub async fn post_journal(
        &self,
        store: &str,
        token: &str,
        entries: &[Value],
    ) -> (StatusCode, Value) {
        let res = self
            .client
            .post(format!("{}/v1/stores/{store}/journal", self.url))
            .bearer_auth(token)
            .json(&json!({ "entries": entries }))
            .send()
            .await
            .unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// `POST /v1/stores/{store}/{path}` with `body` as sent (JSON or not) and the token if
    /// any: the status and the JSON answer (null if none).
    pub async fn post_raw(
        &self,
        store: &str,
        path: &str,
        token: Option<&str>,
        body: &'static str,
    ) -> (StatusCode, Value) {
        let url = format!("{}/v1/stores/{store}/{path}", self.url);
        super::post_raw(&self.client, &url, body, token).await
    }

    /// The outcomes of one push, as (outcome, reason) in order; panics unless 200.
    pub async fn outcomes(&self, store: &str, token: &str, entries: &[Value]) -> Vec<String> {
        let (status, body) = self.post_journal(store, token, entries).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| match r["reason"].as_str() {
                Some(reason) => format!("{}:{reason}", r["outcome"].as_str().unwrap()),
                None => r["outcome"].as_str().unwrap().to_owned(),
            })
            .collect()
    }

    pub async fn batches(
        &self,
        store: &str,
        token: &str,
        feed: &str,
        after: u64,
    ) -> (StatusCode, Value) {
        let res = self
            .client
            .get(format!(
                "{}/v1/stores/{store}/feeds/{feed}/batches?after={after}",
                self.url
            ))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (StatusCode, String) {
        let res = self
            .client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        (res.status(), res.text().await.unwrap())
    }

    /// `(verified_seq, flag_reason)` of `store`, read from PostgreSQL.
    pub async fn verified(&self, store: &str) -> (i64, Option<String>) {
        let row = self
            .pg
            .client()
            .await
            .query_one(
                "SELECT verified_seq, flag_reason FROM stores WHERE store_id = $1",
                &[&store],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    }

    /// Rows landed for `store` (any outcome) and their arrivals, by id.
    pub async fn rows(&self, store: &str) -> Vec<(String, String, i32)> {
        self.pg
            .client()
            .await
            .query(
                "SELECT id, outcome, arrivals FROM journal_entries WHERE store_id = $1 ORDER BY seq, id",
                &[&store],
            )
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(h) = self.handle.take() {
            let _ = h.await;
        }
    }
}

/// A store's journal as the store writes it: entry JSON in API.md's shape, hash-chained.
pub struct Chain {
    pub store: String,
    pub prev: String,
    pub seq: i64,
}

impl Chain {
    pub fn new(store: &str) -> Chain {
        Chain {
            store: store.into(),
            prev: GENESIS.into(),
            seq: 0,
        }
    }

    /// The next entry of `kind` with `body`.
    pub fn next(&mut self, kind: &str, body: Value) -> Value {
        self.seq += 1;
        let e = entry(&self.store, self.seq, &self.prev, kind, body);
        self.prev = e["hash"].as_str().unwrap().to_owned();
        e
    }

    pub fn take(&mut self, n: usize) -> Vec<Value> {
        (0..n)
            .map(|_| self.next("audit.note", json!({ "n": self.seq + 1 })))
            .collect()
    }
}

/// One entry at `seq` after `prev`, hashed as the store hashes it.
pub fn entry(store: &str, seq: i64, prev: &str, kind: &str, body: Value) -> Value {
    entry_as(
        &uuid::Uuid::now_v7().to_string(),
        store,
        seq,
        prev,
        kind,
        body,
    )
}

/// [`entry`] under the id given.
pub fn entry_as(id: &str, store: &str, seq: i64, prev: &str, kind: &str, body: Value) -> Value {
    let lane = if kind.starts_with("pickup") {
        "pickups"
    } else {
        "audit"
    };
    let occurred_at = "2026-12-06T09:00:00Z";
    let hash = entry_hash(
        prev,
        &Hashed {
            seq,
            id,
            lane,
            kind,
            occurred_at,
            store_id: store,
            actor: Some("E100"),
            device: None,
            body: &canonical_json(&body),
        },
    );
    json!({
        "seq": seq, "id": id, "lane": lane, "kind": kind, "occurred_at": occurred_at,
        "store_id": store, "actor": "E100", "device": null, "body": body,
        "prev_hash": prev, "hash": hash,
    })
}

/// A pickup order record for `store` in API.md's shape.
pub fn order(store: &str, order_id: &str, status: &str) -> Value {
    json!({
        "store_id": store, "order_id": order_id, "order_number": format!("N-{order_id}"),
        "pickup_code": "PC1", "customer": { "name": "Ann Lee", "phone_last4": "1234" },
        "due_at": "2026-12-06T12:00:00Z", "status": status, "payment_state": "paid",
        "lines": [{ "line": 1, "sku": "SKU1", "description": "Kettle", "qty": 1,
                    "unit_price_minor": 2500, "requires_id_check": false }],
        "total_minor": 2500, "currency": "EUR", "updated_at": "2026-12-06T08:00:00Z",
    })
}

/// A store's heartbeat (API.md), as Standin sends it: each upstream's state, `pending`
/// entries waiting in the payments lane, `offline` payments approved offline (1,000 each).
pub fn beat(
    store: &str,
    seq: u64,
    central: &str,
    payments: &str,
    pending: i64,
    offline: i64,
) -> Value {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    json!({
        "store_id": store, "sent_at": now, "version": "0.1.0", "seq": seq,
        "upstreams": {
            "central": {"state": central, "since": "2026-12-06T09:00:00Z"},
            "payments": {"state": payments, "since": "2026-12-06T09:55:00Z"}
        },
        "journal": {"pending": pending, "oldest_pending_at": null,
                    "lanes": {"payments": {"pending": pending, "oldest_pending_at": null}}},
        "payments": {"offline_count": offline, "offline_total_minor": offline * 1000,
                     "currency": "USD", "tightest_deadline": null},
        "refunds": {"queued": 0, "queued_total_minor": 0},
        "feeds": {}
    })
}
