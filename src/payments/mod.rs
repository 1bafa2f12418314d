//! Self-checkout payments (issue 7): online first with the processor, stand-in within HQ's
//! risk limits when it is unreachable, forwarding later with the same key, and kiosk sales
//! that become local receipts at once.
//!
//! - `rules.rs`: the stand-in decision, a plain function;
//! - `store.rs`: the SQL, each change journaled (payments lane) in its own transaction;
//! - `processor.rs`: the processor client; `forward.rs`: the forwarding worker;
//! - `hedge.rs`: when a kiosk stops waiting for a processor that does not answer;
//! - card data is refused before any of this runs, on every route, by the route kit's request
//!   guard (`crate::http::card_data`);
//! - `sales.rs`: `POST /kiosk/v1/sales`.

pub mod forward;
pub mod hedge;
pub mod processor;
pub mod rules;
pub mod sales;
pub mod store;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::http::Method;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::access::Caller;
use crate::error::AppError;
use crate::http::{Access, ApiJson, ApiPath, RawBody, Route, json_body_error};
use crate::state::AppState;
use crate::upstream::{BreakerState, Upstream};
use processor::Sent;
use store::{Ctx, NewPayment, Payment};

pub fn routes() -> Vec<Route<AppState>> {
    vec![
        Route::new(
            Method::POST,
            "/kiosk/v1/payments",
            Access::Kiosk,
            post(create),
        ),
        Route::new(
            Method::GET,
            "/kiosk/v1/payments/{payment_id}",
            Access::Kiosk,
            get(one),
        ),
        Route::new(
            Method::POST,
            "/kiosk/v1/sales",
            Access::Kiosk,
            post(sales::record),
        ),
    ]
}

/// What the payments concern keeps in memory: online attempts in flight in this process,
/// and a signal for duplicates waiting on one of them.
pub struct Runtime {
    inflight: Mutex<HashSet<String>>,
    decided: tokio::sync::watch::Sender<u64>,
    /// When this process started: the processor's last-reachable time when it was never heard
    /// from (and nothing is stored).
    started_at: DateTime<Utc>,
    /// Wakes the forwarding worker (the processor is back, a payment was stored).
    pub wake: tokio::sync::Notify,
    /// When the processor last answered an authorisation in this process. Not its health
    /// check: a processor whose `/v1/health` answers while authorisations time out is not
    /// reachable for money, and the stand-in limits (per-card velocity, `offline_max_hours`)
    /// must not restart their clocks on every health check of such a partial outage.
    last_authorised: Mutex<Option<DateTime<Utc>>>,
    /// The processor's recent answer times and the calls now overdue (`hedge.rs`).
    pub watch: Arc<hedge::Watch>,
}

impl Runtime {
    pub fn new(now: DateTime<Utc>) -> Self {
        Self {
            inflight: Mutex::default(),
            decided: tokio::sync::watch::Sender::new(0),
            started_at: now,
            wake: tokio::sync::Notify::new(),
            last_authorised: Mutex::new(None),
            watch: Arc::default(),
        }
    }

    /// The processor answered an authorisation (approved or declined) at `at`.
    pub fn authorised_at(&self, at: DateTime<Utc>) {
        if let Ok(mut last) = self.last_authorised.lock() {
            *last = Some(last.map_or(at, |l| l.max(at)));
        }
    }

    /// When the processor last answered an authorisation in this process.
    pub fn last_authorised(&self) -> Option<DateTime<Utc>> {
        self.last_authorised.lock().ok().and_then(|l| *l)
    }

    fn is_inflight(&self, id: &str) -> bool {
        self.inflight
            .lock()
            .map(|s| s.contains(id))
            .unwrap_or(false)
    }

    fn done(&self, id: &str) {
        if let Ok(mut s) = self.inflight.lock() {
            s.remove(id);
        }
        self.decided.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// When the processor last answered an authorisation, as far as this process knows (its
/// start is not that: see [`store::reachable_at`]).
pub fn reachable_hint(state: &AppState) -> store::Reachable {
    store::Reachable {
        seen: state.payments.last_authorised(),
        started_at: state.payments.started_at,
    }
}

/// One moment's decision context, owned so it can move into a writer closure:
/// [`Moment::ctx`] lends it as the store's [`Ctx`].
pub(crate) struct Moment {
    pub store_id: String,
    pub now: DateTime<Utc>,
    pub hint: store::Reachable,
}

impl Moment {
    pub(crate) fn of(state: &AppState) -> Self {
        Self {
            store_id: state.config.store_id.clone(),
            now: state.clock.now(),
            hint: reachable_hint(state),
        }
    }

    pub(crate) fn ctx(&self) -> Ctx<'_> {
        Ctx {
            store_id: &self.store_id,
            now: self.now,
            reachable_hint: self.hint,
        }
    }
}

pub(crate) fn kiosk(caller: &Caller) -> Result<(String, String), AppError> {
    match caller {
        Caller::Kiosk { device_id, lane } => Ok((device_id.clone(), lane.clone())),
        _ => Err(AppError::Unauthorized),
    }
}

/// Parses JSON (card data was refused by the route kit's guard before the handler ran); a
/// syntax error is a 400 about the body.
pub(crate) fn parse_body<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
) -> Result<(Value, T), AppError> {
    let mut value: Value = serde_json::from_slice(bytes).map_err(|e| {
        AppError::bad_request("body", format!("not valid JSON: {}", e.classify_name()))
    })?;
    // `2.0` is the integer 2, as for every JSON body (`crate::http::integral_numbers`).
    crate::http::integral_numbers(&mut value);
    let typed = serde_path_to_error::deserialize(&value).map_err(|e| json_body_error(&e))?;
    Ok((value, typed))
}

trait Classify {
    fn classify_name(&self) -> &'static str;
}

impl Classify for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        // Never echo serde's message: it can quote the body.
        match self.classify() {
            serde_json::error::Category::Eof => "unexpected end",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Io => "read error",
            serde_json::error::Category::Data => "wrong types",
        }
    }
}

/// SHA-256 of the canonical JSON: the same body, however its keys are ordered.
pub(crate) fn body_hash(v: &Value) -> String {
    hex::encode(Sha256::digest(
        crate::journal::chain::canonical_json(v).as_bytes(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PaymentRequest {
    idempotency_key: String,
    basket_id: String,
    amount_minor: i64,
    currency: String,
    tender: TenderRequest,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenderRequest {
    kind: String,
    token: Option<String>,
    ciphertext: Option<String>,
    brand: Option<String>,
    last4: Option<String>,
    exp_month: Option<u8>,
    exp_year: Option<u16>,
    entry_mode: Option<String>,
}

const TENDER_KINDS: [&str; 4] = ["card_token", "p2pe", "app_pay", "gift_card"];

/// The largest payment a kiosk may ask for, in minor units (`maximum` in the OpenAPI document).
pub const MAX_PAYMENT_MINOR: i64 = 100_000_000;
/// The longest id or brand a kiosk sends, in characters (`maxLength` in the OpenAPI document).
pub const SHORT_FIELD_MAX_CHARS: usize = 128;
/// The longest processor token or P2PE ciphertext, in characters (ASCII in practice).
pub const SECRET_MAX: usize = 4096;

pub(crate) fn short_field(field: &str, v: &str) -> Result<(), AppError> {
    if !crate::http::is_short_text(v, SHORT_FIELD_MAX_CHARS) {
        return Err(AppError::invalid(
            "invalid_field",
            field,
            "must be 1 to 128 characters",
        ));
    }
    Ok(())
}

impl PaymentRequest {
    fn into_new(
        self,
        device_id: String,
        lane: String,
        body_sha256: String,
    ) -> Result<NewPayment, AppError> {
        short_field("idempotency_key", &self.idempotency_key)?;
        short_field("basket_id", &self.basket_id)?;
        if !(1..=MAX_PAYMENT_MINOR).contains(&self.amount_minor) {
            return Err(AppError::invalid(
                "invalid_field",
                "amount_minor",
                format!("must be from 1 to {MAX_PAYMENT_MINOR}"),
            ));
        }
        if self.currency.len() != 3 || !self.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(AppError::invalid(
                "invalid_field",
                "currency",
                "an ISO 4217 code such as USD",
            ));
        }
        let t = self.tender;
        if !TENDER_KINDS.contains(&t.kind.as_str()) {
            return Err(AppError::invalid(
                "invalid_field",
                "tender.kind",
                "one of card_token, p2pe, app_pay, gift_card",
            ));
        }
        // Neither secret is ever longer, whichever one the tender's kind uses.
        for (field, v) in [("token", &t.token), ("ciphertext", &t.ciphertext)] {
            if v.as_ref().is_some_and(|s| s.chars().count() > SECRET_MAX) {
                return Err(AppError::invalid(
                    "invalid_field",
                    format!("tender.{field}"),
                    format!("at most {SECRET_MAX} characters"),
                ));
            }
        }
        let (secret_field, secret) = if t.kind == "p2pe" {
            ("ciphertext", t.ciphertext.as_deref())
        } else {
            ("token", t.token.as_deref())
        };
        match secret {
            Some(s) if crate::http::is_short_text(s, SECRET_MAX) => {}
            _ => {
                return Err(AppError::invalid(
                    "invalid_field",
                    format!("tender.{secret_field}"),
                    format!("a {} tender needs its {secret_field}", t.kind),
                ));
            }
        }
        if let Some(l) = &t.last4
            && (l.len() != 4 || !l.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(AppError::invalid(
                "invalid_field",
                "tender.last4",
                "four digits",
            ));
        }
        if let Some(m) = t.exp_month
            && !(1..=12).contains(&m)
        {
            return Err(AppError::invalid(
                "invalid_field",
                "tender.exp_month",
                "1 to 12",
            ));
        }
        if let Some(y) = t.exp_year
            && !(2000..=2100).contains(&y)
        {
            return Err(AppError::invalid(
                "invalid_field",
                "tender.exp_year",
                "a four-digit year",
            ));
        }
        if let Some(b) = &t.brand {
            short_field("tender.brand", b)?;
        }
        let card_fingerprint = match (&t.brand, &t.last4, t.exp_month, t.exp_year) {
            (Some(b), Some(l), Some(m), Some(y)) => Some(hex::encode(Sha256::digest(
                // However the kiosk writes the brand, one card is one fingerprint.
                format!("{}|{l}|{m:02}|{y}", b.trim().to_lowercase()).as_bytes(),
            ))),
            _ => None,
        };
        let mut tender = json!({"kind": t.kind});
        let fields: [(&str, Option<Value>); 7] = [
            ("token", t.token.map(Value::from)),
            ("ciphertext", t.ciphertext.map(Value::from)),
            ("brand", t.brand.map(Value::from)),
            ("last4", t.last4.map(Value::from)),
            ("exp_month", t.exp_month.map(Value::from)),
            ("exp_year", t.exp_year.map(Value::from)),
            ("entry_mode", t.entry_mode.map(Value::from)),
        ];
        for (k, v) in fields {
            if let Some(v) = v {
                tender[k] = v;
            }
        }
        Ok(NewPayment {
            payment_id: uuid::Uuid::now_v7().to_string(),
            device_id,
            lane,
            idempotency_key: self.idempotency_key,
            body_sha256,
            basket_id: self.basket_id,
            amount_minor: self.amount_minor,
            currency: self.currency,
            tender_kind: t.kind,
            card_fingerprint,
            tender,
        })
    }
}

/// What a claim found.
enum Claimed {
    Existing(Box<Payment>),
    Decided(Value),
}

/// `POST /kiosk/v1/payments`.
async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawBody(bytes): RawBody,
) -> Result<ApiJson<Value>, AppError> {
    // `payments.timeout_ms` is the kiosk's whole wait from here (`hedge.rs`).
    let arrived = tokio::time::Instant::now();
    let (device_id, lane) = kiosk(&caller)?;
    let (value, req): (Value, PaymentRequest) = parse_body(&bytes)?;
    let hash = body_hash(&value);
    let new = req.into_new(device_id, lane, hash)?;

    // Ask the breaker first: in stand-in mode the one write both finds a retry and decides,
    // so a payment costs the writer one step and no read. Online, a retry of a payment
    // already decided is answered from a read and never reaches the processor again.
    let free = state
        .upstreams
        .get(Upstream::Payments)
        .is_none_or(|h| h.breaker == BreakerState::Closed && h.retry_at.is_none());
    let permitted = state.config.payments.url.is_some()
        && state
            .upstreams
            .permit(Upstream::Payments, state.clock.now());
    if permitted {
        let (d, k) = (new.device_id.clone(), new.idempotency_key.clone());
        if let Some(p) = state
            .store
            .read(move |c| store::by_key(c, &d, &k).map_err(AppError::from))
            .await?
        {
            if !free {
                // This yes was the breaker's one probe: use it, so the breaker hears back.
                tokio::spawn(processor::probe(state.clone()));
            }
            return replay(&state, p, &new.body_sha256).await;
        }
    }
    // The work goes on in its own task: a kiosk that hangs up mid-way cannot leave a payment
    // half-decided, and its retry finds the decision.
    let task = tokio::spawn(decide(state.clone(), new.clone(), permitted, free, arrived));
    match task
        .await
        .map_err(|e| AppError::Internal(anyhow::anyhow!("payment task failed: {e}")))??
    {
        Claimed::Decided(answer) => Ok(ApiJson(answer)),
        Claimed::Existing(p) => replay(&state, *p, &new.body_sha256).await,
    }
}

async fn decide(
    state: AppState,
    new: NewPayment,
    permitted: bool,
    free: bool,
    arrived: tokio::time::Instant,
) -> Result<Claimed, AppError> {
    let m = Moment::of(&state);
    if !permitted {
        // Stand-in: the decision and the insert in one write, so caps hold under any load.
        let claimed = state
            .store
            .write(move |c| {
                if let Some(p) = store::by_key(c, &new.device_id, &new.idempotency_key)? {
                    return Ok::<_, AppError>(Claimed::Existing(Box::new(p)));
                }
                let ctx = m.ctx();
                Ok(Claimed::Decided(store::stand_in(
                    c, &ctx, &new, true, false,
                )?))
            })
            .await?;
        if matches!(claimed, Claimed::Decided(_)) {
            state.journal_appended.notify_one();
        }
        return Ok(claimed);
    }
    let claim = new.clone();
    let now_s = state.clock.now_rfc3339();
    // Calls already hang past their hedge point: do not send this one to join them, if the
    // rules approve it offline. Only while the breaker is free: its probe must be sent.
    let skip = free && state.payments.watch.stalled();
    let claimed = state
        .store
        .write(move |c| {
            if let Some(p) = store::by_key(c, &claim.device_id, &claim.idempotency_key)? {
                return Ok::<_, AppError>(Some(Claimed::Existing(Box::new(p))));
            }
            if skip {
                let ctx = m.ctx();
                if let Some(answer) = stand_in_approving(c, &ctx, &claim, true, false)? {
                    return Ok(Some(Claimed::Decided(answer)));
                }
            }
            store::insert_pending(c, &claim, &now_s)?;
            Ok(None)
        })
        .await?;
    match claimed {
        Some(Claimed::Existing(p)) => {
            if !free {
                // A concurrent duplicate claimed it first; the breaker's probe is used anyway.
                tokio::spawn(processor::probe(state.clone()));
            }
            return Ok(Claimed::Existing(p));
        }
        Some(decided) => {
            state.journal_appended.notify_one();
            return Ok(decided);
        }
        None => {}
    }
    if let Ok(mut s) = state.payments.inflight.lock() {
        s.insert(new.payment_id.clone());
    }
    let result = online(&state, &new, arrived).await;
    state.payments.done(&new.payment_id);
    result.map(Claimed::Decided)
}

/// Stand-in inside a savepoint, kept only when the rules approve the payment offline: the
/// hedge never declines early (`hedge.rs`). `None` when it would not approve.
fn stand_in_approving(
    c: &rusqlite::Connection,
    ctx: &Ctx<'_>,
    p: &NewPayment,
    fresh: bool,
    sent: bool,
) -> Result<Option<Value>, AppError> {
    c.prepare_cached("SAVEPOINT hedge")?.execute([])?;
    let answer = store::stand_in(c, ctx, p, fresh, sent);
    let keep = matches!(&answer, Ok(a) if a["status"] == "approved_offline");
    if !keep {
        c.prepare_cached("ROLLBACK TO hedge")?.execute([])?;
    }
    c.prepare_cached("RELEASE hedge")?.execute([])?;
    Ok(answer?).map(|a| keep.then_some(a))
}

/// The online attempt of a claimed (pending) payment, and its recorded outcome, within the
/// kiosk's wait (`hedge.rs`).
async fn online(
    state: &AppState,
    new: &NewPayment,
    arrived: tokio::time::Instant,
) -> Result<Value, AppError> {
    let body = json!({"amount_minor": new.amount_minor, "currency": new.currency, "tender": new.tender, "stored": false});
    let wait = processor::budget(state);
    let limit = (arrived + wait - hedge::answer_reserve(wait))
        .saturating_duration_since(tokio::time::Instant::now())
        .max(Duration::from_millis(1));
    let hedge_after = state.payments.watch.hedge_after().filter(|h| *h < limit);
    // Its own task, so a hedged call runs on to its end and tells the breaker how it went.
    let mut call = {
        let (state, key) = (state.clone(), new.payment_id.clone());
        tokio::spawn(async move { processor::authorize(&state, &key, &body, limit).await })
    };
    let joined = |r: Result<Sent, tokio::task::JoinError>| {
        r.map_err(|e| AppError::Internal(anyhow::anyhow!("processor call failed: {e}")))
    };
    let sent = match hedge_after {
        None => joined(call.await)?,
        Some(after) => match tokio::time::timeout(after, &mut call).await {
            Ok(r) => joined(r)?,
            Err(_) => {
                let overdue = state.payments.watch.overdue();
                let m = Moment::of(state);
                let p = new.clone();
                let hedged = state
                    .store
                    .write(move |c| {
                        let ctx = m.ctx();
                        // The call was sent: its outcome is unknown.
                        stand_in_approving(c, &ctx, &p, false, true)
                    })
                    .await?;
                if let Some(answer) = hedged {
                    tokio::spawn(async move {
                        let _ = call.await;
                        drop(overdue);
                    });
                    state.journal_appended.notify_one();
                    return Ok(answer);
                }
                let r = call.await;
                drop(overdue);
                joined(r)?
            }
        },
    };
    let m = Moment::of(state);
    let p = new.clone();
    let answer = state
        .store
        .write(move |c| {
            let ctx = m.ctx();
            match sent {
                Sent::Answered {
                    approved,
                    auth_code,
                    reason,
                } => {
                    store::store_reachable_at(c, m.now)?;
                    store::settle_online(
                        c,
                        &ctx,
                        &p,
                        approved,
                        auth_code.as_deref(),
                        reason.as_deref(),
                    )
                }
                // Unreachable or outcome unknown: decide locally; an approval is forwarded
                // later with this same key, so the processor counts it once.
                other => store::stand_in(c, &ctx, &p, false, other.reached_or_maybe()),
            }
            .map_err(AppError::from)
        })
        .await?;
    state.journal_appended.notify_one();
    Ok(answer)
}

/// A second arrival of a key: 409 if the body differs, else the first answer (waiting for
/// it while the first arrival is still with the processor).
async fn replay(state: &AppState, p: Payment, hash: &str) -> Result<ApiJson<Value>, AppError> {
    if p.body_sha256 != hash {
        return Err(AppError::conflict(
            "idempotency_key_reused",
            "this idempotency_key was already used for a different payment body",
        )
        .with("field", "idempotency_key"));
    }
    let deadline = tokio::time::Instant::now() + processor::budget(state) + Duration::from_secs(5);
    let mut decided = state.payments.decided.subscribe();
    let mut p = p;
    loop {
        if let Some(a) = p
            .answer
            .as_deref()
            .and_then(|a| serde_json::from_str(a).ok())
        {
            return Ok(ApiJson(a));
        }
        // Pending with no attempt in this process: a crash left it; the forwarder resolves it.
        let wait = if state.payments.is_inflight(&p.payment_id) {
            Duration::from_secs(1)
        } else {
            Duration::from_millis(200)
        };
        let _ = tokio::time::timeout(wait, decided.changed()).await;
        if tokio::time::Instant::now() > deadline {
            return Err(AppError::Unavailable(
                "the payment's outcome is not known yet; retry with the same idempotency_key"
                    .into(),
            ));
        }
        let id = p.payment_id.clone();
        p = state
            .store
            .read(move |c| store::by_id(c, &id).map_err(AppError::from))
            .await?
            .ok_or_else(|| AppError::NotFound("no such payment".into()))?;
    }
}

/// `GET /kiosk/v1/payments/{payment_id}`: its current state; only the kiosk that made it.
async fn one(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(payment_id): ApiPath<String>,
) -> Result<ApiJson<Payment>, AppError> {
    let (device_id, _) = kiosk(&caller)?;
    let found = state
        .store
        .read(move |c| store::by_id(c, &payment_id).map_err(AppError::from))
        .await?
        .filter(|p| p.device_id == device_id)
        .ok_or_else(|| AppError::NotFound("no such payment from this kiosk".into()))?;
    Ok(ApiJson(found))
}
