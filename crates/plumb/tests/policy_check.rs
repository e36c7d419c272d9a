//! `plumb policy check` on the examples: passes as shipped, fails with the broken rule named when
//! an overlay uses a `latest` image.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::Command;

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A copy of the repository's `examples/` (in a temporary directory, removed when dropped), so
/// a test may edit it.
fn copy_examples() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let examples = tmp.path().join("examples");
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples"),
        &examples,
    );
    (tmp, examples)
}

/// `plumb policy check FLAGS... --policy <the examples' Policy> TARGET`: its exit code, and its
/// stdout and stderr.
fn check(examples: &Path, flags: &[&str], target: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_plumb"))
        .args(["policy", "check"])
        .args(flags)
        .arg("--policy")
        .arg(examples.join("clusters/local/policy.yaml"))
        .arg(target)
        .env("PLUMB_HELM", plumb_e2e_support::helm_binary())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap(), text)
}

/// Replaces `from` with `to` in the file `path`.
fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap().replace(from, to);
    std::fs::write(path, text).unwrap();
}

#[test]
fn policy_check_passes_pinned_images_and_denies_latest() {
    let (_tmp, examples) = copy_examples();
    let overlay = examples.join("apps/overlays/prod");
    // A checkout, as in CI: overlays may reach bases anywhere in the work tree.
    let init = Command::new("git")
        .args(["init", "-q"])
        .current_dir(&examples)
        .status()
        .unwrap();
    assert!(init.success());

    let (code, out) = check(&examples, &[], &overlay);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("4 objects, 1 policies: 0 violations, 0 warnings"),
        "{out}"
    );

    edit(
        &overlay.join("kustomization.yaml"),
        "newTag: 1.0.0",
        "newTag: latest",
    );
    let (code, out) = check(&examples, &[], &overlay);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "DENY greeter-prod_greeter_apps_Deployment policy=demo-guardrails rule=pinned-images"
        ),
        "{out}"
    );
}

/// A chart is checked as rendered by Helm (the demo's chart, `examples/apps/charts`), placed in
/// the namespace given, with the broken rule and the object named.
#[test]
fn policy_check_renders_a_chart_with_helm() {
    let (_tmp, examples) = copy_examples();
    let chart = examples.join("apps/charts/status-board");
    let check_chart = || check(&examples, &["-n", "boards"], &chart);
    let (code, out) = check_chart();
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("3 objects, 1 policies: 0 violations, 0 warnings"),
        "{out}"
    );

    edit(&chart.join("values.yaml"), "tag: \"\"", "tag: latest");
    let (code, out) = check_chart();
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "DENY _release-name-status-board_apps_Deployment policy=demo-guardrails rule=pinned-images"
        ),
        "{out}"
    );
}
