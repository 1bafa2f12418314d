//! PostgreSQL: the connection pool and the hub's migrations.
//!
//! Client: tokio-postgres with deadpool-postgres. Async on the runtime the hub already runs,
//! small (no ORM, no compile-time query checking that would need a database to build the
//! binary), and pipelining-capable; deadpool adds only a bounded pool with wait timeouts.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

/// Numbered migrations, embedded; each is applied once, in order, in one transaction with
/// the row that records it. Never edit one that has shipped: add the next.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "core",
        include_str!("../../migrations/hub/0001_core.sql"),
    ),
    (
        2,
        "fleet",
        include_str!("../../migrations/hub/0002_fleet.sql"),
    ),
    (
        3,
        "feed_imports",
        include_str!("../../migrations/hub/0003_feed_imports.sql"),
    ),
    (
        4,
        "set_aside_counts",
        include_str!("../../migrations/hub/0004_set_aside_counts.sql"),
    ),
];

/// The schema version this binary needs (readiness compares it with the database's).
pub const SCHEMA_VERSION: i32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

pub fn pool(url: &str, size: usize) -> anyhow::Result<Pool> {
    let mut pg: tokio_postgres::Config = url
        .parse()
        .map_err(|e| anyhow::anyhow!("database URL is not valid: {e}"))?;
    // Bounded waits: a batch stuck behind another process's lock on its store, or a
    // statement PostgreSQL cannot finish, ends as a 503 the store retries, not a hung request.
    pg.application_name("standin-hub")
        .connect_timeout(Duration::from_secs(5))
        .options("-c lock_timeout=10000 -c statement_timeout=30000");
    let mgr = Manager::from_config(
        pg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Ok(Pool::builder(mgr)
        .max_size(size.max(1))
        .runtime(Runtime::Tokio1)
        // A request waits this long for a connection, then the hub answers 503: well under
        // the stores' 5 s timeout, so the answer reaches a store still waiting for it.
        .wait_timeout(Some(Duration::from_secs(2)))
        .create_timeout(Some(Duration::from_secs(5)))
        .recycle_timeout(Some(Duration::from_secs(2)))
        .build()?)
}

/// How long a request's work on the shared pool may take in all, the wait for a connection
/// included: under the stores' own `central.timeout_ms` (5,000), so a store still waiting
/// hears `database_unavailable` with a `Retry-After` instead of giving up on a hung request.
pub const SHARED_WORK_BOUND: Duration = Duration::from_millis(4_500);

/// The pool for everything but journal batches (feed pulls, the fleet view, token lookups,
/// readiness, recording contact). Its one door is [`SharedPool::run`]: the work is bounded as a
/// whole, and a connection whose work was cut short is closed, never handed to the next
/// request ([`Exclusive`]). So a query added next year is bounded without its author
/// remembering. Before (2026-12-07, a hostile round): with PostgreSQL frozen (SIGSTOP: a hung
/// VM, a stuck volume), feed pulls, `/v1/fleet` and `/readyz` hung for the hub's whole 60 s
/// request timeout, each holding a shared connection, and were then answered 503 without a
/// `Retry-After`. PostgreSQL's own `statement_timeout` cannot help a server that is not
/// running, and the kernel keeps the TCP connection alive for it.
#[derive(Clone)]
pub struct SharedPool {
    pool: Pool,
}

impl SharedPool {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    /// `work` on a connection of the pool, within [`SHARED_WORK_BOUND`].
    pub async fn run<T>(
        &self,
        work: impl AsyncFnOnce(&mut deadpool_postgres::Object) -> Result<T, super::DbError>,
    ) -> Result<T, super::DbError> {
        self.run_by(tokio::time::Instant::now() + SHARED_WORK_BOUND, work)
            .await
    }

    /// `work` on a connection of the pool, answered by `deadline` (a request that makes
    /// several runs gives them one deadline).
    pub async fn run_by<T>(
        &self,
        deadline: tokio::time::Instant,
        work: impl AsyncFnOnce(&mut deadpool_postgres::Object) -> Result<T, super::DbError>,
    ) -> Result<T, super::DbError> {
        let bounded = async {
            let mut conn = Exclusive::get(&self.pool).await?;
            let out = work(&mut conn).await;
            // It ran to its end (an error included: a statement's error ends it, a broken
            // connection is not recycled), so nothing is in flight on it.
            conn.finished();
            out
        };
        tokio::time::timeout_at(deadline, bounded)
            .await
            .unwrap_or_else(|_| {
                Err(super::DbError::Transient(format!(
                    "PostgreSQL did not answer within {} ms",
                    SHARED_WORK_BOUND.as_millis()
                )))
            })
    }
}

/// A pooled connection that goes back to the pool only when its work finished
/// ([`Exclusive::finished`]). Dropped before that (a deadline cut its request, an error),
/// it is closed instead: a statement may still be running or waiting for a lock on it, and
/// the next request handed it would wait behind that (`RecyclingMethod::Fast` checks
/// nothing). Closing the connection also rolls back whatever it had open.
pub struct Exclusive {
    conn: Option<deadpool_postgres::Object>,
    finished: bool,
}

impl Exclusive {
    pub async fn get(pool: &Pool) -> Result<Self, deadpool_postgres::PoolError> {
        Ok(Self {
            conn: Some(pool.get().await?),
            finished: false,
        })
    }

    /// The work is done and nothing is in flight: the connection may serve the next request.
    pub fn finished(mut self) {
        self.finished = true;
    }
}

impl std::ops::Deref for Exclusive {
    type Target = deadpool_postgres::Object;

    fn deref(&self) -> &Self::Target {
        self.conn.as_ref().expect("held until dropped")
    }
}

impl std::ops::DerefMut for Exclusive {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.conn.as_mut().expect("held until dropped")
    }
}

impl Drop for Exclusive {
    fn drop(&mut self) {
        if let (false, Some(conn)) = (self.finished, self.conn.take()) {
            drop(deadpool_postgres::Object::take(conn));
        }
    }
}

/// One connection outside any pool (the CLI's one-shot commands).
pub async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to PostgreSQL: {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::warn!(error = %e, "PostgreSQL connection ended");
        }
    });
    Ok(client)
}

/// Applies what is missing; returns the schema version now in force. Safe to run from
/// several processes at once: the version table is locked for the whole transaction.
pub async fn migrate(client: &mut tokio_postgres::Client) -> anyhow::Result<i32> {
    client
        .batch_execute(
            "SET client_min_messages = warning;
             CREATE TABLE IF NOT EXISTS hub_schema_version (
                 version    integer PRIMARY KEY,
                 name       text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await?;
    let tx = client.transaction().await?;
    tx.batch_execute("LOCK TABLE hub_schema_version IN EXCLUSIVE MODE")
        .await?;
    let current: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM hub_schema_version",
            &[],
        )
        .await?
        .get(0);
    if current > SCHEMA_VERSION {
        anyhow::bail!(
            "the database's hub schema is version {current}, newer than this binary's {SCHEMA_VERSION}"
        );
    }
    for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        tx.batch_execute(sql)
            .await
            .map_err(|e| anyhow::anyhow!("hub migration {version} ({name}): {e}"))?;
        tx.execute(
            "INSERT INTO hub_schema_version (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(SCHEMA_VERSION)
}

/// The schema version in the database (0 before the first migration).
pub async fn schema_version(client: &tokio_postgres::Client) -> Result<i32, tokio_postgres::Error> {
    let exists: bool = client
        .query_one("SELECT to_regclass('hub_schema_version') IS NOT NULL", &[])
        .await?
        .get(0);
    if !exists {
        return Ok(0);
    }
    Ok(client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM hub_schema_version",
            &[],
        )
        .await?
        .get(0))
}
