//! Receipts as the desk sees them (the feed's replica plus the returns taken here) and the
//! returns' own SQL.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use super::rules::{Collected, LocalReturn, Policy, SoldLine, TenderFacts, returned_qty};

/// Most receipts a search returns, newest first.
pub const SEARCH_LIMIT: i64 = 50;

const SUMMARY_COLUMNS: &str = "r.receipt_id, r.order_number, r.sold_at, r.lane, r.currency, r.customer_phone_last4, r.total_minor, r.doc";

/// The stored record, as far as returns read it (HQ's record may carry more).
#[derive(Debug, Clone, Deserialize)]
pub struct Doc {
    #[serde(default)]
    pub lines: Vec<DocLine>,
    #[serde(default)]
    pub tenders: Vec<DocTender>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DocLine {
    pub line: u32,
    pub sku: String,
    /// The item's barcode, when the feed carries it (a scanner at the desk reads either).
    #[serde(default)]
    pub upc: Option<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub category: String,
    pub qty: i64,
    pub unit_price_minor: i64,
    #[serde(default)]
    pub discount_minor: i64,
    #[serde(default)]
    pub tax_minor: i64,
    #[serde(default)]
    pub returnable: bool,
    #[serde(default)]
    pub return_window_days: i64,
    #[serde(default)]
    pub returned_qty: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DocTender {
    /// A kiosk sale's tender may carry only its `payment_id`.
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub brand: Option<String>,
    #[serde(default)]
    pub last4: Option<String>,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub authorization: Option<String>,
    /// A kiosk sale's tender names the payment it was paid with.
    #[serde(default)]
    pub payment_id: Option<String>,
    pub amount_minor: i64,
}

impl DocTender {
    /// The processor can refund it: it has an authorization, a token or a payment to refer to.
    pub fn electronic(&self) -> bool {
        self.kind != "cash"
            && (self.authorization.is_some() || self.token.is_some() || self.payment_id.is_some())
    }

    /// The body of `POST /v1/refunds` for `amount` to this tender. Never card data: the
    /// processor's own authorization, or its token with the non-sensitive metadata.
    pub fn refund_request(&self, amount: i64, currency: &str) -> serde_json::Value {
        let mut body = serde_json::json!({ "amount_minor": amount, "currency": currency });
        if let Some(a) = &self.authorization {
            body["authorization"] = a.clone().into();
        } else {
            let mut tender = serde_json::json!({});
            if !self.kind.is_empty() {
                tender["kind"] = self.kind.clone().into();
            }
            for (k, v) in [
                ("token", &self.token),
                ("brand", &self.brand),
                ("last4", &self.last4),
                ("payment_id", &self.payment_id),
            ] {
                if let Some(v) = v {
                    tender[k] = v.clone().into();
                }
            }
            body["tender"] = tender;
        }
        body
    }
}

pub struct ReceiptRow {
    pub receipt_id: String,
    pub order_number: Option<String>,
    pub sold_at: String,
    pub lane: Option<String>,
    pub currency: String,
    pub customer_phone_last4: Option<String>,
    pub total_minor: i64,
    pub doc: String,
}

fn receipt_from_row(r: &Row<'_>) -> rusqlite::Result<ReceiptRow> {
    Ok(ReceiptRow {
        receipt_id: r.get(0)?,
        order_number: r.get(1)?,
        sold_at: r.get(2)?,
        lane: r.get(3)?,
        currency: r.get(4)?,
        customer_phone_last4: r.get(5)?,
        total_minor: r.get(6)?,
        doc: r.get(7)?,
    })
}

pub fn load(conn: &Connection, receipt_id: &str) -> rusqlite::Result<Option<ReceiptRow>> {
    conn.prepare_cached(&format!(
        "SELECT {SUMMARY_COLUMNS} FROM receipts r WHERE r.receipt_id = ?1"
    ))?
    .query_row([receipt_id], receipt_from_row)
    .optional()
}

pub fn parse_doc(doc: &str) -> rusqlite::Result<Doc> {
    from_stored(doc)
}

/// A stored record read as `T`; unreadable JSON is a conversion failure of its column.
fn from_stored<T: serde::de::DeserializeOwned>(doc: &str) -> rusqlite::Result<T> {
    serde_json::from_str(doc).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(7, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// A tender as the desk sees it: never its token or authorization.
#[derive(Debug, Clone, Serialize)]
pub struct TenderView {
    pub kind: String,
    pub brand: Option<String>,
    pub last4: Option<String>,
    pub amount_minor: i64,
    /// Refunded to this tender by this store so far.
    pub refunded_minor: i64,
}

/// A receipt in a list.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub receipt_id: String,
    pub order_number: Option<String>,
    pub sold_at: String,
    pub lane: Option<String>,
    pub customer_phone_last4: Option<String>,
    pub total_minor: i64,
    pub currency: String,
    pub items: i64,
    pub tenders: Vec<TenderView>,
}

/// What a receipt's line in a list reads of the stored record: its lines' quantities and its
/// tenders' faces. The rest of the record is skipped unread, so a search of 50 receipts does
/// not allocate every line's SKU and description only to count items (issue 19: that was
/// most of a desk search's allocations).
#[derive(Deserialize)]
struct SummaryDoc {
    #[serde(default)]
    lines: Vec<LineQty>,
    #[serde(default)]
    tenders: Vec<TenderFace>,
}

#[derive(Deserialize)]
struct LineQty {
    qty: i64,
}

#[derive(Deserialize)]
struct TenderFace {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    brand: Option<String>,
    #[serde(default)]
    last4: Option<String>,
    amount_minor: i64,
}

impl SummaryDoc {
    fn of(doc: &Doc) -> Self {
        Self {
            lines: doc.lines.iter().map(|l| LineQty { qty: l.qty }).collect(),
            tenders: doc
                .tenders
                .iter()
                .map(|t| TenderFace {
                    kind: t.kind.clone(),
                    brand: t.brand.clone(),
                    last4: t.last4.clone(),
                    amount_minor: t.amount_minor,
                })
                .collect(),
        }
    }
}

fn summary(row: &ReceiptRow, doc: SummaryDoc, refunded: &HashMap<usize, i64>) -> Summary {
    Summary {
        receipt_id: row.receipt_id.clone(),
        order_number: row.order_number.clone(),
        sold_at: row.sold_at.clone(),
        lane: row.lane.clone(),
        customer_phone_last4: row.customer_phone_last4.clone(),
        total_minor: row.total_minor,
        currency: row.currency.clone(),
        items: doc.lines.iter().map(|l| l.qty).sum(),
        tenders: doc
            .tenders
            .into_iter()
            .enumerate()
            .map(|(i, t)| TenderView {
                kind: t.kind,
                brand: t.brand,
                last4: t.last4,
                amount_minor: t.amount_minor,
                refunded_minor: refunded.get(&i).copied().unwrap_or(0),
            })
            .collect(),
    }
}

/// Receipts whose barcode or order number is `q` exactly (as scanned), or, for four digits,
/// whose customer's phone ends in them. One multi-index OR: an index lookup per term.
pub fn search(conn: &Connection, q: &str) -> rusqlite::Result<Vec<Summary>> {
    let phone = (q.len() == 4 && q.bytes().all(|b| b.is_ascii_digit())).then_some(q);
    let rows = conn
        .prepare_cached(&format!(
            "SELECT {SUMMARY_COLUMNS} FROM receipts r
             WHERE r.receipt_id = ?1 OR r.order_number = ?1 OR r.customer_phone_last4 = ?2
             ORDER BY r.sold_at DESC LIMIT {SEARCH_LIMIT}"
        ))?
        .query_map(params![q, phone], receipt_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    summaries(conn, rows)
}

/// Receipts paid with a card of `brand` ending in `last4`, sold between `from` and `to`
/// (RFC 3339 UTC, inclusive), newest first: a range scan of `receipt_cards`' primary key.
pub fn by_card(
    conn: &Connection,
    brand: &str,
    last4: &str,
    from: &str,
    to: &str,
) -> rusqlite::Result<Vec<Summary>> {
    let rows = conn
        .prepare_cached(&format!(
            "SELECT {SUMMARY_COLUMNS} FROM receipt_cards c JOIN receipts r ON r.receipt_id = c.receipt_id
             WHERE c.brand = ?1 AND c.last4 = ?2 AND c.sold_at >= ?3 AND c.sold_at <= ?4
             ORDER BY c.sold_at DESC LIMIT {SEARCH_LIMIT}"
        ))?
        .query_map(params![brand, last4, from, to], receipt_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    summaries(conn, rows)
}

fn summaries(conn: &Connection, rows: Vec<ReceiptRow>) -> rusqlite::Result<Vec<Summary>> {
    rows.iter()
        .map(|r| {
            let doc: SummaryDoc = from_stored(&r.doc)?;
            Ok(summary(r, doc, &tender_refunds(conn, &r.receipt_id)?))
        })
        .collect()
}

/// Refunded per tender (by index) by this store, for a receipt.
pub fn tender_refunds(
    conn: &Connection,
    receipt_id: &str,
) -> rusqlite::Result<HashMap<usize, i64>> {
    let mut out = HashMap::new();
    let mut stmt = conn.prepare_cached(
        "SELECT f.tender_index, sum(f.amount_minor) FROM return_refunds f
         JOIN returns r ON r.return_id = f.return_id
         WHERE r.receipt_id = ?1 AND f.state IN ('queued', 'approved')
         GROUP BY f.tender_index",
    )?;
    for row in stmt.query_map([receipt_id], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
    })? {
        let (i, amount) = row?;
        out.insert(i as usize, amount);
    }
    Ok(out)
}

/// The returns of a receipt's lines taken here, per line, as the returned-count rule needs.
/// An entry retention pruned was delivered, so it counts as acknowledged.
fn local_returns(
    conn: &Connection,
    receipt_id: &str,
) -> rusqlite::Result<HashMap<u32, Vec<LocalReturn>>> {
    let mut out: HashMap<u32, Vec<LocalReturn>> = HashMap::new();
    let mut stmt = conn.prepare_cached(
        "SELECT l.line, l.qty, l.central_returned_before,
                coalesce(j.id IS NULL OR j.outcome IN ('accepted', 'duplicate'), 0)
         FROM return_lines l JOIN returns r ON r.return_id = l.return_id
         LEFT JOIN journal j ON j.id = r.journal_id
         WHERE l.receipt_id = ?1 AND l.line IS NOT NULL",
    )?;
    for row in stmt.query_map([receipt_id], |r| {
        Ok((
            r.get::<_, u32>(0)?,
            LocalReturn {
                qty: r.get(1)?,
                central_returned_before: r.get(2)?,
                acknowledged: r.get(3)?,
            },
        ))
    })? {
        let (line, lr) = row?;
        out.entry(line).or_default().push(lr);
    }
    Ok(out)
}

/// Why a line cannot come back: a code the desk translates and a sentence.
#[derive(Debug, Clone, Serialize)]
pub struct Why {
    pub code: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct LineView {
    pub line: u32,
    pub sku: String,
    /// The item's barcode (UPC/EAN), when the receipt feed carries one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upc: Option<String>,
    pub description: String,
    pub category: String,
    pub qty: i64,
    pub unit_price_minor: i64,
    pub discount_minor: i64,
    pub tax_minor: i64,
    /// What the customer paid for the whole line.
    pub paid_minor: i64,
    /// The item may be returned at all (the feed's `returnable`).
    pub returnable: bool,
    pub return_window_days: i64,
    pub window_ends_at: String,
    /// Returned so far: central's count plus returns here it has not folded in yet.
    pub returned_qty: i64,
    pub returned_central_qty: i64,
    pub returned_here_qty: i64,
    pub returnable_qty: i64,
    /// Why nothing more of this line can be returned.
    pub refusal: Option<Why>,
    /// The refund of each further unit in turn: returning k units refunds the first k.
    pub next_unit_refunds_minor: Vec<i64>,
}

/// A return taken here, in the receipt's history.
#[derive(Debug, Clone, Serialize)]
pub struct ReturnBrief {
    pub return_id: String,
    pub taken_at: String,
    pub by: String,
    /// The names from the staff replica, for people to read (null if HQ no longer lists them).
    pub by_name: Option<String>,
    pub approved_by: Option<String>,
    pub approved_by_name: Option<String>,
    /// Central's answer to the return's journal entry (`accepted`, `duplicate`, `rejected`,
    /// `conflict`), null while it waits; a refusal needs a person.
    pub central_outcome: Option<String>,
    pub central_reason: Option<String>,
    pub method: String,
    pub amount_minor: i64,
    pub refund_state: String,
    pub lines: Vec<ReturnedLine>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReturnedLine {
    pub line: Option<u32>,
    pub sku: String,
    pub qty: i64,
    pub amount_minor: i64,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReceiptView {
    #[serde(flatten)]
    pub summary: Summary,
    pub lines: Vec<LineView>,
    pub returns: Vec<ReturnBrief>,
}

/// The receipt, everything about it the return rules need, and the desk's view of it.
pub struct Loaded {
    pub row: ReceiptRow,
    pub doc: Doc,
    pub sold_at: DateTime<Utc>,
    pub lines: Vec<SoldLine>,
    /// Per line: central's count, and the count of returns here.
    pub counts: HashMap<u32, (i64, i64)>,
    pub tenders: Vec<TenderFacts>,
}

pub fn load_full(conn: &Connection, receipt_id: &str) -> rusqlite::Result<Option<Loaded>> {
    let Some(row) = load(conn, receipt_id)? else {
        return Ok(None);
    };
    let doc = parse_doc(&row.doc)?;
    let sold_at = DateTime::parse_from_rfc3339(&row.sold_at)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, Box::new(e))
        })?;
    let local = local_returns(conn, &row.receipt_id)?;
    let mut counts = HashMap::new();
    let lines = doc
        .lines
        .iter()
        .map(|l| {
            let here = local.get(&l.line).map(Vec::as_slice).unwrap_or(&[]);
            let returned = returned_qty(l.qty, l.returned_qty, here);
            counts.insert(l.line, (l.returned_qty, here.iter().map(|r| r.qty).sum()));
            SoldLine {
                line: l.line,
                qty: l.qty,
                unit_price_minor: l.unit_price_minor,
                discount_minor: l.discount_minor,
                tax_minor: l.tax_minor,
                returnable: l.returnable,
                return_window_days: l.return_window_days,
                returned,
            }
        })
        .collect();
    let refunded = tender_refunds(conn, &row.receipt_id)?;
    let mut tenders = Vec::with_capacity(doc.tenders.len());
    for (i, t) in doc.tenders.iter().enumerate() {
        let status = match &t.payment_id {
            Some(id) => payment_status(conn, id)?,
            None => None,
        };
        tenders.push(TenderFacts {
            electronic: t.electronic(),
            cash: t.kind == "cash",
            amount_minor: t.amount_minor,
            refunded_minor: refunded.get(&i).copied().unwrap_or(0),
            collected: Collected::of_payment(status.as_deref()),
        });
    }
    Ok(Some(Loaded {
        row,
        doc,
        sold_at,
        lines,
        counts,
        tenders,
    }))
}

pub fn view(conn: &Connection, l: &Loaded, now: DateTime<Utc>) -> rusqlite::Result<ReceiptView> {
    let refunded = tender_refunds(conn, &l.row.receipt_id)?;
    let lines = l
        .doc
        .lines
        .iter()
        .zip(&l.lines)
        .map(|(d, s)| {
            let (left, why) = s.returnable(l.sold_at, now);
            let (central, here) = l.counts.get(&d.line).copied().unwrap_or((0, 0));
            LineView {
                line: d.line,
                sku: d.sku.clone(),
                upc: d.upc.clone(),
                description: d.description.clone(),
                category: d.category.clone(),
                qty: d.qty,
                unit_price_minor: d.unit_price_minor,
                discount_minor: d.discount_minor,
                tax_minor: d.tax_minor,
                paid_minor: s.paid_minor(),
                returnable: d.returnable,
                return_window_days: d.return_window_days,
                window_ends_at: s
                    .window_ends(l.sold_at)
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                returned_qty: s.returned,
                returned_central_qty: central,
                returned_here_qty: here,
                returnable_qty: left,
                refusal: why.map(|w| Why {
                    code: w.code(),
                    message: w.message(),
                }),
                next_unit_refunds_minor: (0..left)
                    .map(|k| s.refund_for(s.returned + k, 1).amount_minor)
                    .collect(),
            }
        })
        .collect();
    Ok(ReceiptView {
        summary: summary(&l.row, SummaryDoc::of(&l.doc), &refunded),
        lines,
        returns: returns_of(conn, &l.row.receipt_id)?,
    })
}

/// A return's refund state in one word: `refunded`, `queued`, `declined`, `failed` (to the
/// original tender), `paid_out` (cash), `issued` (store credit).
pub fn refund_state(
    conn: &Connection,
    return_id: &str,
    method: &str,
    cash_minor: i64,
) -> rusqlite::Result<String> {
    if method == "store_credit" {
        return Ok("issued".into());
    }
    let states: Vec<String> = conn
        .prepare_cached("SELECT state FROM return_refunds WHERE return_id = ?1")?
        .query_map([return_id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(if states.is_empty() {
        "paid_out".into()
    } else if states.iter().any(|s| s == "failed") {
        "failed".into()
    } else if states.iter().any(|s| s == "declined") {
        "declined".into()
    } else if states.iter().any(|s| s == "queued") {
        "queued".into()
    } else if cash_minor > 0 {
        "refunded_and_paid_out".into()
    } else {
        "refunded".into()
    })
}

fn returns_of(conn: &Connection, receipt_id: &str) -> rusqlite::Result<Vec<ReturnBrief>> {
    let rows: Vec<(ReturnBrief, i64)> = conn
        .prepare_cached(
            "SELECT r.return_id, r.taken_at, r.by_employee, r.approved_by, r.method, r.amount_minor,
                    r.cash_minor, j.outcome, j.reason,
                    (SELECT s.name FROM staff s WHERE s.employee_id = r.by_employee),
                    (SELECT s.name FROM staff s WHERE s.employee_id = r.approved_by)
             FROM returns r LEFT JOIN journal j ON j.id = r.journal_id
             WHERE r.receipt_id = ?1 ORDER BY r.taken_at, r.return_id",
        )?
        .query_map([receipt_id], |r| {
            Ok((
                ReturnBrief {
                    return_id: r.get(0)?,
                    taken_at: r.get(1)?,
                    by: r.get(2)?,
                    by_name: r.get(9)?,
                    approved_by: r.get(3)?,
                    approved_by_name: r.get(10)?,
                    central_outcome: r.get(7)?,
                    central_reason: r.get(8)?,
                    method: r.get(4)?,
                    amount_minor: r.get(5)?,
                    refund_state: String::new(),
                    lines: Vec::new(),
                },
                r.get(6)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    rows.into_iter()
        .map(|(mut b, cash)| {
            b.refund_state = refund_state(conn, &b.return_id, &b.method, cash)?;
            b.lines = lines_of(conn, &b.return_id)?;
            Ok(b)
        })
        .collect()
}

pub fn lines_of(conn: &Connection, return_id: &str) -> rusqlite::Result<Vec<ReturnedLine>> {
    conn.prepare_cached(
        "SELECT line, sku, qty, amount_minor, reason FROM return_lines WHERE return_id = ?1 ORDER BY rowid",
    )?
    .query_map([return_id], |r| {
        Ok(ReturnedLine {
            line: r.get(0)?,
            sku: r.get(1)?,
            qty: r.get(2)?,
            amount_minor: r.get(3)?,
            reason: r.get(4)?,
        })
    })?
    .collect()
}

/// HQ's return limits from the policy replica.
pub fn policy(conn: &Connection) -> rusqlite::Result<Policy> {
    let mut p = Policy::default();
    let mut stmt = conn.prepare_cached(
        "SELECT key, value FROM policy WHERE key IN
         ('refund_cap_associate_minor', 'offline_refund_budget_minor', 'no_receipt_returns_offline')",
    )?;
    for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
        let (key, value) = row?;
        let value: serde_json::Value = serde_json::from_str(&value).unwrap_or_default();
        match key.as_str() {
            "refund_cap_associate_minor" => p.refund_cap_associate_minor = value.as_i64(),
            "offline_refund_budget_minor" => p.offline_refund_budget_minor = value.as_i64(),
            _ => p.no_receipt_store_credit_offline = value.as_str() == Some("store_credit_only"),
        }
    }
    Ok(p)
}

/// What this store has refunded on one receipt so far.
pub struct ReceiptRefunds {
    /// By every method.
    pub total_minor: i64,
    /// Paid back in cash.
    pub cash_minor: i64,
    /// Refunded offline on `day` by `employee` without a manager's approval (the cap's
    /// `earlier_minor`).
    pub unapproved_offline_minor: i64,
}

/// [`ReceiptRefunds`] in one pass over the receipt's returns (`returns_receipt` index).
pub fn receipt_refunds(
    conn: &Connection,
    receipt_id: &str,
    employee: &str,
    day: &str,
) -> rusqlite::Result<ReceiptRefunds> {
    conn.prepare_cached(
        "SELECT coalesce(sum(amount_minor), 0), coalesce(sum(cash_minor), 0),
                coalesce(sum(amount_minor) FILTER (
                    WHERE by_employee = ?2 AND day = ?3 AND offline = 1 AND approved_by IS NULL), 0)
         FROM returns WHERE receipt_id = ?1",
    )?
    .query_row([receipt_id, employee, day], |r| {
        Ok(ReceiptRefunds {
            total_minor: r.get(0)?,
            cash_minor: r.get(1)?,
            unapproved_offline_minor: r.get(2)?,
        })
    })
}

/// A kiosk payment's status (`None` when this store has no such payment).
fn payment_status(conn: &Connection, payment_id: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT status FROM payments WHERE payment_id = ?1")?
        .query_row([payment_id], |r| r.get(0))
        .optional()
}

/// Refunded today (the store day) while central was down.
pub fn offline_used(conn: &Connection, day: &str) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "SELECT coalesce(sum(amount_minor), 0) FROM returns WHERE offline = 1 AND day = ?1",
    )?
    .query_row([day], |r| r.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenders_refund_by_authorization_or_token_never_card_data() {
        let doc = parse_doc(
            r#"{"lines": [], "tenders": [
                {"kind": "card", "brand": "visa", "last4": "4242", "token": "tok_1", "authorization": "auth_1", "amount_minor": 500},
                {"kind": "app_pay", "token": "tok_app", "amount_minor": 300},
                {"payment_id": "pay_9", "amount_minor": 200},
                {"kind": "cash", "amount_minor": 100}]}"#,
        )
        .unwrap();
        let t = &doc.tenders;
        assert_eq!(
            t[0].refund_request(500, "USD"),
            serde_json::json!({"authorization": "auth_1", "amount_minor": 500, "currency": "USD"})
        );
        assert_eq!(
            t[1].refund_request(300, "USD")["tender"],
            serde_json::json!({"kind": "app_pay", "token": "tok_app"})
        );
        // A kiosk sale's tender names its payment only.
        assert_eq!(
            t[2].refund_request(200, "USD")["tender"],
            serde_json::json!({"payment_id": "pay_9"})
        );
        assert_eq!(
            t.iter().map(DocTender::electronic).collect::<Vec<_>>(),
            [true, true, true, false]
        );
    }
}
