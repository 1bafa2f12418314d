//! Each store authenticates with its own bearer token (issued by `standin hub store add`,
//! kept only as SHA-256) and may use only its own `{store}` paths.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{HubError, HubState};
use crate::access::token::sha256_hex;

/// Token hash → store id, for tokens already seen valid: the hot paths then ask PostgreSQL
/// nothing to authenticate. Replaced whole from the `stores` table every
/// `token_refresh_secs` ([`keep_fresh`]), so a token rotated (`standin hub store rotate`)
/// stops working on every hub process within that; a cache not refreshed for two intervals
/// is not trusted (each token is looked up); misses are not cached.
pub struct TokenCache(Mutex<Tokens>, tokio::sync::Semaphore);

impl Default for TokenCache {
    fn default() -> Self {
        Self(
            Mutex::default(),
            tokio::sync::Semaphore::new(LOOKUPS_AT_ONCE),
        )
    }
}

/// Tokens not in the cache looked up at once per process, each on a shared connection. No
/// credential is needed to send a made-up token, so without this strangers' requests could
/// hold every connection the fleet's feed pulls share (7 by default). A store's first request
/// after it was added, or every request while the cache is not trusted, waits up to
/// [`LOOKUP_WAIT`] for its turn, then is answered `busy` with a `Retry-After`.
const LOOKUPS_AT_ONCE: usize = 2;
const LOOKUP_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Default)]
struct Tokens {
    by_hash: HashMap<String, String>,
    /// When the cache was last made whole from the table ([`warm`]).
    refreshed: Option<std::time::Instant>,
}

impl TokenCache {
    /// The store `hash` belongs to, when cached and the cache was made whole within
    /// `max_age`: a cache that could not be refreshed for longer (PostgreSQL away, the
    /// shared connections busy) is not trusted, so a rotated token stops working still.
    fn get(&self, hash: &str, max_age: std::time::Duration) -> Option<String> {
        let t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        t.refreshed
            .is_some_and(|at| at.elapsed() <= max_age)
            .then(|| t.by_hash.get(hash).cloned())
            .flatten()
    }

    fn put(&self, hash: String, store: String) {
        self.put_all([(hash, store)]);
    }

    /// Caches each (token hash, store) pair; the cache starts over when it reaches its bound.
    fn put_all(&self, pairs: impl IntoIterator<Item = (String, String)>) {
        let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for (hash, store) in pairs {
            if t.by_hash.len() >= CACHE_BOUND {
                t.by_hash.clear();
            }
            t.by_hash.insert(hash, store);
        }
    }

    /// The cache becomes exactly `pairs` (at most the bound), refreshed now.
    fn replace_all(&self, pairs: impl IntoIterator<Item = (String, String)>) {
        let fresh: HashMap<String, String> = pairs.into_iter().take(CACHE_BOUND).collect();
        let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        t.by_hash = fresh;
        t.refreshed = Some(std::time::Instant::now());
    }

    /// How many tokens are cached.
    pub fn len(&self) -> usize {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_hash
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Makes the cache every registered store's token hash, in one query, returning how many.
/// A hub process that starts while a fleet waits for it (after an outage, a deploy, a crash)
/// then authenticates the thousands of stores that come back at once without a query each
/// through the pool the intake needs. A store registered later is looked up on its first
/// request. A token no longer in the table (rotated) leaves the cache. At most the bound.
pub async fn warm(state: &HubState) -> anyhow::Result<usize> {
    state
        .pool
        .run(async |client| Ok(warm_on(state, client).await))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
}

async fn warm_on(state: &HubState, client: &tokio_postgres::Client) -> anyhow::Result<usize> {
    let rows = client
        .query(
            "SELECT token_sha256, store_id FROM stores LIMIT $1",
            &[&(CACHE_BOUND as i64)],
        )
        .await?;
    let n = rows.len();
    state
        .tokens
        .replace_all(rows.into_iter().map(|r| (r.get(0), r.get(1))));
    Ok(n)
}

/// [`warm`] at start, then every `token_refresh_secs`, for as long as the process serves,
/// on a connection of its own: a crowd of feed pulls holding the shared ones must not
/// starve it (after two missed intervals the cache is not trusted, and every store's
/// request would look its token up on those same connections). A refresh that fails
/// (PostgreSQL away) keeps the cache as it was and is tried again a second later.
pub async fn keep_fresh(state: HubState) {
    let every = std::time::Duration::from_secs(state.config.token_refresh_secs.max(1));
    let mut client: Option<tokio_postgres::Client> = None;
    let mut first = true;
    loop {
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            client = super::db::connect(state.config.database_url.expose())
                .await
                .ok();
        }
        // Bounded: a frozen PostgreSQL must not stop the refreshes for good (the connection
        // is dropped and made again).
        let done = match &client {
            Some(c) => tokio::time::timeout(every.max(REFRESH_BOUND), warm_on(&state, c))
                .await
                .unwrap_or_else(|_| {
                    client = None;
                    Err(anyhow::anyhow!(
                        "PostgreSQL did not answer the token refresh"
                    ))
                }),
            None => Err(anyhow::anyhow!("cannot connect to PostgreSQL")),
        };
        match &done {
            Ok(n) if first => tracing::info!(stores = n, "store tokens cached"),
            Ok(_) => {}
            Err(e) if first => tracing::info!(
                error = %e,
                "store tokens not cached at start; each is looked up on first use"
            ),
            Err(e) => tracing::debug!(error = %e, "store tokens not refreshed"),
        }
        first = false;
        let wait = if done.is_ok() {
            every
        } else {
            std::time::Duration::from_secs(1).min(every)
        };
        tokio::time::sleep(wait).await;
    }
}

/// The least time a token refresh is given before its connection is dropped.
const REFRESH_BOUND: std::time::Duration = std::time::Duration::from_secs(10);

/// The most tokens the cache holds: a fleet is thousands of stores, not millions.
const CACHE_BOUND: usize = 200_000;

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

/// The guard in front of every `/v1/stores/{store}/…` route (`hub::app` declares them
/// behind it, in one table): the request's token must be `{store}`'s own before the handler
/// runs, so a stranger's body is never read, and a route added to that table is covered
/// without its author remembering. A route there without `{store}` is refused (403), and a
/// path whose parameters are not text (422, JSON) never reaches the handler's own extractor.
pub async fn store_guard(
    State(state): State<HubState>,
    path: Result<Path<HashMap<String, String>>, PathRejection>,
    request: Request,
    next: Next,
) -> Response {
    let params = match path {
        Ok(Path(params)) => params,
        // axum's own rejection is plain text; every hub error is JSON naming the field.
        Err(rejection) => {
            use axum::extract::path::ErrorKind;
            let field = match &rejection {
                PathRejection::FailedToDeserializePathParams(e) => match e.kind() {
                    ErrorKind::InvalidUtf8InPathParam { key }
                    | ErrorKind::ParseErrorAtKey { key, .. }
                    | ErrorKind::DeserializeError { key, .. } => key.clone(),
                    _ => "path".into(),
                },
                _ => "path".into(),
            };
            return HubError::Invalid {
                code: "invalid_path",
                field,
                message: rejection.body_text(),
            }
            .into_response();
        }
    };
    let Some(store) = params.get("store") else {
        return HubError::Forbidden.into_response();
    };
    if let Err(e) = require_store(&state, request.headers(), store).await {
        return e.into_response();
    }
    // Its token is the store's: the request counts in the store's share of the process
    // until it is answered, whatever route it is for (`share::REQUESTS_PER_STORE`).
    let _slot = match state.take_share(store, super::share::Kind::Request) {
        Ok(slot) => slot,
        Err(e) => return e.into_response(),
    };
    next.run(request).await
}

/// Succeeds when the request's token is `store`'s own.
async fn require_store(state: &HubState, headers: &HeaderMap, store: &str) -> Result<(), HubError> {
    let token = bearer(headers).ok_or(HubError::Unauthorized)?;
    let hash = sha256_hex(token);
    // Trusted for two refresh intervals and a margin: one refresh may fail.
    let max_age = std::time::Duration::from_secs(state.config.token_refresh_secs.max(1) * 2 + 5);
    let owner = match state.tokens.get(&hash, max_age) {
        Some(s) => s,
        None => {
            let turn = tokio::time::timeout(LOOKUP_WAIT, state.tokens.1.acquire()).await;
            let Ok(Ok(_turn)) = turn else {
                state.metrics.refused_token_lookup();
                return Err(HubError::Busy(state.retry_after(store)));
            };
            let row = state
                .pool
                .run(async |client| {
                    Ok(client
                        .query_opt(
                            "SELECT store_id FROM stores WHERE token_sha256 = $1",
                            &[&hash],
                        )
                        .await?)
                })
                .await
                .map_err(|e| state.db_error(store, super::metrics::Work::TokenLookup, e))?;
            let Some(row) = row else {
                return Err(HubError::Unauthorized);
            };
            let owner: String = row.get(0);
            state.tokens.put(hash, owner.clone());
            owner
        }
    };
    if owner == store {
        state.heard_from(store);
        Ok(())
    } else {
        Err(HubError::Forbidden)
    }
}

/// Registers `store`, returning its new token (shown once; only its hash is kept).
pub async fn add_store(client: &tokio_postgres::Client, store: &str) -> anyhow::Result<String> {
    // A store puts its id in its URLs as it is: only what needs no encoding there.
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if store.is_empty() || store.len() > 128 || !store.chars().all(plain) || store.starts_with('.')
    {
        anyhow::bail!(
            "a store id is 1 to 128 of the characters A-Z a-z 0-9 - _ . and does not start with '.'"
        );
    }
    let token = crate::access::token::generate();
    let n = client
        .execute(
            "INSERT INTO stores (store_id, token_sha256) VALUES ($1, $2)
             ON CONFLICT (store_id) DO NOTHING",
            &[&store, &sha256_hex(&token)],
        )
        .await?;
    if n == 0 {
        anyhow::bail!("store {store} is already registered");
    }
    Ok(token)
}

/// Gives `store` a new token, returning it (shown once); the old one stops working on every
/// hub process within `token_refresh_secs`.
pub async fn rotate_token(client: &tokio_postgres::Client, store: &str) -> anyhow::Result<String> {
    let token = crate::access::token::generate();
    let n = client
        .execute(
            "UPDATE stores SET token_sha256 = $2 WHERE store_id = $1",
            &[&store, &sha256_hex(&token)],
        )
        .await?;
    if n == 0 {
        anyhow::bail!("store {store} is not registered");
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_is_read_case_insensitively_and_empty_is_none() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "bearer abc".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, "Bearer ".parse().unwrap());
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }
}
