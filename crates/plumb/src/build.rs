//! `plumb build`: render a directory as multi-document YAML. A kustomization directory is built
//! like `kubectl kustomize`; a Helm chart (a DIR holding `Chart.yaml`) with the real Helm,
//! printing exactly what `helm template` prints for the same arguments; a plain directory of
//! YAML as a Sync renders it (every YAML file under it, as Flux does); `--sync FILE` renders what
//! that Sync would apply, with its path, images, patches, name prefix and suffix, components,
//! common metadata and substitution (`substituteFrom` values given locally with `--vars`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine as _;
use clap::ValueEnum;
use plumb_api::reference::DataKind;
use plumb_kustomize::{BuildOptions, Reorder};
use serde_json::Value;

/// Output order of `plumb build`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Order {
    /// kustomize's legacy order by kind (the default of `kubectl kustomize`).
    Legacy,
    /// The order resources are declared in.
    None,
}

/// Arguments of `plumb build`.
#[derive(clap::Args)]
pub struct Args {
    /// Directory holding the kustomization, a Helm chart (`Chart.yaml`) or plain YAML files;
    /// with `--sync`, the root of the source checkout the Sync's `path` is taken in (default:
    /// the current directory).
    dir: Option<PathBuf>,
    /// Chart options, as `helm template` spells them.
    #[command(flatten)]
    chart: ChartArgs,
    /// Output order.
    #[arg(long, value_enum, default_value = "legacy")]
    reorder: Order,
    /// Directory nothing may be read outside of (default: the whole filesystem, as kubectl;
    /// with `--sync`, the source root).
    #[arg(long)]
    root: Option<PathBuf>,
    /// A file holding a Sync: render what it would apply.
    #[arg(long)]
    sync: Option<PathBuf>,
    /// Files holding the ConfigMaps and Secrets the Sync's `substituteFrom` names (YAML, any
    /// number of documents); a source missing here fails the build unless it is `optional`.
    #[arg(long = "vars", requires = "sync")]
    vars: Vec<PathBuf>,
}

/// The options of a chart build, with `helm template`'s names and defaults.
#[derive(clap::Args, Default)]
#[command(next_help_heading = "Helm charts (DIR holds Chart.yaml)")]
pub struct ChartArgs {
    /// Values files, merged in order over the chart's values.yaml.
    #[arg(short = 'f', long = "values", value_name = "FILE")]
    values: Vec<PathBuf>,
    /// Set values (key1=val1,key2=val2), applied after the values files.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Set string values (key1=val1,key2=val2), applied after the values files.
    #[arg(long = "set-string", value_name = "KEY=VALUE")]
    set_string: Vec<String>,
    /// The release name.
    #[arg(long, default_value = "release-name")]
    release_name: String,
    /// The release namespace.
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    /// The Kubernetes version `.Capabilities.KubeVersion` reports (Helm's default when unset).
    #[arg(long)]
    kube_version: Option<String>,
    /// API versions `.Capabilities.APIVersions` holds besides Helm's defaults (group/version or
    /// group/version/Kind).
    #[arg(short = 'a', long = "api-versions", value_name = "GROUP/VERSION")]
    api_versions: Vec<String>,
    /// Include the chart's crds/ in the output.
    #[arg(long)]
    include_crds: bool,
    /// Leave test hooks out of the output.
    #[arg(long)]
    skip_tests: bool,
}

impl ChartArgs {
    /// Whether any chart option was given (they mean nothing to a kustomization).
    fn any(&self) -> bool {
        !self.values.is_empty()
            || !self.set.is_empty()
            || !self.set_string.is_empty()
            || self.release_name != "release-name"
            || self.namespace != "default"
            || self.kube_version.is_some()
            || !self.api_versions.is_empty()
            || self.include_crds
            || self.skip_tests
    }

    /// The `helm template` request for the chart at `dir`.
    fn request(&self, dir: PathBuf) -> anyhow::Result<plumb_helm::TemplateRequest> {
        let mut req = plumb_helm::TemplateRequest::new(
            dir,
            self.release_name.clone(),
            self.namespace.clone(),
        );
        req.values_files = self
            .values
            .iter()
            .map(|f| {
                f.canonicalize()
                    .with_context(|| format!("values file {}", f.display()))
            })
            .collect::<anyhow::Result<_>>()?;
        req.set = self.set.clone();
        req.set_string = self.set_string.clone();
        req.capabilities = plumb_helm::Capabilities {
            kube_version: self.kube_version.clone(),
            api_versions: self.api_versions.clone(),
        };
        req.include_crds = self.include_crds;
        req.skip_tests = self.skip_tests;
        Ok(req)
    }
}

/// Renders the chart at `dir` with Helm and prints its output unchanged, once it is known to
/// parse as the objects plumb would apply.
fn build_chart(dir: PathBuf, chart: &ChartArgs) -> anyhow::Result<()> {
    let helm = plumb_helm::Helm::new(plumb_helm::Helm::locate()?, 0);
    let req = chart.request(dir)?;
    let defaults = plumb_render::RenderOptions::default();
    let limits = plumb_helm::ProcessLimits {
        timeout: std::time::Duration::from_secs(60),
        max_memory: defaults.chart.max_memory,
        max_output: defaults.max_output_bytes,
    };
    let text = helm.template(&req, &limits)?;
    plumb_render::parse_documents(&text).context("helm template output")?;
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .context("writing output")?;
    Ok(())
}

/// Build and print.
pub fn run(args: &Args) -> anyhow::Result<()> {
    if let Some(file) = &args.sync {
        return print(&render_sync(args, file)?);
    }
    let given = args.dir.as_deref().unwrap_or(Path::new("."));
    let dir = canonical(given)?;
    if plumb_helm::is_chart(&dir) {
        return build_chart(dir, &args.chart);
    }
    if args.chart.any() {
        anyhow::bail!(
            "{}: the chart options (-f, --set, --release-name, ...) need a Helm chart, and there is no Chart.yaml",
            given.display()
        );
    }
    print(&build_dir(args, &dir)?)
}

fn print(objects: &[Value]) -> anyhow::Result<()> {
    let mut out = String::new();
    for (i, o) in objects.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&plumb_kustomize::yaml::to_yaml_document(o));
    }
    std::io::stdout()
        .lock()
        .write_all(out.as_bytes())
        .context("writing output")?;
    Ok(())
}

fn canonical(p: &Path) -> anyhow::Result<PathBuf> {
    p.canonicalize().with_context(|| format!("{}", p.display()))
}

/// `plumb build DIR` of a kustomization or a plain directory.
fn build_dir(args: &Args, dir: &Path) -> anyhow::Result<Vec<Value>> {
    let root = match &args.root {
        Some(r) => canonical(r)?,
        None => PathBuf::from("/"),
    };
    if !plumb_render::has_kustomization(dir) {
        // As a Sync renders it: every YAML file under the directory.
        let rel = dir.strip_prefix(&root).unwrap_or(Path::new(""));
        let spec = spec_at(&format!("./{}", rel.display()))?;
        return Ok(plumb_render::render(&root, &spec, &[])?);
    }
    let opts = BuildOptions {
        reorder: match args.reorder {
            Order::Legacy => Reorder::Legacy,
            Order::None => Reorder::None,
        },
        // `helmCharts` render as `kubectl kustomize --enable-helm` renders them.
        charts: plumb_render::kustomize_charts(&plumb_render::RenderOptions::default()),
        ..BuildOptions::default()
    };
    Ok(plumb_kustomize::build(&root, dir, &opts)?
        .into_iter()
        .map(plumb_kustomize::Resource::into_value)
        .collect())
}

fn spec_at(path: &str) -> anyhow::Result<plumb_api::SyncSpec> {
    Ok(serde_json::from_value(serde_json::json!({
        "sourceRef": {"kind": "GitRepository", "name": "local"},
        "path": path,
    }))?)
}

/// `plumb build --sync FILE [ROOT]`.
fn render_sync(args: &Args, file: &Path) -> anyhow::Result<Vec<Value>> {
    let text = std::fs::read_to_string(file).with_context(|| file.display().to_string())?;
    let sync: plumb_api::Sync = serde_yaml::Deserializer::from_str(&text)
        .filter_map(|d| document(d).ok())
        .find(|v| v["kind"] == "Sync")
        .map(serde_json::from_value)
        .transpose()
        .with_context(|| format!("{}: not a valid Sync", file.display()))?
        .with_context(|| format!("{}: holds no Sync", file.display()))?;
    let root = canonical(
        args.root
            .as_deref()
            .or(args.dir.as_deref())
            .unwrap_or(Path::new(".")),
    )?;
    let objects = read_documents(&args.vars)?;
    let mut from = Vec::new();
    for r in &sync.spec.substitute_from {
        let found = objects.iter().find(|o| {
            o["apiVersion"] == "v1"
                && o["kind"]
                    == match r.kind {
                        DataKind::ConfigMap => "ConfigMap",
                        DataKind::Secret => "Secret",
                    }
                && o["metadata"]["name"] == r.name.as_str()
        });
        match found {
            Some(o) => from.push(data_of(o, r.kind)?),
            None if r.optional => {}
            None => anyhow::bail!(
                "substituteFrom: {:?} {} is not in the --vars files",
                r.kind,
                r.name
            ),
        }
    }
    plumb_render::render(&root, &sync.spec, &from)
        .with_context(|| format!("rendering Sync {}", file.display()))
}

/// The variables a ConfigMap's `data` or a Secret's `data` (base64) and `stringData` hold.
fn data_of(obj: &Value, kind: DataKind) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    if let Some(data) = obj["data"].as_object() {
        for (k, v) in data {
            let v = v.as_str().unwrap_or_default();
            let v = match kind {
                DataKind::ConfigMap => v.to_owned(),
                DataKind::Secret => String::from_utf8_lossy(
                    &base64::engine::general_purpose::STANDARD
                        .decode(v)
                        .with_context(|| format!("Secret {name}: data.{k} is not base64"))?,
                )
                .into_owned(),
            };
            out.insert(k.clone(), v);
        }
    }
    if kind == DataKind::Secret
        && let Some(data) = obj["stringData"].as_object()
    {
        for (k, v) in data {
            out.insert(k.clone(), v.as_str().unwrap_or_default().to_owned());
        }
    }
    Ok(out)
}

/// Every object in the YAML files `paths`.
fn read_documents(paths: &[PathBuf]) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    for p in paths {
        let text = std::fs::read_to_string(p).with_context(|| p.display().to_string())?;
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v = document(doc).with_context(|| format!("{}: not valid YAML", p.display()))?;
            if v.is_object() {
                out.push(v);
            }
        }
    }
    Ok(out)
}

/// One YAML document as JSON data.
fn document(doc: serde_yaml::Deserializer<'_>) -> Result<Value, serde_yaml::Error> {
    serde::Deserialize::deserialize(doc)
}
