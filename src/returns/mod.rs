//! Returns at the service desk: find the sale in the local copy of receipts (by barcode,
//! order number, phone last four, or card brand + last four + dates), see what each line
//! still allows, take the return. The refund is computed from the receipt, never typed in;
//! a refund to the original card goes to the processor (queued while it is down, see
//! [`refunds`]); the return and its journal entry (returns lane) commit together.
//!
//! While central is not known to be up, HQ's offline limits apply (`policy` feed): above
//! the associate's cap, or past the store's daily offline refund budget, a manager's
//! override (id + PIN, for this one return) is needed; without it the answer is 409
//! `override_required` listing the reasons. A return without a receipt is one whose body
//! has no `receipt_id` (a receipt found by card is still a receipt): it is only ever store
//! credit, at the lowest price the SKU's recent sales show (see [`no_receipt`]), and while central is
//! down only if `no_receipt_returns_offline` is `"store_credit_only"`.

pub mod no_receipt;
pub mod refunds;
pub mod rules;
pub mod store;
pub mod take;

pub use take::{AskLine, RefundMethod, Taken};

use axum::extract::State;
use axum::http::Method;
use axum::routing::{get, post};
use chrono::{DateTime, Duration, NaiveDate, SecondsFormat, Utc};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use crate::access::Permission;
use crate::error::AppError;
use crate::http::{Access, ApiJson, ApiPath, ApiQuery, Route};
use crate::state::AppState;
use crate::upstream::{HealthState, Upstream};

pub fn routes() -> Vec<Route<AppState>> {
    vec![
        Route::new(
            Method::GET,
            "/api/v1/receipts",
            Access::Staff(Permission::UseDesk),
            get(list),
        ),
        Route::new(
            Method::GET,
            "/api/v1/receipts/{receipt_id}",
            Access::Staff(Permission::UseDesk),
            get(one),
        ),
        Route::new(
            Method::POST,
            "/api/v1/returns",
            Access::Staff(Permission::TakeReturn),
            post(take::take),
        ),
    ]
}

/// How fresh the receipts behind an answer are, and whether offline limits apply now.
#[derive(Serialize)]
struct Context {
    as_of: Option<String>,
    age_secs: Option<i64>,
    /// Central is not known to be up: HQ's offline limits apply to returns.
    offline: bool,
    refund_cap_associate_minor: Option<i64>,
    offline_refund_budget_minor: Option<i64>,
    offline_refunded_today_minor: i64,
}

/// Offline limits apply unless central is known to be up: an unknown or degraded central
/// is treated as down, because the limits exist for the refunds nobody can check.
pub(crate) fn offline(state: &AppState) -> bool {
    state
        .upstreams
        .get(Upstream::Central)
        .is_none_or(|h| h.state != HealthState::Up)
}

/// The store day the offline budget counts in: the calendar day in the server's own time
/// zone (`/etc/localtime`, or `TZ`), which is the store's. A UTC day would start at 7 or 8 pm
/// in a US store, and one evening could spend two days' budgets.
pub(crate) fn store_day(now: DateTime<Utc>) -> String {
    now.with_timezone(&chrono::Local)
        .format("%Y-%m-%d")
        .to_string()
}

fn context(c: &Connection, now: DateTime<Utc>, offline: bool) -> rusqlite::Result<Context> {
    let as_of: Option<String> = c.query_row(
        "SELECT applied_at FROM feed_state WHERE feed = 'receipts'",
        [],
        |r| r.get(0),
    )?;
    let age_secs = as_of
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| (now - t.with_timezone(&Utc)).num_seconds().max(0));
    let p = store::policy(c)?;
    Ok(Context {
        as_of,
        age_secs,
        offline,
        refund_cap_associate_minor: p.refund_cap_associate_minor,
        offline_refund_budget_minor: p.offline_refund_budget_minor,
        offline_refunded_today_minor: store::offline_used(c, &store_day(now))?,
    })
}

#[derive(Deserialize)]
struct ListQuery {
    q: Option<String>,
    card_brand: Option<String>,
    last4: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

#[derive(Serialize)]
struct List {
    receipts: Vec<store::Summary>,
    #[serde(flatten)]
    context: Context,
}

/// `2026-11-01` (the whole day) or an RFC 3339 time, as RFC 3339 UTC.
fn bound(field: &str, v: &str, end_of_day: bool) -> Result<String, AppError> {
    if let Ok(d) = NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        let t = if end_of_day {
            d.and_hms_opt(23, 59, 59)
        } else {
            d.and_hms_opt(0, 0, 0)
        };
        if let Some(t) = t {
            return Ok(t.and_utc().to_rfc3339_opts(SecondsFormat::Secs, true));
        }
    }
    crate::feeds::records::utc_time(field, v)
        .map_err(|_| AppError::bad_request(field, "a date (2026-11-01) or an RFC 3339 time"))
}

async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<ApiJson<List>, AppError> {
    let now = state.clock.now();
    let offline = offline(&state);
    // Counted as sent, in characters, as the OpenAPI document's `maxLength` counts.
    if q.q
        .as_ref()
        .is_some_and(|t| t.chars().count() > crate::pickups::QUERY_MAX_CHARS)
    {
        return Err(AppError::bad_request("q", "at most 100 characters"));
    }
    let text = q.q.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let receipts_by = if let Some(t) = text {
        Search::Text(t)
    } else {
        let brand = q
            .card_brand
            .map(|b| b.trim().to_ascii_lowercase())
            .filter(|b| !b.is_empty())
            .ok_or_else(|| {
                AppError::bad_request("q", "give q, or card_brand with last4 (and from/to)")
            })?;
        let last4 = q.last4.unwrap_or_default();
        if last4.len() != 4 || !last4.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AppError::bad_request("last4", "exactly four digits"));
        }
        let to = match q.to.as_deref().filter(|s| !s.is_empty()) {
            Some(v) => bound("to", v, true)?,
            None => now.to_rfc3339_opts(SecondsFormat::Secs, true),
        };
        let from = match q.from.as_deref().filter(|s| !s.is_empty()) {
            Some(v) => bound("from", v, false)?,
            None => (now - Duration::days(90)).to_rfc3339_opts(SecondsFormat::Secs, true),
        };
        if from > to {
            return Err(AppError::bad_request("from", "from is after to"));
        }
        Search::Card {
            brand,
            last4,
            from,
            to,
        }
    };
    let found = state
        .store
        .read(move |c| {
            let receipts = match &receipts_by {
                Search::Text(t) => store::search(c, t)?,
                Search::Card {
                    brand,
                    last4,
                    from,
                    to,
                } => store::by_card(c, brand, last4, from, to)?,
            };
            Ok::<_, AppError>(List {
                receipts,
                context: context(c, now, offline)?,
            })
        })
        .await?;
    Ok(ApiJson(found))
}

enum Search {
    Text(String),
    Card {
        brand: String,
        last4: String,
        from: String,
        to: String,
    },
}

#[derive(Serialize)]
struct OneReceipt {
    #[serde(flatten)]
    receipt: store::ReceiptView,
    #[serde(flatten)]
    context: Context,
}

pub(crate) fn not_found(receipt_id: &str) -> AppError {
    AppError::NotFound(format!("no receipt {receipt_id} in this store's copy"))
}

async fn one(
    State(state): State<AppState>,
    ApiPath(receipt_id): ApiPath<String>,
) -> Result<ApiJson<OneReceipt>, AppError> {
    let now = state.clock.now();
    let offline = offline(&state);
    let found = state
        .store
        .read(move |c| {
            let l = store::load_full(c, &receipt_id)?.ok_or_else(|| not_found(&receipt_id))?;
            Ok::<_, AppError>(OneReceipt {
                receipt: store::view(c, &l, now)?,
                context: context(c, now, offline)?,
            })
        })
        .await?;
    Ok(ApiJson(found))
}
