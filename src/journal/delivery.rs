//! Delivery state: what is pending per lane, and recording central's per-entry outcomes.
//! Push and pull share this; the first outcome recorded for an entry wins.

use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

use super::{ENTRY_COLUMNS, Entry, Lane, entry_from_row};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Accepted,
    Duplicate,
    Rejected,
    Conflict,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Duplicate => "duplicate",
            Self::Rejected => "rejected",
            Self::Conflict => "conflict",
        }
    }

    /// Rejected and conflicting entries are set aside for a person (reconciliation).
    pub fn needs_a_person(self) -> bool {
        matches!(self, Self::Rejected | Self::Conflict)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Push,
    Pull,
}

impl Via {
    fn as_str(self) -> &'static str {
        match self {
            Self::Push => "push",
            Self::Pull => "pull",
        }
    }
}

/// Which entry an outcome is for: push results name ids, pull acks name seqs.
#[derive(Debug, Clone)]
pub enum EntryRef {
    Id(String),
    Seq(i64),
}

#[derive(Debug, Clone)]
pub struct Delivered {
    pub entry: EntryRef,
    pub outcome: Outcome,
    pub reason: Option<String>,
}

/// Records outcomes; returns, per result, whether it was the first for its entry
/// (`Some(true)`), came after another (`Some(false)`), or named no entry (`None`).
pub fn record_outcomes(
    conn: &Connection,
    results: &[Delivered],
    via: Via,
    now: &str,
) -> rusqlite::Result<Vec<Option<bool>>> {
    let mut by_id = conn.prepare_cached(
        "UPDATE journal SET outcome = ?2, reason = ?3, delivered_at = ?4, delivered_via = ?5
         WHERE id = ?1 AND outcome IS NULL",
    )?;
    let mut by_seq = conn.prepare_cached(
        "UPDATE journal SET outcome = ?2, reason = ?3, delivered_at = ?4, delivered_via = ?5
         WHERE seq = ?1 AND outcome IS NULL",
    )?;
    let mut exists_id = conn.prepare_cached("SELECT 1 FROM journal WHERE id = ?1")?;
    let mut exists_seq = conn.prepare_cached("SELECT 1 FROM journal WHERE seq = ?1")?;
    let mut out = Vec::with_capacity(results.len());
    for d in results {
        let args = (d.outcome.as_str(), d.reason.as_deref(), now, via.as_str());
        let changed = match &d.entry {
            EntryRef::Id(id) => by_id.execute(params![id, args.0, args.1, args.2, args.3])?,
            EntryRef::Seq(seq) => by_seq.execute(params![seq, args.0, args.1, args.2, args.3])?,
        };
        out.push(if changed > 0 {
            if d.outcome.needs_a_person() {
                tracing::warn!(entry = ?d.entry, outcome = d.outcome.as_str(), reason = d.reason.as_deref().unwrap_or(""),
                    "journal entry set aside for reconciliation");
            }
            Some(true)
        } else {
            let exists = match &d.entry {
                EntryRef::Id(id) => exists_id.exists([id])?,
                EntryRef::Seq(seq) => exists_seq.exists([seq])?,
            };
            exists.then_some(false)
        });
    }
    Ok(out)
}

/// Records a push's answer in a handful of statements whatever its size: the attempt for
/// every entry in `sent`, then each group of like outcomes (`seq`, outcome, reason) in one
/// `UPDATE … WHERE seq IN (…)`; entries set aside for a person go one by one through
/// [`record_outcomes`], which logs each. The first outcome recorded for an entry still wins.
///
/// One statement per entry made the writer spend a third of a large drain closing statement
/// savepoints (perf, `benches/backlog_drain.rs`): every `UPDATE` of the journal opens one
/// because its triggers may abort.
pub fn record_push(
    conn: &Connection,
    sent: &[i64],
    results: &[(i64, Outcome, Option<String>)],
    now: &str,
) -> rusqlite::Result<()> {
    fn seq_list<'a>(seqs: impl Iterator<Item = &'a i64>) -> String {
        let mut out = String::from("[");
        for (i, s) in seqs.enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&s.to_string());
        }
        out.push(']');
        out
    }
    conn.prepare_cached(
        "UPDATE journal SET attempts = attempts + 1
         WHERE seq IN (SELECT value FROM json_each(?1)) AND outcome IS NULL",
    )?
    .execute([seq_list(sent.iter())])?;
    // (outcome, reason) → seqs; a push rarely has more than one or two kinds of answer.
    type Group<'a> = ((Outcome, Option<&'a str>), Vec<i64>);
    let mut groups: Vec<Group<'_>> = Vec::new();
    let mut set_aside = Vec::new();
    for (seq, outcome, reason) in results {
        if outcome.needs_a_person() {
            set_aside.push(Delivered {
                entry: EntryRef::Seq(*seq),
                outcome: *outcome,
                reason: reason.clone(),
            });
            continue;
        }
        let key = (*outcome, reason.as_deref());
        match groups.iter_mut().find(|g| g.0 == key) {
            Some(g) => g.1.push(*seq),
            None => groups.push((key, vec![*seq])),
        }
    }
    let mut set = conn.prepare_cached(
        "UPDATE journal SET outcome = ?2, reason = ?3, delivered_at = ?4, delivered_via = 'push'
         WHERE seq IN (SELECT value FROM json_each(?1)) AND outcome IS NULL",
    )?;
    for ((outcome, reason), seqs) in &groups {
        set.execute(params![
            seq_list(seqs.iter()),
            outcome.as_str(),
            reason,
            now
        ])?;
    }
    record_outcomes(conn, &set_aside, Via::Push, now)?;
    Ok(())
}

/// The oldest pending entries of `lane`, in `seq` order.
pub fn pending(conn: &Connection, lane: Lane, limit: usize) -> rusqlite::Result<Vec<Entry>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ENTRY_COLUMNS} FROM journal WHERE lane = ?1 AND outcome IS NULL ORDER BY seq LIMIT ?2"
    ))?;
    stmt.query_map(params![lane.as_str(), limit as i64], entry_from_row)?
        .collect()
}

/// The highest-priority lane with anything pending.
pub fn next_lane(conn: &Connection) -> rusqlite::Result<Option<Lane>> {
    next_lane_after(conn, |_| 0)
}

/// The highest-priority lane with anything pending after `after(lane)` (a `seq`): the
/// uplink skips entries central has already answered for while their outcomes commit.
pub fn next_lane_after(
    conn: &Connection,
    after: impl Fn(Lane) -> i64,
) -> rusqlite::Result<Option<Lane>> {
    for lane in Lane::BY_PRIORITY {
        let any = conn
            .prepare_cached(
                "SELECT 1 FROM journal WHERE lane = ?1 AND outcome IS NULL AND seq > ?2 LIMIT 1",
            )?
            .exists(params![lane.as_str(), after(lane)])?;
        if any {
            return Ok(Some(lane));
        }
    }
    Ok(None)
}

/// The entries of a push, serialised as they are read: what [`pending`] returns, as the
/// JSON array central takes, with each stored body copied in as it is (canonical JSON, the
/// bytes its hash covers) instead of parsed and encoded again.
#[derive(Debug, Default)]
pub struct PendingJson {
    /// `seq` and id of each entry, lane by lane in priority order, each lane in `seq` order.
    pub entries: Vec<(i64, String)>,
    /// Per lane (indexed by `Lane as usize`), the last `seq` in the push; 0 for none.
    pub last_seq: [i64; 4],
    /// The lowest-priority lane in the push.
    pub last_lane: Option<Lane>,
    /// `[{entry}, …]`
    pub json: Vec<u8>,
}

impl PendingJson {
    /// Appends up to `limit` of `lane`'s oldest pending entries after `after` (a `seq`).
    fn push_lane(
        &mut self,
        conn: &Connection,
        lane: Lane,
        after: i64,
        limit: usize,
    ) -> rusqlite::Result<()> {
        /// [`Entry`]'s wire shape, borrowed from the row.
        #[derive(Serialize)]
        struct Wire<'a> {
            seq: i64,
            id: &'a str,
            lane: &'a str,
            kind: &'a str,
            occurred_at: &'a str,
            store_id: &'a str,
            actor: Option<&'a str>,
            device: Option<&'a str>,
            body: &'a serde_json::value::RawValue,
            prev_hash: &'a str,
            hash: &'a str,
        }
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {ENTRY_COLUMNS} FROM journal WHERE lane = ?1 AND outcome IS NULL AND seq > ?2
             ORDER BY seq LIMIT ?3"
        ))?;
        let mut rows = stmt.query(params![lane.as_str(), after, limit as i64])?;
        let bad = |i: usize, e: Box<dyn std::error::Error + Send + Sync>| {
            rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e)
        };
        while let Some(r) = rows.next()? {
            let text = |i: usize| -> rusqlite::Result<&str> {
                r.get_ref(i)?.as_str().map_err(|e| bad(i, Box::new(e)))
            };
            let opt = |i: usize| -> rusqlite::Result<Option<&str>> {
                r.get_ref(i)?
                    .as_str_or_null()
                    .map_err(|e| bad(i, Box::new(e)))
            };
            let wire = Wire {
                seq: r.get(0)?,
                id: text(1)?,
                lane: text(2)?,
                kind: text(3)?,
                occurred_at: text(4)?,
                store_id: text(5)?,
                actor: opt(6)?,
                device: opt(7)?,
                body: serde_json::from_str(text(8)?).map_err(|e| bad(8, Box::new(e)))?,
                prev_hash: text(9)?,
                hash: text(10)?,
            };
            if self.json.is_empty() {
                self.json.reserve(limit.min(1_000) * 512);
                self.json.push(b'[');
            } else {
                self.json.push(b',');
            }
            serde_json::to_writer(&mut self.json, &wire).map_err(|e| bad(0, Box::new(e)))?;
            self.entries.push((wire.seq, wire.id.to_owned()));
            self.last_seq[lane as usize] = wire.seq;
            self.last_lane = Some(lane);
        }
        Ok(())
    }

    /// Whether entries appended after this batch was read (with `limit`) could change it:
    /// not when it is full of the top lane, since nothing outranks that and the rest of its
    /// lane waits for room anyway. The one place [`push_outdated`]'s shortcut is decided, so
    /// a caller can skip the read.
    pub fn may_be_outdated(&self, limit: usize) -> bool {
        !(self.entries.len() >= limit && self.last_lane == Some(Lane::BY_PRIORITY[0]))
    }

    fn close(mut self) -> Self {
        if self.json.is_empty() {
            self.json.push(b'[');
        }
        self.json.push(b']');
        self
    }
}

/// One push of at most `limit` entries, serialised: the highest-priority lane's pending
/// entries after `after(lane)` first, then each lower lane's in the room left, each lane in
/// `seq` order. A lower lane only ever rides in room a higher one left unused, so it never
/// holds a higher lane back; and a store with a few entries in each lane (a fleet coming
/// back from a short outage) sends them in one request and one commit at central instead of
/// one per lane.
pub fn push_batch(
    conn: &Connection,
    after: impl Fn(Lane) -> i64,
    limit: usize,
) -> rusqlite::Result<PendingJson> {
    let mut out = PendingJson::default();
    Lane::fill(limit, |lane, room| {
        let before = out.entries.len();
        out.push_lane(conn, lane, after(lane), room)?;
        Ok::<_, rusqlite::Error>(out.entries.len() - before)
    })?;
    Ok(out.close())
}

/// Whether `batch`, read by [`push_batch`] with `after` and `limit`, is no longer what that
/// read would give now: an entry appended since in a lane the read would take. A full batch
/// gives way only to a lane above its last (the rest of its last lane and the lanes below
/// wait for room anyway); a batch with room left took everything, so any new entry counts.
pub fn push_outdated(
    conn: &Connection,
    after: impl Fn(Lane) -> i64,
    batch: &PendingJson,
    limit: usize,
) -> rusqlite::Result<bool> {
    let Some(last) = batch.last_lane else {
        return Ok(next_lane_after(conn, after)?.is_some());
    };
    if !batch.may_be_outdated(limit) {
        return Ok(false);
    }
    let full = batch.entries.len() >= limit;
    let covered = |l: Lane| after(l).max(batch.last_seq[l as usize]);
    Ok(next_lane_after(conn, covered)?.is_some_and(|l| !full || l < last))
}

/// Counts a delivery attempt for entries about to be sent (shown in reconciliation/status).
pub fn count_attempt(conn: &Connection, seqs: &[i64]) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "UPDATE journal SET attempts = attempts + 1 WHERE seq = ?1 AND outcome IS NULL",
    )?;
    for s in seqs {
        stmt.execute([s])?;
    }
    Ok(())
}

/// One lane's backlog, for status and metrics.
#[derive(Debug, Clone, Serialize)]
pub struct LaneBacklog {
    pub pending: i64,
    pub oldest_occurred_at: Option<String>,
    /// Seconds the oldest pending entry has waited; null when nothing waits.
    pub oldest_age_secs: Option<i64>,
}

pub fn backlog(
    conn: &Connection,
    lane: Lane,
    now: chrono::DateTime<chrono::Utc>,
) -> rusqlite::Result<LaneBacklog> {
    let (pending, oldest): (i64, Option<String>) = conn
        .prepare_cached(
            "SELECT count(*), min(occurred_at) FROM journal WHERE lane = ?1 AND outcome IS NULL",
        )?
        .query_row([lane.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let oldest_age_secs = oldest
        .as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| (now - t.with_timezone(&chrono::Utc)).num_seconds().max(0));
    Ok(LaneBacklog {
        pending,
        oldest_occurred_at: oldest,
        oldest_age_secs,
    })
}

/// An entry central would not take, waiting for a person.
#[derive(Debug, Clone, Serialize)]
pub struct SetAside {
    #[serde(flatten)]
    pub entry: Entry,
    pub outcome: Outcome,
    pub reason: Option<String>,
    pub delivered_at: String,
}

pub fn set_aside(conn: &Connection) -> rusqlite::Result<Vec<SetAside>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ENTRY_COLUMNS}, outcome, reason, delivered_at FROM journal
         WHERE outcome IN ('rejected', 'conflict') ORDER BY seq"
    ))?;
    stmt.query_map([], |r| {
        let outcome: String = r.get(11)?;
        Ok(SetAside {
            entry: entry_from_row(r)?,
            outcome: if outcome == "rejected" {
                Outcome::Rejected
            } else {
                Outcome::Conflict
            },
            reason: r.get(12)?,
            delivered_at: r.get(13)?,
        })
    })?
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::NewEntry;
    use serde_json::json;

    fn journal(lanes: &[Lane]) -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(include_str!("../../migrations/0002_journal.sql"))
            .unwrap();
        conn.execute_batch(include_str!("../../migrations/0016_wal_per_commit.sql"))
            .unwrap();
        append_lanes(&conn, lanes);
        conn
    }

    fn append_lanes(conn: &Connection, lanes: &[Lane]) {
        for (i, lane) in lanes.iter().enumerate() {
            let e = NewEntry {
                lane: *lane,
                kind: "test.entry".into(),
                actor: Some("E100".into()),
                device: None,
                body: json!({"n": i, "z": "é\"", "a": [1, {"b": null}]}),
            };
            crate::journal::append(conn, "store-0001", "2026-12-06T11:00:00.000Z", e).unwrap();
        }
    }

    fn lane(i: u8) -> Lane {
        Lane::BY_PRIORITY[usize::from(i % 4)]
    }

    proptest::proptest! {
        /// A batch read ahead is outdated exactly when reading it again now would give a
        /// different batch: any journal, anything already answered per lane, any limit,
        /// any entries appended since.
        #[test]
        fn a_push_is_outdated_exactly_when_a_read_now_differs(
            before in proptest::collection::vec(0u8..4, 0..12),
            answered in proptest::collection::vec(0usize..4, 4),
            limit in 1usize..8,
            appended in proptest::collection::vec(0u8..4, 0..4),
        ) {
            let lanes: Vec<Lane> = before.into_iter().map(lane).collect();
            let conn = journal(&lanes);
            // Central answered for the first `answered[l]` entries of each lane.
            let mut after = [0i64; 4];
            for l in Lane::BY_PRIORITY {
                let seqs: Vec<i64> = pending(&conn, l, 100).unwrap().iter().map(|e| e.seq).collect();
                let n = answered[l as usize].min(seqs.len());
                after[l as usize] = if n == 0 { 0 } else { seqs[n - 1] };
            }
            let read = push_batch(&conn, |l| after[l as usize], limit).unwrap();
            append_lanes(&conn, &appended.into_iter().map(lane).collect::<Vec<_>>());
            let now = push_batch(&conn, |l| after[l as usize], limit).unwrap();
            let outdated = push_outdated(&conn, |l| after[l as usize], &read, limit).unwrap();
            proptest::prop_assert_eq!(outdated, now.entries != read.entries);
        }
    }

    fn state(conn: &Connection, seq: i64) -> (Option<String>, Option<String>, i64) {
        conn.query_row(
            "SELECT outcome, reason, attempts FROM journal WHERE seq = ?1",
            [seq],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap()
    }

    /// One lane's entries after `after`, the others all answered.
    fn only(lane: Lane, after: i64) -> impl Fn(Lane) -> i64 {
        move |l| if l == lane { after } else { i64::MAX }
    }

    fn pending_json(conn: &Connection, lane: Lane, after: i64, limit: usize) -> PendingJson {
        push_batch(conn, only(lane, after), limit).unwrap()
    }

    /// The serialised batch is exactly what `pending` reads, after the given `seq`.
    #[test]
    fn pending_json_is_the_pending_entries_after_a_seq() {
        use Lane::*;
        let conn = journal(&[Audit, Payments, Audit, Payments, Payments, Audit]);
        let all = pending(&conn, Payments, 10).unwrap();
        let got = pending_json(&conn, Payments, all[0].seq, 10);
        let parsed: Vec<crate::journal::Entry> = serde_json::from_slice(&got.json).unwrap();
        assert_eq!(parsed, all[1..]);
        let ids: Vec<(i64, String)> = all[1..].iter().map(|e| (e.seq, e.id.clone())).collect();
        assert_eq!(got.entries, ids);
        assert_eq!(pending_json(&conn, Payments, 0, 2).entries.len(), 2);
        let none = pending_json(&conn, Returns, 0, 10);
        assert!(none.entries.is_empty());
        assert_eq!(none.json, b"[]");
        // Bodies go as stored: the canonical bytes the hash covers.
        let stored: String = conn
            .query_row(
                "SELECT body FROM journal WHERE seq = ?1",
                [all[1].seq],
                |r| r.get(0),
            )
            .unwrap();
        assert!(String::from_utf8(got.json).unwrap().contains(&stored));
    }

    /// A push takes the highest lane first and the lower lanes in the room it leaves, each
    /// lane in `seq` order and after what central already answered; never more than asked.
    #[test]
    fn a_push_fills_by_priority_in_the_room_left() {
        use Lane::*;
        let lanes = [Audit, Payments, Pickups, Audit, Payments, Returns, Audit];
        let conn = journal(&lanes);
        let seq_of = |l: Lane| -> Vec<i64> {
            pending(&conn, l, 100)
                .unwrap()
                .iter()
                .map(|e| e.seq)
                .collect()
        };
        let by_priority: Vec<i64> = Lane::BY_PRIORITY.into_iter().flat_map(seq_of).collect();
        for limit in 1..=lanes.len() + 1 {
            let got = push_batch(&conn, |_| 0, limit).unwrap();
            let seqs: Vec<i64> = got.entries.iter().map(|e| e.0).collect();
            assert_eq!(seqs, by_priority[..limit.min(lanes.len())], "limit {limit}");
            let parsed: Vec<crate::journal::Entry> = serde_json::from_slice(&got.json).unwrap();
            assert_eq!(
                parsed.iter().map(|e| e.seq).collect::<Vec<_>>(),
                seqs,
                "the JSON carries the same entries in the same order"
            );
            for l in Lane::BY_PRIORITY {
                let last = parsed
                    .iter()
                    .filter(|e| e.lane == l)
                    .map(|e| e.seq)
                    .next_back();
                assert_eq!(got.last_seq[l as usize], last.unwrap_or(0), "{l:?}");
            }
            assert_eq!(got.last_lane, parsed.last().map(|e| e.lane));
        }
        // After what central answered, per lane: payments' first and audit's first skipped.
        let answered = |l: Lane| match l {
            Payments => seq_of(Payments)[0],
            Audit => seq_of(Audit)[0],
            _ => 0,
        };
        let got = push_batch(&conn, answered, 10).unwrap();
        let seqs: Vec<i64> = got.entries.iter().map(|e| e.0).collect();
        let want: Vec<i64> = [
            &seq_of(Payments)[1..],
            &seq_of(Returns)[..],
            &seq_of(Pickups)[..],
            &seq_of(Audit)[1..],
        ]
        .concat();
        assert_eq!(seqs, want);
        let none = push_batch(&conn, |_| 100, 10).unwrap();
        assert!(none.entries.is_empty() && none.last_lane.is_none());
        assert_eq!(none.json, b"[]");
    }

    #[test]
    fn next_lane_after_skips_what_central_already_answered() {
        use Lane::*;
        let conn = journal(&[Audit, Payments, Pickups]);
        assert_eq!(next_lane_after(&conn, |_| 0).unwrap(), Some(Payments));
        let after = |l: Lane| if l == Payments { 2 } else { 0 };
        assert_eq!(next_lane_after(&conn, after).unwrap(), Some(Pickups));
        assert_eq!(next_lane_after(&conn, |_| 3).unwrap(), None);
    }

    /// Attempts counted once per entry sent; like outcomes grouped; an entry set aside keeps
    /// its reason; an entry already settled keeps its first outcome; an unanswered one stays
    /// pending for the next push.
    #[test]
    fn record_push_settles_each_answered_entry_once() {
        use Lane::*;
        let conn = journal(&[Payments; 5]);
        let first = [Delivered {
            entry: EntryRef::Seq(4),
            outcome: Outcome::Accepted,
            reason: None,
        }];
        record_outcomes(&conn, &first, Via::Pull, "t0").unwrap();
        let results = [
            (1, Outcome::Accepted, None),
            (2, Outcome::Duplicate, None),
            (3, Outcome::Rejected, Some("hash_mismatch".to_owned())),
            (4, Outcome::Duplicate, None),
        ];
        record_push(&conn, &[1, 2, 3, 4, 5], &results, "t1").unwrap();
        assert_eq!(state(&conn, 1), (Some("accepted".into()), None, 1));
        assert_eq!(state(&conn, 2), (Some("duplicate".into()), None, 1));
        assert_eq!(
            state(&conn, 3),
            (Some("rejected".into()), Some("hash_mismatch".into()), 1)
        );
        assert_eq!(state(&conn, 4), (Some("accepted".into()), None, 0));
        assert_eq!(state(&conn, 5), (None, None, 1));
        let via: String = conn
            .query_row("SELECT delivered_via FROM journal WHERE seq = 1", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(via, "push");
        assert_eq!(pending(&conn, Payments, 10).unwrap().len(), 1);
        assert_eq!(set_aside(&conn).unwrap().len(), 1);
    }
}
