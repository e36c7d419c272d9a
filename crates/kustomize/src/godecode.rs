//! Go's decoding rules for kustomization files. kustomize turns the YAML into JSON
//! (`sigs.k8s.io/yaml`) and decodes that with `encoding/json` into its Go types, unknown fields
//! refused. So a field name matches case-insensitively (an exact match first), of two spellings
//! of one field the later in sorted key order wins, `null` leaves a field unset, and a value of
//! the wrong JSON type is an error naming the Go field. [`normalize`] applies those rules to a
//! parsed document, leaving it in the exact shape the serde types read.

use serde_json::{Map, Number, Value};

/// The JSON type a Go field has.
#[derive(Clone, Copy)]
pub(crate) enum Shape {
    /// `string`.
    Str,
    /// `bool`.
    Bool,
    /// `int` / `int64`.
    Int,
    /// Anything (`interface{}`, or a field whose content this engine refuses anyway).
    Any,
    /// `[]T`.
    List(&'static Shape),
    /// `map[string]T`.
    Map(&'static Shape),
    /// A struct (or a pointer to one).
    Struct(&'static Struct),
}

/// A Go struct: its name (for messages) and its JSON fields.
pub(crate) struct Struct {
    name: &'static str,
    fields: &'static [(&'static str, Shape)],
}

const STRS: Shape = Shape::List(&Shape::Str);
const STR_MAP: Shape = Shape::Map(&Shape::Str);

const OBJECT_META: Struct = Struct {
    name: "ObjectMeta",
    fields: &[
        ("name", Shape::Str),
        ("namespace", Shape::Str),
        ("labels", STR_MAP),
        ("annotations", STR_MAP),
    ],
};

const FIELD_SPEC: Struct = Struct {
    name: "FieldSpec",
    fields: &[
        ("group", Shape::Str),
        ("version", Shape::Str),
        ("kind", Shape::Str),
        ("path", Shape::Str),
        ("create", Shape::Bool),
    ],
};

const LABEL: Struct = Struct {
    name: "Label",
    fields: &[
        ("pairs", STR_MAP),
        ("includeSelectors", Shape::Bool),
        ("includeTemplates", Shape::Bool),
        ("fields", Shape::List(&Shape::Struct(&FIELD_SPEC))),
    ],
};

const SELECTOR: Struct = Struct {
    name: "Selector",
    fields: &[
        ("group", Shape::Str),
        ("version", Shape::Str),
        ("kind", Shape::Str),
        ("name", Shape::Str),
        ("namespace", Shape::Str),
        ("annotationSelector", Shape::Str),
        ("labelSelector", Shape::Str),
    ],
};

const PATCH: Struct = Struct {
    name: "Patch",
    fields: &[
        ("path", Shape::Str),
        ("patch", Shape::Str),
        ("target", Shape::Struct(&SELECTOR)),
        ("options", Shape::Map(&Shape::Bool)),
    ],
};

const IMAGE: Struct = Struct {
    name: "Image",
    fields: &[
        ("name", Shape::Str),
        ("newName", Shape::Str),
        ("tagSuffix", Shape::Str),
        ("newTag", Shape::Str),
        ("digest", Shape::Str),
    ],
};

const REPLICA: Struct = Struct {
    name: "Replica",
    fields: &[("name", Shape::Str), ("count", Shape::Int)],
};

const GENERATOR_OPTIONS: Struct = Struct {
    name: "GeneratorOptions",
    fields: &[
        ("labels", STR_MAP),
        ("annotations", STR_MAP),
        ("disableNameSuffixHash", Shape::Bool),
        ("immutable", Shape::Bool),
    ],
};

const HELM_GLOBALS: Struct = Struct {
    name: "HelmGlobals",
    fields: &[("chartHome", Shape::Str), ("configHome", Shape::Str)],
};

const HELM_CHART: Struct = Struct {
    name: "HelmChart",
    fields: &[
        ("name", Shape::Str),
        ("version", Shape::Str),
        ("repo", Shape::Str),
        ("releaseName", Shape::Str),
        ("namespace", Shape::Str),
        ("additionalValuesFiles", STRS),
        ("valuesFile", Shape::Str),
        ("valuesInline", Shape::Map(&Shape::Any)),
        ("valuesMerge", Shape::Str),
        ("includeCRDs", Shape::Bool),
        ("skipHooks", Shape::Bool),
        ("apiVersions", STRS),
        ("kubeVersion", Shape::Str),
        ("nameTemplate", Shape::Str),
        ("skipTests", Shape::Bool),
        ("debug", Shape::Bool),
    ],
};

const HELM_CHART_ARGS: Struct = Struct {
    name: "HelmChartArgs",
    fields: &[
        ("chartName", Shape::Str),
        ("chartVersion", Shape::Str),
        ("chartRepoUrl", Shape::Str),
        ("chartHome", Shape::Str),
        ("chartRepoName", Shape::Str),
        ("helmBin", Shape::Str),
        ("helmHome", Shape::Str),
        ("values", Shape::Str),
        ("valuesLocal", Shape::Map(&Shape::Any)),
        ("valuesMerge", Shape::Str),
        ("releaseName", Shape::Str),
        ("releaseNamespace", Shape::Str),
        ("extraArgs", STRS),
    ],
};

const CONFIG_MAP_ARGS: Struct = Struct {
    name: "ConfigMapArgs",
    fields: &[
        ("namespace", Shape::Str),
        ("name", Shape::Str),
        ("behavior", Shape::Str),
        ("literals", STRS),
        ("files", STRS),
        ("envs", STRS),
        ("env", Shape::Str),
        ("options", Shape::Struct(&GENERATOR_OPTIONS)),
    ],
};

const SECRET_ARGS: Struct = Struct {
    name: "SecretArgs",
    fields: &[
        ("namespace", Shape::Str),
        ("name", Shape::Str),
        ("behavior", Shape::Str),
        ("literals", STRS),
        ("files", STRS),
        ("envs", STRS),
        ("env", Shape::Str),
        ("options", Shape::Struct(&GENERATOR_OPTIONS)),
        ("type", Shape::Str),
    ],
};

const LEGACY_SORT_OPTIONS: Struct = Struct {
    name: "LegacySortOptions",
    fields: &[("orderFirst", STRS), ("orderLast", STRS)],
};

const SORT_OPTIONS: Struct = Struct {
    name: "SortOptions",
    fields: &[
        ("order", Shape::Str),
        ("legacySortOptions", Shape::Struct(&LEGACY_SORT_OPTIONS)),
    ],
};

const FIELD_OPTIONS: Struct = Struct {
    name: "FieldOptions",
    fields: &[
        ("delimiter", Shape::Str),
        ("index", Shape::Int),
        ("encoding", Shape::Str),
        ("create", Shape::Bool),
    ],
};

const SOURCE_SELECTOR: Struct = Struct {
    name: "SourceSelector",
    fields: &[
        ("group", Shape::Str),
        ("version", Shape::Str),
        ("kind", Shape::Str),
        ("name", Shape::Str),
        ("namespace", Shape::Str),
        ("fieldPath", Shape::Str),
        ("options", Shape::Struct(&FIELD_OPTIONS)),
    ],
};

const TARGET_SELECTOR: Struct = Struct {
    name: "TargetSelector",
    fields: &[
        ("select", Shape::Struct(&SELECTOR)),
        ("reject", Shape::List(&Shape::Struct(&SELECTOR))),
        ("fieldPaths", STRS),
        ("options", Shape::Struct(&FIELD_OPTIONS)),
    ],
};

/// A replacements file: a list of replacements (or one).
pub(crate) const REPLACEMENTS: Shape = Shape::List(&Shape::Struct(&REPLACEMENT_FIELD));

/// A `replacements` entry (also the shape of each entry of a replacements file).
pub(crate) const REPLACEMENT_FIELD: Struct = Struct {
    name: "ReplacementField",
    fields: &[
        ("source", Shape::Struct(&SOURCE_SELECTOR)),
        ("targets", Shape::List(&Shape::Struct(&TARGET_SELECTOR))),
        ("path", Shape::Str),
    ],
};

const VAR_TARGET: Struct = Struct {
    name: "Target",
    fields: &[
        ("apiVersion", Shape::Str),
        ("group", Shape::Str),
        ("version", Shape::Str),
        ("kind", Shape::Str),
        ("name", Shape::Str),
        ("namespace", Shape::Str),
    ],
};

const VAR: Struct = Struct {
    name: "Var",
    fields: &[
        ("name", Shape::Str),
        ("objref", Shape::Struct(&VAR_TARGET)),
        (
            "fieldref",
            Shape::Struct(&Struct {
                name: "FieldSelector",
                fields: &[("fieldPath", Shape::Str)],
            }),
        ),
    ],
};

const NAME_BACK_REFERENCE: Struct = Struct {
    name: "NameBackReferences",
    fields: &[
        ("group", Shape::Str),
        ("version", Shape::Str),
        ("kind", Shape::Str),
        ("fieldSpecs", FIELD_SPECS),
    ],
};

const FIELD_SPECS: Shape = Shape::List(&Shape::Struct(&FIELD_SPEC));

/// A `configurations:` file (kustomize's `TransformerConfig`).
pub(crate) const TRANSFORMER_CONFIG: Struct = Struct {
    name: "TransformerConfig",
    fields: &[
        ("namePrefix", FIELD_SPECS),
        ("nameSuffix", FIELD_SPECS),
        ("namespace", FIELD_SPECS),
        ("commonLabels", FIELD_SPECS),
        ("templateLabels", FIELD_SPECS),
        ("commonAnnotations", FIELD_SPECS),
        (
            "nameReference",
            Shape::List(&Shape::Struct(&NAME_BACK_REFERENCE)),
        ),
        ("varReference", FIELD_SPECS),
        ("images", FIELD_SPECS),
        ("replicas", FIELD_SPECS),
        ("labels", FIELD_SPECS),
    ],
};

/// The kustomization file (`Kustomization` and `Component`).
pub(crate) const KUSTOMIZATION: Struct = Struct {
    name: "Kustomization",
    fields: &[
        ("apiVersion", Shape::Str),
        ("kind", Shape::Str),
        ("metadata", Shape::Struct(&OBJECT_META)),
        ("openapi", STR_MAP),
        ("namePrefix", Shape::Str),
        ("nameSuffix", Shape::Str),
        ("namespace", Shape::Str),
        ("commonLabels", STR_MAP),
        ("labels", Shape::List(&Shape::Struct(&LABEL))),
        ("commonAnnotations", STR_MAP),
        ("patchesStrategicMerge", STRS),
        ("patchesJson6902", Shape::List(&Shape::Struct(&PATCH))),
        ("patches", Shape::List(&Shape::Struct(&PATCH))),
        ("images", Shape::List(&Shape::Struct(&IMAGE))),
        ("imageTags", Shape::List(&Shape::Struct(&IMAGE))),
        (
            "replacements",
            Shape::List(&Shape::Struct(&REPLACEMENT_FIELD)),
        ),
        ("replicas", Shape::List(&Shape::Struct(&REPLICA))),
        ("vars", Shape::List(&Shape::Struct(&VAR))),
        ("sortOptions", Shape::Struct(&SORT_OPTIONS)),
        ("resources", STRS),
        ("components", STRS),
        ("crds", STRS),
        ("bases", STRS),
        (
            "configMapGenerator",
            Shape::List(&Shape::Struct(&CONFIG_MAP_ARGS)),
        ),
        ("secretGenerator", Shape::List(&Shape::Struct(&SECRET_ARGS))),
        ("helmGlobals", Shape::Struct(&HELM_GLOBALS)),
        ("helmCharts", Shape::List(&Shape::Struct(&HELM_CHART))),
        (
            "helmChartInflationGenerator",
            Shape::List(&Shape::Struct(&HELM_CHART_ARGS)),
        ),
        ("generatorOptions", Shape::Struct(&GENERATOR_OPTIONS)),
        ("configurations", STRS),
        ("generators", STRS),
        ("transformers", STRS),
        ("validators", STRS),
        ("buildMetadata", STRS),
    ],
};

/// Why a document does not decode into its Go type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A field the type does not have.
    #[error("json: unknown field `{field}` in {path}")]
    UnknownField {
        /// The field as written.
        field: String,
        /// Where: the Go type and the path to it (`Kustomization`, `Image.images`).
        path: String,
    },
    /// A value of the wrong JSON type.
    #[error("json: cannot unmarshal {found} into Go struct field {field} of type {want}")]
    WrongType {
        /// The JSON type found (`number`, `bool`, `string`, `array`, `object`).
        found: &'static str,
        /// The Go field: the innermost struct and the path from the top (`Image.images.newTag`).
        field: String,
        /// The Go type wanted.
        want: &'static str,
    },
}

/// Bring `doc` to the canonical field names of `shape`, checking every value's JSON type and
/// dropping `null` fields, as Go's decoder would read it; unknown fields are refused.
pub(crate) fn normalize(doc: &mut Value, shape: &'static Struct) -> Result<(), DecodeError> {
    normalize_as(doc, Shape::Struct(shape), true)
}

/// [`normalize`] for files kustomize decodes without refusing unknown fields (they are dropped).
pub(crate) fn normalize_lenient(doc: &mut Value, shape: Shape) -> Result<(), DecodeError> {
    normalize_as(doc, shape, false)
}

fn normalize_as(doc: &mut Value, shape: Shape, strict: bool) -> Result<(), DecodeError> {
    let owner = match shape {
        Shape::Struct(s) => s.name,
        Shape::List(Shape::Struct(s)) => s.name,
        _ => "",
    };
    let mut ctx = Ctx {
        path: Vec::new(),
        owner,
        strict,
    };
    walk(doc, shape, &mut ctx)
}

/// Where the walk is, for messages.
struct Ctx {
    path: Vec<String>,
    /// The innermost struct, which Go names in its messages.
    owner: &'static str,
    /// Refuse unknown fields (else drop them).
    strict: bool,
}

impl Ctx {
    fn field(&self) -> String {
        let mut s = self.owner.to_string();
        for p in &self.path {
            s.push('.');
            s.push_str(p);
        }
        s
    }

    fn wrong(&self, v: &Value, want: &'static str) -> DecodeError {
        DecodeError::WrongType {
            found: json_type(v),
            field: self.field(),
            want,
        }
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn walk(v: &mut Value, shape: Shape, ctx: &mut Ctx) -> Result<(), DecodeError> {
    match shape {
        Shape::Any => Ok(()),
        Shape::Str => match v {
            Value::String(_) => Ok(()),
            Value::Null => {
                *v = Value::String(String::new());
                Ok(())
            }
            other => Err(ctx.wrong(other, "string")),
        },
        Shape::Bool => match v {
            Value::Bool(_) => Ok(()),
            Value::Null => {
                *v = Value::Bool(false);
                Ok(())
            }
            other => Err(ctx.wrong(other, "bool")),
        },
        Shape::Int => match v {
            Value::Null => {
                *v = Value::from(0);
                Ok(())
            }
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(()),
            // JSON prints an integral float without a fraction, which then reads as an int.
            Value::Number(n) => match n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18) {
                Some(f) => {
                    *v = Value::Number(Number::from(f as i64));
                    Ok(())
                }
                None => Err(ctx.wrong(v, "int64")),
            },
            other => Err(ctx.wrong(other, "int64")),
        },
        Shape::List(elem) => match v {
            Value::Null => Ok(()),
            Value::Array(items) => items.iter_mut().try_for_each(|i| walk(i, *elem, ctx)),
            other => Err(ctx.wrong(other, "array")),
        },
        Shape::Map(elem) => match v {
            Value::Null => Ok(()),
            Value::Object(m) => m.iter_mut().try_for_each(|(_, i)| walk(i, *elem, ctx)),
            other => Err(ctx.wrong(other, "map")),
        },
        Shape::Struct(s) => match v {
            Value::Null => Ok(()),
            Value::Object(m) => {
                let outer = std::mem::replace(&mut ctx.owner, s.name);
                let r = walk_struct(m, s, ctx);
                ctx.owner = outer;
                r
            }
            other => Err(ctx.wrong(other, "struct")),
        },
    }
}

fn walk_struct(
    m: &mut Map<String, Value>,
    s: &'static Struct,
    ctx: &mut Ctx,
) -> Result<(), DecodeError> {
    // Go sees the keys in sorted order (the JSON comes from a Go map): of two spellings of one
    // field, the later one wins.
    let mut keys: Vec<String> = m.keys().cloned().collect();
    keys.sort();
    let mut out = Map::new();
    for key in keys {
        let Some(mut value) = m.remove(&key) else {
            continue;
        };
        let found = s.fields.iter().find(|(name, _)| *name == key).or_else(|| {
            s.fields
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(&key))
        });
        let Some((name, shape)) = found else {
            if !ctx.strict {
                continue;
            }
            return Err(DecodeError::UnknownField {
                field: key,
                path: ctx.field(),
            });
        };
        // Go leaves a field alone when it reads null.
        if value.is_null() {
            continue;
        }
        ctx.path.push((*name).to_string());
        let r = walk(&mut value, *shape, ctx);
        ctx.path.pop();
        r?;
        out.insert((*name).to_string(), value);
    }
    *m = out;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_fold_case_and_the_later_spelling_wins() {
        let mut doc = json!({"NamePrefix": "a-", "nameprefix": "b-", "Vars": [{"NAME": "V",
            "objRef": {"Kind": "Service", "name": "s"}, "fieldref": {"fieldpath": "spec.x"}}]});
        normalize(&mut doc, &KUSTOMIZATION).unwrap();
        assert_eq!(
            doc,
            json!({"namePrefix": "b-", "vars": [{"name": "V",
                "objref": {"kind": "Service", "name": "s"}, "fieldref": {"fieldPath": "spec.x"}}]})
        );
    }

    #[test]
    fn a_wrong_type_names_the_go_field() {
        let mut doc = json!({"configMapGenerator": [{"name": "a",
            "options": {"disableNameSuffixHash": "true"}}]});
        assert_eq!(
            normalize(&mut doc, &KUSTOMIZATION),
            Err(DecodeError::WrongType {
                found: "string",
                field: "GeneratorOptions.configMapGenerator.options.disableNameSuffixHash".into(),
                want: "bool",
            })
        );
        let mut doc = json!({"images": [{"name": "nginx", "newTagg": "1"}]});
        assert_eq!(
            normalize(&mut doc, &KUSTOMIZATION),
            Err(DecodeError::UnknownField {
                field: "newTagg".into(),
                path: "Image.images".into(),
            })
        );
    }

    #[test]
    fn null_leaves_a_field_unset_and_integral_floats_are_ints() {
        let mut doc = json!({"namespace": "x", "Namespace": null,
            "replicas": [{"name": "w", "count": 3.0}], "commonLabels": {"a": null}});
        normalize(&mut doc, &KUSTOMIZATION).unwrap();
        assert_eq!(
            doc,
            json!({"commonLabels": {"a": ""}, "namespace": "x",
                "replicas": [{"name": "w", "count": 3}]})
        );
    }
}
