//! `plumb policy check --policy FILE... DIR`: render a directory locally and evaluate Policies
//! over it, so CI can gate a pull request before anything reaches a cluster.
//!
//! Every Policy given is applied (selectors pick Syncs in a cluster; here the caller picks).
//! The directory is only read.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use plumb_api::Policy;
use plumb_api::sync::PolicyFinding;
use serde_json::Value;

use crate::build::{self, BuildError};
use crate::engine;
use crate::policy::{CompileError, compile, evaluate};

/// Why a check could not be made (as opposed to a check that found violations).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// A policy file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A policy file holds something that is not a valid Policy.
    #[error("{path}: not a valid Policy: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A rule does not compile.
    #[error(transparent)]
    Compile(#[from] CompileError),
    /// The directory does not render.
    #[error(transparent)]
    Build(#[from] BuildError),
}

/// What a check found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// How many objects the directory rendered to.
    pub objects: usize,
    /// How many Policies were evaluated.
    pub policies: usize,
    /// Findings of Warn rules.
    pub warnings: Vec<PolicyFinding>,
    /// Findings of Deny rules; the check fails when there is any.
    pub violations: Vec<PolicyFinding>,
}

impl Report {
    /// Whether no Deny rule was broken.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (label, findings) in [("DENY", &self.violations), ("WARN", &self.warnings)] {
            for v in findings.iter() {
                writeln!(
                    f,
                    "{label} {} policy={} rule={}: {}",
                    v.object, v.policy, v.rule, v.message
                )?;
            }
        }
        write!(
            f,
            "{} objects, {} policies: {} violations, {} warnings",
            self.objects,
            self.policies,
            self.violations.len(),
            self.warnings.len()
        )
    }
}

/// Reads every Policy document in `path` (multi-document YAML; other kinds are skipped).
pub fn read_policies(path: &Path) -> Result<Vec<Policy>, CheckError> {
    let text = fs::read_to_string(path).map_err(|source| CheckError::Read {
        path: path.to_owned(),
        source,
    })?;
    let parse_err = |message: String| CheckError::Parse {
        path: path.to_owned(),
        message,
    };
    let docs = engine::parse_documents(&text).map_err(|e| parse_err(e.to_string()))?;
    docs.into_iter()
        .filter(|d| d.get("kind").and_then(Value::as_str) == Some("Policy"))
        .map(|d| serde_json::from_value(d).map_err(|e| parse_err(e.to_string())))
        .collect()
}

/// Renders `dir` (a kustomization, a plain directory of YAML, or a Helm chart released into
/// `placement` as `helm template` names a release) without modifying it. Files may be read
/// from anywhere in the enclosing Git work tree (so overlays reach their bases).
pub fn render_dir(dir: &Path, placement: &str) -> Result<Vec<Value>, CheckError> {
    let io = |source| CheckError::Read {
        path: dir.to_owned(),
        source,
    };
    let dir = dir.canonicalize().map_err(io)?;
    let root = dir
        .ancestors()
        .find(|a| a.join(".git").exists())
        .unwrap_or(&dir)
        .to_path_buf();
    let rel = dir.strip_prefix(&root).unwrap_or(Path::new(""));
    let spec: plumb_api::SyncSpec = serde_json::from_value(serde_json::json!({
        "sourceRef": {"kind": "GitRepository", "name": "local"},
        "path": format!("./{}", rel.display()),
    }))
    .map_err(|e| CheckError::Parse {
        path: dir.clone(),
        message: e.to_string(),
    })?;
    let opts = build::RenderOptions {
        chart: crate::ChartOptions {
            namespace: placement.to_owned(),
            ..crate::ChartOptions::default()
        },
        ..build::RenderOptions::default()
    };
    Ok(build::render_with(&root, &spec, &[], &opts)?)
}

/// Renders `dir` and evaluates every Policy in `policy_files` over it, judging objects without
/// a namespace (and cluster-scoped ones) as applied into `placement`.
pub fn run(policy_files: &[PathBuf], dir: &Path, placement: &str) -> Result<Report, CheckError> {
    let mut compiled = Vec::new();
    for file in policy_files {
        for p in read_policies(file)? {
            compiled.push(Arc::new(compile(&p)?));
        }
    }
    let objects = render_dir(dir, placement)?;
    let report = evaluate(&compiled, &objects, placement);
    Ok(Report {
        objects: objects.len(),
        policies: compiled.len(),
        warnings: report.warnings,
        violations: report.violations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
apiVersion: policy.plumb.dev/v1
kind: Policy
metadata:
  name: guardrails
spec:
  rules:
    - name: no-latest
      match:
        resources: [{group: apps, kinds: [Deployment]}]
      expression: "object.spec.template.spec.containers.all(c, !c.image.endsWith(':latest'))"
      message: images must be pinned
    - name: owner-label
      expression: "has(object.metadata.labels) && 'owner' in object.metadata.labels"
      action: Warn
"#;

    fn deployment(image: &str) -> String {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {{app: web}}\n    spec:\n      containers:\n        - name: web\n          image: {image}\n"
        )
    }

    #[test]
    fn check_reports_deny_and_warn_without_touching_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let pol = tmp.path().join("policy.yaml");
        fs::write(&pol, POLICY).unwrap();
        let dir = tmp.path().join("app");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("web.yaml"), deployment("nginx:latest")).unwrap();

        let report = run(std::slice::from_ref(&pol), &dir, "default").unwrap();
        assert!(!report.passed());
        assert_eq!(report.objects, 1);
        assert_eq!(report.violations[0].rule, "no-latest");
        assert_eq!(report.violations[0].message, "images must be pinned");
        assert_eq!(report.warnings.len(), 1);
        assert!(
            report
                .to_string()
                .contains("DENY _web_apps_Deployment policy=guardrails rule=no-latest")
        );
        assert!(
            !dir.join("kustomization.yaml").exists(),
            "the directory is left as it was"
        );

        fs::write(dir.join("web.yaml"), deployment("nginx:1.27")).unwrap();
        assert!(run(&[pol], &dir, "default").unwrap().passed());
    }

    #[test]
    fn invalid_rules_are_errors_not_findings() {
        let tmp = tempfile::tempdir().unwrap();
        let pol = tmp.path().join("policy.yaml");
        fs::write(
            &pol,
            POLICY.replace("!c.image.endsWith(':latest')", "c.image.("),
        )
        .unwrap();
        let err = run(&[pol], tmp.path(), "default").unwrap_err();
        assert!(
            matches!(err, CheckError::Compile(ref e) if e.rule == "no-latest"),
            "{err}"
        );
    }
}
