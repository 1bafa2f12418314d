//! Pickups at the desk over HTTP: finding orders, the due-soon list, every hand-over rule,
//! no-shows, two desks at once, and an order central cancelled while the store was offline.

mod common;

use std::time::Duration;

use common::people::*;
use common::sim::{fault, simulator};
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn in_hours(h: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::hours(h))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn pickup(id: &str, due_in_hours: i64) -> Value {
    let mut o = order(id);
    o["due_at"] = json!(in_hours(due_in_hours));
    o["pickup_code"] = json!(format!("PC{id}"));
    o["lines"] = json!([
        {"line": 1, "sku": "WINE-1", "description": "Red wine", "qty": 2, "unit_price_minor": 1299, "requires_id_check": true},
        {"line": 2, "sku": "BREAD-1", "description": "Sourdough", "qty": 3, "unit_price_minor": 450, "requires_id_check": false}
    ]);
    o
}

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

    async fn hand_over(&self, id: &str, lines: Value, id_checked: bool) -> (StatusCode, Value) {
        self.post(
            &format!("/api/v1/pickups/{id}/handover"),
            json!({"lines": lines, "id_checked": id_checked}),
        )
        .await
    }

    /// A hand-over attempt under the desk's `request_id`.
    async fn hand_over_once(
        &self,
        id: &str,
        lines: Value,
        id_checked: bool,
        request_id: &str,
    ) -> (StatusCode, Value) {
        self.post(
            &format!("/api/v1/pickups/{id}/handover"),
            json!({"lines": lines, "id_checked": id_checked, "request_id": request_id}),
        )
        .await
    }
}

async fn desk_with_orders(orders: Vec<Value>) -> (TestStore, Browser) {
    let t = TestStore::start().await;
    load_people(&t).await;
    assert_eq!(
        t.push("pickup_orders", &delta(1, orders)).await.0,
        StatusCode::OK
    );
    let b = browser(&t, &ASSOCIATE).await;
    (t, b)
}

fn ids(v: &Value) -> Vec<String> {
    v["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["order_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn search_by_number_code_name_and_phone() {
    let mut other = pickup("B2", 2);
    other["customer"] = json!({"name": "Marta Okafor", "phone_last4": "9876"});
    let mut third = pickup("C3", 3);
    third["customer"] = json!({"name": "Ana María de la Cruz", "phone_last4": "5555"});
    // First and last name both match "lee": listed once.
    let mut fourth = pickup("D4", 4);
    fourth["customer"] = json!({"name": "Lee Lee", "phone_last4": "4444"});
    let (t, b) = desk_with_orders(vec![pickup("A1", 1), other, third, fourth]).await;
    let d = Desk { t: &t, b };
    for (q, want) in [
        ("WA1", "A1"),
        ("pcb2", "B2"),
        ("PCB2", "B2"),
        ("dana", "A1"),
        ("okafor", "B2"),
        ("OKAF", "B2"),
        ("Mart", "B2"),
        ("cruz", "C3"),
        ("ana mar", "C3"),
        ("9876", "B2"),
        ("lee", "D4"),
    ] {
        let (s, v) = d.get(&format!("/api/v1/pickups?q={q}")).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(ids(&v), [want], "q={q}");
    }
    for nobody in ["nobody", "kafor", "de", "%25", "_"] {
        let (_, v) = d.get(&format!("/api/v1/pickups?q={nobody}")).await;
        assert!(ids(&v).is_empty(), "q={nobody}: {v}");
    }
    let (_, v) = d.get("/api/v1/pickups?q=nobody").await;
    assert!(v["as_of"].is_string() && v["age_secs"].is_i64(), "{v}");
    let (s, v) = d.get("/api/v1/pickups?due_within_hours=lots").await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("due_within_hours"))
    );
    t.stop().await;
}

/// The fields of a list entry, as the search, the due-soon list and the order view give them.
fn entry(o: &Value) -> Value {
    let keys = [
        "order_id",
        "status",
        "items",
        "requires_id_check",
        "needs_attention",
        "due_at",
        "payment_state",
        "total_minor",
        "customer_name",
        "pickup_code",
    ];
    json!(
        keys.iter()
            .map(|k| (k.to_string(), o[k].clone()))
            .collect::<serde_json::Map<_, _>>()
    )
}

/// Lists read an order's item count and ID-check flag from columns kept at feed time (not its
/// record) and its record only when it was handed over here: every list entry must still say
/// exactly what the order view says, after a hand-over, a no-show, and a changed order.
#[tokio::test]
async fn list_entries_say_what_the_order_view_says() {
    let mut plain = pickup("N1", 1);
    plain["lines"] = json!([{"line": 1, "sku": "BREAD-1", "description": "Sourdough", "qty": 4, "unit_price_minor": 450}]);
    let orders = vec![
        pickup("U1", 1),
        pickup("H1", 1),
        pickup("H2", 1),
        pickup("S1", 1),
        plain,
    ];
    let (t, b) = desk_with_orders(orders).await;
    let d = Desk { t: &t, b };
    assert_eq!(
        d.hand_over("H1", json!([{"line": 2, "qty": 1}]), false)
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(d.hand_over("H2", json!([]), true).await.0, StatusCode::OK);
    assert_eq!(
        d.post("/api/v1/pickups/S1/no-show", json!({})).await.0,
        StatusCode::OK
    );
    // Central changes U1's lines: the list entry follows the new record.
    let mut changed = pickup("U1", 1);
    changed["lines"] = json!([{"line": 1, "sku": "BREAD-1", "description": "Sourdough", "qty": 7, "unit_price_minor": 450}]);
    changed["updated_at"] = json!(in_hours(0));
    assert_eq!(
        t.push("pickup_orders", &delta(2, vec![changed])).await.0,
        StatusCode::OK
    );

    let entries = |list: &Value| -> Vec<Value> {
        list["orders"]
            .as_array()
            .unwrap()
            .iter()
            .map(entry)
            .collect()
    };
    let (_, due) = d.get("/api/v1/pickups?due_within_hours=24").await;
    let listed = entries(&due);
    // Every order is Dana Reyes's: a name search lists all five, no-show included.
    let named = entries(&d.get("/api/v1/pickups?q=reyes").await.1);
    assert_eq!(named.len(), 5, "{named:?}");
    for (id, status, items, id_check) in [
        ("U1", "ready", 7, false),
        ("H1", "partially_handed_over", 5, true),
        ("H2", "handed_over", 5, true),
        ("S1", "no_show", 5, true),
        ("N1", "ready", 4, false),
    ] {
        let (s, view) = d.get(&format!("/api/v1/pickups/{id}")).await;
        assert_eq!(s, StatusCode::OK);
        let want = entry(&view);
        assert_eq!(
            (
                want["status"].as_str(),
                want["items"].as_i64(),
                want["requires_id_check"].as_bool()
            ),
            (Some(status), Some(items), Some(id_check)),
            "{id}: {view}"
        );
        let (_, found) = d.get(&format!("/api/v1/pickups?q=W{id}")).await;
        assert_eq!(entry(&found["orders"][0]), want, "search for {id}");
        let by_name = named.iter().find(|l| l["order_id"] == id);
        assert_eq!(by_name, Some(&want), "name search entry of {id}");
        // The due-soon list leaves out what is no longer to prepare; the rest must match.
        if let Some(l) = listed.iter().find(|l| l["order_id"] == id) {
            assert_eq!(l, &want, "due-soon entry of {id}");
        } else {
            assert!(
                ["H2", "S1"].contains(&id),
                "{id} missing from the due-soon list: {due}"
            );
        }
    }
    t.stop().await;
}

/// Name search answers from its copy in memory once the copy is built (`pickups::names`).
/// Every change shows in the very next search, whether the copy or SQL answers it: a
/// hand-over, a no-show, central renaming and cancelling orders, a snapshot switching in.
#[tokio::test]
async fn name_search_from_memory_shows_every_change_at_once() {
    let (t, b) = desk_with_orders(vec![pickup("A1", 1), pickup("A2", 2), pickup("A3", 3)]).await;
    let d = Desk { t: &t, b };
    let names = &t.state.pickup_names;
    let statuses = |v: &Value| -> Vec<(String, String)> {
        v["orders"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                (
                    o["order_id"].as_str().unwrap().to_string(),
                    o["status"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let pairs = |want: &[(&str, &str)]| -> Vec<(String, String)> {
        want.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    // Searches until one is answered from memory: the copy caught up with every change.
    let from_memory = |q: &'static str| {
        let d = &d;
        async move {
            for _ in 0..100 {
                let before = names.from_memory.load(std::sync::atomic::Ordering::Relaxed);
                let (s, v) = d.get(&format!("/api/v1/pickups?q={q}")).await;
                assert_eq!(s, StatusCode::OK, "{v}");
                if names.from_memory.load(std::sync::atomic::Ordering::Relaxed) > before {
                    return v;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!("name search never answered from memory");
        }
    };
    // Either way, right after a change and once the copy has caught up, the same answer.
    let check = |q: &'static str, want: Vec<(String, String)>| {
        let d = &d;
        async move {
            let (_, now) = d.get(&format!("/api/v1/pickups?q={q}")).await;
            assert_eq!(statuses(&now), want, "right after the change: {now}");
            let later = from_memory(q).await;
            assert_eq!(statuses(&later), want, "from memory: {later}");
            assert_eq!(later["as_of"], now["as_of"]);
            assert!(later["age_secs"].is_i64(), "{later}");
        }
    };
    check(
        "reyes",
        pairs(&[("A1", "ready"), ("A2", "ready"), ("A3", "ready")]),
    )
    .await;

    assert_eq!(d.hand_over("A1", json!([]), true).await.0, StatusCode::OK);
    let (_, a3_before) = d.get("/api/v1/pickups/A3").await;
    check(
        "reyes",
        pairs(&[("A1", "handed_over"), ("A2", "ready"), ("A3", "ready")]),
    )
    .await;
    // With the copy current, one order's view still holds its hand-over (an acted-on order
    // reads its actions), and an order not acted on is the same view without the queries.
    let (_, a1) = d.get("/api/v1/pickups/A1").await;
    assert_eq!(a1["status"], "handed_over", "{a1}");
    assert_eq!(a1["handovers"].as_array().map(Vec::len), Some(1), "{a1}");
    let (_, a3) = d.get("/api/v1/pickups/A3").await;
    assert_eq!(order_part(&a3), order_part(&a3_before));

    assert_eq!(
        d.post("/api/v1/pickups/A2/no-show", json!({})).await.0,
        StatusCode::OK
    );
    check(
        "dana",
        pairs(&[("A1", "handed_over"), ("A2", "no_show"), ("A3", "ready")]),
    )
    .await;

    // Central renames A3 and cancels A2.
    let mut renamed = pickup("A3", 3);
    renamed["customer"]["name"] = json!("Kim Park");
    let mut cancelled = pickup("A2", 2);
    cancelled["status"] = json!("cancelled");
    assert_eq!(
        t.push("pickup_orders", &delta(2, vec![renamed, cancelled]))
            .await
            .0,
        StatusCode::OK
    );
    check("reyes", pairs(&[("A1", "handed_over"), ("A2", "no_show")])).await;
    check("park", pairs(&[("A3", "ready")])).await;

    // A snapshot switches in a whole new list.
    assert_eq!(
        t.push(
            "pickup_orders",
            &snapshot_part(3, "s-1", 1, 1, vec![pickup("B1", 1)])
        )
        .await
        .0,
        StatusCode::OK
    );
    check("reyes", pairs(&[("B1", "ready")])).await;
    check("park", vec![]).await;
    t.stop().await;
}

#[tokio::test]
async fn the_due_soon_list_holds_open_orders_due_soon_and_drops_what_was_handed_over() {
    let mut cancelled = pickup("C3", 1);
    cancelled["status"] = json!("cancelled");
    let (t, b) = desk_with_orders(vec![
        pickup("LATE", -2),
        pickup("SOON", 1),
        pickup("LATER", 30),
        cancelled,
    ])
    .await;
    let d = Desk { t: &t, b };
    let (_, v) = d.get("/api/v1/pickups?due_within_hours=4").await;
    assert_eq!(
        ids(&v),
        ["LATE", "SOON"],
        "overdue first, then due soon; not later, not cancelled"
    );
    assert_eq!(v["orders"][1]["status"], "ready");
    assert_eq!(v["orders"][1]["requires_id_check"], true);
    let (s, _) = d.hand_over("SOON", json!([]), true).await;
    assert_eq!(s, StatusCode::OK);
    let (_, v) = d.get("/api/v1/pickups?due_within_hours=4").await;
    assert_eq!(ids(&v), ["LATE"]);
    let (s, v) = d.post("/api/v1/pickups/LATE/no-show", json!({})).await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("no_show")));
    let (_, v) = d.get("/api/v1/pickups").await;
    assert!(
        ids(&v).is_empty(),
        "the default list is the next 4 hours: {v}"
    );
    t.stop().await;
}

/// During a long outage central still says `ready` for orders the store gave out; those must
/// not crowd the orders still to prepare off the due-soon list, and a list that is still cut
/// says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handed_over_orders_never_crowd_due_orders_off_the_due_soon_list() {
    // 700 overdue orders, a minute apart; the earliest 560 were handed over here (every 40th
    // only in part: that one is still to finish), then 154 remain open.
    let at = |i: i64| {
        (chrono::Utc::now() - chrono::Duration::hours(30) + chrono::Duration::minutes(i))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let orders: Vec<Value> = (0..700)
        .map(|i| {
            let mut o = pickup(&format!("D{i:04}"), 0);
            o["due_at"] = json!(at(i));
            o
        })
        .collect();
    let (t, b) = desk_with_orders(orders).await;
    let d = Desk { t: &t, b };
    {
        // Written as the hand-over route writes them (two lines: 2 wine, 3 bread); direct, so
        // the test does not wait on 560 fsyncs. The fully handed-over ones split over two
        // hand-overs, the way a desk does it.
        let mut c = rusqlite::Connection::open(t.db_path()).unwrap();
        c.busy_timeout(Duration::from_secs(10)).unwrap();
        let tx = c.transaction().unwrap();
        let add = |id: &str, lines: Value| {
            tx.execute(
                "INSERT INTO pickup_handovers (order_id, lines, id_checked, by_employee, at, journal_id)
                 VALUES (?1, ?2, 1, 'E1', '2026-01-01T00:00:00Z', 'j')",
                rusqlite::params![id, lines.to_string()],
            )
            .unwrap();
        };
        for i in 0..560 {
            let id = format!("D{i:04}");
            add(&id, json!([{"line": 1, "qty": 2}, {"line": 2, "qty": 1}]));
            if i % 40 != 0 {
                add(&id, json!([{"line": 2, "qty": 2}]));
            }
        }
        tx.commit().unwrap();
    }
    let open: Vec<String> = (0..700)
        .filter(|i| *i >= 560 || i % 40 == 0)
        .map(|i| format!("D{i:04}"))
        .collect();
    assert_eq!(open.len(), 154);
    let (s, v) = d.get("/api/v1/pickups?due_within_hours=4").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(ids(&v), open, "every open order, earliest first");
    assert_eq!(v["truncated"], false, "{}", v["truncated"]);
    assert_eq!(v["orders"][0]["status"], "partially_handed_over");

    // 400 more open orders due: 554 open, more than the list holds. It shows the earliest 500
    // and says it was cut.
    let more: Vec<Value> = (700..1100)
        .map(|i| {
            let mut o = pickup(&format!("D{i:04}"), 0);
            o["due_at"] = json!(at(i));
            o
        })
        .collect();
    assert_eq!(
        t.push("pickup_orders", &delta(2, more)).await.0,
        StatusCode::OK
    );
    let (_, v) = d.get("/api/v1/pickups?due_within_hours=4").await;
    let all_open: Vec<String> = open
        .into_iter()
        .chain((700..1100).map(|i| format!("D{i:04}")))
        .collect();
    assert_eq!(ids(&v), all_open[..500]);
    assert_eq!(v["truncated"], true);
    // It says how many are due in all, and where the rest starts: the next page holds them.
    assert_eq!(v["total"], 554);
    let after = v["next_after"]
        .as_str()
        .expect("a cursor for the rest")
        .to_string();
    let (s, rest) = d
        .get(&format!(
            "/api/v1/pickups?due_within_hours=4&after={}",
            after.replace('|', "%7C").replace(':', "%3A")
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{rest}");
    assert_eq!(ids(&rest), all_open[500..]);
    assert_eq!(
        (&rest["truncated"], &rest["total"]),
        (&json!(false), &json!(554))
    );
    assert!(rest.get("next_after").is_none(), "{rest}");
    let (s, v) = d
        .get("/api/v1/pickups?due_within_hours=4&after=nonsense")
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    // A search is not the due-soon list and does not carry the flag.
    let (_, v) = d.get("/api/v1/pickups?q=WD0001").await;
    assert!(v.get("truncated").is_none(), "{v}");
    t.stop().await;
}

#[tokio::test]
async fn every_hand_over_rule() {
    let mut unpaid = pickup("U1", 1);
    unpaid["payment_state"] = json!("pay_at_pickup");
    let mut cancelled = pickup("X1", 1);
    cancelled["status"] = json!("cancelled");
    let (t, b) = desk_with_orders(vec![pickup("P1", 1), unpaid, cancelled]).await;
    let d = Desk { t: &t, b };

    let (s, v) = d.hand_over("P1", json!([]), false).await;
    assert_eq!(
        (s, v["error"]["code"].as_str(), v["error"]["field"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("id_check_required"),
            Some("id_checked")
        )
    );
    let (s, v) = d.hand_over("U1", json!([]), true).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("not_paid"))
    );
    let (s, v) = d.hand_over("X1", json!([]), true).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("order_cancelled"))
    );
    let (s, v) = d
        .hand_over("P1", json!([{"line": 2, "qty": 4}]), false)
        .await;
    assert_eq!(
        (
            s,
            v["error"]["field"].as_str(),
            v["error"]["remaining"].as_i64()
        ),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("lines[0].qty"),
            Some(3)
        )
    );
    let (s, v) = d
        .hand_over("P1", json!([{"line": 7, "qty": 1}]), true)
        .await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("lines[0].line"))
    );
    let (s, v) = d
        .post("/api/v1/pickups/P1/handover", json!({"lines": []}))
        .await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("id_checked"))
    );

    // Part of it: the bread, which needs no ID check.
    let (s, v) = d
        .hand_over("P1", json!([{"line": 2, "qty": 2}]), false)
        .await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::OK, Some("partially_handed_over")),
        "{v}"
    );
    assert_eq!(v["lines"][1]["remaining_qty"], 1);
    let (s, v) = d.post("/api/v1/pickups/P1/no-show", json!({})).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("already_handed_over"))
    );
    // The rest.
    let (s, v) = d.hand_over("P1", json!([]), true).await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::OK, Some("handed_over"))
    );
    assert_eq!(v["handovers"].as_array().unwrap().len(), 2);
    assert_eq!(v["handovers"][0]["by"], ASSOCIATE.id);
    let (s, v) = d.hand_over("P1", json!([]), true).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("already_handed_over"))
    );

    let entries: Vec<(String, String)> = t
        .db()
        .prepare("SELECT kind, body FROM journal WHERE lane = 'pickups' ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        entries.len(),
        2,
        "one journal entry per hand-over, none for refusals"
    );
    let second: Value = serde_json::from_str(&entries[1].1).unwrap();
    assert_eq!(
        second["lines"],
        json!([{"line": 1, "qty": 2}, {"line": 2, "qty": 1}])
    );
    assert_eq!(second["complete"], true);
    // A later feed batch (central still says "ready") does not undo the hand-over.
    t.push("pickup_orders", &delta(2, vec![pickup("P1", 1)]))
        .await;
    let (_, v) = d.get("/api/v1/pickups/P1").await;
    assert_eq!(v["status"], "handed_over");
    t.stop().await;
}

/// The order's answer without the freshness, which moves with the clock.
fn order_part(v: &Value) -> Value {
    let mut v = v.clone();
    let o = v.as_object_mut().unwrap();
    o.remove("age_secs");
    o.remove("as_of");
    v
}

fn recorded(t: &TestStore) -> (i64, i64) {
    let db = t.db();
    let count = |sql: &str| db.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
    (
        count("SELECT count(*) FROM pickup_handovers"),
        count("SELECT count(*) FROM journal WHERE lane = 'pickups'"),
    )
}

/// A partial hand-over retried after its answer was lost goes out once: one record, one
/// journal entry, the same answer; two retries racing each other are no different.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_over_retried_with_its_request_id_is_recorded_once() {
    let (t, b) = desk_with_orders(vec![pickup("I1", 1)]).await;
    let d = Desk { t: &t, b };
    let one_loaf = json!([{"line": 2, "qty": 1}]);
    let (s, first) = d
        .hand_over_once("I1", one_loaf.clone(), false, "attempt-1")
        .await;
    assert_eq!(
        (s, first["status"].as_str()),
        (StatusCode::OK, Some("partially_handed_over")),
        "{first}"
    );
    let (s, again) = d
        .hand_over_once("I1", one_loaf.clone(), false, "attempt-1")
        .await;
    assert_eq!(s, StatusCode::OK, "{again}");
    assert_eq!(order_part(&again), order_part(&first), "the same answer");
    assert_eq!(again["lines"][1]["handed_over_qty"], 1, "one loaf went out");
    assert_eq!(recorded(&t), (1, 1), "one hand-over, one journal entry");

    // Two retries of one attempt arriving together still record it once.
    let (a, b) = tokio::join!(
        d.hand_over_once("I1", one_loaf.clone(), false, "attempt-2"),
        d.hand_over_once("I1", one_loaf.clone(), false, "attempt-2")
    );
    assert_eq!((a.0, b.0), (StatusCode::OK, StatusCode::OK), "{a:?} {b:?}");
    assert_eq!(a.1["lines"][1]["handed_over_qty"], 2, "{a:?}");
    assert_eq!(order_part(&a.1), order_part(&b.1));
    assert_eq!(recorded(&t), (2, 2));

    // The rest, retried after it completed the order: the order as it stands, not a refusal.
    let (s, v) = d.hand_over_once("I1", json!([]), true, "attempt-3").await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::OK, Some("handed_over"))
    );
    let (s, v) = d.hand_over_once("I1", json!([]), true, "attempt-3").await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::OK, Some("handed_over")),
        "{v}"
    );
    assert_eq!(v["handovers"].as_array().unwrap().len(), 3);
    assert_eq!(recorded(&t), (3, 3));
    t.stop().await;
}

#[tokio::test]
async fn a_request_id_reused_for_a_different_hand_over_is_refused() {
    let (t, b) = desk_with_orders(vec![pickup("J1", 1), pickup("J2", 1)]).await;
    let d = Desk { t: &t, b };
    let (s, _) = d
        .hand_over_once("J1", json!([{"line": 2, "qty": 1}]), false, "k")
        .await;
    assert_eq!(s, StatusCode::OK);
    for (lines, id_checked) in [
        (json!([{"line": 2, "qty": 2}]), false),
        (json!([{"line": 2, "qty": 1}]), true),
        (json!([]), true),
    ] {
        let (s, v) = d.hand_over_once("J1", lines.clone(), id_checked, "k").await;
        assert_eq!(
            (s, v["error"]["code"].as_str(), v["error"]["field"].as_str()),
            (
                StatusCode::CONFLICT,
                Some("request_id_reused"),
                Some("request_id")
            ),
            "{lines} {id_checked}: {v}"
        );
    }
    assert_eq!(recorded(&t), (1, 1), "nothing recorded for the refusals");
    // The key belongs to one order's hand-over: another order may use it.
    let (s, v) = d
        .hand_over_once("J2", json!([{"line": 2, "qty": 1}]), false, "k")
        .await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::OK, Some("partially_handed_over"))
    );
    for bad in [String::new(), "x".repeat(65)] {
        let (s, v) = d.hand_over_once("J1", json!([]), true, &bad).await;
        assert_eq!(
            (s, v["error"]["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some("request_id")),
            "{bad:?}"
        );
    }
    // 64 characters is the limit, counted as characters, not bytes.
    let (s, v) = d
        .hand_over_once("J1", json!([]), true, &"é".repeat(64))
        .await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::OK, Some("handed_over")),
        "{v}"
    );
    t.stop().await;
}

/// Without a request_id a hand-over is what it always was: each one sent is recorded.
#[tokio::test]
async fn a_hand_over_without_a_request_id_records_each_one_sent() {
    let (t, b) = desk_with_orders(vec![pickup("N1", 1)]).await;
    let d = Desk { t: &t, b };
    for left in [2, 1] {
        let (s, v) = d
            .hand_over("N1", json!([{"line": 2, "qty": 1}]), false)
            .await;
        assert_eq!(
            (s, v["lines"][1]["remaining_qty"].as_i64()),
            (StatusCode::OK, Some(left))
        );
    }
    assert_eq!(recorded(&t), (2, 2));
    let stored: Vec<Option<String>> = t
        .db()
        .prepare("SELECT request_id FROM pickup_handovers")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(stored, [None, None]);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_desks_handing_over_one_order_at_once_give_it_out_once() {
    let (t, b) = desk_with_orders(vec![pickup("R1", 1)]).await;
    let b2 = browser(&t, &LEAD).await;
    let (d1, d2) = (Desk { t: &t, b }, Desk { t: &t, b: b2 });
    let (a, b) = tokio::join!(
        d1.hand_over("R1", json!([]), true),
        d2.hand_over("R1", json!([]), true)
    );
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::CONFLICT],
        "{a:?} {b:?}"
    );
    let n: i64 = t
        .db()
        .query_row("SELECT count(*) FROM pickup_handovers", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
    t.stop().await;
}

/// Central cancels an order while the store is cut off; the store hands it over; when central
/// returns it answers the hand-over with a conflict, which a manager finds in reconciliation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_over_of_an_order_central_cancelled_offline_surfaces_as_a_conflict() {
    let sim = simulator(30, 40).await;
    let (central, payments) = (sim.central_url(), sim.payments_url());
    let t = TestStore::start_with(move |c| {
        c.central.url = Some(central);
        c.payments.url = Some(payments);
        c.feeds.pull = true;
        c.feeds.pull_interval_secs = 1;
        c.central.timeout_ms = 500;
        c.central.health_interval_secs = 1;
        c.journal.retry_base_ms = 50;
        c.journal.retry_cap_ms = 300;
        c.journal.idle_poll_ms = 50;
        c.pepper = standin::config::Secret::new(PEPPER);
    })
    .await;
    t.wait_for_status("feeds", |s| {
        s["feeds"]["staff"]["snapshot_at"].is_string()
            && s["feeds"]["pickup_orders"]["snapshot_at"].is_string()
    })
    .await;
    let creds = sim.credentials().clone();
    let manager = creds.staff.iter().find(|s| s.role == "manager").unwrap();
    let (s, _, mb) = sign_in(&t, &manager.employee_id, &manager.pin).await;
    assert_eq!(s, StatusCode::OK);
    let d = Desk {
        t: &t,
        b: mb.unwrap(),
    };
    let order_id: String = t
        .db()
        .query_row("SELECT order_id FROM pickup_orders WHERE status IN ('placed','ready') AND payment_state = 'paid' ORDER BY due_at LIMIT 1", [], |r| r.get(0))
        .unwrap();

    fault(&sim, "central", json!({"mode": "down"})).await;
    t.wait_for_status("central down", |s| {
        s["upstreams"]["central"]["state"] == "down"
    })
    .await;
    common::sim::admin(
        &sim,
        reqwest::Method::POST,
        &format!("/admin/central/orders/{order_id}/cancel"),
        json!({}),
    )
    .await;
    let (s, v) = d
        .get(&format!("/api/v1/pickups?q={}", d_number(&t, &order_id)))
        .await;
    assert_eq!(
        (s, ids(&v)),
        (StatusCode::OK, vec![order_id.clone()]),
        "search works with central down"
    );
    let (s, v) = d.hand_over(&order_id, json!([]), true).await;
    assert_eq!(s, StatusCode::OK, "the store did not know: {v}");

    fault(&sim, "central", json!({"mode": "ok"})).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let order = loop {
        let (_, v) = d.get(&format!("/api/v1/pickups/{order_id}")).await;
        if v["needs_attention"] == true {
            break v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no conflict surfaced: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(order["conflict"]["reason"], "order_cancelled");
    assert_eq!(order["central_refusal"]["outcome"], "conflict");
    assert_eq!(order["handovers"][0]["central_outcome"], "conflict");
    // People are named as the staff list names them.
    let name = order["handovers"][0]["by_name"].as_str().expect("a name");
    assert!(!name.is_empty() && name != manager.employee_id);
    assert_eq!(
        order["status"], "handed_over",
        "what the store did stays on record"
    );
    let (_, r) = d.get("/api/v1/reconciliation").await;
    let item = r["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["body"]["order_id"] == order_id.as_str())
        .expect("in reconciliation");
    assert_eq!(
        (item["kind"].as_str(), item["outcome"].as_str()),
        (Some("pickup.handed_over"), Some("conflict"))
    );
    assert_eq!(
        item["actor"].as_str(),
        Some(manager.employee_id.as_str()),
        "who handed it over"
    );
    assert_eq!(r["names"][&manager.employee_id].as_str(), Some(name));
    assert!(
        item["body"]["lines"]
            .as_array()
            .is_some_and(|l| !l.is_empty()),
        "what was handed over"
    );
    let csv = t
        .client
        .get(format!("{}/api/v1/reconciliation?format=csv", t.url))
        .header("cookie", &d.b.cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(csv.contains(&order_id) && csv.contains("conflict"), "{csv}");
    t.stop().await;
    sim.shutdown().await;
}

fn d_number(t: &TestStore, order_id: &str) -> String {
    t.db()
        .query_row(
            "SELECT order_number FROM pickup_orders WHERE order_id = ?1",
            [order_id],
            |r| r.get(0),
        )
        .unwrap()
}

/// A hand-over central rejects (not only one it finds in conflict) puts the order in need of
/// attention for everyone who opens or finds it, not only in a lead's reconciliation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_over_central_rejects_needs_attention_on_the_order() {
    let sim = simulator(30, 40).await;
    let (central, payments) = (sim.central_url(), sim.payments_url());
    let t = TestStore::start_with(move |c| {
        c.central.url = Some(central);
        c.payments.url = Some(payments);
        c.feeds.pull = true;
        c.feeds.pull_interval_secs = 1;
        c.central.health_interval_secs = 1;
        c.journal.retry_base_ms = 50;
        c.journal.retry_cap_ms = 300;
        c.journal.idle_poll_ms = 50;
        c.pepper = standin::config::Secret::new(PEPPER);
    })
    .await;
    t.wait_for_status("feeds", |s| {
        s["feeds"]["staff"]["snapshot_at"].is_string()
            && s["feeds"]["pickup_orders"]["snapshot_at"].is_string()
    })
    .await;
    common::sim::admin(
        &sim,
        reqwest::Method::PUT,
        "/admin/central/reject",
        json!({"kinds": ["pickup.handed_over"]}),
    )
    .await;
    let creds = sim.credentials().clone();
    let associate = creds.staff.iter().find(|s| s.role == "associate").unwrap();
    let (s, _, b) = sign_in(&t, &associate.employee_id, &associate.pin).await;
    assert_eq!(s, StatusCode::OK);
    let d = Desk {
        t: &t,
        b: b.unwrap(),
    };
    let order_id: String = t
        .db()
        .query_row("SELECT order_id FROM pickup_orders WHERE status IN ('placed','ready') AND payment_state = 'paid' ORDER BY due_at LIMIT 1", [], |r| r.get(0))
        .unwrap();
    let (s, v) = d.hand_over(&order_id, json!([]), true).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["needs_attention"], false, "not answered yet");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let order = loop {
        let (_, v) = d.get(&format!("/api/v1/pickups/{order_id}")).await;
        if v["needs_attention"] == true {
            break v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no rejection surfaced: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(order["central_refusal"]["outcome"], "rejected");
    assert!(
        order["conflict"].is_null(),
        "a rejection is not a conflict: {order}"
    );
    assert_eq!(order["handovers"][0]["central_outcome"], "rejected");
    // Found by its number, the list entry says so too.
    let (_, v) = d
        .get(&format!("/api/v1/pickups?q={}", d_number(&t, &order_id)))
        .await;
    assert_eq!(v["orders"][0]["needs_attention"], true, "{v}");
    t.stop().await;
    sim.shutdown().await;
}
