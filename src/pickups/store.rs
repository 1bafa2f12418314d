//! Pickup orders as the desk sees them: the feed's replica plus what the store did (hand-overs,
//! no-shows) plus what central said back (a conflict on a hand-over).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use super::rules::{LineQty, OrderLine};

/// The columns [`summary_from_row`] reads: an order's list entry, without its record.
pub const SUMMARY_COLUMNS: &str = "order_id, order_number, pickup_code, customer_name, phone_last4, due_at, status, payment_state, total_minor, currency, items, requires_id_check";

/// The list entry as central sent it, before the store's own actions are folded in
/// ([`summaries`]).
pub fn summary_from_row(r: &Row<'_>) -> rusqlite::Result<Summary> {
    Ok(Summary {
        order_id: r.get(0)?,
        order_number: r.get(1)?,
        pickup_code: r.get(2)?,
        customer_name: r.get(3)?,
        phone_last4: r.get(4)?,
        due_at: r.get(5)?,
        status: r.get(6)?,
        payment_state: r.get(7)?,
        total_minor: r.get(8)?,
        currency: r.get(9)?,
        items: r.get(10)?,
        requires_id_check: r.get(11)?,
        needs_attention: false,
    })
}

/// An order's row: its list entry as central sent it, and its record.
pub struct OrderRow {
    pub summary: Summary,
    pub doc: String,
}

pub fn load(conn: &Connection, order_id: &str) -> rusqlite::Result<Option<OrderRow>> {
    conn.prepare_cached(&format!(
        "SELECT {SUMMARY_COLUMNS}, doc FROM pickup_orders WHERE order_id = ?1"
    ))?
    .query_row([order_id], |r| {
        Ok(OrderRow {
            summary: summary_from_row(r)?,
            doc: r.get(12)?,
        })
    })
    .optional()
}

#[derive(Debug, Clone, Serialize)]
pub struct Line {
    pub line: u32,
    pub sku: String,
    pub description: String,
    pub qty: i64,
    pub handed_over_qty: i64,
    pub remaining_qty: i64,
    pub unit_price_minor: i64,
    pub requires_id_check: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Handover {
    pub at: String,
    pub by: String,
    /// The employee's name from the staff replica (null when HQ no longer lists them).
    pub by_name: Option<String>,
    pub lines: Vec<LineQty>,
    pub id_checked: bool,
    /// Central's answer to this hand-over's journal entry, once it gave one (`accepted`,
    /// `duplicate`, `rejected`, `conflict`); null while it waits to be sent.
    pub central_outcome: Option<String>,
    pub central_reason: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NoShow {
    pub at: String,
    pub by: String,
    pub by_name: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Conflict {
    pub reason: Option<String>,
}

/// Central refused (rejected) or found in conflict a hand-over of this order: the desk shows
/// the order as needing attention, for everyone, until a person sorts it out.
#[derive(Debug, Clone, Serialize)]
pub struct CentralRefusal {
    /// `rejected` or `conflict`.
    pub outcome: String,
    pub reason: Option<String>,
}

/// The order list entry: what the desk shows of an order in a list.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub order_id: String,
    pub order_number: String,
    pub pickup_code: String,
    pub customer_name: String,
    pub phone_last4: Option<String>,
    pub due_at: String,
    /// The effective state: central's, unless the store has acted since.
    pub status: String,
    pub payment_state: String,
    pub items: i64,
    pub total_minor: i64,
    pub currency: String,
    pub requires_id_check: bool,
    /// Central answered a hand-over of this order with a conflict (it had cancelled it) or
    /// rejected it.
    pub needs_attention: bool,
}

/// One order with everything the desk shows about it.
#[derive(Debug, Clone, Serialize)]
pub struct Order {
    #[serde(flatten)]
    pub summary: Summary,
    pub lines: Vec<Line>,
    pub handovers: Vec<Handover>,
    pub no_show: Option<NoShow>,
    pub conflict: Option<Conflict>,
    /// A hand-over central rejected or found in conflict (`conflict` covers only the latter).
    pub central_refusal: Option<CentralRefusal>,
}

#[derive(serde::Deserialize)]
struct DocLines<'a> {
    #[serde(borrow, default)]
    lines: Vec<DocLine<'a>>,
}

#[derive(serde::Deserialize)]
struct DocLine<'a> {
    line: u32,
    #[serde(borrow)]
    sku: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    description: std::borrow::Cow<'a, str>,
    qty: i64,
    unit_price_minor: i64,
    #[serde(default)]
    requires_id_check: bool,
}

/// The order's lines from the stored record (checked when the feed brought it). A typed,
/// borrowing parse: the rest of the record is skipped, not built.
fn doc_lines(doc: &str) -> Vec<(u32, String, String, i64, i64, bool)> {
    serde_json::from_str::<DocLines>(doc)
        .map(|d| {
            d.lines
                .into_iter()
                .map(|l| {
                    (
                        l.line,
                        l.sku.into_owned(),
                        l.description.into_owned(),
                        l.qty,
                        l.unit_price_minor,
                        l.requires_id_check,
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// What the store did with an order and what central said back, read for many orders at once.
#[derive(Default)]
struct Actions {
    handovers: Vec<Handover>,
    no_show: Option<NoShow>,
    conflict: Option<Conflict>,
    refusal: Option<CentralRefusal>,
}

/// The actions on each of `ids`: two queries whatever the number of orders (a list of 500
/// due orders must not cost a thousand).
fn actions(conn: &Connection, ids: &[&str]) -> rusqlite::Result<HashMap<String, Actions>> {
    let mut out: HashMap<String, Actions> = HashMap::with_capacity(ids.len());
    if ids.is_empty() {
        return Ok(out);
    }
    // One order (a lookup, a scan) is an equality; a list, a join from json_each of its ids
    // (an index probe per id; `IN (SELECT ... json_each)` built a temporary table each time).
    // The join would repeat an id given twice, so each id is given once.
    let (key, handovers, no_shows) = match ids {
        [one] => (
            one.to_string(),
            "pickup_handovers h LEFT JOIN journal j ON j.id = h.journal_id WHERE h.order_id = ?1",
            "pickup_no_shows n WHERE n.order_id = ?1",
        ),
        _ => {
            let mut distinct = ids.to_vec();
            distinct.sort_unstable();
            distinct.dedup();
            (
                serde_json::to_string(&distinct).unwrap_or_else(|_| "[]".into()),
                "json_each(?1) k JOIN pickup_handovers h ON h.order_id = k.value
                 LEFT JOIN journal j ON j.id = h.journal_id",
                "json_each(?1) k JOIN pickup_no_shows n ON n.order_id = k.value",
            )
        }
    };
    // Each hand-over with central's answer to its journal entry: a conflict (central had
    // cancelled the order) puts the order in need of attention.
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT h.order_id, h.at, h.by_employee, h.lines, h.id_checked, j.outcome, j.reason,
                (SELECT s.name FROM staff s WHERE s.employee_id = h.by_employee)
         FROM {handovers} ORDER BY h.id"
    ))?;
    let mut rows = stmt.query([&key])?;
    while let Some(r) = rows.next()? {
        let a = out.entry(r.get(0)?).or_default();
        let lines: String = r.get(3)?;
        let outcome: Option<String> = r.get(5)?;
        let reason: Option<String> = r.get(6)?;
        match outcome.as_deref() {
            Some("conflict") => {
                a.conflict = Some(Conflict {
                    reason: reason.clone(),
                });
                a.refusal = Some(CentralRefusal {
                    outcome: "conflict".into(),
                    reason: reason.clone(),
                });
            }
            Some("rejected") => {
                a.refusal = Some(CentralRefusal {
                    outcome: "rejected".into(),
                    reason: reason.clone(),
                });
            }
            _ => {}
        }
        a.handovers.push(Handover {
            at: r.get(1)?,
            by: r.get(2)?,
            by_name: r.get(7)?,
            lines: serde_json::from_str(&lines).unwrap_or_default(),
            id_checked: r.get(4)?,
            central_outcome: outcome,
            central_reason: reason,
        });
    }
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT n.order_id, n.at, n.by_employee,
                (SELECT s.name FROM staff s WHERE s.employee_id = n.by_employee)
         FROM {no_shows}"
    ))?;
    let mut rows = stmt.query([&key])?;
    while let Some(r) = rows.next()? {
        out.entry(r.get(0)?).or_default().no_show = Some(NoShow {
            at: r.get(1)?,
            by: r.get(2)?,
            by_name: r.get(3)?,
        });
    }
    Ok(out)
}

/// The request hash of the hand-over of `order_id` recorded under the desk's `request_id`, if
/// there is one.
pub fn handover_request(
    conn: &Connection,
    order_id: &str,
    request_id: &str,
) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached(
        "SELECT request_hash FROM pickup_handovers WHERE order_id = ?1 AND request_id = ?2",
    )?
    .query_row([order_id, request_id], |r| r.get(0))
    .optional()
}

/// The order with the store's actions and central's answers folded in.
pub fn view(conn: &Connection, row: OrderRow) -> rusqlite::Result<Order> {
    let actions = actions(conn, &[row.summary.order_id.as_str()])?
        .remove(&row.summary.order_id)
        .unwrap_or_default();
    Ok(assemble(row, actions))
}

/// [`view`] of an order known to have no hand-over or no-show here
/// ([`super::names::Acted`]).
pub fn view_unacted(row: OrderRow) -> Order {
    assemble(row, Actions::default())
}

/// List entries with the store's actions folded in: two queries for the actions of them all,
/// and an order's record is read only when it was handed over here (which lines are still owed
/// decides its state); every other entry is complete from its row.
pub fn summaries(conn: &Connection, rows: Vec<Summary>) -> rusqlite::Result<Vec<Summary>> {
    summaries_where(conn, rows, |_| true)
}

/// [`summaries`], looking up the actions only of the orders `may_have_actions` lets through
/// (the others are known to have none: [`super::names::Acted`]).
pub fn summaries_where(
    conn: &Connection,
    mut rows: Vec<Summary>,
    may_have_actions: impl Fn(&str) -> bool,
) -> rusqlite::Result<Vec<Summary>> {
    let ids: Vec<&str> = rows
        .iter()
        .map(|r| r.order_id.as_str())
        .filter(|id| may_have_actions(id))
        .collect();
    let mut actions = actions(conn, &ids)?;
    for s in &mut rows {
        let Some(a) = actions.remove(&s.order_id) else {
            continue;
        };
        s.needs_attention = a.refusal.is_some();
        let lines = if a.handovers.is_empty() {
            Vec::new()
        } else {
            // The same read transaction as the list (readers.rs), so the row is there; if a
            // caller ever reads outside one, an order gone meanwhile keeps central's state.
            let doc: Option<String> = conn
                .prepare_cached("SELECT doc FROM pickup_orders WHERE order_id = ?1")?
                .query_row([&s.order_id], |r| r.get(0))
                .optional()?;
            match doc {
                Some(doc) => lines_of(&doc, &a.handovers),
                None => continue,
            }
        };
        s.status = effective_status(&lines, &a, &s.status);
    }
    Ok(rows)
}

/// The order's lines with what was handed over of each.
fn lines_of(doc: &str, handovers: &[Handover]) -> Vec<Line> {
    let mut given: HashMap<u32, i64> = HashMap::new();
    for h in handovers {
        for l in &h.lines {
            *given.entry(l.line).or_default() += l.qty;
        }
    }
    doc_lines(doc)
        .into_iter()
        .map(
            |(line, sku, description, qty, unit_price_minor, requires_id_check)| {
                let handed_over_qty = given.get(&line).copied().unwrap_or(0).min(qty);
                Line {
                    line,
                    sku,
                    description,
                    qty,
                    handed_over_qty,
                    remaining_qty: qty - handed_over_qty,
                    unit_price_minor,
                    requires_id_check,
                }
            },
        )
        .collect()
}

/// The state the desk sees: the store's hand-overs and no-show over central's state.
fn effective_status(lines: &[Line], actions: &Actions, central: &str) -> String {
    if !actions.handovers.is_empty() && lines.iter().all(|l| l.remaining_qty == 0) {
        "handed_over".to_string()
    } else if !actions.handovers.is_empty() {
        "partially_handed_over".to_string()
    } else if actions.no_show.is_some() {
        "no_show".to_string()
    } else {
        central.to_string()
    }
}

fn assemble(row: OrderRow, actions: Actions) -> Order {
    let lines = lines_of(&row.doc, &actions.handovers);
    let status = effective_status(&lines, &actions, &row.summary.status);
    let Actions {
        handovers,
        no_show,
        conflict,
        refusal,
    } = actions;
    Order {
        summary: Summary {
            // From the lines themselves, as the columns were made from them at feed time.
            items: lines.iter().map(|l| l.qty).sum(),
            requires_id_check: lines.iter().any(|l| l.requires_id_check),
            needs_attention: refusal.is_some(),
            status,
            ..row.summary
        },
        lines,
        handovers,
        no_show,
        conflict,
        central_refusal: refusal,
    }
}

/// The rule's view of the order's lines.
pub fn rule_lines(order: &Order) -> Vec<OrderLine> {
    order
        .lines
        .iter()
        .map(|l| OrderLine {
            line: l.line,
            qty: l.qty,
            handed_over: l.handed_over_qty,
            requires_id_check: l.requires_id_check,
        })
        .collect()
}

/// Most orders a name search returns (a name is a weak key; the desk narrows it down).
///
/// Limits are written into the SQL, never bound: SQLite (3.50) reads a bound `LIMIT ?` while
/// planning and marks the statement to be prepared again on every new binding, which for the
/// name search cost more than running it.
/// Most orders a name search returns.
pub const NAME_LIMIT: usize = 20;

/// The last name: the text after the last space. Spelled exactly as the expression index of
/// migration 0007, which is what lets SQLite use it.
pub const LAST_NAME: &str =
    "substr(customer_name, length(rtrim(customer_name, replace(customer_name, ' ', ''))) + 1)";

/// An exact key's orders (order number, pickup code, phone's last four), earliest due first.
fn exact_key_sql(column: &str) -> String {
    format!(
        "SELECT {SUMMARY_COLUMNS} FROM pickup_orders WHERE {column} = ?1 ORDER BY due_at LIMIT 50"
    )
}

/// The earliest-due NAME_LIMIT entries whose `name` (`customer_name` or [`LAST_NAME`]) is in
/// the NOCASE range [?1, ?2).
fn name_range_sql(name: &str) -> String {
    format!(
        "SELECT {SUMMARY_COLUMNS} FROM pickup_orders
         WHERE {name} COLLATE NOCASE >= ?1 AND {name} COLLATE NOCASE < ?2
         ORDER BY due_at, order_id LIMIT {NAME_LIMIT}"
    )
}

/// Orders matching `q`: an order number or pickup code exactly (what a scanner types), the
/// phone's last four, or a customer whose first or last name starts with `q` (any case).
/// Every branch is an index lookup or an index range, so the cost does not grow with the
/// number of orders; a middle name is not a search key.
///
/// The list entries as central sent them ([`summaries`] folds in the store's actions); the
/// name ranges from `names` when given (a copy of this same read's data, see
/// [`super::names`]), else from SQL. The route runs the same steps itself, to answer from the
/// copy's stored JSON.
pub fn search_entries(
    conn: &Connection,
    q: &str,
    names: Option<&super::names::NameIndex>,
) -> rusqlite::Result<Vec<Summary>> {
    let q = q.trim();
    let rows = exact_entries(conn, q)?;
    if !rows.is_empty() || !is_name_query(q) {
        return Ok(rows);
    }
    match names {
        Some(names) => Ok(names.search(q)),
        None => name_entries(conn, q),
    }
}

/// The orders whose order number, pickup code or phone's last four is `q` (trimmed). Each
/// exact key is one index lookup, tried in turn until one finds something. Their shapes
/// differ (W and nine digits, six letters and digits, four digits), so the first hit is the
/// answer.
pub fn exact_entries(conn: &Connection, q: &str) -> rusqlite::Result<Vec<Summary>> {
    let phone = (q.len() == 4 && q.bytes().all(|b| b.is_ascii_digit())).then_some(q);
    let upper = q.to_ascii_uppercase();
    let mut rows = Vec::new();
    for (column, key) in [
        ("order_number", Some(q)),
        ("pickup_code", Some(upper.as_str())),
        ("phone_last4", phone),
    ] {
        let Some(key) = key else { continue };
        rows = conn
            .prepare_cached(&exact_key_sql(column))?
            .query_map([key], summary_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        if !rows.is_empty() {
            break;
        }
    }
    Ok(rows)
}

/// Whether `q` (trimmed) is searched as a name when no exact key matched: two letters or
/// more, with spaces, hyphens and apostrophes.
pub fn is_name_query(q: &str) -> bool {
    q.chars().count() >= 2
        && q.chars()
            .all(|c| c.is_alphabetic() || c == ' ' || c == '-' || c == '\'')
}

/// The earliest-due [`NAME_LIMIT`] orders whose first or last name starts with `q`, in SQL.
pub fn name_entries(conn: &Connection, q: &str) -> rusqlite::Result<Vec<Summary>> {
    // A prefix as a NOCASE range: [q, q + the highest code point).
    let end = format!("{q}\u{10FFFF}");
    // Each name's range gives its earliest-due entries (by due time, then order id, so
    // orders due in the same slot always come out the same way) read from its index
    // alone (migration 0012: the indexes carry the whole list entry; SQLite still sorts
    // the range's matches). The earliest NAME_LIMIT of both together are among the
    // earliest NAME_LIMIT of each, so merging the two gives the answer.
    let mut rows = Vec::new();
    for name in ["customer_name", LAST_NAME] {
        let mut stmt = conn.prepare_cached(&name_range_sql(name))?;
        for row in stmt.query_map(params![q, end], summary_from_row)? {
            rows.push(row?);
        }
    }
    rows.sort_by(|a, b| (&a.due_at, &a.order_id).cmp(&(&b.due_at, &b.order_id)));
    // One order can match both ways ("Lee Lee"): it is listed once.
    let mut seen = std::collections::HashSet::new();
    rows.retain(|r| seen.insert(r.order_id.clone()));
    rows.truncate(NAME_LIMIT);
    Ok(rows)
}

/// Most orders the due-soon list returns; beyond it the answer says it was cut.
pub const DUE_LIMIT: usize = 500;

/// The due-soon list: open orders earliest first, and whether more were due than it holds.
pub struct DueList {
    pub orders: Vec<Summary>,
    pub truncated: bool,
    /// How many open orders are due in the window in all (this page and the others).
    pub total: i64,
    /// Where the next page starts (pass as `after`), when the list was cut.
    pub next_after: Option<String>,
}

/// A page of the due-soon list starts after this order (the previous page's last): its due
/// time and id, written `DUE_AT|ORDER_ID`, since orders share due slots.
pub struct DueCursor {
    pub due_at: String,
    pub order_id: String,
}

impl DueCursor {
    pub fn parse(s: &str) -> Option<DueCursor> {
        let (due_at, order_id) = s.split_once('|')?;
        (!due_at.is_empty() && !order_id.is_empty()).then(|| DueCursor {
            due_at: due_at.to_string(),
            order_id: order_id.to_string(),
        })
    }

    fn of(s: &Summary) -> String {
        format!("{}|{}", s.due_at, s.order_id)
    }
}

/// The orders still open for the due-soon list: central's open states, no no-show here, and
/// no hand-over here unless some line still has more ordered than handed over.
const DUE_OPEN: &str = "due_at <= ?1 AND status IN ('placed', 'ready')
           AND NOT EXISTS (SELECT 1 FROM pickup_no_shows n WHERE n.order_id = o.order_id)
           AND (NOT EXISTS (SELECT 1 FROM pickup_handovers h WHERE h.order_id = o.order_id)
                OR EXISTS (
                    SELECT 1 FROM json_each(o.doc, '$.lines') l
                    WHERE l.value ->> '$.qty' > (
                        SELECT coalesce(sum(hl.value ->> '$.qty'), 0)
                        FROM pickup_handovers h, json_each(h.lines) hl
                        WHERE h.order_id = o.order_id
                          AND hl.value ->> '$.line' = l.value ->> '$.line')))";

/// Open orders due before `until` (overdue ones included), earliest first (ties by order id),
/// at most [`DUE_LIMIT`] of them, starting after `after` when given.
///
/// Central's copy says `ready` until it hears of a hand-over, so during an outage orders the
/// store has already given out are still open in the replica. They are left out in SQL, before
/// the limit, so they never take a slot from an order still to prepare: an order with no
/// hand-over here costs one index probe; one with hand-overs is kept only while some line of
/// it has more ordered than handed over (the rule [`view`] applies to call it `handed_over`).
/// One row past the limit is read to tell whether the list was cut; only then (or on a later
/// page) are all the open orders in the window counted.
pub fn due_before(
    conn: &Connection,
    until: DateTime<Utc>,
    after: Option<&DueCursor>,
) -> rusqlite::Result<DueList> {
    let until = until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {SUMMARY_COLUMNS} FROM pickup_orders o
         WHERE {DUE_OPEN}
           AND (?2 IS NULL OR due_at > ?2 OR (due_at = ?2 AND order_id > ?3))
         ORDER BY due_at, order_id LIMIT {}",
        DUE_LIMIT + 1
    ))?;
    let (a_due, a_id) = match after {
        Some(a) => (Some(a.due_at.as_str()), Some(a.order_id.as_str())),
        None => (None, None),
    };
    let mut rows: Vec<Summary> = stmt
        .query_map(params![until, a_due, a_id], summary_from_row)?
        .collect::<Result<_, _>>()?;
    let truncated = rows.len() > DUE_LIMIT;
    rows.truncate(DUE_LIMIT);
    let total = if truncated || after.is_some() {
        conn.prepare_cached(&format!(
            "SELECT count(*) FROM pickup_orders o WHERE {DUE_OPEN}"
        ))?
        .query_row(params![until], |r| r.get(0))?
    } else {
        rows.len() as i64
    };
    let next_after = if truncated {
        rows.last().map(DueCursor::of)
    } else {
        None
    };
    Ok(DueList {
        orders: summaries(conn, rows)?,
        truncated,
        total,
        next_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plan of every search statement on a fresh database: the name ranges read their
    /// index alone (no order rows), the exact keys come in due order from their index (no
    /// temporary sort). Both twins get the same indexes (migrations 0011, 0012).
    #[test]
    fn searches_are_index_ranges_in_due_order() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::migrate(&mut conn).unwrap();
        let plan = |sql: &str| -> String {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let n = stmt.parameter_count();
            let rows: Vec<String> = stmt
                .query_map(rusqlite::params_from_iter(vec!["x"; n]), |r| r.get(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            rows.join(" / ")
        };
        for name in ["customer_name", LAST_NAME] {
            let p = plan(&name_range_sql(name));
            assert!(p.contains("USING COVERING INDEX"), "{name}: {p}");
        }
        for column in ["order_number", "pickup_code", "phone_last4"] {
            let p = plan(&exact_key_sql(column));
            assert!(
                p.contains("USING INDEX") && !p.contains("TEMP B-TREE"),
                "{column}: {p}"
            );
        }
    }
}
