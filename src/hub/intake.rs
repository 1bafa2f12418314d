//! The intake's rules, as plain functions over plain data: what HQ answers for each entry
//! of a batch, given what it already holds for the store. No I/O here ([`super::journal`]
//! reads what these need and writes what they decide, in one transaction).

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use crate::journal::Entry;
use crate::journal::chain::{GENESIS, Hashed, canonical_json, entry_hash};
use crate::journal::delivery::Outcome;

/// One entry of a request, as read.
pub enum Incoming {
    /// Well formed; `body_canonical` is what its hash covers.
    Entry {
        entry: Box<Entry>,
        body_canonical: String,
    },
    /// Has an id but not the shape of an entry: rejected (`invalid_entry`), kept as sent;
    /// `field` names what is wrong (`occurred_at`, `body.note`, `seq`).
    Unreadable {
        id: String,
        raw: Value,
        field: String,
    },
}

/// `occurred_at` must be an RFC 3339 time (PostgreSQL would take `yesterday` as one).
fn readable_time(t: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(t).is_ok()
}

/// Where a serde error says a body went wrong, as a field path: a missing field is named by
/// its own name, not by the object holding it (`sent_at`, not `.`).
pub fn error_field(e: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let path = e.path().to_string();
    let message = e.inner().to_string();
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|m| m.split('`').next());
    match (path.as_str(), missing) {
        (".", Some(name)) => name.to_owned(),
        (p, Some(name)) => format!("{p}.{name}"),
        (p, None) => p.to_owned(),
    }
}

impl Incoming {
    pub fn read(raw: &Value) -> Option<Incoming> {
        let id = raw
            .get("id")?
            .as_str()
            .filter(|s| !s.is_empty() && !s.contains('\0'))?
            .to_owned();
        if let Some(field) = nul_at(raw) {
            // PostgreSQL cannot store it (text nor jsonb): kept with U+FFFD in its place,
            // rejected, so the store sets it aside instead of resending it forever.
            return Some(Incoming::Unreadable {
                id,
                raw: without_nul(raw),
                field,
            });
        }
        let unreadable = |field: String| Incoming::Unreadable {
            id: id.clone(),
            raw: raw.clone(),
            field,
        };
        Some(match serde_path_to_error::deserialize::<_, Entry>(raw) {
            Ok(entry) if !readable_time(&entry.occurred_at) => unreadable("occurred_at".into()),
            Ok(entry) => Incoming::Entry {
                body_canonical: canonical_json(&entry.body),
                entry: Box::new(entry),
            },
            Err(e) => unreadable(error_field(&e)),
        })
    }

    /// [`Incoming::read`] from the entry's own JSON text, without building a `Value` for a
    /// well-formed entry: it is deserialised straight into an [`Entry`]. Anything else
    /// (a U+0000 escape anywhere in the text, a shape `Entry` refuses, a key given twice, not
    /// an object)
    /// takes `read`'s path over the parsed `Value`, so the answers are the same.
    pub fn read_raw(
        raw: &serde_json::value::RawValue,
    ) -> Result<Option<Incoming>, serde_json::Error> {
        let text = raw.get();
        // Only an object: serde would also read an entry from an array of its fields.
        if text.trim_start().starts_with('{')
            && !text.contains("\\u0000")
            && let Ok(entry) = serde_json::from_str::<Entry>(text)
            && readable_time(&entry.occurred_at)
        {
            if entry.id.is_empty() {
                return Ok(None);
            }
            return Ok(Some(Incoming::Entry {
                body_canonical: canonical_json(&entry.body),
                entry: Box::new(entry),
            }));
        }
        match serde_json::from_str::<Value>(text) {
            Ok(v) => Ok(Incoming::read(&v)),
            Err(e) => Incoming::with_lone_surrogates(text)
                .or_else(|| Incoming::beyond_reading(text))
                .ok_or(e)
                .map(Some),
        }
    }

    /// An entry JSON by its grammar that serde cannot hold as a value: a number past `f64`
    /// (`1e400`), nesting deeper than serde's 128 levels. Its id is read with the rest
    /// skipped (serde skips without building or recursing); it is rejected `invalid_entry`,
    /// naming where reading stopped, and kept as its text (one JSON string), rather than
    /// refusing the whole batch, which the store would send again forever. `None` when it
    /// has no id to answer under.
    fn beyond_reading(text: &str) -> Option<Incoming> {
        let IdOnly { id } = serde_json::from_str(text).ok()?;
        if id.is_empty() || id.contains('\0') {
            return None;
        }
        let mut de = serde_json::Deserializer::from_str(text);
        let field = match serde_path_to_error::deserialize::<_, Value>(&mut de) {
            Err(e) => error_field(&e),
            Ok(_) => String::new(),
        };
        // A path 128 levels deep is no help to the person reading it.
        let mut field = if field.is_empty() || field == "." {
            "entry".to_owned()
        } else {
            field
        };
        if field.len() > 64 {
            let cut = (0..=64)
                .rev()
                .find(|&i| field.is_char_boundary(i))
                .unwrap_or(0);
            field.truncate(cut);
            field.push('…');
        }
        Some(Incoming::Unreadable {
            id,
            raw: Value::String(text.to_owned()),
            field,
        })
    }

    /// An entry whose text escapes half a surrogate pair (`"\ud800"`): JSON by its grammar,
    /// but no Unicode text, so neither serde nor PostgreSQL can hold it. Like U+0000, it is
    /// kept with U+FFFD in place of each lone half and rejected (`invalid_entry`, naming where),
    /// rather than refusing the whole batch, which the store would send again forever.
    /// `None` when the text is still not JSON after that, or has no id.
    fn with_lone_surrogates(text: &str) -> Option<Incoming> {
        let raw: Value = serde_json::from_str(&replace_lone_surrogates(text)).ok()?;
        let id = raw
            .get("id")?
            .as_str()
            .filter(|s| !s.is_empty() && !s.contains('\0'))?
            .to_owned();
        // The id itself not text: named first, whatever else is ([`id_not_text`]).
        let field = if serde_json::from_str::<IdOnly>(text).is_err() {
            "id".into()
        } else {
            char_at(&raw, '\u{FFFD}').unwrap_or_else(|| "id".into())
        };
        Some(Incoming::Unreadable {
            id,
            raw: without_nul(&raw),
            field,
        })
    }

    /// What is wrong with an unreadable entry.
    pub fn field(&self) -> Option<String> {
        match self {
            Incoming::Entry { .. } => None,
            Incoming::Unreadable { field, .. } => Some(field.clone()),
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Incoming::Entry { entry, .. } => &entry.id,
            Incoming::Unreadable { id, .. } => id,
        }
    }
}

/// An entry's id alone, the rest skipped unread (serde skips without building, recursing or
/// checking escapes).
#[derive(serde::Deserialize)]
struct IdOnly {
    id: String,
}

/// An entry's id as its text has it, the rest skipped.
#[derive(serde::Deserialize)]
pub struct IdAsSent<'a> {
    #[serde(borrow)]
    pub id: &'a serde_json::value::RawValue,
}

/// An unreadable entry whose id is not text (half a surrogate pair escaped in it): it is
/// answered under its id as sent, and never kept (the id it would be kept under, with
/// U+FFFD, is not the store's, and two such ids would be one).
pub fn id_not_text(incoming: &Incoming) -> bool {
    matches!(incoming, Incoming::Unreadable { id, field, .. } if field == "id" && id.contains('\u{FFFD}'))
}

/// Where in `v` a string or key holds U+0000 (which PostgreSQL's text and `jsonb` cannot
/// store), as a path (`version`, `journal.lanes.payments`, `[2].note`). Nothing is
/// allocated unless one is found: it runs on every entry of every batch.
pub fn nul_at(v: &Value) -> Option<String> {
    char_at(v, '\0')
}

/// Where in `v` a string or key holds `c`, as [`nul_at`] names it.
fn char_at(v: &Value, c: char) -> Option<String> {
    /// The path's steps, innermost first.
    fn steps(v: &Value, c: char) -> Option<Vec<String>> {
        match v {
            Value::String(t) => t.contains(c).then(Vec::new),
            Value::Array(items) => items.iter().enumerate().find_map(|(i, x)| {
                let mut p = steps(x, c)?;
                p.push(format!("[{i}]"));
                Some(p)
            }),
            Value::Object(map) => map.iter().find_map(|(k, x)| {
                let mut p = if k.contains(c) {
                    Vec::new()
                } else {
                    steps(x, c)?
                };
                p.push(format!(".{k}"));
                Some(p)
            }),
            _ => None,
        }
    }
    let mut p = steps(v, c)?;
    p.reverse();
    Some(p.concat().trim_start_matches('.').to_owned())
}

/// JSON text with every `\uXXXX` escape of half a surrogate pair that has no other half
/// replaced by `\ufffd`; everything else as it was.
fn replace_lone_surrogates(text: &str) -> String {
    let hex = |at: usize| -> Option<u16> {
        let h = text.get(at..at + 4)?;
        u16::from_str_radix(h, 16).ok()
    };
    let escape_at = |at: usize| -> Option<u16> {
        (text.get(at..at + 2)? == "\\u")
            .then(|| hex(at + 2))
            .flatten()
    };
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while let Some(off) = text[i..].find('\\') {
        let at = i + off;
        out.push_str(&text[i..at]);
        let Some(unit) = escape_at(at) else {
            // Another escape (`\\`, `\"`, `\n` …): copied whole, so an escaped backslash
            // is never read as the start of a `\u`.
            match text.get(at..at + 2) {
                Some(two) => {
                    out.push_str(two);
                    i = at + 2;
                    continue;
                }
                None => {
                    out.push_str(&text[at..]);
                    i = text.len();
                    break;
                }
            }
        };
        match unit {
            0xD800..=0xDBFF
                if escape_at(at + 6).is_some_and(|u| (0xDC00..=0xDFFF).contains(&u)) =>
            {
                out.push_str(&text[at..at + 12]);
                i = at + 12;
            }
            0xD800..=0xDFFF => {
                out.push_str("\\ufffd");
                i = at + 6;
            }
            _ => {
                out.push_str(&text[at..at + 6]);
                i = at + 6;
            }
        }
    }
    out.push_str(&text[i..]);
    out
}

/// `v` with every U+0000 in its strings and keys replaced by U+FFFD.
fn without_nul(v: &Value) -> Value {
    let clean = |t: &str| t.replace('\0', "\u{FFFD}");
    match v {
        Value::String(t) => Value::String(clean(t)),
        Value::Array(items) => Value::Array(items.iter().map(without_nul).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, x)| (clean(k), without_nul(x)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// A place in the chain already taken by a landed entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub id: String,
    pub prev_hash: String,
    pub hash: String,
}

/// What HQ holds that the rules need: answers already given by id, landed entries at the
/// seqs around the batch's, and the store's orders HQ has cancelled.
#[derive(Debug, Default)]
pub struct Known {
    pub answers: HashMap<String, Answer>,
    pub chain: HashMap<i64, Link>,
    pub cancelled_orders: HashSet<String>,
}

/// The first answer given for an id, with the hash of the entry that got it when that entry
/// landed in the chain (accepted or conflict): a re-send must carry the same hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub outcome: Outcome,
    pub reason: Option<String>,
    pub hash: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub id: String,
    pub outcome: Outcome,
    pub reason: Option<String>,
    /// A new row to write (false for a re-sent entry).
    pub new: bool,
    /// Two different entries claim one place in the chain: flag the store.
    pub fork: bool,
    /// For an entry rejected `invalid_entry`: what is wrong with it.
    pub field: Option<String>,
    /// The same entry sent again (answered as first; an arrival of it), as against a new
    /// one or something else under a landed id (a fork, a tampered copy).
    pub again: bool,
}

/// Decides every entry in order; `known` is updated as entries land, so a batch that
/// carries the same id twice, or two entries for one seq, is judged like two batches.
pub fn decide(store: &str, incoming: &[Incoming], known: &mut Known) -> Vec<Decision> {
    incoming
        .iter()
        .map(|i| decide_one(store, i, known))
        .collect()
}

/// What a batch adds to a store's set-aside entries: rows written, and rejected entries
/// answered but not written because the store already has `cap` kept.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SetAside {
    pub kept: i64,
    pub not_kept: i64,
}

/// Holds a store's kept set-aside rows to `cap`, given the `kept` it has: a new conflict is
/// always written (it is in the chain: HQ acts on it), a new rejected entry only while there
/// is room; past it the decision stays (the store is answered the same) but nothing is
/// written. Its re-send then finds no row and is judged again, to the same answer: a
/// rejection follows from the entry and what has landed, and what has landed stays.
pub fn keep_within(decisions: &mut [Decision], kept: i64, cap: i64) -> SetAside {
    let mut added = SetAside::default();
    for d in decisions.iter_mut().filter(|d| d.new) {
        match d.outcome {
            Outcome::Conflict => added.kept += 1,
            Outcome::Rejected if kept.saturating_add(added.kept) < cap => added.kept += 1,
            Outcome::Rejected => {
                d.new = false;
                added.not_kept += 1;
            }
            _ => {}
        }
    }
    added
}

/// The longest entry id the hub keeps (bytes). An id is a UUID (36); one past PostgreSQL's
/// index row limit (about 2.7 kB) would fail the whole batch's INSERT, every time it is sent.
pub const MAX_ID_BYTES: usize = 256;

fn decide_one(store: &str, incoming: &Incoming, known: &mut Known) -> Decision {
    let id = incoming.id().to_owned();
    if id.len() > MAX_ID_BYTES || id_not_text(incoming) {
        // Nothing can be kept under it: answered, not written, so the store sets it aside
        // and its other entries land.
        return Decision {
            id,
            outcome: Outcome::Rejected,
            reason: Some("invalid_entry".into()),
            new: false,
            fork: false,
            field: Some("id".into()),
            again: false,
        };
    }
    if let Some(first) = known.answers.get(&id) {
        let answer = |outcome, reason: &str, fork| Decision {
            id: id.clone(),
            outcome,
            reason: Some(reason.to_owned()),
            new: false,
            fork,
            field: incoming.field(),
            again: false,
        };
        // What is sent again must be what landed: its claimed hash the landed one's, and its
        // content that hash's. Else it is not a re-send and never `duplicate`, which would
        // tell the store that what it sent is at HQ. Nothing is written: the id's row stays
        // the first. Another entry under a landed id is the fork it is (the store flagged).
        if let Some(landed) = &first.hash {
            match incoming {
                Incoming::Entry {
                    entry,
                    body_canonical,
                } if *landed == entry.hash => {
                    if !hash_holds(entry, body_canonical) {
                        return answer(Outcome::Rejected, "hash_mismatch", false);
                    }
                }
                _ => return answer(Outcome::Rejected, "chain_fork", true),
            }
        }
        // The first answer stands; an accepted entry sent again is a duplicate.
        let (outcome, reason) = match first.outcome {
            Outcome::Accepted | Outcome::Duplicate => (Outcome::Duplicate, None),
            o => (o, first.reason.clone()),
        };
        return Decision {
            id,
            outcome,
            reason,
            new: false,
            fork: false,
            field: incoming.field(),
            again: true,
        };
    }
    let (outcome, reason, fork) = match incoming {
        Incoming::Unreadable { .. } => (Outcome::Rejected, Some("invalid_entry"), false),
        Incoming::Entry {
            entry,
            body_canonical,
        } => judge(store, entry, body_canonical, known),
    };
    let reason = reason.map(str::to_owned);
    // The one `invalid_entry` the rules give a readable entry: its seq.
    let field = match incoming {
        Incoming::Entry { .. } if reason.as_deref() == Some("invalid_entry") => Some("seq".into()),
        _ => incoming.field(),
    };
    let landed_hash = match incoming {
        Incoming::Entry { entry, .. } if outcome != Outcome::Rejected => Some(entry.hash.clone()),
        _ => None,
    };
    known.answers.insert(
        id.clone(),
        Answer {
            outcome,
            reason: reason.clone(),
            hash: landed_hash,
        },
    );
    if let (Incoming::Entry { entry, .. }, true) = (incoming, outcome != Outcome::Rejected) {
        known.chain.insert(
            entry.seq,
            Link {
                id: id.clone(),
                prev_hash: entry.prev_hash.clone(),
                hash: entry.hash.clone(),
            },
        );
    }
    Decision {
        id,
        outcome,
        reason,
        new: true,
        fork,
        field,
        again: false,
    }
}

fn judge(
    store: &str,
    e: &Entry,
    body_canonical: &str,
    known: &Known,
) -> (Outcome, Option<&'static str>, bool) {
    if e.store_id != store {
        return (Outcome::Rejected, Some("store_mismatch"), false);
    }
    // A chain is numbered from 1; i64::MAX leaves no room for a successor to check.
    if e.seq < 1 || e.seq == i64::MAX {
        return (Outcome::Rejected, Some("invalid_entry"), false);
    }
    if !hash_holds(e, body_canonical) {
        return (Outcome::Rejected, Some("hash_mismatch"), false);
    }
    // Its place, and its neighbours' links to it, must agree with what already landed.
    let taken = known.chain.get(&e.seq).is_some_and(|l| l.id != e.id);
    let before_disagrees = if e.seq == 1 {
        e.prev_hash != GENESIS
    } else {
        known
            .chain
            .get(&(e.seq - 1))
            .is_some_and(|l| l.hash != e.prev_hash)
    };
    let after_disagrees = known
        .chain
        .get(&e.seq.saturating_add(1))
        .is_some_and(|l| l.prev_hash != e.hash);
    if taken || before_disagrees || after_disagrees {
        return (Outcome::Rejected, Some("chain_fork"), true);
    }
    if e.kind == "pickup.handed_over"
        && e.body
            .get("order_id")
            .and_then(Value::as_str)
            .is_some_and(|o| known.cancelled_orders.contains(o))
    {
        return (Outcome::Conflict, Some("order_cancelled"), false);
    }
    (Outcome::Accepted, None, false)
}

/// Whether `e`'s content hashes to the hash it claims.
fn hash_holds(e: &Entry, body_canonical: &str) -> bool {
    let recomputed = entry_hash(
        &e.prev_hash,
        &Hashed {
            seq: e.seq,
            id: &e.id,
            lane: e.lane.as_str(),
            kind: &e.kind,
            occurred_at: &e.occurred_at,
            store_id: &e.store_id,
            actor: e.actor.as_deref(),
            device: e.device.as_deref(),
            body: body_canonical,
        },
    );
    recomputed == e.hash
}

/// Walks the chain up from the verified prefix `(seq, hash)` over landed links in seq order
/// (`links` sorted by seq, starting after `seq`): returns the new prefix, and the seq of a
/// broken link if one stops it.
pub fn advance(
    mut verified: (i64, String),
    links: impl IntoIterator<Item = (i64, String, String)>,
) -> ((i64, String), Option<i64>) {
    for (seq, prev_hash, hash) in links {
        if seq != verified.0 + 1 {
            break;
        }
        if prev_hash != verified.1 {
            return (verified, Some(seq));
        }
        verified = (seq, hash);
    }
    (verified, None)
}

/// [`advance`] over what a batch's reads and decisions already know, when that settles it:
/// `chain` holds every landed link at the seqs in `asked` (sorted; the reads looked each one
/// up, so a seq there without a link has none) and the batch's own. The walk goes up from
/// `verified` while the next seq is known; `None` when it reaches a seq nobody asked about,
/// and the caller reads the chain from PostgreSQL instead. A batch that continues the
/// verified prefix in order (the common case) is settled here: its last seq's successor was
/// asked for.
pub fn advance_known(
    mut verified: (i64, String),
    chain: &HashMap<i64, Link>,
    asked: &[i64],
) -> Option<((i64, String), Option<i64>)> {
    loop {
        let next = verified.0.checked_add(1)?;
        match chain.get(&next) {
            Some(link) if link.prev_hash != verified.1 => return Some((verified, Some(next))),
            Some(link) => verified = (next, link.hash.clone()),
            None if asked.binary_search(&next).is_ok() => return Some((verified, None)),
            None => return None,
        }
    }
}

#[cfg(test)]
mod tests;
