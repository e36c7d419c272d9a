//! The inventory: which objects a Sync applied, and which of them to prune.

use std::collections::{BTreeMap, HashSet};

use plumb_api::inventory::InventoryEntry;
use plumb_api::{SYNC_NAME_LABEL, SYNC_NAMESPACE_LABEL};

/// The entries of the objects prune should delete: those in `old` but not in `new`, in reverse
/// apply order (the inventory is kept in apply order), so dependents go before what they need.
pub fn prune_set(old: &[InventoryEntry], new: &[InventoryEntry]) -> Vec<InventoryEntry> {
    let keep: HashSet<&str> = new.iter().map(|e| e.id.as_str()).collect();
    old.iter()
        .rev()
        .filter(|e| !keep.contains(e.id.as_str()))
        .cloned()
        .collect()
}

/// The inventory after a prune in which `kept` could not be deleted: `new` plus those, which stay
/// listed so the next reconcile tries again.
pub fn with_leftovers(new: Vec<InventoryEntry>, kept: Vec<InventoryEntry>) -> Vec<InventoryEntry> {
    let mut out = new;
    out.extend(kept.into_iter().rev());
    out
}

/// Whether an object's owner labels still name the Sync `namespace/name`.
pub fn owned_by(labels: Option<&BTreeMap<String, String>>, namespace: &str, name: &str) -> bool {
    labels.is_some_and(|l| {
        l.get(SYNC_NAME_LABEL).map(String::as_str) == Some(name)
            && l.get(SYNC_NAMESPACE_LABEL).map(String::as_str) == Some(namespace)
    })
}

/// Why prune must not run now, if it must not.
pub fn prune_blocked(
    new_is_empty: bool,
    old_is_empty: bool,
    prune_empty: bool,
) -> Option<&'static str> {
    (new_is_empty && !old_is_empty && !prune_empty)
        .then_some("the render is empty; set spec.pruneEmpty to prune everything")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(id: &str) -> InventoryEntry {
        InventoryEntry {
            id: id.to_owned(),
            v: "v1".to_owned(),
        }
    }

    #[test]
    fn prune_set_is_old_minus_new_in_reverse_apply_order() {
        let old = [
            e("_a__Namespace"),
            e("a_cm__ConfigMap"),
            e("a_web_apps_Deployment"),
        ];
        let new = [e("_a__Namespace")];
        let ids: Vec<_> = prune_set(&old, &new).into_iter().map(|e| e.id).collect();
        assert_eq!(ids, ["a_web_apps_Deployment", "a_cm__ConfigMap"]);
    }

    #[test]
    fn prune_set_is_empty_when_nothing_left() {
        let old = [e("a_cm__ConfigMap")];
        assert!(prune_set(&old, &old).is_empty());
    }

    #[test]
    fn prune_skips_objects_owned_by_another_sync() {
        let mut labels = BTreeMap::new();
        labels.insert(SYNC_NAME_LABEL.to_owned(), "other".to_owned());
        labels.insert(SYNC_NAMESPACE_LABEL.to_owned(), "ns".to_owned());
        assert!(!owned_by(Some(&labels), "ns", "mine"));
        assert!(owned_by(Some(&labels), "ns", "other"));
        assert!(!owned_by(Some(&labels), "elsewhere", "other"));
        assert!(!owned_by(None, "ns", "other"));
    }

    #[test]
    fn an_empty_render_prunes_nothing_unless_asked() {
        assert!(prune_blocked(true, false, false).is_some());
        assert!(prune_blocked(true, false, true).is_none());
        assert!(prune_blocked(false, false, false).is_none());
        assert!(prune_blocked(true, true, false).is_none());
    }

    #[test]
    fn leftovers_stay_in_the_inventory() {
        let inv = with_leftovers(vec![e("a")], vec![e("c"), e("b")]);
        let ids: Vec<_> = inv.into_iter().map(|e| e.id).collect();
        assert_eq!(ids, ["a", "b", "c"]);
    }
}
