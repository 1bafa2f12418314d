//! The writer thread: owns the write connection and commits in groups.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::StoreError;

/// A write waiting for the writer thread. Type-erased so one channel carries every write.
trait WriteJob: Send {
    /// Runs inside the group transaction; returns how to answer once COMMIT is known.
    fn run(self: Box<Self>, conn: &Connection) -> Box<dyn Answer>;
    /// Answers without running (the group could not even begin).
    fn abort(self: Box<Self>, error: StoreError);
}

trait Answer: Send {
    fn send(self: Box<Self>, commit: Result<(), StoreError>);
}

struct Job<F, R, E> {
    f: F,
    reply: oneshot::Sender<Result<R, E>>,
    span: tracing::Span,
}

struct Pending<R, E> {
    outcome: Result<R, E>,
    reply: oneshot::Sender<Result<R, E>>,
}

impl<F, R, E> WriteJob for Job<F, R, E>
where
    F: FnOnce(&Connection) -> Result<R, E> + Send + 'static,
    R: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    fn run(self: Box<Self>, conn: &Connection) -> Box<dyn Answer> {
        let Job { f, reply, span } = *self;
        let _entered = span.enter();
        // Each write gets a savepoint: its failure rolls back only its own changes.
        if let Err(e) = exec_cached(conn, "SAVEPOINT write") {
            return Box::new(Pending {
                outcome: Err(E::from(e.into())),
                reply,
            });
        }
        let outcome = match catch_unwind(AssertUnwindSafe(|| f(conn))) {
            Ok(outcome) => outcome,
            Err(panic) => Err(E::from(StoreError::Panicked(panic_message(&panic)))),
        };
        // A disk-full or I/O error may have rolled the whole transaction back already.
        if !conn.is_autocommit() {
            let end = if outcome.is_ok() {
                exec_cached(conn, "RELEASE write")
            } else {
                exec_cached(conn, "ROLLBACK TO write")
                    .and_then(|()| exec_cached(conn, "RELEASE write"))
            };
            if let Err(e) = end {
                tracing::error!(error = %e, "could not end savepoint");
            }
        }
        Box::new(Pending { outcome, reply })
    }

    fn abort(self: Box<Self>, error: StoreError) {
        let _ = self.reply.send(Err(E::from(error)));
    }
}

impl<R: Send, E: From<StoreError> + Send> Answer for Pending<R, E> {
    fn send(self: Box<Self>, commit: Result<(), StoreError>) {
        let answer = match (self.outcome, commit) {
            (Err(e), _) => Err(e),
            (Ok(r), Ok(())) => Ok(r),
            (Ok(_), Err(e)) => Err(E::from(e)),
        };
        let _ = self.reply.send(answer);
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

enum Message {
    Write(Box<dyn WriteJob>),
    Shutdown,
}

/// Figures for metrics and benchmarks.
#[derive(Default, Debug)]
pub struct WriterStats {
    /// Writes submitted and not yet answered.
    pub queued: AtomicUsize,
    pub commits: AtomicU64,
    pub writes: AtomicU64,
    pub failed_commits: AtomicU64,
    /// The largest group folded into one commit so far.
    pub largest_group: AtomicUsize,
    /// Committed groups by size (not cumulative): `group_sizes[i]` counts groups of at most
    /// `GROUP_SIZE_BOUNDS[i]` writes and more than the bound before; the last slot, larger.
    pub group_sizes: [AtomicU64; GROUP_SIZE_BOUNDS.len() + 1],
}

/// Upper bounds of the commit-group-size buckets (`database.max_group` is 512 by default).
const GROUP_SIZE_BOUNDS: [usize; 10] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512];

impl WriterStats {
    pub const GROUP_SIZE_BOUNDS: [usize; GROUP_SIZE_BOUNDS.len()] = GROUP_SIZE_BOUNDS;

    fn record_group(&self, n: usize) {
        let bucket = GROUP_SIZE_BOUNDS
            .iter()
            .position(|b| n <= *b)
            .unwrap_or(GROUP_SIZE_BOUNDS.len());
        self.group_sizes[bucket].fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Message>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
    stats: Arc<WriterStats>,
}

impl Writer {
    pub fn start(conn: Connection, max_group: usize) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::channel();
        let stats = Arc::new(WriterStats::default());
        let thread_stats = stats.clone();
        let thread = std::thread::Builder::new()
            .name("standin-writer".into())
            .spawn(move || run(conn, rx, max_group, &thread_stats))?;
        Ok(Self {
            tx,
            thread: Arc::new(Mutex::new(Some(thread))),
            stats,
        })
    }

    pub fn submit<F, R, E>(&self, f: F) -> Result<oneshot::Receiver<Result<R, E>>, StoreError>
    where
        F: FnOnce(&Connection) -> Result<R, E> + Send + 'static,
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            f,
            reply,
            span: tracing::Span::current(),
        };
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        self.tx.send(Message::Write(Box::new(job))).map_err(|_| {
            self.stats.queued.fetch_sub(1, Ordering::Relaxed);
            StoreError::Closed
        })?;
        Ok(rx)
    }

    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// Blocks until every write queued before this call is answered and the connection closed.
    pub fn shutdown(&self) {
        let _ = self.tx.send(Message::Shutdown);
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

fn run(conn: Connection, rx: mpsc::Receiver<Message>, max_group: usize, stats: &WriterStats) {
    let mut stopping = false;
    while !stopping {
        let Ok(first) = rx.recv() else { break };
        let mut group = Vec::new();
        match first {
            Message::Write(job) => group.push(job),
            Message::Shutdown => break,
        }
        // Group commit: everything already waiting joins this transaction.
        while group.len() < max_group {
            match rx.try_recv() {
                Ok(Message::Write(job)) => group.push(job),
                Ok(Message::Shutdown) => {
                    stopping = true;
                    break;
                }
                Err(_) => break,
            }
        }
        commit_group(&conn, group, stats);
    }
    // Fold the WAL back into the database so a clean stop leaves one self-contained file.
    if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA optimize;") {
        tracing::warn!(error = %e, "checkpoint at close failed");
    }
    if let Err((_, e)) = conn.close() {
        tracing::warn!(error = %e, "closing the write connection failed");
    }
}

/// A statement without rows, prepared once per connection (the writer runs these for every
/// write; `execute_batch` would parse them every time).
fn exec_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

fn commit_group(conn: &Connection, group: Vec<Box<dyn WriteJob>>, stats: &WriterStats) {
    let n = group.len();
    stats.queued.fetch_sub(n, Ordering::Relaxed);
    if let Err(e) = exec_cached(conn, "BEGIN IMMEDIATE") {
        tracing::warn!(error = %e, writes = n, "could not begin a write transaction");
        let e = StoreError::from(e);
        for job in group {
            job.abort(clone_error(&e));
        }
        stats.failed_commits.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let mut answers = Vec::with_capacity(n);
    let mut lost = None;
    let mut jobs = group.into_iter();
    for job in jobs.by_ref() {
        answers.push(job.run(conn));
        if conn.is_autocommit() {
            // SQLite rolled the whole transaction back (disk full, I/O error): every write of
            // this group is gone, so none of them may be acknowledged.
            lost = Some(StoreError::Full);
            break;
        }
    }
    let commit = match lost {
        Some(e) => {
            for job in jobs {
                job.abort(clone_error(&e));
            }
            Err(e)
        }
        None => exec_cached(conn, "COMMIT").map_err(|e| {
            let _ = conn.execute_batch("ROLLBACK");
            StoreError::from(e)
        }),
    };
    match &commit {
        Ok(()) => {
            stats.commits.fetch_add(1, Ordering::Relaxed);
            stats.writes.fetch_add(n as u64, Ordering::Relaxed);
            stats.largest_group.fetch_max(n, Ordering::Relaxed);
            stats.record_group(n);
        }
        Err(e) => {
            tracing::error!(error = %e, writes = n, "group commit failed; nothing in it was acknowledged");
            stats.failed_commits.fetch_add(1, Ordering::Relaxed);
        }
    }
    for answer in answers {
        answer.send(commit.as_ref().map(|_| ()).map_err(clone_error));
    }
}

/// `StoreError` holds a non-Clone rusqlite error; callers only need its class.
fn clone_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::NotFound => StoreError::NotFound,
        StoreError::Full => StoreError::Full,
        StoreError::Busy => StoreError::Busy,
        StoreError::Closed => StoreError::Closed,
        other => StoreError::Io(std::io::Error::other(other.to_string())),
    }
}
