//! Taking a return: the request, the checks and the writes (one transaction on the writer,
//! with its journal entry), the refund split, and the answer.

use crate::feeds::records::MAX_LINE_QTY;
use std::net::IpAddr;

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::rules::{
    self, LineAsk, LineRefusal, OverrideReason, Refusal, TenderRefusal, plan_return, split_refund,
};
use super::{no_receipt, not_found, offline, refunds, store, store_day};
use crate::access::overrides::{Approval, OverrideRequest, approve, record};
use crate::access::{Caller, Role};
use crate::error::AppError;
use crate::http::{ApiJson, ClientAddr};
use crate::journal::{self, Lane, NewEntry};
use crate::state::AppState;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundMethod {
    OriginalTender,
    StoreCredit,
    Cash,
}

impl RefundMethod {
    fn as_str(self) -> &'static str {
        match self {
            Self::OriginalTender => "original_tender",
            Self::StoreCredit => "store_credit",
            Self::Cash => "cash",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RefundBody {
    method: RefundMethod,
}

/// A line of the request: a receipt's `line`, or (without a receipt) a `sku`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AskLine {
    #[serde(default)]
    pub line: Option<u32>,
    #[serde(default)]
    pub sku: Option<String>,
    pub qty: i64,
    pub reason: String,
}

/// The longest return `request_id`, in characters (`maxLength` in the OpenAPI document).
pub const RETURN_REQUEST_ID_MAX_CHARS: usize = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TakeBody {
    #[serde(default)]
    receipt_id: Option<String>,
    lines: Vec<AskLine>,
    refund: RefundBody,
    #[serde(default, rename = "override")]
    override_: Option<OverrideRequest>,
    /// The desk's idempotency key: a retried request with the same key and body gets the
    /// first answer, never a second return.
    #[serde(default)]
    request_id: Option<String>,
}

/// The answer to a return: what was taken, what goes back, and how.
#[derive(Debug, Clone, Serialize)]
pub struct Taken {
    pub return_id: String,
    pub receipt_id: Option<String>,
    pub taken_at: String,
    pub taken_by: String,
    /// The names from the staff replica, for the slip (null if HQ no longer lists them).
    pub taken_by_name: Option<String>,
    pub lines: Vec<TakenLine>,
    pub refund_method: String,
    pub refund_amount_minor: i64,
    pub refund_state: String,
    pub currency: String,
    /// Handed over in cash at the desk (all of a cash refund; the part of an original-tender
    /// refund paid in cash).
    pub cash_minor: i64,
    pub refunds: Vec<refunds::RefundView>,
    pub override_used: bool,
    pub approved_by: Option<String>,
    pub approved_by_name: Option<String>,
    pub override_reasons: serde_json::Value,
    /// Taken while central was not up (counted in the day's offline budget).
    pub offline: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct TakenLine {
    pub line: Option<u32>,
    pub sku: String,
    pub description: String,
    pub qty: i64,
    pub reason: String,
    pub amount_minor: i64,
}

/// The return as stored, for the answer (also a replayed one) and the slip.
pub fn taken(c: &Connection, return_id: &str) -> rusqlite::Result<Option<Taken>> {
    let Some(row) = c
        .prepare_cached(
            "SELECT return_id, receipt_id, taken_at, by_employee, method, amount_minor, currency,
                    cash_minor, approved_by, override_reasons, offline
             FROM returns WHERE return_id = ?1",
        )?
        .query_row([return_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, i64>(7)?,
                r.get::<_, Option<String>>(8)?,
                r.get::<_, Option<String>>(9)?,
                r.get::<_, bool>(10)?,
            ))
        })
        .optional()?
    else {
        return Ok(None);
    };
    let (
        return_id,
        receipt_id,
        taken_at,
        by,
        method,
        amount,
        currency,
        cash,
        approved_by,
        reasons,
        offline,
    ) = row;
    let descriptions: std::collections::HashMap<String, String> = match &receipt_id {
        Some(id) => store::load(c, id)?
            .and_then(|r| store::parse_doc(&r.doc).ok())
            .map(|d| {
                d.lines
                    .into_iter()
                    .map(|l| (l.sku, l.description))
                    .collect()
            })
            .unwrap_or_default(),
        None => Default::default(),
    };
    let lines = store::lines_of(c, &return_id)?
        .into_iter()
        .map(|l| TakenLine {
            description: descriptions
                .get(&l.sku)
                .cloned()
                .unwrap_or_else(|| l.sku.clone()),
            line: l.line,
            sku: l.sku,
            qty: l.qty,
            reason: l.reason,
            amount_minor: l.amount_minor,
        })
        .collect();
    let name = |id: &str| -> rusqlite::Result<Option<String>> {
        c.prepare_cached("SELECT name FROM staff WHERE employee_id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()
    };
    let (taken_by_name, approved_by_name) = (
        name(&by)?,
        approved_by.as_deref().map(name).transpose()?.flatten(),
    );
    Ok(Some(Taken {
        taken_by_name,
        approved_by_name,
        refund_state: store::refund_state(c, &return_id, &method, cash)?,
        refunds: refunds::of_return(c, &return_id)?,
        override_used: approved_by.is_some(),
        override_reasons: reasons
            .and_then(|r| serde_json::from_str(&r).ok())
            .unwrap_or(serde_json::Value::Null),
        return_id,
        receipt_id,
        taken_at,
        taken_by: by,
        lines,
        refund_method: method,
        refund_amount_minor: amount,
        currency,
        cash_minor: cash,
        approved_by,
        offline,
    }))
}

fn refusal(r: Refusal) -> AppError {
    match r {
        Refusal::NoLines => {
            AppError::invalid("no_lines", "lines", "choose at least one line to return")
        }
        Refusal::InvalidLine {
            index,
            field,
            message,
        } => AppError::invalid("invalid_line", format!("lines[{index}].{field}"), message),
        Refusal::Line { index, refusal } => {
            let code = refusal.code();
            let e = AppError::invalid(code, format!("lines[{index}].line"), refusal.message());
            match refusal {
                LineRefusal::WindowPassed { ended_at } => e.with(
                    "window_ended_at",
                    ended_at.to_rfc3339_opts(SecondsFormat::Secs, true),
                ),
                _ => e,
            }
        }
        Refusal::TooMany { index, remaining } => AppError::invalid(
            "too_many",
            format!("lines[{index}].qty"),
            format!("only {remaining} of this line can still be returned"),
        )
        .with("remaining", remaining),
    }
}

fn override_required(reasons: &[OverrideReason]) -> AppError {
    let message = reasons
        .iter()
        .map(OverrideReason::message)
        .collect::<Vec<_>>()
        .join("; ");
    AppError::conflict(
        "override_required",
        format!("a manager's override is needed: {message}"),
    )
    .with("reasons", serde_json::to_value(reasons).unwrap_or_default())
}

fn tender_refused(r: TenderRefusal) -> AppError {
    match r {
        TenderRefusal::NotCollected => AppError::conflict(
            "payment_not_collected",
            "the card payment for this sale was never collected (declined when it was forwarded, or expired): a manager decides what to do; it is on the reconciliation report",
        ),
        TenderRefusal::NotYetCollected => AppError::invalid(
            "payment_not_collected_yet",
            "refund.method",
            "this sale was paid by card at a kiosk while the processor was down and the payment is not confirmed yet: refund it to the original card (it goes once the payment is captured)",
        ),
        TenderRefusal::CardNotRefundable { card_minor } => AppError::invalid(
            "tender_not_refundable",
            "refund.method",
            format!(
                "{card_minor} of this refund belongs to a card this receipt gives no way to refund: choose cash or store credit, or call a manager"
            ),
        )
        .with("card_minor", card_minor),
    }
}

/// A return without a receipt is store credit only, and while central is down only if the
/// policy allows it (`policy` is `None` before it has been read).
fn no_receipt_allowed(
    method: RefundMethod,
    offline: bool,
    policy: Option<&rules::Policy>,
) -> Result<(), AppError> {
    if method != RefundMethod::StoreCredit {
        return Err(AppError::invalid(
            "no_receipt_store_credit_only",
            "refund.method",
            "a return without a receipt is refunded as store credit only",
        ));
    }
    if offline && policy.is_some_and(|p| !p.no_receipt_store_credit_offline) {
        return Err(AppError::conflict(
            "no_receipt_offline",
            "returns without a receipt are refused while central is down",
        ));
    }
    Ok(())
}

/// A manager's id and PIN, checked for this one return. A PIN that is not accepted is the
/// desk's problem to show in the override dialog, not a reason to sign the associate out,
/// so it answers 422 rather than the sign-in's 401.
async fn approval(
    state: &AppState,
    req: &OverrideRequest,
    client: Option<IpAddr>,
) -> Result<Approval, AppError> {
    match approve(state, req, "return", client).await {
        Ok(a) => Ok(a),
        Err(AppError::InvalidCredentials) => Err(AppError::invalid(
            "override_not_accepted",
            "override.pin",
            "that manager id and PIN do not match",
        )),
        Err(AppError::Forbidden(_)) => Err(AppError::invalid(
            "override_not_manager",
            "override.manager_id",
            "an override needs a manager's id and PIN",
        )),
        Err(e) => Err(e),
    }
}

struct Take {
    body: TakeBody,
    request_hash: String,
    offline: bool,
    role: Role,
    actor: String,
    caller: Caller,
    approval: Option<Approval>,
    /// Without a receipt: the items priced (on a reader, before the write).
    priced: Option<Vec<no_receipt::Priced>>,
    device: Option<String>,
    store_id: String,
    now: DateTime<Utc>,
    now_s: String,
}

pub(super) async fn take(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ClientAddr(client): ClientAddr,
    ApiJson(body): ApiJson<TakeBody>,
) -> Result<Response, AppError> {
    let Caller::Staff { role, .. } = &caller else {
        return Err(AppError::Unauthorized);
    };
    let role = *role;
    let actor = caller.actor().ok_or(AppError::Unauthorized)?;
    if let Some(id) = &body.request_id
        && !(1..=RETURN_REQUEST_ID_MAX_CHARS).contains(&id.chars().count())
    {
        return Err(AppError::bad_request("request_id", "1 to 100 characters"));
    }
    if body.lines.len() > 200 {
        return Err(AppError::bad_request("lines", "at most 200 lines"));
    }
    // No line holds more units than the receipts feed takes, so no return can ask for more;
    // the OpenAPI document states the same range.
    if let Some(i) = body.lines.iter().position(|l| l.qty > MAX_LINE_QTY) {
        return Err(AppError::invalid(
            "invalid_line",
            format!("lines[{i}].qty"),
            format!("at most {MAX_LINE_QTY}"),
        ));
    }
    let request_hash = hex::encode(Sha256::digest(
        serde_json::to_vec(&json!({"receipt_id": body.receipt_id, "lines": body.lines,
                                   "method": body.refund.method}))
        .unwrap_or_default(),
    ));
    let offline = offline(&state);
    let now = state.clock.now();
    // Without a receipt the price is the lowest the store's receipts show for the SKU: a walk
    // of up to 90 days of receipts, done on a reader so it never holds up the one writer (and
    // every kiosk payment behind it). The receipts replica is all it reads.
    let priced = match &body.receipt_id {
        Some(_) => None,
        None => {
            no_receipt_allowed(body.refund.method, offline, None)?;
            if body.lines.len() > no_receipt::MAX_LINES {
                return Err(AppError::invalid(
                    "invalid_line",
                    "lines",
                    format!(
                        "at most {} items in one return without a receipt",
                        no_receipt::MAX_LINES
                    ),
                ));
            }
            let lines = body.lines.clone();
            Some(
                state
                    .store
                    .read(move |c| {
                        no_receipt_allowed(
                            RefundMethod::StoreCredit,
                            offline,
                            Some(&store::policy(c)?),
                        )?;
                        no_receipt::price(c, &lines, now)
                    })
                    .await?,
            )
        }
    };
    let approval = match &body.override_ {
        Some(o) => Some(approval(&state, o, client).await?),
        None => None,
    };
    let input = Take {
        body,
        request_hash,
        offline,
        role,
        actor,
        caller,
        approval,
        priced,
        device: client.map(|c| c.to_string()),
        store_id: state.config.store_id.clone(),
        now,
        now_s: state.clock.now_rfc3339(),
    };
    // Decided on the writer against the receipt and the returns as they are at that moment:
    // two desks returning the same line at once cannot both refund it.
    let (return_id, replayed) = state.store.write(move |c| take_in(c, input)).await?;
    if !replayed {
        state.journal_appended.notify_one();
    }
    // A refund to the card goes to the processor now if it answers; otherwise it waits in
    // the queue for the refund worker (same key either way).
    let queued: Vec<(String, String)> = state
        .store
        .read({
            let id = return_id.clone();
            move |c| refunds::queued_of(c, &id).map_err(AppError::from)
        })
        .await?;
    if !queued.is_empty() {
        refunds::send_these(&state, queued).await;
    }
    let answer = state
        .store
        .read(move |c| {
            taken(c, &return_id)?
                .ok_or_else(|| AppError::Internal(anyhow::anyhow!("return vanished")))
        })
        .await?;
    let status = if replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, ApiJson(answer)).into_response())
}

/// Everything a return does to the database, in the writer's transaction. Returns the
/// return's id and whether it was a replay of an earlier request with the same key.
fn take_in(c: &Connection, t: Take) -> Result<(String, bool), AppError> {
    if let Some(request_id) = &t.body.request_id
        && let Some((id, hash)) = c
            .prepare_cached("SELECT return_id, request_hash FROM returns WHERE request_id = ?1")?
            .query_row([request_id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
            })
            .optional()?
    {
        if hash.as_deref() == Some(t.request_hash.as_str()) {
            return Ok((id, true));
        }
        return Err(AppError::conflict(
            "request_id_reused",
            "this request_id was used for a different return",
        ));
    }
    let policy = store::policy(c)?;
    let method = t.body.refund.method;
    // What goes back: per line (receipt line or None, sku, qty, reason, amount, central's count).
    struct Out {
        line: Option<u32>,
        sku: String,
        qty: i64,
        reason: String,
        amount: i64,
        central_before: i64,
    }
    let (receipt, outs, currency, tenders) = match &t.body.receipt_id {
        Some(receipt_id) => {
            let l = store::load_full(c, receipt_id)?.ok_or_else(|| not_found(receipt_id))?;
            let mut asks = Vec::with_capacity(t.body.lines.len());
            for (i, a) in t.body.lines.iter().enumerate() {
                let Some(line) = a.line else {
                    return Err(AppError::invalid(
                        "invalid_line",
                        format!("lines[{i}].line"),
                        "a return from a receipt names the receipt's line",
                    ));
                };
                asks.push(LineAsk {
                    line,
                    qty: a.qty,
                    reason: a.reason.clone(),
                });
            }
            let plan = plan_return(&l.lines, l.sold_at, t.now, &asks).map_err(refusal)?;
            let outs: Vec<Out> = plan
                .into_iter()
                .map(|p| {
                    let d = l.doc.lines.iter().find(|d| d.line == p.line);
                    Out {
                        line: Some(p.line),
                        sku: d.map(|d| d.sku.clone()).unwrap_or_default(),
                        qty: p.qty,
                        reason: p.reason,
                        amount: p.amount.amount_minor,
                        central_before: d.map_or(0, |d| d.returned_qty),
                    }
                })
                .collect();
            let currency = l.row.currency.clone();
            (Some(receipt_id.clone()), outs, currency, Some(l))
        }
        None => {
            // Checked again here: the policy may have changed since the items were priced.
            no_receipt_allowed(method, t.offline, Some(&policy))?;
            let priced = t.priced.clone().unwrap_or_default();
            let currency = priced
                .first()
                .map(|p| p.currency.clone())
                .unwrap_or_default();
            if priced.iter().any(|p| p.currency != currency) {
                return Err(AppError::invalid(
                    "invalid_line",
                    "lines",
                    "these items sold in different currencies: take them as separate returns",
                ));
            }
            let outs = priced
                .into_iter()
                .map(|p| Out {
                    line: None,
                    sku: p.sku,
                    qty: p.qty,
                    reason: p.reason,
                    amount: p.amount_minor,
                    central_before: 0,
                })
                .collect();
            (None, outs, currency, None)
        }
    };
    let amount: i64 = outs.iter().map(|o| o.amount).sum();
    let day = store_day(t.now);
    let before = match &receipt {
        Some(r) => Some(store::receipt_refunds(c, r, &t.actor, &day)?),
        None => None,
    };
    // The lines' prices bound each line's refunds; the tenders bound the receipt's. They agree
    // on a well-formed receipt, but HQ's record is data, not a promise: never give back more
    // than was paid, however the lines are priced.
    if let (Some(before), Some(l)) = (&before, &tenders) {
        let paid = l
            .doc
            .tenders
            .iter()
            .fold(0i64, |sum, t| sum.saturating_add(t.amount_minor.max(0)));
        let remaining = paid.saturating_sub(before.total_minor).max(0);
        if amount > remaining {
            return Err(AppError::invalid(
                "refund_exceeds_payment",
                "lines",
                format!(
                    "this return would refund {amount}, but only {remaining} of what was paid on this receipt has not been refunded yet: call a manager"
                ),
            )
            .with("remaining_minor", remaining));
        }
    }
    // The refund: to the original tenders (electronic ones through the processor, the rest
    // in cash), all in cash, or as store credit; refused when the sale was not (yet) paid
    // for, or when a card would silently come back as cash.
    let (electronic, cash) = match (method, &tenders) {
        (RefundMethod::OriginalTender, Some(l)) => split_refund(&l.tenders, amount),
        (RefundMethod::Cash, _) => (Vec::new(), amount),
        _ => (Vec::new(), 0),
    };
    if let (Some(before), Some(l)) = (&before, &tenders) {
        let original = method == RefundMethod::OriginalTender;
        if let Some(r) = rules::tender_refusal(&l.tenders, original, cash, before.cash_minor) {
            return Err(tender_refused(r));
        }
    }
    let used = store::offline_used(c, &day)?;
    let earlier = before.as_ref().map_or(0, |b| b.unapproved_offline_minor);
    let reasons = rules::override_reasons(t.offline, t.role, amount, earlier, used, &policy);
    let override_body = if reasons.is_empty() {
        None
    } else {
        let Some(approval) = &t.approval else {
            return Err(override_required(&reasons));
        };
        Some(record(c, &t.store_id, &t.now_s, approval, &t.caller)?)
    };
    let return_id = uuid::Uuid::now_v7().to_string();
    let mut refund_rows = Vec::new();
    if let Some(l) = &tenders {
        for (n, (i, part)) in electronic.iter().enumerate() {
            let tender = &l.doc.tenders[*i];
            let key = format!("refund-{return_id}-{}", n + 1);
            refund_rows.push((
                key,
                *i,
                tender,
                *part,
                tender.refund_request(*part, &currency),
            ));
        }
    }
    let approved_by = t
        .approval
        .as_ref()
        .filter(|_| override_body.is_some())
        .map(|a| a.manager.employee_id.clone());
    let reasons_json =
        (!reasons.is_empty()).then(|| serde_json::to_string(&reasons).unwrap_or_default());
    let entry = journal::append(
        c,
        &t.store_id,
        &t.now_s,
        NewEntry {
            lane: Lane::Returns,
            kind: "return.taken".into(),
            actor: Some(t.actor.clone()),
            device: t.device.clone(),
            body: json!({
                "return_id": return_id,
                "receipt_id": receipt,
                "lines": outs.iter().map(|o| json!({"line": o.line, "sku": o.sku, "qty": o.qty,
                    "reason": o.reason, "amount_minor": o.amount})).collect::<Vec<_>>(),
                "refund": {
                    "method": method.as_str(),
                    "amount_minor": amount,
                    "currency": currency,
                    "cash_minor": cash,
                    "to_tenders": refund_rows.iter().map(|(key, i, tender, part, _)| json!({
                        "refund_key": key, "tender_index": i, "kind": tender.kind,
                        "brand": tender.brand, "last4": tender.last4, "amount_minor": part,
                    })).collect::<Vec<_>>(),
                },
                "offline": t.offline,
                "override": override_body.clone().map(|mut o| {
                    o["reasons"] = serde_json::to_value(&reasons).unwrap_or_default();
                    o
                }),
            }),
        },
    )?;
    c.prepare_cached(
        "INSERT INTO returns (return_id, request_id, request_hash, receipt_id, taken_at, day,
            by_employee, approved_by, override_reasons, method, amount_minor, cash_minor, currency,
            offline, journal_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    )?
    .execute(params![
        return_id,
        t.body.request_id,
        t.request_hash,
        receipt,
        t.now_s,
        day,
        t.actor,
        approved_by,
        reasons_json,
        method.as_str(),
        amount,
        cash,
        currency,
        t.offline,
        entry.id
    ])?;
    for o in &outs {
        c.prepare_cached(
            "INSERT INTO return_lines (return_id, receipt_id, line, sku, qty, amount_minor, reason,
                central_returned_before) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            return_id,
            receipt,
            o.line,
            o.sku,
            o.qty,
            o.amount,
            o.reason,
            o.central_before
        ])?;
    }
    for (key, i, tender, part, request) in &refund_rows {
        c.prepare_cached(
            "INSERT INTO return_refunds (refund_key, return_id, tender_index, kind, brand, last4,
                amount_minor, request, state, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'queued', ?9)",
        )?
        .execute(params![
            key,
            return_id,
            *i as i64,
            tender.kind,
            tender.brand,
            tender.last4,
            part,
            request.to_string(),
            t.now_s
        ])?;
    }
    Ok((return_id, false))
}
