//! YAML: every document is a branch; values keep the types YAML 1.2 gives them (as go-yaml v3
//! reads them for SOPS), comments are dropped (SOPS leaves them out of the MAC).

use serde::Deserialize;
use serde_yaml::Value;

use super::{Loaded, take_nested_metadata};
use crate::error::Error;
use crate::tree::{Item, Key, Node, Scalar};

fn parse_err(why: impl ToString) -> Error {
    Error::Parse {
        format: "yaml",
        why: why.to_string(),
    }
}

/// Converts a parsed YAML value; `Err` for what SOPS cannot walk (non-string keys, huge ints).
pub fn node(v: Value) -> Result<Node, Error> {
    Ok(match v {
        Value::Null => Node::Null,
        Value::Bool(b) => Node::Scalar(Scalar::Bool(b)),
        Value::Number(n) => Node::Scalar(if let Some(i) = n.as_i64() {
            Scalar::Int(i)
        } else if n.is_u64() {
            return Err(parse_err("an integer does not fit in 64 bits"));
        } else {
            Scalar::Float(n.as_f64().unwrap_or(f64::NAN))
        }),
        Value::String(s) => Node::Scalar(Scalar::Str(s)),
        Value::Sequence(seq) => Node::List(seq.into_iter().map(node).collect::<Result<_, _>>()?),
        Value::Mapping(m) => {
            let mut items = Vec::with_capacity(m.len());
            for (k, v) in m {
                let Value::String(k) = k else {
                    return Err(parse_err("a mapping has a key that is not a string"));
                };
                items.push(Item {
                    key: Key::Name(k),
                    value: node(v)?,
                });
            }
            Node::Map(items)
        }
        Value::Tagged(t) => node(t.value)?,
    })
}

pub fn load(bytes: &[u8]) -> Result<Loaded, Error> {
    let text = std::str::from_utf8(bytes).map_err(|_| parse_err("not UTF-8"))?;
    plumb_kustomize::yaml::check_limits(text).map_err(parse_err)?;
    let mut branches = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let value = Value::deserialize(doc).map_err(|e| {
            // serde_yaml quotes no input in its messages beyond positions and kinds.
            parse_err(e)
        })?;
        match node(value)? {
            Node::Map(items) => branches.push(items),
            Node::Null => {}
            _ => return Err(parse_err("a document is not a mapping")),
        }
    }
    let metadata = take_nested_metadata(&mut branches)?;
    Ok(Loaded { branches, metadata })
}

fn value(n: &Node) -> Value {
    match n {
        Node::Null => Value::Null,
        Node::Scalar(s) => match s {
            Scalar::Str(s) | Scalar::Time(s) => Value::String(s.clone()),
            Scalar::Int(i) => Value::Number((*i).into()),
            Scalar::Float(f) => Value::Number((*f).into()),
            Scalar::Bool(b) => Value::Bool(*b),
            Scalar::Bytes(b) => Value::String(String::from_utf8_lossy(b).into_owned()),
        },
        Node::List(l) => Value::Sequence(l.iter().map(value).collect()),
        Node::Map(items) => Value::Mapping(
            items
                .iter()
                .filter_map(|i| match &i.key {
                    Key::Name(k) => Some((Value::String(k.clone()), value(&i.value))),
                    Key::Comment(_) => None,
                })
                .collect(),
        ),
    }
}

pub fn emit(branches: &[Vec<Item>]) -> Result<Vec<u8>, Error> {
    let mut out = String::new();
    for (i, b) in branches.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        let text = serde_yaml::to_string(&value(&Node::Map(b.clone()))).map_err(parse_err)?;
        out.push_str(&text);
    }
    Ok(out.into_bytes())
}
