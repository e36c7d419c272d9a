//! Apply stages: cluster-wide prerequisites first, then `*Class` kinds, then the rest in an order
//! where what an object needs comes before it (as Flux and kustomize order them). Within a stage,
//! the objects of one [wave](wave) need nothing of each other and are applied at once; each wave
//! waits for the ones before it.

/// The stage an object is applied in; stages are applied in this order, each before the next
/// starts, and CustomResourceDefinitions are Established before the next stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// Namespaces, CRDs, cluster roles and their bindings.
    Cluster,
    /// Kinds ending in `Class` (StorageClass, IngressClass, PriorityClass, ...).
    Classes,
    /// Everything else.
    Rest,
}

/// Kinds in the order they are applied within the `Rest` stage (and overall); unknown kinds come
/// after the known ones, webhook configurations last of all.
const ORDER: &[&str] = &[
    "CustomResourceDefinition",
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "ResourceQuota",
    "LimitRange",
    "PriorityLevelConfiguration",
    "FlowSchema",
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "ConfigMap",
    "Secret",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Service",
    "Endpoints",
    "EndpointSlice",
    "NetworkPolicy",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "DaemonSet",
    "StatefulSet",
    "Job",
    "CronJob",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "Ingress",
    "APIService",
];

const LAST: &[&str] = &[
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
];

/// The stage of an object of `group`/`kind`.
pub fn stage_of(group: &str, kind: &str) -> Stage {
    let cluster = matches!(
        (group, kind),
        ("", "Namespace")
            | ("apiextensions.k8s.io", "CustomResourceDefinition")
            | (
                "rbac.authorization.k8s.io",
                "ClusterRole" | "ClusterRoleBinding"
            )
    );
    if cluster {
        Stage::Cluster
    } else if kind.ends_with("Class") {
        Stage::Classes
    } else {
        Stage::Rest
    }
}

/// The sort key of a kind within its stage.
pub fn rank(kind: &str) -> usize {
    if let Some(i) = ORDER.iter().position(|k| *k == kind) {
        i
    } else if let Some(i) = LAST.iter().position(|k| *k == kind) {
        ORDER.len() + 1 + i
    } else {
        ORDER.len()
    }
}

/// The wave of a `group`/`kind` within its stage: objects of one wave are applied concurrently,
/// after every object of the waves before. A kind comes after what the API server or a
/// controller needs to exist when an object of it arrives: a binding after its role (the RBAC
/// escalation check reads the role), a service-account token Secret after its ServiceAccount (the
/// token controller deletes a token whose account is missing), Pods and the workloads that make
/// them after ServiceAccounts, ConfigMaps, Secrets, claims, LimitRanges and quotas (admission reads
/// them), objects that point at workloads after those; kinds plumb does not know come after all
/// it knows, webhook configurations last of all (their webhook may serve nothing yet).
pub fn wave(group: &str, kind: &str) -> usize {
    match stage_of(group, kind) {
        Stage::Cluster => usize::from(kind == "ClusterRoleBinding"),
        Stage::Classes => 0,
        Stage::Rest => match kind {
            "ResourceQuota"
            | "LimitRange"
            | "PriorityLevelConfiguration"
            | "ServiceAccount"
            | "Role"
            | "ConfigMap"
            | "PersistentVolume"
            | "Service"
            | "NetworkPolicy" => 0,
            "FlowSchema"
            | "RoleBinding"
            | "Secret"
            | "PersistentVolumeClaim"
            | "Endpoints"
            | "EndpointSlice" => 1,
            "Pod"
            | "ReplicationController"
            | "ReplicaSet"
            | "Deployment"
            | "DaemonSet"
            | "StatefulSet"
            | "Job"
            | "CronJob"
            | "Ingress"
            | "APIService" => 2,
            "HorizontalPodAutoscaler" | "PodDisruptionBudget" => 3,
            k if LAST.contains(&k) => 5,
            _ => 4,
        },
    }
}

/// Sorts items into apply order by `(stage, rank)` of their `(group, kind)`; items of equal key
/// keep their order from the render.
pub fn sort_for_apply<T>(items: &mut [T], key: impl Fn(&T) -> (&str, &str)) {
    items.sort_by_key(|item| {
        let (group, kind) = key(item);
        (stage_of(group, kind), rank(kind))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_prerequisites_come_first_then_classes_then_the_rest() {
        let mut items = vec![
            ("apps", "Deployment"),
            ("", "Service"),
            ("storage.k8s.io", "StorageClass"),
            ("example.com", "Widget"),
            ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
            ("", "Namespace"),
            ("apiextensions.k8s.io", "CustomResourceDefinition"),
            (
                "admissionregistration.k8s.io",
                "ValidatingWebhookConfiguration",
            ),
            ("", "ConfigMap"),
        ];
        sort_for_apply(&mut items, |(g, k)| (*g, *k));
        let kinds: Vec<_> = items.iter().map(|(_, k)| *k).collect();
        assert_eq!(
            kinds,
            [
                "CustomResourceDefinition",
                "Namespace",
                "ClusterRoleBinding",
                "StorageClass",
                "ConfigMap",
                "Service",
                "Deployment",
                "Widget",
                "ValidatingWebhookConfiguration",
            ]
        );
    }

    #[test]
    fn equal_kinds_keep_render_order() {
        let mut items = vec![
            ("", "ConfigMap", 1),
            ("", "ConfigMap", 2),
            ("", "Namespace", 3),
        ];
        sort_for_apply(&mut items, |(g, k, _)| (*g, *k));
        let order: Vec<_> = items.iter().map(|i| i.2).collect();
        assert_eq!(order, [3, 1, 2]);
    }

    #[test]
    fn each_wave_comes_after_what_its_kinds_need() {
        let w = |kind: &str| wave(group_of(kind), kind);
        let after = |later: &str, earlier: &str| {
            assert!(w(later) > w(earlier), "{later} must come after {earlier}");
        };
        after("ClusterRoleBinding", "ClusterRole");
        after("RoleBinding", "Role");
        after("Secret", "ServiceAccount");
        after("PersistentVolumeClaim", "PersistentVolume");
        after("Endpoints", "Service");
        after("FlowSchema", "PriorityLevelConfiguration");
        for workload in [
            "Pod",
            "Deployment",
            "StatefulSet",
            "DaemonSet",
            "Job",
            "CronJob",
        ] {
            for needed in [
                "ServiceAccount",
                "ConfigMap",
                "Secret",
                "PersistentVolumeClaim",
                "LimitRange",
                "ResourceQuota",
            ] {
                after(workload, needed);
            }
            after("HorizontalPodAutoscaler", workload);
            after("PodDisruptionBudget", workload);
        }
        after("Ingress", "Service");
        after("Ingress", "Secret");
        after("Widget", "HorizontalPodAutoscaler");
        after("ValidatingWebhookConfiguration", "Widget");
        after("MutatingWebhookConfiguration", "Deployment");
        // What needs nothing of each other goes at once.
        assert_eq!(w("ServiceAccount"), w("ConfigMap"));
        assert_eq!(w("ConfigMap"), w("Service"));
        assert_eq!(w("Namespace"), w("CustomResourceDefinition"));
    }

    /// The group of the kinds the wave test names.
    fn group_of(kind: &str) -> &'static str {
        match kind {
            "ClusterRole" | "ClusterRoleBinding" | "Role" | "RoleBinding" => {
                "rbac.authorization.k8s.io"
            }
            "CustomResourceDefinition" => "apiextensions.k8s.io",
            "Deployment" | "StatefulSet" | "DaemonSet" => "apps",
            "Job" | "CronJob" => "batch",
            "HorizontalPodAutoscaler" => "autoscaling",
            "PodDisruptionBudget" => "policy",
            "Ingress" => "networking.k8s.io",
            "FlowSchema" | "PriorityLevelConfiguration" => "flowcontrol.apiserver.k8s.io",
            "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration" => {
                "admissionregistration.k8s.io"
            }
            "Widget" => "example.com",
            _ => "",
        }
    }

    #[test]
    fn a_custom_kind_named_namespace_is_not_cluster_stage() {
        assert_eq!(stage_of("example.com", "Namespace"), Stage::Rest);
        assert_eq!(stage_of("", "Namespace"), Stage::Cluster);
    }
}
