//! The HTTP surface: every concern's routes, each with its access rule, merged in one place.
//!
//! Routes are data ([`Route`]): path, method, who may call it, handler. `app` builds the
//! router from that list, and tests enumerate the same list, so a route can never be added
//! without an access decision.

mod access;
mod extract;
pub mod openapi;

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderValue, Method, header};
use axum::routing::MethodRouter;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

pub use access::{Access, CSRF_HEADER};
pub use extract::{ApiJson, ClientAddr, RawBody, describe_json_error, from_json};

use crate::error::AppError;
use crate::state::AppState;

pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    pub handler: MethodRouter<AppState>,
}

impl Route {
    pub fn new(
        method: Method,
        path: &'static str,
        access: Access,
        handler: MethodRouter<AppState>,
    ) -> Self {
        Self {
            method,
            path,
            access,
            handler,
        }
    }
}

/// Every route of the service, from every concern.
pub fn routes() -> Vec<Route> {
    [
        crate::status::routes(),
        crate::feeds::routes(),
        crate::journal::sync_api::routes(),
        crate::metrics::routes(),
        crate::access::login::routes(),
        crate::access::kiosk::routes(),
        crate::pickups::routes(),
        crate::returns::routes(),
        crate::payments::routes(),
        crate::reconciliation::routes(),
        crate::web::routes(),
        openapi::routes(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The whole service as a router; what `launch` serves and what tests can call directly.
pub fn app(state: AppState) -> Router {
    let mut router = Router::new();
    for route in routes() {
        let guarded = route
            .handler
            .route_layer(axum::middleware::from_fn_with_state(
                (state.clone(), route.access),
                access::check,
            ));
        router = router.route(route.path, guarded);
    }
    let body_limit = state.config.http.body_limit_bytes;
    let timeout = Duration::from_secs(state.config.http.request_timeout_secs.max(1));
    router
        .fallback(|| async { AppError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { AppError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(move |req, next| extract::declared_length(req, next, body_limit)))
        .layer(axum::middleware::from_fn(move |req, next| extract::deadline(req, next, timeout)))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    // The matched template, not the raw path: low cardinality, no ids in logs.
                    let route = req
                        .extensions()
                        .get::<MatchedPath>()
                        .map(|p| p.as_str().to_owned())
                        .unwrap_or_else(|| "unmatched".into());
                    tracing::info_span!("request", method = %req.method(), route, caller = tracing::field::Empty)
                })
                .on_request(())
                .on_response(
                    tower_http::trace::DefaultOnResponse::new()
                        .level(tracing::Level::DEBUG)
                        .latency_unit(tower_http::LatencyUnit::Micros),
                ),
        )
        // Outermost: counts and times every answer, including timeouts and refusals.
        .layer(axum::middleware::from_fn_with_state(
            crate::metrics::HttpMetrics::default(),
            crate::metrics::track,
        ))
        .with_state(state)
}
