//! Helm charts for plumb: the real Helm renders them.
//!
//! A chart is rendered by running the Helm binary built from Helm's own Go module
//! (`crates/helm/go/build.sh`) as `helm template`, so the output is exactly what `helm template`
//! prints with the same arguments, template functions and all. The child process is confined
//! ([`process`]): a cleared environment with empty Helm directories and no kubeconfig (no
//! network, no cluster: `lookup` returns nothing, as in `helm template`), an address-space limit,
//! a deadline after which it is killed, bounded output. Charts that would need a download (a
//! dependency not vendored under `charts/`) are refused naming the dependency.
//!
//! [`Helm::template`] keeps a bounded cache of outputs keyed by the chart's content digest, the
//! values and every argument ([`cache`]). [`hooks`] holds the Helm hook rules the sync
//! controller applies, as Argo CD runs them. [`kustomize::KustomizeCharts`] renders a
//! kustomization's `helmCharts` for the kustomize engine, as `kustomize build --enable-helm` does.

pub mod cache;
mod engine;
pub mod hooks;
pub mod kustomize;
pub mod process;

pub use engine::{Capabilities, HELM_BINARY_ENV, Helm, HelmError, TemplateRequest, chart_name};
pub use process::{ProcessError, ProcessLimits};

/// The file whose presence makes a directory a chart.
pub const CHART_FILE: &str = "Chart.yaml";

/// Whether `dir` is a Helm chart.
pub fn is_chart(dir: &std::path::Path) -> bool {
    dir.join(CHART_FILE).is_file()
}
