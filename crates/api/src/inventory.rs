//! [`ObjectId`]: how an applied object is named in a Sync's inventory.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Why an inventory id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("inventory id {0:?}: expected `<namespace>_<name>_<group>_<kind>`")]
pub struct ParseObjectIdError(String);

/// The identity of one object a Sync applied: namespace (empty when cluster-scoped), name, API
/// group (empty for the core group) and kind. The version is not part of the identity.
///
/// Written as `<namespace>_<name>_<group>_<kind>`, with each `:` of a name (as in RBAC names such
/// as `system:viewer`) written `__`, so that ids stay parseable: no other part may hold `_`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId {
    /// Namespace of the object; empty for cluster-scoped objects.
    pub namespace: String,
    /// Name of the object.
    pub name: String,
    /// API group; empty for the core group.
    pub group: String,
    /// Kind of the object.
    pub kind: String,
}

impl ObjectId {
    /// The id of an object of `group`/`kind` named `name` in `namespace` (empty: cluster-scoped).
    pub fn new(namespace: &str, name: &str, group: &str, kind: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            group: group.to_owned(),
            kind: kind.to_owned(),
        }
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}_{}_{}_{}",
            self.namespace,
            self.name.replace(':', "__"),
            self.group,
            self.kind
        )
    }
}

impl FromStr for ObjectId {
    type Err = ParseObjectIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseObjectIdError(s.to_owned());
        let (namespace, rest) = s.split_once('_').ok_or_else(err)?;
        let (rest, kind) = rest.rsplit_once('_').ok_or_else(err)?;
        let (name, group) = rest.rsplit_once('_').ok_or_else(err)?;
        if name.is_empty() || kind.is_empty() || namespace.contains(':') {
            return Err(err());
        }
        Ok(Self::new(namespace, &name.replace("__", ":"), group, kind))
    }
}

/// One entry of a Sync's inventory: an applied object and the API version it was applied at.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct InventoryEntry {
    /// The object's id, `<namespace>_<name>_<group>_<kind>`.
    pub id: String,
    /// The API version the object was applied at, e.g. `v1`.
    pub v: String,
}

impl InventoryEntry {
    /// The entry for `id` applied at `version`.
    pub fn new(id: &ObjectId, version: &str) -> Self {
        Self {
            id: id.to_string(),
            v: version.to_owned(),
        }
    }

    /// The parsed object id of this entry.
    pub fn object_id(&self) -> Result<ObjectId, ParseObjectIdError> {
        self.id.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_flux_for_namespaced_core_and_cluster_scoped_objects() {
        assert_eq!(
            ObjectId::new("default", "web", "", "Service").to_string(),
            "default_web__Service"
        );
        assert_eq!(
            ObjectId::new(
                "",
                "plumb",
                "apiextensions.k8s.io",
                "CustomResourceDefinition"
            )
            .to_string(),
            "_plumb_apiextensions.k8s.io_CustomResourceDefinition"
        );
        assert_eq!(
            ObjectId::new("apps", "web", "apps", "Deployment").to_string(),
            "apps_web_apps_Deployment"
        );
    }

    #[test]
    fn colons_in_names_round_trip() {
        for id in [
            ObjectId::new(
                "",
                "system:viewer",
                "rbac.authorization.k8s.io",
                "ClusterRole",
            ),
            ObjectId::new("ns", "a:b:c", "", "ConfigMap"),
            ObjectId::new("default", "web", "", "Service"),
            ObjectId::new("", "team-a", "", "Namespace"),
        ] {
            let text = id.to_string();
            assert_eq!(text.parse::<ObjectId>().unwrap(), id, "{text}");
        }
    }

    #[test]
    fn rejects_ids_without_enough_parts() {
        for bad in ["", "a", "a_b", "ns__Kind", "ns_name_group_"] {
            assert!(bad.parse::<ObjectId>().is_err(), "{bad:?} parsed");
        }
    }
}
