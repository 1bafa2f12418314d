//! `standin check` and `standin backup`: safe to run beside a serving process (WAL lets them
//! read a consistent snapshot without blocking the writer).

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use super::{LATEST_VERSION, StoreError};

/// One thing wrong with a database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem(pub String);

/// Opens read-only: `check` must never change what it inspects.
fn open_read_only(path: &Path) -> Result<Connection, StoreError> {
    if !path.exists() {
        return Err(StoreError::Io(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no database at {}", path.display()),
        )));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

/// Runs every check and returns what is wrong (empty: healthy).
pub fn check(path: &Path) -> Result<Vec<Problem>, StoreError> {
    let conn = open_read_only(path)?;
    check_connection(&conn)
}

pub fn check_connection(conn: &Connection) -> Result<Vec<Problem>, StoreError> {
    let mut problems = Vec::new();
    // One read transaction, so every check sees the same snapshot.
    conn.execute_batch("BEGIN")?;
    let version: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version != LATEST_VERSION {
        problems.push(Problem(format!(
            "schema version {version}, this binary expects {LATEST_VERSION}"
        )));
    }
    let mut stmt = conn.prepare("PRAGMA integrity_check")?;
    for row in stmt.query_map([], |r| r.get::<_, String>(0))? {
        let line = row?;
        if line != "ok" {
            problems.push(Problem(format!("integrity: {line}")));
        }
    }
    drop(stmt);
    let fk: i64 = conn.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
        r.get(0)
    })?;
    if fk > 0 {
        problems.push(Problem(format!("{fk} rows violate foreign keys")));
    }
    if version >= 1 {
        check_feed_counts(conn, &mut problems)?;
    }
    if version >= 2
        && let Some(broken) = crate::journal::chain::verify(conn)?
    {
        problems.push(Problem(broken));
    }
    conn.execute_batch("COMMIT")?;
    Ok(problems)
}

/// `feed_state.records` must equal what the replica tables hold: a mismatch means a batch
/// was half-applied, which the one-transaction apply path must make impossible.
fn check_feed_counts(conn: &Connection, problems: &mut Vec<Problem>) -> Result<(), StoreError> {
    for (feed, table) in [
        ("pickup_orders", "pickup_orders"),
        ("receipts", "receipts"),
        ("staff", "staff"),
        ("devices", "devices"),
        ("policy", "policy"),
    ] {
        let claimed: Option<i64> = conn
            .query_row(
                "SELECT records FROM feed_state WHERE feed = ?1",
                [feed],
                |r| r.get(0),
            )
            .ok();
        let actual: i64 =
            conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?;
        match claimed {
            None => problems.push(Problem(format!("feed_state has no row for {feed}"))),
            Some(c) if c != actual => problems.push(Problem(format!(
                "feed {feed}: feed_state says {c} records, table holds {actual}"
            ))),
            Some(_) => {}
        }
    }
    let stray: i64 =
        conn.query_row("SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name LIKE '%\\_swap' ESCAPE '\\'", [], |r| r.get(0))?;
    if stray > 0 {
        problems.push(Problem(
            "a snapshot switch left a *_swap table behind".into(),
        ));
    }
    Ok(())
}

/// Writes a consistent copy of the database at `source` to `dest` while it may be in use.
///
/// SQLite's online backup API copies every page in one step (`step(-1)`), i.e. inside one
/// read transaction: the copy is the database as of one commit, and the serving process's
/// writer is never blocked (WAL). The copy is written beside `dest`, checked, synced, and
/// renamed into place, so `dest` is either absent or a whole, verified backup.
pub fn backup(source: &Path, dest: &Path) -> Result<BackupReport, StoreError> {
    let src = open_read_only(source)?;
    let partial = dest.with_extension("partial");
    let _ = std::fs::remove_file(&partial);
    {
        let mut dst = Connection::open(&partial)?;
        {
            let b = rusqlite::backup::Backup::new(&src, &mut dst)?;
            b.step(-1)?;
        }
        // A backup is one self-contained file: no WAL beside it.
        let _: String = dst.query_row("PRAGMA journal_mode=DELETE", [], |r| r.get(0))?;
        let problems = check_connection(&dst)?;
        if !problems.is_empty() {
            let _ = std::fs::remove_file(&partial);
            return Err(StoreError::Io(std::io::Error::other(format!(
                "the copy failed its check: {}",
                problems
                    .iter()
                    .map(|p| p.0.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ))));
        }
    }
    std::fs::File::open(&partial)?.sync_all()?;
    std::fs::rename(&partial, dest)?;
    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    let bytes = std::fs::metadata(dest)?.len();
    Ok(BackupReport { bytes })
}

#[derive(Debug)]
pub struct BackupReport {
    pub bytes: u64,
}
