//! Parsing a feed batch: the envelope, then every record checked before anything is written.
//! One bad record refuses the whole batch, naming its index and field.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::Feed;
use super::records::{
    CheckedOrder, CheckedReceipt, Device, Invalid, PickupOrder, PolicyEntry, Receipt, StaffMember,
};
use crate::error::AppError;
use crate::http::describe_json_error as describe;

/// Most records one batch may carry; bigger loads come as more batches or snapshot parts.
pub const MAX_RECORDS: usize = 50_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchKind {
    Delta,
    Snapshot,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotPart {
    pub id: String,
    // `1` or `1.0`: JSON (and the OpenAPI document's "integer") make no difference.
    #[serde(deserialize_with = "crate::http::whole_number")]
    pub part: u32,
    #[serde(deserialize_with = "crate::http::whole_number")]
    pub parts: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope<'a> {
    #[serde(deserialize_with = "crate::http::whole_number")]
    batch: u64,
    kind: BatchKind,
    #[serde(default)]
    snapshot: Option<SnapshotPart>,
    #[serde(default, borrow)]
    upserts: Vec<&'a RawValue>,
    #[serde(default)]
    deletes: Vec<String>,
}

/// A record as checked, with the JSON exactly as HQ sent it.
pub struct Doc<T> {
    pub raw: String,
    pub rec: T,
}

pub enum Records {
    PickupOrders(Vec<Doc<CheckedOrder>>),
    Receipts(Vec<Doc<CheckedReceipt>>),
    Staff(Vec<Doc<StaffMember>>),
    Devices(Vec<Doc<Device>>),
    Policy(Vec<Doc<PolicyEntry>>),
}

impl Records {
    pub fn len(&self) -> usize {
        match self {
            Self::PickupOrders(v) => v.len(),
            Self::Receipts(v) => v.len(),
            Self::Staff(v) => v.len(),
            Self::Devices(v) => v.len(),
            Self::Policy(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A batch that passed every check and can be applied.
pub struct Batch {
    pub feed: Feed,
    pub number: u64,
    pub kind: BatchKind,
    pub snapshot: Option<SnapshotPart>,
    pub records: Records,
    pub deletes: Vec<String>,
}

/// Parses and checks a batch body for `feed`.
pub fn parse(feed: Feed, body: &[u8]) -> Result<Batch, AppError> {
    let env: Envelope = crate::http::from_json(body)?;
    if env.batch == 0 {
        return Err(AppError::bad_request(
            "batch",
            "batches are numbered from 1",
        ));
    }
    match (&env.kind, &env.snapshot) {
        (BatchKind::Snapshot, None) => {
            return Err(AppError::bad_request(
                "snapshot",
                "a snapshot batch needs {id, part, parts}",
            ));
        }
        (BatchKind::Delta, Some(_)) => {
            return Err(AppError::bad_request(
                "snapshot",
                "only a snapshot batch has a snapshot part",
            ));
        }
        (BatchKind::Snapshot, Some(s)) => {
            if s.id.trim().is_empty() {
                return Err(AppError::bad_request("snapshot.id", "must not be empty"));
            }
            if s.parts == 0 || s.part == 0 || s.part > s.parts {
                return Err(AppError::bad_request(
                    "snapshot.part",
                    "parts are numbered 1 to `parts`",
                ));
            }
        }
        (BatchKind::Delta, None) => {}
    }
    if env.upserts.len() + env.deletes.len() > MAX_RECORDS {
        return Err(AppError::invalid(
            "batch_too_large",
            "upserts",
            format!("a batch carries at most {MAX_RECORDS} records"),
        ));
    }
    if let Some(i) = env.deletes.iter().position(|d| d.trim().is_empty()) {
        return Err(AppError::invalid(
            "invalid_record",
            format!("deletes[{i}]"),
            "must not be empty",
        )
        .with("index", i));
    }
    let records = match feed {
        Feed::PickupOrders => {
            Records::PickupOrders(docs(&env.upserts, |r: PickupOrder| r.check())?)
        }
        Feed::Receipts => Records::Receipts(docs(&env.upserts, |r: Receipt| r.check())?),
        Feed::Staff => Records::Staff(docs(&env.upserts, StaffMember::check)?),
        Feed::Devices => Records::Devices(docs(&env.upserts, Device::check)?),
        Feed::Policy => Records::Policy(docs(&env.upserts, PolicyEntry::check)?),
    };
    Ok(Batch {
        feed,
        number: env.batch,
        kind: env.kind,
        snapshot: env.snapshot,
        records,
        deletes: env.deletes,
    })
}

/// Records per thread below which parsing stays on the calling thread.
const PARALLEL_CHUNK: usize = 500;

/// Parses and checks every record; a large batch is split across the machine's cores (the
/// JSON work is most of a load's cost). The error reported is always the lowest index's.
fn docs<'a, T, C>(
    raws: &[&'a RawValue],
    check: impl Fn(T) -> Result<C, Invalid> + Sync,
) -> Result<Vec<Doc<C>>, AppError>
where
    T: Deserialize<'a>,
    C: Send,
{
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads < 2 || raws.len() < 2 * PARALLEL_CHUNK {
        return parse_range(raws, 0, &check);
    }
    let chunk = raws.len().div_ceil(threads).max(PARALLEL_CHUNK);
    let results: Vec<Result<Vec<Doc<C>>, AppError>> = std::thread::scope(|scope| {
        let check = &check;
        let handles: Vec<_> = raws
            .chunks(chunk)
            .enumerate()
            .map(|(i, part)| scope.spawn(move || parse_range(part, i * chunk, check)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut out = Vec::with_capacity(raws.len());
    for r in results {
        out.extend(r?);
    }
    Ok(out)
}

fn parse_range<'a, T, C>(
    raws: &[&'a RawValue],
    first_index: usize,
    check: &impl Fn(T) -> Result<C, Invalid>,
) -> Result<Vec<Doc<C>>, AppError>
where
    T: Deserialize<'a>,
{
    raws.iter()
        .enumerate()
        .map(|(offset, raw)| {
            let i = first_index + offset;
            let refuse = |field: String, message: String| {
                let field = if field.is_empty() {
                    format!("upserts[{i}]")
                } else {
                    format!("upserts[{i}].{field}")
                };
                AppError::invalid("invalid_record", field, format!("record {i}: {message}"))
                    .with("index", i)
            };
            let text: &'a str = raw.get();
            let mut de = serde_json::Deserializer::from_str(text);
            let rec: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
                let (field, message) = describe(&e);
                refuse(field, message)
            })?;
            let rec = check(rec).map_err(|Invalid { field, message }| refuse(field, message))?;
            Ok(Doc {
                raw: text.to_string(),
                rec,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err_json(feed: Feed, body: serde_json::Value) -> (u16, serde_json::Value) {
        use axum::response::IntoResponse;
        let res = match parse(feed, body.to_string().as_bytes()) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.into_response(),
        };
        let status = res.status().as_u16();
        let bytes = futures_body(res);
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    fn futures_body(res: axum::response::Response) -> Vec<u8> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            axum::body::to_bytes(res.into_body(), usize::MAX)
                .await
                .unwrap()
                .to_vec()
        })
    }

    fn policy(key: &str, value: serde_json::Value) -> serde_json::Value {
        json!({"key": key, "value": value})
    }

    #[test]
    fn envelope_errors_name_the_field() {
        let (s, b) = err_json(Feed::Policy, json!({"batch": "one", "kind": "delta"}));
        assert_eq!((s, b["error"]["field"].as_str()), (400, Some("batch")));
        let (s, b) = err_json(Feed::Policy, json!({"batch": 1}));
        assert_eq!((s, b["error"]["field"].as_str()), (400, Some("kind")));
        let (_, b) = err_json(
            Feed::Policy,
            json!({"batch": 1, "kind": "delta", "upsert": []}),
        );
        assert!(
            b["error"]["message"].as_str().unwrap().contains("upsert"),
            "{b}"
        );
        let (_, b) = err_json(Feed::Policy, json!({"batch": 1, "kind": "snapshot"}));
        assert_eq!(b["error"]["field"], "snapshot");
    }

    #[test]
    fn a_bad_record_names_index_and_field() {
        let body = json!({"batch": 1, "kind": "delta", "upserts": [
            policy("a", json!(1)), policy("offline_tx_cap_minor", json!(-5))]});
        let (s, b) = err_json(Feed::Policy, body);
        assert_eq!(s, 422);
        assert_eq!(b["error"]["field"], "upserts[1].value");
        assert_eq!(b["error"]["index"], 1);
        let body = json!({"batch": 1, "kind": "delta", "upserts": [{"value": 1}]});
        let (_, b) = err_json(Feed::Policy, body);
        assert_eq!(b["error"]["field"], "upserts[0].key");
    }

    #[test]
    fn the_lowest_bad_index_is_named_when_parsing_in_parallel() {
        let mut upserts: Vec<_> = (0..5000)
            .map(|i| policy(&format!("k{i}"), json!(i)))
            .collect();
        upserts[4100] = json!({"key": "x"});
        upserts[3999] = json!({"value": 1});
        let (s, b) = err_json(
            Feed::Policy,
            json!({"batch": 1, "kind": "delta", "upserts": upserts}),
        );
        assert_eq!(
            (s, b["error"]["field"].as_str()),
            (422, Some("upserts[3999].key"))
        );
        let ok: Vec<_> = (0..5000)
            .map(|i| policy(&format!("k{i}"), json!(i)))
            .collect();
        let body = json!({"batch": 1, "kind": "delta", "upserts": ok}).to_string();
        match parse(Feed::Policy, body.as_bytes()).unwrap().records {
            Records::Policy(docs) => {
                assert!(
                    docs.iter()
                        .enumerate()
                        .all(|(i, d)| d.rec.key == format!("k{i}")),
                    "order kept"
                );
            }
            _ => unreachable!(),
        }
    }

    #[test]
    fn malformed_json_is_a_400_on_body() {
        let e = parse(Feed::Policy, b"{\"batch\": 1, ").err().unwrap();
        assert!(matches!(e, AppError::BadRequest { .. }));
    }
}
