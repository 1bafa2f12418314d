//! The store: one SQLite database, one writer thread, a small pool of readers.
//!
//! Every write goes through [`Store::write`]: the writer thread folds the writes waiting at
//! that moment into one `BEGIN IMMEDIATE` transaction (group commit), runs each inside its own
//! savepoint so one failing write never undoes another, and answers each caller only after
//! COMMIT returned with `synchronous=FULL`. "Acknowledged" therefore always means "durable".

mod connection;
pub mod maintenance;
mod migrate;
mod readers;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use connection::open_write_connection;
pub use migrate::{LATEST_VERSION, migrate};
pub use writer::WriterStats;

use crate::config::DatabaseConfig;

/// What storage can go wrong with, mapped once from SQLite's codes.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// SQLITE_FULL: the disk (or the database's size limit) is full.
    #[error("database or disk is full")]
    Full,
    /// SQLITE_BUSY after busy_timeout: another process holds the write lock.
    #[error("database is busy")]
    Busy,
    /// The writer has stopped (shutdown).
    #[error("the store is closed")]
    Closed,
    #[error(
        "database schema version {found} is newer than this binary understands ({supported}); refusing to touch it: install the newer Standin or restore a matching backup"
    )]
    TooNew { found: u32, supported: u32 },
    #[error("a write panicked: {0}")]
    Panicked(String),
    #[error(transparent)]
    Sqlite(rusqlite::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        match &e {
            rusqlite::Error::QueryReturnedNoRows => Self::NotFound,
            rusqlite::Error::SqliteFailure(f, _) => match f.code {
                ErrorCode::DiskFull => Self::Full,
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => Self::Busy,
                _ => Self::Sqlite(e),
            },
            _ => Self::Sqlite(e),
        }
    }
}

/// Cheap to clone: all clones share the writer thread and the reader pool.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: writer::Writer,
    readers: readers::ReadPool,
}

impl Store {
    /// Opens (creating if needed) and migrates the database at `path`, then starts the writer
    /// thread and the reader pool.
    pub fn open(path: &Path, cfg: &DatabaseConfig) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut conn = open_write_connection(path, cfg.busy_timeout_ms)?;
        migrate(&mut conn)?;
        let writer = writer::Writer::start(conn, cfg.max_group.max(1))?;
        let readers =
            readers::ReadPool::open(path, cfg.read_connections.max(1), cfg.busy_timeout_ms)?;
        Ok(Self {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                writer,
                readers,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` on the writer thread inside the next group transaction; resolves once that
    /// transaction has committed (or with the error that kept it from committing).
    pub async fn write<R, E, F>(&self, f: F) -> Result<R, E>
    where
        F: FnOnce(&rusqlite::Connection) -> Result<R, E> + Send + 'static,
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        self.inner
            .writer
            .submit(f)?
            .await
            .unwrap_or_else(|_| Err(StoreError::Closed.into()))
    }

    /// [`Store::write`] for callers outside the async runtime (CLI tools, benchmarks).
    pub fn write_blocking<R, E, F>(&self, f: F) -> Result<R, E>
    where
        F: FnOnce(&rusqlite::Connection) -> Result<R, E> + Send + 'static,
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        self.inner
            .writer
            .submit(f)?
            .blocking_recv()
            .unwrap_or_else(|_| Err(StoreError::Closed.into()))
    }

    /// Runs `f` on a pooled read connection, off the async runtime.
    pub async fn read<R, E, F>(&self, f: F) -> Result<R, E>
    where
        F: FnOnce(&rusqlite::Connection) -> Result<R, E> + Send + 'static,
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        self.inner.readers.run(f).await
    }

    /// [`Store::read`] for short, bounded reads (a few index lookups): runs on the calling
    /// thread when a connection is free, skipping the hand-off to the blocking pool.
    pub async fn read_quick<R, E, F>(&self, f: F) -> Result<R, E>
    where
        F: FnOnce(&rusqlite::Connection) -> Result<R, E> + Send + 'static,
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        self.inner.readers.run_quick(f).await
    }

    /// Group-commit figures for metrics and benchmarks.
    pub fn writer_stats(&self) -> &WriterStats {
        self.inner.writer.stats()
    }

    /// Lets queued writes finish, then closes the write connection (checkpointing the WAL).
    /// Writes submitted afterwards fail with [`StoreError::Closed`].
    pub async fn close(&self) {
        let writer = self.inner.writer.clone();
        let _ = tokio::task::spawn_blocking(move || writer.shutdown()).await;
    }
}
