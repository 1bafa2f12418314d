//! The fleet: each store's heartbeat in (`POST /v1/stores/{store}/status`), and HQ's view of
//! every store out (`GET /v1/fleet` as JSON, `GET /fleet` as a page for an operations room,
//! fleet gauges in `/metrics`).
//!
//! A store's state, one of, worst first:
//! - `silent`: no contact (any request with its own token: a heartbeat, a push, a pull, one
//!   the hub refused as busy; written once a second) for more than `silent_after_intervals` of its
//!   health intervals (the heartbeat's `interval_secs`, else the hub's `health_interval_secs`),
//!   or never heard from;
//! - `offline`: it reports central or the card processor `down` (trading on stand-in);
//! - `backlog`: it reports journal entries waiting for central;
//! - `ok`.
//!
//! Filters (`?state=a,b`, any of) also take `exposure` (offline-approved payments not yet
//! forwarded), `set_aside` (entries HQ rejected or found in conflict) and `flagged` (a chain
//! that does not verify); they match what the store last reported even while it is silent.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Datelike, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use super::{DbError, HubError, HubState};
use crate::status::heartbeat::{Heartbeat, UpstreamState};

/// Largest heartbeat body.
pub const MAX_HEARTBEAT_BYTES: usize = 256 * 1024;

/// Set-aside entries listed per store (the count is always whole).
const SET_ASIDE_LISTED: i64 = 10;

/// `POST /v1/stores/{store}/status`: keeps the newest heartbeat (by `sent_at`, then `seq`)
/// and the time of contact; 204.
pub async fn post_status(
    State(state): State<HubState>,
    Path(store): Path<String>,
    request: Request,
) -> Result<Response, HubError> {
    // Read within the hub's budget for store bodies, held while the heartbeat is parsed (the
    // writer's queue bounds what waits after that).
    let arrived = tokio::time::Instant::now();
    let deadline = arrived + state.config.intake_deadline();
    state.heartbeat_turn(&store)?;
    let mut slot = state.take_share(&store, super::share::Kind::Heartbeat)?;
    let (body, memory) = super::body::read(
        &state,
        &mut slot,
        request.into_body(),
        MAX_HEARTBEAT_BYTES,
        deadline,
    )
    .await
    .map_err(|e| e.into_error(&state, &store, || state.retry_after(&store)))?;
    let raw: Value = serde_json::from_slice(&body).map_err(|e| HubError::BadJson(e.to_string()))?;
    if !raw.is_object() {
        return Err(HubError::invalid("body", "a heartbeat is a JSON object"));
    }
    let beat: Heartbeat = serde_path_to_error::deserialize(&raw)
        .map_err(|e| HubError::invalid(super::intake::error_field(&e), e.inner().to_string()))?;
    if beat.store_id != store {
        return Err(HubError::invalid(
            "store_id",
            "store_id must be the store of the path",
        ));
    }
    // What PostgreSQL would refuse is refused here, naming the field, before it can share
    // a group with other stores' heartbeats.
    if !(1..=9999).contains(&beat.sent_at.year()) {
        return Err(HubError::invalid(
            "sent_at",
            "sent_at must be a time between the years 1 and 9999",
        ));
    }
    check_ranges(&beat)?;
    if let Some(path) = super::intake::nul_at(&raw) {
        return Err(HubError::invalid(
            path,
            "a heartbeat's text cannot hold the character U+0000",
        ));
    }
    let beat = super::heartbeats::Beat {
        store: store.clone(),
        // The newest report is kept by `sent_at`, so one dated ahead of the hub's clock
        // would outrank every correct one after it: it ranks as sent now.
        sent_at: beat.sent_at.min(Utc::now()),
        seq: i64::try_from(beat.seq).unwrap_or(i64::MAX),
        body: raw.to_string(),
    };
    drop((raw, body, memory, slot));
    // Answered within the shared pool's bound from its arrival, under the stores' 5 s: a
    // heartbeat queued behind a group that takes the writer's whole 3 s, then in its own,
    // was answered after 8 s with PostgreSQL frozen (a hostile round), when its store had
    // stopped waiting. One given up on is not written unless its group already started.
    let within = arrived + super::db::SHARED_WORK_BOUND;
    tokio::time::timeout_at(within, super::heartbeats::Writer::write(&state, beat))
        .await
        .unwrap_or_else(|_| {
            Err(super::heartbeats::Refused::Db(DbError::Transient(
                "the heartbeat was not written in time".into(),
            )))
        })
        .map_err(|e| match e {
            super::heartbeats::Refused::Busy => HubError::Busy(state.retry_after(&store)),
            super::heartbeats::Refused::TooMany => state.past_share(&store),
            super::heartbeats::Refused::Db(e) => {
                state.db_error(&store, super::metrics::Work::Heartbeat, e)
            }
        })?;
    state.metrics.heartbeat();
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Largest count a heartbeat may report (entries, payments, refunds).
const MAX_COUNT: i64 = 1_000_000_000_000;
/// Largest amount, in minor units (ten trillion in a currency of two decimals): 5,000 stores
/// reporting it still sum well inside an `i64`.
const MAX_AMOUNT_MINOR: i64 = 1_000_000_000_000_000;
/// The longest health interval the fleet view believes: a store reporting a longer one is
/// still called silent after `silent_after_intervals` of these.
const MAX_INTERVAL_SECS: u64 = 3_600;

/// Counts and amounts no store reports (negative, or past the bounds above) are refused,
/// naming the field, before they reach the fleet's totals.
fn check_ranges(beat: &Heartbeat) -> Result<(), HubError> {
    let mut fields: Vec<(String, i64, i64)> = vec![
        ("journal.pending".into(), beat.journal.pending, MAX_COUNT),
        (
            "journal.set_aside".into(),
            beat.journal.set_aside,
            MAX_COUNT,
        ),
        ("journal.last_seq".into(), beat.journal.last_seq, i64::MAX),
        (
            "payments.offline_count".into(),
            beat.payments.offline_count,
            MAX_COUNT,
        ),
        (
            "payments.offline_total_minor".into(),
            beat.payments.offline_total_minor,
            MAX_AMOUNT_MINOR,
        ),
        ("refunds.queued".into(), beat.refunds.queued, MAX_COUNT),
        (
            "refunds.queued_total_minor".into(),
            beat.refunds.queued_total_minor,
            MAX_AMOUNT_MINOR,
        ),
    ];
    for (lane, l) in &beat.journal.lanes {
        fields.push((
            format!("journal.lanes.{lane}.pending"),
            l.pending,
            MAX_COUNT,
        ));
    }
    for (feed, f) in &beat.feeds {
        if let Some(age) = f.age_secs {
            fields.push((format!("feeds.{feed}.age_secs"), age, i64::MAX));
        }
    }
    match fields
        .into_iter()
        .find(|(_, v, max)| !(0..=*max).contains(v))
    {
        Some((field, _, max)) => Err(HubError::invalid(
            field,
            format!("must be a whole number from 0 to {max}"),
        )),
        None => Ok(()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreState {
    Silent,
    Offline,
    Backlog,
    Ok,
}

impl StoreState {
    pub const ALL: [StoreState; 4] = [Self::Silent, Self::Offline, Self::Backlog, Self::Ok];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Silent => "silent",
            Self::Offline => "offline",
            Self::Backlog => "backlog",
            Self::Ok => "ok",
        }
    }
}

/// The filters `?state=` takes.
pub const FILTERS: [&str; 7] = [
    "silent",
    "offline",
    "backlog",
    "exposure",
    "set_aside",
    "flagged",
    "ok",
];

#[derive(Debug, Clone, Serialize)]
pub struct SetAside {
    pub id: String,
    pub seq: Option<i64>,
    pub kind: Option<String>,
    pub outcome: String,
    pub reason: Option<String>,
    pub landed_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FleetStore {
    pub store_id: String,
    pub state: StoreState,
    /// Every filter this store matches.
    pub flags: Vec<&'static str>,
    /// The last heartbeat or journal request from the store; null if never.
    pub last_contact: Option<String>,
    pub since_contact_secs: Option<i64>,
    /// No contact for longer than this makes the store silent.
    pub silent_after_secs: u64,
    /// HQ's verified prefix of the store's journal chain.
    pub verified_seq: i64,
    /// Why the chain does not verify, when it does not.
    pub flag_reason: Option<String>,
    /// Entries HQ rejected or found in conflict: the count, and the newest few.
    pub set_aside_count: i64,
    /// Of those, rejected entries answered but not kept: the store had
    /// `set_aside_kept_per_store` kept already.
    pub set_aside_not_kept: i64,
    pub set_aside: Vec<SetAside>,
    /// What the store last reported, as it sent it (null before its first heartbeat).
    pub reported: Option<Value>,
    pub reported_at: Option<String>,
    #[serde(skip)]
    pub beat: Option<Heartbeat>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub stores: usize,
    /// Stores by state (each store in one).
    pub by_state: BTreeMap<&'static str, usize>,
    /// Stores matching each filter (a store may match several).
    pub by_flag: BTreeMap<&'static str, usize>,
    /// Journal entries the stores report waiting for central.
    pub backlog: i64,
    /// Offline-approved payments not yet forwarded: count, and total per currency.
    pub offline_payments: i64,
    pub offline_exposure_minor: BTreeMap<String, i64>,
    /// Entries HQ set aside (rejected or conflict), all stores.
    pub set_aside: i64,
}

pub struct Fleet {
    pub now: DateTime<Utc>,
    pub stores: Vec<FleetStore>,
    pub totals: Totals,
}

/// A fleet read: when it started, and what it gave.
type Read = (tokio::time::Instant, Result<Arc<Fleet>, DbError>);

/// The last fleet read ([`read_shared`]), and the views being answered.
pub struct FleetCache(tokio::sync::Mutex<Option<Read>>, tokio::sync::Semaphore);

impl Default for FleetCache {
    fn default() -> Self {
        Self(
            tokio::sync::Mutex::default(),
            tokio::sync::Semaphore::new(VIEWS_AT_ONCE),
        )
    }
}

/// `GET /v1/fleet` answers being made at once per process; past it 503 `busy`. The view
/// needs no credential and an answer for 5,000 stores is about 6 MB of JSON: a crowd of
/// readers (a hostile round ran 40 at once) took the CPU the stores' pushes need. An
/// operations room's screens refresh every few seconds.
const VIEWS_AT_ONCE: usize = 4;

/// The fleet, with each store's newest set-aside entries, as read at most
/// `fleet_view_max_age_ms` before this request came; one read at a time per process, the
/// requests arriving meanwhile waiting for it (`HubConfig::fleet_view_max_age_ms`). A
/// failed read is shared the same way, so a crowd of readers facing a frozen PostgreSQL
/// waits for one bounded read, not one after another.
pub async fn read_shared(state: &HubState) -> Result<Arc<Fleet>, DbError> {
    let asked = tokio::time::Instant::now();
    let max_age = std::time::Duration::from_millis(state.config.fleet_view_max_age_ms);
    let mut last = state.fleet_cache.0.lock().await;
    if let Some((started, read)) = &*last
        && asked.saturating_duration_since(*started) <= max_age
        && !max_age.is_zero()
    {
        return read.clone();
    }
    let started = tokio::time::Instant::now();
    state.metrics.fleet_read();
    let read = async {
        let mut fleet = read(state).await?;
        fill_set_aside(state, &mut fleet.stores).await?;
        Ok(Arc::new(fleet))
    }
    .await;
    *last = Some((started, read.clone()));
    read
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn from_epoch(secs: f64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros((secs * 1e6) as i64).unwrap_or_default()
}

/// A currency as a label value: three capital letters, else `other` (bounded cardinality).
fn currency_label(c: Option<&str>) -> String {
    match c {
        Some(c) if c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()) => c.to_owned(),
        _ => "other".into(),
    }
}

/// Reads every store and computes states and totals.
async fn read(state: &HubState) -> Result<Fleet, DbError> {
    let now = Utc::now();
    let rows = state
        .pool
        .run(async |client| {
            Ok(client
                .query(
                    "SELECT s.store_id, s.verified_seq, s.flag_reason,
                    extract(epoch FROM greatest(s.last_contact_at, h.last_contact))::float8,
                    h.body::text,
                    extract(epoch FROM h.received_at)::float8,
                    s.set_aside, s.set_aside_not_kept
             FROM stores s LEFT JOIN store_status h ON h.store_id = s.store_id
             ORDER BY s.store_id",
                    &[],
                )
                .await?)
        })
        .await?;
    let default_interval = state.config.health_interval_secs.max(1);
    let n = state.config.silent_after_intervals.max(1);
    let mut totals = Totals::default();
    let mut stores = Vec::with_capacity(rows.len());
    for r in rows {
        let store_id: String = r.get(0);
        let last_contact = r.get::<_, Option<f64>>(3).map(from_epoch);
        let reported: Option<Value> = r
            .get::<_, Option<&str>>(4)
            .and_then(|b| serde_json::from_str(b).ok());
        let beat: Option<Heartbeat> = reported
            .as_ref()
            .and_then(|v| serde_json::from_value(v.clone()).ok());
        let interval = beat
            .as_ref()
            .and_then(|b| b.interval_secs)
            .filter(|i| *i > 0)
            .unwrap_or(default_interval)
            .min(MAX_INTERVAL_SECS);
        let silent_after_secs = interval.saturating_mul(n);
        let since = last_contact.map(|t| (now - t).num_seconds().max(0));
        let silent = since.is_none_or(|s| s > i64::try_from(silent_after_secs).unwrap_or(i64::MAX));
        let down = |u: &str| {
            beat.as_ref()
                .and_then(|b| b.upstreams.get(u))
                .is_some_and(|u| u.state == UpstreamState::Down)
        };
        let offline = down("central") || down("payments");
        let backlog = beat.as_ref().is_some_and(|b| b.journal.pending > 0);
        let exposure = beat.as_ref().is_some_and(|b| b.payments.offline_count > 0);
        // Kept on the store's row by the intake (migration 0004), not counted here: a read
        // of the fleet costs the same whatever a store has had rejected.
        let set_aside_not_kept: i64 = r.get(7);
        let set_aside_count = r.get::<_, i64>(6).saturating_add(set_aside_not_kept);
        let flag_reason: Option<String> = r.get(2);
        let st = if silent {
            StoreState::Silent
        } else if offline {
            StoreState::Offline
        } else if backlog {
            StoreState::Backlog
        } else {
            StoreState::Ok
        };
        let flags: Vec<&'static str> = [
            ("silent", silent),
            ("offline", offline),
            ("backlog", backlog),
            ("exposure", exposure),
            ("set_aside", set_aside_count > 0),
            ("flagged", flag_reason.is_some()),
            ("ok", st == StoreState::Ok),
        ]
        .into_iter()
        .filter(|(_, on)| *on)
        .map(|(f, _)| f)
        .collect();
        totals.stores += 1;
        *totals.by_state.entry(st.as_str()).or_default() += 1;
        for f in &flags {
            *totals.by_flag.entry(f).or_default() += 1;
        }
        // Saturating: reports are bounded on arrival ([`check_ranges`]), but a row written
        // before those bounds must not panic or wrap the fleet's totals.
        totals.set_aside = totals.set_aside.saturating_add(set_aside_count);
        if let Some(b) = &beat {
            totals.backlog = totals.backlog.saturating_add(b.journal.pending.max(0));
            if b.payments.offline_count > 0 {
                totals.offline_payments = totals
                    .offline_payments
                    .saturating_add(b.payments.offline_count);
                let exposure = totals
                    .offline_exposure_minor
                    .entry(currency_label(b.payments.currency.as_deref()))
                    .or_default();
                *exposure = exposure.saturating_add(b.payments.offline_total_minor.max(0));
            }
        }
        stores.push(FleetStore {
            store_id,
            state: st,
            flags,
            last_contact: last_contact.map(ts),
            since_contact_secs: since,
            silent_after_secs,
            verified_seq: r.get(1),
            flag_reason,
            set_aside_count,
            set_aside_not_kept,
            set_aside: Vec::new(),
            reported_at: r.get::<_, Option<f64>>(5).map(|t| ts(from_epoch(t))),
            reported,
            beat,
        });
    }
    for s in StoreState::ALL {
        totals.by_state.entry(s.as_str()).or_default();
    }
    for f in FILTERS {
        totals.by_flag.entry(f).or_default();
    }
    Ok(Fleet {
        now,
        stores,
        totals,
    })
}

/// The newest set-aside entries of `stores`, up to [`SET_ASIDE_LISTED`] each.
async fn fill_set_aside(state: &HubState, stores: &mut [FleetStore]) -> Result<(), DbError> {
    let ids: Vec<&str> = stores
        .iter()
        .filter(|s| s.set_aside_count > 0)
        .map(|s| s.store_id.as_str())
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let rows = state
        .pool
        .run(async |client| {
            Ok(client
                .query(
                    // The newest few of each store from the set-aside index, not a rank over all of
                    // a store's set-aside rows.
                    "SELECT s.store_id, j.id, j.seq, j.kind, j.outcome, j.reason,
                    extract(epoch FROM j.landed_at)::float8
             FROM unnest($1::text[]) AS s(store_id)
             CROSS JOIN LATERAL (
                 SELECT id, seq, kind, outcome, reason, landed_at FROM journal_entries
                 WHERE store_id = s.store_id AND outcome IN ('rejected', 'conflict')
                 ORDER BY landed_at DESC, id LIMIT $2) j
             ORDER BY s.store_id, j.landed_at DESC, j.id",
                    &[&ids, &SET_ASIDE_LISTED],
                )
                .await?)
        })
        .await?;
    let mut by: HashMap<String, Vec<SetAside>> = HashMap::new();
    for r in rows {
        by.entry(r.get(0)).or_default().push(SetAside {
            id: r.get(1),
            seq: r.get(2),
            kind: r.get(3),
            outcome: r.get(4),
            reason: r.get(5),
            landed_at: ts(from_epoch(r.get(6))),
        });
    }
    for s in stores {
        if let Some(v) = by.remove(&s.store_id) {
            s.set_aside = v;
        }
    }
    Ok(())
}

/// `?state=a,b` (or repeated): the filters asked for; 422 naming an unknown one.
fn filters(query: &[(String, String)]) -> Result<Vec<&'static str>, HubError> {
    let mut out = Vec::new();
    for (k, v) in query {
        if k != "state" {
            continue;
        }
        for want in v.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let Some(f) = FILTERS.iter().find(|f| **f == want) else {
                return Err(HubError::Invalid {
                    code: "invalid_query",
                    field: "state".into(),
                    message: format!("state must be one or more of {}", FILTERS.join(", ")),
                });
            };
            out.push(*f);
        }
    }
    Ok(out)
}

/// `GET /v1/fleet[?state=silent,offline,backlog,exposure,set_aside,flagged,ok]`: totals over
/// the whole fleet, and the stores matching any filter given (all without one), worst first.
pub async fn get_fleet(
    State(state): State<HubState>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, HubError> {
    let wanted = filters(&query)?;
    let Ok(_view) = state.fleet_cache.1.try_acquire() else {
        return Err(HubError::Busy(state.config.retry_after_min_secs.max(1)));
    };
    let fleet = read_shared(&state)
        .await
        .map_err(|e| state.db_error("", super::metrics::Work::FleetView, e))?;
    let mut stores: Vec<&FleetStore> = fleet
        .stores
        .iter()
        .filter(|s| wanted.is_empty() || s.flags.iter().any(|f| wanted.contains(f)))
        .collect();
    stores.sort_by(|a, b| a.state.cmp(&b.state).then(a.store_id.cmp(&b.store_id)));
    Ok(axum::Json(json!({
        "generated_at": ts(fleet.now),
        "health_interval_secs": state.config.health_interval_secs.max(1),
        "silent_after_intervals": state.config.silent_after_intervals.max(1),
        "filter": wanted,
        "totals": fleet.totals,
        "stores": stores,
    }))
    .into_response())
}

const PAGE_HTML: &str = include_str!("../../ui/hub/fleet.html");
const PAGE_JS: &str = include_str!("../../ui/hub/fleet.js");
const PAGE_CSS: &str = include_str!("../../ui/hub/fleet.css");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// `GET /fleet`: the operations-room page (reads `/v1/fleet`).
pub async fn page() -> Response {
    asset("text/html; charset=utf-8", PAGE_HTML)
}

pub async fn page_js() -> Response {
    asset("text/javascript; charset=utf-8", PAGE_JS)
}

pub async fn page_css() -> Response {
    asset("text/css; charset=utf-8", PAGE_CSS)
}

/// The fleet gauges for `/metrics`: fixed label sets (states, filters, currencies), never a
/// store id. Every hub process reports the same fleet: aggregate with `max`, not `sum`.
pub fn render_metrics(fleet: Option<&Fleet>) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, samples: Vec<(String, i64)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, v) in samples {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    gauge(
        "standin_hub_fleet_read_ok",
        "1 when the fleet gauges below could be read from PostgreSQL at this scrape.",
        vec![(String::new(), i64::from(fleet.is_some()))],
    );
    let Some(f) = fleet else { return out };
    let t = &f.totals;
    gauge(
        "standin_hub_fleet_stores",
        "Registered stores by state (silent, offline, backlog, ok; each store in one).",
        t.by_state
            .iter()
            .map(|(s, n)| (format!("{{state=\"{s}\"}}"), *n as i64))
            .collect(),
    );
    gauge(
        "standin_hub_fleet_stores_matching",
        "Stores matching each fleet filter (a store may match several).",
        t.by_flag
            .iter()
            .map(|(s, n)| (format!("{{filter=\"{s}\"}}"), *n as i64))
            .collect(),
    );
    gauge(
        "standin_hub_fleet_backlog_entries",
        "Journal entries the stores last reported waiting for central.",
        vec![(String::new(), t.backlog)],
    );
    gauge(
        "standin_hub_fleet_offline_payments",
        "Offline-approved payments the stores last reported not yet forwarded.",
        vec![(String::new(), t.offline_payments)],
    );
    gauge(
        "standin_hub_fleet_offline_exposure_minor",
        "Their total, in minor units, by currency.",
        t.offline_exposure_minor
            .iter()
            .map(|(c, v)| (format!("{{currency=\"{c}\"}}"), *v))
            .collect(),
    );
    gauge(
        "standin_hub_fleet_set_aside_entries",
        "Journal entries HQ rejected or found in conflict, all stores.",
        vec![(String::new(), t.set_aside)],
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_read_from_a_list_and_an_unknown_one_is_named() {
        let q = |s: &str| vec![("state".to_owned(), s.to_owned())];
        assert_eq!(
            filters(&q("silent, offline")).unwrap(),
            ["silent", "offline"]
        );
        assert!(filters(&[]).unwrap().is_empty());
        match filters(&q("sleepy")) {
            Err(HubError::Invalid { field, .. }) => assert_eq!(field, "state"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn currency_labels_are_bounded() {
        assert_eq!(currency_label(Some("USD")), "USD");
        assert_eq!(currency_label(Some("usd\"}")), "other");
        assert_eq!(currency_label(None), "other");
    }
}
