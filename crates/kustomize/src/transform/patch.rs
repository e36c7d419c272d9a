//! kustomize's patch transformers: strategic merge patches (by the id they name, or on every
//! target a selector picks) and JSON 6902 patches.

use super::{patch_text, restore};
use crate::build::{Acc, Builder, Target, parse_resources};
use crate::error::{Error, PatchError, TransformError};
use crate::kustomization::{Patch, Selector};
use crate::resource::Resource;
use crate::select::Compiled;
use crate::{jsonpatch, smp};
use indexmap::IndexMap;
use serde_json::Value;

/// A `patches` entry (or `PatchTransformer` config, as `field` says): its text from the file or
/// inline.
pub(super) fn apply_entry(
    b: &Builder<'_>,
    t: &Target,
    acc: &mut Acc,
    p: &Patch,
    field: &str,
) -> Result<(), Error> {
    let text = patch_text(b, t, p, field)?;
    let source = if p.path.is_empty() {
        "inline patch".to_string()
    } else {
        format!("patch {}", p.path)
    };
    apply(acc, &text, p.target.as_ref(), &p.options).map_err(|e| match e {
        TransformError::Yaml(y) => t.yaml_err(source, y),
        other => t.transform_err(source)(other),
    })
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
fn apply(
    acc: &mut Acc,
    text: &str,
    target: Option<&Selector>,
    options: &IndexMap<String, bool>,
) -> Result<(), TransformError> {
    if looks_like_json_patch(text) {
        let target = target.ok_or(TransformError::JsonPatchWithoutTarget)?;
        return json(acc, text, target);
    }
    let Some(sel) = target else {
        return by_id(acc, text, options);
    };
    let schema = acc.schema.clone();
    let patches = parse_resources(text)?;
    let [patch] = patches.as_slice() else {
        return Err(TransformError::ManyPatchesWithTarget);
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
        if !merge(&mut acc.res[*i], &Value::Object(p), options, &schema)? {
            acc.res.remove(*i);
        }
    }
    Ok(())
}

/// Apply strategic merge patches to the resources whose id they name.
pub(super) fn by_id(
    acc: &mut Acc,
    text: &str,
    options: &IndexMap<String, bool>,
) -> Result<(), TransformError> {
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
            [] => return Err(TransformError::NoMatch(id.to_string())),
            _ => return Err(TransformError::ManyMatches(id.to_string())),
        };
        if !merge(&mut acc.res[i], &Value::Object(patch), options, &schema)? {
            acc.res.remove(i);
        }
    }
    Ok(())
}

/// Merge one patch into one resource; `false` when the patch deleted it.
fn merge(
    r: &mut Resource,
    patch: &Value,
    options: &IndexMap<String, bool>,
    schema: &crate::schema::SchemaState,
) -> Result<bool, TransformError> {
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
    let (custom, builtin) = schema.for_merge();
    let merged = smp::apply(
        &obj,
        patch,
        (&gvk.group, &gvk.version, &gvk.kind),
        custom.as_deref(),
        builtin,
    )
    .map_err(|source| TransformError::Patch {
        object: r.id().to_string(),
        source: Box::new(source),
    })?;
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
pub(super) fn json(acc: &mut Acc, text: &str, target: &Selector) -> Result<(), TransformError> {
    let ops = jsonpatch::parse(text)?;
    let sel = Compiled::new(target)?;
    for r in acc.res.iter_mut() {
        if !sel.matches(r) {
            continue;
        }
        r.store_previous_id();
        // kustomize patches objects that carry its internal annotations, so an object always
        // has `metadata.annotations` for a patch to add to; an empty map left over goes away.
        let added = ensure_annotations(&mut r.obj);
        let mut doc = Value::Object(std::mem::take(&mut r.obj));
        let result = jsonpatch::apply(&mut doc, &ops);
        r.obj = restore(doc);
        if added {
            drop_empty_annotations(&mut r.obj);
        }
        result.map_err(|source| match source {
            PatchError::Limit(l) => TransformError::Limit(l),
            source => TransformError::Patch {
                object: r.id().to_string(),
                source: Box::new(source),
            },
        })?;
    }
    Ok(())
}

/// Give an object an empty `metadata.annotations` map when it has none; `true` if added.
fn ensure_annotations(obj: &mut serde_json::Map<String, Value>) -> bool {
    match obj.get_mut("metadata") {
        Some(Value::Object(md)) if !md.contains_key("annotations") => {
            md.insert("annotations".into(), Value::Object(serde_json::Map::new()));
            true
        }
        _ => false,
    }
}

/// Remove `metadata.annotations` when it is an empty map.
fn drop_empty_annotations(obj: &mut serde_json::Map<String, Value>) {
    if let Some(Value::Object(md)) = obj.get_mut("metadata")
        && md
            .get("annotations")
            .is_some_and(|a| a.as_object().is_some_and(serde_json::Map::is_empty))
    {
        md.remove("annotations");
    }
}
