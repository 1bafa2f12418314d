//! Reconciliation: what needs a person after an outage, as a page's data and as CSV.
//! Journal entries central rejected or found in conflict, card refunds of returns the
//! processor declined or refused, and kiosk payments declined after forwarding or expired
//! unforwarded (with the basket, lane and time).

use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::{HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rusqlite::OptionalExtension;
use serde::{Deserialize, Serialize};

use crate::access::Permission;
use crate::error::AppError;
use crate::http::{Access, ApiJson, ApiQuery, Route};
use crate::journal::delivery::{SetAside, set_aside};
use crate::payments::store::{NeedsPerson, needs_person};
use crate::returns::refunds::{NeedsAPerson, needing_a_person};
use crate::state::AppState;

pub fn routes() -> Vec<Route<AppState>> {
    vec![Route::new(
        Method::GET,
        "/api/v1/reconciliation",
        Access::Staff(Permission::ViewReconciliation),
        get(report),
    )]
}

#[derive(Deserialize)]
struct Format {
    format: Option<String>,
}

#[derive(Serialize)]
struct Report {
    generated_at: String,
    items: Vec<SetAside>,
    /// Card refunds the processor declined or refused (returns).
    refunds: Vec<NeedsAPerson>,
    /// Kiosk payments approved offline that the processor declined when forwarded, or that
    /// expired before they could be: money the store may not collect. Also payments that
    /// paid with no sale recorded for them an hour later (`paid_without_sale`).
    payments: Vec<NeedsPerson>,
    /// The names of the staff who appear as actors above, by employee id, for people to read.
    names: std::collections::BTreeMap<String, String>,
}

/// The staff replica's names for `ids` (those HQ still lists).
fn staff_names<'a>(
    c: &rusqlite::Connection,
    ids: impl Iterator<Item = &'a str>,
) -> rusqlite::Result<std::collections::BTreeMap<String, String>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stmt = c.prepare_cached("SELECT name FROM staff WHERE employee_id = ?1")?;
    for id in ids {
        if out.contains_key(id) {
            continue;
        }
        if let Some(name) = stmt.query_row([id], |r| r.get::<_, String>(0)).optional()? {
            out.insert(id.to_string(), name);
        }
    }
    Ok(out)
}

async fn report(
    State(state): State<AppState>,
    ApiQuery(f): ApiQuery<Format>,
) -> Result<Response, AppError> {
    let csv = match f.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(AppError::bad_request(
                "format",
                format!("`{other}`: use json or csv"),
            ));
        }
    };
    let now = state.clock.now();
    let (items, refunds, payments, names) = state
        .store
        .read(move |c| {
            let (items, refunds) = (set_aside(c)?, needing_a_person(c)?);
            let actors = items
                .iter()
                .filter_map(|i| i.entry.actor.as_deref())
                .chain(refunds.iter().map(|f| f.actor.as_str()));
            let names = staff_names(c, actors)?;
            Ok::<_, AppError>((items, refunds, needs_person(c, now)?, names))
        })
        .await?;
    let generated_at = state.clock.now_rfc3339();
    let mut res = if csv {
        let mut res = to_csv(&items, &refunds, &payments).into_response();
        res.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/csv; charset=utf-8"),
        );
        let name = format!(
            "attachment; filename=\"reconciliation-{}.csv\"",
            &generated_at[..10]
        );
        if let Ok(v) = HeaderValue::from_str(&name) {
            res.headers_mut().insert(CONTENT_DISPOSITION, v);
        }
        res
    } else {
        ApiJson(Report {
            generated_at,
            items,
            refunds,
            payments,
            names,
        })
        .into_response()
    };
    res.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

fn to_csv(items: &[SetAside], refunds: &[NeedsAPerson], payments: &[NeedsPerson]) -> String {
    let mut out =
        String::from("seq,occurred_at,lane,kind,actor,device,outcome,reason,delivered_at,body\r\n");
    for i in items {
        let e = &i.entry;
        let cells = [
            e.seq.to_string(),
            e.occurred_at.clone(),
            e.lane.as_str().to_string(),
            e.kind.clone(),
            e.actor.clone().unwrap_or_default(),
            e.device.clone().unwrap_or_default(),
            i.outcome.as_str().to_string(),
            i.reason.clone().unwrap_or_default(),
            i.delivered_at.clone(),
            crate::journal::chain::canonical_json(&e.body),
        ];
        let row: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
        out.push_str(&row.join(","));
        out.push_str("\r\n");
    }
    for f in refunds {
        let cells = [
            f.seq.to_string(),
            f.occurred_at.clone(),
            f.lane.to_string(),
            f.kind.clone(),
            f.actor.clone(),
            f.device.clone().unwrap_or_default(),
            f.outcome.clone(),
            f.reason.clone().unwrap_or_default(),
            String::new(),
            crate::journal::chain::canonical_json(&f.body),
        ];
        let row: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
        out.push_str(&row.join(","));
        out.push_str("\r\n");
    }
    // Payments in the same columns: no journal seq of their own here, the kiosk as actor,
    // its lane as device, the payment's status as the outcome, the basket in the body.
    for p in payments {
        let cells = [
            String::new(),
            p.created_at.clone(),
            "payments".to_string(),
            format!("payment.{}", p.status),
            p.device_id.clone(),
            p.lane.clone(),
            p.status.clone(),
            p.reason.clone().unwrap_or_default(),
            p.forwarded_at.clone().unwrap_or_default(),
            crate::journal::chain::canonical_json(&serde_json::json!({
                "payment_id": p.payment_id, "basket_id": p.basket_id, "amount_minor": p.amount_minor,
                "currency": p.currency, "sale": p.sale,
            })),
        ];
        let row: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
        out.push_str(&row.join(","));
        out.push_str("\r\n");
    }
    out
}

/// RFC 4180 quoting, and a leading quote on cells a spreadsheet would run as a formula.
fn csv_cell(v: &str) -> String {
    let v = if v.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{v}")
    } else {
        v.to_string()
    };
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::csv_cell;

    #[test]
    fn csv_cells_are_quoted_and_defused() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("=HYPERLINK(1)"), "'=HYPERLINK(1)");
    }
}
