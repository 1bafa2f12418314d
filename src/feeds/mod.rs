//! Feeds down: HQ's data for this store (pickup orders, receipts, staff, devices, policy),
//! pushed by the HQ sync job or pulled from central, landing in one apply path.

pub mod apply;
pub mod batch;
pub mod pull;
pub mod records;

use std::fmt;

use axum::extract::State;
use axum::http::Method;
use axum::routing::post;
use serde::{Deserialize, Serialize};

use crate::error::AppError;
use crate::http::{Access, ApiJson, ApiPath, BodyLimit, RawBody, Route};
use crate::state::AppState;

pub use apply::{Applied, FeedStatus};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Feed {
    PickupOrders,
    Receipts,
    Staff,
    Devices,
    Policy,
}

impl Feed {
    pub const ALL: [Feed; 5] = [
        Feed::PickupOrders,
        Feed::Receipts,
        Feed::Staff,
        Feed::Devices,
        Feed::Policy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PickupOrders => "pickup_orders",
            Self::Receipts => "receipts",
            Self::Staff => "staff",
            Self::Devices => "devices",
            Self::Policy => "policy",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == s)
    }
}

impl fmt::Display for Feed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

pub fn routes() -> Vec<Route<AppState>> {
    vec![
        Route::new(
            Method::POST,
            "/sync/v1/feeds/{feed}/batches",
            Access::Sync,
            post(post_batch),
        )
        .body_limit(BodyLimit::FeedBatch),
    ]
}

/// Parses and checks off the runtime (a snapshot part can be megabytes), then applies on the
/// writer thread. Shared by the push route and the pull worker.
pub async fn receive_batch(
    state: &AppState,
    feed: Feed,
    body: axum::body::Bytes,
    source: &str,
) -> Result<Applied, AppError> {
    let batch = tokio::task::spawn_blocking(move || batch::parse(feed, &body))
        .await
        .map_err(|e| AppError::Internal(e.into()))??;
    let now = state.clock.now_rfc3339();
    let (store_id, source) = (state.config.store_id.clone(), source.to_string());
    // The write and what must follow its commit run in their own task: a sender that hangs
    // up (dropping this future) cannot leave a committed batch with its caches still trusted.
    let state = state.clone();
    tokio::spawn(async move {
        let applied = state
            .store
            .write(move |conn| {
                let by = apply::Applier {
                    store_id: &store_id,
                    now: &now,
                    source: &source,
                };
                apply::apply(conn, &batch, &by)
            })
            .await?;
        if applied.applied {
            if feed == Feed::Staff {
                // Who works here changed: no cached session may be trusted any more.
                state.sessions.invalidate();
            }
            if feed == Feed::Devices {
                // The same for kiosks: a disabled or removed device is refused from now on.
                state.devices.invalidate();
            }
            state.journal_appended.notify_one();
        }
        Ok(applied)
    })
    .await
    .map_err(|e| AppError::Internal(anyhow::anyhow!("feed batch task failed: {e}")))?
}

async fn post_batch(
    State(state): State<AppState>,
    ApiPath(feed): ApiPath<String>,
    RawBody(body): RawBody,
) -> Result<ApiJson<Applied>, AppError> {
    let feed = Feed::parse(&feed).ok_or_else(|| {
        AppError::NotFound(format!(
            "no feed `{feed}`: feeds are pickup_orders, receipts, staff, devices, policy"
        ))
    })?;
    let applied = receive_batch(&state, feed, body, "hq-sync").await?;
    if applied.applied {
        tracing::info!(%feed, batch = applied.batch, records = applied.records, "feed batch applied");
    }
    Ok(ApiJson(applied))
}
