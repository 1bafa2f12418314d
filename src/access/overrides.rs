//! Manager override: an action beyond an associate's limits goes ahead when a manager enters
//! their own employee id and PIN for that one action. The PIN check is the login's (same
//! lockout, same journaling of failures); the approval is journaled in the action's own
//! transaction, naming both people.

use std::net::IpAddr;

use rusqlite::Connection;
use serde::Deserialize;
use serde_json::json;

use super::login::{Verified, check_pin};
use super::{Caller, Permission, allowed};
use crate::error::AppError;
use crate::journal::{self, Lane, NewEntry};
use crate::state::AppState;

/// What a request carries when it asks for an override (`"override": {...}` in API.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideRequest {
    pub manager_id: String,
    pub pin: String,
}

/// A manager's approval of one action.
#[derive(Debug, Clone)]
pub struct Approval {
    pub manager: Verified,
    pub action: String,
}

/// Checks the manager's id and PIN for `action`. A wrong PIN counts toward the manager's
/// lockout; a right PIN of someone who is not a manager is refused (403).
pub async fn approve(
    state: &AppState,
    req: &OverrideRequest,
    action: &str,
    client: Option<IpAddr>,
) -> Result<Approval, AppError> {
    let manager = check_pin(
        state,
        req.manager_id.trim(),
        &req.pin,
        client,
        &format!("override:{action}"),
    )
    .await?;
    if !allowed(manager.role, Permission::ApproveOverride) {
        return Err(AppError::Forbidden(
            "an override needs a manager's id and PIN".into(),
        ));
    }
    Ok(Approval {
        manager,
        action: action.to_string(),
    })
}

/// Journals the approval (audit lane) inside the action's transaction, naming who asked and
/// who approved. Returns the `override` object to put in the action's own journal body.
pub fn record(
    conn: &Connection,
    store_id: &str,
    now: &str,
    approval: &Approval,
    requested_by: &Caller,
) -> rusqlite::Result<serde_json::Value> {
    let who = json!({
        "action": approval.action,
        "approved_by": approval.manager.employee_id,
        "requested_by": requested_by.actor(),
    });
    journal::append(
        conn,
        store_id,
        now,
        NewEntry {
            lane: Lane::Audit,
            kind: "override.granted".into(),
            actor: Some(approval.manager.employee_id.clone()),
            device: None,
            body: who.clone(),
        },
    )?;
    Ok(who)
}
