//! The Helm binary plumb renders charts with, for tests: built from its pinned Go module by
//! `crates/helm/go/build.sh` on first use and cached under `~/.cache/plumb`.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::cluster::repo_root;

/// The path of the pinned Helm binary, building it first when the cache lacks it (a cold build
/// takes minutes; later calls are instant). Panics with the build's output when it fails: a
/// test that needs Helm cannot run without it.
pub fn helm_binary() -> PathBuf {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| {
        let script = repo_root().join("crates/helm/go/build.sh");
        let out = Command::new("bash")
            .arg(&script)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "{} failed:\n{}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
    .clone()
}

/// `helm template ARGS` run as a user runs it, with the pinned Helm, an empty environment and a
/// HOME of its own; its documents as JSON, in order (the shape tests compare plumb's renders
/// with). Panics with Helm's message when it fails.
pub fn helm_template(args: &[String]) -> Vec<String> {
    let home = tempfile::tempdir().unwrap_or_else(|e| panic!("a HOME for helm: {e}"));
    let out = Command::new(helm_binary())
        .env_clear()
        .env("HOME", home.path())
        .arg("template")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running helm template: {e}"));
    assert!(
        out.status.success(),
        "helm template {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    yaml_documents_json(&String::from_utf8_lossy(&out.stdout))
}

/// The documents of a multi-document YAML stream as JSON text, in order, empty ones left out.
/// Panics on YAML that does not parse.
pub fn yaml_documents_json(text: &str) -> Vec<String> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| {
            let value = <serde_yaml::Value as serde::Deserialize>::deserialize(d)
                .unwrap_or_else(|e| panic!("YAML document: {e}"));
            serde_yaml::from_value::<serde_json::Value>(value)
                .unwrap_or_else(|e| panic!("YAML document as JSON: {e}"))
        })
        .filter(|v| !v.is_null())
        .map(|v| v.to_string())
        .collect()
}
