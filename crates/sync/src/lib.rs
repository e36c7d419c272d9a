//! The plumb sync controller: takes the rendered artifact a Sync's render published, applies it
//! with server-side apply, prunes what left it, assesses health, waits for dependencies, and
//! corrects drift of what it applied within a second of seeing it.
//!
//! The decisions are plain functions over plain data ([`inventory`], [`stage`], [`health`],
//! [`drift`], [`window`], [`deps`], [`governance`]); the modules that talk to the API server
//! ([`apply`], [`watches`], [`reconcile`]) only gather inputs, call them, and write the results.

pub mod deps;
pub mod drift;
pub mod governance;
pub mod health;
pub mod inventory;
pub mod manifest;
pub mod stage;
pub mod window;

pub mod apply;
pub mod changeset;
pub mod context;
pub mod controller;
pub mod reconcile;
pub mod watches;

pub use context::{DEFAULT_WATCH_SELECTOR, SHARD_LABEL, Settings};
pub use controller::{Error, run, run_with};
