//! A small pool of read connections, used off the async runtime.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::Semaphore;

use super::StoreError;
use super::connection::open_read_connection;

pub struct ReadPool {
    idle: Arc<Mutex<Vec<Connection>>>,
    permits: Arc<Semaphore>,
}

/// Puts the connection back even if the read panics.
struct Lease {
    conn: Option<Connection>,
    idle: Arc<Mutex<Vec<Connection>>>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let (Some(conn), Ok(mut idle)) = (self.conn.take(), self.idle.lock()) {
            // A read that failed or panicked inside its transaction must not hand the next
            // reader a stale snapshot.
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            idle.push(conn);
        }
    }
}

impl ReadPool {
    pub fn open(path: &Path, size: usize, busy_timeout_ms: u64) -> Result<Self, StoreError> {
        let conns = (0..size)
            .map(|_| open_read_connection(path, busy_timeout_ms))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            idle: Arc::new(Mutex::new(conns)),
            permits: Arc::new(Semaphore::new(size)),
        })
    }

    /// Runs `f` on the calling thread when a connection and a permit are free at once, else
    /// as [`ReadPool::run`] does. For short, bounded reads (a few index lookups, microseconds),
    /// where handing the work to the blocking pool and back costs more than the read itself.
    /// Never for a read whose cost grows with the data: it holds up an async worker meanwhile.
    pub async fn run_quick<R, E, F>(&self, f: F) -> Result<R, E>
    where
        F: FnOnce(&Connection) -> Result<R, E> + Send + 'static,
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            return self.run(f).await;
        };
        let conn = self.idle.lock().map_err(|_| StoreError::Closed)?.pop();
        let Some(conn) = conn else {
            drop(permit);
            return self.run(f).await;
        };
        let _permit = permit;
        let lease = Lease {
            conn: Some(conn),
            idle: self.idle.clone(),
        };
        in_read_transaction(lease.conn.as_ref().expect("lease holds a connection"), f)
    }

    pub async fn run<R, E, F>(&self, f: F) -> Result<R, E>
    where
        F: FnOnce(&Connection) -> Result<R, E> + Send + 'static,
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let idle = self.idle.clone();
        let span = tracing::Span::current();
        let task = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let _permit = permit;
            let conn = idle
                .lock()
                .map_err(|_| StoreError::Closed)?
                .pop()
                .ok_or(StoreError::Closed)?;
            let lease = Lease {
                conn: Some(conn),
                idle,
            };
            in_read_transaction(lease.conn.as_ref().expect("lease holds a connection"), f)
        });
        match task.await {
            Ok(result) => result,
            // A panic in a read is a bug: re-raise it on the caller's task, as if it ran there.
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(StoreError::Closed.into()),
        }
    }
}

/// Runs `f` inside one read transaction: one shared lock and one WAL snapshot instead of one
/// per statement, so every query of an answer sees the same data (a list and the records it
/// then reads for some of its entries; the two halves of a name search). A failed or
/// panicking read is rolled back when its lease is dropped.
fn in_read_transaction<R, E, F>(conn: &Connection, f: F) -> Result<R, E>
where
    F: FnOnce(&Connection) -> Result<R, E>,
    E: From<StoreError>,
{
    conn.prepare_cached("BEGIN")
        .and_then(|mut s| s.execute([]))
        .map_err(StoreError::from)?;
    let out = f(conn);
    let _ = conn
        .prepare_cached("COMMIT")
        .and_then(|mut s| s.execute([]));
    out
}
