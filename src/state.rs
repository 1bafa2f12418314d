//! The state every handler and worker shares.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::clock::Clock;
use crate::config::Config;
use crate::store::Store;
use crate::upstream::Upstreams;

/// Cheap to clone: one reference count. axum clones the state for every request several
/// times over (the handler, each middleware that holds it); a struct of a dozen `Arc`s cost
/// a dozen atomic increments and decrements each time, about 4% of a pickup lookup's CPU
/// under load (perf, `cargo bench --bench pickup_lookup`).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] shares.
pub struct Shared {
    pub config: Arc<Config>,
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub upstreams: Arc<Upstreams>,
    /// One HTTP client for both upstreams (connection pools are per host anyway).
    pub http: reqwest::Client,
    /// Woken after a write that appended to the journal, so the uplink sends at once.
    pub journal_appended: Arc<tokio::sync::Notify>,
    /// Wrong PINs per client address (a throttle; lockouts per employee are in SQLite).
    pub login_limiter: Arc<crate::access::attempts::AddressLimiter>,
    /// Live staff sessions in memory (invalidated by every staff feed batch).
    pub sessions: Arc<crate::access::session::SessionCache>,
    /// Bounds Argon2id checks at once (19 MiB each).
    pub pin_checks: Arc<crate::access::pin::PinChecker>,
    /// Card refund keys being sent right now (the desk's request and the refund worker).
    pub refunds_in_flight: Arc<crate::returns::refunds::InFlight>,
    /// Kiosks authenticated lately (invalidated by every devices feed batch).
    pub devices: Arc<crate::access::kiosk::DeviceCache>,
    /// Kiosk payments: online attempts in flight, and the forwarding worker's wake-up.
    pub payments: Arc<crate::payments::Runtime>,
    /// Set when shutdown begins: readiness turns 503 so load balancers stop sending work.
    pub draining: Arc<AtomicBool>,
    /// The open connections (set by `launch`; read by `/metrics`).
    pub connections: Arc<std::sync::OnceLock<Arc<crate::http::conn::Registry>>>,
    /// Name search's copies in memory, checked against the database on every search.
    pub pickup_names: Arc<crate::pickups::names::Names>,
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
        let pin_checks = Arc::new(crate::access::pin::PinChecker::new(
            config.access.pin_checks_at_once,
        ));
        Ok(Self(Arc::new(Shared {
            config: Arc::new(config),
            store,
            clock,
            upstreams: Arc::new(upstreams),
            http,
            journal_appended: Arc::new(tokio::sync::Notify::new()),
            login_limiter: Arc::default(),
            sessions: Arc::default(),
            pin_checks,
            refunds_in_flight: Arc::default(),
            draining: Arc::new(AtomicBool::new(false)),
            connections: Arc::default(),
            payments: Arc::new(crate::payments::Runtime::new(now)),
            pickup_names: Default::default(),
            devices: Arc::default(),
        })))
    }
}
