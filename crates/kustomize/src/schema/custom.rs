//! Custom OpenAPI schemas given by a kustomization's `openapi: {path: ...}`: they teach strategic
//! merge the list keys of custom resources.

use serde_json::Value;

/// A field of a custom type.
#[derive(Debug, Clone)]
pub(crate) struct CustomField {
    pub name: String,
    pub ty: Option<usize>,
    pub list: bool,
    pub strategy: String,
    pub keys: String,
}

/// Definitions of a custom schema, with the kinds they describe.
#[derive(Debug, Default)]
pub(crate) struct CustomSchema {
    types: Vec<Vec<CustomField>>,
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

fn ref_name(v: &Value) -> Option<&str> {
    v.get("$ref")
        .and_then(Value::as_str)
        .map(|r| r.trim_start_matches("#/definitions/"))
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
        let names: Vec<&String> = defs.keys().collect();
        let index = |n: &str| names.iter().position(|x| x.as_str() == n);
        let mut out = CustomSchema::default();
        for (i, (_, def)) in defs.iter().enumerate() {
            let mut fields = Vec::new();
            if let Some(props) = def.get("properties").and_then(Value::as_object) {
                for (name, p) in props {
                    let (ty, list) = match (ref_name(p), p.get("items")) {
                        (Some(r), _) => (index(r), false),
                        (None, Some(items)) => (ref_name(items).and_then(index), true),
                        _ => (None, false),
                    };
                    let keys = match ext(p, "x-kubernetes-list-map-keys") {
                        k if k.is_empty() => ext(p, "x-kubernetes-patch-merge-key"),
                        k => k,
                    };
                    fields.push(CustomField {
                        name: name.clone(),
                        ty,
                        list,
                        strategy: ext(p, "x-kubernetes-patch-strategy"),
                        keys,
                    });
                }
            }
            out.types.push(fields);
            if let Some(Value::Array(gvks)) = def.get("x-kubernetes-group-version-kind") {
                for g in gvks {
                    let s = |k: &str| g.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                    out.roots.push((s("group"), s("version"), s("kind"), i));
                }
            }
        }
        Ok(out)
    }

    /// The type describing a kind.
    pub(crate) fn root_type(&self, group: &str, version: &str, kind: &str) -> Option<usize> {
        self.roots
            .iter()
            .find(|(g, v, k, _)| g == group && v == version && k == kind)
            .map(|r| r.3)
    }

    /// A field of a type.
    pub(crate) fn field(&self, ty: usize, name: &str) -> Option<&CustomField> {
        self.types.get(ty)?.iter().find(|f| f.name == name)
    }
}
