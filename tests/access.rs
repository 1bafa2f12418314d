//! Access, end to end over HTTP: the authorization matrix over every route, brute force and
//! timeouts on an injected clock, CSRF, body limits, revocation by feed, manager override.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::Duration;
use common::people::*;
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use standin::clock::ManualClock;

/// Who may call each route: the test's own copy of the decisions. A route added to the
/// router without a line here fails `the_matrix_covers_every_route`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Rule {
    Public,
    SameOrigin,
    AnyStaff,
    LeadOrManager,
    Kiosk,
    Sync,
}

const TABLE: &[(&str, &str, Rule)] = &[
    ("GET", "/healthz", Rule::Public),
    ("GET", "/readyz", Rule::Public),
    ("GET", "/metrics", Rule::Public),
    ("GET", "/api/v1/status", Rule::Public),
    ("GET", "/api/openapi.json", Rule::Public),
    ("GET", "/", Rule::Public),
    ("GET", "/status", Rule::Public),
    ("GET", "/ui/{*path}", Rule::Public),
    ("POST", "/sync/v1/feeds/{feed}/batches", Rule::Sync),
    ("GET", "/sync/v1/journal", Rule::Sync),
    ("POST", "/sync/v1/journal/ack", Rule::Sync),
    ("POST", "/api/v1/session", Rule::SameOrigin),
    ("GET", "/api/v1/session", Rule::AnyStaff),
    ("DELETE", "/api/v1/session", Rule::AnyStaff),
    ("GET", "/api/v1/reconciliation", Rule::LeadOrManager),
    ("GET", "/api/v1/pickups", Rule::AnyStaff),
    ("GET", "/api/v1/pickups/{order_id}", Rule::AnyStaff),
    (
        "POST",
        "/api/v1/pickups/{order_id}/handover",
        Rule::AnyStaff,
    ),
    ("POST", "/api/v1/pickups/{order_id}/no-show", Rule::AnyStaff),
    ("GET", "/api/v1/receipts", Rule::AnyStaff),
    ("GET", "/api/v1/receipts/{receipt_id}", Rule::AnyStaff),
    ("POST", "/api/v1/returns", Rule::AnyStaff),
    ("GET", "/kiosk/v1/device", Rule::Kiosk),
    ("POST", "/kiosk/v1/payments", Rule::Kiosk),
    ("GET", "/kiosk/v1/payments/{payment_id}", Rule::Kiosk),
    ("POST", "/kiosk/v1/sales", Rule::Kiosk),
];

#[derive(Debug, Clone)]
enum Who {
    Nobody,
    Staff(&'static str, Browser),
    Kiosk((&'static str, &'static str)),
    SyncJob(String),
    ExpiredSession(Browser),
    RevokedEmployee(Browser),
}

/// What `who` must get from a route with `rule`: None = let in (any answer but 401/403).
fn expected(rule: Rule, who: &Who) -> Option<StatusCode> {
    let deny = Some(StatusCode::UNAUTHORIZED);
    match (rule, who) {
        (Rule::Public | Rule::SameOrigin, _) => None,
        (Rule::AnyStaff, Who::Staff(..)) => None,
        (Rule::LeadOrManager, Who::Staff(role, _)) => {
            if *role == "associate" {
                Some(StatusCode::FORBIDDEN)
            } else {
                None
            }
        }
        (Rule::Kiosk, Who::Kiosk(..)) => None,
        (Rule::Sync, Who::SyncJob(_)) => None,
        _ => deny,
    }
}

fn concrete(path: &str) -> String {
    path.replace("{feed}", "policy")
        .replace("{*path}", "style.css")
}

async fn call(t: &TestStore, method: &str, path: &str, who: &Who) -> StatusCode {
    let mut req = t.client.request(
        Method::from_bytes(method.as_bytes()).unwrap(),
        format!("{}{}", t.url, concrete(path)),
    );
    if method != "GET" {
        req = req.header("content-type", "application/json").body("{}");
    }
    let with_browser = |req: reqwest::RequestBuilder, b: &Browser| {
        req.header("cookie", &b.cookie)
            .header("x-csrf-token", &b.csrf)
    };
    req = match who {
        Who::Nobody => req,
        Who::Staff(_, b) | Who::ExpiredSession(b) | Who::RevokedEmployee(b) => with_browser(req, b),
        Who::Kiosk((_, token)) => req.bearer_auth(token),
        Who::SyncJob(token) => req.bearer_auth(token),
    };
    req.send().await.unwrap().status()
}

#[tokio::test]
async fn the_matrix_covers_every_route_and_every_caller_gets_what_the_table_says() {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let t = TestStore::start_with_clock(clock.clone(), |_| {}).await;
    load_people(&t).await;

    let served: BTreeSet<(String, String)> = standin::app::routes()
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    let table: BTreeSet<(String, String)> = TABLE
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        served, table,
        "every route needs an access decision in this test's TABLE (and no stale ones)"
    );

    // An expired session: signed in, then idle past the timeout.
    let expired = browser(&t, &ASSOCIATE).await;
    clock.advance(Duration::minutes(16));
    let leaver = browser(&t, &LEAVER).await;
    let mut gone = staff_record(&LEAVER, false);
    gone["name"] = json!("Left the company");
    assert_eq!(
        t.push("staff", &delta(2, vec![gone])).await.0,
        StatusCode::OK
    );

    let callers = vec![
        Who::Nobody,
        Who::Staff("associate", browser(&t, &ASSOCIATE).await),
        Who::Staff("lead", browser(&t, &LEAD).await),
        Who::Staff("manager", browser(&t, &MANAGER).await),
        Who::Kiosk(KIOSK_1),
        Who::Kiosk(KIOSK_2),
        Who::SyncJob(t.sync_token.clone()),
        Who::ExpiredSession(expired),
        Who::RevokedEmployee(leaver),
    ];
    // Signing out ends the session, so that route goes last.
    let mut routes: Vec<_> = TABLE.to_vec();
    routes.sort_by_key(|(m, p, _)| (*m == "DELETE" && *p == "/api/v1/session", *p));
    let mut failures = Vec::new();
    for (method, path, rule) in routes {
        for who in &callers {
            let got = call(&t, method, path, who).await;
            let ok = match expected(rule, who) {
                None => got != StatusCode::UNAUTHORIZED && got != StatusCode::FORBIDDEN,
                Some(want) => got == want,
            };
            if !ok {
                failures.push(format!(
                    "{method} {path} as {who:?}: got {got}, want {:?}",
                    expected(rule, who)
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} wrong answers:\n{}",
        failures.len(),
        failures.join("\n")
    );
    t.stop().await;
}

#[tokio::test]
async fn the_sixth_wrong_pin_locks_even_the_right_one_until_the_lock_lifts() {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let t = TestStore::start_with_clock(clock.clone(), |_| {}).await;
    load_people(&t).await;
    for i in 1..=5 {
        let (s, b, _) = sign_in(&t, ASSOCIATE.id, "000000").await;
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("invalid_credentials")),
            "attempt {i}"
        );
    }
    let res = t
        .client
        .post(format!("{}/api/v1/session", t.url))
        .json(&json!({"employee_id": ASSOCIATE.id, "pin": ASSOCIATE.pin}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the right PIN while locked"
    );
    let retry: i64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=1800).contains(&retry), "{retry}");
    clock.advance(Duration::minutes(29));
    assert_eq!(
        sign_in(&t, ASSOCIATE.id, ASSOCIATE.pin).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    clock.advance(Duration::minutes(2));
    assert_eq!(
        sign_in(&t, ASSOCIATE.id, ASSOCIATE.pin).await.0,
        StatusCode::OK,
        "the lock lifted after 30 minutes"
    );

    // An id that does not exist behaves the same way: nothing tells it apart.
    for _ in 1..=5 {
        assert_eq!(
            sign_in(&t, "E999", "000000").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        sign_in(&t, "E999", "000000").await.0,
        StatusCode::TOO_MANY_REQUESTS
    );

    let kinds: Vec<String> = column(&t.db(), "SELECT kind FROM journal WHERE lane = 'audit'");
    assert_eq!(
        kinds.iter().filter(|k| *k == "staff.locked_out").count(),
        2,
        "{kinds:?}"
    );
    assert!(kinds.iter().any(|k| k == "staff.signed_in"));
    assert!(kinds.iter().filter(|k| *k == "staff.pin_refused").count() >= 10);
    t.stop().await;
}

#[tokio::test]
async fn wrong_pins_are_also_limited_per_client_address() {
    let t = TestStore::start_with(|c| c.access.address_failures = 8).await;
    load_people(&t).await;
    for i in 0..8 {
        assert_eq!(
            sign_in(&t, &format!("E9{i:02}"), "000000").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    let (s, b, _) = sign_in(&t, LEAD.id, LEAD.pin).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("too_many_attempts"))
    );
    t.stop().await;
}

#[tokio::test]
async fn sessions_end_when_idle_and_at_the_absolute_limit() {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let t = TestStore::start_with_clock(clock.clone(), |_| {}).await;
    load_people(&t).await;
    let b = browser(&t, &ASSOCIATE).await;
    let who = |b: &Browser| {
        t.client
            .get(format!("{}/api/v1/session", t.url))
            .header("cookie", &b.cookie)
            .send()
    };
    // Busy all day: a request every 10 minutes keeps it alive until the 12-hour limit.
    for _ in 0..71 {
        clock.advance(Duration::minutes(10));
        assert_eq!(who(&b).await.unwrap().status(), StatusCode::OK);
    }
    clock.advance(Duration::minutes(11)); // 12 h 1 min after sign-in
    assert_eq!(who(&b).await.unwrap().status(), StatusCode::UNAUTHORIZED);

    let b = browser(&t, &ASSOCIATE).await;
    clock.advance(Duration::minutes(14));
    assert_eq!(who(&b).await.unwrap().status(), StatusCode::OK);
    clock.advance(Duration::minutes(16));
    assert_eq!(
        who(&b).await.unwrap().status(),
        StatusCode::UNAUTHORIZED,
        "15 minutes idle"
    );
    t.stop().await;
}

#[tokio::test]
async fn a_new_sign_in_gets_a_new_session_and_the_cookie_is_locked_down() {
    let t = TestStore::start().await;
    load_people(&t).await;
    let res = t
        .client
        .post(format!("{}/api/v1/session", t.url))
        .json(&json!({"employee_id": LEAD.id, "pin": LEAD.pin}))
        .send()
        .await
        .unwrap();
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        (body["role"].as_str(), body["employee_id"].as_str()),
        (Some("lead"), Some(LEAD.id))
    );
    let again = browser(&t, &LEAD).await;
    assert_ne!(
        cookie.split(';').next().unwrap(),
        again.cookie,
        "renewed on every sign-in"
    );
    t.stop().await;
}

#[tokio::test]
async fn cross_site_requests_and_missing_csrf_tokens_are_refused() {
    let t = TestStore::start().await;
    load_people(&t).await;
    let b = browser(&t, &MANAGER).await;
    let sign_out = |extra: &[(&str, &str)]| {
        let mut req = t
            .client
            .delete(format!("{}/api/v1/session", t.url))
            .header("cookie", &b.cookie)
            .header("host", "desk.store");
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        req.send()
    };
    let refused = |r: reqwest::Response| async move {
        let s = r.status();
        let v: Value = r.json().await.unwrap();
        (s, v["error"]["code"].as_str().map(str::to_string))
    };
    assert_eq!(
        refused(sign_out(&[]).await.unwrap()).await,
        (StatusCode::FORBIDDEN, Some("forbidden".into())),
        "no token"
    );
    assert_eq!(
        sign_out(&[("x-csrf-token", "0123456789abcdef0123456789abcdef")])
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        sign_out(&[
            ("x-csrf-token", &b.csrf),
            ("origin", "https://evil.example")
        ])
        .await
        .unwrap()
        .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        sign_out(&[("x-csrf-token", &b.csrf), ("sec-fetch-site", "cross-site")])
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    // Signing in from another site is refused too (login CSRF).
    let res = t
        .client
        .post(format!("{}/api/v1/session", t.url))
        .header("sec-fetch-site", "cross-site")
        .json(&json!({"employee_id": LEAD.id, "pin": LEAD.pin}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // The session survived all that; a proper same-origin sign-out works.
    let ok = sign_out(&[
        ("x-csrf-token", &b.csrf),
        ("origin", "http://desk.store"),
        ("sec-fetch-site", "same-origin"),
    ])
    .await
    .unwrap();
    assert_eq!(ok.status(), StatusCode::NO_CONTENT);
    assert!(
        ok.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let after = t
        .client
        .get(format!("{}/api/v1/session", t.url))
        .header("cookie", &b.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
    t.stop().await;
}

#[tokio::test]
async fn an_oversized_sign_in_is_a_json_413() {
    // Desk bodies are limited to 64 KiB whatever the feed-batch limit is.
    let t = TestStore::start().await;
    let big = json!({"employee_id": "E1", "pin": "x".repeat(70_000)}).to_string();
    let res = t
        .client
        .post(format!("{}/api/v1/session", t.url))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let b: Value = res.json().await.unwrap();
    assert_eq!(b["error"]["code"], "payload_too_large");
    // Every route, even one that never reads a body.
    let res = t
        .client
        .get(format!("{}/api/v1/status", t.url))
        .body("x".repeat(70_000))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"]["code"],
        "payload_too_large"
    );
    t.stop().await;
}

#[tokio::test]
async fn a_feed_batch_revokes_staff_and_kiosks_at_once() {
    let t = TestStore::start().await;
    load_people(&t).await;
    let b = browser(&t, &LEAVER).await;
    let kiosk = |token: &'static str| {
        t.client
            .get(format!("{}/kiosk/v1/device", t.url))
            .bearer_auth(token)
            .send()
    };
    let me: Value = kiosk(KIOSK_1.1).await.unwrap().json().await.unwrap();
    assert_eq!(
        me["device_id"], KIOSK_1.0,
        "a kiosk sees itself, not another"
    );
    assert_eq!(
        kiosk(KIOSK_2.1)
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()["device_id"],
        KIOSK_2.0
    );

    // Used before the batch, so the session is warm in memory when the batch arrives.
    let warm = t
        .client
        .get(format!("{}/api/v1/session", t.url))
        .header("cookie", &b.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(warm.status(), StatusCode::OK);
    t.push(
        "staff",
        &json!({"batch": 2, "kind": "delta", "upserts": [], "deletes": [LEAVER.id]}),
    )
    .await;
    t.push("devices", &delta(2, vec![device_record(KIOSK_1, false)]))
        .await;
    let who = t
        .client
        .get(format!("{}/api/v1/session", t.url))
        .header("cookie", &b.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(
        who.status(),
        StatusCode::UNAUTHORIZED,
        "removed from the staff feed: out at once"
    );
    assert_eq!(
        kiosk(KIOSK_1.1).await.unwrap().status(),
        StatusCode::UNAUTHORIZED,
        "disabled by the devices feed"
    );
    assert_eq!(kiosk(KIOSK_2.1).await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        sign_in(&t, LEAVER.id, LEAVER.pin).await.0,
        StatusCode::UNAUTHORIZED
    );
    t.stop().await;
}

#[tokio::test]
async fn credentials_are_not_interchangeable() {
    let t = TestStore::start().await;
    load_people(&t).await;
    let b = browser(&t, &MANAGER).await;
    // A kiosk token as a sync token, a sync token as a kiosk token, a session id as a bearer.
    let feed = t
        .push_raw("policy", delta(1, vec![]).to_string(), Some(KIOSK_1.1))
        .await;
    assert_eq!(feed.0, StatusCode::UNAUTHORIZED);
    let k = t
        .client
        .get(format!("{}/kiosk/v1/device", t.url))
        .bearer_auth(&t.sync_token)
        .send()
        .await
        .unwrap();
    assert_eq!(k.status(), StatusCode::UNAUTHORIZED);
    let session_id = b.cookie.split_once('=').unwrap().1.to_string();
    let k = t
        .client
        .get(format!("{}/kiosk/v1/device", t.url))
        .bearer_auth(&session_id)
        .send()
        .await
        .unwrap();
    assert_eq!(k.status(), StatusCode::UNAUTHORIZED);
    let r = t
        .client
        .get(format!("{}/api/v1/reconciliation", t.url))
        .bearer_auth(KIOSK_1.1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    t.stop().await;
}

#[tokio::test]
async fn a_manager_override_checks_id_pin_and_role_and_journals_both_people() {
    use standin::access::overrides::{OverrideRequest, approve, record};
    let t = TestStore::start().await;
    load_people(&t).await;
    let req = |p: &Person, pin: &str| OverrideRequest {
        manager_id: p.id.into(),
        pin: pin.into(),
    };
    let e = approve(&t.state, &req(&LEAD, LEAD.pin), "return.over_cap", None)
        .await
        .unwrap_err();
    assert!(
        matches!(e, standin::error::AppError::Forbidden(_)),
        "a lead cannot approve: {e:?}"
    );
    let e = approve(&t.state, &req(&MANAGER, "000000"), "return.over_cap", None)
        .await
        .unwrap_err();
    assert!(
        matches!(e, standin::error::AppError::InvalidCredentials),
        "{e:?}"
    );
    let manager_failures = |t: &TestStore| -> Option<i64> {
        t.db()
            .query_row(
                "SELECT failures FROM login_failures WHERE employee_id = ?1",
                [MANAGER.id],
                |r| r.get(0),
            )
            .ok()
    };
    assert_eq!(
        manager_failures(&t),
        Some(1),
        "a wrong override PIN counts toward the manager's lockout"
    );
    let approval = approve(
        &t.state,
        &req(&MANAGER, MANAGER.pin),
        "return.over_cap",
        None,
    )
    .await
    .unwrap();
    let asked_by = standin::access::Caller::Staff {
        employee_id: ASSOCIATE.id.into(),
        name: "A".into(),
        role: standin::access::Role::Associate,
    };
    let body = t
        .state
        .store
        .write(move |c| {
            record(
                c,
                "store-0001",
                "2026-11-25T10:00:00.000Z",
                &approval,
                &asked_by,
            )
            .map_err(standin::store::StoreError::from)
        })
        .await
        .unwrap();
    assert_eq!(
        (body["approved_by"].as_str(), body["requested_by"].as_str()),
        (Some(MANAGER.id), Some(ASSOCIATE.id))
    );
    let (kind, actor): (String, String) = t
        .db()
        .query_row(
            "SELECT kind, actor FROM journal WHERE kind = 'override.granted'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (kind.as_str(), actor.as_str()),
        ("override.granted", MANAGER.id)
    );
    assert_eq!(manager_failures(&t), None, "a correct PIN clears the count");
    t.stop().await;
}

#[tokio::test]
async fn reconciliation_lists_set_aside_entries_as_json_and_csv() {
    let t = TestStore::start().await;
    load_people(&t).await;
    let entries = append_entries(
        &t.db_path(),
        standin::journal::Lane::Returns,
        "return.taken",
        2,
    );
    let ack = json!({"results": [{"seq": entries[0].seq, "outcome": "rejected", "reason": "receipt, unknown"}]});
    t.client
        .post(format!("{}/sync/v1/journal/ack", t.url))
        .bearer_auth(&t.sync_token)
        .json(&ack)
        .send()
        .await
        .unwrap();
    let b = browser(&t, &LEAD).await;
    let r: Value = t
        .client
        .get(format!("{}/api/v1/reconciliation", t.url))
        .header("cookie", &b.cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["items"].as_array().unwrap().len(), 1);
    assert_eq!(r["items"][0]["id"].as_str(), Some(entries[0].id.as_str()));
    assert_eq!(r["items"][0]["outcome"], "rejected");
    let csv = t
        .client
        .get(format!("{}/api/v1/reconciliation?format=csv", t.url))
        .header("cookie", &b.cookie)
        .send()
        .await
        .unwrap();
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = csv.text().await.unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.contains("\"receipt, unknown\""), "{text}");
    t.stop().await;
}
