//! The hub's counters, per process (Prometheus sums them over processes). Per-store detail
//! (verified seq, flags) is in `GET /v1/fleet`'s JSON, never in labels: 5,000 stores would
//! be 5,000 series.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::intake::Decision;
use crate::journal::delivery::Outcome;

/// Reasons the intake gives, each with its own counter (a fixed, small label set).
pub const REASONS: [&str; 5] = [
    "hash_mismatch",
    "chain_fork",
    "store_mismatch",
    "invalid_entry",
    "order_cancelled",
];

/// What a request answered 503 `busy` for want of a PostgreSQL connection was doing (a
/// fixed, small label set): the total alone did not say whether feed pulls or the fleet view
/// ran short while a fleet drained (`cargo bench --bench fleet` with 400 entries a store,
/// 2026-12-07: 1,829).
#[derive(Debug, Clone, Copy)]
pub enum Work {
    TokenLookup,
    FeedPull,
    Heartbeat,
    FleetView,
    Journal,
}

impl Work {
    const ALL: [Work; 5] = [
        Work::TokenLookup,
        Work::FeedPull,
        Work::Heartbeat,
        Work::FleetView,
        Work::Journal,
    ];

    fn label(self) -> &'static str {
        match self {
            Work::TokenLookup => "token_lookup",
            Work::FeedPull => "feed_pull",
            Work::Heartbeat => "heartbeat",
            Work::FleetView => "fleet_view",
            Work::Journal => "journal",
        }
    }
}

#[derive(Default)]
pub struct Metrics {
    accepted: AtomicU64,
    duplicates: AtomicU64,
    by_reason: [AtomicU64; REASONS.len()],
    busy: AtomicU64,
    unavailable: AtomicU64,
    no_connection: [AtomicU64; Work::ALL.len()],
    expected_wait: AtomicU64,
    memory: AtomicU64,
    store_busy: AtomicU64,
    body_timeout: AtomicU64,
    heartbeats: AtomicU64,
    set_aside_not_kept: AtomicU64,
    token_lookup: AtomicU64,
    fleet_reads: AtomicU64,
}

impl Metrics {
    pub fn count(&self, decisions: &[Decision]) {
        for d in decisions {
            if d.again {
                self.duplicates.fetch_add(1, Relaxed);
                continue;
            }
            match d.outcome {
                Outcome::Accepted => {
                    self.accepted.fetch_add(1, Relaxed);
                }
                _ => {
                    let i = d
                        .reason
                        .as_deref()
                        .and_then(|r| REASONS.iter().position(|x| *x == r));
                    if let Some(i) = i {
                        self.by_reason[i].fetch_add(1, Relaxed);
                    }
                }
            }
        }
    }

    pub fn heartbeat(&self) {
        self.heartbeats.fetch_add(1, Relaxed);
    }

    pub fn refused_busy(&self) {
        self.busy.fetch_add(1, Relaxed);
    }

    pub fn refused_expected_wait(&self) {
        self.expected_wait.fetch_add(1, Relaxed);
    }

    pub fn refused_store_busy(&self) {
        self.store_busy.fetch_add(1, Relaxed);
    }

    pub fn refused_body_timeout(&self) {
        self.body_timeout.fetch_add(1, Relaxed);
    }

    pub fn refused_memory(&self) {
        self.memory.fetch_add(1, Relaxed);
    }

    pub fn set_aside_not_kept(&self, n: i64) {
        self.set_aside_not_kept
            .fetch_add(u64::try_from(n).unwrap_or(0), Relaxed);
    }

    pub fn fleet_read(&self) {
        self.fleet_reads.fetch_add(1, Relaxed);
    }

    pub fn refused_token_lookup(&self) {
        self.token_lookup.fetch_add(1, Relaxed);
    }

    pub fn refused_no_connection(&self, work: Work) {
        self.no_connection[work as usize].fetch_add(1, Relaxed);
    }

    pub fn refused_unavailable(&self) {
        self.unavailable.fetch_add(1, Relaxed);
    }

    /// Prometheus text format; `connections` as [`crate::http::conn::Registry::counts`]
    /// gives them (none before the process serves).
    pub fn render(
        &self,
        intake_in_use: usize,
        intake_limit: usize,
        connections: Option<(usize, u64, u64)>,
    ) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        counter(
            "standin_hub_journal_entries_accepted_total",
            "Journal entries landed as accepted (each once).",
            self.accepted.load(Relaxed),
        );
        counter(
            "standin_hub_journal_duplicates_total",
            "Journal entries that arrived again and were answered from the first landing.",
            self.duplicates.load(Relaxed),
        );
        counter(
            "standin_hub_intake_refused_busy_total",
            "Journal requests answered 503 busy: the intake at its limit, their wait past the deadline (expected or reached), or no room for their body.",
            self.busy.load(Relaxed),
        );
        counter(
            "standin_hub_intake_refused_unavailable_total",
            "Journal requests answered 503 because PostgreSQL was unavailable.",
            self.unavailable.load(Relaxed),
        );
        counter(
            "standin_hub_intake_refused_expected_wait_total",
            "Of the busy refusals: journal requests refused on arrival because those waiting ahead of them could not land within intake_deadline_ms at the recent landing rate.",
            self.expected_wait.load(Relaxed),
        );
        counter(
            "standin_hub_intake_refused_memory_total",
            "Store requests (journal batches, heartbeats) answered 503 busy, their bodies read and dropped, because the bodies held were at intake_memory_mib.",
            self.memory.load(Relaxed),
        );
        counter(
            "standin_hub_intake_refused_store_busy_total",
            "Store requests answered 429: their store already had as many pushes, heartbeats or bytes of body in this process as one store may.",
            self.store_busy.load(Relaxed),
        );
        counter(
            "standin_hub_refused_body_timeout_total",
            "Store requests (journal batches, heartbeats) answered 408: their body did not arrive within intake_deadline_ms of the request.",
            self.body_timeout.load(Relaxed),
        );
        counter(
            "standin_hub_refused_no_connection_total",
            "Requests answered 503 busy because no PostgreSQL connection of their kind came free within 2 s (feed pulls, the fleet view, token lookups; the intake has its own).",
            self.no_connection.iter().map(|n| n.load(Relaxed)).sum(),
        );
        counter(
            "standin_hub_heartbeats_total",
            "Store heartbeats (POST /v1/stores/{store}/status) taken.",
            self.heartbeats.load(Relaxed),
        );
        counter(
            "standin_hub_fleet_reads_total",
            "Reads of the whole fleet from PostgreSQL (one serves every fleet view and scrape within fleet_view_max_age_ms).",
            self.fleet_reads.load(Relaxed),
        );
        counter(
            "standin_hub_refused_token_lookup_total",
            "Store requests answered 503 busy because their token was not cached and the lookups allowed at once were all taken for 1 s.",
            self.token_lookup.load(Relaxed),
        );
        counter(
            "standin_hub_journal_set_aside_not_kept_total",
            "Rejected journal entries answered but not written: their store already had set_aside_kept_per_store kept.",
            self.set_aside_not_kept.load(Relaxed),
        );
        if let Some((_, closed_idle, refused)) = connections {
            counter(
                "standin_hub_http_connections_closed_idle_total",
                "Idle connections closed to make room for a newcomer at a cap.",
                closed_idle,
            );
            counter(
                "standin_hub_http_connections_refused_total",
                "Newcomers answered 503 because every connection in the way was busy.",
                refused,
            );
        }
        if let Some((open, ..)) = connections {
            let _ = writeln!(
                out,
                "# HELP standin_hub_http_connections_open Client connections open now (capped by max_connections and per address).\n# TYPE standin_hub_http_connections_open gauge\nstandin_hub_http_connections_open {open}"
            );
        }
        let name = "standin_hub_refused_no_connection_by_work_total";
        let _ = writeln!(
            out,
            "# HELP {name} Requests answered 503 busy because no PostgreSQL connection came free within 2 s, by what the request was doing.\n# TYPE {name} counter"
        );
        for work in Work::ALL {
            let _ = writeln!(
                out,
                "{name}{{work=\"{}\"}} {}",
                work.label(),
                self.no_connection[work as usize].load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP standin_hub_journal_set_aside_total Journal entries rejected or in conflict, by reason.\n# TYPE standin_hub_journal_set_aside_total counter"
        );
        for (i, r) in REASONS.iter().enumerate() {
            let _ = writeln!(
                out,
                "standin_hub_journal_set_aside_total{{reason=\"{r}\"}} {}",
                self.by_reason[i].load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP standin_hub_intake_in_flight Journal transactions running now.\n# TYPE standin_hub_intake_in_flight gauge\nstandin_hub_intake_in_flight {intake_in_use}\n# HELP standin_hub_intake_limit Journal transactions allowed at once.\n# TYPE standin_hub_intake_limit gauge\nstandin_hub_intake_limit {intake_limit}"
        );
        out
    }
}
