//! Operations: liveness, readiness (PostgreSQL reachable, schema current), metrics (with the
//! fleet gauges of [`super::fleet`]), and central's own health path.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{HubError, HubState, db};

/// `GET /v1/health`: central is up while the process serves (the store's probe).
pub async fn health() -> Response {
    axum::Json(json!({ "status": "ok" })).into_response()
}

pub async fn healthz() -> Response {
    axum::Json(json!({ "status": "ok" })).into_response()
}

/// 200 once PostgreSQL answers and its schema is the one this binary needs; 503 with the
/// reason otherwise, in API.md's error shape (code `not_ready`) and with `Retry-After`.
pub async fn readyz(State(state): State<HubState>) -> Response {
    let not_ready = |reason: String| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(
                header::RETRY_AFTER,
                super::UNAVAILABLE_AT_LEAST_SECS.to_string(),
            )],
            axum::Json(json!({
                "status": "not_ready",
                "reason": reason,
                "error": { "code": "not_ready", "message": reason },
            })),
        )
            .into_response()
    };
    let version = state
        .pool
        .run(async |client| Ok(db::schema_version(client).await))
        .await;
    let version = match version {
        Ok(v) => v,
        Err(e) => return not_ready(format!("PostgreSQL unreachable: {e}")),
    };
    match version {
        Ok(v) if v == db::SCHEMA_VERSION => {
            axum::Json(json!({ "status": "ready", "schema_version": v })).into_response()
        }
        Ok(v) => not_ready(format!(
            "schema version {v}, this binary needs {} (run standin hub migrate)",
            db::SCHEMA_VERSION
        )),
        Err(e) => not_ready(format!("PostgreSQL error: {e}")),
    }
}

pub async fn metrics(State(state): State<HubState>) -> Response {
    let limit = state.config.intake_at_once.max(1);
    let in_use = limit.saturating_sub(state.intake_permits.available_permits());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], {
        let fleet = super::fleet::read_shared(&state).await.ok();
        let connections = state.connections.get().map(|r| r.counts());
        let mut text = state.metrics.render(in_use, limit, connections);
        text.push_str(&super::fleet::render_metrics(fleet.as_deref()));
        text
    })
        .into_response()
}

pub async fn not_found() -> HubError {
    HubError::NotFound("not_found", "no such route".into())
}
