//! Feeds out: what HQ imports (`standin hub import FEED FILE`) becomes, per store and feed,
//! numbered batches in the push body's shape. A store's first pull gets a snapshot in
//! parts; later pulls get deltas of what changed since its last batch. Batches are kept
//! once made, so `after=n` returns the same batch n+1 every time. Every page carries `as_of`,
//! the feed's last import: HQ's data is that current.

use std::collections::HashMap;
use std::io::BufRead;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{DbError, HubError, HubState};
use crate::feeds::Feed;

/// The field that names a record in each feed (API.md "Feed records").
pub fn key_field(feed: Feed) -> &'static str {
    match feed {
        Feed::PickupOrders => "order_id",
        Feed::Receipts => "receipt_id",
        Feed::Staff => "employee_id",
        Feed::Devices => "device_id",
        Feed::Policy => "key",
    }
}

/// One imported line, checked.
#[derive(Debug)]
pub struct ImportRecord {
    /// '' for a policy record without `store_id`: it belongs to every store.
    pub store_id: String,
    pub key: String,
    pub record: String,
    pub deleted: bool,
}

/// Reads and checks one line: a record in the feed's shape (checked by the same code that
/// checks a batch at the store), naming its store; or `{"deleted": true, KEY, "store_id"}`.
pub fn read_line(feed: Feed, line: &str) -> Result<ImportRecord, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let obj = v.as_object().ok_or("a record is a JSON object")?;
    let key_name = key_field(feed);
    let key = obj
        .get(key_name)
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| format!("{key_name} must be a non-empty string"))?
        .to_owned();
    let store_id = match obj.get("store_id") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        None if feed == Feed::Policy => String::new(),
        _ => {
            return Err(format!(
                "store_id must name the store this {feed} record is for"
            ));
        }
    };
    let deleted = obj.get("deleted").and_then(Value::as_bool).unwrap_or(false);
    if !deleted {
        let body = format!(r#"{{"batch":1,"kind":"delta","upserts":[{line}]}}"#);
        crate::feeds::batch::parse(feed, body.as_bytes()).map_err(|e| e.detail())?;
    }
    Ok(ImportRecord {
        store_id,
        key,
        record: v.to_string(),
        deleted,
    })
}

pub struct Imported {
    pub lines: usize,
    pub changed: u64,
}

/// Imports every line in one transaction: all or nothing, the first bad line named.
pub async fn import(
    client: &mut tokio_postgres::Client,
    feed: Feed,
    input: impl BufRead,
) -> anyhow::Result<Imported> {
    // Last line for a (store, key) wins; one INSERT cannot touch a row twice.
    let mut records: Vec<ImportRecord> = Vec::new();
    let mut at: HashMap<(String, String), usize> = HashMap::new();
    let mut lines = 0;
    for (n, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        lines += 1;
        let r = read_line(feed, &line).map_err(|e| anyhow::anyhow!("line {}: {e}", n + 1))?;
        match at.get(&(r.store_id.clone(), r.key.clone())) {
            Some(&i) => records[i] = r,
            None => {
                at.insert((r.store_id.clone(), r.key.clone()), records.len());
                records.push(r);
            }
        }
    }
    let tx = client.transaction().await?;
    // Imports one at a time: change numbers then commit in order, so a store's delta that
    // saw change n has seen every change before it (readers are not blocked).
    tx.batch_execute("LOCK TABLE feed_records IN SHARE ROW EXCLUSIVE MODE")
        .await?;
    let mut changed = 0;
    for chunk in records.chunks(1_000) {
        let stores: Vec<&str> = chunk.iter().map(|r| r.store_id.as_str()).collect();
        let keys: Vec<&str> = chunk.iter().map(|r| r.key.as_str()).collect();
        let recs: Vec<&str> = chunk.iter().map(|r| r.record.as_str()).collect();
        let deleted: Vec<bool> = chunk.iter().map(|r| r.deleted).collect();
        // An unchanged record gets no new change number: re-importing a file sends nothing.
        changed += tx
            .execute(
                "INSERT INTO feed_records AS f (store_id, feed, key, record, deleted, version)
                 SELECT s, $1, k, r::jsonb, d, nextval('feed_change_seq')
                 FROM unnest($2::text[], $3::text[], $4::text[], $5::bool[]) AS t(s, k, r, d)
                 ON CONFLICT (store_id, feed, key) DO UPDATE
                   SET record = EXCLUDED.record, deleted = EXCLUDED.deleted,
                       version = EXCLUDED.version, updated_at = now()
                   WHERE f.record IS DISTINCT FROM EXCLUDED.record
                      OR f.deleted <> EXCLUDED.deleted",
                &[&feed.as_str(), &stores, &keys, &recs, &deleted],
            )
            .await?;
    }
    // HQ's data behind this feed is current as of this import, changed or not: an empty
    // file is HQ saying "nothing new" (the stores' `as_of`, see `serve`).
    tx.execute(
        "INSERT INTO feed_imports (feed, imported_at) VALUES ($1, now())
         ON CONFLICT (feed) DO UPDATE SET imported_at = greatest(feed_imports.imported_at, now())",
        &[&feed.as_str()],
    )
    .await?;
    tx.commit().await?;
    Ok(Imported { lines, changed })
}

/// `GET /v1/stores/{store}/feeds/{feed}/batches?after=n&limit=m`.
pub async fn get_batches(
    State(state): State<HubState>,
    Path((store, feed)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, HubError> {
    let feed = Feed::parse(&feed).ok_or_else(|| {
        HubError::NotFound(
            "unknown_feed",
            "no such feed: feeds are pickup_orders, receipts, staff, devices, policy".into(),
        )
    })?;
    let number = |name: &str, default: i64| -> Result<i64, HubError> {
        match q.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| HubError::Invalid {
                    code: "invalid_query",
                    field: name.into(),
                    message: format!("{name} must be a non-negative integer"),
                }),
        }
    };
    let after = number("after", 0)?;
    let limit = number("limit", 10)?.clamp(1, 100);
    let _slot = state.take_share(&store, super::share::Kind::Pull)?;
    let page = serve(&state, &store, feed, after, limit)
        .await
        .map_err(|e| state.db_error(&store, super::metrics::Work::FeedPull, e))?;
    let mut body = String::from(r#"{"batches":["#);
    body.push_str(&page.batches.join(","));
    body.push(']');
    if let Some(t) = page.as_of {
        body.push_str(&format!(
            r#","as_of":"{}""#,
            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ));
    }
    body.push('}');
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

/// One page of a store's feed.
pub struct Page {
    pub batches: Vec<String>,
    /// When HQ last imported the feed (none before its first import): the batches answer
    /// every change imported up to then.
    pub as_of: Option<DateTime<Utc>>,
}

/// A page of a store's batches after a number.
const BATCHES_AFTER: &str =
    "SELECT body FROM feed_batches WHERE store_id = $1 AND feed = $2 AND batch > $3
     ORDER BY batch LIMIT $4";

/// Batches after `after`, making new ones from the changes when the store has caught up.
///
/// A store that has caught up with nothing new (most pulls: every store pulls every feed
/// each interval) costs two prepared statements and no transaction: the first reads, in
/// one snapshot, when the feed was last imported, how far the store's newest batch reaches
/// and the newest change for the store, so only a store with changes waiting takes the
/// per-store lock that makes batches. (Before, every pull took that lock and ran eight
/// statements, each parsed anew: 89,000 pulls were most of PostgreSQL's work while 5,000
/// stores drained their journals, `cargo bench --bench fleet`, 2026-12-06.)
pub async fn serve(
    state: &HubState,
    store: &str,
    feed: Feed,
    after: i64,
    limit: i64,
) -> Result<Page, DbError> {
    // One deadline for the whole pull, however many runs it takes.
    let deadline = tokio::time::Instant::now() + super::db::SHARED_WORK_BOUND;
    let f = feed.as_str();
    let read = async |client: &mut deadpool_postgres::Object| -> Result<Vec<String>, DbError> {
        let read = client.prepare_cached(BATCHES_AFTER).await?;
        let rows = client.query(&read, &[&store, &f, &after, &limit]).await?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    };
    let (batches, as_of, caught_up) = state
        .pool
        .run_by(deadline, async |client| {
            // Read before the batches: every import committed by then is in what follows, so
            // `as_of` never claims more than the page holds.
            let head = client
                .prepare_cached(
                    "SELECT (SELECT extract(epoch FROM imported_at)::float8 FROM feed_imports
                     WHERE feed = $2),
                    (SELECT through_version FROM feed_batches WHERE store_id = $1 AND feed = $2
                     ORDER BY batch DESC LIMIT 1),
                    coalesce(greatest(
                        (SELECT max(version) FROM feed_records
                         WHERE store_id = $1 AND feed = $2),
                        (SELECT max(version) FROM feed_records
                         WHERE store_id = '' AND feed = $2)), 0)",
                )
                .await?;
            let head = client.query_one(&head, &[&store, &f]).await?;
            let as_of = head
                .get::<_, Option<f64>>(0)
                .and_then(|t| DateTime::from_timestamp_micros((t * 1e6) as i64));
            let (through, newest): (Option<i64>, i64) = (head.get(1), head.get(2));
            // Nothing changed past the newest batch (or nothing at all before the first).
            let caught_up = newest <= through.unwrap_or(0);
            Ok((read(client).await?, as_of, caught_up))
        })
        .await?;
    if batches.len() as i64 == limit || caught_up {
        return Ok(Page { batches, as_of });
    }
    materialise(state, store, feed, limit, deadline).await?;
    let batches = state.pool.run_by(deadline, read).await?;
    Ok(Page { batches, as_of })
}

/// Appends up to `want` batches for what changed since the last one (or the first
/// snapshot). Serialised per store and feed by an advisory lock, so two hub processes
/// never number two different batches alike.
async fn materialise(
    state: &HubState,
    store: &str,
    feed: Feed,
    want: i64,
    deadline: tokio::time::Instant,
) -> Result<(), DbError> {
    state
        .pool
        .run_by(deadline, async |client| {
            make_batches(state, client, store, feed, want).await
        })
        .await
}

/// [`materialise`]'s transaction.
async fn make_batches(
    state: &HubState,
    client: &mut deadpool_postgres::Object,
    store: &str,
    feed: Feed,
    want: i64,
) -> Result<(), DbError> {
    let tx = client.transaction().await?;
    let f = feed.as_str();
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2, 0))",
        &[&store, &f],
    )
    .await?;
    let last = tx
        .query_opt(
            "SELECT batch, through_version FROM feed_batches WHERE store_id = $1 AND feed = $2
             ORDER BY batch DESC LIMIT 1",
            &[&store, &f],
        )
        .await?
        .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1)));
    let (max_records, max_bytes) = (
        state.config.batch_records.max(1),
        state.config.batch_bytes.max(1),
    );
    let insert =
        "INSERT INTO feed_batches (store_id, feed, batch, kind, records, through_version, body)
                  VALUES ($1, $2, $3, $4, $5, $6, $7)";
    match last {
        None => {
            let through: i64 = tx
                .query_one(
                    "SELECT coalesce(max(version), 0) FROM feed_records
                     WHERE store_id IN ($1, '') AND feed = $2",
                    &[&store, &f],
                )
                .await?
                .get(0);
            if through == 0 {
                return Ok(tx.commit().await?);
            }
            let rows = tx
                .query(
                    "SELECT record::text FROM feed_records
                     WHERE store_id IN ($1, '') AND feed = $2 AND NOT deleted ORDER BY key",
                    &[&store, &f],
                )
                .await?;
            let records: Vec<String> = rows.into_iter().map(|r| r.get(0)).collect();
            let parts = split(&records, max_records, max_bytes);
            let id = format!("{f}-{through}");
            let total = parts.len().max(1);
            for (i, part) in parts.iter().enumerate() {
                let n = i as i64 + 1;
                let body = format!(
                    r#"{{"batch":{n},"kind":"snapshot","snapshot":{{"id":"{id}","part":{},"parts":{total}}},"upserts":[{}],"deletes":[]}}"#,
                    i + 1,
                    part.join(",")
                );
                tx.execute(
                    insert,
                    &[
                        &store,
                        &f,
                        &n,
                        &"snapshot",
                        &(part.len() as i32),
                        &through,
                        &body,
                    ],
                )
                .await?;
            }
        }
        Some((mut batch, mut through)) => {
            for _ in 0..want {
                let rows = tx
                    .query(
                        "SELECT key, record::text, deleted, version FROM feed_records
                         WHERE store_id IN ($1, '') AND feed = $2 AND version > $3
                         ORDER BY version LIMIT $4",
                        &[&store, &f, &through, &(max_records as i64)],
                    )
                    .await?;
                if rows.is_empty() {
                    break;
                }
                let (mut upserts, mut deletes, mut bytes) = (Vec::new(), Vec::new(), 0usize);
                for r in &rows {
                    let (key, record, deleted, version): (String, String, bool, i64) =
                        (r.get(0), r.get(1), r.get(2), r.get(3));
                    let size = if deleted {
                        key.len() + 3
                    } else {
                        record.len() + 1
                    };
                    if bytes + size > max_bytes && !(upserts.is_empty() && deletes.is_empty()) {
                        break;
                    }
                    bytes += size;
                    if deleted {
                        deletes.push(Value::String(key).to_string());
                    } else {
                        upserts.push(record);
                    }
                    through = version;
                }
                batch += 1;
                let body = format!(
                    r#"{{"batch":{batch},"kind":"delta","upserts":[{}],"deletes":[{}]}}"#,
                    upserts.join(","),
                    deletes.join(",")
                );
                let count = (upserts.len() + deletes.len()) as i32;
                tx.execute(
                    insert,
                    &[&store, &f, &batch, &"delta", &count, &through, &body],
                )
                .await?;
            }
        }
    }
    Ok(tx.commit().await?)
}

/// Consecutive parts of at most `max_records` records and (past the first record of a
/// part) `max_bytes` bytes; at least one part, possibly empty.
pub fn split(records: &[String], max_records: usize, max_bytes: usize) -> Vec<Vec<&str>> {
    let mut parts: Vec<Vec<&str>> = vec![Vec::new()];
    let mut bytes = 0;
    for r in records {
        let cur = parts.last_mut().expect("at least one part");
        if !cur.is_empty() && (cur.len() >= max_records || bytes + r.len() + 1 > max_bytes) {
            parts.push(Vec::new());
            bytes = 0;
        }
        bytes += r.len() + 1;
        parts.last_mut().expect("at least one part").push(r);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_respect_both_bounds_and_keep_order() {
        let recs: Vec<String> = (0..10).map(|i| format!("{i:0>9}")).collect();
        let p = split(&recs, 3, 1_000);
        assert_eq!(p.iter().map(Vec::len).collect::<Vec<_>>(), vec![3, 3, 3, 1]);
        let p = split(&recs, 100, 25);
        assert_eq!(
            p.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![2, 2, 2, 2, 2]
        );
        assert_eq!(
            p.concat(),
            recs.iter().map(String::as_str).collect::<Vec<_>>()
        );
        assert_eq!(split(&[], 3, 10).len(), 1);
    }

    #[test]
    fn an_import_line_names_its_store_except_policy() {
        let e = read_line(Feed::Staff, r#"{"employee_id":"e1","name":"A","role":"associate","pin_verifier":"x","active":true}"#).unwrap_err();
        assert!(e.contains("store_id"), "{e}");
        let p = read_line(Feed::Policy, r#"{"key":"offline_max_hours","value":4}"#).unwrap();
        assert_eq!(p.store_id, "");
        let d = read_line(
            Feed::PickupOrders,
            r#"{"order_id":"o1","store_id":"s1","deleted":true}"#,
        )
        .unwrap();
        assert!(d.deleted);
        assert!(read_line(Feed::PickupOrders, r#"{"order_id":"o1","store_id":"s1"}"#).is_err());
    }
}
