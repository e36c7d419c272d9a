//! kustomize `helmCharts` against the real tool, differentially: each case is a kustomization
//! written here over charts copied from crates/helm/tests/charts, built by
//! `kubectl kustomize --enable-helm --helm-command <the pinned Helm>` (kustomize v5.5.0) and by
//! `plumb build` with the same Helm; both must print the same bytes, in kustomize's legacy
//! order and again in declaration order (`plumb build --reorder none` against kubectl with
//! `sortOptions: {order: fifo}`). Cases kubectl refuses must fail in plumb too, with a message
//! naming the chart and the cause.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use plumb_e2e_support::helm_binary;

/// One kustomization over charts.
struct Case {
    name: &'static str,
    /// The kustomization file.
    kustomization: &'static str,
    /// Charts to copy: (chart under crates/helm/tests/charts, directory in the case).
    charts: &'static [(&'static str, &'static str)],
    /// Other files: (path in the case, content).
    files: &'static [(&'static str, &'static str)],
}

const WEB: &[(&str, &str)] = &[("web", "charts/web")];

const CASES: &[Case] = &[
    Case {
        name: "defaults",
        kustomization: "helmCharts:\n- name: web\n",
        charts: WEB,
        files: &[],
    },
    Case {
        name: "inline-override",
        kustomization: "\
helmCharts:
- name: web
  releaseName: shop
  namespace: shop-ns
  includeCRDs: true
  skipTests: true
  valuesInline:
    replicas: 3
    flag: on
    image: {tag: \"2.2.0\"}
    ports: [8080]
    drop: null
    nested: {b: null, c: 3}
    fresh: {x: 1, y: null}
",
        charts: WEB,
        files: &[],
    },
    Case {
        name: "inline-merge",
        kustomization: "\
helmCharts:
- name: web
  releaseName: merged
  valuesMerge: merge
  valuesInline: {replicas: 5, extra: 1, flag: null, keep: kept, ports: [1]}
",
        charts: WEB,
        files: &[],
    },
    Case {
        name: "inline-replace",
        kustomization: "\
helmCharts:
- name: web
  releaseName: replaced
  valuesMerge: replace
  valuesInline: {replicas: 7, drop: null, image: {repository: other}}
",
        charts: WEB,
        files: &[],
    },
    Case {
        name: "values-files",
        kustomization: "\
helmCharts:
- name: web
  releaseName: files
  valuesFile: values/base.yaml
  additionalValuesFiles: [values/prod.yaml]
  valuesInline: {nested: {z: 26}}
",
        charts: WEB,
        files: &[
            (
                "values/base.yaml",
                "replicas: 2\nimage: {repository: base.example.com/web, tag: base}\nnested: {a: 10}\n",
            ),
            ("values/prod.yaml", "replicas: 4\nflag: false\n"),
        ],
    },
    Case {
        name: "chart-home-and-name-template",
        kustomization: "\
helmGlobals:
  chartHome: vendor/helm
helmCharts:
- name: web
  nameTemplate: \"{{ printf \\\"%s-%s\\\" \\\"tmpl\\\" \\\"rel\\\" }}\"
- name: web
  releaseName: second
  namespace: other
",
        charts: &[("web", "vendor/helm/web")],
        files: &[],
    },
    Case {
        name: "versioned-local-chart",
        kustomization: "\
helmCharts:
- name: web
  repo: https://charts.example.com
  version: 0.2.0
  releaseName: pinned
",
        charts: &[("web", "charts/web-0.2.0/web")],
        files: &[],
    },
    Case {
        name: "capabilities-and-no-hooks",
        kustomization: "\
helmCharts:
- name: web
  releaseName: caps
  kubeVersion: v1.31.4
  apiVersions: [web.example.com/v1]
  skipHooks: true
",
        charts: WEB,
        files: &[],
    },
    Case {
        name: "transformed",
        kustomization: "\
namePrefix: pre-
namespace: team
commonLabels:
  team: blue
images:
- name: registry.example.com/web
  newTag: patched
resources:
- extra.yaml
configMapGenerator:
- name: settings
  literals: [a=b]
patches:
- target: {kind: Deployment}
  patch: |-
    - op: replace
      path: /spec/replicas
      value: 9
helmCharts:
- name: web
  releaseName: shop
",
        charts: WEB,
        files: &[(
            "extra.yaml",
            "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: extra\n",
        )],
    },
    Case {
        name: "in-a-base",
        kustomization: "resources:\n- base\nnameSuffix: -overlay\n",
        charts: &[("web", "base/charts/web")],
        files: &[(
            "base/kustomization.yaml",
            "helmCharts:\n- name: web\n  releaseName: based\n  valuesInline: {replicas: 2}\n",
        )],
    },
    Case {
        name: "legacy-generator-field",
        kustomization: "\
helmChartInflationGenerator:
- chartName: web
  chartHome: old
  releaseName: legacy
  valuesLocal: {replicas: 6}
",
        charts: &[("web", "old/web")],
        files: &[],
    },
    Case {
        name: "subcharts-library-and-crds",
        kustomization: "\
helmCharts:
- name: app
  releaseName: full
  namespace: apps
  includeCRDs: true
  apiVersions: [monitoring.coreos.com/v1]
  kubeVersion: v1.35.8
  valuesInline:
    replicaCount: 2
    worker: {enabled: true}
",
        charts: &[("app", "charts/app")],
        files: &[],
    },
];

/// Cases kubectl refuses: plumb must fail too, naming what the substrings name.
const FAILING: &[(Case, &[&str])] = &[
    (
        Case {
            name: "missing-chart",
            kustomization: "helmCharts:\n- name: absent\n",
            charts: WEB,
            files: &[],
        },
        &[
            "helm chart absent",
            "no chart at charts/absent",
            "downloads nothing",
        ],
    ),
    (
        Case {
            name: "bad-values-merge",
            kustomization: "helmCharts:\n- name: web\n  valuesMerge: deep\n",
            charts: WEB,
            files: &[],
        },
        &["helm chart web", "valuesMerge must be one of"],
    ),
    (
        Case {
            name: "kinds-do-not-merge",
            kustomization: "helmCharts:\n- name: web\n  valuesInline: {image: flat}\n",
            charts: WEB,
            files: &[],
        },
        &["helm chart web", "could not merge values", "image"],
    ),
    (
        Case {
            name: "no-chart-name",
            kustomization: "helmCharts:\n- releaseName: x\n",
            charts: WEB,
            files: &[],
        },
        &["chart name cannot be empty"],
    ),
    (
        Case {
            name: "release-name-and-template",
            kustomization: "helmCharts:\n- name: web\n  releaseName: a\n  nameTemplate: b\n",
            charts: WEB,
            files: &[],
        },
        &[
            "helm chart web",
            "cannot set --name-template and also specify a name",
        ],
    ),
    (
        Case {
            name: "values-outside-the-kustomization",
            kustomization: "helmGlobals: {chartHome: ../shared}\nhelmCharts:\n- name: web\n",
            charts: &[("web", "../shared/web")],
            files: &[],
        },
        &["values.yaml"],
    ),
    (
        Case {
            name: "unknown-field",
            kustomization: "helmCharts:\n- name: web\n  valuesInlined: {a: 1}\n",
            charts: WEB,
            files: &[],
        },
        &["unknown field", "valuesInlined"],
    ),
];

fn charts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../helm/tests/charts")
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// Writes the case under `parent/<name>/case` (so `..` paths stay inside `parent/<name>`),
/// with `extra` appended to its kustomization; returns the kustomization's directory.
fn write_case(parent: &Path, case: &Case, extra: &str) -> PathBuf {
    let dir = parent.join(case.name).join("case");
    fs::create_dir_all(&dir).unwrap();
    for (chart, rel) in case.charts {
        copy_tree(&charts_dir().join(chart), &dir.join(rel));
    }
    for (rel, text) in case.files {
        let path = dir.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }
    fs::write(
        dir.join("kustomization.yaml"),
        format!("{}{extra}", case.kustomization),
    )
    .unwrap();
    dir
}

fn kubectl(dir: &Path) -> Output {
    let home = tempfile::tempdir().unwrap();
    Command::new("kubectl")
        .env("HOME", home.path())
        .args(["kustomize", "--enable-helm", "--helm-command"])
        .arg(helm_binary())
        .arg(dir)
        .output()
        .expect("running kubectl")
}

fn plumb_build(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_plumb"))
        .env("PLUMB_HELM", helm_binary())
        .arg("build")
        .arg(dir)
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Both succeed and print the same bytes; the output, for further checks.
fn same(name: &str, order: &str, want: &Output, got: &Output) -> String {
    assert!(
        want.status.success(),
        "{name} ({order}): kubectl failed: {}",
        text(&want.stderr)
    );
    assert!(
        got.status.success(),
        "{name} ({order}): plumb build failed: {}",
        text(&got.stderr)
    );
    let (want, got) = (text(&want.stdout), text(&got.stdout));
    if want != got {
        let diff = similar::TextDiff::from_lines(&want, &got)
            .unified_diff()
            .header("kubectl kustomize", "plumb build")
            .to_string();
        panic!("{name} ({order}): plumb build differs from kubectl kustomize:\n{diff}");
    }
    got
}

#[test]
fn helm_charts_build_as_kubectl_kustomize_builds_them_in_both_orders() {
    let tmp = tempfile::tempdir().unwrap();
    for case in CASES {
        let legacy = write_case(&tmp.path().join("legacy"), case, "");
        let out = same(
            case.name,
            "legacy order",
            &kubectl(&legacy),
            &plumb_build(&legacy, &[]),
        );
        assert!(
            out.contains("kind: "),
            "{}: no objects to compare",
            case.name
        );
        let fifo = write_case(
            &tmp.path().join("fifo"),
            case,
            "sortOptions:\n  order: fifo\n",
        );
        same(
            case.name,
            "declaration order",
            &kubectl(&fifo),
            &plumb_build(&legacy, &["--reorder", "none"]),
        );
    }
}

#[test]
fn helm_charts_kubectl_refuses_fail_in_plumb_naming_the_cause() {
    let tmp = tempfile::tempdir().unwrap();
    for (case, needles) in FAILING {
        let dir = write_case(tmp.path(), case, "");
        let want = kubectl(&dir);
        assert!(
            !want.status.success(),
            "{}: kubectl succeeded:\n{}",
            case.name,
            text(&want.stdout)
        );
        let got = plumb_build(&dir, &[]);
        let err = text(&got.stderr);
        assert!(
            !got.status.success(),
            "{}: plumb build succeeded:\n{}",
            case.name,
            text(&got.stdout)
        );
        for n in *needles {
            assert!(err.contains(n), "{}: {n:?} not in: {err}", case.name);
        }
    }
}

/// A chart kustomize would download is refused, naming it and its repository, without any
/// network access being tried (kubectl is not asked: it would try the network).
#[test]
fn a_chart_to_download_is_refused_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let case = Case {
        name: "remote",
        kustomization: "helmCharts:\n- name: redis\n  repo: https://charts.example.com\n  version: 18.1.0\n",
        charts: WEB,
        files: &[],
    };
    let dir = write_case(tmp.path(), &case, "");
    let got = plumb_build(&dir, &[]);
    assert!(!got.status.success());
    let err = text(&got.stderr);
    for n in [
        "helm chart redis",
        "no chart at charts/redis-18.1.0/redis",
        "repo https://charts.example.com, version 18.1.0",
    ] {
        assert!(err.contains(n), "{n:?} not in: {err}");
    }
}
