//! `plumb ui` and an object whose name holds `${...}` with a value from a `substituteFrom`
//! Secret: the render controller publishes it unsubstituted (the sync controller substitutes it
//! before apply), and the Sync's page still knows it by the name it is applied under: its row
//! says why it is not compared, not that it left the render; an object substituted by the
//! render controller shows in sync beside it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use plumb_api::Sync;
use plumb_e2e_scenarios::{
    ARTIFACT_TOKEN_SECRET, Controllers, GitFixture, create_sync, plumb_binary,
};
use plumb_e2e_support::{TestNamespace, Ui, kubeconfig_path, wait_for};
use serde_json::json;

/// Bound on the Sync being Ready and on the page showing it (failure bounds, not timings).
const WAIT: Duration = Duration::from_secs(120);

/// One object named by a value from the Secret, one by a ConfigMap's.
const APP: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: settings-${suffix}
data:
  dsn: postgres://app:${db_password}@db
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: plain-${cluster}
data:
  cluster: ${cluster}
"#;

/// The `<tr>` of object `id` on `page`, if it is there.
fn row<'a>(page: &'a str, id: &str) -> Option<&'a str> {
    let start = page.find(&format!("data-object=\"{id}\""))?;
    let len = page[start..].find("</tr>")?;
    Some(&page[start..start + len])
}

#[tokio::test(flavor = "multi_thread")]
async fn an_object_named_with_a_secret_value_shows_under_its_applied_name() {
    let ns = TestNamespace::new("e2e-ui-deferred").await.unwrap();
    let name = ns.name().to_owned();
    plumb_e2e_support::install_crds(ns.client()).await.unwrap();
    let git = GitFixture::new().await.unwrap();
    git.write("app/objects.yaml", APP).unwrap();
    let commit = git.commit("names from variables").unwrap();
    let substitute_from = ns
        .apply_cluster_variables(
            &[("cluster", "east")],
            &[("db_password", "pw-for-the-ui-test"), ("suffix", "blue")],
        )
        .await
        .unwrap();

    let controllers = Controllers::start(&name).unwrap();
    git.create_source(ns.client(), &name, "app").await.unwrap();
    create_sync(
        &ns,
        "app",
        json!({"path": "./app", "interval": "1h", "substituteFrom": substitute_from}),
    )
    .await
    .unwrap();
    let syncs: Api<Sync> = ns.api();
    controllers
        .wait_ready_at(&syncs, "app", &commit, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let applied: ConfigMap = ns.api().get("settings-blue").await.unwrap();
    assert_eq!(
        applied.data.unwrap()["dsn"],
        "postgres://app:pw-for-the-ui-test@db"
    );

    let ui = Ui::start(
        &plumb_binary().unwrap(),
        &name,
        &kubeconfig_path(),
        &[format!(
            "--artifact-token-secret={name}/{ARTIFACT_TOKEN_SECRET}"
        )],
        None,
    )
    .unwrap();
    let deferred = format!("{name}_settings-blue__ConfigMap");
    let plain = format!("{name}_plain-east__ConfigMap");
    let http = reqwest::Client::new();
    let url = format!("{}/sync/{name}/app", ui.url());
    let get = || async { http.get(&url).send().await?.text().await };
    let shown = wait_for(
        "the page to compare both objects with what plumb applied",
        WAIT,
        || async {
            let page = get().await.map_err(|e| e.to_string())?;
            // Compared with the loaded render: the other object in sync, this one either known
            // (why it is not compared) or taken for an object the render no longer has.
            let known = row(&page, &deferred).is_some_and(|r| {
                r.contains("substituted with values from a Secret")
                    || r.contains("not in the latest render")
            });
            let done = known && row(&page, &plain).is_some_and(|r| r.contains("In sync"));
            Ok::<_, String>(done.then_some(page))
        },
    )
    .await;
    let page = match shown {
        Ok(page) => page,
        Err(e) => panic!("{e}\npage now:\n{}", get().await.unwrap_or_default()),
    };
    let row = row(&page, &deferred).unwrap();
    assert!(
        row.contains("substituted with values from a Secret"),
        "the row of {deferred} does not know it as what plumb applied:\n{row}"
    );
    assert!(!row.contains("not in the latest render"), "{row}");
    assert!(
        !page.contains("pw-for-the-ui-test"),
        "the page shows the Secret's value"
    );
    drop(ui);
    drop(controllers);
}
