//! Returns without a receipt: store credit at the lowest price the store's receipts show for
//! the SKU in the last 90 days (one unit's share of what was paid: price less discount plus
//! tax, as sold). A common retail rule, and one that keeps the amount computed, never typed.
//!
//! There is no SKU index on receipts (their lines live in the JSON record), so this walks
//! receipts newest first and stops after [`MATCHES`] sales of the SKU: quick for what sells
//! often, a full walk of 90 days for what does not. No-receipt returns are rare.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use rusqlite::{Connection, params};

use super::AskLine;
use super::rules::SoldLine;
use super::store::parse_doc;
use crate::error::AppError;

/// Sales of a SKU looked at for its lowest price.
const MATCHES: usize = 20;

/// Items in one return without a receipt: each may walk 90 days of receipts.
pub const MAX_LINES: usize = 20;

#[derive(Debug, Clone)]
pub struct Priced {
    pub sku: String,
    /// The currency of the sale the price came from (the store's).
    pub currency: String,
    pub qty: i64,
    pub reason: String,
    pub amount_minor: i64,
}

/// The lowest a single unit of `sku` sold for among its [`MATCHES`] most recent sales in the
/// last 90 days; `None` if it was not sold, or its most recent sale says it is not returnable.
fn lowest_unit(
    c: &Connection,
    sku: &str,
    now: DateTime<Utc>,
) -> rusqlite::Result<Option<(i64, String)>> {
    let since = (now - Duration::days(90)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let needle = serde_json::to_string(sku).unwrap_or_default();
    let mut stmt = c.prepare_cached(
        "SELECT doc, currency FROM receipts WHERE sold_at >= ?1 AND instr(doc, ?2) > 0 ORDER BY sold_at DESC",
    )?;
    let mut rows = stmt.query(params![since, needle])?;
    let (mut lowest, mut seen) = (None::<(i64, String)>, 0usize);
    while let Some(r) = rows.next()? {
        let doc = parse_doc(&r.get::<_, String>(0)?)?;
        for l in doc.lines.iter().filter(|l| l.sku == sku && l.qty > 0) {
            let sold = SoldLine {
                line: l.line,
                qty: l.qty,
                unit_price_minor: l.unit_price_minor,
                discount_minor: l.discount_minor,
                tax_minor: l.tax_minor,
                returnable: l.returnable,
                return_window_days: l.return_window_days,
                returned: 0,
            };
            if !l.returnable {
                return Ok(None);
            }
            // One unit's share, rounded down: never more than any customer paid.
            let unit = sold.worth_of_first(1).amount_minor;
            if lowest.as_ref().is_none_or(|(x, _)| unit < *x) {
                lowest = Some((unit, r.get(1)?));
            }
            seen += 1;
        }
        if seen >= MATCHES {
            break;
        }
    }
    Ok(lowest)
}

pub fn price(
    c: &Connection,
    lines: &[AskLine],
    now: DateTime<Utc>,
) -> Result<Vec<Priced>, AppError> {
    if lines.is_empty() {
        return Err(AppError::invalid(
            "no_lines",
            "lines",
            "choose at least one item to return",
        ));
    }
    let mut out = Vec::new();
    for (i, a) in lines.iter().enumerate() {
        let sku = a.sku.as_deref().map(str::trim).unwrap_or_default();
        if sku.is_empty() || a.line.is_some() {
            return Err(AppError::invalid(
                "invalid_line",
                format!("lines[{i}].sku"),
                "a return without a receipt names each item's sku (and no line)",
            ));
        }
        if !(1..=20).contains(&a.qty) {
            return Err(AppError::invalid(
                "invalid_line",
                format!("lines[{i}].qty"),
                "qty must be 1 to 20",
            ));
        }
        let reason = a.reason.trim();
        if reason.is_empty() || reason.chars().count() > 200 {
            return Err(AppError::invalid(
                "invalid_line",
                format!("lines[{i}].reason"),
                "a reason of 1 to 200 characters is needed",
            ));
        }
        let Some((unit, currency)) = lowest_unit(c, sku, now)? else {
            return Err(AppError::invalid(
                "unknown_item",
                format!("lines[{i}].sku"),
                "this store has not sold this item as returnable in the last 90 days",
            ));
        };
        out.push(Priced {
            sku: sku.to_string(),
            currency,
            qty: a.qty,
            reason: reason.to_string(),
            amount_minor: unit * a.qty,
        });
    }
    Ok(out)
}
