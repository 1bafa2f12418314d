//! The hash chain: each entry's hash covers the previous entry's hash and a canonical
//! encoding of the entry, so changing, removing or reordering any entry breaks every link
//! after it. `standin check` walks the chain and names the first broken link.

use rusqlite::{Connection, OptionalExtension};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The `prev_hash` of the very first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The fields an entry's hash covers (everything but the delivery state).
pub struct Hashed<'a> {
    pub seq: i64,
    pub id: &'a str,
    pub lane: &'a str,
    pub kind: &'a str,
    pub occurred_at: &'a str,
    pub store_id: &'a str,
    pub actor: Option<&'a str>,
    pub device: Option<&'a str>,
    /// Already canonical JSON ([`canonical_json`]), as stored.
    pub body: &'a str,
}

/// SHA-256 over `prev_hash`, a newline, the header fields as a JSON array, a newline, and the
/// canonical body. JSON encoding keeps field boundaries unambiguous whatever they contain.
pub fn entry_hash(prev_hash: &str, e: &Hashed<'_>) -> String {
    let header = serde_json::json!([
        e.seq,
        e.id,
        e.lane,
        e.kind,
        e.occurred_at,
        e.store_id,
        e.actor,
        e.device
    ]);
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    h.update(header.to_string().as_bytes());
    h.update(b"\n");
    h.update(e.body.as_bytes());
    hex::encode(h.finalize())
}

/// JSON with object keys sorted at every level and no insignificant whitespace, so the same
/// body always encodes (and hashes) the same, whatever order it was built in.
pub fn canonical_json(v: &Value) -> String {
    // Written straight into one buffer: every key and scalar through serde_json's own writer
    // (its escaping), none through a `String` of its own (issue 19: a payment's two encodings,
    // the entry and its seal, made a dozen allocations each).
    fn write(v: &Value, out: &mut Vec<u8>) {
        match v {
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                out.push(b'{');
                for (i, (k, item)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    scalar(k, out);
                    out.push(b':');
                    write(item, out);
                }
                out.push(b'}');
            }
            Value::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write(item, out);
                }
                out.push(b']');
            }
            other => scalar(other, out),
        }
    }
    /// A string or a scalar: serializing it into a `Vec` cannot fail.
    fn scalar<T: serde::Serialize + ?Sized>(v: &T, out: &mut Vec<u8>) {
        let _ = serde_json::to_writer(&mut *out, v);
    }
    let mut out = Vec::with_capacity(256);
    write(v, &mut out);
    // serde_json writes UTF-8, and so does every byte pushed above.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Walks the whole chain in `seq` order; returns the first broken link, described.
pub fn verify(conn: &Connection) -> rusqlite::Result<Option<String>> {
    let anchor: Option<(i64, String)> = conn
        .query_row(
            "SELECT seq, hash FROM journal_anchor WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (mut last_seq, mut expected_prev) = anchor.unwrap_or((0, GENESIS.to_string()));
    let mut stmt = conn.prepare(
        "SELECT seq, id, lane, kind, occurred_at, store_id, actor, device, body, prev_hash, hash
         FROM journal ORDER BY seq",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let seq: i64 = r.get(0)?;
        let (id, lane, kind, occurred_at, store_id): (String, String, String, String, String) =
            (r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?);
        let (actor, device): (Option<String>, Option<String>) = (r.get(6)?, r.get(7)?);
        let (body, prev_hash, hash): (String, String, String) = (r.get(8)?, r.get(9)?, r.get(10)?);
        if seq <= last_seq {
            return Ok(Some(format!(
                "journal seq {seq}: out of order after {last_seq}"
            )));
        }
        if prev_hash != expected_prev {
            return Ok(Some(format!(
                "journal seq {seq} (id {id}): prev_hash does not match the hash of the entry before it"
            )));
        }
        let recomputed = entry_hash(
            &prev_hash,
            &Hashed {
                seq,
                id: &id,
                lane: &lane,
                kind: &kind,
                occurred_at: &occurred_at,
                store_id: &store_id,
                actor: actor.as_deref(),
                device: device.as_deref(),
                body: &body,
            },
        );
        if recomputed != hash {
            return Ok(Some(format!(
                "journal seq {seq} (id {id}): contents do not match its hash"
            )));
        }
        last_seq = seq;
        expected_prev = hash;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let a = json!({"b": 1, "a": {"z": [1, {"y": 2, "x": "é\"\n"}], "c": null}});
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"c":null,"z":[1,{"x":"é\"\n","y":2}]},"b":1}"#
        );
    }

    /// The encodings API.md ("The chain") promises to other makes of store, and its
    /// worked example.
    #[test]
    fn the_contracts_encodings_and_example_hold() {
        let parse = |t: &str| canonical_json(&serde_json::from_str::<Value>(t).unwrap());
        assert_eq!(
            parse(r#"{"b": 1, "a": {"y": "é", "x": null}}"#),
            r#"{"a":{"x":null,"y":"é"},"b":1}"#
        );
        assert_eq!(parse("1.5e-07"), "1.5e-7");
        assert_eq!(parse("12345678901234567890123"), "1.2345678901234568e+22");
        assert_eq!(parse("18446744073709551615"), "18446744073709551615");
        assert_eq!(parse("-9223372036854775808"), "-9223372036854775808");
        assert_eq!(parse("-0"), "-0.0");
        assert_eq!(parse(r#""\u007f\u0085""#), "\"\u{7f}\u{85}\"");
        assert_eq!(parse(r#""a/\u001f\u00e9\b""#), "\"a/\\u001f\u{e9}\\b\"");
        let hash = entry_hash(
            GENESIS,
            &Hashed {
                seq: 1,
                id: "0193a0e0-0000-7000-8000-000000000001",
                lane: "pickups",
                kind: "pickup.handed_over",
                occurred_at: "2026-12-06T09:00:00Z",
                store_id: "store-0001",
                actor: Some("E100"),
                device: None,
                body: &parse(r#"{"order_id": "ORD-1", "lines": [{"line": 1, "qty": 2}]}"#),
            },
        );
        assert_eq!(hash, EXAMPLE_HASH);
    }

    /// API.md's worked example's hash.
    const EXAMPLE_HASH: &str = "3fe0b44e4aa2c6c7386200500951b7c264246fb78b4b82a17735b5ffe700ba40";

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            ".{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(".{0,6}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Canonical JSON parses back to the same value and is a fixed point.
        #[test]
        fn canonical_json_round_trips(v in arb_json()) {
            let c = canonical_json(&v);
            let back: Value = serde_json::from_str(&c).unwrap();
            prop_assert_eq!(&back, &v);
            prop_assert_eq!(canonical_json(&back), c);
        }
    }
}
