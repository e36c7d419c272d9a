//! `plumb build DIR`: render a kustomization with the native engine, or a Helm chart (a DIR
//! holding `Chart.yaml`) with the real Helm, printing exactly what `helm template` prints for
//! the same arguments.

use anyhow::Context;
use clap::ValueEnum;
use plumb_kustomize::{BuildOptions, Reorder};
use std::io::Write;
use std::path::PathBuf;

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
    /// Directory holding the kustomization, or a Helm chart (`Chart.yaml`).
    dir: PathBuf,
    /// Chart options, as `helm template` spells them.
    #[command(flatten)]
    chart: ChartArgs,
    /// Output order.
    #[arg(long, value_enum, default_value = "legacy")]
    reorder: Order,
    /// Directory nothing may be read outside of (default: the whole filesystem, as kubectl).
    #[arg(long)]
    root: Option<PathBuf>,
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
    let dir = args
        .dir
        .canonicalize()
        .with_context(|| format!("{}", args.dir.display()))?;
    if plumb_helm::is_chart(&dir) {
        return build_chart(dir, &args.chart);
    }
    if args.chart.any() {
        anyhow::bail!(
            "{}: the chart options (-f, --set, --release-name, ...) need a Helm chart, and there is no Chart.yaml",
            args.dir.display()
        );
    }
    let root = match &args.root {
        Some(r) => r
            .canonicalize()
            .with_context(|| format!("{}", r.display()))?,
        None => PathBuf::from("/"),
    };
    let opts = BuildOptions {
        reorder: match args.reorder {
            Order::Legacy => Reorder::Legacy,
            Order::None => Reorder::None,
        },
        ..BuildOptions::default()
    };
    let objects = plumb_kustomize::build(&root, &dir, &opts)?;
    let out = plumb_kustomize::to_yaml(&objects);
    std::io::stdout()
        .lock()
        .write_all(out.as_bytes())
        .context("writing output")?;
    Ok(())
}
