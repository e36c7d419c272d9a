//! The render controller's errors.

/// Why the controller (not one render) failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[source] kube::Error),
    /// Rendered artifact storage failed.
    #[error("{0}")]
    Storage(#[source] plumb_artifact::StorageError),
    /// Building the HTTP client failed.
    #[error("HTTP client: {0}")]
    Http(#[source] reqwest::Error),
    /// The artifact file server stopped.
    #[error("artifact server: {0}")]
    Serve(#[source] std::io::Error),
    /// The runtime could not run the controller.
    #[error("{0}")]
    Runtime(#[source] plumb_ops::RuntimeError),
    /// A Sync's cached copy could not be read back (the controller wrote it: a bug).
    #[error("Sync {sync}: reading its cached copy: {source}")]
    CachedSync {
        /// The Sync, `namespace/name`.
        sync: String,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },
    /// The artifact token could not be had.
    #[error(transparent)]
    Token(#[from] plumb_artifact::auth::AuthError),
}

/// The `Rendered` condition reason for a render that failed to build: the one place a build
/// error becomes a reason.
pub fn build_reason(e: &crate::build::BuildError) -> &'static str {
    use plumb_api::reason;
    if e.is_limit() {
        return reason::LIMIT_EXCEEDED;
    }
    if let crate::build::BuildError::Chart(c) = e
        && crate::chart::is_refused(c)
    {
        return reason::UNSUPPORTED;
    }
    match e.kustomize() {
        Some(crate::engine::EngineError::Kustomize(k)) if k.is_refused() => reason::UNSUPPORTED,
        Some(crate::engine::EngineError::Kustomize(k)) if k.is_outside_root() => {
            reason::ACCESS_DENIED
        }
        _ => reason::BUILD_FAILED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::{BuildError, RenderOptions, render_with};
    use plumb_api::reason;
    use std::fs;

    fn spec(path: &str) -> plumb_api::SyncSpec {
        serde_json::from_value(serde_json::json!({
            "sourceRef": {"kind": "GitRepository", "name": "repo"},
            "path": path,
        }))
        .unwrap()
    }

    fn render_tree(files: &[(&str, &str)], opts: &RenderOptions) -> BuildError {
        let tmp = tempfile::tempdir().unwrap();
        for (rel, text) in files {
            let p = tmp.path().join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        }
        render_with(tmp.path(), &spec("app"), &[], opts).unwrap_err()
    }

    const CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  k: v\n";

    /// A tree, the options it is rendered with, and the reason its failure must have.
    type Case = (Vec<(&'static str, String)>, RenderOptions, &'static str);

    #[test]
    fn each_kind_of_build_failure_has_its_reason() {
        let kustomization = |text: &str| ("app/kustomization.yaml", text.to_string());
        let opts = RenderOptions::default();
        let cases: Vec<Case> = vec![
            (
                vec![kustomization("resources: [missing.yaml]\n")],
                opts.clone(),
                reason::BUILD_FAILED,
            ),
            (
                vec![kustomization("resources: [../../etc/passwd]\n")],
                opts.clone(),
                reason::ACCESS_DENIED,
            ),
            (
                vec![kustomization("resources: [https://github.com/x/y]\n")],
                opts.clone(),
                reason::UNSUPPORTED,
            ),
            (
                vec![
                    kustomization("resources: [cm.yaml]\n"),
                    (
                        "app/cm.yaml",
                        format!("{}{}", "[".repeat(120), "]".repeat(120)),
                    ),
                ],
                opts.clone(),
                reason::LIMIT_EXCEEDED,
            ),
            (
                vec![
                    kustomization("resources: [cm.yaml]\n"),
                    ("app/cm.yaml", CM.into()),
                ],
                RenderOptions {
                    max_output_bytes: 10,
                    ..opts.clone()
                },
                reason::LIMIT_EXCEEDED,
            ),
        ];
        for (i, (files, opts, want)) in cases.into_iter().enumerate() {
            let files: Vec<(&str, &str)> = files.iter().map(|(p, t)| (*p, t.as_str())).collect();
            let err = render_tree(&files, &opts);
            assert_eq!(build_reason(&err), want, "case {i}: {err}");
            assert!(!err.is_transient(), "case {i}: {err}");
        }
    }

    #[test]
    fn a_render_past_its_deadline_is_a_transient_limit() {
        let opts = RenderOptions {
            timeout: Some(std::time::Duration::ZERO),
            ..RenderOptions::default()
        };
        let err = render_tree(
            &[
                ("app/kustomization.yaml", "resources: [cm.yaml]\n"),
                ("app/cm.yaml", CM),
            ],
            &opts,
        );
        assert_eq!(build_reason(&err), reason::LIMIT_EXCEEDED, "{err}");
        assert!(err.is_transient(), "{err}");
        assert!(err.to_string().contains("render-timeout"), "{err}");
    }
}
