//! Numbered migrations from `migrations/`, embedded, tracked by `PRAGMA user_version`.
//! A shipped migration is never edited; lessons go to `migrations/NOTES.md`.

use rusqlite::Connection;

use super::StoreError;

const MIGRATIONS: &[(u32, &str)] = &[
    (1, include_str!("../../migrations/0001_core.sql")),
    (2, include_str!("../../migrations/0002_journal.sql")),
    (3, include_str!("../../migrations/0003_access.sql")),
    (4, include_str!("../../migrations/0004_pickups.sql")),
    (5, include_str!("../../migrations/0005_payments.sql")),
    (6, include_str!("../../migrations/0006_returns.sql")),
    (7, include_str!("../../migrations/0007_pickup_names.sql")),
    (8, include_str!("../../migrations/0008_pickup_requests.sql")),
    (9, include_str!("../../migrations/0009_pickup_name_due.sql")),
    (10, include_str!("../../migrations/0010_pickup_summary.sql")),
    (
        11,
        include_str!("../../migrations/0011_pickup_keys_due.sql"),
    ),
    (
        12,
        include_str!("../../migrations/0012_pickup_name_summary.sql"),
    ),
    (
        13,
        include_str!("../../migrations/0013_payments_expired.sql"),
    ),
    (14, include_str!("../../migrations/0014_feed_checked.sql")),
    (15, include_str!("../../migrations/0015_payments_wal.sql")),
    (16, include_str!("../../migrations/0016_wal_per_commit.sql")),
];

/// The schema version this binary writes.
pub const LATEST_VERSION: u32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// Applies every migration newer than the database's `user_version`, each in its own
/// transaction. A database newer than this binary is refused untouched.
pub fn migrate(conn: &mut Connection) -> Result<u32, StoreError> {
    let current: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > LATEST_VERSION {
        return Err(StoreError::TooNew {
            found: current,
            supported: LATEST_VERSION,
        });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        tracing::info!(version, "applied migration");
    }
    Ok(LATEST_VERSION)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 0010 fills the new list-entry columns of orders already in both twins from their records.
    #[test]
    fn pickup_summary_columns_are_filled_for_orders_already_stored() {
        let mut conn = Connection::open_in_memory().unwrap();
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v <= 9) {
            conn.execute_batch(sql).unwrap();
            conn.pragma_update(None, "user_version", version).unwrap();
        }
        let doc = r#"{"lines": [
            {"line": 1, "sku": "A", "description": "a", "qty": 2, "unit_price_minor": 100},
            {"line": 2, "sku": "B", "description": "b", "qty": 3, "unit_price_minor": 100, "requires_id_check": true}]}"#;
        let plain = r#"{"lines": [{"line": 1, "sku": "A", "description": "a", "qty": 4, "unit_price_minor": 1, "requires_id_check": false}]}"#;
        for (table, id, doc) in [
            ("pickup_orders", "o-1", doc),
            ("pickup_orders", "o-2", plain),
            ("pickup_orders_next", "o-3", doc),
        ] {
            conn.execute(
                &format!(
                    "INSERT INTO {table} (order_id, order_number, pickup_code, customer_name, due_at,
                     status, payment_state, total_minor, currency, updated_at, doc)
                     VALUES (?1, ?1, ?1, 'Ann Lee', '2026-12-01T10:00:00Z', 'ready', 'paid', 500, 'USD',
                     '2026-12-01T09:00:00Z', ?2)"
                ),
                [id, doc],
            )
            .unwrap();
        }
        migrate(&mut conn).unwrap();
        let read = |table: &str, id: &str| -> (i64, bool) {
            conn.query_row(
                &format!("SELECT items, requires_id_check FROM {table} WHERE order_id = ?1"),
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
        };
        assert_eq!(read("pickup_orders", "o-1"), (5, true));
        assert_eq!(read("pickup_orders", "o-2"), (4, false));
        assert_eq!(read("pickup_orders_next", "o-3"), (5, true));
    }

    /// 0015 rebuilds `payments` (the idempotency constraint key first, `velocity_indexed`):
    /// every row kept and still counted by card, the exposure triggers and the no-delete
    /// trigger made again, the constraint still one row per kiosk and key.
    #[test]
    fn payments_are_kept_and_still_guarded_after_the_wal_migration() {
        let mut conn = Connection::open_in_memory().unwrap();
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v <= 14) {
            conn.execute_batch(sql).unwrap();
            conn.pragma_update(None, "user_version", version).unwrap();
        }
        let insert = |c: &Connection, id: &str, device: &str, key: &str, status: &str| {
            c.execute(
                "INSERT INTO payments (payment_id, device_id, lane, idempotency_key, body_sha256,
                    basket_id, amount_minor, currency, tender_kind, card_fingerprint, tender, status,
                    offline, created_at, answer)
                 VALUES (?1, ?2, 'lane-1', ?3, 'h', 'b', 700, 'USD', 'card_token', 'fp', '{}', ?4, 1,
                    '2026-12-06T10:00:00.000Z', '{\"status\":\"approved_offline\"}')",
                [id, device, key, status],
            )
        };
        insert(&conn, "p-1", "sco-1", "k-1", "approved_offline").unwrap();
        insert(&conn, "p-2", "sco-2", "k-1", "approved_offline").unwrap();
        insert(&conn, "p-3", "sco-1", "k-2", "declined_offline").unwrap();
        migrate(&mut conn).unwrap();

        let kept: Vec<(String, String, String, i64)> = conn
            .prepare("SELECT payment_id, device_id, idempotency_key, velocity_indexed FROM payments ORDER BY rowid")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let ids: Vec<&str> = kept.iter().map(|k| k.0.as_str()).collect();
        assert_eq!(ids, ["p-1", "p-2", "p-3"]);
        assert!(kept.iter().all(|k| k.3 == 1), "{kept:?}");
        // The card index still has the rows made before it was partial on velocity_indexed.
        let by_card: i64 = conn
            .query_row(
                "SELECT count(*) FROM payments INDEXED BY payments_card
                 WHERE card_fingerprint = 'fp' AND offline = 1 AND velocity_indexed = 1
                   AND created_at >= '2026-01-01'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(by_card, 3);
        let exposure = |c: &Connection| -> (i64, i64) {
            c.query_row(
                "SELECT count, total_minor FROM payments_exposure",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
        };
        assert_eq!(exposure(&conn), (2, 1_400));
        conn.execute(
            "UPDATE payments SET status = 'captured' WHERE payment_id = 'p-1'",
            [],
        )
        .unwrap();
        assert_eq!(exposure(&conn), (1, 700));
        insert(&conn, "p-4", "sco-3", "k-9", "approved_offline").unwrap();
        assert_eq!(exposure(&conn), (2, 1_400));
        assert!(insert(&conn, "p-5", "sco-1", "k-1", "approved_offline").is_err());
        assert!(
            conn.execute("DELETE FROM payments WHERE payment_id = 'p-3'", [])
                .is_err()
        );
        let first_column: String = conn
            .query_row(
                "SELECT ii.name FROM sqlite_schema s, pragma_index_info(s.name) ii
                 WHERE s.type = 'index' AND s.tbl_name = 'payments' AND s.name LIKE 'sqlite_autoindex%'
                   AND ii.seqno = 0 AND ii.name <> 'payment_id'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(first_column, "idempotency_key");
    }

    /// 0016 rebuilds `journal` without AUTOINCREMENT: every entry kept as it was and the chain
    /// still verifying, 0002's indexes and triggers made again, and the next entry numbered
    /// after everything AUTOINCREMENT had handed out, pruned or deleted entries included.
    #[test]
    fn journal_entries_are_kept_and_seq_not_reused_after_the_seq_migration() {
        use crate::journal::{Lane, NewEntry, append, chain, retention, seal};
        let mut conn = Connection::open_in_memory().unwrap();
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v <= 15) {
            conn.execute_batch(sql).unwrap();
            conn.pragma_update(None, "user_version", version).unwrap();
        }
        let now = "2020-01-01T00:00:00.000Z";
        let mut prev = chain::GENESIS.to_string();
        let mut entries = Vec::new();
        for n in 1..=5 {
            let e = seal(
                n,
                prev.clone(),
                "store-0001",
                now,
                NewEntry {
                    lane: Lane::Payments,
                    kind: "payment.approved_offline".into(),
                    actor: Some("sco-1".into()),
                    device: Some("sco-1".into()),
                    body: serde_json::json!({ "n": n }),
                },
            );
            // As 0002's table numbered entries: AUTOINCREMENT, seq left to SQLite.
            conn.execute(
                "INSERT INTO journal (id, lane, kind, occurred_at, store_id, actor, device, body, prev_hash, hash)
                 VALUES (?1, 'payments', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                rusqlite::params![e.id, e.kind, e.occurred_at, e.store_id, e.actor, e.device,
                    chain::canonical_json(&e.body), e.prev_hash, e.hash],
            )
            .unwrap();
            prev = e.hash.clone();
            entries.push(e);
        }
        let deliver = |c: &Connection, seq: i64| {
            c.execute(
                "UPDATE journal SET outcome = 'accepted', delivered_at = ?2, delivered_via = 'push' WHERE seq = ?1",
                rusqlite::params![seq, now],
            )
            .unwrap();
        };
        deliver(&conn, 1);
        deliver(&conn, 2);
        let later = "2999-01-01T00:00:00.000Z";
        assert_eq!(retention::prune(&conn, later, later).unwrap(), 2);
        // The newest entry delivered and gone another way: only sqlite_sequence remembers 5.
        deliver(&conn, 5);
        conn.execute("DELETE FROM journal WHERE seq = 5", [])
            .unwrap();
        let before: Vec<(i64, String, String, Option<String>)> = conn
            .prepare("SELECT seq, id, hash, outcome FROM journal ORDER BY seq")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();

        migrate(&mut conn).unwrap();

        let after: Vec<(i64, String, String, Option<String>)> = conn
            .prepare("SELECT seq, id, hash, outcome FROM journal ORDER BY seq")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(after, before);
        assert_eq!(after.iter().map(|e| e.0).collect::<Vec<_>>(), [3, 4]);
        assert_eq!(chain::verify(&conn).unwrap(), None);
        let schema: String = conn
            .query_row(
                "SELECT sql FROM sqlite_schema WHERE name = 'journal'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(!schema.contains("AUTOINCREMENT"), "{schema}");
        let sequences: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_sequence", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sequences, 0);
        let indexes: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_schema WHERE tbl_name = 'journal' AND type IN ('index', 'trigger') ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            indexes,
            [
                "journal_append_only",
                "journal_keep_undelivered",
                "journal_outcome_once",
                "journal_pending",
                "journal_set_aside",
                "sqlite_autoindex_journal_1",
            ]
        );
        // The triggers hold: no edits, outcomes once, nothing undelivered deleted.
        assert!(
            conn.execute("UPDATE journal SET body = '{}' WHERE seq = 3", [])
                .is_err()
        );
        assert!(
            conn.execute("DELETE FROM journal WHERE seq = 3", [])
                .is_err()
        );
        deliver(&conn, 4);
        assert!(
            conn.execute("UPDATE journal SET outcome = 'rejected' WHERE seq = 4", [])
                .is_err()
        );
        // The next entry: after 5, which only AUTOINCREMENT had remembered, chained to 4.
        let next = append(
            &conn,
            "store-0001",
            now,
            NewEntry {
                lane: Lane::Audit,
                kind: "test.entry".into(),
                actor: None,
                device: None,
                body: serde_json::json!({}),
            },
        )
        .unwrap();
        assert_eq!(next.seq, 6);
        assert_eq!(next.prev_hash, entries[3].hash);
        assert_eq!(chain::verify(&conn).unwrap(), None);
    }
}
