//! Central, the retailer's commerce API: feeds by batch (pull) and the journal intake (push).

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Extension, Path, Query, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::state::{
    ApiError, Fault, JournalRecord, Mode, Shared, State, invalid, json_text, lock, parse_body,
};

pub(crate) fn router(state: Shared) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/stores/{store}/feeds/{feed}/batches", get(batches))
        .route("/v1/stores/{store}/journal", post(journal))
        .route("/v1/stores/{store}/status", post(heartbeat))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(16 * 1024 * 1024))
        .with_state(state)
}

pub(crate) async fn health() -> Response {
    json_text(r#"{"status":"ok"}"#.to_owned())
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

pub(crate) async fn method_not_allowed() -> ApiError {
    let msg = "method not allowed here";
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", msg)
}

fn unknown_store() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "unknown_store", "no such store").field("store")
}

pub(crate) fn unknown_feed() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "unknown_feed", "no such feed").field("feed")
}

fn query_number(q: &HashMap<String, String>, name: &str, default: u64) -> Result<u64, ApiError> {
    match q.get(name) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| {
            let msg = format!("{name} must be a non-negative integer");
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_query", msg).field(name)
        }),
    }
}

async fn batches(
    AxState(state): AxState<Shared>,
    Path((store, feed)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let after = query_number(&q, "after", 0)?;
    let limit = query_number(&q, "limit", 10)?.clamp(1, 100);
    let st = lock(&state);
    if store != st.store_id {
        return Err(unknown_store());
    }
    let all = st.feeds.get(feed.as_str()).ok_or_else(unknown_feed)?;
    // How current HQ's data behind the feed is: now, unless HQ's updates have stopped.
    let (all, as_of) = match &st.feeds_stalled {
        Some(stall) => {
            let served = stall.served.get(feed.as_str()).copied().unwrap_or(0);
            (&all[..served.min(all.len())], stall.since)
        }
        None => (&all[..], chrono::Utc::now()),
    };
    let start = usize::try_from(after).unwrap_or(usize::MAX).min(all.len());
    let end = start.saturating_add(limit as usize).min(all.len());
    let mut body = String::from(r#"{"batches":["#);
    for (i, b) in all[start..end].iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(b);
    }
    body.push_str(&format!(r#"],"as_of":"{}"}}"#, super::generate::ts(as_of)));
    drop(st);
    Ok(json_text(body))
}

async fn journal(
    AxState(state): AxState<Shared>,
    Path(store): Path<String>,
    fault: Option<Extension<Fault>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body = parse_body(&body)?;
    let Some(entries) = body.get("entries").and_then(Value::as_array) else {
        return Err(invalid("entries", "entries must be an array"));
    };
    for (i, e) in entries.iter().enumerate() {
        for field in ["id", "kind"] {
            if e.get(field)
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                let msg = format!("each entry needs a string {field}");
                return Err(invalid(format!("entries[{i}].{field}"), msg));
            }
        }
    }
    // Partial intake: only a prefix is taken (and answered); the client must resend the rest.
    let take = match fault.map(|Extension(f)| f) {
        Some(Fault {
            mode: Mode::Partial,
            accept_ratio,
            ..
        }) if !entries.is_empty() => {
            let ratio = accept_ratio.unwrap_or(0.5);
            ((entries.len() as f64 * ratio).ceil() as usize).clamp(1, entries.len())
        }
        _ => entries.len(),
    };
    let mut st = lock(&state);
    if store != st.store_id {
        return Err(unknown_store());
    }
    st.journal_pushes += 1;
    let push = st.journal_pushes;
    let results: Vec<Value> = entries[..take]
        .iter()
        .map(|e| intake(&mut st, e, push))
        .collect();
    drop(st);
    Ok(axum::Json(json!({ "results": results })).into_response())
}

/// Records one arrival of `entry` and decides its outcome.
fn intake(st: &mut State, entry: &Value, push: u64) -> Value {
    let id = entry["id"].as_str().unwrap_or_default().to_owned();
    let (outcome, reason) = if let Some(&i) = st.journal_index.get(&id) {
        let rec = &mut st.journal[i];
        rec.count += 1;
        match rec.outcome {
            "rejected" | "conflict" => (rec.outcome, rec.reason),
            _ => ("duplicate", None),
        }
    } else {
        let kind = entry["kind"].as_str().unwrap_or_default();
        let (outcome, reason) = if st.reject_ids.contains(&id) || st.reject_kinds.contains(kind) {
            ("rejected", Some("rejected_by_rule"))
        } else if kind == "pickup.handed_over" && order_cancelled(st, entry) {
            ("conflict", Some("order_cancelled"))
        } else {
            ("accepted", None)
        };
        st.journal_index.insert(id.clone(), st.journal.len());
        st.journal.push(JournalRecord {
            id: id.clone(),
            push,
            count: 1,
            outcome,
            reason,
            entry: entry.clone(),
        });
        (outcome, reason)
    };
    let mut result = json!({ "id": id, "outcome": outcome });
    if let Some(r) = reason {
        result["reason"] = json!(r);
    }
    result
}

fn order_cancelled(st: &State, entry: &Value) -> bool {
    entry["body"]["order_id"]
        .as_str()
        .and_then(|o| st.orders.get(o))
        .is_some_and(|o| o["status"] == "cancelled")
}

/// `POST /v1/stores/{store}/status`: keeps the newest heartbeat per store (any store: the
/// simulator has no tokens), answers 204.
async fn heartbeat(
    AxState(state): AxState<Shared>,
    Path(store): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body = parse_body(&body)?;
    if !body.is_object() {
        return Err(invalid("body", "a heartbeat is a JSON object"));
    }
    let beat: crate::status::heartbeat::Heartbeat = serde_path_to_error::deserialize(&body)
        .map_err(|e| invalid(e.path().to_string(), e.inner().to_string()))?;
    if beat.store_id != store {
        return Err(invalid(
            "store_id",
            "store_id must be the store of the path",
        ));
    }
    let mut st = lock(&state);
    let now = chrono::Utc::now();
    let rec = st
        .heartbeats
        .entry(store)
        .or_insert_with(|| super::state::HeartbeatRecord {
            latest: beat.clone(),
            received: 0,
            last_contact: now,
        });
    rec.received += 1;
    rec.last_contact = now;
    if (beat.sent_at, beat.seq) >= (rec.latest.sent_at, rec.latest.seq) {
        rec.latest = beat;
    }
    drop(st);
    Ok(StatusCode::NO_CONTENT.into_response())
}
