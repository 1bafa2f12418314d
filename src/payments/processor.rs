//! The processor client: `POST /v1/authorizations` with the payment's own `Idempotency-Key`
//! (its `payment_id`, fixed before the first send and reused by every later send), under a
//! tight time budget, and the breaker told how it went.

use std::time::Duration;

use serde_json::{Value, json};

use crate::state::AppState;
use crate::upstream::{BearerIfSet, Failure, Upstream, describe_reqwest, retry_after};

/// How one send to the processor ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// The processor decided.
    Answered {
        approved: bool,
        auth_code: Option<String>,
        reason: Option<String>,
    },
    /// Nothing reached the processor (connection refused, unreachable), or it refused to act
    /// on the request at all (401/403/404/425).
    NotReached(String),
    /// It may have reached the processor and been acted on (timeout, dropped connection,
    /// a 5xx, a 408/409/429): the outcome is unknown until asked again with the same key.
    Unknown(String),
}

impl Sent {
    pub fn reached_or_maybe(&self) -> bool {
        !matches!(self, Sent::NotReached(_))
    }
}

/// The budget for one authorisation: `payments.timeout_ms`.
pub fn budget(state: &AppState) -> Duration {
    Duration::from_millis(state.config.payments.timeout_ms.max(1))
}

/// Sends one authorisation (`stored` for a payment approved offline and forwarded now), given
/// at most `limit` ([`budget`], or what is left of a kiosk's wait), and reports the outcome
/// to the payments breaker; how long the processor took to answer goes to the hedge
/// ([`super::hedge::Watch`]). The caller asked `permit` first.
pub async fn authorize(state: &AppState, key: &str, body: &Value, limit: Duration) -> Sent {
    let Some(base) = state.config.payments.url.as_deref() else {
        return Sent::NotReached("the processor is not configured".into());
    };
    let url = format!("{}/v1/authorizations", base.trim_end_matches('/'));
    let sent_at = std::time::Instant::now();
    let res = state
        .http
        .post(url)
        .bearer_auth_if(&state.config.payments.token)
        .header("Idempotency-Key", key)
        .json(body)
        .timeout(limit)
        .send()
        .await;
    if res.is_ok() {
        state.payments.watch.answered(sent_at.elapsed());
    }
    let mut key_in_use = false;
    let (sent, retry) = match res {
        Err(e) if e.is_connect() => (Sent::NotReached(describe_reqwest(&e)), None),
        Err(e) => (Sent::Unknown(describe_reqwest(&e)), None),
        Ok(r) => {
            let status = r.status();
            let ra = retry_after(r.headers());
            if status.is_success() {
                match r.json::<Value>().await {
                    Ok(v) => match v.get("status").and_then(Value::as_str) {
                        Some(s @ ("approved" | "declined")) => (
                            Sent::Answered {
                                approved: s == "approved",
                                auth_code: v
                                    .get("auth_code")
                                    .and_then(Value::as_str)
                                    .map(String::from),
                                reason: v.get("reason").and_then(Value::as_str).map(String::from),
                            },
                            None,
                        ),
                        _ => (
                            Sent::Unknown("the processor answered without a status".into()),
                            None,
                        ),
                    },
                    Err(e) => (Sent::Unknown(describe_reqwest(&e)), None),
                }
            } else if status.is_client_error()
                && !matches!(status.as_u16(), 401 | 403 | 404 | 408 | 409 | 425 | 429)
            {
                // A definite refusal of this request (our body or the card, such as 400, 402 or
                // 422): a decline.
                (
                    Sent::Answered {
                        approved: false,
                        auth_code: None,
                        reason: Some(format!("processor_refused_{}", status.as_u16())),
                    },
                    None,
                )
            } else if matches!(status.as_u16(), 401 | 403 | 404 | 425) {
                // Refused before acting on it: our own credentials or address (a person fixes
                // the config; a stored payment must not be written off as declined), or too
                // early. As if unreached: nothing to ask again about.
                (Sent::NotReached(format!("HTTP {status}")), ra)
            } else {
                // Not the processor's answer about this payment, and it may have acted on it:
                // a server error or throttling; 409, the key is in use (an earlier attempt
                // still in progress); 408. Asking again is safe: the key is the same.
                key_in_use = status.as_u16() == 409;
                (Sent::Unknown(format!("HTTP {status}")), ra)
            }
        }
    };
    let now = state.clock.now();
    match &sent {
        // A 409 is the processor at work on this key, not failing: it does not count against it.
        Sent::Unknown(_) if key_in_use => state.upstreams.report(Upstream::Payments, Ok(()), now),
        Sent::Answered { .. } => {
            state.payments.authorised_at(now);
            state.upstreams.report(Upstream::Payments, Ok(()), now)
        }
        Sent::NotReached(e) | Sent::Unknown(e) => {
            state
                .upstreams
                .report_failure_retry_after(Upstream::Payments, e.clone(), retry, now)
        }
    }
    sent
}

/// One health check reported to the breaker: for a caller that was let through (a half-open
/// probe) and turned out to have nothing to send.
pub async fn probe(state: AppState) {
    let Some(base) = state.config.payments.url.as_deref() else {
        return;
    };
    let url = format!("{}/v1/health", base.trim_end_matches('/'));
    let res = crate::upstream::with_token(state.http.get(url), &state.config.payments.token)
        .timeout(budget(&state))
        .send()
        .await;
    let now = state.clock.now();
    match res {
        Ok(r) if r.status().is_success() => state.upstreams.report(Upstream::Payments, Ok(()), now),
        Ok(r) => {
            let ra = retry_after(r.headers());
            let e = format!("health answered HTTP {}", r.status());
            state
                .upstreams
                .report_failure_retry_after(Upstream::Payments, e, ra, now)
        }
        Err(e) => state
            .upstreams
            .report_failure(Upstream::Payments, Failure::transport(&e), now),
    }
}

/// How a reversal went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reversal {
    /// The processor refunded the authorisation (its refund id, when it gave one).
    Done(Option<String>),
    /// The processor answered and did not refund (declined, or refused the request as such:
    /// 400, 422 …). Final for this key: a person must see to it.
    Refused(String),
    /// No answer to rely on (transport, timeout, 5xx, 401/403/404/408/409/425/429, an
    /// unreadable body): asked again later with the same key.
    Retry(String),
}

/// `POST /v1/refunds` for an authorisation the store must not keep (declined offline while
/// the processor had in fact approved it). Idempotent by its own derived key.
pub async fn reverse(
    state: &AppState,
    payment_id: &str,
    auth_code: Option<&str>,
    amount_minor: i64,
    currency: &str,
) -> Reversal {
    let Some(base) = state.config.payments.url.as_deref() else {
        return Reversal::Retry("the processor is not configured".into());
    };
    let url = format!("{}/v1/refunds", base.trim_end_matches('/'));
    let body = json!({"authorization": auth_code.unwrap_or(payment_id), "amount_minor": amount_minor, "currency": currency});
    let res = state
        .http
        .post(url)
        .bearer_auth_if(&state.config.payments.token)
        .header("Idempotency-Key", format!("{payment_id}.reversal"))
        .json(&body)
        .timeout(budget(state))
        .send()
        .await;
    let now = state.clock.now();
    let mut key_in_use = false;
    let (out, retry) = match res {
        Err(e) => (Reversal::Retry(describe_reqwest(&e)), None),
        Ok(r) => {
            let status = r.status();
            let ra = retry_after(r.headers());
            if status.is_success() {
                match r.json::<Value>().await {
                    Ok(v) => {
                        let refund_id = v.get("refund_id").and_then(Value::as_str);
                        match v.get("status").and_then(Value::as_str) {
                            Some("approved") => (Reversal::Done(refund_id.map(String::from)), None),
                            Some(s) => (
                                Reversal::Refused(
                                    v.get("reason")
                                        .and_then(Value::as_str)
                                        .unwrap_or(s)
                                        .to_string(),
                                ),
                                None,
                            ),
                            // No status, but a refund id: a refund.
                            None if refund_id.is_some() => {
                                (Reversal::Done(refund_id.map(String::from)), None)
                            }
                            None => (
                                Reversal::Retry("the refund answer has no status".into()),
                                None,
                            ),
                        }
                    }
                    Err(e) => (Reversal::Retry(describe_reqwest(&e)), None),
                }
            } else if status.is_client_error()
                && !matches!(status.as_u16(), 401 | 403 | 404 | 408 | 409 | 425 | 429)
            {
                (
                    Reversal::Refused(format!("processor_refused_{}", status.as_u16())),
                    None,
                )
            } else {
                key_in_use = status.as_u16() == 409;
                (
                    Reversal::Retry(format!("refund answered HTTP {status}")),
                    ra,
                )
            }
        }
    };
    match &out {
        Reversal::Retry(e) if !key_in_use => {
            state
                .upstreams
                .report_failure_retry_after(Upstream::Payments, e.clone(), retry, now)
        }
        _ => state.upstreams.report(Upstream::Payments, Ok(()), now),
    }
    out
}
