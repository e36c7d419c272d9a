//! `plumb build CHART_DIR` against `helm template`, differentially: for each set of arguments,
//! the real Helm (the pinned binary, run as a user runs it) and `plumb build` print the same
//! bytes; errors carry Helm's message. The charts under crates/helm/tests/charts exercise a
//! library chart, subcharts (one under an alias) with global values, helpers and `tpl`,
//! `.Files`, `.Capabilities`, CRDs in crds/, hooks, `lookup`, NOTES.txt and values precedence.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use plumb_e2e_support::helm_binary;

fn charts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../helm/tests/charts")
}

/// `helm template [NAME] CHART ARGS...` as a user runs it, from an empty home.
fn helm_template(name: Option<&str>, chart: &Path, args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(helm_binary());
    cmd.env_clear().env("HOME", home.path()).arg("template");
    if let Some(n) = name {
        cmd.arg(n);
    }
    cmd.arg(chart).args(args).output().unwrap()
}

/// `plumb build CHART ARGS...` with the same Helm.
fn plumb_build(chart: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_plumb"))
        .env("PLUMB_HELM", helm_binary())
        .arg("build")
        .arg(chart)
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Both print the same bytes, successfully; returns them.
fn same_output(
    name: Option<&str>,
    chart: &Path,
    helm_args: &[&str],
    plumb_args: &[&str],
) -> String {
    let want = helm_template(name, chart, helm_args);
    assert!(
        want.status.success(),
        "helm template failed: {}",
        text(&want.stderr)
    );
    let got = plumb_build(chart, plumb_args);
    assert!(
        got.status.success(),
        "plumb build failed: {}",
        text(&got.stderr)
    );
    let (want, got) = (text(&want.stdout), text(&got.stdout));
    if want != got {
        let diff = similar::TextDiff::from_lines(&want, &got)
            .unified_diff()
            .header("helm template", "plumb build")
            .to_string();
        panic!("plumb build differs from helm template:\n{diff}");
    }
    got
}

fn documents(out: &str) -> usize {
    out.matches("\n# Source: ").count()
}

#[test]
fn defaults_match_helm_template() {
    let out = same_output(None, &charts().join("app"), &[], &[]);
    // Helm's defaults: release-name in default, no CRDs, tests included, Helm's own capabilities.
    assert!(out.contains("name: release-name-app\n"), "{out}");
    assert!(
        out.contains("greeting: \"Hello from release-name in default\""),
        "{out}"
    );
    assert!(out.contains("# Source: app/templates/hooks.yaml"), "{out}");
    assert!(
        out.contains("\"helm.sh/hook\": test"),
        "tests included: {out}"
    );
    assert!(!out.contains("kind: CustomResourceDefinition"), "{out}");
    assert!(!out.contains("NOTES"), "{out}");
    assert!(
        out.contains("lookup finds nothing without a cluster"),
        "{out}"
    );
    assert!(!out.contains("kind: ServiceMonitor"), "{out}");
    assert_eq!(documents(&out), 11, "{out}");
}

#[test]
fn values_release_capabilities_crds_and_tests_match_helm_template() {
    let chart = charts().join("app");
    let prod = chart.join("values-prod.yaml");
    let extra = chart.join("values-extra.yaml");
    let (prod, extra) = (prod.to_str().unwrap(), extra.to_str().unwrap());
    let common = [
        "-f",
        prod,
        "-f",
        extra,
        "--set",
        "replicaCount=5,worker.queue=fast",
        "--set-string",
        "image.tag=010",
        "--namespace",
        "prod",
        "--include-crds",
        "--skip-tests",
        "--kube-version",
        "v1.35.8",
        "--api-versions",
        "monitoring.coreos.com/v1",
        "--api-versions",
        "monitoring.coreos.com/v1/ServiceMonitor",
        "-a",
        "apps/v1/Deployment",
    ];
    let mut plumb_args = vec!["--release-name", "shop"];
    plumb_args.extend(common);
    let out = same_output(Some("shop"), &chart, &common, &plumb_args);
    for expected in [
        // values precedence: values.yaml < -f prod < -f extra < --set / --set-string
        "image: \"registry.example.com/shop/web:010\"",
        "value: \"warn\"",
        "name: TRACE",
        "env: prod",
        "name: shop-worker-fast",
        "replicas: 4",
        "name: shop-batch-nightly",
        // helpers, tpl, .Files, .Capabilities
        "greeting: \"Welcome from shop in prod\"",
        "kubeVersion: \"v1.35.8\"",
        "hasDeployments: \"true\"",
        "kind: ServiceMonitor",
        "apiVersion: autoscaling/v2\n",
        "kind: CustomResourceDefinition",
        "# Source: app/templates/hooks.yaml",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in\n{out}");
    }
    assert!(
        !out.contains("\"helm.sh/hook\": test"),
        "tests skipped: {out}"
    );
    assert!(
        !out.contains("FEATURE_X"),
        "a null value deletes the key: {out}"
    );
    assert!(
        !out.contains("replicas: 5"),
        "autoscaling drops replicas: {out}"
    );
}

#[test]
fn a_values_file_outside_the_chart_and_a_library_chart_behave_as_in_helm() {
    let chart = charts().join("app");
    let ci = chart.join("ci/values-ci.yaml");
    let ci = ci.to_str().unwrap();
    let out = same_output(None, &chart, &["-f", ci], &["-f", ci]);
    assert!(out.contains("replicas: 9"), "{out}");

    // A library chart renders nothing by itself: both refuse it with Helm's words.
    let library = charts().join("app/charts/common");
    let want = helm_template(None, &library, &[]);
    let got = plumb_build(&library, &[]);
    assert!(!want.status.success() && !got.status.success());
    let helm_error = text(&want.stderr);
    let helm_error = helm_error.trim().trim_start_matches("Error: ");
    assert!(
        text(&got.stderr).contains(helm_error),
        "{}",
        text(&got.stderr)
    );
}

#[test]
fn helms_errors_reach_the_user_with_the_chart_named() {
    let chart = charts().join("app");
    let want = helm_template(None, &chart, &["--kube-version", "v1.24.0"]);
    let got = plumb_build(&chart, &["--kube-version", "v1.24.0"]);
    assert!(!want.status.success() && !got.status.success());
    let helm_error = text(&want.stderr);
    let helm_error = helm_error.trim().trim_start_matches("Error: ");
    assert!(helm_error.contains("kubeVersion"), "{helm_error}");
    let err = text(&got.stderr);
    assert!(err.contains(helm_error), "{err}");
    assert!(err.contains("chart app"), "{err}");
}

#[test]
fn a_dependency_that_needs_a_download_is_named_and_nothing_is_fetched() {
    let got = plumb_build(&charts().join("missing-dep"), &[]);
    assert!(!got.status.success());
    let err = text(&got.stderr);
    assert!(
        err.contains("dependency redis 18.1.0 from https://charts.example.com/stable"),
        "{err}"
    );
    assert!(err.contains("helm dependency build"), "{err}");
}

#[test]
fn chart_options_on_a_kustomization_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("kustomization.yaml"), "resources: []\n").unwrap();
    let got = plumb_build(tmp.path(), &["--set", "a=b"]);
    assert!(!got.status.success());
    assert!(
        text(&got.stderr).contains("no Chart.yaml"),
        "{}",
        text(&got.stderr)
    );
}
