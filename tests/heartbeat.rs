//! The store's heartbeat sender against a central that counts every heartbeat request and
//! can refuse them with 503 + `Retry-After`: it reports on its interval, honours the
//! breaker's hold, sends nothing old again (only the newest matters), and comes back.
//! (The simulator and the hub taking it: tests/contract.rs, tests/hub_fleet.rs.)

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use common::*;
use serde_json::Value;

#[derive(Clone, Default)]
struct Central {
    refuse: Arc<AtomicBool>,
    /// Every heartbeat request: when it arrived, its body, and whether it was refused.
    seen: Arc<Mutex<Vec<(Instant, Value, bool)>>>,
}

async fn status(State(c): State<Central>, body: axum::Json<Value>) -> Response {
    let refuse = c.refuse.load(Ordering::SeqCst);
    c.seen
        .lock()
        .unwrap()
        .push((Instant::now(), body.0, refuse));
    if refuse {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [("retry-after", "3")],
            "{}",
        )
            .into_response()
    } else {
        StatusCode::NO_CONTENT.into_response()
    }
}

async fn start_central() -> (String, Central) {
    let c = Central::default();
    let app = Router::new()
        .route(
            "/v1/health",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/v1/stores/{store}/status", post(status))
        .with_state(c.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_follow_the_interval_honour_retry_after_and_never_resend_old_ones() {
    let (url, central) = start_central().await;
    let t = TestStore::start_with(move |c| {
        c.central.url = Some(url);
        c.central.timeout_ms = 500;
        c.central.health_interval_secs = 1;
        c.journal.push = false;
        c.feeds.pull = false;
        c.journal.retry_base_ms = 50;
        c.journal.retry_cap_ms = 500;
    })
    .await;
    let count = || central.seen.lock().unwrap().len();
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let on_interval = count();
    assert!(
        (3..=6).contains(&on_interval),
        "about one a second: {on_interval}"
    );

    // Refused with Retry-After: 3. After the first refusal, nothing for at least 3 s.
    central.refuse.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(5);
    let first_refused = loop {
        if let Some(at) = central
            .seen
            .lock()
            .unwrap()
            .iter()
            .find(|s| s.2)
            .map(|s| s.0)
        {
            break at;
        }
        assert!(Instant::now() < deadline, "no heartbeat came to be refused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep(Duration::from_millis(7000)).await;
    let refused: Vec<Instant> = central
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.2)
        .map(|s| s.0)
        .collect();
    for w in refused.windows(2) {
        assert!(
            w[1] - w[0] >= Duration::from_millis(2900),
            "a heartbeat inside Retry-After: {:?}",
            w[1] - w[0]
        );
    }
    assert!(
        refused[0] == first_refused && refused.len() <= 3,
        "{refused:?}"
    );

    // Back: the next heartbeat is a fresh one, and only one goes at a time.
    central.refuse.store(false, Ordering::SeqCst);
    let back = Instant::now();
    let deadline = back + Duration::from_secs(15);
    loop {
        let ok_after = central
            .seen
            .lock()
            .unwrap()
            .iter()
            .any(|s| !s.2 && s.0 > back);
        if ok_after {
            break;
        }
        assert!(Instant::now() < deadline, "heartbeats never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let seen = central.seen.lock().unwrap().clone();
    let seqs: Vec<u64> = seen.iter().map(|s| s.1["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] > w[0]),
        "a heartbeat sent twice or out of order: {seqs:?}"
    );
    // Each was built when it was sent, not kept from before the outage.
    let epoch = chrono::Utc::now();
    let now = Instant::now();
    for (at, body, _) in &seen {
        let sent: chrono::DateTime<chrono::Utc> =
            body["sent_at"].as_str().unwrap().parse().unwrap();
        let arrived = epoch - chrono::Duration::from_std(now - *at).unwrap();
        let lag = (arrived - sent).num_milliseconds();
        assert!(
            lag < 1500,
            "a stale heartbeat: built {lag} ms before it arrived"
        );
        assert_eq!(body["store_id"], "store-0001");
    }
    let after: Vec<&Instant> = seen.iter().filter(|s| s.0 > back).map(|s| &s.0).collect();
    assert!(
        after.len() <= 4,
        "a burst after the return: {}",
        after.len()
    );
    t.stop().await;
}
