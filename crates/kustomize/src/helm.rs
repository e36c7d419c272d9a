//! Helm charts in a kustomization (`helmCharts`, `helmGlobals`), inflated as
//! `kustomize build --enable-helm` inflates them: the chart under `chartHome` is rendered by
//! `helm template` with the values kustomize would hand it, and its objects join the
//! kustomization's resources like a generator's. This crate runs no process: the caller gives
//! the build a [`ChartEngine`] (plumb's is the pinned Helm, `plumb-helm`). Charts are never
//! downloaded: one that is not in the tree is an error naming it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::build::{Acc, Builder, Target};
use crate::error::Error;
use crate::kustomization::Kustomization;

/// kustomize's default `chartHome`, relative to the kustomization.
pub const DEFAULT_CHART_HOME: &str = "charts";

/// `helmGlobals`: settings every chart of the kustomization shares.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HelmGlobals {
    /// The directory holding one directory per chart, relative to the kustomization
    /// (default `charts`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub chart_home: String,
    /// Helm's configuration directory; plumb's engine runs Helm with empty ones, so it is
    /// accepted and ignored.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub config_home: String,
}

/// One `helmCharts` entry: a chart and the arguments of its `helm template`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HelmChart {
    /// The chart's directory name under `chartHome`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// With `repo`: the chart is looked for under `chartHome/NAME-VERSION/NAME`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// Where kustomize would download the chart from; plumb never does, the chart must be in the
    /// tree.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub repo: String,
    /// `.Release.Name` (Helm's `release-name` when unset).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub release_name: String,
    /// `.Release.Namespace`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// More values files (relative to the kustomization), merged after the main one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_values_files: Vec<String>,
    /// The values file used instead of the chart's `values.yaml`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub values_file: String,
    /// Values given inline, combined with the values file as `valuesMerge` says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values_inline: Option<Map<String, Value>>,
    /// `override` (default: inline values win), `merge` (the file's win) or `replace` (only
    /// the inline values).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub values_merge: String,
    /// Render the chart's `crds/` too.
    #[serde(default, rename = "includeCRDs", skip_serializing_if = "is_false")]
    pub include_crds: bool,
    /// Leave hooks out (`--no-hooks`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub skip_hooks: bool,
    /// `.Capabilities.APIVersions`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_versions: Vec<String>,
    /// `.Capabilities.KubeVersion`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kube_version: String,
    /// A template for the release name (`--name-template`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name_template: String,
    /// Leave test hooks out (`--skip-tests`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub skip_tests: bool,
    /// Helm's debug output; it only changes error messages, so it is accepted and ignored.
    #[serde(default, skip_serializing_if = "is_false")]
    pub debug: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The deprecated `helmChartInflationGenerator` entry, moved into `helmCharts` when the file is
/// read, as kustomize does.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HelmChartArgs {
    /// The chart's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub chart_name: String,
    /// The chart's version.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub chart_version: String,
    /// The chart's repository.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub chart_repo_url: String,
    /// The chart home (the last non-empty one becomes `helmGlobals.chartHome`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub chart_home: String,
    /// Ignored, as kustomize ignores it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub chart_repo_name: String,
    /// Ignored, as kustomize ignores it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub helm_bin: String,
    /// Becomes `helmGlobals.configHome`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub helm_home: String,
    /// The values file.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub values: String,
    /// Inline values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values_local: Option<Map<String, Value>>,
    /// How inline values combine with the file.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub values_merge: String,
    /// The release name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub release_name: String,
    /// Ignored, as kustomize ignores it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub release_namespace: String,
    /// Ignored, as kustomize ignores it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_args: Vec<String>,
}

/// kustomize's `FixKustomization` for charts: legacy entries become `helmCharts` entries, and
/// their last non-empty chart home and Helm home become `helmGlobals` when it is unset.
pub(crate) fn fix_legacy_charts(k: &mut Kustomization) {
    let legacy = std::mem::take(&mut k.helm_chart_inflation_generator);
    let mut globals = HelmGlobals::default();
    for old in legacy {
        if !old.helm_home.is_empty() {
            globals.config_home = old.helm_home.clone();
        }
        if !old.chart_home.is_empty() {
            globals.chart_home = old.chart_home.clone();
        }
        k.helm_charts.push(HelmChart {
            name: old.chart_name,
            version: old.chart_version,
            repo: old.chart_repo_url,
            values_file: old.values,
            values_inline: old.values_local,
            values_merge: old.values_merge,
            release_name: old.release_name,
            ..HelmChart::default()
        });
    }
    if k.helm_globals.is_none()
        && (!globals.chart_home.is_empty() || !globals.config_home.is_empty())
    {
        k.helm_globals = Some(globals);
    }
}

/// One `helm template` a `helmCharts` entry asks for, with everything resolved and read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChartRequest {
    /// The chart directory, inside the build root.
    pub chart: PathBuf,
    /// The release name; unset, Helm names it `release-name` (kustomize asks for a generated
    /// name, which `helm template` does not give).
    pub release_name: Option<String>,
    /// `--name-template`.
    pub name_template: Option<String>,
    /// `--namespace`; unset, Helm's default.
    pub namespace: Option<String>,
    /// Values documents (YAML), each passed as a values file, in order.
    pub values: Vec<String>,
    /// `--api-versions`; empty, the engine's own (the cluster's, when it knows them).
    pub api_versions: Vec<String>,
    /// `--kube-version`; unset, the engine's own.
    pub kube_version: Option<String>,
    /// `--include-crds`.
    pub include_crds: bool,
    /// `--skip-tests`.
    pub skip_tests: bool,
    /// `--no-hooks`.
    pub skip_hooks: bool,
}

/// Why a chart engine did not render a chart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChartFailure {
    /// Helm's own message (or the engine's).
    pub message: String,
    /// Whether trying again may succeed with the same tree (a deadline, a process that could
    /// not start).
    pub transient: bool,
    /// Whether the chart asks for what is refused on purpose (a dependency to download).
    pub refused: bool,
}

/// What renders a chart for a build: `helm template` run by the caller.
pub trait ChartEngine: Send + Sync + std::fmt::Debug {
    /// Renders the chart, returning Helm's standard output (multi-document YAML).
    fn template(&self, req: &ChartRequest) -> Result<String, ChartFailure>;
}

/// Inflates every `helmCharts` entry of `t` into `acc`, in order, after the ConfigMap and
/// Secret generators, as kustomize's built-in generators run.
pub(crate) fn run(b: &Builder<'_>, t: &Target, acc: &mut Acc) -> Result<(), Error> {
    if t.k.helm_charts.is_empty() {
        return Ok(());
    }
    let globals = t.k.helm_globals.clone().unwrap_or_default();
    // kustomize configures every chart before it renders the first.
    for chart in &t.k.helm_charts {
        validate(t, chart)?;
    }
    for chart in &t.k.helm_charts {
        b.check_deadline(t)?;
        let Some(engine) = &b.charts else {
            return Err(Error::NoChartEngine {
                kustomization: t.file.clone(),
                chart: chart.name.clone(),
            });
        };
        let req = request(b, t, &globals, chart)?;
        let text = engine.template(&req).map_err(|f| Error::Chart {
            kustomization: t.file.clone(),
            chart: chart.name.clone(),
            message: f.message,
            transient: f.transient,
            refused: f.refused,
        })?;
        let objects = crate::build::parse_resources(&text)
            .map_err(|e| t.yaml_err(format!("helm chart {} output", chart.name), e))?;
        for obj in objects {
            let mut r = crate::resource::Resource::new(obj);
            if let Some(o) = &t.origin {
                r.origin = Some(crate::transform::configured_by(
                    &crate::build::join_origin(o, &t.file_name),
                    "HelmChartInflationGenerator",
                    None,
                ));
            }
            acc.absorb(r)
                .map_err(t.conflict_err(format!("helmCharts {}", chart.name)))?;
        }
    }
    Ok(())
}

fn chart_err(t: &Target, chart: &HelmChart, message: impl Into<String>) -> Error {
    Error::Chart {
        kustomization: t.file.clone(),
        chart: chart.name.clone(),
        message: message.into(),
        transient: false,
        refused: false,
    }
}

/// kustomize's checks when it configures the generator.
fn validate(t: &Target, chart: &HelmChart) -> Result<(), Error> {
    if chart.name.is_empty() {
        return Err(t.err("helmCharts: chart name cannot be empty"));
    }
    if !matches!(
        chart.values_merge.as_str(),
        "" | "override" | "merge" | "replace"
    ) {
        return Err(chart_err(
            t,
            chart,
            "valuesMerge must be one of [merge override replace]",
        ));
    }
    Ok(())
}

/// The chart's directory, its values as kustomize combines them, and the flags.
fn request(
    b: &Builder<'_>,
    t: &Target,
    globals: &HelmGlobals,
    chart: &HelmChart,
) -> Result<ChartRequest, Error> {
    let mut home = if globals.chart_home.is_empty() {
        DEFAULT_CHART_HOME.to_owned()
    } else {
        globals.chart_home.clone()
    };
    if !chart.version.is_empty() && !chart.repo.is_empty() {
        home = format!("{home}/{}-{}", chart.name, chart.version);
    }
    let rel = format!("{home}/{}", chart.name);
    let not_here = || {
        let mut message = format!(
            "no chart at {rel} (chartHome {}), and plumb downloads nothing: vendor the chart there",
            if globals.chart_home.is_empty() {
                DEFAULT_CHART_HOME
            } else {
                &globals.chart_home
            }
        );
        if !chart.repo.is_empty() {
            message.push_str(&format!(" (it names repo {}", chart.repo));
            if !chart.version.is_empty() {
                message.push_str(&format!(", version {}", chart.version));
            }
            message.push(')');
        }
        Error::Chart {
            kustomization: t.file.clone(),
            chart: chart.name.clone(),
            message,
            transient: false,
            refused: true,
        }
    };
    let dir = match b.fs.resolve(&t.dir, &rel) {
        Ok(dir) if b.fs.is_dir(&dir) => dir,
        Ok(_) | Err(crate::fs::FsError::NotFound(_)) => return Err(not_here()),
        Err(e) => return Err(t.fs_err(e)),
    };
    let main_file = if chart.values_file.is_empty() {
        format!("{rel}/values.yaml")
    } else {
        chart.values_file.clone()
    };
    let main_path = b.resolve_local_file(t, &main_file)?;
    let main_text = b.read_text(t, &main_path)?;
    let inline = chart.values_inline.clone().unwrap_or_default();
    let main = if inline.is_empty() {
        main_text
    } else {
        match chart.values_merge.as_str() {
            "replace" => Value::Object(inline).to_string(),
            mode => {
                let file = parse_values(&main_text)
                    .map_err(|e| t.yaml_err(format!("values file {main_file}"), e))?;
                let merged = if mode == "merge" {
                    merge_maps(&file, &inline, &mut Vec::new())
                } else {
                    merge_maps(&inline, &file, &mut Vec::new())
                }
                .map_err(|m| chart_err(t, chart, format!("could not merge values: {m}")))?;
                Value::Object(merged).to_string()
            }
        }
    };
    let mut values = vec![main];
    for f in &chart.additional_values_files {
        let path = b.resolve_local_file(t, f)?;
        values.push(b.read_text(t, &path)?);
    }
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    Ok(ChartRequest {
        chart: dir,
        release_name: opt(&chart.release_name),
        name_template: opt(&chart.name_template),
        namespace: opt(&chart.namespace),
        values,
        api_versions: chart.api_versions.clone(),
        kube_version: opt(&chart.kube_version),
        include_crds: chart.include_crds,
        skip_tests: chart.skip_tests,
        skip_hooks: chart.skip_hooks,
    })
}

/// A values file as kustomize reads it before merging (go-yaml v3: `yes` stays a string).
fn parse_values(text: &str) -> Result<Map<String, Value>, crate::yaml::YamlError> {
    let doc = crate::yaml::parse_documents(text, crate::yaml::ScalarMode::Typed)?
        .into_iter()
        .next()
        .unwrap_or(Value::Null);
    match doc {
        Value::Object(m) => Ok(m),
        Value::Null => Ok(Map::new()),
        _ => Err(crate::yaml::YamlError::Structure(
            "the values file is not a mapping".into(),
        )),
    }
}

/// kyaml's `merge2.Merge(src, dest)` over values, as kustomize combines inline values with the
/// values file: a field of `src` wins over `dest`'s; mappings merge field by field; lists and
/// scalars are replaced whole; a `null` in `src` removes the field; a field only `dest` has
/// stays as it is (a `null` too, which then removes Helm's default); a new mapping from `src`
/// loses its `null` fields. Two non-null values of different kinds are an error, as in kyaml.
fn merge_maps(
    src: &Map<String, Value>,
    dest: &Map<String, Value>,
    path: &mut Vec<String>,
) -> Result<Map<String, Value>, String> {
    let mut keys: Vec<&String> = src.keys().chain(dest.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = Map::new();
    for key in keys {
        path.push(key.clone());
        let merged = match (src.get(key), dest.get(key)) {
            (None, None) | (Some(Value::Null), _) => None,
            (None, Some(d)) => Some(d.clone()),
            (Some(s), None | Some(Value::Null)) => Some(without_nulls(s)),
            (Some(Value::Object(s)), Some(Value::Object(d))) => {
                Some(Value::Object(merge_maps(s, d, path)?))
            }
            (Some(s), Some(d)) if kind(s) == kind(d) => Some(s.clone()),
            (Some(s), Some(d)) => {
                return Err(format!(
                    "wrong node kind at {}: expected {} but got {}",
                    path.join("."),
                    kind(d),
                    kind(s)
                ));
            }
        };
        path.pop();
        if let Some(v) = merged {
            out.insert(key.clone(), v);
        }
    }
    Ok(out)
}

/// A mapping without its `null` fields, at every level of mappings (lists are kept as they are).
fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Object(_) => "a mapping",
        Value::Array(_) => "a list",
        _ => "a scalar",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!("test input is a mapping"),
        }
    }

    #[test]
    fn inline_values_override_the_file_as_kyaml_merges() {
        let file = map(json!({
            "replicas": 1, "image": {"repo": "nginx", "tag": "1.0"}, "list": ["a", "b"],
            "drop": "x", "keep": null, "nested": {"a": 1, "b": 2}
        }));
        let inline = map(json!({
            "replicas": 3, "image": {"tag": "2.0"}, "list": ["c"], "drop": null,
            "nested": {"b": null, "c": 3}, "fresh": {"x": 1, "y": null}
        }));
        let got = merge_maps(&inline, &file, &mut Vec::new()).unwrap();
        assert_eq!(
            Value::Object(got),
            json!({
                "replicas": 3, "image": {"repo": "nginx", "tag": "2.0"}, "list": ["c"],
                "keep": null, "nested": {"a": 1, "c": 3}, "fresh": {"x": 1}
            })
        );
    }

    #[test]
    fn a_mapping_replaced_by_a_scalar_is_refused_naming_the_field() {
        let file = map(json!({"image": {"repo": "nginx"}}));
        let inline = map(json!({"image": "flat"}));
        let err = merge_maps(&inline, &file, &mut Vec::new()).unwrap_err();
        assert_eq!(
            err,
            "wrong node kind at image: expected a mapping but got a scalar"
        );
    }

    #[test]
    fn legacy_entries_become_charts_and_globals() {
        let mut k = Kustomization::from_yaml(
            "helmChartInflationGenerator:\n- chartName: demo\n  chartHome: vendor\n  releaseName: r\n  valuesLocal: {a: 1}\n  releaseNamespace: ignored\n",
        )
        .unwrap();
        k.fix_legacy_fields();
        assert_eq!(k.helm_charts.len(), 1);
        assert_eq!(k.helm_charts[0].name, "demo");
        assert_eq!(k.helm_charts[0].release_name, "r");
        assert_eq!(k.helm_charts[0].namespace, "");
        assert_eq!(k.helm_globals.unwrap().chart_home, "vendor");
    }
}
