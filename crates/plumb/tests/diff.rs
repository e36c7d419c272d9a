//! `plumb diff sync` against the real cluster: changed, new and pruned objects are shown, and the
//! exit code says whether anything would change.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::process::Command;

use kube::api::{Api, Patch, PatchParams, PostParams};
use plumb_api::Sync;
use plumb_e2e_support::{TestNamespace, kubeconfig_path};
use serde_json::json;

fn plumb_diff(ns: &str, dir: &std::path::Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_plumb"))
        .args(["diff", "sync", "app", "-n", ns, "--path"])
        .arg(dir)
        .env("KUBECONFIG", kubeconfig_path())
        .env("PLUMB_HELM", plumb_e2e_support::helm_binary())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn diff_shows_changes_creations_and_prunes_and_exits_1_only_when_something_changes() {
    let ns = TestNamespace::new("cli-diff").await.unwrap();
    plumb_e2e_support::install_crds(ns.client()).await.unwrap();
    let name = ns.name().to_owned();

    // What the cluster has: a ConfigMap applied by plumb, and an inventory naming it and an old one.
    let labels =
        json!({ plumb_api::SYNC_NAME_LABEL: "app", plumb_api::SYNC_NAMESPACE_LABEL: name });
    ns.apply_yaml(
        &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: {name}\n  labels: {labels}\ndata:\n  value: one\n"),
        plumb_api::SYNC_FIELD_MANAGER,
    )
    .await
    .unwrap();
    let syncs: Api<Sync> = ns.api();
    let sync: Sync = serde_json::from_value(json!({
        "apiVersion": "sync.plumb.dev/v1", "kind": "Sync", "metadata": { "name": "app" },
        "spec": { "sourceRef": { "kind": "GitRepository", "name": "app" }, "path": "./app" }
    }))
    .unwrap();
    // install_crds waited for Established, so the kind is served.
    syncs.create(&PostParams::default(), &sync).await.unwrap();
    let status = json!({ "apiVersion": "sync.plumb.dev/v1", "kind": "Sync", "status": { "inventory": [
        { "id": format!("{name}_settings__ConfigMap"), "v": "v1" },
        { "id": format!("{name}_old__ConfigMap"), "v": "v1" }
    ] } });
    syncs
        .patch_status(
            "app",
            &PatchParams::apply(plumb_api::SYNC_FIELD_MANAGER).force(),
            &Patch::Apply(&status),
        )
        .await
        .unwrap();

    // The local checkout: settings changed, a new ConfigMap, old gone.
    let checkout = tempfile::tempdir().unwrap();
    let app = checkout.path().join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(
        app.join("kustomization.yaml"),
        "resources:\n  - settings.yaml\n  - extra.yaml\n",
    )
    .unwrap();
    std::fs::write(
        app.join("settings.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  value: two\n",
    )
    .unwrap();
    std::fs::write(
        app.join("extra.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\ndata:\n  value: x\n",
    )
    .unwrap();

    let ns_name = name.clone();
    let dir = app.clone();
    let (code, text) = tokio::task::spawn_blocking(move || plumb_diff(&ns_name, &dir))
        .await
        .unwrap();
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("~ ConfigMap/settings"), "{text}");
    assert!(
        text.contains("-  value: one") && text.contains("+  value: two"),
        "{text}"
    );
    assert!(text.contains("+ ConfigMap/extra"), "{text}");
    assert!(text.contains("- ConfigMap/old"), "{text}");
    assert!(
        text.contains("1 to create, 1 to change, 1 to prune"),
        "{text}"
    );

    // A checkout equal to the cluster: nothing to do, exit 0.
    std::fs::write(
        app.join("kustomization.yaml"),
        "resources:\n  - settings.yaml\n",
    )
    .unwrap();
    std::fs::write(
        app.join("settings.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  value: one\n",
    )
    .unwrap();
    let status = json!({ "apiVersion": "sync.plumb.dev/v1", "kind": "Sync", "status": { "inventory": [
        { "id": format!("{name}_settings__ConfigMap"), "v": "v1" }
    ] } });
    syncs
        .patch_status(
            "app",
            &PatchParams::apply(plumb_api::SYNC_FIELD_MANAGER).force(),
            &Patch::Apply(&status),
        )
        .await
        .unwrap();
    let ns_name = name.clone();
    let (code, text) = tokio::task::spawn_blocking(move || plumb_diff(&ns_name, &app))
        .await
        .unwrap();
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("0 to create, 0 to change, 0 to prune"),
        "{text}"
    );
}

/// A chart directory is rendered as the render controller renders the Sync's chart: the Sync's
/// name as the release, its namespace, its `valuesFrom` ConfigMap, the cluster's version; its
/// hooks are not compared. What plumb applied from that render diffs clean; a changed
/// `valuesFrom` value shows.
#[tokio::test(flavor = "multi_thread")]
async fn diff_of_a_chart_sync_renders_as_the_controller_and_leaves_hooks_out() {
    let ns = TestNamespace::new("cli-diff-chart").await.unwrap();
    plumb_e2e_support::install_crds(ns.client()).await.unwrap();
    let name = ns.name().to_owned();
    let checkout = tempfile::tempdir().unwrap();
    let chart = checkout.path().join("chart");
    std::fs::create_dir_all(chart.join("templates")).unwrap();
    std::fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: board\nversion: 0.1.0\n",
    )
    .unwrap();
    std::fs::write(chart.join("values.yaml"), "greeting: from the chart\n").unwrap();
    std::fs::write(
        chart.join("templates/settings.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-settings\n\
         data:\n  greeting: {{ .Values.greeting | quote }}\n  namespace: {{ .Release.Namespace }}\n\
         \x20 kubeVersion: {{ .Capabilities.KubeVersion.Version }}\n",
    )
    .unwrap();
    std::fs::write(
        chart.join("templates/hook.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-schema\n\
         \x20 annotations:\n    helm.sh/hook: pre-install\ndata:\n  v: \"1\"\n",
    )
    .unwrap();

    // The values ConfigMap, and what plumb applied from the render of them.
    let values = |greeting: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app-values\ndata:\n  values.yaml: \"greeting: {greeting}\"\n"
        )
    };
    ns.apply_yaml(&values("from a ConfigMap"), "test")
        .await
        .unwrap();
    let labels =
        json!({ plumb_api::SYNC_NAME_LABEL: "app", plumb_api::SYNC_NAMESPACE_LABEL: name });
    let kube_version = plumb_e2e_support::pinned_kubernetes_version();
    ns.apply_yaml(
        &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app-settings\n  labels: {labels}\ndata:\n  greeting: from a ConfigMap\n  namespace: {name}\n  kubeVersion: {kube_version}\n"),
        plumb_api::SYNC_FIELD_MANAGER,
    )
    .await
    .unwrap();
    let syncs: Api<Sync> = ns.api();
    let sync: Sync = serde_json::from_value(json!({
        "apiVersion": "sync.plumb.dev/v1", "kind": "Sync", "metadata": { "name": "app" },
        "spec": {
            "sourceRef": { "kind": "GitRepository", "name": "app" }, "path": "./chart",
            "helm": { "valuesFrom": [{ "kind": "ConfigMap", "name": "app-values" }] }
        }
    }))
    .unwrap();
    syncs.create(&PostParams::default(), &sync).await.unwrap();
    let status = json!({ "apiVersion": "sync.plumb.dev/v1", "kind": "Sync", "status": { "inventory": [
        { "id": format!("{name}_app-settings__ConfigMap"), "v": "v1" }
    ] } });
    syncs
        .patch_status(
            "app",
            &PatchParams::apply(plumb_api::SYNC_FIELD_MANAGER).force(),
            &Patch::Apply(&status),
        )
        .await
        .unwrap();

    let diff = |chart: std::path::PathBuf| {
        let ns_name = name.clone();
        tokio::task::spawn_blocking(move || plumb_diff(&ns_name, &chart))
    };
    let (code, text) = diff(chart.clone()).await.unwrap();
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("1 Helm hook(s) not compared")
            && text.contains("0 to create, 0 to change, 0 to prune"),
        "{text}"
    );

    ns.apply_yaml(&values("changed"), "test").await.unwrap();
    let (code, text) = diff(chart).await.unwrap();
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("~ ConfigMap/app-settings"), "{text}");
    assert!(
        text.contains("-  greeting: from a ConfigMap") && text.contains("+  greeting: changed"),
        "{text}"
    );
}

/// `substituteFrom` is read from the cluster and substituted before the compare, as the render
/// controller does, for a kustomize Sync and a chart Sync alike: the applied object matches the
/// render with the variables (no change), and a change of the variables shows as a change.
#[tokio::test(flavor = "multi_thread")]
async fn diff_substitutes_substitute_from_for_kustomize_and_chart_syncs() {
    let checkout = tempfile::tempdir().unwrap();
    let root = checkout.path();
    std::fs::create_dir_all(root.join("deploy")).unwrap();
    std::fs::write(
        root.join("deploy/kustomization.yaml"),
        "resources: [settings.yaml]\n",
    )
    .unwrap();
    std::fs::write(
        root.join("deploy/settings.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app-settings\ndata:\n  greeting: ${GREETING}\n",
    )
    .unwrap();
    std::fs::create_dir_all(root.join("chart/templates")).unwrap();
    std::fs::write(
        root.join("chart/Chart.yaml"),
        "apiVersion: v2\nname: board\nversion: 0.1.0\n",
    )
    .unwrap();
    std::fs::write(
        root.join("chart/templates/settings.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-settings\ndata:\n  greeting: ${GREETING}\n",
    )
    .unwrap();
    for (prefix, path) in [
        ("cli-diff-subst-k", "deploy"),
        ("cli-diff-subst-c", "chart"),
    ] {
        let ns = TestNamespace::new(prefix).await.unwrap();
        plumb_e2e_support::install_crds(ns.client()).await.unwrap();
        let name = ns.name().to_owned();
        let vars = |greeting: &str| {
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: vars\ndata:\n  GREETING: {greeting}\n"
            )
        };
        ns.apply_yaml(&vars("from-vars"), "test").await.unwrap();
        let labels =
            json!({ plumb_api::SYNC_NAME_LABEL: "app", plumb_api::SYNC_NAMESPACE_LABEL: name });
        ns.apply_yaml(
            &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app-settings\n  labels: {labels}\ndata:\n  greeting: from-vars\n"),
            plumb_api::SYNC_FIELD_MANAGER,
        )
        .await
        .unwrap();
        let syncs: Api<Sync> = ns.api();
        let sync: Sync = serde_json::from_value(json!({
            "apiVersion": "sync.plumb.dev/v1", "kind": "Sync", "metadata": { "name": "app" },
            "spec": {
                "sourceRef": { "kind": "GitRepository", "name": "app" }, "path": format!("./{path}"),
                "substituteFrom": [{ "kind": "ConfigMap", "name": "vars" }]
            }
        }))
        .unwrap();
        syncs.create(&PostParams::default(), &sync).await.unwrap();
        let status = json!({ "apiVersion": "sync.plumb.dev/v1", "kind": "Sync", "status": { "inventory": [
            { "id": format!("{name}_app-settings__ConfigMap"), "v": "v1" }
        ] } });
        syncs
            .patch_status(
                "app",
                &PatchParams::apply(plumb_api::SYNC_FIELD_MANAGER).force(),
                &Patch::Apply(&status),
            )
            .await
            .unwrap();
        let diff = || {
            let (ns_name, dir) = (name.clone(), root.join(path));
            tokio::task::spawn_blocking(move || plumb_diff(&ns_name, &dir))
        };
        let (code, text) = diff().await.unwrap();
        assert_eq!(code, 0, "{path}: {text}");
        assert!(
            text.contains("0 to create, 0 to change, 0 to prune"),
            "{path}: {text}"
        );

        ns.apply_yaml(&vars("changed"), "test").await.unwrap();
        let (code, text) = diff().await.unwrap();
        assert_eq!(code, 1, "{path}: {text}");
        assert!(
            text.contains("-  greeting: from-vars") && text.contains("+  greeting: changed"),
            "{path}: {text}"
        );
    }
}
