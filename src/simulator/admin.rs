//! The simulator's own controls: faults, what was received, central's rules and feed changes.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State as AxState};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Value, json};

use super::central::{method_not_allowed, not_found, unknown_feed};
use super::generate::{feed_key, ts};
use super::state::{ApiError, Fault, Shared, State, Upstream, invalid, lock, parse_body};
use super::upstream::Controller;

#[derive(Clone)]
pub(crate) struct AdminCtx {
    pub state: Shared,
    pub central: Controller,
    pub payments: Controller,
    /// `GET /admin`'s answer: store id, upstream URLs, demo credentials.
    pub info: Arc<Value>,
}

pub(crate) fn router(ctx: AdminCtx) -> Router {
    Router::new()
        .route("/admin", get(info))
        .route("/admin/faults", get(faults))
        .route("/admin/faults/{upstream}", put(set_fault))
        .route("/admin/received", get(received))
        .route("/admin/heartbeats", get(heartbeats))
        .route("/admin/central/reject", put(set_reject))
        .route("/admin/central/feeds/{feed}/batches", post(append_batch))
        .route("/admin/central/feeds/stall", put(set_stall))
        .route("/admin/central/samples", post(super::samples::add_samples))
        .route(
            "/admin/central/orders/{order_id}/cancel",
            post(cancel_order),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(64 * 1024 * 1024))
        .layer(middleware::from_fn(cors))
        .with_state(ctx)
}

/// Any origin may call the controls: `standin demo`'s panel on the desk page (another port,
/// so another origin) takes central or the processor down from the browser. The simulator is
/// a test and demo tool, never in front of a real store, and its answers carry no secret the
/// demo does not print anyway. A preflight (`OPTIONS`, for a `PUT` with a JSON body) is
/// answered here, before routing.
async fn cors(req: Request, next: Next) -> Response {
    let mut res = if req.method() == Method::OPTIONS {
        let mut res = StatusCode::NO_CONTENT.into_response();
        let h = res.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, PUT, POST, OPTIONS"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("content-type"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        res
    } else {
        next.run(req).await
    };
    res.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    res
}

async fn info(AxState(ctx): AxState<AdminCtx>) -> Response {
    axum::Json(ctx.info.as_ref().clone()).into_response()
}

async fn faults(AxState(ctx): AxState<AdminCtx>) -> Response {
    let st = lock(&ctx.state);
    let mut body = json!({ "central": st.central_fault, "payments": st.payments_fault });
    // Only while HQ's updates are stalled: since when.
    if let Some(stall) = &st.feeds_stalled {
        body["feeds_stalled_since"] = json!(ts(stall.since));
    }
    axum::Json(body).into_response()
}

async fn set_fault(
    AxState(ctx): AxState<AdminCtx>,
    Path(upstream): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Some(which) = Upstream::parse(&upstream) else {
        let msg = "upstream must be central or payments";
        return Err(
            ApiError::new(StatusCode::NOT_FOUND, "unknown_upstream", msg).field("upstream"),
        );
    };
    let body = parse_body(&body)?;
    let fault = Fault::parse(&body).map_err(|(field, msg)| invalid(field, msg))?;
    let controller = match which {
        Upstream::Central => &ctx.central,
        Upstream::Payments => &ctx.payments,
    };
    match controller.set_fault(fault.clone()).await {
        Ok(()) => Ok(axum::Json(fault).into_response()),
        Err(msg) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "rebind_failed",
            msg,
        )),
    }
}

async fn received(AxState(ctx): AxState<AdminCtx>) -> Response {
    let st = lock(&ctx.state);
    let journal: Vec<Value> = st
        .journal
        .iter()
        .map(|r| {
            let mut v = json!({
                "id": r.id,
                "seq": r.entry.get("seq"),
                "lane": r.entry.get("lane"),
                "kind": r.entry.get("kind"),
                "push": r.push,
                "count": r.count,
                "outcome": r.outcome,
                "entry": r.entry,
            });
            if let Some(reason) = r.reason {
                v["reason"] = json!(reason);
            }
            v
        })
        .collect();
    let body = json!({
        "journal": journal,
        "authorizations": st.authorizations.records,
        "refunds": st.refunds.records,
    });
    drop(st);
    axum::Json(body).into_response()
}

fn strings(body: &Value, field: &str) -> Result<Vec<String>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| invalid(format!("{field}[{i}]"), "must be a string"))
            })
            .collect(),
        Some(_) => Err(invalid(
            field,
            format!("{field} must be an array of strings"),
        )),
    }
}

async fn set_reject(AxState(ctx): AxState<AdminCtx>, body: Bytes) -> Result<Response, ApiError> {
    let body = parse_body(&body)?;
    let (ids, kinds) = (strings(&body, "ids")?, strings(&body, "kinds")?);
    let mut st = lock(&ctx.state);
    st.reject_ids = ids.iter().cloned().collect();
    st.reject_kinds = kinds.iter().cloned().collect();
    drop(st);
    Ok(axum::Json(json!({ "ids": ids, "kinds": kinds })).into_response())
}

/// Appends a delta batch (the next number) and keeps central's view of orders in step.
pub(crate) fn append_delta(
    st: &mut State,
    feed: &str,
    upserts: Vec<Value>,
    deletes: Vec<String>,
) -> Option<Value> {
    let batches = st.feeds.get_mut(feed)?;
    let batch = json!({
        "batch": batches.len() + 1,
        "kind": "delta",
        "upserts": upserts,
        "deletes": deletes,
    });
    batches.push(Arc::from(batch.to_string()));
    if feed == "pickup_orders" {
        for u in &upserts {
            let id = u["order_id"].as_str().unwrap_or_default().to_owned();
            match (st.orders.get_mut(&id), u.as_object()) {
                (Some(Value::Object(known)), Some(fields)) => {
                    known.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
                _ => {
                    st.orders.insert(id, u.clone());
                }
            }
        }
        for d in &deletes {
            st.orders.remove(d);
        }
    }
    Some(batch)
}

async fn append_batch(
    AxState(ctx): AxState<AdminCtx>,
    Path(feed): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let key = feed_key(&feed).ok_or_else(unknown_feed)?;
    let body = parse_body(&body)?;
    let upserts = match body.get("upserts") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(u)) => u.clone(),
        Some(_) => return Err(invalid("upserts", "upserts must be an array of records")),
    };
    for (i, u) in upserts.iter().enumerate() {
        if u.get(key).and_then(Value::as_str).is_none_or(str::is_empty) {
            let msg = format!("each {feed} record needs a string {key}");
            return Err(invalid(format!("upserts[{i}].{key}"), msg));
        }
    }
    let deletes = strings(&body, "deletes")?;
    let batch = append_delta(&mut lock(&ctx.state), &feed, upserts, deletes);
    let batch = batch.ok_or_else(unknown_feed)?;
    Ok((StatusCode::CREATED, axum::Json(batch)).into_response())
}

/// `{"stalled": true, "since_secs_ago": n?}`: HQ's updates stop reaching central (central
/// keeps answering, with no new batch and its data as of then); `{"stalled": false}` resumes.
async fn set_stall(AxState(ctx): AxState<AdminCtx>, body: Bytes) -> Result<Response, ApiError> {
    let body = parse_body(&body)?;
    let Some(stalled) = body.get("stalled").and_then(Value::as_bool) else {
        return Err(invalid("stalled", "stalled must be true or false"));
    };
    let ago = match body.get("since_secs_ago") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_u64()
            .ok_or_else(|| invalid("since_secs_ago", "a whole number of seconds"))?,
    };
    let mut st = lock(&ctx.state);
    st.feeds_stalled = stalled.then(|| super::state::FeedStall {
        since: chrono::Utc::now()
            - chrono::Duration::seconds(i64::try_from(ago).unwrap_or(i64::MAX / 2)),
        served: st.feeds.iter().map(|(f, b)| (*f, b.len())).collect(),
    });
    let since = st.feeds_stalled.as_ref().map(|s| ts(s.since));
    drop(st);
    Ok(axum::Json(json!({ "stalled": stalled, "since": since })).into_response())
}

async fn cancel_order(
    AxState(ctx): AxState<AdminCtx>,
    Path(order_id): Path<String>,
) -> Result<Response, ApiError> {
    let mut st = lock(&ctx.state);
    let Some(order) = st.orders.get(&order_id) else {
        drop(st);
        let msg = "central has no such order";
        return Err(ApiError::new(StatusCode::NOT_FOUND, "unknown_order", msg).field("order_id"));
    };
    let mut order = order.clone();
    order["status"] = json!("cancelled");
    order["updated_at"] = json!(ts(chrono::Utc::now()));
    let batch = append_delta(&mut st, "pickup_orders", vec![order], Vec::new());
    drop(st);
    Ok((StatusCode::CREATED, axum::Json(batch)).into_response())
}

/// The newest heartbeat each store sent, how many arrived, and when the last did.
async fn heartbeats(AxState(ctx): AxState<AdminCtx>) -> Response {
    let st = lock(&ctx.state);
    let stores: serde_json::Map<String, Value> = st
        .heartbeats
        .iter()
        .map(|(store, r)| {
            (
                store.clone(),
                json!({ "latest": r.latest, "received": r.received, "last_contact": ts(r.last_contact) }),
            )
        })
        .collect();
    axum::Json(json!({ "stores": stores })).into_response()
}
