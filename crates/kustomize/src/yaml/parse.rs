//! YAML text to JSON values, resolving plain scalars the way go-yaml v3 does
//! (which is what kustomize reads resources with).

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::TScalarStyle;

/// How plain scalars are turned into values.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ScalarMode {
    /// Resources: YAML 1.2 core schema as go-yaml v3 resolves it (ints, floats, bools, null).
    Typed,
    /// Configuration read into string-typed Go fields: every non-null scalar stays its text.
    Text,
}

/// A YAML syntax or structure error, with the position it was found at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError(pub String);

impl std::fmt::Display for YamlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A parsed node before scalar resolution, so anchors can be replayed.
#[derive(Clone, Debug)]
enum Node {
    Scalar(String, TScalarStyle, Option<Tag>),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>, usize),
}

/// Parse every document of a YAML stream. Empty documents come back as `Value::Null`.
pub fn parse_documents(text: &str, mode: ScalarMode) -> Result<Vec<Value>, YamlError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut parser = Parser::new_from_str(text);
    let mut docs: Vec<Option<Node>> = Vec::new();
    let mut anchors: Vec<(usize, Node)> = Vec::new();
    loop {
        let (ev, _) = parser.next_token().map_err(|e| YamlError(e.to_string()))?;
        match ev {
            Event::StreamEnd => break,
            Event::DocumentStart => {
                anchors.clear();
                let (first, _) = parser.next_token().map_err(|e| YamlError(e.to_string()))?;
                if matches!(first, Event::DocumentEnd) {
                    docs.push(None);
                    continue;
                }
                docs.push(Some(read_node(&mut parser, first, &mut anchors)?));
            }
            _ => {}
        }
    }
    if !text.ends_with('\n')
        && let Some(Some(last)) = docs.last_mut()
    {
        trim_final_block_scalar(last);
    }
    docs.into_iter()
        .map(|d| d.map_or(Ok(Value::Null), |n| to_value(&n, mode, Ctx::Root)))
        .collect()
}

/// A block scalar running to the end of input has no final line break to keep (the scanner adds
/// one); only the last document's rightmost leaf can be such a scalar.
fn trim_final_block_scalar(node: &mut Node) {
    match node {
        Node::Scalar(v, TScalarStyle::Literal | TScalarStyle::Folded, _) => {
            if v.ends_with('\n') {
                v.pop();
            }
        }
        Node::Seq(items) => {
            if let Some(last) = items.last_mut() {
                trim_final_block_scalar(last);
            }
        }
        Node::Map(entries, _) => {
            if let Some((_, last)) = entries.last_mut() {
                trim_final_block_scalar(last);
            }
        }
        Node::Scalar(..) => {}
    }
}

fn next(parser: &mut Parser<std::str::Chars<'_>>) -> Result<(Event, usize), YamlError> {
    let (ev, mark) = parser.next_token().map_err(|e| YamlError(e.to_string()))?;
    Ok((ev, mark.line()))
}

fn read_node(
    parser: &mut Parser<std::str::Chars<'_>>,
    ev: Event,
    anchors: &mut Vec<(usize, Node)>,
) -> Result<Node, YamlError> {
    let (node, anchor) = match ev {
        Event::Scalar(v, style, anchor, tag) => (Node::Scalar(v, style, tag), anchor),
        Event::Alias(id) => {
            let found = anchors.iter().rev().find(|(a, _)| *a == id);
            return found
                .map(|(_, n)| n.clone())
                .ok_or_else(|| YamlError("unknown anchor referenced".into()));
        }
        Event::SequenceStart(anchor, _) => {
            let mut items = Vec::new();
            loop {
                let (ev, _) = next(parser)?;
                if matches!(ev, Event::SequenceEnd) {
                    break;
                }
                items.push(read_node(parser, ev, anchors)?);
            }
            (Node::Seq(items), anchor)
        }
        Event::MappingStart(anchor, _) => {
            let mut entries = Vec::new();
            let mut line = 0;
            loop {
                let (ev, l) = next(parser)?;
                if line == 0 {
                    line = l;
                }
                if matches!(ev, Event::MappingEnd) {
                    break;
                }
                let key = read_node(parser, ev, anchors)?;
                let (ev, _) = next(parser)?;
                let value = read_node(parser, ev, anchors)?;
                entries.push((key, value));
            }
            (Node::Map(entries, line), anchor)
        }
        other => return Err(YamlError(format!("unexpected YAML event {other:?}"))),
    };
    if anchor > 0 {
        anchors.push((anchor, node.clone()));
    }
    Ok(node)
}

fn is_core_tag(tag: &Tag, name: &str) -> bool {
    (tag.handle == "!!" || tag.handle == "tag:yaml.org,2002:") && tag.suffix == name
}

/// Where a node sits in an object: kustomize rewrites an object's own annotations as strings
/// keeping their source text, so those scalars are not resolved.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Other,
    Root,
    RootItems,
    Metadata,
    Annotations,
}

fn child_ctx(ctx: Ctx, key: &str, root_is_list: bool) -> Ctx {
    match (ctx, key) {
        (Ctx::Root, "metadata") => Ctx::Metadata,
        (Ctx::Root, "items") if root_is_list => Ctx::RootItems,
        (Ctx::Metadata, "annotations") => Ctx::Annotations,
        _ => Ctx::Other,
    }
}

fn to_value(node: &Node, mode: ScalarMode, ctx: Ctx) -> Result<Value, YamlError> {
    match node {
        Node::Scalar(text, _, _) if ctx == Ctx::Annotations && mode == ScalarMode::Typed => {
            Ok(Value::String(text.clone()))
        }
        Node::Scalar(text, style, tag) => Ok(scalar_value(text, *style, tag.as_ref(), mode)),
        Node::Seq(items) => items
            .iter()
            .map(|n| {
                to_value(
                    n,
                    mode,
                    if ctx == Ctx::RootItems {
                        Ctx::Root
                    } else {
                        Ctx::Other
                    },
                )
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Node::Map(entries, line) => {
            let root_is_list = ctx == Ctx::Root
                && entries.iter().any(|(k, v)| {
                    matches!(k, Node::Scalar(t, ..) if t == "kind")
                        && matches!(v, Node::Scalar(t, ..) if t.ends_with("List"))
                });
            let mut map = Map::new();
            let mut merged: Vec<Map<String, Value>> = Vec::new();
            for (k, v) in entries {
                if let Node::Scalar(t, TScalarStyle::Plain, None) = k
                    && t == "<<"
                {
                    match to_value(v, mode, Ctx::Other)? {
                        Value::Object(m) => merged.push(m),
                        Value::Array(list) => {
                            for item in list {
                                if let Value::Object(m) = item {
                                    merged.push(m);
                                }
                            }
                        }
                        _ => {
                            return Err(YamlError(
                                "map merge requires map or sequence of maps as the value".into(),
                            ));
                        }
                    }
                    continue;
                }
                let key = key_text(k, mode)?;
                if map.contains_key(&key) {
                    return Err(YamlError(format!(
                        "mapping key \"{key}\" already defined at line {line}"
                    )));
                }
                let child = if ctx == Ctx::Annotations {
                    Ctx::Annotations
                } else {
                    child_ctx(ctx, &key, root_is_list)
                };
                let child = if ctx == Ctx::Annotations && !matches!(v, Node::Scalar(..)) {
                    Ctx::Other
                } else {
                    child
                };
                map.insert(key, to_value(v, mode, child)?);
            }
            for m in merged {
                for (k, v) in m {
                    map.entry(k).or_insert(v);
                }
            }
            Ok(Value::Object(map))
        }
    }
}

fn key_text(node: &Node, mode: ScalarMode) -> Result<String, YamlError> {
    match node {
        Node::Scalar(text, style, tag) => {
            Ok(match scalar_value(text, *style, tag.as_ref(), mode) {
                Value::String(s) => s,
                Value::Null => "null".to_string(),
                other => other.to_string(),
            })
        }
        _ => Err(YamlError("mapping keys must be scalars".into())),
    }
}

fn scalar_value(text: &str, style: TScalarStyle, tag: Option<&Tag>, mode: ScalarMode) -> Value {
    let explicit_str = tag.is_some_and(|t| is_core_tag(t, "str"));
    let typed_tag = tag.is_some_and(|t| {
        ["int", "float", "bool", "null"]
            .iter()
            .any(|n| is_core_tag(t, n))
    });
    if typed_tag && mode == ScalarMode::Typed {
        return resolve_plain(text);
    }
    if style != TScalarStyle::Plain || explicit_str {
        return Value::String(text.to_string());
    }
    match mode {
        ScalarMode::Text => {
            if matches!(text, "" | "~" | "null" | "Null" | "NULL") {
                Value::Null
            } else {
                Value::String(text.to_string())
            }
        }
        ScalarMode::Typed => resolve_plain(text),
    }
}

/// Resolve a plain scalar as go-yaml v3 does when decoding into `interface{}`.
pub fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf" | "-.INF"
        | ".nan" | ".NaN" | ".NAN" => return Value::String(text.to_string()),
        _ => {}
    }
    let first = text.as_bytes()[0];
    if first == b'.' {
        if let Some(n) = float_value(text) {
            return n;
        }
        return Value::String(text.to_string());
    }
    if !(first.is_ascii_digit() || first == b'+' || first == b'-') {
        return Value::String(text.to_string());
    }
    // go-yaml v3 decodes timestamps to time.Time, which JSON prints as RFC 3339.
    if super::looks_like_timestamp(text) {
        return Value::String(super::timestamp_rfc3339(text));
    }
    let plain: String = text.chars().filter(|c| *c != '_').collect();
    if let Some(v) = super::go_parse_int(&plain) {
        return v;
    }
    if super::is_yaml_float(&plain)
        && let Some(n) = float_value(&plain)
    {
        return n;
    }
    let (neg, rest) = match plain.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, plain.strip_prefix('+').unwrap_or(&plain)),
    };
    for (prefix, radix) in [("0b", 2), ("0o", 8)] {
        if let Some(digits) = rest.strip_prefix(prefix)
            && let Ok(v) = i64::from_str_radix(digits, radix)
        {
            return Value::Number(Number::from(if neg { -v } else { v }));
        }
    }
    Value::String(text.to_string())
}

fn float_value(text: &str) -> Option<Value> {
    let f: f64 = text.parse().ok()?;
    if !f.is_finite() {
        return Some(Value::String(text.to_string()));
    }
    Number::from_f64(f).map(Value::Number)
}
