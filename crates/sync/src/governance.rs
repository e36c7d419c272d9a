//! Which Policies govern a Sync, and what they decide for it: drift mode, ignored paths, windows.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use plumb_api::Policy;
use plumb_api::policy::{DriftIgnore, DriftMode, SyncWindow};

/// Whether `labels` match `selector` (matchLabels and matchExpressions; an absent selector
/// matches everything).
pub fn selector_matches(
    selector: Option<&LabelSelector>,
    labels: &BTreeMap<String, String>,
) -> bool {
    let Some(sel) = selector else { return true };
    let labels_ok = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let exprs_ok = sel.match_expressions.iter().flatten().all(|e| {
        let value = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    labels_ok && exprs_ok
}

/// Whether `policy` governs a Sync labelled `sync_labels` in a namespace labelled `ns_labels`.
pub fn governs(
    policy: &Policy,
    sync_labels: &BTreeMap<String, String>,
    ns_labels: &BTreeMap<String, String>,
) -> bool {
    if policy.spec.suspend {
        return false;
    }
    let Some(sel) = &policy.spec.selector else {
        return true;
    };
    selector_matches(sel.namespace_selector.as_ref(), ns_labels)
        && selector_matches(sel.sync_selector.as_ref(), sync_labels)
}

/// What the governing Policies decide for one Sync.
#[derive(Debug, Clone, Default)]
pub struct Governance<'a> {
    /// The drift mode of the first governing Policy (by name) that sets one.
    pub drift_mode: Option<DriftMode>,
    /// Every ignore rule of every governing Policy.
    pub ignores: Vec<&'a DriftIgnore>,
    /// Every window of every governing Policy.
    pub windows: Vec<&'a SyncWindow>,
}

/// Combines the Policies that govern a Sync (pass them sorted by name).
pub fn combine<'a>(policies: &[&'a Policy]) -> Governance<'a> {
    let mut g = Governance::default();
    for p in policies {
        if let Some(d) = &p.spec.drift {
            g.drift_mode = g.drift_mode.or(d.mode);
            g.ignores.extend(d.ignore.iter());
        }
        g.windows.extend(p.spec.windows.iter());
    }
    g
}

/// The drift mode in force: the Policy's when set, else Correct under `selfHeal`, else Report.
pub fn drift_mode(policy_mode: Option<DriftMode>, self_heal: bool) -> DriftMode {
    policy_mode.unwrap_or(if self_heal {
        DriftMode::Correct
    } else {
        DriftMode::Report
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    use plumb_api::PolicySpec;
    use plumb_api::policy::{DriftPolicy, PolicySelector};

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn policy(selector: Option<PolicySelector>, mode: Option<DriftMode>) -> Policy {
        let mut spec: PolicySpec = serde_json::from_value(serde_json::json!({})).unwrap();
        spec.selector = selector;
        spec.drift = Some(DriftPolicy {
            mode,
            ignore: vec![],
        });
        Policy::new("p", spec)
    }

    #[test]
    fn a_policy_without_selector_governs_every_sync() {
        assert!(governs(&policy(None, None), &labels(&[]), &labels(&[])));
    }

    #[test]
    fn both_selectors_must_match() {
        let sel = PolicySelector {
            namespace_selector: Some(LabelSelector {
                match_labels: Some(labels(&[("team", "a")])),
                match_expressions: None,
            }),
            sync_selector: Some(LabelSelector {
                match_labels: None,
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "In".into(),
                    values: Some(vec!["web".into()]),
                }]),
            }),
        };
        let p = policy(Some(sel), None);
        assert!(governs(
            &p,
            &labels(&[("tier", "web")]),
            &labels(&[("team", "a")])
        ));
        assert!(!governs(
            &p,
            &labels(&[("tier", "db")]),
            &labels(&[("team", "a")])
        ));
        assert!(!governs(
            &p,
            &labels(&[("tier", "web")]),
            &labels(&[("team", "b")])
        ));
    }

    #[test]
    fn policy_drift_mode_overrides_self_heal() {
        assert_eq!(drift_mode(None, true), DriftMode::Correct);
        assert_eq!(drift_mode(None, false), DriftMode::Report);
        assert_eq!(drift_mode(Some(DriftMode::Report), true), DriftMode::Report);
        let (a, b) = (policy(None, None), policy(None, Some(DriftMode::Ignore)));
        assert_eq!(combine(&[&a, &b]).drift_mode, Some(DriftMode::Ignore));
    }
}
