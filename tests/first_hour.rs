//! A store's first hour from the README alone (issue 15): `standin serve` started with nothing
//! but `STANDIN_CENTRAL__URL`, `STANDIN_PAYMENTS__URL`, `STANDIN_FEEDS__PULL=true`, `--listen`
//! and `--data-dir` (no file, no other key), against central answering in 200 ms and the
//! processor in 150 ms. Every feed loads within 30 s and 20 of 20 kiosk payments are decided
//! online. With the timeouts a section holding only its `url` once got (1 ms), no feed loaded
//! and every payment was approved offline.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::binary::{BIN, free_port};
use common::sim::{fault, simulator};
use serde_json::{Value, json};

/// The `standin serve` child, killed however the test ends.
struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const FEEDS: [&str; 5] = ["pickup_orders", "receipts", "staff", "devices", "policy"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_urls_set_against_slow_upstreams_loads_every_feed_and_pays_online() {
    let sim = simulator(3_000, 500).await;
    fault(
        &sim,
        "central",
        json!({"mode": "latency", "latency_ms": 200}),
    )
    .await;
    fault(
        &sim,
        "payments",
        json!({"mode": "latency", "latency_ms": 150}),
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut cmd = Command::new(BIN);
    cmd.args([
        "serve",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
    ])
    .arg(dir.path());
    for (k, _) in std::env::vars() {
        if k.starts_with("STANDIN_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("STANDIN_CENTRAL__URL", sim.central_url())
        .env("STANDIN_PAYMENTS__URL", sim.payments_url())
        .env("STANDIN_FEEDS__PULL", "true")
        .env("RUST_LOG", "error")
        .stdout(Stdio::null());
    let started = Instant::now();
    let _serving = Serving(cmd.spawn().unwrap());

    // Every feed loads within 30 s of the start.
    let client = reqwest::Client::new();
    let status = loop {
        let s: Option<Value> = match client.get(format!("{url}/api/v1/status")).send().await {
            Ok(r) => r.json().await.ok(),
            Err(_) => None,
        };
        if let Some(s) = &s
            && FEEDS
                .iter()
                .all(|f| s["feeds"][f]["snapshot_at"].is_string())
        {
            break s.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not every feed loaded within 30 s; status: {s:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status["feeds"]["receipts"]["records"], 3_000, "{status:#}");
    assert_eq!(
        status["feeds"]["pickup_orders"]["records"], 500,
        "{status:#}"
    );

    // 20 of 20 kiosk payments are decided online by the processor.
    let kiosk = &sim.credentials().kiosks[0];
    let mut online = 0;
    for i in 0..20 {
        let body = json!({
            "idempotency_key": format!("first-hour-{i}"), "basket_id": format!("basket-{i}"),
            "amount_minor": 1_000 + i, "currency": "USD",
            "tender": {"kind": "card_token", "token": format!("tok_first_hour_{i}"), "brand": "visa",
                       "last4": format!("{:04}", 4000 + i), "exp_month": 12, "exp_year": 2030,
                       "entry_mode": "contactless"}
        });
        let r = client
            .post(format!("{url}/kiosk/v1/payments"))
            .bearer_auth(&kiosk.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let code = r.status();
        let answer: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(code, reqwest::StatusCode::OK, "payment {i}: {answer}");
        let decided = answer["status"].as_str().unwrap_or_default();
        assert!(
            ["approved", "declined"].contains(&decided),
            "payment {i} was not decided online: {answer}"
        );
        online += 1;
    }
    assert_eq!(online, 20);
    let received: Value = client
        .get(format!("{}/admin/received", sim.admin_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        received["authorizations"].as_array().map(Vec::len),
        Some(20),
        "the processor saw every payment"
    );
}
