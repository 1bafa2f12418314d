//! Principle 8, no card data: anything that looks like a card number, CVV or track data is
//! refused before any handler reads it, on every route (the route kit's request guard runs
//! [`find`] and [`holds_card_number`] over every body, query string and path segment).
//!
//! Two checks: a field named like card data (whatever its value), and a card number anywhere
//! in a value (string or number): 13–19 digits that pass the Luhn check *and* start with a
//! payment-card IIN at a length that range issues. The digits may be written in any Unicode
//! decimal digits (full-width `４１１１`, Arabic-Indic …), separated by any run of spaces,
//! tabs, dots, slashes or dashes (and their Unicode look-alikes, and invisible joiners), and
//! may sit inside a longer digit string (every 15–19-digit window of a longer run is tried).
//!
//! Luhn alone is a 1-in-10 test: about 10% of ordinary EAN-13 receipt barcodes pass it
//! (`2000000000107`), and so would numeric skus, basket ids and idempotency keys, so a kiosk
//! sale carrying one was refused on every retry and lost. PCI data-loss-prevention scanners
//! pair Luhn with the issuers' IIN ranges for that reason; we do the same, and a 13-digit
//! run that is a valid EAN-13 barcode is a barcode (German, British, Chinese … product codes
//! start with 4, 50, 56–69, where 13-digit Visa and Maestro numbers once were). In-store
//! barcodes (GS1 prefixes 20–29, as the simulator's) are outside every range.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
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

/// The first piece of card data in a parsed document, if any.
pub fn find(body: &Value) -> Option<Found> {
    let mut path = String::new();
    let mut found = None;
    // A `Value` never fails to deserialize; the error only stops the walk at the first find.
    let _ = Scan {
        path: &mut path,
        found: &mut found,
    }
    .deserialize(body);
    found
}

/// The first piece of card data in a JSON document's bytes, walked as it is parsed (no tree
/// is built, so a 32 MiB feed batch costs no more memory than its deepest path). `None` when
/// there is none or the bytes are not JSON: the caller then scans them as text.
pub fn find_in_json(bytes: &[u8]) -> Result<Option<Found>, ()> {
    let mut path = String::new();
    let mut found = None;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let walked = Scan {
        path: &mut path,
        found: &mut found,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    match (found, walked) {
        (Some(f), _) => Ok(Some(f)),
        (None, Err(_)) => Err(()),
        // serde_json reads integers past u64 as f64, losing digits: the number tokens
        // themselves are checked as text.
        (None, Ok(())) => {
            Ok(long_number_holds_card(bytes).then(|| Found::CardNumber("body".into())))
        }
    }
}

/// Walks a document with a path, stopping (by an error) at the first card data.
struct Scan<'a> {
    path: &'a mut String,
    found: &'a mut Option<Found>,
}

const STOP: &str = "card data found";

impl Scan<'_> {
    fn here(&self) -> String {
        if self.path.is_empty() {
            "body".into()
        } else {
            self.path.clone()
        }
    }

    fn value<E: serde::de::Error>(self, text: &str) -> Result<(), E> {
        if !is_uuid(text) && holds_card_number(text) {
            *self.found = Some(Found::CardNumber(self.here()));
            return Err(E::custom(STOP));
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Scan<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Scan<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<(), E> {
        self.value(&v.to_string())
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<(), E> {
        self.value(&v.to_string())
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        self.value(&v.to_string())
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        self.value(v)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0usize;
        loop {
            let len = self.path.len();
            self.path.push_str(&format!("[{i}]"));
            let more = seq.next_element_seed(Scan {
                path: self.path,
                found: self.found,
            })?;
            self.path.truncate(len);
            if more.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        use serde::de::Error;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            // A card number as a key: named by the object that holds it, never by itself.
            if !is_uuid(&key) && holds_card_number(&key) {
                *self.found = Some(Found::CardNumber(self.here()));
                return Err(A::Error::custom(STOP));
            }
            let len = self.path.len();
            if !self.path.is_empty() {
                self.path.push('.');
            }
            self.path.push_str(&key);
            if name_is_card_data(&key) {
                *self.found = Some(Found::FieldName(self.path.clone()));
                return Err(A::Error::custom(STOP));
            }
            map.next_value_seed(Scan {
                path: self.path,
                found: self.found,
            })?;
            self.path.truncate(len);
        }
        Ok(())
    }
}

/// True when a number token of the JSON text (outside strings) holds a card number: the
/// digits serde_json rounds away when it reads an integer past `u64` as a float.
fn long_number_holds_card(bytes: &[u8]) -> bool {
    let (mut in_string, mut escaped, mut start) = (false, false, None::<usize>);
    for (i, &b) in bytes.iter().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        let in_number = b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-');
        match (in_number, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                if i - s > 19 && holds_card_number(&String::from_utf8_lossy(&bytes[s..i])) {
                    return true;
                }
                start = None;
            }
            _ => {}
        }
        if b == b'"' {
            in_string = true;
        }
    }
    start.is_some_and(|s| {
        bytes.len() - s > 19 && holds_card_number(&String::from_utf8_lossy(&bytes[s..]))
    })
}

/// A hyphenated UUID: never a card number, though its digit groups can chance on one.
pub(super) fn is_uuid(s: &str) -> bool {
    s.len() == 36 && uuid::Uuid::try_parse(s).is_ok()
}

/// The first code point of each block of ten Unicode decimal digits (general category Nd),
/// zero to nine in order: from Python's `unicodedata` (Unicode 14), plus Kawi and Nag
/// Mundari (Unicode 15).
const DIGIT_ZEROS: [u32; 68] = [
    0x30, 0x660, 0x6F0, 0x7C0, 0x966, 0x9E6, 0xA66, 0xAE6, 0xB66, 0xBE6, 0xC66, 0xCE6, 0xD66,
    0xDE6, 0xE50, 0xED0, 0xF20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90,
    0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10,
    0x104A0, 0x10D30, 0x11066, 0x110F0, 0x11136, 0x111D0, 0x112F0, 0x11450, 0x114D0, 0x11650,
    0x116C0, 0x11730, 0x118E0, 0x11950, 0x11C50, 0x11D50, 0x11DA0, 0x11F50, 0x16A60, 0x16AC0,
    0x16B50, 0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6, 0x1E140, 0x1E2F0, 0x1E4F0, 0x1E950,
    0x1FBF0,
];

/// The value of a decimal digit in any script.
fn digit(c: char) -> Option<u8> {
    if c.is_ascii_digit() {
        return Some(c as u8 - b'0');
    }
    let c = c as u32;
    DIGIT_ZEROS
        .iter()
        .find(|&&z| (z..z + 10).contains(&c))
        .map(|z| (c - z) as u8)
}

/// What may stand between the digits of one number: any whitespace, dots, slashes, dashes
/// (ASCII and their Unicode look-alikes) and invisible characters.
fn is_separator(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '.' | '/' | '\\' | '-' | '_'
                | '\u{00AD}' // soft hyphen
                | '\u{00B7}' // middle dot
                | '\u{2010}'..='\u{2015}' // hyphens and dashes
                | '\u{2024}' // one dot leader
                | '\u{2044}' // fraction slash
                | '\u{200B}'..='\u{200D}' // zero-width space and joiners
                | '\u{2060}' // word joiner
                | '\u{2212}' // minus sign
                | '\u{2215}' // division slash
                | '\u{3002}' // ideographic full stop
                | '\u{FE58}' | '\u{FE63}' // small dashes
                | '\u{FEFF}' // zero-width no-break space
                | '\u{FF0D}' | '\u{FF0E}' | '\u{FF0F}' | '\u{FF3F}' // full-width - . / _
        )
}

/// True when `text` holds a card number: a run of decimal digits (any script) joined by any
/// separators that is a card number, or holds one of 15–19 digits inside it.
///
/// Hash-like words (32 or more hex characters with a letter among them: token digests, SHA
/// sums) are not read for digits: a SHA-256 in hex holds a 13-digit run often enough that
/// one device feed in two was refused.
pub fn holds_card_number(text: &str) -> bool {
    let masked;
    let text = if text.len() >= HEX_WORD {
        masked = mask_hex_words(text);
        masked.as_ref()
    } else {
        text
    };
    let mut run: Vec<u8> = Vec::new();
    for c in text.chars() {
        if let Some(d) = digit(c) {
            run.push(d);
        } else if !is_separator(c) {
            if run_has_card_number(&run) {
                return true;
            }
            run.clear();
        }
    }
    run_has_card_number(&run)
}

const HEX_WORD: usize = 32;

/// `text` with each hash-like word replaced by `#`.
fn mask_hex_words(text: &str) -> Cow<'_, str> {
    let b = text.as_bytes();
    let mut out: Option<String> = None;
    let (mut i, mut copied) = (0, 0);
    while i < b.len() {
        if !b[i].is_ascii_hexdigit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_hexdigit() {
            i += 1;
        }
        let word = &b[start..i];
        if word.len() >= HEX_WORD && word.iter().any(u8::is_ascii_alphabetic) {
            let o = out.get_or_insert_with(String::new);
            o.push_str(&text[copied..start]);
            o.push('#');
            copied = i;
        }
    }
    match out {
        None => Cow::Borrowed(text),
        Some(mut o) => {
            o.push_str(&text[copied..]);
            Cow::Owned(o)
        }
    }
}

/// A run (digit values 0–9) that is a card number of 13–19 digits, or holds one of 15–19
/// digits at any offset. Inside a longer run only cards of 15 digits and more are looked for:
/// 13- and 14-digit cards are all but gone, and with them every 16-digit order number or
/// basket id would hold a "card" one time in ten.
fn run_has_card_number(run: &[u8]) -> bool {
    let n = run.len();
    if n < 13 {
        return false;
    }
    if n <= 19 && is_card(run) {
        return true;
    }
    (15..=19.min(n - 1)).any(|len| (0..=n - len).any(|from| is_card(&run[from..from + len])))
}

/// Luhn-valid in a card range at a length it issues, and not a valid EAN-13 barcode: about
/// one barcode in ten from countries whose GS1 prefixes start with 4, 50 or 56–69 (Germany,
/// the UK, China …) passes Luhn in a Visa or Maestro range; 13-digit cards are all but gone.
fn is_card(d: &[u8]) -> bool {
    in_card_range(d) && luhn(d) && !(d.len() == 13 && ean13(d))
}

/// The EAN-13 check: weights 1 and 3 alternating from the left, the sum a multiple of ten.
fn ean13(d: &[u8]) -> bool {
    d.iter()
        .enumerate()
        .map(|(i, &x)| u32::from(x) * if i % 2 == 0 { 1 } else { 3 })
        .sum::<u32>()
        % 10
        == 0
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
                    .fold(0, |n, d| n * 10 + u32::from(*d)),
            )
    })
}

fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let d = u32::from(*d);
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

    fn values(s: &str) -> Vec<u8> {
        s.bytes().map(|b| b - b'0').collect()
    }

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
                luhn(&values(std::str::from_utf8(&d).unwrap()))
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
            // Any run of separators, any decimal digits, inside a longer digit string.
            "4111  1111 1111 1111",
            "4111.1111.1111.1111",
            "4111/1111/1111/1111",
            "4111\t1111\t1111\t1111",
            "4111 -/. 1111\t\t1111  1111",
            "４１１１１１１１１１１１１１１１",
            "４１１１ １１１１ １１１１ １１１１",
            "٤١١١١١١١١١١١١١١١",
            "4111\u{200B}1111\u{200B}1111\u{200B}1111",
            "4111–1111–1111–1111",
            "04111111111111111",
            "9994111111111111111999",
            "ref 12345 5555555555554444",
        ] {
            assert!(holds_card_number(pan), "{pan}");
        }
        for not in [
            "4111111111111112",
            "411111111111",
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
            assert!(luhn(&values(barcode)), "{barcode} passes Luhn");
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
            assert!(luhn(&values(pan)), "{pan} passes Luhn");
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
            ("50", 16),
            ("69", 16),
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
            prop_assume!(!(plain.len() == 13 && ean13(&values(&plain))));
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
