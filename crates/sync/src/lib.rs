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
mod checked;
mod config;
mod context;
mod controller;
mod controls;
mod custom_health;
mod decrypt;
mod deps;
mod drift;
mod error;
mod finalize;
mod gate;
mod governance;
mod health;
mod hooks;
mod inventory;
mod manager;
mod manifest;
mod memory;
mod packed;
mod reconcile;
mod signal;
mod stage;
mod status;
mod substitution;
mod sync_view;
mod wake;
mod watches;
mod window;

pub use config::Config;

/// The sync controller's decisions about one object, read-only, for tools that show a Sync
/// (`plumb ui`): the body plumb applies for a rendered object, where a live object differs from
/// it, the object's health and its apply stage.
pub mod view {
    pub use crate::apply::{Intended, intended};
    pub use crate::drift::{differences, project};
    pub use crate::health::{Health, assess};
    pub use crate::manifest::{Manifest, ManifestError, parse_gzip};
    pub use crate::stage::{Stage, stage_of};
    pub use plumb_substitute::SecretValues;
    pub use plumb_substitute::deferred::is_deferred as substitution_deferred;
    pub use plumb_substitute::deferred::substituted_id;
}
pub use controller::{Error, LEASE_NAME, run};
