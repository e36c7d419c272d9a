//! What the render controller keeps of each Sync it renders: a [`SyncView`].
//!
//! A cached Sync is mostly fixed costs: the struct itself (every optional part of the spec and
//! status inline), a B-tree node of some 540 bytes for each map that holds even one entry (its
//! labels, `spec.substitute`), and a string for each field. With thousands of Syncs that was
//! most of the controller's heap. A view keeps the Sync's identity as metadata, the few things
//! the trigger mappers and the fan-out read of every Sync unpacked, and the rest a render reads
//! (labels, the `plumb.dev/requested-at` annotation, spec, the render's part of the status) as
//! its JSON, [packed](crate::packed), which a reconcile reads back into a [`Sync`].

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use kube::ResourceExt;
use kube::api::ObjectMeta;
use plumb_api::reference::DataKind;
use plumb_api::{REQUESTED_AT_ANNOTATION, Revision, Sync, SyncStatus, condition_type};

/// A Sync as the render controller caches it (see the module doc). It deserializes from a
/// Sync, so a watch of Syncs fills a cache of views.
#[derive(Clone, Debug)]
pub struct SyncView {
    /// Name, namespace, uid, resourceVersion and generation.
    metadata: ObjectMeta,
    /// The namespace and name of the GitRepository of `spec.sourceRef` (its namespace
    /// defaulting to the Sync's).
    source: Box<str>,
    /// What of the Sync its render depends on, hashed ([`render_inputs`]).
    render_inputs: u64,
    /// The ConfigMaps and Secrets its render reads (`helm.valuesFrom`, `substituteFrom`).
    reads: Box<[(DataKind, Box<str>)]>,
    /// `spec.suspend`.
    suspended: bool,
    /// `status.lastAttemptedRevision`, as the sync controller wrote it.
    attempted: Option<Revision>,
    /// The Sync's labels, `plumb.dev/requested-at` annotation, spec and [`render_view`] of its
    /// status, as JSON ([packed](crate::packed)).
    packed: Box<[u8]>,
}

/// What of a Sync its render depends on: its spec (by generation), its labels (a Policy's
/// `syncSelector` decides with them which Policies gate it) and a reconcile request.
fn render_inputs(sync: &Sync) -> u64 {
    let mut h = DefaultHasher::new();
    sync.metadata.generation.hash(&mut h);
    sync.metadata.labels.hash(&mut h);
    sync.annotations().get(REQUESTED_AT_ANNOTATION).hash(&mut h);
    h.finish()
}

/// The part of a Sync's status the render controller reads: all but the sync controller's part
/// (inventory, history, applied revisions, drift, its conditions), which no render decision
/// reads; `status.render` and the `Rendered` condition stay (a render compares its verdict with
/// them before writing), and `lastAttemptedRevision` (a new source revision's unchanged Syncs
/// wait for the changed ones to be attempted, [`crate::fanout`]). With thousands of Syncs that
/// part is most of the status.
pub fn render_view(status: SyncStatus) -> SyncStatus {
    let rendered = status
        .conditions
        .into_iter()
        .filter(|c| c.type_ == condition_type::RENDERED)
        .collect();
    SyncStatus {
        render: status.render,
        conditions: rendered,
        last_attempted_revision: status.last_attempted_revision,
        ..SyncStatus::default()
    }
}

impl SyncView {
    /// The view of `sync`.
    pub fn of(sync: Sync) -> SyncView {
        let render_inputs = render_inputs(&sync);
        let Sync {
            metadata,
            spec,
            status,
        } = sync;
        let source = &spec.source_ref;
        let source = format!(
            "{}/{}",
            source
                .namespace
                .as_deref()
                .or(metadata.namespace.as_deref())
                .unwrap_or_default(),
            source.name
        )
        .into_boxed_str();
        let values = spec.helm.iter().flat_map(|h| &h.values_from);
        let reads = values
            .map(|r| (r.kind, r.name.as_str()))
            .chain(
                spec.substitute_from
                    .iter()
                    .map(|r| (r.kind, r.name.as_str())),
            )
            .map(|(kind, name)| (kind, Box::from(name)))
            .collect();
        let status = status.map(render_view);
        let attempted = status
            .as_ref()
            .and_then(|s| s.last_attempted_revision.clone());
        let suspended = spec.suspend;
        let ObjectMeta {
            name,
            namespace,
            uid,
            resource_version,
            generation,
            labels,
            annotations,
            ..
        } = metadata;
        // Of the annotations, only the one a render reads (kubectl's copy of the whole object
        // among those it does not).
        let annotations = annotations
            .and_then(|mut a| a.remove_entry(REQUESTED_AT_ANNOTATION))
            .map(|requested| BTreeMap::from([requested]));
        let rest = Sync {
            metadata: ObjectMeta {
                labels,
                annotations,
                ..ObjectMeta::default()
            },
            spec,
            status,
        };
        // Serializing plain data to memory does not fail; an empty text would fail the reconcile
        // that reads it back, saying so.
        let packed = crate::packed::pack(&serde_json::to_vec(&rest).unwrap_or_default());
        SyncView {
            metadata: ObjectMeta {
                name,
                namespace,
                uid,
                resource_version,
                generation,
                ..ObjectMeta::default()
            },
            source,
            render_inputs,
            reads,
            suspended,
            attempted,
            packed,
        }
    }

    /// The Sync as a render reads it: identity, generation, labels, the
    /// `plumb.dev/requested-at` annotation, spec and the render's part of the status.
    pub fn sync(&self) -> std::io::Result<Sync> {
        let mut sync: Sync = serde_json::from_slice(&crate::packed::unpack(&self.packed)?)?;
        plumb_api::sync::restore_identity(&mut sync, &self.metadata);
        sync.metadata.generation = self.metadata.generation;
        Ok(sync)
    }

    /// Whether `spec.sourceRef` names the GitRepository `name` in `namespace`.
    pub fn renders_from(&self, namespace: &str, name: &str) -> bool {
        self.source
            .split_once('/')
            .is_some_and(|(ns, n)| ns == namespace && n == name)
    }

    /// Whether its render reads the `kind` object `name` (in its namespace), as chart values or
    /// substitution variables.
    pub fn reads(&self, kind: DataKind, name: &str) -> bool {
        self.reads.iter().any(|(k, n)| *k == kind && **n == *name)
    }

    /// `spec.suspend`.
    pub fn suspended(&self) -> bool {
        self.suspended
    }

    /// `status.lastAttemptedRevision`, as the sync controller wrote it.
    pub fn attempted(&self) -> Option<&Revision> {
        self.attempted.as_ref()
    }

    /// What of the Sync its render depends on, hashed: a kube-runtime predicate of the views
    /// passing only changes that may change the render.
    pub fn render_inputs(&self) -> Option<u64> {
        Some(self.render_inputs)
    }
}

plumb_api::watch_sync_as!(SyncView);

#[cfg(test)]
mod tests {
    use super::*;
    use plumb_api::Conditions;
    use serde_json::json;

    fn full_sync() -> serde_json::Value {
        let rev = format!("main@sha1:{}", "7".repeat(40));
        let digest = format!("sha256:{}", "a".repeat(64));
        let condition = |type_: &str| {
            json!({"type": type_, "status": "True", "reason": "ReconciliationSucceeded",
                   "message": "m", "observedGeneration": 1,
                   "lastTransitionTime": "2026-11-29T22:45:17Z"})
        };
        json!({
            "apiVersion": "sync.plumb.dev/v1", "kind": "Sync",
            "metadata": {"name": "app", "namespace": "team", "generation": 3, "uid": "u1",
                         "resourceVersion": "42", "labels": {"team": "a"},
                         "annotations": {REQUESTED_AT_ANNOTATION: "now", "note": "x"},
                         "finalizers": ["sync.plumb.dev/finalizer"],
                         "creationTimestamp": "2026-11-29T22:45:17Z"},
            "spec": {"sourceRef": {"kind": "GitRepository", "name": "src", "namespace": "shared"},
                     "path": "./fleet", "interval": "10m", "targetNamespace": "t",
                     "substitute": {"id": "1"},
                     "substituteFrom": [{"kind": "Secret", "name": "creds"}],
                     "helm": {"valuesFrom": [{"kind": "ConfigMap", "name": "vals"}]}},
            "status": {
                "observedGeneration": 1,
                "conditions": [condition("Ready"), condition("Rendered"), condition("Healthy")],
                "render": {"observedGeneration": 1, "sourceRevision": rev, "objects": 4,
                           "artifact": {"revision": rev, "digest": digest, "size": 274,
                                        "url": "http://x/a.yaml.gz",
                                        "lastUpdateTime": "2026-11-29T22:45:17Z"}},
                "inventory": [{"id": "team_app__ConfigMap", "v": "v1"}],
                "lastAppliedRevision": rev, "lastAttemptedRevision": rev,
                "lastAppliedDigest": digest,
                "history": [{"revision": rev, "digest": digest, "result": "ReconciliationSucceeded",
                             "duration": "0ms", "time": "2026-11-29T22:45:17Z"}],
            },
        })
    }

    #[test]
    fn a_view_reads_back_as_the_sync_a_render_reads() {
        let sync: Sync = serde_json::from_value(full_sync()).unwrap();
        let view: SyncView = serde_json::from_value(full_sync()).unwrap();
        let back = view.sync().unwrap();
        assert_eq!(back.spec, sync.spec);
        let m = (&back.metadata, &sync.metadata);
        assert_eq!(m.0.name, m.1.name);
        assert_eq!(m.0.namespace, m.1.namespace);
        assert_eq!(m.0.uid, m.1.uid);
        assert_eq!(m.0.resource_version, m.1.resource_version);
        assert_eq!(m.0.generation, m.1.generation);
        assert_eq!(m.0.labels, m.1.labels);
        let requested = BTreeMap::from([(REQUESTED_AT_ANNOTATION.to_owned(), "now".to_owned())]);
        assert_eq!(
            m.0.annotations,
            Some(requested),
            "the annotation a render reads"
        );
        let status = back.status.unwrap();
        let before = sync.status.clone().unwrap();
        assert_eq!(status, render_view(before.clone()));
        assert_eq!(status.render, before.render);
        assert_eq!(
            status.conditions.get_condition(condition_type::RENDERED),
            before.conditions.get_condition(condition_type::RENDERED)
        );
        assert_eq!(
            back.metadata.finalizers, None,
            "what no render reads is not kept"
        );
    }

    #[test]
    fn a_view_keeps_only_the_render_controllers_part_of_the_status() {
        let status: SyncStatus = serde_json::from_value(full_sync()["status"].clone()).unwrap();
        let before = status.clone();
        let status = render_view(status);
        assert_eq!(status.render, before.render);
        assert_eq!(status.conditions.len(), 1);
        assert!(status.inventory.is_none());
        assert!(status.history.is_empty());
        assert!(status.last_applied_revision.is_none() && status.last_applied_digest.is_none());
        assert_eq!(status.observed_generation, None);
        // What a fan-out plan waits for.
        assert_eq!(
            status.last_attempted_revision,
            before.last_attempted_revision
        );
        let bare: SyncView = serde_json::from_value(json!({
            "apiVersion": "sync.plumb.dev/v1", "kind": "Sync",
            "metadata": {"name": "new", "namespace": "team"},
            "spec": {"sourceRef": {"kind": "GitRepository", "name": "app"}},
        }))
        .unwrap();
        assert!(
            bare.sync().unwrap().status.is_none(),
            "a Sync without status stays without"
        );
        assert!(bare.attempted().is_none());
    }

    #[test]
    fn a_view_answers_the_mappers_without_reading_back() {
        let view: SyncView = serde_json::from_value(full_sync()).unwrap();
        assert!(view.renders_from("shared", "src"));
        assert!(
            !view.renders_from("team", "src"),
            "the sourceRef's namespace"
        );
        assert!(view.reads(DataKind::Secret, "creds"));
        assert!(view.reads(DataKind::ConfigMap, "vals"));
        assert!(!view.reads(DataKind::ConfigMap, "creds"), "kind matters");
        assert!(!view.suspended());
        assert_eq!(
            view.attempted().map(ToString::to_string),
            Some(format!("main@sha1:{}", "7".repeat(40)))
        );
        let mut local = full_sync();
        local["spec"]["sourceRef"] = json!({"kind": "GitRepository", "name": "src"});
        let view: SyncView = serde_json::from_value(local).unwrap();
        assert!(
            view.renders_from("team", "src"),
            "defaults to the Sync's namespace"
        );
    }

    #[test]
    fn the_render_inputs_change_with_spec_labels_and_requests_only() {
        let view = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut s = full_sync();
            f(&mut s);
            serde_json::from_value::<SyncView>(s)
                .unwrap()
                .render_inputs()
        };
        let base = view(&|_| {});
        assert_eq!(
            base,
            view(&|s| s["status"]["lastAttemptedRevision"] = json!(null))
        );
        assert_eq!(
            base,
            view(&|s| s["metadata"]["resourceVersion"] = json!("43"))
        );
        assert_ne!(base, view(&|s| s["metadata"]["generation"] = json!(4)));
        assert_ne!(
            base,
            view(&|s| s["metadata"]["labels"]["team"] = json!("b"))
        );
        assert_ne!(
            base,
            view(&|s| s["metadata"]["annotations"][REQUESTED_AT_ANNOTATION] = json!("later"))
        );
    }
}
