//! `/metrics` in the Prometheus text format: requests per route template, upstream state,
//! feed freshness, journal backlog, and the writer's queue and commit groups.
//!
//! Store figures are read at scrape time from the same view as `/api/v1/status`
//! ([`crate::status::current`]), so the two never disagree. Payment exposure joins when kiosk
//! payments exist (issue 7). README "Operate" says what each alertable family means.

mod exposition;
mod http;

use std::sync::atomic::Ordering;

use axum::Extension;
use axum::extract::State;
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

pub use exposition::{CONTENT_TYPE, Exposition, Kind};
pub use http::{HttpMetrics, track};

use crate::error::AppError;
use crate::http::{Access, Route};
use crate::state::AppState;
use crate::status::Status;
use crate::store::WriterStats;

use crate::upstream::{BreakerState, HealthState};

/// Public, like `/api/v1/status` (the same facts, no ids or secrets); README "Operate" says
/// to firewall it to the store's monitoring.
pub fn routes() -> Vec<Route<AppState>> {
    vec![Route::new(
        Method::GET,
        "/metrics",
        Access::Public,
        get(metrics),
    )]
}

async fn metrics(
    State(state): State<AppState>,
    http: Option<Extension<HttpMetrics>>,
) -> Result<Response, AppError> {
    let status = crate::status::current(&state).await?;
    let mut out = Exposition::default();
    out.family(
        "standin_build_info",
        Kind::Gauge,
        "Always 1; the running version as a label.",
    );
    out.sample("standin_build_info", &[("version", status.version)], 1);
    if let Some(Extension(http)) = http {
        http.render(&mut out);
    }
    upstreams(&mut out, &status);
    feeds(&mut out, &status);
    journal(&mut out, &status);
    payments(&mut out, &status);
    writer(&mut out, state.store.writer_stats());
    name_searches(&mut out, &state.pickup_names);
    if let Some(registry) = state.connections.get() {
        connections(&mut out, registry);
    }
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], out.finish()).into_response())
}

fn flag(b: bool) -> u8 {
    u8::from(b)
}

fn upstreams(out: &mut Exposition, status: &Status) {
    let all = || status.upstreams.iter().map(|(u, h)| (*u, h));
    out.family(
        "standin_upstream_configured",
        Kind::Gauge,
        "1 when the upstream has a URL in the configuration.",
    );
    for (u, h) in all() {
        out.sample(
            "standin_upstream_configured",
            &[("upstream", u)],
            flag(h.configured),
        );
    }
    out.family(
        "standin_upstream_up",
        Kind::Gauge,
        "1 while the upstream answers (state up); 0 when unknown, degraded or down.",
    );
    for (u, h) in all() {
        out.sample(
            "standin_upstream_up",
            &[("upstream", u)],
            flag(h.state == HealthState::Up),
        );
    }
    out.family(
        "standin_upstream_state",
        Kind::Gauge,
        "1 for the upstream's current state (unknown, up, degraded, down), 0 for the others.",
    );
    for (u, h) in all() {
        for (name, s) in [
            ("unknown", HealthState::Unknown),
            ("up", HealthState::Up),
            ("degraded", HealthState::Degraded),
            ("down", HealthState::Down),
        ] {
            out.sample(
                "standin_upstream_state",
                &[("upstream", u), ("state", name)],
                flag(h.state == s),
            );
        }
    }
    out.family(
        "standin_upstream_breaker_open",
        Kind::Gauge,
        "1 while the upstream's circuit breaker holds traffic back (open or half-open).",
    );
    for (u, h) in all() {
        out.sample(
            "standin_upstream_breaker_open",
            &[("upstream", u)],
            flag(h.breaker != BreakerState::Closed),
        );
    }
    out.family(
        "standin_upstream_consecutive_failures",
        Kind::Gauge,
        "Failed exchanges with the upstream since its last success.",
    );
    for (u, h) in all() {
        out.sample(
            "standin_upstream_consecutive_failures",
            &[("upstream", u)],
            h.consecutive_failures,
        );
    }
}

fn feeds(out: &mut Exposition, status: &Status) {
    out.family(
        "standin_feed_age_seconds",
        Kind::Gauge,
        "Seconds since the feed's last batch was applied; no sample before the first batch.",
    );
    for (feed, f) in &status.feeds {
        if let Some(age) = f.age_secs {
            out.sample("standin_feed_age_seconds", &[("feed", feed)], age);
        }
    }
    out.family(
        "standin_feed_last_batch",
        Kind::Gauge,
        "Number of the feed's last applied batch; 0 while the feed has never been loaded.",
    );
    for (feed, f) in &status.feeds {
        out.sample(
            "standin_feed_last_batch",
            &[("feed", feed)],
            f.status.last_batch,
        );
    }
    out.family(
        "standin_feed_records",
        Kind::Gauge,
        "Records the feed holds (receipts, pickup orders, staff, devices, policy).",
    );
    for (feed, f) in &status.feeds {
        out.sample("standin_feed_records", &[("feed", feed)], f.status.records);
    }
    out.family(
        "standin_feed_pull_failing",
        Kind::Gauge,
        "1 while the last pull of the feed from central failed (cleared by the next success).",
    );
    for (feed, f) in &status.feeds {
        out.sample(
            "standin_feed_pull_failing",
            &[("feed", feed)],
            flag(f.status.last_error.is_some()),
        );
    }
}

fn journal(out: &mut Exposition, status: &Status) {
    out.family(
        "standin_journal_pending",
        Kind::Gauge,
        "Journal entries in the lane not yet delivered to central.",
    );
    for (lane, b) in &status.journal.lanes {
        out.sample("standin_journal_pending", &[("lane", lane)], b.pending);
    }
    out.family(
        "standin_journal_oldest_age_seconds",
        Kind::Gauge,
        "Seconds the lane's oldest undelivered entry has waited; 0 when nothing waits.",
    );
    for (lane, b) in &status.journal.lanes {
        out.sample(
            "standin_journal_oldest_age_seconds",
            &[("lane", lane)],
            b.oldest_age_secs.unwrap_or(0),
        );
    }
    out.family(
        "standin_journal_set_aside",
        Kind::Gauge,
        "Entries central rejected or found in conflict, waiting for a person to reconcile.",
    );
    out.sample("standin_journal_set_aside", &[], status.journal.set_aside);
}

fn payments(out: &mut Exposition, status: &Status) {
    let p = &status.payments;
    let gauges: [(&str, &str, i64); 6] = [
        (
            "standin_payments_exposure_payments",
            "Kiosk payments approved offline and not yet forwarded to the processor.",
            p.count,
        ),
        (
            "standin_payments_exposure_minor",
            "Their total in minor units (the store's stand-in exposure).",
            p.total_minor,
        ),
        (
            "standin_payments_oldest_age_seconds",
            "Seconds the oldest payment approved offline has waited to be forwarded; 0 when none.",
            p.oldest_age_secs.unwrap_or(0),
        ),
        (
            "standin_payments_deadline_warning",
            "1 while a stored payment's forwarding deadline is less than 6 hours away.",
            i64::from(p.deadline_warning),
        ),
        (
            "standin_payments_declined_after_forward",
            "Payments approved offline that the processor declined when forwarded (reconciliation).",
            p.declined_after_forward,
        ),
        (
            "standin_payments_expired",
            "Payments approved offline that passed their forwarding deadline unforwarded (reconciliation).",
            p.expired,
        ),
    ];
    for (name, help, v) in gauges {
        out.family(name, Kind::Gauge, help);
        out.sample(name, &[], v);
    }
    out.family(
        "standin_payments_deadline_seconds",
        Kind::Gauge,
        "Seconds until the tightest forwarding deadline among stored payments; no sample when none waits.",
    );
    if let Some(s) = p.tightest_deadline_secs {
        out.sample("standin_payments_deadline_seconds", &[], s);
    }
}

fn connections(out: &mut Exposition, registry: &crate::http::conn::Registry) {
    let (open, evicted, refused) = registry.counts();
    out.family(
        "standin_http_connections_open",
        Kind::Gauge,
        "Client connections open now (capped by http.max_connections and per address).",
    );
    out.sample("standin_http_connections_open", &[], open);
    out.family(
        "standin_http_connections_closed_idle_total",
        Kind::Counter,
        "Idle connections closed to make room for a newcomer at a cap (a client hoarding sockets).",
    );
    out.sample("standin_http_connections_closed_idle_total", &[], evicted);
    out.family(
        "standin_http_connections_refused_total",
        Kind::Counter,
        "Newcomers refused with a 503 because every connection in the way was busy.",
    );
    out.sample("standin_http_connections_refused_total", &[], refused);
}

fn name_searches(out: &mut Exposition, names: &crate::pickups::names::Names) {
    out.family(
        "standin_pickup_name_searches_total",
        Kind::Counter,
        "Pickup name searches, by where they were answered from: the copy in memory, or SQL \
         while the copy was being rebuilt after a change.",
    );
    for (from, n) in [("memory", &names.from_memory), ("sql", &names.from_sql)] {
        out.sample(
            "standin_pickup_name_searches_total",
            &[("from", from)],
            n.load(Ordering::Relaxed),
        );
    }
}

fn writer(out: &mut Exposition, stats: &WriterStats) {
    out.family(
        "standin_writer_queue_depth",
        Kind::Gauge,
        "Writes waiting for the writer thread's next commit.",
    );
    out.sample(
        "standin_writer_queue_depth",
        &[],
        stats.queued.load(Ordering::Relaxed),
    );
    out.family(
        "standin_writer_commits_total",
        Kind::Counter,
        "Group transactions committed.",
    );
    out.sample(
        "standin_writer_commits_total",
        &[],
        stats.commits.load(Ordering::Relaxed),
    );
    out.family(
        "standin_writer_failed_commits_total",
        Kind::Counter,
        "Group transactions that did not commit (disk full, I/O error); none of their writes \
         was acknowledged.",
    );
    out.sample(
        "standin_writer_failed_commits_total",
        &[],
        stats.failed_commits.load(Ordering::Relaxed),
    );
    let counts: Vec<u64> = stats
        .group_sizes
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .collect();
    let bounds = WriterStats::GROUP_SIZE_BOUNDS.map(|b| b as f64);
    out.family(
        "standin_writer_group_size",
        Kind::Histogram,
        "Writes folded into each committed group transaction (group commit).",
    );
    out.histogram(
        "standin_writer_group_size",
        &[],
        &bounds,
        &counts,
        stats.writes.load(Ordering::Relaxed) as f64,
    );
}
