//! Delivery by pull, for the HQ sync job: read the journal after a cursor, acknowledge
//! per-entry outcomes. Shares outcome handling with push; the first acknowledgement wins.

use axum::extract::State;
use axum::http::Method;
use axum::routing::{get, post};
use rusqlite::params;
use serde::{Deserialize, Serialize};

use super::delivery::{self, Delivered, EntryRef, Outcome, Via};
use super::{ENTRY_COLUMNS, Entry, entry_from_row};
use crate::error::AppError;
use crate::http::{Access, ApiJson, ApiQuery, BodyLimit, Route};
use crate::state::AppState;

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;
/// The longest reason an acknowledgement may give one entry, in bytes.
pub const REASON_MAX: usize = 1024;
/// The ack's body limit: its largest page ([`MAX_LIMIT`] results), each with a reason of
/// [`REASON_MAX`] bytes, escaped, and its seq and outcome.
const ACK_BODY_LIMIT: usize = MAX_LIMIT * (2 * REASON_MAX + 256);

pub fn routes() -> Vec<Route<AppState>> {
    vec![
        Route::new(
            Method::GET,
            "/sync/v1/journal",
            Access::Sync,
            get(read_journal),
        ),
        Route::new(
            Method::POST,
            "/sync/v1/journal/ack",
            Access::Sync,
            post(ack),
        )
        .body_limit(BodyLimit::Bytes(ACK_BODY_LIMIT)),
    ]
}

#[derive(Deserialize)]
struct Cursor {
    after: Option<String>,
    limit: Option<String>,
}

#[derive(Serialize)]
struct Page {
    entries: Vec<EntryWithDelivery>,
    next_after: i64,
}

#[derive(Serialize)]
struct EntryWithDelivery {
    #[serde(flatten)]
    entry: Entry,
    /// Null while undelivered; else how it was delivered and what central said.
    delivery: Option<DeliveryState>,
}

#[derive(Serialize)]
struct DeliveryState {
    outcome: String,
    reason: Option<String>,
    delivered_at: String,
    via: String,
}

fn number<T: std::str::FromStr>(field: &str, v: Option<&str>) -> Result<Option<T>, AppError> {
    v.map(|s| {
        s.parse::<T>().map_err(|_| {
            AppError::bad_request(field, format!("`{s}` is not a non-negative integer"))
        })
    })
    .transpose()
}

async fn read_journal(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<Cursor>,
) -> Result<ApiJson<Page>, AppError> {
    let after: i64 = number::<u64>("after", q.after.as_deref())?
        .unwrap_or(0)
        .try_into()
        .unwrap_or(i64::MAX);
    let limit = number::<usize>("limit", q.limit.as_deref())?
        .unwrap_or(DEFAULT_LIMIT)
        .clamp(1, MAX_LIMIT);
    let entries = state
        .store
        .read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {ENTRY_COLUMNS}, outcome, reason, delivered_at, delivered_via
                 FROM journal WHERE seq > ?1 ORDER BY seq LIMIT ?2"
            ))?;
            stmt.query_map(params![after, limit as i64], |r| {
                let outcome: Option<String> = r.get(11)?;
                Ok(EntryWithDelivery {
                    entry: entry_from_row(r)?,
                    delivery: match outcome {
                        Some(outcome) => Some(DeliveryState {
                            outcome,
                            reason: r.get(12)?,
                            delivered_at: r.get(13)?,
                            via: r.get(14)?,
                        }),
                        None => None,
                    },
                })
            })?
            .collect::<Result<Vec<_>, _>>()
            .map_err(AppError::from)
        })
        .await?;
    let next_after = entries.last().map_or(after, |e| e.entry.seq);
    Ok(ApiJson(Page {
        entries,
        next_after,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckBody {
    results: Vec<AckResult>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckResult {
    seq: i64,
    outcome: Outcome,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Serialize)]
struct AckAnswer {
    /// Outcomes recorded now.
    recorded: usize,
    /// Entries that already had an outcome (from push or an earlier ack): unchanged.
    already_delivered: usize,
}

async fn ack(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<AckBody>,
) -> Result<ApiJson<AckAnswer>, AppError> {
    if body.results.len() > MAX_LIMIT {
        return Err(AppError::invalid(
            "too_many_results",
            "results",
            format!("at most {MAX_LIMIT} per request"),
        ));
    }
    if let Some(i) = body
        .results
        .iter()
        .position(|r| r.reason.as_ref().is_some_and(|r| r.len() > REASON_MAX))
    {
        return Err(AppError::invalid(
            "too_long",
            format!("results[{i}].reason"),
            format!("at most {REASON_MAX} bytes"),
        ));
    }
    let results: Vec<Delivered> = body
        .results
        .into_iter()
        .map(|r| Delivered {
            entry: EntryRef::Seq(r.seq),
            outcome: r.outcome,
            reason: r.reason,
        })
        .collect();
    let now = state.clock.now_rfc3339();
    let outcomes = state
        .store
        .write(move |c| {
            let recorded = delivery::record_outcomes(c, &results, Via::Pull, &now)?;
            // An ack naming an entry this store never wrote refuses the whole request.
            if let Some(i) = recorded.iter().position(Option::is_none) {
                return Err(AppError::invalid(
                    "unknown_entry",
                    format!("results[{i}].seq"),
                    "no journal entry has this seq",
                ));
            }
            Ok(recorded)
        })
        .await?;
    let recorded = outcomes.iter().filter(|o| **o == Some(true)).count();
    Ok(ApiJson(AckAnswer {
        recorded,
        already_delivered: outcomes.len() - recorded,
    }))
}
