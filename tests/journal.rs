//! The journal: hash chain, pull and acknowledge, push to the simulated central with
//! priorities and set-aside entries, retention.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use standin::journal::Lane;

#[tokio::test]
async fn every_applied_batch_is_journaled_in_a_chain_that_check_verifies() {
    let t = TestStore::start().await;
    t.push("receipts", &delta(1, receipts("R", 0..3))).await;
    t.push("receipts", &delta(1, receipts("R", 0..3))).await; // a replay writes nothing
    t.push(
        "policy",
        &delta(1, vec![json!({"key": "offline_max_hours", "value": 24})]),
    )
    .await;
    let (s, _) = t.get("/sync/v1/journal?after=0").await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "the journal is for the sync job only"
    );
    let page: Value = t
        .client
        .get(format!("{}/sync/v1/journal?after=0", t.url))
        .bearer_auth(&t.sync_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entries = page["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{page}");
    assert_eq!(entries[0]["kind"], "feed.batch_applied");
    assert_eq!(entries[0]["lane"], "audit");
    assert_eq!(entries[0]["body"]["feed"], "receipts");
    assert_eq!(entries[0]["actor"], "hq-sync");
    assert_eq!(entries[1]["prev_hash"], entries[0]["hash"], "chained");
    assert_eq!(page["next_after"], entries[1]["seq"]);
    assert!(
        uuid::Uuid::parse_str(entries[0]["id"].as_str().unwrap())
            .unwrap()
            .get_version_num()
            == 7
    );
    assert!(
        standin::store::maintenance::check(&t.db_path())
            .unwrap()
            .is_empty()
    );
    let status = t.status().await;
    assert_eq!(status["journal"]["lanes"]["audit"]["pending"], 2);
    assert_eq!(status["journal"]["last_seq"], entries[1]["seq"]);
    t.stop().await;
}

#[tokio::test]
async fn check_names_the_first_broken_link() {
    let t = TestStore::start().await;
    append_entries(&t.db_path(), Lane::Returns, "return.taken", 5);
    let path = t.db_path();
    let _dir = t.stop().await;
    {
        // Forge entry 3's body behind the trigger's back (as someone editing the file would).
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("DROP TRIGGER journal_append_only; UPDATE journal SET body = '{\"n\":99}' WHERE seq = 3;").unwrap();
    }
    let problems = standin::store::maintenance::check(&path).unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].0.contains("journal seq 3"), "{problems:?}");
}

#[tokio::test]
async fn the_journal_refuses_edits_and_deleting_undelivered_entries() {
    let t = TestStore::start().await;
    append_entries(&t.db_path(), Lane::Pickups, "pickup.handed_over", 2);
    let c = rusqlite::Connection::open(t.db_path()).unwrap();
    let e = c
        .execute("UPDATE journal SET body = '{}' WHERE seq = 1", [])
        .unwrap_err();
    assert!(e.to_string().contains("append-only"), "{e}");
    let e = c
        .execute("DELETE FROM journal WHERE seq = 1", [])
        .unwrap_err();
    assert!(e.to_string().contains("never deleted"), "{e}");
    c.execute(
        "UPDATE journal SET outcome = 'accepted', delivered_at = 'x' WHERE seq = 1",
        [],
    )
    .unwrap();
    let e = c
        .execute("UPDATE journal SET outcome = 'rejected' WHERE seq = 1", [])
        .unwrap_err();
    assert!(e.to_string().contains("once"), "{e}");
    t.stop().await;
}

async fn ack(t: &TestStore, body: Value) -> (StatusCode, Value) {
    let res = t
        .client
        .post(format!("{}/sync/v1/journal/ack", t.url))
        .bearer_auth(&t.sync_token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let s = res.status();
    (s, res.json().await.unwrap())
}

#[tokio::test]
async fn pull_and_ack_settle_each_entry_once() {
    let t = TestStore::start().await;
    let entries = append_entries(&t.db_path(), Lane::Payments, "payment.approved_offline", 3);
    let (s, b) = ack(
        &t,
        json!({"results": [
        {"seq": entries[0].seq, "outcome": "accepted"},
        {"seq": entries[1].seq, "outcome": "rejected", "reason": "amount_mismatch"}]}),
    )
    .await;
    assert_eq!(
        (s, b["recorded"].as_i64()),
        (StatusCode::OK, Some(2)),
        "{b}"
    );
    // The sync job retries its ack: nothing changes, the first outcome stands.
    let (_, b) = ack(
        &t,
        json!({"results": [{"seq": entries[1].seq, "outcome": "accepted"}]}),
    )
    .await;
    assert_eq!(
        (b["recorded"].as_i64(), b["already_delivered"].as_i64()),
        (Some(0), Some(1))
    );
    let outcome: String = t
        .db()
        .query_row(
            "SELECT outcome FROM journal WHERE seq = ?1",
            [entries[1].seq],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(outcome, "rejected");
    // An unknown seq refuses the whole ack, naming it.
    let (s, b) = ack(&t, json!({"results": [{"seq": entries[2].seq, "outcome": "accepted"}, {"seq": 9999, "outcome": "accepted"}]})).await;
    assert_eq!(
        (s, b["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("results[1].seq"))
    );
    let (s, b) = ack(&t, json!({"results": [{"seq": 1, "outcome": "maybe"}]})).await;
    assert_eq!(
        (s, b["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("results[0].outcome"))
    );
    let status = t.status().await;
    assert_eq!(status["journal"]["lanes"]["payments"]["pending"], 1);
    assert_eq!(status["journal"]["set_aside"], 1);
    let page: Value = t
        .client
        .get(format!(
            "{}/sync/v1/journal?after={}&limit=1",
            t.url, entries[0].seq
        ))
        .bearer_auth(&t.sync_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["entries"][0]["delivery"]["outcome"], "rejected");
    assert_eq!(page["entries"][0]["delivery"]["via"], "pull");
    assert_eq!(page["entries"].as_array().unwrap().len(), 1);
    t.stop().await;
}

#[test]
fn retention_prunes_only_an_old_delivered_prefix_and_the_chain_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("standin.db");
    let mut conn = standin::store::open_write_connection(&path, 5000).unwrap();
    standin::store::migrate(&mut conn).unwrap();
    drop(conn);
    let old = append_entries(&path, Lane::Audit, "x", 6);
    let c = rusqlite::Connection::open(&path).unwrap();
    // Entries 1-3 and 5 delivered long ago; 4 still pending.
    c.execute(
        "UPDATE journal SET occurred_at = '2020-01-01T00:00:00.000Z' WHERE 1",
        [],
    )
    .ok();
    for s in [old[0].seq, old[1].seq, old[2].seq, old[4].seq] {
        c.execute("UPDATE journal SET outcome = 'accepted', delivered_at = '2020-01-02T00:00:00.000Z' WHERE seq = ?1", [s]).unwrap();
    }
    let pruned = standin::journal::retention::prune(
        &c,
        "2025-01-01T00:00:00.000Z",
        "2026-01-01T00:00:00.000Z",
    );
    // occurred_at cannot be edited (append-only), so entries are "young": nothing goes.
    assert_eq!(pruned.unwrap(), 0);
    let pruned = standin::journal::retention::prune(
        &c,
        "2999-01-01T00:00:00.000Z",
        "2999-01-01T00:00:00.000Z",
    )
    .unwrap();
    assert_eq!(pruned, 3, "the prefix stops at the pending entry");
    let left: Vec<i64> = column(&c, "SELECT seq FROM journal ORDER BY seq");
    assert_eq!(left, vec![old[3].seq, old[4].seq, old[5].seq]);
    assert_eq!(standin::journal::chain::verify(&c).unwrap(), None);
    drop(c);
    let more = append_entries(&path, Lane::Audit, "y", 1);
    assert_eq!(more[0].prev_hash, old[5].hash);
    let c = rusqlite::Connection::open(&path).unwrap();
    assert_eq!(standin::journal::chain::verify(&c).unwrap(), None);

    // Entry 4 delivered at last, 5 had been accepted, 6 rejected: the prefix stops at the
    // rejected one, which reconciliation still shows, however old.
    c.execute("UPDATE journal SET outcome = 'accepted', delivered_at = '2020-01-02T00:00:00.000Z' WHERE seq = ?1", [old[3].seq]).unwrap();
    c.execute("UPDATE journal SET outcome = 'rejected', reason = 'bad', delivered_at = '2020-01-02T00:00:00.000Z' WHERE seq = ?1", [old[5].seq]).unwrap();
    let pruned = standin::journal::retention::prune(
        &c,
        "2999-01-01T00:00:00.000Z",
        "2999-01-01T00:00:00.000Z",
    )
    .unwrap();
    assert_eq!(pruned, 2, "the prefix stops at the set-aside entry");
    let left: Vec<i64> = column(&c, "SELECT seq FROM journal ORDER BY seq");
    assert_eq!(left, vec![old[5].seq, more[0].seq]);
    assert_eq!(standin::journal::chain::verify(&c).unwrap(), None);
}
