//! Pickups at the service desk: find an order (or the ones due soon), hand it over in whole
//! or in part, mark a no-show. Reads come from the local copy whether central is up or not;
//! each action is journaled (pickups lane) in the same transaction as the action itself.

pub mod names;
pub mod rules;
pub mod store;

use std::sync::atomic::Ordering::Relaxed;

use axum::Extension;
use axum::extract::State;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::access::{Caller, Permission};
use crate::error::AppError;
use crate::http::{Access, ApiJson, ApiPath, ApiQuery, ClientAddr, Route};
use crate::journal::{self, Lane, NewEntry};
use crate::state::AppState;
use crate::store::StoreError;
use rules::{LineQty, OrderFacts, Refusal, plan_handover};
use store::{Order, Summary};

pub fn routes() -> Vec<Route<AppState>> {
    vec![
        Route::new(
            Method::GET,
            "/api/v1/pickups",
            Access::Staff(Permission::UseDesk),
            get(list),
        ),
        Route::new(
            Method::GET,
            "/api/v1/pickups/{order_id}",
            Access::Staff(Permission::UseDesk),
            get(one),
        ),
        Route::new(
            Method::POST,
            "/api/v1/pickups/{order_id}/handover",
            Access::Staff(Permission::HandOver),
            post(hand_over),
        ),
        Route::new(
            Method::POST,
            "/api/v1/pickups/{order_id}/no-show",
            Access::Staff(Permission::HandOver),
            post(no_show),
        ),
    ]
}

/// How fresh the orders behind an answer are.
#[derive(Serialize)]
struct Freshness {
    as_of: Option<String>,
    age_secs: Option<i64>,
}

fn freshness(conn: &rusqlite::Connection, now: DateTime<Utc>) -> rusqlite::Result<Freshness> {
    let as_of: Option<String> = conn
        .prepare_cached("SELECT applied_at FROM feed_state WHERE feed = 'pickup_orders'")?
        .query_row([], |r| r.get(0))?;
    Ok(Freshness::of(as_of, now))
}

impl Freshness {
    fn of(as_of: Option<String>, now: DateTime<Utc>) -> Self {
        let age_secs = as_of
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| (now - t.with_timezone(&Utc)).num_seconds().max(0));
        Self { as_of, age_secs }
    }
}

#[derive(Deserialize)]
struct ListQuery {
    q: Option<String>,
    due_within_hours: Option<String>,
    /// The due-soon list's next page: the `next_after` of the page before.
    after: Option<String>,
}

#[derive(Serialize)]
struct List {
    orders: Vec<Summary>,
    /// The due-soon list only: more orders were due than it holds (the earliest are shown).
    #[serde(skip_serializing_if = "Option::is_none")]
    truncated: Option<bool>,
    /// The due-soon list only: how many open orders are due in the window in all.
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<i64>,
    /// The due-soon list only, when it was cut: pass as `after` for the next page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_after: Option<String>,
    #[serde(flatten)]
    freshness: Freshness,
}

/// A search's orders: list entries, or a name search's JSON array from its copy in memory.
enum Found {
    Entries(Vec<Summary>),
    Json(String),
}

async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Response, AppError> {
    let now = state.clock.now();
    let due = match q.due_within_hours.as_deref() {
        None => None,
        Some(h) => match h.parse::<u32>() {
            Ok(h) if h <= 24 * 14 => Some(now + Duration::hours(i64::from(h))),
            _ => {
                return Err(AppError::bad_request(
                    "due_within_hours",
                    "a whole number of hours, at most 336",
                ));
            }
        },
    };
    // Counted as sent, in characters, as the OpenAPI document's `maxLength` counts.
    if q.q
        .as_ref()
        .is_some_and(|t| t.chars().count() > QUERY_MAX_CHARS)
    {
        return Err(AppError::bad_request("q", "at most 100 characters"));
    }
    let text = q.q.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let after =
        match q.after.as_deref().map(str::trim).filter(|a| !a.is_empty()) {
            None => None,
            Some(a) => Some(store::DueCursor::parse(a).ok_or_else(|| {
                AppError::bad_request("after", "the next_after of the page before")
            })?),
        };
    let Some(t) = text else {
        // The due-soon list can run to hundreds of orders: the blocking pool.
        let until = due.unwrap_or(now + Duration::hours(4));
        let (due, freshness) = state
            .store
            .read(move |c| {
                let due = store::due_before(c, until, after.as_ref())?;
                Ok::<_, AppError>((due, freshness(c, now)?))
            })
            .await?;
        return Ok(ApiJson(List {
            orders: due.orders,
            truncated: Some(due.truncated),
            total: Some(due.total),
            next_after: due.next_after,
            freshness,
        })
        .into_response());
    };
    search(&state, t, now).await
}

/// A search is a few index lookups, or the name copies in memory (see
/// `store::search_entries`, `names`): answered on this thread.
async fn search(state: &AppState, t: String, now: DateTime<Utc>) -> Result<Response, AppError> {
    let st = state.clone();
    let (found, fresh, stale) = state
        .store
        .read_quick(move |c| {
            let stamps = names::Stamps::read(c)?;
            let (index, acted) = st.pickup_names.current(&stamps);
            let stale = index.is_none() || acted.is_none();
            let fresh = Freshness::of(stamps.applied_at, now);
            let exact = store::exact_entries(c, &t)?;
            // The steps of `store::search_entries`, with the exact keys read once.
            let may_have_actions = |id: &str| acted.as_ref().is_none_or(|a| a.contains(id));
            let found = if !exact.is_empty() || !store::is_name_query(&t) {
                Found::Entries(store::summaries_where(c, exact, may_have_actions)?)
            } else if let (Some(index), Some(acted)) = (&index, &acted) {
                st.pickup_names.from_memory.fetch_add(1, Relaxed);
                Found::Json(index.orders_json(c, &index.positions(&t), acted)?)
            } else {
                st.pickup_names.from_sql.fetch_add(1, Relaxed);
                let rows = match &index {
                    Some(index) => index.search(&t),
                    None => store::name_entries(c, &t)?,
                };
                Found::Entries(store::summaries_where(c, rows, may_have_actions)?)
            };
            Ok::<_, AppError>((found, fresh, stale))
        })
        .await?;
    if stale {
        rebuild_names(state);
    }
    match found {
        Found::Entries(orders) => Ok(ApiJson(List {
            orders,
            truncated: None,
            total: None,
            next_after: None,
            freshness: fresh,
        })
        .into_response()),
        Found::Json(orders) => {
            // The same document `List` serializes to: `orders`, then the freshness.
            let fresh = serde_json::to_string(&fresh).map_err(|e| AppError::Internal(e.into()))?;
            let body = format!(
                "{{\"orders\":{orders}{}{}",
                if fresh.len() > 2 { "," } else { "" },
                &fresh[1..]
            );
            Ok((
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response())
        }
    }
}

/// Starts a rebuild of the name copies unless one is running (on the blocking pool: it reads
/// every order).
fn rebuild_names(state: &AppState) {
    let Some(claim) = state.pickup_names.begin_rebuild() else {
        return;
    };
    let (store, names) = (state.store.clone(), state.pickup_names.clone());
    tokio::spawn(async move {
        let _claim = claim;
        let built = store
            .read(move |c| names.rebuild(c).map_err(StoreError::from))
            .await;
        if let Err(e) = built {
            tracing::warn!(error = %e, "could not rebuild the name search copy");
        }
    });
}

#[derive(Serialize)]
struct OneOrder {
    #[serde(flatten)]
    order: Order,
    #[serde(flatten)]
    freshness: Freshness,
}

/// The order as it stands now (inside the transaction that just changed it, for actions).
fn reload(
    c: &rusqlite::Connection,
    order_id: &str,
    now: DateTime<Utc>,
) -> Result<OneOrder, AppError> {
    let row = store::load(c, order_id)?.ok_or_else(|| not_found(order_id))?;
    Ok(OneOrder {
        order: store::view(c, row)?,
        freshness: freshness(c, now)?,
    })
}

fn not_found(order_id: &str) -> AppError {
    AppError::NotFound(format!("no pickup order {order_id} in this store's copy"))
}

/// One order. An order the store has not acted on (by the copy of acted-on orders in
/// `names`, when it is current) skips the hand-over and no-show queries.
async fn one(
    State(state): State<AppState>,
    ApiPath(order_id): ApiPath<String>,
) -> Result<ApiJson<OneOrder>, AppError> {
    let now = state.clock.now();
    let st = state.clone();
    let (found, stale) = state
        .store
        .read_quick(move |c| {
            let stamps = names::Stamps::read(c)?;
            let (_, acted) = st.pickup_names.current(&stamps);
            let row = store::load(c, &order_id)?.ok_or_else(|| not_found(&order_id))?;
            let order = match &acted {
                Some(a) if !a.contains(&order_id) => store::view_unacted(row),
                _ => store::view(c, row)?,
            };
            let found = OneOrder {
                order,
                freshness: Freshness::of(stamps.applied_at, now),
            };
            Ok::<_, AppError>((found, acted.is_none()))
        })
        .await?;
    if stale {
        rebuild_names(&state);
    }
    Ok(ApiJson(found))
}

/// The longest search text (`q`) the desk's searches take, in characters.
pub const QUERY_MAX_CHARS: usize = 100;
/// The longest hand-over `request_id`, in characters.
pub const HANDOVER_REQUEST_ID_MAX_CHARS: usize = 64;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HandOverBody {
    #[serde(default)]
    lines: Vec<LineQty>,
    id_checked: bool,
    /// The desk's key for this attempt, reused when it retries it (1 to 64 characters).
    #[serde(default)]
    request_id: Option<String>,
}

impl HandOverBody {
    /// What was asked, to tell a retry of this attempt from a different hand-over under the
    /// same key. Lines sorted: the same lines in another order ask for the same thing.
    fn request_hash(&self) -> String {
        let mut lines = self.lines.clone();
        lines.sort_by_key(|l| l.line);
        let asked = json!({"lines": lines, "id_checked": self.id_checked});
        hex::encode(Sha256::digest(asked.to_string()))
    }
}

fn refusal(r: Refusal) -> AppError {
    match r {
        Refusal::Cancelled => AppError::conflict(
            "order_cancelled",
            "central cancelled this order: do not hand it over",
        ),
        Refusal::AlreadyHandedOver => AppError::conflict(
            "already_handed_over",
            "this order has already been handed over",
        ),
        Refusal::NotPaid => AppError::conflict(
            "not_paid",
            "this order is paid at pickup: take payment at a register first",
        ),
        Refusal::IdCheckRequired => AppError::invalid(
            "id_check_required",
            "id_checked",
            "an item needs the customer's ID checked first",
        ),
        Refusal::InvalidLine { index, message } => {
            AppError::invalid("invalid_line", format!("lines[{index}].line"), message)
        }
        Refusal::TooMany { index, remaining } => AppError::invalid(
            "too_many",
            format!("lines[{index}].qty"),
            format!("only {remaining} left to hand over on this line"),
        )
        .with("remaining", remaining),
    }
}

/// The journal entry's device: the desk's address, when known.
fn device(client: Option<std::net::IpAddr>) -> Option<String> {
    client.map(|c| c.to_string())
}

async fn hand_over(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ClientAddr(client): ClientAddr,
    ApiPath(order_id): ApiPath<String>,
    ApiJson(body): ApiJson<HandOverBody>,
) -> Result<ApiJson<OneOrder>, AppError> {
    let now = state.clock.now();
    let (store_id, now_s) = (state.config.store_id.clone(), state.clock.now_rfc3339());
    let actor = caller.actor().ok_or(AppError::Unauthorized)?;
    if let Some(id) = &body.request_id
        && !(1..=HANDOVER_REQUEST_ID_MAX_CHARS).contains(&id.chars().count())
    {
        return Err(AppError::bad_request("request_id", "1 to 64 characters"));
    }
    // No order line holds more units than the feed takes; the OpenAPI document states the
    // same range.
    let most = crate::feeds::records::MAX_LINE_QTY;
    if let Some(i) = body.lines.iter().position(|l| l.qty > most) {
        return Err(AppError::invalid(
            "too_many",
            format!("lines[{i}].qty"),
            format!("at most {most}"),
        ));
    }
    let request_hash = body.request_id.as_ref().map(|_| body.request_hash());
    // Decided on the writer, against the order as it is at that moment: two desks handing
    // over the same order at once cannot both give out the same items, and two retries of
    // one attempt cannot both record it.
    let (done, recorded) = state
        .store
        .write(move |c| {
            let row = store::load(c, &order_id)?.ok_or_else(|| not_found(&order_id))?;
            if let (Some(request_id), Some(hash)) = (&body.request_id, &request_hash)
                && let Some(seen) = store::handover_request(c, &row.summary.order_id, request_id)?
            {
                if seen != *hash {
                    return Err(AppError::conflict(
                        "request_id_reused",
                        "this request_id was used for a different hand-over of this order",
                    )
                    .with("field", "request_id"));
                }
                // A retry of a hand-over already recorded: the order as it stands now.
                return Ok((reload(c, &row.summary.order_id, now)?, false));
            }
            let (feed_status, paid) = (row.summary.status.clone(), row.summary.payment_state == "paid");
            let (order_number, order) = (row.summary.order_number.clone(), store::view(c, row)?);
            let lines = store::rule_lines(&order);
            let facts = OrderFacts { status: &feed_status, paid, lines: &lines };
            let plan = plan_handover(&facts, &body.lines, body.id_checked).map_err(refusal)?;
            let complete = lines.iter().all(|l| {
                let giving: i64 = plan.iter().filter(|p| p.line == l.line).map(|p| p.qty).sum();
                l.qty - l.handed_over - giving == 0
            });
            let entry = journal::append(
                c,
                &store_id,
                &now_s,
                NewEntry {
                    lane: Lane::Pickups,
                    kind: "pickup.handed_over".into(),
                    actor: Some(actor.clone()),
                    device: device(client),
                    body: json!({"order_id": order.summary.order_id, "order_number": order_number, "lines": plan,
                                 "id_checked": body.id_checked, "complete": complete}),
                },
            )?;
            c.execute(
                "INSERT INTO pickup_handovers (order_id, lines, id_checked, by_employee, at, journal_id, request_id, request_hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                rusqlite::params![order.summary.order_id, serde_json::to_string(&plan).unwrap_or_default(), body.id_checked, actor, now_s, entry.id,
                                  body.request_id, request_hash],
            )?;
            Ok((reload(c, &order.summary.order_id, now)?, true))
        })
        .await?;
    if recorded {
        state.journal_appended.notify_one();
    }
    Ok(ApiJson(done))
}

async fn no_show(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ClientAddr(client): ClientAddr,
    ApiPath(order_id): ApiPath<String>,
) -> Result<ApiJson<OneOrder>, AppError> {
    let now = state.clock.now();
    let (store_id, now_s) = (state.config.store_id.clone(), state.clock.now_rfc3339());
    let actor = caller.actor().ok_or(AppError::Unauthorized)?;
    let done = state
        .store
        .write(move |c| {
            let row = store::load(c, &order_id)?.ok_or_else(|| not_found(&order_id))?;
            let feed_status = row.summary.status.clone();
            let order = store::view(c, row)?;
            if feed_status == "cancelled" {
                return Err(refusal(Refusal::Cancelled));
            }
            if !order.handovers.is_empty() || feed_status == "handed_over" {
                return Err(refusal(Refusal::AlreadyHandedOver));
            }
            // Marking a no-show twice changes nothing and journals nothing.
            if order.no_show.is_none() {
                let entry = journal::append(
                    c,
                    &store_id,
                    &now_s,
                    NewEntry {
                        lane: Lane::Pickups,
                        kind: "pickup.no_show".into(),
                        actor: Some(actor.clone()),
                        device: device(client),
                        body: json!({"order_id": order.summary.order_id, "order_number": order.summary.order_number, "due_at": order.summary.due_at}),
                    },
                )?;
                c.execute(
                    "INSERT INTO pickup_no_shows (order_id, by_employee, at, journal_id) VALUES (?1, ?2, ?3, ?4)",
                    rusqlite::params![order.summary.order_id, actor, now_s, entry.id],
                )?;
            }
            reload(c, &order.summary.order_id, now)
        })
        .await?;
    state.journal_appended.notify_one();
    Ok(ApiJson(done))
}
