//! Seeded receipts: ninety days of a supercenter's sales, with lines, taxes and tenders.

use chrono::{DateTime, Duration, Utc};
use rand::Rng;
use rand::seq::IndexedRandom;
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use super::generate::{
    CLOSE_HOUR, Customer, OPEN_HOUR, Picker, alnum, at, basket_size, customers, digits, quantity,
    rng_for, ts,
};

/// Yields receipts one at a time, so a large feed is serialised part by part.
pub struct Receipts {
    rng: ChaCha8Rng,
    picker: Picker,
    people: Vec<Customer>,
    next_number: u64,
    now: DateTime<Utc>,
}

impl Receipts {
    pub fn new(seed: u64, n: usize, now: DateTime<Utc>) -> Receipts {
        let mut rng = rng_for(seed, 2);
        let people = customers(&mut rng, (n / 4).clamp(1, 5_000), now);
        let next_number = 210_000_000_000 + rng.random_range(0..1_000_000_000);
        Receipts {
            rng,
            picker: Picker::new(),
            people,
            next_number,
            now,
        }
    }

    pub fn next_receipt(&mut self) -> Value {
        let rng = &mut self.rng;
        self.next_number += rng.random_range(1..40);
        let receipt_id = ean13(self.next_number);
        let day = self.now - Duration::days(rng.random_range(0..90));
        let mut sold_at = at(day, rng.random_range(OPEN_HOUR * 60..CLOSE_HOUR * 60))
            + Duration::seconds(rng.random_range(0..60));
        if sold_at > self.now {
            sold_at -= Duration::days(1);
        }
        let lane = if rng.random_bool(0.6) {
            format!("register-{}", rng.random_range(1..=12))
        } else {
            format!("sco-{}", rng.random_range(1..=10))
        };
        let mut total = 0i64;
        let lines: Vec<Value> = (1..=basket_size(rng, 40))
            .map(|line| {
                let p = self.picker.pick(rng);
                let qty = quantity(rng, p);
                let amount = qty * p.unit_price_minor;
                let discount = if p.category != "gift_cards" && rng.random_bool(0.1) {
                    amount * rng.random_range(5..=30) / 100
                } else {
                    0
                };
                let tax = ((amount - discount) * p.tax_bp + 5_000) / 10_000;
                let returned = if p.returnable && rng.random_bool(0.04) {
                    rng.random_range(1..=qty)
                } else {
                    0
                };
                total += amount - discount + tax;
                json!({
                    "line": line,
                    "sku": p.sku,
                    "description": p.description,
                    "category": p.category,
                    "qty": qty,
                    "unit_price_minor": p.unit_price_minor,
                    "discount_minor": discount,
                    "tax_minor": tax,
                    "returnable": p.returnable,
                    "return_window_days": p.return_window_days,
                    "returned_qty": returned,
                })
            })
            .collect();
        let who = self.people.choose(rng).expect("customers");
        let known_customer = rng.random_bool(0.3);
        let card = if known_customer || rng.random_bool(0.5) {
            who.card.clone()
        } else {
            self.people.choose(rng).expect("customers").card.clone()
        };
        let tenders = tenders(rng, total, card);
        let mut receipt = json!({
            "receipt_id": receipt_id,
            "sold_at": ts(sold_at),
            "lane": lane,
            "currency": "USD",
            "tenders": tenders,
            "lines": lines,
            "total_minor": total,
        });
        if rng.random_bool(0.15) {
            receipt["order_number"] =
                json!(format!("W{}{}", rng.random_range(1..10), digits(rng, 8)));
        }
        if known_customer {
            receipt["customer_phone_last4"] = json!(who.phone_last4);
        }
        receipt
    }
}

/// How the customer paid `total`: one tender, sometimes two.
fn tenders(rng: &mut ChaCha8Rng, total: i64, card: Value) -> Vec<Value> {
    let card_tender = |rng: &mut ChaCha8Rng, amount: i64| {
        let mut t = card.clone();
        t["authorization"] = json!(format!("auth_{}", alnum(rng, 12)));
        t["amount_minor"] = json!(amount);
        t
    };
    let app_pay = |rng: &mut ChaCha8Rng, amount: i64| {
        json!({
            "kind": "app_pay",
            "token": format!("tok_app_{}", alnum(rng, 20)),
            "authorization": format!("auth_{}", alnum(rng, 12)),
            "amount_minor": amount,
        })
    };
    let gift_card = |rng: &mut ChaCha8Rng, amount: i64| {
        json!({
            "kind": "gift_card",
            "last4": digits(rng, 4),
            "token": format!("gc_{}", alnum(rng, 20)),
            "authorization": format!("auth_{}", alnum(rng, 12)),
            "amount_minor": amount,
        })
    };
    let cash = |amount: i64| json!({ "kind": "cash", "amount_minor": amount });
    match rng.random_range(0..100) {
        n if n >= 88 && total >= 2 => {
            let first = rng.random_range(1..total);
            let head = if rng.random_bool(0.5) {
                gift_card(rng, first)
            } else {
                cash(first)
            };
            vec![head, card_tender(rng, total - first)]
        }
        0..50 | 88.. => vec![card_tender(rng, total)],
        50..68 => vec![cash(total)],
        68..83 => vec![app_pay(rng, total)],
        _ => vec![gift_card(rng, total)],
    }
}

/// A 13-digit barcode: 12 digits of `n` plus the EAN-13 check digit.
fn ean13(n: u64) -> String {
    let body = format!("{:012}", n % 1_000_000_000_000);
    let sum: u32 = body
        .bytes()
        .enumerate()
        .map(|(i, b)| u32::from(b - b'0') * if i % 2 == 0 { 1 } else { 3 })
        .sum();
    format!("{body}{}", (10 - sum % 10) % 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn barcodes_carry_a_valid_check_digit() {
        assert_eq!(ean13(400_638_133_393), "4006381333931");
    }
}
