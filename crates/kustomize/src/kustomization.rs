//! The kustomization file format (kustomize.config.k8s.io/v1beta1 `Kustomization` and
//! v1alpha1 `Component`), as plain data a caller may also build in memory.

use indexmap::IndexMap;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// A kustomization: what to include and how to transform it. Field names follow the file format.
/// Read from a file, it is first checked by Go's decoding rules (unknown fields refused there),
/// so the serde types themselves accept what kustomize's lenient readers (plugin configs) accept.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Kustomization {
    /// `kustomize.config.k8s.io/v1beta1` (or v1alpha1 for components).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    /// `Kustomization` or `Component`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// Metadata of the kustomization itself (ignored by the build).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// `path`: a custom OpenAPI schema file; `version`: a built-in schema version.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub openapi: IndexMap<String, String>,
    /// Prefix added to every resource name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name_prefix: String,
    /// Suffix added to every resource name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name_suffix: String,
    /// Namespace set on every namespaced resource.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Labels added to metadata, selectors and templates.
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "string_map"
    )]
    pub common_labels: IndexMap<String, String>,
    /// Labels with explicit control over selectors, templates and extra fields.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<Label>,
    /// Annotations added to metadata and pod templates.
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "string_map"
    )]
    pub common_annotations: IndexMap<String, String>,
    /// Legacy strategic merge patches: file paths or inline YAML.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches_strategic_merge: Vec<String>,
    /// Legacy JSON 6902 patches with a target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches_json6902: Vec<Patch>,
    /// Patches (strategic merge or JSON 6902), optionally with a target selector.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<Patch>,
    /// Image name/tag/digest overrides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<Image>,
    /// Deprecated spelling of `images`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_tags: Vec<Image>,
    /// Copy values from one field to others.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replacements: Vec<ReplacementField>,
    /// Replica count overrides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<Replica>,
    /// Legacy `$(VAR)` substitution.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vars: Vec<Var>,
    /// Output order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort_options: Option<SortOptions>,
    /// Files, directories and kustomizations to include.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// Components applied on top of this kustomization's resources.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<String>,
    /// CRD files whose schemas add name references.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub crds: Vec<String>,
    /// Deprecated spelling of `resources` (appended after them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bases: Vec<String>,
    /// ConfigMaps to generate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config_map_generator: Vec<GeneratorArgs>,
    /// Secrets to generate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_generator: Vec<GeneratorArgs>,
    /// Settings shared by the `helmCharts` of this kustomization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm_globals: Option<crate::helm::HelmGlobals>,
    /// Local Helm charts to inflate, as `kustomize build --enable-helm` does.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub helm_charts: Vec<crate::helm::HelmChart>,
    /// The deprecated spelling of `helmCharts` (moved there when the file is read).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub helm_chart_inflation_generator: Vec<crate::helm::HelmChartArgs>,
    /// Options for every generator of this kustomization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_options: Option<GeneratorOptions>,
    /// Files with custom field specs for the built-in transformers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub configurations: Vec<String>,
    /// Generator plugin configurations (only built-in kinds are accepted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub generators: Vec<String>,
    /// Transformer plugin configurations (only built-in kinds are accepted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transformers: Vec<String>,
    /// Validator plugins (refused).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validators: Vec<String>,
    /// `originAnnotations`, `transformerAnnotations`, `managedByLabel`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub build_metadata: Vec<String>,
}

/// One entry of `labels`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Label {
    /// The labels to add.
    #[serde(default, deserialize_with = "string_map")]
    pub pairs: IndexMap<String, String>,
    /// Also add them to selectors (as commonLabels does).
    #[serde(default, deserialize_with = "lenient_bool")]
    pub include_selectors: bool,
    /// Also add them to pod templates.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub include_templates: bool,
    /// Extra fields to put them in.
    #[serde(default, rename = "fields")]
    pub fields: Vec<FieldSpec>,
}

/// A field of some kinds of resource, as used by transformer configurations.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FieldSpec {
    /// API group the resource must have (empty: any).
    #[serde(default)]
    pub group: String,
    /// API version the resource must have (empty: any).
    #[serde(default)]
    pub version: String,
    /// Kind the resource must have (empty: any).
    #[serde(default)]
    pub kind: String,
    /// Slash-separated path; `[]` marks a list, `\/` escapes a slash.
    #[serde(default)]
    pub path: String,
    /// Create the field when it is missing.
    #[serde(default, rename = "create", deserialize_with = "lenient_bool")]
    pub create: bool,
    /// Skip resources this spec matches (used by some built-in configs).
    #[serde(default, deserialize_with = "lenient_bool")]
    pub skip: bool,
}

/// Selects resources by group/version/kind/name/namespace (regular expressions) and selectors.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Selector {
    /// API group.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// API version.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// Kind.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// Name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Kubernetes label selector.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub label_selector: String,
    /// Kubernetes label selector evaluated against annotations.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub annotation_selector: String,
}

/// A patch: strategic merge or JSON 6902, from a file or inline.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Patch {
    /// File holding the patch.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// Inline patch text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub patch: String,
    /// Which resources it applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Selector>,
    /// `allowNameChange`, `allowKindChange`.
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "bool_map"
    )]
    pub options: IndexMap<String, bool>,
}

/// An image override.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    /// Image name to match (without tag or digest).
    #[serde(default)]
    pub name: String,
    /// Replacement name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub new_name: String,
    /// Appended to the tag.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tag_suffix: String,
    /// Replacement tag.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub new_tag: String,
    /// Replacement digest (wins over a tag).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub digest: String,
}

/// A replica count override.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Replica {
    /// Name of the workload.
    #[serde(default)]
    pub name: String,
    /// The count.
    #[serde(deserialize_with = "lenient_i64")]
    pub count: i64,
}

/// Options shared by generators.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GeneratorOptions {
    /// Labels added to generated objects.
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "string_map"
    )]
    pub labels: IndexMap<String, String>,
    /// Annotations added to generated objects.
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "string_map"
    )]
    pub annotations: IndexMap<String, String>,
    /// Do not append the content hash to the name.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub disable_name_suffix_hash: bool,
    /// Mark the generated object immutable.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub immutable: bool,
}

/// A ConfigMap or Secret generator.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GeneratorArgs {
    /// Namespace of the generated object.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Name of the generated object (before prefix, suffix and hash).
    #[serde(default)]
    pub name: String,
    /// `create` (default), `merge` or `replace`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub behavior: String,
    /// `KEY=VALUE` entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub literals: Vec<String>,
    /// Files, optionally `key=path`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    /// Env files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub envs: Vec<String>,
    /// Deprecated single env file.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub env: String,
    /// Per-generator options, merged over `generatorOptions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<GeneratorOptions>,
    /// Secret type (secrets only).
    #[serde(default, rename = "type", skip_serializing_if = "String::is_empty")]
    pub kind: String,
}

/// `sortOptions`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SortOptions {
    /// `legacy` or `fifo`.
    #[serde(default)]
    pub order: String,
    /// Custom kind lists for the legacy order.
    #[serde(default)]
    pub legacy_sort_options: Option<LegacySortOptions>,
}

/// Kinds placed first and last by the legacy order.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LegacySortOptions {
    /// Kinds first, in this order.
    #[serde(default)]
    pub order_first: Vec<String>,
    /// Kinds last, in this order.
    #[serde(default)]
    pub order_last: Vec<String>,
}

/// A replacement: inline, or a file of them (`path`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReplacementField {
    /// File holding a list of replacements.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// Where the value comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<ReplacementSource>,
    /// Where it goes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<ReplacementTarget>,
}

/// The source of a replacement.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReplacementSource {
    /// API group.
    #[serde(default)]
    pub group: String,
    /// API version.
    #[serde(default)]
    pub version: String,
    /// Kind.
    #[serde(default)]
    pub kind: String,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Namespace.
    #[serde(default)]
    pub namespace: String,
    /// Field path (default `metadata.name`).
    #[serde(default)]
    pub field_path: String,
    /// Delimiter/index options.
    #[serde(default)]
    pub options: Option<FieldOptions>,
}

/// A target of a replacement.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReplacementTarget {
    /// Resources to change.
    #[serde(default)]
    pub select: Option<Selector>,
    /// Resources to leave alone.
    #[serde(default)]
    pub reject: Vec<Selector>,
    /// Fields to set.
    #[serde(default)]
    pub field_paths: Vec<String>,
    /// Delimiter/index/create options.
    #[serde(default)]
    pub options: Option<FieldOptions>,
}

/// Options of a replacement source or target.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FieldOptions {
    /// Split the value on this delimiter.
    #[serde(default)]
    pub delimiter: String,
    /// Which part after splitting.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub index: i64,
    /// Unused encoding option.
    #[serde(default)]
    pub encoding: String,
    /// Create missing target fields.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub create: bool,
}

/// A legacy var.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Var {
    /// `$(NAME)`.
    pub name: String,
    /// The object holding the value.
    pub objref: VarTarget,
    /// The field holding the value (default `metadata.name`).
    #[serde(default)]
    pub fieldref: Option<VarField>,
}

/// The object a var reads from.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VarTarget {
    /// apiVersion (alternative to group/version).
    #[serde(default)]
    pub api_version: String,
    /// API group.
    #[serde(default)]
    pub group: String,
    /// API version.
    #[serde(default)]
    pub version: String,
    /// Kind.
    #[serde(default)]
    pub kind: String,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Namespace.
    #[serde(default)]
    pub namespace: String,
}

/// The field a var reads.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VarField {
    /// Dotted field path.
    #[serde(default)]
    pub field_path: String,
}

fn scalar_text(v: Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

fn string_map<'de, D: Deserializer<'de>>(d: D) -> Result<IndexMap<String, String>, D::Error> {
    let raw: Option<IndexMap<String, Value>> = Option::deserialize(d)?;
    let mut out = IndexMap::new();
    for (k, v) in raw.unwrap_or_default() {
        let s = scalar_text(v)
            .ok_or_else(|| serde::de::Error::custom(format!("value of {k} must be a string")))?;
        out.insert(k, s);
    }
    Ok(out)
}

fn parse_bool<E: serde::de::Error>(v: Value) -> Result<bool, E> {
    match v {
        Value::Bool(b) => Ok(b),
        Value::Null => Ok(false),
        Value::String(s) => match s.as_str() {
            "true" | "True" | "TRUE" => Ok(true),
            "false" | "False" | "FALSE" | "" => Ok(false),
            _ => Err(E::custom(format!("expected a boolean, got {s:?}"))),
        },
        other => Err(E::custom(format!("expected a boolean, got {other}"))),
    }
}

fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    parse_bool(Value::deserialize(d)?)
}

fn bool_map<'de, D: Deserializer<'de>>(d: D) -> Result<IndexMap<String, bool>, D::Error> {
    let raw: Option<IndexMap<String, Value>> = Option::deserialize(d)?;
    raw.unwrap_or_default()
        .into_iter()
        .map(|(k, v)| parse_bool(v).map(|b| (k, b)))
        .collect()
}

pub(crate) fn lenient_i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    match Value::deserialize(d)? {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| serde::de::Error::custom("expected an integer")),
        Value::String(s) => s
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("expected an integer, got {s:?}"))),
        Value::Null => Ok(0),
        other => Err(serde::de::Error::custom(format!(
            "expected an integer, got {other}"
        ))),
    }
}

/// Why a kustomization's text is not a kustomization.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Not YAML, or YAML over the [`limits`](crate::limits).
    #[error("{0}")]
    Yaml(#[from] crate::yaml::YamlError),
    /// The document is a list or a scalar.
    #[error("kustomization must be a YAML mapping")]
    NotAMapping,
    /// The document has no fields.
    #[error("kustomization.yaml is empty")]
    Empty,
    /// A field is unknown or has the wrong type, as Go's decoder reports it.
    #[error("{0}")]
    Decode(#[from] crate::godecode::DecodeError),
    /// A field is unknown or has the wrong type.
    #[error("{0}")]
    Field(String),
}

impl Kustomization {
    /// Read a kustomization from its YAML text.
    pub fn from_yaml(text: &str) -> Result<Self, ParseError> {
        let docs = crate::yaml::parse_documents(text, crate::yaml::ScalarMode::Go)?;
        let doc = docs.into_iter().next().unwrap_or(Value::Null);
        let map = match doc {
            Value::Object(m) => m,
            Value::Null => serde_json::Map::new(),
            _ => return Err(ParseError::NotAMapping),
        };
        if map.is_empty() {
            return Err(ParseError::Empty);
        }
        let mut doc = Value::Object(map);
        crate::godecode::normalize(&mut doc, &crate::godecode::KUSTOMIZATION)?;
        let Value::Object(map) = doc else {
            return Err(ParseError::NotAMapping);
        };
        let mut k: Kustomization = serde_json::from_value(Value::Object(map))
            .map_err(|e| ParseError::Field(e.to_string()))?;
        k.fix_legacy_fields();
        Ok(k)
    }

    /// Apply kustomize's fixes of deprecated fields (`bases`, `imageTags`, `env`).
    pub fn fix_legacy_fields(&mut self) {
        crate::helm::fix_legacy_charts(self);
        let bases = std::mem::take(&mut self.bases);
        self.resources.extend(bases);
        let tags = std::mem::take(&mut self.image_tags);
        self.images.extend(tags);
        for g in self
            .config_map_generator
            .iter_mut()
            .chain(self.secret_generator.iter_mut())
        {
            if !g.env.is_empty() {
                let env = std::mem::take(&mut g.env);
                g.envs.push(env);
            }
        }
    }

    /// `true` when this is a `Component`.
    pub fn is_component(&self) -> bool {
        self.kind == "Component"
    }
}
