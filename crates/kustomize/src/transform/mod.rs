//! The built-in transformers, one module each, run in kustomize's order by [`run_builtin`]; and
//! built-in plugin configurations given in `transformers:` / `generators:` ([`plugins`]).

mod images;
mod labels;
mod names;
mod namespace;
mod patch;
mod plugins;
mod replicas;

pub(crate) use plugins::{run_generator_plugins, run_plugins};

use crate::build::{Acc, Builder, Target};
use crate::error::Error;
use crate::kustomization::{FieldSpec, Patch, ReplacementField};
use crate::replacement;
use indexmap::IndexMap;
use serde_json::{Map, Value};

/// Run the transformers a kustomization configures through its fields.
pub(crate) fn run_builtin(b: &Builder<'_>, t: &Target, acc: &mut Acc) -> Result<(), Error> {
    let k = &t.k;
    for p in &k.patches_strategic_merge {
        b.check_deadline(t)?;
        let text = if is_inline(p) {
            p.clone()
        } else {
            load(b, t, p)?
        };
        patch::by_id(acc, &text, &IndexMap::new())
            .map_err(t.transform_err("patchesStrategicMerge"))?;
    }
    if !k.patches_strategic_merge.is_empty() {
        mark(acc, t, "PatchStrategicMergeTransformer");
    }
    for p in &k.patches {
        b.check_deadline(t)?;
        patch::apply_entry(b, t, acc, p, "patches")?;
        mark(acc, t, "PatchTransformer");
    }
    b.check_deadline(t)?;
    if !k.namespace.is_empty() {
        let specs = acc.config.namespace.clone();
        namespace::set(acc, &k.namespace, &specs, false, "").map_err(t.transform_err(""))?;
        mark(acc, t, "NamespaceTransformer");
    }
    if !k.name_prefix.is_empty() || !k.name_suffix.is_empty() {
        let (p, s) = (
            acc.config.name_prefix.clone(),
            acc.config.name_suffix.clone(),
        );
        if !k.name_prefix.is_empty() {
            names::prefix_suffix(acc, &k.name_prefix, "", &p);
            mark(acc, t, "PrefixTransformer");
        }
        if !k.name_suffix.is_empty() {
            names::prefix_suffix(acc, "", &k.name_suffix, &s);
            mark(acc, t, "SuffixTransformer");
        }
    }
    for l in &k.labels {
        let mut specs = l.fields.clone();
        merge_specs(&mut specs, &acc.config.labels);
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
        labels::set_entries(acc, &l.pairs, &specs).map_err(t.transform_err("labels"))?;
        mark(acc, t, "LabelTransformer");
    }
    if !k.common_labels.is_empty() || !k.labels.is_empty() {
        let specs = acc.config.common_labels.clone();
        labels::set_entries(acc, &k.common_labels, &specs)
            .map_err(t.transform_err("commonLabels"))?;
        mark(acc, t, "LabelTransformer");
    }
    if !k.common_annotations.is_empty() {
        let specs = acc.config.common_annotations.clone();
        labels::set_entries(acc, &k.common_annotations, &specs)
            .map_err(t.transform_err("commonAnnotations"))?;
        mark(acc, t, "AnnotationsTransformer");
    }
    for p in &k.patches_json6902 {
        b.check_deadline(t)?;
        let text = patch_text(b, t, p, "patchesJson6902")?;
        let target = p
            .target
            .as_ref()
            .ok_or_else(|| t.err("patchesJson6902: a target is required"))?;
        patch::json(acc, &text, target).map_err(t.transform_err("patchesJson6902"))?;
        mark(acc, t, "PatchJson6902Transformer");
    }
    for r in &k.replicas {
        let specs = acc.config.replicas.clone();
        replicas::set(acc, r, &specs).map_err(t.transform_err(""))?;
        mark(acc, t, "ReplicaCountTransformer");
    }
    for i in &k.images {
        let specs = acc.config.images.clone();
        images::set(acc, i, &specs).map_err(t.transform_err("images"))?;
        mark(acc, t, "ImageTagTransformer");
    }
    if !k.replacements.is_empty() {
        b.check_deadline(t)?;
        let list = load_replacements(b, t, &k.replacements)?;
        replacement::apply(&mut acc.res, &list)
            .map_err(|e| t.transform_err("replacements")(e.into()))?;
        mark(acc, t, "ReplacementTransformer");
    }
    Ok(())
}

/// With `buildMetadata: [transformerAnnotations]`, record that a built-in transformer ran on
/// every resource present (as kustomize does), or make it the origin of those without one.
fn mark(acc: &mut Acc, t: &Target, kind: &str) {
    let Some(origin) = &t.origin else {
        return;
    };
    let configured_in = crate::build::join_origin(origin, &t.file_name);
    mark_as(acc, &configured_by(&configured_in, kind, None));
}

/// kustomize's record of the builtin transformer or generator that made or changed an object:
/// the file configuring it, its kind, and its name when a plugin configuration gave one.
pub(crate) fn configured_by(configured_in: &str, kind: &str, name: Option<&str>) -> String {
    let mut s = format!(
        "configuredIn: {configured_in}\nconfiguredBy:\n  apiVersion: builtin\n  kind: {kind}\n"
    );
    if let Some(n) = name {
        s.push_str(&format!("  name: {n}\n"));
    }
    s
}

/// Record a transformer on every resource present (with `transformerAnnotations`).
fn mark_as(acc: &mut Acc, record: &str) {
    if !acc.track_transformers {
        return;
    }
    let record = record.to_string();
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

/// Whether a patch or plugin entry is inline text rather than a file name.
fn is_inline(p: &str) -> bool {
    p.contains('\n') || p.trim_start().starts_with('{')
}

/// Read a file the kustomization names, from its own directory.
fn load(b: &Builder<'_>, t: &Target, rel: &str) -> Result<String, Error> {
    let path = b.resolve_local_file(t, rel)?;
    b.read_text(t, &path)
}

/// A patch's text, from its file or inline; `field` names where the patch was given.
fn patch_text(b: &Builder<'_>, t: &Target, p: &Patch, field: &str) -> Result<String, Error> {
    match (p.path.is_empty(), p.patch.trim().is_empty()) {
        (true, true) => Err(t.err(format!(
            "{field}: a patch must specify one of patch and path"
        ))),
        (false, false) => Err(t.err(format!(
            "{field}: patch and path can't be set at the same time"
        ))),
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
        let what = format!("replacements file {}", f.path);
        for mut doc in crate::yaml::parse_documents(&text, crate::yaml::ScalarMode::Go)
            .map_err(|e| t.yaml_err(what.clone(), e))?
        {
            // kustomize decodes the file by Go's rules, unknown fields ignored.
            let shape = if doc.is_array() {
                crate::godecode::REPLACEMENTS
            } else {
                crate::godecode::Shape::Struct(&crate::godecode::REPLACEMENT_FIELD)
            };
            crate::godecode::normalize_lenient(&mut doc, shape)
                .map_err(|e| t.err(format!("{what}: {e}")))?;
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

/// Put an object back into its resource after a transformer worked on it as a JSON value.
fn restore(doc: Value) -> Map<String, Value> {
    match doc {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}
