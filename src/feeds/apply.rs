//! Applying a checked batch: the one path both the push API and the pull worker land in.
//!
//! Runs on the writer thread inside the group transaction, so the numbering checks, the
//! records and `feed_state` change together or not at all.
//!
//! Snapshots are assembled in the `_next` twin tables and switched in by renaming when the
//! last part arrives: O(1) whatever the size, and atomic with the rest of the transaction, so
//! a reader (or a `kill -9`) sees the old snapshot or the new one, never a mix.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::Feed;
use super::batch::{Batch, BatchKind, Doc, Records, SnapshotPart};
use crate::error::AppError;

/// What happened to a batch, as answered to HQ.
#[derive(Debug, Serialize)]
pub struct Applied {
    pub feed: Feed,
    pub batch: u64,
    /// False when the batch had been applied before (a replay): nothing changed.
    pub applied: bool,
    /// Records the feed serves now.
    pub records: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upserted: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotProgress>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SnapshotProgress {
    pub id: String,
    pub part: u32,
    pub parts: u32,
    /// True once the last part arrived and the snapshot is what the store serves.
    pub complete: bool,
    /// Records assembled so far.
    pub staged_records: i64,
}

struct State {
    last_batch: u64,
    records: i64,
    pending: Option<(String, u32, u32, i64)>,
}

/// Tables in the twin set that holds a live feed or a snapshot being assembled.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Live,
    Next,
}

impl Target {
    fn suffix(self) -> &'static str {
        match self {
            Self::Live => "",
            Self::Next => "_next",
        }
    }
}

/// The tables a feed's records live in (receipts have a side index of card tenders).
fn tables(feed: Feed) -> &'static [&'static str] {
    match feed {
        Feed::PickupOrders => &["pickup_orders"],
        Feed::Receipts => &["receipts", "receipt_cards"],
        Feed::Staff => &["staff"],
        Feed::Devices => &["devices"],
        Feed::Policy => &["policy"],
    }
}

fn key_column(feed: Feed) -> &'static str {
    match feed {
        Feed::PickupOrders => "order_id",
        Feed::Receipts => "receipt_id",
        Feed::Staff => "employee_id",
        Feed::Devices => "device_id",
        Feed::Policy => "key",
    }
}

fn load_state(conn: &Connection, feed: Feed) -> rusqlite::Result<State> {
    conn.query_row(
        "SELECT last_batch, records, pending_id, pending_part, pending_parts, pending_records
         FROM feed_state WHERE feed = ?1",
        [feed.as_str()],
        |r| {
            let pending_id: Option<String> = r.get(2)?;
            Ok(State {
                last_batch: r.get(0)?,
                records: r.get(1)?,
                pending: match pending_id {
                    Some(id) => Some((id, r.get(3)?, r.get(4)?, r.get(5)?)),
                    None => None,
                },
            })
        },
    )
}

/// Who is applying a batch, for the journal's audit lane.
pub struct Applier<'a> {
    pub store_id: &'a str,
    /// RFC 3339 UTC.
    pub now: &'a str,
    /// `central` for pulled batches, the sync token's name for pushed ones.
    pub source: &'a str,
}

/// Applies `batch` if it is the next in its feed's numbering, and journals it (audit lane)
/// in the same transaction, so HQ can see which of its batches each store holds.
pub fn apply(conn: &Connection, batch: &Batch, by: &Applier<'_>) -> Result<Applied, AppError> {
    let now = by.now;
    let feed = batch.feed;
    let state = load_state(conn, feed)?;
    if batch.number <= state.last_batch {
        return Ok(Applied {
            feed,
            batch: batch.number,
            applied: false,
            records: state.records,
            upserted: None,
            deleted: None,
            snapshot: None,
        });
    }
    let expected = state.last_batch + 1;
    if batch.number != expected {
        return Err(AppError::conflict(
            "batch_gap",
            format!(
                "{feed} batch {} arrived but batch {expected} is next",
                batch.number
            ),
        )
        .with("expected", expected));
    }

    let mut records = state.records;
    let (upserted, deleted, snapshot) = match (&batch.kind, &batch.snapshot) {
        (BatchKind::Snapshot, Some(part)) => {
            let (staged, complete) =
                apply_snapshot_part(conn, batch, part, state.pending.as_ref())?;
            if complete {
                records = staged;
            }
            let progress = SnapshotProgress {
                id: part.id.clone(),
                part: part.part,
                parts: part.parts,
                complete,
                staged_records: staged,
            };
            (batch.records.len(), batch.deletes.len(), Some(progress))
        }
        _ => {
            let (added, removed) = write_records(conn, feed, Target::Live, batch)?;
            records += added - removed;
            // A delta that arrives while a snapshot is being assembled is newer than it:
            // it goes into the snapshot too, or the switch would undo it.
            if let Some((_, _, _, staged)) = &state.pending {
                let (a, r) = write_records(conn, feed, Target::Next, batch)?;
                conn.execute(
                    "UPDATE feed_state SET pending_records = ?2 WHERE feed = ?1",
                    params![feed.as_str(), staged + a - r],
                )?;
            }
            (batch.records.len(), batch.deletes.len(), None)
        }
    };
    conn.execute(
        "UPDATE feed_state SET last_batch = ?2, applied_at = ?3, records = ?4 WHERE feed = ?1",
        params![feed.as_str(), batch.number, now, records],
    )?;
    if snapshot.as_ref().is_some_and(|s| s.complete) {
        conn.execute(
            "UPDATE feed_state SET snapshot_at = ?2 WHERE feed = ?1",
            params![feed.as_str(), now],
        )?;
    }
    let applied = Applied {
        feed,
        batch: batch.number,
        applied: true,
        records,
        upserted: Some(upserted),
        deleted: Some(deleted),
        snapshot,
    };
    crate::journal::append(
        conn,
        by.store_id,
        now,
        crate::journal::NewEntry {
            lane: crate::journal::Lane::Audit,
            kind: "feed.batch_applied".into(),
            actor: Some(by.source.to_string()),
            device: None,
            body: serde_json::to_value(&applied).unwrap_or_default(),
        },
    )?;
    Ok(applied)
}

/// Stages one part; switches the snapshot in when it is the last. Returns (staged, complete).
fn apply_snapshot_part(
    conn: &Connection,
    batch: &Batch,
    part: &SnapshotPart,
    pending: Option<&(String, u32, u32, i64)>,
) -> Result<(i64, bool), AppError> {
    let feed = batch.feed;
    let staged_before = if part.part == 1 {
        // A new snapshot starts: whatever an unfinished one left behind is discarded.
        for t in tables(feed) {
            conn.execute_batch(&format!("DELETE FROM {t}_next"))?;
        }
        0
    } else {
        match pending {
            Some((id, p, parts, staged))
                if *id == part.id && p + 1 == part.part && *parts == part.parts =>
            {
                *staged
            }
            Some((id, p, parts, _)) => {
                return Err(AppError::conflict(
                    "snapshot_out_of_order",
                    format!("snapshot {id} is at part {p} of {parts}; part {} of {} for {} cannot follow", part.part, part.parts, part.id),
                )
                .with("expected_snapshot", serde_json::json!({"id": id, "part": p + 1, "parts": parts})));
            }
            None => {
                return Err(AppError::conflict(
                    "snapshot_out_of_order",
                    format!(
                        "no snapshot is being assembled; part {} of {} needs part 1 first",
                        part.part, part.id
                    ),
                ));
            }
        }
    };
    let (added, removed) = write_records(conn, feed, Target::Next, batch)?;
    let staged = staged_before + added - removed;
    if part.part < part.parts {
        conn.execute(
            "UPDATE feed_state SET pending_id = ?2, pending_part = ?3, pending_parts = ?4,
             pending_records = ?5 WHERE feed = ?1",
            params![feed.as_str(), part.id, part.part, part.parts, staged],
        )?;
        return Ok((staged, false));
    }
    for t in tables(feed) {
        conn.execute_batch(&format!(
            "ALTER TABLE {t} RENAME TO {t}_swap;
             ALTER TABLE {t}_next RENAME TO {t};
             ALTER TABLE {t}_swap RENAME TO {t}_next;
             DELETE FROM {t}_next;"
        ))?;
    }
    // Receipts made at the store (kiosk sales) that central's snapshot does not hold yet stay
    // findable: put back in the same transaction as the switch.
    let staged = if feed == Feed::Receipts {
        staged + restore_local_receipts(conn)?
    } else {
        staged
    };
    conn.execute(
        "UPDATE feed_state SET pending_id = NULL, pending_part = NULL, pending_parts = NULL,
         pending_records = 0 WHERE feed = ?1",
        [feed.as_str()],
    )?;
    Ok((staged, true))
}

/// Upserts and deletes `batch`'s records into the `target` tables; returns (new, removed).
fn write_records(
    conn: &Connection,
    feed: Feed,
    target: Target,
    batch: &Batch,
) -> rusqlite::Result<(i64, i64)> {
    let sfx = target.suffix();
    let key = key_column(feed);
    let mut removed = 0i64;
    let mut added = 0i64;
    {
        let mut delete = conn.prepare_cached(&format!(
            "DELETE FROM {}{sfx} WHERE {key} = ?1",
            tables(feed)[0]
        ))?;
        let mut delete_cards = match feed {
            Feed::Receipts => Some(conn.prepare_cached(&format!(
                "DELETE FROM receipt_cards{sfx} WHERE receipt_id = ?1"
            ))?),
            _ => None,
        };
        let mut remove = |id: &str| -> rusqlite::Result<bool> {
            let n = delete.execute([id])?;
            if n > 0
                && let Some(dc) = delete_cards.as_mut()
            {
                dc.execute([id])?;
            }
            Ok(n > 0)
        };
        for id in &batch.deletes {
            removed += i64::from(remove(id)?);
        }
        // Upsert: insert first (`ON CONFLICT DO NOTHING`, one statement for the usual new
        // record); a record that exists is removed, with its card rows, and inserted again.
        // `insert` answers whether a row went in, which also tells new from replaced.
        let mut upsert_each = |id: &str, insert: &mut dyn FnMut() -> rusqlite::Result<bool>| {
            if insert()? {
                added += 1;
                return Ok(());
            }
            remove(id)?;
            if insert()? {
                Ok(())
            } else {
                Err(rusqlite::Error::StatementChangedRows(0))
            }
        };
        match &batch.records {
            Records::PickupOrders(docs) => {
                let mut ins = conn.prepare_cached(&format!(
                    "INSERT INTO pickup_orders{sfx} (order_id, order_number, pickup_code, customer_name,
                     phone_last4, due_at, status, payment_state, total_minor, currency, updated_at, doc,
                     items, requires_id_check)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
                     ON CONFLICT DO NOTHING"
                ))?;
                for Doc { raw, rec } in docs {
                    let o = &rec.order;
                    // The list entry's figures, so lists never parse the record (0010).
                    let items: i64 = o.lines.iter().map(|l| l.qty).sum();
                    let id_check = o.lines.iter().any(|l| l.requires_id_check);
                    upsert_each(&o.order_id, &mut || {
                        ins.execute(params![
                            o.order_id,
                            o.order_number,
                            o.pickup_code,
                            o.customer.name,
                            o.customer.phone_last4,
                            rec.due_at,
                            o.status.as_str(),
                            o.payment_state.as_str(),
                            o.total_minor,
                            o.currency,
                            rec.updated_at,
                            raw,
                            items,
                            id_check
                        ])
                        .map(|n| n > 0)
                    })?;
                }
            }
            Records::Receipts(docs) => {
                let mut ins = conn.prepare_cached(&format!(
                    "INSERT INTO receipts{sfx} (receipt_id, order_number, sold_at, lane, currency,
                     customer_phone_last4, total_minor, doc) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT DO NOTHING"
                ))?;
                let mut card = conn.prepare_cached(&format!(
                    "INSERT OR IGNORE INTO receipt_cards{sfx} (brand, last4, sold_at, receipt_id)
                     VALUES (?1, ?2, ?3, ?4)"
                ))?;
                for Doc { raw, rec: r } in docs {
                    upsert_each(&r.receipt_id, &mut || {
                        let n = ins.execute(params![
                            r.receipt_id,
                            r.order_number,
                            r.sold_at,
                            r.lane,
                            r.currency,
                            r.customer_phone_last4,
                            r.total_minor,
                            raw
                        ])?;
                        if n == 0 {
                            return Ok(false);
                        }
                        for c in &r.cards {
                            card.execute(params![c.brand, c.last4, r.sold_at, r.receipt_id])?;
                        }
                        Ok(true)
                    })?;
                }
            }
            Records::Staff(docs) => {
                let mut ins = conn.prepare_cached(&format!(
                    "INSERT INTO staff{sfx} (employee_id, name, role, pin_verifier, active, doc)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING"
                ))?;
                for Doc { raw, rec } in docs {
                    upsert_each(&rec.employee_id, &mut || {
                        ins.execute(params![
                            rec.employee_id,
                            rec.name,
                            rec.role.as_str(),
                            rec.pin_verifier,
                            rec.active,
                            raw
                        ])
                        .map(|n| n > 0)
                    })?;
                }
            }
            Records::Devices(docs) => {
                let mut ins = conn.prepare_cached(&format!(
                    "INSERT INTO devices{sfx} (device_id, kind, lane, token_sha256, active, doc)
                     VALUES (?1, 'kiosk', ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING"
                ))?;
                for Doc { raw, rec } in docs {
                    upsert_each(&rec.device_id, &mut || {
                        ins.execute(params![
                            rec.device_id,
                            rec.lane,
                            rec.token_sha256,
                            rec.active,
                            raw
                        ])
                        .map(|n| n > 0)
                    })?;
                }
            }
            Records::Policy(docs) => {
                let mut ins =
                    conn.prepare_cached(&format!("INSERT INTO policy{sfx} (key, value, doc) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING"))?;
                for Doc { raw, rec } in docs {
                    upsert_each(&rec.key, &mut || {
                        ins.execute(params![rec.key, rec.value.to_string(), raw])
                            .map(|n| n > 0)
                    })?;
                }
            }
        }
    }
    Ok((added, removed))
}

/// Writes a receipt made at the store (a kiosk sale) through the same writer as the receipts
/// feed: into the replica being served, into a snapshot being assembled (or its switch would
/// drop it), and into `local_receipts`, from which a later snapshot switch restores it.
/// `feed_state`'s counts follow, so `standin check` still balances. Returns false when a
/// receipt with this id already exists (nothing is written).
pub fn write_local_receipt(
    conn: &Connection,
    raw: String,
    rec: super::records::CheckedReceipt,
    now: &str,
) -> rusqlite::Result<bool> {
    let exists: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM receipts WHERE receipt_id = ?1)
             OR EXISTS (SELECT 1 FROM local_receipts WHERE receipt_id = ?1)",
        [&rec.receipt_id],
        |r| r.get(0),
    )?;
    if exists {
        return Ok(false);
    }
    conn.execute(
        "INSERT INTO local_receipts (receipt_id, doc, created_at) VALUES (?1, ?2, ?3)",
        params![rec.receipt_id, raw, now],
    )?;
    let batch = local_batch(vec![Doc { raw, rec }]);
    write_local_batch(conn, &batch)?;
    Ok(true)
}

fn local_batch(docs: Vec<Doc<super::records::CheckedReceipt>>) -> Batch {
    Batch {
        feed: Feed::Receipts,
        number: 0,
        kind: BatchKind::Delta,
        snapshot: None,
        records: Records::Receipts(docs),
        deletes: Vec::new(),
    }
}

/// A delta of local receipts, applied as a feed delta is (live, and staged snapshot if any),
/// without advancing the feed's numbering.
fn write_local_batch(conn: &Connection, batch: &Batch) -> rusqlite::Result<i64> {
    let state = load_state(conn, Feed::Receipts)?;
    let (added, removed) = write_records(conn, Feed::Receipts, Target::Live, batch)?;
    conn.execute(
        "UPDATE feed_state SET records = records + ?2 WHERE feed = ?1",
        params![Feed::Receipts.as_str(), added - removed],
    )?;
    if let Some((_, _, _, staged)) = &state.pending {
        let (a, r) = write_records(conn, Feed::Receipts, Target::Next, batch)?;
        conn.execute(
            "UPDATE feed_state SET pending_records = ?2 WHERE feed = ?1",
            params![Feed::Receipts.as_str(), staged + a - r],
        )?;
    }
    Ok(added - removed)
}

/// After a receipts snapshot switched in: local receipts it lacks go back in. Returns how many.
fn restore_local_receipts(conn: &Connection) -> rusqlite::Result<i64> {
    let missing: Vec<String> = conn
        .prepare(
            "SELECT l.doc FROM local_receipts l
             WHERE NOT EXISTS (SELECT 1 FROM receipts r WHERE r.receipt_id = l.receipt_id)
             ORDER BY l.receipt_id",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut docs = Vec::with_capacity(missing.len());
    for raw in missing {
        let checked = serde_json::from_str::<super::records::Receipt>(&raw)
            .ok()
            .and_then(|r| r.check().ok());
        match checked {
            Some(rec) => docs.push(Doc {
                raw: raw.clone(),
                rec,
            }),
            None => {
                tracing::error!("a local receipt no longer passes the receipt checks; not restored")
            }
        }
    }
    if docs.is_empty() {
        return Ok(0);
    }
    let (added, removed) = write_records(conn, Feed::Receipts, Target::Live, &local_batch(docs))?;
    Ok(added - removed)
}

/// Notes why the pull worker could not apply a batch (shown in status until the next success).
pub fn record_pull_error(
    conn: &Connection,
    feed: Feed,
    error: &str,
    now: &str,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE feed_state SET last_error = ?2, last_error_at = ?3 WHERE feed = ?1",
        params![feed.as_str(), error, now],
    )
    .map(drop)
}

pub fn clear_pull_error(conn: &Connection, feed: Feed) -> rusqlite::Result<()> {
    conn.execute("UPDATE feed_state SET last_error = NULL, last_error_at = NULL WHERE feed = ?1 AND last_error IS NOT NULL", [feed.as_str()])
        .map(drop)
}

/// One feed's freshness, for status and the pull worker.
#[derive(Debug, Clone, Serialize)]
pub struct FeedStatus {
    pub last_batch: u64,
    pub applied_at: Option<String>,
    pub records: i64,
    pub snapshot_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_snapshot: Option<SnapshotProgress>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error_at: Option<String>,
    /// The last time central answered a pull of this feed to the end (pull mode): the copy
    /// was current as of then, even if no batch came.
    pub checked_at: Option<String>,
    /// How current central said HQ's data behind the feed was, in that answer (when it says).
    pub source_as_of: Option<String>,
}

/// A pull of `feed` reached central's last batch at `now`; central said its data was current
/// as of `source_as_of` (when it said).
pub fn record_checked(
    conn: &Connection,
    feed: Feed,
    now: &str,
    source_as_of: Option<&str>,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE feed_state SET checked_at = ?2, source_as_of = ?3 WHERE feed = ?1",
        params![feed.as_str(), now, source_as_of],
    )
    .map(drop)
}

pub fn feed_status(conn: &Connection, feed: Feed) -> rusqlite::Result<FeedStatus> {
    conn.query_row(
        "SELECT last_batch, applied_at, records, snapshot_at, pending_id, pending_part,
                pending_parts, pending_records, last_error, last_error_at, checked_at, source_as_of
         FROM feed_state WHERE feed = ?1",
        [feed.as_str()],
        |r| {
            let pending_id: Option<String> = r.get(4)?;
            Ok(FeedStatus {
                last_batch: r.get(0)?,
                applied_at: r.get(1)?,
                records: r.get(2)?,
                snapshot_at: r.get(3)?,
                pending_snapshot: match pending_id {
                    Some(id) => Some(SnapshotProgress {
                        id,
                        part: r.get(5)?,
                        parts: r.get(6)?,
                        complete: false,
                        staged_records: r.get(7)?,
                    }),
                    None => None,
                },
                last_error: r.get(8)?,
                last_error_at: r.get(9)?,
                checked_at: r.get(10)?,
                source_as_of: r.get(11)?,
            })
        },
    )
    .optional()
    .map(|s| {
        s.unwrap_or(FeedStatus {
            last_batch: 0,
            applied_at: None,
            records: 0,
            snapshot_at: None,
            pending_snapshot: None,
            last_error: None,
            last_error_at: None,
            checked_at: None,
            source_as_of: None,
        })
    })
}
