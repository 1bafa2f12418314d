//! Principle 8, no card data: a kiosk body that carries anything that looks like a card
//! number, CVV or track data is refused before it is parsed into anything, and never logged.
//!
//! Two checks: a field named like card data (whatever its value), and any run of 13–19
//! digits, possibly grouped by single spaces or dashes as printed on a card, anywhere in the
//! body (string or number), that is a card number: it passes the Luhn check *and* starts
//! with a payment-card IIN at a length that range issues.
//!
//! Luhn alone is a 1-in-10 test: about 10% of ordinary EAN-13 receipt barcodes pass it
//! (`2000000000107`), and so would numeric skus, basket ids and idempotency keys, so a kiosk
//! sale carrying one was refused on every retry and lost. PCI data-loss-prevention scanners
//! pair Luhn with the issuers' IIN ranges for that reason; we do the same. A 13-digit
//! barcode is still refused when it passes Luhn and starts with 4 (Visa) or 50, 56–69
//! (Maestro), since 13-digit cards exist there; in-store barcodes (GS1 prefixes 20–29,
//! as the simulator's) are outside every range.

use serde_json::Value;

/// Where card data was found: a field path, never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// A field whose name says card number, CVV/CVC or track data.
    FieldName(String),
    /// A value holding a card number (Luhn-valid, in a card IIN range at a length valid for
    /// it), at this field path.
    CardNumber(String),
}

/// Field names (lower case, without `_`, `-`, spaces) that only card data would use.
const NAMES: [&str; 17] = [
    "pan",
    "cardnumber",
    "cardno",
    "ccnumber",
    "ccnum",
    "primaryaccountnumber",
    "accountnumber",
    "cvv",
    "cvv2",
    "cvc",
    "cvc2",
    "cid",
    "securitycode",
    "cardsecuritycode",
    "track",
    "trackdata",
    "magstripe",
];

fn name_is_card_data(name: &str) -> bool {
    let n: String = name
        .chars()
        .filter(|c| !matches!(c, '_' | '-' | ' ' | '.'))
        .flat_map(char::to_lowercase)
        .collect();
    NAMES.contains(&n.as_str())
        || n.starts_with("track1")
        || n.starts_with("track2")
        || n.contains("cardnumber")
        || n.contains("cvv")
        || n.contains("cvc")
}

/// The first piece of card data in `body`, if any.
pub fn find(body: &Value) -> Option<Found> {
    walk(body, &mut String::new())
}

fn walk(v: &Value, path: &mut String) -> Option<Found> {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                // A card number as a key: named by the object that holds it, never by itself.
                if !is_uuid(k) && holds_card_number(k) {
                    return Some(Found::CardNumber(if path.is_empty() {
                        "body".into()
                    } else {
                        path.clone()
                    }));
                }
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                if name_is_card_data(k) {
                    return Some(Found::FieldName(path.clone()));
                }
                if let Some(f) = walk(child, path) {
                    return Some(f);
                }
                path.truncate(len);
            }
            None
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                if let Some(f) = walk(child, path) {
                    return Some(f);
                }
                path.truncate(len);
            }
            None
        }
        // A hyphenated UUID (payment ids, kiosks' idempotency keys) is never a card number,
        // though its digit groups can chance on 16 Luhn-valid digits.
        Value::String(s) if is_uuid(s) => None,
        Value::String(s) => holds_card_number(s).then(|| Found::CardNumber(path.clone())),
        Value::Number(n) => {
            holds_card_number(&n.to_string()).then(|| Found::CardNumber(path.clone()))
        }
        _ => None,
    }
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36 && uuid::Uuid::try_parse(s).is_ok()
}

/// True when `text` holds a card number of 13–19 digits: a run of digits, or groups of
/// digits joined by single spaces or dashes (any consecutive groups of the right length),
/// that passes Luhn and lies in a card IIN range at a length valid for that range.
pub fn holds_card_number(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        // One run: groups of digits separated by a single space or dash.
        let mut groups: Vec<&[u8]> = Vec::new();
        let mut start = i;
        loop {
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            groups.push(&b[start..i]);
            if i + 1 < b.len() && matches!(b[i], b' ' | b'-') && b[i + 1].is_ascii_digit() {
                i += 1;
                start = i;
            } else {
                break;
            }
        }
        if run_has_card_number(&groups) {
            return true;
        }
    }
    false
}

fn run_has_card_number(groups: &[&[u8]]) -> bool {
    for from in 0..groups.len() {
        let mut digits: Vec<u8> = Vec::with_capacity(19);
        for g in &groups[from..] {
            digits.extend_from_slice(g);
            if digits.len() > 19 {
                break;
            }
            if digits.len() >= 13 && in_card_range(&digits) && luhn(&digits) {
                return true;
            }
        }
    }
    false
}

/// A payment-card IIN range: the prefixes `low..=high` (all as many digits as `low`), and
/// the card lengths issued in it.
struct Iin {
    low: u32,
    high: u32,
    lengths: &'static [usize],
}

const fn iin(low: u32, high: u32, lengths: &'static [usize]) -> Iin {
    Iin { low, high, lengths }
}

const L14_19: &[usize] = &[14, 15, 16, 17, 18, 19];
const L16_19: &[usize] = &[16, 17, 18, 19];
/// Maestro issues 12 digits too; we scan only 13 and more.
const L12_19: &[usize] = &[12, 13, 14, 15, 16, 17, 18, 19];

/// The ranges a PCI DLP scanner looks for (the brands' published IIN tables). Maestro's
/// 56–69 covers the other ranges starting with 6; each brand is still listed so the table
/// can be checked against the brands' own.
const IINS: [Iin; 18] = [
    iin(4, 4, &[13, 16, 19]),      // Visa
    iin(51, 55, &[16]),            // Mastercard
    iin(2221, 2720, &[16]),        // Mastercard 2-series
    iin(34, 34, &[15]),            // American Express
    iin(37, 37, &[15]),            // American Express
    iin(6011, 6011, L16_19),       // Discover
    iin(644, 649, L16_19),         // Discover
    iin(65, 65, L16_19),           // Discover
    iin(622_126, 622_925, L16_19), // Discover (China UnionPay co-branded)
    iin(3528, 3589, L16_19),       // JCB
    iin(300, 305, L14_19),         // Diners Club
    iin(3095, 3095, L14_19),       // Diners Club
    iin(36, 36, L14_19),           // Diners Club
    iin(38, 39, L14_19),           // Diners Club
    iin(62, 62, L16_19),           // UnionPay
    iin(2200, 2204, L16_19),       // Mir
    iin(50, 50, L12_19),           // Maestro
    iin(56, 69, L12_19),           // Maestro
];

fn in_card_range(digits: &[u8]) -> bool {
    IINS.iter().any(|r| {
        let width = r.low.ilog10() as usize + 1;
        r.lengths.contains(&digits.len())
            && digits.len() > width
            && (r.low..=r.high).contains(
                &digits[..width]
                    .iter()
                    .fold(0, |n, d| n * 10 + u32::from(d - b'0')),
            )
    })
}

fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let d = u32::from(d - b'0');
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum % 10 == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// The brands' published test card numbers: Visa 16 and 13, Mastercard 5- and 2-series,
    /// Amex, Discover, JCB, Diners (14 digits), UnionPay.
    const TEST_CARDS: [&str; 9] = [
        "4111111111111111",
        "4222222222222",
        "5555555555554444",
        "2223003122003222",
        "378282246310005",
        "6011111111111117",
        "3530111333300000",
        "30569309025904",
        "6200000000000005",
    ];

    /// EAN-13 barcodes (valid EAN check digit) that also pass Luhn, as one in ten do:
    /// in-store (20–29, the simulator's 21…), UPC-A (0), and 1, 3, 7, 8, 9 (978: a book).
    const LUHN_VALID_BARCODES: [&str; 10] = [
        "2000000000107",
        "2100000001095",
        "2290000123450",
        "0100000001097",
        "0361000123527",
        "1234000123509",
        "3000000000106",
        "7312000123515",
        "8712000123499",
        "9780000123503",
    ];

    /// `prefix`, then `fill` digits (zeros when it runs out) up to `len - 1`, then the Luhn
    /// check digit.
    fn complete(prefix: &str, fill: &[u8], len: usize) -> String {
        let mut digits = prefix.as_bytes().to_vec();
        let more = len - 1 - digits.len();
        digits.extend(
            fill.iter()
                .chain(std::iter::repeat(&0))
                .take(more)
                .map(|d| b'0' + d),
        );
        let check = (b'0'..=b'9')
            .find(|c| {
                let mut d = digits.clone();
                d.push(*c);
                luhn(&d)
            })
            .unwrap();
        digits.push(check);
        String::from_utf8(digits).unwrap()
    }

    fn sale(receipt_id: Value) -> Value {
        json!({"sale_id": "sale-1", "receipt_id": receipt_id, "sold_at": "2026-11-25T05:00:00Z",
               "lines": [{"line": 1, "sku": "SKU-1", "description": "Kettle", "qty": 1,
                          "unit_price_minor": 1992, "discount_minor": 0, "tax_minor": 8}],
               "tenders": [{"payment_id": "0190f3c2-7d1e-7b7a-9c1d-2f0e8e1b0a11", "amount_minor": 2000}]})
    }

    fn payment(key: &str) -> Value {
        json!({"idempotency_key": key, "basket_id": "basket-1", "amount_minor": 2000, "currency": "USD",
               "tender": {"kind": "card_token", "token": "tok_abc", "brand": "visa", "last4": "4242",
                          "exp_month": 12, "exp_year": 2029}})
    }

    /// `number` in every field of a sale and of a payment that a kiosk fills with an id.
    fn bodies_holding(number: &str) -> Vec<(&'static str, Value)> {
        let mut sku = sale(json!("R-1"));
        sku["lines"][0]["sku"] = json!(number);
        let mut description = sale(json!("R-1"));
        description["lines"][0]["description"] = json!(number);
        let mut sale_id = sale(json!("R-1"));
        sale_id["sale_id"] = json!(number);
        let mut basket = payment("k1");
        basket["basket_id"] = json!(number);
        let mut token = payment("k1");
        token["tender"]["token"] = json!(number);
        vec![
            ("receipt_id", sale(json!(number))),
            ("lines[0].sku", sku),
            ("lines[0].description", description),
            ("sale_id", sale_id),
            ("idempotency_key", payment(number)),
            ("basket_id", basket),
            ("tender.token", token),
        ]
    }

    #[test]
    fn card_numbers_are_found_however_written() {
        for pan in [
            "4111111111111111",
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "378282246310005",
            "3782 822463 10005",
            "6011000990139424",
            "card 5555555555554444 thanks",
            "4222222222222",
            "12 4111 1111 1111 1111",
        ] {
            assert!(holds_card_number(pan), "{pan}");
        }
        for not in [
            "4111111111111112",
            "411111111111",
            "4111  1111 1111 1111",
            "2026-11-25T10:00:00Z",
            "0190f3c2-7d1e-7b7a-9c1d-2f0e8e1b0a11",
            "basket-000042",
            "2000000000107",
            "receipt 2000 0000 0010 7",
            "",
        ] {
            assert!(!holds_card_number(not), "{not}");
        }
    }

    #[test]
    fn bodies_are_refused_by_field_name_or_value() {
        let ok = json!({"idempotency_key": "k1", "amount_minor": 1299,
                        "tender": {"kind": "card_token", "token": "tok_abc", "brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2028}});
        assert_eq!(find(&ok), None);
        let mut bad = ok.clone();
        bad["tender"]["card_number"] = json!("x");
        assert_eq!(
            find(&bad),
            Some(Found::FieldName("tender.card_number".into()))
        );
        let mut bad = ok.clone();
        bad["tender"]["CVV"] = json!(123);
        assert_eq!(find(&bad), Some(Found::FieldName("tender.CVV".into())));
        let mut bad = ok.clone();
        bad["tender"]["track2_data"] = json!("x");
        assert!(matches!(find(&bad), Some(Found::FieldName(_))));
        let mut bad = ok.clone();
        bad["tender"]["track"] = json!("x");
        assert!(matches!(find(&bad), Some(Found::FieldName(_))));
        let mut bad = ok.clone();
        bad["tender"]["PAN"] = json!("x");
        assert!(matches!(find(&bad), Some(Found::FieldName(_))));
        let mut bad = ok.clone();
        bad["tender"]["token"] = json!("4111-1111-1111-1111");
        assert_eq!(find(&bad), Some(Found::CardNumber("tender.token".into())));
        let mut bad = ok.clone();
        bad["lines"] = json!([{"description": "x"}, {"description": "5555 5555 5555 4444"}]);
        assert_eq!(
            find(&bad),
            Some(Found::CardNumber("lines[1].description".into()))
        );
        // 41111111-1111-1111: a Visa number in a UUID's digit groups, by chance: not card data.
        let mut uuid = ok.clone();
        uuid["idempotency_key"] = json!("41111111-1111-1111-8123-456789012345");
        assert!(holds_card_number("41111111-1111-1111"));
        assert_eq!(find(&uuid), None);
        let mut bad = ok.clone();
        bad["lines"] = json!([{"sku": "a"}, {"4111 1111 1111 1111": 1}]);
        assert_eq!(find(&bad), Some(Found::CardNumber("lines[1]".into())));
        let mut bad = ok;
        bad["amount_minor"] = json!(4_111_111_111_111_111u64);
        assert_eq!(find(&bad), Some(Found::CardNumber("amount_minor".into())));
    }

    #[test]
    fn a_sale_whose_receipt_barcode_passes_luhn_is_not_card_data() {
        for barcode in LUHN_VALID_BARCODES {
            assert!(luhn(barcode.as_bytes()), "{barcode} passes Luhn");
            for (field, body) in bodies_holding(barcode) {
                assert_eq!(find(&body), None, "{barcode} in {field}");
            }
            let as_number = sale(json!(barcode.parse::<u64>().unwrap()));
            assert_eq!(find(&as_number), None, "{barcode} as a number");
        }
    }

    #[test]
    fn test_card_numbers_of_every_brand_are_refused_in_any_field() {
        for pan in TEST_CARDS {
            assert!(luhn(pan.as_bytes()), "{pan} passes Luhn");
            for (field, body) in bodies_holding(pan) {
                assert_eq!(find(&body), Some(Found::CardNumber(field.into())), "{pan}");
            }
            let as_number = sale(json!(pan.parse::<u64>().unwrap()));
            assert_eq!(
                find(&as_number),
                Some(Found::CardNumber("receipt_id".into())),
                "{pan} as a number"
            );
        }
        for grouped in ["4111 1111 1111 1111", "4111-1111-1111-1111"] {
            assert_eq!(
                find(&sale(json!(grouped))),
                Some(Found::CardNumber("receipt_id".into()))
            );
        }
    }

    #[test]
    fn luhn_valid_numbers_outside_a_brands_prefixes_or_lengths_are_not_card_numbers() {
        for (prefix, len) in [
            ("4", 14),
            ("4", 15),
            ("4", 17),
            ("4", 18),
            ("51", 15),
            ("55", 17),
            ("34", 16),
            ("37", 14),
            ("2220", 16),
            ("2721", 16),
            ("2221", 15),
            ("306", 14),
            ("3527", 16),
            ("3590", 16),
            ("3000", 13),
            ("7", 16),
            ("9", 19),
        ] {
            let n = complete(prefix, &[], len);
            assert!(!holds_card_number(&n), "{n}");
        }
        // The edges of each range are in it.
        for (prefix, len) in [
            ("2221", 16),
            ("2720", 16),
            ("300", 14),
            ("305", 19),
            ("3528", 16),
            ("3589", 19),
            ("36", 14),
            ("39", 14),
            ("4", 19),
            ("50", 13),
            ("69", 13),
        ] {
            let n = complete(prefix, &[], len);
            assert!(holds_card_number(&n), "{n}");
        }
    }

    proptest! {
        /// Any Luhn-valid number in any card range, at any length the range issues from 13
        /// up, is found: plain, after words, or grouped by fours.
        #[test]
        fn every_card_number_in_a_card_range_is_found(
            range in 0..IINS.len(),
            at in any::<prop::sample::Index>(),
            len in any::<prop::sample::Index>(),
            fill in prop::collection::vec(0u8..10, 19),
            dash in any::<bool>(),
            words in "[a-z ]{0,5}",
        ) {
            let r = &IINS[range];
            let lengths: Vec<usize> = r.lengths.iter().copied().filter(|&l| l >= 13).collect();
            let prefix = r.low + at.index((r.high - r.low + 1) as usize) as u32;
            let plain = complete(&prefix.to_string(), &fill, *len.get(&lengths));
            prop_assert!(holds_card_number(&format!("{words}{plain}")), "{plain}");
            let sep = if dash { "-" } else { " " };
            let grouped: Vec<&str> = plain.as_bytes().chunks(4).map(|c| std::str::from_utf8(c).unwrap()).collect();
            prop_assert!(holds_card_number(&grouped.join(sep)), "{plain}");
        }

        /// Independent of the table: every Luhn-valid 16-digit number starting with 4 (Visa)
        /// is refused in a kiosk body.
        #[test]
        fn every_luhn_valid_16_digit_number_starting_with_4_is_refused(fill in prop::collection::vec(0u8..10, 14)) {
            let pan = complete("4", &fill, 16);
            prop_assert_eq!(find(&sale(json!(pan))), Some(Found::CardNumber("receipt_id".into())));
        }

        /// A 13-digit number starting 0–3 or 7–9, as an EAN-13 barcode or a numeric sku or key
        /// is, is never card data, whether or not it passes Luhn.
        #[test]
        fn thirteen_digit_numbers_outside_card_ranges_are_accepted(
            first in prop::sample::select(vec!["0", "1", "2", "3", "7", "8", "9"]),
            fill in prop::collection::vec(0u8..10, 12),
        ) {
            let rest: String = fill.iter().map(|d| char::from(b'0' + d)).collect();
            for number in [format!("{first}{rest}"), complete(first, &fill, 13)] {
                for (field, body) in bodies_holding(&number) {
                    prop_assert_eq!(find(&body), None, "{} in {}", number, field);
                }
            }
        }
    }
}
