//! Output order: kustomize's legacy kind order, or the order resources were added.

use crate::resource::{Gvk, ResId, Resource};

const FIRST: &[&str] = &[
    "Namespace",
    "ResourceQuota",
    "StorageClass",
    "CustomResourceDefinition",
    "ServiceAccount",
    "PodSecurityPolicy",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "ConfigMap",
    "Secret",
    "Endpoints",
    "Service",
    "LimitRange",
    "PriorityClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Deployment",
    "StatefulSet",
    "CronJob",
    "PodDisruptionBudget",
];
const LAST: &[&str] = &[
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
];

fn gvk_key(g: &Gvk) -> String {
    let or = |s: &str, d: &str| {
        if s.is_empty() {
            d.to_string()
        } else {
            s.to_string()
        }
    };
    format!(
        "{}_{}_{}",
        or(&g.group, "~G"),
        or(&g.version, "~V"),
        or(&g.kind, "~K")
    )
}

fn id_key(id: &ResId) -> String {
    let ns = if id.namespace.is_empty() {
        "~X"
    } else {
        &id.namespace
    };
    let name = if id.name.is_empty() { "~N" } else { &id.name };
    format!("{}|{ns}|{name}", id.gvk)
}

/// Sort by kind rank (custom or default first/last lists), then GVK, namespace and name.
pub(crate) fn legacy_sort(
    res: &mut Vec<Resource>,
    first: Option<&[String]>,
    last: Option<&[String]>,
) {
    let rank = |kind: &str| -> i64 {
        let (f, l): (Vec<&str>, Vec<&str>) = match (first, last) {
            (Some(f), Some(l)) => (
                f.iter().map(String::as_str).collect(),
                l.iter().map(String::as_str).collect(),
            ),
            _ => (FIRST.to_vec(), LAST.to_vec()),
        };
        if let Some(i) = f.iter().position(|k| *k == kind) {
            return i as i64 - f.len() as i64;
        }
        if let Some(i) = l.iter().position(|k| *k == kind) {
            return 1 + i as i64;
        }
        0
    };
    let mut keyed: Vec<(ResId, Resource)> = std::mem::take(res)
        .into_iter()
        .map(|r| (r.id(), r))
        .collect();
    keyed.sort_by(|(ia, _), (ib, _)| {
        if ia.gvk != ib.gvk {
            let (ra, rb) = (rank(&ia.gvk.kind), rank(&ib.gvk.kind));
            if ra != rb {
                return ra.cmp(&rb);
            }
            let (ka, kb) = (gvk_key(&ia.gvk), gvk_key(&ib.gvk));
            if ia.gvk.kind == "Namespace"
                && ib.gvk.kind == "Namespace"
                && (ia.gvk.group.is_empty() || ib.gvk.group.is_empty())
            {
                return kb.cmp(&ka);
            }
            return ka.cmp(&kb);
        }
        id_key(ia).cmp(&id_key(ib))
    });
    *res = keyed.into_iter().map(|(_, r)| r).collect();
}
