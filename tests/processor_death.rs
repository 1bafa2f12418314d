//! The first payments after the processor dies (issue 19): a processor that starts hanging
//! after it has answered. A kiosk is not kept waiting for a call far slower than the
//! processor's recent answers when the rules approve it offline, a decline is not taken early,
//! new payments are not sent to join calls that already hang, and every hedged payment is
//! still counted once by the processor, under its own key.

mod common;

use std::time::{Duration, Instant};

use common::people::{KIOSK_1, KIOSK_2, device_record};
use common::sim::{fault, simulator};
use common::{TestStore, delta};
use reqwest::StatusCode;
use serde_json::{Value, json};
use standin::simulator::Simulator;

/// A budget long enough that a hedged answer is told apart from a timed-out one by a wide
/// margin on a loaded machine (the hedge is 100 ms against the simulator).
const TIMEOUT_MS: u64 = 4_000;

async fn store(sim: &Simulator) -> TestStore {
    let payments = sim.payments_url();
    let t = TestStore::start_with(move |c| {
        c.payments.url = Some(payments);
        c.payments.timeout_ms = TIMEOUT_MS;
        c.payments.health_interval_secs = 1;
    })
    .await;
    let mut devices = vec![device_record(KIOSK_1, true), device_record(KIOSK_2, true)];
    for i in 0..4 {
        devices.push(device_record((&format!("sco-h{i}"), &token(i)), true));
    }
    assert_eq!(
        t.push("devices", &delta(1, devices)).await.0,
        StatusCode::OK
    );
    let policy = json!({"offline_tx_cap_minor": 5_000, "offline_exposure_cap_minor": 100_000,
                        "offline_max_hours": 24, "offline_tenders": ["card_token"],
                        "forward_deadline_hours": 48});
    let upserts: Vec<Value> = policy
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect();
    assert_eq!(t.push("policy", &delta(1, upserts)).await.0, StatusCode::OK);
    t
}

fn token(i: usize) -> String {
    format!("kiosk-token-hedge-{i:03}-0123456789abcdef0123456789abcdef")
}

fn pay(key: &str, amount: i64) -> Value {
    json!({"idempotency_key": key, "basket_id": format!("basket-{key}"), "amount_minor": amount, "currency": "USD",
           "tender": {"kind": "card_token", "token": format!("tok_{key}"), "brand": "visa", "last4": "4242",
                      "exp_month": 12, "exp_year": 2029}})
}

/// The answer and how long the kiosk waited for it.
async fn pay_timed(t: &TestStore, token: &str, body: &Value) -> (Value, Duration) {
    let started = Instant::now();
    let (s, b) = t.kiosk_post(token, "/kiosk/v1/payments", body).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    (b, started.elapsed())
}

/// The simulator's authorisations: key → times it arrived.
async fn authorizations(sim: &Simulator) -> Vec<(String, u64)> {
    let v: Value = reqwest::get(format!("{}/admin/received", sim.admin_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["authorizations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["key"].as_str().unwrap().to_string(),
                r["count"].as_u64().unwrap(),
            )
        })
        .collect()
}

async fn status_of(t: &TestStore, token: &str, id: &str) -> Value {
    let r = t
        .client
        .get(format!("{}/kiosk/v1/payments/{id}", t.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_processor_that_starts_hanging_keeps_no_kiosk_waiting_when_stand_in_approves() {
    let sim = simulator(0, 0).await;
    let t = store(&sim).await;
    // The processor answers first: what "normal" is.
    for i in 0..3 {
        let (b, _) = pay_timed(&t, KIOSK_1.1, &pay(&format!("ok-{i}"), 1_000)).await;
        assert_eq!(b["status"], "approved", "{b}");
    }

    fault(&sim, "payments", json!({"mode": "hang"})).await;
    // Three kiosks at once: each call hangs, each payment is hedged by stand-in long before
    // the budget runs out (it would be TIMEOUT_MS less the reserve without the hedge).
    let (t0, t1, t2) = (token(0), token(1), token(2));
    let (p0, p1, p2) = (
        pay("hung-0", 2_000),
        pay("hung-1", 2_000),
        pay("hung-2", 2_000),
    );
    let (a, b, c) = tokio::join!(
        pay_timed(&t, &t0, &p0),
        pay_timed(&t, &t1, &p1),
        pay_timed(&t, &t2, &p2)
    );
    let hung = [a, b, c];
    for (b, took) in &hung {
        assert_eq!(b["status"], "approved_offline", "{b}");
        assert!(
            *took < Duration::from_millis(TIMEOUT_MS / 2),
            "hedged, not timed out: {took:?}"
        );
    }
    let sent = authorizations(&sim).await;
    for (b, _) in &hung {
        assert!(
            sent.iter()
                .any(|(k, _)| k == b["payment_id"].as_str().unwrap()),
            "the hung calls reached the processor"
        );
    }

    // Their calls still hang: a new payment is not sent to join them.
    let (b, took) = pay_timed(&t, &token(3), &pay("after", 2_500)).await;
    assert_eq!(b["status"], "approved_offline", "{b}");
    assert!(took < Duration::from_millis(TIMEOUT_MS / 2), "{took:?}");
    let after_id = b["payment_id"].as_str().unwrap().to_string();
    assert!(
        !authorizations(&sim)
            .await
            .iter()
            .any(|(k, _)| *k == after_id),
        "not sent while three calls hang"
    );

    // Back: each hedged payment is forwarded under its own key and counted once.
    fault(&sim, "payments", json!({"mode": "ok"})).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    for (i, (b, _)) in hung.iter().enumerate() {
        let id = b["payment_id"].as_str().unwrap();
        while status_of(&t, &token(i), id).await["status"] != "captured" {
            assert!(Instant::now() < deadline, "{id} not forwarded");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    while status_of(&t, &token(3), &after_id).await["status"] != "captured" {
        assert!(Instant::now() < deadline, "{after_id} not forwarded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sent = authorizations(&sim).await;
    assert_eq!(sent.len(), 3 + 3 + 1, "one key per payment: {sent:?}");
    // A retry of a hedged payment still gets its first answer.
    let (again, _) = pay_timed(&t, &token(0), &pay("hung-0", 2_000)).await;
    assert_eq!(again, hung[0].0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_payment_stand_in_would_decline_waits_for_the_processor_within_the_timeout() {
    let sim = simulator(0, 0).await;
    let t = store(&sim).await;
    let (b, _) = pay_timed(&t, KIOSK_1.1, &pay("ok", 1_000)).await;
    assert_eq!(b["status"], "approved", "{b}");

    fault(&sim, "payments", json!({"mode": "hang"})).await;
    // Over the offline transaction cap: stand-in would decline, so it is not decided early.
    let (b, took) = pay_timed(&t, KIOSK_2.1, &pay("big", 9_000)).await;
    assert_eq!(b["status"], "declined_offline", "{b}");
    assert_eq!(b["reason"], "over_offline_transaction_cap", "{b}");
    assert!(
        took >= Duration::from_millis(TIMEOUT_MS / 2),
        "waited for the processor, not hedged: {took:?}"
    );
    assert!(
        took <= Duration::from_millis(TIMEOUT_MS),
        "answered within payments.timeout_ms: {took:?}"
    );
}
