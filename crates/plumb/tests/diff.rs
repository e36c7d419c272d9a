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
