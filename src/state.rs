//! The state every handler and worker shares.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::clock::Clock;
use crate::config::Config;
use crate::store::Store;
use crate::upstream::Upstreams;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub upstreams: Arc<Upstreams>,
    /// One HTTP client for both upstreams (connection pools are per host anyway).
    pub http: reqwest::Client,
    /// Woken after a write that appended to the journal, so the uplink sends at once.
    pub journal_appended: Arc<tokio::sync::Notify>,
    /// Set when shutdown begins: readiness turns 503 so load balancers stop sending work.
    pub draining: Arc<AtomicBool>,
}

impl AppState {
    pub fn new(config: Config, store: Store, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let now = clock.now();
        let upstreams = Upstreams::new(
            |u| match u {
                crate::upstream::Upstream::Central => config.central.url.is_some(),
                crate::upstream::Upstream::Payments => config.payments.url.is_some(),
            },
            now,
        );
        let http = reqwest::Client::builder()
            .user_agent(concat!("standin/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(2))
            .timeout(std::time::Duration::from_millis(
                config.central.timeout_ms.max(1),
            ))
            .pool_idle_timeout(std::time::Duration::from_secs(30))
            .build()?;
        Ok(Self {
            config: Arc::new(config),
            store,
            clock,
            upstreams: Arc::new(upstreams),
            http,
            journal_appended: Arc::new(tokio::sync::Notify::new()),
            draining: Arc::new(AtomicBool::new(false)),
        })
    }
}
