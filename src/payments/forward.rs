//! The forwarding worker. When the processor's breaker lets traffic through, stored payments
//! go oldest first, one at a time, with their original key and `stored: true`; each outcome
//! (`captured`, `declined_after_forward`) is recorded and journaled. Payments past their
//! deadline become `expired` whether or not the processor is back. It also resolves online
//! attempts whose outcome is unknown: pending rows a crash left behind, and payments declined
//! offline after a send that may have reached the processor.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::sync::watch;

use super::Moment;
use super::processor::{self, Reversal, Sent};
use super::store::{self, Forwarded, Payment, Resolution};
use crate::error::AppError;
use crate::state::AppState;
use crate::upstream::Upstream;

/// Between rounds when nothing wakes the worker.
const IDLE: Duration = Duration::from_millis(500);

pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let mut stored_reachable: Option<DateTime<Utc>> = None;
    loop {
        if let Err(e) = round(&state, &mut stored_reachable).await {
            tracing::warn!(error = %e.detail(), "payment forwarding round failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(IDLE) => {}
            _ = state.payments.wake.notified() => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One pass: remember when the processor answered, expire, resolve, forward.
async fn round(
    state: &AppState,
    stored_reachable: &mut Option<DateTime<Utc>>,
) -> Result<(), AppError> {
    if let Some(at) = state.payments.last_authorised()
        && stored_reachable.is_none_or(|s| at - s > chrono::Duration::seconds(10))
    {
        state
            .store
            .write(move |c| store::store_reachable_at(c, at).map_err(AppError::from))
            .await?;
        *stored_reachable = Some(at);
    }

    let m = Moment::of(state);
    // A read first (one index probe): the writer is only asked when something is overdue.
    let next_deadline = state
        .store
        .read(|c| store::next_deadline(c).map_err(AppError::from))
        .await?;
    let expired = if next_deadline.is_none_or(|d| d >= m.now) {
        0
    } else {
        state
            .store
            .write(move |c| store::expire_overdue(c, &m.ctx()).map_err(AppError::from))
            .await?
    };
    if expired > 0 {
        tracing::warn!(expired, "stored payments passed their forwarding deadline");
        state.journal_appended.notify_one();
    }

    resolve_stale_pending(state).await?;
    if state.config.payments.url.is_none() {
        return Ok(());
    }
    // Oldest first, one at a time; stop at the first failure (the breaker decides when next).
    loop {
        let Some(p) = state
            .store
            .read(|c| store::next_to_forward(c).map_err(AppError::from))
            .await?
        else {
            break;
        };
        if !state
            .upstreams
            .permit(Upstream::Payments, state.clock.now())
            || !forward_one(state, &p).await?
        {
            return Ok(());
        }
    }
    while let Some(p) = state
        .store
        .read(|c| store::next_unresolved(c).map_err(AppError::from))
        .await?
    {
        if !state
            .upstreams
            .permit(Upstream::Payments, state.clock.now())
            || !resolve_declined(state, &p).await?
        {
            return Ok(());
        }
    }
    Ok(())
}

/// Forwards one stored payment; false when the processor could not be heard.
async fn forward_one(state: &AppState, p: &Payment) -> Result<bool, AppError> {
    let tender: serde_json::Value = serde_json::from_str(&p.tender).unwrap_or_default();
    let body = json!({"amount_minor": p.amount_minor, "currency": p.currency, "tender": tender,
                      "stored": true, "stored_at": p.created_at});
    let sent = processor::authorize(state, &p.payment_id, &body, processor::budget(state)).await;
    let m = Moment::of(state);
    let p2 = p.clone();
    let ok = match sent {
        Sent::Answered {
            approved,
            auth_code,
            reason,
        } => {
            state
                .store
                .write(move |c| {
                    let ctx = m.ctx();
                    store::store_reachable_at(c, m.now)?;
                    let out = if approved {
                        Forwarded::Captured {
                            auth_code: auth_code.as_deref(),
                        }
                    } else {
                        Forwarded::Declined {
                            reason: reason.as_deref(),
                        }
                    };
                    store::record_forwarded(c, &ctx, &p2, out).map_err(AppError::from)
                })
                .await?;
            state.journal_appended.notify_one();
            true
        }
        Sent::NotReached(e) | Sent::Unknown(e) => {
            state
                .store
                .write(move |c| {
                    store::record_forward_error(c, &p2.payment_id, &e).map_err(AppError::from)
                })
                .await?;
            false
        }
    };
    Ok(ok)
}

/// A payment declined offline whose online attempt may have reached the processor: ask again
/// with the same key (the processor answers its first decision without acting again). If it
/// had approved, the authorisation is reversed: the customer did not get the goods.
async fn resolve_declined(state: &AppState, p: &Payment) -> Result<bool, AppError> {
    let tender: serde_json::Value = serde_json::from_str(&p.tender).unwrap_or_default();
    let body = json!({"amount_minor": p.amount_minor, "currency": p.currency, "tender": tender, "stored": false});
    let (approved, auth_code) =
        match processor::authorize(state, &p.payment_id, &body, processor::budget(state)).await {
            Sent::Answered {
                approved,
                auth_code,
                ..
            } => (approved, auth_code),
            _ => return Ok(false),
        };
    let reversal = if approved {
        match processor::reverse(
            state,
            &p.payment_id,
            auth_code.as_deref(),
            p.amount_minor,
            &p.currency,
        )
        .await
        {
            Reversal::Retry(_) => return Ok(false),
            r => Some(r),
        }
    } else {
        None
    };
    let m = Moment::of(state);
    let p2 = p.clone();
    state
        .store
        .write(move |c| {
            let ctx = m.ctx();
            let resolution = match &reversal {
                None => Resolution::DeclineConfirmed,
                Some(Reversal::Done(refund_id)) => Resolution::Reversed {
                    refund_id: refund_id.as_deref(),
                },
                Some(Reversal::Refused(reason) | Reversal::Retry(reason)) => {
                    Resolution::ReversalRefused { reason }
                }
            };
            store::record_resolved(c, &ctx, &p2, resolution).map_err(AppError::from)
        })
        .await?;
    state.journal_appended.notify_one();
    Ok(true)
}

/// Pending rows that no attempt in this process owns (the process that sent them died):
/// their outcome is unknown, so they are decided as a failed online attempt would be, and an
/// approval is forwarded later with the same key.
async fn resolve_stale_pending(state: &AppState) -> Result<(), AppError> {
    let before = state.clock.now()
        - chrono::Duration::from_std(processor::budget(state) + Duration::from_secs(5))
            .unwrap_or_default();
    let stale = state
        .store
        .read(move |c| store::stale_pending(c, before).map_err(AppError::from))
        .await?;
    for p in stale
        .into_iter()
        .filter(|p| !state.payments.is_inflight(&p.payment_id))
    {
        let m = Moment::of(state);
        state
            .store
            .write(move |c| {
                let ctx = m.ctx();
                store::stand_in(c, &ctx, &store::as_new(&p), false, true).map_err(AppError::from)
            })
            .await?;
        state.payments.done("");
        state.journal_appended.notify_one();
    }
    Ok(())
}
