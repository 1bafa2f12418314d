//! Staff sessions: a random 128-bit token in an `HttpOnly`, `SameSite=Strict` cookie, stored
//! only as its SHA-256, with an idle and an absolute timeout. Every request re-reads the
//! staff member, so one disabled or removed by a feed batch loses access at once, even with
//! central down. The CSRF token is derived from the session token, so nothing else is stored.

use axum::http::HeaderMap;
use axum::http::header::COOKIE;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use rand::RngCore;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::Role;
use super::token::sha256_hex;
use crate::config::AccessConfig;

pub const COOKIE_NAME: &str = "standin_session";

/// `last_seen_at` is rewritten at most this often: an idle timeout of minutes does not need
/// a durable write on every request.
const TOUCH_EVERY: Duration = Duration::seconds(60);

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse(t: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The CSRF token for a session: HMAC-like derivation from the secret session token.
pub fn csrf_for(session_token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"standin-csrf\n");
    h.update(session_token.as_bytes());
    hex::encode(&h.finalize()[..16])
}

/// A new random session token: 128 bits, hex.
pub fn new_token() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// Stores a new session for `employee_id`; returns when it ends at the latest.
pub fn create(
    conn: &Connection,
    token: &str,
    employee_id: &str,
    client: Option<&str>,
    now: DateTime<Utc>,
    cfg: &AccessConfig,
) -> rusqlite::Result<DateTime<Utc>> {
    let expires = now + Duration::hours(i64::from(cfg.session_absolute_hours));
    // Sessions that ended are swept here: logins are rare enough to carry it.
    conn.execute(
        "DELETE FROM sessions WHERE expires_at <= ?1",
        [rfc3339(now)],
    )?;
    conn.execute(
        "INSERT INTO sessions (token_sha256, employee_id, created_at, last_seen_at, expires_at, client)
         VALUES (?1, ?2, ?3, ?3, ?4, ?5)",
        params![sha256_hex(token), employee_id, rfc3339(now), rfc3339(expires), client],
    )?;
    Ok(expires)
}

/// A live session, with the staff member as the staff feed has them now.
#[derive(Debug, Clone, Serialize)]
pub struct Session {
    pub employee_id: String,
    pub name: String,
    pub role: Role,
    pub expires_at: DateTime<Utc>,
    pub idle_expires_at: DateTime<Utc>,
    #[serde(skip)]
    pub needs_touch: bool,
}

/// Finds the session for `token` if it is live and its employee is still active, with when
/// it was last seen (for [`SessionCache`]).
pub fn lookup(
    conn: &Connection,
    token: &str,
    now: DateTime<Utc>,
    cfg: &AccessConfig,
) -> rusqlite::Result<Option<(Session, DateTime<Utc>)>> {
    let row = conn
        .prepare_cached(
            "SELECT s.employee_id, s.last_seen_at, s.expires_at, st.name, st.role
             FROM sessions s JOIN staff st ON st.employee_id = s.employee_id AND st.active = 1
             WHERE s.token_sha256 = ?1",
        )?
        .query_row([sha256_hex(token)], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
            ))
        })
        .optional()?;
    let Some((employee_id, last_seen, expires, name, role)) = row else {
        return Ok(None);
    };
    let (Some(last_seen), Some(expires_at)) = (parse(&last_seen), parse(&expires)) else {
        return Ok(None);
    };
    let idle_expires_at =
        (last_seen + Duration::minutes(i64::from(cfg.session_idle_minutes))).min(expires_at);
    if now >= idle_expires_at {
        return Ok(None);
    }
    let role = match role.as_str() {
        "manager" => Role::Manager,
        "lead" => Role::Lead,
        _ => Role::Associate,
    };
    let needs_touch = now - last_seen >= TOUCH_EVERY;
    let session = Session {
        employee_id,
        name,
        role,
        expires_at,
        idle_expires_at,
        needs_touch,
    };
    Ok(Some((session, last_seen)))
}

/// Restarts the idle clock.
pub fn touch(conn: &Connection, token: &str, now: DateTime<Utc>) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE sessions SET last_seen_at = ?2 WHERE token_sha256 = ?1",
        params![sha256_hex(token), rfc3339(now)],
    )
    .map(drop)
}

pub fn destroy(conn: &Connection, token: &str) -> rusqlite::Result<()> {
    conn.execute(
        "DELETE FROM sessions WHERE token_sha256 = ?1",
        [sha256_hex(token)],
    )
    .map(drop)
}

/// The session token from the request's cookies, if any.
pub fn token_from(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE_NAME)
        .map(|(_, v)| v.to_string())
        .filter(|v| v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `Set-Cookie` for a new session. No `Max-Age`: the cookie dies with the browser, and the
/// server's timeouts decide the rest.
pub fn set_cookie(token: &str, cfg: &AccessConfig) -> String {
    let secure = if cfg.secure_cookies { "; Secure" } else { "" };
    format!("{COOKIE_NAME}={token}; Path=/; HttpOnly; SameSite=Strict{secure}")
}

pub fn clear_cookie(cfg: &AccessConfig) -> String {
    let secure = if cfg.secure_cookies { "; Secure" } else { "" };
    format!("{COOKIE_NAME}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}")
}

/// Live sessions kept in memory, so a staff request does not read SQLite before its data.
///
/// Revocation stays immediate: every applied staff feed batch bumps the generation, and an
/// entry from an older generation is never trusted (it is read again from the database, which
/// joins the staff row). Signing out removes the entry. Timeouts are checked on every hit.
#[derive(Default)]
pub struct SessionCache {
    generation: std::sync::atomic::AtomicU64,
    entries: std::sync::Mutex<std::collections::HashMap<String, Cached>>,
}

/// A session as last read, with the generation it was read under and when it was last seen.
#[derive(Clone)]
struct Cached {
    generation: u64,
    session: Session,
    last_seen: DateTime<Utc>,
}

/// Most sessions held; past it the cache starts over (a store has tens of staff, not thousands).
const CACHE_MAX: usize = 10_000;

impl SessionCache {
    /// Staff data changed: nothing cached so far may be trusted.
    pub fn invalidate(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn forget(&self, token: &str) {
        if let Ok(mut m) = self.entries.lock() {
            m.remove(&sha256_hex(token));
        }
    }

    /// The live session for `token`, from memory when it can be trusted, else from `read`.
    pub fn get(
        &self,
        token: &str,
        now: DateTime<Utc>,
        cfg: &AccessConfig,
        read: impl FnOnce() -> rusqlite::Result<Option<(Session, DateTime<Utc>)>>,
    ) -> rusqlite::Result<Option<Session>> {
        let key = sha256_hex(token);
        let generation = self.generation.load(std::sync::atomic::Ordering::SeqCst);
        let cached = self
            .entries
            .lock()
            .ok()
            .and_then(|m| m.get(&key).filter(|c| c.generation == generation).cloned());
        let from_cache = cached.is_some();
        let (mut session, last_seen) = match cached {
            Some(c) => (c.session, c.last_seen),
            None => match read()? {
                Some(found) => found,
                None => return Ok(None),
            },
        };
        let idle_expires_at = (last_seen + Duration::minutes(i64::from(cfg.session_idle_minutes)))
            .min(session.expires_at);
        if now >= idle_expires_at {
            self.forget(token);
            return Ok(None);
        }
        session.idle_expires_at = idle_expires_at;
        session.needs_touch = now - last_seen >= TOUCH_EVERY;
        // A hit that changes nothing stays as it is: most requests take the lock once.
        if from_cache && !session.needs_touch {
            return Ok(Some(session));
        }
        if let Ok(mut m) = self.entries.lock() {
            if m.len() >= CACHE_MAX {
                m.clear();
            }
            // A touch is about to restart the idle clock; record it as seen now.
            let seen = if session.needs_touch { now } else { last_seen };
            m.insert(
                key,
                Cached {
                    generation,
                    session: session.clone(),
                    last_seen: seen,
                },
            );
        }
        Ok(Some(session))
    }
}
