//! Who may call a route. Every route names one [`Access`] (in the route kit); this is the
//! single place that enforces it. Each kind of credential opens only its own kind of route: a session cookie
//! never opens a kiosk or sync route, a device token never a sync or staff route, and so on.

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, HOST, ORIGIN};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::token::{digest_eq, sha256_hex};
use super::{Caller, Permission, allowed, kiosk, session};
use crate::error::AppError;
use crate::http::{Access, CSRF_HEADER};
use crate::state::AppState;

pub async fn check(
    State((state, access)): State<(AppState, Access)>,
    req: Request,
    next: Next,
) -> Response {
    // Split so the borrow held across the database lookup is of `Sync` parts only.
    let (mut parts, body) = req.into_parts();
    match admit(&state, access, &parts).await {
        Ok(caller) => {
            if let Some(actor) = caller.actor() {
                tracing::Span::current().record("caller", actor.as_str());
            }
            parts.extensions.insert(caller);
            next.run(Request::from_parts(parts, body)).await
        }
        Err(e) => e.into_response(),
    }
}

async fn admit(
    state: &AppState,
    access: Access,
    req: &axum::http::request::Parts,
) -> Result<Caller, AppError> {
    let headers = &req.headers;
    match access {
        Access::Public => Ok(Caller::Anyone),
        Access::SameOrigin => {
            if !same_origin(headers) {
                return Err(AppError::Forbidden("cross-site request refused".into()));
            }
            Ok(Caller::Anyone)
        }
        Access::Sync => bearer_with_scope(state, headers, "sync").map(|name| Caller::Sync {
            name: name.to_string(),
        }),
        Access::Kiosk => kiosk::authenticate(state, bearer(headers)?).await,
        Access::Staff(permission) => staff(state, permission, &req.method, headers).await,
    }
}

async fn staff(
    state: &AppState,
    permission: Permission,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Caller, AppError> {
    let token = session::token_from(headers).ok_or(AppError::Unauthorized)?;
    let now = state.clock.now();
    let cfg = state.config.access.clone();
    let (t, c2) = (token.clone(), cfg.clone());
    let cache = state.sessions.clone();
    // A cache hit answers at once; a miss reads SQLite on the pool, off the runtime.
    let found = match cache.get(&token, now, &cfg, || Ok(None)) {
        Ok(Some(s)) => Some(s),
        _ => {
            state
                .store
                .read(move |c| {
                    cache
                        .get(&t, now, &c2, || session::lookup(c, &t, now, &c2))
                        .map_err(AppError::from)
                })
                .await?
        }
    }
    .ok_or(AppError::Unauthorized)?;
    if !method.is_safe() {
        // CSRF: a state change must come from our own pages (Origin / Sec-Fetch-Site) and
        // carry the token only our pages can read.
        if !same_origin(headers) {
            return Err(AppError::Forbidden("cross-site request refused".into()));
        }
        let sent = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !digest_eq(sent, &session::csrf_for(&token)) {
            return Err(AppError::Forbidden("missing or wrong CSRF token".into()));
        }
    }
    if !allowed(found.role, permission) {
        return Err(AppError::Forbidden(format!(
            "a {} may not do this",
            found.role.as_str()
        )));
    }
    if found.needs_touch {
        let t = token.clone();
        // Best effort: a failed touch only makes the idle timeout a little stricter.
        let _ = state
            .store
            .write(move |c| session::touch(c, &t, now).map_err(AppError::from))
            .await;
    }
    Ok(Caller::Staff {
        employee_id: found.employee_id,
        name: found.name,
        role: found.role,
    })
}

/// True unless the browser says the request comes from another site. Browsers send
/// `Sec-Fetch-Site` (and `Origin` on every cross-origin or state-changing request); a client
/// that sends neither is not a browser being driven by another site.
fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return site == "same-origin";
    }
    match headers.get(ORIGIN).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(origin) => {
            let host = headers
                .get(HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let origin_host = origin
                .split_once("://")
                .map_or("", |(_, h)| h.trim_end_matches('/'));
            !host.is_empty() && origin_host.eq_ignore_ascii_case(host)
        }
    }
}

fn bearer(headers: &HeaderMap) -> Result<&str, AppError> {
    let header = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(AppError::Unauthorized)?;
    header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 256)
        .ok_or(AppError::Unauthorized)
}

/// The configured token name for a valid bearer token carrying `scope`.
fn bearer_with_scope<'a>(
    state: &'a AppState,
    headers: &HeaderMap,
    scope: &str,
) -> Result<&'a str, AppError> {
    let digest = sha256_hex(bearer(headers)?);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, v.parse().unwrap());
        }
        m
    }

    #[test]
    fn same_origin_rules() {
        assert!(same_origin(&h(&[])));
        assert!(same_origin(&h(&[("sec-fetch-site", "same-origin")])));
        assert!(!same_origin(&h(&[("sec-fetch-site", "cross-site")])));
        assert!(!same_origin(&h(&[("sec-fetch-site", "same-site")])));
        assert!(same_origin(&h(&[
            ("host", "10.0.0.5:8080"),
            ("origin", "http://10.0.0.5:8080")
        ])));
        assert!(!same_origin(&h(&[
            ("host", "10.0.0.5:8080"),
            ("origin", "http://evil.example")
        ])));
        assert!(!same_origin(&h(&[
            ("host", "10.0.0.5:8080"),
            ("origin", "null")
        ])));
    }
}
