//! A route as data: path, method, who may call it, and the largest body it takes. The app's
//! assembly builds the router from a list of these, and tests and the OpenAPI document
//! enumerate the same list, so a route can never be added without an access decision or a
//! body limit.

use axum::http::Method;
use axum::routing::MethodRouter;

/// The header a browser sends the session's CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Who may call a route. Every route names one; the access concern enforces it
/// (`crate::access::guard`), the one place that does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (health, status, the UI's static assets, the OpenAPI document).
    Public,
    /// No credential, but only from the UI's own origin (signing in).
    SameOrigin,
    /// A staff session whose role has this permission. State-changing methods also need the
    /// session's CSRF token and a same-origin request.
    Staff(Permission),
    /// A self-checkout kiosk's device token.
    Kiosk,
    /// The HQ sync job: a bearer token whose configured scopes include `sync`.
    Sync,
}

/// What a staff route needs. Every staff route names exactly one; which roles hold which is
/// the access concern's permission table (`crate::access::allowed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// See one's own session (any role).
    Session,
    /// Find pickup orders and receipts, see the desk (any role).
    UseDesk,
    /// Hand over a pickup order, mark a no-show (any role).
    HandOver,
    /// Take a return within the associate's limits (any role).
    TakeReturn,
    /// Read what needs a person after an outage (leads and managers).
    ViewReconciliation,
    /// Approve, by id + PIN, what exceeds an associate's limits (managers).
    ApproveOverride,
}

/// The largest request body a route takes. Every route has one: [`BodyLimit::SMALL`] unless
/// it declares more, so a route added later is bounded without its author remembering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLimit {
    /// At most this many bytes.
    Bytes(usize),
    /// A feed batch: `http.body_limit_bytes` from the configuration (HQ's batches are the
    /// largest bodies the service takes).
    FeedBatch,
}

impl BodyLimit {
    /// Desk and kiosk bodies: a hand-over, a return, a payment or a sale is a few KiB.
    pub const SMALL: Self = Self::Bytes(64 * 1024);

    /// The limit in bytes under a configured feed-batch limit.
    pub fn bytes(self, feed_batch: usize) -> usize {
        match self {
            Self::Bytes(n) => n,
            Self::FeedBatch => feed_batch,
        }
    }
}

/// `S` is the app's state; the kit does not know its type.
pub struct Route<S> {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    pub body_limit: BodyLimit,
    pub handler: MethodRouter<S>,
}

impl<S> Route<S> {
    /// A route taking at most [`BodyLimit::SMALL`]; see [`Route::body_limit`].
    pub fn new(
        method: Method,
        path: &'static str,
        access: Access,
        handler: MethodRouter<S>,
    ) -> Self {
        Self {
            method,
            path,
            access,
            body_limit: BodyLimit::SMALL,
            handler,
        }
    }

    /// Declares a larger (or smaller) body limit for this route.
    pub fn body_limit(mut self, limit: BodyLimit) -> Self {
        self.body_limit = limit;
        self
    }
}
