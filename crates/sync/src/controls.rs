//! Per-object controls: annotations on a rendered object (or on the live one) that change how
//! plumb manages that one object, as Flux's `kustomize.toolkit.fluxcd.io/*` annotations do.
//!
//! | annotation | values | effect |
//! |---|---|---|
//! | `plumb.dev/reconcile` | `disabled` | never applied, corrected, pruned or deleted; stays in the inventory |
//! | `plumb.dev/ssa` | `IfNotPresent` | created when missing, never changed after |
//! | | `Ignore` | never applied (nor created) |
//! | | `Merge` | applied without taking over fields another manager owns |
//! | `plumb.dev/force` | `enabled` | recreated when an immutable field changes (as `spec.force`, for one object) |
//! | `plumb.dev/takeover` | `enabled` | may be taken over from another Sync that applied it |
//! | `plumb.dev/prune` | `disabled` | never pruned or deleted by the Sync |

use std::collections::BTreeMap;

use serde_json::Value;

/// The prefix of every per-object control annotation.
pub const CONTROL_PREFIX: &str = "plumb.dev/";

/// `plumb.dev/reconcile: disabled` stops plumb managing one object.
pub const RECONCILE_ANNOTATION: &str = "plumb.dev/reconcile";
/// `plumb.dev/ssa: IfNotPresent | Ignore | Merge` chooses how one object is applied.
pub const SSA_ANNOTATION: &str = "plumb.dev/ssa";
/// `plumb.dev/force: enabled` recreates one object on an immutable-field change.
pub const FORCE_ANNOTATION: &str = "plumb.dev/force";
/// `plumb.dev/takeover: enabled` lets a Sync take over an object another Sync applied.
pub const TAKEOVER_ANNOTATION: &str = "plumb.dev/takeover";

/// How one object is applied (`plumb.dev/ssa`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Ssa {
    /// Applied, taking over conflicting fields (the default).
    #[default]
    Apply,
    /// Created when missing, never changed after.
    IfNotPresent,
    /// Never applied.
    Ignore,
    /// Applied without taking over fields another manager owns.
    Merge,
}

/// The controls in force for one object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Controls {
    /// `plumb.dev/reconcile: disabled`.
    pub reconcile_disabled: bool,
    /// `plumb.dev/ssa`.
    pub ssa: Ssa,
    /// `plumb.dev/force: enabled`.
    pub force: bool,
    /// `plumb.dev/takeover: enabled`.
    pub takeover: bool,
}

fn annotations(obj: Option<&Value>) -> BTreeMap<String, String> {
    obj.and_then(|o| o.pointer("/metadata/annotations"))
        .and_then(|a| serde_json::from_value(a.clone()).ok())
        .unwrap_or_default()
}

/// The controls of an object, from its rendered form and its live one: the rendered object's
/// annotations win; `reconcile: disabled`, `ssa: Ignore` and `takeover` count from either, so a
/// person can stop plumb managing one object with `kubectl annotate` (or hand it over).
pub fn controls(desired: &Value, live: Option<&Value>) -> Controls {
    let want = annotations(Some(desired));
    let have = annotations(live);
    let get = |k: &str| want.get(k).or_else(|| have.get(k)).map(String::as_str);
    let either = |k: &str, v: &str| {
        [want.get(k), have.get(k)]
            .into_iter()
            .flatten()
            .any(|x| x.eq_ignore_ascii_case(v))
    };
    let ssa = if either(SSA_ANNOTATION, "Ignore") {
        Ssa::Ignore
    } else {
        match get(SSA_ANNOTATION) {
            Some(v) if v.eq_ignore_ascii_case("IfNotPresent") => Ssa::IfNotPresent,
            Some(v) if v.eq_ignore_ascii_case("Merge") => Ssa::Merge,
            _ => Ssa::Apply,
        }
    };
    Controls {
        reconcile_disabled: either(RECONCILE_ANNOTATION, "disabled"),
        ssa,
        force: get(FORCE_ANNOTATION).is_some_and(|v| v.eq_ignore_ascii_case("enabled")),
        takeover: either(TAKEOVER_ANNOTATION, "enabled"),
    }
}

/// Whether a live object asks to be left alone by prune and deletion: `plumb.dev/prune:
/// disabled` or `plumb.dev/reconcile: disabled`.
pub fn keep_on_delete(live: &Value) -> bool {
    let a = annotations(Some(live));
    a.get(plumb_api::PRUNE_ANNOTATION)
        .is_some_and(|v| v.eq_ignore_ascii_case("disabled"))
        || a.get(RECONCILE_ANNOTATION)
            .is_some_and(|v| v.eq_ignore_ascii_case("disabled"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn with(annotations: Value) -> Value {
        json!({"metadata": {"name": "x", "annotations": annotations}})
    }

    #[test]
    fn controls_are_read_from_the_render_and_the_live_object() {
        let none = json!({"metadata": {"name": "x"}});
        let cases = [
            (none.clone(), None, Controls::default()),
            (
                with(json!({"plumb.dev/reconcile": "disabled"})),
                None,
                Controls {
                    reconcile_disabled: true,
                    ..Default::default()
                },
            ),
            (
                none.clone(),
                Some(with(json!({"plumb.dev/reconcile": "disabled"}))),
                Controls {
                    reconcile_disabled: true,
                    ..Default::default()
                },
            ),
            (
                with(json!({"plumb.dev/ssa": "IfNotPresent"})),
                None,
                Controls {
                    ssa: Ssa::IfNotPresent,
                    ..Default::default()
                },
            ),
            (
                with(json!({"plumb.dev/ssa": "Merge"})),
                Some(with(json!({"plumb.dev/ssa": "Ignore"}))),
                Controls {
                    ssa: Ssa::Ignore,
                    ..Default::default()
                },
            ),
            (
                with(json!({"plumb.dev/force": "enabled", "plumb.dev/takeover": "enabled"})),
                None,
                Controls {
                    force: true,
                    takeover: true,
                    ..Default::default()
                },
            ),
            (
                with(json!({"plumb.dev/ssa": "sometimes"})),
                None,
                Controls::default(),
            ),
        ];
        for (desired, live, want) in cases {
            assert_eq!(
                controls(&desired, live.as_ref()),
                want,
                "{desired} / {live:?}"
            );
        }
    }

    #[test]
    fn prune_and_reconcile_disabled_keep_an_object_on_delete() {
        assert!(keep_on_delete(&with(
            json!({"plumb.dev/prune": "disabled"})
        )));
        assert!(keep_on_delete(&with(
            json!({"plumb.dev/reconcile": "disabled"})
        )));
        assert!(!keep_on_delete(&with(
            json!({"plumb.dev/prune": "enabled"})
        )));
        assert!(!keep_on_delete(&json!({"metadata": {}})));
    }
}
