//! Operations endpoints: liveness, readiness, and the store's status as JSON.

pub mod heartbeat;

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use rusqlite::OptionalExtension;
use serde::Serialize;
use std::collections::BTreeMap;

use crate::error::AppError;
use crate::feeds::{Feed, FeedStatus};
use crate::http::{Access, ApiJson, Route};
use crate::journal::Lane;
use crate::journal::delivery::{LaneBacklog, backlog};
use crate::state::AppState;
use crate::upstream::{Health, Upstream};

pub fn routes() -> Vec<Route<AppState>> {
    vec![
        Route::new(Method::GET, "/healthz", Access::Public, get(healthz)),
        Route::new(Method::GET, "/readyz", Access::Public, get(readyz)),
        Route::new(Method::GET, "/api/v1/status", Access::Public, get(status)),
    ]
}

async fn healthz() -> impl IntoResponse {
    ApiJson(serde_json::json!({ "status": "ok" }))
}

/// 200 once the database is open, migrated and answering; 503 with the reason otherwise
/// (including while shutting down, so a balancer stops sending work first).
async fn readyz(State(state): State<AppState>) -> Response {
    if state.draining.load(Ordering::Relaxed) {
        return not_ready("shutting_down");
    }
    let probe = state
        .store
        .read(|c| {
            c.query_row("PRAGMA user_version", [], |r| r.get::<_, u32>(0))
                .map_err(AppError::from)
        })
        .await;
    match probe {
        Ok(v) if v == crate::store::LATEST_VERSION => (
            StatusCode::OK,
            ApiJson(serde_json::json!({ "status": "ready", "schema_version": v })),
        )
            .into_response(),
        Ok(_) => not_ready("database_not_migrated"),
        Err(e) => {
            tracing::warn!(error = %e, "readiness probe failed");
            not_ready("database_unavailable")
        }
    }
}

fn not_ready(reason: &str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        ApiJson(serde_json::json!({ "status": "not_ready", "reason": reason })),
    )
        .into_response()
}

#[derive(Serialize)]
pub struct Status {
    pub store_id: String,
    pub version: &'static str,
    pub now: DateTime<Utc>,
    pub upstreams: BTreeMap<&'static str, Health>,
    pub feeds: BTreeMap<&'static str, FeedFreshness>,
    pub journal: JournalStatus,
    /// Card refunds of returns waiting for the processor, and those that need a person.
    pub refunds: crate::returns::refunds::QueueStatus,
    /// Kiosk payments approved offline and not yet forwarded: count, total, oldest, the
    /// tightest forwarding deadline and its countdown, and what needs a person.
    pub payments: crate::payments::store::Exposure,
    /// The store's currency (of its sales), for amounts that carry none of their own.
    pub currency: Option<String>,
    /// Central answers (heard from within the last two minutes) but some feed has stopped
    /// bringing HQ's updates (`feeds.*.stalled`): the desk shows it amber, apart from down.
    pub hq_updates_stalled: bool,
    /// Only under `standin demo`: where the simulator's controls are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub demo: Option<serde_json::Value>,
}

#[derive(Serialize)]
pub struct JournalStatus {
    /// Per lane, in priority order: what waits for central and how long the oldest has.
    pub lanes: BTreeMap<&'static str, LaneBacklog>,
    /// Entries central rejected or found in conflict, waiting for a person.
    pub set_aside: i64,
    /// The newest entry's sequence number.
    pub last_seq: i64,
}

#[derive(Serialize)]
pub struct FeedFreshness {
    #[serde(flatten)]
    pub status: FeedStatus,
    /// Seconds since the last batch was applied; null before the first.
    pub age_secs: Option<i64>,
    /// How current the store's copy is known to be: central's `as_of` for the feed when it
    /// sends one, else the later of the last time central answered a pull to the end and the
    /// last batch applied (pushed feeds). Null before any.
    pub data_as_of: Option<String>,
    pub data_age_secs: Option<i64>,
    /// Central answers, but this feed's data is older than [`STALL_SECS`] or its last pulled
    /// batch was refused: HQ's updates are not arriving.
    pub stalled: bool,
}

/// Data older than this while central answers means HQ's updates have stopped.
pub const STALL_SECS: i64 = 10 * 60;
/// Central counts as answering when heard from within this long.
const HEARD_SECS: i64 = 120;

fn parse_time(t: Option<&str>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

impl FeedFreshness {
    fn of(status: FeedStatus, now: DateTime<Utc>, central_answers: bool) -> Self {
        let age = |t: DateTime<Utc>| (now - t).num_seconds().max(0);
        let applied = parse_time(status.applied_at.as_deref());
        // Central's word on how current HQ's data is wins; without it, the copy is current as
        // of the last answer to a pull, or the last batch (pushed feeds), whichever is later.
        let checked = parse_time(status.checked_at.as_deref());
        let data = parse_time(status.source_as_of.as_deref()).or(match (checked, applied) {
            (Some(k), Some(a)) => Some(k.max(a)),
            (k, a) => k.or(a),
        });
        let data_age_secs = data.map(age);
        let stalled = central_answers
            && (status.last_error.is_some()
                || (status.checked_at.is_some() && data_age_secs.is_some_and(|a| a > STALL_SECS)));
        Self {
            age_secs: applied.map(age),
            data_as_of: data.map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            data_age_secs,
            stalled,
            status,
        }
    }
}

pub async fn current(state: &AppState) -> Result<Status, AppError> {
    let now = state.clock.now();
    let (feeds, journal, refunds, payments, currency) = state
        .store
        .read(move |c| {
            let feeds = Feed::ALL
                .into_iter()
                .map(|f| crate::feeds::apply::feed_status(c, f).map(|s| (f, s)))
                .collect::<Result<Vec<_>, _>>()?;
            let lanes = Lane::BY_PRIORITY
                .into_iter()
                .map(|l| backlog(c, l, now).map(|b| (l.as_str(), b)))
                .collect::<Result<BTreeMap<_, _>, _>>()?;
            let set_aside: i64 = c.query_row(
                "SELECT count(*) FROM journal WHERE outcome IN ('rejected', 'conflict')",
                [],
                |r| r.get(0),
            )?;
            let last_seq: i64 =
                c.query_row("SELECT coalesce(max(seq), 0) FROM journal", [], |r| {
                    r.get(0)
                })?;
            let currency: Option<String> = c
                .query_row("SELECT currency FROM receipts LIMIT 1", [], |r| r.get(0))
                .optional()?;
            Ok::<_, AppError>((
                feeds,
                JournalStatus {
                    lanes,
                    set_aside,
                    last_seq,
                },
                crate::returns::refunds::queue_status(c)?,
                crate::payments::store::exposure(c, now)?,
                currency,
            ))
        })
        .await?;
    let upstreams: BTreeMap<&'static str, Health> = Upstream::ALL
        .into_iter()
        .filter_map(|u| state.upstreams.get(u).map(|h| (u.as_str(), h)))
        .collect();
    let central_answers = upstreams.get("central").is_some_and(|h| {
        h.configured
            && h.state != crate::upstream::HealthState::Down
            && h.last_success
                .is_some_and(|t| (now - t).num_seconds() <= HEARD_SECS)
    });
    let feeds: BTreeMap<&'static str, FeedFreshness> = feeds
        .into_iter()
        .map(|(f, status)| (f.as_str(), FeedFreshness::of(status, now, central_answers)))
        .collect();
    let hq_updates_stalled = feeds.values().any(|f| f.stalled);
    Ok(Status {
        store_id: state.config.store_id.clone(),
        version: env!("CARGO_PKG_VERSION"),
        now,
        upstreams,
        feeds,
        journal,
        refunds,
        payments,
        currency,
        hq_updates_stalled,
        demo: state
            .config
            .demo
            .as_ref()
            .map(|d| serde_json::json!({"simulator_url": d.simulator_url})),
    })
}

async fn status(State(state): State<AppState>) -> Result<ApiJson<Status>, AppError> {
    Ok(ApiJson(current(&state).await?))
}
