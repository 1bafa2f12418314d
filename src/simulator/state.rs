//! What the simulator holds in memory for the life of the process: the feeds' batches,
//! central's view of orders, everything received, and the fault each upstream is told to show.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::{Value, json};

pub(crate) type Shared = Arc<Mutex<State>>;

pub(crate) fn lock(state: &Shared) -> MutexGuard<'_, State> {
    // A panic while holding the lock leaves plain data behind: keep serving it.
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// API.md's error shape: `{"error": {"code", "message", "field"?}}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    pub fn field(mut self, field: impl Into<String>) -> ApiError {
        self.field = Some(field.into());
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": { "code": self.code, "message": self.message } });
        if let Some(f) = self.field {
            body["error"]["field"] = json!(f);
        }
        (self.status, axum::Json(body)).into_response()
    }
}

/// 422 naming the offending field.
pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", message).field(field)
}

/// A JSON body read by hand, so a bad one gets API.md's error shape.
pub(crate) fn parse_body(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("body is not JSON: {e}"),
        )
    })
}

/// Raw JSON text, served as is (feed batches are kept serialised).
pub(crate) fn json_text(body: String) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Upstream {
    Central,
    Payments,
}

impl Upstream {
    pub fn parse(s: &str) -> Option<Upstream> {
        match s {
            "central" => Some(Upstream::Central),
            "payments" => Some(Upstream::Payments),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Mode {
    Ok,
    Down,
    Hang,
    Latency,
    Error,
    RetryAfter,
    DropResponse,
    Partial,
}

/// The failure an upstream is told to show, with the effective parameters of its mode.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Fault {
    pub mode: Mode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_s: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accept_ratio: Option<f64>,
    /// `GET /v1/health` answers as if all were well while every other path shows the fault:
    /// a partial outage (an upstream whose health check passes while its real work fails).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub health_ok: bool,
}

impl Fault {
    pub const OK: Fault = Fault::plain(Mode::Ok);

    pub const fn plain(mode: Mode) -> Fault {
        Fault {
            mode,
            latency_ms: None,
            status: None,
            retry_after_s: None,
            accept_ratio: None,
            health_ok: false,
        }
    }

    /// Validates `PUT /admin/faults/{upstream}`'s body; the error names the field.
    pub fn parse(body: &Value) -> Result<Fault, (&'static str, String)> {
        let Some(obj) = body.as_object() else {
            return Err(("mode", "body must be an object with a \"mode\"".into()));
        };
        let mode = match obj.get("mode").and_then(Value::as_str) {
            Some("ok") => Mode::Ok,
            Some("down") => Mode::Down,
            Some("hang") => Mode::Hang,
            Some("latency") => Mode::Latency,
            Some("error") => Mode::Error,
            Some("retry_after") => Mode::RetryAfter,
            Some("drop_response") => Mode::DropResponse,
            Some("partial") => Mode::Partial,
            _ => return Err(("mode", "mode must be one of ok, down, hang, latency, error, retry_after, drop_response, partial".into())),
        };
        let uint = |field: &'static str, max: u64| -> Result<Option<u64>, (&'static str, String)> {
            match obj.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => match v.as_u64() {
                    Some(n) if n <= max => Ok(Some(n)),
                    _ => Err((field, format!("{field} must be an integer from 0 to {max}"))),
                },
            }
        };
        let latency_ms = uint("latency_ms", 600_000)?;
        let status = uint("status", 599)?;
        let retry_after_s = uint("retry_after_s", 86_400)?;
        let accept_ratio = match obj.get("accept_ratio") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_f64() {
                Some(r) if (0.0..=1.0).contains(&r) => Some(r),
                _ => {
                    return Err((
                        "accept_ratio",
                        "accept_ratio must be a number from 0 to 1".into(),
                    ));
                }
            },
        };
        let health_ok = match obj.get("health_ok") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(("health_ok", "health_ok must be true or false".into())),
        };
        if health_ok && mode == Mode::Down {
            return Err((
                "health_ok",
                "a listener that is down answers nothing, health included".into(),
            ));
        }
        let mut fault = Fault::plain(mode);
        fault.health_ok = health_ok;
        match mode {
            Mode::Latency => fault.latency_ms = Some(latency_ms.unwrap_or(2_000)),
            Mode::Error => {
                let s = status.unwrap_or(500);
                if !(400..=599).contains(&s) {
                    return Err(("status", "status must be from 400 to 599".into()));
                }
                fault.status = Some(s as u16);
            }
            Mode::RetryAfter => {
                let s = status.unwrap_or(503);
                if s != 503 && s != 429 {
                    return Err(("status", "status must be 503 or 429".into()));
                }
                fault.status = Some(s as u16);
                fault.retry_after_s = Some(retry_after_s.unwrap_or(10));
            }
            Mode::Partial => fault.accept_ratio = Some(accept_ratio.unwrap_or(0.5)),
            _ => {}
        }
        Ok(fault)
    }
}

/// One journal entry id as central saw it.
pub(crate) struct JournalRecord {
    pub id: String,
    /// The journal request (1, 2, 3 … since start) that first carried it.
    pub push: u64,
    pub count: u64,
    pub outcome: &'static str,
    pub reason: Option<&'static str>,
    pub entry: Value,
}

/// One idempotency key as the processor saw it.
#[derive(Serialize)]
pub(crate) struct IdemRecord {
    pub key: String,
    pub count: u64,
    pub request: Value,
    pub response: Value,
}

#[derive(Default)]
pub(crate) struct IdemLog {
    pub records: Vec<IdemRecord>,
    index: HashMap<String, usize>,
}

impl IdemLog {
    /// The first answer for `key`, counting this arrival, if the key was seen before.
    pub fn replay(&mut self, key: &str) -> Option<Value> {
        let rec = &mut self.records[*self.index.get(key)?];
        rec.count += 1;
        Some(rec.response.clone())
    }

    pub fn record(&mut self, key: &str, request: Value, response: Value) {
        self.index.insert(key.to_owned(), self.records.len());
        self.records.push(IdemRecord {
            key: key.to_owned(),
            count: 1,
            request,
            response,
        });
    }
}

pub(crate) struct State {
    pub store_id: String,
    /// Serialised batches per feed; batch n is at index n - 1.
    pub feeds: BTreeMap<&'static str, Vec<Arc<str>>>,
    /// Central's own view of each pickup order (for the conflict rule).
    pub orders: HashMap<String, Value>,
    pub journal: Vec<JournalRecord>,
    pub journal_index: HashMap<String, usize>,
    /// Journal requests taken since start.
    pub journal_pushes: u64,
    pub reject_ids: HashSet<String>,
    pub reject_kinds: HashSet<String>,
    pub authorizations: IdemLog,
    pub refunds: IdemLog,
    pub central_fault: Fault,
    pub payments_fault: Fault,
    /// Auth codes and refund ids.
    pub rng: ChaCha8Rng,
    /// HQ's updates have stopped reaching central (`PUT /admin/central/feeds/stall`): central
    /// still answers, but serves no batch past what each feed had then, and says its data is
    /// as of `since`.
    pub feeds_stalled: Option<FeedStall>,
    /// The newest heartbeat per store (by `sent_at`, then `seq`), how many arrived, and the
    /// last contact (`GET /admin/heartbeats`).
    pub heartbeats: BTreeMap<String, HeartbeatRecord>,
}

pub(crate) struct HeartbeatRecord {
    pub latest: crate::status::heartbeat::Heartbeat,
    pub received: u64,
    pub last_contact: chrono::DateTime<chrono::Utc>,
}

pub(crate) struct FeedStall {
    pub since: chrono::DateTime<chrono::Utc>,
    /// How many batches each feed had when the stall began.
    pub served: BTreeMap<&'static str, usize>,
}

impl State {
    pub fn fault(&self, which: Upstream) -> &Fault {
        match which {
            Upstream::Central => &self.central_fault,
            Upstream::Payments => &self.payments_fault,
        }
    }

    pub fn fault_mut(&mut self, which: Upstream) -> &mut Fault {
        match which {
            Upstream::Central => &mut self.central_fault,
            Upstream::Payments => &mut self.payments_fault,
        }
    }
}
