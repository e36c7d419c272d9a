//! `plumb policy check` on the examples: passes as shipped, fails with the broken rule named when
//! an overlay uses a `latest` image.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::path::Path;
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

fn check(examples: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_plumb"))
        .args(["policy", "check", "--policy"])
        .arg(examples.join("clusters/local/policy.yaml"))
        .arg(examples.join("apps/overlays/prod"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap(), text)
}

#[test]
fn policy_check_passes_pinned_images_and_denies_latest() {
    let tmp = tempfile::tempdir().unwrap();
    let examples = tmp.path().join("examples");
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples"),
        &examples,
    );
    // A checkout, as in CI: overlays may reach bases anywhere in the work tree.
    let init = Command::new("git")
        .args(["init", "-q"])
        .current_dir(&examples)
        .status()
        .unwrap();
    assert!(init.success());

    let (code, out) = check(&examples);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("4 objects, 1 policies: 0 violations, 0 warnings"),
        "{out}"
    );

    let overlay = examples.join("apps/overlays/prod/kustomization.yaml");
    let text = std::fs::read_to_string(&overlay)
        .unwrap()
        .replace("newTag: 1.0.0", "newTag: latest");
    std::fs::write(&overlay, text).unwrap();
    let (code, out) = check(&examples);
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
    let tmp = tempfile::tempdir().unwrap();
    let examples = tmp.path().join("examples");
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples"),
        &examples,
    );
    let chart = examples.join("apps/charts/status-board");
    let check = || {
        let out = Command::new(env!("CARGO_BIN_EXE_plumb"))
            .args(["policy", "check", "-n", "boards", "--policy"])
            .arg(examples.join("clusters/local/policy.yaml"))
            .arg(&chart)
            .env("PLUMB_HELM", plumb_e2e_support::helm_binary())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap(), text)
    };
    let (code, out) = check();
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("3 objects, 1 policies: 0 violations, 0 warnings"),
        "{out}"
    );

    let values = chart.join("values.yaml");
    let text = std::fs::read_to_string(&values)
        .unwrap()
        .replace("tag: \"\"", "tag: latest");
    std::fs::write(&values, text).unwrap();
    let (code, out) = check();
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "DENY _release-name-status-board_apps_Deployment policy=demo-guardrails rule=pinned-images"
        ),
        "{out}"
    );
}
