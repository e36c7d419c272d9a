//! What of an applied object a pass of its Sync reads, as one number: its [`signal`]. A drift
//! watch wakes the Sync only when the signal of one of its objects changes, or the object goes;
//! every other change (a controller's status report that leaves the object as healthy as it was,
//! a label or annotation another manager keeps, the Deployment controller's revision
//! annotation) would wake a pass that finds nothing to do, and at a thousand Syncs those passes
//! are the queue.
//!
//! The signal covers:
//! - **the fields plumb applies**: the `fieldsV1` of plumb's `Apply` entry in the object's managed
//!   fields. Server-side apply moves a field's ownership to whoever changes its value (an
//!   `Update`, `kubectl scale`, an apply with force), or drops it when the field is removed, so
//!   any change of a value plumb applied changes that entry, and nothing else does. An object
//!   without the entry (made by someone else, before plumb applied it) counts with all of what
//!   could be applied ([`applied_part`](crate::drift::applied_part));
//! - **the owner labels** (a hand-over to another Sync) and **the per-object controls**
//!   (`plumb.dev/*` annotations, which may be set on the live object by hand);
//! - **its health class** by the built-in rules (current, in progress, failed): the message of a
//!   state on the way (`0 of 1 replicas available`) is read by the pass that reports it, but its
//!   changes wake nobody;
//! - **whether it is being deleted**.
//!
//! Objects of a Sync with `spec.healthCheckExprs` wake it on every change (their expressions may
//! read any field); see `Watches::set_custom_health`.

use std::hash::{DefaultHasher, Hash, Hasher};

use serde_json::Value;

use plumb_api::{SYNC_FIELD_MANAGER, SYNC_NAME_LABEL, SYNC_NAMESPACE_LABEL};

use crate::controls::CONTROL_PREFIX;
use crate::drift;
use crate::health::{self, Health};

/// The signal of `obj`, a live object of `group`/`kind` as the API server sent it (with its
/// managed fields).
pub fn signal(group: &str, kind: &str, obj: &Value) -> u64 {
    let mut h = DefaultHasher::new();
    obj.pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
        .hash(&mut h);
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_owned();
    let labels = obj.pointer("/metadata/labels");
    text(labels.and_then(|l| l.get(SYNC_NAME_LABEL))).hash(&mut h);
    text(labels.and_then(|l| l.get(SYNC_NAMESPACE_LABEL))).hash(&mut h);
    if let Some(annotations) = obj
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
    {
        for (k, v) in annotations
            .iter()
            .filter(|(k, _)| k.starts_with(CONTROL_PREFIX))
        {
            (k, v.as_str()).hash(&mut h);
        }
    }
    match drift::applied_fields(obj, SYNC_FIELD_MANAGER) {
        Some(fields) => (0u8, fields.to_string()).hash(&mut h),
        None => (1u8, drift::applied_part(obj).to_string()).hash(&mut h),
    }
    let class: u8 = match health::assess(group, kind, obj) {
        Health::Current => 0,
        Health::InProgress(_) => 1,
        Health::Failed(_) => 2,
    };
    class.hash(&mut h);
    h.finish()
}

/// The `metadata.resourceVersion` of `obj` as kept beside its signal: a hash of the opaque string
/// (versions are only ever compared for equality).
pub fn version_of(resource_version: Option<&str>) -> u64 {
    let mut h = DefaultHasher::new();
    resource_version.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn deployment(status: Value) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {
                "name": "web", "namespace": "ns", "generation": 1, "resourceVersion": "10",
                "labels": {"sync.plumb.dev/name": "app", "sync.plumb.dev/namespace": "ns"},
                "managedFields": [{
                    "manager": "plumb-sync", "operation": "Apply", "apiVersion": "apps/v1",
                    "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:spec": {"f:replicas": {}}}
                }]
            },
            "spec": {"replicas": 1},
            "status": status,
        })
    }

    fn sig(obj: &Value) -> u64 {
        signal("apps", "Deployment", obj)
    }

    #[test]
    fn a_status_report_that_keeps_the_health_class_leaves_the_signal() {
        let unobserved = deployment(json!({}));
        let updating = deployment(json!({"observedGeneration": 1, "replicas": 1}));
        let mut available = deployment(json!({"observedGeneration": 1, "replicas": 1,
            "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1}));
        assert_eq!(sig(&unobserved), sig(&updating), "in progress both times");
        assert_ne!(sig(&updating), sig(&available), "in progress, then current");
        // The Deployment controller's revision annotation, its time on plumb's entry: no change.
        let before = sig(&available);
        available["metadata"]["annotations"] = json!({"deployment.kubernetes.io/revision": "1"});
        available["metadata"]["managedFields"][0]["time"] = json!("2026-02-02T00:00:00Z");
        available["metadata"]["resourceVersion"] = json!("11");
        assert_eq!(sig(&available), before);
    }

    #[test]
    fn a_change_of_what_plumb_applied_or_controls_changes_the_signal() {
        let base = deployment(json!({}));
        type Change = fn(&mut Value);
        let cases: Vec<(&str, Change)> = vec![
            (
                "a value plumb applied changed by someone else (ownership moved)",
                (|o| o["metadata"]["managedFields"][0]["fieldsV1"] = json!({})),
            ),
            (
                "plumb's entry gone",
                (|o| o["metadata"]["managedFields"] = json!([])),
            ),
            (
                "handed to another Sync",
                (|o| o["metadata"]["labels"]["sync.plumb.dev/name"] = json!("other")),
            ),
            (
                "a control set by hand",
                (|o| o["metadata"]["annotations"] = json!({"plumb.dev/reconcile": "disabled"})),
            ),
            (
                "being deleted",
                (|o| o["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z")),
            ),
            (
                "a new generation its controller has not seen",
                (|o| {
                    o["metadata"]["generation"] = json!(2);
                    o["status"] = json!({"observedGeneration": 1, "replicas": 1,
                        "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1});
                }),
            ),
        ];
        let mut healthy = base.clone();
        healthy["status"] = json!({"observedGeneration": 1, "replicas": 1,
            "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1});
        for (what, change) in cases {
            let from = if what.starts_with("a new generation") {
                &healthy
            } else {
                &base
            };
            let mut changed = from.clone();
            change(&mut changed);
            assert_ne!(sig(from), sig(&changed), "{what}");
        }
    }

    #[test]
    fn without_plumbs_entry_every_applicable_field_counts() {
        let mut obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "namespace": "ns"}, "data": {"k": "v"}});
        let before = signal("", "ConfigMap", &obj);
        obj["data"]["k"] = json!("w");
        assert_ne!(signal("", "ConfigMap", &obj), before);
    }

    #[test]
    fn versions_are_told_apart() {
        assert_eq!(version_of(Some("10")), version_of(Some("10")));
        assert_ne!(version_of(Some("10")), version_of(Some("11")));
        assert_ne!(version_of(None), version_of(Some("")));
    }
}
