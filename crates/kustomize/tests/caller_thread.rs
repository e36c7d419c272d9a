//! Builds on the caller's thread (`BuildOptions::on_caller_thread`): the deepest build the default
//! limits allow fits in half of `limits::CALLER_STACK_MIN_BYTES` and gives what a build on a
//! thread of its own gives; a build allowed deeper chains still runs on a thread of its own.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use plumb_kustomize::limits::{
    CALLER_STACK_MIN_BYTES, KUSTOMIZATION_DEPTH_CEILING, YAML_MAX_DEPTH,
};
use plumb_kustomize::{BuildOptions, Limits, build, to_yaml};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Lines of a mapping nested `depth` levels below `indent`, ending in `leaf: value`.
fn nested(depth: usize, indent: usize, leaf: &str) -> String {
    let mut out = String::new();
    for level in 0..depth {
        let _ = writeln!(out, "{}k{level}:", "  ".repeat(indent + level));
    }
    let _ = writeln!(out, "{}{leaf}: value", "  ".repeat(indent + depth));
    out
}

/// A chain of `levels` kustomizations: the first holds a ConfigMap nested just under the YAML
/// depth limit; each one above it adds a prefix, a label and a strategic-merge patch as deep as
/// the ConfigMap. Returns the top kustomization's directory.
fn deepest_tree(root: &Path, levels: usize) -> PathBuf {
    // The document itself, `data`, and the mapping levels below it.
    let depth = YAML_MAX_DEPTH - 3;
    let write = |rel: String, text: String| {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap_or(root)).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write(
        "l0/cm.yaml".into(),
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n{}",
            nested(depth, 1, "leaf")
        ),
    );
    write(
        "l0/kustomization.yaml".into(),
        "resources:\n- cm.yaml\n".into(),
    );
    for level in 1..levels {
        write(
            format!("l{level}/patch.yaml"),
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n{}",
                nested(depth, 1, &format!("leaf{level}"))
            ),
        );
        write(
            format!("l{level}/kustomization.yaml"),
            format!(
                "resources:\n- ../l{}\nnamePrefix: p{level}-\nlabels:\n- pairs:\n    l{level}: x\npatches:\n- path: patch.yaml\n  target:\n    kind: ConfigMap\n",
                level - 1
            ),
        );
    }
    root.join(format!("l{}", levels - 1))
}

/// Builds the tree under `top` on a thread with half of `CALLER_STACK_MIN_BYTES`, asking for
/// the caller's thread; a stack overflow aborts the test binary, which fails the test.
fn build_on_half_the_caller_stack(root: &Path, top: &Path, limits: Limits) -> String {
    let (root, top) = (root.to_path_buf(), top.to_path_buf());
    std::thread::Builder::new()
        .stack_size(CALLER_STACK_MIN_BYTES / 2)
        .spawn(move || {
            let opts = BuildOptions {
                limits,
                on_caller_thread: true,
                ..BuildOptions::default()
            };
            build(&root, &top, &opts).map(|objects| to_yaml(&objects))
        })
        .unwrap()
        .join()
        .unwrap()
        .unwrap()
}

#[test]
fn deepest_default_build_fits_half_the_caller_stack() {
    let dir = tempfile::tempdir().unwrap();
    let levels = Limits::default().max_kustomization_depth;
    let top = deepest_tree(dir.path(), levels);
    let expected = to_yaml(&build(dir.path(), &top, &BuildOptions::default()).unwrap());
    assert!(
        expected.contains(&format!("leaf{}: value", levels - 1)),
        "every level's patch applies"
    );
    let on_caller = build_on_half_the_caller_stack(dir.path(), &top, Limits::default());
    assert_eq!(on_caller, expected);
}

#[test]
fn deeper_chains_than_the_default_run_on_a_thread_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let top = deepest_tree(dir.path(), KUSTOMIZATION_DEPTH_CEILING);
    let limits = Limits {
        max_kustomization_depth: KUSTOMIZATION_DEPTH_CEILING,
        ..Limits::default()
    };
    let own = BuildOptions {
        limits: limits.clone(),
        ..BuildOptions::default()
    };
    let expected = to_yaml(&build(dir.path(), &top, &own).unwrap());
    let on_caller = build_on_half_the_caller_stack(dir.path(), &top, limits);
    assert_eq!(on_caller, expected);
}

#[test]
fn errors_on_the_caller_thread_are_those_of_a_build_thread() {
    let dir = tempfile::tempdir().unwrap();
    let top = deepest_tree(dir.path(), 60);
    let own = build(dir.path(), &top, &BuildOptions::default()).unwrap_err();
    let here = build(
        dir.path(),
        &top,
        &BuildOptions {
            on_caller_thread: true,
            ..BuildOptions::default()
        },
    )
    .unwrap_err();
    assert_eq!(here.to_string(), own.to_string());
    assert!(
        here.to_string().contains("max-kustomization-depth"),
        "{here}"
    );
}
