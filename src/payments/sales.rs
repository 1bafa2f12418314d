//! `POST /kiosk/v1/sales`: a kiosk's completed basket becomes a local receipt at once (in the
//! receipts replica, so the desk finds it by its barcode during the same outage) and a
//! journal entry for central, in one transaction. Idempotent by `sale_id` per kiosk.

use axum::Extension;
use axum::extract::State;
use rusqlite::{OptionalExtension, params};
use serde::Deserialize;
use serde_json::{Value, json};

use super::store;
use crate::access::Caller;
use crate::error::AppError;
use crate::http::{ApiJson, RawBody};
use crate::journal::{self, Lane, NewEntry};
use crate::state::AppState;

// Unknown fields are refused (422 `unknown_field`) as on every other route; the lines are a
// receipt's lines and, like the receipts feed's, may carry more.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SaleRequest {
    sale_id: String,
    receipt_id: String,
    sold_at: String,
    lines: Vec<Value>,
    tenders: Vec<SaleTender>,
    #[serde(default)]
    customer_phone_last4: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SaleTender {
    payment_id: String,
    amount_minor: i64,
}

/// Payment states that paid for goods.
const PAID: [&str; 3] = ["approved", "approved_offline", "captured"];

pub(super) async fn record(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawBody(bytes): RawBody,
) -> Result<ApiJson<Value>, AppError> {
    let (device_id, lane) = super::kiosk(&caller)?;
    let (value, req): (Value, SaleRequest) = super::parse_body(&bytes)?;
    let hash = super::body_hash(&value);
    super::short_field("sale_id", &req.sale_id)?;
    super::short_field("receipt_id", &req.receipt_id)?;
    if req.tenders.is_empty() {
        return Err(AppError::invalid(
            "invalid_field",
            "tenders",
            "a sale is paid by at least one payment",
        ));
    }
    // A tender is one payment for exactly its amount, and no payment is outside this range
    // (`POST /kiosk/v1/payments`); the OpenAPI document states the same range.
    if let Some(i) = req
        .tenders
        .iter()
        .position(|t| !(1..=super::MAX_PAYMENT_MINOR).contains(&t.amount_minor))
    {
        return Err(AppError::invalid(
            "invalid_field",
            format!("tenders[{i}].amount_minor"),
            format!("from 1 to {}", super::MAX_PAYMENT_MINOR),
        ));
    }
    let sold_at = crate::feeds::records::utc_time("sold_at", &req.sold_at)
        .map_err(|e| AppError::invalid("invalid_field", e.field, e.message))?;
    let (store_id, now) = (state.config.store_id.clone(), state.clock.now_rfc3339());
    let answer = state
        .store
        .write(move |c| {
            // A retry: the first answer; the same sale_id with another body: 409.
            let prior: Option<(String, String)> = c
                .query_row(
                    "SELECT body_sha256, answer FROM kiosk_sales WHERE device_id = ?1 AND sale_id = ?2",
                    params![device_id, req.sale_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            if let Some((h, a)) = prior {
                if h != hash {
                    return Err(AppError::conflict("sale_id_reused", "this sale_id was already recorded with a different body")
                        .with("field", "sale_id"));
                }
                return Ok(serde_json::from_str(&a).unwrap_or(Value::Null));
            }
            // Each tender is a payment of this kiosk that paid, not used by another sale,
            // for exactly its amount.
            let mut tenders = Vec::new();
            let mut currency: Option<String> = None;
            for (i, t) in req.tenders.iter().enumerate() {
                let field = format!("tenders[{i}].payment_id");
                let p = store::by_id(c, &t.payment_id)?
                    .filter(|p| p.device_id == device_id)
                    .ok_or_else(|| AppError::invalid("unknown_payment", field.clone(), "no such payment from this kiosk"))?;
                if !PAID.contains(&p.status.as_str()) {
                    return Err(AppError::invalid("payment_not_approved", field, format!("this payment is {}", p.status))
                        .with("status", p.status.clone()));
                }
                if p.sale_id.as_deref().is_some_and(|s| s != req.sale_id) || req.tenders[..i].iter().any(|o| o.payment_id == t.payment_id) {
                    return Err(AppError::conflict("payment_already_used", "this payment already paid for another sale")
                        .with("field", field));
                }
                if t.amount_minor != p.amount_minor {
                    return Err(AppError::invalid(
                        "amounts_do_not_add_up",
                        format!("tenders[{i}].amount_minor"),
                        format!("the payment was for {}", p.amount_minor),
                    ));
                }
                if currency.as_ref().is_some_and(|cur| *cur != p.currency) {
                    return Err(AppError::invalid("amounts_do_not_add_up", format!("tenders[{i}]"), "one currency per sale"));
                }
                currency = Some(p.currency.clone());
                let tender: Value = serde_json::from_str(&p.tender).unwrap_or_default();
                let mut rt = json!({"kind": p.tender_kind, "amount_minor": p.amount_minor, "payment_id": p.payment_id,
                                    "authorization": p.auth_code.clone().unwrap_or_else(|| p.payment_id.clone()),
                                    "payment_status": p.status});
                for f in ["brand", "last4", "exp_month", "exp_year", "token"] {
                    if let Some(v) = tender.get(f) {
                        rt[f] = v.clone();
                    }
                }
                tenders.push(rt);
            }
            let tendered: i64 = req.tenders.iter().map(|t| t.amount_minor).sum();
            let total = line_total(&req.lines)?;
            if total != tendered {
                return Err(AppError::invalid(
                    "amounts_do_not_add_up",
                    "tenders",
                    format!("the lines come to {total} but the tenders to {tendered}"),
                ));
            }
            let doc = json!({
                "receipt_id": req.receipt_id, "order_number": null, "sold_at": sold_at, "lane": lane,
                "currency": currency, "customer_phone_last4": req.customer_phone_last4,
                "tenders": tenders, "lines": req.lines, "total_minor": total,
                "source": "kiosk", "sale_id": req.sale_id, "device_id": device_id,
            });
            let raw = doc.to_string();
            // The receipts feed's own checks: a local receipt is a receipt like any other.
            let checked = serde_json::from_str::<crate::feeds::records::Receipt>(&raw)
                .map_err(|e| AppError::invalid("invalid_field", "lines", format!("not a receipt's lines: {}", strip(&e))))?
                .check()
                .map_err(|e| AppError::invalid("invalid_field", e.field, e.message))?;
            if !crate::feeds::apply::write_local_receipt(c, raw, checked, &now)? {
                return Err(AppError::conflict("receipt_exists", "a receipt with this receipt_id already exists")
                    .with("field", "receipt_id"));
            }
            for t in &req.tenders {
                c.execute("UPDATE payments SET sale_id = ?2 WHERE payment_id = ?1", params![t.payment_id, req.sale_id])?;
            }
            let entry = journal::append(
                c,
                &store_id,
                &now,
                NewEntry {
                    lane: Lane::Payments,
                    kind: "sale.recorded".into(),
                    actor: Some(device_id.clone()),
                    device: Some(device_id.clone()),
                    body: json!({"sale_id": req.sale_id, "receipt": doc}),
                },
            )?;
            let answer = json!({"sale_id": req.sale_id, "receipt_id": req.receipt_id, "total_minor": total,
                                "recorded_at": now, "journal_seq": entry.seq});
            c.execute(
                "INSERT INTO kiosk_sales (device_id, sale_id, receipt_id, body_sha256, answer, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![device_id, req.sale_id, req.receipt_id, hash, answer.to_string(), now],
            )?;
            Ok(answer)
        })
        .await?;
    state.journal_appended.notify_one();
    Ok(ApiJson(answer))
}

/// serde's message without its position (which is about our own document).
fn strip(e: &serde_json::Error) -> String {
    let m = e.to_string();
    m.split(" at line ").next().unwrap_or_default().to_string()
}

/// What the lines come to: quantity × unit price − discount + tax, per line.
fn line_total(lines: &[Value]) -> Result<i64, AppError> {
    if lines.is_empty() {
        return Err(AppError::invalid(
            "invalid_field",
            "lines",
            "a sale has at least one line",
        ));
    }
    let mut total: i64 = 0;
    for (i, l) in lines.iter().enumerate() {
        let n = |f: &str| {
            l.get(f)
                .and_then(Value::as_i64)
                .filter(|v| *v >= 0)
                .ok_or_else(|| {
                    AppError::invalid(
                        "invalid_field",
                        format!("lines[{i}].{f}"),
                        "a whole number, not negative",
                    )
                })
        };
        let (qty, price, discount, tax) = (
            n("qty")?,
            n("unit_price_minor")?,
            n("discount_minor")?,
            n("tax_minor")?,
        );
        let line = qty
            .checked_mul(price)
            .and_then(|v| v.checked_sub(discount))
            .and_then(|v| v.checked_add(tax))
            .filter(|v| *v >= 0)
            .ok_or_else(|| {
                AppError::invalid(
                    "invalid_field",
                    format!("lines[{i}]"),
                    "the line's amounts do not add up",
                )
            })?;
        total = total
            .checked_add(line)
            .ok_or_else(|| AppError::invalid("invalid_field", "lines", "too large"))?;
    }
    Ok(total)
}
