//! The chart engine: `helm template` of a local chart directory, with the arguments a release
//! needs and nothing that could reach a network or a cluster.

use std::ffi::OsString;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cache::{ChartCache, chart_digest};
use crate::process::{self, ProcessError, ProcessLimits};

/// The environment variable naming the Helm binary (else `helm` on `PATH`).
pub const HELM_BINARY_ENV: &str = "PLUMB_HELM";

/// The cluster as `.Capabilities` shows it to a chart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Capabilities {
    /// `--kube-version`: the cluster's version (`v1.35.8`); Helm's built-in default when unset.
    pub kube_version: Option<String>,
    /// `--api-versions`: `group/version` and `group/version/Kind` the cluster serves, sorted.
    pub api_versions: Vec<String>,
}

/// One `helm template` invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateRequest {
    /// The chart directory (holding `Chart.yaml`).
    pub chart: PathBuf,
    /// `.Release.Name`; empty, Helm is asked to generate one (`--generate-name`, which
    /// `helm template` answers with `release-name` or the name template), as kustomize asks.
    pub release_name: String,
    /// `--name-template`.
    pub name_template: Option<String>,
    /// `.Release.Namespace`.
    pub namespace: String,
    /// Values files, merged in order over the chart's `values.yaml` (`-f`).
    pub values_files: Vec<PathBuf>,
    /// Values documents (YAML) merged in order after `values_files`, as if each were a file.
    pub values: Vec<String>,
    /// `--set` assignments, applied last (the CLI's).
    pub set: Vec<String>,
    /// `--set-string` assignments, applied last (the CLI's).
    pub set_string: Vec<String>,
    /// `.Capabilities`.
    pub capabilities: Capabilities,
    /// `--include-crds`.
    pub include_crds: bool,
    /// `--skip-tests`.
    pub skip_tests: bool,
    /// `--no-hooks`.
    pub no_hooks: bool,
}

impl TemplateRequest {
    /// A request with `helm template`'s own defaults: no values, no CRDs, tests included.
    pub fn new(chart: PathBuf, release_name: String, namespace: String) -> Self {
        Self {
            chart,
            release_name,
            name_template: None,
            namespace,
            values_files: Vec::new(),
            values: Vec::new(),
            set: Vec::new(),
            set_string: Vec::new(),
            capabilities: Capabilities::default(),
            include_crds: false,
            skip_tests: false,
            no_hooks: false,
        }
    }

    /// The command line after `helm`, with `values` given as the files in `values_dir`.
    fn args(&self, values_paths: &[PathBuf]) -> Vec<OsString> {
        let name: OsString = if self.release_name.is_empty() {
            "--generate-name".into()
        } else {
            self.release_name.clone().into()
        };
        let mut args: Vec<OsString> = vec![
            "template".into(),
            name,
            self.chart.clone().into(),
            "--namespace".into(),
            self.namespace.clone().into(),
        ];
        if let Some(t) = &self.name_template {
            args.push("--name-template".into());
            args.push(t.into());
        }
        if let Some(v) = &self.capabilities.kube_version {
            args.push("--kube-version".into());
            args.push(v.into());
        }
        for v in &self.capabilities.api_versions {
            args.push("--api-versions".into());
            args.push(v.into());
        }
        for f in self.values_files.iter().chain(values_paths) {
            args.push("--values".into());
            args.push(f.clone().into());
        }
        for s in &self.set {
            args.push("--set".into());
            args.push(s.into());
        }
        for s in &self.set_string {
            args.push("--set-string".into());
            args.push(s.into());
        }
        if self.include_crds {
            args.push("--include-crds".into());
        }
        if self.skip_tests {
            args.push("--skip-tests".into());
        }
        if self.no_hooks {
            args.push("--no-hooks".into());
        }
        args
    }
}

/// Why a chart did not render.
#[derive(Debug, thiserror::Error)]
pub enum HelmError {
    /// No Helm binary is configured or found.
    #[error(
        "no Helm binary: set {HELM_BINARY_ENV} or --helm-binary, or put `helm` on PATH (crates/helm/go/build.sh builds the pinned one)"
    )]
    NotFound,
    /// The chart asks for a dependency that is not vendored under `charts/`.
    #[error(
        "chart {chart}: dependency {dependency} is not vendored under charts/ and plumb downloads nothing; run `helm dependency build` and commit charts/"
    )]
    MissingDependency {
        /// The chart's name.
        chart: String,
        /// The dependency, with its repository when it names one.
        dependency: String,
    },
    /// Reading the chart or writing the values failed.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Helm refused the chart or ran out of a limit; the message is Helm's own.
    #[error("chart {chart}: {source}")]
    Helm {
        /// The chart's name.
        chart: String,
        /// Helm's failure.
        source: ProcessError,
    },
    /// Helm wrote something that is not text.
    #[error("chart {chart}: output is not UTF-8")]
    NotUtf8 {
        /// The chart's name.
        chart: String,
    },
}

impl HelmError {
    /// Whether a limit of the render (deadline, memory, output size) was crossed.
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            HelmError::Helm {
                source: ProcessError::Timeout(_)
                    | ProcessError::OutOfMemory(_)
                    | ProcessError::OutputTooLarge(_),
                ..
            }
        )
    }

    /// Whether trying again may succeed without a change of the chart (the binary could not
    /// start, a deadline on a busy machine, I/O).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            HelmError::Io { .. }
                | HelmError::NotFound
                | HelmError::Helm {
                    source: ProcessError::Spawn { .. }
                        | ProcessError::Timeout(_)
                        | ProcessError::Io(_),
                    ..
                }
        )
    }
}

/// The real Helm, run as `helm template` with a cache of its output in front.
#[derive(Debug, Clone)]
pub struct Helm {
    binary: PathBuf,
    cache: Arc<ChartCache>,
}

impl Helm {
    /// Helm at `binary`, with a render cache of `cache_bytes` of output.
    pub fn new(binary: PathBuf, cache_bytes: usize) -> Self {
        Self {
            binary,
            cache: Arc::new(ChartCache::new(cache_bytes)),
        }
    }

    /// The binary named by [`HELM_BINARY_ENV`], else `helm` on `PATH`.
    pub fn locate() -> Result<PathBuf, HelmError> {
        if let Some(b) = std::env::var_os(HELM_BINARY_ENV).filter(|b| !b.is_empty()) {
            return Ok(PathBuf::from(b));
        }
        let path = std::env::var_os("PATH").ok_or(HelmError::NotFound)?;
        std::env::split_paths(&path)
            .map(|d| d.join("helm"))
            .find(|p| p.is_file())
            .ok_or(HelmError::NotFound)
    }

    /// The binary this engine runs.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// How many renders were answered from the cache, and how many ran Helm.
    pub fn cache_stats(&self) -> (u64, u64) {
        self.cache.stats()
    }

    /// Renders the chart as `helm template` does, returning its standard output: documents
    /// separated by `---`, each after a `# Source:` comment, in Helm's order (CRDs, manifests
    /// by kind, hooks). The same chart content with the same request is rendered once.
    pub fn template(
        &self,
        req: &TemplateRequest,
        limits: &ProcessLimits,
    ) -> Result<Arc<str>, HelmError> {
        let chart_name = chart_name(&req.chart);
        check_dependencies(&req.chart, &chart_name)?;
        let key = cache_key(req)?;
        if let Some(hit) = self.cache.get(&key) {
            return Ok(hit);
        }
        let work = tempfile::tempdir().map_err(|source| HelmError::Io {
            path: std::env::temp_dir(),
            source,
        })?;
        let mut values_paths = Vec::new();
        for (i, doc) in req.values.iter().enumerate() {
            let path = work.path().join(format!("values-{i}.yaml"));
            write_private(&path, doc.as_bytes())?;
            values_paths.push(path);
        }
        let out = process::run(&self.binary, &req.args(&values_paths), work.path(), limits)
            .map_err(|source| HelmError::Helm {
                chart: chart_name.clone(),
                source,
            })?;
        let text: Arc<str> = String::from_utf8(out)
            .map_err(|_| HelmError::NotUtf8 { chart: chart_name })?
            .into();
        self.cache.insert(key, text.clone());
        Ok(text)
    }
}

/// Writes a values file only this user can read (it may hold a Secret's values).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), HelmError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| HelmError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)
}

/// The key of a render: the chart's content, the values files' content, and every argument.
fn cache_key(req: &TemplateRequest) -> Result<String, HelmError> {
    use sha2::{Digest as _, Sha256};
    let mut h = Sha256::new();
    h.update(chart_digest(&req.chart)?.as_bytes());
    for f in &req.values_files {
        let bytes = fs::read(f).map_err(|source| HelmError::Io {
            path: f.clone(),
            source,
        })?;
        h.update(Sha256::digest(&bytes));
    }
    // Everything else that shapes the output, in an unambiguous encoding.
    let rest = serde_json::json!({
        "release": req.release_name,
        "nameTemplate": req.name_template,
        "noHooks": req.no_hooks,
        "namespace": req.namespace,
        "values": req.values,
        "set": req.set,
        "setString": req.set_string,
        "kubeVersion": req.capabilities.kube_version,
        "apiVersions": req.capabilities.api_versions,
        "includeCrds": req.include_crds,
        "skipTests": req.skip_tests,
    });
    h.update(rest.to_string().as_bytes());
    Ok(hex::encode(h.finalize()))
}

/// The chart's `name` from its `Chart.yaml`, else its directory's name.
pub fn chart_name(dir: &Path) -> String {
    read_chart_yaml(dir)
        .ok()
        .and_then(|c| c.get("name").and_then(|n| n.as_str()).map(str::to_owned))
        .unwrap_or_else(|| {
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
}

fn read_chart_yaml(dir: &Path) -> Result<serde_json::Value, HelmError> {
    let path = dir.join("Chart.yaml");
    let text = fs::read_to_string(&path).map_err(|source| HelmError::Io {
        path: path.clone(),
        source,
    })?;
    serde_yaml::from_str(&text).map_err(|e| HelmError::Io {
        path,
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })
}

/// Refuses a chart whose `Chart.yaml` lists a dependency
/// that `charts/` does not hold, naming it: Helm would need to download it.
fn check_dependencies(dir: &Path, name: &str) -> Result<(), HelmError> {
    let Ok(chart) = read_chart_yaml(dir) else {
        // Helm reports a broken Chart.yaml in its own words.
        return Ok(());
    };
    let deps = chart
        .get("dependencies")
        .and_then(|d| d.as_array())
        .cloned()
        .unwrap_or_default();
    if deps.is_empty() {
        return Ok(());
    }
    let vendored = vendored_charts(&dir.join("charts"));
    for dep in deps {
        let Some(dep_name) = dep.get("name").and_then(|n| n.as_str()) else {
            continue;
        };
        if !vendored.iter().any(|v| v == dep_name) {
            let repo = dep
                .get("repository")
                .and_then(|r| r.as_str())
                .filter(|r| !r.is_empty());
            let version = dep.get("version").and_then(|v| v.as_str());
            let mut dependency = dep_name.to_owned();
            if let Some(v) = version {
                dependency.push_str(&format!(" {v}"));
            }
            if let Some(r) = repo {
                dependency.push_str(&format!(" from {r}"));
            }
            return Err(HelmError::MissingDependency {
                chart: name.to_owned(),
                dependency,
            });
        }
    }
    Ok(())
}

/// The names of the charts under `charts/`: unpacked directories by their `Chart.yaml` name,
/// archives by file name (`NAME-VERSION.tgz`, any name prefix accepted, as Helm reads them).
fn vendored_charts(charts: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(charts) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let path = e.path();
        let file = e.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if let Ok(c) = read_chart_yaml(&path)
                && let Some(n) = c.get("name").and_then(|n| n.as_str())
            {
                out.push(n.to_owned());
            }
        } else if let Some(stem) = file.strip_suffix(".tgz") {
            // `redis-18.1.0.tgz` holds `redis`; names may contain dashes themselves.
            let mut parts: Vec<&str> = stem.split('-').collect();
            while parts.len() > 1 {
                parts.pop();
                out.push(parts.join("-"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    #[test]
    fn a_dependency_not_under_charts_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        write(
            dir,
            "Chart.yaml",
            "apiVersion: v2\nname: app\nversion: 1.0.0\ndependencies:\n  - name: common\n    version: 1.x\n    repository: file://../common\n  - name: redis\n    version: 18.1.0\n    repository: https://charts.example.com\n",
        );
        write(
            dir,
            "charts/common/Chart.yaml",
            "apiVersion: v2\nname: common\nversion: 1.2.0\n",
        );
        let err = check_dependencies(dir, "app").unwrap_err();
        assert!(
            err.to_string()
                .contains("dependency redis 18.1.0 from https://charts.example.com"),
            "{err}"
        );
        write(dir, "charts/redis-18.1.0.tgz", "");
        check_dependencies(dir, "app").unwrap();
    }

    #[test]
    fn the_command_line_orders_values_and_names_capabilities() {
        let mut req = TemplateRequest::new("/c".into(), "rel".into(), "ns".into());
        req.values_files = vec!["/src/a.yaml".into()];
        req.capabilities = Capabilities {
            kube_version: Some("v1.35.8".into()),
            api_versions: vec!["apps/v1".into(), "apps/v1/Deployment".into()],
        };
        req.include_crds = true;
        req.skip_tests = true;
        let args: Vec<String> = req
            .args(&["/tmp/values-0.yaml".into()])
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert_eq!(
            args.join(" "),
            "template rel /c --namespace ns --kube-version v1.35.8 --api-versions apps/v1 \
             --api-versions apps/v1/Deployment --values /src/a.yaml --values /tmp/values-0.yaml \
             --include-crds --skip-tests"
        );
    }
}
