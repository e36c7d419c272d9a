//! `Policy` (`policy.plumb.dev/v1`, cluster-scoped): guardrails for the Syncs it selects — CEL
//! rules checked before anything is applied, how drift is handled, and when Syncs may apply.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::Duration;

/// The desired state of a Policy.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "policy.plumb.dev",
    version = "v1",
    kind = "Policy",
    status = "PolicyStatus",
    shortname = "pol",
    category = "plumb",
    doc = "Guardrails for the Syncs it selects: CEL rules checked before anything is applied, drift handling and sync windows.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].message"
    ),
    printcolumn(name = "Syncs", type_ = "integer", json_path = ".status.governedSyncs"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct PolicySpec {
    /// Which Syncs this Policy governs; every Sync when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<PolicySelector>,

    /// CEL rules every object rendered by a governed Sync is checked against.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub rules: Vec<Rule>,

    /// How drift of objects applied by governed Syncs is handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftPolicy>,

    /// When governed Syncs may apply a new revision. With any `allow` window, only inside one;
    /// never inside a `deny` window.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<SyncWindow>,

    /// Stop enforcing this Policy while true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
}

impl Policy {
    /// Whether this Policy governs a Sync labelled `sync_labels` in a namespace labelled
    /// `namespace_labels`: both selectors must match, an absent one matches everything, and a
    /// suspended Policy governs nothing. The render and sync controllers both decide by this.
    pub fn governs(
        &self,
        namespace_labels: &BTreeMap<String, String>,
        sync_labels: &BTreeMap<String, String>,
    ) -> bool {
        if self.spec.suspend {
            return false;
        }
        let Some(sel) = &self.spec.selector else {
            return true;
        };
        selector_matches(sel.namespace_selector.as_ref(), namespace_labels)
            && selector_matches(sel.sync_selector.as_ref(), sync_labels)
    }
}

/// Whether `labels` match `selector` (matchLabels and matchExpressions with In, NotIn, Exists,
/// DoesNotExist); an absent selector matches everything, an unknown operator nothing.
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

/// Selects the Syncs a Policy governs: both selectors must match (an absent one matches all).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicySelector {
    /// Labels of the Sync's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Labels of the Sync itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_selector: Option<LabelSelector>,
}

/// One guardrail: a CEL expression that must hold for every object it matches.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct Rule {
    /// The rule's name, unique in the Policy; findings name it.
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"),
        length(min = 1, max = 63)
    )]
    pub name: String,
    /// Which objects the rule applies to; all objects when unset.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub match_: Option<RuleMatch>,
    /// A CEL expression over `object` (the rendered object); true means allowed.
    #[schemars(length(min = 1))]
    pub expression: String,
    /// What to tell the user when the expression is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Deny blocks the render; Warn records the finding and lets it through.
    #[serde(default)]
    pub action: RuleAction,
}

/// What happens when a rule's expression is false.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum RuleAction {
    /// Block the render: nothing of it is applied.
    #[default]
    Deny,
    /// Record the finding and apply anyway.
    Warn,
}

/// Which objects a rule applies to.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
pub struct RuleMatch {
    /// Kinds by API group; any kind when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ResourceMatch>,
    /// Namespaces of the objects; any namespace when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
}

/// Kinds of one API group.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
pub struct ResourceMatch {
    /// The API group; `""` is the core group, `*` any group.
    #[serde(default)]
    pub group: String,
    /// Kinds, e.g. `Deployment`; any kind of the group when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<String>,
}

/// How drift is handled for governed Syncs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
pub struct DriftPolicy {
    /// Correct, Report or Ignore drift; overrides each Sync's `selfHeal` when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<DriftMode>,
    /// Fields the operator must not own, e.g. `/spec/replicas` under an autoscaler.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore: Vec<DriftIgnore>,
}

/// What to do when an applied object drifts from Git.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum DriftMode {
    /// Re-apply at once.
    Correct,
    /// Record it in status and an Event; change nothing.
    Report,
    /// Do nothing until the next full reconcile.
    Ignore,
}

/// Fields left out of what is applied, for the objects matched.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
pub struct DriftIgnore {
    /// Kinds by API group; any kind when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ResourceMatch>,
    /// JSON pointers, e.g. `/spec/replicas`.
    #[schemars(length(min = 1))]
    pub paths: Vec<String>,
}

/// A recurring window in which governed Syncs may (allow) or may not (deny) apply new revisions.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncWindow {
    /// Whether the window allows or denies applying.
    pub action: WindowAction,
    /// When the window opens: a five-field cron expression, e.g. `0 9 * * 1-5`.
    #[schemars(length(min = 1))]
    pub schedule: String,
    /// How long the window stays open.
    pub duration: Duration,
    /// The IANA time zone of the schedule, e.g. `Europe/Berlin`; UTC when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
}

/// Whether a window allows or denies applying.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WindowAction {
    /// Apply only inside this (or another allow) window.
    Allow,
    /// Never apply inside this window.
    Deny,
}

/// The observed state of a Policy, written by the render controller.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    /// The generation of the spec last compiled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready when every rule compiled; otherwise the failing rule and the compiler's message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// How many Syncs this Policy governs now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub governed_syncs: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn policy(selector: Option<PolicySelector>, suspend: bool) -> Policy {
        let mut spec: PolicySpec = serde_json::from_value(serde_json::json!({})).unwrap();
        spec.selector = selector;
        spec.suspend = suspend;
        Policy::new("p", spec)
    }

    #[test]
    fn a_policy_without_selector_governs_every_sync_unless_suspended() {
        assert!(policy(None, false).governs(&labels(&[]), &labels(&[])));
        assert!(!policy(None, true).governs(&labels(&[]), &labels(&[])));
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
        let p = policy(Some(sel), false);
        assert!(p.governs(&labels(&[("team", "a")]), &labels(&[("tier", "web")])));
        assert!(!p.governs(&labels(&[("team", "a")]), &labels(&[("tier", "db")])));
        assert!(!p.governs(&labels(&[("team", "b")]), &labels(&[("tier", "web")])));
    }

    #[test]
    fn selector_operators_follow_kubernetes() {
        let expr = |operator: &str, values: &[&str]| LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "k".into(),
                operator: operator.into(),
                values: Some(values.iter().map(|v| (*v).to_owned()).collect()),
            }]),
        };
        let has = labels(&[("k", "v")]);
        let none = labels(&[]);
        assert!(selector_matches(Some(&expr("NotIn", &["x"])), &has));
        assert!(selector_matches(Some(&expr("NotIn", &["x"])), &none));
        assert!(!selector_matches(Some(&expr("NotIn", &["v"])), &has));
        assert!(selector_matches(Some(&expr("Exists", &[])), &has));
        assert!(selector_matches(Some(&expr("DoesNotExist", &[])), &none));
        assert!(!selector_matches(Some(&expr("Sometimes", &[])), &has));
    }
}
