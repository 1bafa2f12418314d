//! Standin: the store-side offline fallback service.
//!
//! One folder per concern, each owning its routes, rules and SQL: `feeds` (HQ's data down),
//! `journal` (what the store did, delivered up exactly once), `status` (health and freshness), `web` (the UI), `access` (credentials), `upstream`
//! (central and the processor), `store` (SQLite), `simulator` (both upstreams, for the demo
//! and the tests).
#![forbid(unsafe_code)]

pub mod access;
pub mod app;
pub mod clock;
pub mod config;
pub mod demo;
pub mod error;
pub mod feeds;
pub mod http;
pub mod hub;
pub mod journal;
pub mod metrics;
pub mod payments;
pub mod pickups;
pub mod reconciliation;
pub mod returns;
pub mod server;
pub mod simulator;
pub mod state;
pub mod status;
pub mod store;
pub mod upstream;
pub mod web;

pub use app::app;
pub use server::launch;
