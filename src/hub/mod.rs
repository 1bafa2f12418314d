//! The hub: central's side of the contract (API.md) on PostgreSQL, for retailers without
//! their own intake. It lands every store's journal exactly once and verifies each store's
//! hash chain ([`journal`]), serves each store its feeds from what HQ imports ([`feeds`]),
//! and answers a reconnecting fleet politely (a bounded intake, 503 with a per-store
//! `Retry-After`). Hub processes keep no state of their own: run as many as needed.

pub mod auth;
pub mod body;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod db;
pub mod demo;
pub mod error;
pub mod feeds;
pub mod fleet;
pub mod fleet_sim;
pub mod heartbeats;
pub mod intake;
pub mod journal;
pub mod metrics;
pub mod ops;
pub mod pace;
pub mod share;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

use crate::http::conn;
pub use config::HubConfig;
pub use error::HubError;
pub use share::BATCHES_PER_STORE;

/// Cheap to clone; what every handler shares.
#[derive(Clone)]
pub struct HubState(Arc<Shared>);

pub struct Shared {
    pub config: HubConfig,
    /// Connections for feed pulls, the fleet view, token lookups and the contact flush
    /// (`pool_size` less the intake's own).
    /// Only through [`db::SharedPool::run`], which bounds the work.
    pub pool: db::SharedPool,
    /// The intake's own connections: one for each journal batch landing at once and one for
    /// the heartbeat writer ([`HubConfig::intake_pool_size`]). Apart from `pool`, so a
    /// crowd of feed pulls (25,000 at a fleet's start) never holds the connections journal
    /// batches and heartbeats need: a batch that has its turn has its connection.
    pub intake_pool: deadpool_postgres::Pool,
    /// Bounds the journal transactions this process runs at once (`intake_at_once`).
    pub intake_permits: Arc<tokio::sync::Semaphore>,
    /// Bounds the batches running or waiting for a permit (`intake_at_once` +
    /// `intake_queue`): taken first, without waiting.
    pub intake_admitted: Arc<tokio::sync::Semaphore>,
    /// Bounds the journal request bodies held at once, in 64 KiB units
    /// (`intake_memory_mib`): taken as a body is read, held until its batch has landed.
    pub intake_memory: Arc<tokio::sync::Semaphore>,
    pub metrics: metrics::Metrics,
    pub tokens: auth::TokenCache,
    /// Stores heard from since the last flush into `stores.last_contact_at` ([`launch`]),
    /// each with when (seconds since the epoch).
    pub seen: std::sync::Mutex<HashMap<String, f64>>,
    /// Heartbeats waiting for their group's write ([`heartbeats`]).
    pub heartbeats: heartbeats::Writer,
    /// The last fleet read, shared by the fleet view's readers ([`fleet::read_shared`]).
    pub fleet_cache: fleet::FleetCache,
    /// Journal pushes just refused and landed, for a `busy` answer's `Retry-After`.
    pub pace: pace::Pace,
    /// The open client connections, once [`launch`] serves (for `/metrics`).
    pub connections: std::sync::OnceLock<Arc<conn::Registry>>,
    /// Each store's share of this process ([`share`]).
    pub shares: share::Shares,
}

impl std::ops::Deref for HubState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl HubState {
    /// A state over a new pool; connects lazily, so a hub starts while PostgreSQL is down.
    pub fn new(config: HubConfig) -> anyhow::Result<Self> {
        if config.database_url.is_empty() {
            anyhow::bail!("no database URL: pass --database-url or set STANDIN_HUB__DATABASE_URL");
        }
        config.check()?;
        let pool = db::SharedPool::new(db::pool(
            config.database_url.expose(),
            config.shared_pool_size(),
        )?);
        let intake_pool = db::pool(config.database_url.expose(), config.intake_pool_size())?;
        Ok(Self(Arc::new(Shared {
            intake_pool,
            intake_permits: Arc::new(tokio::sync::Semaphore::new(config.intake_at_once.max(1))),
            intake_admitted: Arc::new(tokio::sync::Semaphore::new(config.intake_admitted())),
            intake_memory: Arc::new(tokio::sync::Semaphore::new(config.intake_memory_mib * 16)),
            config,
            pool,
            metrics: metrics::Metrics::default(),
            tokens: auth::TokenCache::default(),
            seen: std::sync::Mutex::default(),
            heartbeats: heartbeats::Writer::default(),
            fleet_cache: fleet::FleetCache::default(),
            pace: pace::Pace::default(),
            connections: std::sync::OnceLock::new(),
            shares: share::Shares::default(),
        })))
    }

    /// Seconds a refused store should wait: a per-store share of the spread (so a fleet
    /// refused at once comes back spread out, each store at its own offset) plus jitter.
    pub fn retry_after(&self, store: &str) -> u64 {
        retry_after_secs(
            store,
            self.config.retry_after_min_secs,
            self.config.retry_after_spread_secs,
            rand::random::<u64>(),
        )
    }

    /// `store`'s journal batches in this process now (read, waiting or landing).
    pub fn store_batches(&self, store: &str) -> usize {
        self.shares.batches(store)
    }

    /// Journal batches this process holds now, landing or waiting for a turn.
    pub fn intake_held(&self) -> usize {
        (self.config.intake_admitted()).saturating_sub(self.intake_admitted.available_permits())
    }

    /// Seconds a journal push refused `busy` should wait: [`HubState::retry_after`] over a
    /// spread that follows how many pushes this process has waiting and has just refused
    /// against how many it has just landed ([`pace`]), at most `retry_after_spread_secs`.
    /// Counts the refusal.
    pub fn busy_retry_after(&self, store: &str) -> u64 {
        retry_after_secs(
            store,
            self.config.retry_after_min_secs,
            self.pace.refused(
                self.intake_held() as u64,
                self.config.retry_after_spread_secs,
            ),
            rand::random::<u64>(),
        )
    }

    /// A PostgreSQL failure as the store sees it: 503 with `Retry-After` when the database
    /// is away or shedding load, `busy` when this process had no connection free for it,
    /// 500 for anything else (a bug, logged).
    pub fn db_error(&self, store: &str, work: metrics::Work, e: impl Into<DbError>) -> HubError {
        match e.into() {
            DbError::NoConnection => {
                self.metrics.refused_no_connection(work);
                HubError::Busy(self.retry_after(store))
            }
            DbError::Transient(detail) => HubError::Unavailable {
                retry_after: UNAVAILABLE_AT_LEAST_SECS + self.retry_after(store),
                detail,
            },
            DbError::Bug(detail) => HubError::Internal(detail),
        }
    }
}

/// Added to `Retry-After` when PostgreSQL is away (`database_unavailable`): that is an
/// outage, not a moment's queue. A store's breaker takes a `Retry-After` answer to its
/// half-open probe as its wait (spread over at least 15 s more), so a fleet probing a hub
/// without its database comes back every 5–31 s, about 6 % of it in a second, near the
/// 6–7 % of a fleet probing a hub that is gone (2026-12-06, with 10 s of spread: every
/// 5–25 s, about 7 %; without this, every 1–23 s, about 10 %).
pub const UNAVAILABLE_AT_LEAST_SECS: u64 = 4;

/// `min + (hash(store) mod spread) + jitter`, jitter up to a fifth of the spread.
pub fn retry_after_secs(store: &str, min: u64, spread: u64, random: u64) -> u64 {
    let h = Sha256::digest(store.as_bytes());
    let share = u64::from_be_bytes(h[..8].try_into().unwrap_or([0; 8]));
    let spread = spread.max(1);
    let jitter = random % (spread / 5).max(1);
    min + share % spread + jitter
}

#[derive(Debug, Clone)]
pub enum DbError {
    /// Every connection of the pool asked was in use for its whole wait (2 s): this process
    /// is at capacity; PostgreSQL itself answered.
    NoConnection,
    Transient(String),
    Bug(String),
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoConnection => f.write_str("no PostgreSQL connection came free"),
            Self::Transient(d) | Self::Bug(d) => f.write_str(d),
        }
    }
}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        match e.code() {
            // No code: the connection broke or could not be made.
            None => Self::Transient(e.to_string()),
            Some(c)
                if *c == SqlState::ADMIN_SHUTDOWN
                    || *c == SqlState::CRASH_SHUTDOWN
                    || *c == SqlState::CANNOT_CONNECT_NOW
                    || *c == SqlState::T_R_SERIALIZATION_FAILURE
                    || *c == SqlState::T_R_DEADLOCK_DETECTED
                    || *c == SqlState::TOO_MANY_CONNECTIONS
                    || *c == SqlState::QUERY_CANCELED
                    || *c == SqlState::LOCK_NOT_AVAILABLE =>
            {
                Self::Transient(e.to_string())
            }
            Some(_) => Self::Bug(e.to_string()),
        }
    }
}

impl From<deadpool_postgres::PoolError> for DbError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            deadpool_postgres::PoolError::Timeout(deadpool_postgres::TimeoutType::Wait) => {
                Self::NoConnection
            }
            other => Self::Transient(other.to_string()),
        }
    }
}

/// Largest request body (a journal batch of `max_entries_per_request` entries fits), read
/// only by the journal route, through [`body::read`] within the memory budget.
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// What any other route's body extractor takes (`DefaultBodyLimit`, router-wide): a route
/// added with a `Json` or `Bytes` extractor is bounded without its author asking. The
/// routes stores write to read their bodies themselves ([`body::read`]), each with its own
/// limit declared where it reads.
pub const DEFAULT_BODY_BYTES: usize = 64 * 1024;

/// Central's paths plus operations, as one router (tests call this).
pub fn app(state: HubState) -> Router {
    let request_timeout = std::time::Duration::from_secs(state.config.request_timeout_secs.max(1));
    // A store's own paths, every one behind its token (`auth::store_guard`).
    let stores = Router::new()
        .route(
            "/v1/stores/{store}/feeds/{feed}/batches",
            get(feeds::get_batches),
        )
        .route("/v1/stores/{store}/journal", post(journal::post_journal))
        .route("/v1/stores/{store}/status", post(fleet::post_status))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::store_guard,
        ));
    Router::new()
        .route("/v1/health", get(ops::health))
        .merge(stores)
        .route("/v1/fleet", get(fleet::get_fleet))
        .route("/fleet", get(fleet::page))
        .route("/fleet/fleet.js", get(fleet::page_js))
        .route("/fleet/fleet.css", get(fleet::page_css))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .fallback(ops::not_found)
        .layer(DefaultBodyLimit::max(DEFAULT_BODY_BYTES))
        .layer(axum::middleware::from_fn(move |req, next| {
            crate::http::edge(req, next, request_timeout)
        }))
        .with_state(state)
}

/// Connections waiting to be accepted, per listening socket (the kernel caps it at
/// `net.core.somaxconn`, 4,096 on current Debian). A fleet finding the hub back reconnects
/// by the thousand, and the default of `TcpListener::bind` (128, as the standard library)
/// leaves a burst of handshakes to the kernel's SYN retransmits. Measured, it did not
/// explain the store-side timeouts of a 2,000,000-entry drain (`cargo bench --bench
/// fleet`, 2026-12-06: 7,585 pushes timed out with 4,096 against 5,967 with 128).
pub const ACCEPT_BACKLOG: u32 = 4096;

/// A listening socket for the hub, with [`ACCEPT_BACKLOG`].
pub fn listen(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(ACCEPT_BACKLOG)
}

/// Serves `app(state)` on `listener` until `shutdown` resolves; in-flight requests finish.
pub async fn launch(
    state: HubState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let contact = tokio::spawn(flush_contact(state.clone()));
    let tokens = tokio::spawn(auth::keep_fresh(state.clone()));
    let config = &state.config;
    let limits = conn::Limits {
        max_connections: config.max_connections.max(1),
        max_connections_per_client: config.max_connections_per_client.max(1),
        idle_timeout: std::time::Duration::from_secs(config.idle_timeout_secs.max(1)),
        retry_after_secs: config.retry_after_min_secs + config.retry_after_spread_secs,
    }
    .within_descriptors();
    let registry = conn::Registry::new(limits);
    state.connections.set(registry.clone()).ok();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let server = conn::serve(listener, app(state.clone()), registry, stopped);
    tokio::pin!(server);
    let served = tokio::select! {
        _ = &mut server => Err(anyhow::anyhow!("the listener stopped unexpectedly")),
        _ = shutdown => Ok(()),
    };
    let _ = stop.send(true);
    if served.is_ok()
        && tokio::time::timeout(DRAIN_LIMIT, &mut server)
            .await
            .is_err()
    {
        tracing::warn!("requests still running after {DRAIN_LIMIT:?}; closing anyway");
    }
    // Batches answered `busy` at their deadline that still land in the background: their
    // work is done, not rolled back with the runtime (the store's resend is then a
    // duplicate rather than the whole batch again).
    let landing = async {
        while state.intake_held() > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    if tokio::time::timeout(DRAIN_LIMIT, landing).await.is_err() {
        tracing::warn!(
            batches = state.intake_held(),
            "journal batches still landing after {DRAIN_LIMIT:?}; they roll back"
        );
    }
    contact.abort();
    tokens.abort();
    flush_contact_once(&state).await;
    served
}

/// How long requests in flight get to finish once a hub process is told to stop.
const DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

impl HubState {
    /// Notes that `store` was heard from (any request with its own token, a refused one
    /// too): a store told "busy, come back in 25 s" is alive, not silent.
    pub fn heard_from(&self, store: &str) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        match seen.get_mut(store) {
            Some(t) => *t = t.max(now),
            None => {
                seen.insert(store.to_owned(), now);
            }
        }
    }
}

/// Once a second, one `UPDATE` moves `last_contact_at` for every store heard from: the
/// fleet view's contact costs no write per request, and holds while intake sheds load.
async fn flush_contact(state: HubState) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        flush_contact_once(&state).await;
    }
}

/// Rows another transaction holds (a batch landing for that store, which sets the contact
/// itself, or another hub process's flush) are skipped, never waited for: a flush must not
/// queue behind intake, nor hold rows intake waits for, nor deadlock with a flush of the
/// other process. What was skipped goes into the next flush (for up to 10 s).
async fn flush_contact_once(state: &HubState) {
    let (ids, at): (Vec<String>, Vec<f64>) = {
        let mut seen = state.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.is_empty() {
            return;
        }
        seen.drain().unzip()
    };
    // PostgreSQL away: the contact is lost with it, and the store's next request brings
    // it back.
    let done = state
        .pool
        .run(async |client| {
            Ok(client
                .query(
                    "WITH v AS (SELECT * FROM unnest($1::text[], $2::float8[]) AS v(id, at)),
                  l AS (SELECT s.store_id FROM stores s JOIN v ON s.store_id = v.id
                        FOR UPDATE OF s SKIP LOCKED)
             UPDATE stores s SET last_contact_at = greatest(s.last_contact_at, to_timestamp(v.at))
             FROM v JOIN l ON l.store_id = v.id
             WHERE s.store_id = v.id
             RETURNING s.store_id",
                    &[&ids, &at],
                )
                .await?)
        })
        .await;
    let done: std::collections::HashSet<String> = match done {
        Ok(rows) => rows.iter().map(|r| r.get(0)).collect(),
        Err(e) => {
            tracing::debug!(error = %e, stores = ids.len(), "could not record contact");
            return;
        }
    };
    // A store not in the table (deleted since its token was cached) is not retried past 10 s.
    let recent = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
        - 10.0;
    let mut seen = state.seen.lock().unwrap_or_else(|p| p.into_inner());
    for (id, t) in ids.into_iter().zip(at) {
        if !done.contains(&id) && t > recent {
            let e = seen.entry(id).or_insert(t);
            *e = e.max(t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_differs_between_stores_and_stays_in_range() {
        let values: std::collections::HashSet<u64> = (0..200)
            .map(|i| retry_after_secs(&format!("store-{i:04}"), 2, 20, 0))
            .collect();
        assert!(values.len() >= 15, "only {} distinct values", values.len());
        for i in 0..200u64 {
            let v = retry_after_secs(&format!("store-{i}"), 2, 20, i * 7919);
            assert!((2..2 + 20 + 4).contains(&v), "{v}");
        }
    }
}
