//! `POST /v1/stores/{store}/journal`: a batch lands in one PostgreSQL transaction, and the
//! answer is sent only after COMMIT. Per entry: `accepted`, `duplicate` (never a second
//! row: the primary key is store + entry id), `rejected` (`hash_mismatch`, `chain_fork`,
//! `store_mismatch`, `invalid_entry`) or `conflict` (`order_cancelled`), in the shape the
//! store's uplink reads (`src/journal/uplink.rs`).
//!
//! The store's row is locked for the transaction, so one store's batches land one at a time
//! across every hub process, while different stores land in parallel.

use std::collections::{BTreeSet, HashMap};

use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use serde_json::value::RawValue;
use tokio_postgres::Statement;
use tokio_postgres::types::ToSql;

use super::intake::{self, Decision, Incoming, Known, Link};
use super::{DbError, HubError, HubState};
use crate::journal::delivery::Outcome;

pub async fn post_journal(
    State(state): State<HubState>,
    Path(store): Path<String>,
    request: Request,
) -> Result<Response, HubError> {
    // The token was checked before this runs (`auth::store_guard`): a stranger's body is
    // never read. Nor is a store's while this process holds as many batches as it admits,
    // or as many bytes of them as `intake_memory_mib`: 5,000 stores pushing at once must not
    // all be read into memory to be refused.
    let deadline = tokio::time::Instant::now() + state.config.intake_deadline();
    let mut slot = state.take_share(&store, super::share::Kind::Journal)?;
    // The store's own turn first, before anything the fleet shares is taken: its batches
    // land one at a time anyway (they lock its row), so its others wait here holding
    // nothing of the fleet's, their bodies unread ([`super::share::Slot::store_turn`]).
    // Past the deadline: 429, the store's own doing (its earlier push still lands), not
    // the fleet's `busy`, which would move every store's `Retry-After` ([`super::pace`]).
    let Ok(Ok(store_turn)) =
        tokio::time::timeout_at(deadline, slot.store_turn().acquire_owned()).await
    else {
        return Err(state.past_share(&store));
    };
    let Ok(admitted) = state.intake_admitted.clone().try_acquire_owned() else {
        state.metrics.refused_busy();
        return Err(HubError::Busy(state.busy_retry_after(&store)));
    };
    let (body, memory) = super::body::read(
        &state,
        &mut slot,
        request.into_body(),
        super::MAX_BODY_BYTES,
        deadline,
    )
    .await
    .map_err(|e| {
        e.into_error(&state, &store, || {
            state.metrics.refused_busy();
            state.busy_retry_after(&store)
        })
    })?;
    // Read as text slices, not a `Value` tree: each well-formed entry is deserialised once,
    // straight from its own text ([`Incoming::read_raw`]).
    let not_array = || HubError::invalid("entries", "entries must be an array");
    let top: HashMap<std::borrow::Cow<str>, &RawValue> = match serde_json::from_slice(&body) {
        Ok(top) => top,
        Err(e) if e.is_data() => return Err(not_array()),
        Err(e) => return Err(HubError::BadJson(e.to_string())),
    };
    let raw: Vec<&RawValue> = top
        .get("entries")
        .and_then(|r| serde_json::from_str(r.get()).ok())
        .ok_or_else(not_array)?;
    if raw.len() > state.config.max_entries_per_request {
        return Err(HubError::invalid(
            "entries",
            format!(
                "at most {} entries per request",
                state.config.max_entries_per_request
            ),
        ));
    }
    let mut incoming = Vec::with_capacity(raw.len());
    for (i, e) in raw.iter().enumerate() {
        let no_id =
            || HubError::invalid(format!("entries[{i}].id"), "each entry needs a string id");
        incoming.push(
            Incoming::read_raw(e)
                .map_err(|_| no_id())?
                .ok_or_else(no_id)?,
        );
    }
    // Politeness: a bounded number of intake transactions reach PostgreSQL at once, and a
    // bounded number more wait for a turn; beyond both, busy at once. Waiting and landing
    // share one deadline, answered before the store stops waiting (`intake_deadline_ms`).
    //
    // A batch whose deadline passes while it waits never starts. One whose deadline passes
    // while it lands is answered busy but finishes in the background, holding its turn: its
    // resend is then answered `duplicate`. Dropping it mid-transaction instead (as before
    // 2026-12-07) closed its connection ([`super::db::Exclusive`]) and threw its work away
    // exactly when the hub was most behind: in a 2,000,000-entry drain 101,221 batches were
    // answered busy at the deadline, and every landing cut short cost PostgreSQL a new
    // connection as well as the batch's work done again.
    // Every turn taken, and the pushes waiting (this one included) cannot all land within
    // the deadline at what landings of their size have just been taking here ([`super::pace`]
    // fits a part per push and a part per entry): busy now, not after holding
    // the store for the whole deadline. An overloaded hub (5,000 stores on 6 threads against
    // 2 cores, `cargo bench --bench fleet`) otherwise answered most pushes at the deadline,
    // intake p50 2,965 ms, and those that got their turn just before it finished in the
    // background and came back as duplicates. Unknown (nothing landed lately): they wait.
    // Refused past three quarters of the deadline, leaving room for the estimate to be
    // short: in the same bench (2,000,000 entries, one run each) the whole deadline gave a
    // 201.9 s drain with 532,800 entries answered `duplicate`, three quarters 175.9 s and
    // 227,000 (without the check: 423.2 s and 1,089,200).
    let at_once = state.config.intake_at_once.max(1);
    let queued = state.pace.queued(incoming.len());
    if state.intake_permits.available_permits() == 0 {
        let ahead = state.intake_held().saturating_sub(at_once).max(1);
        if state
            .pace
            .expected_wait_ms(ahead as u64, at_once as u64)
            .is_some_and(|ms| ms > state.config.intake_deadline_ms * 3 / 4)
        {
            drop(admitted);
            state.metrics.refused_busy();
            state.metrics.refused_expected_wait();
            return Err(HubError::Busy(state.busy_retry_after(&store)));
        }
    }
    // An id that is not text is answered as it was sent ([`intake::id_not_text`]); the
    // body is let go before the batch waits, so those few are copied now.
    let ids_as_sent: HashMap<usize, Box<RawValue>> = incoming
        .iter()
        .enumerate()
        .filter(|(_, i)| intake::id_not_text(i))
        .filter_map(|(n, _)| {
            let sent: intake::IdAsSent = serde_json::from_str(raw[n].get()).ok()?;
            Some((n, sent.id.to_owned()))
        })
        .collect();
    drop(raw);
    drop(body);
    let turn = tokio::time::timeout_at(deadline, state.intake_permits.clone().acquire_owned());
    let Ok(Ok(permit)) = turn.await else {
        return Err(not_landed_in_time(&state, &store, "waiting for its turn"));
    };
    drop(queued);
    let mut landing = tokio::spawn({
        let (state, store) = (state.clone(), store.clone());
        async move {
            let _turn = (slot, store_turn, admitted, permit, memory);
            let started = std::time::Instant::now();
            let landed = land(&state, &store, &incoming).await;
            if let Ok(decisions) = &landed {
                state.metrics.count(decisions);
                state.pace.landed(started.elapsed(), incoming.len());
            }
            landed
        }
    });
    let landed = match tokio::time::timeout_at(deadline, &mut landing).await {
        Ok(Ok(landed)) => landed,
        Ok(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Ok(Err(_)) => return Err(not_landed_in_time(&state, &store, "cancelled")),
        Err(_) => {
            return Err(not_landed_in_time(
                &state,
                &store,
                "landing; it finishes in the background",
            ));
        }
    };
    let decisions = landed.map_err(|e| {
        let err = state.db_error(&store, super::metrics::Work::Journal, e);
        if matches!(err, HubError::Unavailable { .. }) {
            state.metrics.refused_unavailable();
        }
        err
    })?;
    #[derive(serde::Serialize)]
    #[serde(untagged)]
    enum Id<'a> {
        Text(&'a str),
        AsSent(&'a RawValue),
    }
    #[derive(serde::Serialize)]
    struct Answer<'a> {
        id: Id<'a>,
        outcome: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        field: Option<&'a str>,
    }
    #[derive(serde::Serialize)]
    struct Answers<'a> {
        results: Vec<Answer<'a>>,
    }
    let results = decisions
        .iter()
        .enumerate()
        .map(|(n, d)| Answer {
            id: ids_as_sent
                .get(&n)
                .map_or(Id::Text(&d.id), |sent| Id::AsSent(sent)),
            outcome: d.outcome.as_str(),
            reason: d.reason.as_deref(),
            field: d.field.as_deref(),
        })
        .collect();
    Ok(axum::Json(Answers { results }).into_response())
}

/// A batch past `intake_deadline_ms`: answered busy, with the `Retry-After` the hub's pace
/// gives.
fn not_landed_in_time(state: &HubState, store: &str, while_: &str) -> HubError {
    state.metrics.refused_busy();
    tracing::warn!(
        store,
        deadline_ms = state.config.intake_deadline_ms,
        "journal batch not landed in time ({while_}); answered busy"
    );
    HubError::Busy(state.busy_retry_after(store))
}

/// Decides and writes one batch; returns after COMMIT.
///
/// Three round trips to PostgreSQL in the common case, whatever the batch (eight at first):
/// 1. BEGIN, the store's row lock and every read the rules need, pipelined in that order
///    (PostgreSQL runs a connection's statements one after another, so the reads run after
///    the lock is held and see every earlier batch of this store committed);
/// 2. the new rows, the re-sent ones' count and, unless the reads already settle where the
///    verified prefix ends ([`intake::advance_known`]), the first page of the chain after it;
/// 3. the store's row and COMMIT.
///
/// Every statement is prepared once per connection before its flight, so a flight goes out
/// in the order written. The transaction is the connection's own (BEGIN sent with the first
/// flight): any early return drops the [`super::db::Exclusive`] connection unfinished,
/// which closes it, and PostgreSQL rolls back.
pub async fn land(
    state: &HubState,
    store: &str,
    incoming: &[Incoming],
) -> Result<Vec<Decision>, DbError> {
    let client = super::db::Exclusive::get(&state.intake_pool).await?;
    let c: &Client = &client;
    let lock = c
        .prepare_cached(
            "SELECT verified_seq, verified_hash, set_aside FROM stores WHERE store_id = $1 FOR UPDATE",
        )
        .await?;
    let reads = c.prepare_cached(READS).await?;
    let cancelled = c.prepare_cached(CANCELLED).await?;
    let keys = Keys::of(incoming);
    let lock_params: [&(dyn ToSql + Sync); 1] = [&store];
    let (_, row, mut known) = tokio::try_join!(
        biased;
        c.batch_execute(BEGIN),
        c.query_opt(&lock, &lock_params),
        read(c, (&reads, &cancelled), store, &keys)
    )?;
    let Some(row) = row else {
        return Err(DbError::Bug(format!("store {store} vanished")));
    };
    let verified: (i64, String) = (row.get(0), row.get(1));
    let mut decisions = intake::decide(store, incoming, &mut known);
    let set_aside = intake::keep_within(
        &mut decisions,
        row.get(2),
        state.config.set_aside_kept_per_store,
    );
    let resent: Vec<&str> = decisions
        .iter()
        .filter(|d| d.again)
        .map(|d| d.id.as_str())
        .collect();
    let arrivals = c
        .prepare_cached(
            "UPDATE journal_entries SET arrivals = arrivals + 1
             WHERE store_id = $1 AND id = ANY($2)",
        )
        .await?;
    let insert = c.prepare_cached(INSERT).await?;
    // Where the verified prefix now ends, from what the reads and decisions know; the chain
    // is read from PostgreSQL only when they do not settle it.
    let settled = intake::advance_known(verified.clone(), &known.chain, &keys.seqs);
    let page = c.prepare_cached(CHAIN_PAGE).await?;
    let page_params: [&(dyn ToSql + Sync); 3] = [&store, &verified.0, &PAGE];
    let (_, _, first_page) = tokio::try_join!(
        biased;
        insert_new(&insert, c, store, incoming, &decisions),
        async {
            if resent.is_empty() {
                Ok(0)
            } else {
                c.execute(&arrivals, &[&store, &resent]).await
            }
        },
        async {
            match settled {
                Some(_) => Ok(None),
                None => c.query(&page, &page_params).await.map(Some),
            }
        }
    )?;
    let fork = decisions
        .iter()
        .zip(incoming)
        .find(|(d, _)| d.fork)
        .map(|(_, i)| match i {
            Incoming::Entry { entry, .. } => format!("chain_fork at seq {}", entry.seq),
            Incoming::Unreadable { .. } => "chain_fork".to_owned(),
        });
    let (new_verified, broken) = match (settled, first_page) {
        (Some(settled), _) => settled,
        (None, first_page) => {
            advance_prefix(c, store, verified.clone(), first_page.unwrap_or_default()).await?
        }
    };
    let flag = fork.or(broken.map(|s| format!("chain broken at seq {s}")));
    let update = c
        .prepare_cached(
            "UPDATE stores SET verified_seq = $2, verified_hash = $3, last_contact_at = now(),
                 flagged_at = CASE WHEN $4::text IS NULL THEN flagged_at
                                   ELSE coalesce(flagged_at, now()) END,
                 flag_reason = coalesce($4::text, flag_reason),
                 set_aside = set_aside + $5, set_aside_not_kept = set_aside_not_kept + $6
             WHERE store_id = $1",
        )
        .await?;
    // COMMIT goes with the update. Were the update to fail, PostgreSQL would answer the
    // COMMIT of the aborted transaction with a rollback; the update's error returns first.
    let update_params: [&(dyn ToSql + Sync); 6] = [
        &store,
        &new_verified.0,
        &new_verified.1,
        &flag,
        &set_aside.kept,
        &set_aside.not_kept,
    ];
    tokio::try_join!(
        biased;
        c.execute(&update, &update_params),
        c.batch_execute("COMMIT")
    )?;
    client.finished();
    state.metrics.set_aside_not_kept(set_aside.not_kept);
    if set_aside.not_kept > 0 {
        tracing::warn!(
            store,
            not_kept = set_aside.not_kept,
            cap = state.config.set_aside_kept_per_store,
            "rejected entries answered but not kept: the store has as many set aside as a store may"
        );
    }
    if let Some(f) = &flag {
        tracing::warn!(store, flag = %f, "store flagged: its journal chain does not verify");
    }
    Ok(decisions)
}

/// A pooled connection's client, with its statement cache.
type Client = deadpool_postgres::ClientWrapper;

/// Opens the transaction. The intake's statements run their prepared (generic) plans: left
/// to choose, PostgreSQL planned each read of the partitioned `journal_entries` afresh at
/// every execution (a generic plan over all partitions looks dearer than one pruned to the
/// store's), and that planning was most of a batch's cost: about 150 µs for each of three
/// reads against 25–50 µs to run one (pg_stat_statements, `cargo bench --bench hub_intake`
/// with `BENCH_PG_STATEMENTS`). A generic plan prunes to the store's partition when it
/// starts. `SET LOCAL`: for this transaction only. The cost: a generic plan locks every
/// partition (8; within PostgreSQL's per-session fast-path lock slots once cached), so a
/// strong lock on one partition (a plain `CREATE INDEX`, `REINDEX`, `ALTER TABLE`) holds up
/// every store's intake, not an eighth (README, "Scaling out").
const BEGIN: &str = "BEGIN; SET LOCAL plan_cache_mode = force_generic_plan";

/// What the reads look up: the batch's ids, the seqs around its entries, and the orders
/// its hand-overs name.
struct Keys<'a> {
    ids: Vec<&'a str>,
    seqs: Vec<i64>,
    orders: Vec<&'a str>,
}

impl<'a> Keys<'a> {
    fn of(incoming: &'a [Incoming]) -> Self {
        // An id too long to keep is never read for either (`intake::MAX_ID_BYTES`).
        let ids: Vec<&str> = incoming
            .iter()
            .map(Incoming::id)
            .filter(|id| id.len() <= intake::MAX_ID_BYTES)
            .collect();
        let mut seqs = BTreeSet::new();
        let mut orders = Vec::new();
        for i in incoming {
            if let Incoming::Entry { entry, .. } = i {
                seqs.extend([
                    entry.seq.saturating_sub(1),
                    entry.seq,
                    entry.seq.saturating_add(1),
                ]);
                if entry.kind == "pickup.handed_over" {
                    if let Some(o) = entry.body.get("order_id").and_then(Value::as_str) {
                        orders.push(o);
                    }
                }
            }
        }
        Keys {
            ids,
            seqs: seqs.into_iter().collect(),
            orders,
        }
    }
}

/// The rows the rules need ([`Known`]) in one statement: every earlier answer to the batch's
/// ids, and every landed link at the seqs around its entries. The last column says which
/// a row was asked for as; a row can be both.
const READS: &str = "SELECT id, outcome, reason, seq, prev_hash, hash, id = ANY($2)
     FROM journal_entries
     WHERE store_id = $1 AND (id = ANY($2) OR (seq = ANY($3) AND outcome <> 'rejected'))";

/// The cancelled orders among those the batch's hand-overs name.
const CANCELLED: &str = "SELECT key FROM feed_records
     WHERE store_id = $1 AND feed = 'pickup_orders' AND key = ANY($2)
       AND NOT deleted AND record->>'status' = 'cancelled'";

/// The reads, in one flight: [`READS`], then [`CANCELLED`] when the batch hands over orders.
async fn read(
    c: &Client,
    (reads, cancelled): (&Statement, &Statement),
    store: &str,
    keys: &Keys<'_>,
) -> Result<Known, tokio_postgres::Error> {
    let params: [&(dyn ToSql + Sync); 3] = [&store, &keys.ids, &keys.seqs];
    let (rows, cancelled) = tokio::try_join!(
        biased;
        c.query(reads, &params),
        async {
            if keys.orders.is_empty() {
                Ok(Vec::new())
            } else {
                c.query(cancelled, &[&store, &keys.orders]).await
            }
        }
    )?;
    let mut known = Known::default();
    for r in rows {
        let (id, outcome, asked_by_id): (String, &str, bool) = (r.get(0), r.get(1), r.get(6));
        let (seq, prev_hash, hash): (Option<i64>, Option<String>, Option<String>) =
            (r.get(3), r.get(4), r.get(5));
        if let (Some(seq), Some(prev_hash), Some(hash), false) =
            (seq, prev_hash, hash, outcome == "rejected")
        {
            if keys.seqs.binary_search(&seq).is_ok() {
                known.chain.insert(
                    seq,
                    Link {
                        id: id.clone(),
                        prev_hash,
                        hash,
                    },
                );
            }
        }
        if asked_by_id {
            let outcome = match outcome {
                "accepted" => Outcome::Accepted,
                "conflict" => Outcome::Conflict,
                _ => Outcome::Rejected,
            };
            let hash = r
                .get::<_, Option<String>>(5)
                .filter(|_| outcome != Outcome::Rejected);
            known.answers.insert(
                id,
                intake::Answer {
                    outcome,
                    reason: r.get(2),
                    hash,
                },
            );
        }
    }
    known
        .cancelled_orders
        .extend(cancelled.into_iter().map(|r| r.get(0)));
    Ok(known)
}

/// All new rows in one statement (arrays unnested), whatever the batch size.
const INSERT: &str =
    "INSERT INTO journal_entries (store_id, id, seq, lane, kind, occurred_at, actor, device,
             body_canonical, body, prev_hash, hash, outcome, reason)
         SELECT $1, id, seq, lane, kind, occurred_at, actor, device, body_canonical,
             coalesce(body_canonical, body_as_sent)::jsonb, prev_hash, hash, outcome, reason
         FROM unnest($2::text[], $3::int8[], $4::text[], $5::text[], $6::text[], $7::text[],
             $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[],
             $14::text[])
             AS t(id, seq, lane, kind, occurred_at, actor, device, body_canonical, body_as_sent,
                  prev_hash, hash, outcome, reason)";

/// The new rows as columns borrowed from the batch (nothing copied before the wire). An
/// entry's stored body is its canonical text, sent once; an unreadable one's is its text as
/// sent (`body_as_sent`, null for the others).
async fn insert_new(
    stmt: &Statement,
    client: &Client,
    store: &str,
    incoming: &[Incoming],
    decisions: &[Decision],
) -> Result<u64, tokio_postgres::Error> {
    #[derive(Default)]
    struct Cols<'a> {
        id: Vec<&'a str>,
        seq: Vec<Option<i64>>,
        lane: Vec<Option<&'a str>>,
        kind: Vec<Option<&'a str>>,
        occurred_at: Vec<Option<&'a str>>,
        actor: Vec<Option<&'a str>>,
        device: Vec<Option<&'a str>>,
        body_canonical: Vec<Option<&'a str>>,
        body_as_sent: Vec<Option<String>>,
        prev_hash: Vec<Option<&'a str>>,
        hash: Vec<Option<&'a str>>,
        outcome: Vec<&'static str>,
        reason: Vec<Option<&'a str>>,
    }
    let mut c = Cols::default();
    for (d, i) in decisions.iter().zip(incoming).filter(|(d, _)| d.new) {
        c.id.push(&d.id);
        c.outcome.push(d.outcome.as_str());
        c.reason.push(d.reason.as_deref());
        match i {
            Incoming::Entry {
                entry: e,
                body_canonical,
            } => {
                c.seq.push(Some(e.seq));
                c.lane.push(Some(e.lane.as_str()));
                c.kind.push(Some(&e.kind));
                c.occurred_at.push(Some(&e.occurred_at));
                c.actor.push(e.actor.as_deref());
                c.device.push(e.device.as_deref());
                c.body_canonical.push(Some(body_canonical));
                c.body_as_sent.push(None);
                c.prev_hash.push(Some(&e.prev_hash));
                c.hash.push(Some(&e.hash));
            }
            Incoming::Unreadable { raw, .. } => {
                // Kept whole, as sent, for the person who looks at it.
                c.seq.push(None);
                c.lane.push(None);
                c.kind.push(None);
                c.occurred_at.push(None);
                c.actor.push(None);
                c.device.push(None);
                c.body_canonical.push(None);
                c.body_as_sent.push(Some(raw.to_string()));
                c.prev_hash.push(None);
                c.hash.push(None);
            }
        }
    }
    if c.id.is_empty() {
        return Ok(0);
    }
    client
        .execute(
            stmt,
            &[
                &store,
                &c.id,
                &c.seq,
                &c.lane,
                &c.kind,
                &c.occurred_at,
                &c.actor,
                &c.device,
                &c.body_canonical,
                &c.body_as_sent,
                &c.prev_hash,
                &c.hash,
                &c.outcome,
                &c.reason,
            ],
        )
        .await
}

/// The landed links after a verified seq, a page at a time.
const CHAIN_PAGE: &str = "SELECT seq, prev_hash, hash FROM journal_entries
     WHERE store_id = $1 AND seq > $2 AND seq <= $2 + $3 AND outcome <> 'rejected'
     ORDER BY seq";
const PAGE: i64 = 2_000;

/// Moves the store's verified prefix over every contiguous landed link after it, starting
/// from `rows`, the first page ([`CHAIN_PAGE`] after `verified`), read with the batch's rows.
async fn advance_prefix(
    c: &Client,
    store: &str,
    mut verified: (i64, String),
    mut rows: Vec<tokio_postgres::Row>,
) -> Result<((i64, String), Option<i64>), tokio_postgres::Error> {
    loop {
        let full = rows.len() as i64 == PAGE;
        let links = rows
            .into_iter()
            .map(|r| (r.get::<_, i64>(0), r.get(1), r.get(2)));
        let before = verified.0;
        let (next, broken) = intake::advance(verified, links);
        verified = next;
        if broken.is_some() || !full || verified.0 < before + PAGE {
            return Ok((verified, broken));
        }
        rows = c
            .query(
                &c.prepare_cached(CHAIN_PAGE).await?,
                &[&store, &verified.0, &PAGE],
            )
            .await?;
    }
}

/// Per-store verified prefix and flags, for `/v1/fleet` and the tests.
pub async fn verified(
    client: &tokio_postgres::Client,
) -> Result<HashMap<String, (i64, Option<String>)>, tokio_postgres::Error> {
    Ok(client
        .query(
            "SELECT store_id, verified_seq, flag_reason FROM stores",
            &[],
        )
        .await?
        .into_iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect())
}
