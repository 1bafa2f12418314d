//! Starting and stopping the service: what `standin serve`, the demo and the end-to-end tests
//! all use, so a test runs exactly what production runs (on a listener bound to port 0).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use sd_notify::NotifyState;

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::http::conn;
use crate::state::AppState;
use crate::store::Store;

pub mod arenas;

/// How long in-flight requests get to finish after shutdown begins.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// Opens the database (migrating it) and builds the shared state.
pub fn open(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<AppState> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let path = config.database_path();
    let store = Store::open(&path, &config.database)
        .with_context(|| format!("cannot open {}", path.display()))?;
    AppState::new(config, store, clock)
}

/// Serves on `listener` until `shutdown` resolves, then drains: readiness turns 503, workers
/// stop, in-flight requests get [`DRAIN_LIMIT`] to finish, queued writes commit, and the
/// database is closed cleanly.
pub async fn launch(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut workers = tokio::task::JoinSet::new();
    if state.config.feeds.pull && state.config.central.url.is_some() {
        workers.spawn(crate::feeds::pull::run(state.clone(), stop_rx.clone()));
    }
    if state.config.journal.push && state.config.central.url.is_some() {
        workers.spawn(crate::journal::uplink::run(state.clone(), stop_rx.clone()));
    }
    if state.config.central.url.is_some() {
        workers.spawn(crate::status::heartbeat::run(
            state.clone(),
            stop_rx.clone(),
        ));
    }
    workers.spawn(crate::returns::refunds::run(state.clone(), stop_rx.clone()));
    workers.spawn(crate::journal::retention::run(
        state.clone(),
        stop_rx.clone(),
    ));
    workers.spawn(crate::payments::forward::run(
        state.clone(),
        stop_rx.clone(),
    ));
    for u in crate::upstream::Upstream::ALL {
        workers.spawn(crate::upstream::probe(state.clone(), u, stop_rx.clone()));
    }

    let addr = listener.local_addr()?;
    tracing::info!(%addr, store_id = %state.config.store_id, version = env!("CARGO_PKG_VERSION"), "standin serving");
    // The database is migrated (`open`) and the listener bound: connections queue from here.
    systemd::notify(&[
        NotifyState::Ready,
        NotifyState::Status(&format!("serving on {addr}")),
    ]);
    if let Some(interval) = sd_notify::watchdog_enabled() {
        workers.spawn(systemd::watchdog(state.clone(), interval));
    }
    let limits = conn::Limits {
        max_connections: state.config.http.max_connections.max(1),
        max_connections_per_client: state.config.http.max_connections_per_client.max(1),
        idle_timeout: Duration::from_secs(state.config.http.idle_timeout_secs.max(1)),
        retry_after_secs: 1,
    }
    .within_descriptors();
    let registry = conn::Registry::new(limits);
    state.connections.set(registry.clone()).ok();
    let draining = state.draining.clone();
    let (serve_stop_tx, serve_stop_rx) = watch::channel(false);
    let server = conn::serve(
        listener,
        crate::app::app(state.clone()),
        registry,
        serve_stop_rx,
    );
    tokio::pin!(server);
    let shutdown = async move {
        shutdown.await;
        tracing::info!("shutting down: draining requests");
        systemd::notify(&[NotifyState::Stopping]);
        draining.store(true, Ordering::Relaxed);
        let _ = stop_tx.send(true);
        let _ = serve_stop_tx.send(true);
    };
    tokio::select! {
        _ = &mut server => anyhow::bail!("the listener stopped unexpectedly"),
        _ = shutdown => {}
    }
    if tokio::time::timeout(DRAIN_LIMIT, &mut server)
        .await
        .is_err()
    {
        tracing::warn!("requests still running after {DRAIN_LIMIT:?}; closing anyway");
    }
    workers.abort_all();
    while workers.join_next().await.is_some() {}
    state.store.close().await;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// `standin serve`: bind, serve until SIGINT/SIGTERM.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let listen = config.listen;
    let state = open(config, Arc::new(SystemClock))?;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    launch(state, listener, shutdown_signal()).await
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// systemd's notify protocol (`Type=notify` in `packaging/standin.service`). Every call is a
/// no-op when `NOTIFY_SOCKET` is unset: tests, the demo, a shell.
mod systemd {
    use std::time::Duration;

    use sd_notify::NotifyState;

    use crate::error::AppError;
    use crate::state::AppState;

    pub fn notify(states: &[NotifyState]) {
        if let Err(e) = sd_notify::notify(states) {
            tracing::warn!(error = %e, "could not notify systemd");
        }
    }

    /// Pings systemd's watchdog at half its interval, but only while a read on the database
    /// answers in time: a process that still runs but can no longer serve gets restarted.
    /// It keeps pinging while draining; `TimeoutStopSec` bounds the stop instead.
    pub async fn watchdog(state: AppState, interval: Duration) {
        let every = interval / 2;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let probe = state.store.read(|c| {
                c.query_row("PRAGMA user_version", [], |r| r.get::<_, u32>(0))
                    .map_err(AppError::from)
            });
            match tokio::time::timeout(every, probe).await {
                Ok(Ok(_)) => notify(&[NotifyState::Watchdog]),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "database read failed; withholding the watchdog ping")
                }
                Err(_) => tracing::warn!(
                    "database read took over {every:?}; withholding the watchdog ping"
                ),
            }
        }
    }
}
