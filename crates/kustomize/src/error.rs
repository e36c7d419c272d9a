//! The errors of the engine: [`Error`] for a build, [`TransformError`] for one transformer step.

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
        matches!(self, Error::Io { .. }) || matches!(self.limit(), Some(Limit::Deadline { .. }))
    }

    /// Whether the build asked for something this engine refuses on purpose.
    pub fn is_refused(&self) -> bool {
        matches!(self, Error::Refused { .. })
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
    #[error("{message} (patching {object})")]
    Patch {
        /// The object patched, as `group_version_kind|namespace|name`.
        object: String,
        /// The cause.
        message: String,
    },
    /// A target selector or an image name is not a valid regular expression or label selector.
    #[error("{0}")]
    Selector(String),
    /// Two resources end with the same id after the namespace was set.
    #[error("namespace transformation produces ID conflict: {0}")]
    IdConflict(String),
    /// A field a transformer sets has the wrong shape in some object.
    #[error("{0}")]
    Field(String),
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
    Replacement(String),
    /// A copy (JSON patch `copy`, a replacement) crossed the build's limit.
    #[error("{0}")]
    Limit(Limit),
}

impl TransformError {
    /// A replacement's failure: the limit a copy crossed, or its message.
    pub(crate) fn replacement(message: String) -> Self {
        match crate::yaml::take_crossed_limit() {
            Some(l) => TransformError::Limit(l),
            None => TransformError::Replacement(message),
        }
    }
}
