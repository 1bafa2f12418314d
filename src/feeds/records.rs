//! The records HQ sends down, one type per feed, with the checks that keep bad data out.
//!
//! Types list only what Standin reads; records may carry more (API.md), and the record is
//! stored exactly as sent (`doc`), so nothing HQ adds is lost. A failed check names the
//! field by its path inside the record (`lines[2].qty`); the batch layer prefixes the index.

use std::borrow::Cow;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::Value;

/// A check that failed: the field's path inside the record and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid {
        field: field.into(),
        message: message.into(),
    }
}

type Check = Result<(), Invalid>;

fn non_empty(field: &str, v: &str) -> Check {
    if v.trim().is_empty() {
        Err(invalid(field, "must not be empty"))
    } else {
        Ok(())
    }
}

fn last4(field: &str, v: &str) -> Check {
    if v.len() == 4 && v.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(invalid(field, "must be exactly four digits"))
    }
}

fn currency(field: &str, v: &str) -> Check {
    if v.len() == 3 && v.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(invalid(field, "must be an ISO 4217 code such as \"USD\""))
    }
}

fn non_negative(field: &str, v: i64) -> Check {
    if v < 0 {
        Err(invalid(field, "must not be negative"))
    } else {
        Ok(())
    }
}

/// The most any one amount on a receipt may be, in minor units (10 billion in a currency with
/// cents). Far above any real sale, and low enough that every sum and product the refund
/// rules take of a receipt's amounts fits in an `i64` with room to spare.
pub const MAX_RECEIPT_MINOR: i64 = 1_000_000_000_000;

/// The most units one receipt line may carry (the desk lists the refund of each unit).
pub const MAX_LINE_QTY: i64 = 100_000;

fn money_amount(field: &str, v: i64) -> Check {
    non_negative(field, v)?;
    if v > MAX_RECEIPT_MINOR {
        return Err(invalid(
            field,
            format!("must not be more than {MAX_RECEIPT_MINOR}"),
        ));
    }
    Ok(())
}

/// Parses an RFC 3339 time and normalises it to UTC with a `Z`, so stored times sort as text.
pub fn utc_time(field: &str, v: &str) -> Result<String, Invalid> {
    DateTime::parse_from_rfc3339(v)
        .map(|t| {
            t.with_timezone(&Utc)
                .to_rfc3339_opts(SecondsFormat::Secs, true)
        })
        .map_err(|e| invalid(field, format!("must be an RFC 3339 time: {e}")))
}

fn unique_lines<'a>(field: &str, lines: impl Iterator<Item = &'a u32>) -> Check {
    let mut seen = std::collections::HashSet::new();
    for (i, line) in lines.enumerate() {
        if !seen.insert(*line) {
            return Err(invalid(
                format!("{field}[{i}].line"),
                format!("line {line} appears twice"),
            ));
        }
    }
    Ok(())
}

// pickup_orders ---------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
pub struct PickupOrder {
    pub order_id: String,
    pub order_number: String,
    pub pickup_code: String,
    pub customer: Customer,
    pub due_at: String,
    pub status: OrderStatus,
    pub payment_state: PaymentState,
    pub lines: Vec<OrderLine>,
    pub total_minor: i64,
    pub currency: String,
    pub updated_at: String,
}

#[derive(Debug, Deserialize)]
pub struct Customer {
    pub name: String,
    #[serde(default)]
    pub phone_last4: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Placed,
    Ready,
    Cancelled,
    HandedOver,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentState {
    Paid,
    PayAtPickup,
}

#[derive(Debug, Deserialize)]
pub struct OrderLine {
    pub line: u32,
    pub sku: String,
    pub description: String,
    pub qty: i64,
    pub unit_price_minor: i64,
    #[serde(default)]
    pub requires_id_check: bool,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Placed => "placed",
            Self::Ready => "ready",
            Self::Cancelled => "cancelled",
            Self::HandedOver => "handed_over",
        }
    }
}

impl PaymentState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Paid => "paid",
            Self::PayAtPickup => "pay_at_pickup",
        }
    }
}

/// A pickup order checked and with its times normalised.
pub struct CheckedOrder {
    pub order: PickupOrder,
    pub due_at: String,
    pub updated_at: String,
}

impl PickupOrder {
    pub fn check(self) -> Result<CheckedOrder, Invalid> {
        non_empty("order_id", &self.order_id)?;
        non_empty("order_number", &self.order_number)?;
        non_empty("pickup_code", &self.pickup_code)?;
        non_empty("customer.name", &self.customer.name)?;
        if let Some(p) = &self.customer.phone_last4 {
            last4("customer.phone_last4", p)?;
        }
        let due_at = utc_time("due_at", &self.due_at)?;
        let updated_at = utc_time("updated_at", &self.updated_at)?;
        if self.lines.is_empty() {
            return Err(invalid("lines", "an order has at least one line"));
        }
        for (i, l) in self.lines.iter().enumerate() {
            non_empty(&format!("lines[{i}].sku"), &l.sku)?;
            if l.qty < 1 {
                return Err(invalid(format!("lines[{i}].qty"), "must be at least 1"));
            }
            non_negative(&format!("lines[{i}].unit_price_minor"), l.unit_price_minor)?;
        }
        unique_lines("lines", self.lines.iter().map(|l| &l.line))?;
        non_negative("total_minor", self.total_minor)?;
        currency("currency", &self.currency)?;
        Ok(CheckedOrder {
            order: self,
            due_at,
            updated_at,
        })
    }
}

// receipts --------------------------------------------------------------------------------
// Receipts are the bulk of every load (a supercenter has a million in 90 days), so their
// input types borrow from the request body instead of allocating a String per field;
// only what becomes a column is copied out.

#[derive(Debug, Deserialize)]
pub struct Receipt<'a> {
    #[serde(borrow)]
    pub receipt_id: Cow<'a, str>,
    #[serde(default)]
    pub order_number: Option<String>,
    #[serde(borrow)]
    pub sold_at: Cow<'a, str>,
    #[serde(borrow)]
    pub lane: Cow<'a, str>,
    #[serde(borrow)]
    pub currency: Cow<'a, str>,
    #[serde(default)]
    pub customer_phone_last4: Option<String>,
    #[serde(borrow)]
    pub tenders: Vec<Tender<'a>>,
    #[serde(borrow)]
    pub lines: Vec<ReceiptLine<'a>>,
    pub total_minor: i64,
}

#[derive(Debug, Deserialize)]
pub struct Tender<'a> {
    #[serde(borrow)]
    pub kind: Cow<'a, str>,
    #[serde(default)]
    pub brand: Option<String>,
    #[serde(default)]
    pub last4: Option<String>,
    #[serde(default)]
    pub exp_month: Option<u8>,
    #[serde(default)]
    pub exp_year: Option<u16>,
    pub amount_minor: i64,
}

#[derive(Debug, Deserialize)]
pub struct ReceiptLine<'a> {
    pub line: u32,
    #[serde(borrow)]
    pub sku: Cow<'a, str>,
    #[serde(borrow)]
    pub description: Cow<'a, str>,
    #[serde(borrow)]
    pub category: Cow<'a, str>,
    pub qty: i64,
    pub unit_price_minor: i64,
    pub discount_minor: i64,
    pub tax_minor: i64,
    pub returnable: bool,
    pub return_window_days: i64,
    pub returned_qty: i64,
}

/// A card tender's lookup key: lower-case brand and last four.
pub struct CardKey {
    pub brand: String,
    pub last4: String,
}

/// What a receipt contributes to the tables besides its JSON: the indexed columns.
pub struct CheckedReceipt {
    pub receipt_id: String,
    pub order_number: Option<String>,
    pub sold_at: String,
    pub lane: String,
    pub currency: String,
    pub customer_phone_last4: Option<String>,
    pub total_minor: i64,
    pub cards: Vec<CardKey>,
}

impl Receipt<'_> {
    pub fn check(self) -> Result<CheckedReceipt, Invalid> {
        non_empty("receipt_id", &self.receipt_id)?;
        let sold_at = utc_time("sold_at", &self.sold_at)?;
        currency("currency", &self.currency)?;
        if let Some(p) = &self.customer_phone_last4 {
            last4("customer_phone_last4", p)?;
        }
        if self.lines.is_empty() {
            return Err(invalid("lines", "a receipt has at least one line"));
        }
        for (i, l) in self.lines.iter().enumerate() {
            let f = |name: &str| format!("lines[{i}].{name}");
            if l.sku.trim().is_empty() {
                return Err(invalid(f("sku"), "must not be empty"));
            }
            if l.category.trim().is_empty() {
                return Err(invalid(f("category"), "must not be empty"));
            }
            if !(1..=MAX_LINE_QTY).contains(&l.qty) {
                return Err(invalid(f("qty"), format!("must be 1 to {MAX_LINE_QTY}")));
            }
            for (name, v) in [
                ("unit_price_minor", l.unit_price_minor),
                ("discount_minor", l.discount_minor),
                ("tax_minor", l.tax_minor),
            ] {
                money_amount(&f(name), v)?;
            }
            if l.qty * l.unit_price_minor > MAX_RECEIPT_MINOR {
                return Err(invalid(
                    f("unit_price_minor"),
                    format!("qty times unit_price_minor must not be more than {MAX_RECEIPT_MINOR}"),
                ));
            }
            non_negative(&f("return_window_days"), l.return_window_days)?;
            if l.returned_qty < 0 || l.returned_qty > l.qty {
                return Err(invalid(f("returned_qty"), "must be between 0 and qty"));
            }
        }
        unique_lines("lines", self.lines.iter().map(|l| &l.line))?;
        let mut cards = Vec::new();
        for (i, t) in self.tenders.into_iter().enumerate() {
            if t.kind.trim().is_empty() {
                return Err(invalid(format!("tenders[{i}].kind"), "must not be empty"));
            }
            money_amount(&format!("tenders[{i}].amount_minor"), t.amount_minor)?;
            if let Some(l4) = &t.last4 {
                last4(&format!("tenders[{i}].last4"), l4)?;
            }
            if let Some(m) = t.exp_month
                && !(1..=12).contains(&m)
            {
                return Err(invalid(
                    format!("tenders[{i}].exp_month"),
                    "must be 1 to 12",
                ));
            }
            if let (Some(mut brand), Some(last4)) = (t.brand, t.last4) {
                brand.make_ascii_lowercase();
                cards.push(CardKey { brand, last4 });
            }
        }
        money_amount("total_minor", self.total_minor)?;
        Ok(CheckedReceipt {
            receipt_id: self.receipt_id.into_owned(),
            order_number: self.order_number,
            sold_at,
            lane: self.lane.into_owned(),
            currency: self.currency.into_owned(),
            customer_phone_last4: self.customer_phone_last4,
            total_minor: self.total_minor,
            cards,
        })
    }
}

// staff -----------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
pub struct StaffMember {
    pub employee_id: String,
    pub name: String,
    pub role: Role,
    pub pin_verifier: String,
    pub active: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Associate,
    Lead,
    Manager,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Associate => "associate",
            Self::Lead => "lead",
            Self::Manager => "manager",
        }
    }
}

impl StaffMember {
    pub fn check(self) -> Result<Self, Invalid> {
        non_empty("employee_id", &self.employee_id)?;
        if !crate::access::pin::is_argon2id_phc(&self.pin_verifier) {
            return Err(invalid("pin_verifier", "must be an Argon2id PHC string"));
        }
        Ok(self)
    }
}

// devices ---------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
pub struct Device {
    pub device_id: String,
    pub kind: DeviceKind,
    pub lane: String,
    pub token_sha256: String,
    pub active: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    Kiosk,
}

impl Device {
    pub fn check(mut self) -> Result<Self, Invalid> {
        non_empty("device_id", &self.device_id)?;
        if self.token_sha256.len() != 64
            || !self.token_sha256.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(invalid("token_sha256", "must be 64 hex digits (SHA-256)"));
        }
        self.token_sha256.make_ascii_lowercase();
        Ok(self)
    }
}

// policy ----------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
pub struct PolicyEntry {
    pub key: String,
    pub value: Value,
}

/// What the known policy keys must hold; unknown keys are kept as sent (newer HQ, older store).
fn policy_value_check(key: &str, value: &Value) -> Check {
    let amount = |v: &Value| v.as_i64().is_some_and(|n| n >= 0);
    let ok = match key {
        "offline_tx_cap_minor"
        | "offline_exposure_cap_minor"
        | "card_velocity_amount_minor"
        | "refund_cap_associate_minor"
        | "offline_refund_budget_minor"
        | "card_velocity_count"
        | "offline_max_hours"
        | "forward_deadline_hours" => amount(value),
        "offline_tenders" => value
            .as_array()
            .is_some_and(|a| a.iter().all(Value::is_string)),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "value",
            format!("has the wrong type for policy `{key}`"),
        ))
    }
}

impl PolicyEntry {
    pub fn check(self) -> Result<Self, Invalid> {
        non_empty("key", &self.key)?;
        policy_value_check(&self.key, &self.value)?;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn times_are_normalised_to_utc() {
        assert_eq!(
            utc_time("t", "2026-11-25T10:42:00+02:00").unwrap(),
            "2026-11-25T08:42:00Z"
        );
        assert_eq!(
            utc_time("t", "2026-11-25T10:42:00.123Z").unwrap(),
            "2026-11-25T10:42:00Z"
        );
        assert_eq!(utc_time("t", "yesterday").unwrap_err().field, "t");
    }

    #[test]
    fn receipt_checks_name_the_field() {
        let mut r = json!({
            "receipt_id": "1", "sold_at": "2026-11-01T10:00:00Z", "lane": "r1", "currency": "USD",
            "tenders": [{"kind": "card", "brand": "VISA", "last4": "4242", "amount_minor": 100}],
            "lines": [{"line": 1, "sku": "a", "description": "d", "category": "c", "qty": 1,
                       "unit_price_minor": 100, "discount_minor": 0, "tax_minor": 0,
                       "returnable": true, "return_window_days": 30, "returned_qty": 0}],
            "total_minor": 100
        });
        let check = |r: &Value| {
            let text = r.to_string();
            serde_json::from_str::<Receipt>(&text)
                .unwrap()
                .check()
                .map(|c| c.cards.len())
        };
        assert_eq!(check(&r), Ok(1));
        r["lines"][0]["description"] = json!("Kettle \"XL\""); // escapes cannot be borrowed
        assert_eq!(check(&r), Ok(1));
        r["lines"][0]["returned_qty"] = json!(2);
        assert_eq!(check(&r).unwrap_err().field, "lines[0].returned_qty");
        r["lines"][0]["returned_qty"] = json!(0);
        r["tenders"][0]["last4"] = json!("42");
        assert_eq!(check(&r).unwrap_err().field, "tenders[0].last4");
        r["tenders"][0]["last4"] = json!("4242");
        // Amounts the refund arithmetic could overflow on.
        for (path, v, field) in [
            ("qty", json!(MAX_LINE_QTY + 1), "lines[0].qty"),
            (
                "unit_price_minor",
                json!(MAX_RECEIPT_MINOR + 1),
                "lines[0].unit_price_minor",
            ),
            ("tax_minor", json!(i64::MAX), "lines[0].tax_minor"),
            ("discount_minor", json!(i64::MAX), "lines[0].discount_minor"),
        ] {
            let mut bad = r.clone();
            bad["lines"][0][path] = v;
            assert_eq!(check(&bad).unwrap_err().field, field);
        }
        let mut bad = r.clone();
        bad["lines"][0]["qty"] = json!(MAX_LINE_QTY);
        bad["lines"][0]["unit_price_minor"] = json!(MAX_RECEIPT_MINOR);
        assert_eq!(check(&bad).unwrap_err().field, "lines[0].unit_price_minor");
        let mut bad = r.clone();
        bad["tenders"][0]["amount_minor"] = json!(MAX_RECEIPT_MINOR + 1);
        assert_eq!(check(&bad).unwrap_err().field, "tenders[0].amount_minor");
        assert_eq!(check(&r), Ok(1));
    }

    #[test]
    fn policy_types_are_checked_for_known_keys_only() {
        let p = |k: &str, v: Value| {
            PolicyEntry {
                key: k.into(),
                value: v,
            }
            .check()
        };
        assert!(p("offline_tx_cap_minor", json!(10000)).is_ok());
        assert_eq!(
            p("offline_tx_cap_minor", json!("lots"))
                .err()
                .unwrap()
                .field,
            "value"
        );
        assert!(p("offline_tenders", json!(["card_token"])).is_ok());
        assert!(p("some_future_key", json!({"x": 1})).is_ok());
    }
}
