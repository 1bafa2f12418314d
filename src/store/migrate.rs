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
}
