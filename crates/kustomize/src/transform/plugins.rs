//! Built-in plugin configurations given in `transformers:` and `generators:`: each is run by
//! the transformer or generator of its kind; anything but a built-in kind is refused.

use super::{
    images, is_inline, labels, load, load_replacements, names, namespace, patch, replicas,
};
use crate::build::{Acc, Builder, Target, parse_resources};
use crate::error::{Error, TransformError};
use crate::kustomization::{
    FieldSpec, GeneratorArgs, Image, Patch, ReplacementField, Replica, Selector,
};
use crate::replacement;
use crate::resource::scalar_string;
use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::{Map, Value};

/// Built-in plugin configurations named in `transformers:`.
pub(crate) fn run_plugins(b: &mut Builder<'_>, t: &Target, acc: &mut Acc) -> Result<(), Error> {
    for entry in in_kustomize_order(&t.k.transformers) {
        for (cfg, configured_in) in plugin_configs(b, t, entry)? {
            transformer_plugin(b, t, acc, &cfg)?;
            if t.origin.is_some() {
                let kind = cfg.get("kind").map(scalar_string).unwrap_or_default();
                super::mark_as(
                    acc,
                    &super::configured_by(&configured_in, &kind, Some(&config_name(&cfg))),
                );
            }
        }
    }
    Ok(())
}

/// Built-in plugin configurations named in `generators:`.
pub(crate) fn run_generator_plugins(
    b: &mut Builder<'_>,
    t: &Target,
    acc: &mut Acc,
) -> Result<(), Error> {
    for entry in in_kustomize_order(&t.k.generators) {
        for (cfg, configured_in) in plugin_configs(b, t, entry)? {
            let kind = cfg
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            check_builtin(t, &cfg)?;
            if kind == "IAMPolicyGenerator" {
                let mut r = iam_service_account(&cfg).map_err(|m| t.err(format!("{kind}: {m}")))?;
                if t.origin.is_some() {
                    r.origin = Some(super::configured_by(
                        &configured_in,
                        &kind,
                        Some(&config_name(&cfg)),
                    ));
                }
                acc.absorb(r)
                    .map_err(t.conflict_err(format!("{kind} {}", config_name(&cfg))))?;
                continue;
            }
            let secret = match kind.as_str() {
                "ConfigMapGenerator" => false,
                "SecretGenerator" => true,
                other => {
                    return Err(Error::Refused {
                        kustomization: t.file.clone(),
                        what: format!("generator plugin kind {other}"),
                    });
                }
            };
            let mut m = cfg.clone();
            let md = m.remove("metadata").unwrap_or(Value::Null);
            for k in ["apiVersion", "kind"] {
                m.remove(k);
            }
            let mut args: GeneratorArgs = serde_json::from_value(Value::Object(m))
                .map_err(|e| t.err(format!("{kind} config: {e}")))?;
            if args.name.is_empty() {
                args.name = md.get("name").map(scalar_string).unwrap_or_default();
            }
            if args.namespace.is_empty() {
                args.namespace = md.get("namespace").map(scalar_string).unwrap_or_default();
            }
            let mut sub = crate::kustomization::Kustomization::default();
            if secret {
                sub.secret_generator.push(args);
            } else {
                sub.config_map_generator.push(args);
            }
            let st = Target {
                dir: t.dir.clone(),
                file: t.file.clone(),
                file_name: t.file_name.clone(),
                k: sub,
                origin: t.origin.clone(),
                plugin: Some((configured_in, config_name(&cfg))),
            };
            crate::generators::run(b, &st, acc)?;
        }
    }
    Ok(())
}

/// The entries of `transformers:` / `generators:` in the order kustomize runs them: inline
/// configurations first, then files and directories, each in the order given; empty entries
/// are skipped.
fn in_kustomize_order(entries: &[String]) -> impl Iterator<Item = &String> {
    let non_empty = || entries.iter().filter(|e| !e.trim().is_empty());
    non_empty()
        .filter(|e| is_inline(e))
        .chain(non_empty().filter(|e| !is_inline(e)))
}

/// `IAMPolicyGenerator`'s configuration.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct IamPolicy {
    #[serde(default)]
    cloud: String,
    #[serde(default)]
    kubernetes_service: IamKubernetesService,
    #[serde(default)]
    service_account: IamServiceAccount,
}

/// The Kubernetes ServiceAccount `IAMPolicyGenerator` makes.
#[derive(Deserialize, Default)]
struct IamKubernetesService {
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    name: String,
}

/// The cloud service account it stands for.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct IamServiceAccount {
    #[serde(default)]
    name: String,
    #[serde(default)]
    project_id: String,
}

/// kustomize's IAMPolicyGenerator: a ServiceAccount bound to a cloud service account (GKE
/// workload identity is the one cloud it supports). Like kustomize, it fills a YAML template,
/// so values that break the YAML fail as YAML.
fn iam_service_account(cfg: &Map<String, Value>) -> Result<crate::resource::Resource, String> {
    let mut fields = cfg.clone();
    for k in ["apiVersion", "kind", "metadata"] {
        fields.remove(k);
    }
    let p: IamPolicy = serde_json::from_value(Value::Object(fields)).map_err(|e| e.to_string())?;
    if p.cloud != "gke" {
        return Err(format!("cloud provider {} not supported yet", p.cloud));
    }
    let mut text = format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  annotations:\n    \
         iam.gke.io/gcp-service-account: {}@{}.iam.gserviceaccount.com\n  name: {}\n",
        p.service_account.name, p.service_account.project_id, p.kubernetes_service.name
    );
    if !p.kubernetes_service.namespace.is_empty() {
        text.push_str(&format!(
            "  namespace: {}\n",
            p.kubernetes_service.namespace
        ));
    }
    let obj = parse_resources(&text)
        .map_err(|e| format!("the generated ServiceAccount is not YAML: {e}"))?
        .into_iter()
        .next()
        .unwrap_or_default();
    let named = obj
        .get("metadata")
        .and_then(|m| m.get("name"))
        .is_some_and(|n| n.as_str().is_some_and(|s| !s.is_empty()));
    if !named {
        return Err("missing metadata.name in the generated ServiceAccount \
             (kubernetesService.name)"
            .into());
    }
    Ok(crate::resource::Resource::new(obj))
}

/// A plugin configuration and the file that gave it (relative to the top kustomization).
type PluginConfig = (Map<String, Value>, String);

/// A plugin configuration's `metadata.name`.
fn config_name(cfg: &Map<String, Value>) -> String {
    cfg.get("metadata")
        .and_then(|m| m.get("name"))
        .map(scalar_string)
        .unwrap_or_default()
}

fn check_builtin(t: &Target, cfg: &Map<String, Value>) -> Result<(), Error> {
    let api = cfg.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let md = cfg.get("metadata");
    let annotations = md
        .and_then(|m| m.get("annotations"))
        .and_then(Value::as_object);
    if annotations.is_some_and(|a| {
        a.contains_key("config.kubernetes.io/function") || a.contains_key("config.k8s.io/function")
    }) {
        return Err(Error::Refused {
            kustomization: t.file.clone(),
            what: "KRM functions (exec or container)".into(),
        });
    }
    if api != "builtin" && !api.is_empty() {
        let kind = cfg.get("kind").and_then(Value::as_str).unwrap_or("");
        return Err(Error::Refused {
            kustomization: t.file.clone(),
            what: format!("plugin {api}/{kind} (only builtin plugins are supported)"),
        });
    }
    Ok(())
}

/// The plugin configurations one `transformers:` / `generators:` entry names: inline text, or
/// (as kustomize loads them) resources: a file in the kustomization's directory, or a directory
/// whose kustomization is built and whose output are the configurations. Each comes with the
/// file that configured it, relative to the top kustomization (for `buildMetadata`).
fn plugin_configs(
    b: &mut Builder<'_>,
    t: &Target,
    entry: &str,
) -> Result<Vec<PluginConfig>, Error> {
    if is_inline(entry) {
        let here = crate::build::join_origin(t.origin.as_deref().unwrap_or(""), &t.file_name);
        return Ok(parse_resources(entry)
            .map_err(|e| t.yaml_err("inline plugin config", e))?
            .into_iter()
            .map(|m| (m, here.clone()))
            .collect());
    }
    if crate::build::is_remote(entry) {
        return Err(Error::Refused {
            kustomization: t.file.clone(),
            what: format!("remote plugin config {entry}"),
        });
    }
    let mut configs = Acc::new();
    b.accumulate_resource(t, &mut configs, entry)?;
    Ok(configs
        .res
        .into_iter()
        .map(|r| {
            let configured_in = r.origin.clone().unwrap_or_else(|| entry.to_string());
            let cfg = match r.into_value() {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            (cfg, configured_in)
        })
        .collect())
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PluginFields {
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    suffix: String,
    #[serde(default)]
    field_specs: Option<Vec<FieldSpec>>,
    #[serde(default)]
    labels: IndexMap<String, Value>,
    #[serde(default)]
    annotations: IndexMap<String, Value>,
    #[serde(default)]
    unset_only: Option<Value>,
    #[serde(default)]
    set_role_binding_subjects: String,
    #[serde(default)]
    image_tag: Option<Image>,
    #[serde(default)]
    replica: Option<Replica>,
    #[serde(default)]
    replacements: Vec<ReplacementField>,
    #[serde(default)]
    path: String,
    #[serde(default)]
    patch: String,
    #[serde(default)]
    target: Option<Selector>,
    #[serde(default)]
    options: IndexMap<String, Value>,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    patches: String,
    #[serde(default)]
    json_op: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    targets: Vec<ValueAddTarget>,
    #[serde(default)]
    target_file_path: String,
}

/// Where `ValueAddTransformer` puts its value.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ValueAddTarget {
    #[serde(default)]
    selector: Option<Selector>,
    #[serde(default)]
    field_path: String,
    #[serde(default, deserialize_with = "crate::kustomization::lenient_i64")]
    file_path_position: i64,
}

/// A file of `ValueAddTransformer` targets (`targetFilePath`).
#[derive(Deserialize, Default)]
struct ValueAddTargets {
    #[serde(default)]
    targets: Vec<ValueAddTarget>,
}

fn str_map(m: &IndexMap<String, Value>) -> IndexMap<String, String> {
    m.iter()
        .map(|(k, v)| (k.clone(), scalar_string(v)))
        .collect()
}

fn transformer_plugin(
    b: &mut Builder<'_>,
    t: &Target,
    acc: &mut Acc,
    cfg: &Map<String, Value>,
) -> Result<(), Error> {
    check_builtin(t, cfg)?;
    let kind = cfg
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let md = cfg.get("metadata").cloned().unwrap_or(Value::Null);
    let mut fields = cfg.clone();
    for k in ["apiVersion", "kind", "metadata"] {
        fields.remove(k);
    }
    let p: PluginFields = serde_json::from_value(Value::Object(fields))
        .map_err(|e| t.err(format!("{kind} config: {e}")))?;
    let specs = p.field_specs.clone().unwrap_or_default();
    let wrap = |e: TransformError| match e {
        TransformError::Yaml(y) => t.yaml_err(kind.clone(), y),
        other => t.transform_err(kind.clone())(other),
    };
    match kind.as_str() {
        "PrefixSuffixTransformer" | "PrefixTransformer" | "SuffixTransformer" => {
            if p.field_specs.is_none() {
                return Err(t.err(format!("{kind}: fieldSpecs is not expected to be nil")));
            }
            names::prefix_suffix(acc, &p.prefix, "", &specs);
            names::prefix_suffix(acc, "", &p.suffix, &specs);
        }
        "LabelTransformer" => {
            labels::set_entries(acc, &str_map(&p.labels), &specs).map_err(wrap)?
        }
        "AnnotationsTransformer" => {
            labels::set_entries(acc, &str_map(&p.annotations), &specs).map_err(wrap)?
        }
        "NamespaceTransformer" => {
            let ns = md.get("namespace").map(scalar_string).unwrap_or_default();
            let unset_only = p
                .unset_only
                .as_ref()
                .is_some_and(|v| scalar_string(v) == "true");
            if !ns.is_empty() {
                namespace::set(acc, &ns, &specs, unset_only, &p.set_role_binding_subjects)
                    .map_err(wrap)?;
            }
        }
        "ImageTagTransformer" => {
            let img = p.image_tag.clone().unwrap_or_default();
            images::set(acc, &img, &specs).map_err(wrap)?;
        }
        "ReplicaCountTransformer" => {
            let rep = p.replica.clone().unwrap_or_default();
            replicas::set(acc, &rep, &specs).map_err(wrap)?;
        }
        "ReplacementTransformer" => {
            let list = load_replacements(b, t, &p.replacements)?;
            replacement::apply(&mut acc.res, &list).map_err(|e| wrap(e.into()))?;
        }
        "PatchTransformer" => {
            let options: IndexMap<String, bool> = p
                .options
                .iter()
                .map(|(k, v)| (k.clone(), scalar_string(v) == "true"))
                .collect();
            let patch = Patch {
                path: p.path.clone(),
                patch: p.patch.clone(),
                target: p.target.clone(),
                options,
            };
            patch::apply_entry(b, t, acc, &patch, "PatchTransformer")?;
        }
        "PatchStrategicMergeTransformer" => {
            for path in &p.paths {
                let text = load(b, t, path)?;
                patch::by_id(acc, &text, &IndexMap::new()).map_err(wrap)?;
            }
            if !p.patches.is_empty() {
                patch::by_id(acc, &p.patches, &IndexMap::new()).map_err(wrap)?;
            }
        }
        "PatchJson6902Transformer" => {
            let text = if p.path.is_empty() {
                p.json_op.clone()
            } else {
                load(b, t, &p.path)?
            };
            let target = p
                .target
                .clone()
                .ok_or_else(|| t.err(format!("{kind}: a target is required")))?;
            patch::json(acc, &text, &target).map_err(wrap)?;
        }
        "HashTransformer" => crate::generators::apply_hashes(&mut acc.res),
        "ValueAddTransformer" => {
            let mut targets = p.targets;
            if !p.target_file_path.is_empty() {
                let text = load(b, t, &p.target_file_path)?;
                let what = format!("{kind} targetFilePath {}", p.target_file_path);
                let doc = crate::yaml::parse_documents(&text, crate::yaml::ScalarMode::Text)
                    .map_err(|e| t.yaml_err(what.clone(), e))?
                    .into_iter()
                    .next()
                    .unwrap_or(Value::Null);
                let more: ValueAddTargets = if doc.is_null() {
                    ValueAddTargets::default()
                } else {
                    serde_json::from_value(doc).map_err(|e| t.err(format!("{what}: {e}")))?
                };
                targets.extend(more.targets);
            }
            let mut value = p.value.trim().to_string();
            if value.is_empty() {
                value = t
                    .dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
            }
            value_add(acc, &value, &targets).map_err(|m| t.err(format!("{kind}: {m}")))?;
        }
        other => {
            return Err(Error::Refused {
                kustomization: t.file.clone(),
                what: format!("transformer plugin kind {other}"),
            });
        }
    }
    Ok(())
}

/// kustomize's ValueAddTransformer: set `value` at each target's field path (created when
/// missing) in the resources its selector picks (all without one); with a file path position,
/// insert it into the path the field holds instead.
fn value_add(acc: &mut Acc, value: &str, targets: &[ValueAddTarget]) -> Result<(), String> {
    if targets.is_empty() {
        return Err("must specify at least one target".into());
    }
    for target in targets {
        if target.field_path.is_empty() {
            return Err("fieldPath cannot be empty".into());
        }
        if target.file_path_position < 0 {
            return Err(format!(
                "value of FilePathPosition ({}) cannot be negative",
                target.file_path_position
            ));
        }
    }
    for target in targets {
        let sel = match &target.selector {
            Some(s) => Some(crate::select::Compiled::new(s).map_err(|e| e.to_string())?),
            None => None,
        };
        let path = crate::fieldspec::split_path(&target.field_path);
        for r in acc.res.iter_mut() {
            if sel.as_ref().is_some_and(|s| !s.matches(r)) {
                continue;
            }
            let mut cur: &mut Map<String, Value> = &mut r.obj;
            let Some((last, init)) = path.split_last() else {
                continue;
            };
            for field in init {
                let next = cur
                    .entry(field.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if next.is_null() {
                    *next = Value::Object(Map::new());
                }
                cur = match next {
                    Value::Object(m) => m,
                    _ => return Err(format!("{} is not a map in {}", field, target.field_path)),
                };
            }
            let old = match cur.get(last) {
                None | Some(Value::Null) => String::new(),
                Some(Value::Object(_) | Value::Array(_)) => {
                    return Err(format!("{} is not a scalar", target.field_path));
                }
                Some(v) => scalar_string(v),
            };
            let new = if target.file_path_position > 0 {
                insert_path_part(&old, target.file_path_position as usize - 1, value)
            } else {
                value.to_string()
            };
            cur.insert(last.clone(), Value::String(new));
        }
    }
    Ok(())
}

/// Insert `part` into the slash path `path` at position `pos` (past the end appends), keeping
/// a leading slash.
fn insert_path_part(path: &str, pos: usize, part: &str) -> String {
    let (abs, rest) = match path.strip_prefix('/') {
        Some(r) => (true, r),
        None => (false, path),
    };
    let mut parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    parts.insert(pos.min(parts.len()), part);
    let joined = parts.join("/");
    if abs { format!("/{joined}") } else { joined }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_part_goes_in_at_its_position_keeping_a_leading_slash() {
        let cases = [
            ("", 0, "PEACH"),
            ("/", 0, "/PEACH"),
            ("pie", 0, "PEACH/pie"),
            ("/pie", 0, "/PEACH/pie"),
            ("raw", 1, "raw/PEACH"),
            ("/raw", 9, "/raw/PEACH"),
            ("a/nice/warm/pie", 3, "a/nice/warm/PEACH/pie"),
        ];
        for (path, pos, want) in cases {
            assert_eq!(
                insert_path_part(path, pos, "PEACH"),
                want,
                "{path} at {pos}"
            );
        }
    }

    #[test]
    fn inline_configs_run_before_files() {
        let entries: Vec<String> = ["a.yaml", "kind: X\n", "", "b", "{kind: Y}"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let order: Vec<&str> = in_kustomize_order(&entries).map(String::as_str).collect();
        assert_eq!(order, ["kind: X\n", "{kind: Y}", "a.yaml", "b"]);
    }
}
