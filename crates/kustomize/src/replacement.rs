//! `replacements`: copy a field of one resource into fields of others.

use crate::error::ReplacementError;
use crate::kustomization::{FieldOptions, ReplacementField, Selector};
use crate::resource::{ResId, Resource, scalar_string};
use crate::select::LabelSelector;
use crate::yaml::resolve_plain;
use serde_json::{Map, Value};

/// Split a dotted field path, keeping `[k=v]` parts (which may hold dots) whole.
pub(crate) fn split_dotted(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0;
    for c in path.chars() {
        match c {
            '[' => {
                depth += 1;
                cur.push(c);
            }
            ']' => {
                depth -= 1;
                cur.push(c);
            }
            '.' if depth == 0 => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn id_selected(id: &ResId, s: &Selector) -> bool {
    id.gvk.is_selected_by(&s.group, &s.version, &s.kind)
        && (s.name.is_empty() || s.name == id.name)
        && (s.namespace.is_empty() || s.namespace == id.namespace)
}

fn ids(r: &Resource) -> Vec<ResId> {
    let mut v = vec![r.id()];
    v.extend(r.previous_ids().into_iter().map(|mut p| {
        if p.namespace == "default" || p.namespace == "_non_namespaceable_" {
            p.namespace.clear();
        }
        p
    }));
    v
}

fn label_match(r: &Resource, s: &Selector) -> Result<bool, ReplacementError> {
    if !s.label_selector.is_empty()
        && !LabelSelector::parse(&s.label_selector)?.matches(&r.labels())
    {
        return Ok(false);
    }
    if !s.annotation_selector.is_empty()
        && !LabelSelector::parse(&s.annotation_selector)?.matches(&r.annotations())
    {
        return Ok(false);
    }
    Ok(true)
}

/// Look a dotted path up (no creation).
fn lookup<'a>(v: &'a Value, parts: &[String]) -> Option<&'a Value> {
    let mut cur = v;
    for p in parts {
        cur = if let Some((k, val)) = element_selector(p) {
            cur.as_array()?.iter().find(|e| elem_matches(e, &k, &val))?
        } else if let Ok(i) = p.parse::<usize>()
            && cur.is_array()
        {
            cur.as_array()?.get(i)?
        } else {
            cur.as_object()?.get(p)?
        };
    }
    Some(cur)
}

fn element_selector(p: &str) -> Option<(String, String)> {
    let inner = p.strip_prefix('[')?.strip_suffix(']')?;
    let (k, v) = inner.split_once('=')?;
    Some((k.to_string(), v.to_string()))
}

fn elem_matches(e: &Value, k: &str, v: &str) -> bool {
    if k.is_empty() {
        return !e.is_object() && !e.is_array() && scalar_string(e) == v;
    }
    e.get(k).is_some_and(|x| scalar_string(x) == v)
}

/// Visit every field `parts` reaches, creating missing ones when `create` is set.
fn visit_targets(
    v: &mut Value,
    parts: &[String],
    create: Option<&Value>,
    f: &mut dyn FnMut(&mut Value) -> Result<(), ReplacementError>,
) -> Result<usize, ReplacementError> {
    let Some((head, rest)) = parts.split_first() else {
        f(v)?;
        return Ok(1);
    };
    if head == "*" {
        let mut n = 0;
        match v {
            Value::Array(items) => {
                for i in items {
                    n += visit_targets(i, rest, create, f)?;
                }
            }
            Value::Object(m) => {
                for (_, i) in m.iter_mut() {
                    n += visit_targets(i, rest, create, f)?;
                }
            }
            _ => {}
        }
        return Ok(n);
    }
    if let Some((k, val)) = element_selector(head) {
        let Value::Array(items) = v else {
            if v.is_null() && create.is_some() {
                *v = Value::Array(Vec::new());
                return visit_targets(v, parts, create, f);
            }
            return Ok(0);
        };
        let mut n = 0;
        for i in items.iter_mut() {
            if elem_matches(i, &k, &val) {
                n += visit_targets(i, rest, create, f)?;
            }
        }
        if n == 0 && create.is_some() {
            let mut e = if k.is_empty() {
                Value::String(val.clone())
            } else {
                let mut m = Map::new();
                m.insert(k.clone(), Value::String(val.clone()));
                Value::Object(m)
            };
            n += visit_targets(&mut e, rest, create, f)?;
            items.push(e);
        }
        return Ok(n);
    }
    if let Ok(i) = head.parse::<usize>()
        && let Value::Array(items) = v
    {
        return match items.get_mut(i) {
            Some(e) => visit_targets(e, rest, create, f),
            None => Ok(0),
        };
    }
    if v.is_null() && create.is_some() {
        *v = Value::Object(Map::new());
    }
    let Value::Object(m) = v else { return Ok(0) };
    if !m.contains_key(head.as_str()) {
        let Some(kind) = create else { return Ok(0) };
        let fresh = if rest.is_empty() {
            match kind {
                Value::Object(_) => Value::Object(Map::new()),
                Value::Array(_) => Value::Array(Vec::new()),
                _ => Value::Null,
            }
        } else if rest[0].starts_with('[') {
            Value::Array(Vec::new())
        } else {
            Value::Object(Map::new())
        };
        m.insert(head.clone(), fresh);
    }
    match m.get_mut(head.as_str()) {
        Some(child) => visit_targets(child, rest, create, f),
        None => Ok(0),
    }
}

fn refine(value: Value, opts: Option<&FieldOptions>) -> Result<Value, ReplacementError> {
    let Some(o) = opts.filter(|o| !o.delimiter.is_empty()) else {
        return Ok(value);
    };
    if value.is_object() || value.is_array() {
        return Err(ReplacementError::DelimiterOnNonScalar);
    }
    let text = scalar_string(&value);
    let parts: Vec<&str> = text.split(o.delimiter.as_str()).collect();
    if o.index < 0 || o.index as usize >= parts.len() {
        return Err(ReplacementError::IndexOutOfBounds {
            index: o.index,
            value: text,
        });
    }
    Ok(Value::String(parts[o.index as usize].to_string()))
}

fn set_value(
    target: &mut Value,
    value: &Value,
    opts: Option<&FieldOptions>,
) -> Result<(), ReplacementError> {
    crate::yaml::charge_copy(value).map_err(ReplacementError::Limit)?;
    let mut value = value.clone();
    if let Some(o) = opts.filter(|o| !o.delimiter.is_empty()) {
        if target.is_object() || target.is_array() {
            return Err(ReplacementError::DelimiterOnNonScalar);
        }
        let cur = scalar_string(target);
        let mut parts: Vec<String> = cur
            .split(o.delimiter.as_str())
            .map(str::to_string)
            .collect();
        let v = scalar_string(&value);
        if o.index < 0 {
            parts.insert(0, v);
        } else if o.index as usize >= parts.len() {
            parts.push(v);
        } else {
            parts[o.index as usize] = v;
        }
        value = Value::String(parts.join(&o.delimiter));
    }
    match (&*target, &value) {
        (_, Value::Object(_) | Value::Array(_)) => *target = value,
        (Value::String(_), v) => *target = Value::String(scalar_string(v)),
        (Value::Number(_) | Value::Bool(_), v) => {
            let text = scalar_string(v);
            let typed = resolve_plain(&text);
            *target = if typed.is_number() || typed.is_boolean() {
                typed
            } else {
                Value::String(text)
            };
        }
        (Value::Null, Value::String(s)) => *target = resolve_plain(s),
        _ => *target = value,
    }
    Ok(())
}

/// Apply replacements in order.
pub(crate) fn apply(
    res: &mut [Resource],
    list: &[ReplacementField],
) -> Result<(), ReplacementError> {
    for r in list {
        let (Some(source), false) = (&r.source, r.targets.is_empty()) else {
            return Err(ReplacementError::Incomplete);
        };
        let sel = Selector {
            group: source.group.clone(),
            version: source.version.clone(),
            kind: source.kind.clone(),
            name: source.name.clone(),
            namespace: source.namespace.clone(),
            ..Default::default()
        };
        let matches: Vec<&Resource> = res
            .iter()
            .filter(|x| ids(x).iter().any(|id| id_selected(id, &sel)))
            .collect();
        let src = match matches.as_slice() {
            [one] => *one,
            [] => return Err(ReplacementError::NothingSelected(describe(&sel))),
            _ => return Err(ReplacementError::ManySelected(describe(&sel))),
        };
        let fp = if source.field_path.is_empty() {
            "metadata.name"
        } else {
            &source.field_path
        };
        // Looked up in place: a copy of the whole source would cost more than the value.
        let parts = split_dotted(fp);
        let found = match parts.split_first() {
            Some((first, rest)) => src.as_value().get(first).and_then(|v| lookup(v, rest)),
            None => None,
        };
        let value = found
            .filter(|v| !(v.is_null() || v.as_object().is_some_and(Map::is_empty)))
            .ok_or_else(|| ReplacementError::SourceFieldMissing {
                field_path: fp.to_string(),
                selector: describe(&sel),
            })?;
        crate::yaml::charge_copy(value).map_err(ReplacementError::Limit)?;
        let value = value.clone();
        let value = refine(value, source.options.as_ref())?;
        for t in &r.targets {
            let Some(select) = &t.select else {
                return Err(ReplacementError::TargetWithoutSelect);
            };
            let paths: Vec<String> = if t.field_paths.is_empty() {
                vec!["metadata.name".into()]
            } else {
                t.field_paths.clone()
            };
            for target in res.iter_mut() {
                if !label_match(target, select)? {
                    continue;
                }
                let mut rejected_by_labels = false;
                for rj in &t.reject {
                    if (!rj.label_selector.is_empty() || !rj.annotation_selector.is_empty())
                        && label_match(target, rj)?
                    {
                        rejected_by_labels = true;
                    }
                }
                if rejected_by_labels {
                    continue;
                }
                let tids = ids(target);
                let selected = tids.iter().any(|id| id_selected(id, select));
                let rejected = t.reject.iter().any(|rj| {
                    let empty = rj.group.is_empty()
                        && rj.version.is_empty()
                        && rj.kind.is_empty()
                        && rj.name.is_empty()
                        && rj.namespace.is_empty();
                    !empty && tids.iter().any(|id| id_selected(id, rj))
                });
                if !selected || rejected {
                    continue;
                }
                let create = t
                    .options
                    .as_ref()
                    .is_some_and(|o| o.create)
                    .then_some(&value);
                for fp in &paths {
                    let mut doc = Value::Object(std::mem::take(target.as_value_mut()));
                    let n = visit_targets(&mut doc, &split_dotted(fp), create, &mut |f| {
                        set_value(f, &value, t.options.as_ref())
                    });
                    *target.as_value_mut() = match doc {
                        Value::Object(m) => m,
                        _ => Map::new(),
                    };
                    if n? == 0 {
                        return Err(if create.is_some() {
                            ReplacementError::TargetFieldNotCreated(fp.clone())
                        } else {
                            ReplacementError::TargetFieldMissing(fp.clone())
                        });
                    }
                }
            }
        }
    }
    Ok(())
}

fn describe(s: &Selector) -> String {
    let mut parts = Vec::new();
    for (k, v) in [
        ("group", &s.group),
        ("version", &s.version),
        ("kind", &s.kind),
        ("name", &s.name),
        ("namespace", &s.namespace),
    ] {
        if !v.is_empty() {
            parts.push(format!("{k}: {v}"));
        }
    }
    format!("{{{}}}", parts.join(", "))
}
