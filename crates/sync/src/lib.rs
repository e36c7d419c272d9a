//! The plumb sync controller: takes the rendered artifact a Sync's render published, applies it
//! with server-side apply, prunes what left it, assesses health, waits for dependencies, and
//! corrects drift of what it applied within a second of seeing it.
//!
//! The decisions are plain functions over plain data: the gates (`gate`: cross-namespace
//! references, dependencies, the render's verdict, windows), which object to apply, skip or report
//! (`manager::decide`), what to prune (`inventory`), health (`health`), drift (`drift`), and
//! the status and Events of a reconcile (`status`). The apply engine (`manager`) and the
//! reconcile's steps (`reconcile`) only gather inputs, call them, and write the results.
//!
//! The public surface is what the binaries, `plumb` and the tests use: [`run`], [`run_with`],
//! [`Settings`] and the shard label.

mod apply;
mod config;
mod context;
mod controller;
mod controls;
mod deps;
mod drift;
mod error;
mod finalize;
mod gate;
mod governance;
mod health;
mod inventory;
mod manager;
mod manifest;
mod memory;
mod reconcile;
mod stage;
mod status;
mod watches;
mod window;

pub use config::Config;
pub use controller::{Error, LEASE_NAME, run};
