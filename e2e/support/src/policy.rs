//! Policies that govern one test namespace only, so tests running at the same time on the shared
//! cluster never fall under each other's rules.

use plumb_api::Policy;
use serde_json::json;

use crate::{Result, TestNamespace};

/// One CEL rule of a test Policy: the objects of one kind must satisfy `expression`.
#[derive(Clone, Copy, Debug)]
pub struct PolicyRule<'a> {
    name: &'a str,
    action: &'a str,
    kind: &'a str,
    expression: &'a str,
    message: &'a str,
}

impl<'a> PolicyRule<'a> {
    /// A rule named `name` that blocks the render when an object of `kind` (`group/Kind`, or
    /// `Kind` in the core group) does not satisfy `expression`, saying `message`.
    pub fn deny(name: &'a str, kind: &'a str, expression: &'a str, message: &'a str) -> Self {
        Self {
            name,
            action: "Deny",
            kind,
            expression,
            message,
        }
    }

    /// As [`PolicyRule::deny`], but the finding is recorded and the render goes on.
    pub fn warn(name: &'a str, kind: &'a str, expression: &'a str, message: &'a str) -> Self {
        Self {
            action: "Warn",
            ..Self::deny(name, kind, expression, message)
        }
    }

    /// A Policy `spec` with this one rule, for [`TestNamespace::apply_policy`].
    pub fn spec(self) -> serde_json::Value {
        let (group, kind) = self.kind.rsplit_once('/').unwrap_or(("", self.kind));
        json!({ "rules": [{
            "name": self.name,
            "match": { "resources": [{ "group": group, "kinds": [kind] }] },
            "expression": self.expression,
            "message": self.message,
            "action": self.action,
        }] })
    }
}

impl TestNamespace {
    /// Applies the cluster-scoped Policy `<namespace>-<suffix>` (unique on the shared cluster)
    /// with `spec`, its `selector` set to govern the Syncs of this namespace only (by the
    /// namespace's `kubernetes.io/metadata.name` label); it is deleted with the namespace.
    /// Returns it as the API server stored it.
    pub async fn apply_policy(&self, suffix: &str, mut spec: serde_json::Value) -> Result<Policy> {
        spec["selector"] = json!({ "namespaceSelector": { "matchLabels": {
            "kubernetes.io/metadata.name": self.name()
        } } });
        self.apply_cluster(json!({
            "apiVersion": "policy.plumb.dev/v1", "kind": "Policy",
            "metadata": { "name": format!("{}-{suffix}", self.name()) },
            "spec": spec,
        }))
        .await
    }
}
