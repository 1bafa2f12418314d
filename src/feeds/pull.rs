//! The pull worker: fetches feed batches from central and applies them like pushed ones.
//!
//! It asks for batches after the last one applied, so a restart resumes where the database
//! says it stopped; a replay is harmless (`applied: false`). A batch refused for its content
//! stops that feed (the error shows in status) rather than being skipped: skipping would
//! silently lose HQ data.

use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{Feed, receive_batch};
use crate::state::AppState;
use crate::store::StoreError;
use crate::upstream::{Backoff, Upstream};

#[derive(Deserialize)]
struct Page {
    batches: Vec<Box<RawValue>>,
    /// How current HQ's data behind the feed is, if central says (the simulator does).
    #[serde(default)]
    as_of: Option<String>,
}

/// The first retry after a failed pull comes within this (full jitter), doubling after: as
/// `journal.retry_base_ms`, wide enough that a fleet losing central in one second does not
/// come back at it in the next.
pub const RETRY_BASE: Duration = Duration::from_secs(2);

/// Runs until `shutdown` fires.
pub async fn run(state: AppState, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let cfg = state.config.feeds.clone();
    let Some(base) = state.config.central.url.clone() else {
        return;
    };
    let base = base.trim_end_matches('/').to_string();
    let mut backoff = Backoff::new(
        RETRY_BASE,
        Duration::from_secs(cfg.pull_interval_secs.max(1) * 4),
    );
    tracing::info!(central = %base, "pulling feeds from central");
    let interval = Duration::from_secs(cfg.pull_interval_secs.max(1));
    loop {
        let now = state.clock.now();
        // One sleep honouring both the backoff and central's breaker (see uplink.rs).
        let delay = match pull_all(&state, &base, cfg.pull_page).await {
            Ok(()) => {
                backoff.reset();
                interval
            }
            Err(Pull::Held) => state
                .upstreams
                .next_permit_in(Upstream::Central, now, interval),
            Err(Pull::Failed(ra)) => {
                state
                    .upstreams
                    .next_permit_in(Upstream::Central, now, backoff.next_delay(ra))
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Why a round stopped early.
enum Pull {
    /// Central's breaker holds requests back: nothing was sent.
    Held,
    /// A transport or server failure, with central's `Retry-After` if it gave one.
    Failed(Option<Duration>),
}

/// One round over every feed, each paged until central has nothing newer.
async fn pull_all(state: &AppState, base: &str, page: usize) -> Result<(), Pull> {
    'feeds: for feed in Feed::ALL {
        let mut checked: Option<(String, Option<String>)> = None;
        loop {
            let read = state
                .store
                .read(move |c| super::apply::feed_status(c, feed).map_err(StoreError::from));
            let (after, had_error) = match read.await {
                Ok(s) => (s.last_batch, s.last_error.is_some()),
                Err(e) => {
                    tracing::error!(error = %e, "cannot read feed state");
                    return Err(Pull::Failed(None));
                }
            };
            if !state.upstreams.permit(Upstream::Central, state.clock.now()) {
                return Err(Pull::Held);
            }
            let url = format!(
                "{base}/v1/stores/{}/feeds/{feed}/batches",
                state.config.store_id
            );
            let res =
                crate::upstream::with_token(state.http.get(&url), &state.config.central.token)
                    .query(&[("after", after.to_string()), ("limit", page.to_string())])
                    .send()
                    .await;
            let res = match res {
                Ok(r) => r,
                Err(e) => {
                    let failure = crate::upstream::Failure::transport(&e);
                    tracing::warn!(%feed, error = %failure.error, "feed pull failed");
                    state
                        .upstreams
                        .report_failure(Upstream::Central, failure, state.clock.now());
                    return Err(Pull::Failed(None));
                }
            };
            if !res.status().is_success() {
                let retry_after = crate::upstream::retry_after(res.headers());
                let status = res.status();
                state.upstreams.report_failure_retry_after(
                    Upstream::Central,
                    format!("feed pull answered HTTP {status}"),
                    retry_after,
                    state.clock.now(),
                );
                tracing::warn!(%feed, %status, "feed pull refused by central");
                return Err(Pull::Failed(retry_after));
            }
            let body: Page = match res.json().await {
                Ok(p) => p,
                Err(e) => {
                    state.upstreams.report(
                        Upstream::Central,
                        Err(e.to_string()),
                        state.clock.now(),
                    );
                    tracing::warn!(%feed, error = %e, "feed pull: unreadable answer");
                    return Err(Pull::Failed(None));
                }
            };
            state
                .upstreams
                .report(Upstream::Central, Ok(()), state.clock.now());
            let n = body.batches.len();
            if n < page {
                // Central has nothing newer than this page: the copy is current as of now
                // (once the page is applied, below).
                let (now, as_of) = (state.clock.now_rfc3339(), body.as_of.clone());
                checked = Some((now, as_of));
            }
            if body.batches.is_empty() {
                break;
            }
            for raw in body.batches {
                let bytes = axum::body::Bytes::from(raw.get().to_owned());
                match receive_batch(state, feed, bytes, "central").await {
                    Ok(applied) => {
                        if applied.applied {
                            tracing::info!(%feed, batch = applied.batch, records = applied.records, "pulled feed batch applied");
                        }
                    }
                    Err(e) => {
                        let msg = e.detail();
                        tracing::error!(%feed, error = %msg, "pulled feed batch refused; this feed waits until central fixes it");
                        let now = state.clock.now_rfc3339();
                        let _ = state
                            .store
                            .write(move |c| {
                                super::apply::record_pull_error(c, feed, &msg, &now)
                                    .map_err(StoreError::from)
                            })
                            .await;
                        continue 'feeds;
                    }
                }
            }
            if had_error {
                let clear = move |c: &rusqlite::Connection| {
                    super::apply::clear_pull_error(c, feed).map_err(StoreError::from)
                };
                let _ = state.store.write(clear).await;
            }
            if n < page {
                break;
            }
        }
        if let Some((now, as_of)) = checked.take() {
            let record = move |c: &rusqlite::Connection| {
                super::apply::record_checked(c, feed, &now, as_of.as_deref())
                    .map_err(StoreError::from)
            };
            if let Err(e) = state.store.write(record).await {
                tracing::warn!(%feed, error = %e, "cannot record the feed check");
            }
        }
    }
    Ok(())
}
