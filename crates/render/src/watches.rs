//! Which Syncs and Policies a change of another object wakes: the change filters (kube-runtime
//! predicates over the shared watches) and the trigger mappers of the two controllers, plain
//! functions over the cached objects.

use std::sync::Arc;

use futures::Stream;
use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::api::PartialObjectMeta;
use kube::runtime::predicates;
use kube::runtime::reflector::ObjectRef;
use plumb_api::reference::DataKind;
use plumb_api::{GitRepository, Policy, Sync};
use plumb_ops::changed;

/// The Policy events that may change a Sync's verdict: a new Policy or a new generation (a
/// spec change); not status updates, which with many Syncs would otherwise wake every Sync
/// for each new one. Deletions come from the watch's deletion signal.
pub fn policy_spec_changes(
    policies: impl Stream<Item = Arc<Policy>> + Send + 'static,
) -> impl Stream<Item = Arc<Policy>> + Send + 'static {
    changed(policies, predicates::generation)
}

/// Namespaces seen for the first time or relabelled.
pub fn namespace_relabels(
    namespaces: impl Stream<Item = Arc<PartialObjectMeta<Namespace>>> + Send + 'static,
) -> impl Stream<Item = Arc<PartialObjectMeta<Namespace>>> + Send + 'static {
    changed(namespaces, predicates::labels)
}

/// Syncs seen for the first time or relabelled (status churn cannot change a governed count).
pub fn sync_relabels(
    syncs: impl Stream<Item = Arc<PartialObjectMeta<Sync>>> + Send + 'static,
) -> impl Stream<Item = Arc<PartialObjectMeta<Sync>>> + Send + 'static {
    changed(syncs, predicates::labels)
}

/// The Syncs whose `sourceRef` names `repo` (a new artifact, or the source gone).
pub fn syncs_of_source(syncs: &[Arc<Sync>], repo: &GitRepository) -> Vec<ObjectRef<Sync>> {
    let (ns, name) = (repo.namespace().unwrap_or_default(), repo.name_any());
    syncs
        .iter()
        .filter(|s| {
            let source = &s.spec.source_ref;
            let source_ns = source
                .namespace
                .as_deref()
                .or(s.metadata.namespace.as_deref())
                .unwrap_or_default();
            source.name == name && source_ns == ns
        })
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

/// Whether `sync`'s `spec.helm.valuesFrom` names the `kind` object `name` (in its namespace).
fn reads_values(sync: &Sync, kind: DataKind, name: &str) -> bool {
    sync.spec.helm.as_ref().is_some_and(|h| {
        h.values_from
            .iter()
            .any(|r| r.kind == kind && r.name == name)
    })
}

/// The Syncs in `namespace` that read the `kind` object `name` — as chart values
/// (`helm.valuesFrom`) or as substitution variables (`substituteFrom`) — each once: its change,
/// creation or deletion renders them again (the cache key covers what was read).
pub fn readers_of(
    syncs: &[Arc<Sync>],
    kind: DataKind,
    namespace: &str,
    name: &str,
) -> Vec<ObjectRef<Sync>> {
    syncs
        .iter()
        .filter(|s| s.metadata.namespace.as_deref() == Some(namespace))
        .filter(|s| reads_values(s, kind, name) || crate::variables::takes_variables(s, kind, name))
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

/// [`readers_of`] for a changed object's metadata.
pub fn readers_of_changed<K>(
    syncs: &[Arc<Sync>],
    kind: DataKind,
    changed: &PartialObjectMeta<K>,
) -> Vec<ObjectRef<Sync>> {
    readers_of(
        syncs,
        kind,
        changed.metadata.namespace.as_deref().unwrap_or_default(),
        changed.metadata.name.as_deref().unwrap_or_default(),
    )
}

/// Every Sync: a Policy's spec change (or deletion) may change which Syncs it governs, before
/// and after, so all are looked at; the render cache key makes that cheap for the unaffected.
pub fn every_sync(syncs: &[Arc<Sync>]) -> Vec<ObjectRef<Sync>> {
    syncs
        .iter()
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

/// The Syncs in namespace `namespace`: relabelled, it may come under (or leave) a Policy's
/// namespace selector.
pub fn syncs_in_namespace(syncs: &[Arc<Sync>], namespace: &str) -> Vec<ObjectRef<Sync>> {
    syncs
        .iter()
        .filter(|s| s.metadata.namespace.as_deref() == Some(namespace))
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

/// Every Policy: a Sync created, relabelled or deleted may change any Policy's governed count.
pub fn every_policy(policies: &[Arc<Policy>]) -> Vec<ObjectRef<Policy>> {
    policies
        .iter()
        .map(|p| ObjectRef::from_obj(p.as_ref()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sync(ns: &str, name: &str, source: serde_json::Value) -> Arc<Sync> {
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "sync.plumb.dev/v1", "kind": "Sync",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"sourceRef": source},
            }))
            .unwrap(),
        )
    }

    fn repo(ns: &str, name: &str) -> GitRepository {
        serde_json::from_value(json!({
            "apiVersion": "source.plumb.dev/v1", "kind": "GitRepository",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"url": "https://example.com/x.git"},
        }))
        .unwrap()
    }

    fn names(refs: Vec<ObjectRef<Sync>>) -> Vec<String> {
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
        let mut reader = sync("team", "chart", source.clone());
        Arc::make_mut(&mut reader).spec.helm = Some(
            serde_json::from_value(json!({
                "valuesFrom": [{"kind": "ConfigMap", "name": "vals"}, {"kind": "Secret", "name": "creds"}],
            }))
            .unwrap(),
        );
        let syncs = [reader, sync("team", "plain", source)];
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
    async fn only_relabelled_namespaces_pass() {
        use futures::StreamExt;
        let ns = |labels: serde_json::Value| -> Arc<PartialObjectMeta<Namespace>> {
            Arc::new(
                serde_json::from_value(json!({
                    "apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": "team", "uid": "u", "labels": labels},
                }))
                .unwrap(),
            )
        };
        let events = [
            ns(json!({"env": "dev"})),
            ns(json!({"env": "dev"})),
            ns(json!({"env": "prod"})),
        ];
        let passed: Vec<_> = namespace_relabels(futures::stream::iter(events))
            .map(|n| n.labels()["env"].clone())
            .collect()
            .await;
        assert_eq!(passed, ["dev", "prod"]);
    }

    #[test]
    fn a_sync_change_wakes_every_policy() {
        let policy = |name: &str| -> Arc<Policy> {
            Arc::new(
                serde_json::from_value(json!({
                    "apiVersion": "policy.plumb.dev/v1", "kind": "Policy",
                    "metadata": {"name": name}, "spec": {},
                }))
                .unwrap(),
            )
        };
        let woken: Vec<String> = every_policy(&[policy("p"), policy("q")])
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(woken, ["p", "q"]);
    }
}
