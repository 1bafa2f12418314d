//! The browser UI: static files from `ui/`, embedded at compile time (no build step), each
//! with its content type and an ETag so a desk browser revalidates instead of re-downloading.
//! `ui_dir` (`STANDIN_UI_DIR=ui`, or `--ui-dir ui`) serves them from disk instead, for editing
//! without rebuilding: only regular files inside that directory, after resolving `..`,
//! encoded slashes and symlinks.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rust_embed::RustEmbed;

use crate::error::AppError;
use crate::http::{Access, ApiPath, Route};
use crate::state::AppState;

#[derive(RustEmbed)]
#[folder = "ui/"]
struct Assets;

pub fn routes() -> Vec<Route<AppState>> {
    vec![
        Route::new(
            Method::GET,
            "/",
            Access::Public,
            get(
                |State(st): State<AppState>, h: HeaderMap| async move { asset("index.html", &h, &st) },
            ),
        ),
        Route::new(
            Method::GET,
            "/status",
            Access::Public,
            get(
                |State(st): State<AppState>, h: HeaderMap| async move { asset("status.html", &h, &st) },
            ),
        ),
        Route::new(
            Method::GET,
            "/ui/{*path}",
            Access::Public,
            get(
                |State(st): State<AppState>, ApiPath(path): ApiPath<String>, h: HeaderMap| async move {
                    asset(&path, &h, &st)
                },
            ),
        ),
    ]
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// Under `standin demo` the pages may also call the simulator's controls on a loopback port.
fn demo(state: &AppState) -> bool {
    state.config.demo.is_some()
}

/// The content security policy: nothing leaves the page's own origin, except, under
/// `standin demo` only, fetches to the simulator's controls on this machine.
const CSP: &str = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";
const CSP_DEMO: &str = "default-src 'self'; connect-src 'self' http://127.0.0.1:* http://localhost:*; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The bytes of `path` under `dir`, if it names a regular file inside it: no absolute path,
/// no `..`, and nothing that resolves (through a symlink) outside the directory.
fn from_dir(dir: &std::path::Path, path: &str) -> Option<Vec<u8>> {
    use std::path::{Component, Path};
    let rel = Path::new(path);
    if path.contains('\\')
        || path.contains('\0')
        || rel.components().any(|c| !matches!(c, Component::Normal(_)))
    {
        return None;
    }
    let root = dir.canonicalize().ok()?;
    let full = root.join(rel).canonicalize().ok()?;
    if !full.starts_with(&root) || !full.is_file() {
        return None;
    }
    std::fs::read(full).ok()
}

fn asset(path: &str, headers: &HeaderMap, state: &AppState) -> Response {
    let demo = demo(state);
    if path
        .split('/')
        .any(|seg| seg == ".." || seg.starts_with('.'))
    {
        return AppError::NotFound("no such file".into()).into_response();
    }
    let (bytes, etag) = match &state.config.ui_dir {
        Some(dir) => match from_dir(dir, path) {
            Some(b) => (std::borrow::Cow::Owned(b), None),
            None => return AppError::NotFound("no such file".into()).into_response(),
        },
        None => match Assets::get(path) {
            Some(f) => {
                let etag = format!("\"{}\"", hex::encode(&f.metadata.sha256_hash()[..12]));
                (f.data, Some(etag))
            }
            None => return AppError::NotFound("no such file".into()).into_response(),
        },
    };
    if let Some(etag) = &etag
        && headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            == Some(etag.as_str())
    {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    let mut res = (StatusCode::OK, bytes.into_owned()).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(path)),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(if demo { CSP_DEMO } else { CSP }),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if let Some(etag) = etag.and_then(|e| HeaderValue::from_str(&e).ok()) {
        h.insert(header::ETAG, etag);
    }
    res
}
