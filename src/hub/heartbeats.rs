//! Heartbeats written in groups: every heartbeat waiting when a write starts goes into that
//! one statement, and each is answered only after it commits (autocommit: the statement is
//! its transaction). A fleet of 5,000 stores at a 5 s interval sends 1,000 heartbeats a
//! second; one statement each was a PostgreSQL parse, plan and commit each, the largest
//! share of the database's CPU while a fleet drained its journals (`cargo bench --bench
//! fleet`, 2026-12-06). No timer: a group is whatever arrived while the previous one was
//! written, so a heartbeat on a quiet hub waits for nothing but its own write.
//!
//! One writer at a time per hub process, on its own task (a store hanging up does not stop
//! it). Within a group, the rows are locked in store order, so two hub processes' groups
//! cannot deadlock; a store that sent twice into one group is written once, its newest
//! report kept and both counted. One store's heartbeat that PostgreSQL refuses fails only
//! that store's: a group refused for anything but PostgreSQL being away is written again
//! store by store. A write is given [`WRITE_WITHIN`]; one that takes longer is answered
//! as PostgreSQL being away and its connection closed, so a stuck statement cannot hold
//! every heartbeat of the process.

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::SecondsFormat;
use tokio::sync::oneshot;

use super::{DbError, HubState};

/// Most heartbeats, and bytes of their bodies, in one statement; more wait for the next.
const MAX_GROUP: usize = 2_000;
const MAX_GROUP_BYTES: usize = 8 * 1024 * 1024;

/// Heartbeats, and bytes of bodies, waiting for a write; beyond either a store is answered
/// busy.
const MAX_WAITING: usize = 20_000;
const MAX_WAITING_BYTES: usize = 64 * 1024 * 1024;
/// Heartbeats of one store waiting for a write; beyond it that store is answered 429. A
/// store sends one an interval; without this one store's token could fill the queue above
/// and get every other store's heartbeats answered busy (a hostile round, 2026-12-07).
pub const MAX_WAITING_PER_STORE: usize = 32;

/// How long one group's statement may take (under the stores' 5 s timeout).
const WRITE_WITHIN: std::time::Duration = std::time::Duration::from_secs(3);

/// One heartbeat as it will be stored.
pub struct Beat {
    pub store: String,
    pub sent_at: chrono::DateTime<chrono::Utc>,
    pub seq: i64,
    pub body: String,
}

struct Waiting {
    beat: Beat,
    done: oneshot::Sender<Result<(), DbError>>,
}

#[derive(Default)]
pub struct Writer {
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    waiting: std::collections::VecDeque<Waiting>,
    /// Bytes of the waiting heartbeats' bodies.
    bytes: usize,
    /// A task is writing (and will take what waits when it is done).
    writing: bool,
    /// Heartbeats in the group being written, until it is answered.
    in_group: usize,
    /// Waiting heartbeats by store (none kept for a store with none waiting).
    per_store: std::collections::HashMap<String, usize>,
}

/// Why a heartbeat was not stored.
pub enum Refused {
    /// Too many waiting already.
    Busy,
    /// This store has [`MAX_WAITING_PER_STORE`] waiting already.
    TooMany,
    Db(DbError),
}

impl Writer {
    /// Heartbeats not yet answered: waiting for a write, or in the group being written.
    pub fn unanswered(&self) -> usize {
        let q = self.queue();
        q.waiting.len() + q.in_group
    }

    /// The queue, locked (a panic elsewhere left it as consistent as the lock holder did).
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores `beat` with whatever else is waiting; returns after its COMMIT.
    pub async fn write(state: &HubState, beat: Beat) -> Result<(), Refused> {
        let (done, answer) = oneshot::channel();
        let lead = {
            let mut q = state.heartbeats.queue();
            if q.waiting.len() >= MAX_WAITING || q.bytes + beat.body.len() > MAX_WAITING_BYTES {
                return Err(Refused::Busy);
            }
            // Checked and counted under the one lock with the push.
            let own = q.per_store.entry(beat.store.clone()).or_default();
            if *own >= MAX_WAITING_PER_STORE {
                return Err(Refused::TooMany);
            }
            *own += 1;
            q.bytes += beat.body.len();
            q.waiting.push_back(Waiting { beat, done });
            !std::mem::replace(&mut q.writing, true)
        };
        if lead {
            tokio::spawn(write_groups(state.clone()));
        }
        match answer.await {
            Ok(r) => r.map_err(Refused::Db),
            // The writer task died (a panic): nothing is known to be stored.
            Err(_) => Err(Refused::Db(DbError::Transient(
                "heartbeat writer stopped".into(),
            ))),
        }
    }
}

/// If the task ends without clearing `writing` itself (a panic), a new writer takes what
/// still waits, or the next heartbeat starts one.
struct Writing {
    state: HubState,
    cleared: bool,
}

impl Drop for Writing {
    fn drop(&mut self) {
        if self.cleared {
            return;
        }
        let mut q = self.state.heartbeats.queue();
        q.in_group = 0;
        if q.waiting.is_empty() {
            q.writing = false;
        } else if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(write_groups(self.state.clone()));
        } else {
            q.writing = false;
        }
    }
}

async fn write_groups(state: HubState) {
    let mut writing = Writing {
        state: state.clone(),
        cleared: false,
    };
    loop {
        let group: Vec<Waiting> = {
            let mut q = state.heartbeats.queue();
            if q.waiting.is_empty() {
                // Under the lock: a heartbeat arriving after this starts the next writer.
                q.writing = false;
                q.in_group = 0;
                writing.cleared = true;
                return;
            }
            let (mut n, mut bytes) = (0, 0);
            for w in &q.waiting {
                if n == MAX_GROUP || (n > 0 && bytes + w.beat.body.len() > MAX_GROUP_BYTES) {
                    break;
                }
                n += 1;
                bytes += w.beat.body.len();
            }
            q.bytes -= bytes;
            q.in_group = n;
            let group: Vec<Waiting> = q.waiting.drain(..n).collect();
            for w in &group {
                if let Some(own) = q.per_store.get_mut(&w.beat.store) {
                    *own -= 1;
                    if *own == 0 {
                        q.per_store.remove(&w.beat.store);
                    }
                }
            }
            group
        };
        // A heartbeat whose request is gone (its store hung up, or the request's timeout
        // dropped it) is not written: no report is written later than its request could be
        // answered, which the newest-report rule counts on ([`UPSERT`]).
        let (beats, answers): (Vec<Beat>, Vec<_>) = group
            .into_iter()
            .filter(|w| !w.done.is_closed())
            .map(|w| (w.beat, w.done))
            .unzip();
        if beats.is_empty() {
            state.heartbeats.queue().in_group = 0;
            continue;
        }
        let stores: Vec<&str> = beats.iter().map(|b| b.store.as_str()).collect();
        let result = write_group(&state, beats.iter().collect()).await;
        let answered: Vec<Result<(), DbError>> = match result {
            // Refused, and not because PostgreSQL is away: one store's heartbeat may be
            // what it refuses. Each store's again on its own, so only that one fails.
            Err(DbError::Bug(_)) if stores.iter().any(|s| *s != stores[0]) => {
                let mut by_store: BTreeMap<&str, Result<(), DbError>> = BTreeMap::new();
                for &store in &stores {
                    if by_store.contains_key(store) {
                        continue;
                    }
                    let own = beats.iter().filter(|b| b.store == store).collect();
                    by_store.insert(store, write_group(&state, own).await);
                }
                stores.iter().map(|s| by_store[s].clone()).collect()
            }
            r => vec![r; stores.len()],
        };
        state.heartbeats.queue().in_group = 0;
        for (a, r) in answers.into_iter().zip(answered) {
            let _ = a.send(r);
        }
    }
}

/// One statement for the group: per store its newest report (by `sent_at`, then `seq`,
/// against what is stored too) and the count of heartbeats. `sent_at` is never later than
/// when the hub took the heartbeat (`fleet::post_status`); a stored one that is (written
/// before that rule) ranks as of when it was received.
async fn write_group(state: &HubState, beats: Vec<&Beat>) -> Result<(), DbError> {
    let mut newest: BTreeMap<&str, (&Beat, i64)> = BTreeMap::new();
    for b in beats {
        match newest.get_mut(b.store.as_str()) {
            Some((kept, n)) => {
                *n += 1;
                if (b.sent_at, b.seq) >= (kept.sent_at, kept.seq) {
                    *kept = b;
                }
            }
            None => {
                newest.insert(&b.store, (b, 1));
            }
        }
    }
    let (mut ids, mut sent_at, mut seq, mut body, mut count) =
        (vec![], vec![], vec![], vec![], vec![]);
    // BTreeMap: store order, the lock order every group shares.
    for (id, (b, n)) in newest {
        ids.push(id);
        sent_at.push(b.sent_at.to_rfc3339_opts(SecondsFormat::Micros, true));
        seq.push(b.seq);
        body.push(b.body.as_str());
        count.push(n);
    }
    let client = super::db::Exclusive::get(&state.intake_pool).await?;
    let late_within = state.config.request_timeout_secs as f64;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
        [&ids, &sent_at, &seq, &body, &count, &late_within];
    let write = async {
        let stmt = client.prepare_cached(UPSERT).await?;
        client.execute(&stmt, &params).await
    };
    let written = tokio::time::timeout(WRITE_WITHIN, write).await;
    match written {
        Ok(done) => {
            done?;
            client.finished();
            Ok(())
        }
        // The connection is closed as `client` drops (`Exclusive`).
        Err(_) => Err(DbError::Transient(format!(
            "heartbeat group not written within {WRITE_WITHIN:?}"
        ))),
    }
}

/// The newest report wins: by `sent_at`, then `seq`, against the stored one. Ranking by the
/// store's clock keeps a heartbeat that arrives late (through the other hub process) from
/// overwriting a newer one; but a heartbeat taken more than `$6` seconds after the stored
/// one (`request_timeout_secs`: no request is answered later than that) cannot be an older
/// one arriving late, so it wins whatever its clock says: a store whose clock was set back
/// is not frozen at its last report until its clock catches up.
const UPSERT: &str = "INSERT INTO store_status AS s (store_id, sent_at, seq, body, heartbeats)
     SELECT id, at::timestamptz, seq, body::jsonb, n
     FROM unnest($1::text[], $2::text[], $3::int8[], $4::text[], $5::int8[])
          AS v(id, at, seq, body, n)
     ON CONFLICT (store_id) DO UPDATE SET
         last_contact = now(),
         heartbeats = s.heartbeats + excluded.heartbeats,
         received_at = CASE WHEN (excluded.sent_at, excluded.seq) >= (least(s.sent_at, s.received_at), s.seq)
                                 OR s.received_at < now() - make_interval(secs => $6)
             THEN now() ELSE s.received_at END,
         body = CASE WHEN (excluded.sent_at, excluded.seq) >= (least(s.sent_at, s.received_at), s.seq)
                          OR s.received_at < now() - make_interval(secs => $6)
             THEN excluded.body ELSE s.body END,
         seq = CASE WHEN (excluded.sent_at, excluded.seq) >= (least(s.sent_at, s.received_at), s.seq)
                         OR s.received_at < now() - make_interval(secs => $6)
             THEN excluded.seq ELSE s.seq END,
         sent_at = CASE WHEN s.received_at < now() - make_interval(secs => $6)
             THEN excluded.sent_at
             ELSE greatest(excluded.sent_at, least(s.sent_at, s.received_at)) END";
