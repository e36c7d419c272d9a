//! A native kustomize engine: `kustomize build` semantics (kustomize v5.5) as a pure library.
//!
//! Give it a filesystem root that nothing may escape and a directory inside it holding a
//! kustomization; get back the rendered objects in output order, and print them with
//! [`to_yaml`] exactly as `kubectl kustomize` does.
//!
//! ```no_run
//! use plumb_kustomize::{build, to_yaml, BuildOptions};
//! use std::path::Path;
//! let objects = build(Path::new("/repo"), Path::new("/repo/overlays/prod"), &BuildOptions::default())?;
//! print!("{}", to_yaml(&objects));
//! # Ok::<(), plumb_kustomize::Error>(())
//! ```
//!
//! `helmCharts` with a local chart are inflated by the [`ChartEngine`] the caller gives
//! ([`BuildOptions::charts`]), as `kustomize build --enable-helm` runs Helm; remote bases, chart
//! downloads, exec/container functions and non-builtin plugins are refused.
//! Builds share no state, so any number may run in parallel. Each runs on a thread of its own
//! with a known stack ([`limits::BUILD_STACK_BYTES`]), never the caller's: a hostile replacement
//! can create an object nested thousands of levels deep, and building or dropping it needs more
//! stack than a process's main thread has. Each is held to the [`limits`] in its options, so a
//! hostile tree costs an [`Error`] naming the limit, never the process.

mod accesses;
mod build;
mod config;
mod crds;
mod error;
mod fieldspec;
mod fs;
mod generators;
mod godecode;
pub mod helm;
#[cfg(feature = "hostile-trees")]
pub mod hostile;
mod jsonpatch;
mod kustomization;
pub mod limits;
mod nameref;
mod order;
mod replacement;
mod resource;
mod schema;
mod select;
mod smp;
mod transform;
mod vars;
pub mod yaml;

pub use accesses::{Access, Accesses};
pub use error::{
    Error, FieldError, NameRefError, PatchError, ReplacementError, SelectorError, TransformError,
    VarError,
};
pub use godecode::DecodeError;
pub use helm::{ChartEngine, ChartFailure, ChartRequest};
pub use kustomization::{
    FieldOptions, FieldSpec, GeneratorArgs, GeneratorOptions, Image, Kustomization, Label,
    LegacySortOptions, ParseError, Patch, ReplacementField, ReplacementSource, ReplacementTarget,
    Replica, Selector, SortOptions, Var, VarField, VarTarget,
};
pub use limits::{Limit, Limits};
pub use resource::{Gvk, ResId, Resource};

use build::{Builder, Target};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// Output order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reorder {
    /// kustomize's legacy order: by kind (Namespace first, webhooks last), then by id.
    #[default]
    Legacy,
    /// The order in which resources were declared.
    None,
}

/// Options of a build.
#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    /// Output order when the kustomization has no `sortOptions`.
    pub reorder: Reorder,
    /// What the build may read and expand.
    pub limits: Limits,
    /// How long the build may run (checked at every file read and step); none by default.
    pub timeout: Option<Duration>,
    /// What inflates `helmCharts` (as `kustomize build --enable-helm`); without one they are
    /// refused.
    pub charts: Option<std::sync::Arc<dyn ChartEngine>>,
    /// Where to record every path of the tree the build looks at (files read, paths probed),
    /// so a caller can tell whether a new version of the tree could build differently.
    pub accesses: Option<std::sync::Arc<Accesses>>,
}

/// Whether `dir` holds a kustomization file (`kustomization.yaml`, `kustomization.yml` or
/// `Kustomization`), which `build` needs there.
pub fn has_kustomization(dir: &Path) -> bool {
    build::KUSTOMIZATION_FILES
        .iter()
        .any(|f| dir.join(f).is_file())
}

/// Build the kustomization in directory `path`, reading nothing outside `root`.
pub fn build(root: &Path, path: &Path, opts: &BuildOptions) -> Result<Vec<Resource>, Error> {
    on_build_thread(path, opts, || {
        let fs = root_fs(root, opts)?;
        let dir = resolve_dir(&fs, path)?;
        let mut b = Builder::new(&fs, &opts.limits, opts.timeout);
        b.charts = opts.charts.clone();
        let target = b.load_target(&dir)?;
        run(&mut b, target, opts)
    })
}

/// Run a build with the build's alias budget, on a thread with a stack of
/// [`limits::BUILD_STACK_BYTES`]; a panic (a bug) becomes an error rather than taking the caller
/// down.
fn on_build_thread(
    path: &Path,
    opts: &BuildOptions,
    f: impl FnOnce() -> Result<Vec<Resource>, Error> + Send,
) -> Result<Vec<Resource>, Error> {
    let shown = path.display().to_string();
    let failed = |panic: Box<dyn std::any::Any + Send>| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(Error::Build {
            kustomization: shown.clone(),
            message: format!("the build failed unexpectedly: {what}"),
        })
    };
    let run = || yaml::with_alias_budget(opts.limits.max_alias_nodes, f);
    std::thread::scope(|s| {
        let handle = std::thread::Builder::new()
            .name("kustomize-build".into())
            .stack_size(limits::BUILD_STACK_BYTES)
            .spawn_scoped(s, run)
            .map_err(|source| Error::Io {
                kustomization: shown.clone(),
                path: "(build thread)".into(),
                source,
            })?;
        handle.join().unwrap_or_else(failed)
    })
}

/// Build a kustomization given as data, as if its file were in directory `dir` (inside `root`).
/// This is how a caller layers its own `images`, `patches`, `namespace` or `resources` over a
/// tree: list the tree (`.` for a directory's own kustomization, or plain files) in `resources`.
pub fn build_kustomization(
    root: &Path,
    dir: &Path,
    kustomization: &Kustomization,
    opts: &BuildOptions,
) -> Result<Vec<Resource>, Error> {
    on_build_thread(dir, opts, || {
        let fs = root_fs(root, opts)?;
        let dir = resolve_dir(&fs, dir)?;
        let mut k = kustomization.clone();
        k.fix_legacy_fields();
        let mut b = Builder::new(&fs, &opts.limits, opts.timeout);
        b.charts = opts.charts.clone();
        let file = format!("{} (generated)", fs.show(&dir.join("kustomization.yaml")));
        let target = Target {
            dir,
            file,
            file_name: "kustomization.yaml".into(),
            k,
            origin: None,
            plugin: None,
        };
        run(&mut b, target, opts)
    })
}

fn root_fs(root: &Path, opts: &BuildOptions) -> Result<fs::RootFs, Error> {
    fs::RootFs::new(root)
        .map(|fs| fs.recording(opts.accesses.clone()))
        .map_err(|e| Error::Root {
            root: root.display().to_string(),
            message: e.to_string(),
        })
}

fn resolve_dir(fs: &fs::RootFs, path: &Path) -> Result<std::path::PathBuf, Error> {
    let rel = path.strip_prefix(fs.root()).unwrap_or(path);
    let shown = path.display().to_string();
    let dir = if rel.as_os_str().is_empty() {
        fs.root().to_path_buf()
    } else if path.is_absolute() && !path.starts_with(fs.root()) {
        // An absolute path given through a symlinked root: canonicalize and check.
        let real = path.canonicalize().map_err(|e| Error::Root {
            root: fs.root().display().to_string(),
            message: format!("{shown}: {e}"),
        })?;
        if !real.starts_with(fs.root()) {
            return Err(Error::OutsideRoot {
                kustomization: shown.clone(),
                path: shown,
            });
        }
        real
    } else {
        fs.resolve(fs.root(), &rel.to_string_lossy())
            .map_err(|e| match e {
                fs::FsError::Outside(p) => Error::OutsideRoot {
                    kustomization: shown.clone(),
                    path: p,
                },
                other => Error::Root {
                    root: fs.root().display().to_string(),
                    message: other.to_string(),
                },
            })?
    };
    if !fs.is_dir(&dir) {
        return Err(Error::Root {
            root: fs.root().display().to_string(),
            message: format!("{shown} is not a directory"),
        });
    }
    Ok(dir)
}

fn run(
    b: &mut Builder<'_>,
    mut target: Target,
    opts: &BuildOptions,
) -> Result<Vec<Resource>, Error> {
    if !target.k.build_metadata.is_empty() {
        target.origin = Some(String::new());
    }
    b.track_transformers = target
        .k
        .build_metadata
        .iter()
        .any(|m| m == "transformerAnnotations");
    b.push_root(&target.dir);
    let mut acc = b.accumulate_new(&target)?;
    generators::apply_hashes(&mut acc.res);
    nameref::fix(&mut acc.res, &acc.config.name_reference).map_err(target.transform_err(""))?;
    vars::resolve(&mut acc.res, &acc.vars, &acc.config.var_reference)
        .map_err(|e| target.transform_err("")(e.into()))?;
    // Local configuration served transformers, name references and vars; it is not output.
    acc.res.retain(|r| !r.is_local_config());
    match &target.k.sort_options {
        Some(so) => match so.order.as_str() {
            "legacy" => {
                let custom = so.legacy_sort_options.as_ref();
                order::legacy_sort(
                    &mut acc.res,
                    custom.map(|c| c.order_first.as_slice()),
                    custom.map(|c| c.order_last.as_slice()),
                );
            }
            "fifo" => {
                if so.legacy_sort_options.is_some() {
                    return Err(target.err(
                        "the field 'sortOptions.legacySortOptions' is set but the selected sort order is 'fifo', not 'legacy'",
                    ));
                }
            }
            _ => {
                return Err(
                    target.err("the field 'sortOptions.order' must be one of [fifo, legacy]")
                );
            }
        },
        None if opts.reorder == Reorder::Legacy => order::legacy_sort(&mut acc.res, None, None),
        None => {}
    }
    let meta = &target.k.build_metadata;
    for r in acc.res.iter_mut() {
        if meta.iter().any(|m| m == "managedByLabel") {
            let md = r.metadata_mut();
            let labels = md
                .entry("labels")
                .or_insert_with(|| Value::Object(Default::default()));
            if let Value::Object(l) = labels {
                l.insert(
                    "app.kubernetes.io/managed-by".into(),
                    Value::String("kustomize-(devel)".into()),
                );
            }
        }
        if meta.iter().any(|m| m == "originAnnotations")
            && let Some(origin) = r.origin.clone()
        {
            let text = if origin.starts_with("configuredIn:") {
                origin
            } else {
                format!("path: {origin}\n")
            };
            let md = r.metadata_mut();
            let ann = md
                .entry("annotations")
                .or_insert_with(|| Value::Object(Default::default()));
            if let Value::Object(a) = ann {
                a.insert("config.kubernetes.io/origin".into(), Value::String(text));
            }
        }
        if b.track_transformers && !r.transformations.is_empty() {
            let mut text = String::new();
            for t in &r.transformations {
                for (i, line) in t.lines().enumerate() {
                    text.push_str(if i == 0 { "- " } else { "  " });
                    text.push_str(line);
                    text.push('\n');
                }
            }
            let md = r.metadata_mut();
            let ann = md
                .entry("annotations")
                .or_insert_with(|| Value::Object(Default::default()));
            if let Value::Object(a) = ann {
                a.insert(
                    "alpha.config.kubernetes.io/transformations".into(),
                    Value::String(text),
                );
            }
        }
        stringify_annotations(r);
    }
    // Transformers can nest deeper than any input did (a replacement or field spec creating a
    // long path); such an object would overflow the stacks of whoever reads it next.
    for r in &acc.res {
        if depth(r.as_value()) > limits::YAML_MAX_DEPTH {
            return Err(Error::Limit {
                kustomization: target.file.clone(),
                file: r.id().to_string(),
                limit: Limit::ObjectDepth {
                    max: limits::YAML_MAX_DEPTH,
                },
            });
        }
    }
    Ok(acc.res)
}

/// How deep an object nests (an object of scalars is 1), without recursion.
fn depth(obj: &serde_json::Map<String, Value>) -> usize {
    let mut deepest = 1;
    let mut stack: Vec<(&Value, usize)> = obj.values().map(|v| (v, 1)).collect();
    while let Some((v, level)) = stack.pop() {
        match v {
            Value::Object(m) => {
                deepest = deepest.max(level + 1);
                stack.extend(m.values().map(|c| (c, level + 1)));
            }
            Value::Array(items) => {
                deepest = deepest.max(level + 1);
                stack.extend(items.iter().map(|c| (c, level + 1)));
            }
            _ => {}
        }
    }
    deepest
}

/// kustomize rewrites annotations as strings when it removes its internal ones.
fn stringify_annotations(r: &mut Resource) {
    if let Some(Value::Object(md)) = r.as_value_mut().get_mut("metadata")
        && let Some(Value::Object(a)) = md.get_mut("annotations")
    {
        for (_, v) in a.iter_mut() {
            if !v.is_string() && !v.is_object() && !v.is_array() {
                *v = Value::String(resource::scalar_string(v));
            }
        }
    }
}

/// Print objects as multi-document YAML, byte for byte as `kubectl kustomize` prints them.
pub fn to_yaml(resources: &[Resource]) -> String {
    let mut out = String::new();
    for (i, r) in resources.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&yaml::to_yaml_document(&Value::Object(
            r.as_value().clone(),
        )));
    }
    out
}
