//! Custom OpenAPI schemas given by a kustomization's `openapi: {path: ...}`: they teach strategic
//! merge the list keys of custom resources.
//!
//! Read as kyaml reads its schema: a field is found in `properties`, else in
//! `additionalProperties` (every key of a map); `$ref`s (`#/definitions/NAME`, in chains) are
//! followed and the schema they lead to replaces the referring one (extensions beside a `$ref`
//! are dropped); a list's elements are known only when its `type` is `array`; nested schemas may be
//! written inline. A `$ref` to a definition the file does not hold names a built-in type, which
//! counts only when the built-in schema was read before this one (see `SchemaState`).

use serde_json::Value;
use std::collections::HashMap;

/// Where a schema leads once its `$ref`s are followed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Target {
    /// Nothing known: lists are replaced, maps merged field by field.
    #[default]
    None,
    /// A schema of this file (index into its nodes).
    Node(usize),
    /// A built-in type (index into the built-in table), by its definition name.
    Builtin(u16),
}

/// One schema of the file: a definition or a schema written inline.
#[derive(Debug, Default)]
pub(crate) struct Node {
    /// `properties`, sorted by name.
    props: Vec<(String, Target)>,
    /// `additionalProperties`: the schema of every other key.
    additional: Target,
    /// `items`, when the schema's type is `array`.
    pub items: Target,
    /// `x-kubernetes-patch-strategy` (e.g. `merge`, `merge,retainKeys`).
    pub strategy: String,
    /// `x-kubernetes-list-map-keys`, else `x-kubernetes-patch-merge-key`, comma separated.
    pub keys: String,
}

impl Node {
    /// The schema of field `name`.
    pub(crate) fn field(&self, name: &str) -> Target {
        match self.props.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(i) => self.props[i].1,
            Err(_) => self.additional,
        }
    }
}

/// Definitions of a custom schema, with the kinds they describe.
#[derive(Debug, Default)]
pub(crate) struct CustomSchema {
    nodes: Vec<Node>,
    roots: Vec<(String, String, String, usize)>,
}

fn ext(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(","),
        _ => String::new(),
    }
}

/// The definition a `$ref` names (a JSON pointer into `definitions`, `~1` and `~0` escaped).
fn ref_target(v: &Value) -> Option<Option<String>> {
    let r = v.get("$ref")?.as_str()?;
    Some(
        r.strip_prefix("#/definitions/")
            .filter(|n| !n.contains('/'))
            .map(|n| n.replace("~1", "/").replace("~0", "~")),
    )
}

/// Whether a schema's `type` is exactly `array` (kyaml reads elements of those alone).
fn is_array(v: &Value) -> bool {
    match v.get("type") {
        Some(Value::String(t)) => t == "array",
        Some(Value::Array(ts)) => ts.len() == 1 && ts[0] == "array",
        _ => false,
    }
}

/// Reads one file's definitions into nodes.
struct Reader<'a> {
    defs: Vec<&'a Value>,
    index: HashMap<&'a str, usize>,
    nodes: Vec<Node>,
}

impl Reader<'_> {
    /// Where `v` leads: its own node when inline, else the end of its `$ref` chain.
    fn target(&mut self, v: &Value) -> Target {
        let mut name = match ref_target(v) {
            None => return self.inline(v),
            Some(None) => return Target::None,
            Some(Some(n)) => n,
        };
        // A chain longer than the definitions loops.
        for _ in 0..=self.defs.len() {
            let Some(&i) = self.index.get(name.as_str()) else {
                return crate::schema::builtin_type(&name).map_or(Target::None, Target::Builtin);
            };
            match ref_target(self.defs[i]) {
                None => return Target::Node(i),
                Some(None) => return Target::None,
                Some(Some(next)) => name = next,
            }
        }
        Target::None
    }

    fn inline(&mut self, v: &Value) -> Target {
        if !v.is_object() {
            return Target::None;
        }
        let i = self.nodes.len();
        self.nodes.push(Node::default());
        self.fill(i, v);
        Target::Node(i)
    }

    /// Read schema `v` into node `i`.
    fn fill(&mut self, i: usize, v: &Value) {
        let mut props: Vec<(String, Target)> = match v.get("properties").and_then(Value::as_object)
        {
            Some(p) => p.iter().map(|(k, s)| (k.clone(), self.target(s))).collect(),
            None => Vec::new(),
        };
        props.sort_by(|a, b| a.0.cmp(&b.0));
        let additional = match v.get("additionalProperties") {
            Some(s @ Value::Object(_)) => self.target(s),
            _ => Target::None,
        };
        let items = match v.get("items") {
            Some(s @ Value::Object(_)) if is_array(v) => self.target(s),
            _ => Target::None,
        };
        let keys = match ext(v, "x-kubernetes-list-map-keys") {
            k if k.is_empty() => ext(v, "x-kubernetes-patch-merge-key"),
            k => k,
        };
        self.nodes[i] = Node {
            props,
            additional,
            items,
            strategy: ext(v, "x-kubernetes-patch-strategy"),
            keys,
        };
    }
}

impl CustomSchema {
    /// Parse a schema document (JSON or YAML) with a `definitions` map.
    pub(crate) fn parse(text: &str) -> Result<CustomSchema, crate::yaml::YamlError> {
        let docs = crate::yaml::parse_documents(text, crate::yaml::ScalarMode::Typed)?;
        let doc = docs.into_iter().next().unwrap_or(Value::Null);
        let defs = doc
            .get("definitions")
            .and_then(Value::as_object)
            .ok_or_else(|| {
                crate::yaml::YamlError::Structure("the schema has no definitions".into())
            })?;
        // Definitions first, so a `$ref` names its node by the definition's index.
        let mut reader = Reader {
            defs: defs.values().collect(),
            index: defs
                .keys()
                .enumerate()
                .map(|(i, k)| (k.as_str(), i))
                .collect(),
            nodes: std::iter::repeat_with(Node::default)
                .take(defs.len())
                .collect(),
        };
        let mut roots = Vec::new();
        for (i, def) in defs.values().enumerate() {
            reader.fill(i, def);
            if let Some(Value::Array(gvks)) = def.get("x-kubernetes-group-version-kind") {
                for g in gvks {
                    let s = |k: &str| g.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                    roots.push((s("group"), s("version"), s("kind"), i));
                }
            }
        }
        Ok(CustomSchema {
            nodes: reader.nodes,
            roots,
        })
    }

    /// The node describing a kind.
    pub(crate) fn root_type(&self, group: &str, version: &str, kind: &str) -> Option<usize> {
        self.roots
            .iter()
            .find(|(g, v, k, _)| g == group && v == version && k == kind)
            .map(|r| r.3)
    }

    /// A node of the schema.
    pub(crate) fn node(&self, i: usize) -> Option<&Node> {
        self.nodes.get(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(text: &str) -> CustomSchema {
        CustomSchema::parse(text).unwrap_or_default()
    }

    fn walk(s: &CustomSchema, from: usize, path: &[&str]) -> Target {
        let mut t = Target::Node(from);
        for p in path {
            t = match t {
                Target::Node(i) if *p == "[]" => s.node(i).map_or(Target::None, |n| n.items),
                Target::Node(i) => s.node(i).map_or(Target::None, |n| n.field(p)),
                _ => Target::None,
            };
        }
        t
    }

    #[test]
    fn inline_schemas_and_additional_properties_are_read() {
        let s = schema(
            r#"{"definitions": {"T": {"x-kubernetes-group-version-kind": [{"group": "g", "version": "v1", "kind": "T"}],
                "properties": {"spec": {"properties": {"m": {"additionalProperties":
                    {"type": "array", "x-kubernetes-patch-strategy": "merge", "x-kubernetes-patch-merge-key": "id", "items": {"properties": {}}}}}}}}}}"#,
        );
        let root = s.root_type("g", "v1", "T").unwrap_or(usize::MAX);
        let Target::Node(list) = walk(&s, root, &["spec", "m", "any-key"]) else {
            panic!("no schema for a map value");
        };
        let node = s.node(list).unwrap_or_else(|| panic!("node {list}"));
        assert_eq!(
            (node.strategy.as_str(), node.keys.as_str()),
            ("merge", "id")
        );
        assert!(matches!(node.items, Target::Node(_)));
    }

    #[test]
    fn ref_chains_end_at_a_definition_and_loops_at_nothing() {
        let s = schema(
            r##"{"definitions": {"A": {"$ref": "#/definitions/B"}, "B": {"properties": {"x": {"$ref": "#/definitions/A"}, "loop": {"$ref": "#/definitions/C"}}},
                "C": {"$ref": "#/definitions/D"}, "D": {"$ref": "#/definitions/C"}}}"##,
        );
        assert_eq!(walk(&s, 1, &["x"]), Target::Node(1));
        assert_eq!(walk(&s, 1, &["loop"]), Target::None);
    }

    #[test]
    fn elements_are_known_only_for_array_types() {
        let s = schema(
            r#"{"definitions": {"T": {"properties": {"a": {"items": {"properties": {}}}, "b": {"type": ["array"], "items": {"properties": {}}}}}}}"#,
        );
        assert_eq!(walk(&s, 0, &["a", "[]"]), Target::None);
        assert!(matches!(walk(&s, 0, &["b", "[]"]), Target::Node(_)));
    }

    #[test]
    fn refs_outside_the_file_name_built_in_types() {
        let s = schema(
            r##"{"definitions": {"T": {"properties": {"tmpl": {"$ref": "#/definitions/io.k8s.api.core.v1.PodTemplateSpec"}, "gone": {"$ref": "#/definitions/nowhere"}}}}}"##,
        );
        assert!(matches!(walk(&s, 0, &["tmpl"]), Target::Builtin(_)));
        assert_eq!(walk(&s, 0, &["gone"]), Target::None);
    }
}
