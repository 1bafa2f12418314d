//! Refunds to an original card / app-pay / gift-card tender: `POST /v1/refunds` on the
//! processor with the refund's key as `Idempotency-Key`, the same stored body every time.
//!
//! A refund is queued in the return's own transaction. The desk's request sends it at once
//! when the processor's breaker lets it; otherwise (and after any failure) the refund worker
//! sends the oldest queued refunds as soon as the processor is back. A timeout after sending
//! is "outcome unknown": the refund stays queued and goes again with the same key, which the
//! processor answers with its first answer, so each refund takes effect exactly once. The
//! first answer is stored, and journaled (returns lane) in the same transaction.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, params};
use serde::Serialize;
use serde_json::{Value, json};

use crate::journal::{self, Lane, NewEntry};
use crate::state::AppState;
use crate::upstream::{Backoff, BearerIfSet, Upstream, describe_reqwest, retry_after};

/// Refund keys being sent right now (`AppState::refunds_in_flight`), so the desk's request
/// and the worker never send the same key at the same time. The key makes a second send
/// harmless to the customer, but a processor may answer a concurrent request with the same
/// key with a refusal (409, "in use") rather than the first answer.
#[derive(Default)]
pub struct InFlight {
    keys: Mutex<HashSet<String>>,
    /// Woken whenever a claim is released.
    released: tokio::sync::Notify,
}

/// A claim on a key; released on drop (also when the desk's request is cancelled mid-send).
struct Claim<'a> {
    set: &'a InFlight,
    key: String,
}

impl InFlight {
    fn claim(&self, key: &str) -> Option<Claim<'_>> {
        // A panic while holding this lock cannot leave the set inconsistent (one insert or
        // remove), so a poisoned lock is used as is rather than stopping every refund.
        let mut set = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        set.insert(key.to_string()).then(|| Claim {
            set: self,
            key: key.to_string(),
        })
    }

    /// Waits until nobody holds `key` (or `limit` has passed): for the desk's request, whose
    /// answer shows the refund's state, when the worker is sending that refund right then.
    async fn released(&self, key: &str, limit: Duration) {
        let _ = tokio::time::timeout(limit, async {
            loop {
                // Registered before the check, so a release in between is not missed.
                let woken = self.released.notified();
                tokio::pin!(woken);
                woken.as_mut().enable();
                if !self
                    .keys
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .contains(key)
                {
                    return;
                }
                woken.await;
            }
        })
        .await;
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.set
            .keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
        self.set.released.notify_waiters();
    }
}

/// A refund as the return's answer shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RefundView {
    pub refund_key: String,
    pub kind: String,
    pub brand: Option<String>,
    pub last4: Option<String>,
    pub amount_minor: i64,
    /// `queued` (waiting for the processor), `approved`, `declined`, `failed` (the processor
    /// refused the request itself: a person has to look).
    pub state: String,
    pub attempts: i64,
}

pub fn of_return(c: &Connection, return_id: &str) -> rusqlite::Result<Vec<RefundView>> {
    c.prepare_cached(
        "SELECT refund_key, kind, brand, last4, amount_minor, state, attempts FROM return_refunds
         WHERE return_id = ?1 ORDER BY tender_index",
    )?
    .query_map([return_id], |r| {
        Ok(RefundView {
            refund_key: r.get(0)?,
            kind: r.get(1)?,
            brand: r.get(2)?,
            last4: r.get(3)?,
            amount_minor: r.get(4)?,
            state: r.get(5)?,
            attempts: r.get(6)?,
        })
    })?
    .collect()
}

/// The status of the kiosk payment a refund `f` goes back to, if its tender is one: the
/// receipt's tender at `f.tender_index` names the payment (kiosk sales, `payments::sales`).
const PAYMENT_OF_REFUND: &str = "(SELECT p.status FROM returns r
      JOIN receipts rc ON rc.receipt_id = r.receipt_id
      JOIN payments p ON p.payment_id = json_extract(rc.doc, '$.tenders[' || f.tender_index || '].payment_id')
     WHERE r.return_id = f.return_id)";

/// A refund to a kiosk payment approved offline waits until the processor has captured that
/// payment: refunding an authorisation the processor has not seen yet would fail, and if the
/// payment is then declined the store would have paid back money it never had.
fn sendable() -> String {
    format!("coalesce({PAYMENT_OF_REFUND}, 'captured') IN ('approved', 'captured')")
}

/// A return's queued refunds that may go now: (key, body).
pub fn queued_of(c: &Connection, return_id: &str) -> rusqlite::Result<Vec<(String, String)>> {
    c.prepare_cached(&format!(
        "SELECT refund_key, request FROM return_refunds f
         WHERE return_id = ?1 AND state = 'queued' AND {}
         ORDER BY tender_index",
        sendable()
    ))?
    .query_map([return_id], |r| Ok((r.get(0)?, r.get(1)?)))?
    .collect()
}

/// The oldest queued refunds of the store that may go now: (key, body).
fn oldest_queued(c: &Connection, limit: i64) -> rusqlite::Result<Vec<(String, String)>> {
    c.prepare_cached(&format!(
        "SELECT refund_key, request FROM return_refunds f WHERE state = 'queued' AND {}
         ORDER BY created_at, refund_key LIMIT ?1",
        sendable()
    ))?
    .query_map([limit], |r| Ok((r.get(0)?, r.get(1)?)))?
    .collect()
}

/// Queued refunds to kiosk payments that will never be collected (declined after
/// forwarding, expired): (key, the payment's status).
fn uncollected(c: &Connection) -> rusqlite::Result<Vec<(String, String)>> {
    c.prepare_cached(&format!(
        "SELECT refund_key, status FROM (
            SELECT f.refund_key, f.created_at, {PAYMENT_OF_REFUND} AS status
            FROM return_refunds f WHERE f.state = 'queued')
         WHERE status IS NOT NULL AND status NOT IN ('approved', 'captured', 'approved_offline', 'pending')
         ORDER BY created_at"
    ))?
    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
    .collect()
}

/// Takes refunds whose kiosk payment will never be collected out of the queue as `failed`,
/// journaled like any refund the processor refused, so reconciliation shows them: the
/// customer was told the refund would reach the card, and a person has to settle it.
async fn fail_uncollected(state: &AppState) {
    let found = state
        .store
        .read(|c| uncollected(c).map_err(crate::store::StoreError::from))
        .await;
    let found = match found {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, "refund worker cannot read the queue");
            return;
        }
    };
    for (key, status) in found {
        let answer = json!({"reason": "payment_not_collected", "payment_status": status});
        store_outcome(
            state,
            &key,
            &Sent::Settled {
                state: "failed",
                answer,
            },
        )
        .await;
    }
}

/// What one attempt came to.
enum Sent {
    /// The processor answered for the refund: approved or declined, or refused the request
    /// itself (`failed`: another 4xx, such as 400 or 422). Final: stored, never sent again.
    Settled { state: &'static str, answer: Value },
    /// No answer to rely on (transport error, timeout, 5xx, 401/403/408/409/425/429): send
    /// again later, with the same key.
    Retry {
        error: String,
        retry_after: Option<Duration>,
    },
    /// The breaker holds the processor back: nothing was sent.
    Held,
}

async fn send_one(state: &AppState, key: &str, body: &str) -> Sent {
    let Some(base) = state.config.payments.url.as_deref() else {
        return Sent::Held;
    };
    if !state
        .upstreams
        .permit(Upstream::Payments, state.clock.now())
    {
        return Sent::Held;
    }
    let url = format!("{}/v1/refunds", base.trim_end_matches('/'));
    let timeout = Duration::from_millis(state.config.payments.timeout_ms.max(1));
    let res = state
        .http
        .post(&url)
        .bearer_auth_if(&state.config.payments.token)
        .header("idempotency-key", key)
        .header("content-type", "application/json")
        .body(body.to_string())
        .timeout(timeout)
        .send()
        .await;
    let now = state.clock.now();
    // A 409 is the processor at work on this key, not failing: it does not count against it.
    let mut key_in_use = false;
    let outcome = match res {
        Err(e) => Sent::Retry {
            error: describe_reqwest(&e),
            retry_after: None,
        },
        Ok(r) => {
            let status = r.status();
            let ra = retry_after(r.headers());
            // Not an answer to the refund, so never final: a server error or throttling;
            // 401/403, our own credentials (a person fixes the config, the refund still goes);
            // 409, the key is in use (a retry that caught the first attempt in progress);
            // 408/425, try later. Sending again is safe: the key is the same.
            if status.is_server_error()
                || matches!(status.as_u16(), 401 | 403 | 408 | 409 | 425 | 429)
            {
                key_in_use = status.as_u16() == 409;
                Sent::Retry {
                    error: format!("HTTP {status}"),
                    retry_after: ra,
                }
            } else {
                match r.json::<Value>().await {
                    Err(e) => Sent::Retry {
                        error: format!("unreadable answer: {}", describe_reqwest(&e)),
                        retry_after: None,
                    },
                    Ok(answer) if status.is_success() => Sent::Settled {
                        state: if answer["status"] == "approved" {
                            "approved"
                        } else {
                            "declined"
                        },
                        answer,
                    },
                    Ok(answer) => Sent::Settled {
                        state: "failed",
                        answer: json!({ "http_status": status.as_u16(), "body": answer }),
                    },
                }
            }
        }
    };
    match &outcome {
        Sent::Retry { error, retry_after } if !key_in_use => state
            .upstreams
            .report_failure_retry_after(Upstream::Payments, error.clone(), *retry_after, now),
        _ => state.upstreams.report(Upstream::Payments, Ok(()), now),
    }
    outcome
}

/// Stores what an attempt came to; a settled refund is journaled once, with its answer.
async fn store_outcome(state: &AppState, key: &str, sent: &Sent) {
    let (key, store_id, now_s) = (
        key.to_string(),
        state.config.store_id.clone(),
        state.clock.now_rfc3339(),
    );
    let (settled, error) = match sent {
        Sent::Held => return,
        Sent::Settled { state, answer } => (Some((*state, answer.clone())), None),
        Sent::Retry { error, .. } => (None, Some(error.clone())),
    };
    let res = state
        .store
        .write(move |c| -> Result<bool, crate::store::StoreError> {
            match settled {
                None => {
                    c.execute(
                        "UPDATE return_refunds SET attempts = attempts + 1, last_error = ?2
                         WHERE refund_key = ?1 AND state = 'queued'",
                        params![key, error],
                    )?;
                    Ok(false)
                }
                Some((st, answer)) => {
                    let n = c.execute(
                        "UPDATE return_refunds SET state = ?2, answer = ?3, attempts = attempts + 1,
                            settled_at = ?4, last_error = NULL
                         WHERE refund_key = ?1 AND state = 'queued'",
                        params![key, st, answer.to_string(), now_s],
                    )?;
                    if n == 1 {
                        let (return_id, amount): (String, i64) = c.query_row(
                            "SELECT return_id, amount_minor FROM return_refunds WHERE refund_key = ?1",
                            [&key],
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )?;
                        journal::append(
                            c,
                            &store_id,
                            &now_s,
                            NewEntry {
                                lane: Lane::Returns,
                                kind: format!("return.refund_{st}"),
                                actor: Some("refunds".into()),
                                device: None,
                                body: json!({"return_id": return_id, "refund_key": key,
                                             "amount_minor": amount, "answer": answer}),
                            },
                        )?;
                    }
                    Ok(n == 1)
                }
            }
        })
        .await;
    match res {
        Ok(true) => state.journal_appended.notify_one(),
        Ok(false) => {}
        Err(e) => tracing::error!(error = %e, "could not store a refund's outcome"),
    }
}

/// Why sending stopped before the end.
enum Stop {
    /// The breaker holds the processor back.
    Held,
    /// An attempt failed, with the processor's `Retry-After` if it sent one.
    Failed(Option<Duration>),
}

/// Which sender is calling [`send_all`].
#[derive(Clone, Copy, PartialEq)]
enum Sender {
    /// The desk's request: it answers with the refunds' states, so a refund the worker is
    /// sending at that moment is waited for (up to the processor's timeout) rather than
    /// answered as still queued.
    Desk,
    /// The refund worker: it leaves a refund the desk is sending to the desk.
    Worker,
}

/// Sends these refunds now, one after the other, stopping at the first that cannot go.
/// Returns how many were sent: none when the other sender holds them all.
async fn send_all(
    state: &AppState,
    refunds: Vec<(String, String)>,
    sender: Sender,
) -> Result<usize, Stop> {
    let mut sent_any = 0;
    for (key, body) in refunds {
        let Some(_claim) = state.refunds_in_flight.claim(&key) else {
            if sender == Sender::Desk {
                let limit = crate::payments::processor::budget(state) + Duration::from_secs(1);
                state.refunds_in_flight.released(&key, limit).await;
            }
            continue;
        };
        // Settled by the other sender while this one waited for the claim?
        let still = {
            let k = key.clone();
            state
                .store
                .read(move |c| {
                    c.query_row(
                        "SELECT state = 'queued' FROM return_refunds WHERE refund_key = ?1",
                        [k],
                        |r| r.get::<_, bool>(0),
                    )
                    .map_err(crate::store::StoreError::from)
                })
                .await
                .unwrap_or(false)
        };
        if !still {
            continue;
        }
        let sent = send_one(state, &key, &body).await;
        store_outcome(state, &key, &sent).await;
        match sent {
            Sent::Settled { .. } => sent_any += 1,
            Sent::Held => return Err(Stop::Held),
            Sent::Retry { retry_after, .. } => return Err(Stop::Failed(retry_after)),
        }
    }
    Ok(sent_any)
}

/// The desk's request: send a new return's refunds now if the processor lets us.
pub async fn send_these(state: &AppState, refunds: Vec<(String, String)>) {
    let _ = send_all(state, refunds, Sender::Desk).await;
}

/// The refund worker: sends queued refunds, oldest first, whenever the processor is up.
pub async fn run(state: AppState, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    if state.config.payments.url.is_none() {
        return;
    }
    let idle = Duration::from_millis(state.config.journal.idle_poll_ms.clamp(50, 5_000));
    let mut backoff = Backoff::new(
        Duration::from_millis(state.config.journal.retry_base_ms.max(1)),
        Duration::from_millis(state.config.journal.retry_cap_ms.max(1)),
    );
    loop {
        if *shutdown.borrow() {
            return;
        }
        fail_uncollected(&state).await;
        let batch = state
            .store
            .read(|c| oldest_queued(c, 20).map_err(crate::store::StoreError::from))
            .await;
        let now = state.clock.now();
        let wait = match batch {
            Ok(b) if b.is_empty() => idle,
            Ok(b) => match send_all(&state, b, Sender::Worker).await {
                Ok(sent) if sent > 0 => {
                    backoff.reset();
                    continue;
                }
                // The desk's request is sending every one of them: going round again at once
                // would spin on the queue until it is done (up to the processor's timeout).
                Ok(_) => idle,
                Err(Stop::Held) => state
                    .upstreams
                    .next_permit_in(Upstream::Payments, now, idle),
                Err(Stop::Failed(ra)) => {
                    state
                        .upstreams
                        .next_permit_in(Upstream::Payments, now, backoff.next_delay(ra))
                }
            },
            Err(e) => {
                tracing::error!(error = %e, "refund worker cannot read the queue");
                idle
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait.max(Duration::from_millis(20))) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// A refund to a card the processor declined or refused: the customer was told it was on its
/// way, so a person has to sort it out (reconciliation lists it).
#[derive(Debug, Clone, Serialize)]
pub struct NeedsAPerson {
    /// The return's journal entry.
    pub seq: i64,
    /// When the processor answered.
    pub occurred_at: String,
    pub lane: &'static str,
    /// `return.refund_declined` or `return.refund_failed`.
    pub kind: String,
    /// Who took the return.
    pub actor: String,
    pub device: Option<String>,
    /// `declined` or `failed`.
    pub outcome: String,
    pub reason: Option<String>,
    pub body: Value,
}

pub fn needing_a_person(c: &Connection) -> rusqlite::Result<Vec<NeedsAPerson>> {
    c.prepare_cached(
        "SELECT j.seq, coalesce(f.settled_at, f.created_at), f.state, r.by_employee, j.device,
                f.answer, r.return_id, r.receipt_id, f.refund_key, f.amount_minor, f.kind, f.brand, f.last4
         FROM return_refunds f JOIN returns r ON r.return_id = f.return_id
         LEFT JOIN journal j ON j.id = r.journal_id
         WHERE f.state IN ('declined', 'failed') ORDER BY f.settled_at",
    )?
    .query_map([], |r| {
        let state: String = r.get(2)?;
        let answer: Option<String> = r.get(5)?;
        let answer: Value = answer.and_then(|a| serde_json::from_str(&a).ok()).unwrap_or_default();
        let reason = answer["reason"]
            .as_str()
            .or(answer["body"]["error"]["code"].as_str())
            .map(str::to_string);
        Ok(NeedsAPerson {
            seq: r.get::<_, Option<i64>>(0)?.unwrap_or(0),
            occurred_at: r.get(1)?,
            lane: "returns",
            kind: format!("return.refund_{state}"),
            actor: r.get(3)?,
            device: r.get(4)?,
            outcome: state,
            reason,
            body: json!({
                "return_id": r.get::<_, String>(6)?, "receipt_id": r.get::<_, Option<String>>(7)?,
                "refund_key": r.get::<_, String>(8)?, "amount_minor": r.get::<_, i64>(9)?,
                "tender": {"kind": r.get::<_, String>(10)?, "brand": r.get::<_, Option<String>>(11)?,
                           "last4": r.get::<_, Option<String>>(12)?},
            }),
        })
    })?
    .collect()
}

/// The refund queue as status shows it.
#[derive(Debug, Clone, Serialize)]
pub struct QueueStatus {
    /// Card refunds waiting for the processor.
    pub queued: i64,
    pub queued_minor: i64,
    pub oldest_queued_at: Option<String>,
    /// Declined or refused: in reconciliation.
    pub needs_a_person: i64,
}

pub fn queue_status(c: &Connection) -> rusqlite::Result<QueueStatus> {
    let (queued, queued_minor, oldest_queued_at) = c
        .prepare_cached(
            "SELECT count(*), coalesce(sum(amount_minor), 0), min(created_at) FROM return_refunds
             WHERE state = 'queued'",
        )?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    let needs_a_person = c
        .prepare_cached(
            "SELECT count(*) FROM return_refunds WHERE state IN ('declined', 'failed')",
        )?
        .query_row([], |r| r.get(0))?;
    Ok(QueueStatus {
        queued,
        queued_minor,
        oldest_queued_at,
        needs_a_person,
    })
}

#[cfg(test)]
mod in_flight_tests {
    use super::*;

    /// The desk's wait ends when the other sender lets go of the key, not at its limit.
    #[tokio::test]
    async fn a_wait_for_a_claimed_key_ends_when_it_is_released() {
        let flight = std::sync::Arc::new(InFlight::default());
        let claim = flight.claim("k").expect("free");
        assert!(flight.claim("k").is_none(), "one holder at a time");
        let waiter = {
            let flight = flight.clone();
            tokio::spawn(async move {
                let t = tokio::time::Instant::now();
                flight.released("k", Duration::from_secs(30)).await;
                t.elapsed()
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "still held");
        drop(claim);
        let waited = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken by the release")
            .unwrap();
        assert!(waited < Duration::from_secs(30));
        assert!(flight.claim("k").is_some(), "free again");
    }
}
