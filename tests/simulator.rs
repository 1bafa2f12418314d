//! The simulator over real HTTP: the contract Standin relies on, and every fault mode.

use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use standin::simulator::{SimConfig, Simulator};

const STORE: &str = "store-0042";

async fn sim() -> Simulator {
    let any = "127.0.0.1:0".parse().unwrap();
    Simulator::start(SimConfig {
        listen: any,
        central_listen: any,
        payments_listen: any,
        store_id: STORE.into(),
        receipts: 300,
        pickup_orders: 50,
        seed: 42,
        pepper: b"pepper".to_vec(),
        part_size: 100,
    })
    .await
    .unwrap()
}

/// No connection pooling: each request opens its own connection, as after an outage.
fn client() -> Client {
    Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn get(url: &str) -> (StatusCode, Value) {
    let r = client().get(url).send().await.unwrap();
    (r.status(), r.json().await.unwrap())
}

async fn send(method: reqwest::Method, url: &str, body: Value) -> (StatusCode, Value) {
    let r = client()
        .request(method, url)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap())
}

async fn fault(s: &Simulator, upstream: &str, body: Value) -> Value {
    let url = format!("{}/admin/faults/{upstream}", s.admin_url());
    let (status, v) = send(reqwest::Method::PUT, &url, body).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v
}

fn entry(id: &str, seq: u64, kind: &str, body: Value) -> Value {
    json!({
        "id": id, "seq": seq, "lane": "pickups", "kind": kind,
        "occurred_at": "2026-11-25T14:00:00Z", "store_id": STORE, "actor": "E10234",
        "device": "desk-1", "body": body, "prev_hash": "00", "hash": "11",
    })
}

fn journal_url(s: &Simulator) -> String {
    format!("{}/v1/stores/{STORE}/journal", s.central_url())
}

async fn post_journal(s: &Simulator, entries: Vec<Value>) -> (StatusCode, Value) {
    send(
        reqwest::Method::POST,
        &journal_url(s),
        json!({ "entries": entries }),
    )
    .await
}

async fn received(s: &Simulator) -> Value {
    get(&format!("{}/admin/received", s.admin_url())).await.1
}

async fn authorize(s: &Simulator, c: &Client, key: &str, body: Value) -> reqwest::Result<Value> {
    let url = format!("{}/v1/authorizations", s.payments_url());
    c.post(url)
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .await?
        .json()
        .await
}

fn card(amount: i64, token: &str) -> Value {
    json!({ "amount_minor": amount, "currency": "USD", "stored": false,
            "tender": { "kind": "card_token", "token": token, "brand": "visa", "last4": "4242" } })
}

#[tokio::test]
async fn feeds_page_through_the_snapshot_and_admin_describes_itself() {
    let s = sim().await;
    for base in [s.central_url(), s.payments_url()] {
        assert_eq!(
            get(&format!("{base}/v1/health")).await,
            (StatusCode::OK, json!({"status": "ok"}))
        );
    }
    let feed = format!(
        "{}/v1/stores/{STORE}/feeds/receipts/batches",
        s.central_url()
    );
    let (status, page) = get(&format!("{feed}?after=0&limit=2")).await;
    assert_eq!(status, StatusCode::OK);
    let numbers: Vec<_> = page["batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["batch"].clone())
        .collect();
    assert_eq!(numbers, [json!(1), json!(2)]);
    assert_eq!(
        page["batches"][0]["snapshot"],
        json!({"id": "receipts-42-1", "part": 1, "parts": 3})
    );
    assert_eq!(page["batches"][0]["upserts"].as_array().unwrap().len(), 100);
    let (_, rest) = get(&format!("{feed}?after=2")).await;
    assert_eq!(rest["batches"].as_array().unwrap().len(), 1);
    assert_eq!(rest["batches"][0]["snapshot"]["part"], 3);
    let (_, done) = get(&format!("{feed}?after=3")).await;
    assert_eq!(done["batches"], json!([]));
    // How current HQ's data behind the feed is: now, while HQ's updates flow.
    let as_of = chrono::DateTime::parse_from_rfc3339(done["as_of"].as_str().unwrap()).unwrap();
    assert!(
        (chrono::Utc::now() - as_of.to_utc()).num_seconds().abs() < 5,
        "{done}"
    );

    let (status, err) = get(&format!(
        "{}/v1/stores/{STORE}/feeds/nope/batches",
        s.central_url()
    ))
    .await;
    assert_eq!(
        (status, &err["error"]["field"]),
        (StatusCode::NOT_FOUND, &json!("feed"))
    );
    let (status, err) = get(&format!(
        "{}/v1/stores/other/feeds/staff/batches",
        s.central_url()
    ))
    .await;
    assert_eq!(
        (status, &err["error"]["field"]),
        (StatusCode::NOT_FOUND, &json!("store"))
    );

    let (_, info) = get(&format!("{}/admin", s.admin_url())).await;
    assert_eq!(info["store_id"], STORE);
    assert_eq!(info["central_url"], s.central_url());
    assert_eq!(info["payments_url"], s.payments_url());
    assert_eq!(info["credentials"]["kiosks"].as_array().unwrap().len(), 10);
    assert_eq!(
        info["credentials"]["staff"][0]["pin"],
        s.credentials().staff[0].pin.as_str()
    );
    s.shutdown().await;
}

#[tokio::test]
async fn journal_accepts_once_then_answers_duplicate_and_counts() {
    let s = sim().await;
    let e = entry(
        "01J0000000000000000000000A",
        1,
        "pickup.no_show",
        json!({"order_id": "x"}),
    );
    let (status, first) = post_journal(&s, vec![e.clone()]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        first,
        json!({"results": [{"id": "01J0000000000000000000000A", "outcome": "accepted"}]})
    );
    let (_, again) = post_journal(&s, vec![e.clone()]).await;
    assert_eq!(again["results"][0]["outcome"], "duplicate");
    let got = received(&s).await;
    assert_eq!(got["journal"][0]["count"], 2);
    assert_eq!(got["journal"][0]["outcome"], "accepted");
    assert_eq!(got["journal"][0]["seq"], 1);
    assert_eq!(got["journal"][0]["entry"], e);
    let (status, err) = post_journal(&s, vec![json!({"seq": 2})]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err["error"]["field"], "entries[0].id");
    s.shutdown().await;
}

#[tokio::test]
async fn reject_rule_and_conflict_after_cancel() {
    let s = sim().await;
    let url = format!("{}/admin/central/reject", s.admin_url());
    let (status, _) = send(
        reqwest::Method::PUT,
        &url,
        json!({"ids": ["bad-1"], "kinds": ["audit.note"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let feed = format!(
        "{}/v1/stores/{STORE}/feeds/pickup_orders/batches",
        s.central_url()
    );
    let (_, page) = get(&feed).await;
    let orders = page["batches"][0]["upserts"].as_array().unwrap().clone();
    let open: Vec<&Value> = orders
        .iter()
        .filter(|o| o["status"] != "cancelled")
        .collect();
    let (victim, kept) = (
        open[0]["order_id"].as_str().unwrap(),
        open[1]["order_id"].as_str().unwrap(),
    );

    let cancel = format!("{}/admin/central/orders/{victim}/cancel", s.admin_url());
    let (status, batch) = send(reqwest::Method::POST, &cancel, json!({})).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        (&batch["batch"], &batch["kind"]),
        (&json!(2), &json!("delta"))
    );
    let (_, delta) = get(&format!("{feed}?after=1")).await;
    assert_eq!(delta["batches"][0]["upserts"][0]["order_id"], victim);
    assert_eq!(delta["batches"][0]["upserts"][0]["status"], "cancelled");

    let entries = vec![
        entry("bad-1", 1, "pickup.no_show", json!({})),
        entry("n-2", 2, "audit.note", json!({})),
        entry("h-3", 3, "pickup.handed_over", json!({"order_id": victim})),
        entry("h-4", 4, "pickup.handed_over", json!({"order_id": kept})),
    ];
    let (_, res) = post_journal(&s, entries.clone()).await;
    let expect = json!({"results": [
        {"id": "bad-1", "outcome": "rejected", "reason": "rejected_by_rule"},
        {"id": "n-2", "outcome": "rejected", "reason": "rejected_by_rule"},
        {"id": "h-3", "outcome": "conflict", "reason": "order_cancelled"},
        {"id": "h-4", "outcome": "accepted"},
    ]});
    assert_eq!(res, expect);
    let (_, again) = post_journal(&s, entries).await;
    assert_eq!(
        again["results"][2], expect["results"][2],
        "a conflict answers its outcome again"
    );
    assert_eq!(again["results"][3]["outcome"], "duplicate");
    assert_eq!(
        received(&s).await["journal"][2]["reason"],
        "order_cancelled"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn processor_answers_each_key_once_and_declines_by_rule() {
    let s = sim().await;
    let c = client();
    let first = authorize(&s, &c, "k-1", card(1234, "tok_ok"))
        .await
        .unwrap();
    assert_eq!(first["status"], "approved");
    let code = first["auth_code"].as_str().unwrap();
    assert!(code.len() == 6 && code.chars().all(|ch| ch.is_ascii_alphanumeric()));
    assert_eq!(
        authorize(&s, &c, "k-1", card(9999, "tok_other"))
            .await
            .unwrap(),
        first
    );
    let got = received(&s).await;
    assert_eq!(got["authorizations"][0]["count"], 2);
    assert_eq!(got["authorizations"][0]["response"], first);
    assert_eq!(got["authorizations"][0]["request"]["amount_minor"], 1234);

    let poor = authorize(&s, &c, "k-2", card(5051, "tok_ok"))
        .await
        .unwrap();
    assert_eq!(
        poor,
        json!({"status": "declined", "reason": "insufficient_funds"})
    );
    let refused = authorize(&s, &c, "k-3", card(500, "decline_me"))
        .await
        .unwrap();
    assert_eq!(
        refused,
        json!({"status": "declined", "reason": "do_not_honor"})
    );

    let url = format!("{}/v1/authorizations", s.payments_url());
    let r = c
        .post(&url)
        .json(&card(100, "tok_ok"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "missing_idempotency_key"
    );

    let refund = |key: &'static str| {
        c.post(format!("{}/v1/refunds", s.payments_url()))
            .header("Idempotency-Key", key)
            .json(&json!({"authorization": "auth_abc", "amount_minor": 700, "currency": "USD"}))
            .send()
    };
    let r1: Value = refund("r-1").await.unwrap().json().await.unwrap();
    let r2: Value = refund("r-1").await.unwrap().json().await.unwrap();
    assert_eq!(r1["status"], "approved");
    assert_eq!(r1, r2);
    assert_eq!(received(&s).await["refunds"][0]["count"], 2);
    s.shutdown().await;
}

#[tokio::test]
async fn down_refuses_connections_aborts_live_ones_and_ok_rebinds_the_same_port() {
    let s = sim().await;
    // A request stuck on a hanging processor is cut off when it goes down.
    fault(&s, "payments", json!({"mode": "hang"})).await;
    let stuck = {
        let (c, url) = (client(), format!("{}/v1/authorizations", s.payments_url()));
        tokio::spawn(async move {
            c.post(url)
                .header("Idempotency-Key", "live")
                .json(&card(100, "tok"))
                .send()
                .await
        })
    };
    while received(&s).await["authorizations"]
        .as_array()
        .unwrap()
        .is_empty()
    {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        fault(&s, "payments", json!({"mode": "down"})).await,
        json!({"mode": "down"})
    );
    let cut = tokio::time::timeout(Duration::from_secs(5), stuck)
        .await
        .unwrap()
        .unwrap();
    assert!(cut.is_err(), "the live connection was aborted");

    let health = format!("{}/v1/health", s.payments_url());
    let err = client().get(&health).send().await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    let addr = s.payments_url().trim_start_matches("http://").to_owned();
    let refused = tokio::net::TcpStream::connect(&addr).await.unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    // Bulkhead: central is unaffected.
    assert_eq!(
        get(&format!("{}/v1/health", s.central_url())).await.0,
        StatusCode::OK
    );
    let (_, both) = get(&format!("{}/admin/faults", s.admin_url())).await;
    assert_eq!(
        both,
        json!({"central": {"mode": "ok"}, "payments": {"mode": "down"}})
    );

    fault(&s, "payments", json!({"mode": "ok"})).await;
    assert_eq!(get(&health).await.0, StatusCode::OK);
    s.shutdown().await;
}

#[tokio::test]
async fn hang_applies_the_request_but_never_answers() {
    let s = sim().await;
    fault(&s, "payments", json!({"mode": "hang"})).await;
    let impatient = Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = authorize(&s, &impatient, "h-1", card(2500, "tok_x"))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    let got = received(&s).await;
    assert_eq!(got["authorizations"][0]["key"], "h-1");
    assert_eq!(got["authorizations"][0]["count"], 1);
    let stored = got["authorizations"][0]["response"].clone();
    assert_eq!(stored["status"], "approved");

    fault(&s, "payments", json!({"mode": "ok"})).await;
    let retry = authorize(&s, &client(), "h-1", card(2500, "tok_x"))
        .await
        .unwrap();
    assert_eq!(retry, stored, "the retry learns the answer it never heard");
    s.shutdown().await;
}

#[tokio::test]
async fn drop_response_applies_then_closes_without_an_answer() {
    let s = sim().await;
    fault(&s, "central", json!({"mode": "drop_response"})).await;
    let body = json!({"entries": [entry("d-1", 1, "pickup.no_show", json!({}))]});
    let err = client()
        .post(journal_url(&s))
        .json(&body)
        .send()
        .await
        .unwrap_err();
    assert!(
        err.status().is_none() && !err.is_timeout(),
        "a transport error: {err:?}"
    );
    let got = received(&s).await;
    assert_eq!(
        (&got["journal"][0]["id"], &got["journal"][0]["count"]),
        (&json!("d-1"), &json!(1))
    );
    fault(&s, "central", json!({"mode": "ok"})).await;
    assert_eq!(
        post_journal(&s, vec![body["entries"][0].clone()]).await.1["results"][0]["outcome"],
        "duplicate"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn retry_after_and_error_answer_without_applying() {
    let s = sim().await;
    let set = fault(
        &s,
        "central",
        json!({"mode": "retry_after", "status": 429, "retry_after_s": 7}),
    )
    .await;
    assert_eq!(
        set,
        json!({"mode": "retry_after", "status": 429, "retry_after_s": 7})
    );
    let body = json!({"entries": [entry("r-1", 1, "pickup.no_show", json!({}))]});
    let r = client()
        .post(journal_url(&s))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "7");
    fault(&s, "central", json!({"mode": "retry_after"})).await;
    let r = client()
        .get(format!("{}/v1/health", s.central_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status(), r.headers()["retry-after"].to_str().unwrap()),
        (StatusCode::SERVICE_UNAVAILABLE, "10")
    );

    fault(&s, "central", json!({"mode": "error", "status": 502})).await;
    let r = client()
        .post(journal_url(&s))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert!(r.json::<Value>().await.unwrap()["error"]["code"].is_string());
    assert_eq!(
        received(&s).await["journal"],
        json!([]),
        "nothing was applied"
    );

    let url = format!("{}/admin/faults/central", s.admin_url());
    let (status, err) = send(reqwest::Method::PUT, &url, json!({"mode": "melt"})).await;
    assert_eq!(
        (status, &err["error"]["field"]),
        (StatusCode::UNPROCESSABLE_ENTITY, &json!("mode"))
    );
    let url = format!("{}/admin/faults/nowhere", s.admin_url());
    let (status, err) = send(reqwest::Method::PUT, &url, json!({"mode": "ok"})).await;
    assert_eq!(
        (status, &err["error"]["field"]),
        (StatusCode::NOT_FOUND, &json!("upstream"))
    );
    s.shutdown().await;
}

#[tokio::test]
async fn partial_takes_a_prefix_and_latency_delays() {
    let s = sim().await;
    fault(
        &s,
        "central",
        json!({"mode": "partial", "accept_ratio": 0.4}),
    )
    .await;
    let entries: Vec<Value> = (1..=5)
        .map(|i| entry(&format!("p-{i}"), i, "pickup.no_show", json!({})))
        .collect();
    let (status, res) = post_journal(&s, entries.clone()).await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<_> = res["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    assert_eq!(ids, [json!("p-1"), json!("p-2")]);
    assert_eq!(received(&s).await["journal"].as_array().unwrap().len(), 2);
    let (_, res) = post_journal(&s, entries[2..].to_vec()).await;
    assert_eq!(res["results"].as_array().unwrap().len(), 2, "ceil(3 x 0.4)");

    fault(&s, "central", json!({"mode": "latency", "latency_ms": 400})).await;
    let started = Instant::now();
    let (status, _) = get(&format!("{}/v1/health", s.central_url())).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    s.shutdown().await;
}

#[tokio::test]
async fn admin_controls_answer_a_browser_on_another_origin() {
    let s = sim().await;
    let url = format!("{}/admin/faults/central", s.admin_url());
    // The preflight a browser sends before a cross-origin PUT with a JSON body.
    let pre = client()
        .request(reqwest::Method::OPTIONS, &url)
        .header("Origin", "http://127.0.0.1:8080")
        .header("Access-Control-Request-Method", "PUT")
        .header("Access-Control-Request-Headers", "content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status(), StatusCode::NO_CONTENT);
    let h = pre.headers();
    assert_eq!(h["access-control-allow-origin"], "*");
    assert!(
        h["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("PUT")
    );
    assert!(
        h["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("content-type")
    );
    let put = client()
        .put(&url)
        .header("Origin", "http://127.0.0.1:8080")
        .json(&json!({"mode": "latency", "latency_ms": 50}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    assert_eq!(put.headers()["access-control-allow-origin"], "*");
    let faults = client()
        .get(format!("{}/admin/faults", s.admin_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(faults.headers()["access-control-allow-origin"], "*");
    assert_eq!(
        faults.json::<Value>().await.unwrap()["central"],
        json!({"mode": "latency", "latency_ms": 50})
    );
    s.shutdown().await;
}
