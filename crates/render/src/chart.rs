//! Rendering a Helm chart: a Sync whose path holds a `Chart.yaml` is rendered by the real Helm
//! (`plumb-helm`), with the release and values of `spec.helm`; the Sync's `images` and
//! `patches` then apply to the chart's objects through kustomize, as to any other render.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use plumb_api::SyncSpec;
use plumb_helm::{Capabilities, Helm, HelmError, ProcessLimits, TemplateRequest};
use serde_json::{Value, json};

use crate::build::{BuildError, resolve_file};
use crate::chart_inputs::ChartInputs;
use crate::engine;

/// What rendering a chart needs beyond the Sync's spec.
#[derive(Debug, Clone)]
pub struct ChartOptions {
    /// The engine; found by [`Helm::locate`] when unset.
    pub helm: Option<Helm>,
    /// The release name when `spec.helm.releaseName` is unset: the Sync's name (`plumb build`
    /// and `helm template` use `release-name`).
    pub release_name: String,
    /// `.Release.Namespace` when the Sync has no `targetNamespace`: the Sync's namespace.
    pub namespace: String,
    /// `.Capabilities`: the live cluster's, from discovery.
    pub capabilities: Capabilities,
    /// The documents `spec.helm.valuesFrom` names, read by the caller, in order.
    pub values_from: Vec<String>,
    /// The most memory the Helm process may use (limit `chart-max-memory`).
    pub max_memory: u64,
    /// Set once a kustomization's `helmCharts` entry was inflated by this render (so its
    /// verdict depends on the capabilities and is cached with them).
    pub inflated: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// The default of [`ChartOptions::max_memory`]: 256 MiB of heap.
pub const DEFAULT_CHART_MAX_MEMORY: u64 = 256 << 20;

/// How long a chart render may take when the render has no deadline of its own.
const DEFAULT_CHART_TIMEOUT: Duration = Duration::from_secs(60);

impl Default for ChartOptions {
    fn default() -> Self {
        Self {
            helm: None,
            release_name: "release-name".to_owned(),
            namespace: "default".to_owned(),
            capabilities: Capabilities::default(),
            values_from: Vec::new(),
            max_memory: DEFAULT_CHART_MAX_MEMORY,
            inflated: Default::default(),
        }
    }
}

impl ChartOptions {
    /// The options of `sync`'s chart render, as the render controller makes it: the Sync's name
    /// as the default release name, its namespace as the default `.Release.Namespace`, and the
    /// `valuesFrom` documents and capabilities `inputs` read from the cluster.
    pub fn for_sync(sync: &plumb_api::Sync, inputs: ChartInputs) -> Self {
        use kube::ResourceExt as _;
        Self {
            release_name: sync.name_any(),
            namespace: sync.namespace().unwrap_or_default(),
            capabilities: inputs.capabilities,
            values_from: inputs.values_from,
            ..Self::default()
        }
    }
}

/// The `helm template` request for the chart at `dir` under `root`, per `spec.helm`.
pub fn request(
    root: &Path,
    dir: &Path,
    spec: &SyncSpec,
    opts: &ChartOptions,
) -> Result<TemplateRequest, BuildError> {
    let helm = spec.helm.clone().unwrap_or_default();
    let release = helm
        .release_name
        .clone()
        .unwrap_or_else(|| opts.release_name.clone());
    let namespace = spec
        .target_namespace
        .clone()
        .unwrap_or_else(|| opts.namespace.clone());
    let mut req = TemplateRequest::new(dir.to_path_buf(), release, namespace);
    req.values_files = helm
        .values_files
        .iter()
        .map(|f| resolve_file(root, f))
        .collect::<Result<Vec<PathBuf>, _>>()?;
    req.values = opts.values_from.clone();
    if let Some(values) = &helm.values {
        // JSON is YAML: the inline values go to Helm as one more values file, merged last.
        req.values.push(Value::Object(values.clone()).to_string());
    }
    req.capabilities = opts.capabilities.clone();
    req.include_crds = helm.include_crds;
    req.skip_tests = helm.skip_tests;
    Ok(req)
}

/// The engine that inflates a kustomization's `helmCharts` (as `kustomize build --enable-helm`),
/// with the same Helm, limits and capabilities as a chart Sync; none when no Helm is configured
/// or found, and the kustomize engine then refuses such charts.
pub fn kustomize_charts(
    opts: &crate::build::RenderOptions,
) -> Option<std::sync::Arc<dyn plumb_kustomize::ChartEngine>> {
    let chart = &opts.chart;
    let helm = match &chart.helm {
        Some(h) => h.clone(),
        None => Helm::new(Helm::locate().ok()?, 0),
    };
    Some(std::sync::Arc::new(
        plumb_helm::kustomize::KustomizeCharts {
            helm,
            limits: ProcessLimits {
                timeout: opts.timeout.unwrap_or(DEFAULT_CHART_TIMEOUT),
                max_memory: chart.max_memory,
                max_output: opts.max_output_bytes,
            },
            capabilities: chart.capabilities.clone(),
            inflated: chart.inflated.clone(),
        },
    ))
}

/// Renders the chart at `dir` and applies the Sync's `images` and `patches` to its objects.
pub fn render(
    root: &Path,
    dir: &Path,
    spec: &SyncSpec,
    opts: &crate::build::RenderOptions,
) -> Result<Vec<Value>, BuildError> {
    let chart = &opts.chart;
    let req = request(root, dir, spec, chart)?;
    let helm = match &chart.helm {
        Some(h) => h.clone(),
        None => Helm::new(Helm::locate().map_err(BuildError::Chart)?, 0),
    };
    let limits = ProcessLimits {
        timeout: opts.timeout.unwrap_or(DEFAULT_CHART_TIMEOUT),
        max_memory: chart.max_memory,
        max_output: opts.max_output_bytes,
    };
    let text = helm.template(&req, &limits).map_err(BuildError::Chart)?;
    let objects = engine::parse_documents(&text).map_err(|e| BuildError::ChartOutput {
        chart: plumb_helm::chart_name(dir),
        message: e.to_string(),
    })?;
    if spec.images.is_empty() && spec.patches.is_empty() {
        return Ok(objects);
    }
    transform(&objects, spec, opts)
}

/// Applies `images` and `patches` to rendered objects with kustomize, over a scratch directory
/// holding them (the source tree is only read).
fn transform(
    objects: &[Value],
    spec: &SyncSpec,
    opts: &crate::build::RenderOptions,
) -> Result<Vec<Value>, BuildError> {
    let scratch = tempfile::tempdir().map_err(|source| BuildError::Io {
        path: std::env::temp_dir(),
        source,
    })?;
    let file = scratch.path().join("chart.yaml");
    let mut text = String::new();
    for o in objects {
        text.push_str("---\n");
        // JSON is YAML, and keeps every value's type exactly.
        text.push_str(&o.to_string());
        text.push('\n');
    }
    fs::write(&file, text).map_err(|source| BuildError::Io {
        path: file.clone(),
        source,
    })?;
    let mut k = json!({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["chart.yaml"],
    });
    if !spec.images.is_empty() {
        k["images"] = json!(spec.images);
    }
    if !spec.patches.is_empty() {
        k["patches"] = json!(spec.patches);
    }
    let build_opts = plumb_kustomize::BuildOptions {
        limits: opts.limits.clone(),
        timeout: opts.timeout,
        // Keep Helm's order: hooks and CRDs are staged by the sync controller anyway.
        reorder: plumb_kustomize::Reorder::None,
        ..plumb_kustomize::BuildOptions::default()
    };
    engine::build_generated(scratch.path(), scratch.path(), &k, &build_opts).map_err(|source| {
        BuildError::Kustomize {
            path: spec.path.clone(),
            source: Box::new(source),
        }
    })
}

/// Whether a chart error is the chart asking for what plumb refuses (a download).
pub fn is_refused(e: &HelmError) -> bool {
    matches!(e, HelmError::MissingDependency { .. })
}
