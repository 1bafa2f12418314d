//! Signing in and out: `POST`/`GET`/`DELETE /api/v1/session`, and the PIN check that manager
//! overrides share. Every answer to a wrong id or PIN is the same, and unknown ids get the
//! same Argon2 work and the same lockout as real ones, so nothing tells who works here.

use std::net::IpAddr;

use axum::Extension;
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Duration, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::lockout::{self, Failures};
use super::{Caller, Permission, Role, session};
use crate::error::AppError;
use crate::http::{Access, ApiJson, ClientAddr, Route};
use crate::journal::{self, Lane, NewEntry};
use crate::state::AppState;

pub fn routes() -> Vec<Route<AppState>> {
    vec![
        Route::new(
            Method::POST,
            "/api/v1/session",
            Access::SameOrigin,
            post(log_in),
        ),
        Route::new(
            Method::GET,
            "/api/v1/session",
            Access::Staff(Permission::Session),
            get(who_am_i),
        ),
        Route::new(
            Method::DELETE,
            "/api/v1/session",
            Access::Staff(Permission::Session),
            axum::routing::delete(log_out),
        ),
    ]
}

/// A staff member whose PIN was just checked.
#[derive(Debug, Clone)]
pub struct Verified {
    pub employee_id: String,
    pub name: String,
    pub role: Role,
}

/// A verifier no PIN matches, checked for unknown ids so they cost the same time.
const DECOY_VERIFIER: &str = "$argon2id$v=19$m=19456,t=2,p=1$c3RhbmRpbi1kZWNveS1zYWx0$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

fn parse_time(t: Option<String>) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(&t?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn read_failures(c: &Connection, employee_id: &str) -> rusqlite::Result<Option<Failures>> {
    c.query_row(
        "SELECT failures, locked_until FROM login_failures WHERE employee_id = ?1",
        [employee_id],
        |r| {
            Ok(Failures {
                count: r.get(0)?,
                locked_until: parse_time(r.get(1)?),
            })
        },
    )
    .optional()
}

/// Checks `pin` for `employee_id` under the lockout rules, journaling failures and lockouts.
/// `purpose` names what it is for in the journal (`login`, `override:return.taken`…).
///
/// The attempt is counted before the PIN is checked, against the client address (in memory)
/// and against the employee id (in the same write that reads its lockout), so however many
/// attempts arrive at once no more than the limits are ever checked; a right PIN gives both
/// back. Sign-in and manager override share this path and so the same counts.
pub async fn check_pin(
    state: &AppState,
    employee_id: &str,
    pin_text: &str,
    client: Option<IpAddr>,
    purpose: &str,
) -> Result<Verified, AppError> {
    let cfg = state.config.access.clone();
    let now = state.clock.now();
    let ip = client.unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let window = Duration::minutes(i64::from(cfg.address_window_minutes));
    let address = state
        .login_limiter
        .reserve(ip, now, cfg.address_failures, window)
        .ok_or_else(|| AppError::TooManyRequests {
            message: "too many wrong PINs from this device; try again later".into(),
            retry_after_secs: window.num_seconds().max(1) as u64,
        })?;
    let (limit, lock_for) = (
        cfg.lockout_failures,
        Duration::minutes(i64::from(cfg.lockout_minutes)),
    );
    let (id, now_s) = (employee_id.to_string(), state.clock.now_rfc3339());
    let (reserved, staff) = state
        .store
        .write(move |c| {
            let before = read_failures(c, &id)?;
            let after = match lockout::reserve(before, now, limit, lock_for) {
                Ok(after) => after,
                Err(until) => return Ok(Err(until)),
            };
            c.execute(
                "INSERT INTO login_failures (employee_id, failures, first_failed_at, locked_until) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (employee_id) DO UPDATE SET failures = excluded.failures, locked_until = excluded.locked_until",
                params![id, after.count, now_s, after.locked_until.map(|t| t.to_rfc3339())],
            )?;
            let s = c
                .query_row("SELECT name, role, pin_verifier FROM staff WHERE employee_id = ?1 AND active = 1", [&id], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
                })
                .optional()?;
            Ok::<_, AppError>(Ok((after, s)))
        })
        .await?
        .map_err(|until| locked(until, now))?;
    let verifier = staff
        .as_ref()
        .map_or(DECOY_VERIFIER.to_string(), |s| s.2.clone());
    // One check per address at a time: a flood from one address queues behind itself.
    let turn = state.login_limiter.turn(ip).await;
    let matched = state
        .pin_checks
        .verify(pin_text, &verifier, state.config.pepper.expose().as_bytes())
        .await;
    drop(turn);

    let (store_id, now_s, id, purpose, client_s) = (
        state.config.store_id.clone(),
        state.clock.now_rfc3339(),
        employee_id.to_string(),
        purpose.to_string(),
        client.map(|c| c.to_string()),
    );
    match (matched, staff) {
        (true, Some((name, role, _))) => {
            address.succeeded();
            let role = match role.as_str() {
                "manager" => Role::Manager,
                "lead" => Role::Lead,
                _ => Role::Associate,
            };
            state
                .store
                .write(move |c| {
                    c.execute("DELETE FROM login_failures WHERE employee_id = ?1", [&id])
                        .map_err(AppError::from)
                })
                .await?;
            Ok(Verified {
                employee_id: employee_id.to_string(),
                name,
                role,
            })
        }
        _ => {
            // Already counted when reserved; the journal says what happened.
            state
                .store
                .write(move |c| {
                    let body = json!({"employee_id": id, "purpose": purpose, "client": client_s, "failures": reserved.count});
                    let entry = |kind: &str| NewEntry { lane: Lane::Audit, kind: kind.into(), actor: Some(id.clone()), device: client_s.clone(), body: body.clone() };
                    journal::append(c, &store_id, &now_s, entry("staff.pin_refused"))?;
                    if reserved.locked_until.is_some() {
                        journal::append(c, &store_id, &now_s, entry("staff.locked_out"))?;
                    }
                    Ok::<_, AppError>(())
                })
                .await?;
            state.journal_appended.notify_one();
            Err(AppError::InvalidCredentials)
        }
    }
}

fn locked(until: DateTime<Utc>, now: DateTime<Utc>) -> AppError {
    AppError::TooManyRequests {
        message: "this employee id is locked after too many wrong PINs".into(),
        retry_after_secs: (until - now).num_seconds().max(1) as u64,
    }
}

/// The longest employee id or PIN sign-in takes, in characters (`maxLength` in the OpenAPI
/// document).
pub const CREDENTIAL_MAX_CHARS: usize = 64;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    employee_id: String,
    pin: String,
}

#[derive(Serialize)]
struct SignedIn {
    employee_id: String,
    name: String,
    role: Role,
    /// Send back as `X-CSRF-Token` on every state-changing request.
    csrf_token: String,
    expires_at: DateTime<Utc>,
    idle_minutes: u32,
}

async fn log_in(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    ApiJson(creds): ApiJson<Credentials>,
) -> Result<Response, AppError> {
    for (field, v) in [("employee_id", &creds.employee_id), ("pin", &creds.pin)] {
        if !crate::http::is_short_text(v, CREDENTIAL_MAX_CHARS) {
            return Err(AppError::invalid(
                "invalid_field",
                field,
                "must be 1 to 64 characters",
            ));
        }
    }
    let who = check_pin(&state, creds.employee_id.trim(), &creds.pin, ip, "login").await?;
    // A new token on every login: a session id is never carried across a sign-in.
    let token = session::new_token();
    let cfg = state.config.access.clone();
    let now = state.clock.now();
    let (store_id, now_s) = (state.config.store_id.clone(), state.clock.now_rfc3339());
    let (t, id, role, client) = (
        token.clone(),
        who.employee_id.clone(),
        who.role,
        ip.map(|i| i.to_string()),
    );
    let expires_at = state
        .store
        .write(move |c| {
            let expires = session::create(c, &t, &id, client.as_deref(), now, &cfg)?;
            let body = json!({"employee_id": id, "role": role.as_str(), "client": client});
            journal::append(
                c,
                &store_id,
                &now_s,
                NewEntry {
                    lane: Lane::Audit,
                    kind: "staff.signed_in".into(),
                    actor: Some(id.clone()),
                    device: client,
                    body,
                },
            )?;
            Ok::<_, AppError>(expires)
        })
        .await?;
    state.journal_appended.notify_one();
    let body = SignedIn {
        employee_id: who.employee_id,
        name: who.name,
        role: who.role,
        csrf_token: session::csrf_for(&token),
        expires_at,
        idle_minutes: state.config.access.session_idle_minutes,
    };
    let mut res = (StatusCode::OK, ApiJson(body)).into_response();
    set_header(
        &mut res,
        SET_COOKIE,
        &session::set_cookie(&token, &state.config.access),
    );
    Ok(res)
}

fn set_header(res: &mut Response, name: axum::http::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        res.headers_mut().insert(name, v);
    }
    res.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

async fn who_am_i(
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    State(state): State<AppState>,
) -> Result<Response, AppError> {
    let Caller::Staff {
        employee_id,
        name,
        role,
    } = caller
    else {
        return Err(AppError::Unauthorized);
    };
    let token = session::token_from(&headers).ok_or(AppError::Unauthorized)?;
    let mut res = ApiJson(json!({
        "employee_id": employee_id,
        "name": name,
        "role": role,
        "csrf_token": session::csrf_for(&token),
        "idle_minutes": state.config.access.session_idle_minutes,
    }))
    .into_response();
    res.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

async fn log_out(
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    State(state): State<AppState>,
) -> Result<Response, AppError> {
    let token = session::token_from(&headers).ok_or(AppError::Unauthorized)?;
    let (store_id, now_s, actor) = (
        state.config.store_id.clone(),
        state.clock.now_rfc3339(),
        caller.actor(),
    );
    state
        .store
        .write(move |c| {
            session::destroy(c, &token)?;
            let body = json!({"employee_id": actor});
            journal::append(
                c,
                &store_id,
                &now_s,
                NewEntry {
                    lane: Lane::Audit,
                    kind: "staff.signed_out".into(),
                    actor,
                    device: None,
                    body,
                },
            )?;
            Ok::<_, AppError>(())
        })
        .await?;
    // After the commit: a request that read the session just before it cannot have cached
    // it under the new generation, so the session is gone everywhere from here on.
    state.sessions.invalidate();
    let mut res = StatusCode::NO_CONTENT.into_response();
    set_header(
        &mut res,
        SET_COOKIE,
        &session::clear_cookie(&state.config.access),
    );
    Ok(res)
}
