//! JSON, and the binary format (any bytes as the `data` string of a JSON document). Output is
//! byte for byte what SOPS writes: Go's `json.Marshal` escaping and tab indentation.

use serde_json::Value;

use super::{Format, Loaded, take_nested_metadata};
use crate::error::Error;
use crate::tree::{Item, Key, Node, Scalar};

fn parse_err(why: impl ToString) -> Error {
    Error::Parse {
        format: "json",
        why: why.to_string(),
    }
}

fn node(v: Value) -> Node {
    match v {
        Value::Null => Node::Null,
        Value::Bool(b) => Node::Scalar(Scalar::Bool(b)),
        // Go's json.Number: Int64 when it parses as one, else Float64.
        Value::Number(n) => Node::Scalar(match n.as_i64() {
            Some(i) => Scalar::Int(i),
            None => Scalar::Float(n.as_f64().unwrap_or(f64::NAN)),
        }),
        Value::String(s) => Node::Scalar(Scalar::Str(s)),
        Value::Array(a) => Node::List(a.into_iter().map(node).collect()),
        Value::Object(o) => Node::Map(
            o.into_iter()
                .map(|(k, v)| Item {
                    key: Key::Name(k),
                    value: node(v),
                })
                .collect(),
        ),
    }
}

pub fn load(bytes: &[u8], format: Format) -> Result<Loaded, Error> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| parse_err(e.classify_str()))?;
    let Node::Map(items) = node(value) else {
        return Err(parse_err("the top level is not an object"));
    };
    let mut branches = vec![items];
    let metadata = take_nested_metadata(&mut branches)?;
    if format == Format::Binary
        && !matches!(
            super::super::metadata::get(&branches[0], "data"),
            Some(Node::Scalar(Scalar::Str(_)))
        )
    {
        return Err(Error::Parse {
            format: "binary",
            why: "no data string".into(),
        });
    }
    Ok(Loaded { branches, metadata })
}

/// The category of a serde_json error, without the input it quotes.
trait Classify {
    fn classify_str(&self) -> String;
}

impl Classify for serde_json::Error {
    fn classify_str(&self) -> String {
        format!(
            "{:?} error at line {} column {}",
            self.classify(),
            self.line(),
            self.column()
        )
    }
}

/// Go's `json.Marshal` of a string: HTML-safe escaping.
fn go_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Go's `json.Marshal` of a float64.
fn go_float(f: f64) -> String {
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        // Exponent form, with Go's two-digit minimum exponent cleaned up (`e-07` -> `e-7`).
        let s = format!("{f:e}");
        match s.split_once('e') {
            Some((m, e)) if e.starts_with('-') => format!("{m}e-{}", &e[1..]),
            Some((m, e)) => format!("{m}e+{e}"),
            None => s,
        }
    } else {
        crate::tree::go_float(f)
    }
}

fn indent(out: &mut String, depth: usize) {
    out.push('\n');
    for _ in 0..depth {
        out.push('\t');
    }
}

fn write(n: &Node, depth: usize, out: &mut String) {
    match n {
        Node::Null => out.push_str("null"),
        Node::Scalar(s) => match s {
            Scalar::Str(s) | Scalar::Time(s) => go_string(s, out),
            Scalar::Bytes(b) => go_string(&String::from_utf8_lossy(b), out),
            Scalar::Int(i) => out.push_str(&i.to_string()),
            Scalar::Float(f) => out.push_str(&go_float(*f)),
            Scalar::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        },
        Node::List(l) => {
            if l.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, v) in l.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                indent(out, depth + 1);
                write(v, depth + 1, out);
            }
            indent(out, depth);
            out.push(']');
        }
        Node::Map(items) => {
            let named: Vec<(&String, &Node)> = items
                .iter()
                .filter_map(|i| match &i.key {
                    Key::Name(k) => Some((k, &i.value)),
                    Key::Comment(_) => None,
                })
                .collect();
            if named.is_empty() {
                out.push_str("{}");
                return;
            }
            out.push('{');
            for (i, (k, v)) in named.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                indent(out, depth + 1);
                go_string(k, out);
                out.push_str(": ");
                write(v, depth + 1, out);
            }
            indent(out, depth);
            out.push('}');
        }
    }
}

pub fn emit(branches: &[Vec<Item>]) -> Vec<u8> {
    let mut out = String::new();
    if let Some(b) = branches.first() {
        write(&Node::Map(b.clone()), 0, &mut out);
    }
    out.push('\n');
    out.into_bytes()
}

pub fn emit_binary(branches: &[Vec<Item>]) -> Result<Vec<u8>, Error> {
    let data = branches
        .first()
        .and_then(|b| super::super::metadata::get(b, "data"));
    match data {
        Some(Node::Scalar(Scalar::Str(s))) => Ok(s.clone().into_bytes()),
        Some(Node::Scalar(Scalar::Bytes(b))) => Ok(b.clone()),
        _ => Err(Error::Parse {
            format: "binary",
            why: "no data string".into(),
        }),
    }
}
