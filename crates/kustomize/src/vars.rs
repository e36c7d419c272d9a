//! Legacy `vars`: `$(NAME)` in the var-reference fields becomes a field of another object.

use crate::error::{FieldError, VarError};
use crate::fieldspec::{self, Create};
use crate::kustomization::{FieldSpec, Var};
use crate::replacement::split_dotted;
use crate::resource::{Gvk, ResId, Resource, scalar_string};
use serde_json::Value;

/// Whether a var names a resource that has (or had) the id `id`: group, version, kind and name
/// exactly, and the namespace too when the var gives one or the kind is cluster-scoped.
pub(crate) fn names(v: &Var, id: &ResId) -> bool {
    let o = &v.objref;
    let gvk = if o.api_version.is_empty() {
        Gvk {
            group: o.group.clone(),
            version: o.version.clone(),
            kind: o.kind.clone(),
        }
    } else {
        Gvk::from_api_version(&o.api_version, &o.kind)
    };
    if id.gvk != gvk || id.name != o.name {
        return false;
    }
    let target = ResId {
        gvk,
        name: o.name.clone(),
        namespace: o.namespace.clone(),
    };
    if o.namespace.is_empty() && !target.gvk.is_cluster_scoped() {
        return true;
    }
    target.effective_namespace() == id.effective_namespace()
}

/// Resolve every var (from the resource it was bound to where declared) and substitute it in
/// the var-reference fields.
pub(crate) fn resolve(
    res: &mut [Resource],
    vars: &[Var],
    specs: &[FieldSpec],
) -> Result<(), VarError> {
    if vars.is_empty() {
        return Ok(());
    }
    let mut values: Vec<(String, Value)> = Vec::new();
    for v in vars {
        let r = res
            .iter()
            .find(|r| r.ref_vars.contains(&v.name))
            .ok_or_else(|| VarError::Unmapped(v.name.clone()))?;
        let path = v
            .fieldref
            .as_ref()
            .map(|f| f.field_path.as_str())
            .filter(|p| !p.is_empty())
            .unwrap_or("metadata.name");
        let not_found = || VarError::FieldNotFound {
            path: path.to_string(),
            name: v.name.clone(),
        };
        let doc = Value::Object(r.as_value().clone());
        let mut cur = &doc;
        for part in split_dotted(path) {
            let (field, index) = match part.split_once('[') {
                Some((f, rest)) => (
                    f.to_string(),
                    rest.trim_end_matches(']').parse::<usize>().ok(),
                ),
                None => (part.clone(), None),
            };
            cur = cur.get(&field).ok_or_else(not_found)?;
            if let Some(i) = index {
                cur = cur.get(i).ok_or_else(not_found)?;
            }
        }
        if cur.is_object() || cur.is_array() {
            return Err(VarError::NotScalar(v.name.clone()));
        }
        values.push((v.name.clone(), cur.clone()));
    }
    for r in res.iter_mut() {
        let gvk = r.gvk();
        let mut doc = Value::Object(std::mem::take(r.as_value_mut()));
        for fs in specs.iter().filter(|f| f.applies_to(&gvk)) {
            let path = fieldspec::split_path(&fs.path);
            let _ = fieldspec::visit(&mut doc, &path, false, Create::Nothing, &mut |v| {
                substitute(v, &values);
                Ok::<(), FieldError>(())
            });
        }
        *r.as_value_mut() = match doc {
            Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
    }
    Ok(())
}

/// Expand vars in every string under `v`. A string that is one var reference and nothing
/// else takes the var's value with its type (a port stays a number), as kustomize does.
fn substitute(v: &mut Value, values: &[(String, Value)]) {
    match v {
        Value::String(s) => {
            let whole = s
                .strip_prefix("$(")
                .and_then(|r| r.strip_suffix(')'))
                .and_then(|name| values.iter().find(|(n, _)| n == name));
            *v = match whole {
                Some((_, val)) => val.clone(),
                None => Value::String(expand(s, values)),
            };
        }
        Value::Array(items) => items.iter_mut().for_each(|i| substitute(i, values)),
        Value::Object(m) => m.iter_mut().for_each(|(_, i)| substitute(i, values)),
        _ => {}
    }
}

/// Kubernetes-style expansion: `$(NAME)` replaced when known, `$$` escapes a dollar.
fn expand(s: &str, values: &[(String, Value)]) -> String {
    let mut out = String::new();
    let b: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < b.len() {
        if b[i] == '$' && i + 1 < b.len() {
            if b[i + 1] == '$' {
                out.push('$');
                i += 2;
                continue;
            }
            if b[i + 1] == '('
                && let Some(end) = b[i + 2..].iter().position(|c| *c == ')')
            {
                let name: String = b[i + 2..i + 2 + end].iter().collect();
                match values.iter().find(|(n, _)| *n == name) {
                    Some((_, val)) => out.push_str(&scalar_string(val)),
                    None => {
                        out.push_str("$(");
                        out.push_str(&name);
                        out.push(')');
                    }
                }
                i += end + 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vars_expand_and_unknown_stay() {
        let vals = vec![("A".to_string(), Value::from("x"))];
        assert_eq!(expand("$(A)-$(B)-$$(A)", &vals), "x-$(B)-$(A)");
    }

    #[test]
    fn a_var_fails_with_its_own_cause() {
        let cm = |name: &str| {
            Resource::new(
                serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": name}, "data": {"m": {"x": "y"}}})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            )
        };
        let var = |name: &str, obj: &str, path: &str| Var {
            name: name.into(),
            objref: crate::kustomization::VarTarget {
                version: "v1".into(),
                kind: "ConfigMap".into(),
                name: obj.into(),
                ..Default::default()
            },
            fieldref: Some(crate::kustomization::VarField {
                field_path: path.into(),
            }),
        };
        let cases = [
            (var("V", "nope", ""), VarError::Unmapped("V".into())),
            (
                var("V", "a", "data.q"),
                VarError::FieldNotFound {
                    path: "data.q".into(),
                    name: "V".into(),
                },
            ),
            (var("V", "a", "data.m"), VarError::NotScalar("V".into())),
        ];
        for (v, want) in cases {
            let mut r = cm("a");
            // Bound where declared, as the accumulator does.
            if names(&v, &r.id()) {
                r.ref_vars.push(v.name.clone());
            }
            let mut res = vec![r];
            assert_eq!(resolve(&mut res, &[v], &[]), Err(want));
        }
    }
}
