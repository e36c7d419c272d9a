//! The plumb render controller: from a source artifact to a gated, rendered artifact.
//!
//! For each Sync it downloads the referenced GitRepository's artifact (verifying its digest),
//! unpacks it safely, renders `spec.path` with kustomize, applies the Sync's transforms and
//! substitution, checks the result against every governing [`Policy`](plumb_api::Policy), and
//! publishes a gzip of multi-document YAML that the sync controller applies. It writes only
//! `status.render` and the `Rendered` condition of a Sync, and the status of Policies.
//!
//! The core is pure and tested without a cluster: [`substitute`], [`policy`], [`build`],
//! [`cache`], [`publish`]. [`policy_check`] is `plumb policy check`.

pub mod build;
pub mod cache;
pub mod config;
pub mod context;
pub mod controller;
pub mod engine;
pub mod error;
pub mod objects;
pub mod policy;
pub mod policy_check;
pub mod policy_controller;
pub mod publish;
pub mod status;
pub mod substitute;
pub mod sweep;
pub mod sync_controller;

pub use config::{Config, SHARD_LABEL};
pub use controller::{run, run_with_client};
pub use error::{Error, build_reason};
