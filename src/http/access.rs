//! Who may call a route. Every route names one [`Access`]; this is the single place that
//! enforces it.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::access::token::{digest_eq, sha256_hex};
use crate::error::AppError;
use crate::state::AppState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (health, status, the UI's static assets, the OpenAPI document).
    Public,
    /// The HQ sync job: a bearer token whose configured scopes include `sync`.
    Sync,
}

pub async fn check(
    State((state, access)): State<(AppState, Access)>,
    req: Request,
    next: Next,
) -> Response {
    match access {
        Access::Public => next.run(req).await,
        Access::Sync => match bearer_with_scope(&state, &req, "sync") {
            Ok(name) => {
                tracing::Span::current().record("caller", name);
                next.run(req).await
            }
            Err(e) => e.into_response(),
        },
    }
}

/// The configured token name for a valid bearer token carrying `scope`.
fn bearer_with_scope<'a>(
    state: &'a AppState,
    req: &Request,
    scope: &str,
) -> Result<&'a str, AppError> {
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(AppError::Unauthorized)?;
    let token = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(AppError::Unauthorized)?;
    let digest = sha256_hex(token);
    let holder = state
        .config
        .tokens
        .iter()
        .find(|t| digest_eq(&t.sha256.to_ascii_lowercase(), &digest))
        .ok_or(AppError::Unauthorized)?;
    if holder.scopes.iter().any(|s| s == scope) {
        Ok(&holder.name)
    } else {
        Err(AppError::Forbidden(format!(
            "this token does not carry the `{scope}` scope"
        )))
    }
}
