//! Delivery by push against the simulated central: priorities, order within a lane, set-aside
//! entries that never block their lane, partial acceptance, Retry-After.

mod common;

use common::sim::{admin, fault, received_journal, simulator};
use common::*;
use serde_json::{Value, json};
use standin::journal::Lane;
use standin::simulator::Simulator;

async fn standin_pushing_to(sim: &Simulator) -> TestStore {
    standin_pushing_to_with(sim, |_| {}).await
}

/// [`standin_pushing_to`], then `tweak` on its config.
async fn standin_pushing_to_with(
    sim: &Simulator,
    tweak: impl FnOnce(&mut standin::config::Config),
) -> TestStore {
    let central = sim.central_url();
    TestStore::start_with(move |c| {
        c.central.url = Some(central);
        c.central.timeout_ms = 500;
        c.central.health_interval_secs = 1;
        c.journal.batch_size = 20;
        c.journal.retry_base_ms = 50;
        c.journal.retry_cap_ms = 500;
        c.journal.idle_poll_ms = 50;
        tweak(c);
    })
    .await
}

async fn all_delivered(t: &TestStore) -> Value {
    t.wait_for_status("every lane drained", |s| {
        s["journal"]["lanes"]
            .as_object()
            .unwrap()
            .values()
            .all(|l| l["pending"] == 0)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_go_before_audit_and_each_lane_in_order() {
    let sim = simulator(20, 5).await;
    fault(&sim, "central", json!({"mode": "down"})).await;
    let t = standin_pushing_to(&sim).await;
    let mut written = append_entries(&t.db_path(), Lane::Audit, "audit.login", 50);
    written.extend(append_entries(
        &t.db_path(),
        Lane::Pickups,
        "pickup.handed_over",
        30,
    ));
    written.extend(append_entries(
        &t.db_path(),
        Lane::Payments,
        "payment.approved_offline",
        50,
    ));
    fault(&sim, "central", json!({"mode": "ok"})).await;
    all_delivered(&t).await;
    let received = received_journal(&sim).await;
    assert_exactly_once_in_order(&received, &written);
    let lanes: Vec<&str> = received
        .iter()
        .map(|r| r["lane"].as_str().unwrap())
        .collect();
    let last_payment = lanes.iter().rposition(|l| *l == "payments").unwrap();
    let first_pickup = lanes.iter().position(|l| *l == "pickups").unwrap();
    let first_audit = lanes.iter().position(|l| *l == "audit").unwrap();
    assert!(
        last_payment < first_pickup && first_pickup < first_audit,
        "priority order broken: {lanes:?}"
    );
    t.stop().await;
    sim.shutdown().await;
}

/// A store back from a short outage with a few entries in each lane sends them in one push,
/// by priority (payments, returns, pickups, audit), each lane in `seq` order: lower lanes
/// ride in the room the higher ones leave, so central takes one request, not one per lane.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_few_entries_in_each_lane_go_in_one_push_by_priority() {
    let sim = simulator(20, 5).await;
    fault(&sim, "central", json!({"mode": "down"})).await;
    let t = standin_pushing_to(&sim).await;
    let mut written = Vec::new();
    for (lane, kind, n) in [
        (Lane::Audit, "audit.login", 5),
        (Lane::Pickups, "pickup.handed_over", 4),
        (Lane::Payments, "payment.approved_offline", 3),
        (Lane::Returns, "return.taken", 2),
        (Lane::Payments, "payment.approved_offline", 2),
    ] {
        written.extend(append_entries(&t.db_path(), lane, kind, n));
    }
    assert!(written.len() < 20, "all fit in one batch_size push");
    fault(&sim, "central", json!({"mode": "ok"})).await;
    all_delivered(&t).await;
    let received = received_journal(&sim).await;
    let lanes: Vec<&str> = received
        .iter()
        .map(|r| r["lane"].as_str().unwrap())
        .collect();
    assert_eq!(
        lanes,
        [
            vec!["payments"; 5],
            vec!["returns"; 2],
            vec!["pickups"; 4],
            vec!["audit"; 5]
        ]
        .concat(),
        "priority order, every entry once"
    );
    assert!(
        received.iter().all(|r| r["count"] == 1),
        "each entry sent once"
    );
    let pushes: std::collections::BTreeSet<u64> = received
        .iter()
        .map(|r| r["push"].as_u64().unwrap())
        .collect();
    assert_eq!(
        pushes.len(),
        1,
        "one push for the whole backlog: {pushes:?}"
    );
    for w in received.windows(2) {
        let (a, b) = (&w[0]["entry"], &w[1]["entry"]);
        if a["lane"] == b["lane"] {
            assert!(a["seq"].as_i64() < b["seq"].as_i64(), "lane out of order");
        }
    }
    t.stop().await;
    sim.shutdown().await;
}

/// More than a batch holds: the first push is the top lane's alone, and the lanes below wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_push_is_the_top_lane_alone() {
    let sim = simulator(20, 5).await;
    fault(&sim, "central", json!({"mode": "down"})).await;
    let t = standin_pushing_to(&sim).await;
    append_entries(&t.db_path(), Lane::Audit, "audit.login", 10);
    append_entries(&t.db_path(), Lane::Payments, "payment.approved_offline", 30);
    fault(&sim, "central", json!({"mode": "ok"})).await;
    all_delivered(&t).await;
    let received = received_journal(&sim).await;
    assert!(
        received.iter().all(|r| r["count"] == 1),
        "each entry sent once"
    );
    let first_push = received[0]["push"].as_u64().unwrap();
    let first: Vec<&str> = received
        .iter()
        .filter(|r| r["push"].as_u64() == Some(first_push))
        .map(|r| r["lane"].as_str().unwrap())
        .collect();
    assert_eq!(
        first,
        vec!["payments"; 20],
        "a full first push is payments only"
    );
    let last_payment = received
        .iter()
        .rposition(|r| r["lane"] == "payments")
        .unwrap();
    let first_audit = received.iter().position(|r| r["lane"] == "audit").unwrap();
    assert!(last_payment < first_audit);
    t.stop().await;
    sim.shutdown().await;
}

/// While a push is in flight the next one is read ahead; entries appended meanwhile in a
/// higher lane displace it and go in the very next push, as they would have without the
/// read-ahead. Central answers after 1.5 s, and the payments are appended 0.5 s into the
/// first push of a backlog of audit entries (whose read-ahead is full of audit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_appended_during_a_push_go_ahead_of_what_was_read_ahead() {
    let sim = simulator(20, 5).await;
    fault(
        &sim,
        "central",
        json!({"mode": "latency", "latency_ms": 1500}),
    )
    .await;
    let t = standin_pushing_to_with(&sim, |c| {
        c.central.timeout_ms = 5_000;
        c.central.health_interval_secs = 30;
        c.journal.idle_poll_ms = 20;
    })
    .await;
    let audit = append_entries(&t.db_path(), Lane::Audit, "audit.login", 100);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let payments = append_entries(&t.db_path(), Lane::Payments, "payment.approved_offline", 5);
    all_delivered(&t).await;
    let received = received_journal(&sim).await;
    assert!(
        received.iter().all(|r| r["count"] == 1),
        "each entry sent once"
    );
    let push_of = |id: &str| {
        received
            .iter()
            .find(|r| r["id"] == id)
            .and_then(|r| r["push"].as_u64())
            .unwrap()
    };
    let first = push_of(&audit[0].id);
    for p in &payments {
        assert!(
            push_of(&p.id) <= first + 1,
            "a payment appended during push {first} waited behind the read-ahead: push {}",
            push_of(&p.id)
        );
    }
    let last_payment = received
        .iter()
        .rposition(|r| r["lane"] == "payments")
        .unwrap();
    let audit_after = received
        .iter()
        .position(|r| r["lane"] == "audit" && r["push"].as_u64() > Some(first))
        .unwrap();
    assert!(
        last_payment < audit_after,
        "payments before the audit not yet sent"
    );
    t.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_entry_is_set_aside_and_never_holds_back_its_lane() {
    let sim = simulator(20, 5).await;
    admin(
        &sim,
        reqwest::Method::PUT,
        "/admin/central/reject",
        json!({"ids": [], "kinds": ["return.poison"]}),
    )
    .await;
    let t = standin_pushing_to(&sim).await;
    let mut written = append_entries(&t.db_path(), Lane::Returns, "return.taken", 5);
    let poison = append_entries(&t.db_path(), Lane::Returns, "return.poison", 1);
    written.extend(poison.clone());
    written.extend(append_entries(
        &t.db_path(),
        Lane::Returns,
        "return.taken",
        25,
    ));
    let s = all_delivered(&t).await;
    assert_eq!(s["journal"]["set_aside"], 1);
    let received = received_journal(&sim).await;
    assert_exactly_once_in_order(&received, &written);
    let set_aside = t
        .state
        .store
        .read(|c| {
            standin::journal::delivery::set_aside(c).map_err(standin::store::StoreError::from)
        })
        .await
        .unwrap();
    assert_eq!(set_aside.len(), 1);
    assert_eq!(set_aside[0].entry.id, poison[0].id);
    assert_eq!(set_aside[0].reason.as_deref(), Some("rejected_by_rule"));
    let accepted: i64 = t
        .db()
        .query_row(
            "SELECT count(*) FROM journal WHERE lane = 'returns' AND outcome = 'accepted'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        accepted, 30,
        "the entries behind the rejected one were delivered"
    );
    t.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_acceptance_and_retry_after_lose_nothing_and_duplicate_nothing() {
    let sim = simulator(20, 5).await;
    fault(
        &sim,
        "central",
        json!({"mode": "partial", "accept_ratio": 0.3}),
    )
    .await;
    let t = standin_pushing_to(&sim).await;
    let mut written = append_entries(&t.db_path(), Lane::Pickups, "pickup.handed_over", 60);
    t.wait_for_status("some delivered", |s| {
        s["journal"]["lanes"]["pickups"]["pending"]
            .as_i64()
            .unwrap()
            < 60
    })
    .await;
    fault(
        &sim,
        "central",
        json!({"mode": "retry_after", "status": 503, "retry_after_s": 1}),
    )
    .await;
    written.extend(append_entries(
        &t.db_path(),
        Lane::Pickups,
        "pickup.no_show",
        20,
    ));
    t.wait_for_status("central seen failing", |s| {
        s["upstreams"]["central"]["state"] != "up"
    })
    .await;
    fault(&sim, "central", json!({"mode": "drop_response"})).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    fault(&sim, "central", json!({"mode": "ok"})).await;
    all_delivered(&t).await;
    let received = received_journal(&sim).await;
    assert_exactly_once_in_order(&received, &written);
    assert_eq!(received.len(), written.len());
    t.stop().await;
    sim.shutdown().await;
}
