//! The kustomize engine behind a render: one function, a kustomization directory in, objects
//! (in kustomize's legacy apply order) out.
//!
//! Until `plumb-kustomize` exposes its build API this runs the `kustomize` binary (or
//! `kubectl kustomize`), with plugins, exec functions and helm left disabled. Swapping in the
//! native engine changes only this file.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Why a kustomize build failed: the engine's own message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EngineError(pub String);

/// Builds the kustomization in `dir` and returns its objects in apply order.
pub fn build(dir: &Path) -> Result<Vec<Value>, EngineError> {
    let output = command(dir)
        .output()
        .map_err(|e| EngineError(format!("running kustomize: {e}")))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(EngineError(stderr.trim().replace('\n', " ")));
    }
    let text = String::from_utf8(output.stdout)
        .map_err(|e| EngineError(format!("kustomize output is not UTF-8: {e}")))?;
    parse_documents(&text)
}

fn command(dir: &Path) -> Command {
    let standalone = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|p| p.join("kustomize").is_file())
    });
    let mut cmd = if standalone {
        let mut c = Command::new("kustomize");
        c.arg("build");
        c
    } else {
        let mut c = Command::new("kubectl");
        c.arg("kustomize");
        c
    };
    cmd.arg("--load-restrictor=LoadRestrictionsRootOnly")
        .arg(dir)
        // Remote bases are refused: git gets no protocol and no terminal to ask for credentials.
        .env("GIT_ALLOW_PROTOCOL", "none")
        .env("GIT_TERMINAL_PROMPT", "0");
    cmd
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
