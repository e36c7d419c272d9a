//! `plumb` answers `plumb build` of a kustomization itself and hands everything else to
//! `plumb-cli`: what a user sees (stdout, stderr, exit code) is what `plumb-cli` alone shows.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Output};

const PLUMB: &str = env!("CARGO_BIN_EXE_plumb");
const PLUMB_CLI: &str = env!("CARGO_BIN_EXE_plumb-cli");

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// Runs `bin`. A binary just copied may be refused with ETXTBSY for a moment: a process another
/// test thread forked meanwhile still holds the copy's write descriptor until it execs.
fn run(bin: &str, args: &[&str]) -> Output {
    let mut busy = 0;
    loop {
        match Command::new(bin).args(args).output() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && busy < 100 => {
                busy += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            out => return out.unwrap(),
        }
    }
}

/// A base and an overlay that prefixes names and patches the Deployment.
fn tree(root: &Path) {
    write(
        root,
        "base/kustomization.yaml",
        "resources: [deploy.yaml]\nconfigMapGenerator:\n- name: env\n  literals: [A=1]\n",
    );
    write(
        root,
        "base/deploy.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    spec:\n      containers:\n      - name: web\n        image: web:1\n        envFrom:\n        - configMapRef:\n            name: env\n",
    );
    write(
        root,
        "overlay/kustomization.yaml",
        "resources: [../base, ns.yaml]\nnamePrefix: prod-\nimages:\n- name: web\n  newTag: \"2\"\n",
    );
    write(
        root,
        "overlay/ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: prod\n",
    );
    write(
        root,
        "broken/kustomization.yaml",
        "resources: [missing.yaml]\n",
    );
}

/// `plumb ARGS` and `plumb-cli ARGS` (called by the name `plumb`, as clap prints it in usage
/// lines) show the same.
fn assert_same(args: &[&str]) {
    let front = run(PLUMB, args);
    let full = Command::new(PLUMB_CLI)
        .arg0(PLUMB)
        .args(args)
        .output()
        .unwrap();
    assert_eq!(
        front.status.code(),
        full.status.code(),
        "exit code of {args:?}"
    );
    assert_eq!(
        String::from_utf8_lossy(&front.stdout),
        String::from_utf8_lossy(&full.stdout),
        "stdout of {args:?}"
    );
    assert_eq!(
        String::from_utf8_lossy(&front.stderr),
        String::from_utf8_lossy(&full.stderr),
        "stderr of {args:?}"
    );
}

#[test]
fn a_kustomization_builds_as_plumb_cli_builds_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    tree(root);
    let overlay = root.join("overlay");
    let overlay = overlay.to_str().unwrap();
    let root_s = root.to_str().unwrap();
    let out = run(PLUMB, &["build", overlay]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("apiVersion: v1\nkind: Namespace\n"),
        "{text}"
    );
    assert!(
        text.contains("name: prod-web") && text.contains("image: web:2"),
        "{text}"
    );

    for args in [
        &["build", overlay][..],
        &["build", overlay, "--reorder", "none"],
        &["build", "--reorder=legacy", overlay],
        &["build", overlay, "--root", root_s],
        &["build", overlay, "--root", overlay],
        &["build", root.join("broken").to_str().unwrap()],
    ] {
        assert_same(args);
    }
    // The current directory is the default.
    let front = Command::new(PLUMB)
        .arg("build")
        .current_dir(root.join("overlay"))
        .output()
        .unwrap();
    assert_eq!(front.stdout, run(PLUMB_CLI, &["build", overlay]).stdout);
}

#[test]
fn other_commands_reach_plumb_cli_with_their_arguments() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    tree(root);
    write(
        root,
        "plain/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n",
    );
    for args in [
        &["--version"][..],
        &["build", root.join("plain").to_str().unwrap()],
        &["build", root.join("nowhere").to_str().unwrap()],
        &["build", "--reorder", "sideways", root.to_str().unwrap()],
        &["no-such-command"],
    ] {
        assert_same(args);
    }
    // Help names the command the user typed.
    let help = run(PLUMB, &["build", "--help"]);
    assert!(help.status.success());
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(help.contains("Usage: plumb build"), "{help}");
}

#[test]
fn without_plumb_cli_beside_it_only_kustomizations_build() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    tree(root);
    let alone = root.join("bin/plumb");
    std::fs::create_dir_all(alone.parent().unwrap()).unwrap();
    std::fs::copy(PLUMB, &alone).unwrap();
    let alone = alone.to_str().unwrap();

    let out = run(alone, &["build", root.join("overlay").to_str().unwrap()]);
    assert!(out.status.success());
    let err = run(alone, &["get"]);
    assert!(!err.status.success());
    let err = String::from_utf8(err.stderr).unwrap();
    assert!(
        err.contains("bin/plumb-cli") && err.contains("No such file"),
        "{err}"
    );
}

#[test]
fn under_a_small_stack_limit_the_build_runs_on_a_thread_of_its_own_and_prints_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    tree(root);
    for dir in ["overlay", "broken"] {
        let dir = root.join(dir);
        let dir = dir.to_str().unwrap();
        let usual = run(PLUMB, &["build", dir]);
        // 1 MiB of main-thread stack: the build runs on a thread of its own and prints the same.
        let small = Command::new("sh")
            .args([
                "-c",
                "ulimit -s 1024 && exec \"$0\" build \"$1\"",
                PLUMB,
                dir,
            ])
            .output()
            .unwrap();
        assert_eq!(small.status.code(), usual.status.code(), "{dir}");
        assert_eq!(small.stdout, usual.stdout, "{dir}");
        assert_eq!(
            String::from_utf8_lossy(&small.stderr),
            String::from_utf8_lossy(&usual.stderr),
            "{dir}"
        );
    }
}
