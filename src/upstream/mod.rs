//! The two upstreams, central and the payment processor: their health, kept apart
//! (bulkheads), and the politeness rules for talking to them again after a failure.

mod backoff;
mod health;

pub use backoff::{Backoff, retry_after};
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
        let outcome = match state.http.get(&url).timeout(timeout).send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("health answered HTTP {}", r.status())),
            Err(e) => Err(describe_reqwest(&e)),
        };
        state.upstreams.report(which, outcome, state.clock.now());
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
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
