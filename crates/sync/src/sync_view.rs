//! What the sync controller keeps of each Sync in its watch cache: a [`SyncView`].
//!
//! A cached Sync is mostly fixed costs: the struct itself (every optional part of the spec and
//! status inline), a B-tree node of some 540 bytes for each map holding even one entry (its
//! labels, `spec.substitute`), and a string for each field of its metadata, spec, conditions,
//! inventory, history and render status: some 5 KB for a Ready Sync of four objects, kept for
//! every Sync while a pass reads one at a time. A view keeps the Sync's identity as metadata,
//! the little the request mappers read of every Sync unpacked (its `dependsOn`, whether it
//! decrypts, the hash of what a pass acts on), and the whole Sync as its JSON,
//! [packed](crate::packed) against a dictionary of Sync JSON, which a pass reads back.

use std::hash::{DefaultHasher, Hash, Hasher};

use kube::api::ObjectMeta;

use plumb_api::{Conditions, Sync, condition_type};

use crate::deps::{self, Key};
use crate::packed::Packer;

/// A Sync as the sync controller caches it (see the module doc). It deserializes from a Sync,
/// so a watch of Syncs fills a cache of views.
#[derive(Clone, Debug)]
pub struct SyncView {
    /// Name, namespace, uid and resourceVersion (what a reference to it and its cache key
    /// read), and the deletion timestamp (whether a pass may be skipped).
    metadata: ObjectMeta,
    /// What of the Sync a pass acts on, hashed ([`pass_inputs`]).
    inputs: u64,
    /// The Syncs of its `dependsOn` ([`deps::dependencies`]).
    dependencies: Vec<Key>,
    /// Whether it has `spec.decryption`.
    decrypts: bool,
    /// The Sync's JSON without its identity and field ownership, [packed](Packer::pack_sync).
    packed: Box<[u8]>,
}

/// What of a Sync this controller acts on: all but its own part of the status, which it
/// writes itself. That is the metadata a pass reads (generation for the spec, labels for Policy
/// selectors, annotations for reconcile requests, finalizers and deletion), and the render
/// controller's part: the rendered artifact and the `Rendered` condition.
fn pass_inputs(sync: &Sync) -> u64 {
    let mut h = DefaultHasher::new();
    let meta = &sync.metadata;
    meta.generation.hash(&mut h);
    meta.labels.hash(&mut h);
    meta.annotations.hash(&mut h);
    meta.finalizers.hash(&mut h);
    meta.deletion_timestamp.is_some().hash(&mut h);
    let status = sync.status.as_ref();
    status
        .and_then(|s| s.render.as_ref())
        .and_then(|r| r.artifact.as_ref())
        .map(|a| (&a.revision, &a.digest, &a.url))
        .hash(&mut h);
    status
        .and_then(|s| s.conditions.get_condition(condition_type::RENDERED))
        .map(|c| (&c.status, &c.reason, &c.message, c.observed_generation))
        .hash(&mut h);
    h.finish()
}

impl SyncView {
    /// The view of `sync`, without what no decision reads ([`plumb_ops::trim_for_cache`]).
    pub fn of(mut sync: Sync) -> SyncView {
        plumb_ops::trim_for_cache(&mut sync);
        let inputs = pass_inputs(&sync);
        let dependencies = deps::dependencies(&sync);
        let decrypts = sync.spec.decryption.is_some();
        let meta = &mut sync.metadata;
        let metadata = ObjectMeta {
            name: meta.name.take(),
            namespace: meta.namespace.take(),
            uid: meta.uid.take(),
            resource_version: meta.resource_version.take(),
            deletion_timestamp: meta.deletion_timestamp.clone(),
            ..ObjectMeta::default()
        };
        // Serializing plain data to memory does not fail; an empty text would fail the pass
        // that reads it back, saying so.
        let json = serde_json::to_vec(&sync).unwrap_or_default();
        SyncView {
            metadata,
            inputs,
            dependencies,
            decrypts,
            packed: Packer::shared().pack_sync(&json),
        }
    }

    /// The Sync, as the watch received it (without field ownership).
    pub fn sync(&self) -> Result<Sync, crate::error::Error> {
        let read_back = || -> std::io::Result<Sync> {
            let json = Packer::unpack(&self.packed).ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "not a packed text")
            })?;
            Ok(serde_json::from_slice(&json)?)
        };
        let mut sync = read_back().map_err(|source| crate::error::Error::CachedSync {
            sync: format!("{}/{}", self.key().0, self.key().1),
            source,
        })?;
        plumb_api::sync::restore_identity(&mut sync, &self.metadata);
        Ok(sync)
    }

    /// Its `(namespace, name)`.
    pub fn key(&self) -> Key {
        (
            self.metadata.namespace.clone().unwrap_or_default(),
            self.metadata.name.clone().unwrap_or_default(),
        )
    }

    /// Whether it is the Sync `(namespace, name)`.
    pub fn is(&self, key: &Key) -> bool {
        self.metadata.namespace.as_deref().unwrap_or_default() == key.0
            && self.metadata.name.as_deref().unwrap_or_default() == key.1
    }

    /// The Syncs its `dependsOn` names.
    pub fn dependencies(&self) -> &[Key] {
        &self.dependencies
    }

    /// Whether it has `spec.decryption`.
    pub fn decrypts(&self) -> bool {
        self.decrypts
    }

    /// What of the Sync a pass acts on, hashed: a kube-runtime predicate of the views passing
    /// only changes that may change a pass (not this controller's own status writes).
    pub fn inputs(&self) -> Option<u64> {
        Some(self.inputs)
    }
}

plumb_api::watch_sync_as!(SyncView);

#[cfg(test)]
mod tests {
    use super::*;
    use kube::Resource;
    use serde_json::json;

    /// A Ready Sync as the bench's apps are, with all the parts a pass reads.
    pub(crate) fn ready_sync() -> serde_json::Value {
        let rev = format!("main@sha1:{}", "7c3e9a0b1d".repeat(4));
        let digest = format!("sha256:{}", "a9f3c2e1b4d5".repeat(5) + "0f1e");
        let rendered = format!("sha256:{}", "5e6f7a8b9c0d".repeat(5) + "1a2b");
        let condition = |type_: &str, message: &str| {
            json!({"type": type_, "status": "True", "reason": "ReconciliationSucceeded",
                   "message": message, "observedGeneration": 1,
                   "lastTransitionTime": "2026-11-30T12:01:17Z"})
        };
        json!({
            "apiVersion": "sync.plumb.dev/v1", "kind": "Sync",
            "metadata": {"name": "app-17", "namespace": "bench-ctl", "generation": 1,
                         "uid": "0b6d3c1e-8f2a-4e7b-9c5d-3a1f2e4b6c8d", "resourceVersion": "48213",
                         "labels": {"bench.plumb.dev/app": "17", "e2e.plumb.dev/scope": "bench-ctl"},
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
                         "finalizers": ["sync.plumb.dev/finalizer"],
                         "creationTimestamp": "2026-11-30T12:01:12Z",
                         "managedFields": [{"manager": "plumb-sync", "operation": "Apply",
                                            "apiVersion": "sync.plumb.dev/v1",
                                            "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {}}}]},
            "spec": {"sourceRef": {"kind": "GitRepository", "name": "app"}, "path": "./fleet",
                     "interval": "10m", "prune": true, "wait": true, "timeout": "5m",
                     "targetNamespace": "bench-17", "substitute": {"id": "17"}},
            "status": {
                "observedGeneration": 1,
                "conditions": [condition("Rendered", &format!("rendered 4 objects from {rev}")),
                               condition("Healthy", "4 objects healthy"),
                               condition("Ready", &format!("Applied revision: {rev}"))],
                "render": {"observedGeneration": 1, "sourceRevision": rev, "sourceDigest": digest,
                           "objects": 4,
                           "artifact": {"revision": rev, "digest": rendered, "size": 412,
                                        "url": "http://127.0.0.1:41871/sync/bench-ctl/app-17/a.yaml.gz",
                                        "lastUpdateTime": "2026-11-30T12:01:14Z"}},
                "inventory": [{"id": "bench-17_app__ServiceAccount", "v": "v1"},
                              {"id": "bench-17_app__ConfigMap", "v": "v1"},
                              {"id": "bench-17_app__Service", "v": "v1"},
                              {"id": "bench-17_app_apps_Deployment", "v": "v1"}],
                "lastAppliedRevision": rev, "lastAttemptedRevision": rev,
                "lastAppliedDigest": rendered,
                "history": [{"revision": rev, "digest": rendered,
                             "result": "ReconciliationSucceeded", "duration": "38ms",
                             "time": "2026-11-30T12:01:16Z"}],
            },
        })
    }

    #[test]
    fn a_view_reads_back_as_the_sync_without_field_ownership() {
        let mut sync: Sync = serde_json::from_value(ready_sync()).unwrap();
        let view = SyncView::of(sync.clone());
        plumb_ops::trim_for_cache(&mut sync);
        let json = |s: &Sync| serde_json::to_value(s).unwrap();
        assert_eq!(json(&view.sync().unwrap()), json(&sync));
        assert!(sync.metadata.managed_fields.is_none());
        assert_eq!(view.meta().resource_version.as_deref(), Some("48213"));
        assert_eq!(view.meta().uid, sync.metadata.uid);
        assert_eq!(view.key(), ("bench-ctl".to_owned(), "app-17".to_owned()));
        let bare: SyncView = serde_json::from_value(json!({
            "apiVersion": "sync.plumb.dev/v1", "kind": "Sync",
            "metadata": {"name": "new", "namespace": "team"},
            "spec": {"sourceRef": {"kind": "GitRepository", "name": "app"}},
        }))
        .unwrap();
        let back = bare.sync().unwrap();
        assert!(back.status.is_none(), "a Sync without status stays without");
        assert_eq!(back.metadata.name.as_deref(), Some("new"));
    }

    #[test]
    fn a_ready_sync_keeps_in_a_fraction_of_its_json() {
        let sync: Sync = serde_json::from_value(ready_sync()).unwrap();
        let json = serde_json::to_vec(&sync).unwrap();
        let view = SyncView::of(sync);
        assert!(
            view.packed.len() * 3 < json.len(),
            "{} bytes packed from {}",
            view.packed.len(),
            json.len()
        );
    }

    #[test]
    fn a_view_answers_the_mappers_without_reading_back() {
        let mut value = ready_sync();
        value["spec"]["dependsOn"] = json!([{"name": "db"}, {"name": "net", "namespace": "infra"}]);
        value["spec"]["decryption"] = json!({"provider": "sops"});
        let view: SyncView = serde_json::from_value(value).unwrap();
        assert_eq!(
            view.dependencies(),
            [
                ("bench-ctl".to_owned(), "db".to_owned()),
                ("infra".to_owned(), "net".to_owned())
            ]
        );
        assert!(view.decrypts());
        let plain: SyncView = serde_json::from_value(ready_sync()).unwrap();
        assert!(plain.dependencies().is_empty() && !plain.decrypts());
    }

    #[test]
    fn damaged_packed_text_is_an_error_naming_the_sync() {
        let mut view: SyncView = serde_json::from_value(ready_sync()).unwrap();
        view.packed = view.packed[..view.packed.len() / 2].into();
        let err = view.sync().unwrap_err().to_string();
        assert!(err.contains("bench-ctl/app-17"), "{err}");
    }
}
