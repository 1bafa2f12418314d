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
/// Page caches, per connection (negative: KiB). The database is read with `pread` from the
/// kernel's page cache, which keeps the file in memory whatever SQLite keeps, so a page cache
/// of SQLite's own saves a copy of the hot pages, not disk reads. Measured on a million
/// receipts (`cargo bench --bench footprint`, issue 19): 32 MB for the writer and 16 MB per
/// reader put `standin serve` at 136-145 MB under desks and kiosks; 2 MB and 512 KiB (with
/// the arena cap, `server::arenas`) at 34-36 MB. A larger reader cache (2 MB each) showed no
/// faster lookups; the writer's keeps the pages a group of payments dirties.
/// A transaction whose dirty pages outgrow the writer's cache (a feed part of 5,000 receipts)
/// spills them to the WAL before its COMMIT: still one atomic, durable transaction.
const WRITER_CACHE: &str = "PRAGMA cache_size=-2048";
const READER_CACHE: &str = "PRAGMA cache_size=-512";

/// The page size of a new database, in bytes (SQLite's default is 4096). SQLite's WAL logs
/// whole pages: a commit writes every page it touched, and each tree a payment appends to
/// (the payment row, the journal entry, seven indexes) costs its last page per commit, so
/// smaller pages are less WAL per payment (issue 19: goal at most 4 KiB; measured with
/// `cargo bench --bench kiosk_payments`, README). It only takes effect on a new, empty file:
/// an existing database keeps the page size it was made with (changing it would mean
/// rewriting the whole file with VACUUM, outside WAL mode, while nothing else has it open).
pub const NEW_DATABASE_PAGE_SIZE: u32 = 2048;

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
    // Before WAL mode is set: that is what first writes a new file's header.
    conn.pragma_update(None, "page_size", NEW_DATABASE_PAGE_SIZE)?;
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
         PRAGMA temp_store=MEMORY;",
    )?;
    conn.execute_batch(WRITER_CACHE)?;
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
         PRAGMA temp_store=MEMORY;",
    )?;
    conn.execute_batch(READER_CACHE)?;
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
