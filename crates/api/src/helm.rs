//! `Sync.spec.helm`: how a Helm chart at the Sync's path is rendered.
//!
//! A Sync whose `path` holds a `Chart.yaml` is rendered by the real Helm (`helm template`); this
//! block names the release and the values, merged in this order (later wins): the chart's own
//! `values.yaml`, `valuesFiles`, `valuesFrom`, `values`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::reference::DataKind;

/// How a chart is rendered: release name, values and what `helm template` leaves out.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HelmSpec {
    /// The release name (`.Release.Name`); the Sync's name when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 53))]
    pub release_name: Option<String>,

    /// Values merged over everything else, as a `values.yaml` would hold them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub values: Option<Map<String, Value>>,

    /// Values files in the same source (relative to the source's root, like `path`), merged in
    /// order over the chart's `values.yaml`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values_files: Vec<String>,

    /// Values taken from keys of ConfigMaps and Secrets in the Sync's namespace, merged in order
    /// after `valuesFiles`; a change of one renders the chart again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values_from: Vec<ValuesReference>,

    /// Render the chart's `crds/` directory too (applied first, like every CRD).
    #[serde(default = "default_true", rename = "includeCRDs")]
    pub include_crds: bool,

    /// Leave the chart's test hooks (`helm.sh/hook: test`) out of the render.
    #[serde(default = "default_true")]
    pub skip_tests: bool,
}

impl Default for HelmSpec {
    fn default() -> Self {
        Self {
            release_name: None,
            values: None,
            values_files: Vec::new(),
            values_from: Vec::new(),
            include_crds: true,
            skip_tests: true,
        }
    }
}

/// One key of a ConfigMap or Secret holding values (YAML, as a `values.yaml` file).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValuesReference {
    /// `ConfigMap` or `Secret`.
    pub kind: DataKind,
    /// The object's name, in the Sync's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key holding the values; `values.yaml` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub values_key: Option<String>,
    /// Render without these values when the object or key does not exist (else the render
    /// fails, naming it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

impl ValuesReference {
    /// The key to read: `valuesKey`, or `values.yaml`.
    pub fn key(&self) -> &str {
        self.values_key.as_deref().unwrap_or(DEFAULT_VALUES_KEY)
    }
}

/// The key [`ValuesReference::key`] reads when `valuesKey` is unset.
pub const DEFAULT_VALUES_KEY: &str = "values.yaml";

fn default_true() -> bool {
    true
}

/// An object of any shape, kept as written by the API server.
fn free_form_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_include_crds_and_skip_tests() {
        let spec: HelmSpec = serde_json::from_value(json!({})).unwrap();
        assert_eq!(spec, HelmSpec::default());
        assert!(spec.include_crds && spec.skip_tests);
        let r: ValuesReference =
            serde_json::from_value(json!({"kind": "Secret", "name": "db"})).unwrap();
        assert_eq!(r.key(), "values.yaml");
        assert!(!r.optional);
    }

    #[test]
    fn field_names_are_spelled_as_documented() {
        let spec: HelmSpec =
            serde_json::from_value(json!({"includeCRDs": false, "skipTests": false})).unwrap();
        assert!(!spec.include_crds && !spec.skip_tests);
        let back = serde_json::to_value(&spec).unwrap();
        assert_eq!(back["includeCRDs"], false);
    }

    #[test]
    fn inline_values_keep_their_shape() {
        let spec: HelmSpec = serde_json::from_value(json!({
            "values": {"replicas": 3, "image": {"tag": "1.2"}, "list": [1, "a", null]},
        }))
        .unwrap();
        let values = spec.values.unwrap();
        assert_eq!(values["image"]["tag"], "1.2");
        assert_eq!(values["list"], json!([1, "a", null]));
    }
}
