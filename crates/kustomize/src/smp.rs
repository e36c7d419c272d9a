//! Strategic merge patches with kustomize's semantics (kyaml merge2): maps merge field by field,
//! `null` deletes, `$patch: delete|replace|merge` directives, lists with a merge strategy in the
//! schema merge element-wise by their keys with the patch's elements first, other lists are
//! replaced.

use crate::error::PatchError;
use crate::resource::scalar_string;
use crate::schema::{self, CustomSchema, NONE, Target};
use serde_json::{Map, Value};

/// Schema context of a node.
#[derive(Clone, Copy, Debug)]
enum Sch<'a> {
    None,
    Type(u16),
    /// A schema of a custom schema file; `bool`: whether its references to built-in types count.
    Custom(&'a CustomSchema, usize, bool),
    /// A list field of a built-in type, with its element type.
    List {
        merge: bool,
        keys: &'a str,
        elem: u16,
    },
}

fn is_merge(strategy: &str) -> bool {
    strategy.split(',').any(|s| s == "merge")
}

fn custom_sch(c: &CustomSchema, t: Target, builtin: bool) -> Sch<'_> {
    match t {
        Target::Node(i) => Sch::Custom(c, i, builtin),
        Target::Builtin(ty) if builtin => Sch::Type(ty),
        _ => Sch::None,
    }
}

fn field_sch<'a>(sch: Sch<'a>, name: &str) -> Sch<'a> {
    match sch {
        Sch::Type(t) => match schema::field(t, name) {
            Some(f) if f.list => Sch::List {
                merge: is_merge(f.strategy),
                keys: f.keys,
                elem: f.ty,
            },
            Some(f) if f.ty != NONE => Sch::Type(f.ty),
            _ => Sch::None,
        },
        Sch::Custom(c, i, builtin) => c
            .node(i)
            .map_or(Sch::None, |n| custom_sch(c, n.field(name), builtin)),
        _ => Sch::None,
    }
}

/// Apply `patch` to `obj` (an object of the given group, version and kind), with a custom schema
/// and the built-in one when `builtin`. `None` means the patch
/// deleted the whole object.
pub(crate) fn apply(
    obj: &Value,
    patch: &Value,
    (group, version, kind): (&str, &str, &str),
    custom: Option<&CustomSchema>,
    builtin: bool,
) -> Result<Option<Value>, PatchError> {
    // The custom schema's kinds first; the built-in kinds only when the schema in force
    // includes them (see `schema::SchemaState`).
    let sch = custom
        .and_then(|c| {
            c.root_type(group, version, kind)
                .map(|t| Sch::Custom(c, t, builtin))
        })
        .or_else(|| {
            builtin
                .then(|| schema::root_type(group, version, kind).map(Sch::Type))
                .flatten()
        })
        .unwrap_or(Sch::None);
    walk(Some(obj), Some(patch), sch)
}

fn kind_of(v: &Value) -> u8 {
    match v {
        Value::Object(_) => 1,
        Value::Array(_) => 2,
        Value::Null => 0,
        _ => 3,
    }
}

fn kind_name(k: u8) -> &'static str {
    match k {
        1 => "MappingNode",
        2 => "SequenceNode",
        _ => "ScalarNode",
    }
}

fn walk(
    dest: Option<&Value>,
    patch: Option<&Value>,
    sch: Sch<'_>,
) -> Result<Option<Value>, PatchError> {
    let Some(p) = patch else {
        return Ok(dest.cloned());
    };
    let kind = [dest, patch]
        .into_iter()
        .flatten()
        .map(kind_of)
        .find(|k| *k != 0)
        .unwrap_or(1);
    for v in [dest, patch].into_iter().flatten() {
        let k = kind_of(v);
        if k != 0 && k != kind {
            return Err(PatchError::WrongNodeKind {
                expected: kind_name(kind),
                got: kind_name(k),
            });
        }
    }
    match kind {
        1 => walk_map(dest, p, sch),
        2 => walk_list(dest, p, sch),
        _ => Ok(if p.is_null() { None } else { Some(p.clone()) }),
    }
}

/// Read and strip a `$patch` directive from a map.
fn map_directive(m: &mut Map<String, Value>) -> Result<&'static str, PatchError> {
    match m.get("$patch") {
        None => Ok("merge"),
        Some(v) => {
            let d = match scalar_string(v).as_str() {
                "delete" => "delete",
                "replace" => "replace",
                "merge" => "merge",
                other => return Err(PatchError::UnknownStrategy(other.to_string())),
            };
            m.remove("$patch");
            Ok(d)
        }
    }
}

fn walk_map(
    dest: Option<&Value>,
    patch: &Value,
    sch: Sch<'_>,
) -> Result<Option<Value>, PatchError> {
    if patch.is_null() {
        return Ok(None);
    }
    let mut p = patch.as_object().cloned().unwrap_or_default();
    let directive = map_directive(&mut p)?;
    let mut out = match dest {
        Some(Value::Object(d)) => match directive {
            "delete" => return Ok(None),
            "replace" => p.clone(),
            _ => d.clone(),
        },
        _ => {
            if directive == "delete" {
                return Ok(None);
            }
            p.clone()
        }
    };
    let mut keys: Vec<String> = out.keys().chain(p.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let child = field_sch(sch, &k);
        match walk(out.get(&k), p.get(&k), child)? {
            Some(v) => {
                out.insert(k, v);
            }
            None => {
                out.remove(&k);
            }
        }
    }
    Ok(Some(Value::Object(out)))
}

/// A list's `$patch` directive: an element that is a map holding only `$patch`.
fn list_directive(items: &mut Vec<Value>) -> Result<&'static str, PatchError> {
    let pos = items.iter().position(|e| {
        e.as_object()
            .is_some_and(|m| m.len() == 1 && m.contains_key("$patch"))
    });
    let Some(i) = pos else { return Ok("merge") };
    let d = match items[i].get("$patch").map(scalar_string).as_deref() {
        Some("delete") => "delete",
        Some("replace") => "replace",
        Some("merge") => "merge",
        other => {
            return Err(PatchError::UnknownStrategy(
                other.unwrap_or_default().to_string(),
            ));
        }
    };
    items.remove(i);
    Ok(d)
}

fn walk_list(
    dest: Option<&Value>,
    patch: &Value,
    sch: Sch<'_>,
) -> Result<Option<Value>, PatchError> {
    let (merge, keys, elem_sch) = match sch {
        Sch::List { merge, keys, elem } => (
            merge,
            keys,
            if elem == NONE {
                Sch::None
            } else {
                Sch::Type(elem)
            },
        ),
        Sch::Custom(c, i, builtin) => match c.node(i) {
            Some(n) => (
                is_merge(&n.strategy),
                n.keys.as_str(),
                custom_sch(c, n.items, builtin),
            ),
            None => (false, "", Sch::None),
        },
        _ => (false, "", Sch::None),
    };
    if !merge {
        return Ok(if patch.is_null() {
            None
        } else {
            Some(patch.clone())
        });
    }
    if patch.is_null() {
        return Ok(None);
    }
    let mut p = patch.as_array().cloned().unwrap_or_default();
    let dest_items: Vec<Value> = match dest {
        Some(Value::Array(d)) => {
            match list_directive(&mut p)? {
                "delete" => return Ok(None),
                "replace" => return Ok(Some(Value::Array(p))),
                _ => {}
            }
            d.clone()
        }
        _ => patch.as_array().cloned().unwrap_or_default(),
    };
    if keys.is_empty() {
        return Ok(Some(Value::Array(merge_primitives(&p, &dest_items))));
    }
    let keys: Vec<&str> = keys.split(',').collect();
    merge_keyed(&p, &dest_items, &keys, elem_sch).map(|v| Some(Value::Array(v)))
}

fn merge_primitives(patch: &[Value], dest: &[Value]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for v in patch.iter().chain(dest) {
        if !out.iter().any(|o| scalar_string(o) == scalar_string(v)) {
            out.push(v.clone());
        }
    }
    out
}

fn key_values(e: &Value, keys: &[&str]) -> Vec<String> {
    keys.iter()
        .map(|k| e.get(*k).map(scalar_string).unwrap_or_default())
        .collect()
}

/// kyaml's `validateKeys`: drop keys that no value set uses.
fn validate_keys<'a>(
    values_list: &[Vec<String>],
    values: &[String],
    keys: &[&'a str],
) -> (Vec<&'a str>, Vec<String>) {
    let used: Vec<bool> = (0..keys.len())
        .map(|i| {
            values_list
                .iter()
                .any(|v| v.get(i).is_some_and(|x| !x.is_empty()))
        })
        .collect();
    if !used.iter().any(|u| *u) {
        return (keys.to_vec(), values.to_vec());
    }
    let vk = keys
        .iter()
        .zip(&used)
        .filter(|(_, u)| **u)
        .map(|(k, _)| *k)
        .collect();
    let vv = values
        .iter()
        .zip(&used)
        .filter(|(v, u)| !v.is_empty() || **u)
        .map(|(v, _)| v.clone())
        .collect();
    (vk, vv)
}

/// The first map element whose fields equal the values exactly (kyaml `ElementList`).
fn element_list(items: &[Value], keys: &[&str], values: &[String]) -> Option<usize> {
    items.iter().position(|e| {
        e.is_object()
            && keys.iter().zip(values).all(|(k, v)| {
                e.get(*k)
                    .is_some_and(|f| !f.is_null() && scalar_string(f) == *v)
            })
    })
}

/// kyaml's `ElementSetter`: replace (or, without an element, delete) the elements matching the
/// key values, appending the element when none matched; null and empty elements are dropped.
fn element_setter(
    list: &mut Vec<Value>,
    element: Option<&Value>,
    keys: &[&str],
    values: &[String],
) {
    let mapping_setter =
        !keys.is_empty() && !keys[0].is_empty() && !values.is_empty() && !values[0].is_empty();
    let mut out = Vec::with_capacity(list.len() + 1);
    let mut found_any = false;
    for e in list.drain(..) {
        if e.is_null() || e.as_object().is_some_and(Map::is_empty) {
            continue;
        }
        if !e.is_object() && mapping_setter {
            out.push(e);
            continue;
        }
        let mut found = false;
        for (j, k) in keys.iter().enumerate() {
            let Some(v) = values.get(j) else { break };
            let field = e.get(*k).filter(|f| !f.is_null());
            found = field.is_some_and(|f| v.is_empty() || scalar_string(f) == *v);
            if !found {
                break;
            }
        }
        if !found {
            if !values.is_empty() {
                out.push(e);
            }
            continue;
        }
        found_any = true;
        if let Some(el) = element {
            out.push(el.clone());
        }
    }
    if let Some(el) = element
        && !found_any
    {
        out.push(el.clone());
    }
    *list = out;
}

/// kyaml merge2's associative list merge with `ListIncreaseDirection: Prepend`.
fn merge_keyed<'a>(
    patch: &[Value],
    dest: &[Value],
    keys: &[&'a str],
    elem_sch: Sch<'_>,
) -> Result<Vec<Value>, PatchError> {
    let mut dest: Vec<Value> = dest.to_vec();
    let mut values_list: Vec<Vec<String>> = Vec::new();
    for e in patch.iter().chain(dest.iter()) {
        if !e.is_object() {
            continue;
        }
        let v = key_values(e, keys);
        if !values_list.contains(&v) {
            values_list.push(v);
        }
    }
    if keys.len() > 1 {
        for i in 0..values_list.len() {
            for j in 0..values_list.len() {
                if let Some(m) = match_values(&values_list[i], &values_list[j]) {
                    values_list[i] = m.clone();
                    values_list[j] = m;
                }
            }
        }
    }
    let mut items: Vec<Value> = Vec::new();
    let mut last_keys: Vec<&'a str> = keys.to_vec();
    for values in &values_list {
        let (vk, vv) = validate_keys(&values_list, values, keys);
        last_keys = vk.clone();
        let (ek, ev) = validate_keys(std::slice::from_ref(values), values, keys);
        let d = element_list(&dest, &ek, &ev);
        let p = element_list(patch, &ek, &ev);
        let merged = walk(d.map(|i| &dest[i]), p.map(|i| &patch[i]), elem_sch)?;
        let mut m = match merged {
            Some(Value::Object(m)) if !m.is_empty() => m,
            _ => {
                element_setter(&mut dest, None, &vk, &vv);
                continue;
            }
        };
        for (k, v) in vk.iter().zip(&vv) {
            if !m.contains_key(*k) && !v.is_empty() {
                m.insert((*k).to_string(), Value::String(v.clone()));
            }
        }
        let val = Value::Object(m);
        if let Some(i) = d {
            dest[i] = val.clone();
        }
        element_setter(&mut items, Some(&val), &vk, &vv);
    }
    if values_list.is_empty() {
        return Ok(dest);
    }
    for elem in &dest {
        let mut v = Vec::new();
        for k in &last_keys {
            match elem.get(*k).filter(|f| !f.is_null()) {
                Some(f) => v.push(scalar_string(f)),
                None => items.push(elem.clone()),
            }
        }
        if last_keys.len() > 1 {
            element_setter(&mut items, None, &last_keys, &v);
        }
        element_setter(&mut items, Some(elem), &last_keys, &v);
    }
    Ok(items)
}

fn match_values(a: &[String], b: &[String]) -> Option<Vec<String>> {
    let mut common = false;
    let mut res = Vec::new();
    for (x, y) in a.iter().zip(b) {
        if x == y {
            common = true;
            res.push(x.clone());
        } else if !x.is_empty() && !y.is_empty() {
            return None;
        } else if !x.is_empty() {
            res.push(x.clone());
        } else {
            res.push(y.clone());
        }
    }
    common.then_some(res)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dep(containers: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"template": {"spec": {"containers": containers}}}})
    }

    #[test]
    fn containers_merge_by_name_with_patched_ones_first() {
        let obj = dep(json!([{"name": "a", "image": "a"}, {"name": "b", "image": "b"}]));
        let patch = dep(json!([{"name": "b", "image": "x"}, {"name": "n", "image": "n"}]));
        let out = apply(&obj, &patch, ("apps", "v1", "Deployment"), None, true)
            .unwrap()
            .unwrap();
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "b", "image": "x"}, {"name": "n", "image": "n"}, {"name": "a", "image": "a"}])
        );
    }

    #[test]
    fn null_deletes_and_directives_apply() {
        let obj = json!({"a": {"b": 1, "c": 2}, "d": [1, 2], "e": {"x": 1}});
        let patch = json!({"a": {"b": null}, "d": [3], "e": {"$patch": "replace", "y": 2}});
        let out = apply(&obj, &patch, ("", "v1", "Unknown"), None, true)
            .unwrap()
            .unwrap();
        assert_eq!(out, json!({"a": {"c": 2}, "d": [3], "e": {"y": 2}}));
        let del = json!({"$patch": "delete"});
        assert_eq!(
            apply(&obj, &del, ("", "v1", "Unknown"), None, true).unwrap(),
            None
        );
    }

    #[test]
    fn element_delete_directive_removes_the_element() {
        let obj = dep(json!([{"name": "a", "image": "a"}, {"name": "b", "image": "b"}]));
        let patch = dep(json!([{"name": "a", "$patch": "delete"}]));
        let out = apply(&obj, &patch, ("apps", "v1", "Deployment"), None, true)
            .unwrap()
            .unwrap();
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "b", "image": "b"}])
        );
    }
}
