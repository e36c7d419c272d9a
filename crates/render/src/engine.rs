//! The kustomize engine behind a render: `plumb-kustomize`, the native engine, given either a
//! kustomization directory or a kustomization built in memory over a directory.

use std::path::Path;

use plumb_kustomize::{BuildOptions, Kustomization};
use serde_json::Value;

/// Why a kustomize build (or reading YAML the render controller did not build) failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The engine refused or failed the build.
    #[error(transparent)]
    Kustomize(#[from] plumb_kustomize::Error),
    /// The kustomization generated from the Sync's spec is not valid (for instance a patch in
    /// `spec.patches` that is not YAML, or crosses a YAML limit).
    #[error("generated kustomization: {0}")]
    Generated(plumb_kustomize::ParseError),
    /// YAML read back (a rendered artifact, a file given to `plumb policy check`) is not valid
    /// or crosses a YAML limit.
    #[error("parsing YAML: {0}")]
    Yaml(String),
    /// A YAML document read back is not an object.
    #[error("expected an object, found {0}")]
    NotAnObject(String),
}

impl EngineError {
    /// The kustomize limit crossed, when that is why.
    pub fn limit(&self) -> Option<&plumb_kustomize::Limit> {
        match self {
            EngineError::Kustomize(e) => e.limit(),
            EngineError::Generated(plumb_kustomize::ParseError::Yaml(y)) => y.limit(),
            _ => None,
        }
    }
}

/// Builds the kustomization in `dir`, reading nothing outside `root`; objects in apply order.
pub fn build(root: &Path, dir: &Path, opts: &BuildOptions) -> Result<Vec<Value>, EngineError> {
    Ok(plumb_kustomize::build(root, dir, opts)?
        .into_iter()
        .map(|r| r.into_value())
        .collect())
}

/// Builds `kustomization` (given as data) as if its file were in `dir`, reading nothing outside
/// `root`; objects in apply order.
pub fn build_generated(
    root: &Path,
    dir: &Path,
    kustomization: &Value,
    opts: &BuildOptions,
) -> Result<Vec<Value>, EngineError> {
    // JSON is YAML: the engine's own reader gives the kustomization the same meaning as a file,
    // and holds it (with the Sync's patches in it) to the same YAML limits.
    let text = kustomization.to_string();
    let k = Kustomization::from_yaml(&text).map_err(EngineError::Generated)?;
    Ok(plumb_kustomize::build_kustomization(root, dir, &k, opts)?
        .into_iter()
        .map(|r| r.into_value())
        .collect())
}

/// Parses a multi-document YAML stream into objects, skipping empty documents. The text is held
/// to the engine's YAML limits (nesting depth, alias expansion) first.
pub fn parse_documents(text: &str) -> Result<Vec<Value>, EngineError> {
    plumb_kustomize::yaml::check_limits(text).map_err(|e| EngineError::Yaml(e.to_string()))?;
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let value: Value =
            serde::Deserialize::deserialize(doc).map_err(|e| EngineError::Yaml(e.to_string()))?;
        match value {
            Value::Null => {}
            Value::Object(_) => out.push(value),
            other => {
                return Err(EngineError::NotAnObject(
                    serde_json::to_string(&other).unwrap_or_default(),
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_read_back_is_held_to_the_engine_limits() {
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..6 {
            let prev = if i == 0 {
                "a".to_string()
            } else {
                format!("l{}", i - 1)
            };
            bomb.push_str(&format!(
                "l{i}: &l{i} [{}]\n",
                vec![format!("*{prev}"); 10].join(", ")
            ));
        }
        let err = parse_documents(&bomb).unwrap_err();
        assert!(err.to_string().contains("yaml-max-alias-nodes"), "{err}");
        let deep = format!("{}{}", "[".repeat(150), "]".repeat(150));
        let err = parse_documents(&deep).unwrap_err();
        assert!(err.to_string().contains("yaml-max-depth"), "{err}");
        assert_eq!(
            parse_documents("kind: A\n---\n").unwrap(),
            vec![serde_json::json!({"kind": "A"})]
        );
    }
}
