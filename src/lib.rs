//! Standin: the store-side offline fallback service.
#![forbid(unsafe_code)]

pub mod access;
pub mod simulator;
