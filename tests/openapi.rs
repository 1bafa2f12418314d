//! The OpenAPI document states what the server enforces (issue 14, item 9), checked without
//! Schemathesis (`scripts/schemathesis` runs it against the demo): every request object is
//! closed unless it says where the server takes more, each capped text field's `maxLength` is
//! the server's cap, and the server counts and reads as the document does (characters, not
//! bytes; `2.0` is the integer 2; unknown fields refused at every depth).

mod common;

use common::people::*;
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn document() -> Value {
    standin::app::openapi::document(32 * 1024 * 1024)
}

fn request_schema<'a>(doc: &'a Value, path: &str, method: &str) -> &'a Value {
    let s = &doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"];
    assert!(s.is_object(), "{method} {path} has no JSON request body");
    s
}

/// Every object schema reachable from `schema` through properties and items (components
/// followed), with its JSON pointer-ish location.
fn objects<'a>(doc: &'a Value, schema: &'a Value, at: String, out: &mut Vec<(String, &'a Value)>) {
    if let Some(r) = schema["$ref"].as_str() {
        let target = doc.pointer(r.trim_start_matches('#')).expect(r);
        return objects(doc, target, format!("{at}->{r}"), out);
    }
    if schema["additionalProperties"] == true {
        out.push((at.clone(), schema));
    }
    if let Some(props) = schema["properties"].as_object() {
        if schema["additionalProperties"] != true {
            out.push((at.clone(), schema));
        }
        for (name, p) in props {
            objects(doc, p, format!("{at}.{name}"), out);
        }
    }
    if schema["items"].is_object() {
        objects(doc, &schema["items"], format!("{at}[]"), out);
    }
}

/// Every route refuses unknown fields, so every object of every request body is closed,
/// except where the server takes more and the document says so: a feed record and a sale's
/// line (a receipt's line, which like the receipts feed's may carry more).
#[test]
fn every_request_object_is_closed_unless_it_says_where_the_server_takes_more() {
    let doc = document();
    let mut open = Vec::new();
    let mut checked = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let schema = &op["requestBody"]["content"]["application/json"]["schema"];
            if !schema.is_object() {
                continue;
            }
            let mut found = Vec::new();
            objects(&doc, schema, format!("{method} {path}"), &mut found);
            for (at, obj) in found {
                checked += 1;
                match &obj["additionalProperties"] {
                    Value::Bool(false) => {}
                    Value::Bool(true) => open.push(at),
                    other => panic!("{at}: additionalProperties is {other}, not false"),
                }
            }
        }
    }
    assert!(checked >= 15, "only {checked} request objects found");
    open.sort();
    assert_eq!(
        open,
        [
            "post /kiosk/v1/sales.lines[]",
            "post /sync/v1/feeds/{feed}/batches->#/components/schemas/FeedBatch.upserts[]",
        ]
    );
}

/// Each text field the server caps states the server's own cap, in the unit both count
/// (characters), with `minLength` 1 where the server refuses an empty value.
#[test]
fn capped_fields_state_the_servers_caps() {
    use standin::payments::{MAX_PAYMENT_MINOR, SECRET_MAX, SHORT_FIELD_MAX_CHARS};
    let doc = document();
    let body = |path, method| request_schema(&doc, path, method).clone();
    let login = body("/api/v1/session", "post");
    let pay = body("/kiosk/v1/payments", "post");
    let sale = body("/kiosk/v1/sales", "post");
    let ret = body("/api/v1/returns", "post");
    let hand = body("/api/v1/pickups/{order_id}/handover", "post");
    let ack = body("/sync/v1/journal/ack", "post");
    let query = |path: &str| {
        doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "q")
            .unwrap()["schema"]
            .clone()
    };
    let text = standin::access::login::CREDENTIAL_MAX_CHARS;
    let cases: Vec<(&str, &Value, usize, bool)> = vec![
        (
            "employee_id",
            &login["properties"]["employee_id"],
            text,
            true,
        ),
        ("pin", &login["properties"]["pin"], text, true),
        (
            "idempotency_key",
            &pay["properties"]["idempotency_key"],
            SHORT_FIELD_MAX_CHARS,
            true,
        ),
        (
            "basket_id",
            &pay["properties"]["basket_id"],
            SHORT_FIELD_MAX_CHARS,
            true,
        ),
        (
            "tender.brand",
            &pay["properties"]["tender"]["properties"]["brand"],
            SHORT_FIELD_MAX_CHARS,
            true,
        ),
        (
            "tender.token",
            &pay["properties"]["tender"]["properties"]["token"],
            SECRET_MAX,
            false,
        ),
        (
            "tender.ciphertext",
            &pay["properties"]["tender"]["properties"]["ciphertext"],
            SECRET_MAX,
            false,
        ),
        (
            "sale_id",
            &sale["properties"]["sale_id"],
            SHORT_FIELD_MAX_CHARS,
            true,
        ),
        (
            "receipt_id",
            &sale["properties"]["receipt_id"],
            SHORT_FIELD_MAX_CHARS,
            true,
        ),
        (
            "returns request_id",
            &ret["properties"]["request_id"],
            standin::returns::take::RETURN_REQUEST_ID_MAX_CHARS,
            true,
        ),
        (
            "hand-over request_id",
            &hand["properties"]["request_id"],
            standin::pickups::HANDOVER_REQUEST_ID_MAX_CHARS,
            true,
        ),
        (
            "ack reason",
            &ack["properties"]["results"]["items"]["properties"]["reason"],
            standin::journal::sync_api::REASON_MAX,
            false,
        ),
    ];
    for (name, schema, cap, non_empty) in cases {
        assert_eq!(
            schema["maxLength"].as_u64(),
            Some(cap as u64),
            "{name}: {schema}"
        );
        if non_empty {
            assert_eq!(schema["minLength"], 1, "{name}: {schema}");
        }
    }
    for path in ["/api/v1/pickups", "/api/v1/receipts"] {
        assert_eq!(
            query(path)["maxLength"].as_u64(),
            Some(standin::pickups::QUERY_MAX_CHARS as u64),
            "{path} q"
        );
    }
    let most_units = standin::feeds::records::MAX_LINE_QTY;
    for (name, qty) in [
        (
            "returns",
            &ret["properties"]["lines"]["items"]["properties"]["qty"],
        ),
        (
            "hand-over",
            &hand["properties"]["lines"]["items"]["properties"]["qty"],
        ),
        (
            "sale",
            &sale["properties"]["lines"]["items"]["properties"]["qty"],
        ),
    ] {
        assert_eq!(
            (qty["type"].as_str(), qty["maximum"].as_i64()),
            (Some("integer"), Some(most_units)),
            "{name} qty"
        );
    }
    for amount in [
        &pay["properties"]["amount_minor"],
        &sale["properties"]["tenders"]["items"]["properties"]["amount_minor"],
    ] {
        assert_eq!(
            (amount["minimum"].as_i64(), amount["maximum"].as_i64()),
            (Some(1), Some(MAX_PAYMENT_MINOR))
        );
    }
}

/// The server counts a text's length in characters, as the document's `maxLength` does: a
/// 64-character employee id of two-byte letters is an id (a wrong one), 65 is refused.
#[tokio::test]
async fn lengths_are_counted_in_characters_as_the_document_counts_them() {
    let t = TestStore::start().await;
    load_people(&t).await;
    let cap = standin::access::login::CREDENTIAL_MAX_CHARS;
    let (s, b, _) = sign_in(&t, &"é".repeat(cap), "123456").await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_credentials")),
        "{b}"
    );
    let (s, b, _) = sign_in(&t, &"é".repeat(cap + 1), "123456").await;
    assert_eq!(
        (s, b["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("employee_id")),
        "{b}"
    );
    let (s, b, _) = sign_in(&t, "   ", "123456").await;
    assert_eq!(
        (s, b["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("employee_id")),
        "{b}"
    );
    t.stop().await;
}

/// An unknown field is refused at any depth where the document closes the object: a
/// hand-over's line, a sale and its tender.
#[tokio::test]
async fn unknown_fields_are_refused_where_the_document_closes_the_object() {
    let t = TestStore::start().await;
    load_people(&t).await;
    t.push("pickup_orders", &delta(1, vec![order("O-1")])).await;
    let b = browser(&t, &ASSOCIATE).await;
    let res = t
        .client
        .post(format!("{}/api/v1/pickups/O-1/handover", t.url))
        .header("cookie", &b.cookie)
        .header("x-csrf-token", &b.csrf)
        .json(&json!({"id_checked": true, "lines": [{"line": 1, "qty": 1, "note": "x"}]}))
        .send()
        .await
        .unwrap();
    let (s, body): (StatusCode, Value) = (res.status(), res.json().await.unwrap());
    assert_eq!(
        (
            s,
            body["error"]["code"].as_str(),
            body["error"]["field"].as_str()
        ),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("unknown_field"),
            Some("lines[0].note")
        ),
        "{body}"
    );
    let sale = json!({"sale_id": "S-1", "receipt_id": "R-1", "sold_at": "2026-01-01T00:00:00Z",
        "lines": [], "tenders": [{"payment_id": "P-1", "amount_minor": 100}]});
    for (body, field) in [
        (
            {
                let mut s = sale.clone();
                s["coupon"] = json!("x");
                s
            },
            "coupon",
        ),
        (
            {
                let mut s = sale.clone();
                s["tenders"][0]["tip"] = json!(1);
                s
            },
            "tenders[0].tip",
        ),
    ] {
        let (s, b) = t.kiosk_post(KIOSK_1.1, "/kiosk/v1/sales", &body).await;
        assert_eq!(
            (s, b["error"]["code"].as_str(), b["error"]["field"].as_str()),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("unknown_field"),
                Some(field)
            ),
            "{b}"
        );
    }
    t.stop().await;
}

/// JSON, and the document's `"type": "integer"`, make no difference between `1` and `1.0`:
/// neither does the server, in a typed body (the ack), a body read as JSON first (a kiosk
/// payment) or the feed envelope (read borrowed).
#[tokio::test]
async fn a_whole_number_written_with_a_point_is_the_integer() {
    let t = TestStore::start().await;
    load_people(&t).await;
    // The journal holds the people's batches; seq 1.0 is entry 1.
    let res = t
        .client
        .post(format!("{}/sync/v1/journal/ack", t.url))
        .bearer_auth(&t.sync_token)
        .header("content-type", "application/json")
        .body(r#"{"results": [{"seq": 1.0, "outcome": "accepted"}]}"#)
        .send()
        .await
        .unwrap();
    let (s, b): (StatusCode, Value) = (res.status(), res.json().await.unwrap());
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = t
        .push_raw(
            "receipts",
            r#"{"batch": 1.0, "kind": "delta", "upserts": []}"#.into(),
            Some(&t.sync_token),
        )
        .await;
    assert_eq!(
        (s, b["applied"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{b}"
    );
    let (s, b) = t
        .kiosk_post(
            KIOSK_1.1,
            "/kiosk/v1/payments",
            &json!({"idempotency_key": "k-1", "basket_id": "b-1", "amount_minor": 250.0,
                    "currency": "USD", "tender": {"kind": "card_token", "token": "tok_1",
                    "exp_month": 12.0, "exp_year": 2030.0}}),
        )
        .await;
    assert_ne!(s, StatusCode::BAD_REQUEST, "{b}");
    assert!(b["payment_id"].is_string(), "{s} {b}");
    t.stop().await;
}
