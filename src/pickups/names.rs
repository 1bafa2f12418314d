//! Name search from memory: the pickup list's name keys held in sorted arrays, checked
//! against the database on every search so an answer is never older than the read it is
//! part of.
//!
//! A name search in SQL stepped two index ranges (about 115 entries each for a common last
//! name at a supercenter) through SQLite's top-20 sort, then looked up the store's own
//! actions (hand-overs, no-shows) of the 20 orders: about 60% of the request's CPU. Here:
//! - [`NameIndex`]: every list entry as central sent it, with its NOCASE-folded full name and
//!   last name in sorted arrays. It is built from one read transaction and stamped with the
//!   `pickup_orders` feed's `last_batch`, which every applied batch raises (snapshot switches
//!   included) in the same transaction as its changes: that feed is the only writer of
//!   `pickup_orders`.
//! - [`Acted`]: the orders the store has acted on (a hand-over or a no-show here), stamped
//!   with the newest row id of each of those tables. They are only ever inserted into, so
//!   any new action changes the stamp. Orders outside the set skip the actions query; the
//!   ones inside still get theirs from SQL (central's answer to a hand-over included).
//!
//! Each search reads the stamps in its own read transaction ([`Stamps::read`]). A copy whose
//! stamp differs is not used: that search runs in SQL as before, and a rebuild is started
//! (one at a time), which a few milliseconds later serves the searches after it.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use rusqlite::Connection;

use super::store::{LAST_NAME, NAME_LIMIT, SUMMARY_COLUMNS, Summary, summary_from_row};

/// What the in-memory copies are checked against, read inside the search's transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamps {
    /// `feed_state.applied_at` of `pickup_orders` (the answer's freshness).
    pub applied_at: Option<String>,
    /// `feed_state.last_batch` of `pickup_orders`.
    pub list: i64,
    /// The newest `pickup_handovers` and `pickup_no_shows` row ids.
    pub acted: (i64, i64),
}

impl Stamps {
    pub fn read(conn: &Connection) -> rusqlite::Result<Self> {
        conn.prepare_cached(
            "SELECT applied_at, last_batch,
                    coalesce((SELECT max(id) FROM pickup_handovers), 0),
                    coalesce((SELECT max(rowid) FROM pickup_no_shows), 0)
             FROM feed_state WHERE feed = 'pickup_orders'",
        )?
        .query_row([], |r| {
            Ok(Self {
                applied_at: r.get(0)?,
                list: r.get(1)?,
                acted: (r.get(2)?, r.get(3)?),
            })
        })
    }
}

/// A list entry that would not serialize, as the read's error.
fn json_error(e: serde_json::Error) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(e))
}

/// SQLite's NOCASE: ASCII letters folded, every other byte as it is; compared bytewise.
fn fold(s: &str) -> Box<[u8]> {
    s.as_bytes().to_ascii_lowercase().into_boxed_slice()
}

/// The list entries of every order in the replica, by folded full name and last name.
pub struct NameIndex {
    list: i64,
    /// Sorted by due time, then order id: an entry's position is its place in any answer.
    entries: Vec<Summary>,
    /// Each entry as JSON, written once here rather than on every answer that lists it.
    json: Vec<Box<str>>,
    by_name: Vec<(Box<[u8]>, u32)>,
    by_last: Vec<(Box<[u8]>, u32)>,
}

impl NameIndex {
    pub fn build(conn: &Connection, list: i64) -> rusqlite::Result<Self> {
        // The last name as SQLite's own expression gives it (its string functions have
        // rules of their own, such as stopping at a NUL), not a copy of the rule in Rust.
        let mut rows: Vec<(Summary, String)> = conn
            .prepare(&format!(
                "SELECT {SUMMARY_COLUMNS}, {LAST_NAME} FROM pickup_orders"
            ))?
            .query_map([], |r| Ok((summary_from_row(r)?, r.get(12)?)))?
            .collect::<Result<_, _>>()?;
        rows.sort_unstable_by(|(a, _), (b, _)| {
            (&a.due_at, &a.order_id).cmp(&(&b.due_at, &b.order_id))
        });
        let keys = |key: fn(&(Summary, String)) -> &str| {
            let mut v: Vec<(Box<[u8]>, u32)> = rows
                .iter()
                .enumerate()
                .map(|(i, e)| (fold(key(e)), i as u32))
                .collect();
            v.sort_unstable();
            v
        };
        let by_name = keys(|(e, _)| e.customer_name.as_str());
        let by_last = keys(|(_, last)| last.as_str());
        let entries: Vec<Summary> = rows.into_iter().map(|(e, _)| e).collect();
        let json = entries
            .iter()
            .map(|e| serde_json::to_string(e).map(String::into_boxed_str))
            .collect::<Result<_, _>>()
            .map_err(json_error)?;
        Ok(Self {
            list,
            entries,
            json,
            by_name,
            by_last,
        })
    }

    /// The earliest-due [`NAME_LIMIT`] entries whose full or last name is in the NOCASE range
    /// [q, q + U+10FFFF), by due time then order id: what the two SQL ranges and their merge
    /// in `store::search_entries` return.
    pub fn search(&self, q: &str) -> Vec<Summary> {
        self.positions(q)
            .iter()
            .map(|i| self.entries[*i as usize].clone())
            .collect()
    }

    /// [`NameIndex::search`]'s entries, as positions in this index.
    pub fn positions(&self, q: &str) -> Vec<u32> {
        let low = fold(q);
        let mut high = low.to_vec();
        high.extend_from_slice("\u{10FFFF}".as_bytes());
        let mut hits: Vec<u32> = Vec::new();
        for keys in [&self.by_name, &self.by_last] {
            let from = keys.partition_point(|(k, _)| **k < *low);
            let to = keys.partition_point(|(k, _)| **k < *high);
            hits.extend(keys[from..to].iter().map(|(_, i)| *i));
        }
        // Positions are the answer's order; one order matching both ways ("Lee Lee") is one
        // position, adjacent to itself after the sort.
        hits.sort_unstable();
        hits.dedup();
        hits.truncate(NAME_LIMIT);
        hits
    }

    /// The `orders` array of a name search's answer: the entries of orders in `acted` with the
    /// store's actions folded in (in SQL, as every list does), the others as written at build.
    pub fn orders_json(
        &self,
        conn: &Connection,
        positions: &[u32],
        acted: &Acted,
    ) -> rusqlite::Result<String> {
        let acted_entries: Vec<Summary> = positions
            .iter()
            .map(|p| &self.entries[*p as usize])
            .filter(|e| acted.contains(&e.order_id))
            .cloned()
            .collect();
        let mut folded: std::collections::HashMap<String, Summary> =
            super::store::summaries(conn, acted_entries)?
                .into_iter()
                .map(|s| (s.order_id.clone(), s))
                .collect();
        let mut out = String::with_capacity(2 + positions.len() * 320);
        out.push('[');
        for (k, p) in positions.iter().enumerate() {
            if k > 0 {
                out.push(',');
            }
            let entry = &self.entries[*p as usize];
            match folded.remove(&entry.order_id) {
                Some(s) => out.push_str(&serde_json::to_string(&s).map_err(json_error)?),
                None => out.push_str(&self.json[*p as usize]),
            }
        }
        out.push(']');
        Ok(out)
    }
}

/// The orders the store has handed over (in part or whole) or marked a no-show.
pub struct Acted {
    stamp: (i64, i64),
    ids: HashSet<String>,
}

impl Acted {
    pub fn build(conn: &Connection, stamp: (i64, i64)) -> rusqlite::Result<Self> {
        let ids = conn
            .prepare(
                "SELECT order_id FROM pickup_handovers UNION SELECT order_id FROM pickup_no_shows",
            )?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(Self { stamp, ids })
    }

    pub fn contains(&self, order_id: &str) -> bool {
        self.ids.contains(order_id)
    }
}

/// The copies in use, shared by every request.
#[derive(Default)]
pub struct Names {
    index: Slot<NameIndex>,
    acted: Slot<Acted>,
    building: AtomicBool,
    /// Name searches answered from the copies, and in SQL (a copy was behind), for metrics.
    pub from_memory: AtomicU64,
    pub from_sql: AtomicU64,
}

/// One copy in use, with the stamp it was built at.
type Slot<T> = RwLock<Option<Arc<T>>>;

/// The copy in `slot` if it was built at `stamp`.
fn at<T, S: PartialEq>(slot: &Slot<T>, stamp: &S, of: impl Fn(&T) -> &S) -> Option<Arc<T>> {
    slot.read()
        .ok()
        .and_then(|c| c.clone())
        .filter(|c| of(c) == stamp)
}

/// Puts `copy` in use unless the one there is newer: stamps only grow, so a slower rebuild
/// never replaces a newer copy.
fn install<T, S: PartialOrd>(slot: &Slot<T>, copy: T, of: impl Fn(&T) -> &S) {
    if let Ok(mut slot) = slot.write()
        && slot.as_ref().is_none_or(|c| of(c) <= of(&copy))
    {
        *slot = Some(Arc::new(copy));
    }
}

impl Names {
    /// The copies that match `stamps`, if they do.
    pub fn current(&self, stamps: &Stamps) -> (Option<Arc<NameIndex>>, Option<Arc<Acted>>) {
        (
            at(&self.index, &stamps.list, |i| &i.list),
            at(&self.acted, &stamps.acted, |a| &a.stamp),
        )
    }

    /// Claims the one rebuild at a time (`None` when one is already running); the claim ends
    /// when the guard is dropped, also if the rebuild panics.
    pub fn begin_rebuild(self: &Arc<Self>) -> Option<RebuildClaim> {
        (!self.building.swap(true, Ordering::AcqRel)).then(|| RebuildClaim(self.clone()))
    }

    /// Builds the copies whose stamps moved, in the caller's read transaction, and puts them
    /// in use. A hand-over rebuilds only the small acted-on set, not the list.
    pub fn rebuild(&self, conn: &Connection) -> rusqlite::Result<()> {
        let stamps = Stamps::read(conn)?;
        let (index, acted) = self.current(&stamps);
        if index.is_none() {
            let copy = NameIndex::build(conn, stamps.list)?;
            install(&self.index, copy, |i| &i.list);
        }
        if acted.is_none() {
            let copy = Acted::build(conn, stamps.acted)?;
            install(&self.acted, copy, |a| &a.stamp);
        }
        Ok(())
    }
}

/// The one rebuild running; dropping it lets the next one start.
pub struct RebuildClaim(Arc<Names>);

impl Drop for RebuildClaim {
    fn drop(&mut self) {
        self.0.building.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pickups::store::{search_entries, summaries};
    use rand::{Rng, SeedableRng};

    const FIRST: [&str; 8] = [
        "Dana",
        "dana",
        "Lee",
        "Élodie",
        "Mary-Jane",
        "Zoë",
        "Ann",
        "O'Neil",
    ];
    const LAST: [&str; 9] = [
        "Reyes",
        "REYES",
        "Lee",
        "Durand",
        "élan",
        "Garcia",
        "Garcias",
        "O'Brien",
        "Smith-Jones",
    ];

    /// A replica with names that probe the folding rules: case, non-ASCII letters (NOCASE
    /// folds only ASCII), one word, a trailing space, two spaces, "Lee Lee", equal due times.
    fn replica(n: usize) -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::migrate(&mut conn).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut names: Vec<String> = vec![
            "Lee Lee".into(),
            "Ann Lee ".into(),
            "Ann  Lee".into(),
            "Cher".into(),
            "ÉLODIE Durand".into(),
            // SQLite's string functions stop at a NUL: its last name is empty.
            "Ann\0 Lee".into(),
        ];
        const EDGE_CASES: usize = 6;
        assert_eq!(names.len(), EDGE_CASES);
        while names.len() < n {
            let f = FIRST[rng.random_range(0..FIRST.len())];
            let l = LAST[rng.random_range(0..LAST.len())];
            names.push(format!("{f} {l}"));
        }
        for (i, name) in names.iter().enumerate() {
            // Few distinct due times, so ties are decided by the order id; the edge cases
            // first, so a limit of 20 never hides one.
            let due = if i < EDGE_CASES {
                "2026-11-30T10:00:00Z".to_string()
            } else {
                format!("2026-12-0{}T10:00:00Z", 1 + rng.random_range(0..4))
            };
            conn.execute(
                "INSERT INTO pickup_orders (order_id, order_number, pickup_code, customer_name,
                 phone_last4, due_at, status, payment_state, total_minor, currency, updated_at, doc,
                 items, requires_id_check)
                 VALUES (?1, ?2, ?3, ?4, '1234', ?5, 'ready', 'paid', 100, 'USD', ?5, '{}', 1, 0)",
                rusqlite::params![
                    format!("o-{:04}", (i * 7919) % 10_000),
                    format!("W{i:09}"),
                    format!("PC{i:04}"),
                    name,
                    due
                ],
            )
            .unwrap();
        }
        conn
    }

    fn queries() -> Vec<String> {
        let mut out: Vec<String> = vec!["x".into(), "zz".into(), "Lee Lee".into(), "ann l".into()];
        for word in FIRST
            .iter()
            .chain(LAST.iter())
            .chain(["Élodie", "élodie", "Cher"].iter())
        {
            let chars: Vec<char> = word.chars().collect();
            for len in 2..=chars.len() {
                let prefix: String = chars[..len].iter().collect();
                out.push(prefix.to_lowercase());
                out.push(prefix.to_uppercase());
                out.push(prefix);
            }
        }
        out
    }

    #[test]
    fn the_copy_finds_what_sql_finds_in_the_same_order() {
        let conn = replica(600);
        let index = NameIndex::build(&conn, 1).unwrap();
        let json = |v: Vec<Summary>| serde_json::to_value(v).unwrap();
        let mut compared = 0;
        for q in queries() {
            let sql = search_entries(&conn, &q, None).unwrap();
            let memory = search_entries(&conn, &q, Some(&index)).unwrap();
            assert_eq!(json(memory), json(sql.clone()), "query {q:?}");
            compared += usize::from(!sql.is_empty());
        }
        assert!(compared > 50, "too few queries found anything: {compared}");
    }

    /// The answer's array from the copy is the list entries `summaries` gives, acted-on orders
    /// with their actions folded in.
    #[test]
    fn the_copy_writes_the_entries_summaries_gives() {
        let conn = replica(200);
        let index = NameIndex::build(&conn, 1).unwrap();
        let hit = index.search("dana");
        assert!(hit.len() > 2);
        let (given, shown) = (&hit[0].order_id, &hit[1].order_id);
        conn.execute(
            "INSERT INTO pickup_handovers (order_id, lines, id_checked, by_employee, at, journal_id)
             VALUES (?1, '[{\"line\": 1, \"qty\": 1}]', 0, 'e-1', '2026-12-01T09:00:00Z', 'j-1')",
            [given],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO pickup_no_shows (order_id, by_employee, at, journal_id)
             VALUES (?1, 'e-1', '2026-12-01T09:00:00Z', 'j-2')",
            [shown],
        )
        .unwrap();
        let acted = Acted::build(&conn, (1, 1)).unwrap();
        let written = index
            .orders_json(&conn, &index.positions("dana"), &acted)
            .unwrap();
        let want = serde_json::to_value(summaries(&conn, hit).unwrap()).unwrap();
        let got: serde_json::Value = serde_json::from_str(&written).unwrap();
        assert_eq!(got, want);
        assert_eq!(got[1]["status"], "no_show", "{got}");
    }

    /// A hand-over moves only the acted-on stamp: the rebuild after it keeps the list's copy
    /// and makes a new acted-on set holding the order.
    #[test]
    fn an_action_rebuilds_only_the_acted_on_set() {
        let conn = replica(50);
        let names = Names::default();
        names.rebuild(&conn).unwrap();
        let stamps = Stamps::read(&conn).unwrap();
        let (Some(index), Some(acted)) = names.current(&stamps) else {
            panic!("no copies after a rebuild");
        };
        let order = index.search("dana")[0].order_id.clone();
        assert!(!acted.contains(&order));
        conn.execute(
            "INSERT INTO pickup_handovers (order_id, lines, id_checked, by_employee, at, journal_id)
             VALUES (?1, '[]', 0, 'e-1', '2026-12-01T09:00:00Z', 'j-1')",
            [&order],
        )
        .unwrap();
        let moved = Stamps::read(&conn).unwrap();
        assert_eq!(
            names.current(&moved).1.map(|_| ()),
            None,
            "the acted-on set is behind"
        );
        names.rebuild(&conn).unwrap();
        let (Some(kept), Some(fresh)) = names.current(&moved) else {
            panic!("no copies after the second rebuild");
        };
        assert!(Arc::ptr_eq(&kept, &index), "the list's copy was rebuilt");
        assert!(fresh.contains(&order));
    }
}
