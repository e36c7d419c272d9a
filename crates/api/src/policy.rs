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
    /// `namespace_labels`. The render and sync controllers both decide by this.
    ///
    /// A suspended Policy governs nothing; one without a selector governs every Sync. The
    /// `namespaceSelector` must match (an absent one matches every namespace). The
    /// `syncSelector` must match too, but only when the Policy sets `allowTenantOptOut`: Sync
    /// labels are written by whoever writes the Sync, so honouring them would let a tenant
    /// label its way out of the Policy. Without that consent a `syncSelector` is ignored, which
    /// governs more Syncs, never fewer (the API server refuses such a Policy at admission; this
    /// covers one stored before that rule).
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
            && (!sel.allow_tenant_opt_out
                || selector_matches(sel.sync_selector.as_ref(), sync_labels))
    }

    /// Why this Policy's `syncSelector` is ignored, when it is (see [`Policy::governs`]).
    pub fn ignored_sync_selector(&self) -> Option<&'static str> {
        let sel = self.spec.selector.as_ref()?;
        (sel.sync_selector.is_some() && !sel.allow_tenant_opt_out).then_some(IGNORED_SYNC_SELECTOR)
    }
}

/// What the API server answers to a `syncSelector` without `allowTenantOptOut`, and what the
/// render controller reports for a stored Policy that has one.
pub const IGNORED_SYNC_SELECTOR: &str = "syncSelector matches labels a tenant sets on its own Sync, so it would let tenants opt out of this Policy; it is honoured only with allowTenantOptOut: true (select by namespaceSelector otherwise)";

/// The namespace a rule's `match.namespaces` judges a rendered object in: the namespace the
/// sync controller applies it into. That is the object's own namespace when it names one and
/// its kind lives in namespaces; otherwise (no namespace, or a cluster-scoped kind, whose
/// namespace field Kubernetes ignores) `placement`, the namespace of the Sync's own objects
/// (its `targetNamespace`, else its namespace). So rendering an object without a namespace, or
/// a cluster-scoped one, never steps outside the rules written for the tenant's namespace.
pub fn judged_namespace<'a>(
    object_namespace: &'a str,
    cluster_scoped: bool,
    placement: &'a str,
) -> &'a str {
    if object_namespace.is_empty() || cluster_scoped {
        placement
    } else {
        object_namespace
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

/// Selects the Syncs a Policy governs: every selector in force must match (an absent one
/// matches all).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.syncSelector) || (has(self.allowTenantOptOut) && self.allowTenantOptOut)",
    "message": IGNORED_SYNC_SELECTOR,
}]))]
pub struct PolicySelector {
    /// Labels of the Sync's namespace. Namespaces are the tenancy boundary: tenants cannot
    /// label them under plumb's lockdown defaults (a Sync applies as a ServiceAccount of its
    /// own namespace, which has no rights on Namespace objects), so this is how a Policy picks
    /// tenants, and how a platform team exempts one (e.g. `policy.plumb.dev/exempt`
    /// DoesNotExist, with the label set on the Namespace by the platform team).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Labels of the Sync itself. Whoever writes a Sync sets its labels, so this selector lets
    /// tenants opt in to or out of the Policy; it is allowed, and honoured, only together with
    /// `allowTenantOptOut: true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_selector: Option<LabelSelector>,
    /// Consent to `syncSelector`: tenants may then take their Syncs out of this Policy (or put
    /// them in) by their labels. Meant for opt-in Policies, or for labels an admission policy
    /// controls. Without it a `syncSelector` is refused by the API server (and ignored, which
    /// governs more Syncs, if stored before this rule existed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_tenant_opt_out: bool,
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
    /// Namespaces the objects are applied into; any namespace when empty. An object without a
    /// namespace, and a cluster-scoped one, counts as applied into the namespace of the Sync's
    /// own objects: its `targetNamespace`, else its namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
}

impl RuleMatch {
    /// Whether the rule applies to an object of `group`/`kind` judged in `namespace` (see
    /// [`judged_namespace`]).
    pub fn matches(&self, group: &str, kind: &str, namespace: &str) -> bool {
        let resource_ok = self.resources.is_empty()
            || self.resources.iter().any(|r| {
                (r.group == "*" || r.group == group)
                    && (r.kinds.is_empty() || r.kinds.iter().any(|k| k == kind || k == "*"))
            });
        let namespace_ok =
            self.namespaces.is_empty() || self.namespaces.iter().any(|n| n == namespace);
        resource_ok && namespace_ok
    }
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
            allow_tenant_opt_out: true,
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

    fn selector(
        ns: Option<LabelSelector>,
        sync: Option<LabelSelector>,
        opt_out: bool,
    ) -> Option<PolicySelector> {
        Some(PolicySelector {
            namespace_selector: ns,
            sync_selector: sync,
            allow_tenant_opt_out: opt_out,
        })
    }

    fn requirement(key: &str, operator: &str, values: &[&str]) -> LabelSelector {
        LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: key.into(),
                operator: operator.into(),
                values: Some(values.iter().map(|v| (*v).to_owned()).collect()),
            }]),
        }
    }

    fn match_labels(pairs: &[(&str, &str)]) -> LabelSelector {
        LabelSelector {
            match_labels: Some(labels(pairs)),
            match_expressions: None,
        }
    }

    /// Each case: a Policy selector, the labels a tenant put on its own Sync, and whether the
    /// Policy still governs that Sync (its namespace is labelled `tenant=a` by the platform).
    #[test]
    fn tenant_labels_on_a_sync_do_not_escape_a_policy_without_consent() {
        let ns = labels(&[("tenant", "a")]);
        let tenant_ns = || Some(match_labels(&[("tenant", "a")]));
        let cases = [
            (
                "NotIn on a Sync label",
                selector(None, Some(requirement("tier", "NotIn", &["dev"])), false),
                labels(&[("tier", "dev")]),
                true,
            ),
            (
                "DoesNotExist on a Sync label",
                selector(
                    None,
                    Some(requirement("policy.plumb.dev/exempt", "DoesNotExist", &[])),
                    false,
                ),
                labels(&[("policy.plumb.dev/exempt", "true")]),
                true,
            ),
            (
                "matchLabels the tenant removed",
                selector(tenant_ns(), Some(match_labels(&[("tier", "prod")])), false),
                labels(&[]),
                true,
            ),
            (
                "In the tenant left",
                selector(None, Some(requirement("tier", "In", &["prod"])), false),
                labels(&[("tier", "staging")]),
                true,
            ),
            (
                "opt-out consented: NotIn",
                selector(None, Some(requirement("tier", "NotIn", &["dev"])), true),
                labels(&[("tier", "dev")]),
                false,
            ),
            (
                "opt-out consented: matchLabels",
                selector(tenant_ns(), Some(match_labels(&[("tier", "prod")])), true),
                labels(&[]),
                false,
            ),
            (
                "opt-out consented, label kept",
                selector(tenant_ns(), Some(match_labels(&[("tier", "prod")])), true),
                labels(&[("tier", "prod")]),
                true,
            ),
            (
                "namespace selector alone",
                selector(tenant_ns(), None, false),
                labels(&[("anything", "x")]),
                true,
            ),
            (
                "consent without a syncSelector",
                selector(tenant_ns(), None, true),
                labels(&[("anything", "x")]),
                true,
            ),
        ];
        for (what, sel, sync_labels, governed) in cases {
            let p = policy(sel, false);
            assert_eq!(p.governs(&ns, &sync_labels), governed, "{what}");
        }
    }

    /// Namespace labels are the platform's: they select, and exempt, tenants.
    #[test]
    fn namespace_labels_decide_whatever_the_sync_says() {
        let exempt = requirement("policy.plumb.dev/exempt", "DoesNotExist", &[]);
        let p = policy(selector(Some(exempt), None, false), false);
        assert!(p.governs(
            &labels(&[("tenant", "a")]),
            &labels(&[("policy.plumb.dev/exempt", "true")])
        ));
        assert!(!p.governs(
            &labels(&[("policy.plumb.dev/exempt", "true")]),
            &labels(&[])
        ));
        let other = policy(
            selector(Some(match_labels(&[("tenant", "b")])), None, false),
            false,
        );
        assert!(!other.governs(&labels(&[("tenant", "a")]), &labels(&[("tenant", "b")])));
    }

    #[test]
    fn an_unconsented_sync_selector_is_reported() {
        let sync_sel = || Some(match_labels(&[("tier", "prod")]));
        assert_eq!(
            policy(selector(None, sync_sel(), false), false).ignored_sync_selector(),
            Some(IGNORED_SYNC_SELECTOR)
        );
        assert_eq!(
            policy(selector(None, sync_sel(), true), false).ignored_sync_selector(),
            None
        );
        assert_eq!(
            policy(selector(None, None, false), false).ignored_sync_selector(),
            None
        );
        assert_eq!(policy(None, false).ignored_sync_selector(), None);
    }

    /// Each case: the object's namespace, whether its kind is cluster-scoped, where the Sync
    /// places namespace-less objects, and the namespace the rule judges it in.
    #[test]
    fn objects_are_judged_in_the_namespace_they_are_applied_into() {
        let cases = [
            ("namespaced, own namespace", "apps", false, "team-a", "apps"),
            ("namespaced, no namespace", "", false, "team-a", "team-a"),
            ("cluster-scoped", "", true, "team-a", "team-a"),
            (
                "cluster-scoped with a namespace Kubernetes ignores",
                "other",
                true,
                "team-a",
                "team-a",
            ),
        ];
        for (what, ns, cluster, placement, judged) in cases {
            assert_eq!(judged_namespace(ns, cluster, placement), judged, "{what}");
        }
    }

    #[test]
    fn rule_match_selects_by_group_kind_and_namespace() {
        let m = RuleMatch {
            resources: vec![ResourceMatch {
                group: "rbac.authorization.k8s.io".into(),
                kinds: vec!["ClusterRole".into()],
            }],
            namespaces: vec!["team-a".into()],
        };
        assert!(m.matches("rbac.authorization.k8s.io", "ClusterRole", "team-a"));
        assert!(!m.matches("rbac.authorization.k8s.io", "ClusterRole", "team-b"));
        assert!(!m.matches("rbac.authorization.k8s.io", "Role", "team-a"));
        let any_group = RuleMatch {
            resources: vec![ResourceMatch {
                group: "*".into(),
                kinds: vec![],
            }],
            namespaces: vec![],
        };
        assert!(any_group.matches("apps", "Deployment", ""));
        assert!(RuleMatch::default().matches("", "ConfigMap", "x"));
    }
}
