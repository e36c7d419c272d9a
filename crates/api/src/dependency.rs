//! `Sync.spec.dependsOn`: the Syncs one waits for, and how to tell one of them is ready.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A Sync this one depends on, in this Sync's namespace unless `namespace` is set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DependencyReference {
    /// Name of the Sync depended on.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Its namespace; this Sync's own when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
    /// A CEL expression deciding whether the dependency is ready, in place of the built-in
    /// check (Ready at its latest revision), as Flux's `readyExpr`: `dep` is the dependency
    /// Sync, `self` this one, e.g. `dep.metadata.labels['app/version'] ==
    /// self.metadata.labels['app/version'] && dep.status.conditions.exists(c, c.type ==
    /// 'Ready' && c.status == 'True')`. One that does not compile stalls the Sync
    /// (`InvalidCELExpression`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub ready_expr: Option<String>,
}
