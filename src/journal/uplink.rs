//! Delivery by push: the uplink worker sends pending entries to central.
//!
//! One batch in flight at a time, always from the highest-priority lane that has anything
//! pending (payments, returns, pickups, audit), in `seq` order within the lane, at most
//! `batch_size` entries. Per-entry outcomes are stored in one transaction. A transport
//! failure or a 429/5xx resends the same entries (re-read from the database, so the same ids
//! and the same order, also after a restart) after a capped, fully jittered backoff that
//! honours `Retry-After`. Entries central did not answer for (a partial acceptance) stay
//! pending and go again. A rejected or conflicting entry is set aside and never blocks its
//! lane.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::delivery::{self, Delivered, EntryRef, Outcome, Via};
use super::{Entry, Lane};
use crate::state::AppState;
use crate::store::StoreError;
use crate::upstream::{Backoff, Upstream, Upstreams, describe_reqwest, retry_after, with_token};

#[derive(Serialize)]
struct Push<'a> {
    entries: &'a [Entry],
}

#[derive(Deserialize)]
struct PushAnswer {
    results: Vec<PushResult>,
}

#[derive(Deserialize)]
struct PushResult {
    id: String,
    outcome: Outcome,
    #[serde(default)]
    reason: Option<String>,
}

pub enum Round {
    /// Nothing pending: wait for an append or the idle poll.
    Idle,
    /// The breaker holds central back for now: nothing was sent.
    Held,
    /// Sent and heard back; go again at once.
    Delivered,
    /// Central is down or refusing; wait before the next attempt (its `Retry-After`, if any).
    Failed(Option<Duration>),
}

/// Runs until `shutdown` fires. Needs `central.url`.
pub async fn run(state: AppState, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let Some(base) = state.config.central.url.clone() else {
        return;
    };
    let url = format!(
        "{}/v1/stores/{}/journal",
        base.trim_end_matches('/'),
        state.config.store_id
    );
    let cfg = state.config.journal.clone();
    let mut backoff = Backoff::new(
        Duration::from_millis(cfg.retry_base_ms.max(1)),
        Duration::from_millis(cfg.retry_cap_ms.max(1)),
    );
    let idle = Duration::from_millis(cfg.idle_poll_ms.max(10));
    loop {
        if *shutdown.borrow() {
            return;
        }
        let round = round(&state, &url, cfg.batch_size.max(1)).await;
        let now = state.clock.now();
        let Some((wait, wake_on_append)) =
            next_wait(&state.upstreams, &mut backoff, round, now, idle)
        else {
            continue;
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = state.journal_appended.notified(), if wake_on_append => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// After a round: how long to sleep before the next, and whether an append may cut the sleep
/// short; `None` to go again at once (the backoff starts over). One sleep that honours both
/// the backoff and the breaker: stacking two independent jitters would bunch a fleet of
/// stores together (tests/fleet_politeness.rs). Needs no `AppState`, so the fleet simulator
/// (`standin hub fleet-sim`) runs the same rule.
pub fn next_wait(
    upstreams: &Upstreams,
    backoff: &mut Backoff,
    round: Round,
    now: chrono::DateTime<chrono::Utc>,
    idle: Duration,
) -> Option<(Duration, bool)> {
    Some(match round {
        Round::Delivered => {
            backoff.reset();
            return None;
        }
        Round::Idle => (idle, true),
        Round::Held => (
            upstreams.next_permit_in(Upstream::Central, now, idle),
            false,
        ),
        Round::Failed(ra) => (
            upstreams.next_permit_in(Upstream::Central, now, backoff.next_delay(ra)),
            false,
        ),
    })
}

async fn round(state: &AppState, url: &str, batch_size: usize) -> Round {
    let picked = state
        .store
        .read(move |c| -> Result<Option<(Lane, Vec<Entry>)>, StoreError> {
            let Some(lane) = delivery::next_lane(c)? else {
                return Ok(None);
            };
            Ok(Some((lane, delivery::pending(c, lane, batch_size)?)))
        })
        .await;
    let (lane, entries) = match picked {
        Ok(Some(p)) => p,
        Ok(None) => return Round::Idle,
        Err(e) => {
            tracing::error!(error = %e, "uplink cannot read the journal");
            return Round::Failed(None);
        }
    };
    // Ask the breaker only with a request in hand: a half-open permit is a promise to send
    // one request and report how it went.
    if !state.upstreams.permit(Upstream::Central, state.clock.now()) {
        return Round::Held;
    }
    let seqs: Vec<i64> = entries.iter().map(|e| e.seq).collect();
    let _ = state
        .store
        .write(move |c| delivery::count_attempt(c, &seqs).map_err(StoreError::from))
        .await;

    let sent = with_token(state.http.post(url), &state.config.central.token)
        .timeout(Duration::from_millis(
            state.config.central.timeout_ms.max(1),
        ))
        .json(&Push { entries: &entries })
        .send()
        .await;
    let now = state.clock.now();
    let res = match sent {
        Ok(r) => r,
        Err(e) => {
            let why = describe_reqwest(&e);
            tracing::warn!(lane = lane.as_str(), entries = entries.len(), error = %why, "journal push failed; will resend the same entries");
            report_failure(state, why, None, now);
            return Round::Failed(None);
        }
    };
    let status = res.status();
    if !status.is_success() {
        let ra = retry_after(res.headers());
        tracing::warn!(lane = lane.as_str(), %status, retry_after = ?ra, "central refused the journal push; will resend");
        report_failure(
            state,
            format!("journal push answered HTTP {status}"),
            ra,
            now,
        );
        return Round::Failed(ra);
    }
    let answer: PushAnswer = match res.json().await {
        Ok(a) => a,
        Err(e) => {
            report_failure(
                state,
                format!("unreadable journal answer: {}", describe_reqwest(&e)),
                None,
                now,
            );
            return Round::Failed(None);
        }
    };
    state.upstreams.report(Upstream::Central, Ok(()), now);
    // Only outcomes for entries we sent count: central cannot settle anything else.
    let sent_ids: std::collections::HashSet<&str> = entries.iter().map(|e| e.id.as_str()).collect();
    let results: Vec<Delivered> = answer
        .results
        .into_iter()
        .filter(|r| sent_ids.contains(r.id.as_str()))
        .map(|r| Delivered {
            entry: EntryRef::Id(r.id),
            outcome: r.outcome,
            reason: r.reason,
        })
        .collect();
    let answered = results.len();
    let at = state.clock.now_rfc3339();
    let stored = state
        .store
        .write(move |c| {
            delivery::record_outcomes(c, &results, Via::Push, &at).map_err(StoreError::from)
        })
        .await;
    if let Err(e) = stored {
        tracing::error!(error = %e, "could not store journal outcomes; the entries will be resent");
        return Round::Failed(None);
    }
    tracing::debug!(
        lane = lane.as_str(),
        sent = entries.len(),
        answered,
        "journal batch delivered"
    );
    if answered == 0 {
        // Central took the request but settled nothing: do not spin on it.
        return Round::Failed(None);
    }
    Round::Delivered
}

fn report_failure(
    state: &AppState,
    why: String,
    retry_after: Option<Duration>,
    now: chrono::DateTime<chrono::Utc>,
) {
    state
        .upstreams
        .report_failure_retry_after(Upstream::Central, why, retry_after, now);
}
