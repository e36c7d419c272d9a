//! The kustomize engine behind a render: `plumb-kustomize`, the native engine, given either a
//! kustomization directory or a kustomization built in memory over a directory.

use std::path::Path;

use plumb_kustomize::{BuildOptions, Kustomization};
use serde_json::Value;

/// Why a kustomize build failed: the engine's own message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EngineError(pub String);

/// Builds the kustomization in `dir`, reading nothing outside `root`; objects in apply order.
pub fn build(root: &Path, dir: &Path) -> Result<Vec<Value>, EngineError> {
    plumb_kustomize::build(root, dir, &BuildOptions::default())
        .map(|res| res.into_iter().map(|r| r.into_value()).collect())
        .map_err(|e| EngineError(e.to_string()))
}

/// Builds `kustomization` (given as data) as if its file were in `dir`, reading nothing outside
/// `root`; objects in apply order.
pub fn build_generated(
    root: &Path,
    dir: &Path,
    kustomization: &Value,
) -> Result<Vec<Value>, EngineError> {
    // JSON is YAML: the engine's own reader gives the kustomization the same meaning as a file.
    let text = serde_json::to_string(kustomization).map_err(|e| EngineError(e.to_string()))?;
    let k = Kustomization::from_yaml(&text)
        .map_err(|e| EngineError(format!("generated kustomization: {e}")))?;
    plumb_kustomize::build_kustomization(root, dir, &k, &BuildOptions::default())
        .map(|res| res.into_iter().map(|r| r.into_value()).collect())
        .map_err(|e| EngineError(e.to_string()))
}

/// Parses a multi-document YAML stream into objects, skipping empty documents.
pub fn parse_documents(text: &str) -> Result<Vec<Value>, EngineError> {
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let value: Value = serde::Deserialize::deserialize(doc)
            .map_err(|e| EngineError(format!("parsing YAML: {e}")))?;
        match value {
            Value::Null => {}
            Value::Object(_) => out.push(value),
            other => {
                return Err(EngineError(format!(
                    "expected an object, found {}",
                    serde_json::to_string(&other).unwrap_or_default()
                )));
            }
        }
    }
    Ok(out)
}
