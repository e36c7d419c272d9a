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
