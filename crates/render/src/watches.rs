//! Which Syncs and Policies a change of another object wakes: the change filters (kube-runtime
//! predicates over the shared watches) and the trigger mappers of the two controllers, plain
//! functions over the cached objects.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use futures::Stream;
use kube::api::PartialObjectMeta;
use kube::runtime::predicates;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use plumb_api::reference::DataKind;
use plumb_api::{GitRepository, Policy};
use plumb_ops::changed;

use crate::sync_view::SyncView;

/// The Sync events that may change its render: a new Sync, a spec change, a relabel or a
/// `plumb.dev/requested-at` ([`SyncView::render_inputs`]); not status writes (the sync
/// controller's above all, several per apply), which would each wake a render reconcile for
/// nothing.
pub fn render_input_changes(
    syncs: impl Stream<Item = Arc<SyncView>> + Send + 'static,
) -> impl Stream<Item = Arc<SyncView>> + Send + 'static {
    changed(syncs, SyncView::render_inputs)
}

/// What of a GitRepository a render reads: its artifact.
fn published_artifact(repo: &GitRepository) -> Option<u64> {
    let mut h = DefaultHasher::new();
    repo.status
        .as_ref()
        .and_then(|s| s.artifact.as_ref())
        .map(|a| (&a.revision, &a.digest, &a.url))
        .hash(&mut h);
    Some(h.finish())
}

/// GitRepositories seen for the first time or publishing another artifact (not the condition
/// churn of each poll, which would wake every Sync of the source).
pub fn artifact_changes(
    repos: impl Stream<Item = Arc<GitRepository>> + Send + 'static,
) -> impl Stream<Item = Arc<GitRepository>> + Send + 'static {
    changed(repos, published_artifact)
}

/// The Policy events that may change a Sync's verdict: a new Policy or a new generation (a
/// spec change); not status updates, which with many Syncs would otherwise wake every Sync
/// for each new one. Deletions come from the watch's deletion signal.
pub fn policy_spec_changes(
    policies: impl Stream<Item = Arc<Policy>> + Send + 'static,
) -> impl Stream<Item = Arc<Policy>> + Send + 'static {
    changed(policies, predicates::generation)
}

/// The Syncs whose `sourceRef` names `repo` (a new artifact, or the source gone).
pub fn syncs_of_source(syncs: &[Arc<SyncView>], repo: &GitRepository) -> Vec<ObjectRef<SyncView>> {
    let (ns, name) = (repo.namespace().unwrap_or_default(), repo.name_any());
    syncs
        .iter()
        .filter(|s| s.renders_from(&ns, &name))
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

/// The Syncs in `namespace` that read the `kind` object `name` — as chart values
/// (`helm.valuesFrom`) or as substitution variables (`substituteFrom`) — each once: its change,
/// creation or deletion renders them again (the cache key covers what was read).
pub fn readers_of(
    syncs: &[Arc<SyncView>],
    kind: DataKind,
    namespace: &str,
    name: &str,
) -> Vec<ObjectRef<SyncView>> {
    syncs
        .iter()
        .filter(|s| s.meta().namespace.as_deref() == Some(namespace))
        .filter(|s| s.reads(kind, name))
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

/// The cached Syncs in `namespace`: what a change of a namespace or of an object in it looks
/// among, without copying the whole cache on every such change (O(Syncs) each, O(Syncs²) over
/// a fleet whose namespaces and ConfigMaps are created with it).
pub fn in_namespace(syncs: &Store<SyncView>, namespace: &str) -> Vec<Arc<SyncView>> {
    syncs.state_filter(|s| s.meta().namespace.as_deref() == Some(namespace))
}

/// [`readers_of`] for a changed object's metadata.
pub fn readers_of_changed<K>(
    syncs: &[Arc<SyncView>],
    kind: DataKind,
    changed: &PartialObjectMeta<K>,
) -> Vec<ObjectRef<SyncView>> {
    readers_of(
        syncs,
        kind,
        changed.metadata.namespace.as_deref().unwrap_or_default(),
        changed.metadata.name.as_deref().unwrap_or_default(),
    )
}

/// Every Sync: a Policy's spec change (or deletion) may change which Syncs it governs, before
/// and after, so all are looked at; the render cache key makes that cheap for the unaffected.
pub fn every_sync(syncs: &[Arc<SyncView>]) -> Vec<ObjectRef<SyncView>> {
    syncs
        .iter()
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

/// The Syncs in namespace `namespace`: relabelled, it may come under (or leave) a Policy's
/// namespace selector.
pub fn syncs_in_namespace(syncs: &[Arc<SyncView>], namespace: &str) -> Vec<ObjectRef<SyncView>> {
    syncs
        .iter()
        .filter(|s| s.meta().namespace.as_deref() == Some(namespace))
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumb_api::{REQUESTED_AT_ANNOTATION, Sync};
    use serde_json::json;

    fn plain(ns: &str, name: &str, source: serde_json::Value) -> Sync {
        serde_json::from_value(json!({
            "apiVersion": "sync.plumb.dev/v1", "kind": "Sync",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"sourceRef": source},
        }))
        .unwrap()
    }

    fn sync(ns: &str, name: &str, source: serde_json::Value) -> Arc<SyncView> {
        Arc::new(SyncView::of(plain(ns, name, source)))
    }

    fn repo(ns: &str, name: &str) -> GitRepository {
        serde_json::from_value(json!({
            "apiVersion": "source.plumb.dev/v1", "kind": "GitRepository",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"url": "https://example.com/x.git"},
        }))
        .unwrap()
    }

    fn names(refs: Vec<ObjectRef<SyncView>>) -> Vec<String> {
        let mut out: Vec<String> = refs
            .into_iter()
            .map(|r| format!("{}/{}", r.namespace.unwrap_or_default(), r.name))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn a_source_wakes_the_syncs_that_name_it_in_their_namespace_or_explicitly() {
        let syncs = [
            sync(
                "team",
                "same-ns",
                json!({"kind": "GitRepository", "name": "app"}),
            ),
            sync(
                "other",
                "cross-ns",
                json!({"kind": "GitRepository", "name": "app", "namespace": "team"}),
            ),
            sync(
                "other",
                "other-app",
                json!({"kind": "GitRepository", "name": "app"}),
            ),
            sync(
                "team",
                "other-name",
                json!({"kind": "GitRepository", "name": "web"}),
            ),
        ];
        assert_eq!(
            names(syncs_of_source(&syncs, &repo("team", "app"))),
            ["other/cross-ns", "team/same-ns"]
        );
        assert_eq!(
            names(syncs_of_source(&syncs, &repo("other", "app"))),
            ["other/other-app"]
        );
        assert!(syncs_of_source(&syncs, &repo("nowhere", "app")).is_empty());
    }

    #[test]
    fn a_values_object_wakes_the_syncs_that_read_it() {
        let source = json!({"kind": "GitRepository", "name": "app"});
        let mut reader = plain("team", "chart", source.clone());
        reader.spec.helm = Some(
            serde_json::from_value(json!({
                "valuesFrom": [{"kind": "ConfigMap", "name": "vals"}, {"kind": "Secret", "name": "creds"}],
            }))
            .unwrap(),
        );
        let syncs = [
            Arc::new(SyncView::of(reader)),
            sync("team", "plain", source),
        ];
        let (cm, secret) = (DataKind::ConfigMap, DataKind::Secret);
        let woken = |kind, ns, name| names(readers_of(&syncs, kind, ns, name));
        assert_eq!(woken(cm, "team", "vals"), ["team/chart"]);
        assert_eq!(woken(secret, "team", "creds"), ["team/chart"]);
        assert!(woken(secret, "team", "vals").is_empty(), "kind matters");
        assert!(woken(cm, "other", "vals").is_empty());
    }

    #[test]
    fn a_namespace_wakes_only_its_own_syncs_and_a_policy_wakes_all() {
        let source = json!({"kind": "GitRepository", "name": "app"});
        let syncs = [
            sync("a", "one", source.clone()),
            sync("b", "two", source.clone()),
            sync("a", "three", source),
        ];
        assert_eq!(names(syncs_in_namespace(&syncs, "a")), ["a/one", "a/three"]);
        assert!(syncs_in_namespace(&syncs, "c").is_empty());
        assert_eq!(names(every_sync(&syncs)).len(), 3);
    }

    #[tokio::test]
    async fn status_only_policy_updates_do_not_wake_syncs() {
        use futures::StreamExt;
        let mut p: Policy = serde_json::from_value(json!({
            "apiVersion": "policy.plumb.dev/v1", "kind": "Policy",
            "metadata": {"name": "p", "uid": "u", "generation": 1}, "spec": {}
        }))
        .unwrap();
        let new = p.clone();
        p.status = Some(plumb_api::PolicyStatus {
            governed_syncs: Some(3),
            ..Default::default()
        });
        let status_only = p.clone();
        p.metadata.generation = Some(2);
        let spec_change = p.clone();
        let events = [new, status_only, spec_change].map(Arc::new);
        let passed: Vec<_> = policy_spec_changes(futures::stream::iter(events))
            .map(|p| p.metadata.generation)
            .collect()
            .await;
        assert_eq!(
            passed,
            [Some(1), Some(2)],
            "new and spec change, not status"
        );
    }

    #[tokio::test]
    async fn only_changes_of_what_a_render_reads_wake_it() {
        use futures::StreamExt;
        let source = json!({"kind": "GitRepository", "name": "app"});
        let mut s = plain("team", "app", source);
        s.metadata.uid = Some("u".into());
        s.metadata.generation = Some(1);
        let mut events = Vec::new();
        // Each event is told apart by its resourceVersion, which no predicate reads.
        let mut push = |what: &str, s: &Sync| {
            let mut s = s.clone();
            s.metadata.resource_version = Some(what.to_owned());
            events.push(Arc::new(SyncView::of(s)));
        };
        push("new", &s);
        let mut status = plumb_api::SyncStatus {
            observed_generation: Some(1),
            ..Default::default()
        };
        s.status = Some(status.clone());
        push("the sync controller's status", &s);
        status.render = Some(Default::default());
        s.status = Some(status);
        push("its own status", &s);
        s.metadata.finalizers = Some(vec!["sync.plumb.dev/finalizer".into()]);
        push("a finalizer", &s);
        s.metadata.generation = Some(2);
        push("spec", &s);
        s.metadata.labels = Some([("team".to_owned(), "a".to_owned())].into());
        push("labels", &s);
        s.metadata.annotations =
            Some([(REQUESTED_AT_ANNOTATION.to_owned(), "1".to_owned())].into());
        push("reconcile request", &s);
        let passed: Vec<String> = render_input_changes(futures::stream::iter(events))
            .map(|s| s.meta().resource_version.clone().unwrap_or_default())
            .collect()
            .await;
        assert_eq!(passed, ["new", "spec", "labels", "reconcile request"]);
    }

    #[tokio::test]
    async fn only_a_new_artifact_of_a_source_wakes_its_syncs() {
        use futures::StreamExt;
        let artifact = |c: char| -> plumb_api::reference::Artifact {
            serde_json::from_value(json!({
                "revision": format!("main@sha1:{}", c.to_string().repeat(40)),
                "digest": format!("sha256:{}", c.to_string().repeat(64)),
                "url": "http://x/a.tar.gz", "lastUpdateTime": "2026-01-01T00:00:00Z",
            }))
            .unwrap()
        };
        let mut r = repo("team", "app");
        r.metadata.uid = Some("u".into());
        let with = |r: &GitRepository, a: Option<char>, ready: &str| {
            let mut r = r.clone();
            r.status = Some(plumb_api::GitRepositoryStatus {
                artifact: a.map(artifact),
                last_handled_reconcile_at: Some(ready.to_owned()),
                ..Default::default()
            });
            Arc::new(r)
        };
        let events = vec![
            with(&r, None, "0"),
            with(&r, Some('a'), "1"),
            with(&r, Some('a'), "2"),
            with(&r, Some('b'), "3"),
            with(&r, Some('b'), "4"),
        ];
        let passed: Vec<String> = artifact_changes(futures::stream::iter(events))
            .map(|r| {
                r.status
                    .as_ref()
                    .unwrap()
                    .last_handled_reconcile_at
                    .clone()
                    .unwrap()
            })
            .collect()
            .await;
        assert_eq!(
            passed,
            ["0", "1", "3"],
            "first seen, then each new artifact"
        );
    }
}
