//! No PIN, pepper or token in clear anywhere Standin writes: the database, its WAL, a backup,
//! or the logs (JSON at debug level), after every kind of credential has been used,
//! right and wrong.

mod common;

use std::path::Path;

use common::binary::{BIN, serve_with};
use common::people::*;
use common::sim::simulator;
use common::{TestStore, delta};
use reqwest::StatusCode;
use serde_json::{Value, json};

const PEPPER_HERE: &str = "pepper-q7Zr2mXw9L";
const WRONG_PINS: [&str; 2] = ["468213", "951357"];
/// A Luhn-valid test card number a misbehaving kiosk sends.
const CARD_NUMBER: &str = "4000056655665556";

fn verifier(p: &Person) -> String {
    standin::access::pin::make_verifier(p.pin, PEPPER_HERE.as_bytes(), [9; 16]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_is_stored_or_logged_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("standin.log");
    let token = standin::access::token::generate();
    let env = [
        ("STANDIN_PEPPER", PEPPER_HERE),
        ("RUST_LOG", "debug"),
        ("STANDIN_LOG__FORMAT", "json"),
    ];
    let mut s = serve_with(dir.path(), &token, "", &env, Some(&log)).await;
    let c = reqwest::Client::new();
    let post = |path: &str, body: Value| c.post(format!("{}{path}", s.url)).json(&body);

    let staff: Vec<Value> = [&ASSOCIATE, &MANAGER].iter().map(|p| {
        json!({"employee_id": p.id, "name": "N", "role": p.role, "pin_verifier": verifier(p), "active": true})
    }).collect();
    post(
        "/sync/v1/feeds/staff/batches",
        json!({"batch": 1, "kind": "delta", "upserts": staff}),
    )
    .bearer_auth(&token)
    .send()
    .await
    .unwrap();
    post(
        "/sync/v1/feeds/devices/batches",
        json!({"batch": 1, "kind": "delta", "upserts": [device_record(KIOSK_1, true)]}),
    )
    .bearer_auth(&token)
    .send()
    .await
    .unwrap();

    for wrong in WRONG_PINS {
        let r = post(
            "/api/v1/session",
            json!({"employee_id": ASSOCIATE.id, "pin": wrong}),
        )
        .send()
        .await
        .unwrap();
        assert_eq!(r.status(), 401);
    }
    let r = post(
        "/api/v1/session",
        json!({"employee_id": ASSOCIATE.id, "pin": ASSOCIATE.pin}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(
        r.status(),
        200,
        "signed in with the pepper from the environment"
    );
    let session = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_string();
    let csrf = r.json::<Value>().await.unwrap()["csrf_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = c
        .get(format!("{}/kiosk/v1/device", s.url))
        .bearer_auth(KIOSK_1.1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    c.get(format!("{}/kiosk/v1/device", s.url))
        .bearer_auth("not-a-real-kiosk-token-abcdef")
        .send()
        .await
        .unwrap();
    // A kiosk that sends card data is refused, and the number is written nowhere.
    for body in [
        json!({"idempotency_key": "pan-1", "basket_id": "b1", "amount_minor": 500, "currency": "USD",
               "tender": {"kind": "card_token", "token": CARD_NUMBER}}),
        json!({"idempotency_key": "pan-2", "basket_id": "b2", "amount_minor": 500, "currency": "USD",
               "tender": {"kind": "card_token", "token": "tok_ok", "track2": format!(";{CARD_NUMBER}=29121010000000000?")}}),
    ] {
        let r = c
            .post(format!("{}/kiosk/v1/payments", s.url))
            .bearer_auth(KIOSK_1.1)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422);
    }
    c.get(format!("{}/sync/v1/journal", s.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let backup = dir.path().join("backup.db");
    let out = std::process::Command::new(BIN)
        .arg("backup")
        .arg(&backup)
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    // kill -9: the WAL stays as it was, unfolded, for the scan.
    s.kill_9();

    let secrets: Vec<(&str, String)> = vec![
        ("associate PIN", ASSOCIATE.pin.into()),
        ("manager PIN", MANAGER.pin.into()),
        ("wrong PIN 1", WRONG_PINS[0].into()),
        ("wrong PIN 2", WRONG_PINS[1].into()),
        ("pepper", PEPPER_HERE.into()),
        ("sync token", token.clone()),
        ("kiosk token", KIOSK_1.1.into()),
        ("session token", session.clone()),
        ("CSRF token", csrf),
        ("card number", CARD_NUMBER.into()),
    ];
    let files = ["standin.db", "standin.db-wal", "backup.db", "standin.log"];
    let mut scanned = 0;
    for f in files {
        let path = dir.path().join(f);
        if !Path::new(&path).exists() {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        scanned += bytes.len();
        for (what, secret) in &secrets {
            let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(!found, "{what} found in clear in {f}");
        }
    }
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(
        log_text.lines().count() > 10,
        "the scan needs real logs to mean anything"
    );
    assert!(
        log_text
            .lines()
            .all(|l| serde_json::from_str::<Value>(l).is_ok()),
        "every log line is JSON"
    );
    assert!(scanned > 100_000, "scanned only {scanned} bytes");
}

/// About one EAN-13 barcode in ten passes the Luhn check, as `2000000000107` does: a kiosk
/// sale carrying one (as its receipt, a sku, a basket id or a key) is a sale, not card data,
/// and is recorded; a card number in the same field is still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kiosk_sale_with_a_luhn_valid_receipt_barcode_is_recorded_not_refused_as_card_data() {
    const RECEIPT: &str = "2000000000107";
    let sim = simulator(0, 0).await;
    let payments = sim.payments_url();
    let t = TestStore::start_with(move |c| {
        c.payments.url = Some(payments);
        c.payments.timeout_ms = 400;
    })
    .await;
    let (s, b) = t
        .push("devices", &delta(1, vec![device_record(KIOSK_1, true)]))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let post = async |path: &str, body: &Value| t.kiosk_post(KIOSK_1.1, path, body).await;

    let (s, paid) = post(
        "/kiosk/v1/payments",
        &json!({"idempotency_key": "2100000001095", "basket_id": "2290000123450", "amount_minor": 2_000,
                "currency": "USD", "tender": {"kind": "card_token", "token": "tok_4242", "brand": "visa",
                "last4": "4242", "exp_month": 12, "exp_year": 2029, "entry_mode": "contactless"}}),
    )
    .await;
    assert_eq!(
        (s, paid["status"].as_str()),
        (StatusCode::OK, Some("approved")),
        "{paid}"
    );
    let sale = |receipt_id: &str| {
        json!({"sale_id": "9780000123503", "receipt_id": receipt_id, "sold_at": "2026-11-25T05:00:00Z",
               "lines": [{"line": 1, "sku": "7312000123515", "description": "Kettle", "category": "household",
                          "qty": 1, "unit_price_minor": 1_992, "discount_minor": 0, "tax_minor": 8,
                          "returnable": true, "return_window_days": 30, "returned_qty": 0}],
               "tenders": [{"payment_id": paid["payment_id"], "amount_minor": 2_000}]})
    };
    let (s, b) = post("/kiosk/v1/sales", &sale("4111111111111111")).await;
    assert_eq!(
        (s, b["error"]["code"].as_str(), b["error"]["field"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("card_data_refused"),
            Some("receipt_id")
        )
    );
    let (s, b) = post("/kiosk/v1/sales", &sale(RECEIPT)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        t.receipt_ids(),
        vec![RECEIPT.to_string()],
        "found at the desk by its barcode"
    );
}
