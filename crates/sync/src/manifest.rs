//! The rendered artifact as objects: gzip of multi-document YAML, one object per document, in
//! apply order.

use std::io::Read;

use flate2::read::GzDecoder;
use serde::Deserialize;
use serde_json::Value;

/// Why a rendered artifact could not be read as objects.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The artifact is not valid gzip.
    #[error("rendered artifact is not gzip: {0}")]
    Gzip(#[source] std::io::Error),
    /// A document is not valid YAML.
    #[error("rendered artifact, document {index}: {source}")]
    Yaml {
        /// The position of the document, from 1.
        index: usize,
        /// The parser's error.
        source: serde_yaml::Error,
    },
    /// The YAML crosses a limit every YAML plumb reads is held to (nesting, alias expansion).
    #[error("rendered artifact: {0}")]
    Limit(#[source] plumb_kustomize::Limit),
    /// A document is not a Kubernetes object.
    #[error("rendered artifact, document {index}: {reason}")]
    NotAnObject {
        /// The position of the document, from 1.
        index: usize,
        /// What is missing.
        reason: &'static str,
    },
}

/// One object of a render, as the render controller wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// `apiVersion`, e.g. `apps/v1`.
    pub api_version: String,
    /// `kind`, e.g. `Deployment`.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`, when written.
    pub namespace: Option<String>,
    /// The whole object.
    pub object: Value,
}

impl Manifest {
    /// The API group (empty for the core group).
    pub fn group(&self) -> &str {
        self.api_version
            .rsplit_once('/')
            .map_or("", |(group, _)| group)
    }

    /// The API version without the group, e.g. `v1`.
    pub fn version(&self) -> &str {
        self.api_version
            .rsplit_once('/')
            .map_or(self.api_version.as_str(), |(_, v)| v)
    }

    /// Reads one object from JSON, checking the fields every object must have.
    pub fn from_value(object: Value, index: usize) -> Result<Self, ManifestError> {
        let bad = |reason| ManifestError::NotAnObject { index, reason };
        let text = |ptr: &str| {
            object
                .pointer(ptr)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        if !object.is_object() {
            return Err(bad("not a mapping"));
        }
        Ok(Self {
            api_version: text("/apiVersion").ok_or_else(|| bad("apiVersion is missing"))?,
            kind: text("/kind").ok_or_else(|| bad("kind is missing"))?,
            name: text("/metadata/name").ok_or_else(|| bad("metadata.name is missing"))?,
            namespace: text("/metadata/namespace").filter(|ns| !ns.is_empty()),
            object,
        })
    }
}

/// Reads a gzip-compressed multi-document YAML artifact into its objects, in order.
pub fn parse_gzip(bytes: &[u8]) -> Result<Vec<Manifest>, ManifestError> {
    let mut text = String::new();
    GzDecoder::new(bytes)
        .read_to_string(&mut text)
        .map_err(ManifestError::Gzip)?;
    parse_yaml(&text)
}

/// Reads multi-document YAML into its objects, in order; empty documents are skipped.
pub fn parse_yaml(text: &str) -> Result<Vec<Manifest>, ManifestError> {
    plumb_kustomize::yaml::check_limits(text).map_err(ManifestError::Limit)?;
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let index = i + 1;
        let value =
            Value::deserialize(doc).map_err(|source| ManifestError::Yaml { index, source })?;
        if value.is_null() {
            continue;
        }
        out.push(Manifest::from_value(value, index)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_documents_in_order_and_skips_empty_ones() {
        let text = "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n---\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: a\n";
        let objs = parse_yaml(text).unwrap();
        assert_eq!(objs.len(), 2);
        assert_eq!(objs[0].kind, "Namespace");
        assert_eq!(objs[0].group(), "");
        assert_eq!(objs[0].version(), "v1");
        assert_eq!(objs[1].group(), "apps");
        assert_eq!(objs[1].namespace.as_deref(), Some("a"));
    }

    #[test]
    fn a_document_without_name_is_refused_with_its_position() {
        let err = parse_yaml("apiVersion: v1\nkind: ConfigMap\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "rendered artifact, document 1: metadata.name is missing"
        );
    }

    #[test]
    fn yaml_past_the_shared_limits_is_refused() {
        let deep = format!("{}{}", "[".repeat(150), "]".repeat(150));
        let err = parse_yaml(&deep).unwrap_err();
        assert!(matches!(err, ManifestError::Limit(_)), "{err}");
        assert!(err.to_string().contains("yaml-max-depth"), "{err}");
    }

    #[test]
    fn reads_gzip() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n")
            .unwrap();
        let objs = parse_gzip(&enc.finish().unwrap()).unwrap();
        assert_eq!(objs[0].name, "c");
        assert!(parse_gzip(b"not gzip").is_err());
    }
}
