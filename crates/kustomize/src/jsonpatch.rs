//! RFC 6902 JSON patches (add, remove, replace, move, copy, test) over JSON values.

use crate::error::PatchError;
use crate::yaml::YamlError;
use serde_json::Value;

/// Parse a JSON patch given as JSON or YAML text into its operations.
pub(crate) fn parse(text: &str) -> Result<Vec<Value>, YamlError> {
    let trimmed = text.trim_start();
    let doc = if trimmed.starts_with('[') {
        // JSON nests no deeper than YAML may: serde_json stops at 128 levels.
        serde_json::from_str(trimmed).map_err(|e| YamlError::Syntax(e.to_string()))?
    } else {
        let docs = crate::yaml::parse_documents(text, crate::yaml::ScalarMode::Typed)?;
        docs.into_iter().next().unwrap_or(Value::Null)
    };
    match doc {
        Value::Array(ops) => Ok(ops),
        _ => Err(YamlError::Structure(
            "a JSON patch must be a list of operations".into(),
        )),
    }
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn tokens(path: &str) -> Result<Vec<String>, PatchError> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| PatchError::InvalidPointer(path.to_string()))?;
    Ok(rest.split('/').map(unescape).collect())
}

fn parent<'a>(
    doc: &'a mut Value,
    toks: &[String],
    path: &str,
) -> Result<&'a mut Value, PatchError> {
    let mut cur = doc;
    for t in toks {
        cur = match cur {
            Value::Object(m) => m
                .get_mut(t)
                .ok_or_else(|| PatchError::MissingPath(path.to_string()))?,
            Value::Array(a) => {
                let i: usize = t.parse().map_err(|_| PatchError::InvalidIndex {
                    index: t.clone(),
                    path: path.to_string(),
                })?;
                a.get_mut(i)
                    .ok_or_else(|| PatchError::MissingPath(path.to_string()))?
            }
            _ => return Err(PatchError::MissingPath(path.to_string())),
        };
    }
    Ok(cur)
}

fn get<'a>(doc: &'a Value, path: &str) -> Result<&'a Value, PatchError> {
    let mut cur = doc;
    for t in tokens(path)? {
        cur = match cur {
            Value::Object(m) => m.get(&t),
            Value::Array(a) => t.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        }
        .ok_or_else(|| PatchError::MissingPath(path.to_string()))?;
    }
    Ok(cur)
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), PatchError> {
    let toks = tokens(path)?;
    let Some((last, init)) = toks.split_last() else {
        *doc = value;
        return Ok(());
    };
    match parent(doc, init, path)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(value);
                return Ok(());
            }
            let i: usize = last.parse().map_err(|_| PatchError::InvalidIndex {
                index: last.clone(),
                path: path.to_string(),
            })?;
            if i > a.len() {
                return Err(PatchError::IndexOutOfBounds(path.to_string()));
            }
            a.insert(i, value);
            Ok(())
        }
        _ => Err(PatchError::NotApplicable {
            op: "add",
            path: path.to_string(),
        }),
    }
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, PatchError> {
    let toks = tokens(path)?;
    let Some((last, init)) = toks.split_last() else {
        return Err(PatchError::RemoveRoot);
    };
    match parent(doc, init, path)? {
        Value::Object(m) => m.shift_remove(last).ok_or_else(|| removal_missing(path)),
        Value::Array(a) => {
            let i: usize = last.parse().map_err(|_| PatchError::InvalidIndex {
                index: last.clone(),
                path: path.to_string(),
            })?;
            if i >= a.len() {
                return Err(removal_missing(path));
            }
            Ok(a.remove(i))
        }
        _ => Err(removal_missing(path)),
    }
}

fn removal_missing(path: &str) -> PatchError {
    PatchError::NotApplicable {
        op: "remove",
        path: path.to_string(),
    }
}

/// Apply the operations in order.
pub(crate) fn apply(doc: &mut Value, ops: &[Value]) -> Result<(), PatchError> {
    for op in ops {
        let name = op.get("op").and_then(Value::as_str).unwrap_or("");
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| PatchError::NoPath(name.to_string()))?;
        let missing = |member| PatchError::MissingMember {
            op: name.to_string(),
            path: path.to_string(),
            member,
        };
        let value = || op.get("value").cloned().ok_or_else(|| missing("value"));
        let from = || {
            op.get("from")
                .and_then(Value::as_str)
                .ok_or_else(|| missing("from"))
        };
        match name {
            "add" => add(doc, path, value()?)?,
            "remove" => {
                remove(doc, path)?;
            }
            "replace" => {
                get(doc, path).map_err(|_| PatchError::ReplaceMissingKey(path.to_string()))?;
                if path.is_empty() {
                    *doc = value()?;
                } else {
                    remove(doc, path)?;
                    add(doc, path, value()?)?;
                }
            }
            "move" => {
                let from = from()?;
                let v = remove(doc, from)?;
                add(doc, path, v)?;
            }
            "copy" => {
                let v = get(doc, from()?)?;
                crate::yaml::charge_copy(v).map_err(PatchError::Limit)?;
                let v = v.clone();
                add(doc, path, v)?;
            }
            "test" => {
                let actual = get(doc, path)?;
                if *actual != value()? {
                    return Err(PatchError::TestFailed(path.to_string()));
                }
            }
            other => return Err(PatchError::UnknownOperation(other.to_string())),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn operations_apply_in_order() {
        let mut doc = json!({"a": [1, 2], "b": {"c": 1}});
        let ops = parse("- op: add\n  path: /a/-\n  value: 3\n- op: replace\n  path: /b/c\n  value: x\n- op: remove\n  path: /a/0\n- op: copy\n  from: /b\n  path: /d\n- op: move\n  from: /d/c\n  path: /e~1f\n").unwrap();
        apply(&mut doc, &ops).unwrap();
        assert_eq!(
            doc,
            json!({"a": [2, 3], "b": {"c": "x"}, "d": {}, "e/f": "x"})
        );
    }

    #[test]
    fn replacing_a_missing_key_fails() {
        let mut doc = json!({});
        let ops = parse(r#"[{"op": "replace", "path": "/x", "value": 1}]"#).unwrap();
        let err = apply(&mut doc, &ops).unwrap_err();
        assert_eq!(err, PatchError::ReplaceMissingKey("/x".into()));
        assert_eq!(
            err.to_string(),
            "replace operation does not apply: doc is missing key: /x"
        );
    }

    #[test]
    fn each_fault_has_its_own_cause() {
        let cases = [
            (
                r#"[{"op": "add", "path": "/a/5", "value": 1}]"#,
                PatchError::IndexOutOfBounds("/a/5".into()),
            ),
            (
                r#"[{"op": "remove", "path": "/b/c"}]"#,
                PatchError::NotApplicable {
                    op: "remove",
                    path: "/b/c".into(),
                },
            ),
            (
                r#"[{"op": "move", "path": "/z"}]"#,
                PatchError::MissingMember {
                    op: "move".into(),
                    path: "/z".into(),
                    member: "from",
                },
            ),
            (
                r#"[{"op": "test", "path": "/a/0", "value": 2}]"#,
                PatchError::TestFailed("/a/0".into()),
            ),
            (
                r#"[{"op": "frobnicate", "path": "/a"}]"#,
                PatchError::UnknownOperation("frobnicate".into()),
            ),
            (
                r#"[{"op": "add", "path": "a", "value": 1}]"#,
                PatchError::InvalidPointer("a".into()),
            ),
        ];
        for (ops, want) in cases {
            let mut doc = json!({"a": [1], "b": {}});
            let ops = parse(ops).unwrap();
            assert_eq!(apply(&mut doc, &ops), Err(want));
        }
    }

    #[test]
    fn a_copy_past_the_build_budget_names_the_limit() {
        let mut doc = json!({"a": {"b": [1, 2, 3]}});
        let ops = parse(r#"[{"op": "copy", "from": "/a", "path": "/c"}]"#).unwrap();
        let err = crate::yaml::with_alias_budget(2, || apply(&mut doc, &ops)).unwrap_err();
        assert_eq!(
            err,
            PatchError::Limit(crate::limits::Limit::BuildAliasNodes { max: 2 })
        );
    }
}
