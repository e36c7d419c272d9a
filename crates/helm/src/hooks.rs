//! Helm hooks as Argo CD runs them: what the `helm.sh/hook*` annotations of a rendered object
//! ask for, decided without a cluster.
//!
//! `pre-install`/`pre-upgrade` hooks are applied (and waited for) before the rest of a render,
//! `post-install`/`post-upgrade` hooks after the rest is healthy; each group runs in order of
//! `helm.sh/hook-weight` (then kind and name, as Helm sorts them). Test, delete and rollback
//! hooks are never run. `helm.sh/hook-delete-policy` says when a hook object is deleted:
//! `before-hook-creation` (the default) deletes the previous one before it is created again,
//! `hook-succeeded` / `hook-failed` once it has succeeded / failed.

use serde_json::Value;

/// The annotation that makes an object a hook: a comma-separated list of events.
pub const HOOK_ANNOTATION: &str = "helm.sh/hook";
/// The annotation ordering hooks of one phase (an integer, lowest first; 0 when unset).
pub const HOOK_WEIGHT_ANNOTATION: &str = "helm.sh/hook-weight";
/// The annotation saying when a hook object is deleted (comma-separated policies).
pub const HOOK_DELETE_POLICY_ANNOTATION: &str = "helm.sh/hook-delete-policy";

/// When in a sync a hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HookPhase {
    /// Before the rest of the render is applied (`pre-install`, `pre-upgrade`).
    PreSync,
    /// After the rest is applied and healthy (`post-install`, `post-upgrade`).
    PostSync,
}

/// When a hook object is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeletePolicy {
    /// The previous object of this hook is deleted before it is created again.
    BeforeHookCreation,
    /// Deleted once it has succeeded.
    HookSucceeded,
    /// Deleted once it has failed.
    HookFailed,
}

/// What the hook annotations of one object ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// The phases it runs in; empty for hooks that are never run (test, delete, rollback).
    pub phases: Vec<HookPhase>,
    /// `helm.sh/hook-weight`.
    pub weight: i64,
    /// `helm.sh/hook-delete-policy`, `before-hook-creation` when unset.
    pub delete_policies: Vec<DeletePolicy>,
    /// The events as written, for messages.
    pub events: String,
}

impl Hook {
    /// Whether the hook object is deleted on `policy`.
    pub fn deletes_on(&self, policy: DeletePolicy) -> bool {
        self.delete_policies.contains(&policy)
    }

    /// Whether it runs in `phase`.
    pub fn runs_in(&self, phase: HookPhase) -> bool {
        self.phases.contains(&phase)
    }
}

/// The hook an object is, or `None` when it carries no `helm.sh/hook` annotation.
pub fn hook_of(object: &Value) -> Option<Hook> {
    let annotations = object.pointer("/metadata/annotations")?;
    let events = annotations.get(HOOK_ANNOTATION)?.as_str()?;
    let mut phases = Vec::new();
    for event in events.split(',').map(|e| e.trim().to_ascii_lowercase()) {
        let phase = match event.as_str() {
            "pre-install" | "pre-upgrade" => HookPhase::PreSync,
            "post-install" | "post-upgrade" => HookPhase::PostSync,
            // test, test-success, pre/post-delete, pre/post-rollback: never run by a sync.
            _ => continue,
        };
        if !phases.contains(&phase) {
            phases.push(phase);
        }
    }
    phases.sort();
    // As Helm: a weight that is not an integer counts as 0.
    let weight = annotations
        .get(HOOK_WEIGHT_ANNOTATION)
        .and_then(Value::as_str)
        .and_then(|w| w.trim().parse::<i64>().ok())
        .unwrap_or(0);
    let mut delete_policies = Vec::new();
    if let Some(p) = annotations
        .get(HOOK_DELETE_POLICY_ANNOTATION)
        .and_then(Value::as_str)
    {
        for policy in p.split(',').map(|p| p.trim().to_ascii_lowercase()) {
            let policy = match policy.as_str() {
                "before-hook-creation" => DeletePolicy::BeforeHookCreation,
                "hook-succeeded" => DeletePolicy::HookSucceeded,
                "hook-failed" => DeletePolicy::HookFailed,
                _ => continue,
            };
            if !delete_policies.contains(&policy) {
                delete_policies.push(policy);
            }
        }
    }
    if delete_policies.is_empty() {
        delete_policies.push(DeletePolicy::BeforeHookCreation);
    }
    Some(Hook {
        phases,
        weight,
        delete_policies,
        events: events.to_owned(),
    })
}

/// Whether an object is a hook of any kind (run or not).
pub fn is_hook(object: &Value) -> bool {
    object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(HOOK_ANNOTATION))
        .is_some()
}

/// The items of `items` (each holding an object, reached by `object`) that run in `phase`, in
/// run order: by weight, then in the order Helm installs kinds, then by name. Each group of
/// equal weight is applied together and waited for before the next.
pub fn in_phase<T>(
    items: &[T],
    object: impl Fn(&T) -> &Value,
    phase: HookPhase,
) -> Vec<Vec<(&T, Hook)>> {
    let mut hooks: Vec<(&T, Hook)> = items
        .iter()
        .filter_map(|i| hook_of(object(i)).map(|h| (i, h)))
        .filter(|(_, h)| h.runs_in(phase))
        .collect();
    hooks.sort_by(|(a, ha), (b, hb)| {
        let (a, b) = (object(a), object(b));
        ha.weight
            .cmp(&hb.weight)
            .then_with(|| kind_rank(a).cmp(&kind_rank(b)))
            .then_with(|| name(a).cmp(name(b)))
    });
    let mut groups: Vec<Vec<(&T, Hook)>> = Vec::new();
    for (i, h) in hooks {
        match groups.last_mut() {
            Some(g) if g[0].1.weight == h.weight => g.push((i, h)),
            _ => groups.push(vec![(i, h)]),
        }
    }
    groups
}

fn name(o: &Value) -> &str {
    o.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Helm's install order of kinds (`releaseutil.InstallOrder`); others after them.
fn kind_rank(o: &Value) -> usize {
    const ORDER: &[&str] = &[
        "PriorityClass",
        "Namespace",
        "NetworkPolicy",
        "ResourceQuota",
        "LimitRange",
        "PodSecurityPolicy",
        "PodDisruptionBudget",
        "ServiceAccount",
        "Secret",
        "SecretList",
        "ConfigMap",
        "StorageClass",
        "PersistentVolume",
        "PersistentVolumeClaim",
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleList",
        "ClusterRoleBinding",
        "ClusterRoleBindingList",
        "Role",
        "RoleList",
        "RoleBinding",
        "RoleBindingList",
        "Service",
        "DaemonSet",
        "Pod",
        "ReplicationController",
        "ReplicaSet",
        "Deployment",
        "HorizontalPodAutoscaler",
        "StatefulSet",
        "Job",
        "CronJob",
        "IngressClass",
        "Ingress",
        "APIService",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ];
    let kind = o.get("kind").and_then(Value::as_str).unwrap_or_default();
    ORDER.iter().position(|k| *k == kind).unwrap_or(ORDER.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(kind: &str, name: &str, annotations: Value) -> Value {
        json!({"apiVersion": "v1", "kind": kind, "metadata": {"name": name, "annotations": annotations}})
    }

    #[test]
    fn events_map_to_phases_and_the_delete_policy_defaults_to_before_creation() {
        let h = hook_of(&obj(
            "Job",
            "migrate",
            json!({"helm.sh/hook": "pre-install, pre-upgrade"}),
        ))
        .unwrap();
        assert_eq!(h.phases, [HookPhase::PreSync]);
        assert_eq!(h.weight, 0);
        assert_eq!(h.delete_policies, [DeletePolicy::BeforeHookCreation]);
        let h = hook_of(&obj(
            "Job",
            "smoke",
            json!({"helm.sh/hook": "post-upgrade,post-install", "helm.sh/hook-weight": "-5",
                   "helm.sh/hook-delete-policy": "hook-succeeded,hook-failed"}),
        ))
        .unwrap();
        assert_eq!(h.phases, [HookPhase::PostSync]);
        assert_eq!(h.weight, -5);
        assert!(
            h.deletes_on(DeletePolicy::HookSucceeded) && h.deletes_on(DeletePolicy::HookFailed)
        );
        assert!(!h.deletes_on(DeletePolicy::BeforeHookCreation));
    }

    #[test]
    fn test_delete_and_rollback_hooks_never_run() {
        for events in ["test", "test-success", "pre-delete", "post-rollback"] {
            let o = obj("Pod", "t", json!({"helm.sh/hook": events}));
            assert!(is_hook(&o));
            assert!(hook_of(&o).unwrap().phases.is_empty(), "{events}");
        }
        assert!(hook_of(&obj("Pod", "plain", json!({}))).is_none());
        let bad_weight = obj(
            "Job",
            "j",
            json!({"helm.sh/hook": "pre-install", "helm.sh/hook-weight": "high"}),
        );
        assert_eq!(hook_of(&bad_weight).unwrap().weight, 0);
    }

    #[test]
    fn a_phase_runs_by_weight_then_kind_then_name_in_groups() {
        let objects = vec![
            obj(
                "Job",
                "b",
                json!({"helm.sh/hook": "pre-install", "helm.sh/hook-weight": "1"}),
            ),
            obj(
                "Job",
                "a",
                json!({"helm.sh/hook": "pre-install", "helm.sh/hook-weight": "1"}),
            ),
            obj(
                "ConfigMap",
                "z",
                json!({"helm.sh/hook": "pre-install", "helm.sh/hook-weight": "1"}),
            ),
            obj(
                "Secret",
                "s",
                json!({"helm.sh/hook": "pre-upgrade", "helm.sh/hook-weight": "-1"}),
            ),
            obj("Job", "post", json!({"helm.sh/hook": "post-install"})),
            obj("Deployment", "app", json!({})),
        ];
        let groups: Vec<Vec<String>> = in_phase(&objects, |o| o, HookPhase::PreSync)
            .iter()
            .map(|g| g.iter().map(|(o, _)| name(o).to_owned()).collect())
            .collect();
        assert_eq!(groups, [vec!["s"], vec!["z", "a", "b"]]);
        let post = in_phase(&objects, |o| o, HookPhase::PostSync);
        assert_eq!(post.len(), 1);
        assert_eq!(name(post[0][0].0), "post");
    }
}
