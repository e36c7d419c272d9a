//! Test support for plumb: a real Kubernetes control plane and helpers for tests that use it.
//!
//! The cluster is the one `e2e/cluster/up.sh` (`make cluster-up`) runs on loopback:
//! etcd, kube-apiserver, kube-controller-manager and kube-scheduler built from the
//! upstream Go modules of one pinned release, and kwok keeping fake Nodes Ready
//! and their Pods Running. [`client`] starts it when it is not running.
//!
//! ```no_run
//! use plumb_e2e_support::{TestNamespace, wait_for};
//! # async fn example() -> plumb_e2e_support::Result<()> {
//! let ns = TestNamespace::new("my-test").await?;
//! ns.apply_yaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\n", "plumb-test").await?;
//! # Ok(()) }
//! ```

mod apply;
mod cluster;
mod crds;
mod error;
mod files;
mod flux_oracle;
mod gnupg;
mod helm;
mod namespace;
mod policy;
mod ports;
mod sops;
mod task;
mod teardown;
mod ui;
mod variables;
mod wait;

pub use apply::apply_yaml;
pub use cluster::{
    CLUSTER_DIR_ENV, KUBECONFIG_ENV, NO_CLUSTER_ENV, client, connect, default_kubeconfig_path,
    kube_config, kubeconfig_path, pinned_kubernetes_version, repo_root,
};
pub use crds::{FLUX_CRD_LABEL, install_crds, install_flux_crds};
pub use error::{Error, Result};
pub use files::FileServer;
pub use flux_oracle::{flux_oracle, flux_substitute};
pub use gnupg::{GnuPg, PgpKey};
pub use helm::{helm_binary, helm_template, yaml_documents_json};
pub use namespace::{OWNER_LABEL, TEST_LABEL, TestNamespace};
pub use policy::PolicyRule;
pub use ports::{free_addr, free_port};
pub use sops::{AgeKey, SopsTools};
pub use task::{ControllerTask, Shutdown};
pub use teardown::{delete_plumb_objects, delete_plumb_objects_blocking};
pub use ui::Ui;
pub use variables::{CLUSTER_SECRETS, CLUSTER_VARS};
pub use wait::{ready_at, wait_for, wait_for_while};
