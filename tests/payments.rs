//! Kiosk payments (issue 7) against the real server and the real processor simulator over
//! HTTP: idempotency under concurrency, online answers, stand-in within the caps (also with
//! 64 kiosks at once), outcome unknown resolved with the same key, forwarding exactly once,
//! reconciliation, no card data, and kiosk sales that become receipts during an outage.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::people::{KIOSK_1, KIOSK_2, LEAD, browser, device_record, staff_record};
use common::sim::{fault, simulator};
use common::{TestStore, column, delta, receipts, snapshot_part};
use reqwest::StatusCode;
use serde_json::{Value, json};
use standin::simulator::Simulator;

/// Standin wired to the simulator's processor (and central, when `with_central`).
async fn store_with(sim: &Simulator, with_central: bool) -> TestStore {
    let (central, payments) = (sim.central_url(), sim.payments_url());
    TestStore::start_with(move |c| {
        if with_central {
            c.central.url = Some(central);
            c.central.timeout_ms = 400;
            c.central.health_interval_secs = 1;
        }
        c.payments.url = Some(payments);
        c.payments.timeout_ms = 400;
        c.payments.health_interval_secs = 1;
    })
    .await
}

fn kiosk_token(i: usize) -> String {
    format!("kiosk-token-extra-{i:03}-0123456789abcdef0123456789abcdef")
}

/// KIOSK_1, KIOSK_2 and `extra` more kiosks, as devices batch 1.
async fn load_kiosks(t: &TestStore, extra: usize) {
    let mut devices = vec![device_record(KIOSK_1, true), device_record(KIOSK_2, true)];
    for i in 0..extra {
        let id = format!("sco-x{i:03}");
        devices.push(device_record((&id, &kiosk_token(i)), true));
    }
    assert_eq!(
        t.push("devices", &delta(1, devices)).await.0,
        StatusCode::OK
    );
}

async fn load_policy(t: &TestStore, batch: u64, entries: Value) {
    let upserts: Vec<Value> = entries
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect();
    let (s, b) = t.push("policy", &delta(batch, upserts)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

fn policy() -> Value {
    json!({
        "offline_tx_cap_minor": 5_000, "offline_exposure_cap_minor": 20_000,
        "card_velocity_count": 2, "card_velocity_amount_minor": 6_000,
        "offline_max_hours": 24, "offline_tenders": ["card_token", "p2pe"],
        "forward_deadline_hours": 48
    })
}

fn pay(key: &str, amount: i64, card: &str) -> Value {
    json!({"idempotency_key": key, "basket_id": format!("basket-{key}"), "amount_minor": amount, "currency": "USD",
           "tender": {"kind": "card_token", "token": format!("tok_{card}"), "brand": "visa", "last4": card,
                      "exp_month": 12, "exp_year": 2029, "entry_mode": "contactless"}})
}

async fn kiosk_post(t: &TestStore, token: &str, path: &str, body: &Value) -> (StatusCode, Value) {
    t.kiosk_post(token, path, body).await
}

async fn kiosk_get(t: &TestStore, token: &str, path: &str) -> (StatusCode, Value) {
    let r = t
        .client
        .get(format!("{}{path}", t.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

async fn pay_as(t: &TestStore, token: &str, body: &Value) -> Value {
    let (s, b) = kiosk_post(t, token, "/kiosk/v1/payments", body).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b
}

/// The simulator's authorisations: (key, times it arrived, request).
async fn authorizations(sim: &Simulator) -> Vec<(String, u64, Value)> {
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
                r["request"].clone(),
            )
        })
        .collect()
}

/// The reconciliation report as JSON, read by a lead signed in for it (afresh each time, so
/// a test that moves the clock past the idle timeout still reads it).
async fn reconciliation(t: &TestStore) -> Value {
    serde_json::from_str(&reconciliation_as(t, "").await).unwrap()
}

/// The reconciliation report's body as text, `query` appended to its path (`?format=csv`).
async fn reconciliation_as(t: &TestStore, query: &str) -> String {
    let lead = browser(t, &LEAD).await;
    t.client
        .get(format!("{}/api/v1/reconciliation{query}", t.url))
        .header("cookie", &lead.cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn wait_until(what: &str, mut pred: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !pred().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_submissions_of_one_key_make_one_payment_and_fifty_identical_answers() {
    let sim = simulator(0, 0).await;
    let t = store_with(&sim, false).await;
    load_kiosks(&t, 0).await;
    let body = pay("dup-1", 1_250, "4242");
    let t = Arc::new(t);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let (t, body) = (t.clone(), body.clone());
        tasks.spawn(async move { kiosk_post(&t, KIOSK_1.1, "/kiosk/v1/payments", &body).await });
    }
    let answers: Vec<(StatusCode, Value)> = tasks.join_all().await;
    assert!(
        answers.iter().all(|(s, _)| *s == StatusCode::OK),
        "{answers:?}"
    );
    let first = &answers[0].1;
    assert_eq!(first["status"], "approved", "the processor is up: {first}");
    assert!(first["auth_code"].is_string());
    assert!(
        answers.iter().all(|(_, b)| b == first),
        "50 identical answers"
    );
    let db = t.db();
    assert_eq!(column::<i64>(&db, "SELECT count(*) FROM payments"), vec![1]);
    let id = first["payment_id"].as_str().unwrap();
    let auths = authorizations(&sim).await;
    assert_eq!(
        auths.len(),
        1,
        "one authorisation at the processor: {auths:?}"
    );
    assert_eq!(
        (auths[0].0.as_str(), auths[0].1),
        (id, 1),
        "sent once, with the payment's key"
    );
    assert_eq!(
        column::<String>(&db, "SELECT kind FROM journal WHERE lane = 'payments'"),
        vec!["payment.approved".to_string()]
    );

    // The same key with another body: 409; the same key from another kiosk is its own payment.
    let (s, b) = kiosk_post(
        &t,
        KIOSK_1.1,
        "/kiosk/v1/payments",
        &pay("dup-1", 1_300, "4242"),
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("idempotency_key_reused"))
    );
    // Key order does not make a different body.
    let reordered: Value = serde_json::from_str(&format!(
        "{{\"tender\": {}, \"currency\": \"USD\", \"amount_minor\": 1250, \"basket_id\": \"basket-dup-1\", \"idempotency_key\": \"dup-1\"}}",
        body["tender"]
    ))
    .unwrap();
    assert_eq!(pay_as(&t, KIOSK_1.1, &reordered).await, *first);
    let other = pay_as(&t, KIOSK_2.1, &body).await;
    assert_ne!(other["payment_id"], first["payment_id"]);

    // A kiosk sees only its own payments.
    let (s, p) = kiosk_get(&t, KIOSK_1.1, &format!("/kiosk/v1/payments/{id}")).await;
    assert_eq!(
        (s, p["status"].as_str(), p["amount_minor"].as_i64()),
        (StatusCode::OK, Some("approved"), Some(1250))
    );
    let (s, _) = kiosk_get(&t, KIOSK_2.1, &format!("/kiosk/v1/payments/{id}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_answers_come_from_the_processor_even_while_central_is_down() {
    let sim = simulator(0, 0).await;
    fault(&sim, "central", json!({"mode": "down"})).await;
    let t = store_with(&sim, true).await;
    load_kiosks(&t, 0).await;
    let ok = pay_as(&t, KIOSK_1.1, &pay("on-1", 9_900, "1111")).await;
    assert_eq!(
        ok["status"], "approved",
        "over every offline cap, but online: {ok}"
    );
    let no = pay_as(&t, KIOSK_1.1, &pay("on-2", 1_251, "1111")).await;
    assert_eq!(
        (no["status"].as_str(), no["reason"].as_str()),
        (Some("declined"), Some("insufficient_funds"))
    );
    let db = t.db();
    assert_eq!(
        column::<String>(
            &db,
            "SELECT kind FROM journal WHERE lane = 'payments' ORDER BY seq"
        ),
        vec!["payment.approved", "payment.declined"]
    );
    assert_eq!(
        column::<i64>(
            &db,
            "SELECT count(*) FROM journal WHERE lane = 'payments' AND outcome IS NULL"
        ),
        vec![2],
        "the ledger waits for central"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processor_down_inside_the_caps_approved_offline_beyond_declined_with_the_reason() {
    let sim = simulator(0, 0).await;
    fault(&sim, "payments", json!({"mode": "down"})).await;
    let t = store_with(&sim, false).await;
    load_kiosks(&t, 0).await;

    // No policy from HQ yet: nothing is approved offline.
    let b = pay_as(&t, KIOSK_1.1, &pay("p0", 100, "0001")).await;
    assert_eq!(
        (b["status"].as_str(), b["reason"].as_str()),
        (Some("declined_offline"), Some("offline_policy_missing"))
    );
    load_policy(&t, 1, policy()).await;

    let expect = |b: &Value, status: &str, reason: Option<&str>| {
        assert_eq!(
            (b["status"].as_str(), b["reason"].as_str()),
            (Some(status), reason),
            "{b}"
        );
    };
    let mut gift = pay("p1", 100, "0002");
    gift["tender"]["kind"] = json!("gift_card");
    expect(
        &pay_as(&t, KIOSK_1.1, &gift).await,
        "declined_offline",
        Some("tender_not_allowed_offline"),
    );
    expect(
        &pay_as(&t, KIOSK_1.1, &pay("p2", 5_001, "0003")).await,
        "declined_offline",
        Some("over_offline_transaction_cap"),
    );
    expect(
        &pay_as(&t, KIOSK_1.1, &pay("p3", 5_000, "0003")).await,
        "approved_offline",
        None,
    );
    // Velocity per card across lanes (two kiosks).
    expect(
        &pay_as(&t, KIOSK_2.1, &pay("p4", 500, "0004")).await,
        "approved_offline",
        None,
    );
    expect(
        &pay_as(&t, KIOSK_1.1, &pay("p5", 500, "0004")).await,
        "approved_offline",
        None,
    );
    expect(
        &pay_as(&t, KIOSK_2.1, &pay("p6", 500, "0004")).await,
        "declined_offline",
        Some("card_velocity_count"),
    );
    expect(
        &pay_as(&t, KIOSK_2.1, &pay("p7", 1_001, "0003")).await,
        "declined_offline",
        Some("card_velocity_amount"),
    );
    expect(
        &pay_as(&t, KIOSK_2.1, &pay("p8", 1_000, "0003")).await,
        "approved_offline",
        None,
    );
    // Exposure: 7,000 so far; 13,000 more fit under the 20,000 cap.
    for (i, card) in ["0010", "0011"].iter().enumerate() {
        expect(
            &pay_as(&t, KIOSK_1.1, &pay(&format!("p9{i}"), 5_000, card)).await,
            "approved_offline",
            None,
        );
    }
    expect(
        &pay_as(&t, KIOSK_1.1, &pay("p95", 3_001, "0012")).await,
        "declined_offline",
        Some("store_exposure_cap"),
    );
    expect(
        &pay_as(&t, KIOSK_1.1, &pay("p96", 3_000, "0012")).await,
        "approved_offline",
        None,
    );
    expect(
        &pay_as(&t, KIOSK_1.1, &pay("p97", 1, "0013")).await,
        "declined_offline",
        Some("store_exposure_cap"),
    );

    // The queue view in status and metrics.
    let s = t.status().await;
    let q = &s["payments"];
    assert_eq!(
        (q["count"].as_i64(), q["total_minor"].as_i64()),
        (Some(7), Some(20_000)),
        "{q}"
    );
    assert!(
        q["oldest_at"].is_string() && q["tightest_deadline_secs"].as_i64().unwrap() > 47 * 3600
    );
    assert_eq!(q["deadline_warning"], false);
    let metrics = t
        .client
        .get(format!("{}/metrics", t.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("standin_payments_exposure_minor 20000"),
        "{metrics}"
    );
    assert!(metrics.contains("standin_payments_exposure_payments 7"));
    let db = t.db();
    assert_eq!(
        column::<i64>(
            &db,
            "SELECT count(*) FROM journal WHERE lane = 'payments' AND kind LIKE 'payment.%_offline'"
        ),
        vec![14],
        "every decision is journaled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_kiosks_at_once_never_push_exposure_over_the_cap() {
    const CAP: i64 = 150_000;
    let sim = simulator(0, 0).await;
    fault(&sim, "payments", json!({"mode": "down"})).await;
    let t = Arc::new(store_with(&sim, false).await);
    load_kiosks(&t, 64).await;
    load_policy(
        &t,
        1,
        json!({"offline_tx_cap_minor": 5_000, "offline_exposure_cap_minor": CAP}),
    )
    .await;

    // Sample exposure from the database throughout, as an auditor's connection would.
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (path, done) = (t.db_path(), done.clone());
        std::thread::spawn(move || {
            let db = rusqlite::Connection::open_with_flags(
                &path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .unwrap();
            let mut samples = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let (sum, counter): (i64, i64) = db
                    .query_row(
                        "SELECT (SELECT coalesce(sum(amount_minor), 0) FROM payments WHERE status = 'approved_offline'),
                                (SELECT total_minor FROM payments_exposure)",
                        [],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .unwrap();
                samples.push((sum, counter));
                std::thread::sleep(Duration::from_millis(2));
            }
            samples
        })
    };
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..64 {
        let t = t.clone();
        tasks.spawn(async move {
            let token = kiosk_token(k);
            let mut out = Vec::new();
            for i in 0..12 {
                let amount = 1_000 + ((k * 37 + i * 101) % 40) as i64 * 100;
                let b = pay_as(
                    &t,
                    &token,
                    &pay(&format!("k{k}-{i}"), amount, &format!("{:04}", k * 100 + i)),
                )
                .await;
                out.push((amount, b));
            }
            out
        });
    }
    let answers: Vec<(i64, Value)> = tasks.join_all().await.into_iter().flatten().collect();
    done.store(true, Ordering::Relaxed);
    let samples = sampler.join().unwrap();
    assert!(
        samples.len() > 10,
        "the sampler ran during the load ({} samples)",
        samples.len()
    );
    for (sum, counter) in &samples {
        assert!(
            *sum <= CAP && *counter <= CAP,
            "exposure {sum} (counter {counter}) over the cap {CAP}"
        );
        assert_eq!(sum, counter, "the exposure counter matches the rows");
    }
    let approved: i64 = answers
        .iter()
        .filter(|(_, b)| b["status"] == "approved_offline")
        .map(|(a, _)| a)
        .sum();
    let capped = answers
        .iter()
        .filter(|(_, b)| b["reason"] == "store_exposure_cap")
        .count();
    assert_eq!(answers.len(), 64 * 12);
    assert!(
        approved <= CAP && approved > CAP - 5_000,
        "approved {approved} fills the cap without passing it"
    );
    assert!(
        capped > 100,
        "the rest were declined for the cap ({capped})"
    );
    assert_eq!(
        answers
            .iter()
            .filter(
                |(_, b)| b["status"] != "approved_offline" && b["reason"] != "store_exposure_cap"
            )
            .count(),
        0
    );
    let s = t.status().await;
    assert_eq!(s["payments"]["total_minor"].as_i64(), Some(approved));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_that_hangs_after_receiving_holds_exactly_one_authorisation_for_the_key_after_recovery()
 {
    let sim = simulator(0, 0).await;
    let t = store_with(&sim, false).await;
    load_kiosks(&t, 0).await;
    load_policy(&t, 1, policy()).await;
    fault(&sim, "payments", json!({"mode": "hang"})).await;
    let started = Instant::now();
    let b = pay_as(&t, KIOSK_1.1, &pay("hang-1", 2_000, "7777")).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "answered within the budget"
    );
    assert_eq!(
        b["status"], "approved_offline",
        "outcome unknown: stand-in, {b}"
    );
    let id = b["payment_id"].as_str().unwrap().to_string();
    let auths = authorizations(&sim).await;
    assert_eq!(auths.len(), 1, "the hung request reached the processor");

    fault(&sim, "payments", json!({"mode": "ok"})).await;
    wait_until("the payment is forwarded", async || {
        kiosk_get(&t, KIOSK_1.1, &format!("/kiosk/v1/payments/{id}"))
            .await
            .1["status"]
            == "captured"
    })
    .await;
    let auths = authorizations(&sim).await;
    assert_eq!(auths.len(), 1, "never a new key: {auths:?}");
    assert_eq!(auths[0].0, id, "the payment's own key");
    assert!(
        auths[0].1 >= 2,
        "sent again with the same key: the hung attempt, then the forward"
    );
    let (_, p) = kiosk_get(&t, KIOSK_1.1, &format!("/kiosk/v1/payments/{id}")).await;
    assert!(
        p["auth_code"].is_string() && p["forwarded_at"].is_string(),
        "{p}"
    );
    // A retry of the kiosk's request still gets its first answer.
    assert_eq!(
        pay_as(&t, KIOSK_1.1, &pay("hang-1", 2_000, "7777")).await,
        b
    );
}

/// A sale of this kiosk, paid by `payments` (id, amount), one line per payment.
fn sale(sale_id: &str, receipt_id: &str, payments: &[(String, i64)]) -> Value {
    let lines: Vec<Value> = payments
        .iter()
        .enumerate()
        .map(|(i, (_, amount))| {
            json!({"line": i + 1, "sku": format!("SKU-{i}"), "description": "Kettle", "category": "household", "qty": 1,
                   "unit_price_minor": amount - 8, "discount_minor": 0, "tax_minor": 8, "returnable": true,
                   "return_window_days": 30, "returned_qty": 0})
        })
        .collect();
    let tenders: Vec<Value> = payments
        .iter()
        .map(|(id, a)| json!({"payment_id": id, "amount_minor": a}))
        .collect();
    json!({"sale_id": sale_id, "receipt_id": receipt_id, "sold_at": "2026-11-25T05:00:00Z", "lines": lines, "tenders": tenders})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_recovery_every_stored_payment_is_forwarded_once_oldest_first_and_declines_reach_reconciliation()
 {
    let sim = simulator(0, 0).await;
    fault(&sim, "payments", json!({"mode": "down"})).await;
    let t = store_with(&sim, false).await;
    load_kiosks(&t, 0).await;
    assert_eq!(
        t.push("staff", &delta(1, vec![staff_record(&LEAD, true)]))
            .await
            .0,
        StatusCode::OK
    );
    load_policy(
        &t,
        1,
        json!({"offline_tx_cap_minor": 5_000, "offline_exposure_cap_minor": 100_000}),
    )
    .await;

    let mut ids = Vec::new();
    for i in 0..12 {
        // 1,251 and 3,351 are declined by the processor (…51), as is a "decline" token.
        let amount = [1_200, 1_251, 800, 3_351][i % 4];
        let mut body = pay(&format!("f{i}"), amount, &format!("{:04}", 2000 + i));
        if i == 10 {
            body["tender"]["token"] = json!("decline-this-token");
        }
        let kiosk = if i % 2 == 0 { KIOSK_1.1 } else { KIOSK_2.1 };
        let b = pay_as(&t, kiosk, &body).await;
        assert_eq!(b["status"], "approved_offline");
        ids.push((b["payment_id"].as_str().unwrap().to_string(), amount, kiosk));
    }
    // The kiosk recorded the sale paid by payment 1 (to be declined): reconciliation shows it.
    let (s, b) = kiosk_post(
        &t,
        KIOSK_2.1,
        "/kiosk/v1/sales",
        &sale("sale-f1", "R-F1", &[(ids[1].0.clone(), ids[1].1)]),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");

    fault(&sim, "payments", json!({"mode": "ok"})).await;
    wait_until("every stored payment is forwarded", async || {
        t.status().await["payments"]["count"] == 0
    })
    .await;

    let auths = authorizations(&sim).await;
    assert_eq!(auths.len(), ids.len(), "one authorisation per payment");
    for ((key, count, req), (id, amount, _)) in auths.iter().zip(&ids) {
        assert_eq!(key, id, "forwarded oldest first");
        assert_eq!(*count, 1, "forwarded exactly once");
        assert_eq!(
            (req["stored"].as_bool(), req["amount_minor"].as_i64()),
            (Some(true), Some(*amount))
        );
        assert!(req["stored_at"].is_string());
    }
    let db = t.db();
    let declined: Vec<String> = column(
        &db,
        "SELECT payment_id FROM payments WHERE status = 'declined_after_forward' ORDER BY created_at",
    );
    let expected: Vec<String> = ids
        .iter()
        .enumerate()
        .filter(|(i, (_, a, _))| *i == 10 || a % 100 == 51)
        .map(|(_, (id, _, _))| id.clone())
        .collect();
    assert_eq!(declined, expected);
    assert_eq!(
        column::<i64>(
            &db,
            "SELECT count(*) FROM payments WHERE status = 'captured'"
        ),
        vec![12 - expected.len() as i64]
    );
    assert_eq!(
        column::<i64>(
            &db,
            "SELECT count(*) FROM journal WHERE lane = 'payments' AND kind IN ('payment.captured', 'payment.declined_after_forward')"
        ),
        vec![12]
    );
    let s = t.status().await;
    assert_eq!(
        s["payments"]["declined_after_forward"].as_i64(),
        Some(expected.len() as i64)
    );
    let (_, p) = kiosk_get(&t, KIOSK_2.1, &format!("/kiosk/v1/payments/{}", ids[1].0)).await;
    assert_eq!(
        (p["status"].as_str(), p["reason"].as_str()),
        (Some("declined_after_forward"), Some("insufficient_funds"))
    );

    let r = reconciliation(&t).await;
    let listed: Vec<&str> = r["payments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["payment_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        expected.iter().map(String::as_str).collect::<Vec<_>>()
    );
    let with_sale = r["payments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["payment_id"] == ids[1].0.as_str())
        .unwrap();
    assert_eq!(with_sale["lane"], "lane-sco-02");
    assert_eq!(with_sale["basket_id"], "basket-f1");
    assert!(with_sale["created_at"].is_string());
    assert_eq!(
        with_sale["sale"]["receipt"]["lines"][0]["description"], "Kettle",
        "{with_sale}"
    );
    let csv = reconciliation_as(&t, "?format=csv").await;
    assert_eq!(
        csv.matches("payment.declined_after_forward").count(),
        expected.len(),
        "{csv}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kiosk_sale_during_an_outage_becomes_a_receipt_at_once_and_survives_a_snapshot_from_central()
 {
    let sim = simulator(0, 0).await;
    fault(&sim, "central", json!({"mode": "down"})).await;
    fault(&sim, "payments", json!({"mode": "down"})).await;
    let t = store_with(&sim, true).await;
    load_kiosks(&t, 0).await;
    load_policy(&t, 1, policy()).await;
    assert_eq!(
        t.push("receipts", &delta(1, receipts("C", 0..3))).await.0,
        StatusCode::OK
    );

    let p1 = pay_as(&t, KIOSK_1.1, &pay("s1", 2_000, "4321")).await;
    let p2 = pay_as(&t, KIOSK_1.1, &pay("s2", 1_500, "8765")).await;
    let declined = pay_as(&t, KIOSK_1.1, &pay("s3", 9_000, "8765")).await;
    let other = pay_as(&t, KIOSK_2.1, &pay("s4", 1_000, "1357")).await;
    let id = |p: &Value| p["payment_id"].as_str().unwrap().to_string();
    assert_eq!(
        (p1["status"].as_str(), declined["status"].as_str()),
        (Some("approved_offline"), Some("declined_offline"))
    );

    // Refusals: a declined payment, another kiosk's payment, amounts that do not add up.
    let refused = |b: &Value| b["error"]["code"].as_str().unwrap_or_default().to_string();
    let (s, b) = kiosk_post(
        &t,
        KIOSK_1.1,
        "/kiosk/v1/sales",
        &sale("bad-1", "R-BAD", &[(id(&declined), 9_000)]),
    )
    .await;
    assert_eq!(
        (s, refused(&b)),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "payment_not_approved".into()
        )
    );
    let (s, b) = kiosk_post(
        &t,
        KIOSK_1.1,
        "/kiosk/v1/sales",
        &sale("bad-2", "R-BAD", &[(id(&other), 1_000)]),
    )
    .await;
    assert_eq!(
        (s, refused(&b)),
        (StatusCode::UNPROCESSABLE_ENTITY, "unknown_payment".into())
    );
    let mut short = sale("bad-3", "R-BAD", &[(id(&p1), 2_000)]);
    short["lines"][0]["unit_price_minor"] = json!(1_000);
    let (s, b) = kiosk_post(&t, KIOSK_1.1, "/kiosk/v1/sales", &short).await;
    assert_eq!(
        (s, refused(&b)),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "amounts_do_not_add_up".into()
        )
    );
    let mut wrong = sale("bad-4", "R-BAD", &[(id(&p1), 2_000)]);
    wrong["tenders"][0]["amount_minor"] = json!(1_999);
    let (s, b) = kiosk_post(&t, KIOSK_1.1, "/kiosk/v1/sales", &wrong).await;
    assert_eq!(
        (s, refused(&b)),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "amounts_do_not_add_up".into()
        )
    );
    assert!(!t.receipt_ids().contains(&"R-BAD".to_string()));

    let good = sale("sale-1", "R-KIOSK-1", &[(id(&p1), 2_000), (id(&p2), 1_500)]);
    let (s, first) = kiosk_post(&t, KIOSK_1.1, "/kiosk/v1/sales", &good).await;
    assert_eq!(s, StatusCode::OK, "{first}");
    assert_eq!(first["total_minor"], 3_500);
    let (s, again) = kiosk_post(&t, KIOSK_1.1, "/kiosk/v1/sales", &good).await;
    assert_eq!(
        (s, &again),
        (StatusCode::OK, &first),
        "idempotent by sale_id"
    );
    let mut changed = good.clone();
    changed["sold_at"] = json!("2026-11-25T05:01:00Z");
    let (s, b) = kiosk_post(&t, KIOSK_1.1, "/kiosk/v1/sales", &changed).await;
    assert_eq!(
        (s, refused(&b)),
        (StatusCode::CONFLICT, "sale_id_reused".into())
    );
    let (s, b) = kiosk_post(
        &t,
        KIOSK_1.1,
        "/kiosk/v1/sales",
        &sale("sale-2", "R-KIOSK-2", &[(id(&p1), 2_000)]),
    )
    .await;
    assert_eq!(
        (s, refused(&b)),
        (StatusCode::CONFLICT, "payment_already_used".into())
    );

    // Findable by its barcode in the receipts replica, shaped like a feed receipt, by card too.
    let db = t.db();
    let doc: String = db
        .query_row(
            "SELECT doc FROM receipts WHERE receipt_id = 'R-KIOSK-1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let doc: Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(
        (
            doc["lane"].as_str(),
            doc["total_minor"].as_i64(),
            doc["currency"].as_str()
        ),
        (Some("lane-sco-01"), Some(3_500), Some("USD"))
    );
    assert_eq!(doc["tenders"][0]["last4"], "4321");
    assert_eq!(doc["lines"][1]["returned_qty"], 0);
    assert_eq!(
        column::<String>(
            &db,
            "SELECT last4 FROM receipt_cards WHERE receipt_id = 'R-KIOSK-1' ORDER BY last4"
        ),
        vec!["4321", "8765"]
    );
    assert_eq!(
        column::<i64>(
            &db,
            "SELECT count(*) FROM journal WHERE lane = 'payments' AND kind = 'sale.recorded'"
        ),
        vec![1]
    );
    assert_eq!(
        t.feed("receipts").await["records"],
        4,
        "the feed's count includes it"
    );

    // A snapshot from central that started before the sale, and one after: it stays.
    let (s, _) = t
        .push(
            "receipts",
            &snapshot_part(2, "snap-a", 1, 2, receipts("D", 0..2)),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let p3 = pay_as(&t, KIOSK_1.1, &pay("s5", 1_000, "2468")).await;
    let (s, b) = kiosk_post(
        &t,
        KIOSK_1.1,
        "/kiosk/v1/sales",
        &sale("sale-3", "R-KIOSK-3", &[(id(&p3), 1_000)]),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, _) = t
        .push(
            "receipts",
            &snapshot_part(3, "snap-a", 2, 2, receipts("D", 2..4)),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let ids = t.receipt_ids();
    assert_eq!(
        ids,
        vec![
            "D000000",
            "D000001",
            "D000002",
            "D000003",
            "R-KIOSK-1",
            "R-KIOSK-3"
        ]
    );
    assert_eq!(t.feed("receipts").await["records"], 6);
    let (s, _) = t
        .push(
            "receipts",
            &snapshot_part(4, "snap-b", 1, 1, receipts("E", 0..1)),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(t.receipt_ids(), vec!["E000000", "R-KIOSK-1", "R-KIOSK-3"]);
    assert_eq!(
        column::<String>(
            &t.db(),
            "SELECT receipt_id FROM receipt_cards WHERE last4 = '2468'"
        ),
        vec!["R-KIOSK-3"]
    );
    assert_eq!(t.feed("receipts").await["records"], 3);
    let dir = t.stop().await;
    let problems = standin::store::maintenance::check(&dir.path().join("standin.db")).unwrap();
    assert!(problems.is_empty(), "standin check: {problems:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn card_data_is_refused_and_never_stored() {
    let sim = simulator(0, 0).await;
    let t = store_with(&sim, false).await;
    load_kiosks(&t, 0).await;
    let mut with_pan = pay("c1", 1_000, "1111");
    with_pan["tender"]["token"] = json!("4111 1111 1111 1111");
    let mut with_cvv = pay("c2", 1_000, "1111");
    with_cvv["tender"]["cvv"] = json!("123");
    let mut with_number = pay("c3", 1_000, "1111");
    with_number["tender"]["card_number"] = json!("x");
    let mut in_basket = pay("c4", 1_000, "1111");
    in_basket["basket_id"] = json!("5555-5555-5555-4444");
    for (body, field) in [
        (with_pan, "tender.token"),
        (with_cvv, "tender.cvv"),
        (with_number, "tender.card_number"),
        (in_basket, "basket_id"),
    ] {
        let (s, b) = kiosk_post(&t, KIOSK_1.1, "/kiosk/v1/payments", &body).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        assert_eq!(
            (b["error"]["code"].as_str(), b["error"]["field"].as_str()),
            (Some("card_data_refused"), Some(field))
        );
        assert!(
            !b.to_string().contains("4111") && !b.to_string().contains("5555"),
            "never echoed"
        );
    }
    let mut sale_pan = sale("x", "R-X", &[("p".into(), 100)]);
    sale_pan["lines"][0]["description"] = json!("4111111111111111");
    let (s, b) = kiosk_post(&t, KIOSK_1.1, "/kiosk/v1/sales", &sale_pan).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("card_data_refused"))
    );
    let db = t.db();
    assert_eq!(column::<i64>(&db, "SELECT count(*) FROM payments"), vec![0]);
    assert!(authorizations(&sim).await.is_empty());
    let bytes = std::fs::read(t.db_path()).unwrap();
    let wal = std::fs::read(t.db_path().with_extension("db-wal")).unwrap_or_default();
    for hay in [bytes, wal] {
        assert!(
            !hay.windows(19).any(|w| w == b"4111 1111 1111 1111"),
            "no card number on disk"
        );
        assert!(
            !hay.windows(19).any(|w| w == b"5555-5555-5555-4444"),
            "no card number on disk"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_duplicates_in_stand_in_mode_also_make_one_payment() {
    let sim = simulator(0, 0).await;
    fault(&sim, "payments", json!({"mode": "down"})).await;
    let t = Arc::new(store_with(&sim, false).await);
    load_kiosks(&t, 0).await;
    load_policy(&t, 1, policy()).await;
    let body = pay("dup-off", 4_000, "9999");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let (t, body) = (t.clone(), body.clone());
        tasks.spawn(async move { kiosk_post(&t, KIOSK_1.1, "/kiosk/v1/payments", &body).await });
    }
    let answers = tasks.join_all().await;
    assert!(answers.iter().all(|a| a == &answers[0]), "{answers:?}");
    assert_eq!(answers[0].1["status"], "approved_offline");
    assert_eq!(
        column::<i64>(&t.db(), "SELECT count(*) FROM payments"),
        vec![1]
    );
    assert_eq!(
        t.status().await["payments"]["total_minor"],
        4_000,
        "counted once"
    );
}

/// The processor down, a store on a clock the test moves, both kiosks and a lead.
async fn processor_down_on_a_manual_clock()
-> (Simulator, Arc<standin::clock::ManualClock>, TestStore) {
    let sim = simulator(0, 0).await;
    fault(&sim, "payments", json!({"mode": "down"})).await;
    let clock = Arc::new(standin::clock::ManualClock::new(chrono::Utc::now()));
    let payments_url = sim.payments_url();
    let t = TestStore::start_with_clock(clock.clone(), move |c| {
        c.payments.url = Some(payments_url);
        c.payments.timeout_ms = 400;
        c.payments.health_interval_secs = 1;
    })
    .await;
    load_kiosks(&t, 0).await;
    assert_eq!(
        t.push("staff", &delta(1, vec![staff_record(&LEAD, true)]))
            .await
            .0,
        StatusCode::OK
    );
    (sim, clock, t)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_payment_warns_before_its_deadline_and_expires_after_it_into_reconciliation() {
    let (sim, clock, t) = processor_down_on_a_manual_clock().await;
    load_policy(&t, 1, json!({"offline_tx_cap_minor": 5_000, "offline_exposure_cap_minor": 50_000, "forward_deadline_hours": 12})).await;
    let b = pay_as(&t, KIOSK_1.1, &pay("exp-1", 3_000, "5151")).await;
    assert_eq!(b["status"], "approved_offline");
    let id = b["payment_id"].as_str().unwrap().to_string();
    let q = t.status().await["payments"].clone();
    assert_eq!(q["deadline_warning"], false);
    let left = q["tightest_deadline_secs"].as_i64().unwrap();
    assert!(
        (12 * 3600 - 1..=12 * 3600).contains(&left),
        "12 h to go: {q}"
    );

    clock.advance(chrono::Duration::hours(7));
    let q = t.status().await["payments"].clone();
    assert_eq!(q["deadline_warning"], true, "warned 6 h before: {q}");
    let metrics = t
        .client
        .get(format!("{}/metrics", t.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("standin_payments_deadline_warning 1"));

    clock.advance(chrono::Duration::hours(5) + chrono::Duration::seconds(1));
    t.wait_for_status("the payment expires", |s| s["payments"]["expired"] == 1)
        .await;
    let (_, p) = kiosk_get(&t, KIOSK_1.1, &format!("/kiosk/v1/payments/{id}")).await;
    assert_eq!(
        (p["status"].as_str(), p["reason"].as_str()),
        (Some("expired"), Some("forward_deadline_passed"))
    );
    let s = t.status().await;
    assert_eq!(
        (
            s["payments"]["count"].as_i64(),
            s["payments"]["deadline_warning"].as_bool()
        ),
        (Some(0), Some(false))
    );
    let r = reconciliation(&t).await;
    assert_eq!(r["payments"][0]["payment_id"], id.as_str());
    assert_eq!(r["payments"][0]["status"], "expired");
    assert_eq!(
        column::<i64>(
            &t.db(),
            "SELECT count(*) FROM journal WHERE lane = 'payments' AND kind = 'payment.expired'"
        ),
        vec![1]
    );
    // Past its deadline it is never forwarded, even when the processor is back.
    fault(&sim, "payments", json!({"mode": "ok"})).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(authorizations(&sim).await.is_empty());
}

/// Expired payments were never forwarded, so never collected: they stay in the store's
/// exposure for the rest of the outage, and a long outage does not refill the cap every
/// `forward_deadline_hours`. Once the processor is reachable again the next outage starts
/// from nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_that_expired_in_an_outage_still_count_against_its_exposure_cap() {
    let (sim, clock, t) = processor_down_on_a_manual_clock().await;
    load_policy(&t, 1, json!({"offline_tx_cap_minor": 5_000, "offline_exposure_cap_minor": 10_000, "forward_deadline_hours": 12})).await;
    for (key, card) in [("cap-1", "1111"), ("cap-2", "2222")] {
        assert_eq!(
            pay_as(&t, KIOSK_1.1, &pay(key, 5_000, card)).await["status"],
            "approved_offline"
        );
    }
    let full = pay_as(&t, KIOSK_1.1, &pay("cap-3", 1_000, "3333")).await;
    assert_eq!(
        (full["status"].as_str(), full["reason"].as_str()),
        (Some("declined_offline"), Some("store_exposure_cap"))
    );

    clock.advance(chrono::Duration::hours(12) + chrono::Duration::seconds(1));
    t.wait_for_status("both expire", |s| s["payments"]["expired"] == 2)
        .await;
    let after = pay_as(&t, KIOSK_1.1, &pay("cap-4", 1_000, "4444")).await;
    assert_eq!(
        (after["status"].as_str(), after["reason"].as_str()),
        (Some("declined_offline"), Some("store_exposure_cap")),
        "the expired 100.00 is still this outage's loss"
    );

    // The processor answers again: the next outage has its whole cap.
    fault(&sim, "payments", json!({"mode": "ok"})).await;
    // The breaker's next probe is due on the store's (manual) clock.
    clock.advance(chrono::Duration::minutes(10));
    t.wait_for_status("processor up", |s| {
        s["upstreams"]["payments"]["state"] == "up"
    })
    .await;
    assert_eq!(
        pay_as(&t, KIOSK_1.1, &pay("cap-5", 1_000, "5555")).await["status"],
        "approved"
    );
    fault(&sim, "payments", json!({"mode": "down"})).await;
    clock.advance(chrono::Duration::seconds(1));
    let next = pay_as(&t, KIOSK_1.1, &pay("cap-6", 1_000, "6666")).await;
    assert_eq!(next["status"], "approved_offline", "{next}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decline_after_an_unknown_outcome_is_asked_again_and_an_approval_the_processor_made_is_reversed()
 {
    let sim = simulator(0, 0).await;
    let t = store_with(&sim, false).await;
    load_kiosks(&t, 0).await;
    // No offline policy: a payment whose send times out is declined offline...
    fault(&sim, "payments", json!({"mode": "hang"})).await;
    let b = pay_as(&t, KIOSK_1.1, &pay("rev-1", 2_500, "3030")).await;
    assert_eq!(
        (b["status"].as_str(), b["reason"].as_str()),
        (Some("declined_offline"), Some("offline_policy_missing"))
    );
    let id = b["payment_id"].as_str().unwrap().to_string();
    assert_eq!(t.status().await["payments"]["unresolved"], 1);
    // ...but the processor had received it and approved it: the customer must not pay for
    // goods they did not get.
    fault(&sim, "payments", json!({"mode": "ok"})).await;
    t.wait_for_status("the unknown outcome is resolved", |s| {
        s["payments"]["unresolved"] == 0
    })
    .await;
    let v: Value = reqwest::get(format!("{}/admin/received", sim.admin_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let auths = v["authorizations"].as_array().unwrap();
    assert_eq!(
        auths.len(),
        1,
        "asked again with the same key, never a new one"
    );
    assert_eq!(auths[0]["key"], id.as_str());
    let refunds = v["refunds"].as_array().unwrap();
    assert_eq!(refunds.len(), 1, "the approval is reversed once: {v}");
    assert_eq!(refunds[0]["request"]["amount_minor"], 2_500);
    assert_eq!(
        refunds[0]["request"]["authorization"],
        auths[0]["response"]["auth_code"]
    );
    assert_eq!(
        column::<String>(
            &t.db(),
            "SELECT kind FROM journal WHERE lane = 'payments' ORDER BY seq"
        ),
        vec!["payment.declined_offline", "payment.reversed"]
    );
    let (_, p) = kiosk_get(&t, KIOSK_1.1, &format!("/kiosk/v1/payments/{id}")).await;
    assert_eq!(
        p["status"], "declined_offline",
        "still declined for the kiosk"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_409_or_401_from_the_processor_is_not_its_decline_of_a_stored_payment() {
    let sim = simulator(0, 0).await;
    fault(&sim, "payments", json!({"mode": "down"})).await;
    let t = store_with(&sim, false).await;
    load_kiosks(&t, 0).await;
    load_policy(
        &t,
        1,
        json!({"offline_tx_cap_minor": 5_000, "offline_exposure_cap_minor": 50_000}),
    )
    .await;
    let b = pay_as(&t, KIOSK_1.1, &pay("k409", 2_000, "4090")).await;
    assert_eq!(b["status"], "approved_offline");
    let id = b["payment_id"].as_str().unwrap().to_string();
    let db = t.db();
    for status in [409, 401] {
        // The key in use (a retry that caught an earlier attempt), our own credentials: no
        // answer about the card. The payment stays stored and goes again with its key.
        fault(&sim, "payments", json!({"mode": "error", "status": status})).await;
        let before: i64 = column(
            &db,
            &format!("SELECT forward_attempts FROM payments WHERE payment_id = '{id}'"),
        )[0];
        wait_until("a forward attempt", async || {
            column::<i64>(
                &db,
                &format!("SELECT forward_attempts FROM payments WHERE payment_id = '{id}'"),
            )[0] > before
        })
        .await;
        assert_eq!(
            column::<String>(
                &db,
                &format!("SELECT status FROM payments WHERE payment_id = '{id}'")
            ),
            vec!["approved_offline".to_string()],
            "HTTP {status} is not a decline"
        );
    }
    fault(&sim, "payments", json!({"mode": "ok"})).await;
    wait_until("the payment is captured", async || {
        kiosk_get(&t, KIOSK_1.1, &format!("/kiosk/v1/payments/{id}"))
            .await
            .1["status"]
            == "captured"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_during_an_outage_does_not_restart_the_velocity_window_nor_the_offline_clock() {
    let sim = simulator(0, 0).await;
    fault(&sim, "payments", json!({"mode": "down"})).await;
    let clock = Arc::new(standin::clock::ManualClock::new(chrono::Utc::now()));
    let start = |dir: Option<std::path::PathBuf>| {
        let (clock, payments_url) = (clock.clone(), sim.payments_url());
        TestStore::start_with_clock(clock, move |c| {
            if let Some(d) = dir {
                c.data_dir = d;
            }
            c.payments.url = Some(payments_url);
            c.payments.timeout_ms = 400;
            c.payments.health_interval_secs = 1;
        })
    };
    let t = start(None).await;
    load_kiosks(&t, 0).await;
    load_policy(
        &t,
        1,
        json!({"offline_tx_cap_minor": 5_000, "offline_exposure_cap_minor": 50_000,
               "card_velocity_count": 1, "offline_max_hours": 1}),
    )
    .await;
    let b = pay_as(&t, KIOSK_1.1, &pay("rs-1", 1_000, "1212")).await;
    assert_eq!(b["status"], "approved_offline", "{b}");

    // The processor has not been heard from since: a restart changes nothing about that.
    clock.advance(chrono::Duration::minutes(1));
    let dir = t.stop().await;
    let t = start(Some(dir.path().to_path_buf())).await;
    let b = pay_as(&t, KIOSK_2.1, &pay("rs-2", 1_000, "1212")).await;
    assert_eq!(
        (b["status"].as_str(), b["reason"].as_str()),
        (Some("declined_offline"), Some("card_velocity_count")),
        "the same card, still within the outage: {b}"
    );

    clock.advance(chrono::Duration::hours(2));
    let b = pay_as(&t, KIOSK_1.1, &pay("rs-3", 1_000, "3434")).await;
    assert_eq!(b["reason"], "offline_too_long", "{b}");
    t.stop().await;
    let t = start(Some(dir.path().to_path_buf())).await;
    let b = pay_as(&t, KIOSK_1.1, &pay("rs-4", 1_000, "5656")).await;
    assert_eq!(
        (b["status"].as_str(), b["reason"].as_str()),
        (Some("declined_offline"), Some("offline_too_long")),
        "two hours without the processor, restart or not: {b}"
    );
    t.stop().await;
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_forward_deadline_from_hq_does_not_break_stand_in() {
    let sim = simulator(0, 0).await;
    fault(&sim, "payments", json!({"mode": "down"})).await;
    let t = store_with(&sim, false).await;
    load_kiosks(&t, 0).await;
    load_policy(
        &t,
        1,
        json!({"offline_tx_cap_minor": 5_000, "offline_exposure_cap_minor": 50_000,
               "forward_deadline_hours": 9_000_000_000_000_000i64}),
    )
    .await;
    let b = pay_as(&t, KIOSK_1.1, &pay("huge-1", 1_000, "8080")).await;
    assert_eq!(b["status"], "approved_offline", "{b}");
    let q = t.status().await["payments"].clone();
    assert!(q["tightest_deadline_secs"].as_i64().unwrap() > 0, "{q}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_disabled_by_a_batch_whose_sender_hung_up_is_still_refused() {
    let sim = simulator(0, 0).await;
    fault(&sim, "payments", json!({"mode": "down"})).await;
    let t = store_with(&sim, false).await;
    load_kiosks(&t, 0).await;
    // The kiosk is known to the in-memory cache.
    let (s, _) = kiosk_get(&t, KIOSK_1.1, "/kiosk/v1/device").await;
    assert_eq!(s, StatusCode::OK);

    // HQ's request is dropped once its batch is committed, before the handler resumes (a
    // client that timed out and hung up).
    let body = serde_json::to_vec(&delta(2, vec![device_record(KIOSK_1, false)])).unwrap();
    let mut apply = Box::pin(standin::feeds::receive_batch(
        &t.state,
        standin::feeds::Feed::Devices,
        body.into(),
        "hq-sync",
    ));
    let db = t.db();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let active: Vec<i64> = column(
            &db,
            &format!(
                "SELECT active FROM devices WHERE device_id = '{}'",
                KIOSK_1.0
            ),
        );
        if active == vec![0] {
            break;
        }
        assert!(Instant::now() < deadline, "the batch was never applied");
        let ready =
            std::future::poll_fn(|cx| std::task::Poll::Ready(apply.as_mut().poll(cx).is_ready()))
                .await;
        assert!(!ready, "the handler finished before it could be dropped");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    drop(apply);
    wait_until("the disabled kiosk is refused", async || {
        kiosk_get(&t, KIOSK_1.1, "/kiosk/v1/device").await.0 == StatusCode::UNAUTHORIZED
    })
    .await;
    assert_eq!(
        kiosk_get(&t, KIOSK_2.1, "/kiosk/v1/device").await.0,
        StatusCode::OK
    );
}

/// A processor that hangs on the first authorisation (after acting on it: approved), answers
/// its first decision afterwards, and declines every refund.
async fn processor_refusing_refunds() -> String {
    use axum::routing::{get, post};
    let first = Arc::new(AtomicBool::new(true));
    let app = axum::Router::new()
        .route("/v1/health", get(|| async { "ok" }))
        .route(
            "/v1/authorizations",
            post(move || {
                let first = first.clone();
                async move {
                    if first.swap(false, Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_secs(3)).await;
                    }
                    axum::Json(json!({"status": "approved", "auth_code": "AUTH01"}))
                }
            }),
        )
        .route(
            "/v1/refunds",
            post(|| async {
                axum::Json(json!({"status": "declined", "reason": "refund_not_allowed"}))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reversal_the_processor_declines_is_not_recorded_as_done_and_needs_a_person() {
    let url = processor_refusing_refunds().await;
    let t = TestStore::start_with(move |c| {
        c.payments.url = Some(url);
        c.payments.timeout_ms = 400;
        c.payments.health_interval_secs = 1;
    })
    .await;
    load_kiosks(&t, 0).await;
    assert_eq!(
        t.push("staff", &delta(1, vec![staff_record(&LEAD, true)]))
            .await
            .0,
        StatusCode::OK
    );
    // No offline policy: the timed-out attempt is declined offline, though approved.
    let b = pay_as(&t, KIOSK_1.1, &pay("rr-1", 2_500, "6060")).await;
    assert_eq!(b["status"], "declined_offline", "{b}");
    let id = b["payment_id"].as_str().unwrap().to_string();
    t.wait_for_status("the unknown outcome is resolved", |s| {
        s["payments"]["unresolved"] == 0
    })
    .await;
    let kinds = column::<String>(
        &t.db(),
        "SELECT kind FROM journal WHERE lane = 'payments' ORDER BY seq",
    );
    assert_eq!(
        kinds,
        vec!["payment.declined_offline", "payment.reversal_refused"],
        "the customer was charged and not refunded: never journaled as reversed"
    );
    let r = reconciliation(&t).await;
    let listed = r["payments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["payment_id"] == id.as_str())
        .cloned();
    let listed = listed.unwrap_or_else(|| panic!("a person must refund it: {r}"));
    assert_eq!(listed["status"], "reversal_refused", "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_left_pending_by_a_crash_is_decided_after_the_restart_and_forwarded_with_its_key()
{
    let sim = simulator(0, 0).await;
    fault(&sim, "payments", json!({"mode": "down"})).await;
    let t = store_with(&sim, false).await;
    load_kiosks(&t, 0).await;
    load_policy(
        &t,
        1,
        json!({"offline_tx_cap_minor": 5_000, "offline_exposure_cap_minor": 50_000}),
    )
    .await;
    let dir = t.stop().await;
    // What a process that died between claiming the key and hearing the processor leaves.
    let id = "01930000-0000-7000-8000-00000000c0de";
    {
        let db = rusqlite::Connection::open(dir.path().join("standin.db")).unwrap();
        db.execute(
            "INSERT INTO payments (payment_id, device_id, lane, idempotency_key, body_sha256, basket_id,
                amount_minor, currency, tender_kind, card_fingerprint, tender, status, offline, sent, created_at)
             VALUES (?1, ?2, 'lane-sco-01', 'crash-1', 'h', 'basket-crash-1', 2000, 'USD', 'card_token', 'fp',
                     '{\"kind\":\"card_token\",\"token\":\"tok_crash\"}', 'pending', 0, 1, '2026-01-01T00:00:00.000Z')",
            rusqlite::params![id, KIOSK_1.0],
        )
        .unwrap();
    }
    fault(&sim, "payments", json!({"mode": "ok"})).await;
    let payments_url = sim.payments_url();
    let data = dir.path().to_path_buf();
    let t = TestStore::start_with(move |c| {
        c.data_dir = data;
        c.payments.url = Some(payments_url);
        c.payments.timeout_ms = 400;
        c.payments.health_interval_secs = 1;
    })
    .await;
    wait_until("the crashed attempt is decided and forwarded", async || {
        kiosk_get(&t, KIOSK_1.1, &format!("/kiosk/v1/payments/{id}"))
            .await
            .1["status"]
            == "captured"
    })
    .await;
    let auths = authorizations(&sim).await;
    assert_eq!(auths.len(), 1, "{auths:?}");
    assert_eq!(auths[0].0, id, "with the key claimed before the crash");
    let db = rusqlite::Connection::open(dir.path().join("standin.db")).unwrap();
    assert_eq!(
        column::<String>(
            &db,
            "SELECT kind FROM journal WHERE lane = 'payments' ORDER BY seq"
        ),
        vec!["payment.approved_offline", "payment.captured"]
    );
    t.stop().await;
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_that_refuses_our_credentials_is_unreachable_not_an_unknown_outcome() {
    let sim = simulator(0, 0).await;
    let t = store_with(&sim, false).await;
    load_kiosks(&t, 0).await;
    load_policy(&t, 1, policy()).await;
    // 401: the processor did not act on it. Stand-in decides, and nothing is left to be
    // asked again (which would authorise it for the first time, then refund it).
    fault(&sim, "payments", json!({"mode": "error", "status": 401})).await;
    let b = pay_as(&t, KIOSK_1.1, &pay("cred-1", 9_000, "4011")).await;
    assert_eq!(
        (b["status"].as_str(), b["reason"].as_str()),
        (
            Some("declined_offline"),
            Some("over_offline_transaction_cap")
        ),
        "{b}"
    );
    assert_eq!(t.status().await["payments"]["unresolved"], 0);
    assert_eq!(column::<i64>(&t.db(), "SELECT sent FROM payments"), vec![0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_card_written_differently_is_still_the_same_card_for_velocity() {
    let sim = simulator(0, 0).await;
    fault(&sim, "payments", json!({"mode": "down"})).await;
    let t = store_with(&sim, false).await;
    load_kiosks(&t, 0).await;
    load_policy(&t, 1, policy()).await;
    let mut answers = Vec::new();
    for (i, brand) in ["visa", " VISA", "Visa "].into_iter().enumerate() {
        let mut body = pay(&format!("same-{i}"), 1_000, "2222");
        body["tender"]["brand"] = json!(brand);
        answers.push(pay_as(&t, KIOSK_1.1, &body).await["reason"].clone());
    }
    assert_eq!(
        answers,
        vec![Value::Null, Value::Null, json!("card_velocity_count")],
        "two per card (policy): the third is the same card"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_whose_kiosk_never_recorded_the_sale_is_listed_for_a_person_after_an_hour() {
    let (_sim, clock, t) = processor_down_on_a_manual_clock().await;
    load_policy(&t, 1, json!({"offline_tx_cap_minor": 5_000, "offline_exposure_cap_minor": 50_000, "forward_deadline_hours": 48})).await;
    let with_sale = pay_as(&t, KIOSK_1.1, &pay("ns-1", 1_200, "1111")).await;
    let without = pay_as(&t, KIOSK_1.1, &pay("ns-2", 1_500, "2222")).await;
    assert_eq!(
        (with_sale["status"].as_str(), without["status"].as_str()),
        (Some("approved_offline"), Some("approved_offline"))
    );
    let paid = with_sale["payment_id"].as_str().unwrap().to_string();
    let (s, b) = kiosk_post(
        &t,
        KIOSK_1.1,
        "/kiosk/v1/sales",
        &sale("sale-ns-1", "R-NS-1", &[(paid, 1_200)]),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // A kiosk posts its sale right after the payment: not yet a question.
    assert_eq!(reconciliation(&t).await["payments"], json!([]));
    clock.advance(chrono::Duration::minutes(61));
    let r = reconciliation(&t).await;
    let listed: Vec<(&str, &str)> = r["payments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["payment_id"].as_str().unwrap_or_default(),
                p["status"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [(without["payment_id"].as_str().unwrap(), "paid_without_sale")],
        "{r}"
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_whose_health_check_passes_while_authorisations_fail_does_not_restart_the_velocity_window()
 {
    let sim = simulator(0, 0).await;
    // A partial outage: /v1/health answers 200, every authorisation a 503.
    fault(
        &sim,
        "payments",
        json!({"mode": "error", "status": 503, "health_ok": true}),
    )
    .await;
    let t = store_with(&sim, false).await;
    load_kiosks(&t, 0).await;
    load_policy(
        &t,
        1,
        json!({"offline_tx_cap_minor": 5_000, "offline_exposure_cap_minor": 50_000,
               "card_velocity_count": 1}),
    )
    .await;
    let b = pay_as(&t, KIOSK_1.1, &pay("ph-1", 1_000, "1212")).await;
    assert_eq!(b["status"], "approved_offline", "{b}");
    // Health checks (every second here) pass meanwhile; none is an authorisation answered.
    wait_until("a health check passes after the payment", async || {
        let s = t.status().await;
        s["upstreams"]["payments"]["last_success"]
            .as_str()
            .is_some_and(|at| {
                chrono::DateTime::parse_from_rfc3339(at)
                    .is_ok_and(|at| at > chrono::Utc::now() - chrono::Duration::milliseconds(900))
            })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let b = pay_as(&t, KIOSK_2.1, &pay("ph-2", 1_000, "1212")).await;
    assert_eq!(
        (b["status"].as_str(), b["reason"].as_str()),
        (Some("declined_offline"), Some("card_velocity_count")),
        "the same card in the same outage, health checks or not: {b}"
    );
    t.stop().await;
}
