//! Walking a kustomization tree: resources, nested kustomizations, components, generators and
//! transformers, in kustomize's order.

use crate::config::TransformerConfig;
use crate::error::{ConflictError, Error};
use crate::fs::{FsError, RootFs};
use crate::kustomization::{Kustomization, Var};
use crate::limits::{KUSTOMIZATION_DEPTH_CEILING, Limit, Limits};
use crate::resource::{Behavior, Resource};
use crate::yaml::YamlError;
use crate::{generators, transform, yaml};
use serde_json::{Map, Value};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// File names a kustomization may have, in the order kustomize looks for them.
pub(crate) const KUSTOMIZATION_FILES: [&str; 3] =
    ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// Resources gathered so far, with the transformer configuration and vars that came with them.
#[derive(Default)]
pub(crate) struct Acc {
    pub res: Vec<Resource>,
    /// Shared until a kustomization changes it (`configurations`, `crds`), so the many
    /// accumulators of a large tree cost no copies of the built-in configuration.
    pub config: std::sync::Arc<TransformerConfig>,
    pub vars: Vec<Var>,
    /// Record built-in transformers on resources (`buildMetadata: [transformerAnnotations]`).
    pub track_transformers: bool,
    /// The build's OpenAPI schema (`openapi:`), shared by every accumulator of the build.
    pub schema: std::rc::Rc<crate::schema::SchemaState>,
    /// Positions of resources by every name they have had; rebuilt after transformers ran.
    by_name: Option<std::collections::HashMap<String, Vec<usize>>>,
}

impl Acc {
    pub(crate) fn new() -> Self {
        Acc {
            res: Vec::new(),
            config: TransformerConfig::builtin_shared(),
            vars: Vec::new(),
            track_transformers: false,
            schema: Default::default(),
            by_name: None,
        }
    }

    /// Add a resource, refusing a second one with the same id.
    /// Forget the name index (resources were renamed, removed or reordered).
    pub(crate) fn invalidate(&mut self) {
        self.by_name = None;
    }

    /// Positions of resources that have or had this name.
    fn named(&mut self, name: &str) -> Vec<usize> {
        let res = &self.res;
        let index = self.by_name.get_or_insert_with(|| {
            let mut m: std::collections::HashMap<String, Vec<usize>> =
                std::collections::HashMap::new();
            for (i, r) in res.iter().enumerate() {
                m.entry(r.name().to_string()).or_default().push(i);
                for (_, n, _) in &r.prev_ids {
                    m.entry(n.clone()).or_default().push(i);
                }
            }
            m
        });
        index.get(name).cloned().unwrap_or_default()
    }

    fn push_indexed(&mut self, r: Resource) {
        if let Some(index) = &mut self.by_name {
            let i = self.res.len();
            index.entry(r.name().to_string()).or_default().push(i);
            for (_, n, _) in &r.prev_ids {
                index.entry(n.clone()).or_default().push(i);
            }
        }
        self.res.push(r);
    }

    pub(crate) fn append(&mut self, r: Resource) -> Result<(), ConflictError> {
        let id = r.id();
        if self
            .named(&id.name)
            .into_iter()
            .any(|i| self.res[i].has_id(&id))
        {
            return Err(ConflictError::DuplicateId(id.to_string()));
        }
        self.push_indexed(r);
        Ok(())
    }

    fn merge(&mut self, other: Acc) -> Result<(), ConflictError> {
        self.merge_config(&other.config)?;
        for v in other.vars {
            self.merge_var(v)?;
        }
        for r in other.res {
            self.append(r)?;
        }
        Ok(())
    }

    /// Add another configuration's specs (copying this one only when that changes it).
    pub(crate) fn merge_config(
        &mut self,
        other: &std::sync::Arc<TransformerConfig>,
    ) -> Result<(), ConflictError> {
        if std::sync::Arc::ptr_eq(&self.config, other) || self.config == *other {
            return Ok(());
        }
        std::sync::Arc::make_mut(&mut self.config).merge(other)
    }

    /// Add a var, binding it (as kustomize does, where it is declared) to the one resource
    /// present that it names by its current or any earlier id.
    fn merge_var(&mut self, v: Var) -> Result<(), ConflictError> {
        let bound: Vec<usize> = (0..self.res.len())
            .filter(|i| {
                let r = &self.res[*i];
                std::iter::once(r.id())
                    .chain(r.previous_ids())
                    .any(|id| crate::vars::names(&v, &id))
            })
            .collect();
        if bound.len() > 1 {
            return Err(ConflictError::AmbiguousVar {
                count: bound.len(),
                name: v.name,
            });
        }
        if let Some(i) = bound.first() {
            self.res[*i].ref_vars.push(v.name.clone());
        }
        if self.vars.iter().any(|e| e.name == v.name) {
            return Err(ConflictError::DuplicateVar(v.name));
        }
        self.vars.push(v);
        Ok(())
    }

    /// Add a generated resource, merging into or replacing an existing one as its behavior asks.
    pub(crate) fn absorb(&mut self, mut r: Resource) -> Result<(), ConflictError> {
        let id = r.id();
        let mut matches: Vec<usize> = self
            .named(&id.name)
            .into_iter()
            .filter(|i| {
                let o = &self.res[*i];
                o.has_id(&id) || o.previous_ids().iter().any(|p| p.same_as(&id))
            })
            .collect();
        matches.dedup();
        match matches.as_slice() {
            [] => match r.behavior {
                Behavior::Merge | Behavior::Replace => {
                    Err(ConflictError::NothingToMerge(id.to_string()))
                }
                Behavior::Create => self.append(r),
            },
            [i] => {
                let old = &self.res[*i];
                match r.behavior {
                    Behavior::Create => {
                        return Err(ConflictError::AlreadyExists(id.to_string()));
                    }
                    Behavior::Replace => {
                        generators::copy_merge_metadata(&mut r, old);
                        r.ref_vars = old.ref_vars.clone();
                    }
                    Behavior::Merge => {
                        generators::copy_merge_metadata(&mut r, old);
                        generators::merge_data(&mut r, old, "data");
                        generators::merge_data(&mut r, old, "binaryData");
                        r.ref_vars = old.ref_vars.clone();
                        if old.origin.is_some() {
                            r.origin = old.origin.clone();
                        }
                    }
                }
                self.res[*i] = r;
                self.invalidate();
                Ok(())
            }
            _ => Err(ConflictError::ManyMergeTargets(id.to_string())),
        }
    }
}

/// A loaded kustomization and where it lives.
pub(crate) struct Target {
    /// Canonical directory.
    pub dir: PathBuf,
    /// The kustomization file, relative to the root, for messages.
    pub file: String,
    /// The kustomization file name (for origin annotations).
    pub file_name: String,
    /// Its content.
    pub k: Kustomization,
    /// Origin path prefix for `buildMetadata: [originAnnotations]`.
    pub origin: Option<String>,
    /// For a builtin generator plugin run as a target: the file configuring it (relative to
    /// the build root's kustomization) and its name, which its objects' origin names.
    pub plugin: Option<(String, String)>,
}

impl Target {
    pub(crate) fn err(&self, message: impl Into<String>) -> Error {
        Error::Build {
            kustomization: self.file.clone(),
            message: message.into(),
        }
    }

    pub(crate) fn fs_err(&self, e: FsError) -> Error {
        let kustomization = self.file.clone();
        match e {
            FsError::Outside(path) => Error::OutsideRoot {
                kustomization,
                path,
            },
            FsError::NotFound(path) => Error::NotFound {
                kustomization,
                path,
            },
            FsError::Io(path, source) => Error::Io {
                kustomization,
                path,
                source,
            },
            FsError::TooLarge { path, size, max } => Error::Limit {
                kustomization,
                file: path,
                limit: Limit::FileBytes { size, max },
            },
        }
    }

    /// A YAML error in `what` (`resource x.yaml`, `inline patch`, ...): a crossed limit names the
    /// limit, anything else is a YAML error.
    pub(crate) fn yaml_err(&self, what: impl Into<String>, e: YamlError) -> Error {
        match e {
            YamlError::Limit(limit) => self.limit_err(what, limit),
            source => Error::Yaml {
                kustomization: self.file.clone(),
                what: what.into(),
                source,
            },
        }
    }

    /// A limit crossed while reading or building `file`.
    pub(crate) fn limit_err(&self, file: impl Into<String>, limit: Limit) -> Error {
        Error::Limit {
            kustomization: self.file.clone(),
            file: file.into(),
            limit,
        }
    }

    /// Resources, vars or field specs collided while `step` added them.
    pub(crate) fn conflict_err(
        &self,
        step: impl Into<String>,
    ) -> impl FnOnce(ConflictError) -> Error + '_ {
        let step = step.into();
        move |source| Error::Conflict {
            kustomization: self.file.clone(),
            step,
            source,
        }
    }

    /// A transformer step failed.
    pub(crate) fn transform_err(
        &self,
        step: impl Into<String>,
    ) -> impl FnOnce(crate::error::TransformError) -> Error + '_ {
        let step = step.into();
        move |source| Error::Transform {
            kustomization: self.file.clone(),
            step,
            source,
        }
    }
}

/// What a build has spent so far, against its [`Limits`].
struct Budget {
    limits: Limits,
    files: Cell<usize>,
    bytes: Cell<u64>,
    started: Instant,
    timeout: Option<Duration>,
}

/// Builds one tree; holds the root and the stack of directories being built (for cycles).
pub(crate) struct Builder<'a> {
    pub fs: &'a RootFs,
    /// `buildMetadata: [transformerAnnotations]` at the top.
    pub track_transformers: bool,
    /// The build's OpenAPI schema (kustomize keeps one for the whole build).
    schema: std::rc::Rc<crate::schema::SchemaState>,
    stack: Vec<PathBuf>,
    budget: Budget,
    /// What renders `helmCharts` (none: they are refused).
    pub charts: Option<std::sync::Arc<dyn crate::helm::ChartEngine>>,
}

/// `true` for resource strings kustomize would fetch over the network.
pub(crate) fn is_remote(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    lower.contains("://")
        || lower.starts_with("git@")
        || lower.starts_with("git::")
        || ["github.com/", "gitlab.com/", "bitbucket.org/"]
            .iter()
            .any(|h| lower.starts_with(h))
}

impl<'a> Builder<'a> {
    pub(crate) fn new(fs: &'a RootFs, limits: &Limits, timeout: Option<Duration>) -> Self {
        Builder {
            fs,
            stack: Vec::new(),
            track_transformers: false,
            schema: Default::default(),
            budget: Budget {
                limits: limits.clone(),
                files: Cell::new(0),
                bytes: Cell::new(0),
                started: Instant::now(),
                timeout,
            },
            charts: None,
        }
    }

    /// The limits of this build.
    pub(crate) fn limits(&self) -> &Limits {
        &self.budget.limits
    }

    /// Fail once the build has run past its deadline; called at every file read and step.
    pub(crate) fn check_deadline(&self, t: &Target) -> Result<(), Error> {
        match self.budget.timeout {
            Some(after) if self.budget.started.elapsed() > after => {
                Err(t.limit_err(t.file.clone(), Limit::Deadline { after }))
            }
            _ => Ok(()),
        }
    }

    /// Read a resolved file, counting it against the build's file and byte limits; at most
    /// `max` bytes (besides the per-file limit) when given.
    pub(crate) fn read_bytes(
        &self,
        t: &Target,
        path: &Path,
        max: Option<u64>,
    ) -> Result<Vec<u8>, Error> {
        self.check_deadline(t)?;
        let b = &self.budget;
        let files = b.files.get() + 1;
        b.files.set(files);
        if files > b.limits.max_files {
            return Err(t.limit_err(
                self.fs.show(path),
                Limit::Files {
                    max: b.limits.max_files,
                },
            ));
        }
        let left = b.limits.max_read_bytes.saturating_sub(b.bytes.get());
        let file_max = max.map_or(b.limits.max_file_bytes, |m| m.min(b.limits.max_file_bytes));
        let bytes = match self.fs.read(path, file_max.min(left)) {
            Err(FsError::TooLarge { path, .. }) if left < file_max => {
                return Err(t.limit_err(
                    path,
                    Limit::ReadBytes {
                        max: b.limits.max_read_bytes,
                    },
                ));
            }
            Err(FsError::TooLarge { path, size, .. }) => {
                return Err(t.limit_err(
                    path,
                    Limit::FileBytes {
                        size,
                        max: file_max,
                    },
                ));
            }
            other => other.map_err(|e| t.fs_err(e))?,
        };
        b.bytes.set(b.bytes.get() + bytes.len() as u64);
        Ok(bytes)
    }

    /// Find and parse the kustomization file of `dir`.
    pub(crate) fn load_target(&self, dir: &Path) -> Result<Target, Error> {
        let present: Vec<&str> = KUSTOMIZATION_FILES
            .iter()
            .copied()
            .filter(|f| self.fs.is_file(&dir.join(f)))
            .collect();
        let name = match present.as_slice() {
            [] => {
                return Err(Error::NoKustomization {
                    dir: self.fs.show(dir),
                });
            }
            [one] => *one,
            _ => {
                return Err(Error::MultipleKustomizations {
                    dir: self.fs.show(dir),
                    files: present.join(", "),
                });
            }
        };
        let mut target = Target {
            dir: dir.to_path_buf(),
            file: self.fs.show(&dir.join(name)),
            file_name: name.to_string(),
            k: Kustomization::default(),
            origin: None,
            plugin: None,
        };
        let path = self.fs.resolve(dir, name).map_err(|e| target.fs_err(e))?;
        let bytes = self.read_bytes(&target, &path, None)?;
        let text = String::from_utf8_lossy(&bytes);
        target.k = Kustomization::from_yaml(&text).map_err(|e| match e {
            crate::kustomization::ParseError::Yaml(y) => {
                target.yaml_err("invalid kustomization", y)
            }
            other => target.err(format!("invalid kustomization: {other}")),
        })?;
        Ok(target)
    }

    /// Check a target for what this engine refuses and for malformed kind/apiVersion.
    fn validate(&self, t: &Target) -> Result<(), Error> {
        let k = &t.k;
        let refused = |what: &str| {
            Err(Error::Refused {
                kustomization: t.file.clone(),
                what: what.to_string(),
            })
        };
        if !k.validators.is_empty() {
            return refused("validators plugins");
        }
        if !k.kind.is_empty() && k.kind != "Kustomization" && k.kind != "Component" {
            return Err(t.err("kind should be Kustomization or Component"));
        }
        let want = if k.is_component() {
            "kustomize.config.k8s.io/v1alpha1"
        } else {
            "kustomize.config.k8s.io/v1beta1"
        };
        if !k.api_version.is_empty() && k.api_version != want {
            return Err(t.err(format!(
                "apiVersion for {} should be {want}",
                if k.kind.is_empty() {
                    "Kustomization"
                } else {
                    &k.kind
                }
            )));
        }
        // kustomize cannot load an empty path: it names the directory itself.
        for (field, entries) in [
            ("resources", &k.resources),
            ("components", &k.components),
            ("crds", &k.crds),
            ("configurations", &k.configurations),
            ("patchesStrategicMerge", &k.patches_strategic_merge),
        ] {
            if entries.iter().any(|e| e.trim().is_empty()) {
                return Err(t.err(format!("{field}: an entry is empty")));
            }
        }
        if k.openapi.get("path").is_some_and(|p| p.trim().is_empty()) {
            return Err(t.err("openapi: path is empty"));
        }
        for r in k.resources.iter().chain(&k.components) {
            if is_remote(r) {
                return refused(&format!("remote resource {r}"));
            }
        }
        Ok(())
    }

    /// Build a target into a fresh accumulator (a kustomization, not a component).
    pub(crate) fn accumulate_new(&mut self, t: &Target) -> Result<Acc, Error> {
        self.accumulate(t, Acc::new())
    }

    /// kustomize's `accumulateTarget`: resources, configurations, generators, components,
    /// transformers, vars.
    pub(crate) fn accumulate(&mut self, t: &Target, mut acc: Acc) -> Result<Acc, Error> {
        self.validate(t)?;
        if let Some(path) = t.k.openapi.get("path") {
            if t.k.openapi.contains_key("version") {
                return Err(t.err("builtin version and custom schema provided, cannot use both"));
            }
            let file = self.resolve_local_file(t, path)?;
            let text = self.read_text(t, &file)?;
            if !self.schema.is_set() {
                let parsed = crate::schema::CustomSchema::parse(&text)
                    .map_err(|e| t.yaml_err(format!("openapi schema {path}"), e))?;
                self.schema.set_custom(parsed);
            }
        } else if t.k.openapi.contains_key("version") && !self.schema.is_set() {
            self.schema.set_builtin();
        }
        acc.schema = self.schema.clone();
        for r in &t.k.resources {
            self.check_deadline(t)?;
            self.accumulate_resource(t, &mut acc, r)?;
        }
        for c in &t.k.configurations {
            let path = self.fs.resolve(&t.dir, c).map_err(|e| t.fs_err(e))?;
            let text = self.read_text(t, &path)?;
            let cfg = TransformerConfig::from_yaml(&text).map_err(|e| match e {
                crate::kustomization::ParseError::Yaml(y) => {
                    t.yaml_err(format!("configuration {c}"), y)
                }
                other => t.err(format!("configuration {c}: {other}")),
            })?;
            acc.merge_config(&std::sync::Arc::new(cfg))
                .map_err(t.conflict_err(""))?;
        }
        for c in &t.k.crds {
            let path = self.fs.resolve(&t.dir, c).map_err(|e| t.fs_err(e))?;
            let text = self.read_text(t, &path)?;
            let cfg = crate::crds::config_from_crds(&text)
                .map_err(|e| t.yaml_err(format!("crds {c}"), e))?;
            acc.merge_config(&std::sync::Arc::new(cfg))
                .map_err(t.conflict_err(""))?;
        }
        generators::run(self, t, &mut acc)?;
        for c in &t.k.components {
            let dir = self.fs.resolve(&t.dir, c).map_err(|e| t.fs_err(e))?;
            if !self.fs.is_dir(&dir) {
                return Err(t.err(format!("component {c} must be a directory")));
            }
            let mut sub = self.enter(t, &dir)?;
            if !sub.k.is_component() {
                self.stack.pop();
                return Err(t.err(format!(
                    "expected kind 'Component' for path '{c}' but got '{}'",
                    sub.k.kind
                )));
            }
            sub.origin = t.origin.as_ref().map(|o| join_origin(o, c));
            acc = self.accumulate(&sub, acc)?;
            self.stack.pop();
        }
        acc.invalidate();
        acc.schema = self.schema.clone();
        acc.track_transformers = self.track_transformers;
        transform::run_builtin(self, t, &mut acc)?;
        acc.invalidate();
        transform::run_plugins(self, t, &mut acc)?;
        acc.invalidate();
        for v in &t.k.vars {
            acc.merge_var(v.clone()).map_err(t.conflict_err(""))?;
        }
        Ok(acc)
    }

    fn enter(&mut self, t: &Target, dir: &Path) -> Result<Target, Error> {
        let max = self
            .budget
            .limits
            .max_kustomization_depth
            .min(KUSTOMIZATION_DEPTH_CEILING);
        if self.stack.len() >= max {
            return Err(t.limit_err(self.fs.show(dir), Limit::KustomizationDepth { max }));
        }
        if self.stack.iter().any(|d| d == dir) {
            return Err(t.err(format!(
                "cycle detected: {} is already being built",
                self.fs.show(dir)
            )));
        }
        let sub = self.load_target(dir)?;
        self.stack.push(dir.to_path_buf());
        Ok(sub)
    }

    pub(crate) fn push_root(&mut self, dir: &Path) {
        self.stack.push(dir.to_path_buf());
    }

    pub(crate) fn read_text(&self, t: &Target, path: &Path) -> Result<String, Error> {
        let bytes = self.read_bytes(t, path, None)?;
        String::from_utf8(bytes).map_err(|_| t.err(format!("{} is not UTF-8", self.fs.show(path))))
    }

    /// Resolve a file a kustomization names, which must lie inside the kustomization's directory.
    pub(crate) fn resolve_local_file(&self, t: &Target, rel: &str) -> Result<PathBuf, Error> {
        let path = self.fs.resolve(&t.dir, rel).map_err(|e| t.fs_err(e))?;
        if !path.starts_with(&t.dir) {
            return Err(Error::NotLocal {
                kustomization: t.file.clone(),
                file: rel.to_string(),
                dir: self.fs.show(&t.dir),
            });
        }
        Ok(path)
    }

    /// Add one `resources` entry (a file of objects, or a directory holding a kustomization) to
    /// `acc`; `transformers:` and `generators:` entries naming files load the same way.
    pub(crate) fn accumulate_resource(
        &mut self,
        t: &Target,
        acc: &mut Acc,
        r: &str,
    ) -> Result<(), Error> {
        let path = self.fs.resolve(&t.dir, r).map_err(|e| t.fs_err(e))?;
        if self.fs.is_dir(&path) {
            let mut sub = self.enter(t, &path)?;
            if sub.k.is_component() {
                self.stack.pop();
                return Err(t.err(format!("expected kind != 'Component' for path '{r}'")));
            }
            sub.origin = t.origin.as_ref().map(|o| join_origin(o, r));
            let sub_acc = self.accumulate_new(&sub);
            self.stack.pop();
            acc.merge(sub_acc?).map_err(t.conflict_err(""))?;
            return Ok(());
        }
        if !path.starts_with(&t.dir) {
            return Err(Error::NotLocal {
                kustomization: t.file.clone(),
                file: r.to_string(),
                dir: self.fs.show(&t.dir),
            });
        }
        let text = self.read_text(t, &path)?;
        let objs = parse_resources(&text).map_err(|e| t.yaml_err(format!("resource {r}"), e))?;
        let top_level_list = crate::yaml::parse_documents(&text, crate::yaml::ScalarMode::Text)
            .is_ok_and(|d| d.iter().any(Value::is_array));
        if top_level_list {
            return Err(t.err(format!(
                "resource {r}: missing Resource metadata (a YAML list is not an object)"
            )));
        }
        for obj in objs {
            let named = obj
                .get("metadata")
                .and_then(|m| m.get("name"))
                .is_some_and(|n| !n.is_null() && n.as_str() != Some(""));
            if !named {
                return Err(t.err(format!("resource {r}: missing metadata.name in object")));
            }
            let mut res = Resource::new(obj);
            res.origin = t.origin.as_ref().map(|o| join_origin(o, r));
            acc.append(res).map_err(t.conflict_err(""))?;
        }
        Ok(())
    }
}

/// A `*List` kind with `items` (a `*List` without them is an object like any other).
fn is_list(m: &Map<String, Value>) -> bool {
    m.get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k.ends_with("List"))
        && m.contains_key("items")
}

/// The items of a list, lists among them expanded in place.
fn flatten_list(
    mut list: Map<String, Value>,
    out: &mut Vec<Map<String, Value>>,
) -> Result<(), YamlError> {
    let kind = list
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    match list.remove("items") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(items)) => {
            for item in items {
                match item {
                    Value::Object(o) if is_list(&o) => flatten_list(o, out)?,
                    Value::Object(o) => out.push(o),
                    _ => {
                        return Err(YamlError::Structure(format!(
                            "an item of {kind} is not a mapping"
                        )));
                    }
                }
            }
            Ok(())
        }
        Some(_) => Err(YamlError::Structure(format!(
            "items in {kind} is not a list"
        ))),
    }
}

/// Join an origin directory and a relative path the way Go's `path.Join` does.
pub(crate) fn join_origin(base: &str, rel: &str) -> String {
    let joined = if base.is_empty() {
        rel.to_string()
    } else {
        format!("{base}/{rel}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for p in joined.split('/') {
        match p {
            "" | "." => {}
            ".." if parts.last().is_some_and(|l| *l != "..") => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

/// Parse a stream of resources: skip empty documents, expand `*List` kinds that have `items`.
/// As in kustomize, a list's items join the end of the stream (after the documents that follow
/// the list).
pub(crate) fn parse_resources(text: &str) -> Result<Vec<Map<String, Value>>, YamlError> {
    let docs = yaml::parse_documents(text, yaml::ScalarMode::Typed)?;
    let mut queue = std::collections::VecDeque::new();
    for doc in docs {
        match doc {
            Value::Null => {}
            Value::Object(m) if m.is_empty() => {}
            Value::Object(m) => queue.push_back(m),
            Value::Array(items) => {
                for item in items {
                    match item {
                        Value::Object(m) => queue.push_back(m),
                        Value::Null => {}
                        _ => {
                            return Err(YamlError::Structure(
                                "expected a mapping in the list".into(),
                            ));
                        }
                    }
                }
            }
            _ => return Err(YamlError::Structure("expected a YAML mapping".into())),
        }
    }
    let mut out = Vec::new();
    while let Some(m) = queue.pop_front() {
        if is_list(&m) {
            let mut items = Vec::new();
            flatten_list(m, &mut items)?;
            queue.extend(items);
            continue;
        }
        if !m.contains_key("kind") {
            return Err(YamlError::Structure("missing kind in object".into()));
        }
        out.push(m);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(text: &str) -> Vec<String> {
        parse_resources(text)
            .unwrap_or_default()
            .iter()
            .map(|m| m["metadata"]["name"].as_str().unwrap_or("").to_string())
            .collect()
    }

    #[test]
    fn list_items_follow_the_other_documents_and_nested_lists_expand_in_place() {
        let text = "kind: ConfigMap\nmetadata: {name: a}\n---\nkind: List\nitems:\n\
            - {kind: List, items: [{kind: ConfigMap, metadata: {name: n}}]}\n\
            - {kind: ConfigMap, metadata: {name: b}}\n---\nkind: Secret\nmetadata: {name: c}\n\
            ---\nkind: FooList\nmetadata: {name: no-items}\n---\nkind: BarList\nitems:\n";
        assert_eq!(names(text), ["a", "c", "no-items", "n", "b"]);
    }

    #[test]
    fn origins_join_like_go_path_join() {
        assert_eq!(join_origin("", "app.yaml"), "app.yaml");
        assert_eq!(join_origin("base", "../plugins/x.yaml"), "plugins/x.yaml");
        assert_eq!(join_origin("a/./b", "c"), "a/b/c");
    }
}
