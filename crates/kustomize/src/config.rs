//! Transformer configuration: which fields of which kinds the built-in transformers touch.
//! The defaults mirror kustomize's built-in configuration; `configurations:` files add to them.

use crate::error::ConflictError;
use crate::kustomization::{FieldSpec, ParseError};
use crate::resource::Gvk;
use serde::Deserialize;
use serde_json::Value;
use std::sync::OnceLock;

/// Kinds whose names are referenced from fields of other kinds.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NameBackRef {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub field_specs: Vec<FieldSpec>,
}

/// Field specs per transformer.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TransformerConfig {
    #[serde(default)]
    pub name_prefix: Vec<FieldSpec>,
    #[serde(default)]
    pub name_suffix: Vec<FieldSpec>,
    #[serde(default)]
    pub name_reference: Vec<NameBackRef>,
    #[serde(default)]
    pub common_labels: Vec<FieldSpec>,
    #[serde(default)]
    pub labels: Vec<FieldSpec>,
    #[serde(default)]
    pub template_labels: Vec<FieldSpec>,
    #[serde(default)]
    pub common_annotations: Vec<FieldSpec>,
    #[serde(default)]
    pub namespace: Vec<FieldSpec>,
    #[serde(default)]
    pub var_reference: Vec<FieldSpec>,
    #[serde(default)]
    pub images: Vec<FieldSpec>,
    #[serde(default)]
    pub replicas: Vec<FieldSpec>,
}

/// A built-in field spec: group, version, kind, path, create.
type SpecRow = (&'static str, &'static str, &'static str, &'static str, bool);
/// A built-in name back-reference: group, version, kind and the fields referring to it.
type BackRefRow = (&'static str, &'static str, &'static str, &'static [SpecRow]);

include!(concat!(env!("OUT_DIR"), "/default_config.rs"));

fn specs(rows: &[SpecRow]) -> Vec<FieldSpec> {
    rows.iter()
        .map(|&(group, version, kind, path, create)| FieldSpec {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            path: path.into(),
            create,
            skip: false,
        })
        .collect()
}

impl TransformerConfig {
    /// kustomize's built-in configuration.
    #[cfg(test)]
    pub(crate) fn builtin() -> &'static TransformerConfig {
        TransformerConfig::builtin_arc()
    }

    /// kustomize's built-in configuration, shared: made once per process from the tables
    /// `build.rs` wrote from `default_config.yaml` (reading the YAML at run time was most of the
    /// cost of a small build).
    pub(crate) fn builtin_shared() -> std::sync::Arc<TransformerConfig> {
        TransformerConfig::builtin_arc().clone()
    }

    fn builtin_arc() -> &'static std::sync::Arc<TransformerConfig> {
        static DEFAULT: OnceLock<std::sync::Arc<TransformerConfig>> = OnceLock::new();
        DEFAULT.get_or_init(|| std::sync::Arc::new(TransformerConfig::from_tables()))
    }

    fn from_tables() -> TransformerConfig {
        TransformerConfig {
            name_prefix: specs(NAME_PREFIX),
            name_suffix: specs(NAME_SUFFIX),
            name_reference: NAME_REFERENCE
                .iter()
                .map(|&(group, version, kind, fields)| NameBackRef {
                    group: group.into(),
                    version: version.into(),
                    kind: kind.into(),
                    field_specs: specs(fields),
                })
                .collect(),
            common_labels: specs(COMMON_LABELS),
            labels: specs(LABELS),
            template_labels: specs(TEMPLATE_LABELS),
            common_annotations: specs(COMMON_ANNOTATIONS),
            namespace: specs(NAMESPACE),
            var_reference: specs(VAR_REFERENCE),
            images: specs(IMAGES),
            replicas: specs(REPLICAS),
        }
    }

    /// Parse a `configurations:` file, by Go's decoding rules as kustomize reads it.
    pub(crate) fn from_yaml(text: &str) -> Result<TransformerConfig, ParseError> {
        let docs = crate::yaml::parse_documents(text, crate::yaml::ScalarMode::Go)?;
        let mut doc = docs.into_iter().next().unwrap_or(Value::Null);
        if doc.is_null() {
            return Ok(TransformerConfig::default());
        }
        crate::godecode::normalize(&mut doc, &crate::godecode::TRANSFORMER_CONFIG)?;
        serde_json::from_value(doc).map_err(|e| ParseError::Field(e.to_string()))
    }

    /// Add another configuration's specs, refusing specs that contradict existing ones.
    pub(crate) fn merge(&mut self, other: &TransformerConfig) -> Result<(), ConflictError> {
        merge_specs(&mut self.name_prefix, &other.name_prefix)?;
        merge_specs(&mut self.name_suffix, &other.name_suffix)?;
        merge_specs(&mut self.common_labels, &other.common_labels)?;
        merge_specs(&mut self.labels, &other.labels)?;
        merge_specs(&mut self.template_labels, &other.template_labels)?;
        merge_specs(&mut self.common_annotations, &other.common_annotations)?;
        merge_specs(&mut self.namespace, &other.namespace)?;
        merge_specs(&mut self.var_reference, &other.var_reference)?;
        merge_specs(&mut self.images, &other.images)?;
        merge_specs(&mut self.replicas, &other.replicas)?;
        for br in &other.name_reference {
            match self
                .name_reference
                .iter_mut()
                .find(|b| b.group == br.group && b.version == br.version && b.kind == br.kind)
            {
                Some(existing) => merge_specs(&mut existing.field_specs, &br.field_specs)?,
                None => self.name_reference.push(br.clone()),
            }
        }
        Ok(())
    }
}

fn merge_specs(into: &mut Vec<FieldSpec>, from: &[FieldSpec]) -> Result<(), ConflictError> {
    for fs in from {
        match into.iter().find(|e| {
            e.group == fs.group && e.version == fs.version && e.kind == fs.kind && e.path == fs.path
        }) {
            Some(e) if e.create != fs.create => {
                return Err(ConflictError::FieldSpecs {
                    path: fs.path.clone(),
                    kind: fs.kind.clone(),
                });
            }
            Some(_) => {}
            None => into.push(fs.clone()),
        }
    }
    Ok(())
}

impl FieldSpec {
    /// Does this spec apply to an object of this GVK?
    pub(crate) fn applies_to(&self, gvk: &Gvk) -> bool {
        gvk.is_selected_by(&self.group, &self.version, &self.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_table_matches_yaml() {
        let parsed = match TransformerConfig::from_yaml(include_str!("default_config.yaml")) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let c = TransformerConfig::builtin();
        assert_eq!(c, &parsed);
        assert!(c.name_reference.iter().any(|b| b.kind == "ConfigMap"));
        assert_eq!(c.name_prefix.len(), 1);
        assert!(c.common_labels.iter().any(|f| f.path == "metadata/labels"));
    }
}
