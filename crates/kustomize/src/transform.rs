//! The built-in transformers, run in kustomize's order, and built-in plugin configurations given
//! in `transformers:` / `generators:`.

use crate::build::{Acc, Builder, Target, parse_resources};
use crate::error::Error;
use crate::fieldspec::{self, Create};
use crate::kustomization::{
    FieldSpec, GeneratorArgs, Image, Patch, ReplacementField, Replica, Selector,
};
use crate::resource::{Gvk, Resource, scalar_string};
use crate::select::Compiled;
use crate::{jsonpatch, replacement, smp};
use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::{Map, Value};

/// Run the transformers a kustomization configures through its fields.
pub(crate) fn run_builtin(b: &Builder<'_>, t: &Target, acc: &mut Acc) -> Result<(), Error> {
    let k = &t.k;
    for p in &k.patches_strategic_merge {
        let text = if is_inline(p) {
            p.clone()
        } else {
            load(b, t, p)?
        };
        patch_by_id(acc, &text, &IndexMap::new())
            .map_err(|m| t.err(format!("patchesStrategicMerge: {m}")))?;
    }
    if !k.patches_strategic_merge.is_empty() {
        mark(acc, t, "PatchStrategicMergeTransformer");
    }
    for p in &k.patches {
        apply_patch_entry(b, t, acc, p)?;
        mark(acc, t, "PatchTransformer");
    }
    if !k.namespace.is_empty() {
        let specs = acc.config.namespace.clone();
        namespace(acc, &k.namespace, &specs, false, "").map_err(|m| t.err(m))?;
        mark(acc, t, "NamespaceTransformer");
    }
    if !k.name_prefix.is_empty() || !k.name_suffix.is_empty() {
        let (p, s) = (
            acc.config.name_prefix.clone(),
            acc.config.name_suffix.clone(),
        );
        if !k.name_prefix.is_empty() {
            prefix_suffix(acc, &k.name_prefix, "", &p);
            mark(acc, t, "PrefixTransformer");
        }
        if !k.name_suffix.is_empty() {
            prefix_suffix(acc, "", &k.name_suffix, &s);
            mark(acc, t, "SuffixTransformer");
        }
    }
    for l in &k.labels {
        let mut specs = l.fields.clone();
        merge_specs(&mut specs, &acc.config.labels_specs());
        if l.include_selectors {
            merge_specs(&mut specs, &acc.config.common_labels);
        } else {
            if l.include_templates {
                merge_specs(&mut specs, &acc.config.template_labels);
            }
            merge_specs(
                &mut specs,
                &[FieldSpec {
                    path: "metadata/labels".into(),
                    create: true,
                    ..Default::default()
                }],
            );
        }
        set_entries(acc, &l.pairs, &specs).map_err(|m| t.err(format!("labels: {m}")))?;
        mark(acc, t, "LabelTransformer");
    }
    if !k.common_labels.is_empty() || !k.labels.is_empty() {
        let specs = acc.config.common_labels.clone();
        set_entries(acc, &k.common_labels, &specs)
            .map_err(|m| t.err(format!("commonLabels: {m}")))?;
        mark(acc, t, "LabelTransformer");
    }
    if !k.common_annotations.is_empty() {
        let specs = acc.config.common_annotations.clone();
        set_entries(acc, &k.common_annotations, &specs)
            .map_err(|m| t.err(format!("commonAnnotations: {m}")))?;
        mark(acc, t, "AnnotationsTransformer");
    }
    for p in &k.patches_json6902 {
        let text = patch_text(b, t, p)?;
        let target = p
            .target
            .as_ref()
            .ok_or_else(|| t.err("patchesJson6902: a target is required"))?;
        patch_json(acc, &text, target).map_err(|m| t.err(format!("patchesJson6902: {m}")))?;
        mark(acc, t, "PatchJson6902Transformer");
    }
    for r in &k.replicas {
        let specs = acc.config.replicas.clone();
        replicas(acc, r, &specs).map_err(|m| t.err(m))?;
        mark(acc, t, "ReplicaCountTransformer");
    }
    for i in &k.images {
        let specs = acc.config.images.clone();
        images(acc, i, &specs).map_err(|m| t.err(format!("images: {m}")))?;
        mark(acc, t, "ImageTagTransformer");
    }
    if !k.replacements.is_empty() {
        let list = load_replacements(b, t, &k.replacements)?;
        replacement::apply(&mut acc.res, &list).map_err(|m| t.err(format!("replacements: {m}")))?;
        mark(acc, t, "ReplacementTransformer");
    }
    Ok(())
}

/// With `buildMetadata: [transformerAnnotations]`, record that a built-in transformer ran on
/// every resource present (as kustomize does), or make it the origin of those without one.
fn mark(acc: &mut Acc, t: &Target, kind: &str) {
    let (true, Some(origin)) = (acc.track_transformers, &t.origin) else {
        return;
    };
    let record = format!(
        "configuredIn: {}\nconfiguredBy:\n  apiVersion: builtin\n  kind: {kind}\n",
        crate::build::join_origin(origin, &t.file_name)
    );
    for r in acc.res.iter_mut() {
        if r.origin.is_none() {
            r.origin = Some(record.clone());
        } else {
            r.transformations.push(record.clone());
        }
    }
}

fn merge_specs(into: &mut Vec<FieldSpec>, from: &[FieldSpec]) {
    for f in from {
        if !into.iter().any(|e| {
            e.path == f.path && e.group == f.group && e.version == f.version && e.kind == f.kind
        }) {
            into.push(f.clone());
        }
    }
}

impl crate::config::TransformerConfig {
    fn labels_specs(&self) -> Vec<FieldSpec> {
        self.labels.clone()
    }
}

fn is_inline(p: &str) -> bool {
    p.contains('\n') || p.trim_start().starts_with('{')
}

fn load(b: &Builder<'_>, t: &Target, rel: &str) -> Result<String, Error> {
    let path = b.resolve_local_file(t, rel)?;
    b.read_text(t, &path)
}

fn patch_text(b: &Builder<'_>, t: &Target, p: &Patch) -> Result<String, Error> {
    match (p.path.is_empty(), p.patch.trim().is_empty()) {
        (true, true) => Err(t.err("a patch must specify one of patch and path")),
        (false, false) => Err(t.err("patch and path can't be set at the same time")),
        (false, true) => load(b, t, &p.path),
        (true, false) => Ok(p.patch.clone()),
    }
}

fn load_replacements(
    b: &Builder<'_>,
    t: &Target,
    fields: &[ReplacementField],
) -> Result<Vec<ReplacementField>, Error> {
    let mut out = Vec::new();
    for f in fields {
        if f.path.is_empty() {
            out.push(f.clone());
            continue;
        }
        let text = load(b, t, &f.path)?;
        for doc in crate::yaml::parse_documents(&text, crate::yaml::ScalarMode::Text)
            .map_err(|e| t.err(e.to_string()))?
        {
            let list = match doc {
                Value::Array(items) => items,
                Value::Null => continue,
                other => vec![other],
            };
            for item in list {
                let r: ReplacementField = serde_json::from_value(item)
                    .map_err(|e| t.err(format!("replacements file {}: {e}", f.path)))?;
                out.push(r);
            }
        }
    }
    Ok(out)
}

fn apply_patch_entry(b: &Builder<'_>, t: &Target, acc: &mut Acc, p: &Patch) -> Result<(), Error> {
    let text = patch_text(b, t, p)?;
    let source = if p.path.is_empty() {
        "inline patch".to_string()
    } else {
        format!("patch {}", p.path)
    };
    apply_patch(acc, &text, p.target.as_ref(), &p.options)
        .map_err(|m| t.err(format!("{source}: {m}")))
}

fn looks_like_json_patch(text: &str) -> bool {
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        return true;
    }
    matches!(
        crate::yaml::parse_documents(text, crate::yaml::ScalarMode::Typed)
            .ok()
            .and_then(|d| d.into_iter().next()),
        Some(Value::Array(_))
    )
}

/// A `patches` entry: strategic merge or JSON 6902, with or without a target.
pub(crate) fn apply_patch(
    acc: &mut Acc,
    text: &str,
    target: Option<&Selector>,
    options: &IndexMap<String, bool>,
) -> Result<(), String> {
    if looks_like_json_patch(text) {
        let target = target.ok_or("must specify a target for JSON patch")?;
        return patch_json(acc, text, target);
    }
    match target {
        None => patch_by_id(acc, text, options),
        Some(sel) => {
            let schema = acc.schema.clone();
            let patches = parse_resources(text)?;
            let [patch] = patches.as_slice() else {
                return Err("Multiple Strategic-Merge Patches in one `patches` entry is not allowed to set `patches.target` field".into());
            };
            let sel = Compiled::new(sel)?;
            let selected: Vec<usize> = (0..acc.res.len())
                .filter(|i| sel.matches(&acc.res[*i]))
                .collect();
            for i in selected.iter().rev() {
                let mut p = patch.clone();
                let res = &acc.res[*i];
                p.insert(
                    "apiVersion".into(),
                    Value::String(res.api_version().to_string()),
                );
                if !p.contains_key("kind") {
                    p.insert("kind".into(), Value::String(res.kind().to_string()));
                }
                if !apply_sm(
                    &mut acc.res[*i],
                    &Value::Object(p),
                    options,
                    schema.as_deref(),
                )? {
                    acc.res.remove(*i);
                }
            }
            Ok(())
        }
    }
}

/// Apply strategic merge patches to the resources whose id they name.
fn patch_by_id(acc: &mut Acc, text: &str, options: &IndexMap<String, bool>) -> Result<(), String> {
    let schema = acc.schema.clone();
    for patch in parse_resources(text)? {
        let pr = Resource::new(patch.clone());
        let id = pr.id();
        let found: Vec<usize> = (0..acc.res.len())
            .filter(|i| {
                let r = &acc.res[*i];
                r.has_id(&id) || r.previous_ids().iter().any(|p| p.same_as(&id))
            })
            .collect();
        let i = match found.as_slice() {
            [i] => *i,
            [] => {
                return Err(format!(
                    "no resource matches strategic merge patch \"{id}\""
                ));
            }
            _ => {
                return Err(format!(
                    "multiple resources match strategic merge patch \"{id}\""
                ));
            }
        };
        if !apply_sm(
            &mut acc.res[i],
            &Value::Object(patch),
            options,
            schema.as_deref(),
        )? {
            acc.res.remove(i);
        }
    }
    Ok(())
}

/// Merge one patch into one resource; `false` when the patch deleted it.
fn apply_sm(
    r: &mut Resource,
    patch: &Value,
    options: &IndexMap<String, bool>,
    acc_schema: Option<&crate::schema::CustomSchema>,
) -> Result<bool, String> {
    let allow_name = options.get("allowNameChange").copied().unwrap_or(false);
    let allow_kind = options.get("allowKindChange").copied().unwrap_or(false);
    let (name, ns, kind) = (
        r.name().to_string(),
        r.namespace().to_string(),
        r.kind().to_string(),
    );
    if allow_name || allow_kind {
        r.store_previous_id();
    }
    let gvk = r.gvk();
    let obj = Value::Object(r.obj.clone());
    let merged = smp::apply(&obj, patch, &gvk.group, &gvk.version, &gvk.kind, acc_schema)
        .map_err(|m| format!("{m} (patching {})", r.id()))?;
    let Some(Value::Object(m)) = merged else {
        return Ok(false);
    };
    if m.is_empty() {
        return Ok(false);
    }
    r.obj = m;
    if !allow_kind {
        r.obj.insert("kind".into(), Value::String(kind));
    }
    if !allow_name {
        r.set_name(&name);
    }
    if ns.is_empty() {
        if let Some(Value::Object(md)) = r.obj.get_mut("metadata") {
            md.remove("namespace");
        }
    } else {
        r.set_namespace(&ns);
    }
    Ok(true)
}

/// Apply a JSON 6902 patch to every selected resource.
pub(crate) fn patch_json(acc: &mut Acc, text: &str, target: &Selector) -> Result<(), String> {
    let ops = jsonpatch::parse(text)?;
    let sel = Compiled::new(target)?;
    for r in acc.res.iter_mut() {
        if !sel.matches(r) {
            continue;
        }
        r.store_previous_id();
        let mut doc = Value::Object(std::mem::take(&mut r.obj));
        let result = jsonpatch::apply(&mut doc, &ops);
        r.obj = match doc {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        result.map_err(|m| format!("{m} (patching {})", r.id()))?;
    }
    Ok(())
}

/// kustomize's namespace transformer.
pub(crate) fn namespace(
    acc: &mut Acc,
    ns: &str,
    specs: &[FieldSpec],
    unset_only: bool,
    role_binding_mode: &str,
) -> Result<(), String> {
    let set = |v: &mut Value| -> Result<(), String> {
        if unset_only && !scalar_string(v).is_empty() {
            return Ok(());
        }
        *v = Value::String(ns.to_string());
        Ok(())
    };
    for i in 0..acc.res.len() {
        let r = &mut acc.res[i];
        if r.obj.is_empty() {
            continue;
        }
        r.store_previous_id();
        let gvk = r.gvk();
        let mut doc = Value::Object(std::mem::take(&mut r.obj));
        if !gvk.is_cluster_scoped() {
            let path = fieldspec::split_path("metadata/namespace");
            fieldspec::visit(&mut doc, &path, true, Create::Scalar, &mut { set })?;
        }
        let binding = gvk.kind == "RoleBinding" || gvk.kind == "ClusterRoleBinding";
        if binding
            && role_binding_mode != "none"
            && let Some(Value::Array(subjects)) = doc.get_mut("subjects")
        {
            for s in subjects.iter_mut() {
                let hit = if role_binding_mode == "allServiceAccounts" {
                    s.get("kind").and_then(Value::as_str) == Some("ServiceAccount")
                } else {
                    s.get("name").and_then(Value::as_str) == Some("default")
                };
                if hit && let Value::Object(m) = s {
                    let cur = m.entry("namespace").or_insert(Value::String(String::new()));
                    set(cur)?;
                }
            }
        }
        let api_version = doc
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        for fs in specs {
            if fs.path == "metadata/namespace"
                || (fs.path == "metadata/name" && api_version != "v1")
            {
                continue;
            }
            if binding && fs.path == "subjects/namespace" {
                continue;
            }
            if !fs.applies_to(&gvk) {
                continue;
            }
            let path = fieldspec::split_path(&fs.path);
            fieldspec::visit(&mut doc, &path, fs.create, Create::Scalar, &mut { set })
                .map_err(|m| format!("namespace transformation failed: {m}"))?;
        }
        r.obj = match doc {
            Value::Object(m) => m,
            _ => Map::new(),
        };
    }
    let mut seen = std::collections::HashSet::new();
    for r in &acc.res {
        let id = r.id();
        let key = format!("{}|{}|{}", id.gvk, id.effective_namespace(), id.name);
        if !seen.insert(key) {
            return Err(format!(
                "namespace transformation produces ID conflict: {id}"
            ));
        }
    }
    Ok(())
}

fn org_gvk(r: &Resource) -> Gvk {
    r.org_id().gvk
}

/// kustomize's prefix and suffix transformers.
pub(crate) fn prefix_suffix(acc: &mut Acc, prefix: &str, suffix: &str, specs: &[FieldSpec]) {
    for r in acc.res.iter_mut() {
        let org = org_gvk(r);
        let skip = org.kind == "CustomResourceDefinition"
            || org.kind == "Namespace"
            || (org.group == "apiregistration.k8s.io" && org.kind == "APIService");
        if skip {
            continue;
        }
        for fs in specs {
            if !fs.applies_to(&org) {
                continue;
            }
            if fs.path == "metadata/name" {
                if !prefix.is_empty() {
                    r.prefixes.push(prefix.to_string());
                }
                if !suffix.is_empty() {
                    r.suffixes.push(suffix.to_string());
                }
                if !prefix.is_empty() || !suffix.is_empty() {
                    r.store_previous_id();
                }
            }
            let path = fieldspec::split_path(&fs.path);
            let mut doc = Value::Object(std::mem::take(&mut r.obj));
            let _ = fieldspec::visit(&mut doc, &path, false, Create::Nothing, &mut |v| {
                if let Value::String(s) = v {
                    *s = format!("{prefix}{s}{suffix}");
                }
                Ok(())
            });
            r.obj = match doc {
                Value::Object(m) => m,
                _ => Map::new(),
            };
        }
    }
}

/// Set map entries (labels or annotations) at the fields the specs name.
pub(crate) fn set_entries(
    acc: &mut Acc,
    entries: &IndexMap<String, String>,
    specs: &[FieldSpec],
) -> Result<(), String> {
    if entries.is_empty() {
        return Ok(());
    }
    for r in acc.res.iter_mut() {
        let gvk = r.gvk();
        let mut doc = Value::Object(std::mem::take(&mut r.obj));
        let mut result = Ok(());
        for fs in specs {
            if !fs.applies_to(&gvk) {
                continue;
            }
            let path = fieldspec::split_path(&fs.path);
            result = fieldspec::visit(&mut doc, &path, fs.create, Create::Map, &mut |v| {
                if v.is_null() {
                    *v = Value::Object(Map::new());
                }
                let Value::Object(m) = v else {
                    return Err(format!("expected a map at {}", fs.path));
                };
                for (k, val) in entries {
                    m.insert(k.clone(), Value::String(val.clone()));
                }
                Ok(())
            });
            if result.is_err() {
                break;
            }
        }
        r.obj = match doc {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        result?;
    }
    Ok(())
}

/// kustomize's replica count transformer.
pub(crate) fn replicas(acc: &mut Acc, rep: &Replica, specs: &[FieldSpec]) -> Result<(), String> {
    let mut found = false;
    for fs in specs {
        for r in acc.res.iter_mut() {
            let ids = std::iter::once(r.id()).chain(r.previous_ids());
            let hit = ids.into_iter().any(|id| {
                id.name == rep.name && id.gvk.is_selected_by(&fs.group, &fs.version, &fs.kind)
            });
            if !hit {
                continue;
            }
            found = true;
            let path = fieldspec::split_path(&fs.path);
            let mut doc = Value::Object(std::mem::take(&mut r.obj));
            let res = fieldspec::visit(&mut doc, &path, fs.create, Create::Scalar, &mut |v| {
                *v = Value::from(rep.count);
                Ok(())
            });
            r.obj = match doc {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            res?;
        }
    }
    if !found {
        let gvks: Vec<String> = specs
            .iter()
            .map(|f| {
                Gvk {
                    group: f.group.clone(),
                    version: f.version.clone(),
                    kind: f.kind.clone(),
                }
                .to_string()
            })
            .collect();
        return Err(format!(
            "resource with name {} does not match a config with the following GVK [{}]",
            rep.name,
            gvks.join(" ")
        ));
    }
    Ok(())
}

/// Split an image reference into name, tag and digest the way kustomize does.
fn split_image(s: &str) -> (String, String, String) {
    let slash = s.find('/').filter(|i| *i > 0).unwrap_or(0);
    let search = &s[slash..];
    let at = search.find('@');
    let colon = search.find(':');
    match (colon, at) {
        (None, None) => (s.to_string(), String::new(), String::new()),
        (c, Some(a)) if c.is_none_or(|c| a < c) => {
            let a = a + slash;
            (s[..a].to_string(), String::new(), s[a + 1..].to_string())
        }
        (Some(c), Some(a)) => {
            let (c, a) = (c + slash, a + slash);
            (
                s[..c].to_string(),
                s[c + 1..a].to_string(),
                s[a + 1..].to_string(),
            )
        }
        (Some(c), None) => {
            let c = c + slash;
            (s[..c].to_string(), s[c + 1..].to_string(), String::new())
        }
        (None, Some(_)) => (s.to_string(), String::new(), String::new()),
    }
}

fn update_image(value: &mut Value, img: &Image, matcher: &regex::Regex) -> Result<(), String> {
    let Value::String(s) = value else {
        return Err("image must be a string".to_string());
    };
    if !matcher.is_match(s) {
        return Ok(());
    }
    let (mut name, mut tag, mut digest) = split_image(s);
    if !img.new_name.is_empty() {
        name = img.new_name.clone();
    }
    if !img.new_tag.is_empty() && !img.digest.is_empty() {
        tag = img.new_tag.clone();
        digest = img.digest.clone();
    } else if !img.new_tag.is_empty() {
        tag = img.new_tag.clone();
        digest.clear();
    } else if !img.digest.is_empty() {
        tag.clear();
        digest = img.digest.clone();
    } else if !img.tag_suffix.is_empty() {
        tag.push_str(&img.tag_suffix);
        digest.clear();
    }
    if !tag.is_empty() {
        name = format!("{name}:{tag}");
    }
    if !digest.is_empty() {
        name = format!("{name}@{digest}");
    }
    *s = name;
    Ok(())
}

fn walk_containers(v: &mut Value, img: &Image, re: &regex::Regex) -> Result<(), String> {
    match v {
        Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                walk_containers(child, img, re)?;
                if (k == "containers" || k == "initContainers")
                    && let Value::Array(items) = child
                {
                    for item in items {
                        if let Some(image) = item.get_mut("image") {
                            update_image(image, img, re)?;
                        }
                    }
                }
            }
            Ok(())
        }
        Value::Array(items) => items
            .iter_mut()
            .try_for_each(|i| walk_containers(i, img, re)),
        _ => Ok(()),
    }
}

/// kustomize's image transformer: every `containers`/`initContainers` list, then the specs.
pub(crate) fn images(acc: &mut Acc, img: &Image, specs: &[FieldSpec]) -> Result<(), String> {
    let re = regex::Regex::new(&format!(
        "^{}(:[a-zA-Z0-9_.{{}}-]*)?(@sha256:[a-zA-Z0-9_.{{}}-]*)?$",
        img.name
    ))
    .map_err(|e| e.to_string())?;
    for r in acc.res.iter_mut() {
        if r.kind() == "CustomResourceDefinition" {
            continue;
        }
        let gvk = r.gvk();
        let mut doc = Value::Object(std::mem::take(&mut r.obj));
        let mut res = walk_containers(&mut doc, img, &re);
        for fs in specs {
            if res.is_err() || !fs.applies_to(&gvk) {
                continue;
            }
            let path = fieldspec::split_path(&fs.path);
            res = fieldspec::visit(&mut doc, &path, false, Create::Nothing, &mut |v| {
                update_image(v, img, &re)
            });
        }
        r.obj = match doc {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        res?;
    }
    Ok(())
}

/// Built-in plugin configurations named in `transformers:`.
pub(crate) fn run_plugins(b: &mut Builder<'_>, t: &Target, acc: &mut Acc) -> Result<(), Error> {
    for entry in &t.k.transformers {
        for cfg in plugin_configs(b, t, entry)? {
            transformer_plugin(b, t, acc, &cfg)?;
        }
    }
    Ok(())
}

/// Built-in plugin configurations named in `generators:`.
pub(crate) fn run_generator_plugins(
    b: &Builder<'_>,
    t: &Target,
    acc: &mut Acc,
) -> Result<(), Error> {
    for entry in &t.k.generators {
        for cfg in plugin_configs(b, t, entry)? {
            let kind = cfg
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            check_builtin(t, &cfg)?;
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
            };
            crate::generators::run(b, &st, acc)?;
        }
    }
    Ok(())
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

fn plugin_configs(
    b: &Builder<'_>,
    t: &Target,
    entry: &str,
) -> Result<Vec<Map<String, Value>>, Error> {
    if is_inline(entry) {
        return parse_resources(entry).map_err(|m| t.err(format!("inline plugin config: {m}")));
    }
    if crate::build::is_remote(entry) {
        return Err(Error::Refused {
            kustomization: t.file.clone(),
            what: format!("remote plugin config {entry}"),
        });
    }
    let path = b.fs.resolve(&t.dir, entry).map_err(|e| t.fs_err(e))?;
    if path.is_dir() {
        return Err(Error::Refused {
            kustomization: t.file.clone(),
            what: format!("plugin configs from a kustomization directory ({entry})"),
        });
    }
    let text = b.read_text(t, &path)?;
    parse_resources(&text).map_err(|m| t.err(format!("plugin config {entry}: {m}")))
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
    let wrap = |m: String| t.err(format!("{kind}: {m}"));
    match kind.as_str() {
        "PrefixSuffixTransformer" | "PrefixTransformer" | "SuffixTransformer" => {
            prefix_suffix(acc, &p.prefix, "", &specs);
            prefix_suffix(acc, "", &p.suffix, &specs);
        }
        "LabelTransformer" => set_entries(acc, &str_map(&p.labels), &specs).map_err(wrap)?,
        "AnnotationsTransformer" => {
            set_entries(acc, &str_map(&p.annotations), &specs).map_err(wrap)?
        }
        "NamespaceTransformer" => {
            let ns = md.get("namespace").map(scalar_string).unwrap_or_default();
            let unset_only = p
                .unset_only
                .as_ref()
                .is_some_and(|v| scalar_string(v) == "true");
            if !ns.is_empty() {
                namespace(acc, &ns, &specs, unset_only, &p.set_role_binding_subjects)
                    .map_err(wrap)?;
            }
        }
        "ImageTagTransformer" => {
            let img = p.image_tag.clone().unwrap_or_default();
            images(acc, &img, &specs).map_err(wrap)?;
        }
        "ReplicaCountTransformer" => {
            let rep = p.replica.clone().unwrap_or_default();
            replicas(acc, &rep, &specs).map_err(wrap)?;
        }
        "ReplacementTransformer" => {
            let list = load_replacements(b, t, &p.replacements)?;
            replacement::apply(&mut acc.res, &list).map_err(wrap)?;
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
            apply_patch_entry(b, t, acc, &patch)?;
        }
        "PatchStrategicMergeTransformer" => {
            for path in &p.paths {
                let text = load(b, t, path)?;
                patch_by_id(acc, &text, &IndexMap::new()).map_err(wrap)?;
            }
            if !p.patches.is_empty() {
                patch_by_id(acc, &p.patches, &IndexMap::new()).map_err(wrap)?;
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
                .ok_or_else(|| wrap("a target is required".into()))?;
            patch_json(acc, &text, &target).map_err(wrap)?;
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
