//! The journal: every action taken at the store, appended in the same transaction as the
//! action's own state, hash-chained, and delivered upstream exactly once.
//!
//! Appending is the only way in ([`append`]); delivery only ever sets an entry's outcome
//! ([`delivery::record_outcomes`]), whichever of push ([`uplink`]) or pull ([`sync_api`])
//! hears first.

pub mod chain;
pub mod delivery;
pub mod retention;
pub mod sync_api;
pub mod uplink;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Delivery lanes, in priority order: money first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lane {
    Payments,
    Returns,
    Pickups,
    Audit,
}

impl Lane {
    /// Highest priority first.
    pub const BY_PRIORITY: [Lane; 4] = [Lane::Payments, Lane::Returns, Lane::Pickups, Lane::Audit];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Payments => "payments",
            Self::Returns => "returns",
            Self::Pickups => "pickups",
            Self::Audit => "audit",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::BY_PRIORITY.into_iter().find(|l| l.as_str() == s)
    }

    /// The rule for what one push carries, at most `limit` entries: each lane in priority
    /// order adds up to the room left (`add(lane, room)` answers how many it added). A lower
    /// lane only rides in room the higher ones left unused, so it never holds one back.
    pub fn fill<E>(
        limit: usize,
        mut add: impl FnMut(Lane, usize) -> Result<usize, E>,
    ) -> Result<(), E> {
        let mut room = limit;
        for lane in Self::BY_PRIORITY {
            if room == 0 {
                break;
            }
            room = room.saturating_sub(add(lane, room)?);
        }
        Ok(())
    }
}

/// What an action asks to record.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub lane: Lane,
    /// `area.event`, e.g. `pickup.handed_over`.
    pub kind: String,
    /// Who did it (employee id, device id, or a system name).
    pub actor: Option<String>,
    /// Which device it was done on.
    pub device: Option<String>,
    pub body: Value,
}

/// A journal entry as stored and as delivered (API.md's shape).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub seq: i64,
    pub id: String,
    pub lane: Lane,
    pub kind: String,
    pub occurred_at: String,
    pub store_id: String,
    pub actor: Option<String>,
    pub device: Option<String>,
    pub body: Value,
    pub prev_hash: String,
    pub hash: String,
}

/// Appends `entry` inside the caller's transaction; it is durable exactly when the action
/// that wrote it is. Must run on the writer (or another `BEGIN IMMEDIATE` transaction), which
/// is what makes `seq` and the chain free of races, also across processes.
pub fn append(
    conn: &Connection,
    store_id: &str,
    now: &str,
    entry: NewEntry,
) -> rusqlite::Result<Entry> {
    // Never a number handed out before, also after retention pruned every entry: retention
    // records the last seq it pruned in `journal_anchor`, and `journal_seq_floor` holds what
    // AUTOINCREMENT had handed out when migration 0016 removed it (it rewrote
    // `sqlite_sequence`, a page of WAL, in every commit).
    let seq: i64 = conn
        .prepare_cached(
            "SELECT max(coalesce((SELECT max(seq) FROM journal), 0),
                        coalesce((SELECT seq FROM journal_anchor WHERE id = 1), 0),
                        coalesce((SELECT seq FROM journal_seq_floor WHERE id = 1), 0)) + 1",
        )?
        .query_row([], |r| r.get(0))?;
    let prev_hash = last_hash(conn)?;
    let sealed = seal(seq, prev_hash, store_id, now, entry);
    let body = chain::canonical_json(&sealed.body);
    conn.prepare_cached(
        "INSERT INTO journal (seq, id, lane, kind, occurred_at, store_id, actor, device, body, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        sealed.seq,
        sealed.id,
        sealed.lane.as_str(),
        sealed.kind,
        sealed.occurred_at,
        sealed.store_id,
        sealed.actor,
        sealed.device,
        body,
        sealed.prev_hash,
        sealed.hash
    ])?;
    Ok(sealed)
}

/// Makes `entry` the chain's entry number `seq` after `prev_hash`: a fresh UUIDv7 id and the
/// hash over its canonical encoding ([`chain::entry_hash`]). [`append`] seals every entry
/// this way; the fleet simulator (`standin hub fleet-sim`) seals its virtual stores' entries
/// with it too, so what they send is what a store sends.
pub fn seal(seq: i64, prev_hash: String, store_id: &str, now: &str, entry: NewEntry) -> Entry {
    let body = chain::canonical_json(&entry.body);
    let id = uuid::Uuid::now_v7().to_string();
    let hash = chain::entry_hash(
        &prev_hash,
        &chain::Hashed {
            seq,
            id: &id,
            lane: entry.lane.as_str(),
            kind: &entry.kind,
            occurred_at: now,
            store_id,
            actor: entry.actor.as_deref(),
            device: entry.device.as_deref(),
            body: &body,
        },
    );
    Entry {
        seq,
        id,
        lane: entry.lane,
        kind: entry.kind,
        occurred_at: now.to_string(),
        store_id: store_id.to_string(),
        actor: entry.actor,
        device: entry.device,
        body: entry.body,
        prev_hash,
        hash,
    }
}

/// The hash the next entry chains to: the newest entry's, else what retention pruned last,
/// else the genesis hash.
fn last_hash(conn: &Connection) -> rusqlite::Result<String> {
    if let Some(h) = conn
        .prepare_cached("SELECT hash FROM journal ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| r.get(0))
        .optional()?
    {
        return Ok(h);
    }
    Ok(conn
        .prepare_cached("SELECT hash FROM journal_anchor WHERE id = 1")?
        .query_row([], |r| r.get(0))
        .optional()?
        .unwrap_or_else(|| chain::GENESIS.to_string()))
}

pub(crate) const ENTRY_COLUMNS: &str =
    "seq, id, lane, kind, occurred_at, store_id, actor, device, body, prev_hash, hash";

/// Reads an entry from a row selected with [`ENTRY_COLUMNS`].
pub(crate) fn entry_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Entry> {
    let lane: String = r.get(2)?;
    let body: String = r.get(8)?;
    Ok(Entry {
        seq: r.get(0)?,
        id: r.get(1)?,
        lane: Lane::parse(&lane).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                2,
                rusqlite::types::Type::Text,
                format!("unknown lane {lane}").into(),
            )
        })?,
        kind: r.get(3)?,
        occurred_at: r.get(4)?,
        store_id: r.get(5)?,
        actor: r.get(6)?,
        device: r.get(7)?,
        body: serde_json::from_str(&body).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(8, rusqlite::types::Type::Text, Box::new(e))
        })?,
        prev_hash: r.get(9)?,
        hash: r.get(10)?,
    })
}
