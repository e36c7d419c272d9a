//! RFC 6902 JSON patches (add, remove, replace, move, copy, test) over JSON values.

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

fn tokens(path: &str) -> Result<Vec<String>, String> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| format!("invalid JSON pointer {path:?}"))?;
    Ok(rest.split('/').map(unescape).collect())
}

fn parent<'a>(doc: &'a mut Value, toks: &[String], path: &str) -> Result<&'a mut Value, String> {
    let mut cur = doc;
    for t in toks {
        cur = match cur {
            Value::Object(m) => m
                .get_mut(t)
                .ok_or_else(|| format!("doc is missing path: {path}"))?,
            Value::Array(a) => {
                let i: usize = t
                    .parse()
                    .map_err(|_| format!("invalid index {t:?} in {path}"))?;
                a.get_mut(i)
                    .ok_or_else(|| format!("doc is missing path: {path}"))?
            }
            _ => return Err(format!("doc is missing path: {path}")),
        };
    }
    Ok(cur)
}

fn get<'a>(doc: &'a Value, path: &str) -> Result<&'a Value, String> {
    let mut cur = doc;
    for t in tokens(path)? {
        cur = match cur {
            Value::Object(m) => m.get(&t),
            Value::Array(a) => t.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        }
        .ok_or_else(|| format!("doc is missing path: {path}"))?;
    }
    Ok(cur)
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), String> {
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
            let i: usize = last
                .parse()
                .map_err(|_| format!("invalid index {last:?} in {path}"))?;
            if i > a.len() {
                return Err(format!(
                    "add operation does not apply: index out of bounds in {path}"
                ));
            }
            a.insert(i, value);
            Ok(())
        }
        _ => Err(format!(
            "add operation does not apply: doc is missing path: {path}"
        )),
    }
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let toks = tokens(path)?;
    let Some((last, init)) = toks.split_last() else {
        return Err("cannot remove the whole document".to_string());
    };
    match parent(doc, init, path)? {
        Value::Object(m) => m
            .shift_remove(last)
            .ok_or_else(|| format!("remove operation does not apply: doc is missing path: {path}")),
        Value::Array(a) => {
            let i: usize = last
                .parse()
                .map_err(|_| format!("invalid index {last:?} in {path}"))?;
            if i >= a.len() {
                return Err(format!(
                    "remove operation does not apply: doc is missing path: {path}"
                ));
            }
            Ok(a.remove(i))
        }
        _ => Err(format!(
            "remove operation does not apply: doc is missing path: {path}"
        )),
    }
}

/// Apply the operations in order.
pub(crate) fn apply(doc: &mut Value, ops: &[Value]) -> Result<(), String> {
    for op in ops {
        let name = op.get("op").and_then(Value::as_str).unwrap_or("");
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("operation {name:?} has no path"))?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| format!("operation {name} {path} has no value"))
        };
        let from = || {
            op.get("from")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("operation {name} {path} has no from"))
        };
        match name {
            "add" => add(doc, path, value()?)?,
            "remove" => {
                remove(doc, path)?;
            }
            "replace" => {
                get(doc, path).map_err(|_| {
                    format!("replace operation does not apply: doc is missing key: {path}")
                })?;
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
                crate::yaml::charge_copy(v)?;
                let v = v.clone();
                add(doc, path, v)?;
            }
            "test" => {
                let actual = get(doc, path)?;
                if *actual != value()? {
                    return Err(format!("testing value {path} failed"));
                }
            }
            other => return Err(format!("unexpected operation {other:?}")),
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
        assert!(apply(&mut doc, &ops).is_err());
    }
}
