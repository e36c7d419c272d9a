//! A throwaway namespace per test, so tests run in parallel and clean up.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, ObjectMeta, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::OnceCell;

use crate::cluster::{client, connect, kubeconfig_path};
use crate::{Error, Result, apply};

/// Label on every namespace a test creates.
pub const TEST_LABEL: &str = "plumb.dev/test";
/// Label holding the pid of the test process that created the namespace.
const PID_LABEL: &str = "plumb.dev/test-pid";
/// Label holding the host of that process (a remote cluster may serve several machines).
const HOST_LABEL: &str = "plumb.dev/test-host";

/// How long dropping a [`TestNamespace`] waits for its delete request to be sent.
const DROP_DELETE_TIMEOUT: Duration = Duration::from_secs(5);

/// A namespace with a unique name (`<prefix>-<random>`) for one test, labelled
/// `plumb.dev/test=true`, and a client for the cluster it lives in.
///
/// Dropping it requests deletion of the namespace (best effort; the namespace
/// controller then removes its content in the background). Namespaces left
/// behind by a test process that crashed are deleted by the next test process
/// on the same host.
pub struct TestNamespace {
    client: Client,
    name: String,
    kubeconfig: PathBuf,
    deleted: bool,
}

impl TestNamespace {
    /// Creates a namespace named `<prefix>-<random suffix>` in the test
    /// cluster, starting the cluster if needed (see [`crate::client`]).
    pub async fn new(prefix: &str) -> Result<Self> {
        let client = client().await?;
        Self::with_client(client, prefix).await
    }

    /// Creates the namespace with a client of the caller's; dropping it deletes
    /// the namespace through the kubeconfig at [`kubeconfig_path`].
    pub async fn with_client(client: Client, prefix: &str) -> Result<Self> {
        delete_orphans_once(&client).await;
        let api: Api<Namespace> = Api::all(client.clone());
        let namespace = Namespace {
            metadata: ObjectMeta {
                // The API server appends a random suffix: unique without a shared counter.
                generate_name: Some(format!("{}-", prefix.trim_end_matches('-'))),
                labels: Some(own_labels()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        let created = api
            .create(&PostParams::default(), &namespace)
            .await
            .map_err(|e| Error::kube(format!("create namespace {prefix}-*"), e))?;
        let name = created.name_any();
        tracing::debug!(namespace = %name, "created test namespace");
        Ok(TestNamespace {
            client,
            name,
            kubeconfig: kubeconfig_path(),
            deleted: false,
        })
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The client for the cluster the namespace lives in.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// An [`Api`] for a namespaced kind in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Server-side applies a YAML stream like [`crate::apply_yaml`], putting
    /// namespaced objects without a namespace into this one.
    pub async fn apply_yaml(&self, yaml: &str, field_manager: &str) -> Result<Vec<DynamicObject>> {
        apply::apply_documents(&self.client, yaml, field_manager, &self.name).await
    }

    /// Requests deletion of the namespace now and returns without waiting for
    /// it to disappear (it is Terminating until the namespace controller has
    /// removed its content).
    pub async fn delete(mut self) -> Result<()> {
        self.deleted = true;
        delete_namespace(&self.client, &self.name).await
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if self.deleted {
            return;
        }
        // The test's client is bound to its runtime, which is shutting down;
        // send the request from a thread with a runtime and client of its own.
        let (name, kubeconfig) = (self.name.clone(), self.kubeconfig.clone());
        let (done, finished) = mpsc::channel();
        let spawned = std::thread::Builder::new().name(format!("delete-{name}")).spawn(move || {
            let outcome = delete_blocking(&kubeconfig, &name);
            if let Err(e) = &outcome {
                tracing::warn!(namespace = %name, error = %e, "could not delete test namespace");
            }
            let _ = done.send(outcome);
        });
        if spawned.is_ok() {
            // Wait for the request to go out, not for the namespace to be gone,
            // so a process that exits right after its last test still cleans up.
            let _ = finished.recv_timeout(DROP_DELETE_TIMEOUT);
        }
    }
}

fn delete_blocking(kubeconfig: &std::path::Path, name: &str) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            Error::ClusterStart(format!("tokio runtime for deleting namespace {name}: {e}"))
        })?;
    runtime.block_on(async {
        let client = connect(kubeconfig).await?;
        delete_namespace(&client, name).await
    })
}

async fn delete_namespace(client: &Client, name: &str) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => return Ok(()),
        Err(e) => return Err(Error::kube(format!("delete namespace {name}"), e)),
    }
    release_syncs(client, name).await;
    Ok(())
}

/// Removes the sync controller's finalizer from the Syncs of a namespace being deleted: the
/// test's controller stops with the test, and the namespace goes with everything in it anyway.
async fn release_syncs(client: &Client, namespace: &str) {
    let syncs: Api<plumb_api::Sync> = Api::namespaced(client.clone(), namespace);
    let Ok(list) = syncs.list(&ListParams::default()).await else {
        return;
    };
    for s in list {
        let kept: Vec<String> = s
            .finalizers()
            .iter()
            .filter(|f| !f.starts_with("sync.plumb.dev/"))
            .cloned()
            .collect();
        if kept.len() == s.finalizers().len() {
            continue;
        }
        let patch = serde_json::json!({"metadata": {"finalizers": kept}});
        let _ = syncs
            .patch(
                &s.name_any(),
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await;
    }
}

fn own_labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        (TEST_LABEL.to_owned(), "true".to_owned()),
        (PID_LABEL.to_owned(), std::process::id().to_string()),
        (HOST_LABEL.to_owned(), host_label()),
    ])
}

/// This host's name, cut to a valid label value.
fn host_label() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let cleaned: String = host
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    let cleaned = cleaned
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned();
    if cleaned.is_empty() {
        "unknown".to_owned()
    } else {
        cleaned
    }
}

/// Deletes, once per process, the test namespaces of this host whose creating
/// process is gone (it crashed or was killed before its namespaces were dropped).
async fn delete_orphans_once(client: &Client) {
    static SWEPT: OnceCell<()> = OnceCell::const_new();
    SWEPT
        .get_or_init(|| async {
            if let Err(e) = delete_orphans(client).await {
                tracing::warn!(error = %e, "could not clean up test namespaces of finished processes");
            }
        })
        .await;
}

async fn delete_orphans(client: &Client) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let selector = format!("{TEST_LABEL}=true,{HOST_LABEL}={}", host_label());
    let namespaces = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| Error::kube("list test namespaces", e))?;
    for namespace in namespaces {
        let alive = namespace
            .labels()
            .get(PID_LABEL)
            .is_none_or(|pid| std::path::Path::new("/proc").join(pid).exists());
        if !alive && namespace.metadata.deletion_timestamp.is_none() {
            tracing::info!(namespace = %namespace.name_any(), "deleting test namespace of a finished process");
            delete_namespace(client, &namespace.name_any()).await?;
        }
    }
    Ok(())
}
