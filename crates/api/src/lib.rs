//! The plumb API: the three custom resource kinds and the types they share.
//!
//! - [`GitRepository`] (`source.plumb.dev/v1`): where desired state comes from.
//! - [`Sync`] (`sync.plumb.dev/v1`): what to render from a source and apply to the cluster.
//! - [`Policy`] (`policy.plumb.dev/v1`, cluster-scoped): guardrails every governed Sync obeys.
//!
//! The controllers talk to each other only through the status fields of these kinds, so the types
//! here are the contract between them. Values with rules ([`Revision`], [`Digest`], [`ObjectId`],
//! [`Duration`]) are newtypes parsed once at the edge.

// kube's `printcolumn(...)` attributes repeat `type_ = ...`, which this lint takes for a mistake.
#![allow(clippy::duplicated_attributes)]

pub mod condition;
pub mod crd;
pub mod decryption;
pub mod dependency;
pub mod duration;
pub mod expression;
pub mod health;
pub mod helm;
pub mod inventory;
pub mod policy;
pub mod reference;
pub mod revision;
pub mod source;
pub mod sync;

pub use condition::{ConditionExt, Conditions, kind as condition_type, reason};
pub use duration::Duration;
pub use inventory::ObjectId;
pub use policy::{Policy, PolicySpec, PolicyStatus};
pub use revision::{Digest, Revision};
pub use source::{GitRepository, GitRepositorySpec, GitRepositoryStatus};
pub use sync::{Sync, SyncSpec, SyncStatus};

/// Annotation whose every new value asks a controller to reconcile the object now.
/// The value handled last is echoed in `status.lastHandledReconcileAt`.
pub const REQUESTED_AT_ANNOTATION: &str = "plumb.dev/requested-at";

/// Annotation that keeps an object out of pruning when set to `disabled`.
pub const PRUNE_ANNOTATION: &str = "plumb.dev/prune";

/// Label naming the Sync that applied an object.
pub const SYNC_NAME_LABEL: &str = "sync.plumb.dev/name";

/// Label naming the namespace of the Sync that applied an object.
pub const SYNC_NAMESPACE_LABEL: &str = "sync.plumb.dev/namespace";

/// Field manager under which the render controller writes `Sync.status.render`.
pub const RENDER_FIELD_MANAGER: &str = "plumb-render";

/// Field manager under which the sync controller applies objects and writes Sync status.
pub const SYNC_FIELD_MANAGER: &str = "plumb-sync";

/// Field manager under which the source controller writes GitRepository status.
pub const SOURCE_FIELD_MANAGER: &str = "plumb-source";
