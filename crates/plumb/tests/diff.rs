//! `plumb diff sync` against the real cluster: changed, new and pruned objects are shown, and the
//! exit code says whether anything would change.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::Command;

use kube::api::{Api, Patch, PatchParams, PostParams};
use plumb_api::Sync;
use plumb_e2e_support::{TestNamespace, kubeconfig_path};
use serde_json::{Value, json};

/// The `Chart.yaml` of the charts these tests diff.
const CHART: &str = "apiVersion: v2\nname: board\nversion: 0.1.0\n";

/// A ConfigMap `name` whose `data` holds the one line `entry` (`key: value`).
fn config_map(name: &str, entry: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  {entry}\n")
}

/// A fresh namespace on a cluster that serves the plumb kinds.
async fn namespace(prefix: &str) -> TestNamespace {
    let ns = TestNamespace::new(prefix).await.unwrap();
    // Waits for the CRDs to be Established, so the kinds are served.
    plumb_e2e_support::install_crds(ns.client()).await.unwrap();
    ns
}

/// The ConfigMap `name` with `data` (YAML lines below `data:`), as the sync controller applied
/// it for Sync `app`: its field manager and labels.
async fn apply_as_synced(ns: &TestNamespace, name: &str, data: &str) {
    let labels =
        json!({ plumb_api::SYNC_NAME_LABEL: "app", plumb_api::SYNC_NAMESPACE_LABEL: ns.name() });
    ns.apply_yaml(
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  labels: {labels}\ndata:\n{data}"
        ),
        plumb_api::SYNC_FIELD_MANAGER,
    )
    .await
    .unwrap();
}

/// Creates the Sync `app` of source `app` with `spec` added, its inventory the ConfigMaps
/// `inventory` of its namespace.
async fn create_sync(ns: &TestNamespace, spec: Value, inventory: &[&str]) {
    let mut sync = json!({
        "apiVersion": "sync.plumb.dev/v1", "kind": "Sync", "metadata": { "name": "app" },
        "spec": { "sourceRef": { "kind": "GitRepository", "name": "app" } }
    });
    for (key, value) in spec.as_object().unwrap() {
        sync["spec"][key] = value.clone();
    }
    let sync: Sync = serde_json::from_value(sync).unwrap();
    ns.api::<Sync>()
        .create(&PostParams::default(), &sync)
        .await
        .unwrap();
    set_inventory(ns, inventory).await;
}

/// Sets the inventory of Sync `app` to the ConfigMaps `names` of its namespace.
async fn set_inventory(ns: &TestNamespace, names: &[&str]) {
    let entries: Vec<Value> = names
        .iter()
        .map(|n| json!({ "id": format!("{}_{n}__ConfigMap", ns.name()), "v": "v1" }))
        .collect();
    let status = json!({ "apiVersion": "sync.plumb.dev/v1", "kind": "Sync",
        "status": { "inventory": entries } });
    let syncs: Api<Sync> = ns.api();
    syncs
        .patch_status(
            "app",
            &PatchParams::apply(plumb_api::SYNC_FIELD_MANAGER).force(),
            &Patch::Apply(&status),
        )
        .await
        .unwrap();
}

/// Writes `files` (path, text) below `root`, making their directories.
fn write_files(root: &Path, files: &[(&str, &str)]) {
    for (path, text) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

/// `plumb diff sync app -n NAMESPACE --path DIR`: its exit code, and its stdout and stderr.
async fn plumb_diff(ns: &TestNamespace, dir: &Path) -> (i32, String) {
    let (ns, dir): (String, PathBuf) = (ns.name().to_owned(), dir.to_owned());
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_plumb"))
            .args(["diff", "sync", "app", "-n", &ns, "--path"])
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
    })
    .await
    .unwrap()
}

/// Runs `plumb diff` of `dir` and asserts it finds nothing to do (exit 0); `what` names the case
/// in the failure report.
async fn assert_unchanged(ns: &TestNamespace, dir: &Path, what: &str) {
    let (code, text) = plumb_diff(ns, dir).await;
    assert_eq!(code, 0, "{what}: {text}");
    assert!(
        text.contains("0 to create, 0 to change, 0 to prune"),
        "{what}: {text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn diff_shows_changes_creations_and_prunes_and_exits_1_only_when_something_changes() {
    let ns = namespace("cli-diff").await;

    // What the cluster has: a ConfigMap applied by plumb, and an inventory naming it and an old one.
    apply_as_synced(&ns, "settings", "  value: one\n").await;
    create_sync(&ns, json!({ "path": "./app" }), &["settings", "old"]).await;

    // The local checkout: settings changed, a new ConfigMap, old gone.
    let checkout = tempfile::tempdir().unwrap();
    let app = checkout.path().join("app");
    write_files(
        &app,
        &[
            (
                "kustomization.yaml",
                "resources:\n  - settings.yaml\n  - extra.yaml\n",
            ),
            ("settings.yaml", &config_map("settings", "value: two")),
            ("extra.yaml", &config_map("extra", "value: x")),
        ],
    );

    let (code, text) = plumb_diff(&ns, &app).await;
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
    write_files(
        &app,
        &[
            ("kustomization.yaml", "resources:\n  - settings.yaml\n"),
            ("settings.yaml", &config_map("settings", "value: one")),
        ],
    );
    set_inventory(&ns, &["settings"]).await;
    assert_unchanged(&ns, &app, "a checkout equal to the cluster").await;
}

/// A chart directory is rendered as the render controller renders the Sync's chart: the Sync's
/// name as the release, its namespace, its `valuesFrom` ConfigMap, the cluster's version; its
/// hooks are not compared. What plumb applied from that render diffs clean; a changed
/// `valuesFrom` value shows.
#[tokio::test(flavor = "multi_thread")]
async fn diff_of_a_chart_sync_renders_as_the_controller_and_leaves_hooks_out() {
    let ns = namespace("cli-diff-chart").await;
    let name = ns.name();
    let checkout = tempfile::tempdir().unwrap();
    let chart = checkout.path().join("chart");
    write_files(
        &chart,
        &[
            ("Chart.yaml", CHART),
            ("values.yaml", "greeting: from the chart\n"),
            (
                "templates/settings.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-settings\n\
                 data:\n  greeting: {{ .Values.greeting | quote }}\n  namespace: {{ .Release.Namespace }}\n\
                 \x20 kubeVersion: {{ .Capabilities.KubeVersion.Version }}\n",
            ),
            (
                "templates/hook.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-schema\n\
                 \x20 annotations:\n    helm.sh/hook: pre-install\ndata:\n  v: \"1\"\n",
            ),
        ],
    );

    // The values ConfigMap, and what plumb applied from the render of them.
    let values = |greeting: &str| format!("greeting: {greeting}");
    ns.apply_config_map(
        "app-values",
        &[("values.yaml", &values("from a ConfigMap"))],
    )
    .await
    .unwrap();
    let kube_version = plumb_e2e_support::pinned_kubernetes_version();
    apply_as_synced(
        &ns,
        "app-settings",
        &format!(
            "  greeting: from a ConfigMap\n  namespace: {name}\n  kubeVersion: {kube_version}\n"
        ),
    )
    .await;
    create_sync(
        &ns,
        json!({
            "path": "./chart",
            "helm": { "valuesFrom": [{ "kind": "ConfigMap", "name": "app-values" }] }
        }),
        &["app-settings"],
    )
    .await;

    let (code, text) = plumb_diff(&ns, &chart).await;
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("1 Helm hook(s) not compared")
            && text.contains("0 to create, 0 to change, 0 to prune"),
        "{text}"
    );

    ns.apply_config_map("app-values", &[("values.yaml", &values("changed"))])
        .await
        .unwrap();
    let (code, text) = plumb_diff(&ns, &chart).await;
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
    write_files(
        root,
        &[
            ("deploy/kustomization.yaml", "resources: [settings.yaml]\n"),
            (
                "deploy/settings.yaml",
                &config_map("app-settings", "greeting: ${GREETING}"),
            ),
            ("chart/Chart.yaml", CHART),
            (
                "chart/templates/settings.yaml",
                &config_map("{{ .Release.Name }}-settings", "greeting: ${GREETING}"),
            ),
        ],
    );
    for (prefix, path) in [
        ("cli-diff-subst-k", "deploy"),
        ("cli-diff-subst-c", "chart"),
    ] {
        let ns = namespace(prefix).await;
        ns.apply_config_map("vars", &[("GREETING", "from-vars")])
            .await
            .unwrap();
        apply_as_synced(&ns, "app-settings", "  greeting: from-vars\n").await;
        create_sync(
            &ns,
            json!({
                "path": format!("./{path}"),
                "substituteFrom": [{ "kind": "ConfigMap", "name": "vars" }]
            }),
            &["app-settings"],
        )
        .await;
        assert_unchanged(&ns, &root.join(path), path).await;

        ns.apply_config_map("vars", &[("GREETING", "changed")])
            .await
            .unwrap();
        let (code, text) = plumb_diff(&ns, &root.join(path)).await;
        assert_eq!(code, 1, "{path}: {text}");
        assert!(
            text.contains("-  greeting: from-vars") && text.contains("+  greeting: changed"),
            "{path}: {text}"
        );
    }
}

/// A value an object takes from a `substituteFrom` Secret never shows in the diff, neither the
/// Secret's value nor the old one the live object still holds: the field is masked on both sides
/// as `kubectl diff` masks a Secret's values (`*** (before)`, `*** (after)`), while fields that
/// hold no such value show as usual.
#[tokio::test(flavor = "multi_thread")]
async fn diff_masks_values_substituted_from_secrets_in_any_object() {
    let checkout = tempfile::tempdir().unwrap();
    let root = checkout.path();
    write_files(
        root,
        &[
            ("deploy/kustomization.yaml", "resources: [settings.yaml]\n"),
            (
                "deploy/settings.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app-settings\ndata:\n  \
                 dsn: postgres://app:${DB_PASSWORD}@db:5432/shop\n  greeting: ${GREETING}\n",
            ),
        ],
    );
    let ns = namespace("cli-diff-secret").await;
    let (old, new) = ("0ld-s3cret-pw", "n3w-s3cret-pw");
    ns.apply_secret("creds", &[("DB_PASSWORD", old)])
        .await
        .unwrap();
    ns.apply_config_map("vars", &[("GREETING", "hello")])
        .await
        .unwrap();
    apply_as_synced(
        &ns,
        "app-settings",
        &format!("  dsn: postgres://app:{old}@db:5432/shop\n  greeting: hello\n"),
    )
    .await;
    create_sync(
        &ns,
        json!({
            "path": "./deploy",
            "substituteFrom": [
                { "kind": "ConfigMap", "name": "vars" },
                { "kind": "Secret", "name": "creds" }
            ]
        }),
        &["app-settings"],
    )
    .await;
    assert_unchanged(&ns, &root.join("deploy"), "as applied").await;

    // The Secret and the ConfigMap change: the DSN shows as changed, masked; the greeting as is.
    ns.apply_secret("creds", &[("DB_PASSWORD", new)])
        .await
        .unwrap();
    ns.apply_config_map("vars", &[("GREETING", "changed")])
        .await
        .unwrap();
    let (code, text) = plumb_diff(&ns, &root.join("deploy")).await;
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("~ ConfigMap/app-settings") && text.contains("1 to change"),
        "{text}"
    );
    assert!(
        text.contains("-  greeting: hello") && text.contains("+  greeting: changed"),
        "{text}"
    );
    assert!(
        text.contains("dsn: '*** (before)'") && text.contains("dsn: '*** (after)'"),
        "{text}"
    );
    use base64::Engine;
    for value in [old, new] {
        for form in [
            value.to_owned(),
            base64::engine::general_purpose::STANDARD.encode(value),
        ] {
            assert!(!text.contains(&form), "the diff shows {form}:\n{text}");
        }
    }
}
