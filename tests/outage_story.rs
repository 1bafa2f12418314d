//! The whole outage story across issues: with central and the processor both down, a kiosk
//! takes a card payment in stand-in and records the sale; the customer walks to the service
//! desk with the receipt during the same outage, the associate finds the sale by its barcode
//! and takes a return to the card. When both come back, central holds every journal entry
//! once, the processor holds the stored authorisation and the refund once each, with their
//! keys.

mod common;

use std::time::{Duration, Instant};

use common::people::*;
use common::sim::{admin, fault, received_journal, simulator};
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn as_kiosk(t: &TestStore, path: &str, body: &Value) -> (StatusCode, Value) {
    t.kiosk_post(KIOSK_1.1, path, body).await
}

async fn as_desk(
    t: &TestStore,
    b: &Browser,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = t
        .client
        .request(method, format!("{}{path}", t.url))
        .header("cookie", &b.cookie)
        .header("x-csrf-token", &b.csrf);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let r = req.send().await.unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// (key, times it arrived) of the processor's authorisations or refunds.
async fn processor_keys(sim: &standin::simulator::Simulator, what: &str) -> Vec<(String, u64)> {
    let v = admin(sim, reqwest::Method::GET, "/admin/received", json!(null)).await;
    v[what]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r| {
            (
                r["key"].as_str().unwrap_or_default().to_string(),
                r["count"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// Central and the processor both down, Standin pointed at them, staff and policy loaded.
async fn outage() -> (standin::simulator::Simulator, TestStore) {
    let sim = simulator(0, 0).await;
    fault(&sim, "central", json!({"mode": "down"})).await;
    fault(&sim, "payments", json!({"mode": "down"})).await;
    let (central, payments) = (sim.central_url(), sim.payments_url());
    let t = TestStore::start_with(move |c| {
        c.central.url = Some(central);
        c.payments.url = Some(payments);
        c.feeds.pull = false;
        c.central.timeout_ms = 400;
        c.payments.timeout_ms = 400;
        c.central.health_interval_secs = 1;
        c.payments.health_interval_secs = 1;
        c.journal.retry_base_ms = 50;
        c.journal.retry_cap_ms = 300;
        c.journal.idle_poll_ms = 50;
    })
    .await;
    load_people(&t).await;
    let policy = json!({
        "offline_tx_cap_minor": 10_000, "offline_exposure_cap_minor": 50_000,
        "card_velocity_count": 3, "card_velocity_amount_minor": 20_000,
        "offline_max_hours": 24, "offline_tenders": ["card_token", "p2pe"],
        "forward_deadline_hours": 48,
        "refund_cap_associate_minor": 5_000, "offline_refund_budget_minor": 100_000,
        "no_receipt_returns_offline": "refuse"
    });
    let upserts: Vec<Value> = policy
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect();
    assert_eq!(t.push("policy", &delta(1, upserts)).await.0, StatusCode::OK);

    (sim, t)
}

/// A kiosk's card payment (approved offline: the processor is down) and the sale it paid
/// for, a kettle and two mugs (32.40), as receipt `receipt_id`. Returns the payment's id.
async fn kiosk_sale(t: &TestStore, n: u32, token: &str, receipt_id: &str) -> String {
    // The kiosk, with both upstreams down: a stand-in approval, then the sale.
    let (s, paid) = as_kiosk(
        t,
        "/kiosk/v1/payments",
        &json!({"idempotency_key": format!("lane4-{n:04}"), "basket_id": format!("basket-{n:04}"), "amount_minor": 3_240, "currency": "USD",
                "tender": {"kind": "card_token", "token": token, "brand": "visa", "last4": "4242",
                           "exp_month": 12, "exp_year": 2029, "entry_mode": "contactless"}}),
    )
    .await;
    assert_eq!(
        (s, paid["status"].as_str()),
        (StatusCode::OK, Some("approved_offline")),
        "{paid}"
    );
    let payment_id = paid["payment_id"].as_str().unwrap().to_string();
    let sold_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (s, sale) = as_kiosk(
        t,
        "/kiosk/v1/sales",
        &json!({"sale_id": format!("sale-story-{n}"), "receipt_id": receipt_id, "sold_at": sold_at,
                "lines": [
                    {"line": 1, "sku": "KETTLE-1", "description": "Kettle", "category": "household", "qty": 1,
                     "unit_price_minor": 2_000, "discount_minor": 0, "tax_minor": 160, "returnable": true,
                     "return_window_days": 30, "returned_qty": 0},
                    {"line": 2, "sku": "MUG-2", "description": "Mug", "category": "household", "qty": 2,
                     "unit_price_minor": 500, "discount_minor": 0, "tax_minor": 80, "returnable": true,
                     "return_window_days": 30, "returned_qty": 0}],
                "tenders": [{"payment_id": payment_id, "amount_minor": 3_240}]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{sale}");

    payment_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kiosk_sale_made_in_an_outage_is_returned_at_the_desk_in_the_same_outage_and_all_of_it_reaches_central_and_the_processor_once()
 {
    let (sim, t) = outage().await;
    let payment_id = kiosk_sale(&t, 1, "tok_story", "R-SCO-0001").await;

    // The desk, same outage: scan the receipt's barcode, see what can come back, return it.
    let desk = browser(&t, &ASSOCIATE).await;
    let (s, found) = as_desk(
        &t,
        &desk,
        reqwest::Method::GET,
        "/api/v1/receipts?q=R-SCO-0001",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{found}");
    let ids: Vec<&str> = found["receipts"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["receipt_id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, ["R-SCO-0001"], "found by its barcode: {found}");
    let (s, receipt) = as_desk(
        &t,
        &desk,
        reqwest::Method::GET,
        "/api/v1/receipts/R-SCO-0001",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{receipt}");
    assert_eq!(receipt["lines"][1]["returnable_qty"], 2, "{receipt}");
    // The card was approved offline and the processor has not confirmed it: cash or store
    // credit for it now would hand out money the store may never get.
    for method in ["cash", "store_credit"] {
        let (s, refused) = as_desk(
            &t,
            &desk,
            reqwest::Method::POST,
            "/api/v1/returns",
            Some(json!({"receipt_id": "R-SCO-0001", "lines": [{"line": 2, "qty": 1, "reason": "chipped"}],
                        "refund": {"method": method}})),
        )
        .await;
        assert_eq!(
            (
                s,
                refused["error"]["code"].as_str(),
                refused["error"]["field"].as_str()
            ),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("payment_not_collected_yet"),
                Some("refund.method")
            ),
            "{refused}"
        );
    }
    let (s, taken) = as_desk(
        &t,
        &desk,
        reqwest::Method::POST,
        "/api/v1/returns",
        Some(json!({"receipt_id": "R-SCO-0001", "lines": [{"line": 2, "qty": 1, "reason": "chipped"}],
                    "refund": {"method": "original_tender"}})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{taken}");
    // One mug: 500 and its share of the line's tax, 40; to the card, queued.
    assert_eq!(taken["refund_amount_minor"], 540, "{taken}");
    assert_eq!(taken["offline"], true, "{taken}");
    let (_, again) = as_desk(
        &t,
        &desk,
        reqwest::Method::GET,
        "/api/v1/receipts/R-SCO-0001",
        None,
    )
    .await;
    assert_eq!(
        again["lines"][1]["returnable_qty"], 1,
        "the returned mug is counted at once: {again}"
    );

    // Both come back: the stored payment goes forward, the refund goes, the journal drains.
    fault(&sim, "central", json!({"mode": "ok"})).await;
    fault(&sim, "payments", json!({"mode": "ok"})).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = t.status().await;
        let pending: i64 = st["journal"]["lanes"]
            .as_object()
            .map(|l| l.values().map(|v| v["pending"].as_i64().unwrap_or(0)).sum())
            .unwrap_or(1);
        let auths = processor_keys(&sim, "authorizations").await;
        let refunds = processor_keys(&sim, "refunds").await;
        if pending == 0 && !auths.is_empty() && !refunds.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "never drained: {st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let any stray duplicate arrive before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let auths = processor_keys(&sim, "authorizations").await;
    assert_eq!(
        auths,
        [(payment_id.clone(), 1)],
        "the stored payment, once, with its own key"
    );
    let refunds = processor_keys(&sim, "refunds").await;
    assert_eq!(refunds.len(), 1, "one refund: {refunds:?}");
    assert_eq!(refunds[0].1, 1, "sent once: {refunds:?}");
    assert_eq!(
        Some(refunds[0].0.as_str()),
        taken["refunds"][0]["refund_key"].as_str(),
        "with the key the desk answered"
    );

    // The refund went only once the payment it goes back to was captured.
    let (captured_at, refunded_at): (String, String) = t
        .db()
        .query_row(
            "SELECT p.forwarded_at, f.settled_at FROM payments p, return_refunds f
             WHERE p.payment_id = ?1 AND p.status = 'captured'",
            [&payment_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(captured_at <= refunded_at, "{captured_at} > {refunded_at}");

    let received = received_journal(&sim).await;
    let mut got: Vec<&str> = received.iter().filter_map(|e| e["id"].as_str()).collect();
    got.sort();
    let before = got.len();
    got.dedup();
    assert_eq!(got.len(), before, "central holds an entry twice");
    let mut written: Vec<String> = column(&t.db(), "SELECT id FROM journal");
    written.sort();
    assert_eq!(
        got, written,
        "central holds exactly what this store journaled"
    );
    let kinds: Vec<&str> = received.iter().filter_map(|e| e["kind"].as_str()).collect();
    for kind in ["sale", "return", "refund"] {
        assert!(
            kinds.iter().any(|k| k.contains(kind)),
            "central got no {kind} entry: {kinds:?}"
        );
    }
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_to_a_kiosk_payment_declined_after_forwarding_never_reaches_the_processor_and_goes_to_a_person()
 {
    let (sim, t) = outage().await;
    // The processor will decline this card when the stored payment is forwarded.
    let payment_id = kiosk_sale(&t, 2, "decline_story", "R-SCO-0002").await;
    let desk = browser(&t, &ASSOCIATE).await;
    let mug = json!({"receipt_id": "R-SCO-0002", "lines": [{"line": 2, "qty": 1, "reason": "chipped"}],
                     "refund": {"method": "original_tender"}});
    let (s, taken) = as_desk(
        &t,
        &desk,
        reqwest::Method::POST,
        "/api/v1/returns",
        Some(mug.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{taken}");
    assert_eq!(taken["refunds"][0]["state"], "queued", "{taken}");

    fault(&sim, "payments", json!({"mode": "ok"})).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let state: String = t
            .db()
            .query_row(
                "SELECT state FROM return_refunds WHERE return_id = ?1",
                [taken["return_id"].as_str().unwrap()],
                |r| r.get(0),
            )
            .unwrap();
        if state == "failed" {
            break;
        }
        assert!(Instant::now() < deadline, "refund still {state}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status: String = t
        .db()
        .query_row(
            "SELECT status FROM payments WHERE payment_id = ?1",
            [&payment_id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(status, "declined_after_forward");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        processor_keys(&sim, "refunds").await.is_empty(),
        "a refund of money never collected reached the processor"
    );
    // Reconciliation shows both the declined payment and the refund that cannot go.
    let manager = browser(&t, &MANAGER).await;
    let (s, rec) = as_desk(
        &t,
        &manager,
        reqwest::Method::GET,
        "/api/v1/reconciliation",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{rec}");
    let text = rec.to_string();
    assert!(text.contains("payment_not_collected"), "{rec}");
    assert!(text.contains(&payment_id), "{rec}");
    // Another return of that sale is refused whatever the method.
    for method in ["original_tender", "cash"] {
        let mut body = mug.clone();
        body["refund"]["method"] = json!(method);
        let (s, refused) = as_desk(
            &t,
            &desk,
            reqwest::Method::POST,
            "/api/v1/returns",
            Some(body),
        )
        .await;
        assert_eq!(
            (s, refused["error"]["code"].as_str()),
            (StatusCode::CONFLICT, Some("payment_not_collected")),
            "{refused}"
        );
    }
    t.stop().await;
}
