//! A throwaway namespace per test, so tests run in parallel and clean up.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError, mpsc};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, ObjectMeta, Patch, PatchParams,
    PostParams,
};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
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
/// Label naming the test namespace a cluster-scoped test object belongs to.
pub const OWNER_LABEL: &str = "plumb.dev/test-namespace";

/// Field manager under which the support crate applies test objects.
pub(crate) const FIELD_MANAGER: &str = "plumb-test";

/// How long dropping a [`TestNamespace`] waits for its delete request to be sent.
const DROP_DELETE_TIMEOUT: Duration = Duration::from_secs(5);

/// A namespace with a unique name (`<prefix>-<random>`) for one test, labelled
/// `plumb.dev/test=true`, and a client for the cluster it lives in.
///
/// Dropping it requests deletion of the namespace (best effort; the namespace
/// controller then removes its content in the background) and of the
/// cluster-scoped objects the test registered with it ([`TestNamespace::apply_cluster`],
/// [`TestNamespace::delete_with_namespace`]). Namespaces and cluster-scoped test
/// objects left behind by a test process that crashed are deleted by the next
/// test process on the same host.
pub struct TestNamespace {
    client: Client,
    name: String,
    kubeconfig: PathBuf,
    deleted: bool,
    cluster_objects: Mutex<Vec<ClusterObject>>,
}

/// A cluster-scoped object that goes when its test namespace goes.
#[derive(Clone)]
struct ClusterObject {
    resource: ApiResource,
    name: String,
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
            cluster_objects: Mutex::default(),
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

    /// The labels that mark an object as this test's: the sweep of a later test
    /// process deletes cluster-scoped objects carrying them once this process is
    /// gone. Put them on every cluster-scoped object a test creates (a rendered
    /// Namespace or CRD included) and register it with
    /// [`TestNamespace::delete_with_namespace`].
    pub fn test_labels(&self) -> BTreeMap<String, String> {
        let mut labels = own_labels();
        labels.insert(OWNER_LABEL.to_owned(), self.name.clone());
        labels
    }

    /// Deletes the cluster-scoped `K` named `name` together with this namespace
    /// (when it is dropped or [`TestNamespace::delete`]d), whether the test
    /// passed or not. Deleting an object that is already gone is not an error.
    pub fn delete_with_namespace<K>(&self, name: &str)
    where
        K: Resource<Scope = ClusterResourceScope>,
        K::DynamicType: Default,
    {
        let object = ClusterObject {
            resource: ApiResource::erase::<K>(&K::DynamicType::default()),
            name: name.to_owned(),
        };
        let mut objects = self
            .cluster_objects
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !objects
            .iter()
            .any(|o| o.name == object.name && o.resource.kind == object.resource.kind)
        {
            objects.push(object);
        }
    }

    /// Server-side applies the cluster-scoped `object` (a full manifest with
    /// `apiVersion`, `kind` and `metadata.name`) with [`TestNamespace::test_labels`]
    /// added, registers it for deletion with this namespace, and returns it as the
    /// API server stored it. Applying again updates it.
    pub async fn apply_cluster<K>(&self, mut object: serde_json::Value) -> Result<K>
    where
        K: Resource<Scope = ClusterResourceScope> + Clone + DeserializeOwned + Serialize,
        K: std::fmt::Debug,
        K::DynamicType: Default,
    {
        let kind = K::kind(&K::DynamicType::default()).into_owned();
        let name = object["metadata"]["name"]
            .as_str()
            .ok_or_else(|| Error::Yaml {
                index: 0,
                message: format!("{kind} without metadata.name"),
            })?
            .to_owned();
        for (key, value) in self.test_labels() {
            object["metadata"]["labels"][key] = serde_json::Value::String(value);
        }
        self.delete_with_namespace::<K>(&name);
        let api: Api<K> = Api::all(self.client.clone());
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&object),
        )
        .await
        .map_err(|e| Error::kube(format!("apply {kind} {name}"), e))
    }

    /// Requests deletion of the namespace (and of the cluster-scoped objects
    /// registered with it) now and returns without waiting for it to disappear
    /// (it is Terminating until the namespace controller has removed its content).
    pub async fn delete(mut self) -> Result<()> {
        self.deleted = true;
        for object in self.take_cluster_objects() {
            delete_cluster_object(&self.client, &object).await?;
        }
        delete_namespace(&self.client, &self.name).await
    }

    fn take_cluster_objects(&self) -> Vec<ClusterObject> {
        std::mem::take(
            &mut *self
                .cluster_objects
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
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
        let objects = self.take_cluster_objects();
        let (done, finished) = mpsc::channel();
        let spawned = std::thread::Builder::new().name(format!("delete-{name}")).spawn(move || {
            let outcome = delete_blocking(&kubeconfig, &name, &objects);
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

fn delete_blocking(
    kubeconfig: &std::path::Path,
    name: &str,
    objects: &[ClusterObject],
) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            Error::ClusterStart(format!("tokio runtime for deleting namespace {name}: {e}"))
        })?;
    runtime.block_on(async {
        let client = connect(kubeconfig).await?;
        for object in objects {
            delete_cluster_object(&client, object).await?;
        }
        delete_namespace(&client, name).await
    })
}

async fn delete_cluster_object(client: &Client, object: &ClusterObject) -> Result<()> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &object.resource);
    match api.delete(&object.name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(Error::kube(
            format!("delete {} {}", object.resource.kind, object.name),
            e,
        )),
    }
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

/// Deletes, once per process, the test namespaces and cluster-scoped test
/// objects of this host whose creating process is gone (it crashed or was killed
/// before its namespaces were dropped).
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
    let selector = format!("{TEST_LABEL}=true,{HOST_LABEL}={}", host_label());
    let params = ListParams::default().labels(&selector);
    // Cluster-scoped kinds tests create: plumb's Policies, test CRDs, and ClusterRoles and
    // their bindings for a test's users. Namespaces last, so nothing a namespace's objects
    // still need is gone first.
    let kinds = [
        ApiResource::erase::<plumb_api::Policy>(&()),
        ApiResource::erase::<CustomResourceDefinition>(&()),
        ApiResource::erase::<ClusterRoleBinding>(&()),
        ApiResource::erase::<ClusterRole>(&()),
        ApiResource::erase::<Namespace>(&()),
    ];
    for resource in kinds {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        let objects = match api.list(&params).await {
            Ok(list) => list,
            // The Policy CRD is not installed yet: nothing of that kind to sweep.
            Err(kube::Error::Api(status)) if status.code == 404 => continue,
            Err(e) => return Err(Error::kube(format!("list test {}s", resource.kind), e)),
        };
        for object in objects {
            let alive = object
                .labels()
                .get(PID_LABEL)
                .is_none_or(|pid| std::path::Path::new("/proc").join(pid).exists());
            if !alive && object.metadata.deletion_timestamp.is_none() {
                let name = object.name_any();
                tracing::info!(kind = %resource.kind, %name, "deleting test object of a finished process");
                delete_cluster_object(
                    client,
                    &ClusterObject {
                        resource: resource.clone(),
                        name,
                    },
                )
                .await?;
            }
        }
    }
    Ok(())
}
