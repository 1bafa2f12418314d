//! Test helpers: the real server on port 0 against a temp database, driven over HTTP.
#![allow(dead_code)]

pub mod binary;
pub mod hub;
pub mod people;
pub mod pg;
pub mod sim;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use standin::clock::SystemClock;
use standin::config::{Config, Secret, TokenConfig};
use tokio::net::TcpListener;

pub const PEPPER: &str = "test-pepper";

pub struct TestStore {
    pub url: String,
    pub dir: tempfile::TempDir,
    pub client: reqwest::Client,
    pub sync_token: String,
    pub state: standin::state::AppState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestStore {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts Standin with a sync token, after `tweak` adjusts the config.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        Self::start_with_clock(Arc::new(SystemClock), tweak).await
    }

    /// As `start_with`, on a clock the test controls.
    pub async fn start_with_clock(
        clock: Arc<dyn standin::clock::Clock>,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sync_token = standin::access::token::generate();
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        config.pepper = Secret::new(PEPPER);
        config.tokens = vec![
            TokenConfig {
                name: "hq".into(),
                sha256: standin::access::token::sha256_hex(&sync_token),
                scopes: vec!["sync".into()],
            },
            TokenConfig {
                name: "no-scope".into(),
                sha256: standin::access::token::sha256_hex("token-without-sync-scope"),
                scopes: vec!["metrics".into()],
            },
        ];
        tweak(&mut config);
        let state = standin::server::open(config, clock).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(standin::launch(state.clone(), listener, async move {
            let _ = rx.await;
        }));
        Self {
            url,
            dir,
            client: reqwest::Client::new(),
            sync_token,
            state,
            stop: Some(stop),
            handle: Some(handle),
        }
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("standin.db")
    }

    /// A read-only look at the database, as an auditor would take it.
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(
            self.db_path(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap()
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let res = self
            .client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// POSTs `body` to `path` as the kiosk whose device token is `token`.
    pub async fn kiosk_post(&self, token: &str, path: &str, body: &Value) -> (StatusCode, Value) {
        let res = self
            .client
            .post(format!("{}{path}", self.url))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// Pushes a feed batch as the HQ sync job.
    pub async fn push(&self, feed: &str, body: &Value) -> (StatusCode, Value) {
        self.push_raw(feed, body.to_string(), Some(&self.sync_token))
            .await
    }

    pub async fn push_raw(
        &self,
        feed: &str,
        body: String,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        let url = format!("{}/sync/v1/feeds/{feed}/batches", self.url);
        post_raw(&self.client, &url, body, token).await
    }

    pub async fn status(&self) -> Value {
        let (s, body) = self.get("/api/v1/status").await;
        assert_eq!(s, StatusCode::OK);
        body
    }

    pub async fn feed(&self, feed: &str) -> Value {
        self.status().await["feeds"][feed].clone()
    }

    /// Polls status until `pred` holds (the pull worker and probes run on their own time).
    pub async fn wait_for_status(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let s = self.status().await;
            if pred(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; status: {s:#}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn receipt_ids(&self) -> Vec<String> {
        let db = self.db();
        let mut stmt = db
            .prepare("SELECT receipt_id FROM receipts ORDER BY receipt_id")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// Stops the server cleanly; the data directory lives on as long as the returned handle.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.unwrap().unwrap();
        }
        let placeholder = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, placeholder)
    }
}

// Records as HQ would send them -------------------------------------------------------------

/// POSTs `body` as it is, labelled JSON, with `token` as the bearer if any: the status and
/// the JSON answer (null if none).
pub async fn post_raw(
    client: &reqwest::Client,
    url: &str,
    body: impl Into<reqwest::Body>,
    token: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = client
        .post(url)
        .header("content-type", "application/json")
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

pub fn receipt(id: &str) -> Value {
    json!({
        "receipt_id": id, "order_number": null, "sold_at": "2026-11-20T15:04:05Z", "lane": "register-3",
        "currency": "USD", "customer_phone_last4": "0042",
        "tenders": [{"kind": "card", "brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2028,
                     "token": "tok_1", "authorization": "auth_1", "amount_minor": 1188}],
        "lines": [{"line": 1, "sku": "SKU-1", "description": "Kettle", "category": "household", "qty": 1,
                   "unit_price_minor": 1100, "discount_minor": 0, "tax_minor": 88, "returnable": true,
                   "return_window_days": 90, "returned_qty": 0}],
        "total_minor": 1188
    })
}

pub fn order(id: &str) -> Value {
    json!({
        "order_id": id, "order_number": format!("W{id}"), "pickup_code": "K7P2QX",
        "customer": {"name": "Dana Reyes", "phone_last4": "1234"}, "due_at": "2026-11-25T16:00:00Z",
        "status": "ready", "payment_state": "paid",
        "lines": [{"line": 1, "sku": "SKU-9", "description": "Wine", "qty": 2, "unit_price_minor": 1299,
                   "requires_id_check": true}],
        "total_minor": 2598, "currency": "USD", "updated_at": "2026-11-24T10:00:00Z"
    })
}

pub fn delta(batch: u64, upserts: Vec<Value>) -> Value {
    json!({"batch": batch, "kind": "delta", "upserts": upserts, "deletes": []})
}

pub fn snapshot_part(batch: u64, id: &str, part: u32, parts: u32, upserts: Vec<Value>) -> Value {
    json!({"batch": batch, "kind": "snapshot", "snapshot": {"id": id, "part": part, "parts": parts},
           "upserts": upserts, "deletes": []})
}

pub fn receipts(prefix: &str, range: std::ops::Range<usize>) -> Vec<Value> {
    range.map(|i| receipt(&format!("{prefix}{i:06}"))).collect()
}

// The journal, written as another process would: its own connection, BEGIN IMMEDIATE -------

/// Appends `n` entries of `kind` to `lane` in one transaction on the database at `db`.
pub fn append_entries(
    db: &std::path::Path,
    lane: standin::journal::Lane,
    kind: &str,
    n: usize,
) -> Vec<standin::journal::Entry> {
    let mut conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn.execute_batch("PRAGMA synchronous=FULL").unwrap();
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let entries = (0..n)
        .map(|i| {
            let e = standin::journal::NewEntry {
                lane,
                kind: kind.into(),
                actor: Some("E100".into()),
                device: Some("desk-1".into()),
                body: json!({"n": i, "kind": kind}),
            };
            standin::journal::append(&tx, "store-0001", &now, e).unwrap()
        })
        .collect();
    tx.commit().unwrap();
    entries
}

/// Central (the simulator) holds every written entry exactly once, nothing else, and each
/// lane arrived in `seq` order.
pub fn assert_exactly_once_in_order(received: &[Value], written: &[standin::journal::Entry]) {
    let mut by_id = std::collections::HashMap::new();
    for r in received {
        assert!(
            by_id.insert(r["id"].as_str().unwrap(), r).is_none(),
            "central holds {} twice",
            r["id"]
        );
    }
    assert_eq!(
        received.len(),
        written.len(),
        "central holds entries this store never wrote, or misses some"
    );
    for e in written {
        assert!(
            by_id.contains_key(e.id.as_str()),
            "seq {} never reached central",
            e.seq
        );
    }
    for lane in standin::journal::Lane::BY_PRIORITY {
        let seqs: Vec<i64> = received
            .iter()
            .filter(|r| r["lane"] == lane.as_str())
            .map(|r| r["seq"].as_i64().unwrap())
            .collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{lane:?} reached central out of seq order: {seqs:?}"
        );
    }
}

/// One column of a query's rows.
pub fn column<T: rusqlite::types::FromSql>(conn: &rusqlite::Connection, sql: &str) -> Vec<T> {
    conn.prepare(sql)
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Sends `request` as written on a new connection and reads until it closes (5 s at most):
/// (status, head in lower case, body as JSON or null).
pub async fn raw(addr: &str, request: &[u8]) -> (u16, String, Value) {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    read_answer(&mut s).await
}

/// Reads the answer on `s` until the connection closes (5 s at most), as [`raw`] gives it.
pub async fn read_answer(s: &mut tokio::net::TcpStream) -> (u16, String, Value) {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (
        status,
        head.to_ascii_lowercase(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}
