//! A Sync's chart render against `helm template`, differentially: the objects the render
//! controller publishes for a Sync with `spec.helm` (release name, valuesFiles, valuesFrom,
//! inline values, includeCRDs, skipTests, targetNamespace, the cluster's capabilities) are,
//! byte for byte as JSON and in order, the objects `helm template` prints for the equivalent
//! command line. Then what plumb adds on top: images and patches, a missing dependency, a
//! chart's own failure.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use plumb_api::SyncSpec;
use plumb_e2e_support::{helm_binary, helm_template};
use plumb_helm::{Capabilities, Helm};
use plumb_render::{BuildError, ChartOptions, RenderOptions, render_with};
use serde_json::{Value, json};

fn charts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../helm/tests/charts")
}

/// Copies the directory `from` (with its content) to `to`.
fn copy_dir(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-r")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "cp -r {} {}",
        from.display(),
        to.display()
    );
}

/// A source tree holding the test charts under `charts/`.
fn source() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&charts(), &tmp.path().join("charts"));
    tmp
}

/// A [`source`] with the kustomization `kustomization` at `deploy/`, beside copies of the test
/// charts `vendored` in `deploy/charts/`.
fn kustomize_source(kustomization: &str, vendored: &[&str]) -> tempfile::TempDir {
    let src = source();
    let deploy = src.path().join("deploy");
    fs::create_dir_all(&deploy).unwrap();
    for chart in vendored {
        fs::create_dir_all(deploy.join("charts")).unwrap();
        copy_dir(&charts().join(chart), &deploy.join("charts").join(chart));
    }
    fs::write(deploy.join("kustomization.yaml"), kustomization).unwrap();
    src
}

/// The spec of a Sync rendering `path` of its GitRepository, with `fields` besides.
fn spec(path: &str, fields: Value) -> SyncSpec {
    let mut spec = json!({"sourceRef": {"kind": "GitRepository", "name": "repo"}, "path": path});
    for (key, value) in fields.as_object().unwrap() {
        spec[key] = value.clone();
    }
    serde_json::from_value(spec).unwrap()
}

fn capabilities() -> Capabilities {
    Capabilities {
        kube_version: Some("v1.35.8".into()),
        api_versions: vec![
            "apps/v1".into(),
            "apps/v1/Deployment".into(),
            "monitoring.coreos.com/v1".into(),
            "monitoring.coreos.com/v1/ServiceMonitor".into(),
        ],
    }
}

fn options(values_from: Vec<String>) -> RenderOptions {
    RenderOptions {
        chart: ChartOptions {
            helm: Some(Helm::new(helm_binary(), 1 << 20)),
            release_name: "web-sync".into(),
            namespace: "team".into(),
            capabilities: capabilities(),
            values_from,
            ..ChartOptions::default()
        },
        ..RenderOptions::default()
    }
}

fn as_json(objects: &[Value]) -> Vec<String> {
    objects.iter().map(Value::to_string).collect()
}

fn capability_args() -> Vec<String> {
    let caps = capabilities();
    let mut args = vec!["--kube-version".to_owned(), caps.kube_version.unwrap()];
    for v in caps.api_versions {
        args.push("--api-versions".into());
        args.push(v);
    }
    args
}

#[test]
fn a_sync_renders_its_chart_exactly_as_helm_template() {
    let src = source();
    let chart = src.path().join("charts/app");
    let values_from = "batch:\n  queue: from-configmap\nworker:\n  replicas: 6\n".to_owned();
    let sync = spec(
        "./charts/app",
        json!({
            "targetNamespace": "prod",
            "helm": {
                "releaseName": "shop",
                "valuesFiles": ["charts/app/values-prod.yaml", "charts/app/values-extra.yaml"],
                "valuesFrom": [{"kind": "ConfigMap", "name": "shop-values"}],
                "values": {"replicaCount": 5, "image": {"tag": "010"}, "worker": {"queue": "fast"}},
            },
        }),
    );
    let got = render_with(src.path(), &sync, &[], &options(vec![values_from.clone()])).unwrap();

    // The equivalent command line: values files in order, then valuesFrom, then inline values.
    let scratch = tempfile::tempdir().unwrap();
    let vf = scratch.path().join("values-from.yaml");
    fs::write(&vf, &values_from).unwrap();
    let inline = scratch.path().join("inline.yaml");
    fs::write(
        &inline,
        "replicaCount: 5\nimage:\n  tag: \"010\"\nworker:\n  queue: fast\n",
    )
    .unwrap();
    let mut args = vec![
        "shop".to_owned(),
        chart.display().to_string(),
        "--namespace".into(),
        "prod".into(),
    ];
    for f in [
        chart.join("values-prod.yaml"),
        chart.join("values-extra.yaml"),
        vf,
        inline,
    ] {
        args.push("-f".into());
        args.push(f.display().to_string());
    }
    args.extend(capability_args());
    args.extend(["--include-crds".into(), "--skip-tests".into()]);
    let want = helm_template(&args);
    assert_eq!(as_json(&got), want);

    // What the comparison covered, so it cannot pass on two empty lists.
    let text = want.join("\n");
    for expected in [
        "\"kind\":\"CustomResourceDefinition\"",
        "\"name\":\"shop-worker-fast\"",
        "\"replicas\":6",
        "\"name\":\"shop-batch-from-configmap\"",
        "\"image\":\"registry.example.com/shop/web:010\"",
        "\"greeting\":\"Welcome from shop in prod\"",
        "\"kind\":\"ServiceMonitor\"",
        "\"helm.sh/hook\":\"pre-install,pre-upgrade\"",
    ] {
        assert!(text.contains(expected), "missing {expected} in {text}");
    }
    assert!(!text.contains("\"helm.sh/hook\":\"test\""), "{text}");
}

#[test]
fn defaults_name_the_release_after_the_sync_and_place_it_in_its_namespace() {
    let src = source();
    let sync = spec("charts/app", json!({}));
    let got = render_with(src.path(), &sync, &[], &options(vec![])).unwrap();
    let mut args = vec![
        "web-sync".to_owned(),
        src.path().join("charts/app").display().to_string(),
        "--namespace".into(),
        "team".into(),
    ];
    args.extend(capability_args());
    args.extend(["--include-crds".into(), "--skip-tests".into()]);
    assert_eq!(as_json(&got), helm_template(&args));
    assert!(as_json(&got)[0].contains("CustomResourceDefinition"));

    let no_crds = spec(
        "charts/app",
        json!({"helm": {"includeCRDs": false, "skipTests": false}}),
    );
    let got = as_json(&render_with(src.path(), &no_crds, &[], &options(vec![])).unwrap());
    assert!(!got.iter().any(|o| o.contains("CustomResourceDefinition")));
    assert!(got.iter().any(|o| o.contains("\"helm.sh/hook\":\"test\"")));
}

#[test]
fn images_patches_and_substitution_apply_to_the_chart() {
    let src = source();
    let sync = spec(
        "charts/app",
        json!({
            "images": [{"name": "registry.example.com/shop/web", "newTag": "2.0.0"}],
            "patches": [{
                "patch": "- op: add\n  path: /metadata/labels/patched\n  value: \"yes\"",
                "target": {"kind": "Service"},
            }],
            "substitute": {"unused": "x"},
            "helm": {"values": {"greeting": "Hi ${unused}"}},
        }),
    );
    let got = render_with(src.path(), &sync, &[], &options(vec![])).unwrap();
    let deploy = got
        .iter()
        .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "web-sync-app")
        .unwrap();
    assert_eq!(
        deploy["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example.com/shop/web:2.0.0"
    );
    let svc = got.iter().find(|o| o["kind"] == "Service").unwrap();
    assert_eq!(svc["metadata"]["labels"]["patched"], "yes");
    let cm = got
        .iter()
        .find(|o| o["metadata"]["name"] == "web-sync-app-config")
        .unwrap();
    assert_eq!(cm["data"]["greeting"], "Hi x from web-sync in team");
    let job = got
        .iter()
        .find(|o| o["metadata"]["name"] == "web-sync-app-migrate")
        .unwrap();
    assert_eq!(
        job["metadata"]["annotations"]["helm.sh/hook-weight"], "-5",
        "hooks keep their annotations through kustomize"
    );
}

#[test]
fn a_chart_failure_names_the_chart_and_helms_message() {
    let src = source();
    let sync = spec("charts/app", json!({}));
    let mut opts = options(vec![]);
    opts.chart.capabilities.kube_version = Some("v1.24.3".into());
    let err = render_with(src.path(), &sync, &[], &opts).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, BuildError::Chart(_)), "{msg}");
    assert!(msg.contains("chart app"), "{msg}");
    assert!(msg.contains("kubeVersion: >=1.25.0-0"), "{msg}");
    assert!(!err.is_transient() && !err.is_limit());

    let missing = spec("charts/missing-dep", json!({}));
    let err = render_with(src.path(), &missing, &[], &options(vec![])).unwrap_err();
    assert!(err.to_string().contains("dependency redis 18.1.0"), "{err}");

    let bad_values = spec(
        "charts/app",
        json!({"helm": {"valuesFiles": ["../etc/passwd"]}}),
    );
    let err = render_with(src.path(), &bad_values, &[], &options(vec![])).unwrap_err();
    assert!(err.to_string().contains("must not contain `..`"), "{err}");

    let not_a_chart = spec("charts/app/templates", json!({"helm": {}}));
    let err = render_with(src.path(), &not_a_chart, &[], &options(vec![])).unwrap_err();
    assert!(err.to_string().contains("no Chart.yaml"), "{err}");
}

#[test]
fn a_template_that_eats_memory_is_stopped_at_the_limit() {
    let src = source();
    let chart = src.path().join("charts/app");
    fs::write(
        chart.join("templates/bomb.yaml"),
        "{{- $s := \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\" }}\n\
         {{- range $i := until 30 }}{{- $s = printf \"%s%s\" $s $s }}{{- end }}\n\
         a: {{ len $s }}\n",
    )
    .unwrap();
    let sync = spec("charts/app", json!({}));
    let mut opts = options(vec![]);
    opts.chart.max_memory = 128 << 20;
    let err = render_with(src.path(), &sync, &[], &opts).unwrap_err();
    assert!(err.is_limit(), "{err}");
    assert!(err.to_string().contains("chart-max-memory"), "{err}");
}

/// A kustomization's `helmCharts` render through the same Helm, with the cluster's capabilities
/// for an entry that sets none; the Sync's targetNamespace, images and substitution then apply to
/// the chart's objects as to any kustomize output, and the render says a chart was inflated (so
/// its verdict is cached with the capabilities).
#[test]
fn kustomize_helm_charts_render_with_the_cluster_capabilities_and_the_sync_transforms() {
    let src = kustomize_source(
        "helmCharts:\n- name: web\n  releaseName: shop\n  valuesInline:\n    replicas: 2\n    image: {tag: \"2.2.0\"}\n    drop: \"${TAG}\"\n",
        &["web"],
    );
    let sync = spec(
        "./deploy",
        json!({
            "targetNamespace": "prod",
            "images": [{"name": "registry.example.com/web", "newName": "mirror.example.com/web"}],
            "substitute": {"TAG": "2.3.0"},
        }),
    );
    let mut opts = options(vec![]);
    opts.chart
        .capabilities
        .api_versions
        .push("web.example.com/v1".into());
    let got = render_with(src.path(), &sync, &[], &opts).unwrap();
    assert!(
        opts.chart
            .inflated
            .load(std::sync::atomic::Ordering::Relaxed)
    );
    let find = |kind: &str| {
        got.iter()
            .find(|o| o["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} in {got:?}"))
    };
    let values = find("ConfigMap");
    assert_eq!(values["metadata"]["name"], "shop-web-values");
    assert_eq!(values["metadata"]["namespace"], "prod");
    assert_eq!(values["data"]["kubeVersion"], "v1.35.8");
    assert_eq!(values["data"]["widgets"], "served");
    let merged = values["data"]["values.json"].as_str().unwrap();
    assert!(merged.contains(r#""drop":"2.3.0""#), "{merged}");
    let deployment = find("Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "mirror.example.com/web:2.2.0"
    );
    // The pre-install hook and the test hook are objects like any other to kustomize; the sync
    // controller runs the first as a hook.
    assert!(got.iter().any(|o| o["kind"] == "Job"));
}

/// A `helmCharts` entry whose chart is not in the source fails the render naming the chart and
/// where kustomize would have downloaded it from.
#[test]
fn kustomize_helm_charts_name_a_chart_that_is_not_in_the_source() {
    let src = kustomize_source(
        "helmCharts:\n- name: redis\n  repo: oci://registry.example.com/charts\n",
        &[],
    );
    let sync = spec("deploy", json!({}));
    let err = render_with(src.path(), &sync, &[], &options(vec![])).unwrap_err();
    let text = err.to_string();
    assert!(!err.is_transient(), "{text}");
    for needle in [
        "helm chart redis",
        "no chart at charts/redis",
        "oci://registry.example.com/charts",
    ] {
        assert!(text.contains(needle), "{needle:?} not in {text}");
    }
}

/// A Sync that edits the kustomization (namePrefix, as Flux does) keeps the chart values' types:
/// `replicas: 3` reaches Helm as a number.
#[test]
fn kustomize_helm_charts_keep_value_types_when_the_sync_edits_the_kustomization() {
    let src = kustomize_source(
        "helmCharts:\n- name: web\n  releaseName: shop\n  includeCRDs: true\n  valuesInline:\n    replicas: 3\n    flag: on\n",
        &["web"],
    );
    let sync = spec(
        "./deploy",
        json!({
            "namePrefix": "team-",
        }),
    );
    let got = render_with(src.path(), &sync, &[], &options(vec![])).unwrap();
    let deployment = got.iter().find(|o| o["kind"] == "Deployment").unwrap();
    assert_eq!(deployment["metadata"]["name"], "team-shop-web");
    assert_eq!(deployment["spec"]["replicas"], 3);
    let values = got.iter().find(|o| o["kind"] == "ConfigMap").unwrap();
    assert_eq!(values["data"]["flagKind"], "bool");
    assert!(
        got.iter().any(|o| o["kind"] == "CustomResourceDefinition"),
        "includeCRDs: true was read as a boolean"
    );
}
