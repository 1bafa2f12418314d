//! Returns at the desk over HTTP: finding the sale, what each line allows, exact refunds
//! across partial returns, the offline cap and budget with and without a manager's override,
//! returns without a receipt, two desks at once, and, with the simulator, card refunds that
//! reach the processor exactly once and returns that reach central exactly once.

mod common;

use std::time::Duration;

use common::people::*;
use common::sim::{admin, fault, received_journal, simulator};
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn days_ago(d: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::days(d))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A receipt line: (line, sku, category), (qty, unit price, line discount, line tax),
/// (returnable, window days, central's returned_qty).
fn line(
    (n, sku, cat): (u32, &str, &str),
    (qty, unit, discount, tax): (i64, i64, i64, i64),
    (returnable, window, returned): (bool, i64, i64),
) -> Value {
    json!({"line": n, "sku": sku, "description": format!("Item {sku}"), "category": cat, "qty": qty,
           "unit_price_minor": unit, "discount_minor": discount, "tax_minor": tax, "returnable": returnable,
           "return_window_days": window, "returned_qty": returned})
}

/// A sale five days ago: headphones (86.59, above the associate's cap), three pairs of socks
/// with a discount and tax (31.39), milk (not returnable), two toasters one of which central
/// knows was returned (54.12 each). Paid by card, visa 4242.
fn sale(id: &str) -> Value {
    let lines = vec![
        line((1, "HP-1", "electronics"), (1, 7999, 0, 660), (true, 30, 0)),
        line((2, "SOCK-3", "apparel"), (3, 1000, 100, 239), (true, 90, 0)),
        line((3, "MILK-1", "dairy"), (1, 399, 0, 0), (false, 0, 0)),
        line((4, "TOAST-2", "home"), (2, 5000, 0, 824), (true, 90, 1)),
    ];
    let total = 8659 + 3139 + 399 + 10824;
    json!({
        "receipt_id": id, "order_number": format!("W{id}"), "sold_at": days_ago(5), "lane": "register-2",
        "currency": "USD", "customer_phone_last4": "5550",
        "tenders": [{"kind": "card", "brand": "VISA", "last4": "4242", "exp_month": 12, "exp_year": 2030,
                     "token": format!("tok_{id}"), "authorization": format!("auth_{id}"), "amount_minor": total}],
        "lines": lines, "total_minor": total
    })
}

/// A sale 40 days ago of headphones (30-day window: closed) and socks (90 days: open), paid
/// 20.00 in cash and the rest on a mastercard.
fn old_sale(id: &str) -> Value {
    let total = 8659 + 3139;
    json!({
        "receipt_id": id, "sold_at": days_ago(40), "lane": "sco-3", "currency": "USD",
        "tenders": [{"kind": "cash", "amount_minor": 2000},
                    {"kind": "card", "brand": "mastercard", "last4": "1111", "authorization": format!("auth_{id}"),
                     "amount_minor": total - 2000}],
        "lines": [line((1, "HP-1", "electronics"), (1, 7999, 0, 660), (true, 30, 0)),
                  line((2, "SOCK-3", "apparel"), (3, 1000, 100, 239), (true, 90, 0))],
        "total_minor": total
    })
}

fn policy(budget: i64, no_receipt: &str) -> Vec<Value> {
    vec![
        json!({"key": "refund_cap_associate_minor", "value": 5000}),
        json!({"key": "offline_refund_budget_minor", "value": budget}),
        json!({"key": "no_receipt_returns_offline", "value": no_receipt}),
    ]
}

#[derive(Clone)]
struct Desk<'a> {
    t: &'a TestStore,
    b: Browser,
}

impl Desk<'_> {
    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let r = self
            .t
            .client
            .get(format!("{}{path}", self.t.url))
            .header("cookie", &self.b.cookie)
            .send()
            .await
            .unwrap();
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .t
            .client
            .post(format!("{}{path}", self.t.url))
            .header("cookie", &self.b.cookie)
            .header("x-csrf-token", &self.b.csrf)
            .json(&body)
            .send()
            .await
            .unwrap();
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    async fn ret(&self, receipt: &str, lines: Value, method: &str) -> (StatusCode, Value) {
        self.post(
            "/api/v1/returns",
            json!({"receipt_id": receipt, "lines": lines, "refund": {"method": method}}),
        )
        .await
    }

    async fn ret_with(
        &self,
        receipt: &str,
        lines: Value,
        method: &str,
        who: &Person,
        pin: &str,
    ) -> (StatusCode, Value) {
        self.post(
            "/api/v1/returns",
            json!({"receipt_id": receipt, "lines": lines, "refund": {"method": method},
                   "override": {"manager_id": who.id, "pin": pin}}),
        )
        .await
    }

    async fn receipt(&self, id: &str) -> Value {
        let (s, v) = self.get(&format!("/api/v1/receipts/{id}")).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v
    }
}

fn qty(lines: &[(u32, i64)]) -> Value {
    Value::Array(
        lines
            .iter()
            .map(|(l, q)| json!({"line": l, "qty": q, "reason": "changed mind"}))
            .collect(),
    )
}

fn code(v: &Value) -> Option<&str> {
    v["error"]["code"].as_str()
}

/// The answer is 409 `override_required`; returns its reasons.
#[track_caller]
fn needs_override(s: StatusCode, v: &Value) -> Value {
    assert_eq!(
        (s, code(v)),
        (StatusCode::CONFLICT, Some("override_required")),
        "{v}"
    );
    v["error"]["reasons"].clone()
}

/// A store with staff, policy and receipts, not connected to central (so offline limits
/// apply: central is not known to be up).
async fn offline_store(budget: i64, no_receipt: &str, receipts: Vec<Value>) -> TestStore {
    let t = TestStore::start().await;
    load_people(&t).await;
    assert_eq!(
        t.push("policy", &delta(1, policy(budget, no_receipt)))
            .await
            .0,
        StatusCode::OK
    );
    let (s, v) = t.push("receipts", &delta(1, receipts)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    t
}

fn journal_kinds(t: &TestStore, lane: &str) -> Vec<(String, Value)> {
    t.db()
        .prepare("SELECT kind, body FROM journal WHERE lane = ?1 ORDER BY seq")
        .unwrap()
        .query_map([lane], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .unwrap()
        .map(|r| {
            let (k, b) = r.unwrap();
            (k, serde_json::from_str(&b).unwrap())
        })
        .collect()
}

#[tokio::test]
async fn finds_the_sale_by_barcode_order_number_phone_or_card_and_dates() {
    let t = offline_store(
        100_000,
        "refuse",
        vec![sale("4006381333931"), old_sale("OLD1")],
    )
    .await;
    let d = Desk {
        t: &t,
        b: browser(&t, &ASSOCIATE).await,
    };
    let ids = |v: &Value| -> Vec<String> {
        v["receipts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["receipt_id"].as_str().unwrap().to_string())
            .collect()
    };
    for q in ["4006381333931", "W4006381333931", "5550"] {
        let (s, v) = d.get(&format!("/api/v1/receipts?q={q}")).await;
        assert_eq!(
            (s, ids(&v)),
            (StatusCode::OK, vec!["4006381333931".to_string()]),
            "q={q}"
        );
        assert_eq!(
            v["offline"], true,
            "no central configured: offline limits apply"
        );
        assert_eq!(v["refund_cap_associate_minor"], 5000);
    }
    let (_, v) = d.get("/api/v1/receipts?q=4006381333931").await;
    let r = &v["receipts"][0];
    assert_eq!(
        (r["items"].as_i64(), r["tenders"][0]["last4"].as_str()),
        (Some(7), Some("4242"))
    );
    assert!(
        r["tenders"][0].get("token").is_none() && r["tenders"][0].get("authorization").is_none(),
        "no token leaves the store: {r}"
    );
    // A customer without the receipt: the card, any case, and a date range.
    let (s, v) = d.get("/api/v1/receipts?card_brand=visa&last4=4242").await;
    assert_eq!(
        (s, ids(&v)),
        (StatusCode::OK, vec!["4006381333931".to_string()])
    );
    let (_, v) = d
        .get(&format!(
            "/api/v1/receipts?card_brand=MasterCard&last4=1111&from={}&to={}",
            &days_ago(45)[..10],
            &days_ago(35)[..10]
        ))
        .await;
    assert_eq!(ids(&v), ["OLD1"]);
    let (_, v) = d
        .get(&format!(
            "/api/v1/receipts?card_brand=mastercard&last4=1111&from={}",
            &days_ago(30)[..10]
        ))
        .await;
    assert!(ids(&v).is_empty(), "sold before the range");
    let (_, v) = d.get("/api/v1/receipts?q=nothing").await;
    assert!(ids(&v).is_empty());
    let (s, v) = d.get("/api/v1/receipts?card_brand=visa&last4=42").await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("last4"))
    );
    let (s, v) = d
        .get("/api/v1/receipts?card_brand=visa&last4=4242&from=yesterday")
        .await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("from"))
    );
    let (s, v) = d.get("/api/v1/receipts").await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("q"))
    );
    let (s, v) = d.get("/api/v1/receipts/NOPE").await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, Some("not_found")));
    t.stop().await;
}

#[tokio::test]
async fn each_line_says_what_can_come_back_and_why_not() {
    let t = offline_store(100_000, "refuse", vec![sale("R1"), old_sale("OLD1")]).await;
    let d = Desk {
        t: &t,
        b: browser(&t, &ASSOCIATE).await,
    };
    let v = d.receipt("R1").await;
    let l = &v["lines"];
    assert_eq!(
        (l[0]["returnable_qty"].as_i64(), l[0]["paid_minor"].as_i64()),
        (Some(1), Some(8659))
    );
    assert_eq!(
        l[1]["next_unit_refunds_minor"],
        json!([1045, 1047, 1047]),
        "the last unit takes the remainder"
    );
    assert_eq!(
        (
            l[2]["returnable_qty"].as_i64(),
            l[2]["refusal"]["code"].as_str()
        ),
        (Some(0), Some("not_returnable"))
    );
    // Central knew one toaster came back.
    assert_eq!(
        (
            l[3]["returned_central_qty"].as_i64(),
            l[3]["returned_qty"].as_i64(),
            l[3]["returnable_qty"].as_i64()
        ),
        (Some(1), Some(1), Some(1))
    );
    assert_eq!(l[3]["next_unit_refunds_minor"], json!([5412]));
    let old = d.receipt("OLD1").await;
    assert_eq!(
        old["lines"][0]["refusal"]["code"], "return_window_passed",
        "electronics: 30 days"
    );
    assert_eq!(old["lines"][1]["refusal"], Value::Null, "apparel: 90 days");

    for (lines, field, want) in [
        (qty(&[(3, 1)]), "lines[0].line", "not_returnable"),
        (qty(&[(9, 1)]), "lines[0].line", "invalid_line"),
        (qty(&[(4, 2)]), "lines[0].qty", "too_many"),
        (qty(&[(2, 1), (2, 1)]), "lines[1].line", "invalid_line"),
        (qty(&[(2, 0)]), "lines[0].qty", "invalid_line"),
        (json!([]), "lines", "no_lines"),
    ] {
        let (s, v) = d.ret("R1", lines.clone(), "cash").await;
        assert_eq!(
            (s, code(&v), v["error"]["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some(want), Some(field)),
            "{lines}"
        );
    }
    let (s, v) = d.ret("OLD1", qty(&[(1, 1)]), "cash").await;
    assert_eq!(
        (s, code(&v)),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("return_window_passed")
        )
    );
    assert!(v["error"]["window_ended_at"].is_string());
    let (s, v) = d
        .post(
            "/api/v1/returns",
            json!({"receipt_id": "R1", "lines": qty(&[(2, 1)]), "refund": {"method": "cheque"}}),
        )
        .await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("refund.method"))
    );
    let (s, v) = d.post("/api/v1/returns", json!({"receipt_id": "R1", "lines": [{"line": 2, "qty": 1}], "refund": {"method": "cash"}})).await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("lines[0].reason"))
    );
    let (s, v) = d.ret("NOPE", qty(&[(1, 1)]), "cash").await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, Some("not_found")));
    assert!(
        journal_kinds(&t, "returns").is_empty(),
        "nothing journaled for refusals"
    );
    t.stop().await;
}

#[tokio::test]
async fn partial_returns_refund_exactly_what_was_paid_and_never_a_unit_twice() {
    let t = offline_store(100_000, "refuse", vec![sale("R1")]).await;
    let d = Desk {
        t: &t,
        b: browser(&t, &ASSOCIATE).await,
    };
    let mut refunded = 0;
    for (n, want) in [(1, 1045), (1, 1047)] {
        let (s, v) = d.ret("R1", qty(&[(2, n)]), "cash").await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        assert_eq!(
            (
                v["refund_amount_minor"].as_i64(),
                v["refund_method"].as_str(),
                v["refund_state"].as_str(),
                v["cash_minor"].as_i64()
            ),
            (Some(want), Some("cash"), Some("paid_out"), Some(want))
        );
        assert_eq!(
            (v["override_used"].as_bool(), v["offline"].as_bool()),
            (Some(false), Some(true))
        );
        assert!(v["return_id"].is_string());
        refunded += want;
    }
    let (s, v) = d.ret("R1", qty(&[(2, 2)]), "cash").await;
    assert_eq!(
        (s, code(&v), v["error"]["remaining"].as_i64()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("too_many"), Some(1))
    );
    // The last sock and the last toaster as store credit, in one return (64.59: a manager's).
    let manager = Desk {
        t: &t,
        b: browser(&t, &MANAGER).await,
    };
    let (s, v) = manager
        .ret("R1", qty(&[(2, 1), (4, 1)]), "store_credit")
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(
        (
            v["refund_amount_minor"].as_i64(),
            v["refund_state"].as_str()
        ),
        (Some(1047 + 5412), Some("issued"))
    );
    assert_eq!(v["lines"][1]["description"], "Item TOAST-2");
    refunded += 1047;
    assert_eq!(
        refunded, 3139,
        "three partial refunds of the socks add up to exactly what was paid"
    );
    let v = d.receipt("R1").await;
    assert_eq!(
        (
            v["lines"][1]["returned_here_qty"].as_i64(),
            v["lines"][1]["refusal"]["code"].as_str()
        ),
        (Some(3), Some("fully_returned"))
    );
    assert_eq!(
        v["lines"][3]["refusal"]["code"], "fully_returned",
        "one at central, one here"
    );
    assert_eq!(v["returns"].as_array().unwrap().len(), 3);
    let (s, v) = d.ret("R1", qty(&[(4, 1)]), "cash").await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("fully_returned"))
    );

    let entries = journal_kinds(&t, "returns");
    assert_eq!(
        entries.len(),
        3,
        "one journal entry per return, in the returns lane"
    );
    assert!(entries.iter().all(|(k, _)| k == "return.taken"));
    assert_eq!(
        entries[2].1["lines"][1],
        json!({"line": 4, "sku": "TOAST-2", "qty": 1, "reason": "changed mind", "amount_minor": 5412})
    );
    assert_eq!(entries[0].1["refund"]["amount_minor"], 1045);
    // A later feed batch (central has not heard of these returns) does not undo them.
    assert_eq!(
        t.push("receipts", &delta(2, vec![sale("R1")])).await.0,
        StatusCode::OK
    );
    assert_eq!(d.receipt("R1").await["lines"][1]["returnable_qty"], 0);
    t.stop().await;
}

#[tokio::test]
async fn offline_the_cap_and_the_budget_need_a_managers_override_for_that_return() {
    let t = offline_store(18_000, "refuse", vec![sale("R1"), sale("R2"), sale("R3")]).await;
    let d = Desk {
        t: &t,
        b: browser(&t, &ASSOCIATE).await,
    };
    let lead = Desk {
        t: &t,
        b: browser(&t, &LEAD).await,
    };
    let manager = Desk {
        t: &t,
        b: browser(&t, &MANAGER).await,
    };

    // 86.59 is above the associate's 50.00, for a lead too.
    for desk in [&d, &lead] {
        let (s, v) = desk.ret("R1", qty(&[(1, 1)]), "original_tender").await;
        assert_eq!(
            needs_override(s, &v),
            json!([{"code": "over_associate_cap", "cap_minor": 5000, "amount_minor": 8659, "earlier_minor": 0}])
        );
    }
    // Only a manager's id and right PIN will do, and a wrong one is the dialog's problem (not a sign-out).
    let (s, v) = d
        .ret_with("R1", qty(&[(1, 1)]), "original_tender", &LEAD, LEAD.pin)
        .await;
    assert_eq!(
        (s, code(&v), v["error"]["field"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("override_not_manager"),
            Some("override.manager_id")
        )
    );
    let (s, v) = d
        .ret_with("R1", qty(&[(1, 1)]), "original_tender", &MANAGER, "000000")
        .await;
    assert_eq!(
        (s, code(&v), v["error"]["field"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("override_not_accepted"),
            Some("override.pin")
        )
    );
    assert!(
        t.db()
            .query_row("SELECT count(*) FROM returns", [], |r| r.get::<_, i64>(0))
            .unwrap()
            == 0
    );
    let (s, v) = d
        .ret_with(
            "R1",
            qty(&[(1, 1)]),
            "original_tender",
            &MANAGER,
            MANAGER.pin,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(
        (
            v["override_used"].as_bool(),
            v["approved_by"].as_str(),
            v["refund_amount_minor"].as_i64(),
            v["refund_state"].as_str()
        ),
        (Some(true), Some(MANAGER.id), Some(8659), Some("queued")),
        "no processor configured: the card refund waits in the queue"
    );
    assert_eq!(v["refunds"][0]["brand"], "VISA");
    let audit = journal_kinds(&t, "audit");
    let granted: Vec<_> = audit
        .iter()
        .filter(|(k, _)| k == "override.granted")
        .collect();
    assert_eq!(granted.len(), 1);
    assert_eq!(
        (
            granted[0].1["approved_by"].as_str(),
            granted[0].1["requested_by"].as_str()
        ),
        (Some(MANAGER.id), Some(ASSOCIATE.id))
    );
    let taken = journal_kinds(&t, "returns");
    assert_eq!(taken[0].1["override"]["approved_by"], MANAGER.id);
    assert_eq!(
        taken[0].1["override"]["reasons"][0]["code"],
        "over_associate_cap"
    );

    // A manager is not held to the associate's cap...
    let (s, v) = manager.ret("R2", qty(&[(1, 1)]), "cash").await;
    assert_eq!(
        (s, v["override_used"].as_bool()),
        (StatusCode::CREATED, Some(false)),
        "{v}"
    );
    // ...but the day's budget holds for everyone: 86.59 + 86.59 = 173.18 already.
    assert_eq!(d.receipt("R3").await["offline_refunded_today_minor"], 17318);
    let (s, v) = manager.ret("R3", qty(&[(2, 1)]), "cash").await;
    assert_eq!(
        needs_override(s, &v),
        json!([{"code": "over_offline_budget", "budget_minor": 18000, "used_minor": 17318, "amount_minor": 1045}])
    );
    let (s, v) = manager
        .ret_with("R3", qty(&[(2, 1)]), "cash", &MANAGER, MANAGER.pin)
        .await;
    assert_eq!(
        (s, v["override_used"].as_bool()),
        (StatusCode::CREATED, Some(true)),
        "{v}"
    );
    // An override given when none is needed is not used (and not journaled).
    t.push(
        "policy",
        &delta(
            2,
            vec![json!({"key": "offline_refund_budget_minor", "value": 1_000_000})],
        ),
    )
    .await;
    let (s, v) = d
        .ret_with("R3", qty(&[(2, 1)]), "cash", &MANAGER, MANAGER.pin)
        .await;
    assert_eq!(
        (s, v["override_used"].as_bool(), v["approved_by"].as_str()),
        (StatusCode::CREATED, Some(false), None)
    );
    assert_eq!(
        journal_kinds(&t, "audit")
            .iter()
            .filter(|(k, _)| k == "override.granted")
            .count(),
        2
    );
    t.stop().await;
}

#[tokio::test]
async fn offline_the_associates_cap_holds_for_a_return_split_in_slices() {
    let t = offline_store(100_000, "refuse", vec![sale("R1")]).await;
    let d = Desk {
        t: &t,
        b: browser(&t, &ASSOCIATE).await,
    };
    // Three pairs of socks (31.39 in all), returned as one pair then two: each slice is
    // under the associate's 50.00 cap, and so are both together.
    let (s, v) = d.ret("R1", qty(&[(2, 1)]), "original_tender").await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let first = v["refund_amount_minor"].as_i64().unwrap();
    let (s, v) = d.ret("R1", qty(&[(2, 2)]), "original_tender").await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let second = v["refund_amount_minor"].as_i64().unwrap();
    assert_eq!(first + second, 3139);
    // The headphones (86.59, over the cap on their own): the reason carries what this
    // associate already refunded on the receipt today.
    let (s, v) = d.ret("R1", qty(&[(1, 1)]), "store_credit").await;
    assert_eq!(
        needs_override(s, &v),
        json!([{"code": "over_associate_cap", "cap_minor": 5000, "amount_minor": 8659, "earlier_minor": 3139}])
    );
    t.stop().await;

    // The same on a receipt of small lines: 3 x 20.00, each under the cap, the third over it.
    let small = json!({
        "receipt_id": "R9", "sold_at": days_ago(1), "lane": "register-1", "currency": "USD",
        "tenders": [{"kind": "cash", "amount_minor": 6000}],
        "lines": [line((1, "MUG-1", "home"), (3, 2000, 0, 0), (true, 30, 0))], "total_minor": 6000
    });
    let t = offline_store(100_000, "refuse", vec![small]).await;
    let d = Desk {
        t: &t,
        b: browser(&t, &ASSOCIATE).await,
    };
    for n in 0..2 {
        let (s, v) = d.ret("R9", qty(&[(1, 1)]), "cash").await;
        assert_eq!(s, StatusCode::CREATED, "slice {n}: {v}");
    }
    let (s, v) = d.ret("R9", qty(&[(1, 1)]), "cash").await;
    needs_override(s, &v);
    let (s, v) = d
        .ret_with("R9", qty(&[(1, 1)]), "cash", &MANAGER, MANAGER.pin)
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    t.stop().await;
}

#[tokio::test]
async fn a_card_the_receipt_cannot_refund_by_is_never_silently_paid_in_cash() {
    // Central's receipt names the card but carries no authorization or token.
    let bare = json!({
        "receipt_id": "R7", "sold_at": days_ago(1), "lane": "register-1", "currency": "USD",
        "tenders": [{"kind": "cash", "amount_minor": 1000},
                    {"kind": "card", "brand": "VISA", "last4": "4242", "amount_minor": 3000}],
        "lines": [line((1, "MUG-1", "home"), (4, 1000, 0, 0), (true, 30, 0))], "total_minor": 4000
    });
    let t = offline_store(100_000, "refuse", vec![bare]).await;
    let d = Desk {
        t: &t,
        b: browser(&t, &MANAGER).await,
    };
    // The cash part goes back in cash, to the original tender.
    let (s, v) = d.ret("R7", qty(&[(1, 1)]), "original_tender").await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["refund_amount_minor"], 1000, "{v}");
    // The card's part would come back as cash: refused, naming the method.
    let (s, v) = d.ret("R7", qty(&[(1, 1)]), "original_tender").await;
    assert_eq!(
        (s, code(&v), v["error"]["field"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("tender_not_refundable"),
            Some("refund.method")
        ),
        "{v}"
    );
    assert_eq!(v["error"]["card_minor"], 1000, "{v}");
    // Chosen as cash by the desk, it goes.
    let (s, v) = d.ret("R7", qty(&[(1, 1)]), "cash").await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    t.stop().await;
}

#[tokio::test]
async fn without_a_receipt_offline_store_credit_only_when_policy_allows() {
    let t = offline_store(100_000, "refuse", vec![sale("R1"), old_sale("OLD1")]).await;
    let d = Desk {
        t: &t,
        b: browser(&t, &ASSOCIATE).await,
    };
    let body = |method: &str| json!({"lines": [{"sku": "SOCK-3", "qty": 2, "reason": "gift"}], "refund": {"method": method}});
    let (s, v) = d.post("/api/v1/returns", body("store_credit")).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::CONFLICT, Some("no_receipt_offline")),
        "{v}"
    );
    t.push(
        "policy",
        &delta(
            2,
            vec![json!({"key": "no_receipt_returns_offline", "value": "store_credit_only"})],
        ),
    )
    .await;
    let (s, v) = d.post("/api/v1/returns", body("cash")).await;
    assert_eq!(
        (s, code(&v), v["error"]["field"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("no_receipt_store_credit_only"),
            Some("refund.method")
        )
    );
    // Each item may walk 90 days of receipts for its price: a bounded number per return.
    let many: Vec<Value> = (0..21)
        .map(|i| json!({"sku": format!("SKU-{i}"), "qty": 1, "reason": "gift"}))
        .collect();
    let (s, v) = d
        .post(
            "/api/v1/returns",
            json!({"lines": many, "refund": {"method": "store_credit"}}),
        )
        .await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("lines")),
        "{v}"
    );
    let (s, v) = d.post("/api/v1/returns", body("store_credit")).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    // One unit's share of what it sold for (10.00 - 0.34 + 0.79), twice: never above what anyone paid.
    assert_eq!(
        (
            v["refund_amount_minor"].as_i64(),
            v["receipt_id"].as_str(),
            v["refund_state"].as_str()
        ),
        (Some(2090), None, Some("issued"))
    );
    let (s, v) = d.post("/api/v1/returns", json!({"lines": [{"sku": "MILK-1", "qty": 1, "reason": "x"}], "refund": {"method": "store_credit"}})).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("unknown_item")),
        "not returnable: {v}"
    );
    let (s, v) = d.post("/api/v1/returns", json!({"lines": [{"line": 1, "qty": 1, "reason": "x"}], "refund": {"method": "store_credit"}})).await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("lines[0].sku"))
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_desks_returning_the_same_line_at_once_refund_it_once() {
    let t = offline_store(1_000_000, "refuse", vec![sale("R1")]).await;
    let d1 = Desk {
        t: &t,
        b: browser(&t, &ASSOCIATE).await,
    };
    let d2 = Desk {
        t: &t,
        b: browser(&t, &LEAD).await,
    };
    // The socks, all three, from two desks at the same moment; then the toaster.
    let (a, b) = tokio::join!(
        d1.ret("R1", qty(&[(2, 3)]), "cash"),
        d2.ret("R1", qty(&[(2, 3)]), "cash")
    );
    let mut got = [a.0, b.0];
    got.sort();
    assert_eq!(
        got,
        [StatusCode::CREATED, StatusCode::UNPROCESSABLE_ENTITY],
        "exactly one desk: {a:?} {b:?}"
    );
    // The toaster (54.12, above the associate's cap) from two managers' desks.
    let (m1, m2) = (
        Desk {
            t: &t,
            b: browser(&t, &MANAGER).await,
        },
        Desk {
            t: &t,
            b: browser(&t, &MANAGER).await,
        },
    );
    let (a, b) = tokio::join!(
        m1.ret("R1", qty(&[(4, 1)]), "store_credit"),
        m2.ret("R1", qty(&[(4, 1)]), "cash")
    );
    assert_eq!(
        [a.0, b.0]
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count(),
        1,
        "{a:?} {b:?}"
    );
    let loser = if a.0 == StatusCode::CREATED {
        &b.1
    } else {
        &a.1
    };
    assert_eq!(code(loser), Some("fully_returned"));
    let rows: i64 = t
        .db()
        .query_row("SELECT coalesce(sum(qty), 0) FROM return_lines", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(rows, 4);
    t.stop().await;
}

#[tokio::test]
async fn a_retried_request_gets_the_first_answer_never_a_second_return() {
    let t = offline_store(1_000_000, "refuse", vec![sale("R1")]).await;
    let d = Desk {
        t: &t,
        b: browser(&t, &ASSOCIATE).await,
    };
    let body = json!({"receipt_id": "R1", "lines": qty(&[(2, 1)]), "refund": {"method": "cash"}, "request_id": "desk-1-0001"});
    let (s1, v1) = d.post("/api/v1/returns", body.clone()).await;
    let (s2, v2) = d.post("/api/v1/returns", body).await;
    assert_eq!((s1, s2), (StatusCode::CREATED, StatusCode::OK));
    assert_eq!(v1["return_id"], v2["return_id"]);
    let other = json!({"receipt_id": "R1", "lines": qty(&[(2, 2)]), "refund": {"method": "cash"}, "request_id": "desk-1-0001"});
    let (s, v) = d.post("/api/v1/returns", other).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::CONFLICT, Some("request_id_reused"))
    );
    assert_eq!(d.receipt("R1").await["lines"][1]["returnable_qty"], 2);
    assert_eq!(journal_kinds(&t, "returns").len(), 1);
    t.stop().await;
}

/// Central and the processor as the simulator, feeds pushed by the test (not pulled).
async fn connected_store(sim: &standin::simulator::Simulator) -> TestStore {
    let (central, payments) = (sim.central_url(), sim.payments_url());
    let t = TestStore::start_with(move |c| {
        c.central.url = Some(central);
        c.payments.url = Some(payments);
        c.feeds.pull = false;
        c.central.timeout_ms = 500;
        c.payments.timeout_ms = 500;
        c.central.health_interval_secs = 1;
        c.payments.health_interval_secs = 1;
        c.journal.retry_base_ms = 50;
        c.journal.retry_cap_ms = 300;
        c.journal.idle_poll_ms = 50;
    })
    .await;
    load_people(&t).await;
    assert_eq!(
        t.push("policy", &delta(1, policy(100_000, "refuse")))
            .await
            .0,
        StatusCode::OK
    );
    let (s, v) = t
        .push(
            "receipts",
            &delta(1, vec![sale("C1"), sale("C2"), sale("C3"), old_sale("C4")]),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    t.wait_for_status("both upstreams up", |s| {
        s["upstreams"]["central"]["state"] == "up" && s["upstreams"]["payments"]["state"] == "up"
    })
    .await;
    t
}

async fn received(sim: &standin::simulator::Simulator) -> Value {
    admin(sim, reqwest::Method::GET, "/admin/received", json!(null)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn card_refunds_reach_the_processor_once_and_returns_reach_central_once() {
    let sim = simulator(10, 5).await;
    let t = connected_store(&sim).await;
    let d = Desk {
        t: &t,
        b: browser(&t, &ASSOCIATE).await,
    };

    // Both up: no offline limit, the card refund goes at once.
    let (s, online) = d.ret("C1", qty(&[(1, 1)]), "original_tender").await;
    assert_eq!(s, StatusCode::CREATED, "{online}");
    assert_eq!(
        (
            online["offline"].as_bool(),
            online["override_used"].as_bool(),
            online["refund_state"].as_str()
        ),
        (Some(false), Some(false), Some("refunded")),
        "central up: 86.59 needs no override"
    );
    let first_key = online["refunds"][0]["refund_key"]
        .as_str()
        .unwrap()
        .to_string();

    // The processor goes down: the refund waits, the desk is told so.
    fault(&sim, "payments", json!({"mode": "down"})).await;
    let (s, queued) = d.ret("C2", qty(&[(2, 2)]), "original_tender").await;
    assert_eq!(s, StatusCode::CREATED, "{queued}");
    assert_eq!(queued["refund_state"], "queued");
    let st = t.status().await;
    assert_eq!(
        (
            st["refunds"]["queued"].as_i64(),
            st["refunds"]["queued_minor"].as_i64()
        ),
        (Some(1), Some(1045 + 1047)),
        "status shows the queue"
    );
    assert_eq!(queued["refund_amount_minor"], 1045 + 1047);

    // Central goes down too: offline limits; an override for the headphones.
    fault(&sim, "central", json!({"mode": "down"})).await;
    t.wait_for_status("central down", |s| {
        s["upstreams"]["central"]["state"] == "down"
    })
    .await;
    let (s, v) = d.ret("C3", qty(&[(1, 1)]), "original_tender").await;
    needs_override(s, &v);
    let (s, offline) = d
        .ret_with(
            "C3",
            qty(&[(1, 1)]),
            "original_tender",
            &MANAGER,
            MANAGER.pin,
        )
        .await;
    assert_eq!(
        (
            s,
            offline["offline"].as_bool(),
            offline["override_used"].as_bool()
        ),
        (StatusCode::CREATED, Some(true), Some(true)),
        "{offline}"
    );
    // A split tender: the card part to the card, the cash part in cash.
    let (s, split) = d.ret("C4", qty(&[(2, 3)]), "original_tender").await;
    assert_eq!(s, StatusCode::CREATED, "{split}");
    assert_eq!(
        (
            split["refund_amount_minor"].as_i64(),
            split["refunds"][0]["amount_minor"].as_i64(),
            split["cash_minor"].as_i64()
        ),
        (Some(3139), Some(3139), Some(0))
    );

    // Both come back: every queued refund goes, once, with its key; every return reaches central once.
    fault(&sim, "payments", json!({"mode": "ok"})).await;
    fault(&sim, "central", json!({"mode": "ok"})).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let returns: Vec<Value> = loop {
        let r = received(&sim).await;
        let refunds = r["refunds"].as_array().cloned().unwrap_or_default();
        let journal = received_journal(&sim).await;
        let taken: Vec<Value> = journal
            .iter()
            .filter(|e| e["kind"] == "return.taken")
            .cloned()
            .collect();
        if refunds.len() == 4 && taken.len() == 4 {
            for f in &refunds {
                assert_eq!(
                    f["count"], 1,
                    "each refund key reached the processor once: {f}"
                );
            }
            break taken;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "refunds {refunds:?}, returns {}",
            taken.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let r = received(&sim).await;
    let keys: Vec<&str> = r["refunds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys[0], first_key);
    for v in [&queued, &offline, &split] {
        let key = v["refunds"][0]["refund_key"].as_str().unwrap();
        let f = r["refunds"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["key"] == key)
            .expect("sent with its key");
        assert_eq!(
            f["request"]["amount_minor"],
            v["refunds"][0]["amount_minor"]
        );
        assert!(
            f["request"]["authorization"]
                .as_str()
                .unwrap()
                .starts_with("auth_C")
        );
    }
    for e in &returns {
        assert_eq!(e["count"], 1, "each return reached central once: {e}");
    }
    // The desk sees the refunds done.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let v = d.receipt("C2").await;
        if v["returns"][0]["refund_state"] == "refunded" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let settled: i64 = t
        .db()
        .query_row(
            "SELECT count(*) FROM journal WHERE kind = 'return.refund_approved'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(settled, 4, "each refund's answer journaled once");
    assert_eq!(
        t.status().await["refunds"]["queued"],
        0,
        "the queue drained"
    );
    t.stop().await;
    sim.shutdown().await;
}

/// The processor takes the refund but never answers (a timeout after sending): the outcome is
/// unknown, so the refund stays queued and goes again with the same key; the processor
/// answers the retry with its first answer, so the customer is refunded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_whose_answer_was_lost_is_resent_with_the_same_key_and_refunds_once() {
    let sim = simulator(10, 5).await;
    let t = connected_store(&sim).await;
    let d = Desk {
        t: &t,
        b: browser(&t, &ASSOCIATE).await,
    };
    fault(&sim, "payments", json!({"mode": "hang"})).await;
    let (s, v) = d.ret("C1", qty(&[(2, 1)]), "original_tender").await;
    assert_eq!(
        (s, v["refund_state"].as_str()),
        (StatusCode::CREATED, Some("queued")),
        "{v}"
    );
    let key = v["refunds"][0]["refund_key"].as_str().unwrap().to_string();
    fault(&sim, "payments", json!({"mode": "ok"})).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let v = d.receipt("C1").await;
        if v["returns"][0]["refund_state"] == "refunded" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = received(&sim).await;
    let records: Vec<&Value> = r["refunds"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["key"] == key.as_str())
        .collect();
    assert_eq!(records.len(), 1, "one refund at the processor: {r}");
    assert!(
        records[0]["count"].as_u64().unwrap() >= 2,
        "sent again after the lost answer: {}",
        records[0]
    );
    assert_eq!(r["refunds"].as_array().unwrap().len(), 1);
    let settled: i64 = t
        .db()
        .query_row(
            "SELECT count(*) FROM journal WHERE kind = 'return.refund_approved'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(settled, 1);
    t.stop().await;
    sim.shutdown().await;
}

/// A return taken here counts on top of central's count until central has acknowledged it
/// and sent the receipt again with it folded in: then it counts once, not twice; and a
/// return central learns of elsewhere still counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_return_counts_once_after_central_folds_it_into_the_receipt() {
    let sim = simulator(10, 5).await;
    let t = connected_store(&sim).await;
    let d = Desk {
        t: &t,
        b: browser(&t, &ASSOCIATE).await,
    };
    let (s, v) = d.ret("C1", qty(&[(2, 1)]), "cash").await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let socks = |v: &Value| {
        (
            v["lines"][1]["returned_qty"].as_i64().unwrap(),
            v["lines"][1]["returnable_qty"].as_i64().unwrap(),
        )
    };
    assert_eq!(socks(&d.receipt("C1").await), (1, 2));
    // Central takes the return...
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while t
        .db()
        .query_row(
            "SELECT count(*) FROM journal WHERE kind = 'return.taken' AND outcome = 'accepted'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
        == 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "central never took the return"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        socks(&d.receipt("C1").await),
        (1, 2),
        "acknowledged, not yet in the feed"
    );
    // ...and sends the receipt again with it counted.
    let mut updated = sale("C1");
    updated["lines"][1]["returned_qty"] = json!(1);
    assert_eq!(
        t.push("receipts", &delta(2, vec![updated.clone()])).await.0,
        StatusCode::OK
    );
    assert_eq!(
        socks(&d.receipt("C1").await),
        (1, 2),
        "folded in: counted once"
    );
    // Another store takes one back too.
    updated["lines"][1]["returned_qty"] = json!(2);
    assert_eq!(
        t.push("receipts", &delta(3, vec![updated])).await.0,
        StatusCode::OK
    );
    assert_eq!(socks(&d.receipt("C1").await), (2, 1));
    let (s, v) = d.ret("C1", qty(&[(2, 2)]), "cash").await;
    assert_eq!(
        (s, v["error"]["remaining"].as_i64()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some(1))
    );
    t.stop().await;
    sim.shutdown().await;
}

/// A card refund the processor refuses is final (never sent again) and waits for a person in
/// reconciliation, as JSON and CSV.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_the_processor_refuses_is_listed_for_a_person() {
    let sim = simulator(10, 5).await;
    let t = connected_store(&sim).await;
    let d = Desk {
        t: &t,
        b: browser(&t, &ASSOCIATE).await,
    };
    fault(&sim, "payments", json!({"mode": "error", "status": 422})).await;
    let (s, v) = d.ret("C1", qty(&[(2, 1)]), "original_tender").await;
    assert_eq!(
        (s, v["refund_state"].as_str()),
        (StatusCode::CREATED, Some("failed")),
        "{v}"
    );
    let key = v["refunds"][0]["refund_key"].as_str().unwrap().to_string();
    let lead = Desk {
        t: &t,
        b: browser(&t, &LEAD).await,
    };
    let (s, r) = lead.get("/api/v1/reconciliation").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(r["refunds"].as_array().unwrap().len(), 1, "{r}");
    let f = &r["refunds"][0];
    assert_eq!(
        (
            f["outcome"].as_str(),
            f["kind"].as_str(),
            f["actor"].as_str(),
            f["body"]["refund_key"].as_str()
        ),
        (
            Some("failed"),
            Some("return.refund_failed"),
            Some(ASSOCIATE.id),
            Some(key.as_str())
        )
    );
    let csv = t
        .client
        .get(format!("{}/api/v1/reconciliation?format=csv", t.url))
        .header("cookie", &lead.b.cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        csv.contains(&key) && csv.contains("return.refund_failed"),
        "{csv}"
    );
    // Final: the worker does not send it again once the processor is fine.
    fault(&sim, "payments", json!({"mode": "ok"})).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let rec = received(&sim).await;
    let sent: Vec<&Value> = rec["refunds"].as_array().unwrap().iter().collect();
    assert!(
        sent.is_empty(),
        "an injected error is answered before the processor records: {rec}"
    );
    assert_eq!(
        d.receipt("C1").await["returns"][0]["refund_state"],
        "failed"
    );
    t.stop().await;
    sim.shutdown().await;
}

/// The refund property over HTTP: random partial returns of a receipt, from several desks'
/// worth of requests, never refund more per line than its returned units' share of what was
/// paid, and exactly what was paid once every unit is back.
#[tokio::test]
async fn random_partial_returns_never_refund_more_than_was_paid() {
    use rand::{Rng, SeedableRng};
    let mut receipts = Vec::new();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2026);
    for r in 0..4 {
        let lines: Vec<Value> = (1..=4)
            .map(|n| {
                let (q, p) = (rng.random_range(1..7), rng.random_range(1..4_000));
                let d = rng.random_range(0..=q * p / 3);
                line(
                    (n, &format!("SKU-{r}-{n}"), "home"),
                    (q, p, d, rng.random_range(0..900)),
                    (true, 90, 0),
                )
            })
            .collect();
        // Paid on the card in full, as the lines say (a refund never exceeds the tenders).
        let paid: i64 = lines
            .iter()
            .map(|l| {
                let n = |k: &str| l[k].as_i64().unwrap();
                n("qty") * n("unit_price_minor") - n("discount_minor") + n("tax_minor")
            })
            .sum();
        let mut rec = sale(&format!("P{r}"));
        rec["lines"] = json!(lines);
        rec["tenders"][0]["amount_minor"] = json!(paid);
        rec["total_minor"] = json!(paid);
        receipts.push(rec);
    }
    let t = offline_store(100_000_000, "refuse", receipts.clone()).await;
    let d = Desk {
        t: &t,
        b: browser(&t, &MANAGER).await,
    };
    let mut refunded = std::collections::HashMap::<(usize, u32), (i64, i64)>::new();
    for _ in 0..80 {
        let r = rng.random_range(0..receipts.len());
        let n = rng.random_range(1..=4u32);
        let (s, v) = d
            .ret(
                &format!("P{r}"),
                qty(&[(n, rng.random_range(1..4))]),
                "cash",
            )
            .await;
        match s {
            StatusCode::CREATED => {
                let e = refunded.entry((r, n)).or_default();
                e.0 += v["lines"][0]["qty"].as_i64().unwrap();
                e.1 += v["refund_amount_minor"].as_i64().unwrap();
            }
            StatusCode::UNPROCESSABLE_ENTITY => {
                assert!(
                    matches!(code(&v), Some("too_many" | "fully_returned")),
                    "{v}"
                )
            }
            other => panic!("{other}: {v}"),
        }
    }
    let mut full = 0;
    for ((r, n), (units, amount)) in refunded {
        let l = &receipts[r]["lines"][(n - 1) as usize];
        let (q, p, disc, tax) = (
            l["qty"].as_i64().unwrap(),
            l["unit_price_minor"].as_i64().unwrap(),
            l["discount_minor"].as_i64().unwrap(),
            l["tax_minor"].as_i64().unwrap(),
        );
        let paid = q * p - disc + tax;
        assert!(units <= q);
        assert!(
            amount * q <= paid * units,
            "line {r}/{n}: {amount} for {units} of {q} (paid {paid})"
        );
        if units == q {
            assert_eq!(amount, paid, "line {r}/{n} fully returned");
            full += 1;
        }
    }
    assert!(full > 0, "some lines came back whole");
    t.stop().await;
}

/// A store whose policy never arrived refunds nothing offline without a manager.
#[tokio::test]
async fn without_a_policy_offline_every_refund_needs_a_manager() {
    let t = TestStore::start().await;
    load_people(&t).await;
    assert_eq!(
        t.push("receipts", &delta(1, vec![sale("R1")])).await.0,
        StatusCode::OK
    );
    let d = Desk {
        t: &t,
        b: browser(&t, &ASSOCIATE).await,
    };
    let (s, v) = d.ret("R1", qty(&[(2, 1)]), "cash").await;
    needs_override(s, &v);
    let codes: Vec<&str> = v["error"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["over_associate_cap", "over_offline_budget"]);
    let (s, v) = d
        .ret_with("R1", qty(&[(2, 1)]), "cash", &MANAGER, MANAGER.pin)
        .await;
    assert_eq!(
        (s, v["approved_by"].as_str()),
        (StatusCode::CREATED, Some(MANAGER.id)),
        "{v}"
    );
    t.stop().await;
}

/// Numbers from the feed that no real receipt carries are refused at the feed (naming the
/// field), so no refund, total or receipt view can overflow on them.
#[tokio::test]
async fn absurd_amounts_from_the_feed_are_refused_never_overflow_a_refund() {
    let t = offline_store(100_000, "refuse", vec![]).await;
    let huge = |field: &str, value: i64| {
        let mut r = sale("HUGE");
        r["lines"][1][field] = json!(value);
        r
    };
    for (field, value) in [
        ("unit_price_minor", 4_000_000_000_000_000_000),
        ("qty", 4_000_000_000_000_000_000),
        ("tax_minor", i64::MAX),
        ("discount_minor", i64::MAX),
    ] {
        let (s, v) = t
            .push("receipts", &delta(2, vec![huge(field, value)]))
            .await;
        assert_eq!(
            (s, v["error"]["field"].as_str()),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Some(format!("upserts[0].lines[1].{field}").as_str())
            ),
            "{v}"
        );
    }
    let mut r = sale("HUGE");
    r["tenders"][0]["amount_minor"] = json!(i64::MAX);
    let (s, v) = t.push("receipts", &delta(2, vec![r])).await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("upserts[0].tenders[0].amount_minor")
        ),
        "{v}"
    );
    t.stop().await;
}

/// A body that asks for something impossible is a 4xx naming the field at fault: the same
/// line twice (only one unit left), no units, fewer than none.
#[tokio::test]
async fn a_wrong_return_request_names_the_field() {
    let t = offline_store(100_000_000, "refuse", vec![sale("R1")]).await;
    let d = Desk {
        t: &t,
        b: browser(&t, &MANAGER).await,
    };
    let ask =
        |lines: Value| json!({"receipt_id": "R1", "lines": lines, "refund": {"method": "cash"}});
    for (lines, field) in [
        (
            json!([{"line": 1, "qty": 1, "reason": "x"}, {"line": 1, "qty": 1, "reason": "x"}]),
            "lines[1].line",
        ),
        (
            json!([{"line": 2, "qty": 0, "reason": "x"}]),
            "lines[0].qty",
        ),
        (
            json!([{"line": 2, "qty": -3, "reason": "x"}]),
            "lines[0].qty",
        ),
        (
            json!([{"line": 2, "qty": 1, "reason": " "}]),
            "lines[0].reason",
        ),
        (
            json!([{"line": 9, "qty": 1, "reason": "x"}]),
            "lines[0].line",
        ),
        (
            json!([{"line": 2, "qty": "two", "reason": "x"}]),
            "lines[0].qty",
        ),
    ] {
        let (s, v) = d.post("/api/v1/returns", ask(lines.clone())).await;
        assert!(s.is_client_error(), "{lines}: {s} {v}");
        assert_eq!(v["error"]["field"].as_str(), Some(field), "{lines}: {v}");
    }
    let (s, v) = d
        .post("/api/v1/returns", json!({"receipt_id": "R1", "lines": []}))
        .await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("refund")),
        "{v}"
    );
    assert_eq!(d.receipt("R1").await["returns"], json!([]), "nothing taken");
    t.stop().await;
}
/// However the receipt's lines are priced, a receipt never refunds more than its tenders
/// paid: a receipt whose lines add up to more than was tendered stops at what was tendered.
#[tokio::test]
async fn refunds_of_a_receipt_never_exceed_what_its_tenders_paid() {
    // The lines say 230.21, the card paid 100.00 (HQ's record disagrees with itself).
    let mut r = sale("R1");
    r["tenders"][0]["amount_minor"] = json!(10_000);
    let t = offline_store(100_000_000, "refuse", vec![r]).await;
    let d = Desk {
        t: &t,
        b: browser(&t, &MANAGER).await,
    };
    // The headphones (86.59): within what was paid.
    let (s, v) = d.ret("R1", qty(&[(1, 1)]), "cash").await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    // The socks (31.39) would take it to 117.98, past 100.00.
    let (s, v) = d.ret("R1", qty(&[(2, 3)]), "original_tender").await;
    assert_eq!(
        (
            s,
            code(&v),
            v["error"]["field"].as_str(),
            v["error"]["remaining_minor"].as_i64()
        ),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("refund_exceeds_payment"),
            Some("lines"),
            Some(10_000 - 8659)
        ),
        "{v}"
    );
    let refunded: i64 = t
        .db()
        .query_row(
            "SELECT coalesce(sum(amount_minor), 0) FROM returns",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(refunded, 8659);
    t.stop().await;
}
/// Two desks at once, each within the day's offline budget alone but not together: the budget
/// is checked and spent in the same transaction, so exactly one goes through without a manager.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_desks_at_once_cannot_overspend_the_offline_budget() {
    // 100.00 a day; each return below is 86.59 (a manager's, so the cap does not apply).
    let t = offline_store(10_000, "refuse", vec![sale("R1"), sale("R2")]).await;
    let (m1, m2) = (
        Desk {
            t: &t,
            b: browser(&t, &MANAGER).await,
        },
        Desk {
            t: &t,
            b: browser(&t, &MANAGER).await,
        },
    );
    let (a, b) = tokio::join!(
        m1.ret("R1", qty(&[(1, 1)]), "cash"),
        m2.ret("R2", qty(&[(1, 1)]), "cash")
    );
    let mut got = [(a.0, code(&a.1)), (b.0, code(&b.1))];
    got.sort();
    assert_eq!(
        got,
        [
            (StatusCode::CREATED, None),
            (StatusCode::CONFLICT, Some("override_required"))
        ],
        "{a:?} {b:?}"
    );
    let used: i64 = t
        .db()
        .query_row(
            "SELECT coalesce(sum(amount_minor), 0) FROM returns WHERE offline = 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(used, 8659);
    t.stop().await;
}

/// An answer about Standin's own request or credentials, or "this key is in use" (a retry that
/// caught the first attempt still in progress), is not the processor's answer to the refund:
/// it stays queued and goes again with the same key, instead of being written off for a
/// person to refund by hand (a second refund if the first one went through).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_answered_409_or_401_stays_queued_and_goes_again_with_its_key() {
    let sim = simulator(10, 5).await;
    let t = connected_store(&sim).await;
    let d = Desk {
        t: &t,
        b: browser(&t, &ASSOCIATE).await,
    };
    let mut keys = Vec::new();
    for (status, receipt) in [(409, "C1"), (401, "C2")] {
        fault(&sim, "payments", json!({"mode": "error", "status": status})).await;
        let (s, v) = d.ret(receipt, qty(&[(2, 1)]), "original_tender").await;
        assert_eq!(
            (s, v["refund_state"].as_str()),
            (StatusCode::CREATED, Some("queued")),
            "{status}: {v}"
        );
        keys.push(v["refunds"][0]["refund_key"].as_str().unwrap().to_string());
    }
    fault(&sim, "payments", json!({"mode": "ok"})).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    for receipt in ["C1", "C2"] {
        loop {
            let v = d.receipt(receipt).await;
            if v["returns"][0]["refund_state"] == "refunded" {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{v}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let r = received(&sim).await;
    for key in &keys {
        let f: Vec<&Value> = r["refunds"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["key"] == key.as_str())
            .collect();
        assert_eq!((f.len(), &f[0]["count"]), (1, &json!(1)), "{r}");
    }
    assert_eq!(t.status().await["refunds"]["needs_a_person"], 0);
    t.stop().await;
    sim.shutdown().await;
}
