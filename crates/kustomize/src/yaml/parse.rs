//! YAML text to JSON values, resolving plain scalars the way go-yaml v3 does
//! (which is what kustomize reads resources with).

use std::cell::Cell;
use std::rc::Rc;

use crate::limits::{Limit, YAML_MAX_ALIAS_NODES, YAML_MAX_DEPTH};
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
    /// Files kustomize reads with `sigs.k8s.io/yaml` (kustomization files): YAML 1.1 as go-yaml
    /// v2 resolves it (`yes`/`on` are booleans, `0777` is octal, timestamps stay strings), and a
    /// repeated key replaces the earlier one instead of failing.
    Go,
    /// What sigs.k8s.io/yaml's `YAMLToJSON` makes of YAML (go-yaml v2, YAML 1.1 booleans, a
    /// repeated key keeps its last value): how Flux reads manifests back after substitution.
    Yaml11,
}

/// Why YAML text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum YamlError {
    /// Not valid YAML; the message carries the position.
    #[error("{0}")]
    Syntax(String),
    /// Valid YAML that cannot become JSON data (a non-scalar key, a bad merge, a repeated key).
    #[error("{0}")]
    Structure(String),
    /// The text crosses one of the [`limits`](crate::limits) every YAML text is held to.
    #[error("{0}")]
    Limit(Limit),
}

impl YamlError {
    /// The limit crossed, when that is why.
    pub fn limit(&self) -> Option<&Limit> {
        match self {
            YamlError::Limit(l) => Some(l),
            _ => None,
        }
    }
}

/// A parsed node before scalar resolution. Children are shared, so an alias costs a pointer
/// while parsing; its size counts against the alias limits, since resolution copies it.
#[derive(Clone, Debug)]
enum Node {
    Scalar(String, TScalarStyle, Option<Tag>),
    Seq(Vec<Rc<Node>>),
    Map(Vec<(Rc<Node>, Rc<Node>)>, usize),
}

thread_local! {
    /// Alias nodes left to the build running on this thread (see [`with_alias_budget`]).
    /// `None` outside a build.
    static BUILD_ALIAS_BUDGET: Cell<Option<(usize, usize)>> = const { Cell::new(None) };
}

/// Run `f` with a budget of `max` alias-expanded nodes shared by every YAML text parsed on this
/// thread meanwhile: a build's budget.
///
/// The budget in force before is restored when `f` returns or unwinds, so a build run on a
/// caller's thread leaves nothing of its own behind.
pub(crate) fn with_alias_budget<R>(max: usize, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<(usize, usize)>);
    impl Drop for Restore {
        fn drop(&mut self) {
            BUILD_ALIAS_BUDGET.with(|b| b.set(self.0));
        }
    }
    let _restore = Restore(BUILD_ALIAS_BUDGET.with(|b| b.replace(Some((0, max)))));
    f()
}

/// Charge `value`'s nodes, about to be copied by a transformer (JSON patch `copy`, a
/// replacement), to the build's budget: copies repeated on their own output grow exponentially
/// as alias bombs do.
pub(crate) fn charge_copy(value: &Value) -> Result<(), Limit> {
    let mut nodes = 0usize;
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        nodes += 1;
        match v {
            Value::Object(m) => stack.extend(m.values()),
            Value::Array(items) => stack.extend(items.iter()),
            _ => {}
        }
    }
    charge_build_budget(nodes)
}

fn charge_build_budget(nodes: usize) -> Result<(), Limit> {
    BUILD_ALIAS_BUDGET.with(|b| match b.get() {
        None => Ok(()),
        Some((used, max)) => {
            let used = used.saturating_add(nodes);
            b.set(Some((used, max)));
            if used > max {
                Err(Limit::BuildAliasNodes { max })
            } else {
                Ok(())
            }
        }
    })
}

/// Parse every document of a YAML stream. Empty documents come back as `Value::Null`.
/// Every document is held to [`YAML_MAX_DEPTH`] and [`YAML_MAX_ALIAS_NODES`].
pub fn parse_documents(text: &str, mode: ScalarMode) -> Result<Vec<Value>, YamlError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = Reader {
        parser: Parser::new_from_str(text),
        anchors: Vec::new(),
        expanded: 0,
    };
    let mut docs: Vec<Option<Rc<Node>>> = Vec::new();
    loop {
        let (ev, _) = reader.next()?;
        match ev {
            Event::StreamEnd => break,
            Event::DocumentStart => {
                reader.anchors.clear();
                reader.expanded = 0;
                let (first, _) = reader.next()?;
                if matches!(first, Event::DocumentEnd) {
                    docs.push(None);
                    continue;
                }
                docs.push(Some(reader.read_node(first, 0)?.node));
            }
            _ => {}
        }
    }
    drop(reader);
    if !text.ends_with('\n')
        && let Some(Some(last)) = docs.last_mut()
    {
        trim_final_block_scalar(last);
    }
    docs.into_iter()
        .map(|d| d.map_or(Ok(Value::Null), |n| to_value(&n, mode, Ctx::Root)))
        .collect()
}

/// Check `text` against the YAML limits without resolving values: for readers of YAML that use
/// another parser (rendered artifacts), so every YAML plumb reads is held to the same limits.
/// Syntax errors are left to that parser to report.
pub fn check_limits(text: &str) -> Result<(), Limit> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = Reader {
        parser: Parser::new_from_str(text),
        anchors: Vec::new(),
        expanded: 0,
    };
    let scan = |reader: &mut Reader<'_>| -> Result<(), YamlError> {
        loop {
            let (ev, _) = reader.next()?;
            match ev {
                Event::StreamEnd => return Ok(()),
                Event::DocumentStart => {
                    reader.anchors.clear();
                    reader.expanded = 0;
                    let (first, _) = reader.next()?;
                    if !matches!(first, Event::DocumentEnd) {
                        reader.read_node(first, 0)?;
                    }
                }
                _ => {}
            }
        }
    };
    match scan(&mut reader) {
        Err(YamlError::Limit(limit)) => Err(limit),
        _ => Ok(()),
    }
}

/// A block scalar running to the end of input has no final line break to keep (the scanner adds
/// one); only the last document's rightmost leaf can be such a scalar.
fn trim_final_block_scalar(node: &mut Rc<Node>) {
    match Rc::make_mut(node) {
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

/// A node with what the limits need to know about it.
struct Read {
    node: Rc<Node>,
    /// Nodes in it, counting what its aliases stand for.
    size: usize,
    /// Collection levels in it (0 for a scalar).
    height: usize,
}

/// An anchored node, replayed by its aliases.
struct Anchor {
    id: usize,
    node: Rc<Node>,
    size: usize,
    height: usize,
}

struct Reader<'a> {
    parser: Parser<std::str::Chars<'a>>,
    anchors: Vec<Anchor>,
    /// Nodes aliases added to the current document.
    expanded: usize,
}

impl Reader<'_> {
    fn next(&mut self) -> Result<(Event, usize), YamlError> {
        let (ev, mark) = self.parser.next_token().map_err(|e| {
            // The scanner runs ahead of the events and stops flow nesting at 255 levels itself.
            if e.info() == "recursion limit exceeded" {
                YamlError::Limit(Limit::YamlDepth {
                    max: YAML_MAX_DEPTH,
                })
            } else {
                YamlError::Syntax(e.to_string())
            }
        })?;
        Ok((ev, mark.line()))
    }

    /// Read the node `ev` starts, inside `level` enclosing collections.
    fn read_node(&mut self, ev: Event, level: usize) -> Result<Read, YamlError> {
        let depth_err = || {
            YamlError::Limit(Limit::YamlDepth {
                max: YAML_MAX_DEPTH,
            })
        };
        let (read, anchor) = match ev {
            Event::Scalar(v, style, anchor, tag) => (
                Read {
                    node: Rc::new(Node::Scalar(v, style, tag)),
                    size: 1,
                    height: 0,
                },
                anchor,
            ),
            Event::Alias(id) => {
                let a = self
                    .anchors
                    .iter()
                    .rev()
                    .find(|a| a.id == id)
                    .ok_or_else(|| YamlError::Structure("unknown anchor referenced".into()))?;
                if level + a.height > YAML_MAX_DEPTH {
                    return Err(depth_err());
                }
                let (node, size, height) = (a.node.clone(), a.size, a.height);
                self.expanded = self.expanded.saturating_add(size);
                if self.expanded > YAML_MAX_ALIAS_NODES {
                    return Err(YamlError::Limit(Limit::YamlAliasNodes {
                        max: YAML_MAX_ALIAS_NODES,
                    }));
                }
                charge_build_budget(size).map_err(YamlError::Limit)?;
                return Ok(Read { node, size, height });
            }
            Event::SequenceStart(anchor, _) => {
                if level + 1 > YAML_MAX_DEPTH {
                    return Err(depth_err());
                }
                let (mut items, mut size, mut height) = (Vec::new(), 1usize, 1);
                loop {
                    let (ev, _) = self.next()?;
                    if matches!(ev, Event::SequenceEnd) {
                        break;
                    }
                    let item = self.read_node(ev, level + 1)?;
                    size = size.saturating_add(item.size);
                    height = height.max(item.height + 1);
                    items.push(item.node);
                }
                let node = Rc::new(Node::Seq(items));
                (Read { node, size, height }, anchor)
            }
            Event::MappingStart(anchor, _) => {
                if level + 1 > YAML_MAX_DEPTH {
                    return Err(depth_err());
                }
                let (mut entries, mut size, mut height) = (Vec::new(), 1usize, 1);
                let mut line = 0;
                loop {
                    let (ev, l) = self.next()?;
                    if line == 0 {
                        line = l;
                    }
                    if matches!(ev, Event::MappingEnd) {
                        break;
                    }
                    let key = self.read_node(ev, level + 1)?;
                    let (ev, _) = self.next()?;
                    let value = self.read_node(ev, level + 1)?;
                    size = size.saturating_add(key.size).saturating_add(value.size);
                    height = height.max(key.height + 1).max(value.height + 1);
                    entries.push((key.node, value.node));
                }
                let node = Rc::new(Node::Map(entries, line));
                (Read { node, size, height }, anchor)
            }
            other => {
                return Err(YamlError::Structure(format!(
                    "unexpected YAML event {other:?}"
                )));
            }
        };
        if anchor > 0 {
            self.anchors.push(Anchor {
                id: anchor,
                node: read.node.clone(),
                size: read.size,
                height: read.height,
            });
        }
        Ok(read)
    }
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
        Node::Scalar(text, style, tag) if mode == ScalarMode::Yaml11 => {
            yaml11_scalar(text, *style, tag.as_ref())
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
                    matches!(&**k, Node::Scalar(t, ..) if t == "kind")
                        && matches!(&**v, Node::Scalar(t, ..) if t.ends_with("List"))
                });
            let mut map = Map::new();
            let mut merged: Vec<Map<String, Value>> = Vec::new();
            for (k, v) in entries {
                if let Node::Scalar(t, TScalarStyle::Plain, None) = &**k
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
                            return Err(YamlError::Structure(
                                "map merge requires map or sequence of maps as the value".into(),
                            ));
                        }
                    }
                    continue;
                }
                let key = key_text(k, mode)?;
                if map.contains_key(&key) && !matches!(mode, ScalarMode::Go | ScalarMode::Yaml11) {
                    return Err(YamlError::Structure(format!(
                        "mapping key \"{key}\" already defined at line {line}"
                    )));
                }
                let child = if ctx == Ctx::Annotations {
                    Ctx::Annotations
                } else {
                    child_ctx(ctx, &key, root_is_list)
                };
                let child = if ctx == Ctx::Annotations && !matches!(&**v, Node::Scalar(..)) {
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
        Node::Scalar(text, style, tag) if mode == ScalarMode::Yaml11 => {
            super::yaml11::key_string(&yaml11_scalar(text, *style, tag.as_ref())?)
                .map_err(YamlError::Structure)
        }
        Node::Scalar(text, style, tag) => {
            Ok(match scalar_value(text, *style, tag.as_ref(), mode) {
                Value::String(s) => s,
                Value::Null => "null".to_string(),
                other => other.to_string(),
            })
        }
        _ => Err(YamlError::Structure("mapping keys must be scalars".into())),
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
        ScalarMode::Typed | ScalarMode::Yaml11 => resolve_plain(text),
        ScalarMode::Go => resolve_yaml11(text),
    }
}

/// Resolve a plain scalar as go-yaml v2 does when decoding into `interface{}` (YAML 1.1).
fn resolve_yaml11(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "true" | "True" | "TRUE" => {
            return Value::Bool(true);
        }
        "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "false" | "False" | "FALSE" => {
            return Value::Bool(false);
        }
        _ => {}
    }
    let plain: String = text.chars().filter(|c| *c != '_').collect();
    int_or_float(&plain).unwrap_or_else(|| Value::String(text.to_string()))
}

/// A number in go-yaml's int (Go's base-prefixed syntax) or float syntax, underscores removed.
fn int_or_float(plain: &str) -> Option<Value> {
    super::go_parse_int(plain).or_else(|| {
        super::is_yaml_float(plain)
            .then(|| float_value(plain))
            .flatten()
    })
}

/// A scalar as [`ScalarMode::Yaml11`] reads it.
fn yaml11_scalar(text: &str, style: TScalarStyle, tag: Option<&Tag>) -> Result<Value, YamlError> {
    if style != TScalarStyle::Plain || tag.is_some_and(|t| is_core_tag(t, "str")) {
        return Ok(Value::String(text.to_string()));
    }
    super::yaml11::resolve(text).map_err(YamlError::Structure)
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
    if let Some(v) = int_or_float(&plain) {
        return v;
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
