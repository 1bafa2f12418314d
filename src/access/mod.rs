//! Access: who may do what. Staff sign in with employee id + PIN (verifiers from the staff
//! feed, Argon2id keyed with the store's pepper) and hold a session; kiosks and the HQ sync
//! job present bearer tokens of their own kinds. One permission table decides every staff
//! route; a credential of one kind never opens a route of another.

pub mod attempts;
pub mod guard;
pub mod kiosk;
pub mod lockout;
pub mod login;
pub mod overrides;
pub mod pin;
pub mod session;
pub mod token;

use serde::Serialize;

pub use crate::feeds::records::Role;

pub use crate::http::Permission;

/// The permission table: the one place that says which role may do what.
pub fn allowed(role: Role, p: Permission) -> bool {
    use Permission::*;
    match p {
        Session | UseDesk | HandOver | TakeReturn => true,
        ViewReconciliation => matches!(role, Role::Lead | Role::Manager),
        ApproveOverride => role == Role::Manager,
    }
}

/// Who is calling, once a route's access rule has let them in.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Caller {
    Anyone,
    Staff {
        employee_id: String,
        name: String,
        role: Role,
    },
    Kiosk {
        device_id: String,
        lane: String,
    },
    Sync {
        name: String,
    },
}

impl Caller {
    /// The journal's `actor` for what this caller does.
    pub fn actor(&self) -> Option<String> {
        match self {
            Self::Anyone => None,
            Self::Staff { employee_id, .. } => Some(employee_id.clone()),
            Self::Kiosk { device_id, .. } => Some(device_id.clone()),
            Self::Sync { name } => Some(name.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_ranks_roles() {
        for p in [
            Permission::Session,
            Permission::UseDesk,
            Permission::HandOver,
            Permission::TakeReturn,
        ] {
            assert!(
                allowed(Role::Associate, p) && allowed(Role::Lead, p) && allowed(Role::Manager, p)
            );
        }
        assert!(!allowed(Role::Associate, Permission::ViewReconciliation));
        assert!(allowed(Role::Lead, Permission::ViewReconciliation));
        assert!(!allowed(Role::Lead, Permission::ApproveOverride));
        assert!(allowed(Role::Manager, Permission::ApproveOverride));
    }
}
