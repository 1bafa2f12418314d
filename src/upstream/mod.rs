//! The two upstreams, central and the payment processor: their health, kept apart
//! (bulkheads), and the politeness rules for talking to them again after a failure.

mod backoff;
mod breaker;
mod health;

pub use backoff::{Backoff, retry_after};
pub use breaker::{Breaker, BreakerConfig, BreakerState, Outcome};
pub use health::{Health, HealthState, Upstreams};

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Upstream {
    Central,
    Payments,
}

impl Upstream {
    pub const ALL: [Upstream; 2] = [Upstream::Central, Upstream::Payments];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Central => "central",
            Self::Payments => "payments",
        }
    }
}

/// Probes each configured upstream's `/v1/health` on an interval, so status tells a dead
/// upstream from an idle one even when nothing else is talking to it.
///
/// The probe goes through the upstream's breaker like any other request: while the breaker
/// is open or holding for a `Retry-After` it sends nothing, and wakes when the breaker will
/// let one request through. That request is the half-open probe, which is how a store with
/// no other traffic finds the upstream back.
///
/// Nor does it send while something else has heard from the upstream within the interval
/// (a heartbeat, a push, a pull, a payment): that answer says as much as a probe would. A
/// fleet of busy stores then sends central a third fewer requests, and the fleet's cadence
/// (the share of stores talking to central in any second) drops with it.
pub async fn probe(
    state: crate::state::AppState,
    which: Upstream,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let cfg = match which {
        Upstream::Central => state.config.central.clone(),
        Upstream::Payments => state.config.payments.clone(),
    };
    let Some(base) = cfg.url else { return };
    let url = format!("{}/v1/health", base.trim_end_matches('/'));
    let interval = std::time::Duration::from_secs(cfg.health_interval_secs.max(1));
    let timeout = std::time::Duration::from_millis(cfg.timeout_ms.max(1));
    loop {
        let heard = recently_heard(&state.upstreams, which, state.clock.now(), interval);
        if heard.is_none() && state.upstreams.permit(which, state.clock.now()) {
            let sent = with_token(state.http.get(&url), &cfg.token)
                .timeout(timeout)
                .send()
                .await;
            record_probe(&state.upstreams, which, sent, state.clock.now());
        }
        // Never a busy loop, even with a clock that does not move (tests).
        let wait = heard
            .unwrap_or_else(|| {
                state
                    .upstreams
                    .next_permit_in(which, state.clock.now(), interval)
            })
            .max(std::time::Duration::from_millis(20));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Tells the breaker how a health probe went: a 2xx is a success; any other answer a
/// failure with its `Retry-After`; no answer a failure.
pub fn record_probe(
    upstreams: &Upstreams,
    which: Upstream,
    sent: Result<reqwest::Response, reqwest::Error>,
    now: chrono::DateTime<chrono::Utc>,
) {
    match sent {
        Ok(r) if r.status().is_success() => upstreams.report(which, Ok(()), now),
        Ok(r) => upstreams.report_failure_retry_after(
            which,
            format!("health answered HTTP {}", r.status()),
            retry_after(r.headers()),
            now,
        ),
        Err(e) => upstreams.report_failure(which, Failure::transport(&e), now),
    }
}

/// A failed exchange with an upstream, as its breaker needs to hear it.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Log-safe: no URLs with tokens, no bodies.
    pub error: String,
    pub retry_after: Option<std::time::Duration>,
    /// No connection could be made (refused, no route): central's breaker opens at once.
    pub unreachable: bool,
}

impl Failure {
    /// The upstream answered, but not with success (an HTTP error, an unreadable body).
    pub fn answered(error: String, retry_after: Option<std::time::Duration>) -> Self {
        Self {
            error,
            retry_after,
            unreachable: false,
        }
    }

    /// No connection could be made: nothing listening, no route.
    pub fn unreachable(error: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            retry_after: None,
            unreachable: true,
        }
    }

    /// No answer: `e` from sending. A connect that failed for any reason but a timeout is
    /// unreachable (refused, no route, no such host); a connect timeout is not, since a SYN
    /// lost on a flaky store link looks the same, and neither is a dropped connection.
    pub fn transport(e: &reqwest::Error) -> Self {
        Self {
            error: describe_reqwest(e),
            retry_after: None,
            unreachable: e.is_connect() && !e.is_timeout(),
        }
    }

    /// The same failure, its error prefixed with what was being done (`"heartbeat"`).
    pub fn during(mut self, what: &str) -> Self {
        self.error = format!("{what}: {}", self.error);
        self
    }
}

/// `Some(time left)` when a request to `which` succeeded less than `interval` ago and the
/// breaker is closed: the health probe has nothing to learn until then.
pub fn recently_heard(
    upstreams: &Upstreams,
    which: Upstream,
    now: chrono::DateTime<chrono::Utc>,
    interval: std::time::Duration,
) -> Option<std::time::Duration> {
    let h = upstreams.get(which)?;
    if h.breaker != BreakerState::Closed || h.state != HealthState::Up {
        return None;
    }
    let since = (now - h.last_success?).to_std().ok()?;
    interval.checked_sub(since).filter(|left| !left.is_zero())
}

/// Adds the upstream's bearer token (`central.token`, `payments.token`), when one is set.
pub fn with_token(
    req: reqwest::RequestBuilder,
    token: &crate::config::Secret,
) -> reqwest::RequestBuilder {
    req.bearer_auth_if(token)
}

/// [`with_token`] as a method, for request chains.
pub trait BearerIfSet {
    fn bearer_auth_if(self, token: &crate::config::Secret) -> Self;
}

impl BearerIfSet for reqwest::RequestBuilder {
    fn bearer_auth_if(self, token: &crate::config::Secret) -> Self {
        if token.is_empty() {
            self
        } else {
            self.bearer_auth(token.expose())
        }
    }
}

/// A short, log-safe description of a transport failure (no URLs with tokens, no bodies).
pub fn describe_reqwest(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection refused or unreachable".into()
    } else if e.is_request() {
        "connection dropped".into()
    } else if let Some(s) = e.status() {
        format!("HTTP {s}")
    } else {
        "transport error".into()
    }
}
