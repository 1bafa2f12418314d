//! Principle 8, no card data: a kiosk body that carries anything that looks like a card
//! number, CVV or track data is refused before it is parsed into anything, and never logged.
//!
//! Two checks: a field named like card data (whatever its value), and any run of 13–19
//! digits, possibly grouped by single spaces or dashes as printed on a card, that passes the
//! Luhn check, anywhere in the body (string or number).

use serde_json::Value;

/// Where card data was found: a field path, never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// A field whose name says card number, CVV/CVC or track data.
    FieldName(String),
    /// A value holding a Luhn-valid 13–19-digit number, at this field path.
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

/// True when `text` holds a Luhn-valid number of 13–19 digits: a run of digits, or groups of
/// digits joined by single spaces or dashes (any consecutive groups of the right length).
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
            if digits.len() >= 13 && luhn(&digits) {
                return true;
            }
        }
    }
    false
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
        // 0193-1234 5678 7123: 16 digits that pass Luhn, inside a UUID: not card data.
        let mut uuid = ok.clone();
        uuid["idempotency_key"] = json!("01931234-5678-7123-8123-456789012345");
        assert!(holds_card_number("01931234-5678-7123"));
        assert_eq!(find(&uuid), None);
        let mut bad = ok.clone();
        bad["lines"] = json!([{"sku": "a"}, {"4111 1111 1111 1111": 1}]);
        assert_eq!(find(&bad), Some(Found::CardNumber("lines[1]".into())));
        let mut bad = ok;
        bad["amount_minor"] = json!(4_111_111_111_111_111u64);
        assert_eq!(find(&bad), Some(Found::CardNumber("amount_minor".into())));
    }

    proptest! {
        /// Any Luhn-valid 13–19-digit number is found, plain or grouped by fours.
        #[test]
        fn every_luhn_valid_number_is_found(body in prop::collection::vec(0u8..10, 12..19), dash in any::<bool>(), prefix in "[a-z ]{0,5}") {
            let mut digits: Vec<u8> = body.iter().map(|d| b'0' + d).collect();
            let check = (0..10u8).find(|c| { let mut d = digits.clone(); d.push(b'0' + c); luhn(&d) }).unwrap();
            digits.push(b'0' + check);
            let plain = String::from_utf8(digits).unwrap();
            let prefixed = format!("{prefix}{plain}");
            prop_assert!(holds_card_number(&prefixed));
            let sep = if dash { "-" } else { " " };
            let grouped: Vec<String> = plain.as_bytes().chunks(4).map(|c| String::from_utf8(c.to_vec()).unwrap()).collect();
            prop_assert!(holds_card_number(&grouped.join(sep)));
        }
    }
}
