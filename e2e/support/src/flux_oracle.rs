//! Flux's own post-build substitution, for tests that compare plumb with it: `flux-oracle`
//! (fluxcd/pkg/envsubst and sigs.k8s.io/yaml, built from their Go modules by
//! `e2e/flux-oracle/build.sh` on first use and cached under `~/.cache/plumb`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::cluster::repo_root;

/// The path of the oracle, building it first when the cache lacks it. Panics with the build's
/// output when it fails: a test that compares with Flux cannot run without it.
pub fn flux_oracle() -> PathBuf {
    static ORACLE: OnceLock<PathBuf> = OnceLock::new();
    ORACLE
        .get_or_init(|| {
            let script = repo_root().join("e2e/flux-oracle/build.sh");
            let out = Command::new("bash")
                .arg(&script)
                .stderr(Stdio::inherit())
                .output()
                .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
            assert!(
                out.status.success(),
                "{} failed (its output is above)",
                script.display()
            );
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        })
        .clone()
}

/// What Flux's kustomize-controller makes of each of `objects` when it substitutes `vars`
/// (`SubstituteVariables`, strict mode): the substituted object, or Flux's error text.
/// Panics when the oracle itself cannot run.
pub fn flux_substitute(
    objects: &[Value],
    vars: &BTreeMap<String, String>,
) -> Vec<Result<Value, String>> {
    let mut child = Command::new(flux_oracle())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting flux-oracle: {e}"));
    let request = json!({"vars": vars, "objects": objects});
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(request.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("writing to flux-oracle: {e}"));
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for flux-oracle: {e}"));
    assert!(out.status.success(), "flux-oracle failed: {}", out.status);
    let results: Vec<Value> = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("flux-oracle printed no JSON array: {e}"));
    results
        .into_iter()
        .map(|r| match r.get("error").and_then(Value::as_str) {
            Some(e) => Err(e.to_owned()),
            None => Ok(r["object"].clone()),
        })
        .collect()
}
