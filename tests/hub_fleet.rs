//! The fleet view at the hub, on a real PostgreSQL: heartbeats in (tokens, newest kept),
//! `GET /v1/fleet`'s states, filters and totals, the fleet gauges, the page; and a real
//! Standin store's own heartbeat reaching the hub.

mod common;

use common::hub::{Chain, TestHub, beat};
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// [`TestHub::send_status`], its answer read as JSON (`Null` for none).
async fn send(hub: &TestHub, store: &str, token: &str, body: &Value) -> (StatusCode, Value) {
    let (status, text) = hub.send_status(store, token, body.clone()).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn fleet(hub: &TestHub, query: &str) -> (StatusCode, Value) {
    let (status, text) = hub.get(&format!("/v1/fleet{query}")).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn ids(f: &Value) -> Vec<String> {
    f["stores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["store_id"].as_str().unwrap().to_owned())
        .collect()
}

fn store<'a>(f: &'a Value, id: &str) -> &'a Value {
    f["stores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["store_id"] == id)
        .unwrap_or_else(|| panic!("{id} not in {f}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_needs_the_stores_own_token() {
    let Some(hub) = TestHub::start().await else {
        return;
    };
    let a = hub.add_store("store-a").await;
    let _b = hub.add_store("store-b").await;
    let body = beat("store-b", 1, "up", "up", 0, 0);
    let (status, err) = send(&hub, "store-b", &a, &body).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(err["error"]["code"], "forbidden");
    let (status, err) = send(&hub, "store-b", "not-a-token", &body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(err["error"]["code"], "unauthorized");
    // Nothing landed for store-b.
    let (_, f) = fleet(&hub, "").await;
    assert!(store(&f, "store-b")["reported"].is_null(), "{f}");
    let (status, _) = send(&hub, "store-a", &a, &beat("store-a", 1, "up", "up", 0, 0)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let big = json!({ "store_id": "store-a", "sent_at": "2026-12-06T10:00:00Z", "seq": 2,
                      "padding": "x".repeat(300 * 1024) });
    let (status, err) = send(&hub, "store-a", &a, &big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(err["error"]["code"], "body_too_large");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn states_filters_and_totals() {
    let Some(hub) = TestHub::start_with(|c| {
        c.health_interval_secs = 1;
        c.silent_after_intervals = 2;
    })
    .await
    else {
        return;
    };
    let mut tokens = std::collections::HashMap::new();
    for s in [
        "s-ok",
        "s-offline",
        "s-backlog",
        "s-never",
        "s-quiet",
        "s-forged",
    ] {
        tokens.insert(s, hub.add_store(s).await);
    }
    let post = async |s: &str, body: Value| {
        let (status, b) = send(&hub, s, &tokens[s], &body).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{s}: {b}");
    };
    post("s-quiet", beat("s-quiet", 1, "up", "up", 3, 0)).await;
    // s-quiet goes silent: more than 2 intervals of 1 s without contact.
    tokio::time::sleep(std::time::Duration::from_millis(3200)).await;
    post("s-ok", beat("s-ok", 1, "up", "up", 0, 0)).await;
    post("s-offline", beat("s-offline", 1, "up", "down", 12, 4)).await;
    post("s-backlog", beat("s-backlog", 1, "degraded", "up", 500, 0)).await;
    post("s-forged", beat("s-forged", 1, "up", "up", 0, 0)).await;
    // One forged entry at HQ: set aside (rejected, hash_mismatch) and listed.
    let mut chain = Chain::new("s-forged");
    let mut entries = chain.take(2);
    entries[1]["body"] = json!({"n": "changed after hashing"});
    let outcomes = hub
        .outcomes("s-forged", &tokens["s-forged"], &entries)
        .await;
    assert_eq!(outcomes, ["accepted", "rejected:hash_mismatch"]);

    let (status, f) = fleet(&hub, "").await;
    assert_eq!(status, StatusCode::OK, "{f}");
    let state = |id: &str| store(&f, id)["state"].as_str().unwrap().to_owned();
    assert_eq!(state("s-ok"), "ok");
    assert_eq!(state("s-offline"), "offline");
    assert_eq!(state("s-backlog"), "backlog");
    assert_eq!(state("s-never"), "silent");
    assert_eq!(state("s-quiet"), "silent");
    assert_eq!(state("s-forged"), "ok");
    assert!(store(&f, "s-never")["last_contact"].is_null());
    assert!(store(&f, "s-quiet")["since_contact_secs"].as_i64().unwrap() >= 2);
    assert_eq!(store(&f, "s-quiet")["silent_after_secs"], 2);
    // What it last reported stays visible while silent.
    assert_eq!(store(&f, "s-quiet")["reported"]["journal"]["pending"], 3);
    assert_eq!(store(&f, "s-forged")["verified_seq"], 1);
    assert_eq!(store(&f, "s-forged")["set_aside_count"], 1);
    let listed = &store(&f, "s-forged")["set_aside"][0];
    assert_eq!(
        (listed["outcome"].as_str(), listed["reason"].as_str()),
        (Some("rejected"), Some("hash_mismatch"))
    );
    assert_eq!(listed["id"], entries[1]["id"]);
    // Worst first.
    assert_eq!(
        ids(&f),
        [
            "s-never",
            "s-quiet",
            "s-offline",
            "s-backlog",
            "s-forged",
            "s-ok"
        ]
    );
    let t = &f["totals"];
    assert_eq!(t["stores"], 6);
    assert_eq!(
        t["by_state"],
        json!({"silent": 2, "offline": 1, "backlog": 1, "ok": 2})
    );
    assert_eq!(t["backlog"], 3 + 12 + 500);
    assert_eq!(t["offline_payments"], 4);
    assert_eq!(t["offline_exposure_minor"], json!({"USD": 4000}));
    assert_eq!(t["set_aside"], 1);
    assert_eq!(t["by_flag"]["backlog"], 3, "s-quiet's last report counts");

    for (q, want) in [
        ("silent", vec!["s-never", "s-quiet"]),
        ("offline", vec!["s-offline"]),
        ("backlog", vec!["s-quiet", "s-offline", "s-backlog"]),
        ("exposure", vec!["s-offline"]),
        ("set_aside", vec!["s-forged"]),
        ("offline,set_aside", vec!["s-offline", "s-forged"]),
    ] {
        let (status, g) = fleet(&hub, &format!("?state={q}")).await;
        assert_eq!(status, StatusCode::OK, "{q}: {g}");
        assert_eq!(ids(&g), want, "?state={q}");
        assert_eq!(g["totals"], f["totals"], "totals are the whole fleet's");
    }
    let (status, err) = fleet(&hub, "?state=sleepy").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err["error"]["code"], "invalid_query");
    assert_eq!(err["error"]["field"], "state");

    // A silent store that speaks again is back at once; a journal push counts as contact.
    post("s-quiet", beat("s-quiet", 2, "up", "up", 0, 0)).await;
    let _ = hub
        .outcomes(
            "s-never",
            &tokens["s-never"],
            &Chain::new("s-never").take(1),
        )
        .await;
    let (_, f) = fleet(&hub, "?state=silent").await;
    assert!(ids(&f).is_empty(), "{f}");

    // Metrics: totals and counts by state, no store id in any label.
    let (status, metrics) = hub.get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    for line in [
        "standin_hub_fleet_read_ok 1",
        "standin_hub_fleet_stores{state=\"offline\"} 1",
        "standin_hub_fleet_stores{state=\"silent\"} 0",
        "standin_hub_fleet_backlog_entries 512",
        "standin_hub_fleet_offline_exposure_minor{currency=\"USD\"} 4000",
        "standin_hub_fleet_set_aside_entries 1",
        "standin_hub_heartbeats_total 6",
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
    assert!(!metrics.contains("s-ok"), "a store id in a label");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_its_assets_are_served_and_errors_are_json() {
    let Some(hub) = TestHub::start().await else {
        return;
    };
    let (status, html) = hub.get("/fleet").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("/fleet/fleet.js") && html.contains("<title>"));
    let (status, js) = hub.get("/fleet/fleet.js").await;
    assert_eq!(status, StatusCode::OK);
    assert!(js.contains("/v1/fleet"));
    let (status, css) = hub.get("/fleet/fleet.css").await;
    assert_eq!(status, StatusCode::OK);
    assert!(css.contains(".tile"));
    // PostgreSQL gone: the fleet answers 503 JSON with Retry-After, metrics say so.
    hub.pg.stop_immediate();
    let res = hub
        .client
        .get(format!("{}/v1/fleet", hub.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.headers().contains_key("retry-after"));
    let err: Value = res.json().await.unwrap();
    assert_eq!(err["error"]["code"], "database_unavailable");
    let (status, metrics) = hub.get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(metrics.contains("standin_hub_fleet_read_ok 0"), "{metrics}");
    hub.pg.start_again();
    hub.stop().await;
}

/// A real Standin store pointed at the hub with its token: its own heartbeat lands, with
/// central up and its backlog; taking a lane from 0 to >0 sends one at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_store_reports_itself_to_the_hub() {
    let Some(hub) = TestHub::start().await else {
        return;
    };
    let token = hub.add_store("store-0001").await;
    let url = hub.url.clone();
    let t = TestStore::start_with(move |c| {
        c.central.url = Some(url);
        c.central.token = standin::config::Secret::new(token);
        c.central.timeout_ms = 1000;
        // Long: only a change of state sends a heartbeat inside this test.
        c.central.health_interval_secs = 30;
        c.journal.push = false;
        c.feeds.pull = false;
    })
    .await;
    let first = wait_for_report(&hub, |r| r["upstreams"]["central"]["state"] == "up").await;
    assert_eq!(first["store_id"], "store-0001");
    assert_eq!(first["journal"]["pending"], 0);
    assert_eq!(first["interval_secs"], 30);
    // A lane goes from 0 to >0: a change of state, reported well before the interval.
    append_entries(
        &t.db_path(),
        standin::journal::Lane::Audit,
        "audit.login",
        3,
    );
    let started = std::time::Instant::now();
    let later = wait_for_report(&hub, |r| r["journal"]["pending"] == 3).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(later["seq"].as_u64().unwrap() > first["seq"].as_u64().unwrap());
    assert_eq!(later["journal"]["lanes"]["audit"]["pending"], 3);
    let (_, f) = fleet(&hub, "?state=backlog").await;
    assert_eq!(ids(&f), ["store-0001"]);
    t.stop().await;
    hub.stop().await;
}

async fn wait_for_report(hub: &TestHub, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, f) = fleet(hub, "").await;
        let r = &store(&f, "store-0001")["reported"];
        if !r.is_null() && pred(r) {
            return r.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no such report; last: {r}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_request_with_the_stores_own_token_is_contact() {
    // A store the hub answers "busy, come back in 25 s" (or that only pulls its feeds) is
    // alive: the fleet must not call it silent. Another store's token is not its contact.
    let Some(hub) = TestHub::start_with(|c| {
        c.health_interval_secs = 1;
        c.silent_after_intervals = 2;
    })
    .await
    else {
        return;
    };
    let token = hub.add_store("s-pulls").await;
    let other = hub.add_store("s-other").await;
    let (status, b) = send(
        &hub,
        "s-pulls",
        &token,
        &beat("s-pulls", 1, "up", "up", 0, 0),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{b}");
    tokio::time::sleep(std::time::Duration::from_millis(3200)).await;
    let (_, f) = fleet(&hub, "?state=silent").await;
    assert!(ids(&f).contains(&"s-pulls".to_owned()), "{f}");

    let pull = |t: &str| {
        hub.client
            .get(format!(
                "{}/v1/stores/s-pulls/feeds/policy/batches?after=0",
                hub.url
            ))
            .bearer_auth(t.to_owned())
            .send()
    };
    let refused = pull(&other).await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let (_, f) = fleet(&hub, "?state=silent").await;
    assert!(
        ids(&f).contains(&"s-pulls".to_owned()),
        "another's token: {f}"
    );

    let pulled = pull(&token).await.unwrap();
    assert_eq!(pulled.status(), StatusCode::OK);
    // Contact is written once a second, not per request.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let (_, f) = fleet(&hub, "").await;
    assert_eq!(store(&f, "s-pulls")["state"], "ok", "{f}");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_contact_never_waits_for_a_locked_store() {
    // A store's row held by a long transaction (a batch landing, another hub's flush) must
    // not hold up the contact of every other store, nor lose its own: it lands once the
    // row is free.
    let Some(hub) = TestHub::start_with(|c| {
        c.health_interval_secs = 1;
        c.silent_after_intervals = 2;
    })
    .await
    else {
        return;
    };
    let busy = hub.add_store("s-busy").await;
    let free = hub.add_store("s-free").await;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let (_, f) = fleet(&hub, "?state=silent").await;
    assert_eq!(ids(&f).len(), 2, "{f}");

    let mut holder = standin::hub::db::connect(&hub.pg.url).await.unwrap();
    let tx = holder.transaction().await.unwrap();
    tx.execute(
        "SELECT 1 FROM stores WHERE store_id = 's-busy' FOR UPDATE",
        &[],
    )
    .await
    .unwrap();
    let pull = |s: &str, t: &str| {
        hub.client
            .get(format!(
                "{}/v1/stores/{s}/feeds/policy/batches?after=0",
                hub.url
            ))
            .bearer_auth(t.to_owned())
            .send()
    };
    assert_eq!(
        pull("s-busy", &busy).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        pull("s-free", &free).await.unwrap().status(),
        StatusCode::OK
    );
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let (_, f) = fleet(&hub, "?state=silent").await;
    assert_eq!(ids(&f), ["s-busy"], "the free store's contact waited: {f}");
    assert!(store(&f, "s-busy")["last_contact"].is_null(), "{f}");

    tx.rollback().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let (_, f) = fleet(&hub, "").await;
    // Recorded once the row came free, as when it was heard (about 2.7 s ago).
    let busy = store(&f, "s-busy");
    assert!(
        !busy["last_contact"].is_null() && busy["since_contact_secs"].as_i64() <= Some(4),
        "the locked store's contact was lost: {f}"
    );
    hub.stop().await;
}

/// Heartbeats are written in groups: many at once from several stores, sent out of order
/// (each store's newest in the middle), each answered 204 only after its group commits;
/// per store the newest report is kept and every heartbeat counted. The grouping is forced:
/// another session holds `store_status` while the heartbeats arrive, so they wait together
/// and go in one or two statements.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_at_once_keep_each_stores_newest_and_count_every_one() {
    // 30 of each store's at once: far past the rate a store is allowed (`heartbeat_burst`).
    let Some(hub) = TestHub::start_with(|c| c.heartbeat_burst = 1_000).await else {
        return;
    };
    let stores = ["g1", "g2", "g3"];
    let mut tokens = std::collections::HashMap::new();
    for s in stores {
        tokens.insert(s, hub.add_store(s).await);
    }
    const EACH: u64 = 30;
    let total = EACH as usize * stores.len();
    let mut holder = standin::hub::db::connect(&hub.pg.url).await.unwrap();
    let hold = holder.transaction().await.unwrap();
    hold.batch_execute("LOCK TABLE store_status IN SHARE MODE")
        .await
        .unwrap();
    let base = chrono::DateTime::parse_from_rfc3339("2026-12-06T10:00:00Z").unwrap();
    let mut sends = tokio::task::JoinSet::new();
    for s in stores {
        // seq 1..=EACH, the newest (EACH) sent in the middle; sent_at follows seq.
        let mut order: Vec<u64> = (1..=EACH).collect();
        order.swap((EACH / 2) as usize, (EACH - 1) as usize);
        for seq in order {
            let mut body = beat(s, seq, "up", "up", seq as i64, 0);
            body["sent_at"] = json!(
                (base + chrono::Duration::milliseconds(seq as i64))
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            );
            sends.spawn(hub.send_status(s, &tokens[s], body));
        }
    }
    // Every heartbeat waits: one group blocked on the lock (as many as arrived before the
    // writer took them), the rest queued behind it. Within the writer's 3 s for a statement.
    let mut all_waiting = false;
    for _ in 0..400 {
        if hub.state.heartbeats.unanswered() == total {
            all_waiting = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(all_waiting, "{} waiting", hub.state.heartbeats.unanswered());
    assert!(
        sends.try_join_next().is_none(),
        "a heartbeat was answered before its group could commit"
    );
    hold.rollback().await.unwrap();
    while let Some(sent) = sends.join_next().await {
        let (status, body) = sent.unwrap();
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    }
    let client = hub.pg.client().await;
    for s in stores {
        let row = client
            .query_one(
                "SELECT seq, heartbeats, (body->'journal'->>'pending')::int8 FROM store_status
                 WHERE store_id = $1",
                &[&s],
            )
            .await
            .unwrap();
        let (seq, count, pending): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        assert_eq!(seq, EACH as i64, "{s}: the newest report is kept");
        assert_eq!(
            pending, EACH as i64,
            "{s}: the newest report's body is kept"
        );
        assert_eq!(count, EACH as i64, "{s}: every heartbeat counted");
    }
}

/// What PostgreSQL would refuse in one store's heartbeat is refused for that store alone,
/// naming the field; the rest of the fleet's heartbeats land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_postgresql_would_refuse_is_refused_alone_naming_the_field() {
    let Some(hub) = TestHub::start().await else {
        return;
    };
    let (t1, t2) = (hub.add_store("h1").await, hub.add_store("h2").await);
    let mut nul = beat("h1", 1, "up", "up", 0, 0);
    nul["version"] = json!("0.1.0\u{0}");
    let (status, body) = send(&hub, "h1", &t1, &nul).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "version", "{body}");
    let mut ancient = beat("h1", 2, "up", "up", 0, 0);
    ancient["sent_at"] = json!("0000-01-01T00:00:00Z");
    let (status, body) = send(&hub, "h1", &t1, &ancient).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "sent_at", "{body}");
    let mut unsent = beat("h1", 3, "up", "up", 0, 0);
    unsent.as_object_mut().unwrap().remove("sent_at");
    let (status, body) = send(&hub, "h1", &t1, &unsent).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "sent_at", "{body}");
    let mut unsent = beat("h1", 3, "up", "up", 0, 0);
    unsent["upstreams"]["central"]
        .as_object_mut()
        .unwrap()
        .remove("state");
    let (status, body) = send(&hub, "h1", &t1, &unsent).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "upstreams.central.state", "{body}");
    let (status, body) = send(&hub, "h2", &t2, &beat("h2", 1, "up", "up", 0, 0)).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
}

/// What no store reports is refused, naming the field, before it reaches the fleet's totals:
/// negative counts and amounts, and amounts past what 5,000 stores can sum (an `i64::MAX`
/// from two stores overflowed the totals: a panic in a debug build, a wrapped total in a
/// release one). A heartbeat dated ahead of the hub's clock ranks as sent now, so the
/// store's correct heartbeats after it are kept (one dated 2099 froze its view for good).
/// A store reporting an hour-plus interval is still silent after three hours at most.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_no_store_sends_are_refused_and_a_future_date_cannot_freeze_a_store() {
    let Some(hub) = TestHub::start().await else {
        return;
    };
    let t1 = hub.add_store("h1").await;
    for (field, value) in [
        ("payments.offline_total_minor", json!(-10_000_000)),
        ("payments.offline_count", json!(-3)),
        ("payments.offline_total_minor", json!(i64::MAX)),
        ("journal.pending", json!(-1)),
        ("journal.lanes.payments.pending", json!(-1)),
        ("refunds.queued_total_minor", json!(i64::MAX)),
    ] {
        let mut b = beat("h1", 1, "up", "up", 0, 1);
        let mut at = &mut b;
        let path: Vec<&str> = field.split('.').collect();
        for key in &path[..path.len() - 1] {
            at = &mut at[*key];
        }
        at[path[path.len() - 1]] = value.clone();
        let (status, body) = send(&hub, "h1", &t1, &b).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{field} = {value}: {body}"
        );
        assert_eq!(body["error"]["field"], field, "{body}");
    }
    // Two stores at the largest amount taken: the totals hold.
    let t2 = hub.add_store("h2").await;
    for (s, t) in [("h1", &t1), ("h2", &t2)] {
        let mut b = beat(s, 1, "up", "down", 0, 1);
        b["payments"]["offline_total_minor"] = json!(1_000_000_000_000_000i64);
        let (status, body) = send(&hub, s, t, &b).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    }
    let (status, f) = fleet(&hub, "").await;
    assert_eq!(status, StatusCode::OK, "{f}");
    assert_eq!(
        f["totals"]["offline_exposure_minor"]["USD"],
        json!(2_000_000_000_000_000i64),
        "{f}"
    );
    // From the future, then correct again: the correct one is what the fleet shows.
    let mut future = beat("h1", 2, "down", "down", 5, 3);
    future["sent_at"] = json!("2099-01-01T00:00:00Z");
    assert_eq!(
        send(&hub, "h1", &t1, &future).await.0,
        StatusCode::NO_CONTENT
    );
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_eq!(
        send(&hub, "h1", &t1, &beat("h1", 3, "up", "up", 0, 0))
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    let (_, f) = fleet(&hub, "").await;
    let h1 = store(&f, "h1");
    assert_eq!(h1["state"], "ok", "{h1}");
    assert_eq!(h1["reported"]["seq"], 3, "{h1}");
    // An absurd interval: silent after at most 3 × 3,600 s.
    let mut slow = beat("h2", 2, "up", "up", 0, 0);
    slow["interval_secs"] = json!(u64::MAX);
    assert_eq!(send(&hub, "h2", &t2, &slow).await.0, StatusCode::NO_CONTENT);
    let (_, f) = fleet(&hub, "").await;
    let h2 = store(&f, "h2");
    assert_eq!(h2["silent_after_secs"], 3 * 3_600, "{h2}");
    assert_eq!(h2["state"], "ok", "{h2}");
}

/// A heartbeat older by its clock than the stored one is ignored when it arrives within
/// `request_timeout_secs` of it (a late arrival through the other hub process), but not after
/// that: a store whose clock was set back is not frozen at its last report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_whose_clock_went_back_is_not_frozen_at_its_last_report() {
    let Some(hub) = TestHub::start_with(|c| {
        c.request_timeout_secs = 1;
        c.intake_deadline_ms = 500;
    })
    .await
    else {
        return;
    };
    let t = hub.add_store("h1").await;
    let at = |secs_ago: i64| {
        (chrono::Utc::now() - chrono::Duration::seconds(secs_ago))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    let mut b = beat("h1", 5, "up", "up", 0, 0);
    b["sent_at"] = json!(at(0));
    assert_eq!(send(&hub, "h1", &t, &b).await.0, StatusCode::NO_CONTENT);
    // Older by its clock, arriving at once: a late arrival, ignored.
    let mut late = beat("h1", 4, "down", "down", 3, 3);
    late["sent_at"] = json!(at(10));
    assert_eq!(send(&hub, "h1", &t, &late).await.0, StatusCode::NO_CONTENT);
    let (_, f) = fleet(&hub, "").await;
    assert_eq!(store(&f, "h1")["reported"]["seq"], 5, "{f}");
    // The clock set back an hour, reporting after the window: taken.
    tokio::time::sleep(std::time::Duration::from_millis(1_300)).await;
    let mut back = beat("h1", 1, "down", "down", 2, 1);
    back["sent_at"] = json!(at(3_600));
    assert_eq!(send(&hub, "h1", &t, &back).await.0, StatusCode::NO_CONTENT);
    let (_, f) = fleet(&hub, "").await;
    let h1 = store(&f, "h1");
    assert_eq!(h1["reported"]["seq"], 1, "{h1}");
    assert_eq!(h1["state"], "offline", "{h1}");
    // And its next one, a second later by its clock, at once: taken too.
    let mut next = beat("h1", 2, "up", "up", 0, 0);
    next["sent_at"] = json!(at(3_599));
    assert_eq!(send(&hub, "h1", &t, &next).await.0, StatusCode::NO_CONTENT);
    let (_, f) = fleet(&hub, "").await;
    assert_eq!(store(&f, "h1")["reported"]["seq"], 2, "{f}");
}

/// A store may have `HEARTBEATS_PER_STORE` heartbeats in a hub process at once: a third
/// while two are still arriving is answered 429 with a `Retry-After`, another store's is
/// taken, and the held ones are answered 408 when their time is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_store_cannot_hold_more_than_two_heartbeats_at_once() {
    let Some(hub) = TestHub::start_with(|c| c.intake_deadline_ms = 1_500).await else {
        return;
    };
    let (t1, t2) = (hub.add_store("h1").await, hub.add_store("h2").await);
    let mut held = Vec::new();
    for _ in 0..standin::hub::share::HEARTBEATS_PER_STORE {
        held.push(hub.unfinished_post("h1", "status", &t1, 500, "{").await);
    }
    // The held ones reach the hub in their own time: poll until the third is refused.
    let started = std::time::Instant::now();
    loop {
        let (status, body) = send(&hub, "h1", &t1, &beat("h1", 1, "up", "up", 0, 0)).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(body["error"]["code"], "too_many_requests", "{body}");
            break;
        }
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "a third heartbeat was never refused"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let (status, body) = send(&hub, "h2", &t2, &beat("h2", 1, "up", "up", 0, 0)).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    for mut s in held {
        let (status, _, v) = read_answer(&mut s).await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (408, Some("body_timeout")),
            "{v}"
        );
    }
    assert_eq!(
        send(&hub, "h1", &t1, &beat("h1", 2, "up", "up", 0, 0))
            .await
            .0,
        StatusCode::NO_CONTENT
    );
}

/// One store's token cannot grow HQ's database without bound with entries it knows will be
/// rejected (a hostile round made 500,000 such rows in 88 s, and every fleet read counted
/// them): past `set_aside_kept_per_store` a rejected entry is answered as ever but not
/// written. The fleet view counts it from the store's row, and the store's chain goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_store_cannot_grow_its_set_aside_rows_without_bound() {
    let Some(hub) = TestHub::start_with(|c| c.set_aside_kept_per_store = 3).await else {
        return;
    };
    let token = hub.add_store("s1").await;
    let good = Chain::new("s1").take(6);
    let mut bad: Vec<Value> = good[1..].to_vec();
    for (i, e) in bad.iter_mut().enumerate() {
        e["id"] = json!(format!("bad-{i}"));
        e["hash"] = json!("0".repeat(64));
    }
    let first: Vec<Value> = std::iter::once(good[0].clone())
        .chain(bad.clone())
        .collect();
    let mut want = vec!["accepted".to_owned()];
    want.extend(std::iter::repeat_n("rejected:hash_mismatch".to_owned(), 5));
    assert_eq!(hub.outcomes("s1", &token, &first).await, want);
    assert_eq!(
        hub.rows("s1").await.len(),
        1 + 3,
        "three rejected rows kept, no more"
    );
    // Sent again: the same answers; the kept three from their rows, the other two judged
    // again (and counted again), still not written.
    assert_eq!(hub.outcomes("s1", &token, &bad).await, want[1..]);
    assert_eq!(hub.rows("s1").await.len(), 4);
    // The store's real entries still land.
    assert_eq!(
        hub.outcomes("s1", &token, &good[1..]).await,
        ["accepted"; 5]
    );
    assert_eq!(hub.verified("s1").await, (6, None));

    let (status, f) = fleet(&hub, "?state=set_aside").await;
    assert_eq!(status, StatusCode::OK, "{f}");
    let s = store(&f, "s1");
    assert_eq!(s["set_aside_count"], 3 + 4, "{s}");
    assert_eq!(s["set_aside_not_kept"], 4, "{s}");
    assert_eq!(s["set_aside"].as_array().unwrap().len(), 3, "{s}");
    assert_eq!(f["totals"]["set_aside"], 7, "{f}");
    let (_, metrics) = hub.get("/metrics").await;
    assert!(
        metrics.contains("standin_hub_journal_set_aside_not_kept_total 4\n"),
        "{metrics}"
    );
}

/// One store's token cannot fill the heartbeat writer's queue (20,000 for the process) and
/// get every other store's heartbeat answered busy: past `MAX_WAITING_PER_STORE` waiting,
/// that store's are answered 429, and another store's still queue and land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_store_cannot_fill_the_heartbeat_queue() {
    use standin::hub::heartbeats::MAX_WAITING_PER_STORE;
    // The rate a store is allowed (`heartbeat_burst`) would refuse these first: this is the
    // queue's own bound, for a store spread over many processes.
    let Some(hub) = TestHub::start_with(|c| c.heartbeat_burst = 1_000).await else {
        return;
    };
    let (t1, t2) = (hub.add_store("h1").await, hub.add_store("h2").await);
    let mut holder = standin::hub::db::connect(&hub.pg.url).await.unwrap();
    let hold = holder.transaction().await.unwrap();
    hold.batch_execute("LOCK TABLE store_status IN SHARE MODE")
        .await
        .unwrap();
    const SENT: usize = 4 * MAX_WAITING_PER_STORE;
    let mut sends = tokio::task::JoinSet::new();
    for seq in 1..=SENT as u64 {
        sends.spawn(hub.send_status("h1", &t1, beat("h1", seq, "up", "up", 0, 0)));
    }
    // Every one either waits (in the group blocked on the lock, or queued) or was refused.
    let mut refused = 0;
    for _ in 0..1_000 {
        while let Some(done) = sends.try_join_next() {
            assert_eq!(done.unwrap().0, StatusCode::TOO_MANY_REQUESTS);
            refused += 1;
        }
        if hub.state.heartbeats.unanswered() + refused == SENT {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let waiting = hub.state.heartbeats.unanswered();
    assert_eq!(waiting + refused, SENT);
    // Queued, and in the group the writer took before the cap filled (at most as many).
    assert!(
        waiting <= 2 * MAX_WAITING_PER_STORE,
        "{waiting} of one store's heartbeats wait"
    );
    // Another store's heartbeat still queues.
    let other = tokio::spawn(hub.send_status("h2", &t2, beat("h2", 1, "up", "up", 0, 0)));
    for _ in 0..400 {
        if hub.state.heartbeats.unanswered() == waiting + 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(hub.state.heartbeats.unanswered(), waiting + 1);
    hold.rollback().await.unwrap();
    assert_eq!(other.await.unwrap().0, StatusCode::NO_CONTENT);
    let mut landed = 0i64;
    while let Some(done) = sends.join_next().await {
        match done.unwrap().0 {
            StatusCode::NO_CONTENT => landed += 1,
            s => assert_eq!(s, StatusCode::TOO_MANY_REQUESTS),
        }
    }
    let client = hub.pg.client().await;
    let row = client
        .query_one(
            "SELECT heartbeats FROM store_status WHERE store_id = 'h1'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, i64>(0),
        landed,
        "every heartbeat answered 204 counted"
    );
}

/// One store's token sending heartbeats as fast as it can gets its burst
/// (`heartbeat_burst`), then two a second; the rest are answered 429 with `Retry-After`
/// before their body is read, counted, and other stores' heartbeats are untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_stores_heartbeats_are_limited_to_a_burst_then_a_steady_rate() {
    let Some(hub) = TestHub::start_with(|c| c.heartbeat_burst = 5).await else {
        return;
    };
    let (t1, t2) = (hub.add_store("r1").await, hub.add_store("r2").await);
    let refill = standin::hub::share::HEARTBEAT_REFILL;
    let started = std::time::Instant::now();
    // The burst: every one taken (the bucket starts full and only fills while they go).
    for seq in 1..=5 {
        let (status, body) = send(&hub, "r1", &t1, &beat("r1", seq, "up", "up", 0, 0)).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "heartbeat {seq}: {body}");
    }
    // Then 20 at once whose bodies are not even JSON: refused for the rate (429) before the
    // body is read; only one that a refill let through is read, and refused 400 for its body.
    let mut sends = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let post = hub
            .client
            .post(format!("{}/v1/stores/r1/status", hub.url))
            .bearer_auth(&t1)
            .body("not json");
        sends.spawn(async move {
            let res = post.send().await.unwrap();
            let retry_after = res.headers().contains_key("retry-after");
            let status = res.status();
            (
                status,
                retry_after,
                res.json::<Value>().await.unwrap_or(Value::Null),
            )
        });
    }
    let (mut limited, mut read) = (0, 0);
    while let Some(done) = sends.join_next().await {
        let (status, retry_after, body) = done.unwrap();
        match status {
            StatusCode::TOO_MANY_REQUESTS => {
                assert!(retry_after, "a 429 says when to come back");
                assert_eq!(body["error"]["code"], "too_many_requests", "{body}");
                limited += 1;
            }
            StatusCode::BAD_REQUEST => read += 1,
            s => panic!("{s}: {body}"),
        }
    }
    // No more read than came back into the bucket while they were sent.
    let took = started.elapsed();
    let refilled = (took.as_millis() / refill.as_millis()) as usize + 1;
    assert!(
        read <= refilled && limited + read == 20,
        "{read} read, {limited} limited in {took:?}"
    );
    assert!(limited > 0, "none limited in {took:?}");
    // Counted, one for each.
    let (_, metrics) = hub.get("/metrics").await;
    assert!(
        metrics.contains(&format!(
            "standin_hub_intake_refused_store_busy_total {limited}\n"
        )),
        "{limited} refusals counted: {metrics}"
    );
    // Another store's are its own.
    let (status, body) = send(&hub, "r2", &t2, &beat("r2", 1, "up", "up", 0, 0)).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    // A refill later one more is taken.
    tokio::time::sleep(refill + refill / 5).await;
    let (status, body) = send(&hub, "r1", &t1, &beat("r1", 20, "up", "up", 0, 0)).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
}

/// The fleet view needs no credential and each read scans every store on a connection the
/// fleet's pulls share: readers arriving together share one read (`fleet_view_max_age_ms`),
/// and at most four answers are made at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_of_the_fleet_share_one_read() {
    let Some(hub) = TestHub::start_with(|c| c.fleet_view_max_age_ms = 60_000).await else {
        return;
    };
    let token = hub.add_store("r1").await;
    let reads = |metrics: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("standin_hub_fleet_reads_total "))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    let mut all = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (client, url) = (hub.client.clone(), hub.url.clone());
        all.spawn(async move { client.get(format!("{url}/v1/fleet")).send().await.unwrap() });
    }
    // At most four answers are made at once; the rest are told to come back.
    let mut answered = 0;
    while let Some(res) = all.join_next().await {
        match res.unwrap().status() {
            StatusCode::OK => answered += 1,
            s => assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE),
        }
    }
    assert!(answered >= 1);
    let (_, metrics) = hub.get("/metrics").await;
    assert_eq!(
        reads(&metrics),
        1,
        "{answered} views and a scrape, one read"
    );
    // A report after the read shows once the read is older than the age allowed: here,
    // with the age at a minute, the view still shows the store never heard from.
    assert_eq!(
        send(&hub, "r1", &token, &beat("r1", 1, "up", "up", 0, 0))
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    let (_, f) = fleet(&hub, "").await;
    assert_eq!(store(&f, "r1")["state"], "silent", "{f}");
}
