//! The generator: deterministic per seed, internally consistent, snapshots in bounded parts.

use std::collections::HashSet;

use chrono::{DateTime, Duration, Timelike, Utc};
use serde_json::Value;

use super::{SimConfig, seed_data};

fn cfg(seed: u64) -> SimConfig {
    let any = "127.0.0.1:0".parse().unwrap();
    SimConfig {
        listen: any,
        central_listen: any,
        payments_listen: any,
        store_id: "store-0042".into(),
        receipts: 450,
        pickup_orders: 120,
        seed,
        pepper: b"test-pepper".to_vec(),
        part_size: 100,
    }
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-25T14:07:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn parse(b: &str) -> Value {
    serde_json::from_str(b).unwrap()
}

fn records(batches: &[std::sync::Arc<str>]) -> Vec<Value> {
    batches
        .iter()
        .flat_map(|b| parse(b)["upserts"].as_array().unwrap().clone())
        .collect()
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

#[tokio::test]
async fn same_seed_same_data_other_seed_other_data() {
    let a = seed_data(&cfg(7), now()).await.unwrap();
    let b = seed_data(&cfg(7), now()).await.unwrap();
    let c = seed_data(&cfg(8), now()).await.unwrap();
    assert_eq!(
        a.feeds, b.feeds,
        "the whole snapshot, staff verifiers included"
    );
    assert_eq!(a.credentials.staff.len(), 23, "24 staff, one inactive");
    assert_eq!(a.credentials.kiosks.len(), 10);
    for feed in ["pickup_orders", "receipts", "staff", "devices"] {
        assert_ne!(
            a.feeds[feed], c.feeds[feed],
            "{feed} must depend on the seed"
        );
    }
    assert_eq!(records(&a.feeds["policy"]), records(&c.feeds["policy"]));
    let pins_a: Vec<_> = a.credentials.staff.iter().map(|s| &s.pin).collect();
    let pins_c: Vec<_> = c.credentials.staff.iter().map(|s| &s.pin).collect();
    assert_ne!(pins_a, pins_c);
}

#[tokio::test]
async fn snapshots_come_in_bounded_numbered_parts() {
    let s = seed_data(&cfg(3), now()).await.unwrap();
    let expected_parts = [
        ("receipts", 5),
        ("pickup_orders", 2),
        ("staff", 1),
        ("devices", 1),
        ("policy", 1),
    ];
    for (feed, parts) in expected_parts {
        let batches = &s.feeds[feed];
        assert_eq!(batches.len(), parts, "{feed}");
        for (i, b) in batches.iter().enumerate() {
            let b = parse(b);
            assert_eq!(b["batch"], i + 1);
            assert_eq!(b["kind"], "snapshot");
            assert_eq!(b["snapshot"]["id"], format!("{feed}-3-1"));
            assert_eq!(b["snapshot"]["part"], i + 1);
            assert_eq!(b["snapshot"]["parts"], parts);
            assert!(b["upserts"].as_array().unwrap().len() <= 100);
            assert_eq!(b["deletes"], serde_json::json!([]));
        }
    }
    assert_eq!(records(&s.feeds["receipts"]).len(), 450);
    assert_eq!(records(&s.feeds["pickup_orders"]).len(), 120);
    assert_eq!(records(&s.feeds["policy"]).len(), 10);
}

#[tokio::test]
async fn receipts_add_up_and_tenders_pay_the_total() {
    let s = seed_data(&cfg(11), now()).await.unwrap();
    let receipts = records(&s.feeds["receipts"]);
    let mut ids = HashSet::new();
    let (mut split, mut returned, mut online, mut non_returnable) = (0, 0, 0, 0);
    for r in &receipts {
        assert!(
            ids.insert(r["receipt_id"].as_str().unwrap().to_owned()),
            "unique barcode"
        );
        assert_eq!(r["receipt_id"].as_str().unwrap().len(), 13);
        let lines = r["lines"].as_array().unwrap();
        assert!((1..=40).contains(&lines.len()));
        let mut total = 0;
        for l in lines {
            let (qty, ret) = (int(&l["qty"]), int(&l["returned_qty"]));
            assert!(qty >= 1 && (0..=qty).contains(&ret));
            total += qty * int(&l["unit_price_minor"]) - int(&l["discount_minor"])
                + int(&l["tax_minor"]);
            if l["returnable"] == false {
                non_returnable += 1;
                assert_eq!(ret, 0);
            }
            returned += i32::from(ret > 0);
        }
        assert_eq!(int(&r["total_minor"]), total);
        let tenders = r["tenders"].as_array().unwrap();
        let paid: i64 = tenders.iter().map(|t| int(&t["amount_minor"])).sum();
        assert_eq!(paid, total, "tenders pay the total of {}", r["receipt_id"]);
        split += i32::from(tenders.len() > 1);
        online += i32::from(r.get("order_number").is_some());
        for t in tenders.iter().filter(|t| t["kind"] == "card") {
            assert!(t["token"].as_str().unwrap().starts_with("tok_"));
            assert!(t["authorization"].as_str().unwrap().starts_with("auth_"));
            assert_eq!(t["last4"].as_str().unwrap().len(), 4);
        }
        let sold_at = DateTime::parse_from_rfc3339(r["sold_at"].as_str().unwrap()).unwrap();
        assert!(sold_at <= now() && sold_at > now() - Duration::days(91));
        assert!((8..21).contains(&sold_at.hour()));
        assert_eq!(r["currency"], "USD");
    }
    assert!(split > 0 && returned > 0 && online > 0 && non_returnable > 0);
}

#[tokio::test]
async fn pickup_orders_are_due_soon_and_over_three_days() {
    let s = seed_data(&cfg(5), now()).await.unwrap();
    let orders = records(&s.feeds["pickup_orders"]);
    let (mut soon, mut cancelled, mut id_check, mut pay_at_pickup) = (0, 0, 0, 0);
    let mut codes = HashSet::new();
    for o in &orders {
        let due = DateTime::parse_from_rfc3339(o["due_at"].as_str().unwrap()).unwrap();
        assert!(due > now() && due < now() + Duration::days(4));
        assert_eq!(due.minute() % 30, 0, "30-minute slots");
        if due < now() + Duration::hours(4) && o["status"] != "cancelled" {
            soon += 1;
        }
        cancelled += i32::from(o["status"] == "cancelled");
        pay_at_pickup += i32::from(o["payment_state"] == "pay_at_pickup");
        let number = o["order_number"].as_str().unwrap();
        assert!(number.starts_with('W') && number.len() == 10);
        assert!(codes.insert(o["pickup_code"].as_str().unwrap().to_owned()));
        assert_eq!(o["customer"]["phone_last4"].as_str().unwrap().len(), 4);
        let lines = o["lines"].as_array().unwrap();
        assert!((1..=30).contains(&lines.len()));
        let total: i64 = lines
            .iter()
            .map(|l| int(&l["qty"]) * int(&l["unit_price_minor"]))
            .sum();
        assert_eq!(int(&o["total_minor"]), total);
        id_check += lines
            .iter()
            .filter(|l| l["requires_id_check"] == true)
            .count();
        assert_eq!(
            s.orders[o["order_id"].as_str().unwrap()],
            *o,
            "central's own view"
        );
    }
    assert!(soon > 0 && cancelled > 0 && id_check > 0 && pay_at_pickup > 0);
}

#[tokio::test]
async fn staff_and_kiosk_credentials_match_their_records() {
    let c = cfg(9);
    let s = seed_data(&c, now()).await.unwrap();
    let staff = records(&s.feeds["staff"]);
    assert_eq!(staff.len(), 24);
    assert_eq!(staff.iter().filter(|r| r["role"] == "manager").count(), 3);
    assert_eq!(staff.iter().filter(|r| r["active"] == false).count(), 1);
    let cred = &s.credentials.staff[0];
    let rec = staff
        .iter()
        .find(|r| r["employee_id"] == cred.employee_id.as_str())
        .unwrap();
    let verifier = rec["pin_verifier"].as_str().unwrap();
    assert!(crate::access::pin::verify(&cred.pin, verifier, &c.pepper));
    assert!(!crate::access::pin::verify(
        &cred.pin,
        verifier,
        b"other pepper"
    ));
    let devices = records(&s.feeds["devices"]);
    for (k, d) in s.credentials.kiosks.iter().zip(&devices) {
        assert_eq!(d["device_id"], k.device_id.as_str());
        assert_eq!(d["lane"], k.lane.as_str());
        assert_eq!(
            d["token_sha256"],
            crate::access::token::sha256_hex(&k.token).as_str()
        );
        assert_eq!(k.token.len(), 64);
    }
}
