//! Opening connections with the pragmas every connection needs.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::StoreError;

/// The write connection: WAL, `synchronous=FULL`, foreign keys on.
///
/// WAL must be set outside a transaction (it is persistent in the file, so readers inherit
/// it). `synchronous=FULL` makes every COMMIT fsync the WAL, which is what lets a 2xx mean
/// "survives power loss" (<https://www.sqlite.org/pragma.html#pragma_synchronous>); NORMAL
/// would only guarantee consistency, not durability, of the last commits.
/// Prepared statements kept per connection. rusqlite's default of 16 is fewer than one
/// request's statements on the hot paths (a payment: its own, the journal's, the writer's
/// savepoints), and a statement that falls out is parsed again on its next use.
const STATEMENT_CACHE: usize = 256;

pub fn open_write_connection(path: &Path, busy_timeout_ms: u64) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_millis(busy_timeout_ms))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Io(std::io::Error::other(format!(
            "could not switch {} to WAL (got {mode})",
            path.display()
        ))));
    }
    conn.execute_batch(
        "PRAGMA synchronous=FULL;
         PRAGMA foreign_keys=ON;
         PRAGMA temp_store=MEMORY;
         PRAGMA cache_size=-32000;",
    )?;
    Ok(conn)
}

/// A read connection: query-only, so a bug on the read path can never write.
pub fn open_read_connection(path: &Path, busy_timeout_ms: u64) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_millis(busy_timeout_ms))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.execute_batch(
        "PRAGMA foreign_keys=ON;
         PRAGMA synchronous=FULL;
         PRAGMA query_only=ON;
         PRAGMA temp_store=MEMORY;
         PRAGMA cache_size=-16000;",
    )?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    /// `.cargo/config.toml` builds the bundled SQLite without the shared page cache and the
    /// global memory statistics; a build that lost the setting would contend on every page.
    #[test]
    fn sqlite_is_built_with_separate_page_caches_and_no_memory_statistics() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let options: Vec<String> = conn
            .prepare("PRAGMA compile_options")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            !options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"),
            "{options:?}"
        );
        assert!(
            options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
            "{options:?}"
        );
    }
}
