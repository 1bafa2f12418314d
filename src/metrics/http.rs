//! Request counts and latencies per route template, recorded by a middleware on every route.
//!
//! Labels are the matched route template (`/sync/v1/feeds/{feed}/batches`), never the raw
//! path, and the method folded to the standard ones: a client cannot grow the series.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use super::exposition::{Exposition, Kind};

/// Upper bounds of the latency buckets, in seconds: from a cached status read to a large
/// snapshot part (the request timeout is 60 s by default).
const LATENCY_BOUNDS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The figures of one running service; shared by the middleware and the `/metrics` handler
/// (which finds it in the request's extensions, put there by [`track`]).
#[derive(Clone)]
pub struct HttpMetrics {
    inner: Arc<Mutex<BTreeMap<(String, &'static str), RouteFigures>>>,
    started: SystemTime,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self {
            inner: Arc::default(),
            started: SystemTime::now(),
        }
    }
}

#[derive(Default)]
struct RouteFigures {
    by_status: BTreeMap<u16, u64>,
    latency: [u64; LATENCY_BOUNDS.len() + 1],
    latency_sum: f64,
}

impl HttpMetrics {
    fn record(&self, route: String, method: &'static str, status: u16, seconds: f64) {
        let Ok(mut all) = self.inner.lock() else {
            return;
        };
        let figures = all.entry((route, method)).or_default();
        *figures.by_status.entry(status).or_default() += 1;
        let bucket = LATENCY_BOUNDS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(LATENCY_BOUNDS.len());
        figures.latency[bucket] += 1;
        figures.latency_sum += seconds;
    }

    pub(super) fn render(&self, out: &mut Exposition) {
        let started = self
            .started
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        out.family(
            "standin_start_time_seconds",
            Kind::Gauge,
            "When this process started serving, in seconds since the Unix epoch.",
        );
        out.sample("standin_start_time_seconds", &[], started);

        let all = match self.inner.lock() {
            Ok(all) => all,
            Err(poisoned) => poisoned.into_inner(),
        };
        out.family(
            "standin_http_requests_total",
            Kind::Counter,
            "HTTP requests answered, by route template, method and status code.",
        );
        for ((route, method), figures) in all.iter() {
            for (status, count) in &figures.by_status {
                let status = status.to_string();
                out.sample(
                    "standin_http_requests_total",
                    &[("route", route), ("method", method), ("status", &status)],
                    count,
                );
            }
        }
        out.family(
            "standin_http_request_duration_seconds",
            Kind::Histogram,
            "Time from a request's arrival to its response head, by route template and method.",
        );
        for ((route, method), figures) in all.iter() {
            out.histogram(
                "standin_http_request_duration_seconds",
                &[("route", route), ("method", method)],
                &LATENCY_BOUNDS,
                &figures.latency,
                figures.latency_sum,
            );
        }
    }
}

/// The middleware (`from_fn_with_state`) on every route and the fallback.
pub async fn track(State(metrics): State<HttpMetrics>, mut req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(req.method());
    req.extensions_mut().insert(metrics.clone());
    let started = Instant::now();
    let response = next.run(req).await;
    metrics.record(
        route,
        method,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_land_in_their_bucket() {
        let m = HttpMetrics::default();
        m.record("/r".into(), "GET", 200, 0.003);
        m.record("/r".into(), "GET", 404, 0.003);
        m.record("/r".into(), "GET", 200, 120.0);
        let mut out = Exposition::default();
        m.render(&mut out);
        let text = out.finish();
        for line in [
            "standin_http_requests_total{route=\"/r\",method=\"GET\",status=\"200\"} 2",
            "standin_http_requests_total{route=\"/r\",method=\"GET\",status=\"404\"} 1",
            "standin_http_request_duration_seconds_bucket{route=\"/r\",method=\"GET\",le=\"0.001\"} 0",
            "standin_http_request_duration_seconds_bucket{route=\"/r\",method=\"GET\",le=\"0.005\"} 2",
            "standin_http_request_duration_seconds_bucket{route=\"/r\",method=\"GET\",le=\"60\"} 2",
            "standin_http_request_duration_seconds_bucket{route=\"/r\",method=\"GET\",le=\"+Inf\"} 3",
            "standin_http_request_duration_seconds_count{route=\"/r\",method=\"GET\"} 3",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "other");
    }
}
