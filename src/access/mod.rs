//! Access: who may do what. Staff PIN verifiers, device and sync credentials.

pub mod pin;
pub mod token;
