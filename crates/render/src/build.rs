//! Rendering: an unpacked source tree and a Sync spec in, objects in apply order out.
//!
//! A path with a kustomization is built as it is; a plain directory gets a generated
//! kustomization listing every YAML file under it, as Flux does (a subdirectory holding a
//! kustomization is added as one resource, not descended). The Sync's `targetNamespace`,
//! `images` and `patches` go into a kustomization built in memory over that directory, so
//! kustomize applies them with its own semantics. `namePrefix`, `nameSuffix` and `components`
//! are set in the directory's own kustomization (in memory), as Flux edits it: a prefix replaces
//! the kustomization's own, components are added to its list. Substitution runs over the built
//! objects ([`plumb_substitute`]), then `commonMetadata` is set on every object. The source
//! tree is only read.

use std::fs;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use plumb_api::SyncSpec;
use plumb_kustomize::{Access, Accesses, BuildOptions, Limits};
use serde_json::{Value, json};

use std::collections::BTreeMap;

use plumb_api::sync::SubstituteStrategy;

use plumb_substitute::deferred::{VariableSource, Variables, defer};
use plumb_substitute::{
    SubstituteError, SubstituteLimits, apply_common_metadata, assemble_variables,
    substitute_objects, substitute_objects_tracked,
};

use crate::chart::ChartOptions;
use crate::engine;

/// File names a kustomization may have.
pub const KUSTOMIZATION_FILES: [&str; 3] =
    ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// Why a render failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// `spec.path` leaves the source tree or does not name a directory in it.
    #[error("path {path:?}: {why}")]
    Path {
        /// The path as written in the spec.
        path: String,
        /// What is wrong with it.
        why: String,
    },
    /// Reading the tree (or making the wrapper directory) failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// kustomize refused the tree.
    #[error("kustomize build of {path:?}: {source}")]
    Kustomize {
        /// The path as written in the spec.
        path: String,
        /// The engine's error.
        source: Box<engine::EngineError>,
    },
    /// Variable substitution failed.
    #[error("substitution: {0}")]
    Substitute(#[from] SubstituteError),
    /// Helm refused the chart, or it crossed a limit; the message names the chart.
    #[error("helm template: {0}")]
    Chart(plumb_helm::HelmError),
    /// Helm's output is not the YAML of objects.
    #[error("chart {chart}: output: {message}")]
    ChartOutput {
        /// The chart's name.
        chart: String,
        /// What is wrong with it.
        message: String,
    },
    /// `spec.helm` is set but the path holds no chart.
    #[error("path {path:?}: spec.helm is set but there is no Chart.yaml")]
    NotAChart {
        /// The path as written in the spec.
        path: String,
    },
    /// A component path of `spec.components` is not a local relative path, or is missing
    /// (and `ignoreMissingComponents` is off).
    #[error("component {component:?}: {why}")]
    Component {
        /// The component path as written in the spec.
        component: String,
        /// What is wrong with it.
        why: String,
    },
    /// The rendered objects are larger than [`RenderOptions::max_output_bytes`].
    #[error(
        "rendered objects take more than {max} bytes (limit max-rendered-size); nothing is published"
    )]
    OutputTooLarge {
        /// The limit.
        max: u64,
    },
}

impl BuildError {
    /// The engine's error, when kustomize failed.
    pub fn kustomize(&self) -> Option<&engine::EngineError> {
        match self {
            BuildError::Kustomize { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }

    /// Whether the failure may pass by itself (I/O on the unpacked tree, a build that ran out of
    /// time on a busy machine): such a verdict is retried, never remembered as the render's.
    pub fn is_transient(&self) -> bool {
        match self {
            BuildError::Io { .. } => true,
            BuildError::Chart(e) => e.is_transient(),
            BuildError::Substitute(e) => e.is_transient(),
            BuildError::Kustomize { source, .. } => {
                matches!(source.as_ref(), engine::EngineError::Kustomize(e) if e.is_transient())
            }
            _ => false,
        }
    }

    /// Whether a limit was crossed (of kustomize, YAML, or the render's output).
    pub fn is_limit(&self) -> bool {
        matches!(self, BuildError::OutputTooLarge { .. })
            || matches!(self, BuildError::Chart(e) if e.is_limit())
            || matches!(self, BuildError::Substitute(e) if e.is_limit())
            || self
                .kustomize()
                .and_then(engine::EngineError::limit)
                .is_some()
    }
}

/// What a render may read, spend and produce.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// The kustomize build's limits.
    pub limits: Limits,
    /// How long the kustomize build may run.
    pub timeout: Option<Duration>,
    /// The largest rendered output, counted as the objects' JSON bytes.
    pub max_output_bytes: u64,
    /// What a Helm chart render needs (engine, release, capabilities, values).
    pub chart: ChartOptions,
    /// Where to record every path of the source tree the render looks at (the render
    /// controller keeps them to tell which Syncs a new commit touches).
    pub accesses: Option<std::sync::Arc<Accesses>>,
}

impl Default for RenderOptions {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            timeout: None,
            max_output_bytes: 64 << 20,
            chart: ChartOptions::default(),
            accesses: None,
        }
    }
}

/// Counts bytes written, keeping none.
struct Counter(u64);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Refuses objects whose JSON takes more than `max` bytes.
fn check_output_size(objects: &[Value], max: u64) -> Result<(), BuildError> {
    let mut counter = Counter(0);
    for o in objects {
        // Writing to a counter cannot fail; a failure would only undercount.
        let _ = serde_json::to_writer(&mut counter, o);
        if counter.0 > max {
            return Err(BuildError::OutputTooLarge { max });
        }
    }
    Ok(())
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + '_ {
    move |source| BuildError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The directory `path` names inside `root`, refusing anything that leaves it (`..`, symlinks).
pub fn resolve_path(root: &Path, path: &str) -> Result<PathBuf, BuildError> {
    resolve(root, path, true)
}

/// The file `path` names inside `root` (a values file), refusing anything that leaves it.
pub fn resolve_file(root: &Path, path: &str) -> Result<PathBuf, BuildError> {
    resolve(root, path, false)
}

fn resolve(root: &Path, path: &str, dir: bool) -> Result<PathBuf, BuildError> {
    let bad = |why: &str| BuildError::Path {
        path: path.to_owned(),
        why: why.to_owned(),
    };
    let what = if dir { "directory" } else { "file" };
    let rel = Path::new(path.trim_start_matches('/'));
    if rel.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(bad("must not contain `..`"));
    }
    let root = root.canonicalize().map_err(io_err(root))?;
    let found = root
        .join(rel)
        .canonicalize()
        .map_err(|_| bad(&format!("no such {what} in the source")))?;
    if !found.starts_with(&root) {
        return Err(bad("leaves the source root through a symlink"));
    }
    if found.is_dir() != dir {
        return Err(bad(&format!("is not a {what}")));
    }
    Ok(found)
}

/// Whether `dir` holds a kustomization file.
pub fn has_kustomization(dir: &Path) -> bool {
    has_kustomization_noted(dir, None)
}

/// Records `path` as looked at in `log`, if there is one.
fn note(log: Option<&Accesses>, access: Access, path: &Path) {
    if let Some(log) = log {
        log.record(access, path);
    }
}

/// [`has_kustomization`], recording the file names probed in `log`.
fn has_kustomization_noted(dir: &Path, log: Option<&Accesses>) -> bool {
    KUSTOMIZATION_FILES.iter().any(|f| {
        note(log, Access::Probe, &dir.join(f));
        dir.join(f).is_file()
    })
}

/// Every resource a generated kustomization for the plain directory `dir` lists, relative to it:
/// YAML files, and subdirectories that hold a kustomization; other subdirectories are descended.
/// The directories listed and paths probed are recorded in `log`.
fn plain_resources_noted(dir: &Path, log: Option<&Accesses>) -> Result<Vec<String>, BuildError> {
    let mut out = Vec::new();
    collect(dir, Path::new(""), &mut out, log)?;
    Ok(out)
}

fn collect(
    dir: &Path,
    rel: &Path,
    out: &mut Vec<String>,
    log: Option<&Accesses>,
) -> Result<(), BuildError> {
    let here = dir.join(rel);
    note(log, Access::List, &here);
    let mut entries: Vec<_> = fs::read_dir(&here)
        .map_err(io_err(&here))?
        .collect::<Result<_, _>>()
        .map_err(io_err(&here))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') {
            continue;
        }
        // Symlinks are not followed: the source artifact has none, and none may lead out.
        let file_type = entry.file_type().map_err(io_err(&entry.path()))?;
        let rel_child = rel.join(name);
        let shown = rel_child.to_string_lossy().into_owned();
        if file_type.is_dir() {
            if has_kustomization_noted(&entry.path(), log) {
                out.push(shown);
            } else {
                collect(dir, &rel_child, out, log)?;
            }
        } else if file_type.is_file() && (name.ends_with(".yaml") || name.ends_with(".yml")) {
            out.push(shown);
        }
    }
    Ok(())
}

/// Whether the Sync asks kustomize for anything beyond building its path.
fn needs_wrapper(spec: &SyncSpec) -> bool {
    spec.target_namespace.is_some() || !spec.images.is_empty() || !spec.patches.is_empty()
}

/// Whether the Sync sets fields Flux writes into the directory's own kustomization.
fn edits_kustomization(spec: &SyncSpec) -> bool {
    spec.name_prefix.is_some() || spec.name_suffix.is_some() || !spec.components.is_empty()
}

/// The components of `spec` to add to the kustomization in `dir`: each must be a local
/// relative path; a missing one is left out with `ignoreMissingComponents`, else an error.
fn components(
    spec: &SyncSpec,
    dir: &Path,
    log: Option<&Accesses>,
) -> Result<Vec<String>, BuildError> {
    let mut out = Vec::new();
    for c in &spec.components {
        let bad = |why: &str| BuildError::Component {
            component: c.clone(),
            why: why.to_owned(),
        };
        if c.is_empty() || c.starts_with('/') || c.contains("://") || c.starts_with("git@") {
            return Err(bad("must be a local relative path"));
        }
        note(log, Access::Probe, &dir.join(c));
        if !dir.join(c).exists() {
            if spec.ignore_missing_components {
                continue;
            }
            return Err(bad("not found in the source"));
        }
        out.push(c.clone());
    }
    Ok(out)
}

/// Sets the Sync's `namePrefix`, `nameSuffix` and `components` in kustomization `k` (as data),
/// as Flux edits the kustomization it builds.
fn edit_kustomization(k: &mut Value, spec: &SyncSpec, components: Vec<String>) {
    if let Some(p) = &spec.name_prefix {
        k["namePrefix"] = json!(p);
    }
    if let Some(s) = &spec.name_suffix {
        k["nameSuffix"] = json!(s);
    }
    if !components.is_empty() {
        let mut list = k
            .get("components")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        list.extend(components.into_iter().map(Value::String));
        k["components"] = Value::Array(list);
    }
}

/// The kustomization file of `dir`, read as data (every scalar kept as text, as kustomize reads
/// a kustomization), to be edited and built in memory.
fn read_kustomization(dir: &Path, log: Option<&Accesses>) -> Result<Value, BuildError> {
    let file = KUSTOMIZATION_FILES
        .iter()
        .map(|f| dir.join(f))
        .find(|p| {
            note(log, Access::Probe, p);
            p.is_file()
        })
        .ok_or_else(|| BuildError::Path {
            path: dir.display().to_string(),
            why: "no kustomization file".to_owned(),
        })?;
    note(log, Access::Read, &file);
    let text = fs::read_to_string(&file).map_err(io_err(&file))?;
    let doc =
        plumb_kustomize::yaml::parse_documents(&text, plumb_kustomize::yaml::ScalarMode::Text)
            .map_err(|e| BuildError::Kustomize {
                path: file.display().to_string(),
                source: Box::new(engine::EngineError::Yaml(e.to_string())),
            })?
            .into_iter()
            .next()
            .unwrap_or(Value::Null);
    let mut doc = match doc {
        Value::Object(_) => doc,
        _ => json!({}),
    };
    // Chart values keep their types (`replicas: 3` is a number to Helm): the `helm*` fields are
    // taken as kustomize reads them, YAML 1.1 typed.
    if let (Value::Object(k), Ok(typed)) = (
        &mut doc,
        plumb_kustomize::yaml::parse_documents(&text, plumb_kustomize::yaml::ScalarMode::Go),
    ) && let Some(Value::Object(typed)) = typed.into_iter().next()
    {
        for (key, value) in typed {
            if key.to_ascii_lowercase().starts_with("helm") {
                k.insert(key, value);
            }
        }
    }
    Ok(doc)
}

/// The kustomization, placed in the rendered directory, that lists `resources` and applies the
/// Sync's `targetNamespace`, `images` and `patches` to them.
pub fn generated_kustomization(spec: &SyncSpec, resources: &[String]) -> Value {
    let mut k = json!({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": resources,
    });
    if let Some(ns) = &spec.target_namespace {
        k["namespace"] = json!(ns);
    }
    if !spec.images.is_empty() {
        k["images"] = json!(spec.images);
    }
    if !spec.patches.is_empty() {
        k["patches"] = json!(spec.patches);
    }
    k
}

/// The empty directory, under the source root, that holds the in-memory kustomization applying a
/// Sync's transforms over a directory with its own kustomization.
pub(crate) const WRAPPER_DIR: &str = ".plumb-render";

/// Renders `spec` over the unpacked source tree at `root` with the default [`RenderOptions`];
/// `from` holds the data of the Sync's `substituteFrom` sources, in order (a missing optional
/// source is left out).
pub fn render(
    root: &Path,
    spec: &SyncSpec,
    from: &[BTreeMap<String, String>],
) -> Result<Vec<Value>, BuildError> {
    render_with(root, spec, from, &RenderOptions::default())
}

/// Renders `spec` over the unpacked source tree at `root`, with the `substituteFrom` data
/// `from`. Files are only read; an empty [`WRAPPER_DIR`] may be created when the Sync
/// transforms a kustomization.
pub fn render_with(
    root: &Path,
    spec: &SyncSpec,
    from: &[BTreeMap<String, String>],
    opts: &RenderOptions,
) -> Result<Vec<Value>, BuildError> {
    let deadline = deadline(opts);
    let objects = build_objects(root, spec, opts)?;
    let vars = assemble_variables(from, &spec.substitute);
    let mut objects = if vars.is_empty() && spec.substitute_strategy != SubstituteStrategy::Always {
        // As in Flux, substitution runs only when there is a variable, unless asked always.
        objects
    } else {
        let limits = SubstituteLimits {
            max_output_bytes: opts.max_output_bytes,
            deadline,
        };
        let objects = substitute_objects(objects, &vars, &limits)?;
        check_output_size(&objects, opts.max_output_bytes)?;
        objects
    };
    if let Some(common) = &spec.common_metadata {
        apply_common_metadata(&mut objects, common);
    }
    Ok(objects)
}

/// A render as the render controller publishes it.
#[derive(Debug, Default)]
pub struct Published {
    /// The objects as the sync controller will apply them (substituted), in apply order: what
    /// Policies judge. They may hold values from Secrets, so they are never stored.
    pub objects: Vec<Value>,
    /// The objects whose substitution used a value from a Secret, by position in `objects`:
    /// unsubstituted, carrying what the sync controller needs to finish it
    /// ([`plumb_substitute::deferred`]). They take those places in the artifact.
    pub deferred: Vec<(usize, Value)>,
}

impl Published {
    /// The objects for the artifact: [`Published::objects`] with the deferred ones in place.
    pub fn into_artifact(self) -> Vec<Value> {
        let mut objects = self.objects;
        for (i, object) in self.deferred {
            if let Some(slot) = objects.get_mut(i) {
                *slot = object;
            }
        }
        objects
    }
}

/// Renders as [`render_with`] does, with the `substituteFrom` sources as read (kind, name and
/// `resourceVersion` with the data): an object whose substitution uses a value from a Secret
/// is also given in the form that keeps the value out of the artifact ([`Published`]).
pub fn render_published(
    root: &Path,
    spec: &SyncSpec,
    sources: &[VariableSource],
    opts: &RenderOptions,
) -> Result<Published, BuildError> {
    let deadline = deadline(opts);
    let objects = build_objects(root, spec, opts)?;
    let vars = Variables::assemble(sources, &spec.substitute);
    if vars.values().is_empty() && spec.substitute_strategy != SubstituteStrategy::Always {
        let mut objects = objects;
        if let Some(common) = &spec.common_metadata {
            apply_common_metadata(&mut objects, common);
        }
        return Ok(Published {
            objects,
            deferred: Vec::new(),
        });
    }
    let limits = SubstituteLimits {
        max_output_bytes: opts.max_output_bytes,
        deadline,
    };
    // The built objects are kept for the artifact only when a value may come from a Secret.
    let originals = vars.any_secret().then(|| objects.clone());
    let done = substitute_objects_tracked(objects, vars.values(), &limits)?;
    let mut deferred = Vec::new();
    if let Some(originals) = originals {
        for (i, (original, s)) in originals.into_iter().zip(&done).enumerate() {
            if let Some(mut d) = vars.deferral(&s.used, spec.common_metadata.as_ref()) {
                d.note_substituted_id(&original, &s.object);
                deferred.push((i, defer(original, &d)));
            }
        }
    }
    let mut objects: Vec<Value> = done.into_iter().map(|s| s.object).collect();
    check_output_size(&objects, opts.max_output_bytes)?;
    if let Some(common) = &spec.common_metadata {
        apply_common_metadata(&mut objects, common);
    }
    Ok(Published { objects, deferred })
}

/// The render's deadline, which bounds substitution too.
fn deadline(opts: &RenderOptions) -> Option<std::time::Instant> {
    opts.timeout
        .and_then(|t| std::time::Instant::now().checked_add(t))
}

/// Builds `spec.path` with the Sync's transforms: the objects before substitution and
/// `commonMetadata`.
fn build_objects(
    root: &Path,
    spec: &SyncSpec,
    opts: &RenderOptions,
) -> Result<Vec<Value>, BuildError> {
    let build_opts = BuildOptions {
        limits: opts.limits.clone(),
        timeout: opts.timeout,
        charts: crate::chart::kustomize_charts(opts),
        accesses: opts.accesses.clone(),
        ..BuildOptions::default()
    };
    let log = opts.accesses.as_deref();
    let root = root.canonicalize().map_err(io_err(root))?;
    let dir = resolve_path(&root, &spec.path)?;
    note(log, Access::Probe, &dir);
    note(log, Access::Probe, &dir.join(plumb_helm::CHART_FILE));
    let kustomize_err = |source| BuildError::Kustomize {
        path: spec.path.clone(),
        source: Box::new(source),
    };
    let objects = match (has_kustomization_noted(&dir, log), needs_wrapper(spec)) {
        // A chart is rendered by Helm (crate::chart), with the Sync's images and patches.
        _ if plumb_helm::is_chart(&dir) => crate::chart::render(&root, &dir, spec, opts)?,
        _ if spec.helm.is_some() => {
            return Err(BuildError::NotAChart {
                path: spec.path.clone(),
            });
        }
        (true, false) if edits_kustomization(spec) => {
            let mut k = read_kustomization(&dir, log)?;
            edit_kustomization(&mut k, spec, components(spec, &dir, log)?);
            engine::build_generated(&root, &dir, &k, &build_opts).map_err(kustomize_err)?
        }
        (true, false) => engine::build(&root, &dir, &build_opts).map_err(kustomize_err)?,
        (true, true) if edits_kustomization(spec) => {
            // As Flux: every Sync field goes into the directory's own kustomization.
            let mut k = read_kustomization(&dir, log)?;
            edit_kustomization(&mut k, spec, components(spec, &dir, log)?);
            merge_transforms(&mut k, spec);
            engine::build_generated(&root, &dir, &k, &build_opts).map_err(kustomize_err)?
        }
        (true, true) => {
            // The Sync's transforms go into a kustomization over the directory's own, placed in
            // an empty directory beside the tree (the engine refuses `.` as a cycle).
            let wrapper = root.join(WRAPPER_DIR);
            fs::create_dir_all(&wrapper).map_err(io_err(&wrapper))?;
            let rel = dir.strip_prefix(&root).unwrap_or(Path::new(""));
            let resource = Path::new("..").join(rel).to_string_lossy().into_owned();
            let k = generated_kustomization(spec, &[resource]);
            engine::build_generated(&root, &wrapper, &k, &build_opts).map_err(kustomize_err)?
        }
        (false, _) => {
            let mut k = generated_kustomization(spec, &plain_resources_noted(&dir, log)?);
            edit_kustomization(&mut k, spec, components(spec, &dir, log)?);
            engine::build_generated(&root, &dir, &k, &build_opts).map_err(kustomize_err)?
        }
    };
    check_output_size(&objects, opts.max_output_bytes)?;
    Ok(objects)
}

/// Adds the Sync's `targetNamespace`, `patches` and `images` to kustomization `k` as Flux
/// does: the namespace is set, patches are appended, an image replaces the entry of the same
/// name or is appended.
fn merge_transforms(k: &mut Value, spec: &SyncSpec) {
    if let Some(ns) = &spec.target_namespace {
        k["namespace"] = json!(ns);
    }
    if !spec.patches.is_empty() {
        let mut list = k
            .get("patches")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        list.extend(spec.patches.iter().map(|p| json!(p)));
        k["patches"] = Value::Array(list);
    }
    if !spec.images.is_empty() {
        let mut list = k
            .get("images")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for image in &spec.images {
            let new = json!(image);
            match list
                .iter_mut()
                .find(|i| i.get("name").and_then(Value::as_str) == Some(image.name.as_str()))
            {
                Some(existing) => *existing = new,
                None => list.push(new),
            }
        }
        k["images"] = Value::Array(list);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumb_api::sync::{Image, Patch, PatchTarget};

    fn spec(path: &str) -> SyncSpec {
        serde_json::from_value(json!({
            "sourceRef": {"kind": "GitRepository", "name": "repo"},
            "path": path,
        }))
        .unwrap()
    }

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    fn names(objs: &[Value]) -> Vec<String> {
        objs.iter()
            .map(|o| {
                format!(
                    "{}/{}",
                    o["kind"].as_str().unwrap(),
                    o["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect()
    }

    fn cm(name: &str) -> String {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  k: v\n")
    }

    #[test]
    fn paths_may_not_leave_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir_all(tmp.path().join("a")).unwrap();
        assert!(resolve_path(tmp.path(), "./a").is_ok());
        assert!(resolve_path(tmp.path(), "/a").is_ok());
        assert!(resolve_path(tmp.path(), "../").is_err());
        assert!(resolve_path(tmp.path(), "a/../../x").is_err());
        assert!(resolve_path(tmp.path(), "missing").is_err());
        std::os::unix::fs::symlink("/tmp", tmp.path().join("out")).unwrap();
        let err = resolve_path(tmp.path(), "out").unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
    }

    #[test]
    fn symlink_loops_in_a_source_tree_fail_their_render_or_are_not_followed() {
        use std::os::unix::fs::symlink;
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        // A plain directory linked into itself: its YAML is read once, the link not followed.
        write(root, "plain/cm.yaml", &cm("plain"));
        symlink(".", root.join("plain/again")).unwrap();
        symlink("..", root.join("plain/up")).unwrap();
        let plain = render_with(root, &spec("plain"), &[], &RenderOptions::default()).unwrap();
        assert_eq!(names(&plain), ["ConfigMap/plain"]);
        // Two links to each other, as a resource: refused, naming the path.
        write(root, "pair/kustomization.yaml", "resources: [one]\n");
        symlink("two", root.join("pair/one")).unwrap();
        symlink("one", root.join("pair/two")).unwrap();
        let err = render_with(root, &spec("pair"), &[], &RenderOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("pair/one") && err.contains("Too many levels of symbolic links"),
            "{err}"
        );
        // A kustomization whose resource is a link to its own directory: a cycle.
        write(root, "self/kustomization.yaml", "resources: [me]\n");
        symlink(".", root.join("self/me")).unwrap();
        let err = render_with(root, &spec("self"), &[], &RenderOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("cycle"), "{err}");
        // The path of a Sync through a loop.
        symlink("loop", root.join("loop")).unwrap();
        let err = resolve_path(root, "loop").unwrap_err().to_string();
        assert!(err.contains("loop"), "{err}");
    }

    #[test]
    fn plain_directories_list_yaml_files_and_stop_at_kustomizations() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        write(root, "b.yaml", "");
        write(root, "a.yml", "");
        write(root, "README.md", "");
        write(root, "sub/c.yaml", "");
        write(root, "sub/deep/d.yaml", "");
        write(root, "app/kustomization.yaml", "");
        write(root, "app/inner.yaml", "");
        write(root, ".hidden/e.yaml", "");
        assert_eq!(
            plain_resources_noted(root, None).unwrap(),
            ["a.yml", "app", "b.yaml", "sub/c.yaml", "sub/deep/d.yaml"]
        );
    }

    #[test]
    fn generated_kustomization_carries_namespace_images_and_patches() {
        let mut s = spec("./app");
        s.target_namespace = Some("prod".into());
        s.images = vec![Image {
            name: "nginx".into(),
            new_name: None,
            new_tag: Some("1.27".into()),
            digest: None,
        }];
        s.patches = vec![Patch {
            patch: "- op: add\n  path: /metadata/labels/x\n  value: y".into(),
            target: Some(PatchTarget {
                kind: Some("Deployment".into()),
                ..Default::default()
            }),
        }];
        let k = generated_kustomization(&s, &[".".to_owned()]);
        assert_eq!(k["namespace"], "prod");
        assert_eq!(k["images"][0]["newTag"], "1.27");
        assert_eq!(k["patches"][0]["target"]["kind"], "Deployment");
        assert_eq!(k["resources"][0], ".");
    }

    #[test]
    fn renders_a_plain_directory_with_transforms_and_substitution() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        write(root, "deploy/one.yaml", &cm("one"));
        write(
            root,
            "deploy/nested/two.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: two\ndata:\n  env: ${ENV}\n",
        );
        let mut s = spec("deploy");
        s.target_namespace = Some("prod".into());
        s.substitute.insert("ENV".into(), "production".into());
        let objs = render(root, &s, &[]).unwrap();
        assert_eq!(names(&objs), ["ConfigMap/one", "ConfigMap/two"]);
        assert!(objs.iter().all(|o| o["metadata"]["namespace"] == "prod"));
        assert_eq!(objs[1]["data"]["env"], "production");
        assert!(
            !root.join("deploy/kustomization.yaml").exists(),
            "nothing is written"
        );
    }

    #[test]
    fn objects_using_a_secret_value_are_published_unsubstituted_and_judged_substituted() {
        use plumb_api::reference::DataKind;
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        write(
            root,
            "deploy/objects.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: uses-secret\ndata:\n  dsn: db://${user}:${password}@${host}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: plain\ndata:\n  host: ${host}\n",
        );
        let source = |kind, name: &str, pairs: &[(&str, &str)]| VariableSource {
            kind,
            name: name.into(),
            resource_version: "7".into(),
            data: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        let sources = [
            source(DataKind::ConfigMap, "vars", &[("host", "db.local")]),
            source(
                DataKind::Secret,
                "creds",
                &[("password", "s3cr3t"), ("user", "u")],
            ),
        ];
        let mut s = spec("deploy");
        s.substitute.insert("user".into(), "app".into());
        s.common_metadata = Some(plumb_api::sync::CommonMetadata {
            labels: [("team".to_owned(), "a".to_owned())].into(),
            annotations: Default::default(),
        });
        let published = render_published(root, &s, &sources, &RenderOptions::default()).unwrap();
        assert_eq!(
            names(&published.objects),
            ["ConfigMap/plain", "ConfigMap/uses-secret"]
        );
        assert_eq!(
            published.objects[1]["data"]["dsn"],
            "db://app:s3cr3t@db.local"
        );
        assert_eq!(published.objects[1]["metadata"]["labels"]["team"], "a");
        let from = [sources[0].data.clone(), sources[1].data.clone()];
        assert_eq!(
            published.objects,
            render(root, &s, &from).unwrap(),
            "what Policies judge is what plumb build renders"
        );
        let artifact = Published {
            objects: published.objects.clone(),
            deferred: published.deferred.clone(),
        }
        .into_artifact();
        assert_eq!(
            artifact[0], published.objects[0],
            "no Secret value: substituted"
        );
        let deferred = &artifact[1];
        assert_eq!(deferred["data"]["dsn"], "db://${user}:${password}@${host}");
        assert_eq!(
            deferred[plumb_substitute::deferred::DEFERRED_KEY],
            json!({"values": {"host": "db.local", "user": "app"},
                   "secrets": {"password": {"name": "creds", "resourceVersion": "7"}},
                   "commonMetadata": {"labels": {"team": "a"}}})
        );
        assert!(!serde_json::to_string(&artifact).unwrap().contains("s3cr3t"));
    }

    #[test]
    fn renders_an_overlay_with_images_and_patches_without_writing_to_the_tree() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        write(
            root,
            "base/deploy.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    spec:\n      containers:\n        - name: web\n          image: nginx:1.0\n",
        );
        write(root, "base/cm.yaml", &cm("settings"));
        write(
            root,
            "base/kustomization.yaml",
            "resources: [deploy.yaml, cm.yaml]\n",
        );
        write(
            root,
            "overlay/kustomization.yaml",
            "resources: [../base]\nnamePrefix: prod-\n",
        );
        let mut s = spec("./overlay");
        s.images = vec![Image {
            name: "nginx".into(),
            new_name: None,
            new_tag: Some("1.27".into()),
            digest: None,
        }];
        s.patches = vec![Patch {
            patch: "- op: add\n  path: /metadata/labels\n  value: {patched: \"yes\"}".into(),
            target: Some(PatchTarget {
                kind: Some("ConfigMap".into()),
                ..Default::default()
            }),
        }];
        s.target_namespace = Some("prod".into());
        let objs = render(root, &s, &[]).unwrap();
        assert_eq!(
            names(&objs),
            ["ConfigMap/prod-settings", "Deployment/prod-web"],
            "legacy order"
        );
        assert_eq!(
            objs[1]["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx:1.27"
        );
        assert_eq!(objs[0]["metadata"]["labels"]["patched"], "yes");
        assert!(objs.iter().all(|o| o["metadata"]["namespace"] == "prod"));
        assert_eq!(
            fs::read_dir(root.join("overlay")).unwrap().count(),
            1,
            "the tree is only read"
        );
        assert_eq!(fs::read_dir(root.join(".plumb-render")).unwrap().count(), 0);
    }

    /// What a render of `spec` over `root` read, as inputs over `root`'s index now.
    fn render_inputs(root: &Path, spec: &SyncSpec) -> crate::inputs::Inputs {
        let accesses = std::sync::Arc::new(Accesses::default());
        let opts = RenderOptions {
            accesses: Some(accesses.clone()),
            ..RenderOptions::default()
        };
        render_with(root, spec, &[], &opts).unwrap();
        let root = root.canonicalize().unwrap();
        let index = crate::inputs::Index::of_tree(&root).unwrap();
        crate::inputs::Inputs::observe(&root, &accesses.snapshot().unwrap(), &index).unwrap()
    }

    #[test]
    fn a_render_reads_its_overlay_and_base_and_nothing_of_other_apps() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        write(root, "base/kustomization.yaml", "resources: [cm.yaml]\n");
        write(root, "base/cm.yaml", &cm("settings"));
        for app in ["a", "b"] {
            write(
                root,
                &format!("apps/{app}/kustomization.yaml"),
                &format!("resources: [../../base, own.yaml]\nnamePrefix: {app}-\n"),
            );
            write(root, &format!("apps/{app}/own.yaml"), &cm("own"));
            write(root, &format!("plain/{app}/objects.yaml"), &cm(app));
        }
        let mut overlay = spec("apps/a");
        overlay.target_namespace = Some("team".into());
        let plain = spec("plain/a");
        let inputs = [render_inputs(root, &overlay), render_inputs(root, &plain)];
        let holds = |root: &Path| {
            let index = crate::inputs::Index::of_tree(&root.canonicalize().unwrap()).unwrap();
            inputs.iter().map(|i| i.hold_in(&index)).collect::<Vec<_>>()
        };
        assert_eq!(holds(root), [true, true]);
        write(root, "apps/b/own.yaml", &cm("changed"));
        write(root, "plain/b/objects.yaml", &cm("changed"));
        write(
            root,
            "apps/c/kustomization.yaml",
            "resources: [../../base]\n",
        );
        assert_eq!(holds(root), [true, true], "other apps changed, one added");
        write(root, "plain/a/more.yaml", &cm("more"));
        assert_eq!(holds(root), [true, false], "a file added to a plain app");
        write(root, "base/cm.yaml", &cm("changed"));
        assert_eq!(holds(root), [false, false], "the shared base changed");
    }

    #[test]
    fn build_errors_name_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            "app/kustomization.yaml",
            "resources: [missing.yaml]\n",
        );
        let err = render(tmp.path(), &spec("app"), &[]).unwrap_err();
        assert!(matches!(err, BuildError::Kustomize { .. }), "{err}");
        assert!(err.to_string().contains("\"app\""), "{err}");
    }
}
