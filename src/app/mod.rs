//! The app's assembly, above every concern: their routes merged into one table, each wrapped
//! in the guards every request passes (body limit and card-data refusal from the route kit,
//! then the route's access rule), and the service-wide layers around them.

pub mod openapi;

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderValue, header};
use tower::ServiceBuilder;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::error::AppError;
use crate::http::{self, Route};
use crate::state::AppState;

/// Every route of the service, from every concern.
pub fn routes() -> Vec<Route<AppState>> {
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
    let feed_batch_limit = state.config.http.body_limit_bytes;
    let mut router = Router::new();
    for route in routes() {
        // Layers run outside in: the request guard (body limit, card data) first, so neither
        // the access check nor the handler ever sees a body over the limit or card data.
        // One stack per route, not one `route_layer` per guard: each layer applied on its
        // own boxes the route again, and every request then clones every box below each
        // middleware it passes (issue 19: about 90 allocations a request went to that).
        let guards = ServiceBuilder::new()
            .layer(axum::middleware::from_fn_with_state(
                route.body_limit.bytes(feed_batch_limit),
                http::request_guard,
            ))
            .layer(axum::middleware::from_fn_with_state(
                (state.clone(), route.access),
                crate::access::guard::check,
            ));
        router = router.route(route.path, route.handler.route_layer(guards));
    }
    let timeout = Duration::from_secs(state.config.http.request_timeout_secs.max(1));
    // The service-wide layers, outermost first, as one stack for the same reason. They wrap
    // each route (after routing), so the matched route is known to the trace and the metrics.
    let service_wide = ServiceBuilder::new()
        // Outermost: counts and times every answer, including timeouts and refusals.
        .layer(axum::middleware::from_fn_with_state(
            crate::metrics::HttpMetrics::default(),
            crate::metrics::track,
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
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        // Whatever answered, an error leaves in the JSON error shape; the head's bounds; the
        // request's deadline.
        .layer(axum::middleware::from_fn(move |req, next| {
            http::edge(req, next, timeout)
        }))
        // The request guard has already read the body within the route's own limit.
        .layer(DefaultBodyLimit::disable());
    router
        .fallback(|| async { AppError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { AppError::MethodNotAllowed })
        .layer(service_wide)
        .with_state(state)
}
