//! Apply stages: cluster-wide prerequisites first, then `*Class` kinds, then the rest in an order
//! where what an object needs comes before it (as Flux and kustomize order them).

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
    fn a_custom_kind_named_namespace_is_not_cluster_stage() {
        assert_eq!(stage_of("example.com", "Namespace"), Stage::Rest);
        assert_eq!(stage_of("", "Namespace"), Stage::Cluster);
    }
}
