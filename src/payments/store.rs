//! The payments' SQL: claiming a key, the stand-in decision recorded with the facts it read,
//! settling online answers and forwarding outcomes, each with its journal entry (payments
//! lane) in the same transaction. Every function here runs inside the caller's transaction
//! (the writer's, for changes).

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde_json::{Value, json};

use super::rules::{Facts, Policy, stand_in_decision};
use crate::journal::{self, Lane, NewEntry};

/// A payment as the kiosk asked for it, before any decision.
#[derive(Debug, Clone)]
pub struct NewPayment {
    pub payment_id: String,
    pub device_id: String,
    pub lane: String,
    pub idempotency_key: String,
    pub body_sha256: String,
    pub basket_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub tender_kind: String,
    pub card_fingerprint: Option<String>,
    /// What the processor gets: kind, token or ciphertext, brand, last four, expiry.
    pub tender: Value,
}

/// A stored payment.
#[derive(Debug, Clone, Serialize)]
pub struct Payment {
    pub payment_id: String,
    #[serde(skip)]
    pub device_id: String,
    pub lane: String,
    pub idempotency_key: String,
    #[serde(skip)]
    pub body_sha256: String,
    pub basket_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub tender_kind: String,
    #[serde(skip)]
    pub card_fingerprint: Option<String>,
    #[serde(skip)]
    pub tender: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_code: Option<String>,
    pub offline: bool,
    #[serde(skip)]
    pub sent: bool,
    pub created_at: String,
    pub decided_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forward_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forwarded_at: Option<String>,
    #[serde(skip)]
    pub answer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sale_id: Option<String>,
}

const COLUMNS: &str = "payment_id, device_id, lane, idempotency_key, body_sha256, basket_id, amount_minor,
    currency, tender_kind, card_fingerprint, tender, status, reason, auth_code, offline, sent, created_at,
    decided_at, forward_by, forwarded_at, answer, sale_id";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Payment> {
    let payment_id: String = r.get(0)?;
    let answer = r
        .get::<_, Option<String>>(20)?
        .map(|a| answer_from_stored(&payment_id, a));
    Ok(Payment {
        payment_id,
        device_id: r.get(1)?,
        lane: r.get(2)?,
        idempotency_key: r.get(3)?,
        body_sha256: r.get(4)?,
        basket_id: r.get(5)?,
        amount_minor: r.get(6)?,
        currency: r.get(7)?,
        tender_kind: r.get(8)?,
        card_fingerprint: r.get(9)?,
        tender: r.get(10)?,
        status: r.get(11)?,
        reason: r.get(12)?,
        auth_code: r.get(13)?,
        offline: r.get(14)?,
        sent: r.get(15)?,
        created_at: r.get(16)?,
        decided_at: r.get(17)?,
        forward_by: r.get(18)?,
        forwarded_at: r.get(19)?,
        answer,
        sale_id: r.get(21)?,
    })
}

pub fn by_key(c: &Connection, device_id: &str, key: &str) -> rusqlite::Result<Option<Payment>> {
    c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM payments WHERE device_id = ?1 AND idempotency_key = ?2"
    ))?
    .query_row(params![device_id, key], from_row)
    .optional()
}

pub fn by_id(c: &Connection, payment_id: &str) -> rusqlite::Result<Option<Payment>> {
    c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM payments WHERE payment_id = ?1"
    ))?
    .query_row([payment_id], from_row)
    .optional()
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Claims the key for an online attempt: the row exists, `pending`, before anything is sent,
/// so a duplicate finds it and waits, and the processor's key is fixed for good.
pub fn insert_pending(c: &Connection, p: &NewPayment, now: &str) -> rusqlite::Result<()> {
    let pending = Decided {
        status: "pending",
        reason: None,
        offline: false,
        sent: true,
        forward_by: None,
        answer: None,
        velocity_indexed: false,
    };
    insert(c, p, pending, now).map(drop)
}

/// What a new row records besides the request.
struct Decided<'a> {
    status: &'a str,
    reason: Option<&'a str>,
    offline: bool,
    sent: bool,
    forward_by: Option<&'a str>,
    answer: Option<&'a str>,
    /// Decided offline under a velocity cap: counted through `payments_card`.
    velocity_indexed: bool,
}

fn insert(c: &Connection, p: &NewPayment, d: Decided<'_>, now: &str) -> rusqlite::Result<usize> {
    c.prepare_cached(
        "INSERT INTO payments (payment_id, device_id, lane, idempotency_key, body_sha256, basket_id,
            amount_minor, currency, tender_kind, card_fingerprint, tender, status, reason, offline, sent,
            created_at, decided_at, forward_by, answer, velocity_indexed)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)",
    )?
    .execute(params![
        p.payment_id,
        p.device_id,
        p.lane,
        p.idempotency_key,
        p.body_sha256,
        p.basket_id,
        p.amount_minor,
        p.currency,
        p.tender_kind,
        p.card_fingerprint,
        p.tender.to_string(),
        d.status,
        d.reason,
        d.offline,
        d.sent,
        now,
        (d.status != "pending").then_some(now),
        d.forward_by,
        d.answer,
        d.velocity_indexed
    ])
}

/// This card's stand-in approvals since `since` (the processor last reachable): the count
/// and the sum. Those decided under a velocity cap through the card index; those decided
/// while HQ set none (a cap that arrived during this outage) by a scan of this outage's
/// uncapped card payments in time order, empty when the cap was there first.
fn card_velocity(c: &Connection, fingerprint: &str, since: &str) -> rusqlite::Result<(i64, i64)> {
    c.prepare_cached(
        "SELECT count(*), coalesce(sum(amount_minor), 0) FROM (
             SELECT amount_minor, status FROM payments INDEXED BY payments_card
             WHERE card_fingerprint = ?1 AND offline = 1 AND velocity_indexed = 1 AND created_at >= ?2
             UNION ALL
             SELECT amount_minor, status FROM payments INDEXED BY payments_card_later
             WHERE offline = 1 AND card_fingerprint IS NOT NULL AND velocity_indexed = 0
               AND created_at >= ?2 AND card_fingerprint = ?1)
         WHERE status IN ('approved_offline', 'captured', 'declined_after_forward', 'expired')",
    )?
    .query_row(params![fingerprint, since], |r| Ok((r.get(0)?, r.get(1)?)))
}

/// The policy feed as the stand-in rule reads it.
pub fn policy(c: &Connection) -> rusqlite::Result<Policy> {
    let mut stmt = c.prepare_cached("SELECT key, value FROM policy")?;
    let rows: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(Policy::from_entries(rows.iter().map(|(k, v)| {
        (k.as_str(), serde_json::from_str(v).unwrap_or(Value::Null))
    })))
}

/// What this process knows of the processor's reachability.
#[derive(Debug, Clone, Copy)]
pub struct Reachable {
    /// When this process last heard the processor answer, if it has.
    pub seen: Option<DateTime<Utc>>,
    /// When this process started.
    pub started_at: DateTime<Utc>,
}

/// When the processor was last known to answer: the stored time or this process's own
/// knowledge, whichever is later. A restart is not the processor answering: the stored time
/// stands until the processor is heard again, so an outage's velocity window and its
/// `offline_max_hours` clock survive restarts. When the processor was never heard from, the
/// clock runs from the start of the process that first decided without it, kept from then on
/// (the caller is the writer).
pub fn reachable_at(c: &Connection, hint: Reachable) -> rusqlite::Result<DateTime<Utc>> {
    let stored: Option<String> = c
        .prepare_cached("SELECT reachable_at FROM payments_processor WHERE id = 1")?
        .query_row([], |r| r.get(0))
        .optional()?
        .flatten();
    match (stored.as_deref().and_then(parse_ts), hint.seen) {
        (Some(s), seen) => Ok(seen.map_or(s, |h| s.max(h))),
        (None, seen) => {
            let at = seen.unwrap_or(hint.started_at);
            store_reachable_at(c, at)?;
            Ok(at)
        }
    }
}

pub fn store_reachable_at(c: &Connection, at: DateTime<Utc>) -> rusqlite::Result<()> {
    c.execute(
        "UPDATE payments_processor SET reachable_at = ?1 WHERE id = 1 AND (reachable_at IS NULL OR reachable_at < ?1)",
        [ts(at)],
    )
    .map(drop)
}

/// The kiosk's answer, kept so every duplicate gets exactly it.
pub fn answer(
    payment_id: &str,
    status: &str,
    reason: Option<&str>,
    auth_code: Option<&str>,
) -> Value {
    let mut a = json!({"payment_id": payment_id, "status": status});
    if let Some(r) = reason {
        a["reason"] = json!(r);
    }
    if let Some(c) = auth_code {
        a["auth_code"] = json!(c);
    }
    a
}

/// The `answer` column: the kiosk's answer without its `payment_id`, which is the row's own
/// column (issue 19: 52 bytes less per row, and a payment row small enough that a 2 KiB page
/// holds four, so less WAL per payment). Rows written before keep the whole answer; both
/// read back as the whole answer ([`answer_from_stored`]).
fn answer_to_store(answer: &Value) -> String {
    let mut a = answer.clone();
    if let Some(o) = a.as_object_mut() {
        o.remove("payment_id");
    }
    a.to_string()
}

/// The kiosk's answer from the `answer` column: `payment_id` put back when stored without it.
/// Keys serialize in order, so the replay is the same JSON as the first answer.
pub fn answer_from_stored(payment_id: &str, stored: String) -> String {
    match serde_json::from_str::<Value>(&stored) {
        Ok(Value::Object(mut o)) if !o.contains_key("payment_id") => {
            o.insert("payment_id".into(), json!(payment_id));
            Value::Object(o).to_string()
        }
        _ => stored,
    }
}

/// Who and when, for the journal.
pub struct Ctx<'a> {
    pub store_id: &'a str,
    pub now: DateTime<Utc>,
    /// This process's latest knowledge of when the processor answered.
    pub reachable_hint: Reachable,
}

fn journal_payment(
    c: &Connection,
    ctx: &Ctx<'_>,
    p: &NewPayment,
    kind: &str,
    extra: Value,
) -> rusqlite::Result<()> {
    let mut tender = json!({"kind": p.tender_kind});
    for f in ["brand", "last4", "exp_month", "exp_year", "entry_mode"] {
        if let Some(v) = p.tender.get(f) {
            tender[f] = v.clone();
        }
    }
    let mut body = json!({
        "payment_id": p.payment_id, "idempotency_key": p.idempotency_key, "basket_id": p.basket_id,
        "lane": p.lane, "amount_minor": p.amount_minor, "currency": p.currency, "tender": tender,
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    journal::append(
        c,
        ctx.store_id,
        &ts(ctx.now),
        NewEntry {
            lane: Lane::Payments,
            kind: kind.into(),
            actor: Some(p.device_id.clone()),
            device: Some(p.device_id.clone()),
            body,
        },
    )
    .map(drop)
}

/// Decides without the processor against the policy and the facts as they are inside this
/// transaction, and records it: a new row (`fresh`) or the pending row of an online attempt
/// that failed (`sent`: it may have reached the processor). Returns the kiosk's answer.
///
/// Runs on the single writer, so the exposure read here and the insert that raises it are
/// one step: however many kiosks pay at once, the cap holds.
pub fn stand_in(
    c: &Connection,
    ctx: &Ctx<'_>,
    p: &NewPayment,
    fresh: bool,
    sent: bool,
) -> rusqlite::Result<Value> {
    let policy = policy(c)?;
    let reachable = reachable_at(c, ctx.reachable_hint)?;
    // The store's exposure: approved offline and not forwarded. Still forwardable ones are
    // kept by triggers; those that expired in this outage (made since the processor was last
    // reachable) were never forwarded either and are lost for sure, so they count too.
    // Without them a long outage would refill the cap every `forward_deadline_hours`.
    let exposure: i64 = c
        .prepare_cached(
            "SELECT (SELECT total_minor FROM payments_exposure WHERE id = 1)
                  + (SELECT coalesce(sum(amount_minor), 0) FROM payments
                     WHERE status = 'expired' AND created_at >= ?1)",
        )?
        .query_row([ts(reachable)], |r| r.get(0))?;
    // Per-card velocity is read and indexed only while HQ sets a velocity cap: the card index
    // takes a random leaf, a whole page of WAL, per payment (migration 0015).
    let velocity_capped = policy.velocity_count.is_some() || policy.velocity_amount_minor.is_some();
    let (card_count, card_amount) = match &p.card_fingerprint {
        Some(fp) if velocity_capped => card_velocity(c, fp, &ts(reachable))?,
        _ => (0, 0),
    };
    let facts = Facts {
        amount_minor: p.amount_minor,
        tender_kind: &p.tender_kind,
        exposure_minor: exposure,
        card_count,
        card_amount_minor: card_amount,
        has_card: p.card_fingerprint.is_some(),
        offline_secs: (ctx.now - reachable).num_seconds().max(0),
    };
    let decision = stand_in_decision(&policy, &facts);
    let now = ts(ctx.now);
    let (status, reason, forward_by) = match decision {
        Ok(()) => (
            "approved_offline",
            None,
            Some(ts(ctx.now + Duration::hours(policy.forward_deadline_hours))),
        ),
        Err(r) => ("declined_offline", Some(r.code()), None),
    };
    let ans = answer(&p.payment_id, status, reason, None);
    let ans_text = answer_to_store(&ans);
    if fresh {
        insert(
            c,
            p,
            Decided {
                status,
                reason,
                offline: true,
                sent,
                forward_by: forward_by.as_deref(),
                answer: Some(&ans_text),
                velocity_indexed: velocity_capped,
            },
            &now,
        )?;
    } else if c
        .prepare_cached(
            "UPDATE payments SET status = ?2, reason = ?3, offline = 1, sent = ?4, decided_at = ?5,
                forward_by = ?6, answer = ?7, velocity_indexed = ?8
             WHERE payment_id = ?1 AND status = 'pending'",
        )?
        .execute(params![
            p.payment_id,
            status,
            reason,
            sent,
            now,
            forward_by,
            ans_text,
            velocity_capped
        ])?
        == 0
    {
        return decided_answer(c, &p.payment_id);
    }
    journal_payment(
        c,
        ctx,
        p,
        &format!("payment.{status}"),
        json!({"status": status, "reason": reason, "forward_by": forward_by, "outcome_unknown": sent,
               "exposure_minor": exposure + if decision.is_ok() { p.amount_minor } else { 0 }}),
    )?;
    Ok(ans)
}

/// Records the processor's own answer to an online attempt.
pub fn settle_online(
    c: &Connection,
    ctx: &Ctx<'_>,
    p: &NewPayment,
    approved: bool,
    auth_code: Option<&str>,
    reason: Option<&str>,
) -> rusqlite::Result<Value> {
    let status = if approved { "approved" } else { "declined" };
    let ans = answer(&p.payment_id, status, reason, auth_code);
    if c.prepare_cached(
        "UPDATE payments SET status = ?2, reason = ?3, auth_code = ?4, decided_at = ?5, answer = ?6
         WHERE payment_id = ?1 AND status = 'pending'",
    )?
    .execute(params![
        p.payment_id,
        status,
        reason,
        auth_code,
        ts(ctx.now),
        answer_to_store(&ans)
    ])? == 0
    {
        // Decided meanwhile (a stale-pending resolution): that decision stands.
        return decided_answer(c, &p.payment_id);
    }
    journal_payment(
        c,
        ctx,
        p,
        &format!("payment.{status}"),
        json!({"status": status, "reason": reason, "auth_code": auth_code}),
    )?;
    Ok(ans)
}

/// The answer already recorded for a payment that is no longer pending.
fn decided_answer(c: &Connection, payment_id: &str) -> rusqlite::Result<Value> {
    let p = by_id(c, payment_id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
    Ok(p.answer
        .as_deref()
        .and_then(|a| serde_json::from_str(a).ok())
        .unwrap_or_else(|| {
            answer(
                &p.payment_id,
                &p.status,
                p.reason.as_deref(),
                p.auth_code.as_deref(),
            )
        }))
}

/// The request as it was claimed, from its stored row (forwarding, late resolution).
pub fn as_new(p: &Payment) -> NewPayment {
    NewPayment {
        payment_id: p.payment_id.clone(),
        device_id: p.device_id.clone(),
        lane: p.lane.clone(),
        idempotency_key: p.idempotency_key.clone(),
        body_sha256: p.body_sha256.clone(),
        basket_id: p.basket_id.clone(),
        amount_minor: p.amount_minor,
        currency: p.currency.clone(),
        tender_kind: p.tender_kind.clone(),
        card_fingerprint: p.card_fingerprint.clone(),
        tender: serde_json::from_str(&p.tender).unwrap_or(Value::Null),
    }
}

/// The oldest stored payment waiting to be forwarded.
pub fn next_to_forward(c: &Connection) -> rusqlite::Result<Option<Payment>> {
    c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM payments WHERE status = 'approved_offline' ORDER BY created_at, payment_id LIMIT 1"
    ))?
    .query_row([], from_row)
    .optional()
}

/// The oldest payment declined offline whose online attempt may have reached the processor.
pub fn next_unresolved(c: &Connection) -> rusqlite::Result<Option<Payment>> {
    c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM payments WHERE status = 'declined_offline' AND sent = 1 AND forwarded_at IS NULL
         ORDER BY created_at LIMIT 1"
    ))?
    .query_row([], from_row)
    .optional()
}

/// Pending rows older than `before`: online attempts whose process died before deciding.
pub fn stale_pending(c: &Connection, before: DateTime<Utc>) -> rusqlite::Result<Vec<Payment>> {
    c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM payments WHERE status = 'pending' AND created_at < ?1 ORDER BY created_at LIMIT 50"
    ))?
    .query_map([ts(before)], from_row)?
    .collect()
}

/// What forwarding a stored payment came to.
pub enum Forwarded<'a> {
    Captured { auth_code: Option<&'a str> },
    Declined { reason: Option<&'a str> },
}

pub fn record_forwarded(
    c: &Connection,
    ctx: &Ctx<'_>,
    p: &Payment,
    out: Forwarded<'_>,
) -> rusqlite::Result<bool> {
    let now = ts(ctx.now);
    let (status, reason, auth) = match out {
        Forwarded::Captured { auth_code } => ("captured", None, auth_code),
        Forwarded::Declined { reason } => (
            "declined_after_forward",
            Some(reason.unwrap_or("declined")),
            None,
        ),
    };
    let n = c
        .prepare_cached(
            "UPDATE payments SET status = ?2, reason = coalesce(?3, reason), auth_code = coalesce(?4, auth_code),
                forwarded_at = ?5, forward_attempts = forward_attempts + 1, last_forward_error = NULL
             WHERE payment_id = ?1 AND status = 'approved_offline'",
        )?
        .execute(params![p.payment_id, status, reason, auth, now])?;
    if n == 1 {
        let sale = sale_of(c, p)?;
        journal_payment(
            c,
            ctx,
            &as_new(p),
            &format!("payment.{status}"),
            json!({"status": status, "reason": reason, "auth_code": auth, "created_at": p.created_at,
                   "forwarded_at": now, "sale": sale}),
        )?;
    }
    Ok(n == 1)
}

pub fn record_forward_error(c: &Connection, payment_id: &str, error: &str) -> rusqlite::Result<()> {
    c.execute(
        "UPDATE payments SET forward_attempts = forward_attempts + 1, last_forward_error = ?2 WHERE payment_id = ?1",
        params![payment_id, error],
    )
    .map(drop)
}

/// What asking again about a payment declined offline came to.
pub enum Resolution<'a> {
    /// The processor had declined it too.
    DeclineConfirmed,
    /// The processor had approved it, and the approval was refunded.
    Reversed { refund_id: Option<&'a str> },
    /// The processor had approved it and did not refund it: the customer paid for goods
    /// they did not get, and a person must refund them (reconciliation).
    ReversalRefused { reason: &'a str },
}

/// Marks `last_forward_error` of a payment whose reversal the processor refused.
const REVERSAL_REFUSED: &str = "reversal_refused";

/// A declined-offline payment asked again with its key: the processor's first answer.
pub fn record_resolved(
    c: &Connection,
    ctx: &Ctx<'_>,
    p: &Payment,
    resolution: Resolution<'_>,
) -> rusqlite::Result<()> {
    let refused = match &resolution {
        Resolution::ReversalRefused { reason } => Some(format!("{REVERSAL_REFUSED}: {reason}")),
        _ => None,
    };
    let n = c.execute(
        "UPDATE payments SET forwarded_at = ?2, forward_attempts = forward_attempts + 1,
            last_forward_error = ?3 WHERE payment_id = ?1 AND forwarded_at IS NULL",
        params![p.payment_id, ts(ctx.now), refused],
    )?;
    if n == 1 {
        let (kind, approved, refund, reason) = match resolution {
            Resolution::DeclineConfirmed => ("payment.decline_confirmed", false, None, None),
            Resolution::Reversed { refund_id } => ("payment.reversed", true, refund_id, None),
            Resolution::ReversalRefused { reason } => {
                ("payment.reversal_refused", true, None, Some(reason))
            }
        };
        journal_payment(
            c,
            ctx,
            &as_new(p),
            kind,
            json!({"status": p.status, "processor_approved": approved, "refund": refund,
                   "reversal_refused": reason}),
        )?;
    }
    Ok(())
}

/// The earliest forwarding deadline among stored payments.
pub fn next_deadline(c: &Connection) -> rusqlite::Result<Option<DateTime<Utc>>> {
    let d: Option<String> = c
        .prepare_cached("SELECT min(forward_by) FROM payments WHERE status = 'approved_offline'")?
        .query_row([], |r| r.get(0))?;
    Ok(d.as_deref().and_then(parse_ts))
}

/// Stored payments past their forwarding deadline become `expired` (journaled). Returns how many.
pub fn expire_overdue(c: &Connection, ctx: &Ctx<'_>) -> rusqlite::Result<usize> {
    let now = ts(ctx.now);
    let overdue: Vec<Payment> = c
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM payments WHERE status = 'approved_offline' AND forward_by < ?1"
        ))?
        .query_map([&now], from_row)?
        .collect::<Result<_, _>>()?;
    for p in &overdue {
        c.execute(
            "UPDATE payments SET status = 'expired', reason = 'forward_deadline_passed' WHERE payment_id = ?1 AND status = 'approved_offline'",
            [&p.payment_id],
        )?;
        let sale = sale_of(c, p)?;
        journal_payment(
            c,
            ctx,
            &as_new(p),
            "payment.expired",
            json!({"status": "expired", "forward_by": p.forward_by, "created_at": p.created_at, "sale": sale}),
        )?;
    }
    Ok(overdue.len())
}

/// The basket a payment paid for, when the kiosk recorded its sale: for reconciliation.
fn sale_of(c: &Connection, p: &Payment) -> rusqlite::Result<Value> {
    let Some(sale_id) = &p.sale_id else {
        return Ok(Value::Null);
    };
    let doc: Option<String> = c
        .query_row(
            "SELECT r.doc FROM kiosk_sales s JOIN local_receipts r ON r.receipt_id = s.receipt_id
             WHERE s.device_id = ?1 AND s.sale_id = ?2",
            params![p.device_id, sale_id],
            |r| r.get(0),
        )
        .optional()?;
    Ok(
        json!({"sale_id": sale_id, "receipt": doc.and_then(|d| serde_json::from_str::<Value>(&d).ok())}),
    )
}

/// The queue view: what the store carries on its own books until forwarded.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Exposure {
    /// Approved offline, not yet forwarded.
    pub count: i64,
    pub total_minor: i64,
    pub oldest_at: Option<String>,
    pub oldest_age_secs: Option<i64>,
    /// The earliest forwarding deadline among them, and the seconds left until it.
    pub tightest_deadline_at: Option<String>,
    pub tightest_deadline_secs: Option<i64>,
    /// True when the tightest deadline is within [`DEADLINE_WARNING_SECS`]: forward or act now.
    pub deadline_warning: bool,
    pub declined_after_forward: i64,
    pub expired: i64,
    /// Declined offline after an online attempt whose outcome is unknown, not yet asked again.
    pub unresolved: i64,
    /// Online attempts in flight (or left pending by a crash).
    pub pending: i64,
}

/// Warn this long before a stored payment's forwarding deadline.
pub const DEADLINE_WARNING_SECS: i64 = 6 * 3600;

pub fn exposure(c: &Connection, now: DateTime<Utc>) -> rusqlite::Result<Exposure> {
    let (count, total_minor): (i64, i64) = c
        .prepare_cached("SELECT count, total_minor FROM payments_exposure WHERE id = 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let (oldest_at, tightest): (Option<String>, Option<String>) = c
        .prepare_cached("SELECT min(created_at), min(forward_by) FROM payments WHERE status = 'approved_offline'")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let counts =
        |sql: &str| -> rusqlite::Result<i64> { c.prepare_cached(sql)?.query_row([], |r| r.get(0)) };
    let secs = |t: &Option<String>| {
        t.as_deref()
            .and_then(parse_ts)
            .map(|t| (t - now).num_seconds())
    };
    let tightest_deadline_secs = secs(&tightest);
    Ok(Exposure {
        count,
        total_minor,
        oldest_age_secs: secs(&oldest_at).map(|s| (-s).max(0)),
        oldest_at,
        deadline_warning: tightest_deadline_secs.is_some_and(|s| s < DEADLINE_WARNING_SECS),
        tightest_deadline_secs: tightest_deadline_secs.map(|s| s.max(0)),
        tightest_deadline_at: tightest,
        declined_after_forward: counts(
            "SELECT count(*) FROM payments WHERE status = 'declined_after_forward'",
        )?,
        expired: counts("SELECT count(*) FROM payments WHERE status = 'expired'")?,
        unresolved: counts(
            "SELECT count(*) FROM payments WHERE status = 'declined_offline' AND sent = 1 AND forwarded_at IS NULL",
        )?,
        pending: counts("SELECT count(*) FROM payments WHERE status = 'pending'")?,
    })
}

/// Payments that need a person: declined after forwarding and expired, with their sale.
#[derive(Debug, Clone, Serialize)]
pub struct NeedsPerson {
    pub payment_id: String,
    pub status: String,
    pub reason: Option<String>,
    pub device_id: String,
    pub lane: String,
    pub basket_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub created_at: String,
    pub forwarded_at: Option<String>,
    pub sale: Value,
}

/// How long a kiosk has to record the sale a payment paid for before reconciliation asks.
pub const SALE_GRACE: Duration = Duration::hours(1);

/// What reconciliation calls a payment that paid but whose kiosk never recorded a sale.
pub const PAID_WITHOUT_SALE: &str = "paid_without_sale";

/// The states of a payment whose money the store has or will have (a sale should follow).
const PAID: [&str; 3] = ["approved", "approved_offline", "captured"];

/// Also payments declined offline that the processor had approved and would not refund
/// (status `reversal_refused` here; the kiosk still sees `declined_offline`), and payments
/// that paid (approved, approved offline, captured) more than [`SALE_GRACE`] before `now`
/// with no sale recorded for them (`paid_without_sale`): the kiosk failed between the
/// payment and the sale, so the customer may have been charged for goods they did not get,
/// and the receipt the desk would need for a return does not exist.
pub fn needs_person(c: &Connection, now: DateTime<Utc>) -> rusqlite::Result<Vec<NeedsPerson>> {
    let rows: Vec<(Payment, Option<String>)> = c
        .prepare_cached(&format!(
            "SELECT {COLUMNS}, last_forward_error FROM payments
             WHERE status IN ('declined_after_forward', 'expired')
                OR (status = 'declined_offline' AND sent = 1 AND forwarded_at IS NOT NULL
                    AND last_forward_error LIKE '{REVERSAL_REFUSED}%')
                OR (sale_id IS NULL AND status IN ('{}') AND created_at < ?1)
             ORDER BY created_at",
            PAID.join("', '")
        ))?
        .query_map([ts(now - SALE_GRACE)], |r| Ok((from_row(r)?, r.get(22)?)))?
        .collect::<Result<_, _>>()?;
    rows.into_iter()
        .map(|(p, refused)| {
            let (status, reason) = match refused {
                Some(e) if p.status == "declined_offline" => {
                    (REVERSAL_REFUSED.to_string(), Some(e))
                }
                _ if p.sale_id.is_none() && PAID.contains(&p.status.as_str()) => (
                    PAID_WITHOUT_SALE.to_string(),
                    Some(format!("{}: the kiosk recorded no sale for it", p.status)),
                ),
                _ => (p.status.clone(), p.reason.clone()),
            };
            Ok(NeedsPerson {
                sale: sale_of(c, &p)?,
                payment_id: p.payment_id,
                status,
                reason,
                device_id: p.device_id,
                lane: p.lane,
                basket_id: p.basket_id,
                amount_minor: p.amount_minor,
                currency: p.currency,
                created_at: p.created_at,
                forwarded_at: p.forwarded_at,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_db(policy: &[(&str, Value)]) -> Connection {
        let mut c = Connection::open_in_memory().unwrap();
        crate::store::migrate(&mut c).unwrap();
        set_policy(&c, policy);
        c
    }

    fn set_policy(c: &Connection, policy: &[(&str, Value)]) {
        c.execute("DELETE FROM policy", []).unwrap();
        for (k, v) in policy {
            c.execute(
                "INSERT INTO policy (key, value, doc) VALUES (?1, ?2, '{}')",
                params![k, v.to_string()],
            )
            .unwrap();
        }
    }

    fn card_payment(n: u32, fingerprint: &str) -> NewPayment {
        NewPayment {
            payment_id: format!("pay-{n}"),
            device_id: "sco-01".into(),
            lane: "lane-01".into(),
            idempotency_key: format!("key-{n}"),
            body_sha256: format!("body-{n}"),
            basket_id: format!("basket-{n}"),
            amount_minor: 1_000,
            currency: "USD".into(),
            tender_kind: "card_token".into(),
            card_fingerprint: Some(fingerprint.into()),
            tender: json!({"kind": "card_token", "token": "tok", "brand": "visa", "last4": "0001"}),
        }
    }

    /// Pays offline `n` minutes into an outage that began at 10:00.
    fn pay(c: &Connection, n: u32, fingerprint: &str) -> (String, Option<String>, bool) {
        let start = DateTime::parse_from_rfc3339("2026-12-06T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let ctx = Ctx {
            store_id: "store-1",
            now: start + Duration::minutes(i64::from(n)),
            reachable_hint: Reachable {
                seen: Some(start),
                started_at: start,
            },
        };
        let ans = stand_in(c, &ctx, &card_payment(n, fingerprint), true, false).unwrap();
        let indexed: bool = c
            .query_row(
                "SELECT velocity_indexed FROM payments WHERE payment_id = ?1",
                [format!("pay-{n}")],
                |r| r.get(0),
            )
            .unwrap();
        (
            ans["status"].as_str().unwrap().to_string(),
            ans["reason"].as_str().map(String::from),
            indexed,
        )
    }

    const CAPS: [(&str, i64); 2] = [
        ("offline_tx_cap_minor", 5_000),
        ("offline_exposure_cap_minor", 1_000_000),
    ];

    fn caps(velocity: Option<i64>) -> Vec<(&'static str, Value)> {
        let mut p: Vec<(&str, Value)> = CAPS.iter().map(|(k, v)| (*k, json!(v))).collect();
        if let Some(n) = velocity {
            p.push(("card_velocity_count", json!(n)));
        }
        p
    }

    /// Without a velocity cap a payment stays out of the card index (its random leaf is a
    /// page of WAL per payment); a cap set later in the same outage still counts the card's
    /// earlier stand-in approvals, from the time-ordered index, with those made under it.
    #[test]
    fn a_velocity_cap_set_during_an_outage_counts_the_cards_earlier_approvals() {
        let c = store_db(&caps(None));
        assert_eq!(
            pay(&c, 1, "card-a"),
            ("approved_offline".into(), None, false)
        );
        assert_eq!(
            pay(&c, 2, "card-b"),
            ("approved_offline".into(), None, false)
        );
        set_policy(&c, &caps(Some(2)));
        assert_eq!(
            pay(&c, 3, "card-a"),
            ("approved_offline".into(), None, true)
        );
        assert_eq!(
            pay(&c, 4, "card-a"),
            (
                "declined_offline".into(),
                Some("card_velocity_count".into()),
                true
            )
        );
        assert_eq!(
            pay(&c, 5, "card-b"),
            ("approved_offline".into(), None, true)
        );
        assert_eq!(
            pay(&c, 6, "card-c"),
            ("approved_offline".into(), None, true)
        );
        assert_eq!(
            pay(&c, 7, "card-b"),
            (
                "declined_offline".into(),
                Some("card_velocity_count".into()),
                true
            )
        );
    }

    /// A cap in force from the start counts through the card index alone.
    #[test]
    fn a_velocity_cap_in_force_from_the_start_declines_the_cards_next_payment() {
        let c = store_db(&caps(Some(1)));
        assert_eq!(
            pay(&c, 1, "card-a"),
            ("approved_offline".into(), None, true)
        );
        assert_eq!(
            pay(&c, 2, "card-a").1.as_deref(),
            Some("card_velocity_count")
        );
        assert_eq!(pay(&c, 3, "card-b").0, "approved_offline");
    }

    /// The idempotency constraint (key first since 0015) still refuses a kiosk's second row
    /// under one key, and still lets two kiosks use the same key.
    #[test]
    fn a_kiosks_key_is_unique_and_other_kiosks_may_use_it() {
        let c = store_db(&caps(None));
        let first = card_payment(1, "card-a");
        insert_pending(&c, &first, "2026-12-06T10:00:00.000Z").unwrap();
        let again = NewPayment {
            payment_id: "pay-again".into(),
            ..first.clone()
        };
        assert!(insert_pending(&c, &again, "2026-12-06T10:00:01.000Z").is_err());
        let other_kiosk = NewPayment {
            payment_id: "pay-other".into(),
            device_id: "sco-02".into(),
            ..first.clone()
        };
        insert_pending(&c, &other_kiosk, "2026-12-06T10:00:01.000Z").unwrap();
        assert_eq!(
            by_key(&c, "sco-02", "key-1").unwrap().unwrap().payment_id,
            "pay-other"
        );
        assert_eq!(
            by_key(&c, "sco-01", "key-1").unwrap().unwrap().payment_id,
            "pay-1"
        );
        // The lookup is one probe of the constraint's index, not a scan.
        let plan: String = c
            .query_row(
                "EXPLAIN QUERY PLAN SELECT payment_id FROM payments WHERE device_id = 'x' AND idempotency_key = 'y'",
                [],
                |r| r.get(3),
            )
            .unwrap();
        assert!(
            plan.contains("USING INDEX sqlite_autoindex_payments"),
            "{plan}"
        );
    }

    /// The stored answer leaves out `payment_id` (the row's own column); every read puts it
    /// back, so a duplicate gets the first answer exactly, declined with its reason too, and
    /// a row stored with the whole answer (before) reads the same.
    #[test]
    fn a_duplicate_gets_the_first_answer_with_its_payment_id() {
        let c = store_db(&caps(None));
        let start = DateTime::parse_from_rfc3339("2026-12-06T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let ctx = Ctx {
            store_id: "store-1",
            now: start,
            reachable_hint: Reachable {
                seen: Some(start),
                started_at: start,
            },
        };
        let mut big = card_payment(2, "fp");
        big.amount_minor = 9_000;
        for p in [card_payment(1, "fp"), big] {
            let first = stand_in(&c, &ctx, &p, true, false).unwrap();
            let stored: String = c
                .query_row(
                    "SELECT answer FROM payments WHERE payment_id = ?1",
                    [&p.payment_id],
                    |r| r.get(0),
                )
                .unwrap();
            assert!(!stored.contains(&p.payment_id), "{stored}");
            let again = by_key(&c, &p.device_id, &p.idempotency_key)
                .unwrap()
                .unwrap();
            assert_eq!(again.answer.as_deref(), Some(first.to_string().as_str()));
            assert_eq!(decided_answer(&c, &p.payment_id).unwrap(), first);
            assert_eq!(first["payment_id"], json!(p.payment_id));
        }
        assert_eq!(
            by_id(&c, "pay-2").unwrap().unwrap().answer.unwrap(),
            json!({"payment_id": "pay-2", "status": "declined_offline", "reason": "over_offline_transaction_cap"})
                .to_string()
        );
        let whole = json!({"payment_id": "pay-1", "status": "approved_offline"}).to_string();
        c.execute(
            "UPDATE payments SET answer = ?1 WHERE payment_id = 'pay-1'",
            [&whole],
        )
        .unwrap();
        assert_eq!(by_id(&c, "pay-1").unwrap().unwrap().answer, Some(whole));
    }
}
