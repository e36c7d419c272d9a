//! Talking to the API server about applied objects: resolving kinds, server-side apply under
//! `plumb-sync`, dry runs, reads, deletes, and waiting for CRDs to be Established.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;
use std::time::Duration;

use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PropagationPolicy};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::{self, Scope};
use kube::{Api, Client};
use serde_json::{Value, json};

use plumb_api::policy::DriftIgnore;
use plumb_api::{ObjectId, SYNC_FIELD_MANAGER, SYNC_NAME_LABEL, SYNC_NAMESPACE_LABEL};

use crate::drift;
use crate::manifest::Manifest;

/// Why an object could not be applied, read or deleted.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The API server has no resource for the object's kind.
    #[error("{api_version} {kind} {name}: no such kind in the cluster ({source})")]
    UnknownKind {
        /// The object's apiVersion.
        api_version: String,
        /// The object's kind.
        kind: String,
        /// The object's name.
        name: String,
        /// The discovery error.
        source: kube::Error,
    },
    /// The API server refused or failed the request.
    #[error("{id}: {action} failed: {}", api_message(source))]
    Request {
        /// The object.
        id: ObjectId,
        /// What was attempted: apply, dry-run apply, get, delete.
        action: &'static str,
        /// The API error.
        source: kube::Error,
    },
    /// A wait timed out.
    #[error("{id}: {what} within {secs}s")]
    Timeout {
        /// The object.
        id: ObjectId,
        /// What did not happen.
        what: &'static str,
        /// How long was waited.
        secs: u64,
    },
}

/// The API server's own message for an API error, else the error.
pub fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if !s.message.is_empty() => s.message.clone(),
        other => other.to_string(),
    }
}

impl ApplyError {
    /// Whether the API server said the caller may not do this (RBAC, impersonation).
    pub fn is_forbidden(&self) -> bool {
        matches!(self, ApplyError::Request { source: kube::Error::Api(s), .. } if s.code == 403)
    }

    /// Whether the API server refused a change of an immutable field.
    pub fn is_immutable(&self) -> bool {
        matches!(self, ApplyError::Request { source: kube::Error::Api(s), .. }
            if s.code == 422 && s.message.contains("immutable"))
    }
}

/// The resource behind a kind: its API path and whether it is namespaced.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The API resource.
    pub ar: ApiResource,
    /// Whether objects of the kind live in namespaces.
    pub namespaced: bool,
}

/// Resolves kinds to resources by discovery, caching what it found.
pub struct Resolver {
    client: Client,
    cache: RwLock<HashMap<GroupVersionKind, Resolved>>,
}

impl Resolver {
    /// A resolver asking the API server through `client`.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            cache: RwLock::default(),
        }
    }

    /// The resource of `group/version` `kind`; a miss asks the API server (one request per
    /// group version), so kinds of a CRD applied a moment ago are found.
    pub async fn resolve(
        &self,
        group: &str,
        version: &str,
        kind: &str,
    ) -> Result<Resolved, kube::Error> {
        let gvk = GroupVersionKind::gvk(group, version, kind);
        if let Some(r) = self.cache.read().ok().and_then(|c| c.get(&gvk).cloned()) {
            return Ok(r);
        }
        let (ar, caps) = discovery::pinned_kind(&self.client, &gvk).await?;
        let resolved = Resolved {
            ar,
            namespaced: caps.scope == Scope::Namespaced,
        };
        if let Ok(mut c) = self.cache.write() {
            c.insert(gvk, resolved.clone());
        }
        Ok(resolved)
    }

    /// Resolves a rendered object, naming it in the error.
    pub async fn resolve_manifest(&self, m: &Manifest) -> Result<Resolved, ApplyError> {
        self.resolve(m.group(), m.version(), &m.kind)
            .await
            .map_err(|source| ApplyError::UnknownKind {
                api_version: m.api_version.clone(),
                kind: m.kind.clone(),
                name: m.name.clone(),
                source,
            })
    }
}

/// An object as plumb applies it.
#[derive(Debug, Clone)]
pub struct Desired {
    /// Its inventory id.
    pub id: ObjectId,
    /// The API version it is applied at.
    pub version: String,
    /// Its resource.
    pub res: Resolved,
    /// The body sent with server-side apply, without the paths of `ignored`.
    pub body: Value,
    /// The JSON pointers a governing Policy's `drift.ignore` leaves out of the apply.
    pub ignored: Vec<String>,
}

impl Desired {
    /// The object's namespace, if namespaced.
    pub fn namespace(&self) -> Option<&str> {
        (!self.id.namespace.is_empty()).then_some(self.id.namespace.as_str())
    }
}

/// Turns a rendered object into what is applied: only the applied part (no status, no server
/// metadata), the namespace defaulted to `default_ns` for namespaced kinds and removed for
/// cluster-scoped ones, the owner labels of Sync `sync_ns/sync_name`, and the paths of `ignores`
/// left out.
pub fn prepare(
    m: &Manifest,
    res: Resolved,
    sync_ns: &str,
    sync_name: &str,
    default_ns: &str,
    ignores: &[&DriftIgnore],
) -> Desired {
    let intent = intended(m, res.namespaced, sync_ns, sync_name, default_ns, ignores);
    Desired {
        id: intent.id,
        version: m.version().to_owned(),
        res,
        body: intent.body,
        ignored: intent.ignored,
    }
}

/// What plumb applies for one rendered object, decided without the cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Intended {
    /// Its inventory id.
    pub id: ObjectId,
    /// The body sent with server-side apply, without the paths of `ignored`.
    pub body: Value,
    /// The JSON pointers a governing Policy's `drift.ignore` leaves out of the apply.
    pub ignored: Vec<String>,
}

/// The body plumb applies for rendered object `m` of a kind that is `namespaced` or not (see
/// [`prepare`], which adds the resolved resource).
pub fn intended(
    m: &Manifest,
    namespaced: bool,
    sync_ns: &str,
    sync_name: &str,
    default_ns: &str,
    ignores: &[&DriftIgnore],
) -> Intended {
    let mut body = drift::applied_part(&m.object);
    let namespace = if namespaced {
        m.namespace.clone().unwrap_or_else(|| default_ns.to_owned())
    } else {
        String::new()
    };
    if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
        if namespaced {
            meta.insert("namespace".into(), json!(namespace));
        } else {
            meta.remove("namespace");
        }
        let labels = meta.entry("labels").or_insert_with(|| json!({}));
        if !labels.is_object() {
            *labels = json!({});
        }
        if let Some(labels) = labels.as_object_mut() {
            labels.insert(SYNC_NAME_LABEL.into(), json!(sync_name));
            labels.insert(SYNC_NAMESPACE_LABEL.into(), json!(sync_ns));
        }
    }
    let ignored = drift::ignored_paths(ignores, m.group(), &m.kind);
    drift::remove_paths(&mut body, &ignored);
    Intended {
        id: ObjectId::new(&namespace, &m.name, m.group(), &m.kind),
        body,
        ignored,
    }
}

/// The API of `res` objects in `namespace` (all namespaces when `None` and namespaced).
pub fn api_for(client: &Client, res: &Resolved, namespace: Option<&str>) -> Api<DynamicObject> {
    match namespace {
        Some(ns) if res.namespaced => Api::namespaced_with(client.clone(), ns, &res.ar),
        _ => Api::all_with(client.clone(), &res.ar),
    }
}

fn to_value(obj: DynamicObject) -> Value {
    serde_json::to_value(obj).unwrap_or(Value::Null)
}

/// Server-side applies `d` under `plumb-sync`, taking over conflicting fields. With `dry_run`
/// nothing is persisted; either way the answer is the object as it would be stored.
pub async fn apply(client: &Client, d: &Desired, dry_run: bool) -> Result<Value, ApplyError> {
    let api = api_for(client, &d.res, d.namespace());
    let mut params = PatchParams::apply(SYNC_FIELD_MANAGER).force();
    params.dry_run = dry_run;
    api.patch(&d.id.name, &params, &Patch::Apply(&d.body))
        .await
        .map(to_value)
        .map_err(|source| ApplyError::Request {
            id: d.id.clone(),
            action: if dry_run { "dry-run apply" } else { "apply" },
            source,
        })
}

/// Reads an object; `None` when it does not exist.
pub async fn get(
    client: &Client,
    res: &Resolved,
    id: &ObjectId,
) -> Result<Option<Value>, ApplyError> {
    let ns = (!id.namespace.is_empty()).then_some(id.namespace.as_str());
    api_for(client, res, ns)
        .get_opt(&id.name)
        .await
        .map(|o| o.map(to_value))
        .map_err(|source| ApplyError::Request {
            id: id.clone(),
            action: "get",
            source,
        })
}

/// Deletes an object in the background (dependents are collected by the garbage collector);
/// an object already gone is fine.
pub async fn delete(client: &Client, res: &Resolved, id: &ObjectId) -> Result<(), ApplyError> {
    let ns = (!id.namespace.is_empty()).then_some(id.namespace.as_str());
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..Default::default()
    };
    match api_for(client, res, ns).delete(&id.name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => Err(ApplyError::Request {
            id: id.clone(),
            action: "delete",
            source,
        }),
    }
}

/// Polls `id` every 100 ms until `done` holds for it (`None` = gone), at most `timeout`.
pub async fn wait_for(
    client: &Client,
    res: &Resolved,
    id: &ObjectId,
    timeout: Duration,
    what: &'static str,
    done: impl Fn(Option<&Value>) -> bool,
) -> Result<(), ApplyError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if done(get(client, res, id).await?.as_ref()) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ApplyError::Timeout {
                id: id.clone(),
                what,
                secs: timeout.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Server-side applies `d`; when `force` is set and the server refuses an immutable field
/// change, deletes the object, waits until it is gone and applies it again.
pub async fn apply_or_recreate(
    client: &Client,
    d: &Desired,
    force: bool,
    timeout: Duration,
) -> Result<Value, ApplyError> {
    match apply(client, d, false).await {
        Err(e) if force && e.is_immutable() => {
            tracing::info!(object = %d.id, "immutable field changed; recreating");
            delete(client, &d.res, &d.id).await?;
            wait_for(client, &d.res, &d.id, timeout, "was not deleted", |o| {
                o.is_none()
            })
            .await?;
            apply(client, d, false).await
        }
        other => other,
    }
}

/// The labels of a live object.
pub fn labels_of(obj: &Value) -> Option<BTreeMap<String, String>> {
    serde_json::from_value(obj.pointer("/metadata/labels")?.clone()).ok()
}

#[cfg(test)]
mod tests {
    use plumb_api::policy::ResourceMatch;

    use super::*;
    use crate::manifest::parse_yaml;

    fn res(namespaced: bool) -> Resolved {
        Resolved {
            ar: ApiResource::from_gvk(&GroupVersionKind::gvk("apps", "v1", "Deployment")),
            namespaced,
        }
    }

    #[test]
    fn prepare_labels_defaults_namespace_and_leaves_out_ignored_paths() {
        let m = &parse_yaml(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  creationTimestamp: null\nspec:\n  replicas: 3\n  paused: false\nstatus: {}\n",
        )
        .unwrap()[0];
        let ignore = DriftIgnore {
            resources: vec![ResourceMatch {
                group: "apps".into(),
                kinds: vec![],
            }],
            paths: vec!["/spec/replicas".into()],
        };
        let d = prepare(m, res(true), "team", "app", "target", &[&ignore]);
        assert_eq!(d.id.to_string(), "target_web_apps_Deployment");
        assert_eq!(
            d.body,
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "target", "labels": {
                    "sync.plumb.dev/name": "app", "sync.plumb.dev/namespace": "team"}},
                "spec": {"paused": false}
            })
        );
    }

    #[test]
    fn prepare_drops_the_namespace_of_cluster_scoped_objects() {
        let m =
            &parse_yaml("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  namespace: x\n")
                .unwrap()[0];
        let d = prepare(m, res(false), "team", "app", "team", &[]);
        assert_eq!(d.id.to_string(), "_a__Namespace");
        assert!(d.body.pointer("/metadata/namespace").is_none());
        assert_eq!(d.namespace(), None);
    }
}
