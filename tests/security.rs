//! Issue 14: guarantees held by construction, tried as an attacker would.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::people::*;
use common::sim::*;
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One Visa test number in every form a card number may be written in.
fn card_forms() -> Vec<String> {
    let pan = "4111111111111111";
    let grouped = |sep: &str| {
        pan.as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(sep)
    };
    let wide: String = pan
        .chars()
        .map(|c| char::from_u32(0xFF10 + c.to_digit(10).unwrap()).unwrap())
        .collect();
    let arabic: String = pan
        .chars()
        .map(|c| char::from_u32(0x660 + c.to_digit(10).unwrap()).unwrap())
        .collect();
    vec![
        pan.to_string(),
        grouped(" "),
        grouped("-"),
        grouped("."),
        grouped("/"),
        grouped("\t"),
        grouped("  "),
        grouped(" - "),
        wide,
        arabic,
        format!("7{pan}"),
        format!("order 12{pan}99 please"),
        "5555 5555 5555 4444".into(),
        "3782-822463-10005".into(),
    ]
}

/// A path with each `{param}` of `template` replaced by `value`.
fn fill(template: &str, value: &str) -> String {
    template
        .split('/')
        .map(|seg| {
            if seg.starts_with('{') {
                utf8_percent(value)
            } else {
                seg.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn utf8_percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Sends `req`; its status and JSON body (null when it has none).
async fn answer(req: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let res = req.send().await.unwrap();
    let s = res.status();
    (s, res.json().await.unwrap_or(Value::Null))
}

fn refused(s: StatusCode, v: &Value) -> Option<String> {
    (s == StatusCode::UNPROCESSABLE_ENTITY && v["error"]["code"] == "card_data_refused")
        .then(|| v["error"]["field"].as_str().unwrap_or("").to_string())
}

/// Every route of the table, present and future, refuses a card number in a body field at any
/// depth, in the query string and in each path parameter, before its access check: the guard
/// is where every route passes, not in the handlers.
#[tokio::test]
async fn every_route_refuses_card_data_in_body_query_and_path() {
    let t = TestStore::start().await;
    for route in standin::app::routes() {
        let method = Method::from_bytes(route.method.as_str().as_bytes()).unwrap();
        for form in card_forms() {
            let plain = fill(route.path, "x1");
            // The query string.
            let url = format!("{}{plain}?q={}", t.url, utf8_percent(&form));
            let (s, v) = answer(t.client.request(method.clone(), url)).await;
            assert_eq!(
                refused(s, &v).as_deref(),
                Some("q"),
                "{} {} query {form:?}: {s} {v}",
                route.method,
                route.path
            );
            assert!(!v.to_string().contains("1111"), "never echoed");
            // Each path parameter.
            if route.path.contains('{') {
                let url = format!("{}{}", t.url, fill(route.path, &form));
                let (s, v) = answer(t.client.request(method.clone(), url)).await;
                assert!(
                    refused(s, &v).is_some(),
                    "{} {} path {form:?}: {s} {v}",
                    route.method,
                    route.path
                );
            }
            // A JSON body, deep down, and a body that is not JSON.
            if route.method != axum::http::Method::GET {
                let body = json!({"a": {"b": [1, {"c": form}]}});
                let (s, v) = answer(
                    t.client
                        .request(method.clone(), format!("{}{plain}", t.url))
                        .json(&body),
                )
                .await;
                assert_eq!(
                    refused(s, &v).as_deref(),
                    Some("a.b[1].c"),
                    "{} {} body {form:?}: {s} {v}",
                    route.method,
                    route.path
                );
                let (s, v) = answer(
                    t.client
                        .request(method.clone(), format!("{}{plain}", t.url))
                        .header("content-type", "text/plain")
                        .body(format!("note: {form}")),
                )
                .await;
                assert_eq!(
                    refused(s, &v).as_deref(),
                    Some("body"),
                    "{} {} text {form:?}",
                    route.method,
                    route.path
                );
            }
        }
    }
    t.stop().await;
}

/// What must pass: real-format codes a store handles every day.
#[tokio::test]
async fn barcodes_order_numbers_and_digests_are_not_card_data() {
    let codes = [
        "2000000000107", // in-store EAN-13, Luhn-valid
        "2100000001095",
        "2290000123450",
        "4006381333931",  // EAN-13, Germany
        "5012345678900",  // EAN-13, UK
        "6901234567892",  // EAN-13, China
        "9780306406157",  // ISBN
        "036000291452",   // UPC-A
        "00012345678905", // GTIN-14
        "0190f3c2-7d1e-7b7a-9c1d-2f0e8e1b0a11",
        "2026-11-25T10:00:00Z",
        "ORD-2026-000123",
    ];
    for code in codes {
        assert!(!standin::http::holds_card_number(code), "{code}");
    }
    // Token digests: SHA-256 in hex of many tokens (the devices feed carries them).
    for i in 0..2000 {
        let digest = standin::access::token::sha256_hex(&format!("kiosk-token-{i}"));
        assert!(!standin::http::holds_card_number(&digest), "{digest}");
    }
    // Everything the simulator makes (receipts with their barcodes, orders with their numbers
    // and pickup codes, staff, kiosks with their token digests, policy), pushed as HQ's sync
    // job would: every batch passes the guard.
    let sim = simulator(3000, 3000).await;
    let t = TestStore::start().await;
    let http = reqwest::Client::new();
    for feed in ["staff", "devices", "policy", "receipts", "pickup_orders"] {
        let mut after = 0;
        loop {
            let page: Value = http
                .get(format!(
                    "{}/v1/stores/store-0001/feeds/{feed}/batches?after={after}&limit=100",
                    sim.central_url()
                ))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let batches = page["batches"].as_array().unwrap();
            if batches.is_empty() {
                break;
            }
            for b in batches {
                let (s, v) = t.push(feed, b).await;
                assert_eq!(s, StatusCode::OK, "{feed} batch {}: {v}", b["batch"]);
                after += 1;
            }
        }
        assert!(after > 0, "{feed} had batches");
    }
    assert_eq!(
        column::<i64>(&t.db(), "SELECT count(*) FROM receipts"),
        vec![3000]
    );
    t.stop().await;
}

/// The probe's cases with real credentials: a card in a return's reason and request id, in a
/// hand-over's request id, in sign-in's employee id. Then nothing of it is in the database,
/// its WAL or what central received.
#[tokio::test]
async fn card_data_from_staff_routes_reaches_no_disk_and_no_central() {
    let sim = simulator(0, 0).await;
    let t = TestStore::start_with(|c| {
        c.central.url = Some(sim.central_url());
        c.central.timeout_ms = 1000;
        c.central.health_interval_secs = 1;
    })
    .await;
    load_people(&t).await;
    assert_eq!(
        t.push("receipts", &delta(1, vec![receipt("R1")])).await.0,
        StatusCode::OK
    );
    assert_eq!(
        t.push("pickup_orders", &delta(1, vec![order("O1")]))
            .await
            .0,
        StatusCode::OK
    );
    let b = browser(&t, &ASSOCIATE).await;
    let post = |path: &str, body: Value| {
        t.client
            .post(format!("{}{path}", t.url))
            .header("cookie", &b.cookie)
            .header("x-csrf-token", &b.csrf)
            .json(&body)
            .send()
    };
    for form in card_forms() {
        let cases = [
            (
                "/api/v1/returns",
                json!({"receipt_id": "R1", "lines": [{"line": 1, "qty": 1, "reason": form}], "refund": {"method": "store_credit"}}),
                "lines[0].reason",
            ),
            (
                "/api/v1/returns",
                json!({"receipt_id": "R1", "lines": [{"line": 1, "qty": 1, "reason": "damaged"}], "refund": {"method": "store_credit"}, "request_id": form}),
                "request_id",
            ),
            (
                "/api/v1/pickups/O1/handover",
                json!({"lines": [], "id_checked": true, "request_id": form}),
                "request_id",
            ),
        ];
        for (path, body, field) in cases {
            let res = post(path, body).await.unwrap();
            let s = res.status();
            let v: Value = res.json().await.unwrap();
            assert_eq!(
                refused(s, &v).as_deref(),
                Some(field),
                "{path} {form:?}: {v}"
            );
        }
        let (s, v, _) = sign_in(&t, &form, "123456").await;
        assert_eq!(
            refused(s, &v).as_deref(),
            Some("employee_id"),
            "{form:?}: {v}"
        );
    }
    // Give the uplink a moment to send whatever was journaled.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let received = received_journal(&sim).await;
    let dir = t.stop().await;
    let mut hay: Vec<u8> = serde_json::to_vec(&received).unwrap();
    for f in std::fs::read_dir(dir.path()).unwrap() {
        hay.extend(std::fs::read(f.unwrap().path()).unwrap_or_default());
    }
    for needle in [
        "4111111111111111",
        "4111 1111",
        "4111-1111",
        "5555 5555 5555 4444",
        "822463",
    ] {
        assert!(
            !hay.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{needle} found on disk or at central"
        );
    }
}

/// Sixty wrong PINs at once for one employee from one address: exactly five are checked, the
/// rest refused unchecked, and then the right PIN does not get in.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_pins_checks_exactly_the_lockout_limit() {
    let t = Arc::new(TestStore::start().await);
    load_people(&t).await;
    let runs: Vec<_> = (0..60)
        .map(|i| {
            let t = t.clone();
            tokio::spawn(async move { sign_in(&t, ASSOCIATE.id, &format!("{i:06}")).await.0 })
        })
        .collect();
    let mut statuses = Vec::new();
    for r in runs {
        statuses.push(r.await.unwrap());
    }
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED || **s == StatusCode::OK)
        .count();
    assert_eq!(checked, 5, "{statuses:?}");
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
            .count(),
        55
    );
    let failures: Vec<i64> = column(
        &t.db(),
        &format!(
            "SELECT failures FROM login_failures WHERE employee_id = '{}'",
            ASSOCIATE.id
        ),
    );
    assert_eq!(failures, vec![5], "five wrong PINs counted");
    let refused: Vec<i64> = column(
        &t.db(),
        "SELECT count(*) FROM journal WHERE kind = 'staff.pin_refused'",
    );
    assert!(refused[0] <= 5);
    // Locked: the right PIN is refused now too.
    assert_eq!(
        sign_in(&t, ASSOCIATE.id, ASSOCIATE.pin).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
}

/// Sixty wrong PINs at once for sixty ids from one address: exactly the address limit (30)
/// are checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_across_ids_checks_exactly_the_address_limit() {
    let t = Arc::new(TestStore::start().await);
    load_people(&t).await;
    let runs: Vec<_> = (0..60)
        .map(|i| {
            let t = t.clone();
            tokio::spawn(async move { sign_in(&t, &format!("X{i:03}"), "000000").await.0 })
        })
        .collect();
    let mut statuses = Vec::new();
    for r in runs {
        statuses.push(r.await.unwrap());
    }
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::UNAUTHORIZED)
            .count(),
        30,
        "{statuses:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
            .count(),
        30
    );
}

/// Manager override shares the count: sixty returns at once naming the manager with a wrong
/// PIN check five PINs, and the manager is locked.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_override_pins_checks_exactly_the_lockout_limit() {
    let t = Arc::new(TestStore::start().await);
    load_people(&t).await;
    assert_eq!(
        t.push("receipts", &delta(1, vec![receipt("R1")])).await.0,
        StatusCode::OK
    );
    let b = browser(&t, &ASSOCIATE).await;
    let runs: Vec<_> = (0..60)
        .map(|_| {
            let (t, b) = (t.clone(), b.clone());
            tokio::spawn(async move {
                let res = t
                    .client
                    .post(format!("{}/api/v1/returns", t.url))
                    .header("cookie", &b.cookie)
                    .header("x-csrf-token", &b.csrf)
                    .json(&json!({"receipt_id": "R1", "lines": [{"line": 1, "qty": 1, "reason": "damaged"}],
                                  "refund": {"method": "store_credit"},
                                  "override": {"manager_id": MANAGER.id, "pin": "000000"}}))
                    .send()
                    .await
                    .unwrap();
                let s = res.status();
                let v: Value = res.json().await.unwrap();
                (s, v["error"]["code"].as_str().unwrap_or("").to_string())
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for r in runs {
        outcomes.push(r.await.unwrap());
    }
    let checked = outcomes
        .iter()
        .filter(|(_, c)| c == "override_not_accepted")
        .count();
    assert_eq!(checked, 5, "{outcomes:?}");
    assert_eq!(
        outcomes
            .iter()
            .filter(|(s, _)| *s == StatusCode::TOO_MANY_REQUESTS)
            .count(),
        55
    );
    assert_eq!(
        sign_in(&t, MANAGER.id, MANAGER.pin).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
}

/// Every error is the JSON shape with a code, whoever produced it: the framework's extractor
/// rejections, 404, 405, and hyper's own 414 and 431.
#[tokio::test]
async fn every_error_is_json_with_a_code() {
    let t = TestStore::start().await;
    load_people(&t).await;
    let b = browser(&t, &ASSOCIATE).await;
    let get = |path: String| {
        t.client
            .get(format!("{}{path}", t.url))
            .header("cookie", &b.cookie)
            .send()
    };
    for (path, status, code) in [
        ("/api/v1/pickups?q=a&q=b".to_string(), 400, "invalid_query"),
        ("/api/v1/pickups/%FF%FE".to_string(), 400, "invalid_path"),
        ("/api/v1/receipts/%C3%28".to_string(), 400, "invalid_path"),
        ("/no/such/route".to_string(), 404, "not_found"),
        (
            format!("/api/v1/pickups?q={}", "a".repeat(20_000)),
            414,
            "uri_too_long",
        ),
    ] {
        let res = get(path.clone()).await.unwrap();
        assert_eq!(res.status().as_u16(), status, "{path:.80}");
        assert!(
            res.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["error"]["code"], code, "{path:.80}: {v}");
    }
    // 404 and 405 for unknown routes and methods: tests/ops.rs.
    let addr = t.url.trim_start_matches("http://").to_string();
    // A URI past hyper's own limit (64 KiB), answered by hyper before any service runs.
    let long = format!(
        "GET /healthz?{} HTTP/1.1\r\nhost: x\r\n\r\n",
        "a".repeat(100_000)
    );
    let (status, head, v) = raw(&addr, long.as_bytes()).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (414, Some("uri_too_long")),
        "{head}"
    );
    assert!(head.contains("content-type: application/json"));
    // Too many headers for hyper, and too large for us.
    let many: String = (0..200).map(|i| format!("x-h{i}: v\r\n")).collect();
    let (status, _, v) = raw(
        &addr,
        format!("GET /healthz HTTP/1.1\r\nhost: x\r\n{many}\r\n").as_bytes(),
    )
    .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (431, Some("headers_too_large"))
    );
    let huge = format!(
        "GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "b".repeat(40_000)
    );
    let (status, _, v) = raw(&addr, huge.as_bytes()).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (431, Some("headers_too_large"))
    );
    // A request line hyper cannot parse.
    let (status, _, v) = raw(&addr, b"GET /\x01 HTTP/1.1\r\n\r\n").await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );
    t.stop().await;
}

/// Body limits are per route: a desk or kiosk body over 64 KiB is a JSON 413 whether it
/// declares its length or comes chunked, read to the end so the client sees the answer; a
/// feed batch may be far larger.
#[tokio::test]
async fn bodies_over_the_routes_limit_are_a_json_413_with_or_without_a_length() {
    let t = TestStore::start().await;
    load_people(&t).await;
    let big = json!({"idempotency_key": "k", "pad": "x".repeat(200_000)}).to_string();
    let res = t
        .client
        .post(format!("{}/kiosk/v1/payments", t.url))
        .bearer_auth(KIOSK_1.1)
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"]["code"],
        "payload_too_large"
    );
    // Chunked: no Content-Length, the limit is found while reading.
    let addr = t.url.trim_start_matches("http://").to_string();
    let mut req = format!(
        "POST /kiosk/v1/payments HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
        KIOSK_1.1
    )
    .into_bytes();
    for chunk in big.as_bytes().chunks(8192) {
        req.extend(format!("{:x}\r\n", chunk.len()).into_bytes());
        req.extend(chunk);
        req.extend(b"\r\n");
    }
    req.extend(b"0\r\n\r\n");
    let (status, _, v) = raw(&addr, &req).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    // 33 MiB at a 64 KiB route: the client reads the 413, not a reset.
    let res = t
        .client
        .post(format!("{}/api/v1/session", t.url))
        .body(vec![b'x'; 33 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // A feed batch of about 1 MiB is fine.
    let many = receipts("BIG", 0..1500);
    let (s, v) = t.push("receipts", &delta(1, many)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    t.stop().await;
}

/// Kiosk payments refuse unknown fields like every other route, naming them.
#[tokio::test]
async fn kiosk_payments_refuse_unknown_fields() {
    let t = TestStore::start().await;
    load_people(&t).await;
    let body = json!({"idempotency_key": "k1", "basket_id": "b1", "amount_minor": 100, "currency": "USD",
                      "tender": {"kind": "card_token", "token": "tok_1", "brand": "visa", "last4": "4242",
                                 "exp_month": 12, "exp_year": 2029, "colour": "blue"},
                      "padding": "x"});
    let (s, v) = t.kiosk_post(KIOSK_1.1, "/kiosk/v1/payments", &body).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "unknown_field");
    assert!(
        matches!(
            v["error"]["field"].as_str(),
            Some("padding" | "tender.colour")
        ),
        "{v}"
    );
    t.stop().await;
}

/// One address holding hundreds of idle sockets, and slow heads, cannot starve the others:
/// the hoarder loses its own oldest idle sockets, slow heads are closed, and health, a desk
/// search and a kiosk request from other connections still answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_holding_sockets_cannot_starve_the_others() {
    let t = TestStore::start_with(|c| {
        c.http.max_connections = 200;
        c.http.max_connections_per_client = 100;
        c.http.idle_timeout_secs = 2;
    })
    .await;
    load_people(&t).await;
    let b = browser(&t, &ASSOCIATE).await;
    let addr = t.url.trim_start_matches("http://").to_string();
    // 600 idle sockets and 100 slowloris heads from this address.
    let mut idle = Vec::new();
    for _ in 0..600 {
        idle.push(TcpStream::connect(&addr).await.unwrap());
    }
    let mut slow = Vec::new();
    for _ in 0..100 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        slow.push(s);
    }
    // Fresh connections (a new client each time) still get their answers.
    for _ in 0..5 {
        let fresh = reqwest::Client::new();
        let res = fresh
            .get(format!("{}/healthz", t.url))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let res = fresh
            .get(format!("{}/api/v1/pickups?q=Smith", t.url))
            .header("cookie", &b.cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let res = fresh
            .get(format!("{}/kiosk/v1/device", t.url))
            .bearer_auth(KIOSK_1.1)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    // Never more open than the caps allow, and /metrics says what was done.
    let (open, evicted, _) = t.state.connections.get().unwrap().counts();
    assert!(open <= 100, "{open} open");
    assert!(evicted >= 500, "{evicted} evicted");
    let metrics = reqwest::Client::new()
        .get(format!("{}/metrics", t.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let closed: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("standin_http_connections_closed_idle_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    assert!(closed >= 500, "{closed}");
    // A slow head is closed within the idle timeout (plus scheduling slack).
    let mut s = slow.pop().unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await;
    assert!(
        matches!(n, Ok(Ok(0)) | Ok(Err(_))),
        "the slow head was closed: {n:?}"
    );
    drop(idle);
    t.stop().await;
}

/// The UI served from a directory (`ui_dir`) serves only regular files inside it: not by an
/// absolute path, `..`, encoded slashes or a symlink out.
#[tokio::test]
async fn the_ui_directory_serves_only_files_inside_it() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "TOP-SECRET").unwrap();
    let ui = tempfile::tempdir().unwrap();
    std::fs::create_dir(ui.path().join("sub")).unwrap();
    std::fs::write(ui.path().join("app.js"), "// from disk").unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("secret.txt"),
        ui.path().join("link.txt"),
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.path(), ui.path().join("out")).unwrap();
    let dir = ui.path().to_path_buf();
    let t = TestStore::start_with(move |c| c.ui_dir = Some(dir)).await;
    let res = t
        .client
        .get(format!("{}/ui/app.js", t.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "// from disk");
    let secret = outside.path().join("secret.txt");
    let abs = secret.to_str().unwrap();
    for path in [
        format!("/ui/{abs}"),
        format!("/ui/{}", abs.replace('/', "%2F")),
        "/ui//etc/passwd".into(),
        "/ui/%2Fetc%2Fpasswd".into(),
        "/ui/%2Fproc%2Fself%2Fenviron".into(),
        "/ui/..%2F..%2F..%2Fetc%2Fpasswd".into(),
        "/ui/sub/..%2F..%2Fetc%2Fpasswd".into(),
        "/ui/sub%2F..%2F..%2Fetc%2Fpasswd".into(),
        "/ui/link.txt".into(),
        "/ui/out/secret.txt".into(),
        "/ui/sub".into(),
    ] {
        let res = t
            .client
            .get(format!("{}{path}", t.url))
            .send()
            .await
            .unwrap();
        let s = res.status();
        let body = res.text().await.unwrap();
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}: {body:.80}");
        assert!(
            !body.contains("TOP-SECRET") && !body.contains("root:"),
            "{path}"
        );
    }
    t.stop().await;
}
