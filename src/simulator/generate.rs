//! Seeded demo data: the records central serves as each feed's first snapshot.
//!
//! Built with `serde_json::json!` straight from API.md's "Feed records" table: the simulator is
//! an independent implementation of the contract and does not share Standin's types. Each feed
//! draws from its own ChaCha8 stream of the seed, so changing the number of receipts does not
//! change the staff PINs or kiosk tokens.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Datelike, Duration, NaiveTime, SecondsFormat, Utc};
use rand::distr::Distribution;
use rand::distr::weighted::WeightedIndex;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use super::catalog::{
    CARD_BRANDS, FIRST_NAMES, LAST_NAMES, PICKUP_CODE_ALPHABET, Product, catalog,
};

/// The feeds central serves, and each one's record key.
pub(crate) const FEEDS: [(&str, &str); 5] = [
    ("pickup_orders", "order_id"),
    ("receipts", "receipt_id"),
    ("staff", "employee_id"),
    ("devices", "device_id"),
    ("policy", "key"),
];

pub(crate) fn feed_key(feed: &str) -> Option<&'static str> {
    FEEDS.iter().find(|(f, _)| *f == feed).map(|(_, k)| *k)
}

/// Store hours (UTC, for simplicity): 08:00–21:00.
pub(crate) const OPEN_HOUR: u32 = 8;
pub(crate) const CLOSE_HOUR: u32 = 21;

pub(crate) fn rng_for(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

pub(crate) fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub(crate) fn at(day: DateTime<Utc>, minute_of_day: u32) -> DateTime<Utc> {
    let midnight = day.date_naive().and_time(NaiveTime::MIN).and_utc();
    midnight + Duration::minutes(i64::from(minute_of_day))
}

/// Lower-case letters and digits, as processor tokens look.
pub(crate) fn alnum(rng: &mut impl Rng, n: usize) -> String {
    const A: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..n)
        .map(|_| char::from(A[rng.random_range(0..A.len())]))
        .collect()
}

pub(crate) fn digits(rng: &mut impl Rng, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect()
}

/// A basket size in 1..=max, skewed to small baskets.
pub(crate) fn basket_size(rng: &mut impl Rng, max: usize) -> usize {
    let x: f64 = rng.random();
    ((x.powi(4) * max as f64) as usize + 1).min(max)
}

pub(crate) fn quantity(rng: &mut impl Rng, p: &Product) -> i64 {
    if p.unit_price_minor >= 5000 {
        return 1;
    }
    match rng.random_range(0..100) {
        0..75 => 1,
        75..90 => 2,
        _ => rng.random_range(3..=6),
    }
}

/// Picks products with department weights: a supercenter sells far more milk than TVs.
pub(crate) struct Picker {
    pub products: Vec<Product>,
    index: WeightedIndex<u32>,
}

impl Picker {
    pub fn new() -> Picker {
        let products = catalog();
        let weight = |c: &str| match c {
            "grocery" => 30,
            "produce" => 14,
            "dairy" => 10,
            "frozen" | "household" => 8,
            "meat" => 6,
            "bakery" | "health_beauty" => 5,
            "apparel" => 4,
            "pharmacy" | "pets" | "alcohol" => 3,
            "electronics" | "toys" | "home" => 2,
            _ => 1,
        };
        let mut per_cat: HashMap<&str, u32> = HashMap::new();
        for p in &products {
            *per_cat.entry(p.category).or_default() += 1;
        }
        let weights = products
            .iter()
            .map(|p| weight(p.category) * 10_000 / per_cat[p.category]);
        let index = WeightedIndex::new(weights).expect("catalog weights are positive");
        Picker { products, index }
    }

    pub fn pick(&self, rng: &mut impl Rng) -> &Product {
        &self.products[self.index.sample(rng)]
    }
}

/// A regular customer: name, phone and the card they usually pay with.
pub(crate) struct Customer {
    pub name: String,
    pub phone_last4: String,
    pub card: Value,
}

pub(crate) fn customers(rng: &mut impl Rng, n: usize, now: DateTime<Utc>) -> Vec<Customer> {
    let brands: Vec<(&str, u32)> = CARD_BRANDS.to_vec();
    (0..n)
        .map(|_| {
            let brand = brands.choose_weighted(rng, |b| b.1).expect("brands").0;
            Customer {
                name: format!(
                    "{} {}",
                    FIRST_NAMES.choose(rng).expect("names"),
                    LAST_NAMES.choose(rng).expect("names")
                ),
                phone_last4: digits(rng, 4),
                card: json!({
                    "kind": "card",
                    "brand": brand,
                    "last4": digits(rng, 4),
                    "exp_month": rng.random_range(1..=12),
                    "exp_year": now.year() + rng.random_range(1..=5),
                    "token": format!("tok_{}", alnum(rng, 24)),
                }),
            }
        })
        .collect()
}

/// Pickup orders: due over the next three days in 30-minute slots, some within hours.
pub(crate) fn pickup_orders(seed: u64, n: usize, now: DateTime<Utc>) -> Vec<Value> {
    let mut rng = rng_for(seed, 3);
    let picker = Picker::new();
    let people = customers(&mut rng, n.clamp(1, 2_000), now);
    let mut slots = Vec::new();
    for day in 0..=3 {
        for slot in OPEN_HOUR * 2..CLOSE_HOUR * 2 {
            let t = at(now + Duration::days(day), slot * 30);
            if t > now {
                slots.push(t);
            }
        }
    }
    // The next half-hour boundary: "due soon" orders are due from there over four hours.
    let next_slot = at(now, (now.hour_min() / 30 + 1) * 30);
    let due_soon = n.div_ceil(7);
    let mut numbers = HashSet::new();
    let mut codes = HashSet::new();
    (0..n)
        .map(|i| {
            let order_id = uuid::Builder::from_random_bytes(rng.random()).into_uuid();
            let order_number = unique(&mut numbers, || {
                format!("W{}{}", rng.random_range(1..10), digits(&mut rng, 8))
            });
            let pickup_code = unique(&mut codes, || {
                (0..6)
                    .map(|_| char::from(*PICKUP_CODE_ALPHABET.choose(&mut rng).expect("abc")))
                    .collect()
            });
            let soon = i < due_soon;
            let due_at = if soon {
                next_slot + Duration::minutes(30 * rng.random_range(0..8))
            } else {
                *slots.choose(&mut rng).expect("slots in three days")
            };
            let status = match (soon, rng.random_range(0..100)) {
                (false, 0..5) => "cancelled",
                (true, 0..30) | (false, 5..65) => "placed",
                _ => "ready",
            };
            let payment_state = if rng.random_bool(0.08) {
                "pay_at_pickup"
            } else {
                "paid"
            };
            let who = people.choose(&mut rng).expect("customers");
            let lines: Vec<Value> = (1..=basket_size(&mut rng, 30))
                .map(|line| {
                    let p = picker.pick(&mut rng);
                    json!({
                        "line": line,
                        "sku": p.sku,
                        "description": p.description,
                        "qty": quantity(&mut rng, p).min(3),
                        "unit_price_minor": p.unit_price_minor,
                        "requires_id_check": p.requires_id_check,
                    })
                })
                .collect();
            let total: i64 = lines
                .iter()
                .map(|l| {
                    l["qty"].as_i64().unwrap_or(0) * l["unit_price_minor"].as_i64().unwrap_or(0)
                })
                .sum();
            let updated = now - Duration::minutes(rng.random_range(5..72 * 60));
            json!({
                "order_id": order_id.to_string(),
                "order_number": order_number,
                "pickup_code": pickup_code,
                "customer": { "name": who.name, "phone_last4": who.phone_last4 },
                "due_at": ts(due_at),
                "status": status,
                "payment_state": payment_state,
                "lines": lines,
                "total_minor": total,
                "currency": "USD",
                "updated_at": ts(updated),
            })
        })
        .collect()
}

fn unique(seen: &mut HashSet<String>, mut make: impl FnMut() -> String) -> String {
    loop {
        let s = make();
        if seen.insert(s.clone()) {
            return s;
        }
    }
}

trait HourMin {
    fn hour_min(&self) -> u32;
}

impl HourMin for DateTime<Utc> {
    fn hour_min(&self) -> u32 {
        use chrono::Timelike;
        self.hour() * 60 + self.minute()
    }
}

/// A staff member before their PIN verifier is computed (Argon2id is slow: done in parallel).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct StaffSeed {
    pub employee_id: String,
    pub name: String,
    pub role: &'static str,
    pub pin: String,
    pub salt: [u8; 16],
    pub active: bool,
}

/// 24 staff: 3 managers, 4 leads, 17 associates, the last of whom has left (inactive).
pub(crate) fn staff(seed: u64) -> Vec<StaffSeed> {
    let mut rng = rng_for(seed, 4);
    let mut ids = HashSet::new();
    let roles = [("manager", 3), ("lead", 4), ("associate", 17)];
    let all: Vec<&'static str> = roles
        .iter()
        .flat_map(|(r, n)| std::iter::repeat_n(*r, *n))
        .collect();
    let count = all.len();
    all.into_iter()
        .enumerate()
        .map(|(i, role)| StaffSeed {
            employee_id: unique(&mut ids, || {
                format!("E{}", rng.random_range(10_000..100_000))
            }),
            name: format!(
                "{} {}",
                FIRST_NAMES.choose(&mut rng).expect("names"),
                LAST_NAMES.choose(&mut rng).expect("names")
            ),
            role,
            pin: format!("{:06}", rng.random_range(0..1_000_000)),
            salt: rng.random(),
            active: i + 1 != count,
        })
        .collect()
}

/// One staff record, given its verifier.
pub(crate) fn staff_record(s: &StaffSeed, pin_verifier: &str) -> Value {
    json!({
        "employee_id": s.employee_id,
        "name": s.name,
        "role": s.role,
        "pin_verifier": pin_verifier,
        "active": s.active,
    })
}

/// Ten self-checkout kiosks: (device_id, lane, token, record).
pub(crate) fn devices(seed: u64) -> Vec<(String, String, String, Value)> {
    let mut rng = rng_for(seed, 5);
    (1..=10)
        .map(|i| {
            let device_id = format!("sco-{i:02}");
            let lane = format!("sco-{i}");
            let token = hex::encode(rng.random::<[u8; 32]>());
            let record = json!({
                "device_id": device_id,
                "kind": "kiosk",
                "lane": lane,
                "token_sha256": crate::access::token::sha256_hex(&token),
                "active": true,
            });
            (device_id, lane, token, record)
        })
        .collect()
}

/// HQ's offline risk limits, one record per key.
pub(crate) fn policy() -> Vec<Value> {
    [
        ("offline_tx_cap_minor", json!(10_000)),
        ("offline_exposure_cap_minor", json!(500_000)),
        ("card_velocity_count", json!(3)),
        ("card_velocity_amount_minor", json!(20_000)),
        ("offline_max_hours", json!(24)),
        ("offline_tenders", json!(["card_token", "p2pe", "app_pay"])),
        ("forward_deadline_hours", json!(72)),
        ("refund_cap_associate_minor", json!(5_000)),
        ("offline_refund_budget_minor", json!(100_000)),
        ("no_receipt_returns_offline", json!("store_credit_only")),
    ]
    .into_iter()
    .map(|(key, value)| json!({ "key": key, "value": value }))
    .collect()
}

/// A feed's initial data as one snapshot in parts of at most `part_size` records, serialised.
/// `count` is how many records `records` yields (known up front, so `parts` is too).
pub(crate) fn snapshot(
    feed: &str,
    seed: u64,
    count: usize,
    part_size: usize,
    mut records: impl Iterator<Item = Value>,
) -> Vec<String> {
    let part_size = part_size.max(1);
    let parts = count.div_ceil(part_size).max(1);
    (1..=parts)
        .map(|part| {
            let upserts: Vec<Value> = records.by_ref().take(part_size).collect();
            json!({
                "batch": part,
                "kind": "snapshot",
                "snapshot": { "id": format!("{feed}-{seed}-1"), "part": part, "parts": parts },
                "upserts": upserts,
                "deletes": [],
            })
            .to_string()
        })
        .collect()
}
