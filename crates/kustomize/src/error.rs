//! The errors of the engine: [`Error`] for a build, [`TransformError`] for one transformer step,
//! and the causes a step's helpers report ([`PatchError`], [`SelectorError`], [`FieldError`],
//! [`ReplacementError`], [`NameRefError`], [`VarError`]).

use crate::limits::Limit;
use crate::yaml::YamlError;

/// Why a build failed. Every variant but [`Error::Root`] names the kustomization (relative to the
/// build root) and the cause; file paths are relative to the root too.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The build root itself is unusable.
    #[error("build root {root}: {message}")]
    Root {
        /// The root given.
        root: String,
        /// What is wrong with it.
        message: String,
    },
    /// A directory that should hold a kustomization has none.
    #[error(
        "{dir}: no kustomization file (kustomization.yaml, kustomization.yml or Kustomization) found"
    )]
    NoKustomization {
        /// The directory, relative to the root.
        dir: String,
    },
    /// A directory holds more than one kustomization file.
    #[error("kustomization {dir}: found multiple kustomization files: {files}")]
    MultipleKustomizations {
        /// The directory.
        dir: String,
        /// The files found, comma-separated.
        files: String,
    },
    /// A referenced path leaves the build root (via `..` or a symlink).
    #[error("kustomization {kustomization}: {path} is outside the build root")]
    OutsideRoot {
        /// The kustomization that referenced it.
        kustomization: String,
        /// The path as written.
        path: String,
    },
    /// A file a kustomization reads (patch, generator source) lies outside its directory, which
    /// kustomize's default load restrictor refuses.
    #[error("kustomization {kustomization}: security; file '{file}' is not in or below '{dir}'")]
    NotLocal {
        /// The kustomization.
        kustomization: String,
        /// The file as written.
        file: String,
        /// The kustomization's directory.
        dir: String,
    },
    /// A feature this engine refuses on purpose: remote bases, helm, plugins, functions.
    #[error("kustomization {kustomization}: {what} is not supported")]
    Refused {
        /// The kustomization that asked for it.
        kustomization: String,
        /// What was asked for.
        what: String,
    },
    /// A `helmCharts` entry could not be inflated: a bad entry, a chart that is not in the
    /// tree, values that do not merge, or Helm's own failure.
    #[error("kustomization {kustomization}: helm chart {chart}: {message}")]
    Chart {
        /// The kustomization naming the chart.
        kustomization: String,
        /// The chart's name.
        chart: String,
        /// What went wrong (Helm's words when Helm failed).
        message: String,
        /// Whether trying again may succeed with the same tree.
        transient: bool,
        /// Whether the chart asks for what is refused on purpose (a download).
        refused: bool,
    },
    /// A `helmCharts` entry, and the build was given no [`crate::ChartEngine`] to render it.
    #[error(
        "kustomization {kustomization}: helm chart {chart}: helmCharts need a Helm engine and this build has none"
    )]
    NoChartEngine {
        /// The kustomization naming the chart.
        kustomization: String,
        /// The chart's name.
        chart: String,
    },
    /// A referenced file or directory does not exist.
    #[error("kustomization {kustomization}: {path} does not exist")]
    NotFound {
        /// The kustomization that referenced it.
        kustomization: String,
        /// The path, relative to the root.
        path: String,
    },
    /// Reading a file failed for a reason other than its absence: possibly transient.
    #[error("kustomization {kustomization}: {path}: {source}")]
    Io {
        /// The kustomization that read it.
        kustomization: String,
        /// The path, relative to the root.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The build crossed one of its [`limits`](crate::limits).
    #[error("kustomization {kustomization}: {file}: {limit}")]
    Limit {
        /// The kustomization being built.
        kustomization: String,
        /// The file (or part of the kustomization, such as an inline patch) that crossed it.
        file: String,
        /// The limit.
        limit: Limit,
    },
    /// A file (or inline text) is not the YAML expected.
    #[error("kustomization {kustomization}: {what}: {source}")]
    Yaml {
        /// The kustomization being built.
        kustomization: String,
        /// What was read: `resource app.yaml`, `invalid kustomization`, ...
        what: String,
        /// The reader's error.
        source: YamlError,
    },
    /// A transformer (patch, namespace, labels, images, replacements, ...) failed.
    #[error("kustomization {kustomization}: {}{source}", with_colon(.step))]
    Transform {
        /// The kustomization being built.
        kustomization: String,
        /// The step and what it read, e.g. `patch deploy.yaml` (may be empty).
        step: String,
        /// The cause.
        source: TransformError,
    },
    /// Resources, vars or field specs gathered from several places collide.
    #[error("kustomization {kustomization}: {}{source}", with_colon(.step))]
    Conflict {
        /// The kustomization being built.
        kustomization: String,
        /// What was being added, e.g. `configMapGenerator app` (may be empty).
        step: String,
        /// The collision.
        source: ConflictError,
    },
    /// The kustomization is malformed or contradicts itself or the tree it builds.
    #[error("kustomization {kustomization}: {message}")]
    Build {
        /// The kustomization being built.
        kustomization: String,
        /// The cause.
        message: String,
    },
}

fn with_colon(step: &str) -> String {
    if step.is_empty() {
        String::new()
    } else {
        format!("{step}: ")
    }
}

impl Error {
    /// The limit crossed, when that is why the build failed.
    pub fn limit(&self) -> Option<&Limit> {
        match self {
            Error::Limit { limit, .. } => Some(limit),
            Error::Yaml { source, .. } => source.limit(),
            Error::Transform {
                source: TransformError::Yaml(y),
                ..
            } => y.limit(),
            Error::Transform {
                source: TransformError::Limit(l),
                ..
            } => Some(l),
            _ => None,
        }
    }

    /// Whether the failure may go away by itself (an I/O error other than a missing file), so a
    /// caller should retry rather than remember the verdict.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Io { .. }
                | Error::Chart {
                    transient: true,
                    ..
                }
        ) || matches!(self.limit(), Some(Limit::Deadline { .. }))
    }

    /// Whether the build asked for something this engine refuses on purpose.
    pub fn is_refused(&self) -> bool {
        matches!(
            self,
            Error::Refused { .. }
                | Error::NoChartEngine { .. }
                | Error::Chart { refused: true, .. }
        )
    }

    /// Whether the build tried to read outside its root or its kustomization's directory.
    pub fn is_outside_root(&self) -> bool {
        matches!(self, Error::OutsideRoot { .. } | Error::NotLocal { .. })
    }
}

/// Why resources, vars or field specs could not be gathered together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConflictError {
    /// Two resources with the same id.
    #[error("may not add resource with an already registered id: {0}")]
    DuplicateId(String),
    /// Two vars with the same name.
    #[error("var '{0}' already encountered")]
    DuplicateVar(String),
    /// A var names several of the resources present where it is declared.
    #[error("found {count} resId matches for var '{name}' (unable to disambiguate)")]
    AmbiguousVar {
        /// How many.
        count: usize,
        /// The var.
        name: String,
    },
    /// A generator with behavior merge or replace names no existing object.
    #[error("id {0} does not exist; cannot merge or replace")]
    NothingToMerge(String),
    /// A generator with behavior create names an existing object.
    #[error("id {0} exists; behavior must be merge or replace")]
    AlreadyExists(String),
    /// A generator with behavior merge or replace names several objects.
    #[error("found multiple objects that could accept merge of {0}")]
    ManyMergeTargets(String),
    /// Two field specs for the same path disagree on `create`.
    #[error("conflicting fieldspecs for path {path} of kind {kind:?}")]
    FieldSpecs {
        /// The field path.
        path: String,
        /// The kind.
        kind: String,
    },
}

/// Why one transformer step failed.
#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    /// Its input (a patch, a plugin configuration) is not the YAML expected.
    #[error("{0}")]
    Yaml(#[from] YamlError),
    /// A strategic merge patch names no resource of the build.
    #[error("no resource matches strategic merge patch \"{0}\"")]
    NoMatch(String),
    /// A strategic merge patch names several resources.
    #[error("multiple resources match strategic merge patch \"{0}\"")]
    ManyMatches(String),
    /// Several strategic merge patches in one entry that has a target.
    #[error(
        "Multiple Strategic-Merge Patches in one `patches` entry is not allowed to set `patches.target` field"
    )]
    ManyPatchesWithTarget,
    /// A JSON 6902 patch without a target.
    #[error("must specify a target for JSON patch")]
    JsonPatchWithoutTarget,
    /// Applying a patch to one object failed.
    #[error("{source} (patching {object})")]
    Patch {
        /// The object patched, as `group_version_kind|namespace|name`.
        object: String,
        /// The cause (boxed: it is rare and large).
        source: Box<PatchError>,
    },
    /// A target selector or an image name is not a valid regular expression or label selector.
    #[error("{0}")]
    Selector(#[from] SelectorError),
    /// Two resources end with the same id after the namespace was set.
    #[error("namespace transformation produces ID conflict: {0}")]
    IdConflict(String),
    /// A field a transformer sets has the wrong shape in some object.
    #[error("{0}")]
    Field(#[from] FieldError),
    /// A field the namespace transformer's field specs name has the wrong shape.
    #[error("namespace transformation failed: {0}")]
    NamespaceField(FieldError),
    /// A replicas entry names no workload.
    #[error("resource with name {name} does not match a config with the following GVK [{gvks}]")]
    NoReplicaTarget {
        /// The workload name.
        name: String,
        /// The kinds the replicas field specs name, space-separated.
        gvks: String,
    },
    /// A replacement could not be carried out.
    #[error("{0}")]
    Replacement(ReplacementError),
    /// A name reference could not be updated.
    #[error("updating name reference in '{path}' field of '{referrer}': {source}")]
    NameRef {
        /// The field spec path of the reference.
        path: String,
        /// The object holding the reference, as `group_version_kind|namespace|name`.
        referrer: String,
        /// The cause (boxed: it is rare and large).
        source: Box<NameRefError>,
    },
    /// A var could not be resolved.
    #[error("{0}")]
    Var(#[from] VarError),
    /// A copy (JSON patch `copy`, a replacement) crossed the build's limit.
    #[error("{0}")]
    Limit(Limit),
}

impl From<ReplacementError> for TransformError {
    /// A replacement's failure: the limit a copy crossed is a limit, anything else its cause.
    fn from(e: ReplacementError) -> Self {
        match e {
            ReplacementError::Limit(l) => TransformError::Limit(l),
            other => TransformError::Replacement(other),
        }
    }
}

/// Why a strategic merge patch or a JSON 6902 patch does not apply to an object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// A JSON patch path that is not a JSON pointer.
    #[error("invalid JSON pointer {0:?}")]
    InvalidPointer(String),
    /// A JSON patch path through a field or element the object lacks.
    #[error("doc is missing path: {0}")]
    MissingPath(String),
    /// A JSON patch path steps into a list with something other than an index.
    #[error("invalid index {index:?} in {path}")]
    InvalidIndex {
        /// The step.
        index: String,
        /// The whole path.
        path: String,
    },
    /// A JSON patch `add` past the end of a list.
    #[error("add operation does not apply: index out of bounds in {0}")]
    IndexOutOfBounds(String),
    /// A JSON patch operation whose target field or element is missing.
    #[error("{op} operation does not apply: doc is missing path: {path}")]
    NotApplicable {
        /// The operation (`add`, `remove`).
        op: &'static str,
        /// The path.
        path: String,
    },
    /// A JSON patch `replace` of a missing field.
    #[error("replace operation does not apply: doc is missing key: {0}")]
    ReplaceMissingKey(String),
    /// A JSON patch `remove` of the whole object.
    #[error("cannot remove the whole document")]
    RemoveRoot,
    /// A JSON patch operation without a `path`.
    #[error("operation {0:?} has no path")]
    NoPath(String),
    /// A JSON patch operation without the `value` or `from` it needs.
    #[error("operation {op} {path} has no {member}")]
    MissingMember {
        /// The operation.
        op: String,
        /// Its path.
        path: String,
        /// What it lacks: `value` or `from`.
        member: &'static str,
    },
    /// A JSON patch `test` that found another value.
    #[error("testing value {0} failed")]
    TestFailed(String),
    /// A JSON patch operation that RFC 6902 does not define.
    #[error("unexpected operation {0:?}")]
    UnknownOperation(String),
    /// A strategic merge patch meets a map where a list is (or the other way round).
    #[error("wrong node kind: expected {expected} but got {got}")]
    WrongNodeKind {
        /// The kind of node found first (`MappingNode`, `SequenceNode`, `ScalarNode`).
        expected: &'static str,
        /// The kind that disagrees.
        got: &'static str,
    },
    /// A `$patch` directive other than `delete`, `replace` or `merge`.
    #[error("unknown patch strategy '{0}'")]
    UnknownStrategy(String),
    /// A JSON patch `copy` crossed the build's alias-expansion budget.
    #[error("{0}")]
    Limit(Limit),
}

/// Why a target selector or a label selector could not be compiled.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SelectorError {
    /// A name, namespace, group, version, kind or image pattern is not a regular expression.
    #[error("{0}")]
    Regex(#[from] regex::Error),
    /// A set-based requirement (`in`, `notin`) without a parenthesised list.
    #[error("invalid label selector set {0:?}")]
    Set(String),
    /// A requirement that is none of the label selector forms.
    #[error("unable to parse requirement: {0:?}")]
    Requirement(String),
}

/// Why a field a field spec names could not be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// The path steps through a scalar.
    #[error("expected sequence or mapping node at {0}")]
    NotContainer(String),
    /// The path has an empty segment.
    #[error("cannot set or create an empty field name")]
    EmptyName,
    /// A labels or annotations field that is not a map.
    #[error("expected a map at {0}")]
    NotAMap(String),
    /// A label or annotation with an empty key.
    #[error("cannot set an empty key in the map at {0}")]
    EmptyKey(String),
    /// An image field that is not a string.
    #[error("image must be a string")]
    ImageNotString,
}

/// Why a replacement could not be carried out.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReplacementError {
    /// An entry without a source or without targets.
    #[error("replacements must specify a source and at least one target")]
    Incomplete,
    /// A target without `select`.
    #[error("target must specify resources to select")]
    TargetWithoutSelect,
    /// The source selector picks no resource.
    #[error("nothing selected by {0}")]
    NothingSelected(String),
    /// The source selector picks several resources.
    #[error("multiple matches for selector {0}")]
    ManySelected(String),
    /// The source lacks the field to copy.
    #[error("fieldPath `{field_path}` is missing for replacement source {selector}")]
    SourceFieldMissing {
        /// The source field path.
        field_path: String,
        /// The source selector, described.
        selector: String,
    },
    /// A target lacks the field to set.
    #[error("unable to find field {0:?} in replacement target")]
    TargetFieldMissing(String),
    /// A target lacks the field to set and it could not be created.
    #[error("unable to find or create field {0:?} in replacement target")]
    TargetFieldNotCreated(String),
    /// A delimiter option on a map or list.
    #[error("delimiter option can only be used with scalar nodes")]
    DelimiterOnNonScalar,
    /// A delimiter index past the parts of the source value.
    #[error("options.index {index} is out of bounds for value {value}")]
    IndexOutOfBounds {
        /// The index asked for.
        index: i64,
        /// The value split.
        value: String,
    },
    /// A label or annotation selector that does not parse.
    #[error("{0}")]
    Selector(#[from] SelectorError),
    /// The copy crossed the build's alias-expansion budget.
    #[error("{0}")]
    Limit(Limit),
}

/// Why a name reference could not be pointed at the renamed object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameRefError {
    /// Several objects could be the one referred to.
    #[error("found multiple possible referrals: {0}")]
    Ambiguous(String),
    /// A reference given as a map without `name`.
    #[error("path config error; no 'name' field in node")]
    NoName,
    /// The field spec's path does not fit the object.
    #[error("{0}")]
    Field(#[from] FieldError),
}

/// Why a legacy var could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VarError {
    /// No resource is the one the var names.
    #[error("var '{0}' cannot be mapped to a field in the set of known resources")]
    Unmapped(String),
    /// The resource lacks the var's field.
    #[error("field path {path} of var '{name}' not found")]
    FieldNotFound {
        /// The field path.
        path: String,
        /// The var.
        name: String,
    },
    /// The var's field is a map or list.
    #[error("var '{0}' must refer to a scalar field")]
    NotScalar(String),
}
