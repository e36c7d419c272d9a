//! The plumb render controller: from a source artifact to a gated, rendered artifact.
//!
//! For each Sync it downloads the referenced GitRepository's artifact (verifying its digest),
//! unpacks it safely, renders `spec.path` with kustomize, applies the Sync's transforms and
//! substitution, checks the result against every governing [`Policy`](plumb_api::Policy), and
//! publishes a gzip of multi-document YAML that the sync controller applies. It writes only
//! `status.render` and the `Rendered` condition of a Sync, and the status of Policies.
//!
//! The public surface is what the binaries, `plumb` and the tests use: [`run`] with its
//! [`Config`], [`render`] (`plumb build`/`plumb diff`), [`check_policies`]
//! (`plumb policy check`), [`unpack`] (reading a rendered artifact back), and what a chart
//! render reads from the cluster ([`ChartInputs`], for `plumb diff` to render as the controller
//! does).
//!
//! Inside, the core is pure and tested without a cluster (`build`, `policy`,
//! `cache`, `publish`, `status`, `inputs`); `wiring` starts the watches (`watches`: change
//! filters and trigger mappers) and the two reconcilers, `reconcile_sync` (a Sync's render) and
//! `reconcile_policy` (a Policy's status). A new source artifact is unpacked once and shared by
//! its renders (`trees`); `fanout` queues the Syncs whose files it changed first, and the others
//! carry their render to the new revision without rendering.

mod build;
mod cache;
mod chart;
mod chart_inputs;
mod config;
mod context;
mod engine;
mod error;
mod fanout;
mod inputs;
mod labels;
mod objects;
mod packed;
mod policy;
mod policy_check;
mod publish;
mod reconcile_policy;
mod reconcile_sync;
mod sops_sources;
mod status;
mod sweep;
mod sync_view;
mod trees;
mod variables;
mod watches;
mod wiring;

pub use build::{
    BuildError, Published, RenderOptions, has_kustomization, render, render_published, render_with,
};
pub use chart::{ChartOptions, kustomize_charts};
pub use chart_inputs::{
    ChartInputs, ValuesFromError, discover as discover_capabilities,
    values_from as read_values_from,
};
pub use config::Config;
pub use engine::parse_documents;
pub use error::Error;
pub use policy_check::{CheckError, Report, run as check_policies};
pub use publish::unpack;
pub use sops_sources::attach as attach_sops_sources;
pub use variables::{
    VariablesError, load as load_variables, load_sources as load_variable_sources,
};
pub use wiring::{LEASE_NAME, run};
