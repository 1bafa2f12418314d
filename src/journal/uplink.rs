//! Delivery by push: the uplink worker sends pending entries to central.
//!
//! One batch in flight at a time, at most `batch_size` entries: the highest-priority lane
//! that has anything pending first (payments, returns, pickups, audit), then the lower lanes
//! in the room it leaves, each lane in `seq` order ([`delivery::push_batch`]); while a
//! backlog drains (each batch full and fully answered) the batches double up to
//! [`backlog_batch`]. Per-entry outcomes, and the attempt they count,
//! are stored in one transaction. A transport failure or a 429/5xx resends the same entries
//! (re-read from the database, so the same ids and the same order, also after a restart)
//! after a capped, fully jittered backoff that honours `Retry-After`. Entries central did not
//! answer for (a partial acceptance) stay pending and go again. A rejected or conflicting
//! entry is set aside and never blocks its lane.
//!
//! Draining a backlog is pipelined (issue 19, `benches/backlog_drain.rs`): while one batch is
//! in flight, the next is read and serialised, and the outcomes of the one before commit;
//! only requests to central stay one at a time, so each lane still arrives in `seq` order.
//! Entries central has answered for but whose outcomes are still committing are skipped by
//! `seq` ([`Answered`]); when anything goes wrong the pipeline settles and starts again from
//! what the database says.

use std::time::Duration;

use serde::Deserialize;

use super::Lane;
use super::delivery::{self, Outcome, PendingJson};
use crate::config::JournalConfig;
use crate::state::AppState;
use crate::store::StoreError;
use crate::upstream::{
    Backoff, Failure, Upstream, Upstreams, describe_reqwest, retry_after, with_token,
};

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

/// Most entries in one push: the hub's default `max_entries_per_request`.
const MAX_PUSH: usize = 5_000;

/// How many entries one push carries while a backlog drains: ten times `batch_size`, within
/// what the hub takes in one request. Fewer, larger pushes make fewer commits (one per batch,
/// `synchronous=FULL`) and requests; 1,000 entries are about 600 KB.
pub fn backlog_batch(cfg: &JournalConfig) -> usize {
    backlog_batch_of(cfg.batch_size)
}

fn backlog_batch_of(batch_size: usize) -> usize {
    batch_size
        .max(1)
        .saturating_mul(10)
        .min(MAX_PUSH.max(batch_size))
}

/// How many entries the next push reads: `batch_size`, doubling up to [`backlog_batch`]
/// while each push goes out full and comes back fully answered (a backlog draining), and
/// back to `batch_size` after anything else. The fleet simulator's stores size their pushes
/// by the same rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchGrowth {
    limit: usize,
    base: usize,
    most: usize,
}

impl BatchGrowth {
    /// For `journal.batch_size` = `batch_size`.
    pub fn new(batch_size: usize) -> Self {
        let base = batch_size.max(1);
        Self {
            limit: base,
            base,
            most: backlog_batch_of(batch_size),
        }
    }

    /// Entries the next read may take.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The limit after a push of `sent` entries read with [`BatchGrowth::limit`], if central
    /// answers for all of them.
    pub fn after_answered(&self, sent: usize) -> usize {
        if sent >= self.limit {
            self.limit.saturating_mul(2).min(self.most)
        } else {
            self.base
        }
    }

    /// A push of `sent` entries was answered for all of them.
    pub fn answered(&mut self, sent: usize) {
        self.limit = self.after_answered(sent);
    }

    /// Anything but a fully answered push: start again at `batch_size`.
    pub fn reset(&mut self) {
        self.limit = self.base;
    }
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
    let mut pipe = Pipeline::new(&cfg);
    loop {
        if *shutdown.borrow() {
            pipe.settle().await;
            return;
        }
        let round = round(&state, &url, &mut pipe).await;
        // Registered before the breaker is read: an answer from here on wakes us, and one
        // while the round settled is seen by `next_wait` (a breaker closed since: go now).
        let mut eased = std::pin::pin!(state.upstreams.eased(Upstream::Central));
        eased.as_mut().enable();
        let now = state.clock.now();
        let Some((wait, wake_on_append)) =
            next_wait(&state.upstreams, &mut backoff, round, now, idle)
        else {
            continue;
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = state.journal_appended.notified(), if wake_on_append => {}
            // Held back by the breaker (or backing off) and central just answered someone
            // else (the health probe, usually): go now, not at the end of the sleep.
            _ = eased, if !wake_on_append => {}
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
        // Refused, but if another caller's answer closed the breaker while this round
        // settled (after the refusal, before the caller's wake-up was registered), go now.
        Round::Held if lets_through(upstreams) => (Duration::ZERO, false),
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

/// Whether central's breaker lets every request through: closed and not gated (a gated
/// breaker keeps its `Retry-After` hold until an answer lifts it, and lets one request at a
/// time through after it, so a refusal there is not retried at once).
fn lets_through(upstreams: &Upstreams) -> bool {
    upstreams
        .get(Upstream::Central)
        .is_some_and(|h| h.breaker == crate::upstream::BreakerState::Closed && h.retry_at.is_none())
}

/// Per lane, the newest `seq` central has answered for in a batch whose outcomes may still
/// be committing: the next read starts after it. Zero (read everything pending) whenever no
/// outcomes are outstanding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Answered([i64; 4]);

impl Answered {
    fn get(&self, lane: Lane) -> i64 {
        self.0[lane as usize]
    }

    fn with(mut self, lane: Lane, seq: i64) -> Self {
        self.0[lane as usize] = self.0[lane as usize].max(seq);
        self
    }
}

/// A push, read and serialised, ready to send.
struct Batch {
    pending: PendingJson,
    /// The most entries it was read with: a batch with fewer took every lane's pending.
    limit: usize,
}

impl Batch {
    fn len(&self) -> usize {
        self.pending.entries.len()
    }

    /// The lanes it starts and ends with, for the logs.
    fn lanes(&self) -> (&'static str, &'static str) {
        // Lanes go in priority order, so the first is the highest one present.
        let first = Lane::BY_PRIORITY
            .into_iter()
            .find(|l| self.pending.last_seq[*l as usize] > 0);
        (
            first.map_or("", Lane::as_str),
            self.pending.last_lane.map_or("", Lane::as_str),
        )
    }

    /// `answered` as if this batch were answered too.
    fn answered_after(&self, answered: Answered) -> Answered {
        Lane::BY_PRIORITY.into_iter().fold(answered, |a, l| {
            a.with(l, self.pending.last_seq[l as usize])
        })
    }

    fn seqs(&self) -> Vec<i64> {
        self.pending.entries.iter().map(|e| e.0).collect()
    }
}

/// What carries over from one round to the next while a backlog drains.
struct Pipeline {
    answered: Answered,
    /// The previous batch's outcomes, committing on the writer.
    recording: Option<tokio::task::JoinHandle<Result<(), StoreError>>>,
    /// The next batch, read while the previous one was in flight (as if it were answered).
    next: Option<Batch>,
    /// Entries in the next read.
    size: BatchGrowth,
}

impl Pipeline {
    fn new(cfg: &JournalConfig) -> Self {
        Self {
            answered: Answered::default(),
            recording: None,
            next: None,
            size: BatchGrowth::new(cfg.batch_size),
        }
    }

    /// Waits for the outstanding outcomes, if any; false if they could not be stored (those
    /// entries stay pending and go again).
    async fn stored(&mut self) -> bool {
        let Some(recording) = self.recording.take() else {
            return true;
        };
        match recording.await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "could not store journal outcomes; the entries will be resent");
                false
            }
            Err(e) => {
                tracing::error!(error = %e, "storing journal outcomes panicked; the entries will be resent");
                false
            }
        }
    }

    /// [`Pipeline::stored`], and forgets what was read ahead: the next read starts from
    /// what the database says.
    async fn settle(&mut self) -> bool {
        self.next = None;
        self.answered = Answered::default();
        self.size.reset();
        self.stored().await
    }

    /// [`Pipeline::settle`], then `round`.
    async fn settled(&mut self, round: Round) -> Round {
        if self.settle().await {
            round
        } else {
            Round::Failed(None)
        }
    }
}

/// The next batch after `answered`, by priority ([`delivery::push_batch`]).
async fn read_batch(
    state: &AppState,
    answered: Answered,
    limit: usize,
) -> Result<Option<Batch>, StoreError> {
    state
        .store
        .read(move |c| -> Result<Option<Batch>, StoreError> {
            let pending = delivery::push_batch(c, |l| answered.get(l), limit)?;
            Ok((!pending.entries.is_empty()).then_some(Batch { pending, limit }))
        })
        .await
}

/// A batch read ahead (after `answered`), unless it gives way to entries appended since
/// ([`delivery::push_outdated`]): they go as they would have without the read-ahead.
async fn if_current(state: &AppState, answered: Answered, batch: Batch) -> Option<Batch> {
    // A full batch of the top lane (a payments backlog) needs no read.
    if !batch.pending.may_be_outdated(batch.limit) {
        return Some(batch);
    }
    state
        .store
        .read_quick(move |c| -> Result<Option<Batch>, StoreError> {
            let outdated =
                delivery::push_outdated(c, |l| answered.get(l), &batch.pending, batch.limit)?;
            Ok((!outdated).then_some(batch))
        })
        .await
        .unwrap_or(None)
}

enum Sent {
    Answered(PushAnswer),
    Failed(Failure),
}

async fn send(state: &AppState, url: &str, batch: &Batch) -> Sent {
    let mut body = Vec::with_capacity(batch.pending.json.len() + 16);
    body.extend_from_slice(br#"{"entries":"#);
    body.extend_from_slice(&batch.pending.json);
    body.push(b'}');
    let sent = with_token(state.http.post(url), &state.config.central.token)
        .timeout(Duration::from_millis(
            state.config.central.timeout_ms.max(1),
        ))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await;
    let (lane, last_lane) = batch.lanes();
    let res = match sent {
        Ok(r) => r,
        Err(e) => {
            let failure = Failure::transport(&e);
            tracing::warn!(lane, last_lane, entries = batch.len(), error = %failure.error, "journal push failed; will resend the same entries");
            return Sent::Failed(failure);
        }
    };
    let status = res.status();
    if !status.is_success() {
        let ra = retry_after(res.headers());
        tracing::warn!(lane, last_lane, %status, retry_after = ?ra, "central refused the journal push; will resend");
        return Sent::Failed(Failure::answered(
            format!("journal push answered HTTP {status}"),
            ra,
        ));
    }
    match res.json().await {
        Ok(a) => Sent::Answered(a),
        Err(e) => Sent::Failed(Failure::answered(
            format!("unreadable journal answer: {}", describe_reqwest(&e)),
            None,
        )),
    }
}

async fn round(state: &AppState, url: &str, pipe: &mut Pipeline) -> Round {
    let ahead = match pipe.next.take() {
        Some(b) => if_current(state, pipe.answered, b).await,
        None => None,
    };
    let batch = match ahead {
        Some(b) => b,
        None => match read_batch(state, pipe.answered, pipe.size.limit()).await {
            Ok(Some(b)) => b,
            Ok(None) => return pipe.settled(Round::Idle).await,
            Err(e) => {
                tracing::error!(error = %e, "uplink cannot read the journal");
                return pipe.settled(Round::Failed(None)).await;
            }
        },
    };
    // Ask the breaker only with a request in hand: a half-open permit is a promise to send
    // one request and report how it went.
    if !state.upstreams.permit(Upstream::Central, state.clock.now()) {
        return pipe.settled(Round::Held).await;
    }
    // While this batch is in flight, read the one after it as if it will be answered.
    let next_limit = pipe.size.after_answered(batch.len());
    let after = batch.answered_after(pipe.answered);
    let (sent, ahead) = tokio::join!(
        send(state, url, &batch),
        read_batch(state, after, next_limit)
    );
    let now = state.clock.now();
    let answer = match sent {
        Sent::Answered(a) => a,
        Sent::Failed(failure) => {
            let ra = failure.retry_after;
            state
                .upstreams
                .report_failure(Upstream::Central, failure, now);
            let settled = pipe.settle().await;
            let seqs = batch.seqs();
            let _ = state
                .store
                .write(move |c| delivery::count_attempt(c, &seqs).map_err(StoreError::from))
                .await;
            return if settled {
                Round::Failed(ra)
            } else {
                Round::Failed(None)
            };
        }
    };
    state.upstreams.report(Upstream::Central, Ok(()), now);
    // Only outcomes for entries we sent count: central cannot settle anything else.
    let sent_ids: std::collections::HashMap<&str, i64> = batch
        .pending
        .entries
        .iter()
        .map(|(seq, id)| (id.as_str(), *seq))
        .collect();
    let mut answered_seqs = std::collections::HashSet::new();
    let results: Vec<(i64, Outcome, Option<String>)> = answer
        .results
        .into_iter()
        .filter_map(|r| {
            let seq = *sent_ids.get(r.id.as_str())?;
            answered_seqs.insert(seq);
            Some((seq, r.outcome, r.reason))
        })
        .collect();
    let answered = answered_seqs.len();
    // The previous batch's outcomes have had this whole round trip to commit.
    let previous_stored = pipe.stored().await;
    let seqs = batch.seqs();
    let at = state.clock.now_rfc3339();
    let store = state.store.clone();
    let recording = tokio::spawn(async move {
        store
            .write(move |c| {
                delivery::record_push(c, &seqs, &results, &at).map_err(StoreError::from)
            })
            .await
    });
    pipe.recording = Some(recording);
    let (lane, last_lane) = batch.lanes();
    tracing::debug!(
        lane,
        last_lane,
        sent = batch.len(),
        answered,
        "journal batch delivered"
    );
    if answered == 0 {
        // Central took the request but settled nothing: do not spin on it.
        return pipe.settled(Round::Failed(None)).await;
    }
    if !previous_stored || answered < batch.len() {
        // Some entries stay pending: read again from what the database says.
        return pipe.settled(Round::Delivered).await;
    }
    pipe.answered = after;
    pipe.size.answered(batch.len());
    pipe.next = match ahead {
        Ok(next) => next,
        Err(e) => {
            tracing::warn!(error = %e, "uplink could not read ahead; reading again");
            None
        }
    };
    Round::Delivered
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::{BreakerConfig, Failure};

    #[test]
    fn pushes_double_while_they_go_full_and_answered_and_start_again_after_anything_else() {
        let mut size = BatchGrowth::new(100);
        let mut limits = Vec::new();
        for _ in 0..6 {
            limits.push(size.limit());
            size.answered(size.limit());
        }
        assert_eq!(limits, [100, 200, 400, 800, 1_000, 1_000]);
        size.answered(999);
        assert_eq!(
            size.limit(),
            100,
            "a push with room left: the backlog is gone"
        );
        size.answered(100);
        size.reset();
        assert_eq!(size.limit(), 100, "a failed or partly answered push");
        let mut big = BatchGrowth::new(3_000);
        big.answered(3_000);
        assert_eq!(
            big.limit(),
            MAX_PUSH,
            "never beyond what the hub takes at once"
        );
    }

    #[test]
    fn a_held_round_sleeps_on_the_breaker_unless_it_has_closed_since() {
        let t0 = chrono::Utc::now();
        let idle = Duration::from_secs(1);
        let u = Upstreams::with_breaker(|_| true, BreakerConfig::default(), 3, t0);
        let mut backoff = Backoff::new(Duration::from_secs(2), Duration::from_secs(60));
        let held = |u: &Upstreams, b: &mut Backoff, now| next_wait(u, b, Round::Held, now, idle);

        u.report_failure(Upstream::Central, Failure::unreachable("refused"), t0);
        assert_eq!(
            held(&u, &mut backoff, t0),
            Some((idle, false)),
            "open: poll"
        );
        let at = u.get(Upstream::Central).unwrap().retry_at.unwrap();
        assert!(u.permit(Upstream::Central, at), "someone else's probe");
        assert_eq!(
            held(&u, &mut backoff, at),
            Some((idle, false)),
            "half-open with a probe in flight: poll, never spin"
        );
        u.report(Upstream::Central, Ok(()), at);
        assert!(u.permit(Upstream::Central, at));
        u.report(Upstream::Central, Ok(()), at);
        assert_eq!(
            held(&u, &mut backoff, at),
            Some((Duration::ZERO, false)),
            "closed since the refusal: go now"
        );

        u.report_failure_retry_after(
            Upstream::Central,
            "HTTP 503".into(),
            Some(Duration::from_secs(2)),
            at,
        );
        let until = u.get(Upstream::Central).unwrap().retry_at.unwrap();
        assert!(
            u.permit(Upstream::Central, until),
            "the one request after the hold"
        );
        let (wait, _) = held(&u, &mut backoff, until).unwrap();
        assert!(
            wait > Duration::ZERO,
            "gated, its one request in flight: no spin"
        );
    }
}
