//! Walking a field spec path (`spec/template/metadata/labels`, `spec/containers[]/image`) through
//! an object, descending into every element of the lists met on the way, as kustomize does.

use crate::error::FieldError;
use serde_json::{Map, Value};

/// What to create when the last field of a path is missing (and the spec allows creation).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Create {
    /// Never create.
    Nothing,
    /// An empty map (labels, annotations).
    Map,
    /// An empty string (names, namespaces).
    Scalar,
}

/// Split a slash path, honouring `\/` escapes.
pub(crate) fn split_path(path: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for part in path.split('/') {
        match out.last_mut() {
            Some(last) if last.ends_with('\\') => {
                last.pop();
                last.push('/');
                last.push_str(part);
            }
            _ => out.push(part.to_string()),
        }
    }
    out
}

/// Apply `set` to every field `path` reaches in `obj`; the path's own faults are [`FieldError`]s,
/// `set`'s are its caller's.
pub(crate) fn visit<E: From<FieldError>>(
    obj: &mut Value,
    path: &[String],
    create: bool,
    kind: Create,
    set: &mut dyn FnMut(&mut Value) -> Result<(), E>,
) -> Result<(), E> {
    if path.is_empty() {
        return set(obj);
    }
    match obj {
        Value::Null => Ok(()),
        Value::Array(items) => {
            for item in items {
                visit(item, path, create, kind, set)?;
            }
            Ok(())
        }
        Value::Object(map) => visit_map(map, path, create, kind, set),
        _ => Err(FieldError::NotContainer(path.join("/")).into()),
    }
}

fn visit_map<E: From<FieldError>>(
    map: &mut Map<String, Value>,
    path: &[String],
    create: bool,
    kind: Create,
    set: &mut dyn FnMut(&mut Value) -> Result<(), E>,
) -> Result<(), E> {
    let (field, is_seq) = match path[0].strip_suffix("[]") {
        Some(f) => (f, true),
        None => (path[0].as_str(), false),
    };
    if field.is_empty() {
        return Err(FieldError::EmptyName.into());
    }
    let rest = &path[1..];
    let creating = create && kind != Create::Nothing && !is_seq;
    let null_becomes = if !creating {
        is_seq.then(|| Value::Array(Vec::new()))
    } else if rest.is_empty() {
        Some(match kind {
            Create::Map => Value::Object(Map::new()),
            _ => Value::String(String::new()),
        })
    } else {
        Some(Value::Object(Map::new()))
    };
    if !map.contains_key(field) {
        if !creating {
            return Ok(());
        }
        if let Some(v) = &null_becomes {
            map.insert(field.to_string(), v.clone());
        }
    }
    let Some(child) = map.get_mut(field) else {
        return Ok(());
    };
    if child.is_null()
        && let Some(v) = null_becomes
        && !(rest.is_empty() && kind == Create::Scalar)
    {
        *child = v;
    }
    visit(child, rest, create, kind, set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn escaped_slashes_stay_in_one_segment() {
        assert_eq!(
            split_path(r"metadata/annotations/a.io\/b"),
            vec!["metadata", "annotations", "a.io/b"]
        );
    }

    #[test]
    fn lists_on_the_path_are_descended() {
        let mut v = json!({"spec": {"containers": [{"image": "a"}, {"image": "b"}, {}]}});
        let path = split_path("spec/containers[]/image");
        visit(&mut v, &path, false, Create::Nothing, &mut |x| {
            *x = json!(format!("{}!", x.as_str().unwrap_or("")));
            Ok::<(), FieldError>(())
        })
        .unwrap();
        assert_eq!(
            v,
            json!({"spec": {"containers": [{"image": "a!"}, {"image": "b!"}, {}]}})
        );
    }

    #[test]
    fn missing_maps_are_created_when_allowed() {
        let mut v = json!({"metadata": {}});
        visit(
            &mut v,
            &split_path("metadata/labels"),
            true,
            Create::Map,
            &mut |x| {
                x.as_object_mut().map(|m| m.insert("a".into(), json!("b")));
                Ok::<(), FieldError>(())
            },
        )
        .unwrap();
        assert_eq!(v, json!({"metadata": {"labels": {"a": "b"}}}));
    }
}
