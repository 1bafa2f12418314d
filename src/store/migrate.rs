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
