use serde_json::json;

use super::*;
use crate::journal::Lane;

/// A store's chain of `n` entries, hashed the way the store hashes them.
fn chain(store: &str, n: i64) -> Vec<Entry> {
    let mut prev = GENESIS.to_string();
    (1..=n)
        .map(|seq| {
            let e = entry(
                store,
                seq,
                &prev,
                json!({ "n": seq, "order_id": format!("o{seq}") }),
            );
            prev = e.hash.clone();
            e
        })
        .collect()
}

fn entry(store: &str, seq: i64, prev: &str, body: Value) -> Entry {
    // Entries of the store's real chain carry "n"; any other is a stranger with its own id.
    let id = if body.get("n").is_some() {
        format!("{store}-e{seq}")
    } else {
        format!("{store}-x{seq}")
    };
    let body_c = canonical_json(&body);
    let hash = entry_hash(
        prev,
        &Hashed {
            seq,
            id: &id,
            lane: "pickups",
            kind: "pickup.handed_over",
            occurred_at: "2026-01-01T00:00:00Z",
            store_id: store,
            actor: Some("e1"),
            device: None,
            body: &body_c,
        },
    );
    Entry {
        seq,
        id,
        lane: Lane::Pickups,
        kind: "pickup.handed_over".into(),
        occurred_at: "2026-01-01T00:00:00Z".into(),
        store_id: store.into(),
        actor: Some("e1".into()),
        device: None,
        body,
        prev_hash: prev.into(),
        hash,
    }
}

fn incoming(entries: &[Entry]) -> Vec<Incoming> {
    entries
        .iter()
        .map(|e| Incoming::read(&serde_json::to_value(e).unwrap()).unwrap())
        .collect()
}

fn outcomes(d: &[Decision]) -> Vec<(Outcome, Option<&str>)> {
    d.iter().map(|d| (d.outcome, d.reason.as_deref())).collect()
}

#[test]
fn a_chain_is_accepted_then_answered_duplicate() {
    let c = chain("s1", 3);
    let mut known = Known::default();
    let first = decide("s1", &incoming(&c), &mut known);
    assert!(
        first
            .iter()
            .all(|d| d.outcome == Outcome::Accepted && d.new)
    );
    let again = decide("s1", &incoming(&c), &mut known);
    assert!(
        again
            .iter()
            .all(|d| d.outcome == Outcome::Duplicate && !d.new)
    );
}

#[test]
fn a_changed_body_is_a_hash_mismatch() {
    let mut c = chain("s1", 2);
    c[1].body = json!({ "n": 999 });
    let d = decide("s1", &incoming(&c), &mut Known::default());
    assert_eq!(
        outcomes(&d),
        vec![
            (Outcome::Accepted, None),
            (Outcome::Rejected, Some("hash_mismatch"))
        ]
    );
}

#[test]
fn a_second_entry_for_one_seq_is_a_fork() {
    let c = chain("s1", 2);
    // A self-consistent entry for seq 2 with other content (a forged or replayed store).
    let other = {
        let mut e = entry("s1", 2, &c[0].hash, json!({ "forged": true }));
        e.id = "s1-other".into();
        let body_c = canonical_json(&e.body);
        e.hash = entry_hash(
            &e.prev_hash,
            &Hashed {
                seq: 2,
                id: &e.id,
                lane: "pickups",
                kind: &e.kind,
                occurred_at: &e.occurred_at,
                store_id: "s1",
                actor: e.actor.as_deref(),
                device: None,
                body: &body_c,
            },
        );
        e
    };
    let mut known = Known::default();
    decide("s1", &incoming(&c), &mut known);
    let d = decide("s1", &incoming(&[other]), &mut known);
    assert_eq!(d[0].reason.as_deref(), Some("chain_fork"));
    assert!(d[0].fork);
}

#[test]
fn a_link_that_disagrees_with_its_landed_neighbour_is_a_fork() {
    let c = chain("s1", 3);
    let mut known = Known::default();
    decide("s1", &incoming(&[c[0].clone(), c[2].clone()]), &mut known);
    // seq 2 from another chain: its prev_hash is not seq 1's hash.
    let stranger = entry("s1", 2, GENESIS, json!({}));
    let d = decide("s1", &incoming(&[stranger]), &mut known);
    assert_eq!(d[0].reason.as_deref(), Some("chain_fork"));
    // The real seq 2 still lands.
    let d = decide("s1", &incoming(&[c[1].clone()]), &mut known);
    assert_eq!(d[0].outcome, Outcome::Accepted);
}

#[test]
fn another_stores_entry_and_a_cancelled_order() {
    let c = chain("s2", 1);
    let d = decide("s1", &incoming(&c), &mut Known::default());
    assert_eq!(d[0].reason.as_deref(), Some("store_mismatch"));
    let mut known = Known::default();
    known.cancelled_orders.insert("o1".into());
    let d = decide("s2", &incoming(&c), &mut known);
    assert_eq!(
        outcomes(&d),
        vec![(Outcome::Conflict, Some("order_cancelled"))]
    );
    // A conflict is answered the same when re-sent.
    let d = decide("s2", &incoming(&c), &mut known);
    assert_eq!(
        outcomes(&d),
        vec![(Outcome::Conflict, Some("order_cancelled"))]
    );
}

#[test]
fn an_entry_without_its_shape_is_rejected_not_a_panic() {
    let raw = json!({ "id": "x", "seq": "not a number" });
    let inc = vec![Incoming::read(&raw).unwrap()];
    let d = decide("s1", &inc, &mut Known::default());
    assert_eq!(d[0].reason.as_deref(), Some("invalid_entry"));
    assert!(Incoming::read(&json!({ "seq": 1 })).is_none());
}

#[test]
fn the_verified_prefix_stops_at_a_gap_and_at_a_broken_link() {
    let c = chain("s1", 4);
    let links = |es: &[&Entry]| {
        es.iter()
            .map(|e| (e.seq, e.prev_hash.clone(), e.hash.clone()))
            .collect::<Vec<_>>()
    };
    let start = (0, GENESIS.to_string());
    let (v, broken) = advance(start.clone(), links(&[&c[0], &c[1], &c[3]]));
    assert_eq!((v.0, broken), (2, None));
    assert_eq!(v.1, c[1].hash);
    let (v, broken) = advance(v, links(&[&c[2], &c[3]]));
    assert_eq!((v.0, broken), (4, None));
    let stranger = entry("s1", 1, "ff", json!({}));
    let (v, broken) = advance(start, links(&[&stranger]));
    assert_eq!((v.0, broken), (0, Some(1)));
}

#[test]
fn seqs_at_the_ends_of_the_range_are_refused_not_a_panic() {
    for seq in [i64::MIN, -1, 0, i64::MAX] {
        let mut e = chain("s1", 1).remove(0);
        e.seq = seq;
        let d = decide("s1", &incoming(&[e]), &mut Known::default());
        assert_eq!(d[0].reason.as_deref(), Some("invalid_entry"), "seq {seq}");
    }
}

/// What [`Incoming`] holds, comparably: the id, and the entry with its canonical body or
/// the value kept as sent.
type Shape = (String, Option<(Entry, String)>, Option<Value>);

fn shape(i: &Option<Incoming>) -> Option<Shape> {
    i.as_ref().map(|i| match i {
        Incoming::Entry {
            entry,
            body_canonical,
        } => (
            entry.id.clone(),
            Some(((**entry).clone(), body_canonical.clone())),
            None,
        ),
        Incoming::Unreadable { id, raw, .. } => (id.clone(), None, Some(raw.clone())),
    })
}

#[test]
fn reading_an_entrys_text_answers_as_reading_its_value() {
    let good = serde_json::to_string(&chain("s1", 1)[0]).unwrap();
    let texts = [
        good.clone(),
        // A key given twice: the Value keeps the last, so the text's reading must too.
        good.replacen("{", r#"{"seq":"first","#, 1),
        good.replacen("{", r#"{"id":"earlier","#, 1),
        // U+0000 in the body, in a key, in the id; and an escaped backslash before "u0000",
        // which is no U+0000 at all.
        good.replacen(r#""n":1"#, r#""n":"a\u0000b""#, 1),
        good.replacen(r#""n":1"#, r#""a\u0000":1"#, 1),
        good.replacen(r#""s1-e1""#, r#""s1\u0000e1""#, 1),
        good.replacen(r#""n":1"#, r#""n":"a\\u0000b""#, 1),
        // Not the shape of an entry; no id; an empty id; not an object.
        r#"{"id":"x","seq":"not a number"}"#.to_owned(),
        r#"{"id":"x","seq":1.5}"#.to_owned(),
        r#"{"seq":1}"#.to_owned(),
        good.replacen(r#""s1-e1""#, r#""""#, 1),
        r#"[1,2]"#.to_owned(),
        // An entry's fields as an array, which serde would read into an `Entry`.
        serde_json::to_string(&serde_json::json!([
            1,
            "s1-e1",
            "pickups",
            "pickup.handed_over",
            "2026-01-01T00:00:00Z",
            "s1",
            null,
            null,
            {},
            GENESIS,
            "ab"
        ]))
        .unwrap(),
        r#""text""#.to_owned(),
    ];
    assert!(texts[1..7].iter().chain(&texts[10..11]).all(|t| *t != good));
    for t in &texts {
        let raw: Box<serde_json::value::RawValue> = serde_json::from_str(t).unwrap();
        let from_text = Incoming::read_raw(&raw).unwrap();
        let from_value = Incoming::read(&serde_json::from_str::<Value>(t).unwrap());
        assert_eq!(shape(&from_text), shape(&from_value), "{t}");
    }
}

proptest::proptest! {
    /// Where the reads settle the verified prefix, it ends where a walk over every landed
    /// link would: landed before in any order, with gaps and a stranger's link, then any batch.
    #[test]
    fn the_prefix_the_reads_settle_is_the_one_the_whole_chain_gives(
        landed_before in proptest::collection::vec(proptest::bool::ANY, 12),
        stranger_at in proptest::option::of(1i64..=12),
        batch in proptest::collection::vec(1i64..=12, 0..8),
    ) {
        let c = chain("s1", 12);
        let link = |e: &Entry| Link { id: e.id.clone(), prev_hash: e.prev_hash.clone(), hash: e.hash.clone() };
        // What PostgreSQL holds: the chosen entries, one place taken by a stranger's link.
        let mut landed: HashMap<i64, Link> = c
            .iter()
            .filter(|e| landed_before[(e.seq - 1) as usize])
            .map(|e| (e.seq, link(e)))
            .collect();
        if let Some(s) = stranger_at {
            let x = entry("s1", s, "ff", json!({}));
            landed.insert(s, link(&x));
        }
        let sorted = |m: &HashMap<i64, Link>| {
            let mut v: Vec<_> = m.iter().map(|(s, l)| (*s, l.prev_hash.clone(), l.hash.clone())).collect();
            v.sort();
            v
        };
        let (verified, _) = advance((0, GENESIS.to_string()), sorted(&landed));
        // The batch's reads, as `journal::Keys` asks for them.
        let entries: Vec<Entry> = batch.iter().map(|s| c[(*s - 1) as usize].clone()).collect();
        let mut asked: Vec<i64> = entries.iter().flat_map(|e| [e.seq - 1, e.seq, e.seq + 1]).collect();
        asked.sort();
        asked.dedup();
        let mut known = Known::default();
        for s in &asked {
            if let Some(l) = landed.get(s) {
                known.chain.insert(*s, l.clone());
                known.answers.insert(
                    l.id.clone(),
                    Answer {
                        outcome: Outcome::Accepted,
                        reason: None,
                        hash: Some(l.hash.clone()),
                    },
                );
            }
        }
        let ahead = entries.last().is_some_and(|e| landed.contains_key(&(e.seq + 1)));
        let decisions = decide("s1", &incoming(&entries), &mut known);
        for (d, e) in decisions.iter().zip(&entries) {
            if d.new && d.outcome != Outcome::Rejected {
                landed.insert(e.seq, link(e));
            }
        }
        let whole = advance(verified.clone(), sorted(&landed).into_iter().filter(|l| l.0 > verified.0));
        if let Some(settled) = advance_known(verified.clone(), &known.chain, &asked) {
            proptest::prop_assert_eq!(settled, whole);
        }
        // A batch continuing the verified prefix in order, with nothing landed beyond it, is
        // always settled.
        let continues = !ahead
            && !entries.is_empty()
            && entries.iter().enumerate().all(|(i, e)| e.seq == verified.0 + 1 + i as i64);
        if continues {
            proptest::prop_assert!(advance_known(verified, &known.chain, &asked).is_some());
        }
    }
}

#[test]
fn half_a_surrogate_pair_is_kept_replaced_and_rejected_naming_where() {
    assert_eq!(
        replace_lone_surrogates(
            r#"{"a":"x\ud800y","b":"\ud83d\ude00","c":"\\ud800","d":"\udc00\u00e9"}"#
        ),
        r#"{"a":"x\ufffdy","b":"\ud83d\ude00","c":"\\ud800","d":"\ufffd\u00e9"}"#
    );
    // Truncated or odd input never panics.
    for t in ["\\", "\\u12", "\\ud800\\u", "é\\", "\\é"] {
        let _ = replace_lone_surrogates(t);
    }
    let text = r#"{"id":"e1","seq":1,"body":{"note":"a\udd00b"}}"#;
    let raw = serde_json::value::RawValue::from_string(text.to_owned()).unwrap();
    match Incoming::read_raw(&raw).unwrap() {
        Some(Incoming::Unreadable { id, raw, field }) => {
            assert_eq!((id.as_str(), field.as_str()), ("e1", "body.note"));
            assert_eq!(raw["body"]["note"], "a\u{FFFD}b");
        }
        _ => panic!("not read as unreadable"),
    }
}
