//! Records that try the desk at its limits, added on request (`POST /admin/central/samples`)
//! as delta batches, the way HQ's changes arrive: a receipt with many lines, an order with
//! many items due now, and a crowd of orders due in the next day.

use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{Duration, Utc};
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use super::admin::{AdminCtx, append_delta};
use super::catalog::{FIRST_NAMES, LAST_NAMES, PICKUP_CODE_ALPHABET, Product};
use super::generate::{Picker, digits, ts};
use super::state::{ApiError, invalid, lock, parse_body};

/// The most of each a request may ask for.
const MAX_LINES: u64 = 200;
const MAX_DUE: u64 = 5_000;

fn count(body: &Value, field: &str, max: u64) -> Result<u64, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(0),
        Some(v) => v
            .as_u64()
            .filter(|n| *n <= max)
            .ok_or_else(|| invalid(field, format!("a whole number, at most {max}"))),
    }
}

/// A 12-digit UPC-A for a product: its 9-digit SKU padded, and the check digit.
pub(crate) fn upc(sku: &str) -> String {
    let body = format!("0{sku:0>9}0");
    let sum: u32 = body
        .bytes()
        .enumerate()
        .map(|(i, b)| u32::from(b - b'0') * if i % 2 == 0 { 3 } else { 1 })
        .sum();
    format!("{body}{}", (10 - sum % 10) % 10)
}

/// Distinct products, none needing an ID check (so the order is a simple hand-over), cycling
/// when asked for more than the catalog has.
fn products(picker: &Picker, n: usize, returnable: bool) -> Vec<&Product> {
    let fit: Vec<&Product> = picker
        .products
        .iter()
        .filter(|p| !p.requires_id_check && (!returnable || p.returnable))
        .collect();
    (0..n).map(|i| fit[(i * 7) % fit.len()]).collect()
}

fn code(rng: &mut impl Rng) -> String {
    (0..6)
        .map(|_| char::from(PICKUP_CODE_ALPHABET[rng.random_range(0..PICKUP_CODE_ALPHABET.len())]))
        .collect()
}

fn order(rng: &mut impl Rng, lines: Vec<Value>, due: chrono::DateTime<Utc>, status: &str) -> Value {
    let total: i64 = lines
        .iter()
        .map(|l| l["qty"].as_i64().unwrap_or(0) * l["unit_price_minor"].as_i64().unwrap_or(0))
        .sum();
    let name = format!(
        "{} {}",
        FIRST_NAMES[rng.random_range(0..FIRST_NAMES.len())],
        LAST_NAMES[rng.random_range(0..LAST_NAMES.len())]
    );
    json!({
        "order_id": uuid::Builder::from_random_bytes(rng.random()).into_uuid().to_string(),
        "order_number": format!("W{}{}", rng.random_range(1..10), digits(rng, 8)),
        // Unique among central's orders: checked by the caller.
        "pickup_code": code(rng),
        "customer": { "name": name, "phone_last4": digits(rng, 4) },
        "due_at": ts(due),
        "status": status,
        "payment_state": "paid",
        "lines": lines,
        "total_minor": total,
        "currency": "USD",
        "updated_at": ts(Utc::now()),
    })
}

/// `{"receipt_lines": n?, "order_lines": n?, "due_orders": n?}` → what was added.
pub(crate) async fn add_samples(
    AxState(ctx): AxState<AdminCtx>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body = parse_body(&body)?;
    let receipt_lines = count(&body, "receipt_lines", MAX_LINES)? as usize;
    let order_lines = count(&body, "order_lines", MAX_LINES)? as usize;
    let due_orders = count(&body, "due_orders", MAX_DUE)? as usize;
    let picker = Picker::new();
    let now = Utc::now();
    let mut st = lock(&ctx.state);
    let mut rng = rand_chacha::ChaCha8Rng::from_rng(&mut st.rng);
    let mut out = json!({});
    let mut taken_codes: std::collections::HashSet<String> = st
        .orders
        .values()
        .filter_map(|o| o["pickup_code"].as_str().map(str::to_owned))
        .collect();
    let mut fresh_order = |rng: &mut rand_chacha::ChaCha8Rng, lines: Vec<Value>, due, status| loop {
        let o = order(rng, lines.clone(), due, status);
        if taken_codes.insert(o["pickup_code"].as_str().unwrap_or_default().to_owned()) {
            return o;
        }
    };
    if receipt_lines > 0 {
        let mut total = 0;
        let lines: Vec<Value> = products(&picker, receipt_lines, true)
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                // Every fifth line bought three times: scanned again, it counts up.
                let qty = if i % 5 == 0 { 3 } else { 1 };
                let tax = (qty * p.unit_price_minor * p.tax_bp + 5_000) / 10_000;
                total += qty * p.unit_price_minor + tax;
                json!({
                    "line": i + 1, "sku": p.sku, "upc": upc(&p.sku), "description": p.description,
                    "category": p.category, "qty": qty, "unit_price_minor": p.unit_price_minor,
                    "discount_minor": 0, "tax_minor": tax, "returnable": true,
                    "return_window_days": p.return_window_days, "returned_qty": 0,
                })
            })
            .collect();
        let receipt_id = format!("29{}", digits(&mut rng, 11));
        let receipt = json!({
            "receipt_id": receipt_id,
            "sold_at": ts(now - Duration::days(2)),
            "lane": "register-4",
            "currency": "USD",
            "tenders": [{
                "kind": "card", "brand": "visa", "last4": digits(&mut rng, 4), "exp_month": 12,
                "exp_year": 2031, "token": format!("tok_sample_{}", digits(&mut rng, 12)),
                "authorization": format!("auth_{}", digits(&mut rng, 12)), "amount_minor": total,
            }],
            "lines": lines,
            "total_minor": total,
        });
        append_delta(&mut st, "receipts", vec![receipt], Vec::new());
        out["receipt"] = json!({ "receipt_id": receipt_id, "lines": receipt_lines });
    }
    let mut orders = Vec::new();
    if order_lines > 0 {
        let lines: Vec<Value> = products(&picker, order_lines, false)
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                json!({
                    "line": i + 1, "sku": p.sku, "description": p.description, "qty": 1,
                    "unit_price_minor": p.unit_price_minor, "requires_id_check": false,
                })
            })
            .collect();
        let o = fresh_order(&mut rng, lines, now + Duration::minutes(20), "ready");
        out["order"] = json!({
            "order_id": o["order_id"], "order_number": o["order_number"],
            "pickup_code": o["pickup_code"], "items": order_lines,
        });
        orders.push(o);
    }
    for i in 0..due_orders {
        let p = &picker.products[(i * 13) % picker.products.len()];
        let line = json!({
            "line": 1, "sku": p.sku, "description": p.description, "qty": 1,
            "unit_price_minor": p.unit_price_minor, "requires_id_check": p.requires_id_check,
        });
        // Spread over the next 23 hours, the earliest within minutes.
        let due = now + Duration::minutes(5 + (i as i64 * 23 * 60) / due_orders.max(1) as i64);
        orders.push(fresh_order(
            &mut rng,
            vec![line],
            due,
            if i % 3 == 0 { "placed" } else { "ready" },
        ));
    }
    if due_orders > 0 {
        out["due_orders"] = json!(due_orders);
    }
    if !orders.is_empty() {
        append_delta(&mut st, "pickup_orders", orders, Vec::new());
    }
    drop(st);
    Ok((StatusCode::CREATED, axum::Json(out)).into_response())
}
