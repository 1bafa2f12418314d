//! The store's heartbeat to central (`POST /v1/stores/{store}/status`, API.md): a small
//! summary of what `/api/v1/status` shows, sent on the central health interval and on every
//! change of state ([`Heartbeat::signature`]), by its own task ([`run`]) under the same
//! breaker, backoff and `Retry-After` rules as the journal (`src/upstream/`). Only the newest
//! heartbeat matters: while central is away nothing queues, and the next one sent is built
//! afresh.
//!
//! The shape is defined here once; the hub and the simulator read it with the same struct,
//! and so can anything else that speaks for a store (a fleet simulator). Receivers ignore
//! fields they do not know, and every part but `store_id`, `sent_at` and `seq` may be absent.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::Status;
use crate::state::AppState;
use crate::upstream::{Backoff, Failure, HealthState, Upstream, retry_after, with_token};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub store_id: String,
    /// When the store built it (RFC 3339 UTC); the receiver keeps the newest by `sent_at`,
    /// then `seq`.
    #[serde(with = "rfc3339")]
    pub sent_at: DateTime<Utc>,
    #[serde(default)]
    pub version: String,
    /// The store's heartbeat counter, monotonic per process start.
    pub seq: u64,
    /// The store's central health interval: a receiver calls the store silent after a
    /// number of these without contact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_secs: Option<u64>,
    /// Each configured upstream the store has heard from, as it sees it (an upstream not yet
    /// heard from, or not configured, is absent).
    #[serde(default)]
    pub upstreams: BTreeMap<String, UpstreamReport>,
    #[serde(default)]
    pub journal: JournalReport,
    #[serde(default)]
    pub payments: PaymentsReport,
    #[serde(default)]
    pub refunds: RefundsReport,
    #[serde(default)]
    pub feeds: BTreeMap<String, FeedReport>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamState {
    Up,
    Degraded,
    Down,
}

impl UpstreamState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Degraded => "degraded",
            Self::Down => "down",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpstreamReport {
    pub state: UpstreamState,
    /// When `state` last changed.
    #[serde(with = "rfc3339")]
    pub since: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JournalReport {
    /// Entries waiting for central, all lanes.
    #[serde(default)]
    pub pending: i64,
    /// The oldest pending entry's time; null when nothing waits.
    #[serde(default)]
    pub oldest_pending_at: Option<String>,
    #[serde(default)]
    pub lanes: BTreeMap<String, LaneReport>,
    /// Entries central rejected or found in conflict, waiting for a person at the store.
    #[serde(default)]
    pub set_aside: i64,
    /// The newest entry's sequence number at the store.
    #[serde(default)]
    pub last_seq: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LaneReport {
    #[serde(default)]
    pub pending: i64,
    #[serde(default)]
    pub oldest_pending_at: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PaymentsReport {
    /// Kiosk payments approved offline, not yet forwarded to the processor.
    #[serde(default)]
    pub offline_count: i64,
    #[serde(default)]
    pub offline_total_minor: i64,
    #[serde(default)]
    pub currency: Option<String>,
    /// The earliest forwarding deadline among them.
    #[serde(default)]
    pub tightest_deadline: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RefundsReport {
    #[serde(default)]
    pub queued: i64,
    #[serde(default)]
    pub queued_total_minor: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FeedReport {
    #[serde(default)]
    pub last_batch: u64,
    /// Seconds since the last batch was applied; null before the first.
    #[serde(default)]
    pub age_secs: Option<i64>,
    /// Central answers but this feed has stopped bringing HQ's updates.
    #[serde(default)]
    pub stalled: bool,
}

/// What counts as a change of state: a heartbeat goes at once when this differs from the
/// last one sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    upstreams: Vec<(String, UpstreamState)>,
    lanes_waiting: Vec<(String, bool)>,
    offline_payments: bool,
    refunds_queued: bool,
    set_aside: bool,
    feeds_stalled: Vec<(String, bool)>,
}

impl Heartbeat {
    /// Built from the same data `/api/v1/status` reads.
    pub fn from_status(s: &Status, seq: u64, interval_secs: Option<u64>) -> Heartbeat {
        let upstreams = s
            .upstreams
            .iter()
            .filter(|(_, h)| h.configured)
            .filter_map(|(name, h)| {
                let state = match h.state {
                    HealthState::Unknown => return None,
                    HealthState::Up => UpstreamState::Up,
                    HealthState::Degraded => UpstreamState::Degraded,
                    HealthState::Down => UpstreamState::Down,
                };
                Some((
                    (*name).to_owned(),
                    UpstreamReport {
                        state,
                        since: h.since,
                    },
                ))
            })
            .collect();
        let lanes: BTreeMap<String, LaneReport> = s
            .journal
            .lanes
            .iter()
            .map(|(l, b)| {
                (
                    (*l).to_owned(),
                    LaneReport {
                        pending: b.pending,
                        oldest_pending_at: b.oldest_occurred_at.clone(),
                    },
                )
            })
            .collect();
        let oldest_pending_at = lanes
            .values()
            .filter_map(|l| l.oldest_pending_at.clone())
            .min();
        Heartbeat {
            store_id: s.store_id.clone(),
            sent_at: s.now,
            version: s.version.to_owned(),
            seq,
            interval_secs,
            upstreams,
            journal: JournalReport {
                pending: lanes.values().map(|l| l.pending).sum(),
                oldest_pending_at,
                lanes,
                set_aside: s.journal.set_aside,
                last_seq: s.journal.last_seq,
            },
            payments: PaymentsReport {
                offline_count: s.payments.count,
                offline_total_minor: s.payments.total_minor,
                currency: s.currency.clone(),
                tightest_deadline: s.payments.tightest_deadline_at.clone(),
            },
            refunds: RefundsReport {
                queued: s.refunds.queued,
                queued_total_minor: s.refunds.queued_minor,
            },
            feeds: s
                .feeds
                .iter()
                .map(|(f, fr)| {
                    (
                        (*f).to_owned(),
                        FeedReport {
                            last_batch: fr.status.last_batch,
                            age_secs: fr.age_secs,
                            stalled: fr.stalled,
                        },
                    )
                })
                .collect(),
        }
    }

    pub fn signature(&self) -> Signature {
        Signature {
            upstreams: self
                .upstreams
                .iter()
                .map(|(k, v)| (k.clone(), v.state))
                .collect(),
            lanes_waiting: self
                .journal
                .lanes
                .iter()
                .map(|(k, v)| (k.clone(), v.pending > 0))
                .collect(),
            offline_payments: self.payments.offline_count > 0,
            refunds_queued: self.refunds.queued > 0,
            set_aside: self.journal.set_aside > 0,
            feeds_stalled: self
                .feeds
                .iter()
                .map(|(k, v)| (k.clone(), v.stalled))
                .collect(),
        }
    }
}

/// RFC 3339 UTC with a `Z`, whole seconds when there are no fractions.
mod rfc3339 {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| serde::de::Error::custom(format!("not an RFC 3339 time: {e}")))
    }
}

/// How often the sender looks for a change of state.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Runs until `shutdown` fires. Needs `central.url`. Its own task: it never holds the journal
/// uplink up, and while central is away it keeps nothing but the wish to send the newest.
pub async fn run(state: AppState, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let Some(base) = state.config.central.url.clone() else {
        return;
    };
    let url = format!(
        "{}/v1/stores/{}/status",
        base.trim_end_matches('/'),
        state.config.store_id
    );
    let interval_secs = state.config.central.health_interval_secs.max(1);
    let interval = Duration::from_secs(interval_secs);
    let check = CHECK_EVERY.min(interval);
    let cfg = state.config.journal.clone();
    let mut backoff = Backoff::new(
        Duration::from_millis(cfg.retry_base_ms.max(1)),
        Duration::from_millis(cfg.retry_cap_ms.max(1)),
    );
    let mut seq: u64 = 0;
    let mut last_sent: Option<(Signature, tokio::time::Instant)> = None;
    // Give the health probe a moment so the first heartbeat says how central looks.
    let mut wait = check;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        wait = check;
        let status = match super::current(&state).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "heartbeat cannot read the store's status");
                continue;
            }
        };
        let beat = Heartbeat::from_status(&status, seq + 1, Some(interval_secs));
        let sig = beat.signature();
        let due = match &last_sent {
            None => true,
            Some((s, at)) => *s != sig || at.elapsed() >= interval,
        };
        if !due {
            continue;
        }
        // Ask the breaker only with a heartbeat in hand (a half-open permit is a promise to
        // send one request and report how it went).
        if !state.upstreams.permit(Upstream::Central, state.clock.now()) {
            wait = state
                .upstreams
                .next_permit_in(Upstream::Central, state.clock.now(), interval)
                .max(Duration::from_millis(20));
            continue;
        }
        seq += 1;
        match send(&state, &url, &beat).await {
            Sent::Ok => {
                backoff.reset();
                last_sent = Some((sig, tokio::time::Instant::now()));
            }
            Sent::Refused => {
                // Central answered but will not take it (an old central without the path,
                // or a token problem the journal will show too): try again next interval.
                backoff.reset();
                last_sent = Some((sig, tokio::time::Instant::now()));
            }
            Sent::Failed(ra) => {
                let now = state.clock.now();
                wait = state
                    .upstreams
                    .next_permit_in(Upstream::Central, now, backoff.next_delay(ra))
                    .max(Duration::from_millis(20));
            }
        }
    }
}

enum Sent {
    Ok,
    Refused,
    Failed(Option<Duration>),
}

async fn send(state: &AppState, url: &str, beat: &Heartbeat) -> Sent {
    let res = with_token(state.http.post(url), &state.config.central.token)
        .timeout(Duration::from_millis(
            state.config.central.timeout_ms.max(1),
        ))
        .json(beat)
        .send()
        .await;
    let now = state.clock.now();
    let res = match res {
        Ok(r) => r,
        Err(e) => {
            let failure = Failure::transport(&e).during("heartbeat");
            tracing::debug!(error = %failure.error, "heartbeat not delivered");
            state
                .upstreams
                .report_failure(Upstream::Central, failure, now);
            return Sent::Failed(None);
        }
    };
    let status = res.status();
    if status.is_success() {
        state.upstreams.report(Upstream::Central, Ok(()), now);
        return Sent::Ok;
    }
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        let ra = retry_after(res.headers());
        state.upstreams.report_failure_retry_after(
            Upstream::Central,
            format!("heartbeat answered HTTP {status}"),
            ra,
            now,
        );
        return Sent::Failed(ra);
    }
    // Any other answer is central answering: it is up, it just refuses this.
    state.upstreams.report(Upstream::Central, Ok(()), now);
    tracing::warn!(%status, "central refused the heartbeat");
    Sent::Refused
}

/// `sent_at` as the hub and tests print it.
pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_shape_reads_and_unknown_fields_are_ignored() {
        let body = serde_json::json!({
            "store_id": "store-0001", "sent_at": "2026-12-06T10:00:00Z", "version": "0.1.0",
            "seq": 42, "something_new": {"x": 1},
            "upstreams": {"central": {"state": "up", "since": "2026-12-06T09:00:00Z"},
                          "payments": {"state": "down", "since": "2026-12-06T09:55:00Z"}},
            "journal": {"pending": 1234, "oldest_pending_at": "2026-12-06T09:55:01Z",
                        "lanes": {"payments": {"pending": 1221, "oldest_pending_at": "2026-12-06T09:55:01Z"},
                                  "pickups": {"pending": 0, "oldest_pending_at": null}}},
            "payments": {"offline_count": 57, "offline_total_minor": 123456, "currency": "USD",
                         "tightest_deadline": "2026-12-07T09:55:00Z"},
            "refunds": {"queued": 2, "queued_total_minor": 4599},
            "feeds": {"receipts": {"last_batch": 12, "age_secs": 30}}
        });
        let h: Heartbeat = serde_json::from_value(body).unwrap();
        assert_eq!(h.seq, 42);
        assert_eq!(h.upstreams["payments"].state, UpstreamState::Down);
        assert_eq!(h.journal.lanes["payments"].pending, 1221);
        assert_eq!(h.payments.offline_total_minor, 123456);
        assert_eq!(h.feeds["receipts"].age_secs, Some(30));
        let again = serde_json::to_value(&h).unwrap();
        assert_eq!(again["sent_at"], "2026-12-06T10:00:00Z");
        assert_eq!(again["upstreams"]["central"]["state"], "up");
        let minimal: Heartbeat = serde_json::from_value(serde_json::json!({
            "store_id": "s", "sent_at": "2026-12-06T10:00:00+01:00", "seq": 1
        }))
        .unwrap();
        assert_eq!(ts(minimal.sent_at), "2026-12-06T09:00:00Z");
        assert!(
            serde_json::from_value::<Heartbeat>(serde_json::json!({
                "store_id": "s", "sent_at": "yesterday", "seq": 1
            }))
            .is_err()
        );
    }

    #[test]
    fn a_lane_filling_or_an_upstream_changing_is_a_change_of_state() {
        let base: Heartbeat = serde_json::from_value(serde_json::json!({
            "store_id": "s", "sent_at": "2026-12-06T10:00:00Z", "seq": 1,
            "upstreams": {"central": {"state": "up", "since": "2026-12-06T09:00:00Z"}},
            "journal": {"lanes": {"audit": {"pending": 0}}}
        }))
        .unwrap();
        let mut more = base.clone();
        more.seq = 2;
        more.journal.lanes.get_mut("audit").unwrap().pending = 0;
        assert_eq!(base.signature(), more.signature(), "seq alone is no change");
        more.journal.lanes.get_mut("audit").unwrap().pending = 5;
        assert_ne!(base.signature(), more.signature(), "0 -> 5 pending");
        let mut grown = more.clone();
        grown.journal.lanes.get_mut("audit").unwrap().pending = 6;
        assert_eq!(more.signature(), grown.signature(), "5 -> 6 is no change");
        let mut down = base.clone();
        down.upstreams.get_mut("central").unwrap().state = UpstreamState::Down;
        assert_ne!(base.signature(), down.signature());
    }
}
